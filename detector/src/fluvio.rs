//! Fluvio as one more source and more sinks.
//!
//! - **Source.** A topic of events (`[source.fluvio]`), read from the
//!   partitions this replica is assigned, merged in event-time order (see
//!   `haechi_streams::TopicReader`), validated and decided exactly as an HTTP
//!   event is. A record that is not a valid event goes to the dead-letter
//!   topic with the reason (masked) and is counted; it never stops the
//!   consumer. The offsets decided so far go into every snapshot with the
//!   state they produced, so a restart resumes at them and no event is
//!   counted twice.
//! - **Sinks.** Decisions (keyed by event id), alerts (by alert id) and block
//!   changes (by scope and entity) to topics (`[sinks.fluvio]`), through a
//!   spool in the data dir that survives Fluvio being away.
//! - **Replicas.** Each replica reads the whole topic (or its configured
//!   partitions) with its own data dir; event time and deterministic ids make
//!   their outputs agree, so a consumer can dedupe. An analyst's block set on
//!   one replica reaches the others through the block topic.
//! - **Back-pressure.** When the spool holds more than `max_spool_records`,
//!   the consumer pauses until it drains: a slow sink grows a file, never
//!   memory, and not without bound.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haechi_features::{mask_resident_numbers, parse_rfc3339_ms, Error as EventError};
use haechi_streams::{Broker, ReaderTuning, Spool, StreamError, TopicReader, TopicRecord};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::decision::Decision;
use crate::enforce::Block;
use crate::error::DetectorError;
use crate::service::feed::FeedAlert;
use crate::service::AppState;

/// Where a replica starts reading a topic it has no saved offsets for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// The first record still in the topic.
    #[default]
    Beginning,
    /// Records produced from now on.
    End,
}

/// `[source.fluvio]`: a topic of events to decide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FluvioSourceConfig {
    /// The cluster's SC, `host:port`.
    pub endpoint: String,
    pub topic: String,
    /// The partitions this replica reads; empty: all of them. (Fluvio has no
    /// consumer groups: assignment is this configuration.)
    pub partitions: Vec<u32>,
    /// Where to start without saved offsets.
    pub start: StartAt,
    /// Where records that are not valid events go, with the reason.
    pub dead_letter_topic: Option<String>,
    /// Records fetched per partition at a time.
    pub batch: usize,
    /// How long an empty partition may hold back the merge of the others.
    #[serde(with = "humantime_serde")]
    pub idle_after: Duration,
}

impl Default for FluvioSourceConfig {
    fn default() -> Self {
        FluvioSourceConfig {
            endpoint: "127.0.0.1:9003".into(),
            topic: "ekyc-events".into(),
            partitions: Vec::new(),
            start: StartAt::Beginning,
            dead_letter_topic: Some("ekyc-events-dead-letter".into()),
            batch: 500,
            idle_after: Duration::from_millis(200),
        }
    }
}

/// `[sinks.fluvio]`: topics the decisions, alerts and block changes go to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FluvioSinkConfig {
    /// The cluster's SC; unset: the source's.
    pub endpoint: Option<String>,
    pub decisions_topic: Option<String>,
    pub alerts_topic: Option<String>,
    pub blocks_topic: Option<String>,
    /// Past this many spooled records the consumer pauses.
    pub max_spool_records: u64,
}

impl Default for FluvioSinkConfig {
    fn default() -> Self {
        FluvioSinkConfig {
            endpoint: None,
            decisions_topic: Some("haechi-decisions".into()),
            alerts_topic: Some("haechi-alerts".into()),
            blocks_topic: Some("haechi-blocks".into()),
            max_spool_records: 1_000_000,
        }
    }
}

/// `[source]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fluvio: Option<FluvioSourceConfig>,
}

/// `[sinks]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fluvio: Option<FluvioSinkConfig>,
}

/// `[replica]`: who this replica is (in the block topic, so that a replica
/// applies only the others' analyst blocks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicaConfig {
    pub id: String,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig { id: "haechi-1".into() }
    }
}

/// A block change as the block topic carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockChange {
    /// The replica whose list changed.
    pub replica: String,
    /// `set`, `lift`, `answered` (a guard challenge answered) or `device`
    /// (a customer block's offending devices changed: one added or made the
    /// latest, the oldest perhaps forgotten).
    pub change: String,
    pub block: Block,
}

/// Saved read positions: topic → partition → next offset to decide.
pub type TopicOffsets = BTreeMap<String, BTreeMap<u32, i64>>;

/// What goes out to topics, spooled in the data dir first.
pub struct Outbox {
    spool: Spool,
    sinks: FluvioSinkConfig,
    dead_letter: Option<String>,
    replica: String,
}

impl Outbox {
    /// The spool in `dir`, sealed with `sealer` when one is given.
    ///
    /// # Errors
    /// When the spool cannot be opened.
    pub fn open(dir: &std::path::Path, sealer: Option<haechi_storage::Sealer>, sinks: FluvioSinkConfig, dead_letter: Option<String>, replica: String) -> Result<Outbox, DetectorError> {
        Ok(Outbox { spool: Spool::open_sealed(dir, sealer).map_err(stream_error)?, sinks, dead_letter, replica })
    }

    /// The spool, for its drain task and depth.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    fn push(&self, topic: Option<&String>, key: &[u8], value: &impl Serialize) {
        let Some(topic) = topic else { return };
        let push = serde_json::to_vec(value).map_err(|e| StreamError::Platform { what: "encode", message: e.to_string() }).and_then(|v| self.spool.push(topic, key, &v));
        if let Err(e) = push {
            tracing::error!(error = %e, topic, "spooling a record failed");
        }
    }

    /// One decision, keyed by its event id.
    pub fn decision(&self, decision: &Decision) {
        self.push(self.sinks.decisions_topic.as_ref(), decision.event_id.as_bytes(), decision);
    }

    /// One new alert, keyed by its id.
    pub fn alert(&self, alert: &FeedAlert) {
        self.push(self.sinks.alerts_topic.as_ref(), alert.alert.id.as_bytes(), alert);
    }

    /// One block change of this replica's list, keyed by scope and entity.
    pub fn block(&self, change: &str, block: &Block) {
        let key = format!("{}:{}", block.scope.as_str(), block.key);
        self.push(self.sinks.blocks_topic.as_ref(), key.as_bytes(), &BlockChange { replica: self.replica.clone(), change: change.into(), block: block.clone() });
    }

    /// A record that is not a valid event: where it was, why, and the record
    /// with any resident number masked.
    pub fn dead_letter(&self, record: &TopicRecord, topic: &str, error: &EventError) {
        #[derive(Serialize)]
        struct DeadLetter<'a> {
            topic: &'a str,
            partition: u32,
            offset: i64,
            reason: &'static str,
            error: String,
            record: String,
        }
        let key = format!("{topic}/{}/{}", record.partition, record.offset);
        let letter = DeadLetter {
            topic,
            partition: record.partition,
            offset: record.offset,
            reason: error.reason(),
            error: error.to_string(),
            record: mask_resident_numbers(&String::from_utf8_lossy(&record.value)).into_owned(),
        };
        self.push(self.dead_letter.as_ref(), key.as_bytes(), &letter);
    }

    /// Is the spool over its limit (the consumer should pause)?
    pub fn full(&self) -> bool {
        self.spool.depth() > self.sinks.max_spool_records
    }
}

fn stream_error(e: StreamError) -> DetectorError {
    DetectorError::Stream(e)
}

/// The event time of a raw record, for merging partitions: the `ts` field,
/// found without parsing the whole event. A record without one sorts first
/// (and is refused when it is parsed).
pub fn record_time(record: &TopicRecord) -> i64 {
    let v = &record.value;
    let Some(at) = memchr::memmem::find(v, b"\"ts\"") else { return i64::MIN };
    let rest = &v[at + 4..];
    let Some(open) = rest.iter().position(|b| *b == b'"') else { return i64::MIN };
    let rest = &rest[open + 1..];
    let Some(close) = rest.iter().position(|b| *b == b'"') else { return i64::MIN };
    std::str::from_utf8(&rest[..close]).ok().and_then(parse_rfc3339_ms).unwrap_or(i64::MIN)
}

/// Decide one record of the source topic, as `/v1/check` decides a body,
/// and note its offset as decided. Returns false when it was not a valid
/// event (dead-lettered).
pub fn decide_record(state: &AppState, topic: &str, record: &TopicRecord, scratch: &mut crate::Scratch) -> bool {
    let parsed = state.pipeline.parse(&record.value);
    let event = match parsed {
        Ok(e) => e,
        Err(e) => {
            state.metrics.rejected.with_label_values(&[e.reason()]).inc();
            state.metrics.dead_letters.inc();
            if let Some(out) = &state.outbox {
                out.dead_letter(record, topic, &e);
            }
            note_offset(state, topic, record);
            return false;
        }
    };
    // The gate: the offset moves with the state it produced, never apart
    // from it in a snapshot.
    let _gate = state.data.as_ref().map(|d| d.ingest_gate());
    match state.pipeline.admit(&event).and_then(|()| state.decide(&event, scratch)) {
        Ok(_) => {}
        // A repeat (a producer's retry): decided once already. Anything else
        // refused (a time too far ahead) is counted by `decide`/`admit`.
        Err(EventError::Duplicate) => state.metrics.rejected.with_label_values(&["duplicate"]).inc(),
        Err(e) => {
            state.metrics.rejected.with_label_values(&[e.reason()]).inc();
            if let Some(out) = &state.outbox {
                out.dead_letter(record, topic, &e);
            }
        }
    }
    note_offset(state, topic, record);
    if let Some(d) = &state.data {
        d.note_accepted(1);
    }
    true
}

fn note_offset(state: &AppState, topic: &str, record: &TopicRecord) {
    let mut offsets = state.topic_offsets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    offsets.entry(topic.to_owned()).or_default().insert(record.partition, record.offset + 1);
}

/// The offsets to start `topic` at: saved ones, else the configured start.
///
/// # Errors
/// When the platform cannot be asked for the partitions or their ends.
pub async fn start_offsets<B: Broker>(broker: &B, state: &AppState, topic: &str, assigned: &[u32], start: StartAt) -> Result<BTreeMap<u32, i64>, StreamError> {
    let partitions: Vec<u32> = if assigned.is_empty() { (0..broker.partitions(topic).await?).collect() } else { assigned.to_vec() };
    let saved = state.topic_offsets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(topic).cloned().unwrap_or_default();
    let mut from = BTreeMap::new();
    for p in partitions {
        let at = match (saved.get(&p), start) {
            (Some(o), _) => *o,
            (None, StartAt::Beginning) => 0,
            (None, StartAt::End) => broker.end_offset(topic, p).await?,
        };
        from.insert(p, at);
    }
    Ok(from)
}

/// Records handed to the blocking pool at once, at most.
const BATCH: usize = 256;

/// Consume the source topic until `stop`: the consumer loop. Decisions run
/// on a blocking thread, one record at a time, in merged order.
pub async fn consume<B: Broker>(state: Arc<AppState>, broker: Arc<B>, config: FluvioSourceConfig, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let from = loop {
        match start_offsets(&*broker, &state, &config.topic, &config.partitions, config.start).await {
            Ok(f) => break f,
            Err(e) => {
                state.metrics.stream_errors.with_label_values(&["consume"]).inc();
                tracing::warn!(error = %e, topic = %config.topic, "cannot start consuming yet; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    tracing::info!(topic = %config.topic, ?from, "consuming");
    let tuning = ReaderTuning { batch: config.batch.max(1), idle_after: config.idle_after, ..ReaderTuning::default() };
    let mut reader = TopicReader::new(broker.clone(), &config.topic, from, tuning);
    let scratch = Arc::new(Mutex::new(state.pipeline.scratch()));
    let mut backoff = Duration::from_millis(100);
    loop {
        if stop.is_cancelled() {
            return;
        }
        if state.outbox.as_ref().is_some_and(|o| o.full()) {
            // Back-pressure: the sinks are behind; let the spool drain.
            state.metrics.consumer_paused.inc();
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            continue;
        }
        let next = tokio::select! {
            () = stop.cancelled() => return,
            n = reader.next(record_time) => n,
        };
        match next {
            Ok(Some(record)) => {
                backoff = Duration::from_millis(100);
                // What is already fetched goes to the blocking pool in one
                // batch, in merged order: one hand-off per batch, not per record.
                let mut batch = vec![record];
                while batch.len() < BATCH && reader.buffered() > 0 {
                    match reader.next(record_time).await {
                        Ok(Some(r)) => batch.push(r),
                        _ => break,
                    }
                }
                let n = batch.len() as u64;
                let (s, scratch, topic) = (state.clone(), scratch.clone(), config.topic.clone());
                let done = tokio::task::spawn_blocking(move || {
                    let mut scratch = scratch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for record in &batch {
                        decide_record(&s, &topic, record, &mut scratch);
                    }
                })
                .await;
                if let Err(e) = done {
                    // Part of the batch may be undecided: read on from the
                    // offsets actually decided, never past a record.
                    state.metrics.stream_errors.with_label_values(&["decide"]).inc();
                    tracing::error!(error = %e, "deciding a batch of the source topic failed; reading again from the last decided offsets");
                    let from = match start_offsets(&*broker, &state, &config.topic, &config.partitions, config.start).await {
                        Ok(f) => f,
                        Err(_) => continue,
                    };
                    reader = TopicReader::new(broker.clone(), &config.topic, from, tuning);
                    continue;
                }
                state.metrics.consumed.inc_by(n);
            }
            Ok(None) => {}
            Err(e) => {
                state.metrics.stream_errors.with_label_values(&["consume"]).inc();
                tracing::warn!(error = %e, "reading the source topic failed; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Apply the other replicas' analyst blocks from the block topic, until `stop`.
pub async fn follow_blocks<B: Broker>(state: Arc<AppState>, broker: Arc<B>, topic: String, stop: CancellationToken) {
    let replica = state.replica.clone();
    loop {
        let from = match start_offsets(&*broker, &state, &topic, &[], StartAt::Beginning).await {
            Ok(f) => f,
            Err(_) => {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        let mut reader = TopicReader::new(broker.clone(), &topic, from, ReaderTuning::default());
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                n = reader.next(|r| r.offset) => n,
            };
            match next {
                Ok(Some(record)) => {
                    if let Ok(change) = serde_json::from_slice::<BlockChange>(&record.value) {
                        // This replica's own analyst changes too: after a
                        // restart its list comes from the snapshot, and the
                        // changes made since are read again here. Applying
                        // one that is already in force changes nothing.
                        if change.block.is_manual() {
                            state.blocks().apply_replicated(&change.block, change.change == "lift");
                            if change.replica != replica {
                                state.metrics.blocks_replicated.inc();
                            }
                        }
                    }
                    note_offset(&state, &topic, &record);
                }
                Ok(None) => {}
                Err(e) => {
                    state.metrics.stream_errors.with_label_values(&["blocks"]).inc();
                    tracing::warn!(error = %e, topic, "reading the block topic failed; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    break;
                }
            }
        }
    }
}

/// Report consumer lag per partition every few seconds, until `stop`.
pub async fn report_lag<B: Broker>(state: Arc<AppState>, broker: Arc<B>, topic: String, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let positions = state.topic_offsets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&topic).cloned().unwrap_or_default();
        for (p, at) in positions {
            if let Ok(end) = broker.end_offset(&topic, p).await {
                state.metrics.consumer_lag.with_label_values(&[&topic, &p.to_string()]).set((end - at).max(0));
            }
        }
        if let Some(out) = &state.outbox {
            state.metrics.spool_depth.set(out.spool().depth() as i64);
        }
    }
}

/// Drain the outbox's spool to `broker` until `stop`.
pub async fn drain_outbox<B: Broker>(state: Arc<AppState>, broker: Arc<B>, stop: CancellationToken) {
    let Some(out) = state.outbox.clone() else { return };
    let metrics = &state.metrics;
    out.spool()
        .run(&*broker, stop.cancelled(), |e| {
            metrics.stream_errors.with_label_values(&["produce"]).inc();
            tracing::warn!(error = %e, depth = out.spool().depth(), "producing to Fluvio failed; records stay spooled and are retried");
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_time_reads_the_ts_field() {
        let r = |v: &str| TopicRecord { partition: 0, offset: 0, key: None, value: v.as_bytes().to_vec() };
        assert_eq!(record_time(&r(r#"{"event_id":"e","ts":"2026-11-02T10:00:00+09:00"}"#)), parse_rfc3339_ms("2026-11-02T10:00:00+09:00").unwrap());
        assert_eq!(record_time(&r(r#"{"event_id":"e"}"#)), i64::MIN);
        assert_eq!(record_time(&r(r#"{"ts": "nonsense"}"#)), i64::MIN);
    }
}
