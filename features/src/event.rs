//! The event contract: one JSON object per verification step or record access.
//!
//! Parsing is two stages. Serde reads the line into [`RawEvent`], which mirrors
//! the wire format and rejects unknown fields; [`RawEvent::validate`] then checks
//! every value and produces the typed [`Event`] the rest of Haechi uses. No
//! raw resident registration number survives either stage: a string that holds
//! one rejects the event, and every error message is masked.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rrn::{find_resident_number, find_resident_number_in_id, mask_resident_numbers};

/// Default upper bound on one raw event, in bytes.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024;
const MAX_ID_CHARS: usize = 128;
const MAX_TEXT_CHARS: usize = 512;
const MAX_ATTRS: usize = 32;

/// The verification step (or record access) an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    IdOcr,
    IdAuthenticity,
    FaceMatch,
    Liveness,
    AccountVerify,
    PhoneAuth,
    Otp,
    Login,
    AccountOpen,
    RecordView,
    RecordExport,
}

impl Step {
    /// Every step, in contract order.
    pub const ALL: [Step; 11] = [
        Step::IdOcr,
        Step::IdAuthenticity,
        Step::FaceMatch,
        Step::Liveness,
        Step::AccountVerify,
        Step::PhoneAuth,
        Step::Otp,
        Step::Login,
        Step::AccountOpen,
        Step::RecordView,
        Step::RecordExport,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::IdOcr => "id_ocr",
            Step::IdAuthenticity => "id_authenticity",
            Step::FaceMatch => "face_match",
            Step::Liveness => "liveness",
            Step::AccountVerify => "account_verify",
            Step::PhoneAuth => "phone_auth",
            Step::Otp => "otp",
            Step::Login => "login",
            Step::AccountOpen => "account_open",
            Step::RecordView => "record_view",
            Step::RecordExport => "record_export",
        }
    }

    /// Steps of onboarding a new customer (the identity checks and opening the account).
    pub fn is_onboarding(self) -> bool {
        matches!(self, Step::IdOcr | Step::IdAuthenticity | Step::FaceMatch | Step::Liveness | Step::AccountVerify | Step::AccountOpen)
    }

    /// Steps that move money or identity: where an account takeover pays off.
    pub fn is_sensitive(self) -> bool {
        matches!(self, Step::AccountOpen | Step::AccountVerify | Step::PhoneAuth | Step::RecordExport)
    }
}

/// Whether the step succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

/// The channel the customer came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    App,
    Web,
}

/// A free-form attribute value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttrValue {
    Bool(bool),
    Number(f64),
    Text(String),
}

/// The wire form of an event, exactly as the contract names its fields.
/// Everything is optional here so that a missing field gets our own typed
/// error rather than serde's.
/// `ts` and `ip` are only read, never kept as text, so they borrow from the
/// input line when it has no escapes.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent<'a> {
    pub event_id: Option<CompactString>,
    #[serde(borrow)]
    pub ts: Option<Cow<'a, str>>,
    pub step: Option<Step>,
    pub result: Option<Outcome>,
    pub failure_reason: Option<CompactString>,
    pub session_id: Option<CompactString>,
    pub customer_id: Option<CompactString>,
    pub id_doc_hash: Option<CompactString>,
    #[serde(borrow)]
    pub ip: Option<Cow<'a, str>>,
    pub device_id: Option<CompactString>,
    pub user_agent: Option<String>,
    pub channel: Option<Channel>,
    pub region: Option<CompactString>,
    pub duration_ms: Option<u64>,
    pub account_hash: Option<CompactString>,
    pub staff_id: Option<CompactString>,
    pub records: Option<u64>,
    pub attrs: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A validated event. Times are milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub event_id: CompactString,
    pub ts_ms: i64,
    pub step: Step,
    pub result: Outcome,
    pub failure_reason: Option<CompactString>,
    pub session_id: Option<CompactString>,
    pub customer_id: Option<CompactString>,
    pub id_doc_hash: Option<CompactString>,
    pub ip: Option<IpAddr>,
    pub device_id: Option<CompactString>,
    pub user_agent: Option<String>,
    pub channel: Option<Channel>,
    pub region: Option<CompactString>,
    pub duration_ms: Option<u64>,
    pub account_hash: Option<CompactString>,
    pub staff_id: Option<CompactString>,
    pub records: Option<u64>,
    pub attrs: BTreeMap<String, AttrValue>,
}

impl Event {
    /// True when the step failed.
    pub fn is_failure(&self) -> bool {
        self.result == Outcome::Failure
    }

    /// Parse and validate one raw event (one NDJSON line without its newline).
    ///
    /// # Errors
    /// The first problem found: size, encoding, JSON syntax or types, unknown
    /// or missing fields, bad values, or a resident registration number.
    pub fn parse(bytes: &[u8], max_bytes: usize) -> Result<Event> {
        if bytes.len() > max_bytes {
            return Err(Error::TooLarge { len: bytes.len(), limit: max_bytes });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| Error::NotUtf8)?;
        if text.trim().is_empty() {
            return Err(Error::Empty);
        }
        let raw: RawEvent = serde_json::from_str(text).map_err(json_error)?;
        raw.validate()
    }
}

fn json_error(e: serde_json::Error) -> Error {
    let message = e.to_string();
    // serde_json appends " at line L column C"; we report the column ourselves.
    let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, _)) = rest.split_once('`') {
            return Error::UnknownField(mask_resident_numbers(name).into_owned());
        }
    }
    Error::Json { column: e.column(), message: mask_resident_numbers(message).into_owned() }
}

impl RawEvent<'_> {
    /// Check every value against the contract.
    ///
    /// # Errors
    /// See [`Event::parse`].
    pub fn validate(self) -> Result<Event> {
        // The resident-number check comes first, so that no later error can
        // quote a value that holds one.
        self.reject_resident_numbers()?;
        self.check_lengths()?;
        let event_id = self.event_id.ok_or(Error::MissingField("event_id"))?;
        if event_id.is_empty() || event_id.chars().count() > MAX_ID_CHARS {
            return Err(invalid("event_id", format!("must be 1 to {MAX_ID_CHARS} characters")));
        }
        let ts = self.ts.ok_or(Error::MissingField("ts"))?;
        let ts_ms = parse_rfc3339_ms(&ts)
            .ok_or_else(|| invalid("ts", format!("`{ts}` is not an RFC 3339 timestamp with offset")))?;
        let step = self.step.ok_or(Error::MissingField("step"))?;
        let result = self.result.ok_or(Error::MissingField("result"))?;
        let ip = match self.ip {
            Some(text) => Some(
                text.parse::<IpAddr>()
                    .map_err(|_| invalid("ip", format!("`{text}` is not an IPv4 or IPv6 address")))?,
            ),
            None => None,
        };
        let region = self.region;
        if let Some(r) = &region {
            if !is_iso_3166_2(r) {
                return Err(invalid("region", format!("`{r}` is not an ISO 3166-2 code like KR-11")));
            }
        }
        let mut attrs = BTreeMap::new();
        if let Some(map) = self.attrs {
            if map.len() > MAX_ATTRS {
                return Err(invalid("attrs", format!("{} entries, at most {MAX_ATTRS}", map.len())));
            }
            for (key, value) in map {
                let value = match value {
                    serde_json::Value::Bool(b) => AttrValue::Bool(b),
                    serde_json::Value::Number(n) => AttrValue::Number(n.as_f64().unwrap_or(f64::NAN)),
                    serde_json::Value::String(s) => AttrValue::Text(s),
                    _ => return Err(invalid(&format!("attrs.{key}"), "must be a string, number or bool".into())),
                };
                attrs.insert(key, value);
            }
        }
        let event = Event {
            event_id,
            ts_ms,
            step,
            result,
            failure_reason: self.failure_reason,
            session_id: self.session_id,
            customer_id: self.customer_id,
            id_doc_hash: self.id_doc_hash,
            ip,
            device_id: self.device_id,
            user_agent: self.user_agent,
            channel: self.channel,
            region,
            duration_ms: self.duration_ms,
            account_hash: self.account_hash,
            staff_id: self.staff_id,
            records: self.records,
            attrs,
        };
        Ok(event)
    }

    /// The opaque ids and keyed hashes, `event_id` first: the fields that are
    /// hex-ish tokens rather than text.
    fn opaque_ids(&self) -> [(&'static str, Option<&str>); 7] {
        [
            ("event_id", self.event_id.as_deref()),
            ("session_id", self.session_id.as_deref()),
            ("customer_id", self.customer_id.as_deref()),
            ("id_doc_hash", self.id_doc_hash.as_deref()),
            ("device_id", self.device_id.as_deref()),
            ("account_hash", self.account_hash.as_deref()),
            ("staff_id", self.staff_id.as_deref()),
        ]
    }

    fn reject_resident_numbers(&self) -> Result<()> {
        // Hex-aware boundaries for ids (see find_resident_number_in_id), strict ones for text.
        for (field, value) in self.opaque_ids() {
            if let Some(v) = value {
                check_text(field, v, find_resident_number_in_id)?;
            }
        }
        let texts: [(&str, Option<&str>); 5] = [
            ("ts", self.ts.as_deref()),
            ("failure_reason", self.failure_reason.as_deref()),
            ("ip", self.ip.as_deref()),
            ("user_agent", self.user_agent.as_deref()),
            ("region", self.region.as_deref()),
        ];
        for (field, value) in texts {
            if let Some(v) = value {
                check_text(field, v, find_resident_number)?;
            }
        }
        if let Some(map) = &self.attrs {
            for (key, value) in map {
                check_text("attrs", key, find_resident_number)?;
                if let serde_json::Value::String(s) = value {
                    check_text(&format!("attrs.{}", mask_resident_numbers(key)), s, find_resident_number)?;
                }
            }
        }
        Ok(())
    }
}

fn check_text(field: &str, value: &str, find: fn(&str) -> Option<(usize, usize)>) -> Result<()> {
    match find(value) {
        Some((start, end)) => Err(Error::ResidentNumber {
            field: field.to_owned(),
            masked: mask_resident_numbers(&value[start..end]).into_owned(),
        }),
        None => Ok(()),
    }
}

impl RawEvent<'_> {
    fn check_lengths(&self) -> Result<()> {
        // event_id is checked on its own, in characters, as the contract says.
        let fields = self.opaque_ids().into_iter().skip(1).chain([("failure_reason", self.failure_reason.as_deref())]);
        for (field, value) in fields {
            if value.is_some_and(|v| v.is_empty() || v.len() > MAX_ID_CHARS) {
                return Err(invalid(field, format!("must be 1 to {MAX_ID_CHARS} bytes")));
            }
        }
        if self.user_agent.as_ref().is_some_and(|ua| ua.len() > MAX_TEXT_CHARS) {
            return Err(invalid("user_agent", format!("longer than {MAX_TEXT_CHARS} bytes")));
        }
        for (key, value) in self.attrs.iter().flatten() {
            if key.is_empty() || key.len() > MAX_ID_CHARS {
                return Err(invalid("attrs", format!("keys must be 1 to {MAX_ID_CHARS} bytes")));
            }
            if value.as_str().is_some_and(|t| t.len() > MAX_TEXT_CHARS) {
                return Err(invalid(&format!("attrs.{key}"), format!("longer than {MAX_TEXT_CHARS} bytes")));
            }
        }
        Ok(())
    }
}

fn invalid(field: &str, problem: String) -> Error {
    Error::InvalidValue { field: field.to_owned(), problem: mask_resident_numbers(&problem).into_owned() }
}

fn is_iso_3166_2(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() >= 4
        && b.len() <= 6
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_uppercase()
        && b[2] == b'-'
        && b[3..].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Milliseconds since the Unix epoch for an RFC 3339 timestamp with an offset.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// RFC 3339 text (UTC, millisecond precision) for a millisecond timestamp.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = r#"{"event_id":"e1","ts":"2026-11-25T09:00:00+09:00","step":"otp","result":"failure","failure_reason":"otp_mismatch","customer_id":"c1","ip":"10.1.2.3","region":"KR-11","duration_ms":1200,"attrs":{"app_version":"5.2","retry":2,"rooted":false}}"#;

    fn parse(s: &str) -> Result<Event> {
        Event::parse(s.as_bytes(), DEFAULT_MAX_EVENT_BYTES)
    }

    #[test]
    fn accepts_a_full_event() {
        let e = parse(GOOD).unwrap();
        assert_eq!(e.ts_ms, parse_rfc3339_ms("2026-11-25T00:00:00Z").unwrap());
        assert_eq!(e.step, Step::Otp);
        assert!(e.is_failure());
        assert_eq!(e.attrs["retry"], AttrValue::Number(2.0));
    }

    #[test]
    fn names_the_unknown_field() {
        let err = parse(r#"{"event_id":"e1","ts":"2026-11-25T09:00:00+09:00","step":"otp","result":"success","colour":"red"}"#).unwrap_err();
        assert_eq!(err, Error::UnknownField("colour".into()));
    }

    #[test]
    fn names_the_missing_field() {
        let err = parse(r#"{"event_id":"e1","step":"otp","result":"success"}"#).unwrap_err();
        assert_eq!(err, Error::MissingField("ts"));
    }

    #[test]
    fn rejects_wrong_types_and_bad_values() {
        let e = parse(r#"{"event_id":"e1","ts":"2026-11-25T09:00:00+09:00","step":"otp","result":"success","duration_ms":-4}"#).unwrap_err();
        assert_eq!(e.reason(), "malformed_json");
        let e = parse(r#"{"event_id":"e1","ts":"2026-11-25 09:00","step":"otp","result":"success"}"#).unwrap_err();
        assert!(matches!(e, Error::InvalidValue { ref field, .. } if field == "ts"), "{e}");
        let e = parse(r#"{"event_id":"e1","ts":"2026-11-25T09:00:00Z","step":"teleport","result":"success"}"#).unwrap_err();
        assert!(e.to_string().contains("teleport"), "{e}");
        let e = parse(r#"{"event_id":"e1","ts":"2026-11-25T09:00:00Z","step":"otp","result":"success","ip":"999.1.1.1"}"#).unwrap_err();
        assert!(matches!(e, Error::InvalidValue { ref field, .. } if field == "ip"));
        let e = parse(r#"{"event_id":"e1","ts":"2026-11-25T09:00:00Z","step":"otp","result":"success","attrs":{"x":[1]}}"#).unwrap_err();
        assert!(matches!(e, Error::InvalidValue { ref field, .. } if field == "attrs.x"));
        assert_eq!(parse("   ").unwrap_err(), Error::Empty);
        assert_eq!(Event::parse(&[0xff, 0xfe], 100).unwrap_err(), Error::NotUtf8);
        assert_eq!(Event::parse(&[b' '; 101], 100).unwrap_err(), Error::TooLarge { len: 101, limit: 100 });
    }

    #[test]
    fn over_long_ids_and_text_are_named() {
        let long = "x".repeat(200);
        for (field, json) in [
            ("customer_id", format!(r#""customer_id":"{long}""#)),
            ("failure_reason", format!(r#""failure_reason":"{long}""#)),
            ("attrs.note", format!(r#""attrs":{{"note":"{}"}}"#, "y".repeat(600))),
            ("user_agent", format!(r#""user_agent":"{}""#, "z".repeat(600))),
        ] {
            let line = format!(r#"{{"event_id":"e1","ts":"2026-11-25T09:00:00Z","step":"otp","result":"success",{json}}}"#);
            let e = parse(&line).unwrap_err();
            assert!(matches!(&e, Error::InvalidValue { field: f, .. } if f == field), "{field}: {e}");
        }
        let e = parse(&format!(r#"{{"event_id":"{long}","ts":"2026-11-25T09:00:00Z","step":"otp","result":"success"}}"#)).unwrap_err();
        assert!(matches!(&e, Error::InvalidValue { field, .. } if field == "event_id"));
    }

    #[test]
    fn rejects_and_masks_a_resident_number_anywhere() {
        for line in [
            r#"{"event_id":"e1","ts":"2026-11-25T09:00:00Z","step":"otp","result":"success","customer_id":"900101-1234567"}"#,
            r#"{"event_id":"e1","ts":"2026-11-25T09:00:00Z","step":"otp","result":"success","attrs":{"note":"rrn 9001011234567"}}"#,
            r#"{"event_id":"e1","ts":"2026-11-25T09:00:00Z","step":"otp","result":"success","duration_ms":"900101-1234567"}"#,
            r#"{"event_id":"e1","ts":"900101-1234567","step":"otp","result":"success"}"#,
        ] {
            let err = parse(line).unwrap_err();
            let text = err.to_string();
            assert!(!text.contains("1234567"), "leaked: {text}");
            assert!(text.contains("900101-1******"), "not masked: {text}");
        }
    }

    proptest! {
        /// Whatever bytes arrive, parsing returns and never echoes a raw resident number.
        #[test]
        fn never_panics_or_leaks(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Err(e) = Event::parse(&bytes, 256) {
                prop_assert!(find_resident_number(&e.to_string()).is_none());
            }
        }

        #[test]
        fn structured_fuzz_never_leaks(id in "[0-9a-z-]{0,20}", cust in "[0-9-]{0,16}", dur in "[0-9a-z\"-]{1,16}") {
            let line = format!(r#"{{"event_id":"{id}","ts":"2026-11-25T09:00:00Z","step":"login","result":"success","customer_id":"{cust}","duration_ms":{dur}}}"#);
            match parse(&line) {
                Ok(e) => {
                    prop_assert!(find_resident_number_in_id(e.customer_id.as_deref().unwrap_or("")).is_none());
                    prop_assert!(find_resident_number_in_id(&e.event_id).is_none());
                }
                Err(e) => prop_assert!(find_resident_number(&e.to_string()).is_none()),
            }
        }

        #[test]
        fn timestamps_round_trip(ms in 0i64..4_000_000_000_000) {
            prop_assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
    }
}
