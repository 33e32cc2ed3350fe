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

/// Every line of `path` that parses as a `T`, and how many did not (each
/// reported on stderr). A broken line is no reason to stop scoring the rest.
fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<(Vec<T>, usize), DetectorError> {
    let file = BufReader::new(File::open(path).map_err(|e| DetectorError::Input { path: path.display().to_string(), message: e.to_string() })?);
    let mut out = Vec::new();
    let mut broken = 0;
    for (i, line) in file.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(v) => out.push(v),
            Err(e) => {
                broken += 1;
                eprintln!("{} line {}: {}", path.display(), i + 1, haechi_features::mask_resident_numbers(&e.to_string()));
            }
        }
    }
    Ok((out, broken))
}

/// Read a labels file; lines that do not parse are reported on stderr and skipped.
///
/// # Errors
/// When the file cannot be opened or read.
pub fn read_labels(path: &Path) -> Result<Vec<Label>, DetectorError> {
    Ok(read_lines(path)?.0)
}

/// Score `decisions` (or, with `run_pipeline`, the pipeline's own decisions)
/// for `events` against `labels`.
///
/// # Errors
/// When a file cannot be read, or the arguments name neither or both sources of decisions.
pub fn evaluate(config: Config, events: &Path, labels: &Path, decisions: Option<&Path>, run_pipeline: bool) -> Result<Scoreboard, DetectorError> {
    let labels: Vec<Label> = read_lines(labels)?.0;
    // An event line with no event id (not JSON, or no string id) can be
    // neither labelled nor decided: it is counted as undecided.
    let (scored, unreadable_events): (Vec<ScoredEvent>, usize) = read_lines(events)?;
    let decided: Vec<DecisionKey> = match (decisions, run_pipeline) {
        (Some(p), false) => read_lines(p)?.0,
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
    let mut board = score(&scored, &labels, &decisions);
    board.undecided += unreadable_events;
    Ok(board)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_line_that_cannot_be_read_is_counted_as_undecided() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let events = write(
            "events.jsonl",
            concat!(
                r#"{"event_id":"e1","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"success","customer_id":"c1","ip":7}"#,
                "\n{not json\n",
                r#"{"event_id":"e2","ts":"2026-11-02T10:00:01+09:00","step":"otp","result":"success","customer_id":"c2"}"#,
                "\n"
            ),
        );
        let labels = write("labels.jsonl", "");
        let decisions = write("decisions.jsonl", "{\"event_id\":\"e1\",\"decision\":\"allow\"}\n");
        let board = evaluate(Config::default(), &events, &labels, Some(&decisions), false).unwrap();
        // e1 (its address unreadable, still counted) is decided; e2 is missing; the broken line is neither.
        assert_eq!((board.benign_events, board.undecided), (2, 2));
    }
}
