//! Honest traffic, traps included.

use haechi_features::{Channel, Step};
use rand::Rng;

use crate::world::{play, Actor, Play, Timing, World, HOUR_MS, LOGIN, ONBOARDING};

/// An honest customer as the generator keeps them.
#[derive(Debug, Clone)]
pub(crate) struct Customer {
    pub actor: Actor,
    /// Centre of their active hours, local time.
    pub hour: f64,
    /// Day they onboard (None: already a customer when the data starts).
    pub onboard_day: Option<i64>,
    /// Logins per day.
    pub rate: f64,
    pub night_shift: bool,
}

/// Build the population and play their sessions. Returns the customers, so
/// that attacks can pick victims among them.
pub(crate) fn customers(w: &mut World, n: usize) -> Vec<Customer> {
    let mut out: Vec<Customer> = Vec::with_capacity(n);
    for i in 0..n {
        let channel = if w.rng.gen_bool(0.8) { Channel::App } else { Channel::Web };
        let region = w.region();
        // Families: about one customer in seven uses a phone already in the household.
        let shared = i > 0 && channel == Channel::App && w.rng.gen_bool(0.15);
        let (device, agent) = if shared {
            let j = w.rng.gen_range(i.saturating_sub(20)..i);
            (out[j].actor.device.clone(), out[j].actor.agent)
        } else if channel == Channel::App {
            (w.hex("dv-", 10), w.app_agent())
        } else {
            (w.hex("br-", 10), w.web_agent())
        };
        let kind: f64 = w.rng.gen();
        let (hour, night_shift) = if kind < 0.07 {
            (w.rng.gen_range(0.0..4.0), true)
        } else if kind < 0.2 {
            (w.rng.gen_range(19.0..22.5), false)
        } else {
            (w.rng.gen_range(9.0..17.5), false)
        };
        let onboard_day = w.rng.gen_bool(0.3).then(|| w.rng.gen_range(0..i64::from(w.days)));
        let ip = if channel == Channel::App { w.nat_ip() } else { w.home_ip() };
        let actor = Actor {
            customer: w.hex("c-", 8),
            id_doc: Some(w.hex("doc-", 12)),
            account: Some(w.hex("acct-", 10)),
            device,
            ip,
            agent,
            channel,
            region,
        };
        out.push(Customer { actor, hour, onboard_day, rate: w.rng.gen_range(0.15..1.2), night_shift });
    }
    for c in out.clone() {
        play_customer(w, c);
    }
    out
}

fn play_customer(w: &mut World, mut c: Customer) {
    let days = i64::from(w.days);
    let first_day = match c.onboard_day {
        Some(d) => {
            let t = { let h = c.hour + w.rng.gen_range(-1.5..1.5); w.at_local_hour(d, h) };
            let (_, done) = w.session(&c.actor, t, &ONBOARDING, Timing::Human { speed: 1.0 }, None);
            if !done && w.rng.gen_bool(0.6) {
                // Comes back an hour or two later and tries again.
                let t2 = t + w.rng.gen_range(1..3) * HOUR_MS;
                w.session(&c.actor, t2, &ONBOARDING, Timing::Human { speed: 1.0 }, None);
            }
            d + 1
        }
        None => 0,
    };
    // Traps: a new phone one day, or a trip to another region.
    let phone_change = w.rng.gen_bool(0.03).then(|| w.rng.gen_range(first_day..days.max(first_day + 1)));
    let trip = w.rng.gen_bool(0.03).then(|| w.rng.gen_range(first_day..days.max(first_day + 1)));
    let home_region = c.actor.region;
    for day in first_day..days {
        if phone_change == Some(day) {
            c.actor.device = w.hex("dv-", 10);
        }
        c.actor.region = if trip.is_some_and(|t| day >= t && day < t + 3) { "KR-50" } else { home_region };
        let logins = poisson(w, c.rate);
        for _ in 0..logins {
            let spread = if c.night_shift { 1.5 } else { 2.5 };
            let t = { let h = c.hour + w.rng.gen_range(-spread..spread); w.at_local_hour(day, h) };
            if c.actor.channel == Channel::App {
                c.actor.ip = w.nat_ip();
            }
            let mut steps: Vec<Play> = LOGIN.to_vec();
            if w.rng.gen_bool(0.04) {
                steps.push(play(Step::PhoneAuth, 0.04, "carrier_mismatch"));
            }
            w.session(&c.actor, t, &steps, Timing::Human { speed: 1.0 }, None);
        }
    }
}

fn poisson(w: &mut World, rate: f64) -> u32 {
    // Knuth: fine for the small rates here.
    let l = (-rate).exp();
    let (mut k, mut p) = (0, 1.0);
    loop {
        p *= w.rng.gen::<f64>();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

/// Staff of the bank's operations centre: weekday office hours, a handful of
/// records at a time.
pub(crate) fn staff(w: &mut World, n: usize, customers: &[crate::honest::Customer]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let staff = w.hex("st-", 4);
        let device = w.hex("ws-", 6);
        let ip = format!("10.20.{}.{}", w.rng.gen_range(1..8), w.rng.gen_range(2..250));
        out.push((staff, device, ip));
    }
    for (staff, device, ip) in out.clone() {
        for day in 0..i64::from(w.days) {
            // The data starts on a Monday; weekends are quiet.
            if day % 7 >= 5 {
                continue;
            }
            let lookups = w.rng.gen_range(8..30);
            for _ in 0..lookups {
                let t = { let h = w.rng.gen_range(9.0..18.0); w.at_local_hour(day, h) };
                let customer = (!customers.is_empty()).then(|| customers[w.rng.gen_range(0..customers.len())].actor.customer.clone());
                let export = w.rng.gen_bool(0.05);
                let records = if export { w.rng.gen_range(1..6) } else { 1 };
                w.staff_access(&staff, &device, &ip, t, customer, export, records, None);
            }
        }
    }
    out
}
