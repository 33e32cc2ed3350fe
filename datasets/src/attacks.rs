//! Attacks, each played as incidents with a start, a duration and a label.
//!
//! Every scenario takes a strength in 0..=1: 1 is blatant (many identities,
//! fast, machine-regular), 0 is as subtle as the attack can be and still be
//! that attack.

use std::fmt;
use std::str::FromStr;

use haechi_features::{Channel, Step};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::honest::{Customer, Staff};
use crate::world::{play, Actor, Play, Timing, World, DAY_MS, HEADLESS_AGENTS, HOUR_MS, LOGIN, ONBOARDING};

/// The attack types the generator can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    IdReuse,
    IpMultiIdentity,
    DeviceFarm,
    Bot,
    BruteForce,
    OddHourTakeover,
    MuleAccount,
    StaffBulk,
}

impl Attack {
    /// Every attack type.
    pub const ALL: [Attack; 8] = [
        Attack::IdReuse,
        Attack::IpMultiIdentity,
        Attack::DeviceFarm,
        Attack::Bot,
        Attack::BruteForce,
        Attack::OddHourTakeover,
        Attack::MuleAccount,
        Attack::StaffBulk,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Attack::IdReuse => "id_reuse",
            Attack::IpMultiIdentity => "ip_multi_identity",
            Attack::DeviceFarm => "device_farm",
            Attack::Bot => "bot",
            Attack::BruteForce => "brute_force",
            Attack::OddHourTakeover => "odd_hour_takeover",
            Attack::MuleAccount => "mule_account",
            Attack::StaffBulk => "staff_bulk",
        }
    }
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Attack {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Attack::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| {
            format!("unknown scenario `{s}`; known: {}", Attack::ALL.map(Attack::as_str).join(", "))
        })
    }
}

fn lerp(lo: f64, hi: f64, s: f64) -> f64 {
    lo + (hi - lo) * s
}

/// A fresh stolen or synthetic identity.
pub(crate) fn identity(w: &mut World) -> (String, String, String) {
    (w.hex("c-", 8), w.hex("doc-", 12), w.hex("acct-", 10))
}

/// Play one incident of `attack` at strength `s`, starting near `start`.
pub(crate) fn play_incident(w: &mut World, attack: Attack, s: f64, incident: u32, customers: &[Customer], staff: &[Staff]) {
    let label = Some((attack, incident));
    // The longest incident spans about half a day: start early enough that
    // the data holds all of it.
    let start = w.rng.gen_range(w.start_ms + DAY_MS..w.end_ms() - 14 * HOUR_MS);
    // The fixed world never plays evasive variants, and draws nothing for them.
    if w.spec.evasive_share > 0.0 && w.rng.gen_bool(w.spec.evasive_share.min(1.0)) {
        let variant = crate::evasive::play_evasive(w, attack, incident, customers, staff);
        w.variants.insert(incident, variant);
        return;
    }
    w.variants.insert(incident, "obvious");
    match attack {
        Attack::IdReuse => {
            // One genuine card, photographed once, behind several new accounts.
            let doc = w.hex("doc-", 12);
            let accounts = lerp(3.0, 8.0, s).round() as usize;
            let span = lerp(10.0, 0.5, s) * HOUR_MS as f64;
            for k in 0..accounts {
                let t = start + (span * k as f64 / accounts as f64) as i64 + w.rng.gen_range(0..120_000);
                let channel = if w.rng.gen_bool(0.5) { Channel::App } else { Channel::Web };
                let actor = Actor {
                    customer: w.hex("c-", 8),
                    id_doc: Some(doc.clone()),
                    account: Some(w.hex("acct-", 10)),
                    device: w.hex("dv-", 10),
                    ip: if channel == Channel::App { w.nat_ip() } else { w.home_ip() },
                    agent: if channel == Channel::App { w.app_agent() } else { w.web_agent() },
                    channel,
                    region: w.region(),
                };
                w.session(&actor, t, &ONBOARDING, Timing::Human { speed: lerp(1.0, 1.6, s) }, label);
            }
        }
        Attack::IpMultiIdentity => {
            let ip = w.hosting_ip();
            let n = lerp(4.0, 20.0, s).round() as usize;
            let span = lerp(6.0, 0.3, s) * HOUR_MS as f64;
            let agent = w.web_agent();
            for k in 0..n {
                let (c, d, a) = identity(w);
                let actor = Actor { customer: c, id_doc: Some(d), account: Some(a), device: w.hex("br-", 10), ip: ip.clone(), agent, channel: Channel::Web, region: w.region() };
                let t = start + (span * k as f64 / n as f64) as i64;
                w.session(&actor, t, &ONBOARDING, Timing::Human { speed: lerp(1.2, 2.0, s) }, label);
            }
        }
        Attack::DeviceFarm => {
            let device = w.hex("dv-", 10);
            let agent = w.app_agent();
            let n = lerp(4.0, 16.0, s).round() as usize;
            let span = lerp(8.0, 0.5, s) * HOUR_MS as f64;
            for k in 0..n {
                let (c, d, a) = identity(w);
                let actor = Actor { customer: c, id_doc: Some(d), account: Some(a), device: device.clone(), ip: w.nat_ip(), agent, channel: Channel::App, region: w.region() };
                let t = start + (span * k as f64 / n as f64) as i64;
                w.session(&actor, t, &ONBOARDING, Timing::Human { speed: lerp(1.0, 1.8, s) }, label);
            }
        }
        Attack::Bot => {
            let sessions = lerp(3.0, 15.0, s).round() as usize;
            let net = format!("{}.{}.{}", [45, 103, 185][w.rng.gen_range(0..3)], w.rng.gen_range(1..255), w.rng.gen_range(0..255));
            let step_ms = lerp(1200.0, 150.0, s);
            let gap_ms = lerp(2500.0, 400.0, s);
            let jitter = lerp(0.08, 0.01, s);
            let headless = w.rng.gen_bool(lerp(0.3, 0.9, s));
            let mut t = start;
            for _ in 0..sessions {
                let (c, d, a) = identity(w);
                let agent = if headless { HEADLESS_AGENTS[w.rng.gen_range(0..HEADLESS_AGENTS.len())] } else { w.web_agent() };
                let actor = Actor {
                    customer: c,
                    id_doc: Some(d),
                    account: Some(a),
                    device: w.hex("br-", 10),
                    ip: format!("{net}.{}", w.rng.gen_range(2..250)),
                    agent,
                    channel: Channel::Web,
                    region: "KR-11",
                };
                let steps: Vec<Play> = ONBOARDING.iter().map(|p| Play { fail_p: 0.0, ..*p }).collect();
                let (end, _) = w.session(&actor, t, &steps, Timing::Machine { step_ms, gap_ms, jitter }, label);
                t = end + (gap_ms * 2.0) as i64;
            }
        }
        Attack::BruteForce => {
            let Some(victim) = pick(w, customers, |_| true) else { return };
            let attempts = lerp(8.0, 40.0, s).round() as usize;
            let span = lerp(20.0, 2.0, s) * 60_000.0;
            let actor = Actor { device: w.hex("dv-", 10), ip: w.hosting_ip(), agent: w.app_agent(), ..victim.actor.clone() };
            let second = if w.rng.gen_bool(0.5) { Step::Otp } else { Step::AccountVerify };
            let session = w.hex("s-", 8);
            w.emit(&actor, &session, start, Step::Login, false, "", 5000, label);
            for k in 0..attempts {
                let t = start + 10_000 + (span * k as f64 / attempts as f64) as i64 + w.rng.gen_range(0..3000);
                let dur = w.rng.gen_range(1500..6000);
                w.emit(&actor, &session, t, second, true, if second == Step::Otp { "otp_mismatch" } else { "code_mismatch" }, dur, label);
            }
        }
        Attack::OddHourTakeover => {
            // A daytime customer with an established pattern: several daytime
            // events before the takeover night, none at night.
            let day = w.rng.gen_range(3..i64::from(w.days).max(4)).min(i64::from(w.days) - 1);
            let hour = lerp(5.0, 3.0, s) + w.rng.gen_range(-0.5..0.5);
            let t = w.at_local_hour(day, hour);
            let history = daytime_history(w, t);
            let Some(victim) = pick(w, customers, |c| !c.night_shift && c.hour > 9.5 && c.hour < 17.0 && history.get(c.actor.customer.as_str()).is_some_and(|&n| n >= 4)) else { return };
            let region = w.other_region(victim.actor.region);
            let actor = Actor { device: w.hex("dv-", 10), ip: w.home_ip(), region, ..victim.actor.clone() };
            let mut steps: Vec<Play> = LOGIN.iter().map(|p| Play { fail_p: 0.0, ..*p }).collect();
            steps.push(play(Step::PhoneAuth, 0.0, ""));
            steps.push(play(Step::AccountOpen, 0.0, ""));
            w.session(&actor, t, &steps, Timing::Human { speed: 1.3 }, label);
        }
        Attack::MuleAccount => {
            let account = w.hex("acct-", 10);
            let n = lerp(4.0, 15.0, s).round() as usize;
            let span = lerp(12.0, 1.0, s) * HOUR_MS as f64;
            for k in 0..n {
                let (c, d, _) = identity(w);
                let channel = if w.rng.gen_bool(0.6) { Channel::App } else { Channel::Web };
                let actor = Actor {
                    customer: c,
                    id_doc: Some(d),
                    account: Some(account.clone()),
                    device: w.hex("dv-", 10),
                    ip: if channel == Channel::App { w.nat_ip() } else { w.home_ip() },
                    agent: if channel == Channel::App { w.app_agent() } else { w.web_agent() },
                    channel,
                    region: w.region(),
                };
                let t = start + (span * k as f64 / n as f64) as i64;
                w.session(&actor, t, &ONBOARDING, Timing::Human { speed: 1.2 }, label);
            }
        }
        Attack::StaffBulk => {
            let (staff_id, device, ip) = match staff.get(w.rng.gen_range(0..staff.len().max(1))) {
                Some(s) => (s.id.clone(), s.device.clone(), s.ip.clone()),
                None => (w.hex("st-", 4), w.hex("ws-", 6), "10.20.1.9".to_owned()),
            };
            let day = w.rng.gen_range(0..i64::from(w.days));
            let mut t = { let h = w.rng.gen_range(22.0..27.5); w.at_local_hour(day, h) };
            let records = lerp(100.0, 500.0, s).round() as u64;
            let mut pulled = 0;
            let pace_ms = lerp(60_000.0, 4_000.0, s);
            while pulled < records {
                let export = w.rng.gen_bool(0.3);
                let n = if export { w.rng.gen_range(20..60).min(records - pulled) } else { 1 };
                let customer = (!customers.is_empty()).then(|| customers[w.rng.gen_range(0..customers.len())].actor.customer.clone());
                w.staff_access(&staff_id, &device, &ip, t, customer, export, n, label);
                pulled += n;
                t += (pace_ms * w.rng.gen_range(0.5..1.5)) as i64;
            }
        }
    }
}

/// Honest events per customer before `t`, counting only customers never seen
/// between 22:00 and 06:00 local time.
pub(crate) fn daytime_history(w: &World, t: i64) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    let mut night = std::collections::HashSet::new();
    for e in w.events.iter().filter(|e| e.ts_ms < t && e.label.is_none()) {
        let Some(c) = e.customer_id.as_deref() else { continue };
        let hour = (e.ts_ms + crate::world::KST_MS).rem_euclid(DAY_MS) / HOUR_MS;
        if !(6..22).contains(&hour) {
            night.insert(c);
        }
        *counts.entry(c).or_insert(0) += 1;
    }
    counts.into_iter().filter(|(c, _)| !night.contains(c)).map(|(c, n)| (c.to_owned(), n)).collect()
}

pub(crate) fn pick<'a>(w: &mut World, customers: &'a [Customer], ok: impl Fn(&Customer) -> bool) -> Option<&'a Customer> {
    let eligible: Vec<&Customer> = customers.iter().filter(|c| ok(c)).collect();
    (!eligible.is_empty()).then(|| eligible[w.rng.gen_range(0..eligible.len())])
}
