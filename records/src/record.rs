//! What a record says: one [`Record`] per accepted event, decision, alert, block change, staff
//! action, read of records, export step or destruction.
//!
//! Nothing here can hold a raw resident number, a password, a biometric or an image: the access
//! record carries only the masked resident-number form the pipeline supplied, and the caller builds
//! records from validated events, whose validation refuses raw resident numbers anywhere.

use serde::{Deserialize, Serialize};

/// A retention class: each is kept in its own chain, for its own time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordClass {
    /// Electronic financial transaction records (전자금융거래법 §22): accesses and decisions.
    Transaction,
    /// Processing records (개인정보 보호법 §29): alerts, blocks, staff actions, exports, destruction.
    Processing,
    /// Reads of the records themselves.
    Read,
}

impl RecordClass {
    pub const ALL: [RecordClass; 3] = [RecordClass::Transaction, RecordClass::Processing, RecordClass::Read];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordClass::Transaction => "transaction",
            RecordClass::Processing => "processing",
            RecordClass::Read => "read",
        }
    }

    pub fn parse(name: &str) -> Option<RecordClass> {
        RecordClass::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// What kind of thing a record records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Access,
    Decision,
    Alert,
    Block,
    Action,
    Read,
    Export,
    Destruction,
}

impl RecordKind {
    pub const ALL: [RecordKind; 8] =
        [RecordKind::Access, RecordKind::Decision, RecordKind::Alert, RecordKind::Block, RecordKind::Action, RecordKind::Read, RecordKind::Export, RecordKind::Destruction];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Access => "access",
            RecordKind::Decision => "decision",
            RecordKind::Alert => "alert",
            RecordKind::Block => "block",
            RecordKind::Action => "action",
            RecordKind::Read => "read",
            RecordKind::Export => "export",
            RecordKind::Destruction => "destruction",
        }
    }

    pub fn parse(name: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The chain (and retention) it belongs to.
    pub fn class(self) -> RecordClass {
        match self {
            RecordKind::Access | RecordKind::Decision => RecordClass::Transaction,
            RecordKind::Alert | RecordKind::Block | RecordKind::Action | RecordKind::Export | RecordKind::Destruction => RecordClass::Processing,
            RecordKind::Read => RecordClass::Read,
        }
    }
}

/// One record, as stored (inside its seal) and as returned to an auditor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unique across the store: the class's initial, the sequence number, the node.
    pub id: String,
    /// Position in its class's chain, from 0, without gaps.
    pub seq: u64,
    /// When it happened (the event's time for accesses and decisions), ms since the epoch.
    pub event_ms: i64,
    /// When it was recorded, by this server's clock.
    pub recorded_ms: i64,
    /// The processing server (`[records] node`).
    pub node: String,
    /// The data subject, when there is one: what subject access and `customer_id=` filter on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// The ingest-log offset of the event an access or decision record comes from: after a
    /// crash, the log tail already recorded is not recorded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_offset: Option<u64>,
    #[serde(flatten)]
    pub body: RecordBody,
}

impl Record {
    pub fn kind(&self) -> RecordKind {
        self.body.kind()
    }
}

/// What the record says, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordBody {
    Access(AccessRecord),
    Decision(DecisionRecord),
    Alert(AlertRecord),
    Block(BlockRecord),
    Action(ActionRecord),
    Read(ReadRecord),
    Export(ExportRecord),
    Destruction(DestructionRecord),
}

impl RecordBody {
    pub fn kind(&self) -> RecordKind {
        match self {
            RecordBody::Access(_) => RecordKind::Access,
            RecordBody::Decision(_) => RecordKind::Decision,
            RecordBody::Alert(_) => RecordKind::Alert,
            RecordBody::Block(_) => RecordKind::Block,
            RecordBody::Action(_) => RecordKind::Action,
            RecordBody::Read(_) => RecordKind::Read,
            RecordBody::Export(_) => RecordKind::Export,
            RecordBody::Destruction(_) => RecordKind::Destruction,
        }
    }
}

/// One verification step or record access, as 전자금융거래법 §22 asks: time, device, where from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessRecord {
    pub event_id: String,
    pub step: String,
    /// The verification method (`id_card`, `face`, `account_transfer`, `phone`, `password`, `staff`).
    pub method: String,
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Only ever the masked form, `900101-1******`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrn_masked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// A staff member's access to customer records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
}

/// The verdict on one event, with its reasons.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub event_id: String,
    /// `allow`, `challenge` or `block`.
    pub decision: String,
    pub score: f32,
    /// Rule or detector names with their messages, strongest first.
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// An alert as the feed raised it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub alert_id: String,
    pub detector: String,
    pub rule: String,
    pub severity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    pub action: String,
    pub event_id: String,
    pub count: u32,
}

/// A block set or lifted, by whom (a rule, the blast-radius guard, an analyst).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// `set`, `lifted`, `answered` or `device` (see the block list).
    pub change: String,
    pub scope: String,
    pub entity: String,
    pub by: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
}

/// Who did something: a principal's name and role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub name: String,
    pub role: String,
}

/// An analyst's or admin's action, with the state before and after.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub who: Actor,
    /// `block_set`, `block_lifted`, `reload`, ...
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub before: serde_json::Value,
    #[serde(default)]
    pub after: serde_json::Value,
}

/// A read of records: who read what, and how many came back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadRecord {
    pub who: Actor,
    /// Where the read came through: `GET /v1/records`, `haechi records query`, `subject access`, ...
    pub via: String,
    pub filter: serde_json::Value,
    pub returned: u64,
}

/// One step of an export's four-eyes path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub export_id: String,
    /// `requested`, `approved`, `refused` or `downloaded`.
    pub step: String,
    pub who: Actor,
    pub filter: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Records destroyed at the end of their retention: the destruction itself is recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DestructionRecord {
    pub class: String,
    /// Records recorded before this instant were due.
    pub before_ms: i64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    pub segments: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_with_its_kind_on_the_wire() {
        let r = Record {
            id: "t7@node-1".into(),
            seq: 7,
            event_ms: 1,
            recorded_ms: 2,
            node: "node-1".into(),
            customer_id: Some("c-1".into()),
            log_offset: Some(3),
            body: RecordBody::Access(AccessRecord { event_id: "e1".into(), step: "otp".into(), method: "phone".into(), result: "success".into(), ..AccessRecord::default() }),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""kind":"access""#), "{text}");
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), r);
        assert_eq!(r.kind().class(), RecordClass::Transaction);
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::parse(k.as_str()), Some(k));
        }
    }
}
