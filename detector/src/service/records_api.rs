//! The access records over HTTP: reads (each recorded), a data subject's own records, exports
//! behind a second person's approval, and the management report.
//!
//! Every handler here writes its record before it answers: a read that cannot be recorded is
//! not answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use haechi_records::{Actor, ExportRecord, Filter, Record, RecordBody, RecordKind, Records};
use serde::{Deserialize, Serialize};

use super::api::ApiError;
use super::auth::Principal;
use super::state::AppState;
use crate::recording::Recording;

fn recording(s: &AppState) -> Result<Arc<Recording>, ApiError> {
    s.audit.recording().cloned().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "access records need a data dir (the service runs --memory-only)"))
}

/// A read sees every event decided before it: what the background recorder holds is written first.
fn read_recorded(rec: &Recording, who: Actor, via: &str, filter: &Filter) -> Result<Vec<Record>, ApiError> {
    rec.flush().map_err(store_error)?;
    rec.records().read(crate::enforce::now_ms(), who, via, filter).map_err(store_error)
}

/// Run blocking store work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("records task failed: {e}")))?
}

fn store_error(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "the access records failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the access records could not be read or written: {e}"))
}

/// `?customer_id=&from=&to=&kind=&limit=`: times RFC 3339, `kind` comma-separated.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordsQuery {
    customer_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    kind: Option<String>,
    limit: Option<usize>,
}

fn parse_time(name: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.map(|t| haechi_features::parse_rfc3339_ms(t).ok_or_else(|| ApiError::bad_request(format!("{name}: not an RFC 3339 time: {t:?}")))).transpose()
}

impl RecordsQuery {
    fn filter(&self) -> Result<Filter, ApiError> {
        let kinds = match &self.kind {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|k| RecordKind::parse(k.trim()).ok_or_else(|| ApiError::bad_request(format!("kind: unknown record kind {k:?} (access, decision, alert, block, action, read, export, destruction)"))))
                .collect::<Result<_, _>>()?,
        };
        if let Some(c) = &self.customer_id {
            if haechi_features::find_resident_number(c).is_some() {
                return Err(ApiError::bad_request("customer_id must not be a resident registration number"));
            }
        }
        Ok(Filter {
            customer_id: self.customer_id.clone(),
            from_ms: parse_time("from", self.from.as_deref())?,
            to_ms: parse_time("to", self.to.as_deref())?,
            kinds,
            limit: self.limit.unwrap_or(1_000).clamp(1, 100_000),
        })
    }
}

/// `GET /v1/records`: an auditor's read, recorded with who, the filter and the count.
#[utoipa::path(get, path = "/v1/records", tag = "records", params(RecordsQuery), responses((status = 200, description = "Access records; the read is itself recorded.", body = [Object])))]
pub(crate) async fn get_records(State(s): State<Arc<AppState>>, axum::Extension(who): axum::Extension<Principal>, Query(q): Query<RecordsQuery>) -> Result<Json<Vec<Record>>, ApiError> {
    let filter = q.filter()?;
    let rec = recording(&s)?;
    blocking(move || read_recorded(&rec, Actor::from(&who), "GET /v1/records", &filter).map(Json)).await
}

/// What a data subject sees of one access to their data: no staff ids, no other customers, no
/// scores or rule names.
#[derive(Debug, Serialize)]
pub(crate) struct SubjectAccessView {
    time: String,
    step: String,
    method: String,
    result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
    /// `you` for the customer's own steps, `bank staff` for a staff member's view of the record.
    by: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    browser: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rrn_masked: Option<String>,
}

fn subject_view(r: &Record) -> Option<SubjectAccessView> {
    let RecordBody::Access(a) = &r.body else { return None };
    let staff = a.staff_id.is_some();
    Some(SubjectAccessView {
        time: haechi_features::format_rfc3339_ms(r.event_ms),
        step: a.step.clone(),
        method: a.method.clone(),
        result: a.result.clone(),
        failure_reason: a.failure_reason.clone(),
        by: if staff { "bank staff" } else { "you" },
        // A staff member's address and device are the bank's, not the subject's.
        channel: if staff { None } else { a.channel.clone() },
        region: if staff { None } else { a.region.clone() },
        ip: if staff { None } else { a.ip.clone() },
        os: if staff { None } else { a.os.clone() },
        browser: if staff { None } else { a.browser.clone() },
        rrn_masked: a.rrn_masked.clone(),
    })
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubjectQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /v1/subjects/{customer_id}/records`: the customer's own access records, masked; the
/// request is recorded as a read.
#[utoipa::path(get, path = "/v1/subjects/{customer_id}/records", tag = "records", params(("customer_id" = String, Path), SubjectQuery),
    responses((status = 200, description = "`{customer_id, records}`: the customer's own access records, masked.", body = Object)))]
pub(crate) async fn get_subject_records(
    State(s): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path(customer_id): Path<String>,
    Query(q): Query<SubjectQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if customer_id.is_empty() || haechi_features::find_resident_number(&customer_id).is_some() {
        return Err(ApiError::bad_request("customer_id must be the bank's customer id, never a resident registration number"));
    }
    let filter = Filter { customer_id: Some(customer_id.clone()), from_ms: parse_time("from", q.from.as_deref())?, to_ms: parse_time("to", q.to.as_deref())?, kinds: vec![RecordKind::Access], limit: 0 };
    let rec = recording(&s)?;
    let found = blocking(move || read_recorded(&rec, Actor::from(&who), "subject access", &filter)).await?;
    let views: Vec<SubjectAccessView> = found.iter().filter(|r| r.customer_id.as_deref() == Some(&customer_id)).filter_map(subject_view).collect();
    Ok(Json(serde_json::json!({ "customer_id": customer_id, "records": views })))
}

/// Where an export stands.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExportState {
    id: String,
    requested_by: String,
    filter: Filter,
    format: ExportFormat,
    /// `pending`, `deciding` (an admin's decision being recorded), `approved` or `refused`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    decided_by: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ExportFormat {
    #[default]
    Ndjson,
    Csv,
}

/// Exports by id. Rebuilt from the export records at start, so a pending request survives a
/// restart.
#[derive(Default)]
pub struct Exports(Mutex<HashMap<String, ExportState>>);

impl Exports {
    /// The exports the records tell of (any records given; the export steps are picked out).
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Exports {
        let mut map: HashMap<String, ExportState> = HashMap::new();
        for r in records {
            let RecordBody::Export(e) = &r.body else { continue };
            let e = e.clone();
            match e.step.as_str() {
                "requested" => {
                    let format = e.note.as_deref().and_then(|n| serde_json::from_value(serde_json::Value::String(n.to_owned())).ok()).unwrap_or_default();
                    let filter = serde_json::from_value(e.filter).unwrap_or_default();
                    map.insert(e.export_id.clone(), ExportState { id: e.export_id, requested_by: e.who.name, filter, format, status: "pending", decided_by: None });
                }
                "approved" | "refused" => {
                    if let Some(x) = map.get_mut(&e.export_id) {
                        x.status = if e.step == "approved" { "approved" } else { "refused" };
                        x.decided_by = Some(e.who.name);
                    }
                }
                _ => {}
            }
        }
        Exports(Mutex::new(map))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExportState>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn exports(s: &AppState) -> Result<&Exports, ApiError> {
    s.exports.as_ref().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "exports need the access records (a data dir)"))
}

fn export_record(id: &str, step: &str, who: &Principal, filter: &Filter, note: Option<String>) -> Record {
    let now = crate::enforce::now_ms();
    let body = ExportRecord { export_id: id.to_owned(), step: step.to_owned(), who: Actor::from(who), filter: serde_json::to_value(filter).unwrap_or_default(), note };
    Records::new_record(now, filter.customer_id.clone(), RecordBody::Export(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewExport {
    customer_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    format: ExportFormat,
}

/// `POST /v1/exports`: a pending request, recorded; nothing is exported yet.
#[utoipa::path(post, path = "/v1/exports", tag = "records", request_body(content = Object, description = "`{customer_id, from, to, kind, format: csv|ndjson}`"),
    responses((status = 201, description = "The pending export request.", body = Object)))]
pub(crate) async fn post_export(State(s): State<Arc<AppState>>, axum::Extension(who): axum::Extension<Principal>, body: axum::body::Bytes) -> Result<(StatusCode, Json<ExportState>), ApiError> {
    let req: NewExport = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("export: {e}")))?;
    let mut filter = RecordsQuery { customer_id: req.customer_id, from: req.from, to: req.to, kind: req.kind, limit: Some(100_000) }.filter()?;
    // What the approver approves is fixed now: an open-ended period would grow after approval.
    filter.to_ms.get_or_insert_with(crate::enforce::now_ms);
    let rec = recording(&s)?;
    exports(&s)?;
    let id = {
        use rand::Rng;
        format!("x{:016x}", rand::thread_rng().gen::<u64>())
    };
    let note = serde_json::to_value(req.format).ok().and_then(|v| v.as_str().map(str::to_owned));
    let record = export_record(&id, "requested", &who, &filter, note);
    blocking(move || rec.records().record(crate::enforce::now_ms(), record).map_err(store_error)).await?;
    let state = ExportState { id: id.clone(), requested_by: who.name.clone(), filter, format: req.format, status: "pending", decided_by: None };
    exports(&s)?.lock().insert(id, state.clone());
    Ok((StatusCode::CREATED, Json(state)))
}

async fn decide_export(s: Arc<AppState>, who: Principal, id: String, approve: bool) -> Result<Json<ExportState>, ApiError> {
    let rec = recording(&s)?;
    let current = exports(&s)?.lock().get(&id).cloned().ok_or_else(|| ApiError::not_found(format!("no export {id}")))?;
    if current.requested_by == who.name {
        // Recorded too: an attempt to approve one's own export is worth an auditor's eye.
        let record = export_record(&id, "self_approval_refused", &who, &current.filter, None);
        blocking(move || rec.records().record(crate::enforce::now_ms(), record).map_err(store_error)).await?;
        return Err(ApiError::new(StatusCode::FORBIDDEN, "an export is approved by a second person, not by the one who requested it"));
    }
    // Claimed under the lock: of two admins deciding at once, one decides and the other is told.
    {
        let mut all = exports(&s)?.lock();
        let x = all.get_mut(&id).ok_or_else(|| ApiError::not_found(format!("no export {id}")))?;
        if x.status != "pending" {
            return Err(ApiError::new(StatusCode::CONFLICT, format!("export {id} is already {}", x.status)));
        }
        x.status = "deciding";
    }
    let step = if approve { "approved" } else { "refused" };
    let record = export_record(&id, step, &who, &current.filter, None);
    let written = blocking(move || rec.records().record(crate::enforce::now_ms(), record).map_err(store_error)).await;
    let mut all = exports(&s)?.lock();
    let x = all.get_mut(&id).ok_or_else(|| ApiError::not_found(format!("no export {id}")))?;
    if let Err(e) = written {
        x.status = "pending";
        return Err(e);
    }
    x.status = step;
    x.decided_by = Some(who.name.clone());
    Ok(Json(x.clone()))
}

/// `POST /v1/exports/{id}/approve`: an admin other than the requester.
#[utoipa::path(post, path = "/v1/exports/{id}/approve", tag = "records", params(("id" = String, Path)), responses((status = 200, description = "Approved by a second admin.", body = Object)))]
pub(crate) async fn approve_export(State(s): State<Arc<AppState>>, axum::Extension(who): axum::Extension<Principal>, Path(id): Path<String>) -> Result<Json<ExportState>, ApiError> {
    decide_export(s, who, id, true).await
}

/// `POST /v1/exports/{id}/refuse`.
#[utoipa::path(post, path = "/v1/exports/{id}/refuse", tag = "records", params(("id" = String, Path)), responses((status = 200, description = "Refused.", body = Object)))]
pub(crate) async fn refuse_export(State(s): State<Arc<AppState>>, axum::Extension(who): axum::Extension<Principal>, Path(id): Path<String>) -> Result<Json<ExportState>, ApiError> {
    decide_export(s, who, id, false).await
}

/// `GET /v1/exports/{id}`: the file, once approved, to the one who asked for it; the download
/// and the read are recorded.
#[utoipa::path(get, path = "/v1/exports/{id}", tag = "records", params(("id" = String, Path)),
    responses((status = 200, description = "Approved: its records (CSV or NDJSON), for the requester; refused: its state.", content((Object = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 202, description = "Pending a second admin's decision: its state.", body = Object)))]
pub(crate) async fn get_export(State(s): State<Arc<AppState>>, axum::Extension(who): axum::Extension<Principal>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let rec = recording(&s)?;
    let x = exports(&s)?.lock().get(&id).cloned().ok_or_else(|| ApiError::not_found(format!("no export {id}")))?;
    if x.requested_by != who.name {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "only the requester fetches an approved export"));
    }
    match x.status {
        "approved" => {}
        "pending" | "deciding" => return Ok((StatusCode::ACCEPTED, Json(x)).into_response()),
        _ => return Err(ApiError::new(StatusCode::CONFLICT, format!("export {id} was {}", x.status))),
    }
    let filter = x.filter.clone();
    let downloaded = export_record(&id, "downloaded", &who, &filter, None);
    let via = format!("export {id}");
    let found = blocking(move || {
        rec.records().record(crate::enforce::now_ms(), downloaded).map_err(store_error)?;
        read_recorded(&rec, Actor::from(&who), &via, &filter)
    })
    .await?;
    let (content_type, body) = match x.format {
        ExportFormat::Ndjson => {
            let mut out = Vec::new();
            for r in &found {
                serde_json::to_writer(&mut out, r).map_err(store_error)?;
                out.push(b'\n');
            }
            ("application/x-ndjson", out)
        }
        ExportFormat::Csv => ("text/csv", records_csv(&found).map_err(store_error)?),
    };
    Ok(([(header::CONTENT_TYPE, content_type), (header::CONTENT_DISPOSITION, "attachment")], body).into_response())
}

/// One row per record: the common columns, then the body as JSON.
fn records_csv(records: &[Record]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["id", "seq", "kind", "event_time", "recorded_time", "node", "customer_id", "body"])?;
    for r in records {
        let body = serde_json::to_value(&r.body).map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("kind");
            }
            v.to_string()
        });
        w.write_record([
            r.id.as_str(),
            &r.seq.to_string(),
            r.kind().as_str(),
            &haechi_features::format_rfc3339_ms(r.event_ms),
            &haechi_features::format_rfc3339_ms(r.recorded_ms),
            &r.node,
            r.customer_id.as_deref().unwrap_or(""),
            &body.unwrap_or_default(),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// `GET /v1/audit` with a data dir: the staff actions, a recorded read.
pub(crate) async fn audit_actions(s: &Arc<AppState>, who: Principal, limit: usize) -> Result<Vec<super::audit::AuditRecord>, ApiError> {
    let rec = recording(s)?;
    let filter = Filter { kinds: vec![RecordKind::Action], ..Filter::default() };
    let found = blocking(move || read_recorded(&rec, Actor::from(&who), "GET /v1/audit", &filter)).await?;
    let skip = found.len().saturating_sub(limit);
    Ok(found
        .into_iter()
        .skip(skip)
        .filter_map(|r| match r.body {
            RecordBody::Action(a) => Some(super::audit::AuditRecord {
                at: haechi_features::format_rfc3339_ms(r.recorded_ms),
                who: a.who,
                action: a.action,
                scope: a.scope,
                key: a.key,
                before: a.before,
                after: a.after,
            }),
            _ => None,
        })
        .collect())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    from: String,
    to: String,
    format: Option<String>,
}

/// `GET /v1/reports/summary?from=&to=[&format=json|csv|html]`: the management report of the
/// period beside the one before it; a recorded read.
#[utoipa::path(get, path = "/v1/reports/summary", tag = "records", params(ReportQuery),
    responses((status = 200, description = "The management report of the period beside the one before it.", content((Object = "application/json"), (String = "text/csv"), (String = "text/html")))))]
pub(crate) async fn get_report(State(s): State<Arc<AppState>>, axum::Extension(who): axum::Extension<Principal>, Query(q): Query<ReportQuery>) -> Result<Response, ApiError> {
    let from = parse_time("from", Some(&q.from))?.unwrap_or_default();
    let to = parse_time("to", Some(&q.to))?.unwrap_or_default();
    if from >= to {
        return Err(ApiError::bad_request("the period is empty: `from` must be before `to`"));
    }
    let format = q.format.unwrap_or_else(|| "json".into());
    if !["json", "csv", "html"].contains(&format.as_str()) {
        return Err(ApiError::bad_request(format!("format: {format:?} is not json, csv or html")));
    }
    let rec = recording(&s)?;
    let report = blocking(move || {
        rec.flush().map_err(store_error)?;
        rec.records().report(crate::enforce::now_ms(), Actor::from(&who), "GET /v1/reports/summary", from, to).map_err(store_error)
    })
    .await?;
    let (content_type, body) = match format.as_str() {
        "csv" => ("text/csv", report.to_csv()),
        "html" => ("text/html; charset=utf-8", report.to_html()),
        _ => ("application/json", report.to_json()),
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body.map_err(store_error)?).into_response())
}
