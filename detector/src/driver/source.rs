//! Where events come from. A source hands the driver raw records, one at a
//! time, with their position (a line number, a log offset); the driver
//! validates and decides them. Pull sources live here:
//! - [`NdjsonSource`]: a file or stdin, one JSON event per line (`replay`, `--warm-from`);
//! - [`LogSource`]: the ingest log from an offset (recovery after a restart).
//!
//! The HTTP service is the push source: each request's body is parsed and
//! handed to the same pipeline and sinks (see `service::state`).

use std::io::BufRead;

use haechi_storage::LogReader;

use crate::error::DetectorError;

/// Where a record was, and what the source knows about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// A line number, a log offset.
    pub position: u64,
    /// The record's full length (over the limit: refused as too large).
    pub len: usize,
    /// The wall clock (ms) when the service accepted it, for records read
    /// back from the ingest log.
    pub wall_ms: Option<i64>,
}

/// A stream of raw records.
pub trait Source {
    /// Read the next record into `buf` (cleared first), keeping at most
    /// `max + 1` bytes of it; `None` at the end.
    ///
    /// # Errors
    /// When reading fails.
    fn next_record(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Option<RecordInfo>, DetectorError>;

    /// Records arrive in the order the service decided them (the ingest
    /// log): the driver decides them as they come, with no reorder buffer
    /// and no future-timestamp guard (both already ran when they arrived).
    fn in_decision_order(&self) -> bool {
        false
    }
}

/// NDJSON from any reader: positions are line numbers, from 1. Blank lines
/// are skipped without a number of their own being refused.
pub struct NdjsonSource<'a> {
    input: &'a mut dyn BufRead,
    line: u64,
}

impl<'a> NdjsonSource<'a> {
    pub fn new(input: &'a mut dyn BufRead) -> NdjsonSource<'a> {
        NdjsonSource { input, line: 0 }
    }
}

impl Source for NdjsonSource<'_> {
    fn next_record(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Option<RecordInfo>, DetectorError> {
        let Some(mut len) = read_bounded_line(self.input, buf, max)? else { return Ok(None) };
        self.line += 1;
        if buf.last() == Some(&b'\r') {
            buf.pop();
            len -= 1;
        }
        Ok(Some(RecordInfo { position: self.line, len, wall_ms: None }))
    }
}

/// An ingest-log record: the wall clock (ms, little-endian) at which the
/// service accepted the event, then the event as it arrived. Recovery decides
/// it against that clock, as it was decided live.
pub fn log_record(wall_ms: i64, raw: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(8 + raw.len());
    record.extend_from_slice(&wall_ms.to_le_bytes());
    record.extend_from_slice(raw);
    record
}

/// The ingest log from an offset: positions are log offsets.
pub struct LogSource {
    reader: LogReader,
}

impl LogSource {
    pub fn new(reader: LogReader) -> LogSource {
        LogSource { reader }
    }
}

impl Source for LogSource {
    fn next_record(&mut self, buf: &mut Vec<u8>, _max: usize) -> Result<Option<RecordInfo>, DetectorError> {
        let Some(record) = self.reader.next() else { return Ok(None) };
        let (offset, mut bytes) = record?;
        let Some(wall) = bytes.get(..8).map(|w| i64::from_le_bytes(w.try_into().expect("eight bytes"))) else {
            return Err(DetectorError::Snapshot(format!("ingest log record {offset} is {} bytes, shorter than its wall-clock stamp", bytes.len())));
        };
        bytes.drain(..8);
        *buf = bytes;
        Ok(Some(RecordInfo { position: offset, len: buf.len(), wall_ms: Some(wall) }))
    }

    fn in_decision_order(&self) -> bool {
        true
    }
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

    #[test]
    fn ndjson_lines_are_numbered_and_lose_their_carriage_return() {
        let mut input: &[u8] = b"{\"a\":1}\r\n\n{\"b\":2}";
        let mut source = NdjsonSource::new(&mut input);
        let mut buf = Vec::new();
        let at = |position, len| Some(RecordInfo { position, len, wall_ms: None });
        assert_eq!(source.next_record(&mut buf, 100).unwrap(), at(1, 7));
        assert_eq!(buf, b"{\"a\":1}");
        assert_eq!(source.next_record(&mut buf, 100).unwrap(), at(2, 0));
        assert_eq!(source.next_record(&mut buf, 100).unwrap(), at(3, 7));
        assert_eq!(source.next_record(&mut buf, 100).unwrap(), None);
    }
}
