//! An analyst's judgement of an alert: acknowledged, resolved, and labelled a true or false
//! positive with a note. The analyst is the token's principal; every change is a staff action
//! in the access records (with a data dir), from which the judgements are rebuilt at start.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Where an alert stands with the analysts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriageState {
    Open,
    Acknowledged,
    Resolved,
}

/// Was the alert right?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriageLabel {
    TruePositive,
    FalsePositive,
}

/// A judgement as `POST /v1/alerts/{id}/triage` takes it: any of the three.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriageChange {
    pub state: Option<TriageState>,
    pub label: Option<TriageLabel>,
    pub note: Option<String>,
}

/// An alert's judgement now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Triage {
    pub state: TriageState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<TriageLabel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The principal who changed it last.
    pub by: String,
    /// When, RFC 3339.
    pub at: String,
}

impl Triage {
    /// This judgement with `change` applied by `by` at `at`.
    pub fn apply(previous: Option<&Triage>, change: &TriageChange, by: &str, at: String) -> Triage {
        Triage {
            state: change.state.or(previous.map(|p| p.state)).unwrap_or(TriageState::Open),
            label: change.label.or(previous.and_then(|p| p.label)),
            note: change.note.clone().or_else(|| previous.and_then(|p| p.note.clone())),
            by: by.to_owned(),
            at,
        }
    }
}

/// Judgements by alert id.
#[derive(Default)]
pub struct TriageBook(Mutex<HashMap<String, Triage>>);

impl TriageBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Triage>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, alert_id: &str) -> Option<Triage> {
        self.lock().get(alert_id).cloned()
    }

    pub fn set(&self, alert_id: &str, triage: Triage) {
        self.lock().insert(alert_id.to_owned(), triage);
    }

    /// Every judgement that gives a label, by alert id: the ground truth the floor gives back.
    pub fn labelled(&self) -> Vec<(String, Triage)> {
        let mut v: Vec<_> = self.lock().iter().filter(|(_, t)| t.label.is_some()).map(|(id, t)| (id.clone(), t.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The judgements the access records hold (actions `alert_triage`, in order).
    pub fn from_actions<'a>(actions: impl IntoIterator<Item = &'a haechi_records::ActionRecord>) -> TriageBook {
        let book = TriageBook::default();
        for a in actions {
            if a.action != "alert_triage" {
                continue;
            }
            if let (Some(id), Ok(t)) = (a.key.as_deref(), serde_json::from_value::<Triage>(a.after.clone())) {
                book.set(id, t);
            }
        }
        book
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_keeps_what_it_does_not_name() {
        let first = Triage::apply(None, &TriageChange { state: Some(TriageState::Acknowledged), ..TriageChange::default() }, "kim", "t1".into());
        assert_eq!((first.state, first.label), (TriageState::Acknowledged, None));
        let second = Triage::apply(Some(&first), &TriageChange { label: Some(TriageLabel::FalsePositive), note: Some("NAT exit".into()), ..TriageChange::default() }, "lee", "t2".into());
        assert_eq!((second.state, second.label, second.note.as_deref(), second.by.as_str()), (TriageState::Acknowledged, Some(TriageLabel::FalsePositive), Some("NAT exit"), "lee"));
        let action = haechi_records::ActionRecord { action: "alert_triage".into(), key: Some("a1".into()), after: serde_json::to_value(&second).unwrap(), ..Default::default() };
        let book = TriageBook::from_actions([&action]);
        assert_eq!(book.get("a1"), Some(second));
        assert_eq!(book.labelled().iter().map(|(id, t)| (id.as_str(), t.label)).collect::<Vec<_>>(), vec![("a1", Some(TriageLabel::FalsePositive))]);
    }
}
