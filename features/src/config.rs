//! Feature-store configuration: serde structs with defaults, validated once
//! into [`Windows`], the checked type the store runs on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Buckets per window. Fixed, so that an entity's memory is constant; the
/// configured length sets the bucket width.
pub const SHORT_BUCKETS: usize = 10;
/// Buckets in the middle window.
pub const MID_BUCKETS: usize = 12;
/// Buckets in the long window.
pub const LONG_BUCKETS: usize = 24;

/// How the feature store windows and expires state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureConfig {
    /// Short window (10 one-minute buckets by default).
    #[serde(with = "humantime_serde")]
    pub short_window: Duration,
    /// Middle window (12 five-minute buckets by default).
    #[serde(with = "humantime_serde")]
    pub mid_window: Duration,
    /// Long window (24 hourly buckets by default).
    #[serde(with = "humantime_serde")]
    pub long_window: Duration,
    /// How far behind the newest event time an event may arrive and still
    /// update its window. Later events are decided but change no state.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// How long a customer's profile (hours, devices, regions) is kept after
    /// their last event. Longer than the windows: takeover detection needs to
    /// remember a customer who comes back next month.
    #[serde(with = "humantime_serde")]
    pub customer_profile_ttl: Duration,
    /// Seed of the keyed entity hash, when neither `hash_key_file` nor the
    /// variable `hash_key_env` names gives a key. Replicas must share it. The
    /// default is public, a demo key: `haechi serve` refuses it on any
    /// address but loopback.
    pub hash_seed: u64,
    /// Environment variable holding the entity-hash key (32 hex digits);
    /// used when set and not empty.
    pub hash_key_env: String,
    /// File holding the entity-hash key (32 hex digits); wins over the variable.
    pub hash_key_file: Option<std::path::PathBuf>,
    /// Most live entities kept per kind. Past it, the least recently seen go
    /// first (entities otherwise live until idle for their TTL of event
    /// time, which a real-time spray of fresh keys never reaches).
    pub max_entities: EntityCaps,
    /// Offset of the bank's local time from UTC, for hour-of-day features (KST = 9).
    pub utc_offset_hours: i8,
    /// A step whose duration ranks at or below this share of its population's
    /// counts toward `<session|device>.fast_steps` (with `step_rank_margin`).
    pub fast_step_rank: f32,
    /// ... and at or below this, toward `<session|device>.quick_steps`.
    pub quick_step_rank: f32,
    /// How far apart from the population a fast or quick step must be: it
    /// counts only if its duration, longer by this share, would still rank
    /// at or below the cut. When honest people crowd at a step's floor
    /// (codes auto-filled in 300 ms, a backend check that always answers in
    /// 400), the fastest 1% of that step are the crowd's own quickest, and
    /// a session of two such steps is a person; a script stands apart from
    /// everyone. Not applied before a step's baseline is ready, when only a
    /// duration far under the fastest seen ranks at all (under a quarter of
    /// it from six samples, under half from twenty).
    pub step_rank_margin: f32,
    /// The bank's office hours, local `[start, end)`: a prior for the staff
    /// hour baseline, so that on the first day, before any staff access has
    /// been seen, 03:00 already reads as an odd hour for staff. Real accesses
    /// outweigh it within a day.
    pub staff_office_hours: [u8; 2],
    /// The bank's country (ISO 3166-1 alpha-2, the prefix of the events'
    /// ISO 3166-2 regions): a prior for `event.region_share` until the
    /// population's regions are known, so that a new install's first day
    /// already reads a region abroad as rare (0) and one at home as not yet
    /// known (-1). Real events replace it once 2,000 passed events of
    /// returning customers have named a region. Empty: no prior.
    pub home_country: String,
    /// What a reported session id spans. `as-reported` (the default): every
    /// id is a session. `auto`: the store watches the stream, and when hardly any successful event names a
    /// session an earlier one named (a request's or one service's id in the
    /// field), keys sessions as for events that carry none: the device's
    /// run of events (see `session_ids.rs` for what a client cannot do to
    /// that verdict). Not the default: a pipeline whose login carries its
    /// own id and whose later steps share another is taken for one id per
    /// step, and a few accounts of one's own can move the verdict.
    pub session_ids: SessionIds,
}

/// See [`FeatureConfig::session_ids`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionIds {
    Auto,
    #[default]
    AsReported,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            short_window: Duration::from_secs(600),
            mid_window: Duration::from_secs(3600),
            long_window: Duration::from_secs(86_400),
            allowed_lateness: Duration::from_secs(300),
            customer_profile_ttl: Duration::from_secs(30 * 86_400),
            hash_seed: DEMO_HASH_SEED,
            hash_key_env: "HAECHI_HASH_KEY".into(),
            hash_key_file: None,
            max_entities: EntityCaps::default(),
            utc_offset_hours: 9,
            fast_step_rank: 0.01,
            quick_step_rank: 0.05,
            step_rank_margin: 0.15,
            staff_office_hours: [8, 20],
            home_country: "KR".into(),
            session_ids: SessionIds::AsReported,
        }
    }
}

/// The built-in, public hash seed: for demos and tests.
pub const DEMO_HASH_SEED: u64 = 0x6861_6563_6869_2d31;

/// Where the entity-hash key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKeySource {
    /// `hash_key_file`.
    File(std::path::PathBuf),
    /// The variable `hash_key_env` names.
    Env(String),
    /// A `hash_seed` other than the built-in one.
    Seed,
    /// The built-in public key.
    Demo,
}

impl HashKeySource {
    /// True for the built-in public key.
    pub fn is_demo(&self) -> bool {
        matches!(self, HashKeySource::Demo)
    }
}

impl std::fmt::Display for HashKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashKeySource::File(p) => write!(f, "file {}", p.display()),
            HashKeySource::Env(v) => write!(f, "environment variable {v}"),
            HashKeySource::Seed => f.write_str("features.hash_seed"),
            HashKeySource::Demo => f.write_str("the built-in demo key"),
        }
    }
}

/// Per-kind caps on live entities.
///
/// Defaults, at the bytes per entity measured in BENCHMARKS.md (plus ~40
/// bytes of map slots under churn): identities an attacker cannot mint
/// freely — customers, ID documents, accounts — get room for a large bank's
/// 30-day active base (8 M customers ≈ 4.3 GiB, 4 M documents or accounts ≈
/// 0.9 GiB each); what a spray mints for free — addresses, subnets,
/// devices, sessions — 2 M each (IPs ≈ 0.5 GiB, devices ≈ 0.9 GiB), far above
/// a day of honest traffic (the 4,000-customer drawn worlds keep under 30 k
/// of each), so the cap binds only under a spray.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EntityCaps {
    pub customer: usize,
    pub id_doc: usize,
    pub ip: usize,
    pub subnet: usize,
    pub device: usize,
    pub account: usize,
    pub staff: usize,
    pub session: usize,
}

impl Default for EntityCaps {
    fn default() -> Self {
        EntityCaps {
            customer: 8_000_000,
            id_doc: 4_000_000,
            ip: 2_000_000,
            subnet: 2_000_000,
            device: 2_000_000,
            account: 4_000_000,
            staff: 100_000,
            session: 2_000_000,
        }
    }
}

impl EntityCaps {
    /// The same cap for every kind (tests and benchmarks).
    pub fn all(cap: usize) -> EntityCaps {
        EntityCaps { customer: cap, id_doc: cap, ip: cap, subnet: cap, device: cap, account: cap, staff: cap, session: cap }
    }

    /// The cap of one kind.
    pub fn get(&self, kind: crate::keys::EntityKind) -> usize {
        use crate::keys::EntityKind as K;
        match kind {
            K::Customer => self.customer,
            K::IdDoc => self.id_doc,
            K::Ip => self.ip,
            K::Subnet => self.subnet,
            K::Device => self.device,
            K::Account => self.account,
            K::Staff => self.staff,
            K::Session => self.session,
        }
    }
}

/// A window's name in feature names (`10m`, `1h`, `24h`): short text kept
/// inline, so a window stays `Copy` and nothing is leaked to give it a lifetime.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WindowLabel {
    bytes: [u8; 15],
    len: u8,
}

impl WindowLabel {
    fn new(text: &str) -> WindowLabel {
        let mut bytes = [0u8; 15];
        let len = text.len().min(15);
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        WindowLabel { bytes, len: len as u8 }
    }

    /// The label text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for WindowLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for WindowLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One window: `buckets` buckets of `width_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// Bucket width in seconds.
    pub width_s: u32,
    /// Number of buckets.
    pub buckets: u32,
    /// Name suffix in feature names (`10m`, `1h`, `24h`).
    pub label: WindowLabel,
}

impl WindowSpec {
    /// Bucket index of a time in seconds.
    #[inline]
    pub fn bucket(&self, secs: u32) -> u32 {
        secs / self.width_s
    }

    /// The first bucket inside the window that ends in `now`'s bucket.
    #[inline]
    pub fn first_bucket(&self, now_secs: u32) -> u32 {
        (self.bucket(now_secs) + 1).saturating_sub(self.buckets)
    }

    /// True if an event at `t` falls in the window ending at `now`.
    #[inline]
    pub fn contains(&self, t: u32, now: u32) -> bool {
        let b = self.bucket(t);
        b >= self.first_bucket(now) && b <= self.bucket(now)
    }

    /// Window length in seconds.
    pub fn len_s(&self) -> u32 {
        self.width_s * self.buckets
    }
}

/// The validated windowing the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub short: WindowSpec,
    pub mid: WindowSpec,
    pub long: WindowSpec,
    pub lateness_s: u32,
    pub customer_ttl_s: u32,
    pub hash_key: crate::keys::HashKey,
    pub utc_offset_s: i32,
    /// Local `[start, end)` office hours.
    pub staff_office_hours: [u8; 2],
    /// `home_country`, checked: two ASCII capitals, or none.
    pub home_country: Option<[u8; 2]>,
}

impl Windows {
    /// Local time (event time), in seconds since the epoch: shifted by the bank's UTC offset.
    pub fn local_secs(&self, secs: u32) -> u32 {
        (i64::from(secs) + i64::from(self.utc_offset_s)).clamp(0, i64::from(u32::MAX)) as u32
    }

    /// Local day number of an event time in seconds: a working day does not
    /// end at 09:00 in Seoul. Staff days, and what a staff block lets
    /// through in one, are counted by it.
    pub fn local_day(&self, secs: u32) -> u32 {
        self.local_secs(secs) / 86_400
    }

    /// [`Windows::local_day`] of an event time in milliseconds.
    pub fn local_day_at_ms(&self, ts_ms: i64) -> u32 {
        self.local_day(ts_ms.div_euclid(1000).clamp(0, i64::from(u32::MAX)) as u32)
    }

    /// The three windows, short to long.
    pub fn all(&self) -> [WindowSpec; 3] {
        [self.short, self.mid, self.long]
    }

    /// How long an entity of any kind but customer lives without events.
    pub fn idle_ttl_s(&self) -> u32 {
        self.long.len_s() + self.lateness_s
    }
}

impl FeatureConfig {
    /// The entity-hash key and where it came from: `hash_key_file`, else the
    /// variable `hash_key_env` names when set, else `hash_seed`.
    ///
    /// # Errors
    /// [`Error::Config`] when the key file cannot be read or a key is malformed.
    pub fn hash_key(&self) -> Result<(crate::keys::HashKey, HashKeySource)> {
        use crate::keys::HashKey;
        if let Some(path) = &self.hash_key_file {
            let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("features.hash_key_file = {}: {e}", path.display())))?;
            let key = HashKey::parse_hex(&text).map_err(|e| match e {
                Error::Config(why) => Error::Config(format!("features.hash_key_file = {}: {why}", path.display())),
                other => other,
            })?;
            return Ok((key, HashKeySource::File(path.clone())));
        }
        if !self.hash_key_env.is_empty() {
            if let Some(text) = std::env::var_os(&self.hash_key_env).filter(|v| !v.is_empty()) {
                let text = text.into_string().map_err(|_| Error::Config(format!("{}: not UTF-8", self.hash_key_env)))?;
                let key = HashKey::parse_hex(&text).map_err(|e| match e {
                    Error::Config(why) => Error::Config(format!("environment variable {}: {why}", self.hash_key_env)),
                    other => other,
                })?;
                return Ok((key, HashKeySource::Env(self.hash_key_env.clone())));
            }
        }
        let source = if self.hash_seed == DEMO_HASH_SEED { HashKeySource::Demo } else { HashKeySource::Seed };
        Ok((HashKey::from_seed(self.hash_seed), source))
    }

    /// Check the configuration and build the runtime windows.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting when a window does not divide into
    /// whole-second buckets, the windows are not increasing, the lateness does
    /// not fit inside the short window, or the profile outlives nothing.
    pub fn validate(&self) -> Result<Windows> {
        let spec = |name: &str, d: Duration, buckets: usize, label: WindowLabel| -> Result<WindowSpec> {
            let secs = d.as_secs();
            if d.subsec_nanos() != 0 || secs == 0 || !secs.is_multiple_of(buckets as u64) || secs > u64::from(u32::MAX / 2) {
                return Err(Error::Config(format!(
                    "{name} = {}: must be a whole number of seconds divisible by its {buckets} buckets",
                    humantime::format_duration(d)
                )));
            }
            Ok(WindowSpec { width_s: (secs / buckets as u64) as u32, buckets: buckets as u32, label })
        };
        let short = spec("short_window", self.short_window, SHORT_BUCKETS, label(self.short_window))?;
        let mid = spec("mid_window", self.mid_window, MID_BUCKETS, label(self.mid_window))?;
        let long = spec("long_window", self.long_window, LONG_BUCKETS, label(self.long_window))?;
        if !(short.len_s() < mid.len_s() && mid.len_s() < long.len_s()) {
            return Err(Error::Config("windows must grow: short_window < mid_window < long_window".into()));
        }
        let lateness_s = self.allowed_lateness.as_secs() as u32;
        // A late event must still land in a bucket the short ring holds.
        if lateness_s >= short.len_s() - short.width_s {
            return Err(Error::Config(format!(
                "allowed_lateness = {}: must be shorter than short_window minus one bucket ({}s)",
                humantime::format_duration(self.allowed_lateness),
                short.len_s() - short.width_s
            )));
        }
        let customer_ttl_s = u32::try_from(self.customer_profile_ttl.as_secs())
            .map_err(|_| Error::Config("customer_profile_ttl is too long".into()))?;
        if customer_ttl_s < long.len_s() {
            return Err(Error::Config("customer_profile_ttl must be at least long_window".into()));
        }
        if !(self.fast_step_rank > 0.0 && self.fast_step_rank <= self.quick_step_rank && self.quick_step_rank < 0.5) {
            return Err(Error::Config(format!(
                "fast_step_rank = {}, quick_step_rank = {}: need 0 < fast <= quick < 0.5",
                self.fast_step_rank, self.quick_step_rank
            )));
        }
        if !(0.0..=4.0).contains(&self.step_rank_margin) {
            return Err(Error::Config(format!("step_rank_margin = {}: need 0 to 4 (a share of the step's duration)", self.step_rank_margin)));
        }
        let [open, close] = self.staff_office_hours;
        if !(open < close && close <= 24) {
            return Err(Error::Config(format!("staff_office_hours = [{open}, {close}]: need start < end <= 24")));
        }
        let home_country = match self.home_country.as_bytes() {
            [] => None,
            &[a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Some([a, b]),
            _ => return Err(Error::Config(format!("home_country = {:?}: need a two-letter country code like \"KR\", or \"\" for none", self.home_country))),
        };
        if !(-12..=14).contains(&self.utc_offset_hours) {
            return Err(Error::Config(format!("utc_offset_hours = {}: must be -12 to 14", self.utc_offset_hours)));
        }
        for kind in crate::keys::EntityKind::ALL {
            if self.max_entities.get(kind) < 16 {
                return Err(Error::Config(format!("max_entities.{kind} = {}: must be at least 16", self.max_entities.get(kind))));
            }
        }
        let (hash_key, _) = self.hash_key()?;
        Ok(Windows {
            short,
            mid,
            long,
            lateness_s,
            customer_ttl_s,
            hash_key,
            utc_offset_s: i32::from(self.utc_offset_hours) * 3600,
            staff_office_hours: self.staff_office_hours,
            home_country,
        })
    }
}

/// Feature names carry the window length ("events_10m").
fn label(d: Duration) -> WindowLabel {
    let secs = d.as_secs();
    let text = if secs == 86_400 {
        // 24h reads better than 1d in a rule, and is what analysts expect.
        "24h".to_owned()
    } else if secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    };
    WindowLabel::new(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let cfg = FeatureConfig::default();
        let w = cfg.validate().unwrap();
        assert_eq!((w.short.width_s, w.mid.width_s, w.long.width_s), (60, 300, 3600));
        assert_eq!((w.short.label.as_str(), w.mid.label.as_str(), w.long.label.as_str()), ("10m", "1h", "24h"));
        let odd = FeatureConfig { short_window: Duration::from_secs(450), long_window: Duration::from_secs(2 * 86_400), ..Default::default() };
        let w = odd.validate().unwrap();
        assert_eq!((w.short.label.as_str(), w.long.label.as_str()), ("450s", "2d"));
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<FeatureConfig>(&json).unwrap(), cfg);
    }

    #[test]
    fn rejects_bad_windows_with_the_setting_named() {
        let cfg = FeatureConfig { short_window: Duration::from_secs(601), ..Default::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("short_window"));
        let cfg = FeatureConfig { mid_window: Duration::from_secs(300), ..Default::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("grow"));
        let cfg = FeatureConfig { allowed_lateness: Duration::from_secs(560), ..Default::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("allowed_lateness"));
        let cfg = FeatureConfig { utc_offset_hours: 20, ..Default::default() };
        assert!(cfg.validate().is_err());
        for margin in [-0.1, f32::NAN, 5.0] {
            let cfg = FeatureConfig { step_rank_margin: margin, ..Default::default() };
            assert!(cfg.validate().unwrap_err().to_string().contains("step_rank_margin"));
        }
        assert!(serde_json::from_str::<FeatureConfig>(r#"{"short_windw":"10m"}"#).unwrap_err().to_string().contains("short_windw"));
        for country in ["kr", "KOR", "K", "K1"] {
            let cfg = FeatureConfig { home_country: country.into(), ..Default::default() };
            assert!(cfg.validate().unwrap_err().to_string().contains("home_country"), "{country}");
        }
        assert_eq!(FeatureConfig { home_country: String::new(), ..Default::default() }.validate().unwrap().home_country, None);
        assert_eq!(FeatureConfig::default().validate().unwrap().home_country, Some(*b"KR"));
    }

    #[test]
    fn window_membership() {
        let w = FeatureConfig::default().validate().unwrap().short;
        assert!(w.contains(600, 1199));
        assert!(!w.contains(599, 1200));
        assert!(!w.contains(59, 600));
    }
}
