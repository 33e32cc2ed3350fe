//! The live alert feed: findings folded into alerts, numbered, kept in a
//! ring for `GET /v1/alerts?since=` and broadcast to stream clients.
//!
//! A stream client that falls behind, or reconnects with `Last-Event-ID`, is
//! caught up from the ring, so an alert is lost to a client only if it stayed
//! away for longer than the ring holds.
//!
//! With a data dir, every new alert is appended to the alert log first and
//! its `seq` is its offset there plus one: numbering goes on across restarts,
//! `since=` and `Last-Event-ID` resume after one, and the ring is refilled
//! from the log's tail at start. An alert raised again while the ingest log
//! is replayed after a crash (same events, so the same id) is recognised and
//! not delivered a second time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use haechi_alerting::{Alert, AlertFolder, Folded, FolderState};
use haechi_features::{entity_text, Event, FeatureCatalog, Finding};
use haechi_storage::IngestLog;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::DetectorError;
use crate::pipeline::Pipeline;

/// An alert with its place in the feed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedAlert {
    pub seq: u64,
    #[serde(flatten)]
    pub alert: Alert,
}

struct Inner {
    folder: AlertFolder,
    ring: VecDeque<FeedAlert>,
    by_id: HashMap<String, u64>,
    next_seq: u64,
    folds: u64,
    /// While the ingest log is replayed: ids of alerts the log already holds
    /// from before the restart, not to be delivered again.
    replayed: HashSet<String>,
    /// New alerts the alert log has not taken yet (it failed), oldest first.
    unwritten: VecDeque<Alert>,
}

/// Alerts kept waiting for a failing alert log, at most.
const MAX_UNWRITTEN: usize = 100_000;

/// A [`FeedAlert`] to encode, without copying the alert.
#[derive(Serialize)]
struct FeedAlertRef<'a> {
    seq: u64,
    #[serde(flatten)]
    alert: &'a Alert,
}

/// JSON has no NaN or infinity (serde_json writes `null`, which does not read
/// back as a number): clamp them before an alert is written.
fn finite(alert: &mut Alert) {
    let fix = |x: &mut f32| {
        if x.is_nan() {
            *x = 0.0;
        } else if x.is_infinite() {
            *x = x.signum() * f32::MAX;
        }
    };
    fix(&mut alert.score);
    for e in &mut alert.evidence {
        fix(&mut e.value);
        if let Some(w) = e.weight.as_mut() {
            fix(w);
        }
    }
}

/// The feed.
pub struct AlertFeed {
    inner: Mutex<Inner>,
    capacity: usize,
    tx: broadcast::Sender<FeedAlert>,
    log: Option<Arc<IngestLog>>,
}

impl AlertFeed {
    /// A feed keeping the last `capacity` alerts, folding within `fold_window_ms`.
    pub fn new(capacity: usize, fold_window_ms: i64, lateness_ms: i64) -> AlertFeed {
        let (tx, _) = broadcast::channel(1024);
        AlertFeed {
            inner: Mutex::new(Inner {
                folder: AlertFolder::new(fold_window_ms, lateness_ms),
                ring: VecDeque::new(),
                by_id: HashMap::new(),
                next_seq: 1,
                folds: 0,
                replayed: HashSet::new(),
                unwritten: VecDeque::new(),
            }),
            capacity: capacity.max(16),
            tx,
            log: None,
        }
    }

    /// A feed whose alerts are appended to `log`, with the ring refilled from its tail.
    ///
    /// # Errors
    /// When the log cannot be read or holds a record that is not an alert.
    pub fn with_log(capacity: usize, fold_window_ms: i64, lateness_ms: i64, log: Arc<IngestLog>) -> Result<AlertFeed, DetectorError> {
        let mut feed = AlertFeed::new(capacity, fold_window_ms, lateness_ms);
        {
            let g = feed.inner.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
            let from = log.next_offset().saturating_sub(feed.capacity as u64).max(log.first_offset());
            for record in log.read_from(from)? {
                let (offset, bytes) = record?;
                match serde_json::from_slice::<FeedAlert>(&bytes) {
                    Ok(item) => {
                        g.by_id.insert(item.alert.id.clone(), item.seq);
                        g.ring.push_back(item);
                    }
                    // One unreadable alert must not keep the service down: the log keeps it for a look.
                    Err(e) => tracing::error!(offset, error = %e, "an alert log record does not read back; skipped in the feed"),
                }
            }
            g.next_seq = log.next_offset() + 1;
        }
        feed.log = Some(log);
        Ok(feed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fold every finding of one event; returns the alerts that are new.
    pub fn fold_findings(&self, pipeline: &Pipeline, event: &Event, findings: &[Finding]) -> Vec<FeedAlert> {
        let catalog = pipeline.store().catalog();
        let watermark = pipeline.store().watermark_ms().unwrap_or(event.ts_ms);
        let mut new = Vec::new();
        for f in findings {
            let entity = f.entity.and_then(|k| entity_text(event, k));
            self.fold(f, entity.as_deref(), event, catalog, watermark, &mut new);
        }
        new
    }

    /// Copy the open alert windows, for a snapshot.
    pub fn export_folder(&self) -> FolderState {
        self.lock().folder.export_state()
    }

    /// Take over a snapshot's open alert windows.
    ///
    /// # Errors
    /// When an alert in the state does not parse.
    pub fn restore_folder(&self, state: &FolderState) -> Result<(), DetectorError> {
        Ok(self.lock().folder.restore_state(state)?)
    }

    /// Before the ingest log is replayed from a snapshot: alerts the alert
    /// log holds from `offset` on were raised by events about to be replayed.
    ///
    /// # Errors
    /// When the alert log cannot be read.
    pub fn expect_replayed_from(&self, offset: u64) -> Result<(), DetectorError> {
        let Some(log) = &self.log else { return Ok(()) };
        let mut ids = HashSet::new();
        for record in log.read_from(offset.max(log.first_offset()))? {
            let (offset, bytes) = record?;
            match serde_json::from_slice::<FeedAlert>(&bytes) {
                Ok(item) => {
                    ids.insert(item.alert.id);
                }
                Err(e) => tracing::error!(offset, error = %e, "an alert log record does not read back; its alert may be delivered again"),
            }
        }
        self.lock().replayed = ids;
        Ok(())
    }

    /// The replay is over: from now on every new alert is new.
    pub fn done_replaying(&self) {
        let left = std::mem::take(&mut self.lock().replayed);
        if !left.is_empty() {
            // Alerts whose events were logged but whose alert was not raised
            // again (a rule changed between the two runs): they stay in the log.
            tracing::info!(alerts = left.len(), "alerts from before the restart were not raised again by the replay");
        }
    }

    /// Fold one finding; alerts that became visible go to `out`.
    fn fold(&self, finding: &Finding, entity: Option<&str>, event: &Event, catalog: &FeatureCatalog, watermark_ms: i64, out: &mut Vec<FeedAlert>) {
        // A std mutex: the critical section is short and never awaits.
        let mut g = self.lock();
        g.folds += 1;
        if g.folds.is_multiple_of(1024) {
            // Closed windows need no folding state; the ring keeps the alerts.
            let _ = g.folder.drain_closed(watermark_ms);
        }
        match g.folder.fold(finding, entity, &event.event_id, event.ts_ms, catalog) {
            Folded::New(alert) => {
                if g.replayed.remove(&alert.id) {
                    return;
                }
                if g.unwritten.len() >= MAX_UNWRITTEN {
                    if let Some(lost) = g.unwritten.pop_front() {
                        tracing::error!(alert = %lost.id, "the alert log has failed for {MAX_UNWRITTEN} alerts: the oldest unwritten one is dropped");
                    }
                }
                g.unwritten.push_back(alert);
                let first = out.len();
                self.publish(&mut g, out);
                drop(g);
                if let (Some(log), Some(last)) = (&self.log, out[first..].last()) {
                    // With fsync = "always", on the disk before it is streamed and
                    // before the event's answer: waited for outside the feed's lock,
                    // so that one event's fdatasync does not hold up every other
                    // event's findings, and alerts raised together share one.
                    if let Err(e) = log.wait_durable(last.seq) {
                        tracing::error!(error = %e, alert = %last.alert.id, "syncing the alert log failed");
                    }
                }
                // No receiver is fine: the ring still has them.
                for item in &out[first..] {
                    let _ = self.tx.send(item.clone());
                }
            }
            Folded::Repeat { id, count, last_time, score, action } => {
                if let Some(a) = Self::place(&g, &id).and_then(|at| g.ring.get_mut(at)) {
                    (a.alert.count, a.alert.last_time, a.alert.score, a.alert.action) = (count, last_time, score, action);
                }
            }
        }
    }

    /// Number and show the alerts waiting, oldest first. With a log, an
    /// alert is numbered by its place there and shown only once written:
    /// if the log fails, alerts wait (and are retried with the next one)
    /// rather than get a number the log does not have.
    fn publish(&self, g: &mut Inner, out: &mut Vec<FeedAlert>) {
        while let Some(mut alert) = g.unwritten.pop_front() {
            finite(&mut alert);
            let seq = match &self.log {
                None => g.next_seq,
                Some(log) => {
                    // Under the feed's lock, the only writer: the next offset is this alert's.
                    let seq = log.next_offset() + 1;
                    let bytes = serde_json::to_vec(&FeedAlertRef { seq, alert: &alert }).expect("an alert of finite numbers encodes");
                    match log.append_deferred(&[&bytes]) {
                        Ok(offset) if offset + 1 == seq => seq,
                        Ok(offset) => {
                            tracing::error!(offset, seq, "the alert log numbered an alert unexpectedly");
                            offset + 1
                        }
                        Err(e) => {
                            tracing::error!(error = %e, alert = %alert.id, waiting = g.unwritten.len() + 1, "writing the alert log failed; the alert waits for the next try");
                            g.unwritten.push_front(alert);
                            return;
                        }
                    }
                }
            };
            g.next_seq = seq + 1;
            let item = FeedAlert { seq, alert };
            g.by_id.insert(item.alert.id.clone(), seq);
            g.ring.push_back(item.clone());
            while g.ring.len() > self.capacity {
                if let Some(old) = g.ring.pop_front() {
                    g.by_id.remove(&old.alert.id);
                }
            }
            out.push(item);
        }
    }

    /// Where the alert `id` sits in the ring, if it is still there.
    fn place(g: &Inner, id: &str) -> Option<usize> {
        let &seq = g.by_id.get(id)?;
        // Seqs in the ring are consecutive: each is the one before plus one.
        let at = (seq - g.ring.front()?.seq) as usize;
        g.ring.get(at).filter(|a| a.alert.id == id).map(|_| at)
    }

    /// The alert `id`, while the ring still holds it.
    pub fn get(&self, id: &str) -> Option<FeedAlert> {
        let g = self.lock();
        Self::place(&g, id).map(|at| g.ring[at].clone())
    }

    /// Alerts after `since`, oldest first, at most `limit`.
    pub fn since(&self, since: u64, limit: usize) -> Vec<FeedAlert> {
        let g = self.lock();
        g.ring.iter().filter(|a| a.seq > since).take(limit).cloned().collect()
    }

    /// The newest alerts, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<FeedAlert> {
        let g = self.lock();
        let skip = g.ring.len().saturating_sub(limit);
        g.ring.iter().skip(skip).cloned().collect()
    }

    /// Live alerts from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedAlert> {
        self.tx.subscribe()
    }
}
