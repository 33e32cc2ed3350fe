//! What the service writes into the access records (`haechi-records`): an access and a decision
//! record per accepted event, a record per alert, per block set or lifted, per staff action.
//!
//! Events and decisions go through the store's background recorder, so recording costs the
//! decision path a channel send; staff actions are written and synced before the action is
//! acknowledged. Records are built from validated events, which never hold a raw resident
//! number; only an attribute already in masked form (`900101-1******`) is carried.

use std::path::Path;
use std::sync::Arc;

use haechi_alerting::Alert;
use haechi_features::{AttrValue, Event, Finding, Step};
use haechi_records::{AccessRecord, ActionRecord, AlertRecord, BlockRecord, DecisionRecord, Record, RecordBody, Recorder, Records, RecordsConfig};
use haechi_storage::KeyRing;

use crate::decision::Decision;
use crate::driver::Sink;
use crate::enforce::Block;
use crate::error::DetectorError;
use crate::pipeline::{Pipeline, Processed};

/// The verification method behind a step, unless the event names its own (`attrs.method`).
pub fn method_of(step: Step) -> &'static str {
    match step {
        Step::IdOcr | Step::IdAuthenticity => "id_card",
        Step::FaceMatch | Step::Liveness => "face",
        Step::AccountVerify => "account_transfer",
        Step::PhoneAuth | Step::Otp => "phone",
        Step::Login => "login",
        Step::AccountOpen => "account_open",
        Step::RecordView | Step::RecordExport => "staff",
    }
}

/// `900101-1******`: six digits, a dash, one digit, six stars. Anything else is not carried.
fn masked_rrn(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 14 && b[..6].iter().all(u8::is_ascii_digit) && b[6] == b'-' && b[7].is_ascii_digit() && b[8..].iter().all(|&c| c == b'*')
}

/// The operating system and browser a user agent names, as "Name Version".
fn user_agent_parts(ua: &str) -> (Option<String>, Option<String>) {
    match woothee::parser::Parser::new().parse(ua) {
        Some(r) => {
            // "Windows 10" already names its version ("NT 10.0" adds nothing); "Android" does not.
            let bare = r.os_version.is_empty() || r.os_version == "UNKNOWN" || r.os.chars().any(|c| c.is_ascii_digit());
            let os = (r.os != "UNKNOWN").then(|| if bare { r.os.to_owned() } else { format!("{} {}", r.os, r.os_version) });
            let browser = (r.name != "UNKNOWN").then(|| if r.version.is_empty() || r.version == "UNKNOWN" { r.name.to_owned() } else { format!("{} {}", r.name, r.version) });
            (os, browser)
        }
        None => (None, None),
    }
}

fn attr_text<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    match event.attrs.get(key) {
        Some(AttrValue::Text(t)) => Some(t),
        _ => None,
    }
}

/// The access record of one event.
pub fn access_record(event: &Event) -> AccessRecord {
    access_record_with(event, event.user_agent.as_deref().map_or((None, None), user_agent_parts))
}

/// Parsed user agents, by their text: a service sees few distinct ones, and parsing is the
/// dearest part of building an access record.
#[derive(Default)]
struct UserAgents(std::collections::HashMap<String, (Option<String>, Option<String>)>);

impl UserAgents {
    const MAX: usize = 4096;

    fn parts(&mut self, ua: Option<&str>) -> (Option<String>, Option<String>) {
        let Some(ua) = ua else { return (None, None) };
        if let Some(p) = self.0.get(ua) {
            return p.clone();
        }
        let p = user_agent_parts(ua);
        if self.0.len() >= Self::MAX {
            // A spray of distinct agents must not grow memory: start over.
            self.0.clear();
        }
        self.0.insert(ua.to_owned(), p.clone());
        p
    }
}

fn access_record_with(event: &Event, (os, browser): (Option<String>, Option<String>)) -> AccessRecord {
    AccessRecord {
        event_id: event.event_id.to_string(),
        step: event.step.as_str().to_owned(),
        method: attr_text(event, "method").unwrap_or(method_of(event.step)).to_owned(),
        result: if event.is_failure() { "failure" } else { "success" }.to_owned(),
        failure_reason: event.failure_reason.as_ref().map(ToString::to_string),
        // Only the subject's own number, under its own key: another attribute may name a
        // co-applicant or a beneficiary.
        rrn_masked: ["rrn", "rrn_masked"].iter().find_map(|k| attr_text(event, k).filter(|t| masked_rrn(t)).map(str::to_owned)),
        ip: event.ip.map(|ip| ip.to_string()),
        device_id: event.device_id.as_ref().map(ToString::to_string),
        os,
        browser,
        channel: event.channel.map(|c| serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()),
        region: event.region.as_ref().map(ToString::to_string),
        duration_ms: event.duration_ms,
        session_id: event.session_id.as_ref().map(ToString::to_string),
        staff_id: event.staff_id.as_ref().map(ToString::to_string),
        records: event.records,
    }
}

/// The decision record of one event.
pub fn decision_record(decision: &Decision) -> DecisionRecord {
    DecisionRecord {
        event_id: decision.event_id.to_string(),
        decision: decision.verdict.as_str().to_owned(),
        score: decision.score,
        reasons: reason_texts(&decision.reasons),
    }
}

/// The service's recording: the store, its background recorder, and how far a crashed run
/// had recorded the ingest log.
/// What the decision path hands the writer thread, which builds the records from it.
pub enum Recordable {
    /// A decided event, at its ingest-log offset.
    Event { event: Box<Event>, verdict: crate::Verdict, score: f32, reasons: Vec<crate::Reason>, log_offset: Option<u64> },
    /// Records built already (alerts, blocks).
    Records(Vec<Record>),
}

fn converter() -> haechi_records::Convert<Recordable> {
    let mut agents = UserAgents::default();
    Box::new(move |item, out| match item {
        Recordable::Event { event, verdict, score, reasons, log_offset } => {
            let customer = event.customer_id.as_ref().map(ToString::to_string);
            let access = access_record_with(&event, agents.parts(event.user_agent.as_deref()));
            let mut a = Records::new_record(event.ts_ms, customer.clone(), RecordBody::Access(access));
            a.log_offset = log_offset;
            let decided = DecisionRecord { event_id: event.event_id.to_string(), decision: verdict.as_str().to_owned(), score, reasons: reason_texts(&reasons) };
            let mut d = Records::new_record(event.ts_ms, customer, RecordBody::Decision(decided));
            d.log_offset = log_offset;
            out.push(a);
            out.push(d);
        }
        Recordable::Records(records) => out.extend(records),
    })
}

fn reason_texts(reasons: &[crate::Reason]) -> Vec<String> {
    reasons
        .iter()
        .map(|r| match &r.detail {
            Some(d) => format!("{}: {d}", r.id),
            None => r.id.to_string(),
        })
        .collect()
}

pub struct Recording {
    records: Arc<Records>,
    recorder: Recorder<Recordable>,
}

impl Recording {
    /// Open the store in `data_dir`, sealed with `ring`.
    ///
    /// # Errors
    /// When the store cannot be opened (damage is named; `haechi records verify` tells more).
    pub fn open(data_dir: &Path, config: &RecordsConfig, ring: &KeyRing) -> Result<Recording, DetectorError> {
        let records = Arc::new(Records::open(data_dir, config, ring)?);
        let recorder = Recorder::start(records.clone(), crate::enforce::now_ms, converter());
        Ok(Recording { records, recorder })
    }

    pub fn records(&self) -> &Arc<Records> {
        &self.records
    }

    /// Record one decided event (its access and its decision). `log_offset`: where the ingest
    /// log holds it.
    pub fn event(&self, log_offset: Option<u64>, event: &Event, decision: &Decision) {
        // The records are built on the writer thread: here, only a copy of the event.
        self.recorder.send(Recordable::Event { event: Box::new(event.clone()), verdict: decision.verdict, score: decision.score, reasons: decision.reasons.clone(), log_offset });
    }

    /// Record an alert as the feed raised it.
    pub fn alert(&self, alert: &Alert) {
        let event_ms = haechi_features::parse_rfc3339_ms(&alert.time).unwrap_or_else(crate::enforce::now_ms);
        let customer = (alert.entity_kind == Some(haechi_features::EntityKind::Customer)).then(|| alert.entity.clone()).flatten();
        let body = AlertRecord {
            alert_id: alert.id.clone(),
            detector: alert.detector.clone(),
            rule: alert.rule.clone(),
            severity: alert.severity.as_str().to_owned(),
            entity_kind: alert.entity_kind.map(|k| k.as_str().to_owned()),
            entity: alert.entity.clone(),
            action: serde_json::to_value(alert.action).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
            event_id: alert.event_id.clone(),
            count: alert.count,
        };
        self.recorder.send(Recordable::Records(vec![Records::new_record(event_ms, customer, RecordBody::Alert(body))]));
    }

    /// Record a block set or lifted. A block that runs out is not recorded again: its set
    /// record carries the time it ends.
    pub fn block(&self, change: &str, block: &Block) {
        let customer = (block.scope == haechi_features::EntityKind::Customer).then(|| block.key.clone());
        // The block list says "lift"; the record says what happened to the block.
        let change = if change == "lift" { "lifted" } else { change };
        let body = BlockRecord {
            change: change.to_owned(),
            scope: block.scope.as_str().to_owned(),
            entity: block.key.clone(),
            by: block.set_by.clone(),
            reason: block.reason.clone(),
            until_ms: (change == "set").then_some(block.expires_at_ms),
        };
        self.recorder.send(Recordable::Records(vec![Records::new_record(crate::enforce::now_ms(), customer, RecordBody::Block(body))]));
    }

    /// Record a staff action and make it durable before returning.
    ///
    /// # Errors
    /// When it cannot be written: the caller must not acknowledge the action as recorded.
    pub fn action(&self, action: ActionRecord) -> Result<Record, DetectorError> {
        let now = crate::enforce::now_ms();
        Ok(self.records.record(now, Records::new_record(now, None, RecordBody::Action(action)))?)
    }

    /// Wait until everything sent is written, synced and its head signed.
    ///
    /// # Errors
    /// When the writer failed.
    pub fn flush(&self) -> Result<(), DetectorError> {
        Ok(self.recorder.flush()?)
    }

    /// Appends that failed since the start.
    pub fn failures(&self) -> u64 {
        self.recorder.failures()
    }

}

/// Decided events into the records, at the source position the driver reports (an ingest-log
/// offset when recovering, so that what was recorded before a crash is not recorded twice).
pub struct RecordsSink<'a> {
    recording: &'a Recording,
    position: Option<u64>,
    /// Positions are ingest-log offsets (recovery), not line numbers.
    log_positions: bool,
    /// Recovery: the offsets from the first replayed one on that the records hold already
    /// (recorded before the crash), found when the first offset is seen.
    recorded: Option<std::collections::HashSet<u64>>,
}

impl<'a> RecordsSink<'a> {
    /// A sink for a source whose positions are not log offsets (a file being replayed).
    pub fn new(recording: &'a Recording) -> RecordsSink<'a> {
        RecordsSink { recording, position: None, log_positions: false, recorded: None }
    }

    /// A sink whose source positions are ingest-log offsets.
    pub fn for_log(recording: &'a Recording) -> RecordsSink<'a> {
        RecordsSink { recording, position: None, log_positions: true, recorded: None }
    }
}

impl Sink for RecordsSink<'_> {
    fn at(&mut self, position: u64) {
        self.position = self.log_positions.then_some(position);
    }

    fn decided(&mut self, _: &Pipeline, event: &Event, processed: &Processed, _: &[Finding]) -> Result<(), DetectorError> {
        if let Some(offset) = self.position {
            if self.recorded.is_none() {
                self.recorded = Some(self.recording.records.recorded_log_offsets_from(offset)?);
            }
            if self.recorded.as_ref().is_some_and(|r| r.contains(&offset)) {
                return Ok(());
            }
        }
        self.recording.event(self.position, event, &processed.decision);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_masked_form_is_carried_and_the_user_agent_is_named() {
        assert!(masked_rrn("900101-1******"));
        for not in ["900101-1234567", "900101-1*****", "9001011******", "900101-1******x"] {
            assert!(!masked_rrn(not), "{not}");
        }
        let line = br#"{"event_id":"e1","ts":"2026-11-02T09:00:00+09:00","step":"face_match","result":"failure","failure_reason":"low_similarity","customer_id":"c1","ip":"203.0.113.7","device_id":"d1","channel":"app","region":"KR-11","duration_ms":812,"user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36","attrs":{"rrn":"900101-1******"}}"#;
        let event = Event::parse(line, 16 * 1024).unwrap();
        let a = access_record(&event);
        assert_eq!(a.method, "face");
        assert_eq!(a.result, "failure");
        assert_eq!(a.failure_reason.as_deref(), Some("low_similarity"));
        assert_eq!(a.rrn_masked.as_deref(), Some("900101-1******"));
        assert_eq!(a.channel.as_deref(), Some("app"));
        assert_eq!(a.os.as_deref(), Some("Windows 10"));
        assert!(a.browser.as_deref().is_some_and(|b| b.starts_with("Chrome")), "{:?}", a.browser);
    }
}
