//! What the rules did and would do: hits per rule over time (enforced and
//! shadow) for the console's statistics page, and the preview of a rule
//! change, backtested beside the live pack on the traffic the ingest log holds.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use haechi_features::{Finding, Mode};
use serde::{Deserialize, Serialize};

use super::api::ApiError;
use super::state::AppState;

/// Buckets of one minute of event time, a day of them per rule.
const BUCKET_MS: i64 = 60_000;
const BUCKETS_KEPT: usize = 24 * 60;

/// A series of findings: detector, rule id, and whether it ran in shadow.
type SeriesKey = (Arc<str>, Arc<str>, bool);

/// Findings by rule, shadow or enforced, per minute of event time.
#[derive(Default)]
pub struct RuleHits(Mutex<HashMap<SeriesKey, BTreeMap<i64, u64>>>);

impl RuleHits {
    /// Count an event's findings.
    pub fn count(&self, ts_ms: i64, findings: &[Finding]) {
        if findings.is_empty() {
            return;
        }
        let bucket = ts_ms.div_euclid(BUCKET_MS) * BUCKET_MS;
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for f in findings {
            let series = map.entry((f.detector.clone(), f.id.clone(), f.mode == Mode::Shadow)).or_default();
            *series.entry(bucket).or_default() += 1;
            if series.len() > BUCKETS_KEPT {
                series.pop_first();
            }
        }
    }

    fn snapshot(&self) -> Vec<(SeriesKey, Vec<(i64, u64)>)> {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter().map(|(k, v)| (k.clone(), v.iter().map(|(a, b)| (*a, *b)).collect())).collect()
    }
}

/// One rule's statistics.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleStat {
    pub detector: String,
    pub rule: String,
    /// `enforce`, or `shadow`: what it would have done, never enforced.
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub hits: u64,
    /// `[minute start (ms since the epoch), findings]`, oldest first.
    #[schema(value_type = Vec<Vec<i64>>)]
    pub series: Vec<(i64, u64)>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RuleStats {
    /// The live pack's version.
    pub version: String,
    pub bucket_ms: i64,
    pub rules: Vec<RuleStat>,
}

fn action_text(a: haechi_features::Action) -> String {
    match a {
        haechi_features::Action::Allow => "allow".into(),
        haechi_features::Action::Alert => "alert".into(),
        haechi_features::Action::Challenge => "challenge".into(),
        haechi_features::Action::Block { ttl_s } => format!("block {ttl_s}s"),
    }
}

/// `GET /v1/rules/stats`: every loaded rule (with no hits too) and every detector that fired since start.
#[utoipa::path(get, path = "/v1/rules/stats", tag = "rules", responses((status = 200, description = "Findings per rule and minute of event time, enforced and shadow.", body = RuleStats)))]
pub async fn get_stats(State(s): State<Arc<AppState>>) -> Json<RuleStats> {
    let pack = s.pipeline.rules().current();
    let mut seen = std::collections::HashSet::new();
    let mut rules: Vec<RuleStat> = s
        .rule_hits
        .snapshot()
        .into_iter()
        .map(|((detector, rule, shadow), series)| {
            seen.insert((detector.clone(), rule.clone()));
            let compiled = (&*detector == "rules").then(|| pack.rules().iter().find(|r| r.id == rule)).flatten();
            RuleStat {
                detector: detector.to_string(),
                rule: rule.to_string(),
                mode: if shadow { "shadow" } else { "enforce" },
                action: compiled.map(|r| action_text(r.action)),
                description: compiled.map(|r| r.description.clone()),
                hits: series.iter().map(|(_, n)| n).sum(),
                series,
            }
        })
        .collect();
    for r in pack.rules() {
        if !seen.contains(&(Arc::from("rules"), r.id.clone())) {
            rules.push(RuleStat {
                detector: "rules".into(),
                rule: r.id.to_string(),
                mode: if r.mode == Mode::Shadow { "shadow" } else { "enforce" },
                action: Some(action_text(r.action)),
                description: Some(r.description.clone()),
                hits: 0,
                series: Vec::new(),
            });
        }
    }
    rules.sort_by(|a, b| b.hits.cmp(&a.hits).then_with(|| a.rule.cmp(&b.rule)));
    Json(RuleStats { version: pack.version().to_string(), bucket_ms: BUCKET_MS, rules })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// How many of the newest logged events to replay (default 50,000, at most 200,000).
    pub events: Option<usize>,
}

/// A rule file to preview is an analyst's file, not a bulk upload.
const MAX_PREVIEW_BYTES: usize = 1 << 20;

/// One preview at a time: each replays up to 200,000 events through two whole pipelines.
static PREVIEWS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// `POST /v1/rules/preview`: the body is a rule file (YAML); it is backtested
/// with the live configuration beside the live pack over the newest events
/// of the ingest log. Nothing is changed.
#[utoipa::path(post, path = "/v1/rules/preview", tag = "rules", params(PreviewQuery),
    request_body(content = String, content_type = "text/plain", description = "A rule file (YAML), at most 1 MiB."),
    responses((status = 200, description = "The candidate backtested beside the live pack over the newest logged events.", body = Object), (status = 409, description = "No data dir: nothing to replay.", body = super::api::ErrorBody)))]
pub async fn post_preview(State(s): State<Arc<AppState>>, Query(q): Query<PreviewQuery>, body: Result<Bytes, BytesRejection>) -> Result<Json<crate::backtest::BacktestReport>, ApiError> {
    let body = body?;
    if body.len() > MAX_PREVIEW_BYTES {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("preview: a rule file is at most {MAX_PREVIEW_BYTES} bytes")));
    }
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("preview: the rule file is not UTF-8"))?.to_owned();
    if s.data.is_none() {
        return Err(ApiError::new(StatusCode::CONFLICT, "preview replays the ingest log: run with a data dir"));
    }
    let Ok(permit) = PREVIEWS.try_acquire() else {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "preview: another preview is running; try again when it is done"));
    };
    let limit = q.events.unwrap_or(50_000).clamp(1, 200_000);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        preview(&s, &text, limit)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("preview failed: {e}")))?
    .map(Json)
}

/// The ingest log's events from an offset, one per line, read as the backtest asks for them.
struct LogLines {
    reader: haechi_storage::LogReader,
    pending: Vec<u8>,
    at: usize,
}

impl std::io::Read for LogLines {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.pending.len() {
            match self.reader.next() {
                None => return Ok(0),
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                Some(Ok((_, record))) => {
                    // A log record is the wall clock it was decided at (8 bytes), then the event as received.
                    self.pending.clear();
                    self.pending.extend_from_slice(record.get(8..).unwrap_or_default());
                    self.pending.push(b'\n');
                    self.at = 0;
                }
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn preview(s: &AppState, text: &str, limit: usize) -> Result<crate::backtest::BacktestReport, ApiError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("preview: {what}: {e}"));
    // Compiled first, so that a broken file gets its problems back at once (as a 400: they are the file's).
    haechi_rules::RuleSet::from_text("preview.yaml", text, s.pipeline.store().catalog()).map_err(|e| ApiError::bad_request(format!("preview: {e}")))?;
    let log = s.data.as_ref().ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "no data dir"))?.log();
    let from = log.next_offset().saturating_sub(limit as u64).max(log.first_offset());
    let reader = log.read_from(from).map_err(|e| fail("reading the ingest log", &e))?;
    let mut events = std::io::BufReader::new(LogLines { reader, pending: Vec::new(), at: 0 });
    let dir = tempfile::tempdir().map_err(|e| fail("a scratch dir", &e))?;
    let write = |name: &str, text: &str| -> Result<std::path::PathBuf, ApiError> {
        let path = dir.path().join(name);
        std::fs::File::create(&path).and_then(|mut f| f.write_all(text.as_bytes())).map_err(|e| fail("a scratch file", &e))?;
        Ok(path)
    };
    let candidate = write("candidate.yaml", text)?;
    let live = match s.pipeline.rules().source() {
        Some(p) => p.to_path_buf(),
        None => write("live.yaml", haechi_rules::DEFAULT_PACK)?,
    };
    let mut config = s.pipeline.config().clone();
    config.rules.path = Some(candidate);
    config.pipeline.live = false;
    config.pipeline.enforcement_clock = crate::enforce::EnforcementClock::Event;
    config.blocks.state_file = None;
    let labels = s.floor_labels();
    // The candidate compiled above: what fails now is not the file's fault.
    crate::backtest::backtest_with_floor(&config, Some(&live), &mut events, None, Some(&labels)).map_err(|e| fail("backtest", &e))
}
