//! The live decision: the pipeline's decision (enforcement included), plus
//! what only the service has: the alert feed and metrics.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use haechi_features::{entity_text, EntityKind, Error as EventError, Event, KIND_COUNT};

use super::audit::AuditLog;
use super::auth::Principals;
use super::feed::AlertFeed;
use super::metrics::Metrics;
use super::ServerConfig;
use crate::decision::Decision;
use crate::enforce::{BlockList, Refused};
use crate::pipeline::{Pipeline, Scratch};

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
    pub fn new(pipeline: Arc<Pipeline>, server: ServerConfig, principals: Principals, audit: AuditLog, tls: Option<Arc<rustls::ServerConfig>>) -> AppState {
        let cfg = pipeline.config();
        let feed = AlertFeed::new(server.alert_ring, cfg.alerts.fold_window.as_millis() as i64, cfg.features.allowed_lateness.as_millis() as i64);
        AppState {
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

    /// Decide one event as the service does.
    ///
    /// # Errors
    /// A repeated event id.
    pub fn decide(&self, event: &Event, scratch: &mut Scratch) -> Result<LiveDecision, EventError> {
        let m = &self.metrics;
        let started = Instant::now();
        let processed = match self.pipeline.process(event, scratch) {
            Ok(p) => p,
            Err(e) => {
                m.rejected.with_label_values(&[e.reason()]).inc();
                return Err(e);
            }
        };
        m.stage_seconds.with_label_values(&["pipeline"]).observe(started.elapsed().as_secs_f64());
        m.events.with_label_values(&[event.step.as_str(), if event.is_failure() { "failure" } else { "success" }]).inc();
        if processed.late {
            m.late_events.inc();
        }
        let catalog = self.pipeline.store().catalog();
        let watermark = self.pipeline.store().watermark_ms().unwrap_or(event.ts_ms);
        for f in &scratch.findings {
            m.findings.with_label_values(&[&f.detector, &f.id]).inc();
            let entity = f.entity.and_then(|k| entity_text(event, k));
            if let Some(a) = self.feed.fold(f, entity.as_deref(), &event.event_id, event.ts_ms, catalog, watermark) {
                m.alerts.with_label_values(&[a.alert.severity.as_str()]).inc();
            }
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
        if enforced.guarded > 0 {
            m.blast_radius_guarded.inc_by(u64::from(enforced.guarded));
        }
        m.decisions.with_label_values(&[processed.decision.verdict.as_str()]).inc();
        Ok(processed.decision)
    }

    /// Mark the service ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}
