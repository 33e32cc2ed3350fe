//! Who may call what: principals, their roles, and bearer-token checks.
//!
//! A principal is declared in the configuration with the SHA-256 of its
//! token, never the token itself. A request's bearer token is hashed and
//! compared against every principal's hash in constant time.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Send events: `/v1/check`, `/v1/events`.
    Ingest,
    /// Alerts, entities, and setting and lifting blocks; not ingest. An
    /// analyst who could send events could write the history the detectors
    /// judge by (logins that make a made-up customer returning, a quiet week
    /// for a staff member), and the events would read as the pipeline's own.
    Analyst,
    /// Read everything (alerts, blocks, entities, the audit log, access records, reports),
    /// request exports; change nothing.
    Auditor,
    /// Everything but a data subject's portal view, reload and export approval included
    /// (never of one's own export request: a second person approves).
    Admin,
    /// The bank's customer-facing app, which has verified the customer: that customer's own
    /// access records, masked, and nothing else.
    SubjectPortal,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::SubjectPortal => "subject_portal",
        }
    }

    /// May this role do `access`?
    pub fn allows(self, access: Access) -> bool {
        use Access::*;
        match self {
            Role::Admin => !matches!(access, SubjectAccess),
            Role::Ingest => matches!(access, Identify | Ingest),
            Role::Analyst => matches!(access, Identify | Investigate | ChangeBlocks | Triage | PreviewRules),
            Role::Auditor => matches!(access, Identify | Investigate | Audit | ReadRecords | RequestExport | Reports),
            Role::SubjectPortal => matches!(access, Identify | SubjectAccess),
        }
    }
}

/// The kinds of access the API's routes need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Who am I, and what may I do (the console asks at login).
    Identify,
    /// Send events.
    Ingest,
    /// Read alerts, blocks and entities.
    Investigate,
    /// Set and lift blocks.
    ChangeBlocks,
    /// Acknowledge, resolve and label alerts.
    Triage,
    /// Backtest a rule change over the ingest log (heavy: analysts and admins).
    PreviewRules,
    /// Read the audit log.
    Audit,
    /// Reload rules and model.
    Administer,
    /// Read access records (every read recorded).
    ReadRecords,
    /// Ask for an export of records, and fetch it once approved.
    RequestExport,
    /// Approve (or refuse) another principal's export.
    ApproveExport,
    /// Management reports over the records.
    Reports,
    /// A data subject's own records, through the customer-facing app.
    SubjectAccess,
}

/// What a `/v1` route needs; `None` for a route this table does not know
/// (refused: a new route must be placed here deliberately).
pub fn access_for(method: &axum::http::Method, route: &str) -> Option<Access> {
    use axum::http::Method;
    // HEAD is answered by the GET handler, and needs what GET needs.
    let method = if method == Method::HEAD { Method::GET } else { method.clone() };
    Some(match (method, route) {
        (Method::GET, "/v1/me") => Access::Identify,
        (Method::POST, "/v1/check" | "/v1/events") => Access::Ingest,
        (Method::GET, "/v1/alerts" | "/v1/alerts/stream" | "/v1/labels" | "/v1/blocks" | "/v1/suppressions" | "/v1/entities/{kind}/{key}" | "/v1/entities/{kind}/{key}/events" | "/v1/rules/stats") => {
            Access::Investigate
        }
        (Method::POST, "/v1/rules/preview") => Access::PreviewRules,
        (Method::POST, "/v1/blocks" | "/v1/suppressions") | (Method::DELETE, "/v1/blocks/{scope}/{key}" | "/v1/suppressions/{id}") => Access::ChangeBlocks,
        (Method::GET, "/v1/audit") => Access::Audit,
        (Method::POST, "/v1/alerts/{id}/triage") => Access::Triage,
        (Method::POST, "/v1/reload") => Access::Administer,
        (Method::GET, "/v1/records") => Access::ReadRecords,
        (Method::GET, "/v1/subjects/{customer_id}/records") => Access::SubjectAccess,
        (Method::POST, "/v1/exports") | (Method::GET, "/v1/exports/{id}") => Access::RequestExport,
        (Method::POST, "/v1/exports/{id}/approve" | "/v1/exports/{id}/refuse") => Access::ApproveExport,
        (Method::GET, "/v1/reports/summary") => Access::Reports,
        _ => return None,
    })
}

/// One principal as the configuration declares it: a name, a role, and the
/// SHA-256 of its token from exactly one of three places.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the token (`printf %s TOKEN | sha256sum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// An environment variable holding the hex SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256_env: Option<String>,
    /// A file holding the hex SHA-256 (surrounding whitespace ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256_file: Option<PathBuf>,
}

/// A principal the service knows: name, role, token hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    hash: [u8; 32],
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

impl Principal {
    /// Who acts when no principals are configured (a loopback demo).
    pub fn anonymous() -> Principal {
        Principal { name: "anonymous".into(), role: Role::Admin, hash: [0; 32] }
    }
}

fn parse_hex_sha256(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl PrincipalConfig {
    /// The token hash, read from wherever the configuration says.
    ///
    /// # Errors
    /// A message naming the principal and the problem.
    pub fn resolve(&self) -> Result<Principal, crate::DetectorError> {
        let who = format!("server.principals `{}`", self.name);
        let (text, from) = match (&self.token_sha256, &self.token_sha256_env, &self.token_sha256_file) {
            (Some(h), None, None) => (h.clone(), "token_sha256".to_owned()),
            (None, Some(var), None) => {
                let v = std::env::var(var).map_err(|_| setting!("{who}: token_sha256_env: environment variable {var} is not set"))?;
                (v, format!("token_sha256_env ({var})"))
            }
            (None, None, Some(path)) => {
                let v = std::fs::read_to_string(path).map_err(|e| setting!("{who}: token_sha256_file {}: {e}", path.display()))?;
                (v, format!("token_sha256_file ({})", path.display()))
            }
            (None, None, None) => return Err(setting!("{who}: needs one of token_sha256, token_sha256_env, token_sha256_file")),
            _ => return Err(setting!("{who}: give only one of token_sha256, token_sha256_env, token_sha256_file")),
        };
        let hash = parse_hex_sha256(&text).ok_or_else(|| setting!("{who}: {from} must be 64 hex digits, the SHA-256 of the token (`printf %s TOKEN | sha256sum`)"))?;
        Ok(Principal { name: self.name.clone(), role: self.role, hash })
    }
}

/// The principals the service accepts. Empty: no authentication.
#[derive(Debug, Clone, Default)]
pub struct Principals(Vec<Principal>);

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token, or one no principal holds: 401.
    Unauthenticated,
    /// A known principal whose role does not allow this: 403.
    Forbidden,
}

impl Principals {
    /// Resolve and check the configured principals.
    ///
    /// # Errors
    /// A message naming the principal and the problem (bad or missing hash,
    /// a repeated name or token).
    pub fn from_config(configs: &[PrincipalConfig]) -> Result<Principals, crate::DetectorError> {
        let mut out: Vec<Principal> = Vec::with_capacity(configs.len());
        for c in configs {
            if c.name.trim().is_empty() || c.name.len() > 64 || c.name.chars().any(char::is_control) {
                return Err(setting!("server.principals: name `{}` must be 1 to 64 printable characters", c.name));
            }
            let p = c.resolve()?;
            if out.iter().any(|o| o.name == p.name) {
                return Err(setting!("server.principals: the name `{}` is used twice", p.name));
            }
            if let Some(o) = out.iter().find(|o| o.hash == p.hash) {
                return Err(setting!("server.principals `{}` and `{}` have the same token hash", o.name, p.name));
            }
            out.push(p);
        }
        Ok(Principals(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The principal holding `token`, comparing against every hash in constant time.
    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for p in &self.0 {
            // No early exit: every hash is compared whatever matched.
            if bool::from(presented.ct_eq(&p.hash)) {
                found = Some(p);
            }
        }
        found
    }

    /// Who is calling, and may they do `access`? With no principals
    /// configured, everyone is the anonymous admin.
    ///
    /// # Errors
    /// [`Denied`].
    pub fn authorize(&self, authorization: Option<&str>, access: Option<Access>) -> Result<Principal, Denied> {
        if self.is_empty() {
            return Ok(Principal::anonymous());
        }
        // The scheme is case-insensitive (RFC 7235); the token is not.
        let token = authorization
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty());
        let p = token.and_then(|t| self.authenticate(t)).ok_or(Denied::Unauthenticated)?;
        match access {
            Some(a) if p.role.allows(a) => Ok(p.clone()),
            _ => Err(Denied::Forbidden),
        }
    }
}

/// Hex SHA-256 of a token, as `token_sha256` wants it.
pub fn token_sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(name: &str, role: Role, token: &str) -> PrincipalConfig {
        PrincipalConfig { name: name.into(), role, token_sha256: Some(token_sha256_hex(token)), token_sha256_env: None, token_sha256_file: None }
    }

    #[test]
    fn the_hash_matches_sha256sum() {
        // printf %s abc | sha256sum
        assert_eq!(token_sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn tokens_map_to_principals_and_roles_to_access() {
        let ps = Principals::from_config(&[principal("pipe", Role::Ingest, "t-ingest"), principal("kim", Role::Analyst, "t-analyst"), principal("lee", Role::Auditor, "t-audit")]).unwrap();
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(ps.authorize(None, Some(Access::Ingest)), Err(Denied::Unauthenticated));
        assert_eq!(ps.authorize(Some(&bearer("nope")), Some(Access::Ingest)), Err(Denied::Unauthenticated));
        assert_eq!(ps.authorize(Some("t-ingest"), Some(Access::Ingest)), Err(Denied::Unauthenticated), "not a bearer header");
        assert_eq!(ps.authorize(Some(&bearer("t-ingest")), Some(Access::Ingest)).unwrap().name, "pipe");
        assert_eq!(ps.authorize(Some("bearer t-ingest"), Some(Access::Ingest)).unwrap().name, "pipe");
        assert_eq!(ps.authorize(Some("Bearer T-INGEST"), Some(Access::Ingest)), Err(Denied::Unauthenticated));
        assert_eq!(access_for(&axum::http::Method::HEAD, "/v1/blocks"), Some(Access::Investigate));
        assert_eq!(access_for(&axum::http::Method::DELETE, "/v1/alerts"), None);
        assert_eq!(ps.authorize(Some(&bearer("t-ingest")), Some(Access::ChangeBlocks)), Err(Denied::Forbidden));
        assert_eq!(ps.authorize(Some(&bearer("t-analyst")), Some(Access::ChangeBlocks)).unwrap().name, "kim");
        assert_eq!(ps.authorize(Some(&bearer("t-analyst")), Some(Access::Administer)), Err(Denied::Forbidden));
        assert_eq!(ps.authorize(Some(&bearer("t-analyst")), Some(Access::Audit)), Err(Denied::Forbidden));
        assert_eq!(ps.authorize(Some(&bearer("t-analyst")), Some(Access::Ingest)), Err(Denied::Forbidden), "analysts do not feed the pipeline");
        assert_eq!(ps.authorize(Some(&bearer("t-audit")), Some(Access::Audit)).unwrap().role, Role::Auditor);
        assert_eq!(ps.authorize(Some(&bearer("t-audit")), Some(Access::Ingest)), Err(Denied::Forbidden));
        assert_eq!(ps.authorize(Some(&bearer("t-audit")), None), Err(Denied::Forbidden));
        assert_eq!(Principals::default().authorize(None, None).unwrap().name, "anonymous");
    }

    #[test]
    fn bad_principals_are_named() {
        let mut bad = principal("x", Role::Admin, "t");
        bad.token_sha256 = Some("abc".into());
        assert!(Principals::from_config(&[bad.clone()]).unwrap_err().to_string().contains("64 hex digits"));
        bad.token_sha256 = None;
        assert!(Principals::from_config(&[bad.clone()]).unwrap_err().to_string().contains("needs one of"));
        bad.token_sha256_env = Some("HAECHI_TEST_NO_SUCH_VAR_31337".into());
        assert!(Principals::from_config(&[bad]).unwrap_err().to_string().contains("HAECHI_TEST_NO_SUCH_VAR_31337"));
        let e = Principals::from_config(&[principal("a", Role::Admin, "t1"), principal("a", Role::Ingest, "t2")]).unwrap_err().to_string();
        assert!(e.contains("used twice"), "{e}");
        let e = Principals::from_config(&[principal("a", Role::Admin, "t1"), principal("b", Role::Ingest, "t1")]).unwrap_err().to_string();
        assert!(e.contains("same token hash"), "{e}");
    }

    #[test]
    fn a_hash_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hash");
        std::fs::write(&f, format!("{}\n", token_sha256_hex("from-file"))).unwrap();
        let c = PrincipalConfig { name: "f".into(), role: Role::Auditor, token_sha256: None, token_sha256_env: None, token_sha256_file: Some(f) };
        let ps = Principals::from_config(&[c]).unwrap();
        assert_eq!(ps.authenticate("from-file").unwrap().name, "f");
    }
}
