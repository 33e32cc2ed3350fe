//! `haechi eval`: read events, labels and decisions (or make the decisions by
//! replaying them through the pipeline), and score them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use haechi_datasets::{score, Label, ScoredEvent, Scoreboard};
use serde::Deserialize;

use crate::error::DetectorError;
use crate::{replay, Config, Pipeline, ReplayOutputs};

#[derive(Deserialize)]
struct DecisionKey {
    event_id: String,
    decision: String,
}

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, DetectorError> {
    let file = BufReader::new(File::open(path).map_err(|e| DetectorError::Input { path: path.display().to_string(), message: e.to_string() })?);
    let mut out = Vec::new();
    for (i, line) in file.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(v) => out.push(v),
            // An event line the pipeline would reject still has to be counted
            // as undecided, so events that fail here are skipped, not fatal.
            Err(e) => eprintln!("{} line {}: {}", path.display(), i + 1, haechi_features::mask_resident_numbers(&e.to_string())),
        }
    }
    Ok(out)
}

/// Read a labels file; lines that do not parse are reported on stderr and skipped.
///
/// # Errors
/// When the file cannot be opened or read.
pub fn read_labels(path: &Path) -> Result<Vec<Label>, DetectorError> {
    read_lines(path)
}

/// Score `decisions` (or, with `run_pipeline`, the pipeline's own decisions)
/// for `events` against `labels`.
///
/// # Errors
/// When a file cannot be read, or the arguments name neither or both sources of decisions.
pub fn evaluate(config: Config, events: &Path, labels: &Path, decisions: Option<&Path>, run_pipeline: bool) -> Result<Scoreboard, DetectorError> {
    let labels: Vec<Label> = read_lines(labels)?;
    let scored: Vec<ScoredEvent> = read_lines(events)?;
    let decided: Vec<DecisionKey> = match (decisions, run_pipeline) {
        (Some(p), false) => read_lines(p)?,
        (None, true) => {
            let pipeline = Pipeline::new(config)?;
            let mut input = BufReader::new(File::open(events).map_err(|e| DetectorError::Input { path: events.display().to_string(), message: e.to_string() })?);
            let mut out = Vec::new();
            let mut sink = std::io::sink();
            let summary = replay(&pipeline, &mut input, ReplayOutputs { decisions: &mut out, alerts: None, errors: &mut sink })?;
            eprintln!("{summary}");
            out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(serde_json::from_slice).collect::<Result<_, _>>().map_err(|e| DetectorError::Input { path: "(replay output)".into(), message: e.to_string() })?
        }
        (Some(_), true) => return Err(DetectorError::Input { path: "eval".into(), message: "give either a decisions file or --replay, not both".into() }),
        (None, false) => return Err(DetectorError::Input { path: "eval".into(), message: "give a decisions file, or --replay to run the pipeline".into() }),
    };
    let decisions: HashMap<String, String> = decided.into_iter().map(|d| (d.event_id, d.decision)).collect();
    Ok(score(&scored, &labels, &decisions))
}
