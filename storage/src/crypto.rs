//! Encryption at rest: the data key ring, and sealing bytes with XChaCha20-Poly1305.
//!
//! The data dir holds personal data (customer ids, addresses, device ids) in the ingest log,
//! snapshots, spools, block lists and access records. Every such file is sealed with a key that
//! lives outside the data dir (a key file or an environment variable), so a copy of the data dir
//! alone reveals nothing.
//!
//! **Keys.** A key ring is one line per key, `ID HEX` (an id of 1–32 characters `[A-Za-z0-9._-]`,
//! 64 hex digits of secret), `#` comments allowed. The last line is the active key: new data is
//! sealed with it, and data sealed with any older key in the ring stays readable. Rotating is
//! appending a line; retiring a key is removing it once nothing sealed with it is kept.
//!
//! **Purposes.** Each use (the ingest log, snapshots, records, checkpoint signatures, ...) gets its
//! own subkey, derived with HKDF-SHA-256 from the ring's key and the purpose's name, so bytes sealed
//! for one purpose never open as another.
//!
//! **Sealed bytes** are `0xA5 | id length u8 | key id | nonce (24 bytes) | ciphertext and tag`.
//! The 192-bit nonce is random: XChaCha20's nonce is large enough that random nonces never repeat
//! in practice, whatever the volume, so no counter has to survive a crash. The caller's associated
//! data (a log offset, a record's sequence number) binds the bytes to their place: moved elsewhere,
//! they fail to open.
//!
//! **Implementation.** XChaCha20-Poly1305 is HChaCha20 (RustCrypto's `chacha20`) deriving a
//! per-nonce key, then ChaCha20-Poly1305 from `ring`: the log seals one short record per event, and
//! RustCrypto's Poly1305 spends about a microsecond setting up each message where `ring`'s takes a
//! fraction of that (measured: BENCHMARKS.md, "Encryption at rest"). The bytes are the standard
//! construction's; a test checks them against RustCrypto's `XChaCha20Poly1305`. Nonces come from
//! the thread's CSPRNG (reseeded from the OS), not a system call per record.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::StorageError;

const SEALED_TAG: u8 = 0xA5;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The most sealing adds to a plaintext: the longest key id a ring accepts (32).
pub(crate) const MAX_OVERHEAD: usize = 2 + 32 + NONCE_LEN + TAG_LEN;
const MAC_LEN: usize = 32;
/// The id of the key built into the binary for demos on one machine; it protects nothing.
pub const DEMO_KEY_ID: &str = "demo";

/// Why sealed bytes did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not sealed data (no seal tag)")]
    NotSealed,
    #[error("sealed data cut short")]
    Truncated,
    #[error("sealed with key {0:?}, which the key ring does not hold")]
    UnknownKey(String),
    #[error("authentication failed: the bytes were altered, moved, or sealed with another key under the same id")]
    Altered,
}

struct RingKey {
    id: String,
    secret: Zeroizing<[u8; 32]>,
}

/// The data keys: every key that may have sealed something, the last one active.
#[derive(Clone)]
pub struct KeyRing {
    keys: Arc<Vec<RingKey>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secrets.
        f.debug_struct("KeyRing").field("ids", &self.ids().collect::<Vec<_>>()).finish()
    }
}

impl KeyRing {
    /// Parse a key ring's text; `origin` names where it came from, for messages.
    ///
    /// # Errors
    /// A line that is not `ID HEX64`, a repeated id, or no key at all; the message names the line
    /// but never echoes a secret.
    pub fn parse(text: &str, origin: &str) -> Result<KeyRing, StorageError> {
        let bad = |reason: String| StorageError::Key { origin: origin.to_owned(), reason };
        let mut keys: Vec<RingKey> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(id), Some(hex_secret), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(format!("line {}: expected `ID HEX` (64 hex digits)", n + 1)));
            };
            if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                return Err(bad(format!("line {}: a key id is 1 to 32 characters of A-Z a-z 0-9 . _ -", n + 1)));
            }
            let mut secret = Zeroizing::new([0u8; 32]);
            if hex::decode_to_slice(hex_secret, secret.as_mut()).is_err() {
                return Err(bad(format!("line {}: key {id:?} is not 64 hex digits", n + 1)));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(bad(format!("line {}: key id {id:?} appears twice", n + 1)));
            }
            keys.push(RingKey { id: id.to_owned(), secret });
        }
        if keys.is_empty() {
            return Err(bad("no key in it".into()));
        }
        Ok(KeyRing { keys: Arc::new(keys) })
    }

    /// Read a key ring file.
    ///
    /// # Errors
    /// When the file cannot be read, or [`KeyRing::parse`] refuses it.
    pub fn from_file(path: &Path) -> Result<KeyRing, StorageError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| StorageError::Io { path: path.to_path_buf(), op: "read key file", source })?);
        KeyRing::parse(&text, &path.display().to_string())
    }

    /// The key built into the binary: for a demo on one machine only, since anyone can read it.
    pub fn demo() -> KeyRing {
        use sha2::Digest;
        let secret: [u8; 32] = Sha256::digest(b"haechi demo data key: public, protects nothing").into();
        KeyRing { keys: Arc::new(vec![RingKey { id: DEMO_KEY_ID.into(), secret: Zeroizing::new(secret) }]) }
    }

    /// A new random key as a key ring line, `ID HEX`.
    pub fn generate_line(id: &str) -> String {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        format!("{id} {}", hex::encode(key.as_ref()))
    }

    /// The ids in the ring, oldest first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// The key new data is sealed with.
    pub fn active_id(&self) -> &str {
        &self.keys.last().expect("a ring has a key").id
    }

    /// Is this the built-in demo key?
    pub fn is_demo(&self) -> bool {
        self.keys.len() == 1 && self.active_id() == DEMO_KEY_ID
    }

    fn subkey(secret: &[u8; 32], purpose: &str) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha256>::new(None, secret).expand(format!("haechi/v1/{purpose}").as_bytes(), out.as_mut()).expect("32 bytes is a valid HKDF length");
        out
    }

    /// A sealer for one purpose (`"ingest-log"`, `"snapshot"`, ...): subkeys are derived once here.
    pub fn sealer(&self, purpose: &str) -> Sealer {
        let ciphers = self.keys.iter().map(|k| (k.id.clone(), Self::subkey(&k.secret, purpose))).collect();
        Sealer { ciphers: Arc::new(ciphers) }
    }

    /// HMAC-SHA-256 of `data` under the active key's subkey for `purpose`: the active key's id and the tag.
    pub fn sign(&self, purpose: &str, data: &[u8]) -> (String, [u8; MAC_LEN]) {
        let key = self.keys.last().expect("a ring has a key");
        (key.id.clone(), Self::mac(&key.secret, purpose, data))
    }

    /// Does `tag` sign `data` under key `key_id`'s subkey for `purpose`? (Constant time.)
    ///
    /// # Errors
    /// [`SealError::UnknownKey`] when the ring lacks `key_id`.
    pub fn verify(&self, key_id: &str, purpose: &str, data: &[u8], tag: &[u8]) -> Result<bool, SealError> {
        let key = self.keys.iter().find(|k| k.id == key_id).ok_or_else(|| SealError::UnknownKey(key_id.to_owned()))?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&*Self::subkey(&key.secret, purpose)).expect("HMAC takes any key length");
        mac.update(data);
        Ok(mac.verify_slice(tag).is_ok())
    }

    fn mac(secret: &[u8; 32], purpose: &str, data: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&*Self::subkey(secret, purpose)).expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

/// Seals and opens bytes for one purpose, with every key of the ring; seals with the active one.
#[derive(Clone)]
pub struct Sealer {
    /// Each key's id and its subkey for this purpose; the last one seals.
    ciphers: Arc<Vec<(String, Zeroizing<[u8; 32]>)>>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").field("active", &self.active_id()).finish()
    }
}

impl Sealer {
    /// The id new bytes are sealed with.
    pub fn active_id(&self) -> &str {
        &self.ciphers.last().expect("a ring has a key").0
    }

    /// How many bytes sealing adds to a plaintext.
    pub fn overhead(&self) -> usize {
        2 + self.active_id().len() + NONCE_LEN + TAG_LEN
    }

    /// Seal `plaintext`, bound to `aad`, appending to `out`. Encrypts in place in `out`, so a
    /// reused `out` with room to spare costs no allocation.
    pub fn seal_into(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        self.seal_with_nonce(&nonce, aad, plaintext, out);
    }

    fn seal_with_nonce(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let (id, key) = self.ciphers.last().expect("a ring has a key");
        out.reserve(self.overhead() + plaintext.len());
        out.push(SEALED_TAG);
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let (cipher, nonce) = xchacha(key, nonce);
        // Sealing with a valid key cannot fail for inputs under 256 GiB.
        let tag = cipher.seal_in_place_separate_tag(nonce, Aad::from(aad), &mut out[start..]).expect("ChaCha20-Poly1305 sealing");
        out.extend_from_slice(tag.as_ref());
    }

    /// Seal `plaintext`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.seal_into(aad, plaintext, &mut out);
        out
    }

    /// The key id sealed bytes name, without opening them.
    pub fn key_id_of(sealed: &[u8]) -> Result<&str, SealError> {
        if sealed.first() != Some(&SEALED_TAG) {
            return Err(SealError::NotSealed);
        }
        let len = *sealed.get(1).ok_or(SealError::Truncated)? as usize;
        let id = sealed.get(2..2 + len).ok_or(SealError::Truncated)?;
        std::str::from_utf8(id).map_err(|_| SealError::Altered)
    }

    /// Open bytes sealed for this purpose with any key of the ring, checking they are bound to `aad`.
    ///
    /// # Errors
    /// Not sealed, cut short, an unknown key, or altered.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut buf = sealed.to_vec();
        self.open_in_place(aad, &mut buf)?;
        Ok(buf)
    }

    /// [`Sealer::open`] in `buf`: on success `buf` holds the plaintext, without a second buffer.
    ///
    /// # Errors
    /// As [`Sealer::open`]; `buf` is left unspecified then.
    pub fn open_in_place(&self, aad: &[u8], buf: &mut Vec<u8>) -> Result<(), SealError> {
        let id = Self::key_id_of(buf)?;
        let prefix = 2 + id.len() + NONCE_LEN;
        if buf.len() < prefix + TAG_LEN {
            return Err(SealError::Truncated);
        }
        let (_, key) = self.ciphers.iter().find(|(k, _)| k == id).ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let (head, rest) = buf.split_at_mut(prefix);
        let (ciphertext, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce: &[u8; NONCE_LEN] = head[prefix - NONCE_LEN..].try_into().expect("a 24-byte nonce");
        let tag = Tag::try_from(&*tag).expect("a 16-byte tag");
        let (cipher, nonce) = xchacha(key, nonce);
        cipher.open_in_place_separate_tag(nonce, Aad::from(aad), tag, ciphertext, 0..).map_err(|_| SealError::Altered)?;
        buf.truncate(buf.len() - TAG_LEN);
        buf.drain(..prefix);
        Ok(())
    }
}

/// XChaCha20-Poly1305 as ChaCha20-Poly1305: the key HChaCha20 derives from the first 16 bytes of
/// the nonce, and a 12-byte nonce of four zero bytes and the last 8 (draft-irtf-cfrg-xchacha, 2.3).
fn xchacha(key: &[u8; 32], nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
    use chacha20::cipher::consts::U10;
    let mut subkey = Zeroizing::new([0u8; 32]);
    subkey.copy_from_slice(&chacha20::hchacha::<U10>(key.into(), nonce[..16].into()));
    let cipher = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, subkey.as_ref()).expect("a 32-byte key"));
    let mut short = [0u8; 12];
    short[4..].copy_from_slice(&nonce[16..]);
    // Unique because the 24-byte nonce is random: the subkey changes with its first 16 bytes.
    (cipher, Nonce::assume_unique_for_key(short))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(lines: &[&str]) -> KeyRing {
        KeyRing::parse(&lines.join("\n"), "test").unwrap()
    }

    #[test]
    fn seals_open_only_with_the_same_purpose_aad_and_bytes() {
        let r = ring(&[&KeyRing::generate_line("k1")]);
        let s = r.sealer("ingest-log");
        let sealed = s.seal(b"offset 7", b"customer c-42");
        assert!(!sealed.windows(4).any(|w| w == b"c-42"), "the plaintext does not show");
        assert_eq!(s.open(b"offset 7", &sealed).unwrap(), b"customer c-42");
        assert_eq!(s.open(b"offset 8", &sealed), Err(SealError::Altered), "moved to another place");
        assert_eq!(r.sealer("snapshot").open(b"offset 7", &sealed), Err(SealError::Altered), "another purpose");
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(s.open(b"offset 7", &flipped), Err(SealError::Altered));
        assert_eq!(s.open(b"offset 7", &sealed[..sealed.len() - 30]), Err(SealError::Truncated));
        assert_eq!(s.open(b"", b"plain"), Err(SealError::NotSealed));
        assert_ne!(s.seal(b"", b"x"), s.seal(b"", b"x"), "a fresh nonce every time");
    }

    #[test]
    fn a_rotated_ring_seals_with_the_new_key_and_opens_the_old() {
        let old_line = KeyRing::generate_line("2025");
        let old = ring(&[&old_line]);
        let sealed_old = old.sealer("records").seal(b"", b"five years ago");
        let rotated = ring(&["# rotated in November", &old_line, &KeyRing::generate_line("2026")]);
        let s = rotated.sealer("records");
        assert_eq!(s.active_id(), "2026");
        assert_eq!(s.open(b"", &sealed_old).unwrap(), b"five years ago");
        let sealed_new = s.seal(b"", b"today");
        assert_eq!(Sealer::key_id_of(&sealed_new).unwrap(), "2026");
        assert_eq!(old.sealer("records").open(b"", &sealed_new), Err(SealError::UnknownKey("2026".into())));
    }

    #[test]
    fn the_bytes_are_standard_xchacha20_poly1305() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let r = ring(&[&KeyRing::generate_line("k1")]);
        let s = r.sealer("ingest-log");
        let reference = chacha20poly1305::XChaCha20Poly1305::new((&*s.ciphers[0].1).into());
        let mut rng = rand::thread_rng();
        for len in [0usize, 1, 15, 16, 63, 64, 65, 300, 1000, 4096 + 7] {
            let mut plaintext = vec![0u8; len];
            rng.fill_bytes(&mut plaintext);
            let mut nonce = [0u8; NONCE_LEN];
            rng.fill_bytes(&mut nonce);
            let aad = len.to_le_bytes();
            let mut ours = Vec::new();
            s.seal_with_nonce(&nonce, &aad, &plaintext, &mut ours);
            let theirs = reference.encrypt((&nonce).into(), Payload { msg: &plaintext, aad: &aad }).unwrap();
            assert_eq!(&ours[2 + 2 + NONCE_LEN..], theirs.as_slice(), "{len} bytes");
            assert_eq!(&ours[4..4 + NONCE_LEN], nonce.as_slice());
            assert_eq!(s.open(&aad, &ours).unwrap(), plaintext);
        }
    }

    #[test]
    fn signatures_verify_under_their_key_only() {
        let r = ring(&[&KeyRing::generate_line("a")]);
        let (id, tag) = r.sign("checkpoint", b"seq 10 head abc");
        assert!(r.verify(&id, "checkpoint", b"seq 10 head abc", &tag).unwrap());
        assert!(!r.verify(&id, "checkpoint", b"seq 11 head abc", &tag).unwrap());
        assert!(!r.verify(&id, "other", b"seq 10 head abc", &tag).unwrap());
        assert!(matches!(r.verify("b", "checkpoint", b"", &tag), Err(SealError::UnknownKey(_))));
    }

    #[test]
    fn bad_key_files_are_refused_without_echoing_secrets() {
        for (text, says) in [
            ("", "no key"),
            ("k1 abcd", "64 hex"),
            ("k1", "expected"),
            ("k/1 0000000000000000000000000000000000000000000000000000000000000000", "key id"),
            (
                "k 0000000000000000000000000000000000000000000000000000000000000000\nk 1111111111111111111111111111111111111111111111111111111111111111",
                "twice",
            ),
        ] {
            let e = KeyRing::parse(text, "keys.txt").unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("keys.txt"), "{text:?}: {e}");
            assert!(!e.contains("1111111111"), "{e}");
        }
        let line = KeyRing::generate_line("x");
        let r = KeyRing::parse(&line, "t").unwrap();
        let secret = line.split_whitespace().nth(1).unwrap();
        assert!(!format!("{r:?}{:?}", r.sealer("p")).contains(secret), "Debug shows no secret");
        assert!(KeyRing::demo().is_demo() && !r.is_demo());
    }
}
