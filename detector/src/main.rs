//! The `haechi` binary: parses arguments, loads configuration, and calls the library.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use haechi_alerting::{AlertSink, NdjsonSink};
use haechi_datasets::{generate, write_ndjson, GenConfig, ScenarioSpec, WorldSpec};
use haechi_detector::{replay, Config, Pipeline, ReplayOutputs};
use haechi_rules::{RuleSet, RulesError};
use haechi_detector::train::fit_model;
use haechi_training::{read_csv, IsolationForestParams, LabelColumn, ModelFile, Threshold};

/// `println!` that returns the write's error instead of panicking: a report
/// piped into `head` meets a closed pipe, and `main` ends quietly on it.
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(io::stdout().lock(), $($arg)*)
    };
}

/// Events are parsed on one thread and freed on another, which glibc's
/// arenas serve slowly (BENCHMARKS.md, "Throughput, a later session").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "haechi", version, about = "Haechi: live fraud detection for eKYC (비대면 실명확인) pipelines")]
struct Cli {
    /// Configuration file (TOML); every setting has a default.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Rule file or directory (overrides the configuration; default: the shipped pack).
    #[arg(long, global = true)]
    rules: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run NDJSON events (a file, or - for stdin) through the pipeline in event-time order.
    Replay {
        /// Input NDJSON, or - for stdin.
        input: String,
        /// Where decisions go (default stdout).
        #[arg(long)]
        decisions: Option<PathBuf>,
        /// Where alerts go, NDJSON.
        #[arg(long)]
        alerts: Option<PathBuf>,
        /// Learn from these past events first (features; nothing blocked or alerted; a staff night the rules would have refused is kept out of the habit).
        #[arg(long)]
        warm_from: Option<PathBuf>,
    },
    /// Serve the HTTP API: decisions, blocks, the live alert feed and metrics.
    Serve {
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<String>,
        /// Learn from these past events before serving (features; nothing blocked or alerted; a staff night the rules would have refused is kept out of the habit).
        #[arg(long)]
        warm_from: Option<PathBuf>,
        /// Allow a non-loopback address with no [[server.principals]]: the API open to anyone who can reach it.
        #[arg(long)]
        insecure: bool,
        /// Serve with the built-in, public entity-hash key or data key on a
        /// non-loopback address (anyone can aim hash collisions at the
        /// feature store, or read a copy of the data dir).
        #[arg(long)]
        allow_demo_key: bool,
        /// Keep the ingest log, snapshots, alerts, blocks and audit log here
        /// (overrides storage.data_dir; default ./haechi-data).
        #[arg(long, conflicts_with = "memory_only")]
        data_dir: Option<PathBuf>,
        /// Keep nothing on disk: a restart starts empty (tests, throwaway demos).
        #[arg(long)]
        memory_only: bool,
    },
    /// Write labelled synthetic eKYC traffic, sorted by event time.
    Generate {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(long, default_value_t = 2000)]
        customers: usize,
        #[arg(long, default_value_t = 12)]
        staff: usize,
        /// Events file (NDJSON).
        #[arg(long)]
        out: PathBuf,
        /// Labels file (NDJSON), one line per attack event.
        #[arg(long)]
        labels: PathBuf,
        /// Attack to play, as NAME, NAME:STRENGTH or NAME:LO-HI (strength 0..1); repeatable. Default: all.
        #[arg(long = "scenario")]
        scenarios: Vec<ScenarioSpec>,
        /// Incidents per scenario (default: two per day, at least three).
        #[arg(long)]
        incidents: Option<u32>,
        /// The world's structure: `fixed` (the one world) or `random` (drawn from --world-seed).
        #[arg(long, default_value = "fixed", value_parser = ["fixed", "random"])]
        world: String,
        #[arg(long, default_value_t = 1)]
        world_seed: u64,
        /// Write the world's structure (WorldSpec) here as JSON.
        #[arg(long)]
        world_out: Option<PathBuf>,
    },
    /// Rule files: check, run their tests, backtest them on past traffic.
    Rules {
        #[command(subcommand)]
        what: RulesCommand,
    },
    /// The isolation forest: fit on a CSV, score a CSV.
    Model {
        #[command(subcommand)]
        what: ModelCommand,
    },
    /// Fit the isolation forest on the feature vectors the detector sees for EVENTS.
    Train {
        /// Events to learn from (NDJSON); or use --worlds.
        events: Option<PathBuf>,
        /// Learn from drawn worlds instead: FIRST:COUNT world seeds (e.g. 1:20).
        #[arg(long)]
        worlds: Option<String>,
        /// Customers per drawn world.
        #[arg(long, default_value_t = 4000)]
        customers: usize,
        /// Only the features that are relative to their traffic (see train::NORMALIZED_FEATURES).
        #[arg(long)]
        normalized: bool,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 100)]
        trees: usize,
        #[arg(long, default_value_t = 256)]
        sample: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of training events expected to be anomalies; sets the threshold.
        #[arg(long, default_value_t = 0.001)]
        contamination: f64,
        /// Feature vectors kept for fitting (uniform sample of the stream).
        #[arg(long, default_value_t = 200_000)]
        max_rows: usize,
        /// The analysts' judgements (`GET /v1/labels`): events behind confirmed alerts are left
        /// out of what the forest learns as normal, those behind refuted ones kept in it.
        #[arg(long)]
        floor_labels: Option<PathBuf>,
    },
    /// Benchmarks that need a whole store: memory under a key spray, bytes per entity.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// The management report of a period, from the access records, beside the period before it
    /// (the read is recorded). Needs the data dir to itself: while the service runs, use
    /// `GET /v1/reports/summary`.
    Report {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Event time from, RFC 3339.
        #[arg(long)]
        from: String,
        /// Event time to (exclusive), RFC 3339.
        #[arg(long)]
        to: String,
        /// json, csv or html (one self-contained page with charts).
        #[arg(long, default_value = "json")]
        format: String,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The access records: verify the chain, or read (the read is recorded).
    Records {
        #[command(subcommand)]
        what: RecordsCommand,
    },
    /// Fluvio topics: create them, fill one from a file, read one out.
    Fluvio {
        /// The cluster's SC, host:port.
        #[arg(long, default_value = "127.0.0.1:9003")]
        endpoint: String,
        #[command(subcommand)]
        what: FluvioCommand,
    },
    /// The data key ring that seals the data dir.
    Keys {
        #[command(subcommand)]
        what: KeysCommand,
    },
    /// Score decisions against labels: per attack type and overall.
    Eval {
        /// Events file (NDJSON).
        events: PathBuf,
        /// Labels file (NDJSON).
        labels: PathBuf,
        /// Decisions file (NDJSON); omit with --replay.
        decisions: Option<PathBuf>,
        /// Run the pipeline on EVENTS instead of reading decisions.
        #[arg(long)]
        replay: bool,
        /// Print the scoreboard as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RecordsCommand {
    /// Walk every segment and archive; exit 0 when intact, else name the first bad record.
    Verify {
        /// The data dir (default: storage.data_dir, else ./haechi-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print matching records as NDJSON; the read is recorded under your login name.
    /// Needs the data dir to itself: while the service runs, use `GET /v1/records`.
    Query {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        customer_id: Option<String>,
        /// Event time from, RFC 3339.
        #[arg(long)]
        from: Option<String>,
        /// Event time to (exclusive), RFC 3339.
        #[arg(long)]
        to: Option<String>,
        /// Record kinds, comma-separated (access, decision, alert, block, action, read, export, destruction).
        #[arg(long)]
        kind: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random key as a key ring line, `ID HEX`: the whole ring
    /// of a new key file, or a line to append to one to rotate (the last
    /// line seals new data; older lines keep what they sealed readable).
    New {
        /// The key's id, 1 to 32 characters of A-Z a-z 0-9 . _ - (default: today's date).
        #[arg(long)]
        id: Option<String>,
    },
}

#[derive(Subcommand)]
enum FluvioCommand {
    /// Create topics (NAME or NAME:PARTITIONS) that do not exist yet.
    CreateTopic { topics: Vec<String> },
    /// Produce an NDJSON file (or - for stdin) into a topic, one record per
    /// line, keyed by the event's customer (else its event id), so that one
    /// customer's events keep their order in one partition.
    Produce {
        #[arg(long)]
        topic: String,
        input: String,
    },
    /// Write a topic's records as NDJSON, deduplicated by key (the last
    /// record of each key), sorted by key; prints how many copies were read.
    Dump {
        #[arg(long)]
        topic: String,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate rule files; print every problem as file:line:col.
    Check { path: PathBuf },
    /// Run the tests written in the rule files: PATH, else the rules the
    /// configuration names (`--rules`, `[rules] path`), else the shipped pack.
    Test { path: Option<PathBuf> },
    /// Replay EVENTS in event time and report what each rule would have done.
    /// The rules to measure are the global `--rules` (default: the shipped pack).
    Backtest {
        /// Rules to compare against.
        #[arg(long)]
        baseline: Option<PathBuf>,
        events: PathBuf,
        labels: Option<PathBuf>,
        /// The analysts' judgements (`GET /v1/labels`, JSON or NDJSON): each rule, and the
        /// difference from the baseline, is scored against the alerts they confirmed or refuted.
        #[arg(long)]
        floor_labels: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Fit an isolation forest on a numeric CSV.
    Fit {
        #[arg(long)]
        csv: PathBuf,
        /// The label column to leave out: `last` or a column name.
        #[arg(long)]
        label: Option<LabelColumn>,
        #[arg(long, default_value_t = 100)]
        trees: usize,
        #[arg(long, default_value_t = 256)]
        sample: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 0.01)]
        contamination: f64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print one anomaly score per CSV row (higher = more anomalous).
    Score {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        csv: PathBuf,
        #[arg(long)]
        label: Option<LabelColumn>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Spray fresh IPs and devices and print memory as it goes.
    Spray {
        #[arg(long, default_value_t = 10_000_000)]
        keys: u64,
        /// Days of event time the spray covers.
        #[arg(long, default_value_t = 20)]
        days: u64,
        #[arg(long, default_value_t = 1_000_000)]
        every: u64,
    },
    /// Spray the pipeline in real time (event time = wall clock) with fresh
    /// IPv6 addresses, devices and sessions; print RSS as it goes and fail if
    /// it passes the budget.
    SprayLive {
        /// Events per second.
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Seconds between rows.
        #[arg(long, default_value_t = 30)]
        every: u64,
        /// Cap for ip, subnet, device and session entities (overrides features.max_entities).
        #[arg(long)]
        cap: Option<usize>,
        /// Fail if RSS ever passes this many MiB.
        #[arg(long)]
        budget_mib: Option<f64>,
    },
    /// Replay a stream and print bytes per live entity, by kind.
    Entities { input: String },
    /// What the access records cost alongside the full pipeline: the same stream replayed
    /// without and with recording, in alternating rounds; then verify speed, and bytes per
    /// event live and archived.
    Records {
        /// NDJSON events (e.g. from `haechi generate`).
        input: String,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// What the ingest log costs the live service: the real server on a
    /// loopback socket, memory-only and on a temporary data dir with each
    /// fsync mode, in one run. /v1/check latency at a fixed open-loop rate
    /// (from each request's due time), then /v1/events throughput.
    Ingest {
        /// /v1/check requests per second, all connections together.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Seconds of measured /v1/check load per mode; /v1/events runs half as long.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Events per /v1/events request.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Connections for /v1/check.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Seconds of /v1/check load at the same rate before measuring.
        #[arg(long, default_value_t = 1)]
        warmup: u64,
        /// Only these modes, in this order: memory, never, interval, always (default: all four).
        #[arg(long, value_delimiter = ',')]
        modes: Vec<String>,
        /// Rounds of all modes, interleaved; the summary gives each mode's median.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Snapshot cost and restart-to-ready on a data dir: fill it to ENTITIES
    /// live entities, snapshot, add TAIL events after the snapshot, stop
    /// without a final snapshot, and time a start (in a fresh process).
    Restart {
        #[arg(long, default_value_t = 1_000_000)]
        entities: usize,
        #[arg(long, default_value_t = 1_000_000)]
        tail: u64,
        /// Use this (empty or new) data dir and keep it; default: a temporary one, removed.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Write the data dir unencrypted, to compare with a sealed run.
        #[arg(long)]
        unsealed: bool,
    },
    /// One start of `bench restart`, in its own process: prints a JSON line.
    #[command(hide = true)]
    RestartProbe {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        entities: usize,
        #[arg(long)]
        snapshot_after: bool,
        #[arg(long)]
        unsealed: bool,
    },
    /// Detection over drawn worlds: generate each, decide it with the whole
    /// pipeline, score it; per world, per attack type, and the worst world.
    Worlds {
        /// First world seed.
        #[arg(long, default_value_t = 1000)]
        from: u64,
        /// Number of worlds (seeds from, from+1, ...).
        #[arg(long, default_value_t = 50)]
        count: u64,
        #[arg(long, default_value_t = 4000)]
        customers: usize,
        #[arg(long, default_value_t = 3)]
        days: u32,
        /// Worker threads (one world each at a time).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// A model file instead of the shipped model.
        #[arg(long)]
        model: Option<PathBuf>,
        /// What the model's findings do: alert (the default) or challenge.
        #[arg(long)]
        model_action: Option<String>,
        /// Rewrite each world's events as another pipeline might report them.
        #[arg(long, value_enum, default_value_t)]
        reporting: haechi_detector::worlds::Reporting,
        #[arg(long)]
        json: bool,
    },
}

/// A latency for the tables: µs below 10 ms, ms above.
fn fmt_latency(d: std::time::Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10_000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.1} ms", us / 1000.0)
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// `haechi bench restart`: prepare the data dir here, then time each start
/// in a fresh process of this binary (`bench restart-probe`), so that its
/// time and peak memory are a start's alone.
fn bench_restart(config: &Config, config_path: Option<&Path>, rules: Option<&Path>, entities: usize, tail: u64, data_dir: Option<PathBuf>, unsealed: bool) -> Result<()> {
    use haechi_detector::bench::restart;
    // Rows are written as far as the reader reads (`_ = outln!`): the checks
    // at the end are the verdict, closed pipe or not.
    let temp = match &data_dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("haechi-bench-restart-").tempdir()?),
    };
    let dir = match (&data_dir, &temp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().join("data"),
        (None, None) => unreachable!(),
    };
    let (mut config, raised) = restart::restart_config(config, &dir, entities);
    config.storage.unsealed = unsealed;
    let sealing = match haechi_detector::service::data_keys(&config)? {
        _ if unsealed => "unsealed".to_owned(),
        Some((ring, source)) => format!("sealed with key {:?} ({source:?})", ring.active_id()),
        None => "unsealed".to_owned(),
    };
    let m = config.features.max_entities;
    _ = outln!(
        "data dir {}{}, {sealing}; fsync {:?}; caps customer {} ip {} subnet {} device {} session {}{}",
        dir.display(),
        if temp.is_some() { " (temporary)" } else { "" },
        config.storage.fsync,
        m.customer,
        m.ip,
        m.subnet,
        m.device,
        m.session,
        if raised.is_empty() { String::new() } else { format!(" (raised for this run: {})", raised.join(", ")) }
    );
    let before = restart::prepare(&config, entities, tail, |line| eprintln!("{line}"))?;
    let total = |e: &[usize]| e.iter().sum::<usize>();
    let kinds = |e: &[usize; haechi_features::KIND_COUNT]| {
        haechi_features::EntityKind::ALL.iter().zip(e).filter(|(_, n)| **n > 0).map(|(k, n)| format!("{} {n}", k.as_str())).collect::<Vec<_>>().join(", ")
    };
    let s = &before.snapshot;
    _ = outln!(
        "fill: {} events in {:.1}s ({:.0} events/s), {} live entities ({}), {} evicted, {} refused",
        before.fill.events,
        before.fill.busy.as_secs_f64(),
        before.fill.events as f64 / before.fill.busy.as_secs_f64(),
        total(&before.entities),
        kinds(&before.entities),
        before.evicted,
        before.fill.refused
    );
    _ = outln!(
        "snapshot: {:.1} MiB, {} entities, paused {:.0} ms (ingestion blocked while copied), written {:.0} ms (encode + write, ingestion running)",
        mib(s.bytes),
        s.entities,
        s.paused.as_secs_f64() * 1000.0,
        s.written.as_secs_f64() * 1000.0
    );
    _ = outln!(
        "tail: {} events after the snapshot in {:.1}s ({:.0} events/s through accept), {} refused; {} live entities; log next offset {}; RSS {:.0} MiB",
        before.tail.events,
        before.tail.busy.as_secs_f64(),
        before.tail.events as f64 / before.tail.busy.as_secs_f64().max(1e-9),
        before.tail.refused,
        total(&before.entities_after_tail),
        before.log_next_offset,
        mib(before.rss_bytes)
    );
    _ = outln!("stopped without a final snapshot; starting again in a fresh process:");
    let exe = std::env::current_exe()?;
    let run_probe = |snapshot_after: bool| -> Result<restart::Probe> {
        let mut cmd = std::process::Command::new(&exe);
        if let Some(c) = config_path {
            cmd.arg("--config").arg(c);
        }
        if let Some(r) = rules {
            cmd.arg("--rules").arg(r);
        }
        cmd.args(["bench", "restart-probe", "--data-dir"]).arg(&dir).arg("--entities").arg(entities.to_string());
        if snapshot_after {
            cmd.arg("--snapshot-after");
        }
        if unsealed {
            cmd.arg("--unsealed");
        }
        let out = cmd.stderr(std::process::Stdio::inherit()).output()?;
        if !out.status.success() {
            anyhow::bail!("the restart probe failed ({})", out.status);
        }
        let line = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(line.trim()).with_context(|| format!("the restart probe printed `{}`", line.trim()))
    };
    _ = outln!("| start | restart-to-ready | events replayed | entities after (before) | RSS when ready | peak RSS |");
    _ = outln!("|---|---|---|---|---|---|");
    let row = |what: &str, p: &restart::Probe| {
        let same = if p.entities == before.entities_after_tail { "" } else { " MISMATCH" };
        _ = outln!(
            "| {what} | {:.2} s | {} | {} ({}){same} | {:.0} MiB | {:.0} MiB |",
            p.ready_ms / 1000.0,
            p.replayed,
            total(&p.entities),
            total(&before.entities_after_tail),
            mib(p.rss_bytes),
            mib(p.peak_rss_bytes)
        );
    };
    let with_tail = run_probe(true)?;
    row(&format!("snapshot + {} events of log tail", with_tail.replayed), &with_tail);
    let alone = run_probe(false)?;
    row("snapshot alone (tail 0)", &alone);
    if let (Some(b), Some(p), Some(w)) = (with_tail.snapshot_bytes, with_tail.snapshot_paused_ms, with_tail.snapshot_written_ms) {
        // Not `?`: the check below is the verdict, closed pipe or not.
        _ = outln!("(the tail-0 start loads a snapshot written after the first start: {:.1} MiB, paused {p:.0} ms, written {w:.0} ms)", mib(b));
    }
    if with_tail.entities != before.entities_after_tail || alone.entities != before.entities_after_tail {
        anyhow::bail!("a restart did not find the entities the state held before it");
    }
    drop(temp);
    Ok(())
}

fn warm_pipeline(pipeline: &Pipeline, path: &Path) -> Result<()> {
    let mut input = open_input(&path.to_string_lossy())?;
    let mut errors = BufWriter::new(io::stderr().lock());
    let summary = haechi_detector::warm(pipeline, &mut input, &mut errors)?;
    writeln!(errors, "warmed from {}: {} events learned, {} rejected, in {:.2}s", path.display(), summary.accepted, summary.rejected_total(), summary.elapsed.as_secs_f64())?;
    Ok(())
}

fn serve(config: Config, warm_from: Option<PathBuf>, exposure_warning: Option<String>) -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    if let Some(w) = exposure_warning {
        tracing::warn!("{w}");
    }
    match config.features.hash_key()?.1 {
        source if source.is_demo() => tracing::warn!("entity hashes use the built-in demo key, which is public: set {} or features.hash_key_file outside a demo", config.features.hash_key_env),
        source => tracing::info!(%source, "entity-hash key"),
    }
    match haechi_detector::service::data_keys(&config)? {
        Some((_, haechi_records::KeySource::Demo)) => tracing::warn!(
            "the data dir is encrypted with the built-in demo data key, which is public: anyone with a copy of it can read it. \
             Outside a demo, create a key with `haechi keys new` and set [records] key_file (or key_env), outside the data dir"
        ),
        Some((ring, source)) => tracing::info!(
            from = %match source {
                haechi_records::KeySource::Env => format!("${}", config.records.key_env.as_deref().unwrap_or_default()),
                _ => config.records.key_file.as_ref().map(|f| f.display().to_string()).unwrap_or_default(),
            },
            active = ring.active_id(),
            keys = ring.ids().count(),
            "data key ring: the data dir is sealed"
        ),
        None => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let state = haechi_detector::service::build_state(config.clone())?;
        if let (Some(_), Some(data)) = (&warm_from, &state.data) {
            if state.metrics.recovered_events.get() > 0 || data.log().first_offset() > 0 || state.pipeline.store().watermark_ms().is_some() {
                anyhow::bail!(
                    "--warm-from: the data dir {} already holds state; warming it again would count that history twice. \
                     Warm a new data dir, or start without --warm-from",
                    data.path().display()
                );
            }
        }
        if let Some(path) = &warm_from {
            let (p, path) = (state.pipeline.clone(), path.clone());
            tokio::task::spawn_blocking(move || warm_pipeline(&p, &path)).await??;
        }
        // Installed before the port is announced: a supervisor or script that
        // sends SIGTERM as soon as it reads that line must get a graceful stop,
        // not the default action (an exit with nothing flushed).
        #[cfg(unix)]
        let mut stop_signals = {
            use tokio::signal::unix::{signal, SignalKind};
            (signal(SignalKind::interrupt()).context("installing the SIGINT handler")?, signal(SignalKind::terminate()).context("installing the SIGTERM handler")?)
        };
        let listener = tokio::net::TcpListener::bind(&config.server.listen).await.with_context(|| format!("binding {}", config.server.listen))?;
        // Tests and scripts read this line to learn the port (and the scheme, when HTTPS).
        if state.tls.is_some() {
            eprintln!("listening on https://{}", listener.local_addr()?);
        } else {
            eprintln!("listening on {}", listener.local_addr()?);
        }
        match state.audit.path() {
            Some(p) => tracing::info!(path = %p.display(), "audit log"),
            None => tracing::warn!("audit log in memory only: set server.audit_log (or blocks.state_file) to keep it"),
        }
        let shutdown = tokio_util::sync::CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            tokio::select! {
                _ = stop_signals.0.recv() => {}
                _ = stop_signals.1.recv() => {}
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down: draining requests and flushing state");
            token.cancel();
        });
        if warm_from.is_some() && state.data.is_some() {
            // The warmed profiles are not in the ingest log: keep them in a snapshot.
            haechi_detector::service::snapshot_now(&state).await;
        }
        haechi_detector::service::run(listener, state, shutdown).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The model key from `[model]`, if configured.
fn model_key(config: &Config) -> Result<Option<haechi_training::ModelKey>> {
    config.model.mac_key().map_err(|m| anyhow::anyhow!("configuration: {m}"))
}

/// Sign with the key, if one is configured, and save.
fn save_model(key: Option<haechi_training::ModelKey>, file: &mut ModelFile, out: &Path) -> Result<&'static str> {
    let signed = match key {
        Some(key) => {
            file.sign(&key);
            "signed"
        }
        None => "unsigned: no model key configured",
    };
    file.save(out)?;
    Ok(signed)
}

/// `haechi serve` on an address others can reach needs a secret hash key.
fn check_hash_key(config: &Config, allow_demo_key: bool) -> Result<()> {
    let (_, source) = config.features.hash_key()?;
    let addr: std::net::SocketAddr = config.server.listen.parse().with_context(|| format!("server.listen = {}", config.server.listen))?;
    if source.is_demo() && !addr.ip().is_loopback() && !allow_demo_key {
        anyhow::bail!(
            "refusing to serve on {addr} with the built-in entity-hash key: it is public, so anyone could aim hash collisions at the feature store. \
             Set a secret 128-bit key shared by every replica: `export {}=$(openssl rand -hex 16)`, or [features] hash_key_file. \
             (For a demo, listen on 127.0.0.1 or pass --allow-demo-key.)",
            if config.features.hash_key_env.is_empty() { "HAECHI_HASH_KEY" } else { config.features.hash_key_env.as_str() }
        );
    }
    Ok(())
}

/// `haechi serve` on an address others can reach must not seal its data dir
/// with the built-in data key: a copy of the data dir would then reveal
/// every customer, device and address in it.
fn check_data_key(config: &Config, allow_demo_key: bool) -> Result<()> {
    let Some((_, source)) = haechi_detector::service::data_keys(config)? else { return Ok(()) };
    let addr: std::net::SocketAddr = config.server.listen.parse().with_context(|| format!("server.listen = {}", config.server.listen))?;
    if source == haechi_records::KeySource::Demo && !addr.ip().is_loopback() && !allow_demo_key {
        anyhow::bail!(
            "refusing to serve on {addr} with the data dir encrypted with the built-in data key: it is public, so a copy of the data dir would reveal \
             every customer id, address and device in it. Create a key ring outside the data dir: `haechi keys new > /etc/haechi/data.key` \
             (mode 0600) and set [records] key_file = \"/etc/haechi/data.key\" (or key_env). \
             (For a demo, listen on 127.0.0.1 or pass --allow-demo-key.)"
        );
    }
    Ok(())
}

/// `haechi keys new`: one key ring line on stdout, advice on stderr.
fn keys_cmd(what: KeysCommand) -> Result<()> {
    match what {
        KeysCommand::New { id } => {
            let id = id.unwrap_or_else(|| haechi_features::format_rfc3339_ms(haechi_detector::enforce::now_ms())[..10].to_owned());
            // Checked as a key file's ids are, so that a bad id fails now rather than at start.
            if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                anyhow::bail!("--id {id:?}: a key id is 1 to 32 characters of A-Z a-z 0-9 . _ -");
            }
            let line = haechi_storage::KeyRing::generate_line(&id);
            haechi_storage::KeyRing::parse(&line, "--id")?;
            // The key exists nowhere else: a reader that closed the pipe
            // before it is a failure, not the quiet end of a report.
            outln!("{line}").map_err(|e| anyhow::anyhow!("the new key could not be written to standard output: {e}"))?;
            eprintln!(
                "a new data key {id:?}: write it to a key file outside the data dir (mode 0600), or append it to the ring to rotate; \
                 then [records] key_file = \"/etc/haechi/data.key\". Keep every older line while data sealed with it is kept."
            );
            Ok(())
        }
    }
}

fn model_cmd(what: ModelCommand, config: &Config) -> Result<()> {
    match what {
        ModelCommand::Fit { csv, label, trees, sample, seed, contamination, out } => {
            // A misconfigured key stops us before the fit, not after.
            let key = model_key(config)?;
            let table = read_csv(&csv, &label.unwrap_or(LabelColumn::None))?;
            let params = IsolationForestParams::new().n_trees(trees).sample_size(sample).seed(seed).threshold(Threshold::Contamination(contamination));
            let mut file = fit_model(&table.features, table.names, &csv.display().to_string(), params)?;
            let signed = save_model(key, &mut file, &out)?;
            eprintln!("fitted {} trees on {} rows × {} features; threshold {:.4}; wrote {} ({signed})", trees, table.features.nrows(), table.features.ncols(), file.threshold, out.display());
        }
        ModelCommand::Score { model, csv, label } => {
            let file = ModelFile::load_verified(&model, model_key(config)?.as_ref())?;
            let table = read_csv(&csv, &label.unwrap_or(LabelColumn::None))?;
            if table.features.ncols() != file.features.len() {
                anyhow::bail!("{} has {} feature columns, the model was fitted on {}", csv.display(), table.features.ncols(), file.features.len());
            }
            let m = file.model();
            let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
            let mut buf = ryu::Buffer::new();
            for row in table.features.rows() {
                let s = m.score_by(|f| row[f]);
                out.write_all(buf.format(s).as_bytes())?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

fn load_rules(path: Option<&Path>, catalog: &haechi_features::FeatureCatalog) -> Result<RuleSet, RulesError> {
    match path {
        Some(p) => RuleSet::load(p, catalog),
        None => RuleSet::default_pack(catalog),
    }
}

fn rules_cmd(what: RulesCommand, config: &Config) -> Result<()> {
    let catalog = haechi_features::FeatureCatalog::new(&config.features.validate()?);
    match what {
        RulesCommand::Check { path } => match RuleSet::load(&path, &catalog) {
            Ok(set) => {
                outln!("{}: {} rules, version {}", path.display(), set.rules().len(), set.version())?;
                Ok(())
            }
            Err(e) => {
                for d in e.diagnostics() {
                    eprintln!("{d}");
                }
                std::process::exit(1);
            }
        },
        RulesCommand::Test { path } => {
            // An analyst who names their pack with `--rules` must not get the
            // shipped pack's results back without noticing.
            let set = load_rules(path.as_deref().or(config.rules.path.as_deref()), &catalog)?;
            let results = haechi_rules::run_tests(&set, &config.features);
            let failed = results.iter().filter(|r| r.failure.is_some()).count();
            for r in &results {
                match &r.failure {
                    // A closed pipe must not turn failed tests into a
                    // quiet success: the exit code below is the verdict.
                    None => _ = outln!("ok    {} :: {}", r.rule, r.test),
                    Some(why) => _ = outln!("FAIL  {} :: {} ({}): {why}", r.rule, r.test, r.file),
                }
            }
            _ = outln!("{} passed, {} failed", results.len() - failed, failed);
            if failed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        RulesCommand::Backtest { baseline, events, labels, floor_labels, json } => {
            let config = config.clone();
            let labels: Option<Vec<haechi_datasets::Label>> = labels.as_deref().map(haechi_detector::evaluate::read_labels).transpose()?;
            let mut input = open_input(&events.to_string_lossy())?;
            let floor = floor_labels.as_deref().map(haechi_detector::backtest::read_floor_labels).transpose()?;
            let report = haechi_detector::backtest::backtest_with_floor(&config, baseline.as_deref(), &mut input, labels.as_deref(), floor.as_deref())?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                outln!("{report}")?;
            }
            Ok(())
        }
    }
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    })
}

fn open_input(path: &str) -> Result<Box<dyn BufRead>> {
    Ok(if path == "-" {
        Box::new(BufReader::with_capacity(1 << 16, io::stdin().lock()))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, File::open(path).with_context(|| format!("opening {path}"))?))
    })
}

fn create_output(path: Option<&Path>) -> Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::with_capacity(1 << 16, File::create(p).with_context(|| format!("creating {}", p.display()))?)),
        None => Box::new(BufWriter::with_capacity(1 << 16, io::stdout().lock())),
    })
}

/// Who reads records from the command line: the login name.
fn cli_actor() -> haechi_records::Actor {
    haechi_records::Actor { name: std::env::var("USER").unwrap_or_else(|_| "unknown".into()), role: "cli".into() }
}

/// Open a data dir's records for this process alone: the service appends to the same chains,
/// and one writer at a time keeps them whole.
fn open_records_alone(dir: &Path, config: &Config) -> Result<(haechi_records::Records, File)> {
    let lock = File::options().read(true).write(true).create(true).truncate(false).open(dir.join("LOCK")).with_context(|| format!("{}: not a data dir", dir.display()))?;
    lock.try_lock().map_err(|_| anyhow::anyhow!("{} is in use by a running service: read through the API (GET /v1/records, /v1/reports/summary)", dir.display()))?;
    let (ring, _) = config.records.key_ring(Some(dir))?;
    Ok((haechi_records::Records::open(dir, &config.records, &ring)?, lock))
}

fn records_cmd(what: RecordsCommand, config: &Config) -> Result<()> {
    use haechi_records::{Filter, RecordKind};
    let dir_of = |d: Option<PathBuf>| d.or_else(|| config.storage.data_dir.clone()).unwrap_or_else(|| PathBuf::from("haechi-data"));
    match what {
        RecordsCommand::Verify { data_dir } => {
            let dir = dir_of(data_dir);
            let (ring, _) = config.records.key_ring(Some(&dir))?;
            let checkpoints = config.records.checkpoint_dir.clone().unwrap_or_else(|| dir.join("records-checkpoints"));
            let started = std::time::Instant::now();
            let report = haechi_records::verify(&dir.join("records"), &checkpoints, &ring)?;
            let seconds = started.elapsed().as_secs_f64();
            // Not `?` before the verdict: a tampered chain must fail into a
            // closed pipe too.
            for (class, c) in &report.classes {
                let range = c.range.map_or("empty".to_owned(), |(a, b)| format!("records {a}..={b}"));
                _ = outln!("{:<11} {range}: {} records, {} live segments, {} archives, checkpoint {:?}", class.as_str(), c.records, c.segments, c.archives, c.checkpoint);
                for note in &c.notes {
                    _ = outln!("  note: {note}");
                }
            }
            eprintln!("verified {} records in {seconds:.3}s ({:.0} records/s)", report.records(), report.records() as f64 / seconds.max(1e-9));
            if report.intact() {
                outln!("intact")?;
                Ok(())
            } else {
                // Written as far as the reader reads; the error below is
                // the verdict, closed pipe or not.
                for p in &report.problems {
                    if outln!("TAMPERED: {p}").is_err() {
                        break;
                    }
                }
                anyhow::bail!("{} problem(s); the first: {}", report.problems.len(), report.problems[0])
            }
        }
        RecordsCommand::Query { data_dir, customer_id, from, to, kind } => {
            let dir = dir_of(data_dir);
            let (records, _lock) = open_records_alone(&dir, config)?;
            let time = |name: &str, t: Option<String>| t.map(|t| haechi_features::parse_rfc3339_ms(&t).with_context(|| format!("--{name}: not an RFC 3339 time"))).transpose();
            let kinds = kind.map(|k| k.split(',').map(|k| RecordKind::parse(k.trim()).with_context(|| format!("--kind: unknown kind {k:?}"))).collect::<Result<Vec<_>>>()).transpose()?.unwrap_or_default();
            if customer_id.as_deref().is_some_and(|c| haechi_features::find_resident_number(c).is_some()) {
                anyhow::bail!("--customer-id must be the bank's customer id, never a resident registration number");
            }
            let filter = Filter { customer_id, from_ms: time("from", from)?, to_ms: time("to", to)?, kinds, limit: 0 };
            let found = records.read(haechi_detector::enforce::now_ms(), cli_actor(), "haechi records query", &filter)?;
            records.checkpoint(haechi_detector::enforce::now_ms())?;
            let mut out = BufWriter::new(io::stdout().lock());
            for r in &found {
                serde_json::to_writer(&mut out, r)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            eprintln!("{} records (this read is recorded)", found.len());
            Ok(())
        }
    }
}

fn main() -> std::process::ExitCode {
    // mimalloc asks for transparent huge pages (madvise), and the kernel then
    // zeroes 2 MiB at a fault where the store's growth needed a few entities:
    // replay spent 8% of its CPU in the kernel zeroing pages and held 27%
    // more memory (BENCHMARKS.md, "Throughput, a fifth session"). Off before
    // the first large allocation; a kernel without the switch keeps its default.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `haechi replay big.jsonl | head`: the reader has what it wanted.
        Err(e) if e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)) => {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let mut config = load_config(cli.config.as_deref())?;
    if let Some(r) = cli.rules.clone() {
        config.rules.path = Some(r);
    }
    match cli.command {
        Command::Replay { input, decisions, alerts, warm_from } => {
            let pipeline = Pipeline::new(config)?;
            if let Some(path) = &warm_from {
                warm_pipeline(&pipeline, path)?;
            }
            let mut input = open_input(&input)?;
            let mut decisions = create_output(decisions.as_deref())?;
            let mut alert_sink = match alerts {
                Some(p) => Some(NdjsonSink::new(BufWriter::new(
                    File::create(&p).with_context(|| format!("creating {}", p.display()))?,
                ))),
                None => None,
            };
            let mut errors = BufWriter::new(io::stderr().lock());
            let mut top = haechi_detector::TopAlerts::new(alert_sink.as_mut().map(|s| s as &mut dyn AlertSink), 50);
            let summary = replay(&pipeline, &mut input, ReplayOutputs { decisions: &mut decisions, alerts: Some(&mut top), errors: &mut errors })?;
            writeln!(errors, "{summary}")?;
            write!(errors, "{}", top.describe(&pipeline, 5))?;
            errors.flush()?;
            // The process ends next, and the OS takes the store's memory back
            // at once: dropping it would free every entity one by one, about
            // a percent of a replay. Nothing in the pipeline writes on drop.
            std::mem::forget(pipeline);
        }
        Command::Generate { seed, days, customers, staff, out, labels, scenarios, incidents, world, world_seed, world_out } => {
            let started = std::time::Instant::now();
            let world = if world == "random" { WorldSpec::random(world_seed) } else { WorldSpec::fixed() };
            if let Some(path) = &world_out {
                std::fs::write(path, serde_json::to_string_pretty(&world)? + "\n").with_context(|| format!("writing {}", path.display()))?;
            }
            let cfg = GenConfig { seed, days, customers, staff, scenarios, incidents, world, ..GenConfig::default() };
            let data = generate(&cfg)?;
            let mut events_out = create_output(Some(&out))?;
            write_ndjson(&data.events, &mut events_out)?;
            let mut labels_out = create_output(Some(&labels))?;
            write_ndjson(&data.labels, &mut labels_out)?;
            eprintln!(
                "wrote {} events ({} attack) to {} and {} in {:.2}s",
                data.events.len(),
                data.labels.len(),
                out.display(),
                labels.display(),
                started.elapsed().as_secs_f64()
            );
        }
        Command::Rules { what } => return rules_cmd(what, &config),
        Command::Fluvio { endpoint, what } => return fluvio_cmd(&endpoint, what),
        Command::Records { what } => return records_cmd(what, &config),
        Command::Report { data_dir, from, to, format, out } => {
            let dir = data_dir.or_else(|| config.storage.data_dir.clone()).unwrap_or_else(|| PathBuf::from("haechi-data"));
            let (records, _lock) = open_records_alone(&dir, &config)?;
            let time = |name: &str, t: &str| haechi_features::parse_rfc3339_ms(t).with_context(|| format!("--{name}: not an RFC 3339 time: {t}"));
            let (from, to) = (time("from", &from)?, time("to", &to)?);
            let report = records.report(haechi_detector::enforce::now_ms(), cli_actor(), "haechi report", from, to)?;
            records.checkpoint(haechi_detector::enforce::now_ms())?;
            let text = match format.as_str() {
                "json" => report.to_json()?,
                "csv" => report.to_csv()?,
                "html" => report.to_html()?,
                other => anyhow::bail!("--format {other}: json, csv or html"),
            };
            match out {
                Some(path) => std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?,
                None => io::stdout().write_all(text.as_bytes())?,
            }
            return Ok(());
        }
        Command::Keys { what } => return keys_cmd(what),
        Command::Serve { listen, warm_from, insecure, allow_demo_key, data_dir, memory_only } => {
            if let Some(l) = listen {
                config.server.listen = l;
            }
            config.storage.data_dir = if memory_only { None } else { data_dir.or(config.storage.data_dir).or_else(|| Some(PathBuf::from("haechi-data"))) };
            config.validate().map_err(|m| anyhow::anyhow!("configuration: {m}"))?;
            let warning = config.server.check_exposure(insecure).map_err(|m| anyhow::anyhow!("{m}"))?;
            check_hash_key(&config, allow_demo_key)?;
            check_data_key(&config, allow_demo_key)?;
            return serve(config, warm_from, warning);
        }
        Command::Model { what } => return model_cmd(what, &config),
        Command::Train { events, worlds, customers, normalized, out, trees, sample, seed, contamination, max_rows, floor_labels } => {
            let started = std::time::Instant::now();
            let key = model_key(&config)?;
            let only = normalized.then_some(haechi_detector::train::NORMALIZED_FEATURES);
            let (x, names, seen, source) = match (&events, &worlds) {
                (Some(events), None) => {
                    let mut input = open_input(&events.to_string_lossy())?;
                    let labels = floor_labels.as_deref().map(haechi_detector::backtest::read_floor_labels).transpose()?.unwrap_or_default();
                    let (truth, unusable) = haechi_detector::train::FloorTruth::from_labels(&labels);
                    let (x, n, seen, effect) = haechi_detector::train::feature_rows_judged(&config.features, &mut input, max_rows, seed, config.pipeline.max_event_bytes, only, &truth)?;
                    if floor_labels.is_some() {
                        eprintln!(
                            "floor labels: {} events behind confirmed alerts left out, {} behind refuted alerts kept; {unusable} labels without entity or time unused",
                            effect.attacks_left_out, effect.honest_kept
                        );
                    }
                    (x, n, seen, format!("haechi train {} ({seen} events)", events.display()))
                }
                (None, Some(_)) if floor_labels.is_some() => anyhow::bail!("--floor-labels judge the events of a file: give the events, not --worlds"),
                (None, Some(spec)) => {
                    let (first, count) = spec.split_once(':').and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))).context("--worlds FIRST:COUNT, e.g. 1:20")?;
                    let seeds: Vec<u64> = (first..first + count).collect();
                    let (x, n, seen) = haechi_detector::train::world_feature_rows(&config.features, &seeds, customers, 3, max_rows, seed, only)?;
                    (x, n, seen, format!("haechi train --worlds {spec} --customers {customers} ({seen} events)"))
                }
                _ => anyhow::bail!("give either an events file or --worlds FIRST:COUNT"),
            };
            let params = IsolationForestParams::new().n_trees(trees).sample_size(sample).seed(seed).threshold(Threshold::Contamination(contamination));
            let mut file = fit_model(&x, names, &source, params)?;
            let signed = save_model(key, &mut file, &out)?;
            eprintln!(
                "trained on {} of {seen} events, {} features; threshold {:.4}; fingerprint {} ({signed}); wrote {} in {:.1}s",
                x.nrows(),
                x.ncols(),
                file.threshold,
                file.fingerprint,
                out.display(),
                started.elapsed().as_secs_f64()
            );
        }
        Command::Bench { what: BenchCommand::Spray { keys, days, every } } => {
            outln!("{:>12} {:>10} {:>12} {:>12} {:>10}", "keys", "live ips", "live devices", "map slots", "RSS MiB")?;
            haechi_detector::bench::spray(keys, days, every, |r| {
                _ = outln!("{:>12} {:>10} {:>12} {:>12} {:>10.1}", r.keys, r.live_ips, r.live_devices, r.capacity, r.rss_bytes as f64 / 1048576.0);
            })?;
        }
        Command::Bench { what: BenchCommand::SprayLive { rate, seconds, every, cap, budget_mib } } => {
            if let Some(c) = cap {
                let m = &mut config.features.max_entities;
                (m.ip, m.subnet, m.device, m.session) = (c, c, c, c);
            }
            config.validate().map_err(|m| anyhow::anyhow!("configuration: {m}"))?;
            let m = config.features.max_entities;
            // Not `?`: the budget below is the verdict, closed pipe or not.
            _ = outln!("caps: ip {} subnet {} device {} session {}; {rate} events/s for {seconds}s, event time = wall clock", m.ip, m.subnet, m.device, m.session);
            _ = outln!("{:>6} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}", "time", "events", "ips", "subnets", "devices", "sessions", "evicted", "RSS MiB");
            let mut peak = 0u64;
            haechi_detector::bench::spray_live(config, rate, seconds, every, |r| {
                peak = peak.max(r.rss_bytes);
                _ = outln!(
                    "{:>5}s {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9.1}",
                    r.elapsed_s, r.events, r.live_ips, r.live_subnets, r.live_devices, r.live_sessions, r.evicted, r.rss_bytes as f64 / 1048576.0
                );
            })?;
            let peak_mib = peak as f64 / 1048576.0;
            match budget_mib {
                Some(b) if peak_mib > b => anyhow::bail!("peak RSS {peak_mib:.1} MiB is over the budget of {b} MiB"),
                Some(b) => outln!("peak RSS {peak_mib:.1} MiB, within the budget of {b} MiB")?,
                None => outln!("peak RSS {peak_mib:.1} MiB")?,
            }
        }
        Command::Bench { what: BenchCommand::Records { input, rounds } } => {
            let mut stream = Vec::new();
            open_input(&input)?.read_to_end(&mut stream)?;
            let dir = tempfile::tempdir()?;
            let b = haechi_detector::bench::records(&config, &stream, rounds.max(1), dir.path())?;
            outln!("{:<6} {:>9} {:>14} {:>14} {:>9} {:>16}", "round", "events", "plain ev/s", "recorded ev/s", "cost", "records/s")?;
            for (i, r) in b.rounds.iter().enumerate() {
                let (plain, recorded) = (r.events as f64 / r.plain_seconds, r.events as f64 / r.recorded_seconds);
                outln!("{:<6} {:>9} {:>14.0} {:>14.0} {:>8.1}% {:>16.0}", i + 1, r.events, plain, recorded, 100.0 * (1.0 - recorded / plain), r.records as f64 / r.recorded_seconds)?;
            }
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let plain = median(b.rounds.iter().map(|r| r.events as f64 / r.plain_seconds).collect());
            let recorded = median(b.rounds.iter().map(|r| r.events as f64 / r.recorded_seconds).collect());
            outln!("median: plain {plain:.0} ev/s, recorded {recorded:.0} ev/s: recording costs {:.1}% of replay throughput", 100.0 * (1.0 - recorded / plain))?;
            let events = b.rounds.last().map_or(1, |r| r.events).max(1);
            outln!("verify: {} records in {:.3}s = {:.0} records/s", b.verified, b.verify_seconds, b.verified as f64 / b.verify_seconds.max(1e-9))?;
            outln!("live:     {} bytes for {} events = {:.1} bytes/event ({:.1} bytes/record)", b.live_bytes, events, b.live_bytes as f64 / events as f64, b.live_bytes as f64 / b.verified.max(1) as f64)?;
            if b.archived_records > 0 {
                outln!("archived: {} bytes for {} records = {:.1} bytes/record, {:.1} bytes/event (2 records per event)", b.archived_bytes, b.archived_records, b.archived_bytes as f64 / b.archived_records as f64, 2.0 * b.archived_bytes as f64 / b.archived_records as f64)?;
            }
        }
        Command::Bench { what: BenchCommand::Entities { input } } => {
            let pipeline = Pipeline::new(config)?;
            let mut input = open_input(&input)?;
            outln!("{:<10} {:>10} {:>14}", "kind", "live", "bytes/entity")?;
            for (kind, (n, bytes)) in haechi_detector::bench::entity_sizes(&pipeline, &mut input)? {
                outln!("{:<10} {:>10} {:>14.1}", kind.as_str(), n, bytes)?;
            }
            if let Some(rss) = haechi_detector::bench::rss_bytes() {
                outln!("process RSS: {:.1} MiB", rss as f64 / 1048576.0)?;
            }
        }
        Command::Bench { what: BenchCommand::Ingest { rate, seconds, batch, connections, warmup, modes, rounds } } => {
            use haechi_detector::bench::ingest::{median, Durability, IngestOptions};
            config.validate().map_err(|m| anyhow::anyhow!("configuration: {m}"))?;
            let modes = modes.iter().map(|m| Durability::parse(m).with_context(|| format!("--modes {m}: memory, never, interval or always"))).collect::<Result<Vec<_>>>()?;
            let opts = IngestOptions { rate, seconds, batch, connections, warmup, modes, rounds };
            outln!(
                "/v1/check: {rate} requests/s open loop over {connections} connections, {warmup}s warm-up + {seconds}s measured, latency from each request's due time; \
                 /v1/events: 2 connections, batches of {batch}, {:.1}s. {rounds} round(s) of every mode, interleaved. \
                 Server and load generator share this machine ({} cores).",
                seconds as f64 / 2.0,
                std::thread::available_parallelism().map_or(0, |n| n.get())
            )?;
            outln!("| round | mode | check rate | p50 | p99 | p99.9 | max | errors | events/s ingest | CPU (cores) | other CPU | p99 from send | p99 send late | served p99 | served > 1 ms | log append mean | log append > 1 ms |")?;
            outln!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
            let rows = haechi_detector::bench::ingest::ingest(&config, &opts, |r| {
                let errors = if r.unfinished > 0 { format!("{} ({} unanswered)", r.errors, r.unfinished) } else { r.errors.to_string() };
                let events_errors = if r.event_errors > 0 { format!(" ({} failed batches)", r.event_errors) } else { String::new() };
                let under = |d: Option<std::time::Duration>| d.map_or("> 100 ms".to_owned(), |d| format!("≤ {}", fmt_latency(d)));
                let log = if r.log_append.count == 0 { ("-".to_owned(), "-".to_owned()) } else { (fmt_latency(r.log_append.mean), r.log_append.over_1ms.to_string()) };
                _ = outln!(
                    "| {} | {} | {:.0}/s | {} | {} | {} | {} | {} of {} | {:.0}{} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} |",
                    r.round,
                    r.mode.name(),
                    r.check_rate,
                    fmt_latency(r.p50),
                    fmt_latency(r.p99),
                    fmt_latency(r.p999),
                    fmt_latency(r.max),
                    errors,
                    r.scheduled,
                    r.events_per_s,
                    events_errors,
                    r.check_cpu,
                    r.other_cpu,
                    fmt_latency(r.p99_from_send),
                    fmt_latency(r.p99_send_late),
                    under(r.served.p99_under),
                    r.served.over_1ms,
                    log.0,
                    log.1
                );
            })?;
            outln!()?;
            outln!("Median of {rounds} round(s):")?;
            outln!("| mode | check rate | p50 | p99 | p99.9 | max | errors | events/s ingest |")?;
            outln!("|---|---|---|---|---|---|---|---|")?;
            let mut seen = Vec::new();
            for mode in rows.iter().map(|r| r.mode) {
                if seen.contains(&mode) {
                    continue;
                }
                seen.push(mode);
                let of: Vec<_> = rows.iter().filter(|r| r.mode == mode).collect();
                let m = |f: &dyn Fn(&&haechi_detector::bench::ingest::IngestRow) -> f64| median(&of.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0);
                let d = |f: &dyn Fn(&&haechi_detector::bench::ingest::IngestRow) -> std::time::Duration| fmt_latency(std::time::Duration::from_secs_f64(m(&|r| f(r).as_secs_f64())));
                let errors: Vec<String> = of.iter().map(|r| r.errors.to_string()).collect();
                outln!(
                    "| {} | {:.0}/s | {} | {} | {} | {} | {} of {} each | {:.0} |",
                    mode.name(),
                    m(&|r| r.check_rate),
                    d(&|r| r.p50),
                    d(&|r| r.p99),
                    d(&|r| r.p999),
                    d(&|r| r.max),
                    errors.join(", "),
                    of[0].scheduled,
                    m(&|r| r.events_per_s)
                )?;
            }
        }
        Command::Bench { what: BenchCommand::Restart { entities, tail, data_dir, unsealed } } => {
            config.validate().map_err(|m| anyhow::anyhow!("configuration: {m}"))?;
            bench_restart(&config, cli.config.as_deref(), cli.rules.as_deref(), entities, tail, data_dir, unsealed)?;
        }
        Command::Bench { what: BenchCommand::RestartProbe { data_dir, entities, snapshot_after, unsealed } } => {
            let (mut config, _) = haechi_detector::bench::restart::restart_config(&config, &data_dir, entities);
            config.storage.unsealed = unsealed;
            let probe = haechi_detector::bench::restart::probe(&config, snapshot_after)?;
            outln!("{}", serde_json::to_string(&probe)?)?;
        }
        Command::Bench { what: BenchCommand::Worlds { from, count, customers, days, threads, json, model, model_action, reporting } } => {
            let started = std::time::Instant::now();
            if let Some(m) = model {
                config.model.path = Some(m);
            }
            match model_action.as_deref() {
                None | Some("alert") => {}
                Some("challenge") => config.model.action = haechi_detector::model::ModelAction::Challenge,
                Some(other) => anyhow::bail!("--model-action {other}: alert or challenge"),
            }
            let seeds: Vec<u64> = (from..from + count).collect();
            let report = haechi_detector::worlds::run_worlds(&config, &seeds, customers, days, threads, reporting)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                outln!("{report}")?;
            }
            eprintln!("{count} worlds of {customers} customers x {days} days in {:.1}s", started.elapsed().as_secs_f64());
        }
        Command::Eval { events, labels, decisions, replay: run, json } => {
            let board = haechi_detector::evaluate::evaluate(config, &events, &labels, decisions.as_deref(), run)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&board)?)?;
            } else {
                outln!("{board}")?;
            }
        }
    }
    Ok(())
}

fn fluvio_cmd(endpoint: &str, what: FluvioCommand) -> Result<()> {
    use haechi_streams::{Broker, FluvioBroker};
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let broker = FluvioBroker::connect(endpoint).await?;
        match what {
            FluvioCommand::CreateTopic { topics } => {
                for t in topics {
                    let (name, partitions) = match t.split_once(':') {
                        Some((n, p)) => (n.to_owned(), p.parse::<u32>().with_context(|| format!("{t}: partitions must be a number"))?),
                        None => (t.clone(), 1),
                    };
                    broker.create_topic(&name, partitions).await?;
                    eprintln!("topic {name}: {partitions} partition(s)");
                }
            }
            FluvioCommand::Produce { topic, input } => {
                let mut input = open_input(&input)?;
                let started = std::time::Instant::now();
                let (mut batch, mut line, mut n) = (Vec::new(), Vec::new(), 0u64);
                while haechi_detector::read_bounded_line(&mut input, &mut line, 1 << 20)?.is_some() {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let value: serde_json::Value = serde_json::from_slice(&line).unwrap_or(serde_json::Value::Null);
                    let key = value.get("customer_id").or_else(|| value.get("event_id")).and_then(|v| v.as_str()).unwrap_or("").as_bytes().to_vec();
                    batch.push((key, line.clone()));
                    if batch.len() == 5_000 {
                        broker.produce(&topic, &batch).await?;
                        n += batch.len() as u64;
                        batch.clear();
                    }
                }
                broker.produce(&topic, &batch).await?;
                n += batch.len() as u64;
                let secs = started.elapsed().as_secs_f64();
                eprintln!("produced {n} records to {topic} in {secs:.1}s ({:.0}/s)", n as f64 / secs.max(1e-9));
            }
            FluvioCommand::Dump { topic, out } => {
                let partitions = broker.partitions(&topic).await?;
                let mut last: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = std::collections::BTreeMap::new();
                let mut copies = 0u64;
                for p in 0..partitions {
                    let end = broker.end_offset(&topic, p).await?;
                    let mut at = 0;
                    while at < end {
                        let got = broker.fetch(&topic, p, at, 10_000, std::time::Duration::from_secs(5)).await?;
                        let Some(tail) = got.last() else { break };
                        at = tail.offset + 1;
                        for r in got {
                            copies += 1;
                            last.insert(r.key.unwrap_or_default(), r.value);
                        }
                    }
                }
                let mut w: Box<dyn io::Write> = match out {
                    Some(path) => Box::new(io::BufWriter::new(std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?)),
                    None => Box::new(io::BufWriter::new(io::stdout().lock())),
                };
                for value in last.values() {
                    w.write_all(value)?;
                    w.write_all(b"\n")?;
                }
                w.flush()?;
                eprintln!("{topic}: {copies} records read, {} distinct keys", last.len());
            }
        }
        Ok(())
    })
}
