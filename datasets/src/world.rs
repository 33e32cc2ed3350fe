//! The shared machinery scenarios write events through: seeded randomness,
//! identities, address pools, and session flows with human or machine timing.

use haechi_features::{Channel, Outcome, Step};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

use crate::attacks::Attack;
use crate::generator::GeneratedEvent;
use crate::spec::{Presence, WorldSpec};

pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const DAY_MS: i64 = 24 * HOUR_MS;
/// KST is UTC+9.
pub(crate) const KST_MS: i64 = 9 * HOUR_MS;

pub(crate) const REGIONS: [(&str, u32); 10] = [
    ("KR-11", 40),
    ("KR-41", 25),
    ("KR-26", 8),
    ("KR-27", 5),
    ("KR-28", 6),
    ("KR-29", 3),
    ("KR-30", 3),
    ("KR-31", 2),
    ("KR-47", 4),
    ("KR-48", 4),
];

/// Regions of customers abroad (ISO 3166-2, as the event contract wants).
pub(crate) const FOREIGN_REGIONS: [&str; 8] = ["US-CA", "US-NY", "JP-13", "JP-27", "VN-SG", "VN-HN", "AU-NSW", "DE-BE"];

pub(crate) const APP_AGENTS: [&str; 4] = [
    "KBankApp/5.2.1 (Android 14; SM-S918N) okhttp/4.12.0",
    "KBankApp/5.2.1 (iOS 17.5; iPhone15,2) CFNetwork/1494",
    "KBankApp/5.1.9 (Android 13; SM-A546N) okhttp/4.11.0",
    "KBankApp/5.2.0 (iOS 16.7; iPhone13,3) CFNetwork/1410",
];
pub(crate) const WEB_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
];
pub(crate) const HEADLESS_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/130.0 Safari/537.36",
    "python-requests/2.32.3",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36 Selenium",
];

/// Who is acting in a session.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub customer: String,
    pub id_doc: Option<String>,
    pub account: Option<String>,
    pub device: String,
    pub ip: String,
    pub agent: &'static str,
    pub channel: Channel,
    pub region: &'static str,
}

/// How a session's steps are timed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Timing {
    /// Log-normal step durations around human medians, with thinking gaps.
    Human { speed: f64 },
    /// Fixed step duration and fixed gap with a small relative jitter.
    Machine { step_ms: f64, gap_ms: f64, jitter: f64 },
}

/// One step to play, and the failure it may suffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Play {
    pub step: Step,
    pub fail_p: f64,
    pub reason: &'static str,
    pub retries: u8,
}

pub(crate) const fn play(step: Step, fail_p: f64, reason: &'static str) -> Play {
    Play { step, fail_p, reason, retries: 2 }
}

pub(crate) struct World {
    pub rng: ChaCha8Rng,
    pub start_ms: i64,
    pub days: u32,
    pub events: Vec<GeneratedEvent>,
    pub nat_ips: Vec<String>,
    pub spec: WorldSpec,
    /// Median multiplier per step, in `Step::ALL` order.
    step_mult: [f64; 11],
    /// PC방: the café's address and its PCs' device ids.
    pub pc_bangs: Vec<(String, Vec<String>)>,
    /// Corporate and university NATs: each a few addresses.
    pub offices: Vec<Vec<String>>,
    /// Incident number → variant played, for the labels (not in the fixed world).
    pub variants: std::collections::BTreeMap<u32, &'static str>,
    seq: u64,
}

impl World {
    pub fn new(seed: u64, start_ms: i64, days: u32, spec: WorldSpec) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Carrier NAT (in the fixed world three /24s of a mobile carrier,
        // eight exits each). Most app traffic of the whole country leaves
        // through addresses like these.
        let mut nat_ips = Vec::new();
        let exits = spec.nat.exits as usize;
        for k in 0..exits {
            let net = &spec.nat.prefixes[k * spec.nat.prefixes.len() / exits];
            nat_ips.push(format!("{net}.{}", rng.gen_range(2..250)));
        }
        let mut step_mult = [1.0; 11];
        for (i, s) in Step::ALL.iter().enumerate() {
            step_mult[i] = spec.timing.median_mult.get(s.as_str()).copied().unwrap_or(1.0);
        }
        let mut w = World { rng, start_ms, days, events: Vec::new(), nat_ips, spec, step_mult, pc_bangs: Vec::new(), offices: Vec::new(), variants: Default::default(), seq: 0 };
        // Places drawn only when the world has them, so that the fixed world
        // draws exactly what it always drew.
        if w.spec.shared.pc_bang_share > 0.0 {
            for _ in 0..w.spec.shared.pc_bangs {
                let ip = w.home_ip();
                let pcs = w.rng.gen_range(10..40);
                let devices = (0..pcs).map(|_| w.hex("br-", 10)).collect();
                w.pc_bangs.push((ip, devices));
            }
        }
        if w.spec.shared.office_share > 0.0 {
            for _ in 0..w.spec.shared.office_nats {
                let a = [147, 166, 114, 203][w.rng.gen_range(0..4)];
                let net = format!("{a}.{}.{}", w.rng.gen_range(1..255), w.rng.gen_range(0..255));
                let ips = (0..w.spec.shared.office_ips).map(|_| format!("{net}.{}", w.rng.gen_range(2..250))).collect();
                w.offices.push(ips);
            }
        }
        w
    }

    /// An address on IPv6 mobile: the device's /64 and a fresh interface id.
    pub fn v6_ip(&mut self, prefix64: &str) -> String {
        let r = &mut self.rng;
        format!("{prefix64}:{:x}:{:x}:{:x}:{:x}", r.gen::<u16>() | 0x200, r.gen::<u16>(), r.gen::<u16>(), r.gen::<u16>())
    }

    /// A device's /64 on a Korean carrier's IPv6 mobile network.
    pub fn v6_prefix(&mut self) -> String {
        let carrier = ["2001:2d8", "2001:e60", "2001:4430"][self.rng.gen_range(0..3)];
        format!("{carrier}:{:x}:{:x}", self.rng.gen::<u16>(), self.rng.gen::<u16>())
    }

    /// An address abroad: US clouds and ISPs, Asia-Pacific space.
    pub fn foreign_ip(&mut self) -> String {
        format!("{}.{}.{}.{}", [8, 52, 203, 126, 113][self.rng.gen_range(0..5)], self.rng.gen_range(1..255), self.rng.gen_range(0..255), self.rng.gen_range(1..255))
    }

    pub fn foreign_region(&mut self) -> &'static str {
        FOREIGN_REGIONS[self.rng.gen_range(0..FOREIGN_REGIONS.len())]
    }

    /// Whether a field with presence `p` goes on an event that is not an
    /// onboarding step using it. Draws only for `Sometimes`.
    fn present(&mut self, p: Presence) -> bool {
        match p {
            Presence::Always => true,
            Presence::Sometimes(x) => self.rng.gen_bool(x.clamp(0.0, 1.0)),
            Presence::OnboardingOnly | Presence::Never => false,
        }
    }

    pub fn end_ms(&self) -> i64 {
        self.start_ms + i64::from(self.days) * DAY_MS
    }

    /// A pseudonymous hex id.
    pub fn hex(&mut self, prefix: &str, bytes: usize) -> String {
        let mut s = String::with_capacity(prefix.len() + bytes * 2);
        s.push_str(prefix);
        for _ in 0..bytes {
            let b: u8 = self.rng.gen();
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    pub fn region(&mut self) -> &'static str {
        let total: u32 = REGIONS.iter().map(|r| r.1).sum();
        let mut x = self.rng.gen_range(0..total);
        for (r, w) in REGIONS {
            if x < w {
                return r;
            }
            x -= w;
        }
        REGIONS[0].0
    }

    pub fn other_region(&mut self, not: &str) -> &'static str {
        loop {
            let r = REGIONS[self.rng.gen_range(0..REGIONS.len())].0;
            if r != not {
                return r;
            }
        }
    }

    pub fn nat_ip(&mut self) -> String {
        self.nat_ips[self.rng.gen_range(0..self.nat_ips.len())].clone()
    }

    pub fn home_ip(&mut self) -> String {
        format!("{}.{}.{}.{}", [121, 175, 59, 220][self.rng.gen_range(0..4)], self.rng.gen_range(1..255), self.rng.gen_range(0..255), self.rng.gen_range(1..255))
    }

    /// Hosting or proxy address space, where scripted attacks come from.
    pub fn hosting_ip(&mut self) -> String {
        format!("{}.{}.{}.{}", [45, 103, 185, 193][self.rng.gen_range(0..4)], self.rng.gen_range(1..255), self.rng.gen_range(0..255), self.rng.gen_range(1..255))
    }

    pub fn app_agent(&mut self) -> &'static str {
        APP_AGENTS[self.rng.gen_range(0..APP_AGENTS.len())]
    }

    pub fn web_agent(&mut self) -> &'static str {
        WEB_AGENTS[self.rng.gen_range(0..WEB_AGENTS.len())]
    }

    /// A time on `day` (from the start) at a local KST hour drawn around `hour`.
    pub fn at_local_hour(&mut self, day: i64, hour: f64) -> i64 {
        let h = hour.rem_euclid(24.0);
        let midnight_kst = self.start_ms + day * DAY_MS;
        midnight_kst + (h * HOUR_MS as f64) as i64 + self.rng.gen_range(0..60_000)
    }

    fn human_ms(&mut self, step: Step, speed: f64) -> f64 {
        let i = Step::ALL.iter().position(|s| *s == step).unwrap_or(0);
        let mult = self.step_mult[i];
        let median_s = match step {
            Step::IdOcr => 14.0,
            Step::IdAuthenticity => 4.0,
            Step::FaceMatch => 9.0,
            Step::Liveness => 11.0,
            Step::AccountVerify => 50.0,
            Step::PhoneAuth => 22.0,
            Step::Otp => 16.0,
            Step::Login => 7.0,
            Step::AccountOpen => 30.0,
            Step::RecordView => 25.0,
            Step::RecordExport => 40.0,
        };
        let d = LogNormal::new((median_s * mult * 1000.0 / speed).ln(), self.spec.timing.sigma).expect("valid lognormal");
        d.sample(&mut self.rng).max(self.spec.timing.floor_ms)
    }

    /// Backend or auto-fill speed.
    fn fast_ms(&mut self) -> f64 {
        self.rng.gen_range(300.0..900.0)
    }

    /// Play a session of `steps` for `actor` from `start`. Returns the end time
    /// and whether the session ran to the end.
    pub fn session(&mut self, actor: &Actor, start: i64, steps: &[Play], timing: Timing, label: Option<(Attack, u32)>) -> (i64, bool) {
        let session = self.hex("s-", 8);
        let mut t = start;
        // App auto-fill (OCR, OTP), for some honest sessions.
        let autofill = self.spec.timing.autofill_share > 0.0
            && label.is_none()
            && matches!(timing, Timing::Human { .. })
            && actor.channel == Channel::App
            && self.rng.gen_bool(self.spec.timing.autofill_share);
        for p in steps {
            let mut tries = 0;
            loop {
                let (dur, gap) = match timing {
                    Timing::Human { speed } => {
                        let backend = matches!(p.step, Step::IdAuthenticity | Step::AccountVerify)
                            && self.spec.timing.backend_fast_p > 0.0
                            && self.rng.gen_bool(self.spec.timing.backend_fast_p);
                        let d = if backend || (autofill && matches!(p.step, Step::IdOcr | Step::Otp)) { self.fast_ms() } else { self.human_ms(p.step, speed) };
                        (d, self.rng.gen_range(1500.0..9000.0) / speed)
                    }
                    Timing::Machine { step_ms, gap_ms, jitter } => (
                        step_ms * (1.0 + self.rng.gen_range(-jitter..=jitter)),
                        gap_ms * (1.0 + self.rng.gen_range(-jitter..=jitter)),
                    ),
                };
                t += dur as i64;
                let failed = self.rng.gen_bool(p.fail_p.clamp(0.0, 1.0));
                self.emit(actor, &session, t, p.step, failed, p.reason, dur as u64, label);
                t += gap as i64;
                if !failed {
                    break;
                }
                tries += 1;
                if tries > p.retries {
                    return (t, false);
                }
            }
            if matches!(timing, Timing::Human { .. }) && label.is_none() && self.rng.gen_bool(0.015) {
                // Gives up half-way, as people do.
                return (t, false);
            }
        }
        (t, true)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn emit(&mut self, a: &Actor, session: &str, t: i64, step: Step, failed: bool, reason: &'static str, dur: u64, label: Option<(Attack, u32)>) {
        let uses_doc = matches!(step, Step::IdOcr | Step::IdAuthenticity | Step::AccountVerify | Step::AccountOpen);
        let uses_account = matches!(step, Step::AccountVerify | Step::AccountOpen);
        let onboarding = matches!(step, Step::IdOcr | Step::IdAuthenticity | Step::FaceMatch | Step::Liveness | Step::AccountVerify | Step::AccountOpen);
        let fields = self.spec.fields;
        let id_doc_hash = if uses_doc || self.present(fields.id_doc_hash) { a.id_doc.clone() } else { None };
        let account_hash = if uses_account || self.present(fields.account_hash) { a.account.clone() } else { None };
        let region = match fields.region {
            Presence::OnboardingOnly => onboarding,
            Presence::Never => false,
            p => self.present(p),
        };
        self.seq += 1;
        self.events.push(GeneratedEvent {
            seq: self.seq,
            event_id: String::new(),
            ts_ms: t,
            step,
            result: if failed { Outcome::Failure } else { Outcome::Success },
            failure_reason: failed.then_some(reason),
            session_id: Some(session.to_owned()),
            customer_id: Some(a.customer.clone()),
            id_doc_hash,
            ip: Some(a.ip.clone()),
            device_id: Some(a.device.clone()),
            user_agent: Some(a.agent),
            channel: Some(a.channel),
            region: region.then_some(a.region),
            duration_ms: Some(dur),
            account_hash,
            staff_id: None,
            records: None,
            label,
        });
    }

    /// A staff member's access to customer records.
    #[allow(clippy::too_many_arguments)]
    pub fn staff_access(&mut self, staff: &str, device: &str, ip: &str, t: i64, customer: Option<String>, export: bool, records: u64, label: Option<(Attack, u32)>) {
        self.seq += 1;
        let dur = self.rng.gen_range(3_000..40_000);
        self.events.push(GeneratedEvent {
            seq: self.seq,
            event_id: String::new(),
            ts_ms: t,
            step: if export { Step::RecordExport } else { Step::RecordView },
            result: Outcome::Success,
            failure_reason: None,
            session_id: None,
            customer_id: customer,
            id_doc_hash: None,
            ip: Some(ip.to_owned()),
            device_id: Some(device.to_owned()),
            user_agent: Some(WEB_AGENTS[0]),
            channel: Some(Channel::Web),
            region: Some("KR-11"),
            duration_ms: Some(dur),
            account_hash: None,
            staff_id: Some(staff.to_owned()),
            records: Some(records),
            label,
        });
    }
}

/// The onboarding flow, with honest failure rates.
pub(crate) const ONBOARDING: [Play; 6] = [
    play(Step::IdOcr, 0.12, "blurry_image"),
    play(Step::IdAuthenticity, 0.02, "hologram_unreadable"),
    play(Step::FaceMatch, 0.05, "face_mismatch"),
    play(Step::Liveness, 0.05, "liveness_failed"),
    play(Step::AccountVerify, 0.06, "code_mismatch"),
    play(Step::AccountOpen, 0.01, "system_error"),
];

/// A returning customer's login.
pub(crate) const LOGIN: [Play; 2] = [play(Step::Login, 0.03, "password_mismatch"), play(Step::Otp, 0.05, "otp_mismatch")];
