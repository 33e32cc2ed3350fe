//! The OpenAPI contract, generated from the handlers' annotations: served at
//! `/openapi.json` and checked in as `openapi.json` at the repository's root
//! (a test fails when the two differ, and when a route of the router is
//! missing from it). CI runs schemathesis against the running binary with it.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, Response, ResponseBuilder};
use utoipa::OpenApi;

use super::{api, console, records_api, rules_api, suppress_api};

#[derive(OpenApi)]
#[openapi(
    info(title = "Haechi", description = "Live fraud detection for a bank's eKYC pipeline: events in; allow, challenge or block out; alerts, blocks, suppressions and access records for the security operations team."),
    paths(
        console::me, console::index, console::file,
        api::post_events, api::post_check,
        api::get_alerts, api::get_alert_stream, api::post_triage, api::get_labels,
        api::get_blocks, api::post_block, api::delete_block,
        suppress_api::get_suppressions, suppress_api::post_suppression, suppress_api::delete_suppression,
        api::get_entity, api::get_entity_events,
        rules_api::get_stats, rules_api::post_preview,
        api::post_reload, api::get_audit,
        records_api::get_records, records_api::get_subject_records,
        records_api::post_export, records_api::get_export, records_api::approve_export, records_api::refuse_export,
        records_api::get_report,
        api::get_metrics, api::get_health, api::get_ready, get_spec,
    ),
    components(schemas(api::ErrorBody)),
    modifiers(&Conventions),
    security(("bearer" = [])),
)]
struct ApiDoc;

/// What holds for every route: the bearer scheme, and the errors any route
/// may answer, each as `{"error": ...}`. Named one by one (not as `default`),
/// so that an undocumented status (a 500, a 422) breaks the contract.
struct Conventions;

impl utoipa::Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("A principal's token: `Authorization: Bearer TOKEN`.")).build()));
        let error: RefOr<Response> = ResponseBuilder::new()
            .description("An error, naming the problem.")
            .content("application/json", ContentBuilder::new().schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody")))).build())
            .build()
            .into();
        let statuses = [
            ("400", "The request does not parse or names something unknown."),
            ("401", "No token, or one no principal holds."),
            ("403", "The token's role may not do this."),
            ("404", "No such thing (or route)."),
            ("408", "The request took longer than server.request_timeout."),
            ("409", "A conflict: a repeated event id, a preview without a data dir, ..."),
            ("413", "The body is over the configured limit."),
            ("503", "Overloaded, not ready, or the ingest log cannot be written; retry."),
        ];
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.delete, &mut item.put, &mut item.patch].into_iter().flatten() {
                for (status, what) in statuses {
                    op.responses.responses.entry(status.to_owned()).or_insert_with(|| {
                        let RefOr::T(mut r) = error.clone() else { return error.clone() };
                        r.description = what.to_owned();
                        RefOr::T(r)
                    });
                }
            }
        }
    }
}

/// The contract as JSON, pretty-printed (the checked-in file's form).
pub fn spec_json() -> &'static str {
    // The same for the life of the process: built once, on the first request.
    static SPEC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")))
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()), responses((status = 200, description = "This contract.", body = Object)))]
pub async fn get_spec() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], spec_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked_in() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.json")
    }

    /// `HAECHI_BLESS=1 cargo test -p haechi-detector openapi` rewrites it after an API change.
    #[test]
    fn the_checked_in_contract_is_the_one_the_code_serves() {
        let now = spec_json();
        if std::env::var_os("HAECHI_BLESS").is_some() {
            std::fs::write(checked_in(), format!("{now}\n")).unwrap();
        }
        let file = std::fs::read_to_string(checked_in()).expect("openapi.json at the repository's root");
        assert!(file.trim_end() == now.trim_end(), "openapi.json is out of date: run HAECHI_BLESS=1 cargo test -p haechi-detector openapi");
    }

    /// Every route the router serves is in the contract (read from the router's source, so a
    /// new `.route(...)` without an annotation fails here).
    #[test]
    fn every_route_is_in_the_contract() {
        let spec: serde_json::Value = serde_json::from_str(spec_json()).unwrap();
        let paths = spec["paths"].as_object().unwrap();
        let source = include_str!("api.rs");
        let mut routes = 0;
        for part in source.split(".route(\"").skip(1) {
            let path = &part[..part.find('"').unwrap()];
            if path.ends_with('/') {
                continue; // `/console/`, the same page as `/console`
            }
            routes += 1;
            assert!(paths.contains_key(path), "route {path} is not in the OpenAPI contract");
        }
        assert!(routes >= 30, "read {routes} routes from api.rs");
    }
}
