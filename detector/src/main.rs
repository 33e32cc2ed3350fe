//! The `haechi` binary: parses arguments, loads configuration, and calls the library.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use haechi_alerting::{AlertSink, NdjsonSink};
use haechi_detector::{replay, Config, Pipeline, ReplayOutputs};

#[derive(Parser)]
#[command(name = "haechi", version, about = "Haechi: live fraud detection for eKYC (비대면 실명확인) pipelines")]
struct Cli {
    /// Configuration file (TOML); every setting has a default.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
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
    },
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

fn main() -> Result<()> {
    let cli = Cli::parse();
    let config = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Replay { input, decisions, alerts } => {
            let pipeline = Pipeline::new(config)?;
            let mut input = open_input(&input)?;
            let mut decisions = create_output(decisions.as_deref())?;
            let mut alert_sink = match alerts {
                Some(p) => Some(NdjsonSink::new(BufWriter::new(
                    File::create(&p).with_context(|| format!("creating {}", p.display()))?,
                ))),
                None => None,
            };
            let mut errors = BufWriter::new(io::stderr().lock());
            let summary = replay(
                &pipeline,
                &mut input,
                ReplayOutputs {
                    decisions: &mut decisions,
                    alerts: alert_sink.as_mut().map(|s| s as &mut dyn AlertSink),
                    errors: &mut errors,
                },
            )?;
            writeln!(errors, "{summary}")?;
            errors.flush()?;
        }
    }
    Ok(())
}
