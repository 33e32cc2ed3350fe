//! The store end to end on disk: every kind of tampering named, archives and rotated keys still
//! verifying, retention destroying and recording it, reads recorded.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use haechi_storage::KeyRing;

use crate::record::{AccessRecord, Actor, RecordBody, RecordClass, RecordKind};
use crate::{verify, Filter, Records, RecordsConfig, VerifyReport};

const DAY_MS: i64 = 86_400_000;
const T0: i64 = 1_700_000_000_000;

fn key(id: &str) -> String {
    KeyRing::generate_line(id)
}

fn ring(lines: &[&str]) -> KeyRing {
    KeyRing::parse(&lines.join("\n"), "test").unwrap()
}

/// Small segments, so a few hundred records span several files.
fn config() -> RecordsConfig {
    RecordsConfig { node: Some("node-1".into()), segment_bytes: 4096, ..RecordsConfig::default() }
}

fn access(i: usize) -> crate::Record {
    let customer = format!("c-{}", i % 7);
    Records::new_record(
        T0 + i as i64 * 1000,
        Some(customer),
        RecordBody::Access(AccessRecord {
            event_id: format!("e{i}"),
            step: "otp".into(),
            method: "phone".into(),
            result: if i.is_multiple_of(5) { "failure" } else { "success" }.into(),
            ip: Some(format!("198.51.100.{}", i % 250)),
            ..AccessRecord::default()
        }),
    )
}

/// `n` access records written at T0, checkpointed.
fn store_with(dir: &Path, r: &KeyRing, n: usize) -> Records {
    let store = Records::open(dir, &config(), r).unwrap();
    let mut batch: Vec<_> = (0..n).map(access).collect();
    store.append(T0, &mut batch).unwrap();
    store.checkpoint(T0).unwrap();
    store
}

fn check(dir: &Path, r: &KeyRing) -> VerifyReport {
    verify(&dir.join("records"), &dir.join("records-checkpoints"), r).unwrap()
}

fn segments(dir: &Path, class: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir.join("records").join(class)).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "hrs")).collect();
    v.sort();
    v
}

/// Byte ranges `(start, len)` of the frames of a live segment.
fn frames(path: &Path) -> Vec<(usize, usize)> {
    let b = fs::read(path).unwrap();
    let mut at = 86;
    let mut out = Vec::new();
    while at + 4 <= b.len() {
        let len = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, 4 + len));
        at += 4 + len;
    }
    out
}

fn first_problem(report: &VerifyReport) -> String {
    assert!(!report.intact(), "verify passed a tampered store");
    report.problems[0].to_string()
}

#[test]
fn an_untouched_store_verifies_and_reopens_where_it_ended() {
    let dir = tempfile::tempdir().unwrap();
    let r = ring(&[&key("k1")]);
    drop(store_with(dir.path(), &r, 300));
    let report = check(dir.path(), &r);
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.records(), 300);
    assert!(segments(dir.path(), "transaction").len() > 3, "small segments: several files");
    // Reopened, the chain goes on from where it ended.
    let store = Records::open(dir.path(), &config(), &r).unwrap();
    let mut more = vec![access(300)];
    store.append(T0, &mut more).unwrap();
    assert_eq!(more[0].seq, 300);
    assert_eq!(more[0].id, "t300@node-1");
    store.checkpoint(T0).unwrap();
    assert!(check(dir.path(), &r).intact());
}

#[test]
fn an_edited_byte_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let r = ring(&[&key("k1")]);
    drop(store_with(dir.path(), &r, 300));
    let seg = segments(dir.path(), "transaction")[1].clone();
    let (at, len) = frames(&seg)[2];
    let mut bytes = fs::read(&seg).unwrap();
    bytes[at + len / 2] ^= 0x01;
    fs::write(&seg, bytes).unwrap();
    let report = check(dir.path(), &r);
    let p = &report.problems[0];
    let first_in_seg: u64 = seg.file_stem().unwrap().to_str().unwrap()[4..].parse().unwrap();
    assert_eq!(p.seq, Some(first_in_seg + 2), "{p}");
    assert!(first_problem(&report).contains("altered"), "{p}");
}

#[test]
fn a_deleted_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let r = ring(&[&key("k1")]);
    drop(store_with(dir.path(), &r, 300));
    let seg = segments(dir.path(), "transaction")[1].clone();
    let first: u64 = seg.file_stem().unwrap().to_str().unwrap()[4..].parse().unwrap();
    let (at, len) = frames(&seg)[3];
    let mut bytes = fs::read(&seg).unwrap();
    bytes.drain(at..at + len);
    fs::write(&seg, bytes).unwrap();
    let report = check(dir.path(), &r);
    let text = first_problem(&report);
    assert_eq!(report.problems[0].seq, Some(first + 3), "{text}");
    assert!(text.contains("deleted"), "{text}");
}

#[test]
fn reordered_records_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let r = ring(&[&key("k1")]);
    drop(store_with(dir.path(), &r, 300));
    let seg = segments(dir.path(), "transaction")[0].clone();
    let f = frames(&seg);
    let bytes = fs::read(&seg).unwrap();
    let (a, b) = (f[4], f[5]);
    let mut swapped = bytes[..a.0].to_vec();
    swapped.extend_from_slice(&bytes[b.0..b.0 + b.1]);
    swapped.extend_from_slice(&bytes[a.0..a.0 + a.1]);
    swapped.extend_from_slice(&bytes[b.0 + b.1..]);
    fs::write(&seg, swapped).unwrap();
    let report = check(dir.path(), &r);
    let text = first_problem(&report);
    assert_eq!(report.problems[0].seq, Some(4), "{text}");
    assert!(text.contains("reordered"), "{text}");
}

#[test]
fn a_missing_segment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let r = ring(&[&key("k1")]);
    drop(store_with(dir.path(), &r, 300));
    let segs = segments(dir.path(), "transaction");
    let gone: u64 = segs[2].file_stem().unwrap().to_str().unwrap()[4..].parse().unwrap();
    let next: u64 = segs[3].file_stem().unwrap().to_str().unwrap()[4..].parse().unwrap();
    fs::remove_file(&segs[2]).unwrap();
    let report = check(dir.path(), &r);
    let text = first_problem(&report);
    assert_eq!(report.problems[0].seq, Some(gone), "{text}");
    assert!(text.contains(&format!("records {gone} to {} are missing", next - 1)) && text.contains("segment was deleted"), "{text}");
    // The very first segment too: nothing signed says the chain may begin later.
    fs::remove_file(&segs[0]).unwrap();
    assert!(first_problem(&check(dir.path(), &r)).contains("records 0 to"));
}

#[test]
fn a_truncated_tail_behind_the_last_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let r = ring(&[&key("k1")]);
    drop(store_with(dir.path(), &r, 300));
    // Cut the newest segment at a frame boundary: every remaining record is whole and chained.
    let segs = segments(dir.path(), "transaction");
    let last = segs.last().unwrap();
    let f = frames(last);
    let cut = f[f.len().saturating_sub(3)].0;
    let bytes = fs::read(last).unwrap();
    fs::write(last, &bytes[..cut]).unwrap();
    let text = first_problem(&check(dir.path(), &r));
    assert!(text.contains("checkpoint") && text.contains("covers record 299") && text.contains("truncated"), "{text}");
    // Deleting whole newest segments is the same cut.
    fs::remove_file(last).unwrap();
    assert!(first_problem(&check(dir.path(), &r)).contains("covers record 299"));
    // A restart does not sign over the cut: the store refuses to open.
    let err = Records::open(dir.path(), &config(), &r).err().expect("a cut chain must not reopen").to_string();
    assert!(err.contains("records were removed"), "{err}");
    // And a forged checkpoint (without the key) is refused, not trusted.
    let cp = dir.path().join("records-checkpoints/transaction.jsonl");
    let text = fs::read_to_string(&cp).unwrap().replace("\"seq\":299", "\"seq\":100");
    fs::write(&cp, text).unwrap();
    assert!(check(dir.path(), &r).problems.iter().any(|p| p.to_string().contains("valid signature")));
}

#[test]
fn a_torn_final_record_after_the_checkpoint_is_a_crash_not_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let r = ring(&[&key("k1")]);
    let store = store_with(dir.path(), &r, 50);
    let mut more: Vec<_> = (50..60).map(access).collect();
    store.append(T0, &mut more).unwrap();
    drop(store);
    let last = segments(dir.path(), "transaction").last().unwrap().clone();
    let len = fs::metadata(&last).unwrap().len();
    fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(len - 7).unwrap();
    let report = check(dir.path(), &r);
    assert!(report.intact(), "{:?}", report.problems);
    assert!(report.classes[0].1.notes.iter().any(|n| n.contains("torn")));
    // The next start cuts it and goes on from the last whole record.
    let store = Records::open(dir.path(), &config(), &r).unwrap();
    let mut next = vec![access(99)];
    store.append(T0, &mut next).unwrap();
    assert_eq!(next[0].seq, 59);
    store.checkpoint(T0).unwrap();
    assert!(check(dir.path(), &r).intact());
}

#[test]
fn a_segment_whose_header_was_cut_short_by_a_crash_is_replaced_on_the_next_start() {
    // A kill between creating a segment and writing its header, as a crash test in CI met:
    // the restart refused the store. The segment holds no record; the next start replaces it.
    for before in [0, 50] {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(&[&key("k1")]);
        if before > 0 {
            drop(store_with(dir.path(), &r, before));
        }
        let class_dir = dir.path().join("records").join("transaction");
        fs::create_dir_all(&class_dir).unwrap();
        fs::write(class_dir.join(format!("seg-{before:020}.hrs")), b"HRSEG").unwrap();
        let store = Records::open(dir.path(), &config(), &r).unwrap();
        let mut next = vec![access(99)];
        store.append(T0, &mut next).unwrap();
        assert_eq!(next[0].seq, before as u64, "the chain goes on from its last record");
        store.checkpoint(T0).unwrap();
        let report = check(dir.path(), &r);
        assert!(report.intact(), "{:?}", report.problems);
        assert!(segments(dir.path(), "transaction").iter().all(|p| fs::metadata(p).unwrap().len() >= 86), "no cut-short segment is left");
    }
    // One whose records a signed head covers is evidence, not a crash: the store refuses to
    // open and leaves the file for `verify`.
    let dir = tempfile::tempdir().unwrap();
    let r = ring(&[&key("k1")]);
    drop(store_with(dir.path(), &r, 300));
    let last = segments(dir.path(), "transaction").last().unwrap().clone();
    fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(10).unwrap();
    assert!(Records::open(dir.path(), &config(), &r).is_err(), "signed records are missing");
    assert_eq!(fs::metadata(&last).unwrap().len(), 10, "the remnant is kept");
    assert!(!check(dir.path(), &r).intact());
}

#[test]
fn a_rotated_key_seals_new_segments_and_old_records_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let old = key("2025");
    drop(store_with(dir.path(), &ring(&[&old]), 100));
    let rotated = ring(&[&old, &key("2026")]);
    let store = Records::open(dir.path(), &config(), &rotated).unwrap();
    let mut more: Vec<_> = (100..110).map(access).collect();
    store.append(T0, &mut more).unwrap();
    store.checkpoint(T0).unwrap();
    let all = store.query(&Filter::default()).unwrap();
    assert_eq!(all.len(), 110, "old and new records read back");
    assert!(check(dir.path(), &rotated).intact());
    let newest = segments(dir.path(), "transaction").last().unwrap().clone();
    let header = fs::read(&newest).unwrap();
    assert_eq!(&header[14..18], b"2026", "the new segment names the new key");
    // Without the old key, the old records cannot be read: verification says which key.
    let only_new = ring(&[&key("2026")]);
    assert!(first_problem(&check(dir.path(), &only_new)).contains("2025"));
}

#[test]
fn archives_are_compressed_and_still_verify_and_answer_queries() {
    let dir = tempfile::tempdir().unwrap();
    let r = ring(&[&key("k1")]);
    let store = store_with(dir.path(), &r, 300);
    let live_before: u64 = segments(dir.path(), "transaction").iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    let done = store.maintain(T0 + 31 * DAY_MS).unwrap();
    assert!(done.archived >= 3, "{done:?}");
    assert!(done.destroyed.is_empty());
    let archive = dir.path().join("records/transaction/archive");
    let archived: u64 = fs::read_dir(&archive).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let live_after: u64 = segments(dir.path(), "transaction").iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    assert!(archived < live_before - live_after, "compressed: {archived} bytes for {} live", live_before - live_after);
    assert!(check(dir.path(), &r).intact());
    assert_eq!(store.query(&Filter { customer_id: Some("c-3".into()), ..Filter::default() }).unwrap().len(), 300 / 7 + 1);
    // An archive edited is named too.
    let file = fs::read_dir(&archive).unwrap().next().unwrap().unwrap().path();
    let mut bytes = fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 1;
    fs::write(&file, bytes).unwrap();
    assert!(first_problem(&check(dir.path(), &r)).contains("does not open"));
}

#[test]
fn retention_destroys_what_is_due_and_records_the_destruction() {
    let dir = tempfile::tempdir().unwrap();
    let r = ring(&[&key("k1")]);
    let c = RecordsConfig { retention: crate::Retention { transaction: Duration::from_secs(5 * 365 * 86_400), ..crate::Retention::default() }, ..config() };
    let store = Records::open(dir.path(), &c, &r).unwrap();
    let mut old: Vec<_> = (0..200).map(access).collect();
    store.append(T0, &mut old).unwrap();
    // Newer records, six years later, in their own segments.
    let later = T0 + 6 * 365 * DAY_MS;
    let mut new: Vec<_> = (200..300).map(access).collect();
    store.append(later, &mut new).unwrap();
    store.checkpoint(later).unwrap();
    let done = store.maintain(later + 1).unwrap();
    let destroyed: u64 = done.destroyed.iter().filter(|(c, _)| *c == RecordClass::Transaction).map(|(_, n)| *n).sum();
    assert!((150..=200).contains(&destroyed), "the old ones go, segment by segment: {done:?}");
    let left = store.query(&Filter { kinds: vec![RecordKind::Access], ..Filter::default() }).unwrap();
    assert!(left.iter().all(|r| r.seq >= destroyed), "the oldest are gone");
    assert_eq!(left.len() as u64, 300 - destroyed);
    let destructions = store.query(&Filter { kinds: vec![RecordKind::Destruction], ..Filter::default() }).unwrap();
    assert_eq!(destructions.len(), 1);
    let RecordBody::Destruction(d) = &destructions[0].body else { panic!() };
    assert_eq!((d.class.as_str(), d.first_seq, d.records), ("transaction", 0, destroyed));
    // The chain now begins where the signed base says: still intact.
    let report = check(dir.path(), &r);
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.classes[0].1.range.unwrap().0, destroyed);
}

#[test]
fn a_read_writes_a_read_record() {
    let dir = tempfile::tempdir().unwrap();
    let r = ring(&[&key("k1")]);
    let store = store_with(dir.path(), &r, 50);
    let filter = Filter { customer_id: Some("c-2".into()), ..Filter::default() };
    let got = store.read(T0 + 5, Actor { name: "lee".into(), role: "auditor".into() }, "GET /v1/records", &filter).unwrap();
    assert_eq!(got.len(), 7);
    let reads = store.query(&Filter { kinds: vec![RecordKind::Read], ..Filter::default() }).unwrap();
    assert_eq!(reads.len(), 1);
    let RecordBody::Read(read) = &reads[0].body else { panic!() };
    assert_eq!((read.who.name.as_str(), read.returned, read.via.as_str()), ("lee", 7, "GET /v1/records"));
    assert_eq!(read.filter["customer_id"], "c-2");
    assert_eq!(reads[0].recorded_ms, T0 + 5);
}

#[test]
fn the_files_hold_no_customer_id_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with(dir.path(), &ring(&[&key("k1")]), 100));
    for class in ["transaction"] {
        for seg in segments(dir.path(), class) {
            let b = fs::read(&seg).unwrap();
            assert!(!b.windows(4).any(|w| w == b"c-3\"" || w == b"198."), "{}", seg.display());
        }
    }
}

#[test]
fn checkpoint_files_emptied_thinned_or_borrowed_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let r = ring(&[&key("k1")]);
    let store = store_with(dir.path(), &r, 100);
    let mut more: Vec<_> = (100..120).map(access).collect();
    store.append(T0, &mut more).unwrap();
    store.checkpoint(T0 + 1).unwrap();
    let mut more: Vec<_> = (120..130).map(access).collect();
    store.append(T0, &mut more).unwrap();
    store.checkpoint(T0 + 2).unwrap();
    let read = Records::new_record(T0, None, RecordBody::Read(crate::record::ReadRecord { via: "test".into(), ..Default::default() }));
    store.record(T0, read).unwrap();
    drop(store);
    assert!(check(dir.path(), &r).intact());
    let cp = dir.path().join("records-checkpoints/transaction.jsonl");
    let original = fs::read_to_string(&cp).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() >= 3, "{original}");

    // A line removed from the middle.
    let thinned: String = lines.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| format!("{l}\n")).collect();
    fs::write(&cp, thinned).unwrap();
    assert!(first_problem(&check(dir.path(), &r)).contains("checkpoint lines were removed"));

    // Emptied: records that no signature covers.
    fs::write(&cp, "").unwrap();
    assert!(first_problem(&check(dir.path(), &r)).contains("no signed checkpoint covers"));

    // A line borrowed from another class's file.
    fs::write(&cp, &original).unwrap();
    let read_cp = dir.path().join("records-checkpoints/read.jsonl");
    let mut text = fs::read_to_string(&read_cp).unwrap();
    text.push_str(lines[0]);
    text.push('\n');
    fs::write(&read_cp, text).unwrap();
    assert!(check(dir.path(), &r).problems.iter().any(|p| p.to_string().contains("belongs to the transaction chain")));
}

/// The scheduling policy (`SCHED_*`) of every thread of this process with that name.
#[cfg(target_os = "linux")]
fn thread_policies(name: &str) -> Vec<u32> {
    let mut policies = Vec::new();
    for task in fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if &stat[open + 1..close] != name {
            continue;
        }
        // Field 41 of proc(5)'s stat is the policy; the fields after the name begin at field 3.
        policies.push(stat[close + 1..].split_whitespace().nth(41 - 3).unwrap().parse().unwrap());
    }
    policies
}

#[cfg(target_os = "linux")]
#[test]
fn the_writer_thread_is_idle_class_and_everything_sent_is_written_in_order() {
    const SCHED_IDLE: u32 = 5;
    const SENDERS: usize = 4;
    const EACH: usize = 1_500;
    let dir = tempfile::tempdir().unwrap();
    let r = ring(&[&key("k1")]);
    let records = std::sync::Arc::new(Records::open(dir.path(), &config(), &r).unwrap());
    // Each item is (sender, n); its record's event id says so.
    let convert = |(sender, n): (usize, usize), out: &mut Vec<crate::Record>| {
        let mut rec = access(n);
        if let RecordBody::Access(a) = &mut rec.body {
            a.event_id = format!("{sender}/{n}");
        }
        out.push(rec);
    };
    let recorder = crate::Recorder::start(records.clone(), || T0, Box::new(convert));
    assert!(thread_policies("haechi-records").contains(&SCHED_IDLE), "{:?}", thread_policies("haechi-records"));
    // Senders past the writer's wake-up mark, with flushes on other threads at the same time.
    std::thread::scope(|s| {
        for sender in 0..SENDERS {
            let (recorder, records) = (&recorder, &records);
            s.spawn(move || {
                for n in 0..EACH {
                    recorder.send((sender, n));
                    if n % 500 == 499 {
                        recorder.flush().unwrap();
                        // A flush writes everything sent before it: this sender's items up to n.
                        let mine = records
                            .query(&Filter::default())
                            .unwrap()
                            .iter()
                            .filter(|r| matches!(&r.body, RecordBody::Access(a) if a.event_id.starts_with(&format!("{sender}/"))))
                            .count();
                        assert!(mine > n, "sender {sender}: {mine} written after a flush at item {n}");
                    }
                }
            });
        }
    });
    recorder.flush().unwrap();
    let mut next = [0usize; SENDERS];
    let mut seen = 0;
    for rec in records.query(&Filter::default()).unwrap() {
        if let RecordBody::Access(a) = &rec.body {
            let (sender, n) = a.event_id.split_once('/').unwrap();
            let (sender, n): (usize, usize) = (sender.parse().unwrap(), n.parse().unwrap());
            assert_eq!(n, next[sender], "sender {sender}'s items in the order sent");
            next[sender] += 1;
            seen += 1;
        }
    }
    assert_eq!(seen, SENDERS * EACH);
    drop(recorder);
    let report = check(dir.path(), &r);
    assert!(report.intact(), "{:?}", report.problems);
    assert_eq!(report.records(), (SENDERS * EACH) as u64);
}
