//! One path for every event:
//!
//! ```text
//!  source ──► validate ──► pipeline ──────────────────────────► sinks
//!  (file, stdin,   (the event    (features → detectors → decide   (decisions NDJSON, alert folding,
//!   ingest log,     contract)     → enforce: blocks, limits,        the live feed, metrics; access
//!   HTTP body)                    blast-radius guard)               records and Fluvio to come)
//! ```
//!
//! [`run`] drives a pull source to its end: `haechi replay`, `--warm-from`
//! and the recovery of a data dir after a restart all run here. The HTTP
//! service pushes each request's events through [`decide`], the same step
//! with the same sinks' trait, after appending them to the ingest log. So a
//! backtest and a recovery run the production path, not an imitation of it.

mod order;
pub mod sink;
pub mod source;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use haechi_features::{Error as EventError, Event};

use crate::decision::Verdict;
use crate::error::DetectorError;
use crate::pipeline::{Pipeline, Processed, Scratch};
use order::{FutureGuard, ReorderBuffer};
pub use sink::{AlertFolding, DecisionWriter, Discard, FeedSink, Sink};
pub use source::{log_record, read_bounded_line, LogSource, NdjsonSource, RecordInfo, Source};

/// What the driver does with each valid event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decide it: features, detectors, decision, enforcement, sinks.
    Decide,
    /// Only learn from it (history before a live start): features and
    /// baselines; nothing is decided, blocked or alerted.
    Warm,
}

/// What a run did: records read, accepted, refused by reason, decisions by
/// kind. `haechi replay` prints it to stderr at the end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplaySummary {
    pub lines: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    pub decisions: BTreeMap<&'static str, u64>,
    pub late: u64,
    /// New alerts written; `None` when no alert sink was given.
    pub alerts: Option<u64>,
    pub elapsed: Duration,
}

impl ReplaySummary {
    /// Events rejected for any reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Lines per second of wall time.
    pub fn events_per_second(&self) -> f64 {
        self.lines as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "events read:     {}", self.lines)?;
        writeln!(f, "accepted:        {}", self.accepted)?;
        writeln!(f, "rejected:        {}", self.rejected_total())?;
        for (reason, n) in &self.rejected {
            writeln!(f, "  {reason:<15}{n}")?;
        }
        writeln!(f, "late (beyond allowed lateness): {}", self.late)?;
        write!(f, "decisions:      ")?;
        for v in [Verdict::Allow, Verdict::Challenge, Verdict::Block] {
            write!(f, " {}={}", v.as_str(), self.decisions.get(v.as_str()).copied().unwrap_or(0))?;
        }
        writeln!(f)?;
        match self.alerts {
            Some(n) => writeln!(f, "alerts:          {n}")?,
            None => writeln!(f, "alerts:          not written (add --alerts FILE)")?,
        }
        write!(f, "events/s:        {:.0} ({:.3}s)", self.events_per_second(), self.elapsed.as_secs_f64())
    }
}

/// Decide one event and hand it to the sink. The one step every source
/// ends in.
///
/// # Errors
/// The pipeline's refusal (a repeated id, a time too far ahead); the sink
/// has not seen the event then.
pub fn decide(pipeline: &Pipeline, event: &Event, scratch: &mut Scratch, sink: &mut dyn Sink) -> Result<Result<Processed, EventError>, DetectorError> {
    decide_at(pipeline, event, None, scratch, sink)
}

/// [`decide`], for a record the ingest log stamped with the wall clock it was accepted at.
fn decide_at(pipeline: &Pipeline, event: &Event, wall_ms: Option<i64>, scratch: &mut Scratch, sink: &mut dyn Sink) -> Result<Result<Processed, EventError>, DetectorError> {
    let outcome = match wall_ms {
        Some(wall) => pipeline.process_logged(event, scratch, wall),
        None => pipeline.process(event, scratch),
    };
    let processed = match outcome {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    // The sink sees the event as it was judged: an alert about the customer
    // names the one the event was attributed to, and one about a device the
    // device its session named.
    sink.decided(pipeline, processed.judged_as.as_deref().unwrap_or(event), &processed, &scratch.findings)?;
    Ok(Ok(processed))
}

struct Runner<'p, 's> {
    pipeline: &'p Pipeline,
    mode: Mode,
    scratch: Scratch,
    sink: &'s mut dyn Sink,
    summary: ReplaySummary,
}

impl Runner<'_, '_> {
    fn reject(&mut self, position: u64, error: &EventError) -> Result<(), DetectorError> {
        *self.summary.rejected.entry(error.reason()).or_default() += 1;
        self.sink.refused(position, error)
    }

    fn run(&mut self, position: u64, event: &Event, wall_ms: Option<i64>) -> Result<(), DetectorError> {
        if self.mode == Mode::Warm {
            match self.pipeline.warm(event, &mut self.scratch) {
                Ok(()) => self.summary.accepted += 1,
                Err(e) => self.reject(position, &e)?,
            }
            return Ok(());
        }
        self.sink.at(position);
        match decide_at(self.pipeline, event, wall_ms, &mut self.scratch, self.sink)? {
            Ok(processed) => {
                self.summary.accepted += 1;
                self.summary.late += u64::from(processed.late);
                *self.summary.decisions.entry(processed.decision.verdict.as_str()).or_default() += 1;
                Ok(())
            }
            Err(e) => self.reject(position, &e),
        }
    }
}

/// Run `source` to its end through `pipeline` into `sink`.
///
/// A source that is not in decision order (a file) goes through a reorder
/// buffer: events are held until the newest event time has passed them by
/// the allowed lateness, then decided oldest first, so a slightly shuffled
/// stream is decided as if it had arrived in order, and an event later than
/// that is decided at once, as late. A far-future timestamp is held back
/// until the events after it say whether the stream really moved on (see
/// `order.rs`). The ingest log is decided as it was logged.
///
/// # Errors
/// Only when the source cannot be read or a sink fails; bad records are
/// handed to the sink's `refused`, counted and skipped.
pub fn run(pipeline: &Pipeline, source: &mut dyn Source, sink: &mut dyn Sink, mode: Mode) -> Result<ReplaySummary, DetectorError> {
    let started = Instant::now();
    let config = pipeline.config();
    let mut steps = Steps {
        runner: Runner { pipeline, mode, scratch: pipeline.scratch(), sink, summary: ReplaySummary::default() },
        ordered: source.in_decision_order(),
        lateness_ms: config.features.allowed_lateness.as_millis() as i64,
        buffer: ReorderBuffer::default(),
        guard: FutureGuard::new(config.pipeline.max_clock_skew.as_millis() as i64),
        newest: i64::MIN,
        released_upto: i64::MIN,
    };
    let max = config.pipeline.max_event_bytes;
    if config.pipeline.parse_thread {
        parse_ahead(pipeline, source, max, &mut steps)?;
    } else {
        let mut record = Vec::with_capacity(1024);
        while let Some(info) = source.next_record(&mut record, max)? {
            let parsed = parse(pipeline, &info, &record, max);
            steps.step(info, parsed)?;
        }
    }
    let mut runner = steps.finish()?;
    runner.sink.finish(pipeline)?;
    runner.summary.elapsed = started.elapsed();
    Ok(runner.summary)
}

fn parse(pipeline: &Pipeline, info: &RecordInfo, record: &[u8], max: usize) -> Result<Event, EventError> {
    if info.len > max {
        Err(EventError::TooLarge { len: info.len, limit: max })
    } else {
        pipeline.parse(record)
    }
}

/// Records on their way through the parse thread, and back.
#[derive(Default)]
struct Batch {
    records: Vec<(RecordInfo, Vec<u8>)>,
    len: usize,
    parsed: Vec<Result<Event, EventError>>,
}

/// Records per batch: large enough that the hand-over costs nothing per
/// event, small enough that the second thread starts at once.
const BATCH: usize = 512;
/// Bytes per batch, at most (one record more): with two batches out, what
/// the parse thread holds stays small whatever `max_event_bytes` allows.
const BATCH_BYTES: usize = 4 << 20;
/// A record buffer that grew past this for one long line is given back.
const KEEP_BUFFER: usize = 64 << 10;

/// Read on this thread, parse (JSON and the contract's checks) on a second,
/// decide here again in the order read: the decisions are those of one
/// thread, byte for byte (a test checks it), with the parsing off the
/// deciding core. Two batches are in flight, so neither thread waits on
/// the other while both have work; buffers go round and are reused.
fn parse_ahead(pipeline: &Pipeline, source: &mut dyn Source, max: usize, steps: &mut Steps<'_, '_>) -> Result<(), DetectorError> {
    use std::sync::mpsc::sync_channel;
    std::thread::scope(|scope| {
        let (to_parser, parser_in) = sync_channel::<Batch>(2);
        let (parser_out, parsed_in) = sync_channel::<Batch>(2);
        scope.spawn(move || {
            for mut batch in parser_in {
                batch.parsed.clear();
                for (info, raw) in &batch.records[..batch.len] {
                    batch.parsed.push(parse(pipeline, info, raw, max));
                }
                if parser_out.send(batch).is_err() {
                    return;
                }
            }
        });
        let mut spare: Vec<Batch> = vec![Batch::default(), Batch::default()];
        let mut in_flight = 0usize;
        let mut done = false;
        // A read that fails ends the reading; what was read before it is still decided, as on one thread.
        let mut failed = None;
        let take_back = |batch: &mut Batch, steps: &mut Steps<'_, '_>| -> Result<(), DetectorError> {
            for ((info, _), parsed) in batch.records[..batch.len].iter().zip(batch.parsed.drain(..)) {
                steps.step(*info, parsed)?;
            }
            Ok(())
        };
        while !done || in_flight > 0 {
            if !done {
                if let Some(mut batch) = spare.pop() {
                    batch.len = 0;
                    let mut bytes = 0;
                    while batch.len < BATCH && bytes < BATCH_BYTES {
                        if batch.records.len() == batch.len {
                            batch.records.push((RecordInfo { position: 0, len: 0, wall_ms: None }, Vec::with_capacity(1024)));
                        }
                        let (info, raw) = &mut batch.records[batch.len];
                        if raw.capacity() > KEEP_BUFFER {
                            *raw = Vec::with_capacity(1024);
                        }
                        match source.next_record(raw, max) {
                            Ok(Some(i)) => *info = i,
                            Ok(None) => {
                                done = true;
                                break;
                            }
                            Err(e) => {
                                failed = Some(e);
                                done = true;
                                break;
                            }
                        }
                        if info.len > max {
                            // Refused on its length alone: its bytes are not needed.
                            raw.clear();
                        }
                        bytes += raw.len();
                        batch.len += 1;
                    }
                    if batch.len > 0 {
                        to_parser.send(batch).map_err(|_| DetectorError::Snapshot("the parse thread stopped".into()))?;
                        in_flight += 1;
                    } else {
                        spare.push(batch);
                    }
                    continue;
                }
            }
            // Both batches out: decide the older one when it is back.
            let mut batch = parsed_in.recv().map_err(|_| DetectorError::Snapshot("the parse thread stopped".into()))?;
            in_flight -= 1;
            take_back(&mut batch, steps)?;
            spare.push(batch);
        }
        drop(to_parser);
        failed.map_or(Ok(()), Err)
    })
}

/// The driver's state between records: the reorder buffer and the future guard.
struct Steps<'p, 's> {
    runner: Runner<'p, 's>,
    ordered: bool,
    lateness_ms: i64,
    buffer: ReorderBuffer,
    guard: FutureGuard,
    newest: i64,
    released_upto: i64,
}

impl<'p, 's> Steps<'p, 's> {
    fn step(&mut self, RecordInfo { position, wall_ms, .. }: RecordInfo, parsed: Result<Event, EventError>) -> Result<(), DetectorError> {
        let runner = &mut self.runner;
        runner.summary.lines += 1;
        let event = match parsed {
            Ok(e) => e,
            Err(EventError::Empty) => {
                runner.summary.lines -= 1;
                return Ok(());
            }
            Err(e) => return runner.reject(position, &e),
        };
        if self.ordered {
            return runner.run(position, &event, wall_ms);
        }
        let (admitted, refused) = self.guard.admit(position, event);
        for (seq, e) in refused {
            runner.reject(seq, &self.guard.refusal(e.ts_ms))?;
        }
        for (seq, event) in admitted {
            if event.ts_ms < self.released_upto {
                // Too late for the buffer's order: decide it now, as it is.
                runner.run(seq, &event, None)?;
                continue;
            }
            self.newest = self.newest.max(event.ts_ms);
            self.buffer.push(seq, event);
            while let Some((seq, event)) = self.buffer.pop_ready(self.newest - self.lateness_ms) {
                self.released_upto = self.released_upto.max(event.ts_ms);
                runner.run(seq, &event, None)?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Runner<'p, 's>, DetectorError> {
        let (admitted, refused) = self.guard.finish();
        for (seq, e) in refused {
            self.runner.reject(seq, &self.guard.refusal(e.ts_ms))?;
        }
        while let Some((seq, event)) = self.buffer.pop_ready(i64::MAX) {
            self.runner.run(seq, &event, None)?;
        }
        for (seq, event) in admitted {
            self.runner.run(seq, &event, None)?;
        }
        Ok(self.runner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NDJSON lines, then a read error after `fail_after` of them (never when `None`).
    struct Lines {
        lines: Vec<Vec<u8>>,
        at: usize,
        fail_after: Option<usize>,
    }

    impl Source for Lines {
        fn next_record(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Option<RecordInfo>, DetectorError> {
            if self.fail_after == Some(self.at) {
                return Err(DetectorError::Io(std::io::Error::other("the disk went away")));
            }
            let Some(line) = self.lines.get(self.at) else { return Ok(None) };
            self.at += 1;
            buf.clear();
            buf.extend_from_slice(&line[..line.len().min(max + 1)]);
            Ok(Some(RecordInfo { position: self.at as u64, len: line.len(), wall_ms: None }))
        }
    }

    fn lines() -> Vec<Vec<u8>> {
        (0..3_000)
            .map(|i| match i % 701 {
                // An oversized line, an empty one and a broken one, across batch boundaries.
                500 => format!("{{\"event_id\":\"big{i}\",\"pad\":\"{}\"}}", "x".repeat(40_000)).into_bytes(),
                600 => Vec::new(),
                700 => b"{\"event_id\":".to_vec(),
                _ => format!(
                    r#"{{"event_id":"e{i}","ts":"2026-11-02T10:{:02}:{:02}+09:00","step":"otp","result":"{}","customer_id":"c{}","ip":"10.0.{}.{}"}}"#,
                    i / 60 % 60,
                    i % 60,
                    if i % 5 == 0 { "failure" } else { "success" },
                    i % 40,
                    i % 7,
                    i % 9 + 1
                )
                .into_bytes(),
            })
            .collect()
    }

    /// Everything the sink got, the summary, and the error, for one setting of `parse_thread`.
    fn run_with(parse_thread: bool, fail_after: Option<usize>) -> (Vec<u8>, Vec<u8>, String) {
        let mut config = crate::Config::default();
        config.model.enabled = false;
        config.pipeline.parse_thread = parse_thread;
        let pipeline = Pipeline::new(config).unwrap();
        let (mut decisions, mut errors) = (Vec::new(), Vec::new());
        let outcome = {
            let mut sink = DecisionWriter::new(&mut decisions, &mut errors);
            run(&pipeline, &mut Lines { lines: lines(), at: 0, fail_after }, &mut sink, Mode::Decide)
        };
        let summary = match outcome {
            Ok(mut s) => {
                s.elapsed = Duration::ZERO;
                format!("{s}")
            }
            Err(e) => format!("error: {e}"),
        };
        (decisions, errors, summary)
    }

    #[test]
    fn two_threads_decide_and_refuse_what_one_thread_does_even_when_reading_fails() {
        let (one, two) = (run_with(false, None), run_with(true, None));
        assert!(one.0.len() > 100_000 && one.1.len() > 100, "{}", one.2);
        assert!(one.2.contains("too_large      4") && one.2.contains("malformed_json 4") && one.2.contains("events read:     2996"), "{}", one.2);
        assert_eq!(one, two);
        // A read error at line 1,700: the first 1,700 are decided either way, then the error.
        let (one, two) = (run_with(false, Some(1_700)), run_with(true, Some(1_700)));
        assert!(one.2.contains("the disk went away"), "{}", one.2);
        assert_eq!(one.0.iter().filter(|b| **b == b'\n').count(), two.0.iter().filter(|b| **b == b'\n').count());
        assert_eq!(one, two);
    }
}
