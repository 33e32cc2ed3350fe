use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tempfile::TempDir;

use super::*;

fn config(fsync: Fsync, segment_bytes: u64) -> LogConfig {
    LogConfig { fsync, fsync_interval: Duration::from_millis(10), segment_bytes }
}

/// Segments of the minimum size, so a few hundred short records span several of them.
fn small() -> LogConfig {
    config(Fsync::Never, 4096)
}

fn record(i: u64) -> Vec<u8> {
    format!("record {i};").repeat(1 + (i % 7) as usize).into_bytes()
}

fn append_records(log: &IngestLog, range: std::ops::Range<u64>) {
    for i in range {
        assert_eq!(log.append_one(&record(i)).unwrap(), i);
    }
}

fn read_all(log: &IngestLog, from: u64) -> Vec<(u64, Vec<u8>)> {
    log.read_from(from).unwrap().collect::<Result<_, _>>().unwrap()
}

fn expected(range: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
    range.map(|i| (i, record(i))).collect()
}

fn segment_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    list_segments(dir).unwrap()
}

fn last_segment(dir: &Path) -> PathBuf {
    segment_files(dir).pop().unwrap().1
}

fn open(dir: &Path, config: LogConfig) -> (IngestLog, OpenReport) {
    IngestLog::open(dir, config).unwrap()
}

#[test]
fn records_round_trip_across_segments_with_dense_offsets() {
    let dir = TempDir::new().unwrap();
    let (log, report) = open(dir.path(), small());
    assert_eq!(report, OpenReport { segments: 1, next_offset: 0, torn_tail_bytes: 0 });

    let mut next = 0;
    for batch_len in (1..=5).cycle().take(100) {
        let batch: Vec<Vec<u8>> = (next..next + batch_len).map(record).collect();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        assert_eq!(log.append(&refs).unwrap(), next);
        next += batch_len;
    }
    assert_eq!(log.next_offset(), next);
    let files = segment_files(dir.path());
    assert!(files.len() > 3, "only {} segments", files.len());
    assert_eq!(files[0].0, 0);

    assert_eq!(read_all(&log, 0), expected(0..next));
    assert_eq!(read_all(&log, 137), expected(137..next));
    assert_eq!(read_all(&log, files[2].0), expected(files[2].0..next));
    assert_eq!(read_all(&log, next), vec![]);
    assert!(matches!(log.read_from(next + 1), Err(StorageError::OffsetBeyondEnd { offset, next_offset, .. }) if offset == next + 1 && next_offset == next));

    // A reader covers the log as it was when it was made.
    let reader = log.read_from(next - 1).unwrap();
    log.append_one(b"later").unwrap();
    assert_eq!(reader.map(Result::unwrap).collect::<Vec<_>>(), vec![(next - 1, record(next - 1))]);

    let on_disk: u64 = files.iter().map(|(_, p)| std::fs::metadata(p).unwrap().len()).sum();
    assert_eq!(log.disk_usage(), (on_disk, files.len()));
}

#[test]
fn empty_append_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), small());
    append_records(&log, 0..3);
    let usage = log.disk_usage();
    assert_eq!(log.append(&[]).unwrap(), 3);
    assert_eq!(log.disk_usage(), usage);
    assert_eq!(log.next_offset(), 3);
}

#[test]
fn reopening_continues_the_offsets() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), small());
    append_records(&log, 0..150);
    let segments = log.disk_usage().1;
    drop(log);

    let (log, report) = open(dir.path(), small());
    assert_eq!(report, OpenReport { segments, next_offset: 150, torn_tail_bytes: 0 });
    append_records(&log, 150..160);
    assert_eq!(read_all(&log, 0), expected(0..160));
}

#[test]
fn a_tail_cut_short_is_truncated_and_appends_continue() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), config(Fsync::Never, 1 << 20));
    append_records(&log, 0..10);
    drop(log);
    let path = last_segment(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();

    let (log, report) = open(dir.path(), config(Fsync::Never, 1 << 20));
    assert_eq!(report.next_offset, 9);
    assert_eq!(report.torn_tail_bytes, FRAME_HEADER_LEN + record(9).len() as u64 - 3);
    assert_eq!(log.append(&[b"nine again", b"ten"]).unwrap(), 9);
    let mut want = expected(0..9);
    want.extend([(9, b"nine again".to_vec()), (10, b"ten".to_vec())]);
    assert_eq!(read_all(&log, 0), want);
}

#[test]
fn garbage_after_the_last_record_is_truncated() {
    // 0xAB reads as an impossible length. Zeros are what a file extended but not flushed shows after a
    // power loss; they would pass as empty records if the checksum did not cover the offset.
    for garbage in [vec![0xAB; 100], vec![0; 100], vec![7; 5]] {
        let dir = TempDir::new().unwrap();
        let (log, _) = open(dir.path(), config(Fsync::Never, 1 << 20));
        append_records(&log, 0..10);
        drop(log);
        let path = last_segment(dir.path());
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&garbage).unwrap();

        let (log, report) = open(dir.path(), config(Fsync::Never, 1 << 20));
        assert_eq!(report.next_offset, 10);
        assert_eq!(report.torn_tail_bytes, garbage.len() as u64);
        append_records(&log, 10..12);
        assert_eq!(read_all(&log, 0), expected(0..12));
    }
}

#[test]
fn a_segment_with_a_torn_header_is_rewritten() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), small());
    append_records(&log, 0..5);
    drop(log);
    // A crash right after creating the next segment, before its header reached the disk.
    std::fs::write(segment_path(dir.path(), 5), &segment_header(5, false)[..7]).unwrap();

    let (log, report) = open(dir.path(), small());
    assert_eq!(report, OpenReport { segments: 2, next_offset: 5, torn_tail_bytes: 7 });
    append_records(&log, 5..8);
    assert_eq!(read_all(&log, 0), expected(0..8));
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_reported_with_file_and_offset() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), small());
    append_records(&log, 0..300);
    drop(log);
    let files = segment_files(dir.path());
    let (_, damaged) = &files[1];
    let mut bytes = std::fs::read(damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(damaged, &bytes).unwrap();

    // Only the newest segment is scanned at open; the damage shows when the segment is read.
    let (log, _) = open(dir.path(), small());
    let err = log.read_from(0).unwrap().find_map(Result::err).unwrap();
    match &err {
        StorageError::Corrupt { path, offset, .. } => {
            assert_eq!(path, damaged);
            assert!((SEGMENT_HEADER_LEN..=middle as u64).contains(offset), "offset {offset}, flipped {middle}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(err.to_string().contains(&damaged.display().to_string()), "{err}");
    // Segments after the damaged one still read.
    assert_eq!(read_all(&log, files[2].0), expected(files[2].0..300));
}

#[test]
fn swapped_records_fail_their_checksums() {
    // Records 10 and 17 have the same length, so swapping their whole frames keeps every length
    // field valid: only the offset in the checksum can tell.
    assert_eq!(record(10).len(), record(17).len());
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), config(Fsync::Never, 1 << 20));
    append_records(&log, 0..20);
    drop(log);
    let path = last_segment(dir.path());
    let start = |n: u64| (SEGMENT_HEADER_LEN + (0..n).map(|i| FRAME_HEADER_LEN + record(i).len() as u64).sum::<u64>()) as usize;
    let frame_len = FRAME_HEADER_LEN as usize + record(10).len();
    let mut bytes = std::fs::read(&path).unwrap();
    let ten = bytes[start(10)..start(10) + frame_len].to_vec();
    bytes.copy_within(start(17)..start(17) + frame_len, start(10));
    bytes[start(17)..start(17) + frame_len].copy_from_slice(&ten);
    std::fs::write(&path, &bytes).unwrap();

    assert!(matches!(
        IngestLog::open(dir.path(), config(Fsync::Never, 1 << 20)),
        Err(StorageError::Corrupt { offset, .. }) if offset == start(10) as u64
    ));
}

#[test]
fn a_missing_middle_segment_is_reported() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), small());
    append_records(&log, 0..300);
    drop(log);
    let files = segment_files(dir.path());
    std::fs::remove_file(&files[1].1).unwrap();

    let (log, _) = open(dir.path(), small());
    let err = log.read_from(0).unwrap().find_map(Result::err).unwrap();
    assert!(matches!(&err, StorageError::Corrupt { path, .. } if *path == files[0].1), "{err}");
}

#[test]
fn a_bad_record_followed_by_good_ones_in_the_newest_segment_is_refused() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), config(Fsync::Never, 1 << 20));
    append_records(&log, 0..10);
    drop(log);
    let path = last_segment(dir.path());
    let record_3 = SEGMENT_HEADER_LEN + (0..3).map(|i| FRAME_HEADER_LEN + record(i).len() as u64).sum::<u64>();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(record_3 + FRAME_HEADER_LEN + 2) as usize] ^= 1;
    std::fs::write(&path, &bytes).unwrap();

    match IngestLog::open(dir.path(), config(Fsync::Never, 1 << 20)) {
        Err(StorageError::Corrupt { path: p, offset, reason }) => {
            assert_eq!(p, path);
            assert_eq!(offset, record_3);
            assert!(reason.contains("record 3"), "{reason}");
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("opened a log with damage in the middle"),
    }
    // Nothing was cut.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn remove_before_deletes_only_fully_covered_sealed_segments() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), small());
    append_records(&log, 0..300);
    let firsts: Vec<u64> = segment_files(dir.path()).iter().map(|(f, _)| *f).collect();
    assert!(firsts.len() >= 4);

    assert_eq!(log.remove_before(firsts[2] - 1).unwrap(), 1);
    assert_eq!(log.remove_before(firsts[2]).unwrap(), 1);
    assert_eq!(log.first_offset(), firsts[2]);
    assert_eq!(segment_files(dir.path())[0].0, firsts[2]);
    assert!(matches!(
        log.read_from(firsts[2] - 1),
        Err(StorageError::OffsetGone { offset, first_offset, .. }) if offset == firsts[2] - 1 && first_offset == firsts[2]
    ));
    assert_eq!(read_all(&log, firsts[2]), expected(firsts[2]..300));

    // Everything below the end still leaves the active segment.
    assert_eq!(log.remove_before(u64::MAX).unwrap(), firsts.len() - 3);
    assert_eq!(log.disk_usage().1, 1);
    assert_eq!(log.first_offset(), *firsts.last().unwrap());
    drop(log);
    let (log, report) = open(dir.path(), small());
    assert_eq!((log.first_offset(), report.next_offset), (*firsts.last().unwrap(), 300));
}

#[cfg(unix)]
#[test]
fn a_reader_keeps_segments_removed_after_it_was_made() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), small());
    append_records(&log, 0..300);
    let reader = log.read_from(0).unwrap();
    assert!(log.remove_before(300).unwrap() > 0);
    assert_eq!(reader.collect::<Result<Vec<_>, _>>().unwrap(), expected(0..300));
}

#[test]
fn every_fsync_mode_round_trips() {
    for fsync in [Fsync::Always, Fsync::Interval, Fsync::Never] {
        let dir = TempDir::new().unwrap();
        let (log, _) = open(dir.path(), config(fsync, 4096));
        append_records(&log, 0..120);
        drop(log);
        let (log, report) = open(dir.path(), config(fsync, 4096));
        assert_eq!(report.next_offset, 120, "{fsync:?}");
        assert_eq!(read_all(&log, 0), expected(0..120), "{fsync:?}");
    }
}

#[test]
fn sync_fdatasyncs_everything_appended_before_it() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), config(Fsync::Never, 1 << 20));
    append_records(&log, 0..10);
    assert_eq!(log.synced_through(), 0);
    let before = log.syncs();
    log.sync().unwrap();
    assert!(log.syncs() > before);
    assert_eq!(log.synced_through(), 10);
}

#[test]
fn always_syncs_before_append_returns() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), config(Fsync::Always, 4096));
    for i in 0..50 {
        log.append_one(&record(i)).unwrap();
        assert_eq!(log.synced_through(), i + 1);
    }
}

#[test]
fn concurrent_always_appends_each_return_synced() {
    let dir = TempDir::new().unwrap();
    let log = Arc::new(open(dir.path(), config(Fsync::Always, 16 << 10)).0);
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..40 {
                    let first = log.append(&[&record(t * 1000 + i), &record(i)]).unwrap();
                    assert!(log.synced_through() >= first + 2, "append of {first} returned before an fdatasync covered it");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(log.next_offset(), 480);
    assert_eq!(log.synced_through(), 480);
    // At most one fdatasync per append, and one per sealed segment.
    assert!(log.syncs() <= 240 + segment_files(dir.path()).len() as u64, "{} syncs", log.syncs());
    assert_eq!(read_all(&log, 0).len(), 480);
}

#[test]
fn a_deferred_append_is_durable_once_waited_for() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), config(Fsync::Always, 1 << 20));
    let first = log.append_deferred(&[&record(0), &record(1)]).unwrap();
    assert_eq!((first, log.synced_through()), (0, 0), "not synced yet");
    log.wait_durable(2).unwrap();
    assert_eq!(log.synced_through(), 2);
    let syncs = log.syncs();
    log.wait_durable(2).unwrap();
    assert_eq!(log.syncs(), syncs, "already covered: no second fdatasync");
    assert_eq!(read_all(&log, 0), expected(0..2));
}

#[test]
fn the_interval_thread_syncs_unsynced_appends() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), config(Fsync::Interval, 1 << 20));
    append_records(&log, 0..10);
    let deadline = Instant::now() + Duration::from_secs(5);
    while log.synced_through() < 10 {
        assert!(Instant::now() < deadline, "the fsync thread did not sync within 5 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    // With nothing new written it has nothing to sync; 20 intervals give it every chance to misbehave.
    let syncs = log.syncs();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(log.syncs(), syncs);
}

#[test]
fn records_over_the_limit_are_refused_and_the_limit_itself_fits() {
    let dir = TempDir::new().unwrap();
    let (log, _) = open(dir.path(), small());
    let big = vec![b'x'; MAX_RECORD_BYTES + 1];
    let err = log.append(&[b"fine", &big]).unwrap_err();
    assert!(matches!(err, StorageError::RecordTooLarge { size, .. } if size == MAX_RECORD_BYTES + 1));
    assert!(err.to_string().contains(&(MAX_RECORD_BYTES + 1).to_string()), "{err}");
    assert_eq!(log.next_offset(), 0, "a refused batch writes nothing");

    assert_eq!(log.append_one(&big[1..]).unwrap(), 0);
    drop(log);
    let (log, report) = open(dir.path(), small());
    assert_eq!(report.torn_tail_bytes, 0);
    assert_eq!(log.read_from(0).unwrap().next().unwrap().unwrap().1.len(), MAX_RECORD_BYTES);
}

#[test]
fn config_validation() {
    assert!(LogConfig::default().validate().is_ok());
    assert_eq!(LogConfig::default().segment_bytes, 64 << 20);
    assert_eq!(LogConfig::default().fsync_interval, Duration::from_millis(100));
    for bad in [
        LogConfig { segment_bytes: 4095, ..LogConfig::default() },
        LogConfig { fsync_interval: Duration::ZERO, ..LogConfig::default() },
        LogConfig { fsync_interval: Duration::from_secs(61), ..LogConfig::default() },
    ] {
        assert!(matches!(bad.validate(), Err(StorageError::InvalidConfig { .. })), "{bad:?}");
        let dir = TempDir::new().unwrap();
        assert!(IngestLog::open(dir.path(), bad).is_err());
    }
}

fn batches() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..8), 1..40)
}

fn write_batches(log: &IngestLog, batches: &[Vec<Vec<u8>>]) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for batch in batches {
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        assert_eq!(log.append(&refs).unwrap(), all.len() as u64);
        all.extend(batch.iter().cloned());
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_batches_round_trip(batches in batches(), from_fraction in 0.0..=1.0f64) {
        let dir = TempDir::new().unwrap();
        let (log, _) = open(dir.path(), small());
        let all = write_batches(&log, &batches);
        let want: Vec<(u64, Vec<u8>)> = (0..).zip(all).collect();
        prop_assert_eq!(read_all(&log, 0), want.clone());
        let from = (want.len() as f64 * from_fraction) as u64;
        prop_assert_eq!(read_all(&log, from), want[from as usize..].to_vec());
        drop(log);
        let (log, report) = open(dir.path(), small());
        prop_assert_eq!(report.torn_tail_bytes, 0);
        prop_assert_eq!(read_all(&log, 0), want);
    }

    #[test]
    fn a_cut_anywhere_in_the_last_segment_loses_only_a_suffix(batches in batches(), cut_fraction in 0.0..1.0f64) {
        let dir = TempDir::new().unwrap();
        let (log, _) = open(dir.path(), small());
        let all = write_batches(&log, &batches);
        drop(log);
        let (last_first, last) = segment_files(dir.path()).pop().unwrap();
        let len = std::fs::metadata(&last).unwrap().len();
        let cut = (len as f64 * cut_fraction) as u64;
        std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(cut).unwrap();

        let (log, report) = open(dir.path(), small());
        let read = read_all(&log, 0);
        prop_assert_eq!(read.len() as u64, report.next_offset);
        prop_assert!(report.next_offset >= last_first);
        let want: Vec<(u64, Vec<u8>)> = (0..).zip(all).take(read.len()).collect();
        prop_assert_eq!(&read, &want);

        let next = log.append_one(b"after the cut").unwrap();
        prop_assert_eq!(next, report.next_offset);
        prop_assert_eq!(read_all(&log, next), vec![(next, b"after the cut".to_vec())]);
    }
}

// Sealed logs.

use crate::crypto::{KeyRing, SealError};

fn ring(lines: &[&str]) -> KeyRing {
    KeyRing::parse(&lines.join("\n"), "test").unwrap()
}

fn open_sealed(dir: &Path, ring: &KeyRing) -> Result<(IngestLog, OpenReport), StorageError> {
    IngestLog::open_sealed(dir, small(), Some(ring.sealer("ingest-log")))
}

/// The frames of a segment file: where each starts and its payload, as on disk.
fn frames(bytes: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_LEN as usize;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, bytes[at + 8..at + 8 + len].to_vec()));
        at += 8 + len;
    }
    out
}

/// Put `payload` in the frame at `at` as record `offset`, with a checksum that matches.
fn forge_frame(bytes: &mut [u8], at: usize, offset: u64, payload: &[u8]) {
    bytes[at + 4..at + 8].copy_from_slice(&checksum(offset, payload).to_le_bytes());
    bytes[at + 8..at + 8 + payload.len()].copy_from_slice(payload);
}

/// Key ids of every record in the log, in offset order.
fn key_ids(dir: &Path) -> Vec<String> {
    segment_files(dir).iter().flat_map(|(_, p)| frames(&std::fs::read(p).unwrap())).map(|(_, f)| Sealer::key_id_of(&f).unwrap().to_owned()).collect()
}

#[test]
fn sealed_records_round_trip_and_nothing_of_them_is_on_disk() {
    let dir = TempDir::new().unwrap();
    let keys = ring(&[&KeyRing::generate_line("k1")]);
    let (log, _) = open_sealed(dir.path(), &keys).unwrap();
    append_records(&log, 0..300);
    assert_eq!(read_all(&log, 0), expected(0..300));
    assert_eq!(read_all(&log, 123), expected(123..300));
    drop(log);
    assert!(segment_files(dir.path()).len() > 3, "spans segments");
    for (_, path) in segment_files(dir.path()) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(7).any(|w| w == b"record "), "{} shows a plaintext record", path.display());
    }
    let (log, report) = open_sealed(dir.path(), &keys).unwrap();
    assert_eq!((report.next_offset, report.torn_tail_bytes), (300, 0));
    assert_eq!(read_all(&log, 0), expected(0..300));
}

#[test]
fn a_sealed_record_moved_or_altered_with_its_checksum_fixed_does_not_open() {
    let dir = TempDir::new().unwrap();
    let keys = ring(&[&KeyRing::generate_line("k1")]);
    let (log, _) = open_sealed(dir.path(), &keys).unwrap();
    // Records of one length, so one's sealed bytes fit another's frame.
    for i in 0..10 {
        log.append_one(format!("customer c-{i:03}").as_bytes()).unwrap();
    }
    drop(log);
    let path = last_segment(dir.path());
    let original = std::fs::read(&path).unwrap();
    let f = frames(&original);

    // Record 3's bytes at offset 6: the checksum is fixed, the seal is not.
    let mut moved = original.clone();
    forge_frame(&mut moved, f[6].0, 6, &f[3].1);
    std::fs::write(&path, &moved).unwrap();
    let (log, _) = open_sealed(dir.path(), &keys).unwrap();
    let read: Vec<_> = log.read_from(0).unwrap().collect();
    assert_eq!(read.len(), 7, "six records, then the error, then nothing");
    assert!(read[..6].iter().all(Result::is_ok));
    match &read[6] {
        Err(e @ StorageError::Unseal { path: p, what, source: SealError::Altered }) => {
            assert_eq!(p, &path);
            assert!(what.contains("record 6") && what.contains("\"k1\""), "{e}");
        }
        other => panic!("expected an unseal error, got {other:?}"),
    }
    drop(log);

    // One ciphertext byte flipped in record 2, the checksum fixed.
    let mut altered = original.clone();
    let mut payload = f[2].1.clone();
    let near_end = payload.len() - 20;
    payload[near_end] ^= 1;
    forge_frame(&mut altered, f[2].0, 2, &payload);
    std::fs::write(&path, &altered).unwrap();
    let (log, _) = open_sealed(dir.path(), &keys).unwrap();
    let err = log.read_from(1).unwrap().nth(1).unwrap().unwrap_err();
    assert!(matches!(&err, StorageError::Unseal { source: SealError::Altered, what, .. } if what.contains("record 2")), "{err}");
}

#[test]
fn a_log_sealed_under_one_key_reads_on_after_rotation_and_appends_under_the_new_key() {
    let dir = TempDir::new().unwrap();
    let a = KeyRing::generate_line("a");
    let (log, _) = open_sealed(dir.path(), &ring(&[&a])).unwrap();
    append_records(&log, 0..50);
    drop(log);

    let rotated = ring(&[&a, &KeyRing::generate_line("b")]);
    let (log, _) = open_sealed(dir.path(), &rotated).unwrap();
    assert_eq!(read_all(&log, 0), expected(0..50));
    append_records(&log, 50..100);
    assert_eq!(read_all(&log, 0), expected(0..100));
    drop(log);
    let ids = key_ids(dir.path());
    assert_eq!(ids.len(), 100);
    assert!(ids[..50].iter().all(|k| k == "a") && ids[50..].iter().all(|k| k == "b"), "{ids:?}");

    // A ring that lost the old key is refused when the log is opened, naming it and the file.
    let Err(err) = open_sealed(dir.path(), &ring(&[&KeyRing::generate_line("b")])) else { panic!("opened without key a") };
    let first = segment_files(dir.path())[0].1.clone();
    assert!(matches!(&err, StorageError::Unseal { path, source: SealError::UnknownKey(k), .. } if *path == first && k == "a"), "{err}");
    assert!(err.to_string().contains("\"a\""), "{err}");
    // So is another secret under the same ids.
    let Err(err) = open_sealed(dir.path(), &ring(&[&KeyRing::generate_line("a"), &KeyRing::generate_line("b")])) else { panic!("opened with other secrets") };
    assert!(matches!(err, StorageError::Unseal { source: SealError::Altered, .. }), "{err}");
}

#[test]
fn sealed_and_plain_segments_do_not_mix() {
    let keys = ring(&[&KeyRing::generate_line("k1")]);
    let plain = TempDir::new().unwrap();
    let (log, _) = open(plain.path(), small());
    append_records(&log, 0..3);
    drop(log);
    let Err(err) = open_sealed(plain.path(), &keys) else { panic!("a plain log opened sealed") };
    assert!(matches!(&err, StorageError::Unseal { source: SealError::NotSealed, path, .. } if *path == last_segment(plain.path())), "{err}");

    let sealed = TempDir::new().unwrap();
    let (log, _) = open_sealed(sealed.path(), &keys).unwrap();
    append_records(&log, 0..3);
    drop(log);
    let Err(err) = IngestLog::open(sealed.path(), small()) else { panic!("a sealed log opened without a key") };
    assert!(matches!(&err, StorageError::NoKey { path } if *path == last_segment(sealed.path())), "{err}");
}

#[test]
fn a_torn_sealed_tail_is_cut_without_opening_anything() {
    let dir = TempDir::new().unwrap();
    let keys = ring(&[&KeyRing::generate_line("k1")]);
    let (log, _) = open_sealed(dir.path(), &keys).unwrap();
    append_records(&log, 0..5);
    drop(log);
    let path = last_segment(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 10).unwrap();
    let (log, report) = open_sealed(dir.path(), &keys).unwrap();
    assert_eq!(report.next_offset, 4);
    assert!(report.torn_tail_bytes > 0);
    append_records(&log, 4..6);
    assert_eq!(read_all(&log, 0), expected(0..6));
}

#[test]
fn the_record_limit_applies_before_sealing() {
    let dir = TempDir::new().unwrap();
    let keys = ring(&[&KeyRing::generate_line("a-key-id-of-the-longest-length-x")]);
    let (log, _) = open_sealed(dir.path(), &keys).unwrap();
    let big = vec![b'x'; MAX_RECORD_BYTES + 1];
    assert!(matches!(log.append_one(&big), Err(StorageError::RecordTooLarge { .. })));
    assert_eq!(log.append_one(&big[1..]).unwrap(), 0);
    drop(log);
    let (log, report) = open_sealed(dir.path(), &keys).unwrap();
    assert_eq!(report.torn_tail_bytes, 0, "a sealed record of the largest size is not mistaken for a torn one");
    assert_eq!(log.read_from(0).unwrap().next().unwrap().unwrap().1.len(), MAX_RECORD_BYTES);
}
