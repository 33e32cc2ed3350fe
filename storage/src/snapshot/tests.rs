use tempfile::TempDir;

use super::*;

const V: u32 = 4;

fn payload(covers: u64) -> Vec<u8> {
    format!("state as of offset {covers}").into_bytes()
}

fn store(dir: &TempDir, keep: usize) -> SnapshotStore {
    SnapshotStore::open(dir.path(), keep).unwrap()
}

fn flip_last_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    fs::write(path, bytes).unwrap();
}

#[test]
fn writing_three_with_keep_two_leaves_the_newest_two() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir, 2);
    let mut written = Vec::new();
    for covers in [10, 20, 30] {
        let (path, size) = store.write(V, covers, &payload(covers)).unwrap();
        assert_eq!(size, fs::metadata(&path).unwrap().len());
        assert_eq!(size, (SNAPSHOT_HEADER_LEN + payload(covers).len()) as u64);
        written.push(path);
    }
    assert_eq!(store.list().unwrap(), vec![written[2].clone(), written[1].clone()]);
    assert!(!written[0].exists());
    assert_eq!(written[2].file_name().unwrap(), "snapshot-00000000000000000030-000002.snap");

    let (loaded, refused) = store.load_newest(V).unwrap();
    assert_eq!(loaded, Some(LoadedSnapshot { path: written[2].clone(), covers_offset: 30, payload: payload(30) }));
    assert!(refused.is_empty());
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_one_before() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir, 2);
    store.write(V, 10, &payload(10)).unwrap();
    let (newest, _) = store.write(V, 20, &payload(20)).unwrap();
    flip_last_byte(&newest);

    let (loaded, refused) = store.load_newest(V).unwrap();
    assert_eq!(loaded.unwrap().covers_offset, 10);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].path, newest);
    assert!(refused[0].reason.contains("checksum"), "{}", refused[0]);
    assert_eq!(refused[0].to_string(), format!("{}: checksum mismatch", newest.display()));
}

#[test]
fn a_snapshot_of_another_format_version_is_refused_with_both_versions() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir, 2);
    let (path, _) = store.write(3, 10, &payload(10)).unwrap();

    let (loaded, refused) = store.load_newest(4).unwrap();
    assert_eq!(loaded, None);
    assert_eq!(refused, vec![Refused { path, reason: "format version 3, this build reads 4".into(), unknown_key: None }]);
}

#[test]
fn truncated_snapshots_are_refused() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir, 2);
    let (path, size) = store.write(V, 10, &payload(10)).unwrap();
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();

    file.set_len(size - 5).unwrap();
    let (loaded, refused) = store.load_newest(V).unwrap();
    assert_eq!(loaded, None);
    let len = payload(10).len();
    assert_eq!(refused[0].reason, format!("truncated: header says {len} bytes, file has {}", len - 5));

    file.set_len(7).unwrap();
    let (_, refused) = store.load_newest(V).unwrap();
    assert!(refused[0].reason.starts_with("truncated: 7 bytes"), "{}", refused[0]);
}

#[test]
fn refusals_are_listed_newest_first_down_to_the_valid_one() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir, 3);
    store.write(V, 10, &payload(10)).unwrap();
    let (old_version, _) = store.write(V - 1, 20, &payload(20)).unwrap();
    let (damaged, _) = store.write(V, 30, &payload(30)).unwrap();
    flip_last_byte(&damaged);

    let (loaded, refused) = store.load_newest(V).unwrap();
    assert_eq!(loaded.unwrap().payload, payload(10));
    let paths: Vec<_> = refused.into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec![damaged, old_version]);
}

#[test]
fn a_renamed_snapshot_is_refused() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir, 2);
    let (path, _) = store.write(V, 10, &payload(10)).unwrap();
    let renamed = dir.path().join("snapshot-00000000000000000099-000000.snap");
    fs::rename(&path, &renamed).unwrap();

    let (loaded, refused) = store.load_newest(V).unwrap();
    assert_eq!(loaded, None);
    assert!(refused[0].reason.contains("file name says 99"), "{}", refused[0]);
}

#[test]
fn no_snapshots_loads_nothing_and_refuses_nothing() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir, 2);
    assert_eq!(store.load_newest(V).unwrap(), (None, vec![]));
    assert_eq!(store.list().unwrap(), Vec::<PathBuf>::new());
}

#[test]
fn a_leftover_temp_file_is_ignored_and_cleaned_by_the_next_write() {
    let dir = TempDir::new().unwrap();
    let store = store(&dir, 2);
    store.write(V, 10, &payload(10)).unwrap();
    // What a crash mid-write leaves, here even with valid contents: it never got its final name.
    let leftover = dir.path().join(".snap-4242-000007.tmp");
    fs::copy(&store.list().unwrap()[0], &leftover).unwrap();

    let (loaded, refused) = store.load_newest(V).unwrap();
    assert_eq!(loaded.unwrap().covers_offset, 10);
    assert!(refused.is_empty());
    assert_eq!(store.list().unwrap().len(), 1);

    store.write(V, 20, &payload(20)).unwrap();
    assert!(!leftover.exists());
}

#[test]
fn snapshots_at_the_same_offset_order_by_write_even_across_reopen() {
    let dir = TempDir::new().unwrap();
    store(&dir, 2).write(V, 10, b"first").unwrap();
    let store = store(&dir, 2);
    store.write(V, 10, b"second").unwrap();
    assert_eq!(store.load_newest(V).unwrap().0.unwrap().payload, b"second");
    store.write(V, 10, b"third").unwrap();
    assert_eq!(store.load_newest(V).unwrap().0.unwrap().payload, b"third");
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn keep_below_two_is_refused() {
    let dir = TempDir::new().unwrap();
    assert!(matches!(SnapshotStore::open(dir.path(), 1), Err(StorageError::InvalidConfig { .. })));
}

#[test]
fn the_directory_is_created_and_other_files_are_left_alone() {
    let dir = TempDir::new().unwrap();
    let nested = dir.path().join("a/b");
    let store = SnapshotStore::open(&nested, 2).unwrap();
    fs::write(nested.join("notes.txt"), "mine").unwrap();
    for covers in 0..4 {
        store.write(V, covers, &payload(covers)).unwrap();
    }
    assert_eq!(fs::read_to_string(nested.join("notes.txt")).unwrap(), "mine");
    assert_eq!(store.list().unwrap().len(), 2);
}

// Sealed snapshots.

use crate::crypto::KeyRing;

fn ring(lines: &[&str]) -> KeyRing {
    KeyRing::parse(&lines.join("\n"), "test").unwrap()
}

fn sealed_store(dir: &TempDir, keep: usize, keys: &KeyRing) -> SnapshotStore {
    SnapshotStore::open_sealed(dir.path(), keep, Some(keys.sealer("snapshot"))).unwrap()
}

/// Rewrite the header's crc32c so that it matches the payload as it now is.
fn fix_checksum(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[SNAPSHOT_HEADER_LEN..]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn sealed_snapshots_round_trip_and_nothing_of_the_payload_is_on_disk() {
    let dir = TempDir::new().unwrap();
    let store = sealed_store(&dir, 2, &ring(&[&KeyRing::generate_line("k1")]));
    let secret = b"customer c-42 last seen at 203.0.113.9".to_vec();
    let (path, size) = store.write(V, 10, &secret).unwrap();
    let bytes = fs::read(&path).unwrap();
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(&bytes[..8], b"HCHISNPS");
    assert!(!bytes.windows(4).any(|w| w == b"c-42") && !bytes.windows(11).any(|w| w == b"203.0.113.9"));
    let (loaded, refused) = store.load_newest(V).unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(loaded.unwrap().payload, secret);
}

#[test]
fn a_sealed_payload_under_another_header_or_altered_with_its_checksum_fixed_is_refused() {
    let dir = TempDir::new().unwrap();
    let store = sealed_store(&dir, 4, &ring(&[&KeyRing::generate_line("k1")]));
    store.write(V, 10, &payload(10)).unwrap();
    let (at_20, _) = store.write(V, 20, &payload(20)).unwrap();
    let original = fs::read(&at_20).unwrap();

    // The state of offset 20, claimed to cover 30: name and header agree, the checksum holds.
    let mut moved = original.clone();
    moved[12..20].copy_from_slice(&30u64.to_le_bytes());
    let at_30 = dir.path().join("snapshot-00000000000000000030-000009.snap");
    fs::write(&at_30, &moved).unwrap();
    let (loaded, refused) = store.load_newest(V).unwrap();
    assert_eq!(loaded.unwrap().covers_offset, 20);
    assert_eq!((refused.len(), &refused[0].path), (1, &at_30));
    assert!(refused[0].reason.contains("does not open") && refused[0].unknown_key.is_none(), "{}", refused[0]);
    fs::remove_file(&at_30).unwrap();

    // One byte of the sealed payload flipped, the checksum fixed: the one before loads.
    let mut altered = original;
    let near_end = altered.len() - 3;
    altered[near_end] ^= 1;
    fix_checksum(&mut altered);
    fs::write(&at_20, &altered).unwrap();
    let (loaded, refused) = store.load_newest(V).unwrap();
    assert_eq!(loaded.unwrap().payload, payload(10));
    assert!(refused[0].reason.contains("does not open"), "{}", refused[0]);
}

#[test]
fn a_snapshot_sealed_with_a_key_the_ring_lacks_is_refused_naming_the_key() {
    let dir = TempDir::new().unwrap();
    let a = KeyRing::generate_line("a");
    sealed_store(&dir, 3, &ring(&[&a])).write(V, 10, &payload(10)).unwrap();

    // Rotated: the old snapshot reads, the new one is sealed with the new key.
    let rotated = sealed_store(&dir, 3, &ring(&[&a, &KeyRing::generate_line("b")]));
    assert_eq!(rotated.load_newest(V).unwrap().0.unwrap().payload, payload(10));
    let (at_20, _) = rotated.write(V, 20, &payload(20)).unwrap();
    let sealed = fs::read(&at_20).unwrap();
    assert_eq!(Sealer::key_id_of(&sealed[SNAPSHOT_HEADER_LEN..]).unwrap(), "b");

    // Back on the old ring: the newest is refused with the key it needs, the one before loads.
    let (loaded, refused) = sealed_store(&dir, 3, &ring(&[&a])).load_newest(V).unwrap();
    assert_eq!(loaded.unwrap().covers_offset, 10);
    assert_eq!(refused.len(), 1);
    assert_eq!((&refused[0].path, refused[0].unknown_key.as_deref()), (&at_20, Some("b")));
    assert!(refused[0].to_string().contains("\"b\""), "{}", refused[0]);
}

#[test]
fn sealed_and_plain_snapshots_are_each_refused_by_the_other_kind_of_store() {
    let keys = ring(&[&KeyRing::generate_line("k1")]);
    let dir = TempDir::new().unwrap();
    store(&dir, 2).write(V, 10, &payload(10)).unwrap();
    let (loaded, refused) = sealed_store(&dir, 2, &keys).load_newest(V).unwrap();
    assert_eq!(loaded, None);
    assert!(refused[0].reason.contains("unencrypted"), "{}", refused[0]);

    let dir = TempDir::new().unwrap();
    sealed_store(&dir, 2, &keys).write(V, 10, &payload(10)).unwrap();
    let (loaded, refused) = store(&dir, 2).load_newest(V).unwrap();
    assert_eq!(loaded, None);
    assert!(refused[0].reason.contains("no data key"), "{}", refused[0]);
}
