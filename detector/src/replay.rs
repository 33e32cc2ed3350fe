//! `haechi replay`: a file or stdin through the driver, decisions and alerts
//! out; and `--warm-from`, the same reading with only the features learning.

use std::io::{BufRead, Write};

use haechi_alerting::AlertSink;

use crate::driver::{self, AlertFolding, DecisionWriter, Discard, Mode, NdjsonSource};
use crate::error::DetectorError;
use crate::pipeline::Pipeline;
pub use crate::driver::ReplaySummary;

/// Where a replay writes.
pub struct ReplayOutputs<'a> {
    /// One decision per valid event, NDJSON.
    pub decisions: &'a mut dyn Write,
    /// Alerts, if wanted.
    pub alerts: Option<&'a mut dyn AlertSink>,
    /// `line N: problem` for every rejected line.
    pub errors: &'a mut dyn Write,
}

/// Replay NDJSON from `input` through `pipeline`.
///
/// # Errors
/// Only when reading the input or writing an output fails; bad lines are
/// reported to `outputs.errors`, counted and skipped.
pub fn replay(pipeline: &Pipeline, input: &mut dyn BufRead, outputs: ReplayOutputs<'_>) -> Result<ReplaySummary, DetectorError> {
    let mut source = NdjsonSource::new(input);
    let writer = DecisionWriter::new(outputs.decisions, outputs.errors);
    match outputs.alerts {
        Some(out) => {
            let mut sink = (writer, AlertFolding::new(pipeline, out));
            let mut summary = driver::run(pipeline, &mut source, &mut sink, Mode::Decide)?;
            summary.alerts = Some(sink.1.opened);
            Ok(summary)
        }
        None => {
            let mut sink = writer;
            driver::run(pipeline, &mut source, &mut sink, Mode::Decide)
        }
    }
}

/// Warm `pipeline` from past events: the same reading, ordering and
/// validation as [`replay`], but only the feature store learns; nothing is
/// blocked or alerted (staff accesses are judged, to keep refused days out
/// of habits: see [`Pipeline::warm`]). `haechi serve --warm-from` and `haechi replay
/// --warm-from` start this way, so a new install or a restart is not blind
/// to customers' habits for days.
///
/// # Errors
/// When reading the input or writing an error line fails.
pub fn warm(pipeline: &Pipeline, input: &mut dyn BufRead, errors: &mut dyn Write) -> Result<ReplaySummary, DetectorError> {
    let mut source = NdjsonSource::new(input);
    let mut nothing = std::io::sink();
    let mut sink = (DecisionWriter::new(&mut nothing, errors), Discard);
    driver::run(pipeline, &mut source, &mut sink, Mode::Warm)
}

/// The alerts a person should read first, kept while a replay runs: the
/// strongest (severity, then findings folded in, then score), at most
/// `keep`, and how many there were. Passes every alert on to `inner`.
pub struct TopAlerts<'a> {
    inner: Option<&'a mut dyn AlertSink>,
    keep: usize,
    best: Vec<haechi_alerting::Alert>,
    seen: std::collections::HashSet<String>,
}

impl<'a> TopAlerts<'a> {
    pub fn new(inner: Option<&'a mut dyn AlertSink>, keep: usize) -> TopAlerts<'a> {
        TopAlerts { inner, keep: keep.max(1), best: Vec::new(), seen: std::collections::HashSet::new() }
    }

    fn rank(a: &haechi_alerting::Alert) -> (haechi_features::Severity, u32, u32) {
        (a.severity, a.count, (a.score.clamp(0.0, 1.0) * 1e6) as u32)
    }

    fn prune(&mut self) {
        self.best.sort_by(|a, b| Self::rank(b).cmp(&Self::rank(a)).then_with(|| a.id.cmp(&b.id)));
        self.best.truncate(self.keep);
    }

    /// A few lines for a person: the strongest alerts, each with what fired
    /// (the rule's description from the loaded pack) and the feature values behind it.
    pub fn describe(mut self, pipeline: &Pipeline, lines: usize) -> String {
        use std::fmt::Write as _;
        self.prune();
        let pack = pipeline.rules().current();
        let mut out = String::new();
        let total = self.seen.len();
        if total == 0 {
            return "no alerts\n".to_owned();
        }
        // The strongest alert of each rule: a person sees what kinds of trouble there were.
        let mut rules_seen = std::collections::HashSet::new();
        let shown: Vec<&haechi_alerting::Alert> = self.best.iter().filter(|a| rules_seen.insert(a.rule.clone())).take(lines).collect();
        let _ = writeln!(out, "\ntop alerts, the strongest of each rule ({} of {total} alerts; all of them: --alerts FILE, or the console of `haechi serve` at /console):", shown.len());
        for a in shown {
            // The description's first sentence: the rest is for the rule's maintainers.
            let first_sentence = |d: &str| {
                let d = d.split_whitespace().collect::<Vec<_>>().join(" ");
                let end = d.find(": ").or_else(|| d.find(". ")).unwrap_or(d.len());
                d[..end].trim_end_matches('.').to_owned()
            };
            let what = pack.rules().iter().find(|r| *r.id == *a.rule).map(|r| first_sentence(&r.description)).unwrap_or_else(|| match a.rule.as_str() {
                "isolation_forest" => "unusual for this traffic (isolation forest)".to_owned(),
                "failure_streak" => "failures in a row on one entity".to_owned(),
                other => other.to_owned(),
            });
            let entity = match (&a.entity_kind, &a.entity) {
                (Some(k), Some(e)) => format!("{k} {e}"),
                _ => "-".to_owned(),
            };
            let action = match a.action {
                haechi_features::Action::Block { .. } => "block",
                haechi_features::Action::Challenge => "challenge",
                haechi_features::Action::Alert => "alert",
                haechi_features::Action::Allow => "allow",
            };
            let _ = writeln!(out, "  {:<8} {} — {entity}, {} finding(s) from {} → {action}", a.severity.as_str().to_uppercase(), a.rule, a.count, a.time);
            let _ = writeln!(out, "           why: {what}");
            let evidence: Vec<String> = a.evidence.iter().take(3).map(|e| format!("{} = {}", e.feature, e.value)).collect();
            if !evidence.is_empty() {
                let _ = writeln!(out, "           seen: {}", evidence.join(", "));
            }
        }
        out
    }
}

impl AlertSink for TopAlerts<'_> {
    fn send(&mut self, alert: &haechi_alerting::Alert) -> Result<(), haechi_alerting::AlertError> {
        if let Some(inner) = self.inner.as_mut() {
            inner.send(alert)?;
        }
        if self.seen.insert(alert.id.clone()) {
            self.best.push(alert.clone());
        } else if let Some(a) = self.best.iter_mut().find(|a| a.id == alert.id) {
            *a = alert.clone();
        }
        if self.best.len() >= self.keep * 4 {
            self.prune();
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), haechi_alerting::AlertError> {
        match self.inner.as_mut() {
            Some(inner) => inner.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
