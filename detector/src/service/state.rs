//! The live decision: the pipeline's decision, then the block list, the rate
//! limiters and the alert feed — what the service adds to a replay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use haechi_features::{entity_text, format_rfc3339_ms, EntityKind, Error as EventError, Event, Severity};
use serde::Serialize;

use super::blocks::{Block, BlockList, Refused};
use super::feed::AlertFeed;
use super::limits::{Limiters, OverLimit};
use super::metrics::Metrics;
use super::ServerConfig;
use crate::decision::{Decision, Reason, Verdict};
use crate::pipeline::{Pipeline, Scratch};

/// What an analyst or the pipeline sees of a block that refused an event.
#[derive(Debug, Clone, Serialize)]
pub struct BlockedBy {
    pub scope: EntityKind,
    pub key: String,
    pub reason: String,
    pub set_by: String,
    pub expires_at: String,
}

impl From<&Block> for BlockedBy {
    fn from(b: &Block) -> Self {
        BlockedBy { scope: b.scope, key: b.key.clone(), reason: b.reason.clone(), set_by: b.set_by.clone(), expires_at: format_rfc3339_ms(b.expires_at_ms) }
    }
}

/// The decision the service returns.
#[derive(Debug, Clone, Serialize)]
pub struct LiveDecision {
    #[serde(flatten)]
    pub decision: Decision,
    pub blocked_by: Option<BlockedBy>,
}

/// Everything the handlers share.
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub blocks: Arc<BlockList>,
    pub limits: Limiters,
    pub feed: AlertFeed,
    pub metrics: Metrics,
    pub server: ServerConfig,
    pub ready: AtomicBool,
    blocklist: Arc<str>,
    rate_limit: Arc<str>,
}

impl AppState {
    pub fn new(pipeline: Arc<Pipeline>, blocks: Arc<BlockList>, limits: Limiters, server: ServerConfig) -> AppState {
        let cfg = pipeline.config();
        let feed = AlertFeed::new(server.alert_ring, cfg.alerts.fold_window.as_millis() as i64, cfg.features.allowed_lateness.as_millis() as i64);
        AppState {
            pipeline,
            blocks,
            limits,
            feed,
            metrics: Metrics::new(),
            server,
            ready: AtomicBool::new(false),
            blocklist: Arc::from("blocklist"),
            rate_limit: Arc::from("rate_limit"),
        }
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
        m.stage_seconds.with_label_values(&["features_and_detectors"]).observe(started.elapsed().as_secs_f64());
        let after_detect = Instant::now();
        m.events.with_label_values(&[event.step.as_str(), if event.is_failure() { "failure" } else { "success" }]).inc();
        if processed.late {
            m.late_events.inc();
        }
        let mut d = processed.decision;
        let catalog = self.pipeline.store().catalog();
        let watermark = self.pipeline.store().watermark_ms().unwrap_or(event.ts_ms);
        for f in &scratch.findings {
            m.findings.with_label_values(&[&f.detector, &f.id]).inc();
            let entity = f.entity.and_then(|k| entity_text(event, k));
            if let Some(a) = self.feed.fold(f, entity.as_deref(), &event.event_id, event.ts_ms, catalog, watermark) {
                m.alerts.with_label_values(&[a.alert.severity.as_str()]).inc();
            }
        }
        let mut blocked_by = None;
        if !d.allowlisted {
            if let Some(b) = self.blocks.check(&processed.keys) {
                d.verdict = Verdict::Block;
                d.reasons.insert(0, Reason { detector: self.blocklist.clone(), id: Arc::from(b.scope.as_str()), severity: Severity::High });
                blocked_by = Some(BlockedBy::from(&b));
            } else {
                if let Some(scope) = self.limits.check(&processed.keys) {
                    m.rate_limited.with_label_values(&[scope.as_str()]).inc();
                    d.reasons.push(Reason { detector: self.rate_limit.clone(), id: Arc::from(scope.as_str()), severity: Severity::Medium });
                    match self.limits.config.over_limit {
                        OverLimit::Challenge => d.verdict = d.verdict.max(Verdict::Challenge),
                        OverLimit::Block => {
                            d.verdict = Verdict::Block;
                            d.blocks.push(crate::decision::BlockRequest { scope, ttl_s: self.limits.config.block_ttl_s });
                        }
                    }
                }
                // Who asked for the block: formatted only when there is one to record.
                let first_rule = if d.blocks.is_empty() {
                    None
                } else {
                    d.reasons.iter().find(|r| &*r.detector != "rate_limit").map(|r| format!("{}:{}", r.detector, r.id))
                };
                for req in &d.blocks {
                    let (Some(hash), Some(key)) = (processed.keys.get(req.scope), entity_text(event, req.scope)) else { continue };
                    let set_by = first_rule.clone().unwrap_or_else(|| format!("rate_limit:{}", req.scope));
                    let by_label = if set_by.starts_with("rate_limit") { "rate_limit" } else { "rule" };
                    match self.blocks.set_automatic(req.scope, hash, key, Duration::from_secs(u64::from(req.ttl_s)), format!("event {}", event.event_id), set_by) {
                        Ok(_) => m.blocks_set.with_label_values(&[req.scope.as_str(), by_label]).inc(),
                        Err(Refused::CircuitOpen) => m.breaker_trips.inc(),
                        Err(Refused::AlreadyBlocked) => {}
                    }
                }
            }
        }
        m.stage_seconds.with_label_values(&["decide"]).observe(after_detect.elapsed().as_secs_f64());
        m.decisions.with_label_values(&[d.verdict.as_str()]).inc();
        Ok(LiveDecision { decision: d, blocked_by })
    }

    /// Mark the service ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}
