//! The HTTP API: one router, JSON errors, no raw resident number ever echoed.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use haechi_features::{lookup_hash, mask_resident_numbers, EntityKind, Event};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::enforce::Block;
use super::audit::{Actor, AuditRecord};
use super::auth::{access_for, Denied, Principal};
use super::feed::FeedAlert;
use super::{console, records_api, rules_api, suppress_api};
use super::state::{AppState, LiveDecision};

/// What every error answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the problem; never a raw resident registration number.
    pub error: String,
}

/// An API error: a status and a message, sent as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub(crate) fn new(status: StatusCode, m: impl Into<String>) -> ApiError {
        ApiError(status, m.into())
    }
    pub(crate) fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, m.into())
    }
    pub(crate) fn not_found(m: impl Into<String>) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, m.into())
    }
    pub(crate) fn timeout() -> ApiError {
        ApiError(StatusCode::REQUEST_TIMEOUT, "request took too long".into())
    }
    pub(crate) fn overloaded() -> ApiError {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "overloaded: too many requests in flight".into())
    }
    fn internal(m: impl Into<String>) -> ApiError {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, m.into())
    }
    /// The ingest log refused the write: nothing was accepted, retry later.
    fn log_unavailable(e: crate::error::DetectorError) -> ApiError {
        tracing::error!(error = %e, "appending to the ingest log failed; events refused");
        ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("the ingest log cannot be written, nothing was accepted; retry: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Whatever produced the message, it leaves masked.
        let message = mask_resident_numbers(&self.1).into_owned();
        (self.0, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        let text = if status == StatusCode::PAYLOAD_TOO_LARGE { "request body over the configured limit".to_owned() } else { r.body_text() };
        ApiError(status, text)
    }
}

/// Build the router over shared state.
pub fn router(state: Arc<AppState>, shutdown: CancellationToken) -> Router {
    let limit = state.server.max_body_bytes;
    let v1 = Router::new()
        .route("/v1/me", get(console::me))
        .route("/v1/events", post(post_events))
        .route("/v1/check", post(post_check))
        .route("/v1/alerts", get(get_alerts))
        .route("/v1/alerts/stream", get(get_alert_stream))
        .route("/v1/alerts/{id}/triage", post(post_triage))
        .route("/v1/labels", get(get_labels))
        .route("/v1/rules/stats", get(rules_api::get_stats))
        .route("/v1/rules/preview", post(rules_api::post_preview))
        .route("/v1/entities/{kind}/{key}/events", get(get_entity_events))
        .route("/v1/blocks", get(get_blocks).post(post_block))
        .route("/v1/blocks/{scope}/{key}", delete(delete_block))
        .route("/v1/suppressions", get(suppress_api::get_suppressions).post(suppress_api::post_suppression))
        .route("/v1/suppressions/{id}", delete(suppress_api::delete_suppression))
        .route("/v1/entities/{kind}/{key}", get(get_entity))
        .route("/v1/reload", post(post_reload))
        .route("/v1/audit", get(get_audit))
        .route("/v1/records", get(records_api::get_records))
        .route("/v1/subjects/{customer_id}/records", get(records_api::get_subject_records))
        .route("/v1/exports", post(records_api::post_export))
        .route("/v1/exports/{id}", get(records_api::get_export))
        .route("/v1/exports/{id}/approve", post(records_api::approve_export))
        .route("/v1/exports/{id}/refuse", post(records_api::refuse_export))
        .route("/v1/reports/summary", get(records_api::get_report))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .merge(v1)
        .route("/console", get(console::index))
        .route("/console/", get(console::index))
        .route("/console/{file}", get(console::file))
        .route("/openapi.json", get(super::openapi::get_spec))
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(get_health))
        .route("/readyz", get(get_ready))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(middleware::from_fn_with_state(state.clone(), time_requests))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::Extension(shutdown))
        .with_state(state)
}

async fn time_requests(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let res = next.run(req).await;
    s.metrics.request_seconds.with_label_values(&[&route]).observe(started.elapsed().as_secs_f64());
    json_rejection(res).await
}

/// axum's own rejections (a query string or path that does not parse, a
/// wrong content type) answer in plain text; every error of this API is
/// `{"error": ...}`, so they are rewritten into one.
async fn json_rejection(res: Response) -> Response {
    let plain = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/plain"));
    if !res.status().is_client_error() || !plain {
        return res;
    }
    let (parts, body) = res.into_parts();
    let status = parts.status;
    let mut json = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(text) => ApiError(status, String::from_utf8_lossy(&text).into_owned()).into_response(),
        Err(_) => ApiError(status, status.canonical_reason().unwrap_or("bad request").to_owned()).into_response(),
    };
    // The rejection's other headers (Allow, Retry-After, ...) still hold.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

/// Authenticate the bearer token and check its role against the route;
/// the principal goes into the request for handlers that record who acted.
async fn authorize(State(s): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let access = access_for(req.method(), &route);
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match s.principals.authorize(header, access) {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(Denied::Unauthenticated) => {
            let mut res = ApiError(StatusCode::UNAUTHORIZED, "missing or unknown API token".into()).into_response();
            res.headers_mut().insert(header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
            res
        }
        Err(Denied::Forbidden) => ApiError(StatusCode::FORBIDDEN, format!("this token's role may not {} {route}", req.method())).into_response(),
    }
}

/// Append an audit record off the async runtime (the append fsyncs).
pub(crate) async fn audit(s: &Arc<AppState>, record: AuditRecord) -> Result<(), ApiError> {
    let s = s.clone();
    let r = tokio::task::spawn_blocking(move || s.audit.append(record)).await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
    r.map_err(|e| {
        tracing::error!(error = %e, "writing the audit log failed");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("the action was applied but the audit log could not be written: {e}"))
    })
}

#[derive(Serialize, utoipa::ToSchema)]
struct Rejected {
    line: usize,
    error: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct EventsResponse {
    accepted: usize,
    rejected: Vec<Rejected>,
    /// One per accepted line: `{event_id, decision, score, reasons, blocked_by}`.
    #[schema(value_type = Vec<Object>)]
    decisions: Vec<LiveDecision>,
}

/// Parsing and deciding a body of up to `max_body_bytes` is CPU work of
/// milliseconds to seconds: it runs on the blocking pool, so the runtime's
/// threads stay free to accept and answer other requests.
#[utoipa::path(post, path = "/v1/events", tag = "ingest",
    request_body(description = "One event (the contract of features/src/event.rs) per line: NDJSON.", content((String = "application/x-ndjson"), (String = "text/plain"))),
    responses((status = 200, description = "Each line accepted and decided, or rejected with its reason.", body = EventsResponse)))]
async fn post_events(State(s): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Json<EventsResponse>, ApiError> {
    let body = body?;
    let out = tokio::task::spawn_blocking(move || decide_batch(&s, &body)).await.map_err(|e| ApiError::internal(format!("batch failed: {e}")))??;
    Ok(Json(out))
}

fn decide_batch(s: &AppState, body: &[u8]) -> Result<EventsResponse, ApiError> {
    let mut scratch = s.pipeline.scratch();
    let mut out = EventsResponse { accepted: 0, rejected: Vec::new(), decisions: Vec::new() };
    // Parse every line first, so that the valid ones go to the ingest log in one append.
    let mut valid: Vec<(&[u8], Event)> = Vec::new();
    let mut lines: Vec<usize> = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let t = Instant::now();
        let parsed = s.pipeline.parse(line);
        s.metrics.stage_seconds.with_label_values(&["parse"]).observe(t.elapsed().as_secs_f64());
        match parsed {
            Ok(e) => {
                valid.push((line, e));
                lines.push(i + 1);
            }
            Err(e) => {
                s.metrics.rejected.with_label_values(&[e.reason()]).inc();
                out.rejected.push(Rejected { line: i + 1, error: e.to_string() });
            }
        }
    }
    s.metrics.batch_size.observe((valid.len() + out.rejected.len()) as f64);
    s.accept(&valid, &mut scratch, |i, result| match result {
        Ok(d) => {
            out.accepted += 1;
            out.decisions.push(d);
        }
        Err(e) => out.rejected.push(Rejected { line: lines[i], error: e.to_string() }),
    })
    .map_err(ApiError::log_unavailable)?;
    out.rejected.sort_by_key(|r| r.line);
    Ok(out)
}

#[utoipa::path(post, path = "/v1/check", tag = "ingest",
    request_body(content = Object, description = "One event (the contract of features/src/event.rs)."),
    responses((status = 200, description = "The decision: allow, challenge or block, with reasons.", body = Object), (status = 409, description = "The event id was already decided.", body = ErrorBody)))]
async fn post_check(State(s): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Json<LiveDecision>, ApiError> {
    let body = body?;
    // When the append would wait, for the disk (fsync = "always", where
    // appends waiting together share one fdatasync) or for a snapshot's copy
    // of the state: on the blocking pool, so that the runtime's threads go
    // on serving meanwhile (health checks included). Otherwise inline: the
    // hop costs more than the append.
    if s.data.as_ref().is_some_and(|d| d.appends_may_wait()) {
        return tokio::task::spawn_blocking(move || check(&s, &body)).await.map_err(|e| ApiError::internal(format!("check failed: {e}")))?.map(Json);
    }
    check(&s, &body).map(Json)
}

fn check(s: &AppState, body: &[u8]) -> Result<LiveDecision, ApiError> {
    let t = Instant::now();
    let event = s.pipeline.parse(body.trim_ascii()).map_err(|e| {
        s.metrics.rejected.with_label_values(&[e.reason()]).inc();
        ApiError::bad_request(e.to_string())
    })?;
    s.metrics.stage_seconds.with_label_values(&["parse"]).observe(t.elapsed().as_secs_f64());
    let mut scratch = s.pipeline.scratch();
    let mut outcome = None;
    s.accept(&[(body.trim_ascii(), event)], &mut scratch, |_, r| outcome = Some(r)).map_err(ApiError::log_unavailable)?;
    let d = outcome.ok_or_else(|| ApiError::internal("no decision"))?.map_err(|e| {
        let status = if matches!(e, haechi_features::Error::Duplicate) { StatusCode::CONFLICT } else { StatusCode::BAD_REQUEST };
        ApiError(status, e.to_string())
    })?;
    Ok(d)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AlertQuery {
    since: Option<u64>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, description = "Recent alerts, oldest first, with evidence and the analysts' judgement.", body = [Object])))]
async fn get_alerts(State(s): State<Arc<AppState>>, Query(q): Query<AlertQuery>) -> Json<Vec<serde_json::Value>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let alerts = match q.since {
        Some(since) => s.feed.since(since, limit),
        None => s.feed.recent(limit),
    };
    Json(
        alerts
            .iter()
            .map(|a| {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                if let Some(t) = s.triage.get(&a.alert.id) {
                    v["triage"] = serde_json::to_value(t).unwrap_or_default();
                }
                v
            })
            .collect(),
    )
}

/// `POST /v1/alerts/{id}/triage`: acknowledge, resolve, or label an alert true or false
/// positive, with a note; recorded as the token's principal's action.
#[utoipa::path(post, path = "/v1/alerts/{id}/triage", tag = "alerts", params(("id" = String, Path, description = "The alert id.")),
    request_body = super::triage::TriageChange,
    responses((status = 200, description = "The judgement now.", body = super::triage::Triage)))]
async fn post_triage(
    State(s): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<super::triage::Triage>, ApiError> {
    let body = body?;
    let change: super::triage::TriageChange = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("triage: {e}")))?;
    if change.state.is_none() && change.label.is_none() && change.note.is_none() {
        return Err(ApiError::bad_request("triage: give state (open, acknowledged, resolved), label (true_positive, false_positive) or note"));
    }
    if let Some(note) = &change.note {
        if note.len() > 2_000 {
            return Err(ApiError::bad_request("triage: a note is at most 2,000 bytes"));
        }
        if haechi_features::find_resident_number(note).is_some() {
            return Err(ApiError::bad_request("triage: a note must not carry a resident registration number"));
        }
    }
    if s.feed.get(&id).is_none() {
        return Err(ApiError::not_found(format!("no alert {id} among the recent alerts")));
    }
    let before = s.triage.get(&id);
    let after = super::triage::Triage::apply(before.as_ref(), &change, &who.name, haechi_features::format_rfc3339_ms(crate::enforce::now_ms()));
    let (b, a) = (serde_json::to_value(&before).unwrap_or_default(), serde_json::to_value(&after).unwrap_or_default());
    audit(&s, AuditRecord::now(Actor::from(&who), "alert_triage", Some("alert"), Some(&id), b, a)).await?;
    s.triage.set(&id, after.clone());
    Ok(Json(after))
}

/// `GET /v1/labels`: every alert an analyst labelled, the ground truth for
/// `haechi rules backtest --floor-labels` and `haechi train --floor-labels`.
#[utoipa::path(get, path = "/v1/labels", tag = "alerts",
    responses((status = 200, description = "Every alert an analyst labelled.", body = [crate::backtest::FloorLabel])))]
async fn get_labels(State(s): State<Arc<AppState>>) -> Json<Vec<crate::backtest::FloorLabel>> {
    Json(s.floor_labels())
}

fn sse(a: &FeedAlert) -> SseEvent {
    SseEvent::default().id(a.seq.to_string()).data(serde_json::to_string(a).unwrap_or_default())
}

#[utoipa::path(get, path = "/v1/alerts/stream", tag = "alerts", params(("Last-Event-ID" = Option<u64>, Header, description = "Resume after this alert's seq.")),
    responses((status = 200, description = "Server-Sent Events: `id` is the alert's seq, `data` the alert.", content_type = "text/event-stream", body = String)))]
async fn get_alert_stream(
    State(s): State<Arc<AppState>>,
    axum::Extension(shutdown): axum::Extension<CancellationToken>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    // Each client holds a broadcast receiver and, when it lags, copies of the
    // ring: a bounded number of them.
    let Some(subscription) = s.subscribe() else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("alert stream full: {} clients connected (server.max_alert_subscribers); poll GET /v1/alerts?since= instead", s.server.max_alert_subscribers),
        ));
    };
    // Subscribe before reading the backlog, so nothing falls between the two.
    let rx = s.feed.subscribe();
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let backlog = resume.map(|id| s.feed.since(id, usize::MAX)).unwrap_or_default();
    let last = backlog.last().map_or(resume.unwrap_or(0), |a| a.seq);
    let head = stream::iter(backlog.into_iter().map(|a| Ok(sse(&a))));
    // The subscription lives in the stream's state: dropped with the stream
    // when the client goes away.
    let live = stream::unfold((rx, last, s.clone(), subscription), |(mut rx, mut last, s, sub)| async move {
        loop {
            match rx.recv().await {
                Ok(a) if a.seq > last => {
                    last = a.seq;
                    return Some((vec![Ok(sse(&a))], (rx, last, s, sub)));
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Behind: catch up from the ring instead of losing alerts.
                    s.metrics.feed_lagged.inc();
                    let missed = s.feed.since(last, usize::MAX);
                    last = missed.last().map_or(last, |a| a.seq);
                    return Some((missed.iter().map(|a| Ok(sse(a))).collect(), (rx, last, s, sub)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .flat_map(stream::iter);
    let stream = head.chain(live).take_until(async move { shutdown.cancelled().await });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BlockView {
    #[schema(value_type = String)]
    scope: EntityKind,
    key: String,
    reason: String,
    set_by: String,
    set_at: String,
    expires_at: String,
    ttl_s: i64,
    offense: u32,
}

impl From<&Block> for BlockView {
    fn from(b: &Block) -> Self {
        BlockView {
            scope: b.scope,
            key: b.key.clone(),
            reason: b.reason.clone(),
            set_by: b.set_by.clone(),
            set_at: haechi_features::format_rfc3339_ms(b.set_at_ms),
            expires_at: haechi_features::format_rfc3339_ms(b.expires_at_ms),
            ttl_s: ((b.expires_at_ms - crate::enforce::now_ms()) / 1000).max(0),
            offense: b.offense,
        }
    }
}

#[utoipa::path(get, path = "/v1/blocks", tag = "blocks", responses((status = 200, description = "Blocks in force.", body = [BlockView])))]
async fn get_blocks(State(s): State<Arc<AppState>>) -> Json<Vec<BlockView>> {
    Json(s.blocks().list().iter().map(BlockView::from).collect())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewBlock {
    scope: String,
    key: String,
    ttl_s: u64,
    reason: String,
    /// Refused: who set a block is the token's principal, never the body.
    #[serde(default)]
    #[schema(ignore)]
    by: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    #[schema(ignore)]
    set_by: Option<serde::de::IgnoredAny>,
}

pub(crate) fn scope_and_hash(s: &AppState, scope: &str, key: &str) -> Result<(EntityKind, u64), ApiError> {
    let kind = EntityKind::parse(scope).ok_or_else(|| ApiError::bad_request(format!("unknown scope `{scope}`; scopes: ip, subnet, device, customer, id_doc, account, staff, session")))?;
    let seed = s.pipeline.store().windows().hash_key;
    let hash = lookup_hash(seed, kind, key).ok_or_else(|| ApiError::bad_request(format!("`{key}` is not a valid {scope} key")))?;
    Ok((kind, hash))
}

#[utoipa::path(post, path = "/v1/blocks", tag = "blocks", request_body = NewBlock,
    responses((status = 201, description = "The block set (the analyst is the token's principal).", body = BlockView)))]
async fn post_block(
    State(s): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<BlockView>), ApiError> {
    let body = body?;
    let nb: NewBlock = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("block: {e}")))?;
    if nb.by.is_some() || nb.set_by.is_some() {
        return Err(ApiError::bad_request("block: the analyst is the principal of the API token; remove `by`/`set_by` from the body"));
    }
    if nb.ttl_s == 0 || nb.ttl_s > 366 * 86_400 {
        return Err(ApiError::bad_request("ttl_s must be 1 to 31622400"));
    }
    if haechi_features::find_resident_number(&nb.key).is_some() || haechi_features::find_resident_number(&nb.reason).is_some() {
        return Err(ApiError::bad_request("a block must not carry a resident registration number"));
    }
    let (kind, hash) = scope_and_hash(&s, &nb.scope, &nb.key)?;
    let by = format!("analyst:{}", who.name);
    let key = nb.key.clone();
    let (b, previous) = s.blocks().set_manual_replacing(kind, hash, nb.key, Duration::from_secs(nb.ttl_s), nb.reason, by);
    s.metrics.blocks_set.with_label_values(&[kind.as_str(), "analyst"]).inc();
    let view = BlockView::from(&b);
    let before = serde_json::to_value(previous.as_ref().map(BlockView::from)).unwrap_or_default();
    let after = serde_json::to_value(&view).unwrap_or_default();
    audit(&s, AuditRecord::now(Actor::from(&who), "block_set", Some(kind.as_str()), Some(&key), before, after)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(delete, path = "/v1/blocks/{scope}/{key}", tag = "blocks",
    params(("scope" = String, Path, description = "ip, subnet, device, customer, id_doc, account, staff or session."), ("key" = String, Path)),
    responses((status = 204, description = "Lifted.")))]
async fn delete_block(
    State(s): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((scope, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (kind, hash) = scope_and_hash(&s, &scope, &key)?;
    match s.blocks().take(kind, hash) {
        Some(b) => {
            let before = serde_json::to_value(BlockView::from(&b)).unwrap_or_default();
            audit(&s, AuditRecord::now(Actor::from(&who), "block_lifted", Some(kind.as_str()), Some(&key), before, serde_json::Value::Null)).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::not_found(format!("no block on {scope} {key}"))),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "records", params(AuditQuery),
    responses((status = 200, description = "The latest staff actions, oldest first.", body = [Object])))]
async fn get_audit(State(s): State<Arc<AppState>>, axum::Extension(who): axum::Extension<Principal>, Query(q): Query<AuditQuery>) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    if s.audit.recording().is_some() {
        return records_api::audit_actions(&s, who, limit).await.map(Json);
    }
    Ok(Json(s.audit.recent(limit)))
}

#[utoipa::path(get, path = "/v1/entities/{kind}/{key}", tag = "entities", params(("kind" = String, Path), ("key" = String, Path)),
    responses((status = 200, description = "The entity's features now, and its block.", body = Object)))]
async fn get_entity(State(s): State<Arc<AppState>>, Path((kind, key)): Path<(String, String)>) -> Result<Json<serde_json::Value>, ApiError> {
    let k = EntityKind::parse(&kind).ok_or_else(|| ApiError::bad_request(format!("unknown kind `{kind}`")))?;
    let store = s.pipeline.store();
    let features = store.entity_features(k, &key);
    // While the stream's session ids are a step's each, sessions are keyed
    // by the device's run of events and no state is kept under a reported
    // id; a block set on one still applies, and the analyst is told why the
    // features are missing rather than that the session does not exist.
    let untrusted = k == EntityKind::Session && !store.trusts_session_ids();
    if features.is_none() && !untrusted {
        return Err(ApiError::not_found(format!("no state for {kind} {key}")));
    }
    let (_, hash) = scope_and_hash(&s, &kind, &key)?;
    let mut keys = haechi_features::EntityKeys::default();
    keys.set(k, hash);
    let block = s.blocks().check(&keys, crate::enforce::now_ms()).map(|b| BlockView::from(&b));
    let map: serde_json::Map<String, serde_json::Value> = features.unwrap_or_default().into_iter().map(|(n, v)| (n, serde_json::json!(v))).collect();
    let mut body = serde_json::json!({ "kind": k, "key": key, "features": map, "block": block });
    if untrusted {
        body["note"] = serde_json::json!(
            "the stream's session ids are a step's each (haechi_session_ids_per_step is 1): sessions are keyed by the device's run of events, so no state is kept under a reported session id now, and any features shown were kept before that verdict; a block on the id still applies"
        );
    }
    Ok(Json(body))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EntityEventsQuery {
    limit: Option<usize>,
}

/// How far back in the ingest log an entity's recent events are looked for.
const ENTITY_EVENTS_SCAN: u64 = 200_000;

/// What an investigator sees of one event: the step and where it came from;
/// no attributes and no user agent (those stay in the access records, read
/// through `/v1/records` by a role that may).
#[derive(Serialize, utoipa::ToSchema)]
struct EntityEventView {
    event_id: String,
    ts: String,
    step: String,
    result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    staff_id: Option<String>,
}

impl EntityEventView {
    fn of(e: &Event) -> EntityEventView {
        let text = |v: &Option<compact_str::CompactString>| v.as_ref().map(ToString::to_string);
        EntityEventView {
            event_id: e.event_id.to_string(),
            ts: haechi_features::format_rfc3339_ms(e.ts_ms),
            step: e.step.as_str().to_owned(),
            result: if e.is_failure() { "failure".to_owned() } else { "success".to_owned() },
            failure_reason: text(&e.failure_reason),
            customer_id: text(&e.customer_id),
            ip: e.ip.map(|ip| ip.to_string()),
            device_id: text(&e.device_id),
            session_id: text(&e.session_id),
            channel: e.channel.map(|c| serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()),
            region: text(&e.region),
            staff_id: text(&e.staff_id),
        }
    }
}

/// One scan of the log at a time: it reads up to [`ENTITY_EVENTS_SCAN`] records.
static ENTITY_EVENT_SCANS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// `GET /v1/entities/{kind}/{key}/events`: the entity's newest events,
/// newest first, from the last events of the ingest log; with records, the
/// read is itself recorded (who looked at whose events).
#[utoipa::path(get, path = "/v1/entities/{kind}/{key}/events", tag = "entities", params(("kind" = String, Path), ("key" = String, Path), EntityEventsQuery),
    responses((status = 200, description = "The entity's newest events, newest first; the read is recorded.", body = [EntityEventView])))]
async fn get_entity_events(
    State(s): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((kind, key)): Path<(String, String)>,
    Query(q): Query<EntityEventsQuery>,
) -> Result<Json<Vec<EntityEventView>>, ApiError> {
    let k = EntityKind::parse(&kind).ok_or_else(|| ApiError::bad_request(format!("unknown kind `{kind}`")))?;
    if haechi_features::find_resident_number(&key).is_some() {
        return Err(ApiError::bad_request("an entity key must not be a resident registration number"));
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 1_000);
    if s.data.is_none() {
        return Err(ApiError::new(StatusCode::CONFLICT, "an entity's events are read from the ingest log: run with a data dir"));
    }
    let Ok(permit) = ENTITY_EVENT_SCANS.try_acquire() else {
        return Err(ApiError::overloaded());
    };
    let found = tokio::task::spawn_blocking(move || -> Result<Vec<EntityEventView>, ApiError> {
        let _permit = permit;
        let log = s.data.as_ref().map(|d| d.log()).ok_or_else(|| ApiError::internal("no data dir"))?;
        let from = log.next_offset().saturating_sub(ENTITY_EVENTS_SCAN).max(log.first_offset());
        let max = s.pipeline.config().pipeline.max_event_bytes;
        let mut found = std::collections::VecDeque::with_capacity(limit);
        for item in log.read_from(from).map_err(|e| ApiError::internal(format!("reading the ingest log: {e}")))? {
            let (_, record) = item.map_err(|e| ApiError::internal(format!("reading the ingest log: {e}")))?;
            let Some(raw) = record.get(8..) else { continue };
            let Ok(event) = Event::parse(raw, max) else { continue };
            if haechi_features::entity_text(&event, k).as_deref() == Some(key.as_str()) {
                if found.len() == limit {
                    found.pop_front();
                }
                found.push_back(EntityEventView::of(&event));
            }
        }
        if let Some(rec) = s.audit.recording() {
            let now = crate::enforce::now_ms();
            let customer = (k == EntityKind::Customer).then(|| key.clone());
            let read = haechi_records::ReadRecord {
                who: Actor::from(&who),
                via: "GET /v1/entities/{kind}/{key}/events".to_owned(),
                filter: serde_json::json!({ "kind": k, "key": key }),
                returned: found.len() as u64,
            };
            rec.records()
                .record(now, haechi_records::Records::new_record(now, customer, haechi_records::RecordBody::Read(read)))
                .map_err(|e| ApiError::internal(format!("the read could not be recorded, so nothing is shown: {e}")))?;
        }
        Ok(found.into_iter().rev().collect())
    })
    .await
    .map_err(|e| ApiError::internal(format!("entity events: {e}")))??;
    Ok(Json(found))
}

#[utoipa::path(post, path = "/v1/reload", tag = "admin", responses((status = 200, description = "What was reloaded.", body = Object)))]
async fn post_reload(State(s): State<Arc<AppState>>, axum::Extension(who): axum::Extension<Principal>) -> Result<Json<serde_json::Value>, ApiError> {
    match super::reload_audited(s.clone(), Actor::from(&who)).await {
        Ok((rules, model)) => Ok(Json(serde_json::json!({ "rules": rules, "model": model }))),
        Err((rules, model, e)) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reloaded (rules: {rules}; model: {model}) but the audit log could not be written: {e}"),
        )),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", security(()), responses((status = 200, description = "Prometheus text format.", content_type = "text/plain", body = String)))]
async fn get_metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    s.sync_store_counters();
    for sink in &s.alert_sinks {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &sink.counts;
        for (state, n) in [("delivered", c.delivered.load(Relaxed)), ("retried", c.retried.load(Relaxed)), ("dropped", c.dropped.load(Relaxed)), ("spooled", sink.depth())] {
            s.metrics.alert_sinks.with_label_values(&[&sink.name, state]).set(n as i64);
        }
    }
    let store = s.pipeline.store();
    for kind in EntityKind::ALL {
        s.metrics.entities.with_label_values(&[kind.as_str()]).set(store.entity_count(kind) as i64);
    }
    s.metrics.feature_history.set(store.history_ms() / 1000);
    s.metrics.session_ids_per_step.set(i64::from(!store.trusts_session_ids()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}

#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, description = "Alive.", content_type = "text/plain", body = String)))]
async fn get_health() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "operations", security(()), responses((status = 200, description = "Ready.", content_type = "text/plain", body = String)))]
async fn get_ready(State(s): State<Arc<AppState>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        "ready".into_response()
    } else {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "not ready".into()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn state(max_subscribers: usize) -> Arc<AppState> {
        let mut config = crate::Config::default();
        config.server.max_alert_subscribers = max_subscribers;
        config.server.watch_files = false;
        super::super::build_state(config).unwrap()
    }

    fn stream_request() -> Request {
        Request::builder().uri("/v1/alerts/stream").body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn alert_stream_clients_beyond_the_cap_get_503_and_a_leaving_client_frees_its_place() {
        let s = state(2);
        let app = router(s.clone(), CancellationToken::new());
        let first = app.clone().oneshot(stream_request()).await.unwrap();
        let second = app.clone().oneshot(stream_request()).await.unwrap();
        assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
        let third = app.clone().oneshot(stream_request()).await.unwrap();
        assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(third.headers()[header::CONTENT_TYPE], "application/json");
        let body = http_body_util::BodyExt::collect(third.into_body()).await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("max_alert_subscribers"), "{v}");
        assert_eq!(s.metrics.alert_subscribers_refused.get(), 1);
        assert_eq!(s.metrics.alert_subscribers.get(), 2);
        drop(first);
        assert_eq!(s.subscribers.load(Ordering::Relaxed), 1);
        let again = app.clone().oneshot(stream_request()).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        drop((second, again));
        assert_eq!(s.metrics.alert_subscribers.get(), 0);
    }

    #[tokio::test]
    async fn a_batch_decided_on_the_blocking_pool_answers_as_before() {
        let s = state(4);
        let app = router(s.clone(), CancellationToken::new());
        let body = concat!(
            r#"{"event_id":"a1","ts":"2026-11-02T10:00:00+09:00","step":"login","result":"failure","customer_id":"c1","ip":"10.0.0.1"}"#,
            "\n\n",
            "not json\n",
            r#"{"event_id":"a1","ts":"2026-11-02T10:00:01+09:00","step":"login","result":"failure","customer_id":"c1","ip":"10.0.0.1"}"#,
            "\n"
        );
        let req = Request::builder().method("POST").uri("/v1/events").body(Body::from(body)).unwrap();
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["accepted"], 1);
        let lines: Vec<u64> = v["rejected"].as_array().unwrap().iter().map(|r| r["line"].as_u64().unwrap()).collect();
        assert_eq!(lines, vec![3, 4], "{v}");
        assert_eq!(v["decisions"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_session_looked_up_while_the_streams_ids_are_a_steps_each_says_why_it_has_no_features() {
        let get = |app: Router, path: &str| {
            let req = Request::builder().uri(path).body(Body::empty()).unwrap();
            async move {
                let res = app.oneshot(req).await.unwrap();
                let status = res.status();
                let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
                (status, serde_json::from_slice::<serde_json::Value>(&body).unwrap())
            }
        };
        let mut config = crate::Config::default();
        config.server.watch_files = false;
        config.features.session_ids = haechi_features::SessionIds::Auto;
        let s = super::super::build_state(config).unwrap();
        let app = router(s.clone(), CancellationToken::new());
        // Before any verdict, an unknown session is just unknown.
        assert_eq!(get(app.clone(), "/v1/entities/session/req-7").await.0, StatusCode::NOT_FOUND);
        let mut scratch = s.pipeline.scratch();
        for i in 0..3_000 {
            let line = format!(
                r#"{{"event_id":"w{i}","ts":"2026-11-02T10:{:02}:{:02}+09:00","step":"login","result":"success","customer_id":"c{i}","device_id":"d{i}","session_id":"req-{i}"}}"#,
                i / 60 % 60,
                i % 60
            );
            s.pipeline.process(&s.pipeline.parse(line.as_bytes()).unwrap(), &mut scratch).unwrap();
        }
        assert!(!s.pipeline.store().trusts_session_ids());
        // A session first seen now keeps no state under its id; an analyst's block on it shows.
        let late = r#"{"event_id":"late","ts":"2026-11-02T11:00:00+09:00","step":"login","result":"success","customer_id":"c-late","device_id":"d-late","session_id":"req-late"}"#;
        s.pipeline.process(&s.pipeline.parse(late.as_bytes()).unwrap(), &mut scratch).unwrap();
        let (_, hash) = scope_and_hash(&s, "session", "req-late").unwrap();
        s.blocks().set_manual(EntityKind::Session, hash, "req-late".into(), std::time::Duration::from_secs(3_600), "seen".into(), "analyst:kim".into());
        let (status, body) = get(app.clone(), "/v1/entities/session/req-late").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["note"].as_str().unwrap().contains("a step's each"), "{body}");
        assert_eq!(body["features"], serde_json::json!({}));
        assert_eq!(body["block"]["key"], "req-late", "{body}");
        // One seen before the verdict keeps its old state, with the same note.
        let (status, body) = get(app.clone(), "/v1/entities/session/req-7").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["note"].is_string() && body["features"]["session.present"] == 1.0, "{body}");
        // Other kinds are as they were.
        assert_eq!(get(app, "/v1/entities/customer/nobody").await.0, StatusCode::NOT_FOUND);
    }

    /// Who may call what, written out: the security contract of every route in the OpenAPI
    /// document. A permission changes only when both `access_for` and this table say so; and
    /// the router must enforce what the table says (403 for every role not listed, never
    /// 401 or 403 for one listed).
    #[tokio::test]
    async fn every_route_answers_every_role_as_the_table_says() {
        use super::super::auth::{token_sha256_hex, PrincipalConfig, Role};
        const I: &str = "ingest";
        const AN: &str = "analyst";
        const AU: &str = "auditor";
        const AD: &str = "admin";
        const SP: &str = "subject_portal";
        let table: &[(&str, &str, &[&str])] = &[
            ("GET", "/v1/me", &[I, AN, AU, AD, SP]),
            ("POST", "/v1/events", &[I, AD]),
            ("POST", "/v1/check", &[I, AD]),
            ("GET", "/v1/alerts", &[AN, AU, AD]),
            ("GET", "/v1/alerts/stream", &[AN, AU, AD]),
            ("POST", "/v1/alerts/{id}/triage", &[AN, AD]),
            ("GET", "/v1/labels", &[AN, AU, AD]),
            ("GET", "/v1/blocks", &[AN, AU, AD]),
            ("POST", "/v1/blocks", &[AN, AD]),
            ("DELETE", "/v1/blocks/{scope}/{key}", &[AN, AD]),
            ("GET", "/v1/suppressions", &[AN, AU, AD]),
            ("POST", "/v1/suppressions", &[AN, AD]),
            ("DELETE", "/v1/suppressions/{id}", &[AN, AD]),
            ("GET", "/v1/entities/{kind}/{key}", &[AN, AU, AD]),
            ("GET", "/v1/entities/{kind}/{key}/events", &[AN, AU, AD]),
            ("GET", "/v1/rules/stats", &[AN, AU, AD]),
            ("POST", "/v1/rules/preview", &[AN, AD]),
            ("POST", "/v1/reload", &[AD]),
            ("GET", "/v1/audit", &[AU, AD]),
            ("GET", "/v1/records", &[AU, AD]),
            ("GET", "/v1/subjects/{customer_id}/records", &[SP]),
            ("POST", "/v1/exports", &[AU, AD]),
            ("GET", "/v1/exports/{id}", &[AU, AD]),
            ("POST", "/v1/exports/{id}/approve", &[AD]),
            ("POST", "/v1/exports/{id}/refuse", &[AD]),
            ("GET", "/v1/reports/summary", &[AU, AD]),
        ];
        // The table covers every /v1 operation of the contract.
        let spec: serde_json::Value = serde_json::from_str(super::super::openapi::spec_json()).unwrap();
        let mut operations = Vec::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for method in ["get", "post", "delete", "put", "patch"] {
                if item.get(method).is_some() && path.starts_with("/v1/") {
                    operations.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        for (m, p) in &operations {
            assert!(table.iter().any(|(tm, tp, _)| tm == m && tp == p), "{m} {p} is missing from the table");
        }
        assert_eq!(operations.len(), table.len(), "the table names an operation the contract does not have");

        let mut config = crate::Config::default();
        config.server.watch_files = false;
        config.server.principals = [I, AN, AU, AD, SP]
            .iter()
            .map(|r| PrincipalConfig {
                name: format!("{r}-user"),
                role: serde_json::from_value::<Role>(serde_json::json!(r)).unwrap(),
                token_sha256: Some(token_sha256_hex(&format!("token-{r}"))),
                token_sha256_env: None,
                token_sha256_file: None,
            })
            .collect();
        let app = router(super::super::build_state(config).unwrap(), CancellationToken::new());
        for (method, path, allowed) in table {
            let uri = path.replace("{id}", "x1").replace("{scope}", "ip").replace("{key}", "203.0.113.9").replace("{kind}", "ip").replace("{customer_id}", "c1");
            for role in [I, AN, AU, AD, SP] {
                let req = Request::builder().method(*method).uri(&uri).header(header::AUTHORIZATION, format!("Bearer token-{role}")).body(Body::empty()).unwrap();
                let status = app.clone().oneshot(req).await.unwrap().status();
                if allowed.contains(&role) {
                    assert!(status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED, "{role} {method} {path}: {status}, but the table allows it");
                } else {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{role} {method} {path}: the table refuses it");
                }
            }
            let anonymous = Request::builder().method(*method).uri(&uri).body(Body::empty()).unwrap();
            assert_eq!(app.clone().oneshot(anonymous).await.unwrap().status(), StatusCode::UNAUTHORIZED, "no token: {method} {path}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_fsync_always_checks_are_logged_before_their_answer() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::Config::default();
        config.server.watch_files = false;
        config.storage.data_dir = Some(dir.path().join("data"));
        config.storage.fsync = haechi_storage::Fsync::Always;
        let s = super::super::build_state(config).unwrap();
        let app = router(s.clone(), CancellationToken::new());
        let check = |id: &str| {
            let body = format!(r#"{{"event_id":"{id}","ts":"2026-11-02T10:00:00+09:00","step":"login","result":"success","customer_id":"c1"}}"#);
            Request::builder().method("POST").uri("/v1/check").body(Body::from(body)).unwrap()
        };
        let answers = futures_util::future::join_all((0..16).map(|i| app.clone().oneshot(check(&format!("e{i}"))))).await;
        assert!(answers.iter().all(|r| r.as_ref().unwrap().status() == StatusCode::OK));
        let data = s.data.as_ref().unwrap();
        assert_eq!(data.log().next_offset(), 16, "every answered event is in the log");
        let repeat = app.clone().oneshot(check("e3")).await.unwrap();
        assert_eq!(repeat.status(), StatusCode::CONFLICT, "decided on the blocking pool, refused as before");
    }
}
