//! `haechi replay`: a file or stdin through the pipeline, in event-time order.
//!
//! Events are held in a small reorder buffer until the newest event time has
//! moved past them by the allowed lateness, then processed oldest first; so a
//! stream that is slightly out of order is decided as if it had arrived in
//! order. An event later than that is processed at once, as late.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use haechi_alerting::{AlertFolder, AlertSink};
use haechi_features::{entity_text, Error as EventError, Event};

use crate::decision::Verdict;
use crate::error::DetectorError;
use crate::pipeline::{Pipeline, Scratch};

/// What a replay did, printed to stderr at the end.
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

/// Where a replay writes.
pub struct ReplayOutputs<'a> {
    /// One decision per valid event, NDJSON.
    pub decisions: &'a mut dyn Write,
    /// Alerts, if wanted.
    pub alerts: Option<&'a mut dyn AlertSink>,
    /// `line N: problem` for every rejected line.
    pub errors: &'a mut dyn Write,
}

/// Holds events until the newest event time has passed them by the allowed
/// lateness, and gives them back oldest first. Input is nearly always sorted
/// already, so in-order events queue in a ring without allocating; only the
/// rare out-of-order one goes into a heap, boxed.
#[derive(Default)]
struct ReorderBuffer {
    in_order: VecDeque<(i64, u64, Event)>,
    out_of_order: BinaryHeap<Reverse<(i64, u64, OrderedBox)>>,
}

/// A boxed event that the heap orders only by the (ts, seq) beside it.
struct OrderedBox(Box<Event>);

impl PartialEq for OrderedBox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for OrderedBox {}
impl PartialOrd for OrderedBox {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OrderedBox {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl ReorderBuffer {
    fn push(&mut self, seq: u64, event: Event) {
        let ts = event.ts_ms;
        if self.in_order.back().is_none_or(|b| b.0 <= ts) {
            self.in_order.push_back((ts, seq, event));
        } else {
            self.out_of_order.push(Reverse((ts, seq, OrderedBox(Box::new(event)))));
        }
    }

    /// The oldest event at or before `limit` (all of them with `i64::MAX`).
    fn pop_ready(&mut self, limit: i64) -> Option<(u64, Event)> {
        let front = self.in_order.front().map(|f| (f.0, f.1));
        let heap = self.out_of_order.peek().map(|Reverse(h)| (h.0, h.1));
        let take_heap = match (front, heap) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(f), Some(h)) => h < f,
        };
        if take_heap {
            let (ts, _) = heap.expect("peeked");
            if ts > limit {
                return None;
            }
            let Reverse((_, seq, OrderedBox(e))) = self.out_of_order.pop().expect("peeked");
            Some((seq, *e))
        } else {
            let (ts, _) = front?;
            if ts > limit {
                return None;
            }
            self.in_order.pop_front().map(|(_, seq, e)| (seq, e))
        }
    }
}

/// A replay has no wall clock to bound event time, so the stream's own clock
/// does. An event further ahead of it than the allowed skew is held back, and
/// the events after it decide what it was:
/// - another event also ahead of the clock, with nothing ordinary between: the
///   stream really moved on (a quiet night, a sparse history file), and the
///   held events go through in order;
/// - ordinary events that bring the clock within the skew of it: it was only
///   a little early, and goes through;
/// - [`OUTLIER_AFTER`] ordinary events that leave it far ahead: the stream
///   carries on at its old time, so the jump was one forged or broken
///   timestamp. It is rejected as `future_ts` rather than making every later
///   event "late";
/// - the end of the input: nothing contradicts it, and it goes through (after
///   everything else, where it can blind nothing).
struct FutureGuard {
    skew_ms: i64,
    /// The very first event, until the second says whether it can set the clock.
    first: Option<(u64, Event)>,
    clock: Option<i64>,
    held: Vec<(u64, Event)>,
    ordinary_since_held: u32,
}

/// Ordinary events after a held jump that make it an outlier.
const OUTLIER_AFTER: u32 = 2;

impl FutureGuard {
    fn new(skew_ms: i64) -> FutureGuard {
        FutureGuard { skew_ms, first: None, clock: None, held: Vec::new(), ordinary_since_held: 0 }
    }

    /// Admit an event: what may go on now (in order), and what is refused.
    #[allow(clippy::type_complexity)]
    fn admit(&mut self, seq: u64, event: Event) -> (Vec<(u64, Event)>, Vec<(u64, Event)>) {
        // The first event cannot set the clock alone: a forged first line
        // would make the whole stream late.
        let Some(clock) = self.clock else {
            let Some((fseq, first)) = self.first.take() else {
                self.first = Some((seq, event));
                return (Vec::new(), Vec::new());
            };
            if event.ts_ms < first.ts_ms - self.skew_ms {
                // The first line is far ahead of the second: hold it like any jump.
                self.clock = Some(event.ts_ms);
                self.held.push((fseq, first));
                self.ordinary_since_held = 1;
                return (vec![(seq, event)], Vec::new());
            }
            if event.ts_ms > first.ts_ms + self.skew_ms {
                // The second is the jump: the first sets the clock, the second waits like any jump.
                self.clock = Some(first.ts_ms);
                self.held.push((seq, event));
                self.ordinary_since_held = 0;
                return (vec![(fseq, first)], Vec::new());
            }
            self.clock = Some(first.ts_ms.max(event.ts_ms));
            return (vec![(fseq, first), (seq, event)], Vec::new());
        };
        if event.ts_ms <= clock + self.skew_ms {
            let clock = clock.max(event.ts_ms);
            self.clock = Some(clock);
            let mut admitted = vec![(seq, event)];
            let mut refused = Vec::new();
            if !self.held.is_empty() {
                // The clock moved: held events it has caught up with go through.
                let (near, far): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held).into_iter().partition(|(_, e)| e.ts_ms <= clock + self.skew_ms);
                admitted.extend(near);
                self.held = far;
                if self.held.is_empty() {
                    self.ordinary_since_held = 0;
                } else {
                    self.ordinary_since_held += 1;
                    if self.ordinary_since_held >= OUTLIER_AFTER {
                        refused = std::mem::take(&mut self.held);
                        self.ordinary_since_held = 0;
                    }
                }
            }
            return (admitted, refused);
        }
        let moved_on = !self.held.is_empty() && self.ordinary_since_held == 0;
        self.held.push((seq, event));
        self.ordinary_since_held = 0;
        if !moved_on {
            return (Vec::new(), Vec::new());
        }
        // Believe the earliest held time, then let through whatever fits the new clock.
        self.held.sort_by_key(|(s, e)| (e.ts_ms, *s));
        let first = self.held[0].1.ts_ms;
        self.clock = Some(first);
        let mut admitted = Vec::new();
        let mut keep = Vec::new();
        for (s, e) in std::mem::take(&mut self.held) {
            let clock = self.clock.unwrap_or(first);
            if e.ts_ms <= clock + self.skew_ms {
                self.clock = Some(clock.max(e.ts_ms));
                admitted.push((s, e));
            } else {
                keep.push((s, e));
            }
        }
        self.held = keep;
        (admitted, Vec::new())
    }

    /// At the end of the input: held events nothing contradicted go through;
    /// the rest are refused.
    #[allow(clippy::type_complexity)]
    fn finish(&mut self) -> (Vec<(u64, Event)>, Vec<(u64, Event)>) {
        let mut held = std::mem::take(&mut self.held);
        held.extend(self.first.take());
        if self.ordinary_since_held == 0 {
            (held, Vec::new())
        } else {
            (Vec::new(), held)
        }
    }

    fn refusal(&self, ts_ms: i64) -> EventError {
        let ahead = ts_ms - self.clock.unwrap_or(ts_ms);
        EventError::FutureTimestamp { ahead_s: ahead / 1000, skew_s: self.skew_ms / 1000, clock: "stream" }
    }
}

struct Runner<'p, 'o> {
    pipeline: &'p Pipeline,
    /// Warm the store only (history before a live start); decide nothing.
    warm_only: bool,
    scratch: Scratch,
    folder: AlertFolder,
    out: ReplayOutputs<'o>,
    summary: ReplaySummary,
    line_buf: Vec<u8>,
}

impl Runner<'_, '_> {
    fn reject(&mut self, line: u64, error: &EventError) -> Result<(), DetectorError> {
        *self.summary.rejected.entry(error.reason()).or_default() += 1;
        writeln!(self.out.errors, "line {line}: {error}")?;
        Ok(())
    }

    fn run(&mut self, line: u64, event: &Event) -> Result<(), DetectorError> {
        if self.warm_only {
            match self.pipeline.warm(event, &mut self.scratch) {
                Ok(()) => self.summary.accepted += 1,
                Err(e) => self.reject(line, &e)?,
            }
            return Ok(());
        }
        let processed = match self.pipeline.process(event, &mut self.scratch) {
            Ok(p) => p,
            Err(e) => return self.reject(line, &e),
        };
        self.summary.accepted += 1;
        self.summary.late += u64::from(processed.late);
        *self.summary.decisions.entry(processed.decision.verdict.as_str()).or_default() += 1;
        self.line_buf.clear();
        serde_json::to_writer(&mut self.line_buf, &processed.decision).map_err(std::io::Error::other)?;
        self.line_buf.push(b'\n');
        self.out.decisions.write_all(&self.line_buf)?;
        if let Some(sink) = self.out.alerts.as_deref_mut() {
            let catalog = self.pipeline.store().catalog();
            for finding in &self.scratch.findings {
                let entity = finding.entity.and_then(|k| entity_text(event, k));
                if let haechi_alerting::Folded::New(_) =
                    self.folder.fold(finding, entity.as_deref(), &event.event_id, event.ts_ms, catalog)
                {
                    *self.summary.alerts.get_or_insert(0) += 1;
                }
            }
            // Closing windows is a scan of the open alerts: once per 256 events, not per event.
            if self.summary.accepted % 256 == 0 && self.folder.open_len() > 0 {
                for alert in self.folder.drain_closed(self.pipeline.store().watermark_ms().unwrap_or(i64::MIN)) {
                    sink.send(&alert)?;
                }
            }
        }
        Ok(())
    }
}

/// Replay NDJSON from `input` through `pipeline`.
///
/// # Errors
/// Only when reading the input or writing an output fails; bad lines are
/// reported to `outputs.errors`, counted and skipped.
pub fn replay(pipeline: &Pipeline, input: &mut dyn BufRead, outputs: ReplayOutputs<'_>) -> Result<ReplaySummary, DetectorError> {
    run_stream(pipeline, input, outputs, false)
}

/// Warm `pipeline` from past events: the same reading, ordering and
/// validation as [`replay`], but only the feature store learns; nothing is
/// decided, blocked or alerted. `haechi serve --warm-from` and `haechi replay
/// --warm-from` start this way, so a new install or a restart is not blind
/// to customers' habits for days.
///
/// # Errors
/// When reading the input or writing an error line fails.
pub fn warm(pipeline: &Pipeline, input: &mut dyn BufRead, errors: &mut dyn Write) -> Result<ReplaySummary, DetectorError> {
    let mut sink = std::io::sink();
    run_stream(pipeline, input, ReplayOutputs { decisions: &mut sink, alerts: None, errors }, true)
}

fn run_stream(pipeline: &Pipeline, input: &mut dyn BufRead, outputs: ReplayOutputs<'_>, warm_only: bool) -> Result<ReplaySummary, DetectorError> {
    let started = Instant::now();
    let config = pipeline.config();
    let lateness_ms = config.features.allowed_lateness.as_millis() as i64;
    let fold_ms = config.alerts.fold_window.as_millis() as i64;
    let wants_alerts = outputs.alerts.is_some();
    let mut runner = Runner {
        pipeline,
        warm_only,
        scratch: pipeline.scratch(),
        folder: AlertFolder::new(fold_ms, lateness_ms),
        out: outputs,
        summary: ReplaySummary { alerts: wants_alerts.then_some(0), ..ReplaySummary::default() },
        line_buf: Vec::with_capacity(256),
    };
    let mut buffer = ReorderBuffer::default();
    let mut guard = FutureGuard::new(config.pipeline.max_clock_skew.as_millis() as i64);
    let mut newest = i64::MIN;
    let mut released_upto = i64::MIN;
    let mut line = Vec::with_capacity(1024);
    let max = config.pipeline.max_event_bytes;
    let mut n: u64 = 0;
    loop {
        let status = read_bounded_line(input, &mut line, max)?;
        let Some(len) = status else { break };
        n += 1;
        runner.summary.lines += 1;
        let parsed = if len > max { Err(EventError::TooLarge { len, limit: max }) } else { pipeline.parse(trim_cr(&line)) };
        let event = match parsed {
            Ok(e) => e,
            Err(EventError::Empty) => {
                runner.summary.lines -= 1;
                continue;
            }
            Err(e) => {
                runner.reject(n, &e)?;
                continue;
            }
        };
        let (admitted, refused) = guard.admit(n, event);
        for (seq, e) in refused {
            runner.reject(seq, &guard.refusal(e.ts_ms))?;
        }
        for (seq, event) in admitted {
            if event.ts_ms < released_upto {
                // Too late for the buffer's order: decide it now, as it is.
                runner.run(seq, &event)?;
                continue;
            }
            newest = newest.max(event.ts_ms);
            buffer.push(seq, event);
            while let Some((seq, event)) = buffer.pop_ready(newest - lateness_ms) {
                released_upto = released_upto.max(event.ts_ms);
                runner.run(seq, &event)?;
            }
        }
    }
    let (admitted, refused) = guard.finish();
    for (seq, e) in refused {
        runner.reject(seq, &guard.refusal(e.ts_ms))?;
    }
    while let Some((seq, event)) = buffer.pop_ready(i64::MAX) {
        runner.run(seq, &event)?;
    }
    for (seq, event) in admitted {
        runner.run(seq, &event)?;
    }
    if let Some(sink) = runner.out.alerts.as_deref_mut() {
        for alert in runner.folder.drain_all() {
            sink.send(&alert)?;
        }
        sink.flush()?;
    }
    runner.out.decisions.flush()?;
    runner.out.errors.flush()?;
    runner.summary.elapsed = started.elapsed();
    Ok(runner.summary)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Read one line into `buf` (without its newline), keeping at most `max + 1`
/// bytes: a longer line is skipped to its end and its full length returned,
/// so a gigabyte line costs no memory. `None` at end of input.
pub fn read_bounded_line(input: &mut dyn BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Option<usize>> {
    buf.clear();
    let mut total = 0usize;
    let mut any = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(any.then_some(total));
        }
        any = true;
        let (take, done) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if buf.len() <= max {
            let room = (max + 1 - buf.len()).min(take);
            buf.extend_from_slice(&chunk[..room]);
        }
        total += take;
        input.consume(take + usize::from(done));
        if done {
            return Ok(Some(total));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(i: u32, ts: &str, step: &str, result: &str) -> String {
        format!(r#"{{"event_id":"e{i}","ts":"{ts}","step":"{step}","result":"{result}","customer_id":"c1","ip":"45.1.2.3"}}"#)
    }

    fn run(input: &str) -> (ReplaySummary, Vec<serde_json::Value>) {
        let mut config = crate::Config::default();
        config.model.enabled = false;
        let p = Pipeline::new(config).unwrap();
        let mut out = Vec::new();
        let mut errors = Vec::new();
        let summary = replay(&p, &mut input.as_bytes(), ReplayOutputs { decisions: &mut out, alerts: None, errors: &mut errors }).unwrap();
        let decisions = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
        (summary, decisions)
    }

    #[test]
    fn one_far_future_event_cannot_blind_a_replay() {
        let burst = |forged: bool| {
            let mut text = line(0, "2026-11-02T10:00:00+09:00", "login", "success") + "\n";
            if forged {
                text += &(line(1, "2099-01-01T00:00:00+09:00", "login", "success") + "\n");
            }
            for i in 0..30 {
                text += &(line(10 + i, &format!("2026-11-02T10:01:{i:02}+09:00"), "otp", "failure") + "\n");
            }
            run(&text)
        };
        let (clean, clean_decisions) = burst(false);
        let (summary, decisions) = burst(true);
        assert_eq!(summary.rejected.get("future_ts"), Some(&1), "{summary}");
        assert_eq!((clean.late, summary.late), (0, 0), "nothing became late");
        let blocked = |d: &[serde_json::Value]| d.iter().filter(|d| d["decision"] == "block").count();
        assert!(blocked(&clean_decisions) >= 20, "the burst is blocked: {}", blocked(&clean_decisions));
        assert_eq!(blocked(&decisions), blocked(&clean_decisions), "the forged timestamp changed nothing");
    }

    #[test]
    fn a_forged_first_line_cannot_blind_a_replay_either() {
        let mut text = line(1, "2099-01-01T00:00:00+09:00", "login", "success") + "\n";
        for i in 0..30 {
            text += &(line(10 + i, &format!("2026-11-02T10:01:{i:02}+09:00"), "otp", "failure") + "\n");
        }
        let (summary, decisions) = run(&text);
        assert_eq!(summary.rejected.get("future_ts"), Some(&1), "{summary}");
        assert_eq!(summary.late, 0);
        assert!(decisions.iter().filter(|d| d["decision"] == "block").count() >= 20);
    }

    #[test]
    fn a_sparse_history_goes_through_whole() {
        // One event a day, as a single customer's history file has.
        let text: String = (2..9).map(|d| line(d, &format!("2026-11-0{d}T11:00:00+09:00"), "login", "success") + "\n").collect();
        let (summary, decisions) = run(&text);
        assert_eq!(summary.rejected_total(), 0, "{summary}");
        assert_eq!(decisions.len(), 7);
    }

    #[test]
    fn a_real_jump_in_the_stream_is_believed_once_confirmed() {
        let mut text = String::new();
        for i in 0..5 {
            text += &(line(i, &format!("2026-11-02T10:00:0{i}+09:00"), "login", "success") + "\n");
        }
        // Eight quiet hours, then traffic again.
        for i in 0..5 {
            text += &(line(10 + i, &format!("2026-11-02T18:00:0{i}+09:00"), "login", "success") + "\n");
        }
        let (summary, decisions) = run(&text);
        assert_eq!(summary.rejected_total(), 0, "{summary}");
        assert_eq!(decisions.len(), 10);
    }

    proptest! {
        /// The bounded reader splits lines exactly like `lines()` and never
        /// keeps more than `max + 1` bytes.
        #[test]
        fn bounded_reader_matches_lines(text in "[a-z\n]{0,200}", max in 1usize..20, cap in 1usize..16) {
            let mut r = std::io::BufReader::with_capacity(cap, text.as_bytes());
            let mut buf = Vec::new();
            let mut got = Vec::new();
            while let Some(len) = read_bounded_line(&mut r, &mut buf, max).unwrap() {
                prop_assert!(buf.len() <= max + 1);
                got.push(len);
            }
            let want: Vec<usize> = text.lines().map(str::len).collect();
            prop_assert_eq!(got, want);
        }
    }
}
