//! Alerts and the folding of repeated findings.

use std::collections::HashMap;

use haechi_features::{format_rfc3339_ms, Action, EntityKind, FeatureCatalog, Finding, Mode, Severity};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::error::AlertError;

/// One piece of evidence, with the feature named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvidence {
    pub feature: String,
    pub value: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f32>,
}

/// A finding on one entity, folded with its repeats inside one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Derived from (detector, rule, entity, window start): the same on every replica.
    pub id: String,
    /// Event time of the first finding, RFC 3339.
    pub time: String,
    /// Event time of the newest finding folded in, RFC 3339.
    pub last_time: String,
    pub detector: String,
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub severity: Severity,
    pub entity_kind: Option<EntityKind>,
    pub entity: Option<String>,
    pub action: Action,
    pub mode: Mode,
    /// Highest score among the folded findings.
    pub score: f32,
    /// Findings folded into this alert.
    pub count: u32,
    /// The event that first raised it.
    pub event_id: String,
    /// Feature values when it first fired.
    pub evidence: Vec<AlertEvidence>,
    #[serde(skip)]
    window_end_ms: i64,
    #[serde(skip)]
    last_ms: i64,
}

/// The deterministic id of an alert.
pub fn alert_id(detector: &str, rule: &str, kind: Option<EntityKind>, entity: Option<&str>, window_start_ms: i64) -> String {
    let mut h = Xxh3::new();
    for part in [detector, rule, kind.map_or("", EntityKind::as_str), entity.unwrap_or("")] {
        h.update(part.as_bytes());
        // A separator no part can contain keeps ("ab","c") and ("a","bc") apart.
        h.update(&[0xff]);
    }
    h.update(&window_start_ms.to_le_bytes());
    format!("{:016x}", h.digest())
}

/// What folding one finding did.
#[derive(Debug, Clone, PartialEq)]
pub enum Folded {
    /// The first finding of its kind on this entity in this window.
    New(Alert),
    /// A repeat: the alert with this id as it stands now (the fields a repeat
    /// can change, but its severity: sinks got the alert with the severity it
    /// was raised with, and it is labelled by it there).
    Repeat { id: String, count: u32, last_time: String, score: f32, action: Action },
}

/// The alerts a folder holds open, as a snapshot keeps them: each alert's
/// JSON (the form every sink reads) with the two times JSON leaves out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FolderState {
    open: Vec<(String, i64, i64)>,
}

impl FolderState {
    /// Alerts open in the copy.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// No alert open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// Folds findings into alerts per (detector, rule, entity, window).
///
/// Windows are aligned in event time, so folding is deterministic. Alerts stay
/// open until the event time passes their window's end plus the lateness, then
/// [`AlertFolder::drain_closed`] hands them on; memory is bounded by the alerts
/// of the current windows.
pub struct AlertFolder {
    window_ms: i64,
    lateness_ms: i64,
    open: HashMap<String, Alert>,
}

impl AlertFolder {
    /// Fold inside windows of `window_ms`, keep them open `lateness_ms` past their end.
    pub fn new(window_ms: i64, lateness_ms: i64) -> AlertFolder {
        AlertFolder { window_ms: window_ms.max(1), lateness_ms: lateness_ms.max(0), open: HashMap::new() }
    }

    /// Fold one finding raised by `event_id` at `ts_ms` on `entity`.
    pub fn fold(
        &mut self,
        finding: &Finding,
        entity: Option<&str>,
        event_id: &str,
        ts_ms: i64,
        catalog: &FeatureCatalog,
    ) -> Folded {
        let window_start = ts_ms.div_euclid(self.window_ms) * self.window_ms;
        let id = alert_id(&finding.detector, &finding.id, finding.entity, entity, window_start);
        if let Some(a) = self.open.get_mut(&id) {
            a.count += 1;
            a.score = a.score.max(finding.score);
            // An alert that escalates (challenge, then block) shows the strongest step.
            if finding.action.strength() > a.action.strength() {
                a.action = finding.action;
            }
            a.severity = a.severity.max(finding.severity);
            if ts_ms > a.last_ms {
                a.last_ms = ts_ms;
                a.last_time = format_rfc3339_ms(ts_ms);
            }
            return Folded::Repeat { id, count: a.count, last_time: a.last_time.clone(), score: a.score, action: a.action };
        }
        let alert = Alert {
            id: id.clone(),
            time: format_rfc3339_ms(ts_ms),
            last_time: format_rfc3339_ms(ts_ms),
            detector: finding.detector.to_string(),
            rule: finding.id.to_string(),
            version: finding.version.as_deref().map(str::to_owned),
            severity: finding.severity,
            entity_kind: finding.entity,
            entity: entity.map(str::to_owned),
            action: finding.action,
            mode: finding.mode,
            score: finding.score,
            count: 1,
            event_id: event_id.to_owned(),
            evidence: finding
                .evidence
                .iter()
                .map(|e| AlertEvidence { feature: catalog.name(usize::from(e.slot)).to_owned(), value: e.value, weight: e.weight })
                .collect(),
            window_end_ms: window_start + self.window_ms,
            last_ms: ts_ms,
        };
        self.open.insert(id, alert.clone());
        Folded::New(alert)
    }

    /// Alerts whose window closed before `watermark_ms` (minus lateness), oldest first.
    pub fn drain_closed(&mut self, watermark_ms: i64) -> Vec<Alert> {
        let cutoff = watermark_ms - self.lateness_ms;
        let closed: Vec<String> = self.open.iter().filter(|(_, a)| a.window_end_ms <= cutoff).map(|(k, _)| k.clone()).collect();
        let mut out: Vec<Alert> = closed.into_iter().filter_map(|k| self.open.remove(&k)).collect();
        out.sort_by(|a, b| (&a.time, &a.id).cmp(&(&b.time, &b.id)));
        out
    }

    /// Every open alert, oldest first (end of a replay, shutdown).
    pub fn drain_all(&mut self) -> Vec<Alert> {
        self.drain_closed(i64::MAX)
    }

    /// Copy the open alerts, for a snapshot.
    pub fn export_state(&self) -> FolderState {
        let mut open: Vec<(String, i64, i64)> =
            self.open.values().map(|a| (serde_json::to_string(a).unwrap_or_default(), a.window_end_ms, a.last_ms)).collect();
        // A stable order: the same state writes the same bytes.
        open.sort();
        FolderState { open }
    }

    /// Hold open exactly the alerts a snapshot held open, so that findings
    /// after a restart fold into them instead of opening second alerts.
    ///
    /// # Errors
    /// [`AlertError::Json`] when an alert in the state does not parse.
    pub fn restore_state(&mut self, state: &FolderState) -> Result<(), AlertError> {
        let mut open = HashMap::with_capacity(state.open.len());
        for (json, window_end_ms, last_ms) in &state.open {
            let mut alert: Alert = serde_json::from_str(json)?;
            alert.window_end_ms = *window_end_ms;
            alert.last_ms = *last_ms;
            open.insert(alert.id.clone(), alert);
        }
        self.open = open;
        Ok(())
    }

    /// Alerts still open.
    pub fn open_len(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haechi_features::{Evidence, FeatureConfig};
    use std::sync::Arc;

    /// The start of a ten-minute fold window (a multiple of 600,000 ms), so
    /// that the tests' offsets land in the window they name.
    const WINDOW_START_MS: i64 = 2_940_000 * 600_000;

    fn finding(rule: &str) -> Finding {
        Finding {
            detector: Arc::from("rules"),
            id: Arc::from(rule),
            version: Some(Arc::from("abc")),
            severity: Severity::High,
            action: Action::Challenge,
            mode: Mode::Enforce,
            score: 0.75,
            entity: Some(EntityKind::Ip),
            evidence: vec![Evidence { slot: 0, value: 3.0, weight: None }],
            note: None,
        }
    }

    #[test]
    fn repeats_fold_and_ids_are_deterministic() {
        let catalog = FeatureCatalog::new(&FeatureConfig::default().validate().unwrap());
        let mut f = AlertFolder::new(600_000, 300_000);
        let t0 = WINDOW_START_MS;
        let Folded::New(a) = f.fold(&finding("r1"), Some("10.0.0.1"), "e1", t0 + 5, &catalog) else { panic!() };
        assert_eq!(a.evidence[0].feature, "event.hour");
        let Folded::Repeat { id, count: 2, last_time, .. } = f.fold(&finding("r1"), Some("10.0.0.1"), "e2", t0 + 9, &catalog) else { panic!("a repeat") };
        assert_eq!((id.as_str(), last_time), (a.id.as_str(), format_rfc3339_ms(t0 + 9)), "the repeat carries the newest time");
        // Another entity, another rule, another window: three more alerts.
        assert!(matches!(f.fold(&finding("r1"), Some("10.0.0.2"), "e3", t0 + 9, &catalog), Folded::New(_)));
        assert!(matches!(f.fold(&finding("r2"), Some("10.0.0.1"), "e4", t0 + 9, &catalog), Folded::New(_)));
        let Folded::New(b) = f.fold(&finding("r1"), Some("10.0.0.1"), "e5", t0 + 600_000, &catalog) else { panic!() };
        assert_ne!(a.id, b.id);
        assert_eq!(a.id, alert_id("rules", "r1", Some(EntityKind::Ip), Some("10.0.0.1"), t0));
        assert!(f.drain_closed(t0 + 600_000).is_empty(), "lateness keeps the window open");
        let closed = f.drain_closed(t0 + 900_000);
        assert_eq!(closed.len(), 3);
        assert_eq!(closed.iter().find(|x| x.id == a.id).unwrap().count, 2);
        assert_eq!(f.drain_all().len(), 1);
        assert_eq!(f.open_len(), 0);
    }

    #[test]
    fn a_restored_folder_folds_into_the_alerts_it_held_open() {
        let catalog = FeatureCatalog::new(&FeatureConfig::default().validate().unwrap());
        let mut f = AlertFolder::new(600_000, 300_000);
        let t0 = WINDOW_START_MS;
        let Folded::New(a) = f.fold(&finding("r1"), Some("10.0.0.1"), "e1", t0 + 5, &catalog) else { panic!() };
        let saved = serde_json::to_string(&f.export_state()).unwrap();
        let mut g = AlertFolder::new(600_000, 300_000);
        g.restore_state(&serde_json::from_str(&saved).unwrap()).unwrap();
        assert!(matches!(g.fold(&finding("r1"), Some("10.0.0.1"), "e2", t0 + 9, &catalog), Folded::Repeat { ref id, count: 2, .. } if *id == a.id));
        // The window's end came along: the alert closes when it would have.
        assert!(g.drain_closed(t0 + 600_000).is_empty());
        let closed = g.drain_closed(t0 + 900_000);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].evidence, a.evidence);
    }

}
