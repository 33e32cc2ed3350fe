//! `haechi eval`: read events, labels and decisions (or make the decisions by
//! replaying), and print the scoreboard.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, Context, Result};
use haechi_datasets::{score, Label, Scoreboard};
use haechi_detector::{replay, Config, Pipeline, ReplayOutputs};
use serde::Deserialize;

#[derive(Deserialize)]
struct EventKey {
    event_id: String,
    customer_id: Option<String>,
}

#[derive(Deserialize)]
struct DecisionKey {
    event_id: String,
    decision: String,
}

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let file = BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?);
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

/// Read a labels file.
pub fn read_labels(path: &Path) -> Result<Vec<Label>> {
    read_lines(path)
}

pub fn run(config: Config, events: &Path, labels: &Path, decisions: Option<&Path>, run_pipeline: bool) -> Result<Scoreboard> {
    let labels: Vec<Label> = read_lines(labels)?;
    let keys: Vec<EventKey> = read_lines(events)?;
    let decided: Vec<DecisionKey> = match (decisions, run_pipeline) {
        (Some(p), false) => read_lines(p)?,
        (None, true) => {
            let pipeline = Pipeline::new(config)?;
            let mut input = BufReader::new(File::open(events)?);
            let mut out = Vec::new();
            let mut sink = std::io::sink();
            let summary = replay(&pipeline, &mut input, ReplayOutputs { decisions: &mut out, alerts: None, errors: &mut sink })?;
            eprintln!("{summary}");
            out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(serde_json::from_slice).collect::<Result<_, _>>()?
        }
        (Some(_), true) => bail!("give either a decisions file or --replay, not both"),
        (None, false) => bail!("give a decisions file, or --replay to run the pipeline"),
    };
    let decisions: HashMap<String, String> = decided.into_iter().map(|d| (d.event_id, d.decision)).collect();
    let events: Vec<(String, Option<String>)> = keys.into_iter().map(|k| (k.event_id, k.customer_id)).collect();
    Ok(score(&events, &labels, &decisions))
}
