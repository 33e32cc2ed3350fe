//! Honest traffic, traps included.

use haechi_features::{Channel, Step};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::world::{play, Actor, Play, Timing, World, HOUR_MS, LOGIN, ONBOARDING};

/// Where a web customer's sessions come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Place {
    Home,
    /// A PC방, by index into `World::pc_bangs`.
    PcBang(usize),
    /// A corporate or university NAT, by index into `World::offices`.
    Office(usize),
}

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
    /// Onboards within the hour from `hour` (a promotion burst).
    pub burst: bool,
    /// Speed factor of their steps (1: typical; elderly customers are slower).
    pub speed: f64,
    /// Multiplier of honest failure rates.
    pub fail_mult: f64,
    /// Their ID photo is old: face_match fails often.
    pub old_photo: bool,
    /// The /64 of their phone on IPv6 mobile.
    pub v6: Option<String>,
    pub place: Place,
    /// Lives abroad.
    pub abroad: bool,
}

fn new_customer(w: &mut World, i: usize, out: &[Customer]) -> Customer {
    // The knobs read here (not the whole spec: this runs once per customer).
    struct Knobs {
        people: crate::spec::PeopleSpec,
        shared: crate::spec::SharedSpec,
        rhythm: crate::spec::RhythmSpec,
        failures: crate::spec::FailureSpec,
        ipv6_share: f64,
        resident_share: f64,
    }
    let spec = Knobs {
        people: w.spec.people.clone(),
        shared: w.spec.shared.clone(),
        rhythm: w.spec.rhythm.clone(),
        failures: w.spec.failures.clone(),
        ipv6_share: w.spec.nat.ipv6_share,
        resident_share: w.spec.abroad.resident_share,
    };
    let channel = if w.rng.gen_bool(spec.people.app_share) { Channel::App } else { Channel::Web };
    let region = w.region();
    // Families: in the fixed world about one customer in seven uses a phone already in the household.
    let shared = i > 0 && channel == Channel::App && w.rng.gen_bool(spec.shared.family_share);
    let (device, agent) = if shared {
        let j = w.rng.gen_range(i.saturating_sub(20)..i);
        (out[j].actor.device.clone(), out[j].actor.agent)
    } else if channel == Channel::App {
        (w.hex("dv-", 10), w.app_agent())
    } else {
        (w.hex("br-", 10), w.web_agent())
    };
    let kind: f64 = w.rng.gen();
    let (hour, night_shift) = if kind < spec.rhythm.night_shift_share {
        (w.rng.gen_range(0.0..4.0), true)
    } else if kind < spec.rhythm.night_shift_share + spec.rhythm.evening_share {
        (w.rng.gen_range(19.0..22.5), false)
    } else {
        (w.rng.gen_range(9.0..17.5), false)
    };
    let onboard_day = w.rng.gen_bool(spec.people.onboard_share).then(|| w.rng.gen_range(0..i64::from(w.days)));
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
    let rate = w.rng.gen_range(0.15..1.2);
    let mut c = Customer {
        actor,
        hour,
        onboard_day,
        rate,
        night_shift,
        burst: false,
        speed: 1.0,
        fail_mult: 1.0,
        old_photo: false,
        v6: None,
        place: Place::Home,
        abroad: false,
    };
    // Everything below draws only when the world has it, so that the fixed
    // world draws exactly the numbers it always drew.
    if channel == Channel::App && chance(w, spec.ipv6_share) {
        let prefix = w.v6_prefix();
        c.actor.ip = w.v6_ip(&prefix);
        c.v6 = Some(prefix);
    }
    if channel == Channel::Web {
        if chance(w, spec.shared.pc_bang_share) && !w.pc_bangs.is_empty() {
            c.place = Place::PcBang(w.rng.gen_range(0..w.pc_bangs.len()));
        } else if chance(w, spec.shared.office_share) && !w.offices.is_empty() {
            c.place = Place::Office(w.rng.gen_range(0..w.offices.len()));
        }
    }
    if chance(w, spec.resident_share) {
        c.abroad = true;
        c.actor.region = w.foreign_region();
        c.actor.ip = w.foreign_ip();
        c.v6 = None;
        c.place = Place::Home;
    }
    if chance(w, spec.failures.elderly_share) {
        let (s, f) = (spec.failures.elderly_speed, spec.failures.elderly_fail_mult);
        c.speed = w.rng.gen_range(s.0..=s.1);
        c.fail_mult = w.rng.gen_range(f.0..=f.1);
    }
    c.old_photo = chance(w, spec.failures.old_photo_share);
    c
}

/// `gen_bool(p)`, drawing nothing when `p` is zero.
fn chance(w: &mut World, p: f64) -> bool {
    p > 0.0 && w.rng.gen_bool(p.min(1.0))
}

/// Build the population and play their sessions. Returns the customers, so
/// that attacks can pick victims among them.
pub(crate) fn customers(w: &mut World, n: usize) -> Vec<Customer> {
    let mut out: Vec<Customer> = Vec::with_capacity(n);
    for i in 0..n {
        let c = new_customer(w, i, &out);
        out.push(c);
    }
    // Promotion or payday bursts: on some days one hour brings about
    // `burst_factor` times the usual onboarding.
    let r = w.spec.rhythm.clone();
    if r.burst_day_p > 0.0 {
        // Onboardings fall mostly in about fourteen active hours a day.
        let per_hour = n as f64 * w.spec.people.onboard_share / f64::from(w.days) / 14.0;
        for day in 0..i64::from(w.days) {
            if !w.rng.gen_bool(r.burst_day_p) {
                continue;
            }
            let hour = w.rng.gen_range(10.0..21.0);
            let extra = ((r.burst_factor - 1.0) * per_hour).round().max(1.0) as usize;
            for _ in 0..extra {
                let i = out.len();
                let mut c = new_customer(w, i, &out);
                c.onboard_day = Some(day);
                c.hour = hour;
                c.burst = true;
                c.night_shift = false;
                out.push(c);
            }
        }
    }
    for c in out.clone() {
        play_customer(w, c);
    }
    out
}

/// A customer's plays, with their failure rates and the world's retries.
fn plays(w: &World, c: &Customer, base: &[Play]) -> Vec<Play> {
    let retries = w.spec.failures.retries;
    base.iter()
        .map(|p| {
            let mut fail_p = p.fail_p * c.fail_mult;
            if c.old_photo && p.step == Step::FaceMatch {
                fail_p = fail_p.max(0.45);
            }
            Play { fail_p: fail_p.min(0.9), retries, ..*p }
        })
        .collect()
}

fn play_customer(w: &mut World, mut c: Customer) {
    let days = i64::from(w.days);
    let timing = Timing::Human { speed: c.speed };
    let first_day = match c.onboard_day {
        Some(d) => {
            let t = if c.burst {
                let h = c.hour + w.rng.gen_range(0.0..1.0);
                w.at_local_hour(d, h)
            } else {
                let h = c.hour + w.rng.gen_range(-1.5..1.5);
                w.at_local_hour(d, h)
            };
            let mut steps = plays(w, &c, &ONBOARDING);
            if chance(w, w.spec.failures.bad_light_p) {
                // Bad light: liveness fails, often more than once.
                for p in steps.iter_mut().filter(|p| p.step == Step::Liveness) {
                    p.fail_p = p.fail_p.max(0.55);
                }
            }
            let (_, done) = w.session(&c.actor, t, &steps, timing, None);
            if !done && w.rng.gen_bool(0.6) {
                // Comes back an hour or two later and tries again.
                let t2 = t + w.rng.gen_range(1..3) * HOUR_MS;
                let steps = plays(w, &c, &ONBOARDING);
                w.session(&c.actor, t2, &steps, timing, None);
            }
            d + 1
        }
        None => 0,
    };
    // Traps: a new phone one day, or a trip to another region.
    let phone_change = w.rng.gen_bool(w.spec.people.phone_change_p).then(|| w.rng.gen_range(first_day..days.max(first_day + 1)));
    let trip = w.rng.gen_bool(w.spec.people.travel_p).then(|| w.rng.gen_range(first_day..days.max(first_day + 1)));
    let trip_abroad = trip.is_some() && chance(w, w.spec.abroad.trip_abroad_share);
    let (trip_region, trip_ip) = if trip_abroad { (w.foreign_region(), Some(w.foreign_ip())) } else { ("KR-50", None) };
    let home_region = c.actor.region;
    let home_ip = c.actor.ip.clone();
    let login_plays = plays(w, &c, &LOGIN);
    for day in first_day..days {
        if phone_change == Some(day) {
            c.actor.device = w.hex("dv-", 10);
            if c.v6.is_some() {
                c.v6 = Some(w.v6_prefix());
            }
        }
        let away = trip.is_some_and(|t| day >= t && day < t + 3);
        c.actor.region = if away { trip_region } else { home_region };
        let logins = poisson(w, c.rate);
        for _ in 0..logins {
            let spread = if c.night_shift { 1.5 } else { 2.5 };
            let t = { let h = c.hour + w.rng.gen_range(-spread..spread); w.at_local_hour(day, h) };
            if c.abroad {
                // Lives abroad: their own foreign address.
            } else if c.actor.channel == Channel::App {
                c.actor.ip = match &c.v6 {
                    Some(prefix) => { let prefix = prefix.clone(); w.v6_ip(&prefix) }
                    None => w.nat_ip(),
                };
            } else {
                match c.place {
                    Place::Home => {}
                    Place::PcBang(k) => {
                        // Unrelated customers on one café address, often on the same PC.
                        c.actor.ip = w.pc_bangs[k].0.clone();
                        if chance(w, w.spec.shared.pc_same_device_p) {
                            let pcs = &w.pc_bangs[k].1;
                            c.actor.device = pcs[w.rng.gen_range(0..pcs.len())].clone();
                        }
                    }
                    Place::Office(k) => {
                        let ips = &w.offices[k];
                        c.actor.ip = ips[w.rng.gen_range(0..ips.len())].clone();
                    }
                }
            }
            if away {
                if let Some(ip) = &trip_ip {
                    c.actor.ip = ip.clone();
                }
            } else if c.abroad {
                c.actor.ip = home_ip.clone();
            }
            let mut steps: Vec<Play> = login_plays.clone();
            if w.rng.gen_bool(0.04) {
                steps.push(Play { retries: w.spec.failures.retries, ..play(Step::PhoneAuth, (0.04 * c.fail_mult).min(0.9), "carrier_mismatch") });
            }
            w.session(&c.actor, t, &steps, timing, None);
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

/// A member of staff, as attacks see them.
#[derive(Debug, Clone)]
pub(crate) struct Staff {
    pub id: String,
    pub device: String,
    pub ip: String,
    /// Their job is batch exports.
    pub batch: bool,
}

/// Staff of the bank's operations centre: weekday office hours, a handful of
/// records at a time; in some worlds, teams whose job is batch exports.
pub(crate) fn staff(w: &mut World, n: usize, customers: &[crate::honest::Customer]) -> Vec<Staff> {
    let spec = w.spec.staff.clone();
    let mut out = Vec::new();
    // Teams share a /24 of the office network; some teams do batch exports.
    let mut team_batch: Vec<bool> = Vec::new();
    for i in 0..n {
        let staff = w.hex("st-", 4);
        let device = w.hex("ws-", 6);
        let (ip, batch) = if spec.team_size == 0 {
            (format!("10.20.{}.{}", w.rng.gen_range(1..8), w.rng.gen_range(2..250)), false)
        } else {
            let team = i / spec.team_size as usize;
            if team_batch.len() <= team {
                let b = chance(w, spec.batch_team_share);
                team_batch.push(b);
            }
            (format!("10.20.{}.{}", team + 1, w.rng.gen_range(2..250)), team_batch[team])
        };
        out.push(Staff { id: staff, device, ip, batch });
    }
    for s in out.clone() {
        for day in 0..i64::from(w.days) {
            // The data starts on a Monday; weekends are quiet.
            if day % 7 >= 5 {
                continue;
            }
            let lookups = w.rng.gen_range(spec.lookups.0..spec.lookups.1);
            for _ in 0..lookups {
                let t = { let h = w.rng.gen_range(9.0..18.0); w.at_local_hour(day, h) };
                let customer = (!customers.is_empty()).then(|| customers[w.rng.gen_range(0..customers.len())].actor.customer.clone());
                let export = w.rng.gen_bool(0.05);
                let records = if export { w.rng.gen_range(1..6) } else { 1 };
                w.staff_access(&s.id, &s.device, &s.ip, t, customer, export, records, None);
            }
            if s.batch {
                // Their normal job: a few big exports in office hours.
                let exports = w.rng.gen_range(spec.batch_exports.0..=spec.batch_exports.1);
                for _ in 0..exports {
                    let t = { let h = w.rng.gen_range(9.5..17.5); w.at_local_hour(day, h) };
                    let records = w.rng.gen_range(spec.batch_records.0..=spec.batch_records.1);
                    w.staff_access(&s.id, &s.device, &s.ip, t, None, true, records, None);
                }
            }
        }
    }
    overtime(w, &out, customers);
    out
}

/// Honest off-hours work: some members now and then stay late (from 18:00
/// to 19:30, for half an hour to three hours) or start early (06:30 to
/// 08:00, until 09:00), 2 to 12 single lookups. The bank's staff hours then
/// have a tail, and a rule that reads "records off hours" pays for what it
/// catches in them.
///
/// Drawn from a stream of its own, seeded from the staff drawn, so that its
/// own draws do not shift the attacks drawn after it. The attacks of a world
/// with overtime still differ from the same seeds' before it: a lookup names
/// a customer, and attacks that pick victims by their history, or size an
/// insider's pull by their usual day, read it.
fn overtime(w: &mut World, staff: &[Staff], customers: &[crate::honest::Customer]) {
    let (share, p) = (w.spec.staff.overtime_share, w.spec.staff.overtime_p);
    if share <= 0.0 || p <= 0.0 {
        return;
    }
    let seed = staff.iter().flat_map(|s| s.id.bytes()).fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let main = std::mem::replace(&mut w.rng, ChaCha8Rng::seed_from_u64(seed));
    for s in staff {
        if !chance(w, share) {
            continue;
        }
        for day in 0..i64::from(w.days) {
            if day % 7 >= 5 || !chance(w, p) {
                continue;
            }
            let (from, to) = if w.rng.gen_bool(0.7) {
                let from = w.rng.gen_range(18.0..19.5);
                (from, from + w.rng.gen_range(0.5..3.0))
            } else {
                (w.rng.gen_range(6.5..8.0), 9.0)
            };
            for _ in 0..w.rng.gen_range(2..=12) {
                let t = { let h = w.rng.gen_range(from..to); w.at_local_hour(day, h) };
                let customer = (!customers.is_empty()).then(|| customers[w.rng.gen_range(0..customers.len())].actor.customer.clone());
                w.staff_access(&s.id, &s.device, &s.ip, t, customer, false, 1, None);
            }
        }
    }
    w.rng = main;
}
