//! Combining findings into one decision per event.

use std::sync::Arc;

use haechi_features::{Action, EntityKind, Finding, Mode, Severity};
use compact_str::CompactString;
use serde::Serialize;

/// What the verification pipeline should do with the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Challenge,
    Block,
}

impl Verdict {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Challenge => "challenge",
            Verdict::Block => "block",
        }
    }
}

/// One reason behind a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    pub detector: Arc<str>,
    pub id: Arc<str>,
    pub severity: Severity,
    /// Words for the analyst where the id alone does not say it (the blast-radius guard's count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Arc<str>>,
}

impl Reason {
    /// A reason without detail.
    pub fn new(detector: Arc<str>, id: Arc<str>, severity: Severity) -> Reason {
        Reason { detector, id, severity, detail: None }
    }

    /// The same reason with words for the analyst.
    #[must_use]
    pub fn with_detail(mut self, detail: String) -> Reason {
        self.detail = Some(Arc::from(detail));
        self
    }
}

/// A block the decision asks for: which entity (none: refuse only this
/// event), for how long, and whether a rate limit asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockRequest {
    pub scope: Option<EntityKind>,
    pub ttl_s: u32,
    pub rate_limit: bool,
    /// The detector and rule that asked for it (none for a rate limit): the
    /// block's `set_by`, which suppressions and analysts go by.
    #[serde(skip)]
    pub by: Option<(Arc<str>, Arc<str>)>,
}

/// The decision on one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub event_id: CompactString,
    #[serde(rename = "decision")]
    pub verdict: Verdict,
    pub score: f32,
    /// Enforced findings, strongest first.
    pub reasons: Vec<Reason>,
    /// Shadow findings: what would have fired. Recorded, never enforced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<Reason>,
    #[serde(skip)]
    pub blocks: Vec<BlockRequest>,
    /// The strongest enforced action other than a block: what the verdict
    /// falls back to when enforcement turns no block request into a block
    /// or a challenge (the guard dropped every one, for a session that had
    /// answered its challenge).
    #[serde(skip)]
    pub without_blocks: Verdict,
    /// An allowlist entry matched: no block or limit applies either (an
    /// analyst's block still does).
    #[serde(skip)]
    pub allowlisted: bool,
    /// The block-list entry in force that refused or challenged the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<crate::enforce::BlockedBy>,
}

impl Decision {
    /// Blocked on account of `kind`: by a block (not a challenge) in force on
    /// that entity, or by a block this very event asked for on it.
    pub fn refused_for(&self, kind: EntityKind) -> bool {
        let entry = self.blocked_by.as_ref().is_some_and(|b| b.action == crate::enforce::BlockAction::Block && b.scope == kind);
        self.verdict == Verdict::Block && (entry || self.asks_block_on(kind))
    }

    /// This event's findings asked for a block on `kind` (enforcement may
    /// drop the request: a block already in force refused the event first).
    pub fn asks_block_on(&self, kind: EntityKind) -> bool {
        self.blocks.iter().any(|b| b.scope == Some(kind))
    }
}

/// An enforced allowlist match wins; otherwise the strongest enforced action
/// (block > challenge > alert > nothing). Shadow findings change nothing.
/// Every decision carries its reasons.
pub fn decide(event_id: &str, findings: &[Finding]) -> Decision {
    if let Some(allow) = findings.iter().find(|f| f.action == Action::Allow && f.mode == Mode::Enforce) {
        return Decision {
            event_id: event_id.into(),
            verdict: Verdict::Allow,
            score: 0.0,
            reasons: vec![Reason::new(allow.detector.clone(), allow.id.clone(), allow.severity)],
            shadow: findings
                .iter()
                .filter(|f| !std::ptr::eq(*f, allow))
                .map(|f| Reason::new(f.detector.clone(), f.id.clone(), f.severity))
                .collect(),
            blocks: Vec::new(),
            without_blocks: Verdict::Allow,
            allowlisted: true,
            blocked_by: None,
        };
    }
    let mut verdict = Verdict::Allow;
    let mut without_blocks = Verdict::Allow;
    let mut score = 0.0f32;
    let mut reasons = Vec::new();
    let mut shadow = Vec::new();
    let mut blocks = Vec::new();
    for f in findings {
        let reason = Reason { detector: f.detector.clone(), id: f.id.clone(), severity: f.severity, detail: f.note.clone() };
        if f.mode == Mode::Shadow {
            shadow.push(reason);
            continue;
        }
        score = score.max(f.score);
        let v = match f.action {
            Action::Allow | Action::Alert => Verdict::Allow,
            Action::Challenge => Verdict::Challenge,
            Action::Block { ttl_s } => {
                blocks.push(BlockRequest { scope: f.entity, ttl_s, rate_limit: false, by: Some((f.detector.clone(), f.id.clone())) });
                Verdict::Block
            }
        };
        verdict = verdict.max(v);
        if v != Verdict::Block {
            without_blocks = without_blocks.max(v);
        }
        reasons.push((f.action.strength(), reason));
    }
    reasons.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.severity.cmp(&a.1.severity)));
    Decision {
        event_id: event_id.into(),
        verdict,
        score,
        reasons: reasons.into_iter().map(|(_, r)| r).collect(),
        shadow,
        blocks,
        without_blocks,
        allowlisted: false,
        blocked_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(action: Action, mode: Mode, sev: Severity) -> Finding {
        Finding {
            detector: Arc::from("t"),
            id: Arc::from(format!("{action:?}")),
            version: None,
            severity: sev,
            action,
            mode,
            score: sev.score(),
            entity: Some(EntityKind::Ip),
            evidence: vec![],
            note: None,
        }
    }

    #[test]
    fn strongest_enforced_action_wins() {
        let d = decide("e", &[f(Action::Alert, Mode::Enforce, Severity::Low), f(Action::Challenge, Mode::Enforce, Severity::Medium)]);
        assert_eq!(d.verdict, Verdict::Challenge);
        assert_eq!(&*d.reasons[0].id, "Challenge");
        assert_eq!(d.score, 0.5);
        let d = decide("e", &[f(Action::Block { ttl_s: 60 }, Mode::Enforce, Severity::High), f(Action::Challenge, Mode::Enforce, Severity::Critical)]);
        assert_eq!(d.verdict, Verdict::Block);
        assert_eq!(d.blocks, vec![BlockRequest { scope: Some(EntityKind::Ip), ttl_s: 60, rate_limit: false, by: Some((Arc::from("t"), Arc::from("Block { ttl_s: 60 }"))) }]);
        assert_eq!(decide("e", &[f(Action::Alert, Mode::Enforce, Severity::Low)]).verdict, Verdict::Allow);
        assert_eq!(decide("e", &[]).verdict, Verdict::Allow);
    }

    #[test]
    fn an_allowlist_match_wins() {
        let d = decide("e", &[f(Action::Block { ttl_s: 60 }, Mode::Enforce, Severity::Critical), f(Action::Allow, Mode::Enforce, Severity::Low)]);
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(&*d.reasons[0].id, "Allow");
        assert_eq!(d.shadow.len(), 1, "what the allowlist overrode is still recorded");
        assert!(d.blocks.is_empty());
        // A shadow allowlist entry overrides nothing.
        let d = decide("e", &[f(Action::Block { ttl_s: 60 }, Mode::Enforce, Severity::High), f(Action::Allow, Mode::Shadow, Severity::Low)]);
        assert_eq!(d.verdict, Verdict::Block);
    }

    #[test]
    fn shadow_findings_change_nothing() {
        let d = decide("e", &[f(Action::Block { ttl_s: 60 }, Mode::Shadow, Severity::Critical)]);
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.score, 0.0);
        assert!(d.reasons.is_empty());
        assert_eq!(d.shadow.len(), 1);
        assert!(d.blocks.is_empty());
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.starts_with(r#"{"event_id":"e","decision":"allow","score":0.0,"reasons":[]"#), "{json}");
    }
}
