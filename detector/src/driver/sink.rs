//! Where decisions and alerts go. The driver hands every decided event to a
//! [`Sink`], and every refused record too. Sinks here:
//! - [`DecisionWriter`]: one decision per line (NDJSON), and `line N: problem` per refusal;
//! - [`AlertFolding`]: findings folded into alerts, each handed to an [`AlertSink`] when its window closes;
//! - [`FeedSink`]: findings into the live alert feed (new alerts at once, to the alert log with a data dir);
//! - a pair `(A, B)` is a sink that feeds both.
//!
//! The service's own sink (metrics and the feed, per request) is in
//! `service::state`; access records and Fluvio topics are sinks to come.

use std::io::Write;

use haechi_alerting::{AlertFolder, AlertSink, Folded};
use haechi_features::{entity_text, Error as EventError, Event, Finding};

use crate::error::DetectorError;
use crate::pipeline::{Pipeline, Processed};
use crate::service::feed::AlertFeed;

/// A destination for what the pipeline decided.
pub trait Sink {
    /// The source position (a line number, an ingest-log offset) of the event about to be
    /// decided; sinks that record where an event came from keep it.
    fn at(&mut self, _position: u64) {}

    /// One decided event, with the findings behind its decision.
    ///
    /// # Errors
    /// When the destination fails.
    fn decided(&mut self, pipeline: &Pipeline, event: &Event, processed: &Processed, findings: &[Finding]) -> Result<(), DetectorError>;

    /// One record refused, at its source position.
    ///
    /// # Errors
    /// When the destination fails.
    fn refused(&mut self, _position: u64, _error: &EventError) -> Result<(), DetectorError> {
        Ok(())
    }

    /// The source has ended: hand on what is held, flush.
    ///
    /// # Errors
    /// When the destination fails.
    fn finish(&mut self, _pipeline: &Pipeline) -> Result<(), DetectorError> {
        Ok(())
    }
}

impl<A: Sink, B: Sink> Sink for (A, B) {
    fn at(&mut self, position: u64) {
        self.0.at(position);
        self.1.at(position);
    }

    fn decided(&mut self, pipeline: &Pipeline, event: &Event, processed: &Processed, findings: &[Finding]) -> Result<(), DetectorError> {
        self.0.decided(pipeline, event, processed, findings)?;
        self.1.decided(pipeline, event, processed, findings)
    }

    fn refused(&mut self, position: u64, error: &EventError) -> Result<(), DetectorError> {
        self.0.refused(position, error)?;
        self.1.refused(position, error)
    }

    fn finish(&mut self, pipeline: &Pipeline) -> Result<(), DetectorError> {
        self.0.finish(pipeline)?;
        self.1.finish(pipeline)
    }
}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn at(&mut self, position: u64) {
        (**self).at(position);
    }

    fn decided(&mut self, pipeline: &Pipeline, event: &Event, processed: &Processed, findings: &[Finding]) -> Result<(), DetectorError> {
        (**self).decided(pipeline, event, processed, findings)
    }

    fn refused(&mut self, position: u64, error: &EventError) -> Result<(), DetectorError> {
        (**self).refused(position, error)
    }

    fn finish(&mut self, pipeline: &Pipeline) -> Result<(), DetectorError> {
        (**self).finish(pipeline)
    }
}

/// Nothing: a sink for warming, where nothing is decided.
pub struct Discard;

impl Sink for Discard {
    fn decided(&mut self, _: &Pipeline, _: &Event, _: &Processed, _: &[Finding]) -> Result<(), DetectorError> {
        Ok(())
    }
}

/// Decisions as NDJSON, refusals as `line N: problem`.
pub struct DecisionWriter<'a> {
    decisions: &'a mut dyn Write,
    errors: &'a mut dyn Write,
    /// Reused from line to line: no allocation per decision.
    line: Vec<u8>,
}

impl<'a> DecisionWriter<'a> {
    pub fn new(decisions: &'a mut dyn Write, errors: &'a mut dyn Write) -> DecisionWriter<'a> {
        DecisionWriter { decisions, errors, line: Vec::with_capacity(256) }
    }
}

impl Sink for DecisionWriter<'_> {
    fn decided(&mut self, _: &Pipeline, _: &Event, processed: &Processed, _: &[Finding]) -> Result<(), DetectorError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, &processed.decision).map_err(std::io::Error::other)?;
        self.line.push(b'\n');
        self.decisions.write_all(&self.line)?;
        Ok(())
    }

    fn refused(&mut self, position: u64, error: &EventError) -> Result<(), DetectorError> {
        writeln!(self.errors, "line {position}: {error}")?;
        Ok(())
    }

    fn finish(&mut self, _: &Pipeline) -> Result<(), DetectorError> {
        self.decisions.flush()?;
        self.errors.flush()?;
        Ok(())
    }
}

/// Findings folded into alerts; each alert goes to the [`AlertSink`] once
/// its window has closed (with its final count), the rest at the end.
pub struct AlertFolding<'a> {
    folder: AlertFolder,
    out: &'a mut dyn AlertSink,
    decided: u64,
    /// New alerts opened so far.
    pub opened: u64,
}

impl<'a> AlertFolding<'a> {
    pub fn new(pipeline: &Pipeline, out: &'a mut dyn AlertSink) -> AlertFolding<'a> {
        let config = pipeline.config();
        let folder = AlertFolder::new(config.alerts.fold_window.as_millis() as i64, config.features.allowed_lateness.as_millis() as i64);
        AlertFolding { folder, out, decided: 0, opened: 0 }
    }
}

impl Sink for AlertFolding<'_> {
    fn decided(&mut self, pipeline: &Pipeline, event: &Event, _: &Processed, findings: &[Finding]) -> Result<(), DetectorError> {
        let catalog = pipeline.store().catalog();
        for finding in findings {
            let entity = finding.entity.and_then(|k| entity_text(event, k));
            if let Folded::New(_) = self.folder.fold(finding, entity.as_deref(), &event.event_id, event.ts_ms, catalog) {
                self.opened += 1;
            }
        }
        self.decided += 1;
        // Closing windows is a scan of the open alerts: once per 256 events, not per event.
        if self.decided.is_multiple_of(256) && self.folder.open_len() > 0 {
            for alert in self.folder.drain_closed(pipeline.store().watermark_ms().unwrap_or(i64::MIN)) {
                self.out.send(&alert)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, _: &Pipeline) -> Result<(), DetectorError> {
        for alert in self.folder.drain_all() {
            self.out.send(&alert)?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// Findings into the live alert feed.
pub struct FeedSink<'a>(pub &'a AlertFeed);

impl Sink for FeedSink<'_> {
    fn decided(&mut self, pipeline: &Pipeline, event: &Event, _: &Processed, findings: &[Finding]) -> Result<(), DetectorError> {
        self.0.fold_findings(pipeline, event, findings);
        Ok(())
    }
}
