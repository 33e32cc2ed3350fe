//! `haechi records verify`: walk every segment and archive of every class, read-only, and name the
//! first record where the chain does not hold.
//!
//! What it tells apart: an altered byte (a record that does not open), a deleted record (a gap in
//! the sequence), reordered records (a sequence number out of place that turns up later), a
//! missing segment (a gap between files), a broken link (a record that does not carry its
//! predecessor's hash), and a truncated tail (the signed checkpoint points past the chain's end,
//! or at a record with another hash). A torn final record of the newest segment beyond the last
//! checkpoint is what a crash mid-write leaves; it is reported as a note, not a failure.

use std::fmt;
use std::path::{Path, PathBuf};

use haechi_storage::KeyRing;

use crate::error::RecordsError;
use crate::ledger::{list_files, read_archive, read_checkpoints, read_segment, Checkpoint, FrameProblem, Hash, SEAL_PURPOSE};
use crate::record::RecordClass;

/// One thing wrong with a class's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub class: RecordClass,
    /// The record where it shows (its sequence number), when there is one.
    pub seq: Option<u64>,
    pub file: Option<PathBuf>,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.class.as_str())?;
        if let Some(seq) = self.seq {
            write!(f, " record {seq}")?;
        }
        if let Some(file) = &self.file {
            write!(f, " ({})", file.display())?;
        }
        write!(f, ": {}", self.what)
    }
}

/// What one class's walk found.
#[derive(Debug, Clone, Default)]
pub struct ClassReport {
    pub records: u64,
    pub segments: usize,
    pub archives: usize,
    /// First and last sequence numbers walked.
    pub range: Option<(u64, u64)>,
    pub checkpoint: Option<u64>,
    pub notes: Vec<String>,
}

/// The verification of a whole records dir.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub classes: Vec<(RecordClass, ClassReport)>,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn records(&self) -> u64 {
        self.classes.iter().map(|(_, c)| c.records).sum()
    }
}

/// Verify every class under `records_dir`, with checkpoints in `checkpoint_dir`.
///
/// # Errors
/// Only when a directory cannot be listed; everything wrong with the records themselves is a
/// [`Problem`] in the report.
pub fn verify(records_dir: &Path, checkpoint_dir: &Path, ring: &KeyRing) -> Result<VerifyReport, RecordsError> {
    let mut report = VerifyReport::default();
    for class in RecordClass::ALL {
        let (class_report, problems) = verify_class(records_dir, checkpoint_dir, class, ring)?;
        report.classes.push((class, class_report));
        report.problems.extend(problems);
    }
    Ok(report)
}

fn verify_class(records_dir: &Path, checkpoint_dir: &Path, class: RecordClass, ring: &KeyRing) -> Result<(ClassReport, Vec<Problem>), RecordsError> {
    let dir = records_dir.join(class.as_str());
    let sealer = ring.sealer(SEAL_PURPOSE);
    let mut report = ClassReport::default();
    let mut problems = Vec::new();
    let problem = |seq: Option<u64>, file: Option<&Path>, what: String| Problem { class, seq, file: file.map(Path::to_path_buf), what };

    // The signed checkpoints: the newest head and base with good signatures.
    let cp_path = checkpoint_dir.join(format!("{}.jsonl", class.as_str()));
    let mut head: Option<Checkpoint> = None;
    let mut base: Option<Checkpoint> = None;
    // Every good head is checked against the chain, not only the newest: a later head signed
    // over a cut does not hide the older one that covers the records cut.
    let mut heads: Vec<Checkpoint> = Vec::new();
    let mut last_mac: Option<String> = None;
    match read_checkpoints(&cp_path)? {
        None => {}
        Some(lines) => {
            for (n, line) in lines {
                match line {
                    Err(_) => problems.push(problem(None, Some(&cp_path), format!("checkpoint line {n} is not a checkpoint"))),
                    Ok(c) if c.class != class.as_str() => {
                        problems.push(problem(Some(c.seq), Some(&cp_path), format!("checkpoint line {n} belongs to the {} chain: copied here", c.class)));
                    }
                    Ok(c) => match c.verify(ring) {
                        Ok(true) => {
                            if last_mac.as_ref().is_some_and(|m| *m != c.prev) || (last_mac.is_none() && !c.prev.is_empty()) {
                                problems.push(problem(Some(c.seq), Some(&cp_path), format!("checkpoint line {n} does not follow the line before it: checkpoint lines were removed")));
                            }
                            last_mac = Some(c.mac.clone());
                            match c.kind.as_str() {
                                "head" => {
                                    heads.push(c.clone());
                                    head = Some(c);
                                }
                                "base" => base = Some(c),
                                other => problems.push(problem(None, Some(&cp_path), format!("checkpoint line {n} has an unknown type {other:?}"))),
                            }
                        }
                        Ok(false) => problems.push(problem(Some(c.seq), Some(&cp_path), format!("checkpoint line {n} does not carry a valid signature: it was altered"))),
                        Err(e) => problems.push(problem(Some(c.seq), Some(&cp_path), format!("checkpoint line {n}: {e}"))),
                    },
                }
            }
        }
    }
    report.checkpoint = head.as_ref().map(|h| h.seq);

    let files = list_files(&dir)?;
    let (mut expected, mut prev): (u64, Hash) = match &base {
        Some(b) => (b.seq, b.hash_bytes().unwrap_or_default()),
        None => (0, [0; 32]),
    };
    let start = expected;
    // The hashes of the records the heads name, once walked past.
    let mut head_hash_seen: std::collections::HashMap<u64, Hash> = std::collections::HashMap::new();
    let newest_live = files.iter().rev().find(|f| f.archived_last.is_none()).map(|f| f.path.clone());
    let last_file = files.last().map(|f| f.path.clone());

    'files: for f in &files {
        // Files wholly before the base were due for destruction and are left from a crash.
        if f.archived_last.is_some_and(|last| last < start) {
            report.notes.push(format!("{} lies before the chain's signed beginning (record {start}); it was due for destruction", f.path.display()));
            continue;
        }
        let entries = if f.archived_last.is_some() {
            report.archives += 1;
            match read_archive(&f.path, class, &sealer) {
                Ok((h, entries)) => {
                    if h.first != f.first {
                        problems.push(problem(Some(f.first), Some(&f.path), format!("the archive's name says it starts at {} but its header says {}: renamed", f.first, h.first)));
                        break;
                    }
                    entries
                }
                Err(e) => {
                    problems.push(problem(Some(f.first), Some(&f.path), format!("{e}")));
                    break;
                }
            }
        } else {
            report.segments += 1;
            match read_segment(&f.path, class, &sealer, None) {
                Ok((header, entries, trouble)) => {
                    if header.first != f.first {
                        problems.push(problem(Some(f.first), Some(&f.path), format!("the segment's name says it starts at {} but its header says {}: renamed", f.first, header.first)));
                        break;
                    }
                    if f.first < start {
                        report.notes.push(format!("{} starts before the chain's signed beginning (record {start})", f.path.display()));
                    }
                    match trouble {
                        None => {}
                        Some(FrameProblem::Torn { at }) if Some(&f.path) == newest_live.as_ref() && Some(&f.path) == last_file.as_ref() => {
                            report.notes.push(format!("{}: a torn final record at byte {at} (a crash mid-write; the next start cuts it)", f.path.display()));
                        }
                        Some(FrameProblem::Torn { at }) => {
                            let seq = entries.last().map_or(f.first, |e| e.seq + 1);
                            problems.push(problem(Some(seq), Some(&f.path), format!("the segment ends inside this record (byte {at}): it was truncated")));
                        }
                        Some(FrameProblem::Sealed { at, error }) => {
                            check_entries(&entries, &mut expected, &mut prev, &heads, &mut head_hash_seen, &mut report, &mut problems, class, &f.path);
                            if problems.is_empty() || problems.iter().all(|p| p.file.as_deref() == Some(&cp_path)) {
                                problems.push(problem(Some(expected), Some(&f.path), format!("the record at byte {at} does not open ({error}): its bytes were altered")));
                            }
                            break 'files;
                        }
                        Some(FrameProblem::Malformed { at }) => {
                            problems.push(problem(Some(expected), Some(&f.path), format!("malformed record at byte {at}")));
                            break 'files;
                        }
                    }
                    entries
                }
                Err(e) => {
                    problems.push(problem(Some(f.first), Some(&f.path), format!("{e}")));
                    break;
                }
            }
        };
        // Before the base: skip what retention had planned to drop.
        let entries: Vec<_> = entries.into_iter().filter(|e| e.seq >= start).collect();
        if let Some(first) = entries.first() {
            if first.seq > expected && f.first > expected {
                problems.push(problem(
                    Some(expected),
                    Some(&f.path),
                    format!("records {expected} to {} are missing: a segment was deleted", first.seq - 1),
                ));
                break;
            }
        }
        if !check_entries(&entries, &mut expected, &mut prev, &heads, &mut head_hash_seen, &mut report, &mut problems, class, &f.path) {
            break;
        }
    }

    if expected > start {
        report.range = Some((start, expected - 1));
    }
    if problems.iter().all(|p| p.file.as_deref() == Some(&cp_path)) {
        if head.is_none() && expected > start {
            let why = if cp_path.exists() { "" } else { "the checkpoint file is missing: " };
            problems.push(problem(None, Some(&cp_path), format!("{why}no signed checkpoint covers records {start} to {}: a cut tail could not be seen", expected - 1)));
        }
        for h in &heads {
            if h.seq >= expected {
                let end = if expected == 0 { "no records".to_owned() } else { format!("record {}", expected - 1) };
                problems.push(problem(
                    Some(expected),
                    None,
                    format!("the chain ends at {end} but a checkpoint signed at {} covers record {}: the tail was truncated", crate::format_ms(h.at_ms), h.seq),
                ));
                break;
            } else if h.seq >= start && head_hash_seen.get(&h.seq).copied() != h.hash_bytes() {
                problems.push(problem(Some(h.seq), None, format!("differs from the checkpoint signed at {}: rewritten", crate::format_ms(h.at_ms))));
                break;
            }
        }
    }
    Ok((report, problems))
}

/// Walk entries in order; `false` when a problem ends the walk.
#[allow(clippy::too_many_arguments)]
fn check_entries(
    entries: &[crate::ledger::Entry],
    expected: &mut u64,
    prev: &mut Hash,
    heads: &[Checkpoint],
    head_hash_seen: &mut std::collections::HashMap<u64, Hash>,
    report: &mut ClassReport,
    problems: &mut Vec<Problem>,
    class: RecordClass,
    path: &Path,
) -> bool {
    for (i, e) in entries.iter().enumerate() {
        let at = Some(path.to_path_buf());
        if e.seq != *expected {
            let what = if entries[i..].iter().any(|later| later.seq == *expected) || e.seq < *expected {
                format!("found record {} where record {} belongs: records were reordered", e.seq, *expected)
            } else {
                format!("record {} is missing (the next one is {}): it was deleted", *expected, e.seq)
            };
            problems.push(Problem { class, seq: Some(*expected), file: at, what });
            return false;
        }
        if e.prev != *prev {
            problems.push(Problem { class, seq: Some(e.seq), file: at, what: "does not carry its predecessor's hash: the chain is broken here".into() });
            return false;
        }
        if e.record().is_err() {
            problems.push(Problem { class, seq: Some(e.seq), file: at, what: "opens but is not a record".into() });
            return false;
        }
        *prev = e.hash();
        if heads.iter().any(|h| h.seq == e.seq) {
            head_hash_seen.insert(e.seq, *prev);
        }
        *expected += 1;
        report.records += 1;
    }
    true
}
