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
    /// Seed of the keyed entity hash. Replicas must share it.
    pub hash_seed: u64,
    /// Offset of the bank's local time from UTC, for hour-of-day features (KST = 9).
    pub utc_offset_hours: i8,
    /// A step whose duration ranks at or below this share of its population's
    /// counts toward `<session|device>.fast_steps`.
    pub fast_step_rank: f32,
    /// ... and at or below this, toward `<session|device>.quick_steps`.
    pub quick_step_rank: f32,
    /// The bank's office hours, local `[start, end)`: a prior for the staff
    /// hour baseline, so that on the first day, before any staff access has
    /// been seen, 03:00 already reads as an odd hour for staff. Real accesses
    /// outweigh it within a day.
    pub staff_office_hours: [u8; 2],
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            short_window: Duration::from_secs(600),
            mid_window: Duration::from_secs(3600),
            long_window: Duration::from_secs(86_400),
            allowed_lateness: Duration::from_secs(300),
            customer_profile_ttl: Duration::from_secs(30 * 86_400),
            hash_seed: 0x6861_6563_6869_2d31,
            utc_offset_hours: 9,
            fast_step_rank: 0.01,
            quick_step_rank: 0.05,
            staff_office_hours: [8, 20],
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
    pub hash_seed: u64,
    pub utc_offset_s: i32,
    /// Local `[start, end)` office hours.
    pub staff_office_hours: [u8; 2],
}

impl Windows {
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
    /// Check the configuration and build the runtime windows.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting when a window does not divide into
    /// whole-second buckets, the windows are not increasing, the lateness does
    /// not fit inside the short window, or the profile outlives nothing.
    pub fn validate(&self) -> Result<Windows> {
        let spec = |name: &str, d: Duration, buckets: usize, label: WindowLabel| -> Result<WindowSpec> {
            let secs = d.as_secs();
            if d.subsec_nanos() != 0 || secs == 0 || secs % buckets as u64 != 0 || secs > u64::from(u32::MAX / 2) {
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
        let [open, close] = self.staff_office_hours;
        if !(open < close && close <= 24) {
            return Err(Error::Config(format!("staff_office_hours = [{open}, {close}]: need start < end <= 24")));
        }
        if !(-12..=14).contains(&self.utc_offset_hours) {
            return Err(Error::Config(format!("utc_offset_hours = {}: must be -12 to 14", self.utc_offset_hours)));
        }
        Ok(Windows {
            short,
            mid,
            long,
            lateness_s,
            customer_ttl_s,
            hash_seed: self.hash_seed,
            utc_offset_s: i32::from(self.utc_offset_hours) * 3600,
            staff_office_hours: self.staff_office_hours,
        })
    }
}

/// Feature names carry the window length ("events_10m").
fn label(d: Duration) -> WindowLabel {
    let secs = d.as_secs();
    let text = if secs == 86_400 {
        // 24h reads better than 1d in a rule, and is what analysts expect.
        "24h".to_owned()
    } else if secs % 86_400 == 0 {
        format!("{}d", secs / 86_400)
    } else if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs % 60 == 0 {
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
        assert!(serde_json::from_str::<FeatureConfig>(r#"{"short_windw":"10m"}"#).unwrap_err().to_string().contains("short_windw"));
    }

    #[test]
    fn window_membership() {
        let w = FeatureConfig::default().validate().unwrap().short;
        assert!(w.contains(600, 1199));
        assert!(!w.contains(599, 1200));
        assert!(!w.contains(59, 600));
    }
}
