//! The live decision: the pipeline's decision (enforcement included), plus
//! what only the service has: the alert feed and metrics.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use haechi_features::{EntityKind, Error as EventError, Event, Finding, KIND_COUNT};

use super::audit::AuditLog;
use super::auth::Principals;
use super::feed::AlertFeed;
use super::metrics::Metrics;
use super::ServerConfig;
use crate::decision::Decision;
use crate::durable::DataDir;
use crate::error::DetectorError;
use crate::enforce::{BlockList, Refused};
use crate::driver::Sink;
use crate::pipeline::{Pipeline, Processed, Scratch};

/// The decision the service returns: the pipeline's, which already carries
/// the block-list entry that refused it, if any.
pub type LiveDecision = Decision;

/// Everything the handlers share.
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub feed: AlertFeed,
    pub metrics: Metrics,
    pub server: ServerConfig,
    pub ready: AtomicBool,
    /// Who may call `/v1`; empty: anyone (loopback or `--insecure`).
    pub principals: Principals,
    /// Analyst and admin actions.
    pub audit: AuditLog,
    /// HTTPS only, when set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Clients on the alert stream now.
    pub(crate) subscribers: AtomicUsize,
    /// Store eviction counts already added to the metric.
    evicted_reported: Mutex<[u64; KIND_COUNT]>,
    /// The data dir: the ingest log every accepted event is appended to, and
    /// snapshots. `None`: memory only (tests, `--memory-only`).
    pub data: Option<Arc<DataDir>>,
    /// Records for Fluvio topics, spooled in the data dir.
    pub outbox: Option<Arc<crate::fluvio::Outbox>>,
    /// Topic positions decided so far (saved in snapshots).
    pub topic_offsets: Mutex<crate::fluvio::TopicOffsets>,
    /// This replica's name (in the block topic).
    pub replica: String,
    /// Export requests and their approvals (with the access records).
    pub exports: Option<super::records_api::Exports>,
    /// Analysts' judgements of alerts.
    pub triage: super::triage::TriageBook,
    /// Findings per rule and minute, for the console's rule statistics.
    pub rule_hits: super::rules_api::RuleHits,
    /// `[[alerts.sinks]]`, each with its spool (with a data dir).
    pub alert_sinks: Vec<Arc<crate::alert_sinks::AlertSink>>,
}

/// One alert-stream client, counted while it is connected.
pub(crate) struct Subscription(Arc<AppState>);

impl Drop for Subscription {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.alert_subscribers.dec();
    }
}

impl AppState {
    /// State on a feed built by the caller (in memory, or on a data dir's alert log).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pipeline: Arc<Pipeline>,
        feed: AlertFeed,
        server: ServerConfig,
        principals: Principals,
        audit: AuditLog,
        tls: Option<Arc<rustls::ServerConfig>>,
        data: Option<Arc<DataDir>>,
        outbox: Option<Arc<crate::fluvio::Outbox>>,
    ) -> AppState {
        let replica = pipeline.config().replica.id.clone();
        AppState {
            data,
            outbox,
            topic_offsets: Mutex::new(crate::fluvio::TopicOffsets::new()),
            replica,
            pipeline,
            feed,
            metrics: Metrics::new(),
            server,
            ready: AtomicBool::new(false),
            principals,
            audit,
            tls,
            subscribers: AtomicUsize::new(0),
            evicted_reported: Mutex::new([0; KIND_COUNT]),
            exports: None,
            alert_sinks: Vec::new(),
            triage: super::triage::TriageBook::default(),
            rule_hits: super::rules_api::RuleHits::default(),
        }
    }

    /// Admit one more alert-stream client, or `None` when
    /// `server.max_alert_subscribers` are connected (counted as refused).
    pub(crate) fn subscribe(self: &Arc<Self>) -> Option<Subscription> {
        let max = self.server.max_alert_subscribers;
        if self.subscribers.fetch_add(1, Ordering::Relaxed) >= max {
            self.subscribers.fetch_sub(1, Ordering::Relaxed);
            self.metrics.alert_subscribers_refused.inc();
            return None;
        }
        self.metrics.alert_subscribers.inc();
        Some(Subscription(self.clone()))
    }

    /// Bring `haechi_entities_evicted_total` up to the store's counts; returns
    /// what each kind evicted since the last call.
    pub(crate) fn sync_store_counters(&self) -> [u64; KIND_COUNT] {
        let now = self.pipeline.store().stats().evicted;
        let mut seen = self.evicted_reported.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut delta = [0; KIND_COUNT];
        for kind in EntityKind::ALL {
            let i = kind.index();
            delta[i] = now[i].saturating_sub(seen[i]);
            if delta[i] > 0 {
                self.metrics.entities_evicted.with_label_values(&[kind.as_str()]).inc_by(delta[i]);
            }
        }
        *seen = now;
        delta
    }

    /// The block list the pipeline enforces.
    pub fn blocks(&self) -> &Arc<BlockList> {
        self.pipeline.enforcer().blocks()
    }

    /// Accept validated events: append them to the ingest log (with a data
    /// dir), then decide each in order; `each` gets every event's index in
    /// `batch` and its outcome. An event further ahead of the clock than
    /// the allowed skew is refused before the log, so that a replay of the
    /// log never decides what the service refused.
    ///
    /// # Errors
    /// When the ingest log cannot be written: nothing of the batch was
    /// decided, and the caller must refuse it (the client retries).
    pub fn accept(&self, batch: &[(&[u8], Event)], scratch: &mut Scratch, mut each: impl FnMut(usize, Result<LiveDecision, EventError>)) -> Result<(), DetectorError> {
        let mut admitted: Vec<usize> = Vec::with_capacity(batch.len());
        for (i, (_, event)) in batch.iter().enumerate() {
            match self.pipeline.admit(event) {
                Ok(()) => admitted.push(i),
                Err(e) => {
                    self.metrics.rejected.with_label_values(&[e.reason()]).inc();
                    each(i, Err(e));
                }
            }
        }
        // Held from the append until the last decision: a snapshot copies
        // state only when every logged event is decided.
        let gate = self.data.as_ref().map(|d| d.ingest_gate());
        let mut first_offset = None;
        if let Some(data) = &self.data {
            if !admitted.is_empty() {
                let raws: Vec<&[u8]> = admitted.iter().map(|&i| batch[i].0).collect();
                let t = Instant::now();
                match data.append(crate::enforce::now_ms(), &raws) {
                    Ok(first) => first_offset = Some(first),
                    Err(e) => {
                        self.metrics.ingest_log_errors.inc();
                        // A log that failed to sync cannot be trusted again
                        // without a restart: take the service out of rotation.
                        self.set_ready(false);
                        return Err(e);
                    }
                }
                self.metrics.stage_seconds.with_label_values(&["ingest_log"]).observe(t.elapsed().as_secs_f64());
            }
        }
        for (n, i) in admitted.into_iter().enumerate() {
            let offset = first_offset.map(|o| o + n as u64);
            each(i, self.decide_logged(&batch[i].1, offset, scratch));
        }
        drop(gate);
        Ok(())
    }

    /// Decide one event as the service does (after [`AppState::accept`] logged it).
    ///
    /// # Errors
    /// A repeated event id.
    pub fn decide(&self, event: &Event, scratch: &mut Scratch) -> Result<LiveDecision, EventError> {
        self.decide_logged(event, None, scratch)
    }

    /// [`AppState::decide`] for an event the ingest log holds at `log_offset`.
    fn decide_logged(&self, event: &Event, log_offset: Option<u64>, scratch: &mut Scratch) -> Result<LiveDecision, EventError> {
        let started = Instant::now();
        let outcome = crate::driver::decide(&self.pipeline, event, scratch, &mut LiveSink(self, log_offset));
        // The live sink never fails: metrics and the in-memory feed.
        match outcome.unwrap_or_else(|e| unreachable!("the live sink cannot fail: {e}")) {
            Ok(processed) => {
                self.metrics.stage_seconds.with_label_values(&["pipeline"]).observe(started.elapsed().as_secs_f64());
                Ok(processed.decision)
            }
            Err(e) => {
                self.metrics.rejected.with_label_values(&[e.reason()]).inc();
                Err(e)
            }
        }
    }

    /// The analysts' labels, with what the feed still knows of each alert.
    pub fn floor_labels(&self) -> Vec<crate::backtest::FloorLabel> {
        self.triage
            .labelled()
            .into_iter()
            .filter_map(|(id, t)| {
                let fed = self.feed.get(&id);
                let a = fed.as_ref().map(|a| &a.alert);
                Some(crate::backtest::FloorLabel {
                    label: t.label?,
                    detector: a.map(|a| a.detector.clone()),
                    rule: a.map(|a| a.rule.clone()),
                    entity_kind: a.and_then(|a| a.entity_kind),
                    entity: a.and_then(|a| a.entity.clone()),
                    time: a.map(|a| a.time.clone()),
                    last_time: a.map(|a| a.last_time.clone()),
                    by: Some(t.by),
                    alert_id: id,
                })
            })
            .collect()
    }

    /// Mark the service ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

/// The service's sink: metrics, the live alert feed (and its log), the access records; with
/// the event's ingest-log offset.
struct LiveSink<'a>(&'a AppState, Option<u64>);

impl Sink for LiveSink<'_> {
    fn decided(&mut self, pipeline: &Pipeline, event: &Event, processed: &Processed, findings: &[Finding]) -> Result<(), DetectorError> {
        let s = self.0;
        let m = &s.metrics;
        m.events.with_label_values(&[event.step.as_str(), if event.is_failure() { "failure" } else { "success" }]).inc();
        if processed.late {
            m.late_events.inc();
        }
        for f in findings {
            m.findings.with_label_values(&[&f.detector, &f.id]).inc();
        }
        s.rule_hits.count(event.ts_ms, findings);
        let recording = s.audit.recording();
        if let Some(r) = recording {
            r.event(self.1, event, &processed.decision);
        }
        for a in s.feed.fold_findings(pipeline, event, findings) {
            m.alerts.with_label_values(&[a.alert.severity.as_str()]).inc();
            if let Some(r) = recording {
                r.alert(&a.alert);
            }
            if !s.alert_sinks.is_empty() {
                if let Ok(body) = serde_json::to_vec(&a) {
                    for sink in &s.alert_sinks {
                        sink.offer(&a, &body);
                    }
                }
            }
            if let Some(out) = &s.outbox {
                out.alert(&a);
            }
        }
        if let Some(out) = &s.outbox {
            out.decision(&processed.decision);
        }
        let enforced = &processed.enforced;
        if let Some(scope) = enforced.rate_limited {
            m.rate_limited.with_label_values(&[scope.as_str()]).inc();
        }
        for (scope, by, outcome) in &enforced.set {
            match outcome {
                Ok(()) => m.blocks_set.with_label_values(&[scope.as_str(), by.as_str()]).inc(),
                Err(Refused::CircuitOpen) => m.breaker_trips.inc(),
                Err(Refused::AlreadyBlocked) => {}
            }
        }
        if processed.suppressed > 0 {
            m.suppressed_findings.inc_by(processed.suppressed as u64);
        }
        if enforced.guarded > 0 {
            m.blast_radius_guarded.inc_by(u64::from(enforced.guarded));
        }
        if enforced.answered {
            m.blast_radius_answered.inc();
        }
        if enforced.spared_owner_device && processed.decision.verdict != crate::decision::Verdict::Block {
            m.owner_device_spared.inc();
        }
        if enforced.stepped_up_other_device {
            m.customer_block_stepped_up.inc();
        }
        if enforced.passed_presence_check {
            m.customer_block_presence_passed.inc();
        }
        if enforced.passed_routine_staff_work {
            m.staff_block_routine_passed.inc();
        }
        m.decisions.with_label_values(&[processed.decision.verdict.as_str()]).inc();
        Ok(())
    }
}
