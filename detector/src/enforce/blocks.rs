//! The block list: entities refused (or challenged) until a time, set by
//! rules, rate limits or analysts, lifted by analysts, kept across restarts.
//!
//! Blocks are looked up by the keyed entity hash the pipeline computed for the
//! event, so a check costs a map probe per entity and no allocation. Every
//! call takes "now" from the caller: the service passes the wall clock (a
//! block is enforced live, whatever the events' own times), a replay passes
//! event time, so that a backtest blocks exactly what the service would.
//!
//! The state file names blocked customers, devices and addresses: opened
//! with a [`Sealer`] ([`BlockList::open_sealed`]), the list writes it sealed
//! as a whole, and reads a plain one (an older build's) once, rewriting it sealed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use haechi_features::{EntityKeys, EntityKind};
use haechi_storage::Sealer;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// What an entry does to events that name its entity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockAction {
    /// Ask for step-up authentication on the events that name it (a
    /// per-session challenge set by the blast-radius guard instead of a
    /// block on a shared address; once its holder answers it, see
    /// [`Block::answered_at_event_ms`], the holder's identity checks that
    /// pass in the session, dated no earlier than the answer, are let
    /// through, unless it was set for a rate limit or for want of history).
    Challenge,
    /// Refuse.
    #[default]
    Block,
}

/// One block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub scope: EntityKind,
    pub key: String,
    /// The keyed hash the pipeline looks it up by.
    pub hash: u64,
    pub reason: String,
    /// `rule:<id>`, `rate_limit:<scope>` or `analyst:<who>`.
    pub set_by: String,
    pub set_at_ms: i64,
    pub expires_at_ms: i64,
    /// How many times this entity has been blocked automatically (repeat offenders wait longer).
    pub offense: u32,
    /// Refuse, or challenge.
    #[serde(default)]
    pub action: BlockAction,
    /// Returning customers the entity carried when the block was set (shared
    /// scopes only): how many honest people the block may touch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blast_radius: Option<u32>,
    /// Event time of the event that set it (automatic entries): what a
    /// device's own history, also in event time, is compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_at_event_ms: Option<i64>,
    /// Who the entry was set for (the blast-radius guard's per-session
    /// challenges: the customer and device of the event that set it, as one
    /// keyed hash). A session id is the client's to choose; only this
    /// holder may answer the challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<u64>,
    /// Event time at which the holder answered a guard challenge: passed a
    /// face match in the session after it was set, in an event nothing else
    /// challenged or refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at_event_ms: Option<i64>,
    /// A detector's block on a customer: the devices its offending events
    /// came from (keyed hashes): the one that set it, those that sent a
    /// wrong code or password while it held, and those whose events fired
    /// the rule again; the latest [`MAX_OFFENDING_DEVICES`] to offend,
    /// oldest first. It refuses these; a passed event from another device is
    /// challenged instead (see [`Block::steps_up_device`]). Empty (an older
    /// entry, or none of its offending events named a device, so that a
    /// guesser who sends no device id locks the owner out with the rest
    /// until one of their events names one) or past
    /// [`MAX_OFFENDING_DEVICES`] (an entry written by a build that padded the
    /// list to refuse everything): it refuses every device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offending_devices: Vec<u64>,
    /// A detector's block on a staff member that lets routine work pass
    /// (see [`BlockConfig::routine_staff_work_passes_for`]): the records it
    /// has let through on the local day `routine_day` (days since the
    /// epoch). It lets through no more than the member's typical day on any
    /// one day, however long repeat offenses make it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub routine_records_passed: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub routine_day: u32,
    /// Set by a rule that `[blocks] step_up_other_devices_for` names, as the
    /// list holding it is configured now: resolved when the entry is set or
    /// loaded, never stored. A block kept across a restart whose settings no
    /// longer name its rule refuses every device, as the new settings say.
    #[serde(skip)]
    about_guessing: bool,
    /// ... and by one that `[blocks] presence_checks_pass_for` names too:
    /// guessed passwords and codes only. Resolved as `about_guessing` is.
    #[serde(skip)]
    about_codes: bool,
    /// Set by a rule that `[blocks] routine_staff_work_passes_for` names:
    /// resolved as `about_guessing` is.
    #[serde(skip)]
    about_staff_off_pattern: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How many of the latest offending devices a customer block remembers. A
/// guesser who rotates through more device ids than this has each of their
/// guesses refused from any device, and each passed login or code from a
/// device no longer remembered stepped up, as the owner's is. Five ids in
/// a cycle are enough for that. Against such a guesser the block's defence
/// is the step-up alone: it must ask for a factor the guesser is not the
/// one guessing (a face match, not another code over the same channel), and
/// a step-up where a refusal would come also tells them their password or
/// code was right. Refusing every device instead, as an earlier build did
/// past this, locked out the owner, who cannot be told from the guesser's
/// next new device.
pub const MAX_OFFENDING_DEVICES: usize = 4;

/// A guard challenge on a session, as its holder meets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardChallenge {
    /// Event time of the event that set it.
    pub set_at_event_ms: i64,
    /// Returning customers the scope carried when it was set.
    pub blast_radius: u32,
    /// What the guard turned into this challenge: `detector:rule`, or
    /// `rate_limit:<scope>`.
    pub instead_of: String,
    /// When the holder answered it, if they have.
    pub answered_at_event_ms: Option<i64>,
}

/// What a decision shows of the entry that refused or challenged it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockedBy {
    pub scope: EntityKind,
    pub key: String,
    pub action: BlockAction,
    pub reason: String,
    pub set_by: String,
    pub expires_at: String,
}

impl From<&Block> for BlockedBy {
    fn from(b: &Block) -> Self {
        BlockedBy {
            scope: b.scope,
            key: b.key.clone(),
            action: b.action,
            reason: b.reason.clone(),
            set_by: b.set_by.clone(),
            expires_at: haechi_features::format_rfc3339_ms(b.expires_at_ms),
        }
    }
}

/// How the blast-radius guard's per-session challenges name who set them:
/// this prefix, then the rule whose block it turned into a challenge.
pub const GUARD_SET_BY_PREFIX: &str = "blast_radius:";

impl Block {
    /// Set by an analyst: wins over everything, allowlists included.
    pub fn is_manual(&self) -> bool {
        self.set_by.starts_with("analyst:")
    }

    /// A per-session challenge the blast-radius guard set in place of a block.
    pub fn is_guard_challenge(&self) -> bool {
        self.scope == EntityKind::Session && self.action == BlockAction::Challenge && self.set_by.starts_with(GUARD_SET_BY_PREFIX)
    }

    /// The guard challenge a holder met, set at that event time: not one
    /// that replaced it since.
    pub fn is_same_guard_challenge(&self, holder: u64, set_at_event_ms: i64) -> bool {
        self.is_guard_challenge() && self.holder == Some(holder) && self.set_at_event_ms == Some(set_at_event_ms)
    }

    /// A detector's block on a customer about guessing, which knows which
    /// devices its offending events came from: the entry
    /// [`BlockList::note_offending_device`] keeps.
    fn tells_devices_apart(&self) -> bool {
        self.about_guessing && self.scope == EntityKind::Customer && self.action == BlockAction::Block && !self.is_manual() && !self.set_by.starts_with(super::RATE_LIMIT_SET_BY_PREFIX)
    }

    /// This block, met by an event from `device`, asks for a step-up
    /// instead of refusing it: a detector's block on the customer about
    /// guessing (`[blocks] step_up_other_devices_for`: only those note
    /// devices), an event from a device that is not among the offending
    /// devices it remembers, once it remembers one. Such a block is
    /// about the guesser's devices; the owner, who comes from their own
    /// phone, proves themselves with a step-up rather than being locked out
    /// until it expires. A wrong code or password is refused whatever its
    /// device (see the caller), and so is an event without one. However
    /// many devices the guesser rotates through, the latest
    /// [`MAX_OFFENDING_DEVICES`] stay refused and every other one is stepped
    /// up, the guesser's older ones included.
    pub fn steps_up_device(&self, device: Option<u64>) -> bool {
        let Some(device) = device else { return false };
        self.tells_devices_apart()
            && !self.offending_devices.is_empty()
            && self.offending_devices.len() <= MAX_OFFENDING_DEVICES
            && !self.offending_devices.contains(&device)
    }

    /// This block, met by a passed ID scan, authenticity check, face match
    /// or liveness check from `device`, lets it through: it would step the
    /// device up, and it was set by guessed passwords and codes only
    /// (`[blocks] presence_checks_pass_for`), which such a check gives
    /// nothing towards.
    pub fn lets_presence_check_pass(&self, device: Option<u64>) -> bool {
        self.about_codes && self.steps_up_device(device)
    }

    /// A detector's block on a staff member for pulling records out of
    /// pattern (`[blocks] routine_staff_work_passes_for`) that lets one
    /// more routine record through on local day `day`: it has let fewer
    /// than `budget` (the member's typical day) through that day. See
    /// [`BlockConfig::routine_staff_work_passes_for`].
    pub fn lets_routine_staff_work_pass(&self, day: u32, budget: f32) -> bool {
        let passed_today = if self.routine_day == day { self.routine_records_passed } else { 0 };
        // Whole records: a typical day of 1.2 lets one through, not two.
        self.passes_routine_staff_work() && (passed_today.saturating_add(1) as f32) <= budget
    }

    /// A detector's block on a staff member of `[blocks] routine_staff_work_passes_for`.
    pub fn passes_routine_staff_work(&self) -> bool {
        self.about_staff_off_pattern && self.scope == EntityKind::Staff && !self.is_manual()
    }
}

/// An offense count as the state file keeps it; files written before the
/// last-offense time was kept have no time and count as offending at load.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum OffenseRecord {
    Timed(EntityKind, u64, u32, i64),
    Untimed(EntityKind, u64, u32),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    blocks: Vec<Block>,
    offenses: Vec<OffenseRecord>,
}

/// Settings of the block list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlockConfig {
    /// Where blocks are kept across restarts; unset: in memory only.
    pub state_file: Option<PathBuf>,
    /// At most this many automatic blocks per minute; past it the breaker
    /// trips and decisions still say block but no new entity is listed, so a
    /// bad rule cannot list a whole carrier NAT.
    pub max_new_per_minute: u32,
    /// Each repeat multiplies the TTL by this, up to `max_ttl`.
    pub repeat_multiplier: u32,
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// The blast-radius guard: a shared scope (ip, subnet, device, account)
    /// that carried more returning customers than this in the long window is
    /// never blocked; its sessions are challenged one by one instead.
    pub blast_radius_limit: u32,
    /// A detector's block on a customer (an account whose codes are being
    /// guessed) spares a device that passed a one-time code for that
    /// customer at least `owner_device_min_age` before the block was set:
    /// whoever locks an account must not lock its owner out of their own
    /// phone. An analyst's block and a rate limit's spare nothing.
    pub spare_owner_devices: bool,
    /// How long before the block the device must have passed its first code.
    #[serde(with = "humantime_serde")]
    pub owner_device_min_age: Duration,
    /// The detectors' blocks on a customer (`detector:rule`) that are about
    /// guessing: each refuses the devices its offending events came from
    /// (the one that set it, every wrong code or password met while it held,
    /// and every event that fired a rule again), and challenges an event
    /// from another device instead. The owner of an account whose codes are
    /// being guessed, coming from a phone of their own, proves themselves
    /// with a step-up rather than waiting out the block. A wrong code or
    /// password is refused from every device; a guesser rotating device ids
    /// has the latest four refused and every other stepped up. Any other
    /// block on a customer (a mule or fraud rule) refuses every device.
    /// Empty: every customer block refuses every device.
    pub step_up_other_devices_for: Vec<String>,
    /// Of the blocks above, those set only by guessed passwords and codes
    /// (never by failed photos or faces): from a device other than the
    /// guesser's, a passed ID scan, authenticity check, face match or
    /// liveness check is let through instead of stepped up. Such a check is
    /// what a step-up asks for, and not what a guesser of codes is after; the
    /// owner re-verifying on a new phone passes them. The failure streak
    /// counts failed faces too, so it is not listed: a face spoofer rotating
    /// device ids must still be stepped up when one try passes. Once such a
    /// device has passed a face match and a liveness check for the customer
    /// within the middle window (`customer.face_shown_s`), whatever else it
    /// passes is let through too; what it fails is refused and makes it
    /// offending. That trusts the bank's pipeline to run the two checks on
    /// one capture: a guesser who passes the face match on a photo and the
    /// liveness check on their own face gets one guess per device id so.
    pub presence_checks_pass_for: Vec<String>,
    /// Until the store stands on a long window of history (a new install,
    /// not warmed from history), nobody has been seen returning for long
    /// enough to tell a carrier NAT exit from a proxy: a block on a shared
    /// scope is then a per-session challenge, like the guard's.
    pub cold_start_challenge: bool,
    /// The detectors' blocks on a staff member (`detector:rule`) set for
    /// pulling records out of pattern: at an hour the bank's staff do not
    /// work, or above the member's own habit. Such a block keeps refusing
    /// what it was set for (any access at such an hour, any export, any
    /// access to more or fewer than one record, any late event) and lets
    /// through one record read at an hour the bank's staff work, with a reason on the
    /// decision, while the member has read no more in the last hour than on
    /// a typical day of their own (a member with no day of their own yet,
    /// as every member of a new install not warmed from history: of the
    /// bank's staff, `staff.peers_typical_daily_records`; before the store
    /// has closed five staff days, no routine): the counter work of the
    /// morning after. One block lets
    /// through no more records than the member's typical day on any one
    /// day, however long repeat offenses make it (decisions made at the
    /// same moment on other threads may each take the last one). A rule not
    /// listed that asks to block the member in working hours, on an event
    /// the block refuses or lets through, replaces it with a block that
    /// passes nothing.
    /// Their night was stopped and raised to the analysts; whether the
    /// person keeps working at all is the analysts' call: their block on
    /// the staff member refuses everything. Needs a medium window of one
    /// hour. Empty: every staff block refuses everything.
    pub routine_staff_work_passes_for: Vec<String>,
    /// How busy an hour must be among the bank's staff hours for a lookup in
    /// it to be routine (`event.hour_activity` of a staff access: 1.0 is an
    /// average hour). Until real staff hours are learned, the office hours
    /// (`features.staff_office_hours`) stand in for them; with no office
    /// hours given, every hour reads 1.0, so the bar must stand above 1.0
    /// for no hour to be routine then.
    pub routine_staff_hour_activity: f32,
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig {
            state_file: None,
            max_new_per_minute: 600,
            repeat_multiplier: 2,
            max_ttl: Duration::from_secs(7 * 86_400),
            blast_radius_limit: 5,
            spare_owner_devices: true,
            owner_device_min_age: Duration::from_secs(3600),
            step_up_other_devices_for: ["rules:brute_force_second_factor", "rules:brute_force_slow_failures", "builtin:failure_streak"].map(String::from).to_vec(),
            presence_checks_pass_for: ["rules:brute_force_second_factor", "rules:brute_force_slow_failures"].map(String::from).to_vec(),
            cold_start_challenge: true,
            routine_staff_work_passes_for: ["rules:staff_odd_hour_bulk", "rules:staff_above_own_habit_off_hours"].map(String::from).to_vec(),
            routine_staff_hour_activity: 1.5,
        }
    }
}

/// Why an automatic block was not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Already blocked: nothing to do.
    AlreadyBlocked,
    /// The per-minute cap is reached.
    CircuitOpen,
}

/// Maps keyed by scope and entity hash. The hash is already a keyed SipHash
/// of the entity's value (`EntityKeys`), so a fast seeded hasher is enough:
/// every event looks up each of its entities here.
type ScopeMap<V> = DashMap<(EntityKind, u64), V, foldhash::fast::RandomState>;

/// The block list.
pub struct BlockList {
    config: BlockConfig,
    entries: ScopeMap<Block>,
    /// Automatic blocks per entity, and when the last one was set.
    offenses: ScopeMap<(u32, i64)>,
    minute: AtomicI64,
    set_this_minute: AtomicU64,
    dirty: Arc<Notify>,
    /// Told of every block set or lifted here (not of those applied from
    /// another replica): the block topic.
    listener: std::sync::OnceLock<ChangeListener>,
    /// Seals the state file; `None`: it is written plain.
    sealer: Option<Sealer>,
}

/// What the sealed state file is bound to: it opens as nothing else.
const BLOCKS_AAD: &[u8] = b"blocks";

/// Called with `"set"`, `"lift"`, `"answered"` or `"device"` and the block.
pub type ChangeListener = Box<dyn Fn(&str, &Block) + Send + Sync>;

/// Wall-clock time, ms since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl BlockList {
    /// Empty list, or the one in the state file.
    ///
    /// # Errors
    /// When the state file exists but cannot be read or parsed: better to stop
    /// than to start with every block silently lifted.
    pub fn open(config: BlockConfig) -> Result<BlockList, crate::DetectorError> {
        Self::open_at(config, now_ms())
    }

    /// Like [`BlockList::open`], dropping entries already expired at `now`.
    ///
    /// # Errors
    /// See [`BlockList::open`].
    pub fn open_at(config: BlockConfig, now: i64) -> Result<BlockList, crate::DetectorError> {
        Self::open_sealed(config, now, None)
    }

    /// Like [`BlockList::open_at`], the state file sealed with `sealer` when
    /// one is given. A plain state file found then is read, and rewritten
    /// sealed before this returns.
    ///
    /// # Errors
    /// See [`BlockList::open`]; also a sealed file that does not open (the
    /// message names the file and the key it was sealed with), or one found
    /// without a sealer.
    pub fn open_sealed(config: BlockConfig, now: i64, sealer: Option<Sealer>) -> Result<BlockList, crate::DetectorError> {
        let list = BlockList {
            entries: ScopeMap::default(),
            offenses: ScopeMap::default(),
            minute: AtomicI64::new(0),
            set_this_minute: AtomicU64::new(0),
            dirty: Arc::new(Notify::new()),
            listener: std::sync::OnceLock::new(),
            sealer,
            config,
        };
        if let Some(path) = &list.config.state_file {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let (text, was_plain) = list.unseal(path, bytes)?;
                    let state: StateFile = serde_json::from_slice(&text).map_err(|e| block_state!("block state {}: {e}", path.display()))?;
                    for b in state.blocks.into_iter().filter(|b| b.expires_at_ms > now) {
                        list.entries.insert((b.scope, b.hash), list.resolved(b));
                    }
                    for o in state.offenses {
                        let (k, h, n, at) = match o {
                            OffenseRecord::Timed(k, h, n, at) => (k, h, n, at),
                            OffenseRecord::Untimed(k, h, n) => (k, h, n, now),
                        };
                        list.offenses.insert((k, h), (n, at));
                    }
                    if was_plain && list.sealer.is_some() {
                        tracing::warn!(path = %path.display(), "the block state file was written unencrypted (by an older build): read once, rewritten sealed");
                        list.persist().map_err(|e| block_state!("block state {}: rewriting it sealed: {e}", path.display()))?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(block_state!("block state {}: {e}", path.display())),
            }
        }
        Ok(list)
    }

    /// `block` with the settings' word on it resolved: whether its rule is
    /// one of `step_up_other_devices_for`. Every entry passes here once, when
    /// it is set or loaded, so that no event compares rule names.
    fn resolved(&self, mut block: Block) -> Block {
        block.about_guessing = self.config.step_up_other_devices_for.contains(&block.set_by);
        block.about_codes = block.about_guessing && self.config.presence_checks_pass_for.contains(&block.set_by);
        block.about_staff_off_pattern = self.config.routine_staff_work_passes_for.contains(&block.set_by);
        block
    }

    /// The state file's JSON, and whether it was stored plain.
    fn unseal(&self, path: &std::path::Path, bytes: Vec<u8>) -> Result<(Vec<u8>, bool), crate::DetectorError> {
        // JSON never starts with the seal's tag byte (it is not UTF-8 at the start of a text).
        let Ok(key) = Sealer::key_id_of(&bytes) else { return Ok((bytes, true)) };
        let Some(sealer) = &self.sealer else {
            return Err(block_state!("block state {}: sealed with key {key:?}, and no data key was given to open it", path.display()));
        };
        match sealer.open(BLOCKS_AAD, &bytes) {
            Ok(text) => Ok((text, false)),
            Err(e @ haechi_storage::SealError::UnknownKey(_)) => Err(block_state!("block state {}: {e}", path.display())),
            Err(e) => Err(block_state!("block state {} (sealed with key {key:?}): {e}", path.display())),
        }
    }

    /// File the entries under the hash `key` gives their text keys. A state
    /// file written under another entity-hash key (a rotated key, or a build
    /// that hashed differently) would otherwise hold blocks no event can
    /// reach. Offense counts carry no text key and are dropped when stale.
    /// Returns the entries moved.
    pub fn rehash(&self, key: haechi_features::HashKey) -> usize {
        let stale: Vec<(EntityKind, u64)> = self
            .entries
            .iter()
            .filter(|e| haechi_features::lookup_hash(key, e.scope, &e.key).is_some_and(|h| h != e.hash))
            .map(|e| *e.key())
            .collect();
        let moved = stale.len();
        for k in stale {
            if let Some((_, mut b)) = self.entries.remove(&k) {
                if let Some(h) = haechi_features::lookup_hash(key, b.scope, &b.key) {
                    b.hash = h;
                    // Device hashes under the old key match no event now:
                    // forgotten, the block refuses every device until one
                    // offends again.
                    b.offending_devices.clear();
                    self.entries.insert((b.scope, h), b);
                }
            }
        }
        if moved > 0 {
            self.offenses.clear();
            self.note_change();
        }
        moved
    }

    /// The strongest entry in force on any entity the event names: an
    /// analyst's block first, then any block, then a challenge.
    pub fn check(&self, keys: &EntityKeys, now: i64) -> Option<Block> {
        self.check_applying(keys, now, |b| Some(b.action)).map(|(b, _)| b)
    }

    /// [`BlockList::check`], each entry in force applied as `applies` says
    /// for this event: its own action, a weaker one, or not at all (`None`).
    /// The strongest as applied wins; returned with the action applied.
    pub fn check_applying(&self, keys: &EntityKeys, now: i64, applies: impl Fn(&Block) -> Option<BlockAction>) -> Option<(Block, BlockAction)> {
        if self.entries.is_empty() {
            return None;
        }
        let mut best: Option<(Block, BlockAction)> = None;
        // A session id that does not key its session (the stream's ids are a
        // step's each) is still the id an analyst may have blocked.
        let named = EntityKind::ALL.into_iter().filter_map(|kind| keys.get(kind).map(|h| (kind, h)));
        for (kind, h) in named.chain(keys.untrusted_session().map(|h| (EntityKind::Session, h))) {
            if let Some(b) = self.entries.get(&(kind, h)) {
                if b.expires_at_ms <= now || best.as_ref().is_some_and(|(cur, applied)| rank(&b, b.action) <= rank(cur, *applied)) {
                    continue;
                }
                if let Some(action) = applies(&b).filter(|a| best.as_ref().is_none_or(|(cur, applied)| rank(&b, *a) > rank(cur, *applied))) {
                    best = Some((b.clone(), action));
                }
            }
        }
        best
    }

    /// The challenge in force that the blast-radius guard set on this
    /// session for this holder (see [`Block::holder`]), if any.
    pub fn guard_challenge(&self, session_hash: u64, holder: u64, now: i64) -> Option<GuardChallenge> {
        let b = self.entries.get(&(EntityKind::Session, session_hash))?;
        if b.expires_at_ms <= now || !b.is_guard_challenge() || b.holder != Some(holder) {
            return None;
        }
        Some(GuardChallenge {
            set_at_event_ms: b.set_at_event_ms?,
            blast_radius: b.blast_radius?,
            instead_of: b.set_by.strip_prefix(GUARD_SET_BY_PREFIX)?.to_owned(),
            answered_at_event_ms: b.answered_at_event_ms,
        })
    }

    /// Mark answered at `event_ms` the guard challenge on this session that
    /// `holder` met as [`BlockList::guard_challenge`] read it (set at
    /// `set_at_event_ms`), if that same entry is still there unanswered.
    /// The block topic and the records are told (change `answered`).
    pub fn answer_guard_challenge(&self, session_hash: u64, holder: u64, set_at_event_ms: i64, event_ms: i64) {
        let marked = self.entries.get_mut(&(EntityKind::Session, session_hash)).and_then(|mut b| {
            let same = b.is_same_guard_challenge(holder, set_at_event_ms) && b.answered_at_event_ms.is_none();
            same.then(|| {
                b.answered_at_event_ms = Some(event_ms);
                b.clone()
            })
        });
        if let Some(b) = marked {
            self.note_change();
            self.tell("answered", &b);
        }
    }

    /// Set an automatic block (rule or rate limit), subject to the breaker and
    /// lengthened for repeat offenders.
    ///
    /// # Errors
    /// [`Refused`] when nothing was set.
    #[allow(clippy::too_many_arguments)]
    pub fn set_automatic(
        &self,
        scope: EntityKind,
        hash: u64,
        key: String,
        base_ttl: Duration,
        reason: String,
        set_by: String,
        action: BlockAction,
        now: i64,
        event_ms: Option<i64>,
        blast_radius: Option<u32>,
        holder: Option<u64>,
    ) -> Result<Block, Refused> {
        self.set_automatic_replacing(scope, hash, key, base_ttl, reason, set_by, action, now, event_ms, blast_radius, holder, false)
    }

    /// [`BlockList::set_automatic`], and with `may_replace_passing` (an
    /// event in the bank's working hours), a detector's block on a staff
    /// member that passes routine work is replaced by a block from a rule
    /// not listed, which passes nothing (the member's office-hours pull).
    /// The new block lasts at least as long as the one it replaces.
    #[allow(clippy::too_many_arguments)]
    pub fn set_automatic_replacing(
        &self,
        scope: EntityKind,
        hash: u64,
        key: String,
        base_ttl: Duration,
        reason: String,
        set_by: String,
        action: BlockAction,
        now: i64,
        event_ms: Option<i64>,
        blast_radius: Option<u32>,
        holder: Option<u64>,
        may_replace_passing: bool,
    ) -> Result<Block, Refused> {
        let unlisted = may_replace_passing && action == BlockAction::Block && !self.config.routine_staff_work_passes_for.contains(&set_by);
        let replaces = |b: &Block| unlisted && b.passes_routine_staff_work();
        // An analyst's entry is never replaced by an automatic one, nor a
        // block by a mere challenge.
        if self.entries.get(&(scope, hash)).is_some_and(|b| b.expires_at_ms > now && (b.is_manual() || (b.action >= action && !replaces(&b)))) {
            return Err(Refused::AlreadyBlocked);
        }
        let minute = now / 60_000;
        if self.minute.swap(minute, Ordering::Relaxed) != minute {
            self.set_this_minute.store(0, Ordering::Relaxed);
        }
        if self.set_this_minute.fetch_add(1, Ordering::Relaxed) >= u64::from(self.config.max_new_per_minute) {
            return Err(Refused::CircuitOpen);
        }
        let offense = {
            let mut o = self.offenses.entry((scope, hash)).or_insert((0, now));
            o.0 += 1;
            o.1 = now;
            o.0
        };
        let factor = u64::from(self.config.repeat_multiplier.max(1)).saturating_pow(offense - 1);
        let ttl = base_ttl.saturating_mul(factor.min(u64::from(u32::MAX)) as u32).min(self.config.max_ttl);
        let block = Block {
            scope,
            key,
            hash,
            reason,
            set_by,
            set_at_ms: now,
            expires_at_ms: now + ttl.as_millis() as i64,
            offense,
            action,
            blast_radius,
            set_at_event_ms: event_ms,
            holder,
            answered_at_event_ms: None,
            offending_devices: Vec::new(),
            routine_records_passed: 0,
            routine_day: 0,
            about_guessing: false,
            about_codes: false,
            about_staff_off_pattern: false,
        };
        let mut block = self.resolved(block);
        // Checked again under the shard lock: an analyst may have set a block
        // on this entity since the look above.
        match self.entries.entry((scope, hash)) {
            dashmap::Entry::Occupied(e) if e.get().is_manual() && e.get().expires_at_ms > now => return Err(Refused::AlreadyBlocked),
            dashmap::Entry::Occupied(mut e) => {
                if e.get().expires_at_ms > now && replaces(e.get()) {
                    block.expires_at_ms = block.expires_at_ms.max(e.get().expires_at_ms);
                }
                e.insert(block.clone());
            }
            dashmap::Entry::Vacant(e) => {
                e.insert(block.clone());
            }
        }
        self.note_change();
        self.tell("set", &block);
        Ok(block)
    }

    /// The block on this staff member in force passes routine work.
    pub fn staff_block_passes_routine(&self, hash: u64, now: i64) -> bool {
        self.entries.get(&(EntityKind::Staff, hash)).is_some_and(|b| b.expires_at_ms > now && b.passes_routine_staff_work())
    }

    /// A staff block's routine pass let `records` through: they count
    /// against its budget (see [`Block::lets_routine_staff_work_pass`]).
    pub fn note_routine_pass(&self, hash: u64, set_at_ms: i64, day: u32, records: u32) {
        if let Some(mut b) = self.entries.get_mut(&(EntityKind::Staff, hash)).filter(|b| b.set_at_ms == set_at_ms) {
            if b.routine_day != day {
                b.routine_day = day;
                b.routine_records_passed = 0;
            }
            b.routine_records_passed = b.routine_records_passed.saturating_add(records);
            drop(b);
            self.note_change();
        }
    }

    /// Add `device` (its keyed hash; `None`: an event without one) to the
    /// devices a detector's block on a customer refuses, when the block in
    /// force was set by a rule of `step_up_other_devices_for` and an event
    /// from it set it, fired a rule again or sent a wrong code or password.
    /// A device that offends again becomes the latest; past
    /// [`MAX_OFFENDING_DEVICES`] the one that offended longest ago is
    /// forgotten. An event without a device adds nothing: it is refused
    /// anyway, and once the block remembers a device, refusing every device
    /// for it would lock out the owner alone. The block topic and the
    /// records are told (change `device`).
    pub fn note_offending_device(&self, scope: EntityKind, hash: u64, device: Option<u64>, now: i64) {
        let Some(device) = device else { return };
        let noted = self.entries.get_mut(&(scope, hash)).and_then(|mut b| {
            if b.expires_at_ms <= now || !b.tells_devices_apart() || b.offending_devices.len() > MAX_OFFENDING_DEVICES {
                return None;
            }
            let devices = &mut b.offending_devices;
            match devices.iter().position(|d| *d == device) {
                Some(at) if at + 1 == devices.len() => return None,
                Some(at) => {
                    devices.remove(at);
                }
                None if devices.len() == MAX_OFFENDING_DEVICES => {
                    devices.remove(0);
                }
                None => {}
            }
            devices.push(device);
            Some(b.clone())
        });
        if let Some(b) = noted {
            self.note_change();
            self.tell("device", &b);
        }
    }

    /// Set a block by hand (an analyst); no breaker, no repeat multiplier.
    pub fn set_manual(&self, scope: EntityKind, hash: u64, key: String, ttl: Duration, reason: String, set_by: String) -> Block {
        self.set_manual_replacing(scope, hash, key, ttl, reason, set_by).0
    }

    /// [`BlockList::set_manual`], also returning the entry it replaced (for the audit log).
    pub fn set_manual_replacing(&self, scope: EntityKind, hash: u64, key: String, ttl: Duration, reason: String, set_by: String) -> (Block, Option<Block>) {
        let now = now_ms();
        let offense = self.offenses.get(&(scope, hash)).map_or(0, |o| o.0);
        let block = self.resolved(Block { scope, key, hash, reason, set_by, set_at_ms: now, expires_at_ms: now + ttl.as_millis() as i64, offense, action: BlockAction::Block, blast_radius: None, set_at_event_ms: None, holder: None, answered_at_event_ms: None, offending_devices: Vec::new(), routine_records_passed: 0, routine_day: 0, about_guessing: false, about_codes: false, about_staff_off_pattern: false });
        let previous = self.entries.insert((scope, hash), block.clone());
        self.note_change();
        self.tell("set", &block);
        (block, previous)
    }

    /// Lift an automatic entry, only if it is still the one set at
    /// `set_at_ms` (the blast-radius guard; an analyst's block set meanwhile
    /// stays). True if it was lifted.
    pub fn lift_automatic(&self, scope: EntityKind, hash: u64, set_at_ms: i64) -> bool {
        let removed = self.entries.remove_if(&(scope, hash), |_, b| !b.is_manual() && b.set_at_ms == set_at_ms);
        if let Some((_, b)) = &removed {
            self.note_change();
            self.tell("lift", b);
        }
        removed.is_some()
    }

    /// Lift a block. True if there was one.
    pub fn lift(&self, scope: EntityKind, hash: u64) -> bool {
        self.take(scope, hash).is_some()
    }

    /// Lift a block, returning it (for the audit log).
    pub fn take(&self, scope: EntityKind, hash: u64) -> Option<Block> {
        let removed = self.entries.remove(&(scope, hash)).map(|(_, b)| b);
        if let Some(b) = &removed {
            self.note_change();
            self.tell("lift", b);
        }
        removed
    }

    /// Be told of every change made here from now on (one listener).
    pub fn on_change(&self, listener: ChangeListener) {
        let _ = self.listener.set(listener);
    }

    fn tell(&self, change: &str, block: &Block) {
        if let Some(l) = self.listener.get() {
            l(change, block);
        }
    }

    /// Apply an analyst's block, or its lift, made on another replica: as it
    /// was set there (its times, its reason), and without telling the
    /// listener, so it is not sent back.
    pub fn apply_replicated(&self, block: &Block, lift: bool) {
        let key = (block.scope, block.hash);
        let changed = if lift {
            self.entries.remove_if(&key, |_, b| b.is_manual() && b.set_at_ms <= block.set_at_ms).is_some()
        } else {
            // An older copy never replaces a newer entry.
            match self.entries.get(&key).map(|b| b.set_at_ms) {
                Some(at) if at >= block.set_at_ms => false,
                _ => {
                    self.entries.insert(key, self.resolved(block.clone()));
                    true
                }
            }
        };
        if changed {
            self.note_change();
        }
    }

    /// Blocks in force (wall clock), newest first.
    pub fn list(&self) -> Vec<Block> {
        self.list_at(now_ms())
    }

    /// Blocks in force at `now`, newest first.
    pub fn list_at(&self, now: i64) -> Vec<Block> {
        let mut v: Vec<Block> = self.entries.iter().filter(|b| b.expires_at_ms > now).map(|b| b.clone()).collect();
        v.sort_by(|a, b| b.set_at_ms.cmp(&a.set_at_ms).then(a.key.cmp(&b.key)));
        v
    }

    /// Drop expired entries, and offense counts nobody has earned for as long
    /// as the longest block lasts; returns blocks in force by scope.
    pub fn sweep(&self, now: i64) -> Vec<(EntityKind, i64)> {
        let before = self.entries.len();
        self.entries.retain(|_, b| b.expires_at_ms > now);
        // An offender who has kept quiet for as long as the longest block
        // starts again from one: the map stays bounded by recent offenders.
        let quiet_ms = self.config.max_ttl.as_millis() as i64;
        self.offenses.retain(|_, o| o.1.saturating_add(quiet_ms) > now);
        if self.entries.len() != before {
            self.note_change();
        }
        EntityKind::ALL.iter().map(|&k| (k, self.entries.iter().filter(|e| e.key().0 == k).count() as i64)).collect()
    }

    /// The settings the list runs on.
    pub fn config(&self) -> &BlockConfig {
        &self.config
    }

    fn note_change(&self) {
        self.dirty.notify_one();
    }

    /// Notified whenever the list changes, for the persister.
    pub fn changed(&self) -> Arc<Notify> {
        self.dirty.clone()
    }

    /// Write the list to the state file, atomically (temporary file, fsync, rename).
    ///
    /// # Errors
    /// When the file cannot be written; the previous file stays intact.
    /// The whole list and the offense counts, as the state file keeps them
    /// (expired entries included: a snapshot runs on its own clock).
    pub fn export_json(&self) -> String {
        serde_json::to_string(&self.state_file()).unwrap_or_default()
    }

    /// Everything the list holds, expired entries included, as the state file keeps it.
    fn state_file(&self) -> StateFile {
        StateFile {
            version: 1,
            blocks: self.list_at(i64::MIN),
            offenses: self.offenses.iter().map(|e| OffenseRecord::Timed(e.key().0, e.key().1, e.value().0, e.value().1)).collect(),
        }
    }

    /// Replace the list and the offense counts with an [`BlockList::export_json`] copy.
    ///
    /// # Errors
    /// When the copy does not parse (nothing is changed then).
    pub fn restore_json(&self, json: &str) -> Result<(), serde_json::Error> {
        let state: StateFile = serde_json::from_str(json)?;
        self.entries.clear();
        self.offenses.clear();
        for b in state.blocks {
            self.entries.insert((b.scope, b.hash), self.resolved(b));
        }
        for o in state.offenses {
            if let OffenseRecord::Timed(k, h, n, at) = o {
                self.offenses.insert((k, h), (n, at));
            }
        }
        self.note_change();
        Ok(())
    }

    pub fn persist(&self) -> std::io::Result<()> {
        use std::io::Write;
        let Some(path) = &self.config.state_file else { return Ok(()) };
        let state = self.state_file();
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        match &self.sealer {
            Some(sealer) => tmp.write_all(&sealer.seal(BLOCKS_AAD, &serde_json::to_vec(&state)?))?,
            None => serde_json::to_writer(&mut tmp, &state)?,
        }
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

fn rank(b: &Block, applied: BlockAction) -> (bool, BlockAction) {
    (b.is_manual(), applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_for(kind: EntityKind, key: &str) -> (u64, EntityKeys) {
        let seed = haechi_features::FeatureConfig::default().validate().unwrap().hash_key;
        let h = haechi_features::lookup_hash(seed, kind, key).unwrap();
        let e = haechi_features::Event::parse(format!(r#"{{"event_id":"e","ts":"2026-11-02T10:00:00+09:00","step":"login","result":"success","ip":"{key}"}}"#).as_bytes(), 4096).unwrap();
        (h, EntityKeys::of(&e, seed))
    }

    #[test]
    fn blocks_written_under_another_hash_key_are_refiled_under_this_one() {
        let list = BlockList::open(BlockConfig::default()).unwrap();
        let old = haechi_features::HashKey::from_seed(1);
        let h = haechi_features::lookup_hash(old, EntityKind::Ip, "10.0.0.7").unwrap();
        list.set_manual(EntityKind::Ip, h, "10.0.0.7".into(), Duration::from_secs(60), "x".into(), "analyst:t".into());
        let (new_hash, keys) = keys_for(EntityKind::Ip, "10.0.0.7");
        assert!(list.check(&keys, now_ms()).is_none());
        let current = haechi_features::FeatureConfig::default().validate().unwrap().hash_key;
        assert_eq!(list.rehash(current), 1);
        assert_eq!(list.check(&keys, now_ms()).unwrap().hash, new_hash);
        assert_eq!(list.rehash(current), 0);
    }

    #[test]
    fn block_check_lift_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BlockConfig { state_file: Some(dir.path().join("blocks.json")), ..Default::default() };
        let list = BlockList::open(cfg.clone()).unwrap();
        let (h, keys) = keys_for(EntityKind::Ip, "10.1.1.1");
        let now = now_ms();
        assert!(list.check(&keys, now).is_none());
        list.set_automatic(EntityKind::Ip, h, "10.1.1.1".into(), Duration::from_secs(60), "test".into(), "rule:x".into(), BlockAction::Block, now, None, None, None).unwrap();
        assert_eq!(list.check(&keys, now).unwrap().set_by, "rule:x");
        assert!(list.check(&keys, now + 61_000).is_none(), "expired a minute later");
        list.persist().unwrap();
        let again = BlockList::open(cfg).unwrap();
        assert_eq!(again.check(&keys, now).unwrap().key, "10.1.1.1");
        assert!(again.lift(EntityKind::Ip, h));
        assert!(again.check(&keys, now).is_none());
    }

    #[test]
    fn a_customer_blocks_offending_devices_survive_a_restart_and_a_rehash_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BlockConfig { state_file: Some(dir.path().join("blocks.json")), ..Default::default() };
        let list = BlockList::open(cfg.clone()).unwrap();
        let now = now_ms();
        let key = haechi_features::FeatureConfig::default().validate().unwrap().hash_key;
        let h = haechi_features::lookup_hash(key, EntityKind::Customer, "c1").unwrap();
        let set = |by: &str| list.set_automatic(EntityKind::Customer, h, "c1".into(), Duration::from_secs(600), "r".into(), by.into(), BlockAction::Block, now, Some(now), None, None);
        set("rules:brute_force_slow_failures").unwrap();
        // Until a device is noted the block cannot tell one from another.
        assert!(!list.entries.get(&(EntityKind::Customer, h)).unwrap().steps_up_device(Some(7)));
        list.note_offending_device(EntityKind::Customer, h, Some(7), now);
        assert_eq!(set("rules:brute_force_slow_failures"), Err(Refused::AlreadyBlocked));
        list.note_offending_device(EntityKind::Customer, h, Some(7), now);
        let b = list.entries.get(&(EntityKind::Customer, h)).unwrap().clone();
        assert_eq!(b.offending_devices, vec![7]);
        assert!(b.steps_up_device(Some(8)) && !b.steps_up_device(Some(7)) && !b.steps_up_device(None));
        list.persist().unwrap();
        let again = BlockList::open(cfg).unwrap();
        let b = again.entries.get(&(EntityKind::Customer, h)).unwrap().clone();
        assert_eq!(b.offending_devices, vec![7]);
        // Under another hash key the device hashes mean nothing: every device is refused.
        let moved = again.entries.remove(&(EntityKind::Customer, h)).unwrap().1;
        again.entries.insert((EntityKind::Customer, h ^ 1), Block { hash: h ^ 1, ..moved });
        assert_eq!(again.rehash(key), 1);
        let b = again.entries.get(&(EntityKind::Customer, h)).unwrap().clone();
        assert!(b.offending_devices.is_empty() && !b.steps_up_device(Some(8)));
        // A rule not about guessing, a rate limit's block, one on another
        // scope and an analyst's note no device, so never step up.
        let other = BlockList::open(BlockConfig::default()).unwrap();
        for (k, (scope, by)) in [(EntityKind::Customer, "rules:mule_account"), (EntityKind::Customer, "rate_limit:customer"), (EntityKind::Device, "rules:brute_force_slow_failures")].into_iter().enumerate() {
            other.set_automatic(scope, k as u64, "k".into(), Duration::from_secs(600), "r".into(), by.into(), BlockAction::Block, now, Some(now), None, None).unwrap();
            other.note_offending_device(scope, k as u64, Some(7), now);
            let b = other.entries.get(&(scope, k as u64)).unwrap().clone();
            assert!(b.offending_devices.is_empty() && !b.steps_up_device(Some(8)), "{by}");
        }
        let manual = other.set_manual(EntityKind::Customer, 9, "c2".into(), Duration::from_secs(600), "r".into(), "analyst:kim".into());
        other.note_offending_device(EntityKind::Customer, 9, Some(7), manual.set_at_ms);
        assert!(other.entries.get(&(EntityKind::Customer, 9)).unwrap().offending_devices.is_empty());
    }

    #[test]
    fn a_block_kept_across_a_restart_follows_the_new_settings_on_devices() {
        let dir = tempfile::tempdir().unwrap();
        let listed = BlockConfig { state_file: Some(dir.path().join("blocks.json")), ..Default::default() };
        let list = BlockList::open(listed.clone()).unwrap();
        let now = now_ms();
        list.set_automatic(EntityKind::Customer, 3, "c3".into(), Duration::from_secs(600), "r".into(), "rules:brute_force_slow_failures".into(), BlockAction::Block, now, Some(now), None, None).unwrap();
        list.note_offending_device(EntityKind::Customer, 3, Some(7), now);
        assert!(list.entries.get(&(EntityKind::Customer, 3)).unwrap().steps_up_device(Some(8)));
        list.persist().unwrap();
        // The new settings still step other devices up, for another rule only.
        let unlisted = BlockConfig { step_up_other_devices_for: vec!["rules:codes_guessed".into()], ..listed.clone() };
        let again = BlockList::open(unlisted.clone()).unwrap();
        let b = again.entries.get(&(EntityKind::Customer, 3)).unwrap().clone();
        assert_eq!(b.offending_devices, vec![7], "the devices are kept");
        assert!(!b.steps_up_device(Some(8)), "a rule no longer listed refuses every device");
        again.note_offending_device(EntityKind::Customer, 3, Some(9), now);
        assert_eq!(again.entries.get(&(EntityKind::Customer, 3)).unwrap().offending_devices, vec![7], "nor notes devices");
        // A copy restored into a list is judged by that list's settings. (Under
        // settings that do not list the rule, the unstored flag's default is
        // already the answer; under settings that list it, only resolving
        // the restored entry steps other devices up.)
        let restored = BlockList::open(BlockConfig { state_file: None, ..unlisted }).unwrap();
        restored.restore_json(&list.export_json()).unwrap();
        assert!(!restored.entries.get(&(EntityKind::Customer, 3)).unwrap().steps_up_device(Some(8)));
        let restored = BlockList::open(BlockConfig { state_file: None, ..listed.clone() }).unwrap();
        restored.restore_json(&list.export_json()).unwrap();
        assert!(restored.entries.get(&(EntityKind::Customer, 3)).unwrap().steps_up_device(Some(8)));
        // Listed again, the kept devices count again.
        let relisted = BlockList::open(listed).unwrap();
        assert!(relisted.entries.get(&(EntityKind::Customer, 3)).unwrap().steps_up_device(Some(8)));
    }

    #[test]
    fn repeat_offenders_wait_longer_and_the_breaker_trips() {
        let list = BlockList::open(BlockConfig { max_new_per_minute: 3, ..Default::default() }).unwrap();
        let now = 1_800_000_000_000;
        let set = |h: u64, by: &str| list.set_automatic(EntityKind::Device, h, "d".into(), Duration::from_secs(60), "r".into(), by.into(), BlockAction::Block, now, None, None, None);
        let a = set(1, "rule:x").unwrap();
        list.lift(EntityKind::Device, 1);
        let b = set(1, "rule:x").unwrap();
        assert_eq!((a.offense, b.offense), (1, 2));
        assert_eq!(b.expires_at_ms - b.set_at_ms, 120_000);
        assert_eq!(set(1, "x"), Err(Refused::AlreadyBlocked));
        set(2, "x").unwrap();
        assert_eq!(set(3, "x"), Err(Refused::CircuitOpen));
        // Offense counts outlive the block, so a repeat waits longer...
        list.sweep(now + 3_600_000);
        assert_eq!(list.offenses.len(), 2);
        // ...until the offender has been quiet for the longest block.
        list.sweep(now + 8 * 86_400_000);
        assert!(list.offenses.is_empty());
    }

    #[test]
    fn an_analyst_block_outranks_a_challenge() {
        let list = BlockList::open(BlockConfig::default()).unwrap();
        let (h, keys) = keys_for(EntityKind::Ip, "10.1.1.2");
        let now = now_ms();
        list.set_automatic(EntityKind::Ip, h, "10.1.1.2".into(), Duration::from_secs(60), "r".into(), "guard".into(), BlockAction::Challenge, now, None, Some(40), None).unwrap();
        assert_eq!(list.check(&keys, now).unwrap().action, BlockAction::Challenge);
        list.set_manual(EntityKind::Ip, h, "10.1.1.2".into(), Duration::from_secs(60), "seen".into(), "analyst:kim".into());
        let b = list.check(&keys, now).unwrap();
        assert!(b.is_manual() && b.action == BlockAction::Block);
    }

    #[test]
    fn a_sealed_state_file_hides_the_keys_opens_only_with_its_key_and_a_plain_one_is_resealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocks.json");
        let cfg = BlockConfig { state_file: Some(path.clone()), ..Default::default() };
        let ring = |line: &str| haechi_storage::KeyRing::parse(line, "test").unwrap();
        let keys = ring(&haechi_storage::KeyRing::generate_line("k1"));
        let now = now_ms();
        let (h, probe) = keys_for(EntityKind::Ip, "10.9.8.7");

        // An older build's plain file: read, then rewritten sealed at once.
        let plain = BlockList::open(cfg.clone()).unwrap();
        plain.set_automatic(EntityKind::Ip, h, "10.9.8.7".into(), Duration::from_secs(600), "test".into(), "rule:x".into(), BlockAction::Block, now, None, None, None).unwrap();
        plain.persist().unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("10.9.8.7"));
        let sealed = BlockList::open_sealed(cfg.clone(), now, Some(keys.sealer("blocks"))).unwrap();
        assert_eq!(sealed.check(&probe, now).unwrap().key, "10.9.8.7");
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(8).any(|w| w == b"10.9.8.7"), "rewritten sealed");
        assert_eq!(haechi_storage::Sealer::key_id_of(&bytes).unwrap(), "k1");

        // Sealed from then on, and read back with the key...
        sealed.lift(EntityKind::Ip, h);
        sealed.set_manual(EntityKind::Ip, h, "10.9.8.7".into(), Duration::from_secs(600), "seen".into(), "analyst:kim".into());
        sealed.persist().unwrap();
        assert!(!std::fs::read(&path).unwrap().windows(8).any(|w| w == b"10.9.8.7"));
        let again = BlockList::open_sealed(cfg.clone(), now, Some(keys.sealer("blocks"))).unwrap();
        assert_eq!(again.check(&probe, now).unwrap().set_by, "analyst:kim");
        // ...but not without it, with another key, or as another purpose's bytes.
        let e = BlockList::open(cfg.clone()).err().unwrap().to_string();
        assert!(e.contains("blocks.json") && e.contains("\"k1\"") && e.contains("no data key"), "{e}");
        let e = BlockList::open_sealed(cfg.clone(), now, Some(ring(&haechi_storage::KeyRing::generate_line("k2")).sealer("blocks"))).err().unwrap().to_string();
        assert!(e.contains("blocks.json") && e.contains("\"k1\""), "{e}");
        let e = BlockList::open_sealed(cfg, now, Some(keys.sealer("snapshot"))).err().unwrap().to_string();
        assert!(e.contains("blocks.json") && e.contains("authentication failed"), "{e}");
    }

    #[test]
    fn an_unreadable_state_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blocks.json");
        std::fs::write(&p, "{ broken").unwrap();
        assert!(BlockList::open(BlockConfig { state_file: Some(p), ..Default::default() }).err().unwrap().to_string().contains("blocks.json"));
    }
}
