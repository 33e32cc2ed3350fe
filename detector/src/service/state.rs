//! The live decision: the pipeline's decision (enforcement included), plus
//! what only the service has: the alert feed and metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use haechi_features::{entity_text, Error as EventError, Event};

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
}

impl AppState {
    pub fn new(pipeline: Arc<Pipeline>, server: ServerConfig, principals: Principals, audit: AuditLog, tls: Option<Arc<rustls::ServerConfig>>) -> AppState {
        let cfg = pipeline.config();
        let feed = AlertFeed::new(server.alert_ring, cfg.alerts.fold_window.as_millis() as i64, cfg.features.allowed_lateness.as_millis() as i64);
        AppState { pipeline, feed, metrics: Metrics::new(), server, ready: AtomicBool::new(false), principals, audit, tls }
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
