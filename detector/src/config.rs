//! Service configuration: one TOML file, every setting defaulted, checked at load.

use std::path::Path;
use std::time::Duration;

use haechi_features::{FeatureConfig, DEFAULT_MAX_EVENT_BYTES};
use serde::{Deserialize, Serialize};

use crate::builtin::BuiltinConfig;
use crate::error::DetectorError;

/// Everything the service can be told.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub features: FeatureConfig,
    pub pipeline: PipelineConfig,
    pub rules: RulesConfig,
    pub model: crate::model::ModelConfig,
    pub server: crate::service::ServerConfig,
    pub blocks: crate::enforce::BlockConfig,
    pub limits: crate::enforce::LimitConfig,
    pub builtin: BuiltinConfig,
    pub alerts: AlertConfig,
    pub storage: crate::durable::StorageConfig,
    pub source: crate::fluvio::SourceConfig,
    pub sinks: crate::fluvio::SinksConfig,
    pub replica: crate::fluvio::ReplicaConfig,
    pub records: haechi_records::RecordsConfig,
}

/// How events enter the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Largest accepted event, in bytes.
    pub max_event_bytes: usize,
    /// How long (stream time) an event id is remembered to drop repeats.
    /// Retries arrive within seconds or minutes; the ids of this window are
    /// held in memory (about 30 bytes each).
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// The clock block TTLs and rate quotas run on: `event` (replay and
    /// backtests) or `wall` (what `haechi serve` uses whatever this says).
    pub enforcement_clock: crate::enforce::EnforcementClock,
    /// How far ahead of the clock an event's `ts` may be. Live: the server's
    /// wall clock; a replay: the stream's own confirmed time. Further ahead is
    /// rejected (`future_ts`), so one forged timestamp cannot make every
    /// later event "late" and blind detection.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Replay, backtests and recovery parse events on a second thread while
    /// this one decides them (the same decisions, in the same order). Lines
    /// go over in batches (512 lines or 4 MiB, or the end of the input): for
    /// a slow pipe read line by line, where each line should be decided as
    /// it comes, turn it off.
    pub parse_thread: bool,
    /// An event that names no customer (a 1-won check, a code or a phone
    /// change that another of the bank's services reports without one)
    /// acts as the customer its session logged in as, from the same device
    /// (see `FeatureStore::session_customer`). Turn off for a pipeline
    /// whose sessions are not one customer's.
    pub customer_from_session: bool,
    /// A customer's passed step that names no device or region (an ID
    /// check, a face match or an account opening that the backend reports
    /// without them) is judged as coming from those the customer's passed
    /// steps of the same reported session named, within the hour after the
    /// first of them (see
    /// `FeatureStore::session_place`). Turn off for a pipeline whose
    /// session ids are not one visit's.
    pub place_from_session: bool,
    /// Set by `haechi serve`, never by a file: event times are bounded by the
    /// wall clock (`max_clock_skew`) whatever clock enforcement runs on.
    #[serde(skip)]
    pub live: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            dedup_window: Duration::from_secs(600),
            enforcement_clock: crate::enforce::EnforcementClock::Event,
            max_clock_skew: Duration::from_secs(300),
            parse_thread: true,
            customer_from_session: true,
            place_from_session: true,
            live: false,
        }
    }
}

/// Where the rules come from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// A rule file or a directory of them; unset: the default pack shipped in the binary.
    pub path: Option<std::path::PathBuf>,
}

/// How findings fold into alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Repeats of one finding on one entity inside this window are one alert.
    #[serde(with = "humantime_serde")]
    pub fold_window: Duration,
    /// Where alerts are delivered besides the feed (webhook, file), each spooled in the data dir.
    pub sinks: Vec<crate::alert_sinks::AlertSinkConfig>,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig { fold_window: Duration::from_secs(600), sinks: Vec::new() }
    }
}

impl Config {
    /// Read and check a TOML file.
    ///
    /// # Errors
    /// [`DetectorError::Config`] naming the file and the unknown key or bad value.
    pub fn load(path: &Path) -> Result<Config, DetectorError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DetectorError::Config { path: path.display().to_string(), message: e.to_string() })?;
        Config::parse(&text).map_err(|e| DetectorError::Config { path: path.display().to_string(), message: e.to_string() })
    }

    /// Parse and check TOML text.
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn parse(text: &str) -> Result<Config, crate::DetectorError> {
        let config: Config = toml::from_str(text).map_err(|e| setting!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Check every value now rather than at the 10,000th event.
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> Result<(), crate::DetectorError> {
        self.features.validate()?;
        if self.pipeline.max_event_bytes < 256 || self.pipeline.max_event_bytes > 1 << 20 {
            return Err(setting!("pipeline.max_event_bytes = {}: must be 256 to 1048576", self.pipeline.max_event_bytes));
        }
        if let Some(t) = self.model.threshold {
            if !(t > 0.0 && t <= 1.0) {
                return Err(setting!("model.threshold = {t}: must be in (0, 1]"));
            }
        }
        if self.pipeline.max_clock_skew.as_secs() == 0 {
            return Err(setting!("pipeline.max_clock_skew must be at least one second"));
        }
        if self.alerts.fold_window.as_secs() == 0 {
            return Err(setting!("alerts.fold_window must be at least one second"));
        }
        for (n, sink) in self.alerts.sinks.iter().enumerate() {
            sink.validate(n)?;
        }
        self.server.validate()?;
        self.storage.validate()?;
        self.records.validate().map_err(|e| setting!("{e}"))?;
        if self.blocks.max_new_per_minute == 0 {
            return Err(setting!("blocks.max_new_per_minute must be positive"));
        }
        // An event may run up to the skew ahead of the clock, and the event
        // that sets a block dates it: the owner's device must still have
        // passed its code well before any block it is spared from.
        if self.blocks.spare_owner_devices && self.blocks.owner_device_min_age < 2 * self.pipeline.max_clock_skew {
            return Err(setting!(
                "blocks.owner_device_min_age = {}s: must be at least twice pipeline.max_clock_skew ({}s), or set blocks.spare_owner_devices = false",
                self.blocks.owner_device_min_age.as_secs(),
                self.pipeline.max_clock_skew.as_secs()
            ));
        }
        if let Some(r) = self.blocks.step_up_other_devices_for.iter().find(|r| !r.contains(':') || r.starts_with("analyst:") || r.starts_with("rate_limit:")) {
            return Err(setting!("blocks.step_up_other_devices_for: {r:?} is not a detector's rule (detector:rule, e.g. \"rules:brute_force_slow_failures\"); an analyst's block and a rate limit's always refuse every device"));
        }
        if let Some(r) = self.blocks.routine_staff_work_passes_for.iter().find(|r| !r.contains(':') || r.starts_with("analyst:") || r.starts_with("rate_limit:")) {
            return Err(setting!("blocks.routine_staff_work_passes_for: {r:?} is not a detector's rule (detector:rule, e.g. \"rules:staff_odd_hour_bulk\"); an analyst's block and a rate limit's always refuse everything"));
        }
        if !self.blocks.routine_staff_work_passes_for.is_empty() && self.features.mid_window != Duration::from_secs(3600) {
            return Err(setting!(
                "blocks.routine_staff_work_passes_for reads a staff member's records in the last hour: set features.mid_window = \"1h\", or blocks.routine_staff_work_passes_for = []"
            ));
        }
        let bar = self.blocks.routine_staff_hour_activity;
        if !(bar > 1.0 && bar <= 24.0) {
            return Err(setting!(
                "blocks.routine_staff_hour_activity = {bar}: must be above 1.0 (what every hour reads before the bank's staff hours are learned) and at most 24"
            ));
        }
        self.builtin.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = Config::default();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(Config::parse(&text).unwrap(), c);
        assert_eq!(Config::parse("").unwrap(), c);
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let e = Config::parse("[pipeline]\nmax_event_byte = 10\n").unwrap_err().to_string();
        assert!(e.contains("max_event_byte"), "{e}");
        let e = Config::parse("[features]\nshort_window = \"601s\"\n").unwrap_err().to_string();
        assert!(e.contains("short_window"), "{e}");
        let e = Config::parse("[pipeline]\nmax_event_bytes = 1\n").unwrap_err().to_string();
        assert!(e.contains("max_event_bytes"), "{e}");
        let e = Config::parse("[[server.principals]]\nname = \"a\"\nrole = \"ingest\"\ntoken = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("token"), "{e}");
        let e = Config::parse("[[server.principals]]\nname = \"a\"\nrole = \"root\"\ntoken_sha256 = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("root"), "{e}");
        let e = Config::parse("[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nca = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("ca"), "{e}");
    }

    #[test]
    fn only_a_detectors_rule_may_step_up_other_devices() {
        for bad in ["analyst:kim", "rate_limit:customer", "brute_force_slow_failures"] {
            let e = Config::parse(&format!("[blocks]\nstep_up_other_devices_for = [\"{bad}\"]\n")).unwrap_err().to_string();
            assert!(e.contains("step_up_other_devices_for") && e.contains(bad), "{e}");
        }
        assert!(Config::parse("[blocks]\nstep_up_other_devices_for = [\"rules:my_rule\"]\n").is_ok());
    }

    #[test]
    fn routine_staff_work_settings_are_checked() {
        for bad in ["analyst:kim", "rate_limit:staff", "staff_odd_hour_bulk"] {
            let e = Config::parse(&format!("[blocks]\nroutine_staff_work_passes_for = [\"{bad}\"]\n")).unwrap_err().to_string();
            assert!(e.contains("routine_staff_work_passes_for") && e.contains(bad), "{e}");
        }
        // 1.0 is what every hour reads before staff hours are learned.
        for bad in ["1.0", "0.5", "25.0", "nan"] {
            let e = Config::parse(&format!("[blocks]\nroutine_staff_hour_activity = {bad}\n")).unwrap_err().to_string();
            assert!(e.contains("routine_staff_hour_activity"), "{bad}: {e}");
        }
        assert!(Config::parse("[blocks]\nroutine_staff_hour_activity = 1.2\nroutine_staff_work_passes_for = []\n").is_ok());
        // The pass reads the last hour's records: the medium window must be an hour.
        let e = Config::parse("[features]\nmid_window = \"30m\"\n").unwrap_err().to_string();
        assert!(e.contains("routine_staff_work_passes_for") && e.contains("mid_window"), "{e}");
        assert!(Config::parse("[features]\nmid_window = \"30m\"\n[blocks]\nroutine_staff_work_passes_for = []\n").is_ok());
    }

    #[test]
    fn an_owner_device_age_inside_the_clock_skew_is_refused() {
        let e = Config::parse("[blocks]\nowner_device_min_age = \"5m\"\n").unwrap_err().to_string();
        assert!(e.contains("owner_device_min_age") && e.contains("max_clock_skew"), "{e}");
        assert!(Config::parse("[blocks]\nowner_device_min_age = \"5m\"\nspare_owner_devices = false\n").is_ok());
        assert!(Config::parse("[blocks]\nowner_device_min_age = \"10m\"\n").is_ok());
    }

    #[test]
    fn the_removed_api_tokens_setting_is_refused_with_advice() {
        let e = Config::parse("[server]\napi_tokens = [\"s3cret-token-for-tests\"]\n").unwrap_err().to_string();
        assert!(e.contains("[[server.principals]]") && e.contains("token_sha256") && e.contains("printf %s TOKEN | sha256sum"), "{e}");
    }

    #[test]
    fn principals_tls_and_audit_round_trip_through_toml() {
        let hash = crate::service::auth::token_sha256_hex("t");
        let text = format!(
            "[server]\nlisten = \"0.0.0.0:9\"\naudit_log = \"a.jsonl\"\n[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n[[server.principals]]\nname = \"p\"\nrole = \"auditor\"\ntoken_sha256 = \"{hash}\"\n"
        );
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.server.principals[0].role, crate::service::Role::Auditor);
        assert_eq!(Config::parse(&toml::to_string(&c).unwrap()).unwrap(), c);
    }

    #[test]
    fn an_open_api_is_refused_off_loopback_unless_insecure() {
        let mut c = Config::default();
        assert!(c.server.check_exposure(false).unwrap().is_some(), "loopback: open, with a warning");
        c.server.listen = "0.0.0.0:8080".into();
        let e = c.server.check_exposure(false).unwrap_err().to_string();
        assert!(e.contains("principals") && e.contains("--insecure"), "{e}");
        assert!(c.server.check_exposure(true).unwrap().is_some());
        c.server.principals.push(crate::service::PrincipalConfig {
            name: "p".into(),
            role: crate::service::Role::Ingest,
            token_sha256: Some(crate::service::auth::token_sha256_hex("t")),
            token_sha256_env: None,
            token_sha256_file: None,
        });
        assert!(matches!(c.server.check_exposure(false), Ok(None)));
    }
}

#[cfg(test)]
mod readme {
    /// The configuration the README shows is one the service takes: every key it names exists.
    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../README.md");
        let at = readme.find("A configuration file looks like this").expect("the README shows a configuration");
        let start = readme[at..].find("```toml\n").expect("a toml block") + at + 8;
        let end = readme[start..].find("```").expect("the block ends") + start;
        let config: super::Config = toml::from_str(&readme[start..end]).unwrap_or_else(|e| panic!("the README's configuration does not parse: {e}"));
        assert_eq!(config.records.retention.transaction, std::time::Duration::from_secs(5 * 31_557_600));
        assert_eq!(config.records.node.as_deref(), Some("haechi-01"));
    }
}
