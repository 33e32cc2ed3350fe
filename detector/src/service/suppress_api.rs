//! `/v1/suppressions`: set, list and end an analyst's suppressions. Setting
//! one lifts the blocks in force that it covers; every change is a staff
//! action in the records, from which the list is rebuilt at start.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::api::{audit, scope_and_hash, ApiError, BlockView};
use super::audit::{Actor, AuditRecord};
use super::auth::{Principal, Role};
use super::state::AppState;
use crate::enforce::{now_ms, ListedSuppression, Suppression, MAX_SUPPRESSIONS};

/// Longest suppression: a year, as for blocks. Anything longer is an allowlist entry.
const MAX_TTL_S: u64 = 366 * 86_400;
/// What one analyst may silence alone: one rule for a month, every rule for a
/// week. Longer, and any suppression of a staff member, takes an admin, so
/// that no analyst can quietly mute the detectors on a colleague or themselves.
const ANALYST_ONE_RULE_S: u64 = 30 * 86_400;
const ANALYST_EVERY_RULE_S: u64 = 7 * 86_400;

/// `POST /v1/suppressions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSuppression {
    /// ip, subnet, device, customer, id_doc, account, staff or session.
    pub scope: String,
    pub key: String,
    /// Only this rule (or `isolation_forest`, `failure_streak`, `fsc_two_methods`); every rule when absent.
    #[serde(default)]
    pub rule: Option<String>,
    pub ttl_s: u64,
    pub reason: String,
}

/// A suppression set, and the blocks it lifted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SetSuppression {
    #[schema(value_type = Object)]
    pub suppression: Suppression,
    pub lifted: Vec<BlockView>,
}

/// The ids a suppression may name: the rules loaded now and the built-in detectors.
fn known_rule(s: &AppState, rule: &str) -> bool {
    matches!(rule, "isolation_forest" | "failure_streak" | "fsc_two_methods") || s.pipeline.rules().current().rules().iter().any(|r| &*r.id == rule)
}

#[utoipa::path(post, path = "/v1/suppressions", tag = "blocks", request_body = NewSuppression,
    responses((status = 201, description = "The suppression, and the blocks in force it lifted.", body = SetSuppression)))]
pub async fn post_suppression(
    State(s): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SetSuppression>), ApiError> {
    let body = body?;
    let new: NewSuppression = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("suppression: {e}")))?;
    if new.ttl_s == 0 || new.ttl_s > MAX_TTL_S {
        return Err(ApiError::bad_request(format!("suppression: ttl_s must be 1 to {MAX_TTL_S}")));
    }
    if new.reason.trim().is_empty() || new.reason.len() > 2_000 {
        return Err(ApiError::bad_request("suppression: give a reason of at most 2,000 bytes"));
    }
    if [Some(&new.key), Some(&new.reason), new.rule.as_ref()].into_iter().flatten().any(|t| haechi_features::find_resident_number(t).is_some()) {
        return Err(ApiError::bad_request("suppression: must not carry a resident registration number"));
    }
    if let Some(rule) = new.rule.as_deref().filter(|r| !known_rule(&s, r)) {
        return Err(ApiError::bad_request(format!("suppression: no rule or detector `{rule}` is loaded")));
    }
    let (scope, hash) = scope_and_hash(&s, &new.scope, &new.key)?;
    if who.role != Role::Admin {
        if scope == haechi_features::EntityKind::Staff {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "suppression: only an admin may suppress findings on a staff member"));
        }
        let limit = if new.rule.is_some() { ANALYST_ONE_RULE_S } else { ANALYST_EVERY_RULE_S };
        if new.ttl_s > limit {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("suppression: an analyst may suppress one rule for at most {} days and every rule for at most {} days; longer takes an admin", ANALYST_ONE_RULE_S / 86_400, ANALYST_EVERY_RULE_S / 86_400),
            ));
        }
    }
    let now = now_ms();
    let id = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&new.scope, &new.key, &new.rule, now, &who.name).hash(&mut h);
        format!("sup-{now:x}-{:08x}", h.finish() as u32)
    };
    let suppression = Suppression {
        id,
        scope,
        key: new.key,
        rule: new.rule,
        reason: new.reason,
        set_by: format!("analyst:{}", who.name),
        set_at_ms: now,
        expires_at_ms: now + Duration::from_secs(new.ttl_s).as_millis() as i64,
    };
    // In force before the blocks are lifted: an event between the two must
    // not set the block again.
    s.pipeline
        .enforcer()
        .suppressions()
        .insert(suppression.clone(), hash)
        .map_err(|kept| ApiError::new(StatusCode::CONFLICT, format!("suppression: {kept} suppressions are kept already (at most {MAX_SUPPRESSIONS}); end some first")))?;
    let mut lifted = Vec::new();
    if let Some(b) = s.blocks().list_at(now).into_iter().find(|b| b.scope == scope && b.hash == hash && suppression.covers_block(&b.set_by)) {
        if s.blocks().lift_automatic(b.scope, b.hash, b.set_at_ms) {
            lifted.push(BlockView::from(&b));
        }
    }
    let after = serde_json::json!({ "suppression": &suppression, "lifted": &lifted });
    audit(&s, AuditRecord::now(Actor::from(&who), "suppression_set", Some(scope.as_str()), Some(&suppression.id), serde_json::Value::Null, after)).await?;
    Ok((StatusCode::CREATED, Json(SetSuppression { suppression, lifted })))
}

#[utoipa::path(get, path = "/v1/suppressions", tag = "blocks", responses((status = 200, description = "Suppressions in force, newest first, with the findings each swallowed (`hits`).", body = [Object])))]
pub async fn get_suppressions(State(s): State<Arc<AppState>>) -> Json<Vec<ListedSuppression>> {
    Json(s.pipeline.enforcer().suppressions().list(now_ms()))
}

#[utoipa::path(delete, path = "/v1/suppressions/{id}", tag = "blocks", params(("id" = String, Path)), responses((status = 204, description = "Ended.")))]
pub async fn delete_suppression(
    State(s): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ended = s.pipeline.enforcer().suppressions().end(&id, now_ms()).ok_or_else(|| ApiError::not_found(format!("no suppression {id} in force")))?;
    let before = serde_json::to_value(&ended).unwrap_or_default();
    audit(&s, AuditRecord::now(Actor::from(&who), "suppression_ended", Some(ended.scope.as_str()), Some(&id), before, serde_json::Value::Null)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rebuild the suppressions from the staff actions the records hold, in
/// order: those in force, and those ended or expired recently enough to
/// judge the ingest log's events as they were judged live.
pub fn restore(s: &AppState, records: &[haechi_records::Record]) -> usize {
    let seed = s.pipeline.store().windows().hash_key;
    let book = s.pipeline.enforcer().suppressions();
    for r in records {
        let haechi_records::RecordBody::Action(a) = &r.body else { continue };
        match a.action.as_str() {
            "suppression_set" => {
                let Ok(sup) = serde_json::from_value::<Suppression>(a.after["suppression"].clone()) else { continue };
                if let Some(hash) = haechi_features::lookup_hash(seed, sup.scope, &sup.key) {
                    if let Err(kept) = book.insert(sup, hash) {
                        tracing::warn!(kept, "suppression not restored: the list is full");
                    }
                }
            }
            "suppression_ended" => {
                if let Some(id) = &a.key {
                    book.end(id, r.recorded_ms);
                }
            }
            _ => {}
        }
    }
    book.expire(now_ms());
    book.list(now_ms()).len()
}
