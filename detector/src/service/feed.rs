//! The live alert feed: findings folded into alerts, numbered, kept in a
//! ring for `GET /v1/alerts?since=` and broadcast to stream clients.
//!
//! A stream client that falls behind, or reconnects with `Last-Event-ID`, is
//! caught up from the ring, so an alert is lost to a client only if it stayed
//! away for longer than the ring holds.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use haechi_alerting::{Alert, AlertFolder, Folded};
use haechi_features::{FeatureCatalog, Finding};
use serde::Serialize;
use tokio::sync::broadcast;

/// An alert with its place in the feed.
#[derive(Debug, Clone, Serialize)]
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
}

/// The feed.
pub struct AlertFeed {
    inner: Mutex<Inner>,
    capacity: usize,
    tx: broadcast::Sender<FeedAlert>,
}

impl AlertFeed {
    /// A feed keeping the last `capacity` alerts, folding within `fold_window_ms`.
    pub fn new(capacity: usize, fold_window_ms: i64, lateness_ms: i64) -> AlertFeed {
        let (tx, _) = broadcast::channel(1024);
        AlertFeed {
            inner: Mutex::new(Inner { folder: AlertFolder::new(fold_window_ms, lateness_ms), ring: VecDeque::new(), by_id: HashMap::new(), next_seq: 1, folds: 0 }),
            capacity: capacity.max(16),
            tx,
        }
    }

    /// Fold one finding; returns the alert if it is new.
    pub fn fold(&self, finding: &Finding, entity: Option<&str>, event_id: &str, ts_ms: i64, catalog: &FeatureCatalog, watermark_ms: i64) -> Option<FeedAlert> {
        // A std mutex: the critical section is short and never awaits.
        let mut g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.folds += 1;
        if g.folds % 1024 == 0 {
            // Closed windows need no folding state; the ring keeps the alerts.
            let _ = g.folder.drain_closed(watermark_ms);
        }
        match g.folder.fold(finding, entity, event_id, ts_ms, catalog) {
            Folded::New(alert) => {
                let seq = g.next_seq;
                g.next_seq += 1;
                let item = FeedAlert { seq, alert };
                g.by_id.insert(item.alert.id.clone(), seq);
                g.ring.push_back(item.clone());
                while g.ring.len() > self.capacity {
                    if let Some(old) = g.ring.pop_front() {
                        g.by_id.remove(&old.alert.id);
                    }
                }
                drop(g);
                // No receiver is fine: the ring still has it.
                let _ = self.tx.send(item.clone());
                Some(item)
            }
            Folded::Repeat { id, count } => {
                if let Some(&seq) = g.by_id.get(&id) {
                    let first = g.ring.front().map_or(seq, |a| a.seq);
                    if let Some(a) = g.ring.get_mut((seq - first) as usize) {
                        a.alert.count = count;
                    }
                }
                None
            }
        }
    }

    /// Alerts after `since`, oldest first, at most `limit`.
    pub fn since(&self, since: u64, limit: usize) -> Vec<FeedAlert> {
        let g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.ring.iter().filter(|a| a.seq > since).take(limit).cloned().collect()
    }

    /// The newest alerts, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<FeedAlert> {
        let g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let skip = g.ring.len().saturating_sub(limit);
        g.ring.iter().skip(skip).cloned().collect()
    }

    /// Live alerts from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedAlert> {
        self.tx.subscribe()
    }
}
