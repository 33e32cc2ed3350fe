//! The web console at `/console`: static files embedded in the binary (bank
//! networks are closed, so nothing comes from a CDN), and `GET /v1/me`, which
//! tells the page who the token is and what its role may do.
//!
//! The page is served without a token; everything it shows comes from the
//! `/v1` API with the token the analyst types, so the console can do no more
//! than the token's role.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::auth::{Access, Principal};
use super::state::AppState;

#[derive(rust_embed::RustEmbed)]
#[folder = "console/"]
struct Assets;

/// Only this origin's scripts, styles, images and API: the console loads nothing from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(name: &str) -> Response {
    let (body, mime): (std::borrow::Cow<'static, [u8]>, &str) = if name == "echarts.min.js" {
        (haechi_records::ECHARTS_JS.as_bytes().into(), "text/javascript; charset=utf-8")
    } else {
        let Some(file) = Assets::get(name) else {
            return super::api::ApiError::not_found(format!("no console file {name}")).into_response();
        };
        let mime = match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            Some("png") => "image/png",
            _ => "application/octet-stream",
        };
        (file.data, mime)
    };
    let mut res = (StatusCode::OK, body.into_owned()).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// `GET /console`: the page.
#[utoipa::path(get, path = "/console", tag = "console", security(()), responses((status = 200, description = "The web console.", content_type = "text/html", body = String)))]
pub async fn index() -> Response {
    asset("index.html")
}

/// `GET /console/{file}`: its scripts and styles.
#[utoipa::path(get, path = "/console/{file}", tag = "console", security(()), params(("file" = String, Path)),
    responses((status = 200, description = "A script, style sheet or image of the console.", content_type = "text/javascript", body = String)))]
pub async fn file(Path(name): Path<String>) -> Response {
    asset(&name)
}

/// What the console needs to know of its token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub name: String,
    pub role: &'static str,
    /// What the role may do, by name: investigate, change_blocks, triage, preview_rules, audit, administer, read_records, reports.
    pub may: Vec<&'static str>,
    /// Whether a data dir keeps records (the reports page needs one).
    pub records: bool,
}

/// `GET /v1/me`.
#[utoipa::path(get, path = "/v1/me", tag = "console", responses((status = 200, description = "The token's principal and what its role may do.", body = Me)))]
pub async fn me(State(s): State<Arc<AppState>>, axum::Extension(who): axum::Extension<Principal>) -> Json<Me> {
    let may = [
        (Access::Investigate, "investigate"),
        (Access::ChangeBlocks, "change_blocks"),
        (Access::Triage, "triage"),
        (Access::PreviewRules, "preview_rules"),
        (Access::Audit, "audit"),
        (Access::Administer, "administer"),
        (Access::ReadRecords, "read_records"),
        (Access::Reports, "reports"),
    ]
    .into_iter()
    .filter(|(a, _)| who.role.allows(*a))
    .map(|(_, n)| n)
    .collect();
    Json(Me { name: who.name.clone(), role: who.role.as_str(), may, records: s.audit.recording().is_some() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bank networks are closed: no file of the console names another origin to load from.
    #[test]
    fn the_console_files_name_no_other_origin() {
        let mut files = 0;
        for name in Assets::iter() {
            files += 1;
            let text = String::from_utf8_lossy(&Assets::get(&name).unwrap().data).to_lowercase();
            for scheme in ["http://", "https://", "//cdn", "@import url("] {
                assert!(!text.contains(scheme), "console/{name} names {scheme}");
            }
        }
        assert!(files >= 3, "read {files} console files");
    }

    #[tokio::test]
    async fn every_console_file_goes_out_under_the_policy() {
        for name in ["index.html", "app.js", "app.css", "echarts.min.js"] {
            let res = asset(name);
            assert_eq!(res.status(), StatusCode::OK, "{name}");
            assert_eq!(res.headers()[header::CONTENT_SECURITY_POLICY], CSP, "{name}");
        }
        assert_eq!(asset("../Cargo.toml").status(), StatusCode::NOT_FOUND);
    }
}
