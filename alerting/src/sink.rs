//! Where alerts go.

use std::io::Write;

use crate::alert::Alert;
use crate::error::AlertError;

/// A destination for alerts.
pub trait AlertSink: Send {
    /// Deliver one alert.
    ///
    /// # Errors
    /// When the destination refuses or fails; the caller keeps the alert.
    fn send(&mut self, alert: &Alert) -> Result<(), AlertError>;

    /// Push out anything buffered.
    ///
    /// # Errors
    /// When the destination fails.
    fn flush(&mut self) -> Result<(), AlertError>;
}

/// One JSON alert per line to any writer (a file, stdout).
pub struct NdjsonSink<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> NdjsonSink<W> {
    /// Wrap a writer.
    pub fn new(out: W) -> Self {
        NdjsonSink { out }
    }
}

impl<W: Write + Send> AlertSink for NdjsonSink<W> {
    fn send(&mut self, alert: &Alert) -> Result<(), AlertError> {
        serde_json::to_writer(&mut self.out, alert)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), AlertError> {
        Ok(self.out.flush()?)
    }
}
