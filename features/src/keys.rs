//! Entity kinds and the keyed hashes that name entities in the store.
//!
//! An event names up to eight entities. Each is stored under a 64-bit keyed
//! hash of its kind and key, computed once per event: SipHash-1-3 under a
//! 128-bit key. The key is configuration (`[features] hash_key_file`, the
//! variable `hash_key_env` names, or `hash_seed`), the same on every replica,
//! so that replicas agree on keys while an outsider who does not know the key
//! cannot aim collisions. The built-in key is public: for demos only.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;

use crate::event::Event;

/// The kinds of entity Haechi keeps state for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Customer,
    IdDoc,
    Ip,
    /// IPv4 /24 or IPv6 /64: the neighbourhood an attacker rotates addresses in.
    Subnet,
    Device,
    Account,
    Staff,
    Session,
}

/// Number of entity kinds.
pub const KIND_COUNT: usize = 8;

impl EntityKind {
    /// Every kind, in slot order.
    pub const ALL: [EntityKind; KIND_COUNT] = [
        EntityKind::Customer,
        EntityKind::IdDoc,
        EntityKind::Ip,
        EntityKind::Subnet,
        EntityKind::Device,
        EntityKind::Account,
        EntityKind::Staff,
        EntityKind::Session,
    ];

    /// The name used in feature names, URLs and rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Customer => "customer",
            EntityKind::IdDoc => "id_doc",
            EntityKind::Ip => "ip",
            EntityKind::Subnet => "subnet",
            EntityKind::Device => "device",
            EntityKind::Account => "account",
            EntityKind::Staff => "staff",
            EntityKind::Session => "session",
        }
    }

    /// The kind's dense index, 0..KIND_COUNT.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parse a kind name.
    pub fn parse(name: &str) -> Option<EntityKind> {
        EntityKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The secret key of the entity hash: 128 bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashKey {
    k0: u64,
    k1: u64,
}

impl HashKey {
    /// A key from its two halves.
    pub const fn new(k0: u64, k1: u64) -> HashKey {
        HashKey { k0, k1 }
    }

    /// A key from a 64-bit seed (the `hash_seed` setting): the second half is
    /// derived, so the key is only as secret as the seed.
    pub const fn from_seed(seed: u64) -> HashKey {
        HashKey { k0: seed, k1: seed.rotate_left(29) ^ 0x2d35_8dcc_aa6c_78a5 }
    }

    /// Parse key text: 32 hex digits (128 bits), surrounding whitespace ignored.
    ///
    /// # Errors
    /// A message saying what a key must look like (never echoing the text).
    pub fn parse_hex(text: &str) -> Result<HashKey, crate::Error> {
        let t = text.trim();
        if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(crate::Error::Config(format!("a hash key must be 32 hex digits (128 bits; e.g. `openssl rand -hex 16`), got {} characters", t.len())));
        }
        let k0 = u64::from_str_radix(&t[..16], 16).map_err(|e| crate::Error::Config(e.to_string()))?;
        let k1 = u64::from_str_radix(&t[16..], 16).map_err(|e| crate::Error::Config(e.to_string()))?;
        Ok(HashKey { k0, k1 })
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A key never reaches a log.
        f.write_str("HashKey(..)")
    }
}

/// The keyed hash of one entity: SipHash-1-3, a keyed pseudo-random function
/// made for hash-flooding resistance (it is what Rust's own `HashMap` uses).
/// A seeded xxh3 (what it replaced) is fast but makes no claim against an
/// outsider aiming collisions; SipHash is a keyed PRF made for exactly that.
#[inline]
pub fn entity_hash(key: HashKey, kind: EntityKind, bytes: &[u8]) -> u64 {
    // Mixing the kind into the key keeps a device and a customer with the same
    // text apart without copying the bytes.
    SipHasher13::new_with_keys(key.k0 ^ (kind as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15), key.k1).hash(bytes)
}

/// The keyed hash of an event id (for deduplication), apart from every entity kind.
#[inline]
pub fn id_hash(key: HashKey, bytes: &[u8]) -> u64 {
    SipHasher13::new_with_keys(key.k0 ^ 0x6576_656e_742d_6964, key.k1).hash(bytes)
}

/// The subnet an address belongs to, as bytes: the first three octets of an
/// IPv4 address, the first eight bytes of an IPv6 one.
pub fn subnet_bytes(ip: IpAddr) -> ([u8; 8], usize) {
    let mut out = [0u8; 8];
    match ip {
        IpAddr::V4(v4) => {
            out[..3].copy_from_slice(&v4.octets()[..3]);
            (out, 3)
        }
        IpAddr::V6(v6) => {
            out.copy_from_slice(&v6.octets()[..8]);
            (out, 8)
        }
    }
}

/// Human-readable subnet text, for evidence and the entity API.
pub fn subnet_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// A session for an event that names none: its device's (or else its
/// customer's). The store ends it after a pause or an hour
/// ([`IMPLIED_SESSION_IDLE_S`], [`IMPLIED_SESSION_SPAN_S`]), so a bot's run
/// of steps stays in one and an honest person's visits do not add up. The
/// key cannot be a real session id's: those are text, and this one starts
/// with a byte no UTF-8 text has.
fn implied_session(event: &Event, seed: HashKey) -> Option<u64> {
    let (tag, who) = match (&event.device_id, &event.customer_id) {
        (Some(d), _) => (b'd', d.as_bytes()),
        (None, Some(c)) => (b'c', c.as_bytes()),
        (None, None) => return None,
    };
    let mut bytes: smallvec::SmallVec<[u8; 160]> = smallvec::SmallVec::new();
    bytes.extend_from_slice(&[0xFF, tag]);
    bytes.extend_from_slice(who);
    Some(entity_hash(seed, EntityKind::Session, &bytes))
}

/// The session key of an event, and whether it is an implied session's:
/// the session id's (when `trust_session_ids`), or else the implied one's.
pub(crate) fn session_key(event: &Event, seed: HashKey, trust_session_ids: bool) -> Option<(u64, bool)> {
    match event.session_id.as_deref().filter(|_| trust_session_ids) {
        Some(id) => Some((entity_hash(seed, EntityKind::Session, id.as_bytes()), false)),
        None => implied_session(event, seed).map(|key| (key, true)),
    }
}

/// An implied session ends after this pause (event seconds)...
pub const IMPLIED_SESSION_IDLE_S: u32 = 30 * 60;
/// ... or this long after it began: a shared PC busy all day is not one session.
pub const IMPLIED_SESSION_SPAN_S: u32 = 60 * 60;

/// The keys of every entity an event names, hashed once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntityKeys {
    keys: [Option<u64>; KIND_COUNT],
    session_keyed: SessionKeyed,
}

/// What keys the event's session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum SessionKeyed {
    /// The reported id.
    #[default]
    ByReportedId,
    /// An implied session (the device's run of events, see `session_key`),
    /// not a reported id: no block or challenge can be set on it by name.
    /// `untrusted`: the reported id's hash, when the event reports one that
    /// does not key the session (ids a step's each); an analyst's block on
    /// that id still applies.
    Implied { untrusted: Option<u64> },
}

impl EntityKeys {
    /// Hash the entities `event` names, its session id as reported.
    pub fn of(event: &Event, seed: HashKey) -> EntityKeys {
        EntityKeys::of_trusting(event, seed, true)
    }

    /// Hash the entities `event` names. Without `trust_session_ids` (the
    /// stream's ids are a step's each, see `session_ids`), the session is
    /// the implied one, as for an event that names none.
    pub fn of_trusting(event: &Event, seed: HashKey, trust_session_ids: bool) -> EntityKeys {
        let mut keys = [None; KIND_COUNT];
        let mut set = |kind: EntityKind, key: Option<&str>| {
            keys[kind.index()] = key.map(|k| entity_hash(seed, kind, k.as_bytes()));
        };
        set(EntityKind::Customer, event.customer_id.as_deref());
        set(EntityKind::IdDoc, event.id_doc_hash.as_deref());
        set(EntityKind::Device, event.device_id.as_deref());
        set(EntityKind::Account, event.account_hash.as_deref());
        set(EntityKind::Staff, event.staff_id.as_deref());
        let session = session_key(event, seed, trust_session_ids);
        keys[EntityKind::Session.index()] = session.map(|(key, _)| key);
        // No key at all (no session id, device or customer) names nothing either.
        let session_keyed = if session.is_none_or(|(_, implied)| implied) {
            SessionKeyed::Implied { untrusted: event.session_id.as_deref().filter(|_| !trust_session_ids).map(|id| entity_hash(seed, EntityKind::Session, id.as_bytes())) }
        } else {
            SessionKeyed::ByReportedId
        };
        if let Some(ip) = event.ip {
            let key = match ip {
                IpAddr::V4(v4) => entity_hash(seed, EntityKind::Ip, &v4.octets()),
                IpAddr::V6(v6) => entity_hash(seed, EntityKind::Ip, &v6.octets()),
            };
            keys[EntityKind::Ip.index()] = Some(key);
            let (bytes, len) = subnet_bytes(ip);
            keys[EntityKind::Subnet.index()] = Some(entity_hash(seed, EntityKind::Subnet, &bytes[..len]));
        }
        EntityKeys { keys, session_keyed }
    }

    /// Whether the session key is an implied session's (no reported id, or
    /// reported ids a step's each): nothing can name it.
    pub fn session_is_implied(&self) -> bool {
        matches!(self.session_keyed, SessionKeyed::Implied { .. })
    }

    /// The hash of the session id the event reports, whether or not it keys
    /// the session (see [`EntityKeys::of_trusting`]).
    pub fn reported_session(&self) -> Option<u64> {
        match self.session_keyed {
            SessionKeyed::Implied { untrusted } => untrusted,
            SessionKeyed::ByReportedId => self.get(EntityKind::Session),
        }
    }

    /// The reported session id's hash when it does not key the session.
    pub fn untrusted_session(&self) -> Option<u64> {
        match self.session_keyed {
            SessionKeyed::Implied { untrusted } => untrusted,
            SessionKeyed::ByReportedId => None,
        }
    }

    /// Name one entity by its hash (the block list looks entities up this way).
    pub fn set(&mut self, kind: EntityKind, hash: u64) {
        self.keys[kind.index()] = Some(hash);
    }

    /// The hash of the entity of `kind`, if the event names one.
    pub fn get(&self, kind: EntityKind) -> Option<u64> {
        self.keys[kind.index()]
    }
}

/// The hash under which the entity API finds `key` of `kind`. IPs and subnets
/// are given as text (`10.0.0.1`, `10.0.0.0/24` or any address inside it).
pub fn lookup_hash(seed: HashKey, kind: EntityKind, key: &str) -> Option<u64> {
    match kind {
        EntityKind::Ip => {
            let ip: IpAddr = key.parse().ok()?;
            Some(match ip {
                IpAddr::V4(v4) => entity_hash(seed, kind, &v4.octets()),
                IpAddr::V6(v6) => entity_hash(seed, kind, &v6.octets()),
            })
        }
        EntityKind::Subnet => {
            let addr = key.split('/').next()?;
            let (bytes, len) = subnet_bytes(addr.parse().ok()?);
            Some(entity_hash(seed, kind, &bytes[..len]))
        }
        _ => Some(entity_hash(seed, kind, key.as_bytes())),
    }
}

/// The text key of the entity of `kind` an event names, for evidence and alerts.
pub fn entity_text(event: &Event, kind: EntityKind) -> Option<String> {
    match kind {
        EntityKind::Customer => event.customer_id.as_deref().map(str::to_owned),
        EntityKind::IdDoc => event.id_doc_hash.as_deref().map(str::to_owned),
        EntityKind::Ip => event.ip.map(|ip| ip.to_string()),
        EntityKind::Subnet => event.ip.map(subnet_text),
        EntityKind::Device => event.device_id.as_deref().map(str::to_owned),
        EntityKind::Account => event.account_hash.as_deref().map(str::to_owned),
        EntityKind::Staff => event.staff_id.as_deref().map(str::to_owned),
        EntityKind::Session => event.session_id.as_deref().map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_stay_apart() {
        for k in EntityKind::ALL {
            assert_eq!(EntityKind::parse(k.as_str()), Some(k));
        }
        let (k1, k2) = (HashKey::from_seed(1), HashKey::from_seed(2));
        assert_ne!(entity_hash(k1, EntityKind::Customer, b"x"), entity_hash(k1, EntityKind::Device, b"x"));
        assert_ne!(entity_hash(k1, EntityKind::Customer, b"x"), entity_hash(k2, EntityKind::Customer, b"x"));
        assert_ne!(entity_hash(k1, EntityKind::Customer, b"x"), entity_hash(HashKey::new(1, 0), EntityKind::Customer, b"x"));
    }

    #[test]
    fn an_event_without_a_session_id_has_its_devices_session() {
        let k = HashKey::from_seed(3);
        let at = |ts: &str, device: Option<&str>, session: Option<&str>| {
            let mut json = format!(r#"{{"event_id":"e","ts":"{ts}","step":"login","result":"success","customer_id":"c1""#);
            if let Some(d) = device {
                json += &format!(r#","device_id":"{d}""#);
            }
            if let Some(s) = session {
                json += &format!(r#","session_id":"{s}""#);
            }
            json += "}";
            EntityKeys::of(&Event::parse(json.as_bytes(), 4096).unwrap(), k).get(EntityKind::Session)
        };
        let first = at("2026-11-02T10:05:00+09:00", Some("d1"), None).expect("a session is implied");
        assert_eq!(at("2026-11-02T14:25:00+09:00", Some("d1"), None), Some(first), "the store, not the key, ends it");
        assert_ne!(at("2026-11-02T10:05:00+09:00", Some("d2"), None), Some(first), "another device");
        let by_customer = at("2026-11-02T10:05:00+09:00", None, None).expect("the customer's, without a device");
        assert_ne!(by_customer, first);
        // A session id given is the session, and no text names an implied one.
        assert_eq!(at("2026-11-02T10:05:00+09:00", Some("d1"), Some("s1")), Some(entity_hash(k, EntityKind::Session, b"s1")));
        assert!(at("2026-11-02T10:05:00+09:00", Some("d1"), Some("s1")) != Some(first));
    }

    #[test]
    fn subnet_lookup_matches_any_address_inside() {
        let k = HashKey::from_seed(7);
        let a = lookup_hash(k, EntityKind::Subnet, "10.1.2.0/24");
        assert_eq!(a, lookup_hash(k, EntityKind::Subnet, "10.1.2.77"));
        assert_ne!(a, lookup_hash(k, EntityKind::Subnet, "10.1.3.77"));
        assert_eq!(subnet_text("2001:db8:1:2:3::9".parse().unwrap()), "2001:db8:1:2::/64");
    }

    #[test]
    fn hex_keys_parse_and_bad_ones_are_refused_without_echo() {
        let k = HashKey::parse_hex(" 00112233445566778899aabbccddeeff\n").unwrap();
        assert_eq!(k, HashKey::new(0x0011_2233_4455_6677, 0x8899_aabb_ccdd_eeff));
        let e = HashKey::parse_hex("secret-but-not-hex-secret-but-no").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
        assert!(HashKey::parse_hex("0011").is_err());
        assert_eq!(format!("{k:?}"), "HashKey(..)");
    }
}
