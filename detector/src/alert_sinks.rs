//! Alerts delivered to the SOC's own tools without loss: `[[alerts.sinks]]`.
//!
//! Each sink has a spool in the data dir (`alert-sinks/<n>-<kind>/`, sealed like the rest). A
//! new alert at or above the sink's `min_severity` is appended to it; a task per sink delivers
//! the spool in order, advancing its cursor only once the receiver has taken the alert, and
//! retries with backoff (100 ms to 30 s) while the receiver is down. After a restart the
//! spool goes on where its cursor stopped. An alert is dropped only when the spool holds
//! `max_spool` alerts already, and then it is logged and counted.
//!
//! - `webhook`: `POST url`, the alert as JSON, `Idempotency-Key: <alert id>`, and
//!   `X-Haechi-Signature: sha256=<hex HMAC-SHA-256 of the body>` under the secret in `secret_env`.
//! - `alertmanager`: `POST url/api/v2/alerts` (Alertmanager API v2): labels `alertname` (the
//!   rule), `severity`, `detector`, `entity_kind`, `entity`, `service="haechi"`, `alert_id`;
//!   annotations `summary` and `description`; `startsAt` the first finding, `endsAt` the end of
//!   its fold window, so Alertmanager resolves the alert when the window closes.
//! - `file`: one alert per line, appended and synced.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use haechi_features::Severity;
use haechi_storage::KeyRing;
use haechi_streams::{Deliver, Spool, StreamError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::DetectorError;
use crate::service::feed::FeedAlert;

/// What kind of receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Webhook,
    Alertmanager,
    File,
}

/// One `[[alerts.sinks]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSinkConfig {
    pub kind: SinkKind,
    /// `webhook`: where alerts are posted.
    #[serde(default)]
    pub url: Option<String>,
    /// `webhook`: the environment variable holding the signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// `file`: the NDJSON file alerts are appended to.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Alerts below this severity are not sent here.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Past this many undelivered alerts, new ones are dropped (logged, counted).
    #[serde(default = "default_max_spool")]
    pub max_spool: u64,
    /// How long one delivery may take before it counts as failed.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_min_severity() -> Severity {
    Severity::Low
}
fn default_max_spool() -> u64 {
    1_000_000
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn rank(s: Severity) -> u8 {
    match s {
        Severity::Low => 0,
        Severity::Medium => 1,
        Severity::High => 2,
        Severity::Critical => 3,
    }
}

impl AlertSinkConfig {
    /// # Errors
    /// A missing or misplaced setting, named.
    pub fn validate(&self, n: usize) -> Result<(), crate::DetectorError> {
        let at = format!("alerts.sinks[{n}] ({})", serde_json::to_value(self.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default());
        match self.kind {
            SinkKind::Webhook => {
                let url = self.url.as_deref().ok_or_else(|| setting!("{at}: needs url"))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(setting!("{at}: url must be http:// or https://"));
                }
                if self.secret_env.is_none() {
                    return Err(setting!("{at}: needs secret_env, the variable holding the signing secret"));
                }
                if self.path.is_some() {
                    return Err(setting!("{at}: path is for file sinks"));
                }
            }
            SinkKind::Alertmanager => {
                let url = self.url.as_deref().ok_or_else(|| setting!("{at}: needs url, Alertmanager's base address"))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(setting!("{at}: url must be http:// or https://"));
                }
                if self.path.is_some() || self.secret_env.is_some() {
                    return Err(setting!("{at}: path and secret_env are not for Alertmanager"));
                }
            }
            SinkKind::File => {
                if self.path.is_none() {
                    return Err(setting!("{at}: needs path"));
                }
                if self.url.is_some() || self.secret_env.is_some() {
                    return Err(setting!("{at}: url and secret_env are for webhooks"));
                }
            }
        }
        if self.max_spool == 0 {
            return Err(setting!("{at}: max_spool must be positive"));
        }
        Ok(())
    }
}

/// Delivery counts, for metrics.
#[derive(Debug, Default)]
pub struct SinkCounts {
    pub delivered: std::sync::atomic::AtomicU64,
    pub retried: std::sync::atomic::AtomicU64,
    pub dropped: std::sync::atomic::AtomicU64,
}

/// One configured sink: its settings, spool and counts.
pub struct AlertSink {
    pub name: String,
    config: AlertSinkConfig,
    spool: Spool,
    receiver: Receiver,
    pub counts: Arc<SinkCounts>,
}

enum Receiver {
    Webhook(Arc<Webhook>),
    Alertmanager(Arc<Alertmanager>),
    File(Arc<FileOut>),
}

impl AlertSink {
    /// Open sink `n`'s spool under `dir` and resolve its receiver (the secret is read now).
    ///
    /// # Errors
    /// An unset secret variable, or a spool that cannot be opened.
    /// `fold_window`: how long an alert's window stays open (Alertmanager's `endsAt`).
    pub fn open(dir: &Path, n: usize, config: &AlertSinkConfig, keys: Option<&KeyRing>, fold_window: Duration) -> Result<AlertSink, DetectorError> {
        let kind = match config.kind {
            SinkKind::Webhook => "webhook",
            SinkKind::Alertmanager => "alertmanager",
            SinkKind::File => "file",
        };
        let name = format!("{n}-{kind}");
        let bad = |message: String| DetectorError::Config { path: format!("alerts.sinks[{n}]"), message };
        let receiver = match config.kind {
            SinkKind::Webhook => {
                let var = config.secret_env.as_deref().unwrap_or_default();
                let secret = std::env::var(var).map_err(|_| bad(format!("${var} (secret_env) is not set")))?;
                if secret.len() < 16 {
                    return Err(bad(format!("${var}: a signing secret of at least 16 characters")));
                }
                Receiver::Webhook(Arc::new(Webhook { url: config.url.clone().unwrap_or_default(), secret: secret.into_bytes(), agent: agent(config.timeout) }))
            }
            SinkKind::Alertmanager => {
                let base = config.url.clone().unwrap_or_default();
                Receiver::Alertmanager(Arc::new(Alertmanager { url: format!("{}/api/v2/alerts", base.trim_end_matches('/')), fold_ms: fold_window.as_millis() as i64, agent: agent(config.timeout) }))
            }
            SinkKind::File => Receiver::File(Arc::new(FileOut { path: config.path.clone().unwrap_or_default() })),
        };
        let spool = Spool::open_sealed(&dir.join(&name), keys.map(|k| k.sealer("alert-sink-spool"))).map_err(|e| bad(format!("spool: {e}")))?;
        Ok(AlertSink { name, config: config.clone(), spool, receiver, counts: Arc::new(SinkCounts::default()) })
    }

    /// Alerts waiting.
    pub fn depth(&self) -> u64 {
        self.spool.depth()
    }

    /// Queue a new alert if it is severe enough; past `max_spool`, drop it (logged, counted).
    pub fn offer(&self, alert: &FeedAlert, body: &[u8]) {
        if rank(alert.alert.severity) < rank(self.config.min_severity) {
            return;
        }
        if self.spool.depth() >= self.config.max_spool {
            self.counts.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(sink = %self.name, alert = %alert.alert.id, max_spool = self.config.max_spool, "alert sink spool full: alert dropped for this sink");
            return;
        }
        if let Err(e) = self.spool.push("alert", alert.alert.id.as_bytes(), body) {
            self.counts.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(sink = %self.name, alert = %alert.alert.id, error = %e, "alert sink spool cannot be written: alert dropped for this sink");
        }
    }

    /// Deliver until `stop`, retrying with backoff while the receiver fails.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        let counting = Counting { receiver: &self.receiver, counts: &self.counts };
        self.spool
            .run(&counting, stop, |e| {
                self.counts.retried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(sink = %self.name, error = %e, depth = self.spool.depth(), "alert delivery failed; alerts stay spooled and are retried");
            })
            .await;
    }
}

struct Counting<'a> {
    receiver: &'a Receiver,
    counts: &'a SinkCounts,
}

impl Deliver for Counting<'_> {
    fn max_batch(&self) -> usize {
        // A webhook takes one alert per request: each is acknowledged on its own.
        if matches!(self.receiver, Receiver::Webhook(_)) {
            1
        } else {
            usize::MAX
        }
    }

    async fn deliver(&self, _topic: &str, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StreamError> {
        match self.receiver {
            Receiver::Webhook(w) => {
                // One request at a time (one record, see `max_batch`), in order.
                for (key, body) in records {
                    let (w, key, body) = (w.clone(), key.clone(), body.clone());
                    tokio::task::spawn_blocking(move || w.post(&key, &body)).await.map_err(|e| StreamError::Platform { what: "webhook", message: e.to_string() })??;
                    self.counts.delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Receiver::Alertmanager(am) => {
                // One request for the run: Alertmanager takes a list.
                let (am, bodies) = (am.clone(), records.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
                let n = bodies.len() as u64;
                tokio::task::spawn_blocking(move || am.post(&bodies)).await.map_err(|e| StreamError::Platform { what: "alertmanager", message: e.to_string() })??;
                self.counts.delivered.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            Receiver::File(f) => {
                let (f, lines) = (f.clone(), records.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
                let n = lines.len() as u64;
                tokio::task::spawn_blocking(move || f.append(&lines)).await.map_err(|e| StreamError::Platform { what: "alert file", message: e.to_string() })??;
                self.counts.delivered.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// An HTTP client for one receiver: its timeout, and every status returned as a response.
fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into()
}

/// Did the receiver take it? A 2xx only; no answer is `Unreachable`, another status `Platform`.
fn accepted(what: &'static str, url: &str, response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<(), StreamError> {
    let status = response.map_err(|e| StreamError::Unreachable { what, message: e.to_string() })?.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(StreamError::Platform { what, message: format!("{url} answered {status}") })
    }
}

struct Webhook {
    url: String,
    secret: Vec<u8>,
    agent: ureq::Agent,
}

/// `sha256=<hex>`: the HMAC-SHA-256 of `body` under `secret`, as the receiver recomputes it.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    fn post(&self, key: &[u8], body: &[u8]) -> Result<(), StreamError> {
        let id = String::from_utf8_lossy(key);
        let response = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", id.as_ref())
            .header("x-haechi-signature", signature(&self.secret, body))
            .send(body);
        accepted("webhook", &self.url, response)
    }
}

struct Alertmanager {
    url: String,
    fold_ms: i64,
    agent: ureq::Agent,
}

/// One alert as Alertmanager API v2 takes it.
pub fn alertmanager_alert(alert: &FeedAlert, fold_ms: i64) -> serde_json::Value {
    let a = &alert.alert;
    let starts = haechi_features::parse_rfc3339_ms(&a.time).unwrap_or_else(crate::enforce::now_ms);
    let iso = haechi_features::format_rfc3339_ms;
    let mut labels = serde_json::json!({
        "alertname": a.rule,
        "severity": a.severity.as_str(),
        "detector": a.detector,
        "service": "haechi",
        "alert_id": a.id,
    });
    if let (Some(kind), Some(entity)) = (a.entity_kind, &a.entity) {
        labels["entity_kind"] = kind.as_str().into();
        labels["entity"] = entity.as_str().into();
    }
    let what = a.entity.as_deref().map_or(String::new(), |e| format!(" on {} {e}", a.entity_kind.map_or("", |k| k.as_str())));
    serde_json::json!({
        "labels": labels,
        "annotations": {
            "summary": format!("{}{what}", a.rule),
            "description": format!("{} finding(s) of {} ({}), first at {}; event {}", a.count, a.rule, a.detector, a.time, a.event_id),
        },
        "startsAt": iso(starts),
        "endsAt": iso(starts + fold_ms),
    })
}

impl Alertmanager {
    fn post(&self, bodies: &[Vec<u8>]) -> Result<(), StreamError> {
        let alerts: Vec<serde_json::Value> = bodies
            .iter()
            .filter_map(|b| serde_json::from_slice::<FeedAlert>(b).ok())
            .map(|a| alertmanager_alert(&a, self.fold_ms))
            .collect();
        let body = serde_json::to_vec(&alerts).map_err(|e| StreamError::Platform { what: "alertmanager", message: e.to_string() })?;
        let response = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .send(&body[..]);
        accepted("alertmanager", &self.url, response)
    }
}

struct FileOut {
    path: PathBuf,
}

impl FileOut {
    fn append(&self, lines: &[Vec<u8>]) -> Result<(), StreamError> {
        let io = |e: std::io::Error| StreamError::Platform { what: "alert file", message: format!("{}: {e}", self.path.display()) };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
        let mut buf = Vec::new();
        for l in lines {
            buf.extend_from_slice(l);
            buf.push(b'\n');
        }
        f.write_all(&buf).map_err(io)?;
        f.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_the_signature_is_hmac_sha256() {
        let ok = AlertSinkConfig { kind: SinkKind::Webhook, url: Some("https://siem.example/h".into()), secret_env: Some("S".into()), path: None, min_severity: Severity::Medium, max_spool: 10, timeout: Duration::from_secs(1) };
        ok.validate(0).unwrap();
        let no_secret = AlertSinkConfig { secret_env: None, ..ok.clone() };
        assert!(no_secret.validate(0).unwrap_err().to_string().contains("secret_env"));
        let file_with_url = AlertSinkConfig { kind: SinkKind::File, path: Some("a".into()), ..ok.clone() };
        assert!(file_with_url.validate(1).unwrap_err().to_string().contains("for webhooks"));
        // RFC 4231 test case 2.
        assert_eq!(signature(b"Jefe", b"what do ya want for nothing?"), "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
