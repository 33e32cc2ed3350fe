//! Helpers for the end-to-end tests in `tests/tests/`: finding (or building)
//! the real `haechi` binary and running it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Path of the `haechi` binary of the same build profile as the running test.
/// `cargo test --workspace` builds it; if it is missing, build it once.
pub fn haechi_bin() -> PathBuf {
    // target/<profile>/deps/<test-exe> → target/<profile>/haechi
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>").to_path_buf();
    let bin = profile_dir.join(format!("haechi{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "-p", "haechi-detector", "--bin", "haechi"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "building haechi failed");
    }
    bin
}

/// A pack of one rule whose one test expects the wrong answer.
pub fn failing_pack(dir: &std::path::Path) -> std::path::PathBuf {
    let pack = dir.join("pack");
    std::fs::create_dir(&pack).unwrap();
    std::fs::write(
        pack.join("mine.yaml"),
        r#"rules:
  - id: many_failures
    description: a test that expects the wrong answer
    severity: low
    when: event.result == "failure"
    action: alert
    tests:
      - name: a failure does not fire (wrong on purpose)
        events:
          - {step: otp, result: failure, customer_id: c1}
        expect: no_fire
"#,
    )
    .unwrap();
    pack
}

/// Run `haechi` with `args`, feeding `stdin`.
pub fn run_haechi(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(haechi_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting haechi");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("haechi output");
    writer.join().expect("stdin writer");
    out
}

/// Run `haechi` with `args` and its standard output closed from the start,
/// as when piped into a reader that stopped (`| head`).
pub fn run_haechi_into_closed_pipe<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    let mut child = Command::new(haechi_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting haechi");
    drop(child.stdout.take());
    child.wait_with_output().expect("haechi output")
}

/// The repository root (for the shipped sample data).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// Parse NDJSON output into values.
pub fn ndjson(bytes: &[u8]) -> Vec<serde_json::Value> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("bad output line {e}: {}", String::from_utf8_lossy(l))))
        .collect()
}

/// A running `haechi serve`, stopped (SIGTERM) when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub base: String,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
    /// The data dir made for a server started without `--data-dir` or
    /// `--memory-only`: tests run in parallel, each on its own.
    _data: Option<tempfile::TempDir>,
}

impl Server {
    /// Start `haechi serve` on a free port with `args`, and wait for it to listen.
    pub fn start(args: &[&str]) -> Server {
        Server::try_start(args).unwrap_or_else(|log| panic!("server did not start:\n{log}"))
    }

    /// Start, or return what it printed if it exited instead.
    pub fn try_start(args: &[&str]) -> Result<Server, String> {
        Server::try_start_serving(args, &["--listen", "127.0.0.1:0"])
    }

    /// Start `haechi ARGS serve SERVE_ARGS` (give `--listen` yourself), or
    /// return what it printed if it exited instead.
    pub fn try_start_serving(args: &[&str], serve_args: &[&str]) -> Result<Server, String> {
        use std::io::BufRead;
        let data = (!serve_args.iter().any(|a| *a == "--data-dir" || *a == "--memory-only")).then(|| tempfile::tempdir().expect("a temporary data dir"));
        let mut child = Command::new(haechi_bin())
            .args(args)
            .arg("serve")
            .args(serve_args)
            .args(data.iter().flat_map(|d| [std::ffi::OsStr::new("--data-dir"), d.path().as_os_str()]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting haechi serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(addr) => {
                // `https://host:port` when serving TLS, else `host:port`; a
                // wildcard address is reached over loopback.
                let base = if addr.starts_with("https://") { addr } else { format!("http://{addr}") };
                Ok(Server { child, base: base.replace("0.0.0.0", "127.0.0.1"), log, _data: data })
            }
            Err(_) => {
                let _ = child.wait();
                std::thread::sleep(std::time::Duration::from_millis(100));
                Err(log.lock().unwrap().clone())
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Send SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let status = self.terminate();
        std::mem::forget(self);
        status
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().expect("server exit")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// An HTTP agent that returns error statuses as responses, with a timeout,
/// and a new connection for every request. The server may close a
/// connection after refusing a request whose body it did not read (a 401 or
/// 403 before the body arrived), and a pooled connection is then dead; which
/// one wins that race depends on scheduling, so a test that reused it failed
/// now and then ("Peer disconnected" on the next request).
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(0)
        .timeout_global(Some(std::time::Duration::from_secs(20)))
        .build()
        .into()
}

/// An HTTPS agent trusting only `root` (a DER certificate), with a timeout;
/// a new connection for every request, as [`http`] says why.
pub fn https(root: &[u8]) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let roots = RootCerts::Specific(std::sync::Arc::new(vec![Certificate::from_der(root).to_owned()]));
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(0)
        .timeout_global(Some(std::time::Duration::from_secs(20)))
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build()
        .into()
}

/// (status, body) of a request.
pub fn send(agent: &ureq::Agent, method: &str, url: &str, body: Option<&[u8]>) -> (u16, String) {
    send_as(agent, None, method, url, body)
}

/// (status, body) of a request with `Authorization: Bearer TOKEN` when a token is given.
pub fn send_as(agent: &ureq::Agent, token: Option<&str>, method: &str, url: &str, body: Option<&[u8]>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let auth = auth.as_deref();
    macro_rules! with_auth {
        ($req:expr) => {
            match auth {
                Some(a) => $req.header("Authorization", a),
                None => $req,
            }
        };
    }
    let mut res = match (method, body) {
        ("GET", _) => with_auth!(agent.get(url)).call(),
        ("DELETE", _) => with_auth!(agent.delete(url)).call(),
        ("POST", Some(b)) => with_auth!(agent.post(url)).send(b),
        ("POST", None) => with_auth!(agent.post(url)).send_empty(),
        _ => panic!("unsupported {method}"),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = res.status().as_u16();
    let text = res.body_mut().with_config().limit(64 << 20).read_to_string().unwrap_or_default();
    (status, text)
}

/// Hex SHA-256 of a token, as `token_sha256` wants it (`printf %s TOKEN | sha256sum`).
pub fn sha256_hex(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A `[[server.principals]]` entry of a test configuration.
pub fn principal(name: &str, role: &str, token: &str) -> String {
    format!("[[server.principals]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = \"{}\"\n", sha256_hex(token))
}

/// A rule pack of one rule that blocks an address once three new identities onboard through it.
pub const NEW_IDENTITIES_RULE: &str = "rules:\n  - id: many_new_identities_on_one_address\n    description: several new identities onboarding through one address\n    severity: high\n    when: features.event.onboarding_step == 1.0 && features.ip.distinct_new_identities_24h >= 3.0\n    action: block\n    scope: ip\n    ttl: 1h\n";

/// New identities `ks` onboarding through `ip` in the last minute, 100 ms apart (event ids
/// `{prefix}{k}`), as NDJSON.
pub fn onboarding(prefix: &str, ip: &str, ks: std::ops::Range<usize>) -> String {
    let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64 - 60_000;
    ks.map(|k| {
        let ts = haechi_features::format_rfc3339_ms(t0 + k as i64 * 100);
        format!(
            "{{\"event_id\":\"{prefix}{k}\",\"ts\":\"{ts}\",\"step\":\"id_ocr\",\"result\":\"success\",\"customer_id\":\"new{k}\",\"session_id\":\"s{k}\",\"device_id\":\"d{k}\",\"id_doc_hash\":\"doc{k}\",\"ip\":\"{ip}\"}}\n"
        )
    })
    .collect()
}

/// Write, in `dir`, a configuration with [`NEW_IDENTITIES_RULE`] as the only rule, no model, no
/// file watching, and these principals (name, role, token); its path.
pub fn new_identities_config(dir: &Path, principals: &[(&str, &str, &str)]) -> PathBuf {
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, NEW_IDENTITIES_RULE).expect("writing the rule file");
    let cfg = dir.join("haechi.toml");
    let who: String = principals.iter().map(|(name, role, token)| principal(name, role, token)).collect();
    // A fresh service has no day of history yet, and would challenge instead
    // of blocking the address (`cold_start_challenge`); these tests are about
    // what happens to the block.
    std::fs::write(
        &cfg,
        format!("[server]\nwatch_files = false\n[rules]\npath = \"{}\"\n[model]\nenabled = false\n[blocks]\ncold_start_challenge = false\n{who}", rules.display()),
    )
    .expect("writing the configuration");
    cfg
}
