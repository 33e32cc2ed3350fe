//! `haechi serve`: the pipeline behind HTTP, with blocking, rate limits, a
//! live alert feed and metrics.
//!
//! [`run`] takes a bound listener and a cancellation token, so tests start
//! the real service on a free port and stop it when they like; the binary
//! only adds signals. Background tasks (block persistence, sweeps, file
//! watching) are tracked and given a deadline at shutdown.

mod api;
pub mod audit;
mod records_api;
mod console;
mod openapi;
mod rules_api;
mod suppress_api;
pub mod triage;
pub mod auth;
pub(crate) mod feed;
mod metrics;
mod state;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use api::router;
pub use audit::{AuditLog, AuditRecord};
pub use auth::{PrincipalConfig, Principals, Role};
pub use tls::TlsConfig;
pub use state::{AppState, LiveDecision};

use crate::error::DetectorError;
use crate::pipeline::Pipeline;
use crate::Config;

/// HTTP settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Largest request body; larger gets 413.
    pub max_body_bytes: usize,
    /// Requests beyond this many in flight are shed with 503.
    pub concurrency_limit: usize,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long shutdown may take to drain requests and flush state.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
    /// Alerts kept for `GET /v1/alerts` and stream catch-up.
    pub alert_ring: usize,
    /// Watch rule and model files and reload on change.
    pub watch_files: bool,
    /// The append-only audit log (JSON lines); unset: `haechi-audit.jsonl`
    /// beside the block state file if there is one, else memory only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<PathBuf>,
    /// HTTPS only, with this certificate and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Who may call `/v1`, with which role. Empty: no authentication, allowed
    /// only on a loopback address (or with `haechi serve --insecure`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<PrincipalConfig>,
    /// The removed `api_tokens` setting: present only to refuse it with advice.
    #[doc(hidden)]
    #[serde(default, rename = "api_tokens", skip_serializing)]
    pub removed_api_tokens: Option<serde::de::IgnoredAny>,
    /// Most clients on `GET /v1/alerts/stream` at once; more get 503.
    pub max_alert_subscribers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 8 << 20,
            concurrency_limit: 1024,
            request_timeout: Duration::from_secs(10),
            shutdown_deadline: Duration::from_secs(10),
            alert_ring: 10_000,
            watch_files: true,
            audit_log: None,
            tls: None,
            principals: Vec::new(),
            removed_api_tokens: None,
            max_alert_subscribers: 64,
        }
    }
}

impl ServerConfig {
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> Result<(), crate::DetectorError> {
        self.listen.parse::<SocketAddr>().map_err(|_| setting!("server.listen = `{}`: not an address:port", self.listen))?;
        if self.max_body_bytes < 1024 {
            return Err(setting!("server.max_body_bytes must be at least 1024"));
        }
        if self.concurrency_limit == 0 || self.alert_ring == 0 || self.max_alert_subscribers == 0 {
            return Err(setting!("server.concurrency_limit, server.alert_ring and server.max_alert_subscribers must be positive"));
        }
        if self.removed_api_tokens.is_some() {
            return Err(setting!("server.api_tokens is no longer supported: declare each caller as a [[server.principals]] entry \
                        with name, role (ingest, analyst, auditor or admin) and token_sha256, the hex SHA-256 of its token \
                        (compute it with `printf %s TOKEN | sha256sum`); the token itself stays out of the file"));
        }
        Principals::from_config(&self.principals)?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        Ok(())
    }

    /// May the service start on this address with these principals?
    /// Returns a warning to log when it may but runs open.
    ///
    /// # Errors
    /// A non-loopback address with no principals, unless `insecure`.
    pub fn check_exposure(&self, insecure: bool) -> Result<Option<String>, crate::DetectorError> {
        if !self.principals.is_empty() {
            return Ok(None);
        }
        let addr: SocketAddr = self.listen.parse().map_err(|_| setting!("server.listen = `{}`: not an address:port", self.listen))?;
        if addr.ip().is_loopback() {
            return Ok(Some(format!("no [[server.principals]] configured: the API on {addr} is open to anyone on this machine (loopback only)")));
        }
        if insecure {
            return Ok(Some(format!("--insecure: no [[server.principals]] configured and listening on {addr}: the API is open to anyone who can reach it")));
        }
        Err(setting!(
            "refusing to listen on {addr} with no [[server.principals]] configured: anyone who can reach it could send events, \
             lift blocks and reload rules. Declare principals (name, role, token_sha256), listen on a loopback address, \
             or pass `haechi serve --insecure` to run open anyway"
        ))
    }
}

/// Reload rules and model; returns a description of each outcome.
pub(crate) fn reload_all(s: &AppState) -> (String, String) {
    let rules = match s.pipeline.rules().reload() {
        Ok(set) => {
            s.metrics.reloads.with_label_values(&["rules", "ok"]).inc();
            tracing::info!(version = %set.version(), rules = set.rules().len(), "rules reloaded");
            format!("ok: version {}", set.version())
        }
        Err(e) => {
            s.metrics.reloads.with_label_values(&["rules", "error"]).inc();
            tracing::error!(error = %e, "rule reload refused; the previous rules keep running");
            format!("refused, previous rules kept: {e}")
        }
    };
    let model = match s.pipeline.model() {
        None => "disabled".to_owned(),
        Some(m) => match m.reload() {
            Ok(()) => {
                s.metrics.reloads.with_label_values(&["model", "ok"]).inc();
                format!("ok: fingerprint {}", m.version())
            }
            Err(e) => {
                s.metrics.reloads.with_label_values(&["model", "error"]).inc();
                tracing::error!(error = %e, "model reload refused; the previous model keeps running");
                format!("refused, previous model kept: {e}")
            }
        },
    };
    (rules, model)
}

/// The data key ring the service seals its files with, and where it came
/// from: with a data dir always (the public demo key when `[records]`
/// configures none); without one only when a key is configured, for a block
/// state file kept elsewhere. `--memory-only` needs no key.
///
/// # Errors
/// An unreadable or malformed key, an unset variable, or a key file inside
/// the data dir.
pub fn data_keys(config: &Config) -> Result<Option<(haechi_storage::KeyRing, haechi_records::KeySource)>, DetectorError> {
    let records = &config.records;
    match &config.storage.data_dir {
        Some(dir) => Ok(Some(records.key_ring(Some(dir))?)),
        None if records.key_file.is_some() || records.key_env.is_some() => Ok(Some(records.key_ring(None)?)),
        None => Ok(None),
    }
}

/// Build the shared state from a configuration. With `storage.data_dir`
/// set, the data dir is opened and locked, and state is recovered from its
/// newest valid snapshot and the ingest log after it before this returns.
///
/// # Errors
/// When the pipeline (rules, model), the block state, the data key or the
/// data dir cannot be loaded.
pub fn build_state(mut config: Config) -> Result<Arc<AppState>, DetectorError> {
    let server = config.server.clone();
    let bad = |message: String| DetectorError::Config { path: "server".into(), message };
    let principals = Principals::from_config(&server.principals).map_err(|e| bad(e.to_string()))?;
    let tls = server.tls.as_ref().map(TlsConfig::load).transpose().map_err(|e| bad(e.to_string()))?;
    let keys = if config.storage.unsealed { None } else { data_keys(&config)?.map(|(ring, _)| ring) };
    let data = match &config.storage.data_dir {
        Some(dir) => Some(Arc::new(crate::durable::DataDir::open(dir, config.storage.clone(), keys.as_ref())?)),
        None => None,
    };
    if let Some(d) = &data {
        // Everything durable lives in the data dir unless configured elsewhere.
        if config.blocks.state_file.is_none() {
            config.blocks.state_file = Some(d.path().join("blocks.json"));
        }
    }
    let audit_path = server.audit_log.clone().or_else(|| {
        config.blocks.state_file.as_ref().map(|f| f.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new(".")).join("haechi-audit.jsonl"))
    });
    // With a data dir, staff actions are access records; the log file is for memory-only runs.
    let recording = match &data {
        Some(d) if config.records.enabled => {
            let ring = match &keys {
                Some(ring) => ring.clone(),
                None => config.records.key_ring(Some(d.path()))?.0,
            };
            Some(Arc::new(crate::recording::Recording::open(d.path(), &config.records, &ring)?))
        }
        _ => None,
    };
    let audit = match &recording {
        Some(r) => AuditLog::on_records(r.clone()),
        None => AuditLog::open(audit_path.as_deref()).map_err(|e| bad(format!("audit log {}: {e}", audit_path.as_deref().unwrap_or(std::path::Path::new("-")).display())))?,
    };
    // Exports pending and analysts' judgements, as the processing records left them: read once.
    let processing = match &recording {
        Some(r) => r.records().query(&haechi_records::Filter { kinds: vec![haechi_records::RecordKind::Export, haechi_records::RecordKind::Action], ..haechi_records::Filter::default() })?,
        None => Vec::new(),
    };
    let exports = recording.as_ref().map(|_| records_api::Exports::from_records(&processing));
    if let (Some(d), Some(r)) = (&data, &recording) {
        let r = r.clone();
        d.before_snapshot_write(Box::new(move || r.flush()));
    }
    // Event times are bounded by the wall clock. Block TTLs and quotas run on
    // it too, unless a topic is consumed: replicas reading the same topic
    // then enforce on event time, so that they decide alike.
    config.pipeline.live = true;
    if config.source.fluvio.is_none() {
        config.pipeline.enforcement_clock = crate::enforce::EnforcementClock::Wall;
    }
    let outbox = match (&data, &config.sinks.fluvio, &config.source.fluvio) {
        (None, Some(_), _) => return Err(bad("[sinks.fluvio] needs a data dir for its spool: run without --memory-only".into())),
        (Some(d), Some(sinks), source) => Some(Arc::new(crate::fluvio::Outbox::open(
            &d.path().join("spool"),
            d.sealer(crate::durable::purpose::SPOOL),
            sinks.clone(),
            source.as_ref().and_then(|s| s.dead_letter_topic.clone()),
            config.replica.id.clone(),
        )?)),
        _ => None,
    };
    let config_sinks = config.alerts.sinks.clone();
    let (ring, fold_ms, lateness_ms) = (server.alert_ring, config.alerts.fold_window.as_millis() as i64, config.features.allowed_lateness.as_millis() as i64);
    let pipeline = Arc::new(Pipeline::with_sealed_blocks(config, keys.as_ref().map(|k| k.sealer(crate::durable::purpose::BLOCKS)))?);
    let feed = match &data {
        Some(d) => feed::AlertFeed::with_log(ring, fold_ms, lateness_ms, d.alert_log().clone())?,
        None => feed::AlertFeed::new(ring, fold_ms, lateness_ms),
    };
    let alert_sinks = match &data {
        Some(d) => config_sinks.iter().enumerate().map(|(n, c)| crate::alert_sinks::AlertSink::open(&d.path().join("alert-sinks"), n, c, keys.as_ref(), Duration::from_millis(fold_ms as u64)).map(Arc::new)).collect::<Result<Vec<_>, _>>()?,
        None if !config_sinks.is_empty() => return Err(bad("[[alerts.sinks]] spool alerts in the data dir: run without --memory-only".into())),
        None => Vec::new(),
    };
    let mut state = AppState::new(pipeline, feed, server, principals, audit, tls, data, outbox);
    state.exports = exports;
    state.alert_sinks = alert_sinks;
    let actions = || {
        processing.iter().filter_map(|r| match &r.body {
            haechi_records::RecordBody::Action(a) => Some(a),
            _ => None,
        })
    };
    state.triage = triage::TriageBook::from_actions(actions());
    let suppressions = suppress_api::restore(&state, &processing);
    if suppressions > 0 {
        tracing::info!(suppressions, "analysts' suppressions in force restored from the records");
    }
    let state = Arc::new(state);
    let (out, rec) = (state.outbox.clone(), recording.clone());
    if out.is_some() || rec.is_some() {
        state.blocks().on_change(Box::new(move |change, block| {
            if let Some(out) = &out {
                out.block(change, block);
            }
            if let Some(rec) = &rec {
                rec.block(change, block);
            }
        }));
    }
    if let Some(d) = &state.data {
        let report = match &recording {
            Some(r) => d.recover(&state.pipeline, &state.feed, &mut crate::recording::RecordsSink::for_log(r))?,
            None => d.recover(&state.pipeline, &state.feed, &mut crate::driver::Discard)?,
        };
        *state.topic_offsets.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = report.topic_offsets.clone();
        state.metrics.recovered_events.set(report.replayed as i64);
        state.metrics.snapshots_refused.set(report.refused.len() as i64);
        match &report.snapshot {
            Some((path, offset)) => tracing::info!(
                snapshot = %path.display(),
                covers = offset,
                replayed = report.replayed,
                refused = report.refused.len(),
                seconds = report.elapsed.as_secs_f64(),
                "state recovered from the snapshot and the ingest log after it"
            ),
            None if report.replayed > 0 => tracing::info!(replayed = report.replayed, seconds = report.elapsed.as_secs_f64(), "state rebuilt from the whole ingest log"),
            None => tracing::info!(dir = %d.path().display(), "new data dir"),
        }
        if report.unreadable > 0 {
            tracing::warn!(records = report.unreadable, "ingest log records that this configuration no longer accepts were skipped");
        }
    }
    Ok(state)
}

/// Write a snapshot now, off the async runtime; logs and counts the outcome.
pub async fn snapshot_now(state: &Arc<AppState>) -> Option<crate::durable::SnapshotReport> {
    let data = state.data.clone()?;
    let s = state.clone();
    let outcome = tokio::task::spawn_blocking(move || data.write_snapshot(&s.pipeline, &s.feed, &s.topic_offsets)).await;
    match outcome {
        Ok(Ok(r)) => {
            state.metrics.snapshots.with_label_values(&["ok"]).inc();
            state.metrics.snapshot_pause_seconds.observe(r.paused.as_secs_f64());
            tracing::info!(
                path = %r.path.display(),
                bytes = r.bytes,
                entities = r.entities,
                covers = r.covers_offset,
                paused_ms = r.paused.as_millis() as u64,
                written_ms = r.written.as_millis() as u64,
                pruned_segments = r.segments_pruned,
                "snapshot written"
            );
            Some(r)
        }
        Ok(Err(e)) => {
            state.metrics.snapshots.with_label_values(&["error"]).inc();
            tracing::error!(error = %e, "writing a snapshot failed; the previous ones and the log still hold the state");
            None
        }
        Err(e) => {
            state.metrics.snapshots.with_label_values(&["error"]).inc();
            tracing::error!(error = %e, "the snapshot task failed");
            None
        }
    }
}

/// Rule and model versions, as the audit log records a reload.
pub(crate) fn versions(s: &AppState) -> serde_json::Value {
    serde_json::json!({
        "rules": s.pipeline.rules().current().version().to_string(),
        "model": s.pipeline.model().map(|m| m.version().to_string()),
    })
}

/// Reload rules and model and audit it as done by `who`.
///
/// # Errors
/// When the audit line cannot be written (the reload has happened).
pub(crate) async fn reload_audited(s: Arc<AppState>, who: audit::Actor) -> Result<(String, String), (String, String, std::io::Error)> {
    tokio::task::spawn_blocking(move || {
        let before = versions(&s);
        let outcome = reload_all(&s);
        let mut after = versions(&s);
        after["outcome"] = serde_json::json!({ "rules": outcome.0, "model": outcome.1 });
        match s.audit.append(AuditRecord::now(who, "reload", None, None, before, after)) {
            Ok(()) => Ok(outcome),
            Err(e) => {
                tracing::error!(error = %e, "writing the audit log failed");
                Err((outcome.0, outcome.1, e))
            }
        }
    })
    .await
    .unwrap_or_else(|e| Err((String::new(), String::new(), std::io::Error::other(e))))
}

/// Serve until `shutdown` is cancelled, then drain and flush within the deadline.
///
/// # Errors
/// When the server fails.
pub async fn run(listener: TcpListener, state: Arc<AppState>, shutdown: CancellationToken) -> Result<(), DetectorError> {
    let tracker = TaskTracker::new();
    spawn_background(&tracker, &state, &shutdown);
    let app = router(state.clone(), shutdown.clone()).layer(
        tower::ServiceBuilder::new()
            .layer(axum::error_handling::HandleErrorLayer::new(|e: tower::BoxError| async move {
                if e.is::<tower::timeout::error::Elapsed>() {
                    api::ApiError::timeout()
                } else {
                    api::ApiError::overloaded()
                }
            }))
            .load_shed()
            .concurrency_limit(state.server.concurrency_limit)
            .timeout(state.server.request_timeout),
    );
    state.set_ready(true);
    let token = shutdown.clone();
    let state_for_shutdown = state.clone();
    if let Some(tls) = state.tls.clone() {
        // HTTPS only: a plain-HTTP request fails the handshake and is never served.
        let handle = axum_server::Handle::new();
        let stopper = handle.clone();
        let deadline = state.server.shutdown_deadline;
        tokio::spawn(async move {
            token.cancelled().await;
            state_for_shutdown.set_ready(false);
            stopper.graceful_shutdown(Some(deadline));
        });
        axum_server::from_tcp_rustls(listener.into_std()?, axum_server::tls_rustls::RustlsConfig::from_config(tls))?
            .handle(handle)
            .serve(app.into_make_service())
            .await?;
    } else {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                token.cancelled().await;
                state_for_shutdown.set_ready(false);
            })
            .await?;
    }
    tracker.close();
    let deadline = state.server.shutdown_deadline;
    if tokio::time::timeout(deadline, tracker.wait()).await.is_err() {
        tracing::warn!("background tasks did not stop within {deadline:?}");
    }
    // Whatever the tasks did, the block list reaches the disk.
    let blocks = state.blocks().clone();
    tokio::task::spawn_blocking(move || blocks.persist()).await.map_err(std::io::Error::other)??;
    // The access records written and their heads signed, before the snapshot that says the
    // log up to here is done.
    if let Some(r) = state.audit.recording().cloned() {
        match tokio::task::spawn_blocking(move || r.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "flushing the access records failed"),
            Err(e) => tracing::error!(error = %e, "flushing the access records failed"),
        }
    }
    // And a final snapshot, so that the next start replays nothing.
    if state.data.is_some() && tokio::time::timeout(deadline, snapshot_now(&state)).await.is_err() {
        tracing::warn!("the final snapshot did not finish within {deadline:?}; the next start replays the log from the previous one");
    }
    Ok(())
}

/// Run the Fluvio side against `broker` until `shutdown`: the source-topic
/// consumer, the other replicas' blocks, lag reports and the sinks' drain,
/// as configured. `haechi serve` calls it with a Fluvio cluster; tests with
/// an in-memory broker.
pub fn spawn_stream_tasks<B: haechi_streams::Broker>(tracker: &TaskTracker, state: &Arc<AppState>, broker: Arc<B>, shutdown: &CancellationToken) {
    let cfg = state.pipeline.config();
    if let Some(source) = cfg.source.fluvio.clone() {
        tracker.spawn(crate::fluvio::consume(state.clone(), broker.clone(), source.clone(), shutdown.clone()));
        tracker.spawn(crate::fluvio::report_lag(state.clone(), broker.clone(), source.topic, shutdown.clone()));
    }
    if state.outbox.is_some() {
        tracker.spawn(crate::fluvio::drain_outbox(state.clone(), broker.clone(), shutdown.clone()));
    }
    if let Some(topic) = cfg.sinks.fluvio.as_ref().and_then(|s| s.blocks_topic.clone()) {
        tracker.spawn(crate::fluvio::follow_blocks(state.clone(), broker, topic, shutdown.clone()));
    }
}

/// Connect to the configured Fluvio cluster (retrying until it answers) and
/// run [`spawn_stream_tasks`] on it.
fn spawn_fluvio(tracker: &TaskTracker, state: &Arc<AppState>, shutdown: &CancellationToken) {
    let cfg = state.pipeline.config();
    let endpoint = match (&cfg.source.fluvio, &cfg.sinks.fluvio) {
        (Some(s), _) => s.endpoint.clone(),
        (None, Some(k)) => k.endpoint.clone().unwrap_or_else(|| crate::fluvio::FluvioSourceConfig::default().endpoint),
        (None, None) => return,
    };
    let (tracker2, s, stop) = (tracker.clone(), state.clone(), shutdown.clone());
    tracker.spawn(async move {
        let mut wait = Duration::from_millis(200);
        let broker = loop {
            match haechi_streams::FluvioBroker::connect(&endpoint).await {
                Ok(b) => break Arc::new(b),
                Err(e) => {
                    s.metrics.stream_errors.with_label_values(&["connect"]).inc();
                    tracing::warn!(error = %e, endpoint, "Fluvio is not reachable yet; retrying (sinks keep spooling)");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        };
        tracing::info!(endpoint, "connected to Fluvio");
        spawn_stream_tasks(&tracker2, &s, broker, &stop);
    });
}

fn spawn_background(tracker: &TaskTracker, state: &Arc<AppState>, shutdown: &CancellationToken) {
    spawn_fluvio(tracker, state, shutdown);
    // Snapshots by time and by events; the final one is written by `run` after the drain.
    if state.data.is_some() {
        let (s, stop) = (state.clone(), shutdown.clone());
        tracker.spawn(async move {
            let mut last = std::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if s.data.as_ref().is_some_and(|d| d.snapshot_due(last)) {
                    snapshot_now(&s).await;
                    last = std::time::Instant::now();
                }
            }
        });
    }
    // Alert sinks: each delivers its spool in order, retrying while its receiver is down.
    for sink in &state.alert_sinks {
        let (sink, stop) = (sink.clone(), shutdown.clone());
        tracker.spawn(async move { sink.run(stop.cancelled()).await });
    }
    // Records: archive what is old enough and destroy what is past retention, at start and hourly.
    if let Some(rec) = state.audit.recording().cloned() {
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let r = rec.clone();
                match tokio::task::spawn_blocking(move || r.records().maintain(crate::enforce::now_ms())).await {
                    Ok(Ok(done)) if done.archived > 0 || !done.destroyed.is_empty() => tracing::info!(archived = done.archived, destroyed = ?done.destroyed, "records maintenance"),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "records maintenance failed"),
                    Err(e) => tracing::error!(error = %e, "records maintenance failed"),
                }
            }
        });
    }
    // Persist the block list when it changes (at most every 200 ms).
    let (s, stop) = (state.clone(), shutdown.clone());
    tracker.spawn(async move {
        let changed = s.blocks().changed();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = changed.notified() => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let blocks = s.blocks().clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || blocks.persist()).await {
                tracing::error!(error = %e, "writing the block state failed; will retry on the next change");
            }
        }
    });
    // One housekeeping loop, off the request path: expire idle entities and
    // forgotten event ids every half second (a sweep of millions of entities
    // must never stall a decision); every ten ticks also drop expired blocks
    // and idle limiter keys and refresh the block gauges.
    state.pipeline.sweep_in_background();
    // The same loop evicts in any entity kind over its cap (the store's
    // `sweep_due` does both) and reports evictions: a warning the first time a
    // kind evicts, then at most one line a minute per kind.
    let (s, stop) = (state.clone(), shutdown.clone());
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut log = EvictionLog::default();
        for n in 0u64.. {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let st = s.clone();
            let _ = tokio::task::spawn_blocking(move || {
                // Sweeps change the store: not while a snapshot copies it.
                let _gate = st.data.as_ref().map(|d| d.ingest_gate());
                st.pipeline.sweep_due();
                if n % 10 == 0 {
                    let enforcer = st.pipeline.enforcer();
                    if let Some(now) = enforcer.sweep_now(st.pipeline.store().watermark_ms()) {
                        for (kind, count) in enforcer.sweep(now) {
                            st.metrics.blocks_active.with_label_values(&[kind.as_str()]).set(count);
                        }
                    }
                }
            })
            .await;
            log.report(&s, s.sync_store_counters(), std::time::Instant::now());
        }
    });
    // SIGHUP reloads rules and model.
    #[cfg(unix)]
    {
        let (s, stop) = (state.clone(), shutdown.clone());
        tracker.spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    Some(()) = hup.recv() => { let _ = reload_audited(s.clone(), audit::Actor { name: "SIGHUP".into(), role: "system".into() }).await; }
                }
            }
        });
    }
    // File changes reload too. The watch is set up here, before the server
    // accepts its first request, so an edit made right after start is seen.
    if state.server.watch_files {
        let paths: Vec<PathBuf> = [state.pipeline.rules().source().map(PathBuf::from), state.pipeline.model().and_then(|m| m.path().map(PathBuf::from))]
            .into_iter()
            .flatten()
            .collect();
        if !paths.is_empty() {
            let watch = FileWatch::start(&paths);
            let (s, stop) = (state.clone(), shutdown.clone());
            tracker.spawn(watch_files(watch, s, stop));
        }
    }
}

/// Rate-limited eviction logging: per kind, a warning when evictions start,
/// then a summary at most once a minute while they go on.
#[derive(Default)]
struct EvictionLog {
    last: [Option<(std::time::Instant, u64)>; haechi_features::KIND_COUNT],
}

impl EvictionLog {
    const EVERY: Duration = Duration::from_secs(60);

    fn report(&mut self, s: &AppState, delta: [u64; haechi_features::KIND_COUNT], now: std::time::Instant) {
        let store = s.pipeline.store();
        for kind in haechi_features::EntityKind::ALL {
            let i = kind.index();
            match &mut self.last[i] {
                None if delta[i] > 0 => {
                    tracing::warn!(
                        kind = kind.as_str(),
                        cap = store.entity_cap(kind),
                        evicted = delta[i],
                        "entity cap reached: evicting the least recently seen {kind} entities (features.max_entities.{kind}); a spray of fresh keys, or a cap too small for the traffic"
                    );
                    self.last[i] = Some((now, 0));
                }
                None => {}
                Some((at, pending)) => {
                    *pending += delta[i];
                    if *pending > 0 && now.duration_since(*at) >= Self::EVERY {
                        tracing::warn!(kind = kind.as_str(), cap = store.entity_cap(kind), evicted = *pending, "still evicting {kind} entities at the cap");
                        *at = now;
                        *pending = 0;
                    }
                }
            }
        }
    }
}

/// How often rule and model files are polled when they cannot be watched.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Change notification for rule and model files: the OS watcher when one can
/// be had, else polling modification times.
enum FileWatch {
    Notify {
        // Kept alive for as long as the watch runs.
        _watcher: notify::RecommendedWatcher,
        rx: tokio::sync::mpsc::Receiver<()>,
    },
    Poll { paths: Vec<PathBuf>, seen: FileStamps },
}

impl FileWatch {
    /// Set up the watch synchronously; fall back to polling when the OS
    /// watcher (inotify and the like) cannot be created or refuses a path.
    fn start(paths: &[PathBuf]) -> FileWatch {
        use notify::{RecursiveMode, Watcher};
        let (tx, rx) = tokio::sync::mpsc::channel::<()>(16);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok_and(|e| e.kind.is_modify() || e.kind.is_create() || e.kind.is_remove()) {
                let _ = tx.try_send(());
            }
        });
        let problem = match watcher {
            Ok(mut w) => {
                let mut refused = None;
                for p in paths {
                    // Watch the directory: editors replace files rather than write them in place.
                    let target = if p.is_dir() { p.clone() } else { p.parent().map(PathBuf::from).unwrap_or_else(|| p.clone()) };
                    if let Err(e) = w.watch(&target, RecursiveMode::NonRecursive) {
                        refused = Some(format!("{}: {e}", target.display()));
                        break;
                    }
                }
                match refused {
                    None => return FileWatch::Notify { _watcher: w, rx },
                    Some(e) => e,
                }
            }
            Err(e) => e.to_string(),
        };
        tracing::warn!(
            error = %problem,
            "cannot watch rule and model files; polling their modification times every {}s instead (SIGHUP and POST /v1/reload also reload)",
            POLL_INTERVAL.as_secs()
        );
        FileWatch::Poll { paths: paths.to_vec(), seen: FileStamps::take(paths) }
    }
}

/// Modification time and length of each watched file, and of each file in a
/// watched directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamps(Vec<(PathBuf, Option<(std::time::SystemTime, u64)>)>);

impl FileStamps {
    fn take(paths: &[PathBuf]) -> FileStamps {
        fn stamp(p: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        }
        let mut out = Vec::new();
        for p in paths {
            out.push((p.clone(), stamp(p)));
            if p.is_dir() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(p).into_iter().flatten().filter_map(|e| e.ok().map(|e| e.path())).collect();
                entries.sort();
                out.extend(entries.into_iter().map(|e| {
                    let s = stamp(&e);
                    (e, s)
                }));
            }
        }
        FileStamps(out)
    }
}

fn file_watch_actor() -> audit::Actor {
    audit::Actor { name: "file-watch".into(), role: "system".into() }
}

async fn watch_files(watch: FileWatch, state: Arc<AppState>, stop: CancellationToken) {
    match watch {
        FileWatch::Notify { _watcher, mut rx } => loop {
            tokio::select! {
                () = stop.cancelled() => break,
                Some(()) = rx.recv() => {
                    // Let a burst of writes settle, then reload once.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    while rx.try_recv().is_ok() {}
                    let _ = reload_audited(state.clone(), file_watch_actor()).await;
                }
            }
        },
        FileWatch::Poll { paths, mut seen } => {
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let p = paths.clone();
                let Ok(now) = tokio::task::spawn_blocking(move || FileStamps::take(&p)).await else { continue };
                if now != seen {
                    seen = now;
                    let _ = reload_audited(state.clone(), file_watch_actor()).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_sees_an_edit_a_new_file_and_a_removal_in_a_watched_directory() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        let file = rules.join("a.yaml");
        std::fs::write(&file, "rules: []\n").unwrap();
        let paths = vec![rules.clone()];
        let first = FileStamps::take(&paths);
        assert_eq!(first, FileStamps::take(&paths), "nothing changed");

        // A longer file: seen even where modification times are coarse.
        std::fs::write(&file, "rules: []\n# edited\n").unwrap();
        let edited = FileStamps::take(&paths);
        assert_ne!(first, edited);

        std::fs::write(rules.join("b.yaml"), "rules: []\n").unwrap();
        let added = FileStamps::take(&paths);
        assert_ne!(edited, added);

        std::fs::remove_file(rules.join("b.yaml")).unwrap();
        assert_ne!(added, FileStamps::take(&paths));
    }

    #[test]
    fn polling_a_single_file_sees_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.json");
        std::fs::write(&file, "{}").unwrap();
        let paths = vec![file.clone()];
        let before = FileStamps::take(&paths);
        let tmp = dir.path().join("model.json.new");
        std::fs::write(&tmp, "{\"v\": 2}").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert_ne!(before, FileStamps::take(&paths));
    }
}
