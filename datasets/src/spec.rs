//! The structure of the world honest traffic comes from: how the carrier NAT
//! is laid out, which fields a returning customer's events carry, how fast
//! people are, where they share addresses and devices, how staff work, and
//! how often an attack is played in its evasive form.
//!
//! [`WorldSpec::fixed`] is the world the generator always played (and the
//! shipped sample comes from). [`WorldSpec::random`] draws every knob from
//! its own seed, independent of the event seed, so that detection can be
//! tuned on some worlds and measured on others.

use std::collections::BTreeMap;

use haechi_features::Step;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::DatasetError;

/// The structure of a generated world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldSpec {
    /// `fixed`, or `random-<world seed>`.
    pub name: String,
    pub nat: NatSpec,
    /// Field presence on returning customers' events (login, otp, phone_auth).
    pub fields: FieldSpec,
    pub timing: TimingSpec,
    pub rhythm: RhythmSpec,
    pub people: PeopleSpec,
    pub shared: SharedSpec,
    pub failures: FailureSpec,
    pub abroad: AbroadSpec,
    pub staff: StaffSpec,
    /// Probability an incident is played as an evasive variant.
    pub evasive_share: f64,
}

/// How the carrier's NAT exits are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NatLayout {
    /// Every exit in one /24.
    OneNet,
    /// A few /24s.
    FewNets,
    /// One exit per /24, over many /16s.
    Spread,
}

/// The carrier NAT app traffic leaves through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NatSpec {
    pub layout: NatLayout,
    /// Number of exit addresses; exit `k` lies in `prefixes[k * len / exits]`.
    pub exits: u32,
    /// The /24s (`a.b.c`) the exits lie in.
    pub prefixes: Vec<String>,
    /// Share of app customers on IPv6 mobile: a /64 per device, the interface
    /// id changing every session.
    pub ipv6_share: f64,
}

/// Whether a field is on an event.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Always,
    /// On each event with this probability.
    Sometimes(f64),
    /// Only on the onboarding steps that use it.
    OnboardingOnly,
    Never,
}

/// Field presence. Onboarding steps always carry `id_doc_hash` (id_ocr,
/// id_authenticity, account_verify, account_open) and `account_hash`
/// (account_verify, account_open); these say what other events carry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FieldSpec {
    pub id_doc_hash: Presence,
    pub account_hash: Presence,
    /// `Always`, `Sometimes(p)` or `Never` (on every customer event, onboarding included).
    pub region: Presence,
}

/// Human step timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimingSpec {
    /// Multiplier of each step's median duration, by step wire name.
    pub median_mult: BTreeMap<String, f64>,
    /// Log-normal sigma of human step durations.
    pub sigma: f64,
    /// No human step is faster than this (ms).
    pub floor_ms: f64,
    /// Probability a backend-checked step (id_authenticity, account_verify
    /// result polling) is recorded at backend speed, 300–900 ms.
    pub backend_fast_p: f64,
    /// Share of honest sessions that use app auto-fill: id_ocr and otp in 300–900 ms.
    pub autofill_share: f64,
}

/// When people are active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RhythmSpec {
    /// Share of customers centred on 00:00–04:00 (night-shift workers).
    pub night_shift_share: f64,
    /// Share of customers centred on 19:00–22:30.
    pub evening_share: f64,
    /// Probability a day has a promotion or payday burst: one hour with
    /// `burst_factor` times the usual onboarding.
    pub burst_day_p: f64,
    pub burst_factor: f64,
}

/// The population.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeopleSpec {
    pub app_share: f64,
    /// Share of customers who onboard during the data.
    pub onboard_share: f64,
    /// Probability a customer changes phones during the data.
    pub phone_change_p: f64,
    /// Probability a customer travels (three days away) during the data.
    pub travel_p: f64,
}

/// Places where unrelated or related people share an address or a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedSpec {
    /// Share of app customers on a phone or tablet already in the household.
    pub family_share: f64,
    /// PC방 internet cafés: how many, the share of web customers who use one,
    /// and the probability a session there is on a café PC's device id.
    pub pc_bangs: u32,
    pub pc_bang_share: f64,
    pub pc_same_device_p: f64,
    /// Corporate and university NATs: how many, addresses each, and the share
    /// of web customers behind one.
    pub office_nats: u32,
    pub office_ips: u32,
    pub office_share: f64,
}

/// Honest failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureSpec {
    /// Elderly customers: slower (speed factor drawn from `elderly_speed`)
    /// and failing more often (failure rates times a factor from `elderly_fail_mult`).
    pub elderly_share: f64,
    pub elderly_speed: (f64, f64),
    pub elderly_fail_mult: (f64, f64),
    /// Customers whose ID photo is old: face_match fails often.
    pub old_photo_share: f64,
    /// Probability an onboarding session has bad light: liveness fails often.
    pub bad_light_p: f64,
    /// Retries of a failed step before the session ends.
    pub retries: u8,
}

/// Customers abroad.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbroadSpec {
    /// Share of customers living abroad (foreign address and region).
    pub resident_share: f64,
    /// Share of trips that go abroad rather than within Korea.
    pub trip_abroad_share: f64,
}

/// The bank's operations staff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaffSpec {
    /// Staff per team (a team shares a /24 of the office network); 0: no teams.
    pub team_size: u32,
    /// Share of teams whose job is batch exports on weekdays, office hours.
    pub batch_team_share: f64,
    /// Batch exports per weekday and records per export.
    pub batch_exports: (u32, u32),
    pub batch_records: (u64, u64),
    /// Single-record lookups per weekday (half-open range).
    pub lookups: (u32, u32),
    /// Share of staff who sometimes work outside office hours: a late
    /// evening clearing a backlog, an early start before a branch opens.
    /// Honest off-hours access, so that the insider rules pay for what they
    /// catch at those hours. 0 (no one) in the fixed world and in spec files
    /// written before it existed.
    #[serde(default)]
    pub overtime_share: f64,
    /// Chance, per weekday, that such a member works off hours that day.
    #[serde(default)]
    pub overtime_p: f64,
}

impl Default for WorldSpec {
    fn default() -> Self {
        WorldSpec::fixed()
    }
}

/// Carrier first octets, for drawn NAT prefixes.
const CARRIER_OCTETS: [u8; 8] = [223, 211, 39, 106, 110, 175, 118, 61];

impl WorldSpec {
    /// The world the generator always played: carrier NAT as three /24s of
    /// eight exits, `id_doc_hash` only on onboarding steps, one log-normal
    /// step timing with an 800 ms floor, no evasive attacks.
    pub fn fixed() -> WorldSpec {
        WorldSpec {
            name: "fixed".into(),
            nat: NatSpec {
                layout: NatLayout::FewNets,
                exits: 24,
                prefixes: vec!["223.38.14".into(), "223.38.15".into(), "211.234.120".into()],
                ipv6_share: 0.0,
            },
            fields: FieldSpec { id_doc_hash: Presence::OnboardingOnly, account_hash: Presence::OnboardingOnly, region: Presence::Always },
            timing: TimingSpec {
                median_mult: Step::ALL.iter().map(|s| (s.as_str().to_owned(), 1.0)).collect(),
                sigma: 0.45,
                floor_ms: 800.0,
                backend_fast_p: 0.0,
                autofill_share: 0.0,
            },
            rhythm: RhythmSpec { night_shift_share: 0.07, evening_share: 0.13, burst_day_p: 0.0, burst_factor: 5.0 },
            people: PeopleSpec { app_share: 0.8, onboard_share: 0.3, phone_change_p: 0.03, travel_p: 0.03 },
            shared: SharedSpec { family_share: 0.15, pc_bangs: 0, pc_bang_share: 0.0, pc_same_device_p: 0.0, office_nats: 0, office_ips: 0, office_share: 0.0 },
            failures: FailureSpec { elderly_share: 0.0, elderly_speed: (0.4, 0.7), elderly_fail_mult: (2.0, 4.0), old_photo_share: 0.0, bad_light_p: 0.0, retries: 2 },
            abroad: AbroadSpec { resident_share: 0.0, trip_abroad_share: 0.0 },
            staff: StaffSpec { team_size: 0, batch_team_share: 0.0, batch_exports: (1, 3), batch_records: (50, 300), lookups: (8, 30), overtime_share: 0.0, overtime_p: 0.0 },
            evasive_share: 0.0,
        }
    }

    /// A world drawn from `world_seed` alone (the event seed plays no part).
    pub fn random(world_seed: u64) -> WorldSpec {
        let mut r = ChaCha8Rng::seed_from_u64(world_seed);
        let exits: u32 = r.gen_range(4..=60);
        let layout = [NatLayout::OneNet, NatLayout::FewNets, NatLayout::Spread][r.gen_range(0..3)];
        let nets = match layout {
            NatLayout::OneNet => 1,
            NatLayout::FewNets => r.gen_range(2..=4u32).min(exits),
            NatLayout::Spread => exits,
        };
        let mut prefixes: Vec<String> = Vec::new();
        let a = CARRIER_OCTETS[r.gen_range(0..CARRIER_OCTETS.len())];
        let b: u8 = r.gen_range(1..255);
        let c0: u8 = r.gen_range(0..240);
        while prefixes.len() < nets as usize {
            let p = match layout {
                // Neighbouring /24s of one carrier block.
                NatLayout::OneNet | NatLayout::FewNets => format!("{a}.{b}.{}", c0 + prefixes.len() as u8 * r.gen_range(1..4)),
                // One /24 in each of many /16s.
                NatLayout::Spread => format!("{}.{}.{}", CARRIER_OCTETS[r.gen_range(0..CARRIER_OCTETS.len())], r.gen_range(1..255), r.gen_range(0..255)),
            };
            if !prefixes.contains(&p) {
                prefixes.push(p);
            }
        }
        let ipv6_share = if r.gen_bool(0.3) { 0.0 } else { r.gen_range(0.05..0.6) };
        let presence = |r: &mut ChaCha8Rng| match r.gen_range(0..3) {
            0 => Presence::Always,
            1 => Presence::Sometimes(round2(r.gen_range(0.1..0.9))),
            _ => Presence::OnboardingOnly,
        };
        let fields = FieldSpec {
            id_doc_hash: presence(&mut r),
            account_hash: presence(&mut r),
            region: match r.gen_range(0..3) {
                0 => Presence::Always,
                1 => Presence::Sometimes(round2(r.gen_range(0.2..0.9))),
                _ => Presence::Never,
            },
        };
        let timing = TimingSpec {
            median_mult: Step::ALL.iter().map(|s| (s.as_str().to_owned(), round2(r.gen_range(0.5..2.0)))).collect(),
            sigma: round2(r.gen_range(0.3..0.8)),
            floor_ms: r.gen_range(150.0f64..800.0).round(),
            backend_fast_p: if r.gen_bool(0.4) { 0.0 } else { round2(r.gen_range(0.5..1.0)) },
            autofill_share: if r.gen_bool(0.3) { 0.0 } else { round2(r.gen_range(0.05..0.5)) },
        };
        let rhythm = RhythmSpec {
            night_shift_share: round2(r.gen_range(0.02..0.15)),
            evening_share: round2(r.gen_range(0.05..0.35)),
            burst_day_p: if r.gen_bool(0.3) { 0.0 } else { round2(r.gen_range(0.1..0.4)) },
            burst_factor: round2(r.gen_range(4.0..6.0)),
        };
        let people = PeopleSpec {
            app_share: round2(r.gen_range(0.55..0.9)),
            onboard_share: round2(r.gen_range(0.15..0.45)),
            phone_change_p: round2(r.gen_range(0.01..0.08)),
            travel_p: round2(r.gen_range(0.01..0.08)),
        };
        let shared = SharedSpec {
            family_share: round2(r.gen_range(0.0..0.3)),
            pc_bangs: r.gen_range(1..=8),
            pc_bang_share: round2(r.gen_range(0.0..0.15)),
            pc_same_device_p: round2(r.gen_range(0.2..0.9)),
            office_nats: r.gen_range(1..=6),
            office_ips: r.gen_range(1..=4),
            office_share: round2(r.gen_range(0.0..0.3)),
        };
        let failures = FailureSpec {
            elderly_share: round2(r.gen_range(0.0..0.2)),
            elderly_speed: (0.4, 0.7),
            elderly_fail_mult: (2.0, 4.0),
            old_photo_share: round2(r.gen_range(0.0..0.08)),
            bad_light_p: round2(r.gen_range(0.0..0.12)),
            retries: r.gen_range(1..=4),
        };
        let abroad = AbroadSpec { resident_share: round2(r.gen_range(0.0..0.05)), trip_abroad_share: round2(r.gen_range(0.0..0.6)) };
        let staff = StaffSpec {
            team_size: r.gen_range(2..=8),
            batch_team_share: if r.gen_bool(0.3) { 0.0 } else { round2(r.gen_range(0.2..0.5)) },
            batch_exports: (1, r.gen_range(1..=4)),
            batch_records: (50, 300),
            lookups: (r.gen_range(3..10), r.gen_range(15..45)),
            overtime_share: 0.0,
            overtime_p: 0.0,
        };
        let evasive_share = round2(r.gen_range(0.3..0.7));
        // Drawn after everything else, so that every knob above is what the
        // same world seed drew before overtime existed.
        let staff = if r.gen_bool(0.3) {
            staff
        } else {
            StaffSpec { overtime_share: round2(r.gen_range(0.05..0.4)), overtime_p: round2(r.gen_range(0.1..0.4)), ..staff }
        };
        WorldSpec {
            name: format!("random-{world_seed}"),
            nat: NatSpec { layout, exits, prefixes, ipv6_share: round2(ipv6_share) },
            fields,
            timing,
            rhythm,
            people,
            shared,
            failures,
            abroad,
            staff,
            evasive_share,
        }
    }

    /// Refuse settings the generator cannot play (a spec read from a file).
    ///
    /// # Errors
    /// [`DatasetError::Config`] naming the first bad knob.
    pub fn validate(&self) -> Result<(), DatasetError> {
        let bad = |what: &str| Err(DatasetError::Config(format!("world spec: {what}")));
        let p = |x: f64| (0.0..=1.0).contains(&x);
        if self.nat.exits == 0 || self.nat.prefixes.is_empty() {
            return bad("nat needs at least one exit and one prefix");
        }
        if self.nat.prefixes.iter().any(|s| format!("{s}.1").parse::<std::net::Ipv4Addr>().is_err()) {
            return bad("nat prefixes must be a.b.c");
        }
        for f in [self.fields.id_doc_hash, self.fields.account_hash, self.fields.region] {
            if let Presence::Sometimes(x) = f {
                if !p(x) {
                    return bad("presence probabilities must be in 0..=1");
                }
            }
        }
        let shares = [
            self.nat.ipv6_share,
            self.timing.backend_fast_p,
            self.timing.autofill_share,
            self.rhythm.night_shift_share,
            self.rhythm.evening_share,
            self.rhythm.night_shift_share + self.rhythm.evening_share,
            self.rhythm.burst_day_p,
            self.people.app_share,
            self.people.onboard_share,
            self.people.phone_change_p,
            self.people.travel_p,
            self.shared.family_share,
            self.shared.pc_bang_share,
            self.shared.pc_same_device_p,
            self.shared.office_share,
            self.failures.elderly_share,
            self.failures.old_photo_share,
            self.failures.bad_light_p,
            self.abroad.resident_share,
            self.abroad.trip_abroad_share,
            self.staff.batch_team_share,
            self.staff.overtime_share,
            self.staff.overtime_p,
            self.evasive_share,
        ];
        if shares.iter().any(|&x| !p(x)) {
            return bad("shares and probabilities must be in 0..=1");
        }
        if !between_open(self.timing.sigma, 0.0, 3.0) || !at_least(self.timing.floor_ms, 0.0) {
            return bad("timing sigma must be in (0, 3) and the floor not negative");
        }
        if self.timing.median_mult.values().any(|&m| !(m > 0.0 && m < 100.0)) {
            return bad("median multipliers must be positive");
        }
        let (s, f) = (self.failures.elderly_speed, self.failures.elderly_fail_mult);
        if !positive_range(s) || !positive_range(f) || !at_least(self.rhythm.burst_factor, 1.0) {
            return bad("elderly ranges must be positive and ordered, burst factor at least 1");
        }
        let st = &self.staff;
        if st.lookups.0 >= st.lookups.1 || st.batch_exports.0 > st.batch_exports.1 || st.batch_records.0 == 0 || st.batch_records.0 > st.batch_records.1 {
            return bad("staff ranges must be ordered and not empty");
        }
        if (self.shared.pc_bang_share > 0.0 && self.shared.pc_bangs == 0) || (self.shared.office_share > 0.0 && (self.shared.office_nats == 0 || self.shared.office_ips == 0)) {
            return bad("a share of PC방 or office customers needs places to be in");
        }
        Ok(())
    }

    /// Whether this is the fixed world (labels then carry no variant).
    pub fn is_fixed(&self) -> bool {
        *self == WorldSpec::fixed()
    }
}

/// `lo < x < hi`; false for NaN, which a spec must not smuggle past validation.
fn between_open(x: f64, lo: f64, hi: f64) -> bool {
    x > lo && x < hi
}

/// `0 < lo <= hi`; false if either end is NaN.
fn positive_range((lo, hi): (f64, f64)) -> bool {
    lo > 0.0 && lo <= hi
}

/// `x >= lo`; false for NaN.
fn at_least(x: f64, lo: f64) -> bool {
    x >= lo
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_refuses_nan_and_values_out_of_range() {
        assert!(WorldSpec::default().validate().is_ok());
        let refused = |change: &dyn Fn(&mut WorldSpec)| {
            let mut spec = WorldSpec::default();
            change(&mut spec);
            spec.validate().is_err()
        };
        assert!(refused(&|s| s.timing.sigma = f64::NAN));
        assert!(refused(&|s| s.timing.sigma = 0.0));
        assert!(refused(&|s| s.timing.sigma = 3.0));
        assert!(refused(&|s| s.timing.floor_ms = f64::NAN));
        assert!(refused(&|s| s.timing.floor_ms = -1.0));
        assert!(refused(&|s| s.rhythm.burst_factor = f64::NAN));
        assert!(refused(&|s| s.rhythm.burst_factor = 0.9));
        assert!(refused(&|s| s.failures.elderly_speed = (f64::NAN, 2.0)));
        assert!(refused(&|s| s.failures.elderly_speed = (2.0, 1.5)));
        assert!(refused(&|s| s.failures.elderly_fail_mult = (0.0, 2.0)));
        assert!(!refused(&|s| s.timing.floor_ms = 0.0), "a floor of zero is allowed");
        assert!(!refused(&|s| s.rhythm.burst_factor = 1.0), "no burst is allowed");
    }
}
