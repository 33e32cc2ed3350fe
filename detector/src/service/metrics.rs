//! Every metric the service exports, defined once. Components call these
//! methods; none touches the registry.

use prometheus::{Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    pub events: IntCounterVec,
    pub rejected: IntCounterVec,
    pub decisions: IntCounterVec,
    pub findings: IntCounterVec,
    pub alerts: IntCounterVec,
    pub blocks_active: IntGaugeVec,
    pub blocks_set: IntCounterVec,
    pub breaker_trips: IntCounter,
    pub blast_radius_guarded: IntCounter,
    pub blast_radius_answered: IntCounter,
    pub owner_device_spared: IntCounter,
    pub customer_block_stepped_up: IntCounter,
    pub customer_block_presence_passed: IntCounter,
    pub staff_block_routine_passed: IntCounter,
    pub rate_limited: IntCounterVec,
    pub stage_seconds: HistogramVec,
    pub request_seconds: HistogramVec,
    pub entities: IntGaugeVec,
    pub feature_history: IntGauge,
    pub session_ids_per_step: IntGauge,
    pub entities_evicted: IntCounterVec,
    pub alert_subscribers: IntGauge,
    pub alert_subscribers_refused: IntCounter,
    pub reloads: IntCounterVec,
    pub suppressed_findings: IntCounter,
    pub late_events: IntCounter,
    pub feed_lagged: IntCounter,
    pub batch_size: Histogram,
    /// Appends to the ingest log that failed (their events were refused with 503).
    pub ingest_log_errors: IntCounter,
    /// Snapshots written or failed.
    pub snapshots: IntCounterVec,
    /// Time ingestion waited while a snapshot copied the state.
    pub snapshot_pause_seconds: Histogram,
    /// Events replayed from the ingest log at the last start.
    pub recovered_events: IntGauge,
    /// Snapshots refused at the last start (corrupt or incompatible).
    pub snapshots_refused: IntGauge,
    /// Fluvio: records consumed, written to the dead-letter topic, failures by operation.
    pub consumed: IntCounter,
    pub dead_letters: IntCounter,
    pub stream_errors: IntCounterVec,
    /// Fluvio: consumer lag by topic and partition; records spooled for the sinks.
    pub consumer_lag: IntGaugeVec,
    pub spool_depth: IntGauge,
    /// Times the consumer paused because the spool was full.
    pub consumer_paused: IntCounter,
    /// Analyst blocks applied from another replica.
    pub blocks_replicated: IntCounter,
    /// Alert sinks: alerts delivered, retried deliveries, dropped (spool full), spooled now.
    pub alert_sinks: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Metrics {
        let r = Registry::new();
        // Buckets from 1 µs: the work per event is microseconds, the request a little more.
        let fast = vec![1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1];
        let stage_seconds = HistogramVec::new(HistogramOpts::new("haechi_stage_seconds", "Time spent per event in each pipeline stage.").buckets(fast.clone()), &["stage"]).expect("valid");
        r.register(Box::new(stage_seconds.clone())).expect("registered once");
        let request_seconds =
            HistogramVec::new(HistogramOpts::new("haechi_http_request_seconds", "HTTP request handling time by route.").buckets(fast), &["route"]).expect("valid");
        r.register(Box::new(request_seconds.clone())).expect("registered once");
        let blocks_active = IntGaugeVec::new(Opts::new("haechi_blocks_active", "Blocks in force, by scope."), &["scope"]).expect("valid");
        r.register(Box::new(blocks_active.clone())).expect("registered once");
        let entities = IntGaugeVec::new(Opts::new("haechi_entities", "Entities held in the feature store, by kind."), &["kind"]).expect("valid");
        r.register(Box::new(entities.clone())).expect("registered once");
        let feature_history = IntGauge::new(
            "haechi_feature_history_seconds",
            "Event time the feature store stands on without a gap of a long window; below the long window, blocks on shared scopes are per-session challenges (cold_start_challenge).",
        )
        .expect("valid");
        r.register(Box::new(feature_history.clone())).expect("registered once");
        let session_ids_per_step = IntGauge::new(
            "haechi_session_ids_per_step",
            "1 while the stream's session ids are taken for a step's each (hardly any event names a session an earlier one named) and sessions are keyed by the device's run of events instead ([features] session_ids = \"auto\").",
        )
        .expect("valid");
        r.register(Box::new(session_ids_per_step.clone())).expect("registered once");
        let breaker_trips = IntCounter::new("haechi_block_circuit_breaker_trips_total", "Automatic blocks refused because the per-minute cap was reached.").expect("valid");
        r.register(Box::new(breaker_trips.clone())).expect("registered once");
        let blast_radius_guarded = IntCounter::new(
            "haechi_blast_radius_guarded_total",
            "Blocks on a shared address, subnet, device or account turned into per-session challenges because the scope carried too many returning customers.",
        )
        .expect("valid");
        r.register(Box::new(blast_radius_guarded.clone())).expect("registered once");
        let blast_radius_answered = IntCounter::new(
            "haechi_blast_radius_answered_total",
            "Events let through at an identity check their session passed after answering its blast-radius challenge with a face match (the answering event included): the challenge was not repeated there.",
        )
        .expect("valid");
        r.register(Box::new(blast_radius_answered.clone())).expect("registered once");
        let owner_device_spared = IntCounter::new(
            "haechi_owner_device_spared_total",
            "Events let past a rule's block on their customer because they came from a device the customer used before the block was set.",
        )
        .expect("valid");
        r.register(Box::new(owner_device_spared.clone())).expect("registered once");
        let customer_block_stepped_up = IntCounter::new(
            "haechi_customer_block_stepped_up_total",
            "Events a rule's block on their customer challenged instead of refusing: they came from a device none of the block's offending events came from.",
        )
        .expect("valid");
        r.register(Box::new(customer_block_stepped_up.clone())).expect("registered once");
        let customer_block_presence_passed = IntCounter::new(
            "haechi_customer_block_presence_passed_total",
            "Passed ID scans, authenticity checks, face matches and liveness checks a rule's block on their customer about guessed codes let through: they came from a device none of the block's offending events came from.",
        )
        .expect("valid");
        r.register(Box::new(customer_block_presence_passed.clone())).expect("registered once");
        let staff_block_routine_passed = IntCounter::new(
            "haechi_staff_block_routine_passed_total",
            "Single-record lookups at an hour the bank's staff work that a rule's block on their staff member, set for pulling records out of pattern, let through.",
        )
        .expect("valid");
        r.register(Box::new(staff_block_routine_passed.clone())).expect("registered once");
        let late_events = IntCounter::new("haechi_late_events_total", "Events later than the allowed lateness: decided, not stored.").expect("valid");
        r.register(Box::new(late_events.clone())).expect("registered once");
        let feed_lagged = IntCounter::new("haechi_alert_feed_resyncs_total", "Times a slow alert-stream client was caught up from the ring.").expect("valid");
        r.register(Box::new(feed_lagged.clone())).expect("registered once");
        let alert_subscribers = IntGauge::new("haechi_alert_subscribers", "Clients connected to the alert stream.").expect("valid");
        r.register(Box::new(alert_subscribers.clone())).expect("registered once");
        let alert_subscribers_refused =
            IntCounter::new("haechi_alert_subscribers_refused_total", "Alert-stream connections refused (503) because server.max_alert_subscribers were connected.").expect("valid");
        r.register(Box::new(alert_subscribers_refused.clone())).expect("registered once");
        let batch_size = Histogram::with_opts(HistogramOpts::new("haechi_batch_events", "Events per POST /v1/events body.").buckets(vec![1.0, 10.0, 100.0, 1000.0, 10000.0])).expect("valid");
        r.register(Box::new(batch_size.clone())).expect("registered once");
        let ingest_log_errors = IntCounter::new("haechi_ingest_log_errors_total", "Appends to the ingest log that failed; their events were refused with 503.").expect("valid");
        r.register(Box::new(ingest_log_errors.clone())).expect("registered once");
        let snapshot_pause_seconds = Histogram::with_opts(
            HistogramOpts::new("haechi_snapshot_pause_seconds", "Time ingestion waited while a snapshot copied the state.").buckets(vec![1e-3, 1e-2, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )
        .expect("valid");
        r.register(Box::new(snapshot_pause_seconds.clone())).expect("registered once");
        let recovered_events = IntGauge::new("haechi_recovered_events", "Events replayed from the ingest log at the last start.").expect("valid");
        r.register(Box::new(recovered_events.clone())).expect("registered once");
        let snapshots_refused = IntGauge::new("haechi_snapshots_refused", "Snapshots refused at the last start (corrupt or incompatible).").expect("valid");
        r.register(Box::new(snapshots_refused.clone())).expect("registered once");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid");
            r.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let plain = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid");
            r.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let consumer_lag = IntGaugeVec::new(Opts::new("haechi_consumer_lag", "Records of the source topic not decided yet, by topic and partition."), &["topic", "partition"]).expect("valid");
        r.register(Box::new(consumer_lag.clone())).expect("registered once");
        let consumed = plain("haechi_consumed_total", "Records consumed from the source topic.");
        let dead_letters = plain("haechi_dead_letters_total", "Source records that were not valid events, sent to the dead-letter topic.");
        let consumer_paused = plain("haechi_consumer_paused_total", "Times the consumer paused because the sink spool was over its limit.");
        let blocks_replicated = plain("haechi_blocks_replicated_total", "Analyst blocks and lifts applied from another replica through the block topic.");
        let spool_depth = gauge("haechi_spool_depth", "Records spooled for the Fluvio sinks, not yet acknowledged.");
        let alert_sinks = IntGaugeVec::new(
            Opts::new("haechi_alert_sink_alerts", "Alert sinks, by sink and state: delivered, retried (failed attempts), dropped (spool full; 0 unless max_spool was hit), spooled (waiting now)."),
            &["sink", "state"],
        )
        .expect("valid");
        r.register(Box::new(alert_sinks.clone())).expect("registered once");
        Metrics {
            alert_sinks,
            stream_errors: counter(&r, "haechi_stream_errors_total", "Fluvio failures, by operation (consume, produce).", &["op"]),
            consumed,
            dead_letters,
            consumer_lag,
            spool_depth,
            consumer_paused,
            blocks_replicated,
            snapshots: counter(&r, "haechi_snapshots_total", "Snapshots written, by outcome.", &["outcome"]),
            ingest_log_errors,
            snapshot_pause_seconds,
            recovered_events,
            snapshots_refused,
            events: counter(&r, "haechi_events_total", "Accepted events by step and result.", &["step", "result"]),
            rejected: counter(&r, "haechi_events_rejected_total", "Rejected events by reason.", &["reason"]),
            decisions: counter(&r, "haechi_decisions_total", "Decisions by kind.", &["decision"]),
            findings: counter(&r, "haechi_findings_total", "Findings by detector and rule or model.", &["detector", "rule"]),
            alerts: counter(&r, "haechi_alerts_total", "New alerts (after folding) by severity.", &["severity"]),
            blocks_set: counter(&r, "haechi_blocks_set_total", "Blocks set, by scope and by whom (rule, analyst, rate_limit).", &["scope", "by"]),
            rate_limited: counter(&r, "haechi_rate_limited_total", "Events over a rate limit, by scope.", &["scope"]),
            entities_evicted: counter(
                &r,
                "haechi_entities_evicted_total",
                "Entities evicted from the feature store, least recently seen first, because their kind reached features.max_entities.",
                &["kind"],
            ),
            reloads: counter(&r, "haechi_reloads_total", "Rule and model reloads, by what and outcome.", &["what", "outcome"]),
            suppressed_findings: {
                let c = IntCounter::new("haechi_suppressed_findings_total", "Findings an analyst's suppression dropped before the decision.").expect("valid");
                r.register(Box::new(c.clone())).expect("registered once");
                c
            },
            registry: r,
            blocks_active,
            breaker_trips,
            blast_radius_guarded,
            blast_radius_answered,
            owner_device_spared,
            customer_block_stepped_up,
            customer_block_presence_passed,
            staff_block_routine_passed,
            stage_seconds,
            request_seconds,
            entities,
            feature_history,
            session_ids_per_step,
            alert_subscribers,
            alert_subscribers_refused,
            late_events,
            feed_lagged,
            batch_size,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the shipped Grafana dashboard queries exists, under that name.
    #[test]
    fn the_dashboard_queries_only_metrics_we_export() {
        let m = Metrics::new();
        m.events.with_label_values(&["otp", "success"]).inc();
        m.rejected.with_label_values(&["x"]).inc();
        m.decisions.with_label_values(&["allow"]).inc();
        m.findings.with_label_values(&["rules", "r"]).inc();
        m.alerts.with_label_values(&["high"]).inc();
        m.blocks_active.with_label_values(&["ip"]).set(1);
        m.blocks_set.with_label_values(&["ip", "rule"]).inc();
        m.rate_limited.with_label_values(&["ip"]).inc();
        m.stage_seconds.with_label_values(&["parse"]).observe(1e-6);
        m.request_seconds.with_label_values(&["/v1/check"]).observe(1e-4);
        m.entities.with_label_values(&["ip"]).set(1);
        m.reloads.with_label_values(&["rules", "ok"]).inc();
        let exported = m.render();
        let dashboard = include_str!("../../grafana/haechi-dashboard.json");
        let mut names: Vec<&str> = dashboard
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("haechi_"))
            .map(|w| w.trim_end_matches("_bucket"))
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(names.len() >= 12);
        for n in names {
            assert!(exported.contains(&format!("# TYPE {n} ")), "the dashboard queries {n}, which is not exported");
        }
    }
}
