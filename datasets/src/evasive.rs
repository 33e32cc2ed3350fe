//! Evasive variants of the attacks: each keeps its attack's defining signal,
//! played less blatantly (spread in time, through shared addresses, with
//! human-looking agents). None is made identical to honest traffic: that
//! would measure noise, not detection. Played only in drawn worlds, with
//! probability `WorldSpec::evasive_share` per incident.

use haechi_features::{Channel, Step};
use rand::Rng;

use crate::attacks::{daytime_history, identity, pick, Attack};
use crate::honest::{Customer, Staff};
use crate::world::{play, Actor, Play, Timing, World, DAY_MS, HOUR_MS, KST_MS, LOGIN, ONBOARDING};

/// A start for an incident spanning `span` ms (shortened to fit the data),
/// and the span.
fn window(w: &mut World, span: i64) -> (i64, i64) {
    let room = w.end_ms() - w.start_ms - 2 * HOUR_MS;
    let span = span.min(room * 9 / 10).max(HOUR_MS);
    let lo = w.start_ms + HOUR_MS;
    let hi = (w.end_ms() - span - HOUR_MS).max(lo + 1);
    (w.rng.gen_range(lo..hi), span)
}

/// A fresh applicant on app or web: new device, an ordinary address.
fn applicant(w: &mut World, app_p: f64) -> Actor {
    let (customer, doc, account) = identity(w);
    let channel = if w.rng.gen_bool(app_p) { Channel::App } else { Channel::Web };
    Actor {
        customer,
        id_doc: Some(doc),
        account: Some(account),
        device: if channel == Channel::App { w.hex("dv-", 10) } else { w.hex("br-", 10) },
        ip: if channel == Channel::App { w.nat_ip() } else { w.home_ip() },
        agent: if channel == Channel::App { w.app_agent() } else { w.web_agent() },
        channel,
        region: w.region(),
    }
}

fn human(w: &mut World) -> Timing {
    Timing::Human { speed: w.rng.gen_range(0.9..1.3) }
}

/// Play an evasive incident of `attack`; returns the variant's label.
pub(crate) fn play_evasive(w: &mut World, attack: Attack, incident: u32, customers: &[Customer], staff: &[Staff]) -> &'static str {
    let label = Some((attack, incident));
    match attack {
        Attack::IdReuse => {
            // Signal: one id_doc_hash behind 2–4 distinct customer ids (no honest
            // card ever opens a second account here), even though the accounts
            // are days apart on different devices, addresses and channels.
            let doc = w.hex("doc-", 12);
            let accounts = w.rng.gen_range(2..=4);
            let want = (w.rng.gen_range(1.0..3.0) * DAY_MS as f64) as i64;
            let (t0, span) = window(w, want);
            for k in 0..accounts {
                let t = t0 + span * k / accounts + w.rng.gen_range(0..2 * HOUR_MS);
                let mut actor = applicant(w, 0.5);
                actor.id_doc = Some(doc.clone());
                let timing = human(w);
                w.session(&actor, t, &ONBOARDING, timing, label);
            }
            "evasive:spread"
        }
        Attack::IpMultiIdentity if w.rng.gen_bool(0.5) => {
            // Signal: each hosting address (a proxy, not a home or carrier
            // address) onboards 2–4 fresh identities within hours.
            let proxies = w.rng.gen_range(3..=6);
            let want = w.rng.gen_range(2..=8) * HOUR_MS;
            let (t0, span) = window(w, want);
            for _ in 0..proxies {
                let ip = w.hosting_ip();
                for _ in 0..w.rng.gen_range(2..=4) {
                    let mut actor = applicant(w, 0.0);
                    actor.ip = ip.clone();
                    let t = t0 + w.rng.gen_range(0..span);
                    let timing = human(w);
                    w.session(&actor, t, &ONBOARDING, timing, label);
                }
            }
            "evasive:proxy_pool"
        }
        Attack::IpMultiIdentity => {
            // Signal: 8–20 fresh identities onboarding through ONE carrier NAT
            // exit within 1–3 hours, a burst well above that exit's share of
            // the world's honest onboarding.
            let exit = w.nat_ip();
            let n = w.rng.gen_range(8..=20);
            let want = w.rng.gen_range(1..=3) * HOUR_MS;
            let (t0, span) = window(w, want);
            for _ in 0..n {
                let mut actor = applicant(w, 0.6);
                actor.ip = exit.clone();
                let t = t0 + w.rng.gen_range(0..span);
                let timing = human(w);
                w.session(&actor, t, &ONBOARDING, timing, label);
            }
            "evasive:nat_exit"
        }
        Attack::DeviceFarm => {
            // Signal: 3–6 fresh identities onboarding on one device id within
            // 1–2 days (a family phone carries existing customers, not a
            // stream of new applicants), though each comes through carrier NAT.
            let device = w.hex("dv-", 10);
            let agent = w.app_agent();
            let n = w.rng.gen_range(3..=6);
            let want = (w.rng.gen_range(1.0..2.0) * DAY_MS as f64) as i64;
            let (t0, span) = window(w, want);
            for k in 0..n {
                let (c, d, a) = identity(w);
                let actor = Actor { customer: c, id_doc: Some(d), account: Some(a), device: device.clone(), ip: w.nat_ip(), agent, channel: Channel::App, region: w.region() };
                let t = t0 + span * k / n + w.rng.gen_range(0..HOUR_MS);
                let timing = human(w);
                w.session(&actor, t, &ONBOARDING, timing, label);
            }
            "evasive:slow_farm"
        }
        Attack::Bot => {
            // Signal: photo capture, face match and liveness in 200–700 ms,
            // faster than a person can hold up a card or a face, in every
            // session, several sessions from one /24 or one device. The agent
            // is a normal app and the timing is jittered.
            let sessions = w.rng.gen_range(3..=8);
            let jitter = w.rng.gen_range(0.15..0.35);
            let quick_ms = w.rng.gen_range(200.0..700.0);
            let other_ms = w.rng.gen_range(1500.0..4000.0);
            let gap_ms = w.rng.gen_range(800.0..2500.0);
            let one_device = w.rng.gen_bool(0.5);
            let net = format!("{}.{}.{}", [45, 103, 185][w.rng.gen_range(0..3)], w.rng.gen_range(1..255), w.rng.gen_range(0..255));
            let device = w.hex("dv-", 10);
            let agent = w.app_agent();
            let (mut t, _) = window(w, 6 * HOUR_MS);
            for _ in 0..sessions {
                let (c, d, a) = identity(w);
                let actor = Actor {
                    customer: c,
                    id_doc: Some(d),
                    account: Some(a),
                    device: if one_device { device.clone() } else { w.hex("dv-", 10) },
                    ip: if one_device { w.nat_ip() } else { format!("{net}.{}", w.rng.gen_range(2..250)) },
                    agent,
                    channel: Channel::App,
                    region: w.region(),
                };
                let session = w.hex("s-", 8);
                let jit = |w: &mut World, x: f64| x * (1.0 + w.rng.gen_range(-jitter..=jitter));
                for p in ONBOARDING {
                    let quick = matches!(p.step, Step::IdOcr | Step::FaceMatch | Step::Liveness);
                    let dur = if quick { jit(w, quick_ms).clamp(200.0, 700.0) } else { jit(w, other_ms) };
                    t += dur as i64;
                    w.emit(&actor, &session, t, p.step, false, "", dur as u64, label);
                    t += jit(w, gap_ms) as i64;
                }
                t += w.rng.gen_range(2..30) * 60_000;
            }
            "evasive:jittered_app"
        }
        Attack::BruteForce => {
            // Signal: second-factor failures piling up on ONE customer over
            // hours (2–6 an hour for 4–12 hours), from devices and addresses
            // that customer never used, though no address tries twice in a row.
            let Some(victim) = pick(w, customers, |_| true) else { return "evasive:low_and_slow" };
            let hours = w.rng.gen_range(4..=12);
            let second = if w.rng.gen_bool(0.5) { Step::Otp } else { Step::AccountVerify };
            let reason = if second == Step::Otp { "otp_mismatch" } else { "code_mismatch" };
            let one_device = w.rng.gen_bool(0.5);
            let device = w.hex("dv-", 10);
            let agent = w.app_agent();
            let (t0, _) = window(w, hours * HOUR_MS);
            for h in 0..hours {
                for _ in 0..w.rng.gen_range(2..=6) {
                    let t = t0 + h * HOUR_MS + w.rng.gen_range(0..HOUR_MS);
                    let ip = if w.rng.gen_bool(0.5) { w.hosting_ip() } else { w.nat_ip() };
                    let device = if one_device { device.clone() } else { w.hex("dv-", 10) };
                    let actor = Actor { device, ip, agent, ..victim.actor.clone() };
                    let session = w.hex("s-", 8);
                    let d1 = w.rng.gen_range(3000..9000);
                    w.emit(&actor, &session, t, Step::Login, false, "", d1, label);
                    let d2 = w.rng.gen_range(4000..15000);
                    w.emit(&actor, &session, t + d1 as i64 + 4000, second, true, reason, d2, label);
                }
            }
            "evasive:low_and_slow"
        }
        Attack::OddHourTakeover => {
            // Signal: a device the customer never used, at an hour they were
            // never active, on a sensitive step (account_open) — played at the
            // edges of the night, with a new region or with the new device
            // alone, and sometimes on a customer with little history.
            let day = w.rng.gen_range(2..i64::from(w.days).max(3)).min(i64::from(w.days) - 1);
            let hour = if w.rng.gen_bool(0.5) { w.rng.gen_range(22.0..23.5) } else { w.rng.gen_range(5.0..6.5) };
            let t = w.at_local_hour(day, hour);
            let little = w.rng.gen_bool(0.3);
            let victim = if little {
                let sessions = daytime_sessions(w, t);
                pick(w, customers, |c| !c.night_shift && c.hour > 9.5 && c.hour < 17.0 && sessions.get(c.actor.customer.as_str()).is_some_and(|&n| (1..=2).contains(&n)))
            } else {
                None
            };
            let victim = match victim {
                Some(v) => Some(v),
                None => {
                    let history = daytime_history(w, t);
                    pick(w, customers, |c| !c.night_shift && c.hour > 9.5 && c.hour < 17.0 && history.get(c.actor.customer.as_str()).is_some_and(|&n| n >= 4))
                }
            };
            let Some(victim) = victim else { return "evasive:night_edge" };
            let region_seen = w.spec.fields.region != crate::spec::Presence::Never;
            let new_region = region_seen && w.rng.gen_bool(0.5);
            let mut actor = Actor { device: w.hex("dv-", 10), ..victim.actor.clone() };
            if new_region {
                actor.region = w.other_region(victim.actor.region);
                actor.ip = w.home_ip();
            } else if actor.channel == Channel::App {
                actor.ip = w.nat_ip();
            }
            let mut steps: Vec<Play> = LOGIN.iter().map(|p| Play { fail_p: 0.0, ..*p }).collect();
            if new_region {
                steps.push(play(Step::PhoneAuth, 0.0, ""));
            }
            steps.push(play(Step::AccountOpen, 0.0, ""));
            let timing = human(w);
            w.session(&actor, t, &steps, timing, label);
            if new_region { "evasive:night_edge_new_region" } else { "evasive:night_edge_new_device" }
        }
        Attack::MuleAccount => {
            // Signal: one account_hash verified by 3–6 distinct identities, the
            // recruits spread over up to a week (or the whole data).
            let account = w.hex("acct-", 10);
            let n = w.rng.gen_range(3..=6);
            let want = 7 * DAY_MS;
            let (t0, span) = window(w, want);
            for _ in 0..n {
                let mut actor = applicant(w, 0.6);
                actor.account = Some(account.clone());
                let t = t0 + w.rng.gen_range(0..span);
                let timing = human(w);
                w.session(&actor, t, &ONBOARDING, timing, label);
            }
            "evasive:slow_recruit"
        }
        Attack::StaffBulk => {
            // Signal: a staff member's daily records 1.5–3× their own usual
            // volume, at hours they never work (evening or early morning),
            // though in single views and small exports rather than one dump.
            let quiet: Vec<&Staff> = staff.iter().filter(|s| !s.batch).collect();
            let pool: Vec<&Staff> = if quiet.is_empty() { staff.iter().collect() } else { quiet };
            let Some(member) = (!pool.is_empty()).then(|| pool[w.rng.gen_range(0..pool.len())].clone()) else { return "evasive:quiet_insider" };
            let usual = usual_daily_records(w, &member.id).max(5.0);
            let target = (usual * w.rng.gen_range(1.5..3.0)).round() as u64;
            let day = w.rng.gen_range(0..i64::from(w.days));
            let hour = if w.rng.gen_bool(0.5) { w.rng.gen_range(19.5..22.0) } else { w.rng.gen_range(4.5..6.0) };
            let mut t = w.at_local_hour(day, hour);
            let span_ms = w.rng.gen_range(1.5..3.0) * HOUR_MS as f64;
            let pace = span_ms / target as f64;
            let mut pulled = 0;
            while pulled < target {
                let export = w.rng.gen_bool(0.1);
                let n = if export { w.rng.gen_range(2..6).min(target - pulled) } else { 1 };
                let customer = (!customers.is_empty()).then(|| customers[w.rng.gen_range(0..customers.len())].actor.customer.clone());
                w.staff_access(&member.id, &member.device, &member.ip, t, customer, export, n, label);
                pulled += n;
                t += (pace * n as f64 * w.rng.gen_range(0.5..1.5)) as i64;
            }
            "evasive:quiet_insider"
        }
    }
}

/// Records a member of staff touches on a weekday they work, on average.
fn usual_daily_records(w: &World, staff_id: &str) -> f64 {
    let mut days = std::collections::BTreeMap::new();
    for e in w.events.iter().filter(|e| e.label.is_none() && e.staff_id.as_deref() == Some(staff_id)) {
        *days.entry((e.ts_ms + KST_MS).div_euclid(DAY_MS)).or_insert(0u64) += e.records.unwrap_or(1);
    }
    if days.is_empty() {
        return 0.0;
    }
    days.values().sum::<u64>() as f64 / days.len() as f64
}

/// Honest sessions per customer before `t`, counting only customers never
/// seen between 22:00 and 06:00 local time.
fn daytime_sessions(w: &World, t: i64) -> std::collections::HashMap<String, usize> {
    let mut sessions: std::collections::HashMap<&str, std::collections::HashSet<&str>> = std::collections::HashMap::new();
    let mut night = std::collections::HashSet::new();
    for e in w.events.iter().filter(|e| e.ts_ms < t && e.label.is_none()) {
        let (Some(c), Some(s)) = (e.customer_id.as_deref(), e.session_id.as_deref()) else { continue };
        let hour = (e.ts_ms + KST_MS).rem_euclid(DAY_MS) / HOUR_MS;
        if !(6..22).contains(&hour) {
            night.insert(c);
        }
        sessions.entry(c).or_default().insert(s);
    }
    sessions.into_iter().filter(|(c, _)| !night.contains(c)).map(|(c, s)| (c.to_owned(), s.len())).collect()
}
