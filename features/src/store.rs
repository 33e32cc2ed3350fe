//! The sharded feature store: one dashmap per entity kind.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use nohash_hasher::BuildNoHashHasher;

use serde::{Deserialize, Serialize};

use crate::baseline::{BaselineReading, Baselines, BaselinesState, EventHour};
use crate::catalog::FeatureCatalog;
use crate::config::{FeatureConfig, SessionIds, Windows};
use crate::entity::{Entity, Learnt, Observed, SessionLogin, PLACE_DEVICE, PLACE_REGION};
use crate::error::{Error, Result};
use crate::event::{Channel, Event, Step};
use crate::session_ids::{SessionIdGauge, SessionIdsState};
use crate::keys::{entity_hash, lookup_hash, session_key, subnet_bytes, EntityKeys, EntityKind, KIND_COUNT};

/// Keys are already keyed hashes, so the map must not hash them again.
/// Entities are boxed: under churn a hash table keeps two to three slots per
/// live entry (tombstones, then a doubling), and a 16-byte slot wastes far
/// less than a 160-byte one. See BENCHMARKS.md, "key spray".
type EntityMap = DashMap<u64, Box<Entity>, BuildNoHashHasher<u64>>;

/// What the store learned while observing one event.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// The entity keys the event names.
    pub keys: EntityKeys,
    /// The event arrived later than the allowed lateness: it was read, not stored.
    pub late: bool,
}

/// Counters the store keeps about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Events too late to update windows.
    pub late_events: u64,
    /// Entities expired for being idle: removed by a sweep, or started
    /// afresh by an event that met them before a sweep did.
    pub expired: u64,
    /// Entities evicted, by kind (index: [`EntityKind::index`]), because the
    /// kind reached its cap.
    pub evicted: [u64; KIND_COUNT],
}

/// Entities read to choose an eviction cutoff. Keys are keyed hashes, so
/// the first entries of the map are a uniform sample with respect to age.
const EVICTION_SAMPLE: usize = 4096;
/// Under a cap the map is brought down to this share of it, so that one
/// O(n) eviction pass is paid for by a tenth of the cap in new entities.
const EVICT_TO: f64 = 0.9;

/// Per-entity state over event-time windows, shared by every detector.
///
/// `observe` may be called from many threads at once. Each entity is updated
/// under its own shard lock, one entity at a time, so no thread ever holds two
/// shard locks and no lock order can deadlock.
pub struct FeatureStore {
    windows: Windows,
    catalog: Arc<FeatureCatalog>,
    maps: [EntityMap; KIND_COUNT],
    watermark_ms: AtomicI64,
    /// Oldest event time learned from (i64::MAX: none yet): with the
    /// watermark, how much history the store stands on.
    first_event_ms: AtomicI64,
    /// Per kind: event time (s) of the next sweep. Customers, kept for 30
    /// days, are swept far less often than IPs kept for a day.
    next_sweep_s: [AtomicU32; KIND_COUNT],
    late_events: AtomicU64,
    expired: AtomicU64,
    /// Per kind: the most live entities kept.
    caps: [usize; KIND_COUNT],
    /// Per kind: live entities, counted on insert and removal (`DashMap::len`
    /// locks every shard, too slow to ask per event).
    live: [AtomicUsize; KIND_COUNT],
    /// Per kind: entities evicted for the cap.
    evicted: [AtomicU64; KIND_COUNT],
    /// Per kind: an eviction pass is running (one at a time).
    evicting: [AtomicBool; KIND_COUNT],
    /// Sweep inside `observe` (replay: deterministic) or leave it to
    /// [`FeatureStore::sweep_due`] on another thread (the service: no request
    /// ever waits for a sweep).
    inline_sweeps: AtomicBool,
    /// Population baselines: step durations and active hours.
    baselines: Baselines,
    /// A step whose duration ranks at or below this among its population counts as fast.
    fast_rank: f32,
    /// ... and toward `quick_steps` at or below this.
    quick_rank: f32,
    /// See `FeatureConfig::step_rank_margin`.
    rank_margin: f32,
    /// Slot of `ip.distinct_new_identities_<mid window>`, read into the IP onboarding baseline.
    ip_new_1h_slot: Option<usize>,
    /// `device.distinct_returning_total`: whether a device ever carried a returning customer.
    device_returning_total_slot: Option<usize>,
    /// `customer.prior_events`, `customer.new_device` and
    /// `customer.known_devices`: what a login teaches its channel's device churn.
    churn_slots: Option<ChurnSlots>,
    /// `ip.events_<medium window>`: an address's own share of the onboarding surge.
    ip_events_1h_slot: usize,
    /// Whether the stream's session ids span steps (see `session_ids`);
    /// `None` when configured to take them as reported.
    session_ids: Option<SessionIdGauge>,
}

/// Where a login's customer features are read for its channel's device churn.
#[derive(Debug, Clone, Copy)]
struct ChurnSlots {
    prior_events: usize,
    new_device: usize,
    known_devices: usize,
}

impl FeatureStore {
    /// Build an empty store.
    ///
    /// # Errors
    /// [`crate::Error::Config`] if the configuration does not validate.
    pub fn new(config: &FeatureConfig) -> Result<FeatureStore> {
        let windows = config.validate()?;
        let catalog = FeatureCatalog::new(&windows);
        let ip_new_1h_slot = crate::catalog::relations(EntityKind::Ip)
            .iter()
            .position(|r| *r == crate::catalog::Relation::NewIdentity)
            .map(|r| catalog.layout(EntityKind::Ip).distinct + crate::catalog::DISTINCT_COLUMNS * r + 1);
        // `present`, then the event counts of the three windows: the middle one.
        let ip_events_1h_slot = catalog.layout(EntityKind::Ip).base + 2;
        assert!(catalog.name(ip_events_1h_slot).starts_with("ip.events_"), "the catalog's layout moved: {}", catalog.name(ip_events_1h_slot));
        let device_returning_total_slot = catalog.slot("device.distinct_returning_total");
        let churn_slots = match (catalog.slot("customer.prior_events"), catalog.slot("customer.new_device"), catalog.slot("customer.known_devices")) {
            (Some(prior_events), Some(new_device), Some(known_devices)) => Some(ChurnSlots { prior_events, new_device, known_devices }),
            _ => None,
        };
        Ok(FeatureStore {
            ip_new_1h_slot,
            device_returning_total_slot,
            churn_slots,
            ip_events_1h_slot,
            catalog: Arc::new(catalog),
            windows,
            maps: std::array::from_fn(|_| EntityMap::with_hasher(BuildNoHashHasher::default())),
            watermark_ms: AtomicI64::new(i64::MIN),
            first_event_ms: AtomicI64::new(i64::MAX),
            next_sweep_s: std::array::from_fn(|_| AtomicU32::new(0)),
            late_events: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            caps: std::array::from_fn(|i| config.max_entities.get(EntityKind::ALL[i])),
            live: std::array::from_fn(|_| AtomicUsize::new(0)),
            evicted: std::array::from_fn(|_| AtomicU64::new(0)),
            evicting: std::array::from_fn(|_| AtomicBool::new(false)),
            inline_sweeps: AtomicBool::new(true),
            baselines: Baselines::new(windows.staff_office_hours),
            fast_rank: config.fast_step_rank,
            quick_rank: config.quick_step_rank,
            rank_margin: config.step_rank_margin,
            session_ids: (config.session_ids == SessionIds::Auto).then(SessionIdGauge::default),
        })
    }

    /// The catalog every feature vector follows.
    pub fn catalog(&self) -> &Arc<FeatureCatalog> {
        &self.catalog
    }

    /// The validated windows.
    pub fn windows(&self) -> &Windows {
        &self.windows
    }

    /// Event time between the oldest event learned from and the newest:
    /// how much history the store stands on (0 before any event). A gap of
    /// a long window or more without events starts it over.
    pub fn history_ms(&self) -> i64 {
        let (first, newest) = (self.first_event_ms.load(Ordering::Relaxed), self.watermark_ms.load(Ordering::Relaxed));
        if first == i64::MAX || newest == i64::MIN {
            0
        } else {
            newest.saturating_sub(first).max(0)
        }
    }

    /// The newest event time seen, in milliseconds (`None` before any event).
    pub fn watermark_ms(&self) -> Option<i64> {
        let w = self.watermark_ms.load(Ordering::Relaxed);
        (w != i64::MIN).then_some(w)
    }

    /// Update every entity `event` names and write the event's features into
    /// `out` (which must be `catalog().len()` long).
    pub fn observe(&self, event: &Event, out: &mut [f32]) -> Observation {
        self.observe_capped(event, out, i64::MAX)
    }

    /// The one thing a decision tells the store: the pipeline refused the
    /// staff member named in `keys` an access at `ts_ms`. That day then
    /// teaches neither their working hours nor their daily volume, nor the
    /// bank's staff hours; nor does the day before, while it still waits to
    /// teach them, if the refused access's session of work began on it (a
    /// night's pull runs past midnight). A baseline that learned from what
    /// was blocked would make a caught insider's night ordinary for the next
    /// one. Nothing else is unlearned: the day's counts still stand, and the
    /// rules read them. `member_blocked`: a block on the member themself
    /// refused them (not one on an address, device or session they shared
    /// with colleagues); only such a day starts `staff.days_since_refused`.
    pub fn refuse_staff_day(&self, keys: &EntityKeys, ts_ms: i64, member_blocked: bool) {
        let Some(key) = keys.get(EntityKind::Staff) else { return };
        if let Some(mut staff) = self.maps[EntityKind::Staff.index()].get_mut(&key) {
            staff.refuse_staff_day(&self.windows, event_secs(ts_ms), member_blocked);
        }
    }

    /// The customer an event that names none acts as: the one its session
    /// last logged in as, when the event is a code step (a one-time code,
    /// the 1-won check, a phone change), comes from the login's device and
    /// subnet (or, like the login, from none), is not older than the login
    /// and comes within an hour of it ([`crate::keys::IMPLIED_SESSION_SPAN_S`]). A
    /// pipeline may name the customer at the login and leave it off the
    /// code steps that follow, which other services of the bank report:
    /// their guesses are still that customer's. Only a login teaches a
    /// session its customer, and a session over or idle past its time to
    /// live (as `observe_capped` reads it) has none. Not an ID scan, face
    /// or liveness check or account opening: those say who the person
    /// present is, and on a shared device (a family tablet, a PC방 seat,
    /// one implied session when no session id is sent) that is often not
    /// who logged in; attributed to them, a relative's ID made the logged-in
    /// customer look like one document behind many customers (tuning worlds
    /// 1-100, reported without session ids: 233 honest customers blocked).
    /// For the same reason a code step that names an ID document other than
    /// the login's (a relative's 1-won check, on the tablet a parent just
    /// logged in on) is not attributed; nor, in a session where an ID was
    /// scanned and passed (before the login too: on a PC방 seat, with no
    /// session id, another person's login can come in the middle of an
    /// onboarding), one that does not name the login's own document.
    ///
    /// The session id and the device id are the client's to report: the
    /// device must match, as the blast-radius guard asks of who answers
    /// its challenge, and so must the subnet. Otherwise anyone who learnt a
    /// customer's device id could send failed codes under it from
    /// elsewhere, within the hour after the customer's login, and lock the
    /// customer out. A session that changes network midway loses the
    /// attribution, which leaves its steps as they were reported.
    pub fn session_customer(&self, event: &Event, max_watermark_ms: i64) -> Option<compact_str::CompactString> {
        if event.customer_id.is_some() || event.staff_id.is_some() || !event.step.is_code() {
            return None;
        }
        let seed = self.windows.hash_key;
        let trust = self.trusts_session_ids();
        let (key, implied) = session_key(event, seed, trust)?;
        let session = self.maps[EntityKind::Session.index()].get(&key)?;
        let now_s = event_secs(self.watermark_ms.load(Ordering::Relaxed).max(event.ts_ms.min(max_watermark_ms)));
        if self.gone(EntityKind::Session, &session, now_s, implied) {
            return None;
        }
        let (login, id_scanned) = session.logged_in_as()?;
        // A visit, not the session id's whole life: an app may keep one id
        // per install, and the next day's codes on a family tablet are not
        // the parent's who logged in yesterday.
        if event.ts_ms.saturating_sub(login.at_ms) > i64::from(crate::keys::IMPLIED_SESSION_SPAN_S) * 1000 {
            return None;
        }
        let device = event.device_id.as_deref().map(|d| entity_hash(seed, EntityKind::Device, d.as_bytes()));
        let doc = event.id_doc_hash.as_deref().map(|d| entity_hash(seed, EntityKind::IdDoc, d.as_bytes()));
        let subnet = event.ip.map(|ip| {
            let (bytes, len) = subnet_bytes(ip);
            entity_hash(seed, EntityKind::Subnet, &bytes[..len])
        });
        // In a session where an ID was scanned someone is onboarding,
        // whoever logged in on the device before or during it: only a
        // document the login named is the customer's, and a step that names
        // none may be the applicant's. Otherwise a document the login did
        // not name is the customer's own (a pipeline that puts it only on
        // the 1-won check).
        let same_person = if id_scanned { doc.is_some() && doc == login.doc } else { doc.is_none() || doc == login.doc || login.doc.is_none() };
        (login.device == device && login.subnet == subnet && same_person && event.ts_ms >= login.at_ms).then(|| login.customer.clone())
    }

    /// The event as judged when it leaves out where it came from: a passed
    /// step of a customer's reported session that names no device or region
    /// takes those the customer's passed events in the same session named,
    /// within the hour after the first of them (see `SessionPlace`), and the
    /// bits (`PLACE_DEVICE`, `PLACE_REGION`) of what it took. `None`: it
    /// names both, takes nothing, failed, or is no customer's (staff
    /// accesses, events that name no customer or a member of staff,
    /// implied sessions: an implied session of an event without a device is
    /// the customer's, across all their devices). What two passed steps of
    /// the session named differently is left out.
    ///
    /// A failed step takes nothing: anyone who learnt a customer's id and
    /// session id could otherwise send failures that count against the
    /// customer's device without knowing it (`session_customer` asks the
    /// device and subnet to match for the same reason).
    pub fn session_place(&self, event: &Event) -> Option<(Event, u8)> {
        if event.is_failure() || event.staff_id.is_some() || event.step.is_staff_access() || (event.device_id.is_some() && event.region.is_some()) {
            return None;
        }
        let customer = event.customer_id.as_deref()?;
        let seed = self.windows.hash_key;
        let (session, implied) = session_key(event, seed, self.trusts_session_ids())?;
        if implied {
            return None;
        }
        let entity = self.maps[EntityKind::Customer.index()].get(&entity_hash(seed, EntityKind::Customer, customer.as_bytes()))?;
        let place = entity.session_place(session, event_secs(event.ts_ms))?;
        let mut judged = event.clone();
        let mut took = 0;
        for (slot, held, bit) in [(&mut judged.device_id, &place.device_id, PLACE_DEVICE), (&mut judged.region, &place.region, PLACE_REGION)] {
            if slot.is_none() && held.is_some() && place.contested & bit == 0 {
                slot.clone_from(held);
                took |= bit;
            }
        }
        (took != 0).then_some((judged, took))
    }

    /// Whether a reported session id keys its session: configured so, or
    /// the stream's ids span steps (see `session_ids`).
    pub fn trusts_session_ids(&self) -> bool {
        self.session_ids.as_ref().is_none_or(|g| !g.per_step())
    }

    /// Like [`FeatureStore::observe`], but the newest-time watermark never
    /// moves past `max_watermark_ms`. Live, that is the wall clock: an event
    /// a few minutes early (within the allowed skew) is learned from, but
    /// cannot make the honest events that follow it "late".
    pub fn observe_capped(&self, event: &Event, out: &mut [f32], max_watermark_ms: i64) -> Observation {
        debug_assert_eq!(out.len(), self.catalog.len());
        out.fill(0.0);
        let w = &self.windows;
        let trust_session_ids = self.trusts_session_ids();
        let keys = EntityKeys::of_trusting(event, w.hash_key, trust_session_ids);
        if let (Some(gauge), Some(reported), false) = (&self.session_ids, keys.reported_session(), event.is_failure()) {
            let opener = match event.step {
                Step::Login => keys.get(EntityKind::Customer),
                step if step.is_staff_access() => keys.get(EntityKind::Staff),
                _ => None,
            };
            gauge.note(reported, opener);
        }
        let newest = event.ts_ms.min(max_watermark_ms);
        let previous = self.watermark_ms.fetch_max(newest, Ordering::Relaxed);
        let watermark_s = event_secs(previous.max(newest));
        let late = previous != i64::MIN && event.ts_ms < previous - i64::from(w.lateness_s) * 1000;
        if previous != i64::MIN && newest.saturating_sub(previous) >= i64::from(w.long.len_s()) * 1000 {
            // A long window with no events (an outage, a stalled consumer, a
            // stale first event): what came before no longer covers the
            // window, so history starts over here. A shorter stall counts as
            // history although the window's counts are partly empty: a quiet
            // night of a small or business-hours stream must not make the
            // store cold every morning.
            self.first_event_ms.store(newest, Ordering::Relaxed);
        }
        if late {
            self.late_events.fetch_add(1, Ordering::Relaxed);
        } else if event.ts_ms < self.first_event_ms.load(Ordering::Relaxed) {
            self.first_event_ms.fetch_min(event.ts_ms, Ordering::Relaxed);
        }
        let secs = event_secs(event.ts_ms);
        let clock_hour = EventHour::at(event.ts_ms, w.utc_offset_s);
        // Hashed once: the profile keeps its low 16 bits, the population's
        // region shares its high 32.
        let region_hash = event.region.as_deref().map(|r| entity_hash(w.hash_key, EntityKind::Customer, r.as_bytes()));
        let hour = clock_hour.local;
        let mut related = [None; KIND_COUNT];
        for kind in EntityKind::ALL {
            related[kind.index()] = keys.get(kind).map(|h| (h >> 32) as u32);
        }
        // A staff lookup names the customer whose record was read; that counts
        // toward the staff member's distinct customers but is not the
        // customer's own activity, so it must not touch their profile.
        let staff_access = event.step.is_staff_access();
        // A pipeline that reports no step durations still shows how long a
        // step took: the time since the session's previous event. Steps
        // timed so are ranked against, and teach, their own baseline.
        let gap_timed = event.duration_ms.is_none() && !staff_access;
        let duration_ms = if gap_timed { self.session_gap_ms(&keys, event.ts_ms, watermark_s, keys.session_is_implied()) } else { event.duration_ms };
        // Staff accesses are judged against staff hours, and their durations
        // teach no customer step's baseline. Neither does an agent that names
        // itself automation: the baselines describe people, and a campaign of
        // headless scripts at a small bank would otherwise become a step's
        // fastest percent, so that a quieter script later ranks as a person.
        let automation = event.user_agent.as_deref().is_some_and(is_automation_agent_cached);
        let learn = !late && !automation;
        let onboarding = event.step.is_onboarding();
        let baseline = if staff_access {
            BaselineReading { duration_rank: 0.5, apart_rank: 0.5, samples: 0, hour_activity: self.baselines.staff_hour_activity(hour), hours_known: true, learnt_young: None }
        } else {
            self.baselines.observe_timed(event.step, duration_ms, gap_timed, self.rank_margin, clock_hour, learn)
        };
        let success = !event.is_failure();
        let ranked = duration_ms.is_some() && baseline.samples >= crate::baseline::MIN_COLD_SAMPLES;
        let mut observed = Observed {
            secs,
            ms: event.ts_ms,
            failure: event.is_failure(),
            apply: !late,
            related,
            hour,
            region: region_hash.map(|h| h as u16),
            device: related[EntityKind::Device.index()],
            duration_ms: duration_ms.map(|d| d.min(u64::from(u32::MAX)) as u32),
            // A record access that does not say how many records it touched touched one:
            // a pipeline that sends an event per record must not read as touching none.
            records: event.records.map_or(u32::from(staff_access), |r| r.min(u64::from(u32::MAX)) as u32),
            staff_typical_day: if staff_access { self.baselines.staff_typical_day() } else { 0.0 },
            returning: None,
            returning_at_address: None,
            new_identity: None,
            method: if success { verification_method(event) } else { None },
            fast: ranked && baseline.apart_rank <= self.fast_rank,
            quick: ranked && baseline.apart_rank <= self.quick_rank,
            login_ok: success && event.step == Step::Login,
            code_step: event.step.is_code(),
            face_check: match event.step {
                Step::FaceMatch => Some(0),
                Step::Liveness => Some(1),
                _ => None,
            },
            step_bit: 1 << event.step as u16,
            onboarding,
            session_implied: keys.session_is_implied(),
            // Only a young baseline takes a duration back (it refuses once
            // ready, whatever it is handed), so the reading names only what a
            // young one learnt: a session of a step past its first hundred
            // people keeps no list.
            learnt: match (duration_ms, baseline.learnt_young) {
                (Some(ms), Some(placed)) => Some(Learnt { step: event.step, gap_timed, placed, ms: ms.min(u64::from(u32::MAX)) as u32 }),
                _ => None,
            },
        };

        write_event_features(event, hour, late, automation, &baseline, out);
        // One of the population's fresh identities, counted at the first
        // onboarding step at which an address counts it.
        let mut first_fresh = false;
        // A returning customer (one who has logged in before: a made-up or
        // merely named id is not), on a device that never carried one (a
        // device id sent once to age it still carried nobody): together, at
        // a failed login, a stranger's try at a known account.
        let (mut device_vouched, mut customer_returning) = (false, false);
        // The customer goes first: whether they are returning decides what
        // every address and device they use counts them as.
        for kind in EntityKind::ALL {
            let Some(key) = keys.get(kind) else { continue };
            if staff_access && kind == EntityKind::Customer {
                continue;
            }
            let layout = self.catalog.layout(kind);
            let map = &self.maps[kind.index()];
            // An entity idle past its time to live is gone, whether or not a
            // sweep has reached it yet: a stream decided in order gets the
            // same features whenever sweeps run (inline, on another thread,
            // or not at all).
            let implied = kind == EntityKind::Session && keys.session_is_implied();
            let expired = |e: &Entity| self.gone(kind, e, watermark_s, implied);
            let seen = if late {
                match map.get_mut(&key).filter(|e| !expired(e)) {
                    Some(mut e) => e.observe(kind, layout, w, &observed, out),
                    None => {
                        out[layout.base] = 1.0;
                        crate::entity::Observe::default()
                    }
                }
            } else {
                let mut inserted = false;
                let mut e = map.entry(key).or_insert_with(|| {
                    inserted = true;
                    Box::new(Entity::new(kind, secs))
                });
                let reset = !inserted && expired(&e);
                if reset {
                    **e = Entity::new(kind, secs);
                    self.expired.fetch_add(1, Ordering::Relaxed);
                }
                let seen = e.observe(kind, layout, w, &observed, out);
                // A passed scan: a failed one is anyone's to send, and would switch attribution off.
                if kind == EntityKind::Session && success && matches!(event.step, Step::IdOcr | Step::IdAuthenticity) {
                    e.note_id_scan();
                }
                if implied && success && event.step == Step::AccountOpen {
                    e.spend_methods(related[EntityKind::Customer.index()]);
                }
                // A failed step is anyone's to send: only passed ones say
                // where the customer's session is. Nor is a step a member of
                // staff reported (a branch-assisted onboarding) the customer's
                // own session.
                if kind == EntityKind::Customer {
                    let session = keys.get(EntityKind::Session).filter(|_| !keys.session_is_implied());
                    let passed = success && event.staff_id.is_none();
                    e.tend_session_place(session, secs, passed, event);
                }
                // Release the shard lock before any eviction pass takes them all.
                drop(e);
                if inserted {
                    self.note_insert(kind);
                }
                seen
            };
            for day in seen.closed_staff_days.into_iter().filter(|d| d.hours != 0) {
                self.baselines.learn_staff_day(day.hours, day.records);
            }
            for l in seen.unlearn {
                self.baselines.unlearn_step(l.step, l.gap_timed, u64::from(l.ms), l.placed);
            }
            if kind == EntityKind::Device {
                device_vouched = self.device_returning_total_slot.is_some_and(|slot| out[slot] > 0.0);
            }
            if kind == EntityKind::Customer {
                customer_returning = seen.returning_before;
                first_fresh = seen.first_fresh;
                if let Some((from, to)) = seen.returning_moved {
                    self.baselines.returning_moved(from, to);
                }
                let fragment = related[EntityKind::Customer.index()];
                if seen.vouches {
                    observed.returning_at_address = fragment;
                }
                if seen.returning_before {
                    // A failed event vouches for nothing: anyone who knows a
                    // customer's id can send their wrong password from anywhere.
                    // Nor is a returning customer's failed step a new identity.
                    if success {
                        observed.returning = fragment;
                    }
                } else if onboarding {
                    observed.new_identity = fragment;
                }
            }
        }
        // What `session_customer` reads: the session's entity was just
        // written above, so it is there.
        if !late && success && event.step == Step::Login && event.staff_id.is_none() {
            if let (Some(customer), Some(session)) = (&event.customer_id, keys.get(EntityKind::Session)) {
                if let Some(mut e) = self.maps[EntityKind::Session.index()].get_mut(&session) {
                    e.set_login(SessionLogin {
                        customer: customer.clone(),
                        device: keys.get(EntityKind::Device),
                        doc: keys.get(EntityKind::IdDoc),
                        subnet: keys.get(EntityKind::Subnet),
                        at_ms: event.ts_ms,
                    });
                }
            }
        }
        // Population level of one address's hourly onboardings, read at
        // onboarding events only (an address's login traffic says nothing of it).
        out[13] = match (onboarding, self.ip_new_1h_slot) {
            (true, Some(slot)) if keys.get(EntityKind::Ip).is_some() => self.baselines.ip_onboarding_level(out[slot], learn),
            _ => crate::baseline::LEVEL_UNKNOWN,
        };
        // Onboarding events in the last hour against the last day's hours,
        // read at onboarding events only; 1 elsewhere.
        // The event's own address is left out, so that a burst cannot lift the surge it is measured by.
        out[14] = if onboarding {
            let own = if keys.get(EntityKind::Ip).is_some() { out[self.ip_events_1h_slot] } else { 0.0 };
            self.baselines.onboarding_surge(event.ts_ms, out[10], own, learn)
        } else {
            1.0
        };
        // The population's fresh identities, read at onboarding events only.
        // A late event changes no entity, so it is never counted.
        (out[15], out[16]) = if onboarding {
            self.baselines.new_identities(event.ts_ms, first_fresh)
        } else {
            (0.0, 0.0)
        };
        out[17] = (self.history_ms() as f64 / 3_600_000.0) as f32;
        // The population's returning customers of the day, read at onboarding events only.
        out[18] = if onboarding { self.baselines.returning_customers(event.ts_ms) } else { 0.0 };
        // A late event changes no entity, so it is never a stranger's failure.
        // Stranger login failures, counted and read at logins only (read at
        // every login, so that a login's own features show the hour it is in).
        (out[20], out[21], out[22]) = if event.step == Step::Login && event.staff_id.is_none() {
            let stranger = event.is_failure() && customer_returning && !device_vouched && !late;
            let hour = u32::try_from(clock_hour.index).unwrap_or(0);
            let count = stranger
                && learn
                && keys.get(EntityKind::Customer).is_some_and(|key| self.maps[EntityKind::Customer.index()].get_mut(&key).is_some_and(|mut e| e.first_stranger_failure_in(hour)));
            let (last_hour, level) = self.baselines.stranger_login_failures(event.ts_ms, count, learn);
            (f32::from(stranger), last_hour, level)
        } else {
            (0.0, 0.0, -1.0)
        };
        // Read at every event with a region, staff accesses aside (they name
        // the bank's own offices); learnt only from passed events of
        // returning customers: failed events and made-up ids are anyone's to
        // send, and would make a foreign region common in a few hundred.
        out[23] = match region_hash {
            Some(h) if !staff_access => {
                let share = self.baselines.region_share((h >> 32) as u32, learn && success && customer_returning);
                // Until the population's regions are known, the bank's
                // country is the prior: a takeover from abroad on a new
                // install's first night must not wait for 2,000 events.
                let abroad = |home: [u8; 2]| event.region.as_deref().is_some_and(|r| r.as_bytes().get(..2) != Some(&home[..]));
                if share < 0.0 && self.windows.home_country.is_some_and(abroad) {
                    0.0
                } else {
                    share
                }
            }
            _ => -1.0,
        };
        // Read at every customer's event; learnt from a returning customer's
        // passed login whose profile knew a device before it (a login
        // teaches the profile no device, so `known_devices` is still the
        // count before it), one a day per customer and channel: an account of the
        // attacker's own, logging in over and over on made-up device ids,
        // counts once a day. To move a channel's share past one half takes
        // as many such accounts, each with a passed code, as the channel
        // has returning customers logging in; taken-over accounts count too.
        out[24] = match self.churn_slots {
            Some(c) if !staff_access && event.customer_id.is_some() => {
                let channel = match event.channel {
                    Some(Channel::App) => 0,
                    Some(Channel::Web) => 1,
                    None => 2,
                };
                let judged = learn && success && customer_returning && event.step == Step::Login && event.device_id.is_some() && out[c.prior_events] > 0.0 && out[c.known_devices] > 0.0;
                let hour = u32::try_from(clock_hour.index).unwrap_or(0);
                let first_today = || {
                    keys.get(EntityKind::Customer).is_some_and(|key| self.maps[EntityKind::Customer.index()].get_mut(&key).is_some_and(|mut e| e.first_churn_login_in(hour, channel as u8)))
                };
                self.baselines.device_churn(channel, (judged && first_today()).then_some(out[c.new_device] == 1.0))
            }
            _ => -1.0,
        };
        self.maybe_sweep(secs, self.inline_sweeps.load(Ordering::Relaxed));
        Observation { keys, late }
    }

    /// An entity idle past its time to live at `now_s` (or, for a session the
    /// store implied, one that is over) is gone: a sweep removes it, and an
    /// event that meets it first starts it afresh. The one test both use.
    fn gone(&self, kind: EntityKind, e: &Entity, now_s: u32, implied_session: bool) -> bool {
        e.last_seen().saturating_add(self.ttl_s(kind)) < now_s || (implied_session && implied_session_over(e, now_s))
    }

    /// Milliseconds since the previous event of the event's session, if the
    /// session has one, is not idle past its time to live (swept or not, as
    /// in `observe_capped`), and this event is not older than it.
    fn session_gap_ms(&self, keys: &EntityKeys, ts_ms: i64, watermark_s: u32, implied: bool) -> Option<u64> {
        let key = keys.get(EntityKind::Session)?;
        let session = self.maps[EntityKind::Session.index()].get(&key)?;
        if self.gone(EntityKind::Session, &session, watermark_s, implied) {
            return None;
        }
        u64::try_from(ts_ms.checked_sub(session.last_ms()?)?).ok()
    }

    /// Remove entities idle for longer than their longest window (customers:
    /// their profile TTL), measured against the newest event time.
    /// Returns how many were removed.
    pub fn sweep(&self) -> usize {
        EntityKind::ALL.into_iter().map(|k| self.sweep_kind(k)).sum()
    }

    /// Identities (customers, ID documents, bank accounts, devices, staff)
    /// are remembered as long as a customer profile: ID reuse, mule
    /// recruiting and device farms spread over days must still add up, and a
    /// staff member's habits take days to learn. Addresses, subnets and
    /// sessions only for their windows.
    fn ttl_s(&self, kind: EntityKind) -> u32 {
        match kind {
            EntityKind::Customer | EntityKind::IdDoc | EntityKind::Account | EntityKind::Device | EntityKind::Staff => self.windows.customer_ttl_s,
            _ => self.windows.idle_ttl_s(),
        }
    }

    fn sweep_kind(&self, kind: EntityKind) -> usize {
        let Some(wm) = self.watermark_ms() else { return 0 };
        let now = event_secs(wm);
        let map = &self.maps[kind.index()];
        let mut removed = 0usize;
        // A session place past its hour is never read again (an event that
        // is not too late is at most the lateness behind the watermark):
        // the sweep frees it, so that only the last hour's customers hold one.
        let place_kept_s = crate::keys::IMPLIED_SESSION_SPAN_S + self.windows.lateness_s;
        map.retain(|_, e| {
            let keep = !self.gone(kind, e, now, false);
            removed += usize::from(!keep);
            if keep && kind == EntityKind::Customer {
                e.drop_session_place_older_than(now.saturating_sub(place_kept_s));
            }
            keep
        });
        self.live[kind.index()].fetch_sub(removed, Ordering::Relaxed);
        self.expired.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Count a new entity; past the cap, evict. With inline sweeps (replay)
    /// the pass runs here as soon as the cap is passed; with background sweeps
    /// (the service) [`FeatureStore::sweep_due`] runs it, and a request pays
    /// for one only if the sweeper fell an eighth of the cap behind.
    #[inline]
    fn note_insert(&self, kind: EntityKind) {
        let i = kind.index();
        let live = self.live[i].fetch_add(1, Ordering::Relaxed) + 1;
        let cap = self.caps[i];
        let allowance = cap + cap / 8;
        if live <= cap || !(self.inline_sweeps.load(Ordering::Relaxed) || live > allowance) {
            return;
        }
        if self.evict_kind(kind) == 0 && live > allowance {
            // Another pass (the background sweeper) is running: wait for it
            // rather than grow past the allowance while it is descheduled.
            // This thread holds no shard lock here, so the pass can finish.
            for _ in 0..100_000 {
                if !self.evicting[i].load(Ordering::Acquire) {
                    break;
                }
                std::thread::yield_now();
            }
            self.evict_kind(kind);
        }
    }

    /// Bring a kind over its cap down to [`EVICT_TO`] of it, least recently
    /// seen first: choose a last-seen cutoff from a sample of the map, then
    /// remove every entity seen before it in one pass (ties at the cutoff
    /// second are broken by key, at the rate the sample calls for). Returns
    /// the entities evicted.
    fn evict_kind(&self, kind: EntityKind) -> usize {
        let i = kind.index();
        let (cap, map) = (self.caps[i], &self.maps[i]);
        if self.live[i].load(Ordering::Relaxed) <= cap || self.evicting[i].swap(true, Ordering::Acquire) {
            return 0;
        }
        let len = map.len();
        let target = ((cap as f64) * EVICT_TO) as usize;
        let mut removed = 0usize;
        if len > target {
            let share = (len - target) as f64 / len as f64;
            let mut sample: Vec<u32> = map.iter().take(EVICTION_SAMPLE).map(|e| e.value().last_seen()).collect();
            sample.sort_unstable();
            let want = ((share * sample.len() as f64).ceil() as usize).min(sample.len());
            if want > 0 {
                let cutoff = sample[want - 1];
                let below = sample.partition_point(|&t| t < cutoff);
                let at = sample.partition_point(|&t| t <= cutoff) - below;
                // Share of the entities seen in the cutoff second to evict, as a
                // threshold on the key's top bits (keys are uniform).
                let tie = ((want - below) as f64 / at.max(1) as f64).min(1.0);
                let tie_below = if tie >= 1.0 { u64::MAX } else { (tie * u64::MAX as f64) as u64 };
                // A fresh draw per pass: a fixed order would spare the same
                // survivors of one pass in the next and evict only newcomers.
                let salt = self.evicted[i].load(Ordering::Relaxed).wrapping_add(len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                map.retain(|&k, e| {
                    let t = e.last_seen();
                    let evict = t < cutoff || (t == cutoff && mix64(k ^ salt) <= tie_below);
                    removed += usize::from(evict);
                    !evict
                });
            }
        }
        // Resynchronize the count with the map (a few inserts may race; the
        // next pass corrects them).
        self.live[i].store(map.len(), Ordering::Relaxed);
        self.evicted[i].fetch_add(removed as u64, Ordering::Relaxed);
        self.evicting[i].store(false, Ordering::Release);
        removed
    }

    /// Evict, in every kind over its cap, the least recently seen entities.
    /// Returns how many were evicted.
    pub fn evict_over_cap(&self) -> usize {
        EntityKind::ALL.into_iter().map(|k| self.evict_kind(k)).sum()
    }

    /// The most live entities kept of one kind.
    pub fn entity_cap(&self, kind: EntityKind) -> usize {
        self.caps[kind.index()]
    }

    /// Sweep each kind about eight times per its TTL of event time, so that
    /// expired entities never outnumber live ones by more than an eighth.
    /// The schedule starts at the first event; `sweep` says whether to sweep
    /// a kind that is due or only to keep the schedule.
    /// Returns the entities the sweeps it ran removed.
    fn maybe_sweep(&self, secs: u32, sweep: bool) -> usize {
        let mut removed = 0;
        for kind in EntityKind::ALL {
            let slot = &self.next_sweep_s[kind.index()];
            let next = slot.load(Ordering::Relaxed);
            let interval = (self.ttl_s(kind) / 8).max(60);
            if next == 0 {
                let _ = slot.compare_exchange(0, secs + interval, Ordering::Relaxed, Ordering::Relaxed);
                continue;
            }
            if secs < next || !sweep {
                continue;
            }
            if slot.compare_exchange(next, secs + interval, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                removed += self.sweep_kind(kind);
            }
        }
        removed
    }

    /// Stop sweeping inside `observe`; the caller runs [`FeatureStore::sweep_due`]
    /// on a thread of its own instead. Features do not change: an entity
    /// idle past its time to live is started afresh by its next event,
    /// swept or not. (Below the caps, that is: what a cap evicts depends on
    /// how many entities are live at that moment.)
    pub fn sweep_in_background(&self) {
        self.inline_sweeps.store(false, Ordering::Relaxed);
    }

    /// Sweep every kind whose sweep is due at the current watermark. Cheap
    /// when nothing is due. Returns the entities removed.
    ///
    /// Also evicts in every kind over its cap (see [`FeatureStore::evict_over_cap`]).
    pub fn sweep_due(&self) -> usize {
        self.evict_over_cap();
        let Some(wm) = self.watermark_ms() else { return 0 };
        self.maybe_sweep(event_secs(wm), true)
    }

    /// Live entities of one kind.
    pub fn entity_count(&self, kind: EntityKind) -> usize {
        self.maps[kind.index()].len()
    }

    /// Slots allocated for entities of one kind (live plus free): what the map
    /// costs in memory, since a hash map keeps its size after entries leave.
    pub fn entity_capacity(&self, kind: EntityKind) -> usize {
        self.maps[kind.index()].capacity()
    }

    /// Bytes held by entities of one kind (state plus map key), by walking them.
    /// For benchmarks and occasional gauges, not the hot path.
    pub fn entity_bytes(&self, kind: EntityKind) -> usize {
        // The entity, its map slot (key and box pointer), and the allocator's header.
        self.maps[kind.index()].iter().map(|e| e.value().bytes() + std::mem::size_of::<(u64, Box<Entity>)>() + 16).sum()
    }

    /// The current features of one entity, read at the watermark, as
    /// (name, value) pairs; `None` if the store has no such entity.
    pub fn entity_features(&self, kind: EntityKind, key: &str) -> Option<Vec<(String, f32)>> {
        let hash = lookup_hash(self.windows.hash_key, kind, key)?;
        let mut entity = (**self.maps[kind.index()].get(&hash)?.value()).clone();
        let layout = *self.catalog.layout(kind);
        let mut out = vec![0.0; self.catalog.len()];
        let now_ms = self.watermark_ms().unwrap_or(0);
        let probe = Observed {
            secs: event_secs(now_ms),
            ms: now_ms,
            failure: false,
            apply: false,
            related: [None; KIND_COUNT],
            hour: 0,
            region: None,
            device: None,
            duration_ms: None,
            records: 0,
            staff_typical_day: 0.0,
            returning: None,
            returning_at_address: None,
            new_identity: None,
            method: None,
            fast: false,
            quick: false,
            login_ok: false,
            code_step: false,
            face_check: None,
            step_bit: 0,
            onboarding: false,
            session_implied: false,
            learnt: None,
        };
        entity.observe(kind, &layout, &self.windows, &probe, &mut out);
        Some((layout.base..layout.end).map(|s| (self.catalog.name(s).to_owned(), out[s])).collect())
    }

    /// The population baselines the store learns.
    pub fn baselines(&self) -> &Baselines {
        &self.baselines
    }

    /// Counters about the store itself.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            late_events: self.late_events.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            evicted: std::array::from_fn(|i| self.evicted[i].load(Ordering::Relaxed)),
        }
    }
}

/// Everything the store remembers, for a snapshot: the entities of every
/// kind, the watermark, the sweep schedule, its counters and the population
/// baselines. A copy, taken while no event is being observed, so it is
/// consistent with one position in the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreState {
    /// Ties the state to the key and windows it was built under: entity
    /// keys hashed under another key, or buckets of another width, would be
    /// silently wrong.
    fingerprint: u64,
    watermark_ms: i64,
    first_event_ms: i64,
    next_sweep_s: [u32; KIND_COUNT],
    late_events: u64,
    expired: u64,
    evicted: [u64; KIND_COUNT],
    entities: Vec<Vec<(u64, Entity)>>,
    baselines: BaselinesState,
    session_ids: SessionIdsState,
}

impl StoreState {
    /// Entities of all kinds in the copy.
    pub fn entity_count(&self) -> usize {
        self.entities.iter().map(Vec::len).sum()
    }
}

impl FeatureStore {
    /// What ties saved state to this store: the entity-hash key (through a
    /// hash made with it, never the key itself), the windows and the catalog.
    fn fingerprint(&self) -> u64 {
        let probe = crate::keys::id_hash(self.windows.hash_key, b"haechi snapshot fingerprint");
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&probe.to_le_bytes());
        // `Windows`' Debug prints the key as `HashKey(..)`: no secret in here.
        h.update(format!("{:?}", self.windows).as_bytes());
        h.update(&(self.catalog.len() as u64).to_le_bytes());
        h.update(&self.caps.map(|c| c as u64).iter().flat_map(|c| c.to_le_bytes()).collect::<Vec<u8>>());
        h.digest()
    }

    /// Copy everything the store remembers. The caller makes sure no event
    /// is observed meanwhile (the driver's ingest gate), so the copy matches
    /// one position of the stream.
    pub fn export_state(&self) -> StoreState {
        StoreState {
            fingerprint: self.fingerprint(),
            watermark_ms: self.watermark_ms.load(Ordering::Relaxed),
            first_event_ms: self.first_event_ms.load(Ordering::Relaxed),
            next_sweep_s: std::array::from_fn(|i| self.next_sweep_s[i].load(Ordering::Relaxed)),
            late_events: self.late_events.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            evicted: std::array::from_fn(|i| self.evicted[i].load(Ordering::Relaxed)),
            entities: self.maps.iter().map(|m| m.iter().map(|e| (*e.key(), (**e.value()).clone())).collect()).collect(),
            baselines: self.baselines.export_state(),
            session_ids: self.session_ids.as_ref().map(SessionIdGauge::export_state).unwrap_or_default(),
        }
    }

    /// Replace everything the store remembers with a snapshot's copy.
    ///
    /// # Errors
    /// [`Error::Snapshot`] when the state was built under another entity-hash
    /// key, other windows or another build's catalog; the store is unchanged.
    pub fn restore_state(&self, state: StoreState) -> Result<()> {
        if state.fingerprint != self.fingerprint() {
            return Err(Error::Snapshot(
                "it was written under another entity-hash key, other feature windows or caps, or another feature catalog".into(),
            ));
        }
        if state.entities.len() != KIND_COUNT {
            return Err(Error::Snapshot(format!("{} entity kinds, this build has {KIND_COUNT}", state.entities.len())));
        }
        // Checked before anything changes; restored once the baselines took theirs.
        state.session_ids.check()?;
        self.baselines.restore_state(&state.baselines)?;
        if let Some(gauge) = &self.session_ids {
            gauge.restore_state(&state.session_ids)?;
        }
        for (i, entities) in state.entities.into_iter().enumerate() {
            let map = &self.maps[i];
            map.clear();
            self.live[i].store(entities.len(), Ordering::Relaxed);
            for (key, entity) in entities {
                map.insert(key, Box::new(entity));
            }
            self.next_sweep_s[i].store(state.next_sweep_s[i], Ordering::Relaxed);
            self.evicted[i].store(state.evicted[i], Ordering::Relaxed);
        }
        self.watermark_ms.store(state.watermark_ms, Ordering::Relaxed);
        self.first_event_ms.store(state.first_event_ms, Ordering::Relaxed);
        self.late_events.store(state.late_events, Ordering::Relaxed);
        self.expired.store(state.expired, Ordering::Relaxed);
        Ok(())
    }
}

/// The splitmix64 finalizer: a key's tie-break draw, given a pass's salt.
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A session the store implied for events without a session id
/// ([`crate::keys`]) is over after a pause or an hour: the next event starts another.
fn implied_session_over(session: &Entity, now_s: u32) -> bool {
    session.last_seen().saturating_add(crate::keys::IMPLIED_SESSION_IDLE_S) < now_s || session.first_seen().saturating_add(crate::keys::IMPLIED_SESSION_SPAN_S) < now_s
}

fn event_secs(ms: i64) -> u32 {
    (ms.div_euclid(1000)).clamp(0, i64::from(u32::MAX)) as u32
}

fn write_event_features(event: &Event, hour: u8, late: bool, automation: bool, baseline: &BaselineReading, out: &mut [f32]) {
    out[0] = f32::from(hour);
    out[1] = event.duration_ms.map_or(0.0, |d| d as f32);
    out[2] = f32::from(event.is_failure());
    out[3] = event.records.map_or(0.0, |r| r as f32);
    out[4] = f32::from(late);
    out[5] = f32::from(automation);
    out[6] = f32::from(event.user_agent.is_none());
    out[7] = f32::from(event.step.is_sensitive());
    out[8] = baseline.duration_rank;
    out[9] = baseline.samples as f32;
    out[10] = baseline.hour_activity;
    out[11] = f32::from(event.step.is_onboarding());
    out[12] = f32::from(event.region.is_some());
    out[19] = f32::from(baseline.hours_known);
}

/// The FSC verification method a successful step proves (a bit index of
/// [`crate::METHOD_NAMES`]). An `attrs.method` text on any other step counts as "other".
fn verification_method(event: &Event) -> Option<u8> {
    match event.step {
        Step::IdAuthenticity => Some(0),
        Step::AccountVerify => Some(1),
        Step::Otp | Step::PhoneAuth => Some(2),
        Step::FaceMatch | Step::Liveness => Some(3),
        _ => event.attrs.contains_key("method").then_some(4),
    }
}

/// Markers of scripted clients. Kept short and specific: Android's own HTTP
/// stack (okhttp) is what the bank's real app sends, so it is not here.
const AUTOMATION_MARKERS: [&str; 10] = [
    "headless",
    "phantomjs",
    "selenium",
    "webdriver",
    "puppeteer",
    "playwright",
    "python-requests",
    "curl/",
    "go-http-client",
    "scrapy",
];

static AUTOMATION: std::sync::LazyLock<aho_corasick::AhoCorasick> = std::sync::LazyLock::new(|| {
    aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(AUTOMATION_MARKERS)
        .expect("fixed patterns build")
});

/// True if a user agent names an automation tool.
pub fn is_automation_agent(ua: &str) -> bool {
    AUTOMATION.is_match(ua)
}

thread_local! {
    /// A bank sees a few hundred distinct agents in millions of events: a
    /// small direct-mapped cache of (agent hash, verdict) saves the scan.
    static AGENT_CACHE: std::cell::RefCell<[(u64, bool); 256]> = const { std::cell::RefCell::new([(0, false); 256]) };
}

fn is_automation_agent_cached(ua: &str) -> bool {
    let h = xxhash_rust::xxh3::xxh3_64(ua.as_bytes()) | 1;
    AGENT_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let slot = &mut c[(h >> 56) as usize];
        if slot.0 == h {
            return slot.1;
        }
        let verdict = is_automation_agent(ua);
        *slot = (h, verdict);
        verdict
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Outcome;
    use std::collections::BTreeMap;

    fn event(id: usize, ts_ms: i64, customer: &str, ip: &str, device: &str, failure: bool) -> Event {
        Event {
            event_id: format!("e{id}").into(),
            ts_ms,
            step: Step::Otp,
            result: if failure { Outcome::Failure } else { Outcome::Success },
            failure_reason: None,
            session_id: Some(format!("s-{customer}").into()),
            customer_id: Some(customer.into()),
            id_doc_hash: None,
            ip: Some(ip.parse().unwrap()),
            device_id: Some(device.into()),
            user_agent: Some("KBankApp/5.2.1 (Android 14)".into()),
            channel: None,
            region: Some("KR-11".into()),
            duration_ms: Some(900),
            account_hash: None,
            staff_id: None,
            records: None,
            attrs: BTreeMap::new(),
        }
    }

    fn get(store: &FeatureStore, out: &[f32], name: &str) -> f32 {
        out[store.catalog().slot(name).unwrap_or_else(|| panic!("no feature {name}"))]
    }

    /// An event of `step` in session `session` from `device`, naming
    /// `customer` and `doc` when given.
    fn step(id: usize, ts_ms: i64, step: Step, session: Option<&str>, customer: Option<&str>, device: &str, doc: Option<&str>, failure: bool) -> Event {
        Event { step, session_id: session.map(Into::into), customer_id: customer.map(Into::into), id_doc_hash: doc.map(Into::into), ..event(id, ts_ms, "x", "121.1.2.3", device, failure) }
    }

    #[test]
    fn a_code_step_that_names_no_customer_acts_as_the_customer_its_session_logged_in_as() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        let code = |id, ts, session, device| step(id, ts, Step::AccountVerify, session, None, device, None, true);
        let whose = |e: &Event| store.session_customer(e, i64::MAX).map(|c| c.to_string());
        // Before any login, the session has no customer.
        assert_eq!(whose(&code(0, t0, Some("s1"), "d1")), None);
        store.observe(&step(1, t0 + 1_000, Step::Login, Some("s1"), Some("c1"), "d1", None, false), &mut out);
        assert_eq!(whose(&code(2, t0 + 10_000, Some("s1"), "d1")).as_deref(), Some("c1"));
        for code_step in [Step::Otp, Step::PhoneAuth] {
            assert_eq!(whose(&step(2, t0 + 10_000, code_step, Some("s1"), None, "d1", None, true)).as_deref(), Some("c1"), "{code_step:?}");
        }
        // A failed login teaches nothing: the session is still c1's.
        store.observe(&step(3, t0 + 11_000, Step::Login, Some("s1"), Some("c2"), "d1", None, true), &mut out);
        assert_eq!(whose(&code(4, t0 + 12_000, Some("s1"), "d1")).as_deref(), Some("c1"));
        // The session id is the client's: another device in it, or none, is nobody's.
        assert_eq!(whose(&code(5, t0 + 12_000, Some("s1"), "d2")), None);
        assert_eq!(whose(&Event { device_id: None, ..code(6, t0 + 12_000, Some("s1"), "d1") }), None);
        // So is the device id: the same one from another network is nobody's
        // (anyone who learnt it could lock the customer out); another exit of
        // the login's /24 is the login's.
        assert_eq!(whose(&Event { ip: Some("121.9.2.3".parse().unwrap()), ..code(6, t0 + 12_000, Some("s1"), "d1") }), None);
        assert_eq!(whose(&Event { ip: None, ..code(6, t0 + 12_000, Some("s1"), "d1") }), None);
        assert_eq!(whose(&Event { ip: Some("121.1.2.77".parse().unwrap()), ..code(6, t0 + 12_000, Some("s1"), "d1") }).as_deref(), Some("c1"));
        // Dated before the login: not the login's; dated at it: the login's.
        assert_eq!(whose(&code(7, t0, Some("s1"), "d1")), None);
        assert_eq!(whose(&code(7, t0 + 1_000, Some("s1"), "d1")).as_deref(), Some("c1"));
        // Only code steps: an ID scan or an account opening says who is present.
        for other in [Step::IdOcr, Step::FaceMatch, Step::AccountOpen, Step::RecordView, Step::Login] {
            assert_eq!(whose(&step(8, t0 + 13_000, other, Some("s1"), None, "d1", None, false)), None, "{other:?}");
        }
        // An event that names its customer keeps it.
        assert_eq!(whose(&step(9, t0 + 13_000, Step::Otp, Some("s1"), Some("c3"), "d1", None, false)), None);
        // A later login moves the session to its customer; one dated before
        // it, arriving after it (within the lateness), does not.
        store.observe(&step(10, t0 + 14_000, Step::Login, Some("s1"), Some("c4"), "d1", None, false), &mut out);
        store.observe(&step(11, t0 + 13_500, Step::Login, Some("s1"), Some("c-earlier"), "d1", None, false), &mut out);
        assert_eq!(whose(&code(12, t0 + 15_000, Some("s1"), "d1")).as_deref(), Some("c4"));
        // A visit, not the session id's life: an hour after the login, though
        // the session has been busy all along, the code is nobody's.
        for m in 1..=6 {
            store.observe(&step(20 + m, t0 + 14_000 + m as i64 * 600_000, Step::FaceMatch, Some("s1"), None, "d1", None, false), &mut out);
        }
        assert_eq!(whose(&code(30, t0 + 14_000 + 3_600_000, Some("s1"), "d1")).as_deref(), Some("c4"));
        assert_eq!(whose(&code(31, t0 + 14_001 + 3_600_000, Some("s1"), "d1")), None);
        // Without a session id, the device's implied session carries the login...
        let t1 = t0 + 10_000_000;
        store.observe(&step(40, t1, Step::Login, None, Some("c5"), "d5", None, false), &mut out);
        assert_eq!(whose(&code(41, t1 + 60_000, None, "d5")).as_deref(), Some("c5"));
        // ... until it ends: thirty idle minutes, within the hour.
        store.observe(&step(42, t1 + 31 * 60_000, Step::Login, Some("s9"), Some("c9"), "d9", None, false), &mut out);
        assert_eq!(whose(&code(43, t1 + 31 * 60_000, None, "d5")), None);
    }

    #[test]
    fn a_code_step_with_another_persons_document_is_not_the_logged_in_customers() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        let check = |id, ts, session, doc| step(id, ts, Step::AccountVerify, Some(session), None, "tablet", doc, false);
        let whose = |e: &Event| store.session_customer(e, i64::MAX).map(|c| c.to_string());
        // A login that names no document: a document on the 1-won check is
        // the customer's own, until an ID is scanned in the session.
        store.observe(&step(1, t0, Step::Login, Some("s1"), Some("parent"), "tablet", None, false), &mut out);
        assert_eq!(whose(&check(2, t0 + 1_000, "s1", Some("doc-parent"))).as_deref(), Some("parent"));
        // A failed scan is anyone's to send: it changes nothing.
        store.observe(&step(3, t0 + 1_500, Step::IdOcr, Some("s1"), None, "tablet", Some("doc-junk"), true), &mut out);
        assert_eq!(whose(&check(4, t0 + 1_600, "s1", Some("doc-parent"))).as_deref(), Some("parent"));
        // A passed one: someone onboards, and a check is theirs, named or not.
        store.observe(&step(5, t0 + 2_000, Step::IdOcr, Some("s1"), None, "tablet", Some("doc-child"), false), &mut out);
        assert_eq!(whose(&check(6, t0 + 3_000, "s1", Some("doc-child"))), None, "the child onboarding");
        assert_eq!(whose(&check(7, t0 + 3_000, "s1", None)), None, "the child's check that names no document");
        // An onboarding that another person's login interrupts, on a shared
        // seat: the document scanned before the login is still the applicant's.
        store.observe(&step(8, t0 + 6_000, Step::IdOcr, Some("s3"), None, "seat", Some("doc-guest"), false), &mut out);
        store.observe(&step(9, t0 + 7_000, Step::Login, Some("s3"), Some("regular"), "seat", None, false), &mut out);
        assert_eq!(whose(&step(10, t0 + 8_000, Step::AccountVerify, Some("s3"), None, "seat", Some("doc-guest"), false)), None);
        // A login that names its document: only that one is the customer's,
        // in a session where an ID was scanned too.
        store.observe(&step(11, t0 + 4_000, Step::Login, Some("s2"), Some("parent"), "tablet", Some("doc-parent"), false), &mut out);
        assert_eq!(whose(&check(12, t0 + 5_000, "s2", Some("doc-parent"))).as_deref(), Some("parent"));
        assert_eq!(whose(&check(13, t0 + 5_000, "s2", Some("doc-child"))), None);
        store.observe(&step(14, t0 + 5_500, Step::IdAuthenticity, Some("s2"), None, "tablet", Some("doc-child"), false), &mut out);
        assert_eq!(whose(&check(15, t0 + 6_000, "s2", Some("doc-parent"))).as_deref(), Some("parent"));
        assert_eq!(whose(&check(16, t0 + 6_000, "s2", None)), None);
        // A restart keeps both the login and the scan, as a snapshot carries them.
        let restored = FeatureStore::new(&FeatureConfig::default()).unwrap();
        restored.restore_state(serde_json::from_slice(&serde_json::to_vec(&store.export_state()).unwrap()).unwrap()).unwrap();
        let whose = |e: &Event| restored.session_customer(e, i64::MAX).map(|c| c.to_string());
        assert_eq!(whose(&check(17, t0 + 6_000, "s2", Some("doc-parent"))).as_deref(), Some("parent"));
        assert_eq!(whose(&check(18, t0 + 6_000, "s2", None)), None);
    }

    #[test]
    fn a_backend_step_without_a_device_or_region_takes_its_sessions() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        // The backend's steps name the customer and the session, nothing of where.
        let backend = |id, ts, session: &str, customer: &str| Event { device_id: None, region: None, ip: None, ..step(id, ts, Step::AccountOpen, Some(session), Some(customer), "-", None, false) };
        let place = |e: &Event| store.session_place(e).map(|(j, took)| (j.device_id.map(|d| d.to_string()), j.region.map(|r| r.to_string()), took));
        let scan = step(1, t0, Step::IdOcr, Some("s1"), Some("c1"), "phone-1", Some("doc-1"), false);
        assert_eq!(place(&backend(2, t0 + 1_000, "s1", "c1")), None, "nothing named yet");
        // Another customer, with a place of their own in another session.
        store.observe(&step(0, t0, Step::IdOcr, Some("s9"), Some("c2"), "phone-9", Some("doc-9"), false), &mut out);
        store.observe(&scan, &mut out);
        assert_eq!(place(&backend(3, t0 + 60_000, "s1", "c1")), Some((Some("phone-1".into()), Some("KR-11".into()), PLACE_DEVICE | PLACE_REGION)));
        // What the step names itself stays; only what it left out is taken.
        let named = Event { region: Some("JP-13".into()), ..backend(4, t0 + 60_000, "s1", "c1") };
        assert_eq!(place(&named), Some((Some("phone-1".into()), Some("JP-13".into()), PLACE_DEVICE)));
        // Another session of the customer, another customer in the session,
        // a failed step (anyone's to send), or one dated before the
        // session's first place: nothing.
        assert_eq!(place(&backend(5, t0 + 60_000, "s2", "c1")), None);
        assert_eq!(place(&backend(6, t0 + 60_000, "s1", "c2")), None);
        assert!(place(&backend(6, t0 + 60_000, "s9", "c2")).is_some(), "c2's own session has its place");
        assert_eq!(place(&Event { result: crate::event::Outcome::Failure, ..backend(7, t0 + 60_000, "s1", "c1") }), None);
        assert_eq!(place(&backend(8, t0 - 1_000, "s1", "c1")), None);
        // Staff accesses are never a customer's session.
        assert_eq!(place(&Event { step: Step::RecordView, ..backend(9, t0 + 60_000, "s1", "c1") }), None);
        // A failed step moves nothing either.
        store.observe(&step(10, t0 + 70_000, Step::FaceMatch, Some("s1"), Some("c1"), "phone-x", None, true), &mut out);
        assert_eq!(place(&backend(11, t0 + 80_000, "s1", "c1")).and_then(|p| p.0), Some("phone-1".into()));
        // The steps the pipeline filled in name the device too: observed,
        // they must not keep the session's place beyond the hour after its
        // first step.
        let (filled, _) = store.session_place(&backend(12, t0 + 3_000_000, "s1", "c1")).unwrap();
        store.observe(&filled, &mut out);
        assert_eq!(place(&backend(13, t0 + 3_700_000, "s1", "c1")), None, "the hour after the first step is over");
        // A new session starts over; two passed steps of it on two devices:
        // which one the backend's step came from is not known, the region
        // they agree on is.
        store.observe(&step(14, t0 + 4_000_000, Step::IdOcr, Some("s3"), Some("c1"), "phone-3", Some("doc-1"), false), &mut out);
        assert_eq!(place(&backend(15, t0 + 4_010_000, "s3", "c1")).and_then(|p| p.0), Some("phone-3".into()));
        store.observe(&step(16, t0 + 4_020_000, Step::Liveness, Some("s3"), Some("c1"), "phone-4", None, false), &mut out);
        assert_eq!(place(&backend(17, t0 + 4_030_000, "s3", "c1")), Some((None, Some("KR-11".into()), PLACE_REGION)));
        // A restart keeps the place, as a snapshot carries it.
        let restored = FeatureStore::new(&FeatureConfig::default()).unwrap();
        restored.restore_state(serde_json::from_slice(&serde_json::to_vec(&store.export_state()).unwrap()).unwrap()).unwrap();
        assert_eq!(restored.session_place(&backend(18, t0 + 4_030_000, "s3", "c1")).map(|(j, _)| j.region), Some(Some("KR-11".into())));
        // Past its hour (and the lateness), a sweep frees it.
        let held = store.entity_bytes(EntityKind::Customer);
        store.observe(&Event { customer_id: Some("c3".into()), ..step(19, t0 + 9_000_000, Step::Login, None, None, "phone-5", None, true) }, &mut out);
        let with_c3 = store.entity_bytes(EntityKind::Customer);
        store.sweep();
        assert!(store.entity_bytes(EntityKind::Customer) < with_c3, "{held} {with_c3}");
    }

    #[test]
    fn an_automation_agent_teaches_no_population_baseline() {
        // A small bank's day: 120 people take 4-8 s over a liveness check,
        // then a campaign of 80 headless scripts at 300 ms, blocked by their
        // agent. Were the scripts learned, they would be over a sixth of the
        // step's samples and taken into its ranks (see `StepBaseline::held`):
        // a quieter script at 600 ms would then rank among people.
        let t0 = 1_764_000_000_000;
        let person = |i: usize, ms: u64, agent: &str| {
            let mut e = event(i, t0 + i as i64 * 60_000, &format!("c{i}"), "10.0.0.1", &format!("d{i}"), false);
            e.step = Step::Liveness;
            e.duration_ms = Some(ms);
            e.user_agent = Some(agent.into());
            e
        };
        let last_reading = |scripts: bool| {
            let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
            let mut out = vec![0.0; store.catalog().len()];
            for i in 0..120 {
                store.observe(&person(i, 4_000 + (i as u64 % 40) * 100, APP), &mut out);
            }
            for i in 120..200 {
                if scripts {
                    store.observe(&person(i, 300, "Mozilla/5.0 HeadlessChrome/120"), &mut out);
                    assert_eq!(get(&store, &out, "event.ua_automation"), 1.0);
                }
            }
            store.observe(&person(200, 600, APP), &mut out);
            ["event.duration_rank", "event.baseline_samples", "event.onboarding_surge"].map(|f| get(&store, &out, f))
        };
        let with_scripts = last_reading(true);
        assert_eq!(with_scripts[0], 0.0, "600 ms is still faster than every person");
        assert_eq!(with_scripts[1], 120.0, "the scripts were not counted");
        assert_eq!(with_scripts, last_reading(false), "the scripts changed nothing the next person reads, the onboarding surge included");
    }

    #[test]
    fn an_automation_agent_sets_neither_the_population_hours_nor_an_addresses_onboarding_level() {
        // The hour rhythm and the per-address onboarding level need
        // thousands of readings, and the hours every hour of day closing once:
        // 2,100 people, each onboarding from their own address over 26 hours,
        // then 80 headless scripts from one address in the hour after next,
        // then one more person two hours on. Had the scripts been counted,
        // the hour they closed would move the average hour the last person
        // is read against.
        let t0 = 1_764_000_000_000;
        const HOUR: i64 = 3_600_000;
        let person = |i: usize, ts_ms: i64, ip: String, agent: &str| {
            let mut e = event(i, ts_ms, &format!("c{i}"), &ip, &format!("d{i}"), false);
            e.step = Step::Liveness;
            e.duration_ms = Some(5_000);
            e.user_agent = Some(agent.into());
            e
        };
        let own_address = |i: usize| format!("10.{}.{}.1", i / 250, i % 250);
        let last_reading = |scripts: bool| {
            let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
            let mut out = vec![0.0; store.catalog().len()];
            for i in 0..2_100 {
                store.observe(&person(i, t0 + i as i64 * 45_000, own_address(i), APP), &mut out);
            }
            for k in 0..80 {
                if scripts {
                    store.observe(&person(2_100 + k, t0 + 27 * HOUR + k as i64 * 30_000, "45.1.2.3".into(), "python-requests/2.31"), &mut out);
                }
            }
            store.observe(&person(2_180, t0 + 29 * HOUR, own_address(2_180), APP), &mut out);
            ["event.hour_activity", "event.ip_new_identities_1h_p99", "event.population_hours_known"].map(|f| get(&store, &out, f))
        };
        let without = last_reading(false);
        assert_eq!(without[2], 1.0, "the hour baseline has spoken");
        assert!(without[1] < 1.0e6, "the level baseline has spoken");
        assert_eq!(last_reading(true), without);
    }

    #[test]
    fn the_onboarding_surge_is_wired_to_onboarding_events_and_leaves_the_own_address_out() {
        const MIN: i64 = 60_000;
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let onboarding = |id: usize, ts: i64, ip: &str| {
            let mut e = event(id, ts, &format!("c{id}"), ip, &format!("d{id}"), false);
            e.step = Step::IdOcr;
            e
        };
        let mut t = 1_764_000_000_000 - 1_764_000_000_000 % (60 * MIN);
        let mut id = 0;
        // Two days of two applicants a minute (every hour of the day alike), each from an
        // address of their own.
        for _ in 0..48 * 60 {
            for _ in 0..2 {
                id += 1;
                store.observe(&onboarding(id, t, &format!("10.{}.{}.{}", id / 65_536 % 256, id / 256 % 256, id % 256)), &mut out);
            }
            t += MIN;
        }
        let steady = get(&store, &out, "event.onboarding_surge");
        assert!((0.7..1.4).contains(&steady), "a steady day reads about 1: {steady}");
        // A login is not an onboarding event: it reads 1 and counts nothing.
        store.observe(&event(0, t, "c1", "10.0.0.1", "d1", false), &mut out);
        assert_eq!(get(&store, &out, "event.onboarding_surge"), 1.0);
        // An hour in which one address brings as many applicants again as everyone else.
        for _ in 0..60 {
            for k in 0..4 {
                id += 1;
                let ip = if k < 2 { "203.0.113.9".to_owned() } else { format!("10.{}.{}.{}", id / 65_536 % 256, id / 256 % 256, id % 256) };
                store.observe(&onboarding(id, t, &ip), &mut out);
            }
            t += MIN;
        }
        id += 1;
        store.observe(&onboarding(id, t, "203.0.113.9"), &mut out);
        let own = get(&store, &out, "event.onboarding_surge");
        assert!(own < 1.4, "the burst's own address does not lift its own bar: {own}");
        id += 1;
        store.observe(&onboarding(id, t, "198.51.100.77"), &mut out);
        let other = get(&store, &out, "event.onboarding_surge");
        assert!(other > 1.6, "to every other address the hour is busy: {other}");
    }

    #[test]
    fn the_population_counts_each_fresh_identity_once_where_it_is_first_seen() {
        const MIN: i64 = 60_000;
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let step = |id: usize, ts: i64, customer: &str, step: Step| {
            let mut e = event(id, ts, customer, "10.0.0.1", &format!("d-{customer}"), false);
            e.step = step;
            e
        };
        let population = |store: &FeatureStore, out: &[f32]| {
            (get(store, out, "event.population_new_identities_1h"), get(store, out, "event.population_new_identities_24h"))
        };
        let t0 = 1_764_000_000_000;
        // An applicant's whole onboarding is one fresh identity.
        for (k, s) in [Step::IdOcr, Step::IdAuthenticity, Step::FaceMatch, Step::AccountOpen].into_iter().enumerate() {
            store.observe(&step(k, t0 + k as i64 * 20_000, "applicant", s), &mut out);
            assert_eq!(population(&store, &out), (1.0, 1.0), "step {k}");
        }
        // A customer met first at a login, who then opens another account, is not one;
        // and a login reads nothing.
        store.observe(&step(10, t0 + 2 * MIN, "customer", Step::Login), &mut out);
        assert_eq!(population(&store, &out), (0.0, 0.0));
        store.observe(&step(11, t0 + 3 * MIN, "customer", Step::IdOcr), &mut out);
        assert_eq!(population(&store, &out), (1.0, 1.0));
        // An applicant whose flow starts with a phone check is one all the
        // same, counted at their first onboarding step, as an address counts them.
        store.observe(&step(20, t0 + 4 * MIN, "by-phone", Step::PhoneAuth), &mut out);
        store.observe(&step(21, t0 + 5 * MIN, "by-phone", Step::IdOcr), &mut out);
        assert_eq!(population(&store, &out), (2.0, 2.0));
        assert_eq!(get(&store, &out, "ip.distinct_new_identities_1h"), 2.0, "the address counts the same two");
        // A second applicant an hour later: the first has left the hour, not the day.
        store.observe(&step(12, t0 + 66 * MIN, "second", Step::IdOcr), &mut out);
        assert_eq!(population(&store, &out), (1.0, 3.0));
        // A third, too late to be decided in order, is read but not counted.
        let late = store.observe(&step(13, t0 + 59 * MIN, "too-late", Step::IdOcr), &mut out);
        assert!(late.late);
        store.observe(&step(14, t0 + 67 * MIN, "fourth", Step::IdOcr), &mut out);
        assert_eq!(population(&store, &out), (2.0, 4.0), "the late one was not counted");
        // A day later the day has emptied too, but for the one counted now.
        store.observe(&step(15, t0 + 67 * MIN + 86_400_000, "fifth", Step::IdOcr), &mut out);
        assert_eq!(population(&store, &out), (1.0, 1.0));
        // The counts are part of what a snapshot carries.
        let again = FeatureStore::new(&FeatureConfig::default()).unwrap();
        again.restore_state(store.export_state()).unwrap();
        again.observe(&step(16, t0 + 68 * MIN + 86_400_000, "sixth", Step::IdOcr), &mut out);
        assert_eq!(population(&again, &out), (2.0, 2.0));
    }

    #[test]
    fn the_population_counts_each_returning_customer_once_in_the_hour_they_were_last_active() {
        const MIN: i64 = 60_000;
        const HOUR: i64 = 60 * MIN;
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let at = |id: usize, ts: i64, customer: &str, step: Step, failure: bool| {
            let mut e = event(id, ts, customer, "10.0.0.1", &format!("d-{customer}"), failure);
            e.step = step;
            e
        };
        // Read at an applicant's onboarding step, as rules read it.
        let mut applicants = 0;
        let mut read = |store: &FeatureStore, out: &mut [f32], ts: i64| {
            applicants += 1;
            store.observe(&at(9_000 + applicants, ts, &format!("applicant{applicants}"), Step::IdOcr, false), out);
            get(store, out, "event.population_returning_24h")
        };
        // On the hour: the count's hours are clock hours.
        let t0 = 1_764_000_000_000;
        assert_eq!(t0 % HOUR, 0);
        // A customer the store never saw onboard opened their account before
        // the stream began: their first login counts them, once however many
        // passed events follow in the hour.
        store.observe(&at(1, t0, "r1", Step::Login, false), &mut out);
        assert_eq!(read(&store, &mut out, t0 + MIN), 1.0);
        store.observe(&at(2, t0 + 2 * MIN, "r1", Step::Otp, false), &mut out);
        store.observe(&at(3, t0 + 3 * MIN, "r1", Step::Otp, false), &mut out);
        assert_eq!(read(&store, &mut out, t0 + 4 * MIN), 1.0);
        store.observe(&at(4, t0 + 5 * MIN, "r2", Step::Login, false), &mut out);
        assert_eq!(read(&store, &mut out, t0 + 6 * MIN), 2.0);
        // An applicant the store saw onboard (the first read's) is not counted
        // by the login their onboarding earned, only from their next passed event.
        store.observe(&at(13, t0 + 9 * MIN, "applicant1", Step::Login, false), &mut out);
        assert_eq!(get(&store, &out, "ip.distinct_returning_24h"), 2.0, "the address counts r1 and r2, not the applicant's first login");
        assert_eq!(read(&store, &mut out, t0 + 10 * MIN), 2.0);
        store.observe(&at(14, t0 + 11 * MIN, "applicant1", Step::Otp, false), &mut out);
        assert_eq!(read(&store, &mut out, t0 + 12 * MIN), 3.0);
        // The address counts the same three; a login reads nothing.
        assert_eq!(get(&store, &out, "ip.distinct_returning_24h"), 3.0, "the address counts the same three");
        store.observe(&at(7, t0 + 13 * MIN, "r2", Step::Login, false), &mut out);
        assert_eq!(get(&store, &out, "event.population_returning_24h"), 0.0);
        // Active again two hours later, r1 moves to that hour: still three customers.
        store.observe(&at(8, t0 + 2 * HOUR, "r1", Step::Login, false), &mut out);
        assert_eq!(read(&store, &mut out, t0 + 2 * HOUR + MIN), 3.0);
        // A failed event moves no one (anyone can fail a known customer's
        // login): r2 stays in the first hour, and leaves the day with it.
        store.observe(&at(5, t0 + 2 * HOUR + 2 * MIN, "r2", Step::Login, true), &mut out);
        // An event too late to be decided in order moves no one.
        let late = store.observe(&at(9, t0 + 2 * HOUR - 30 * MIN, "r2", Step::Otp, false), &mut out);
        assert!(late.late);
        // One from the hour before r1's last, within the allowed lateness, leaves r1 where they are.
        let early = store.observe(&at(12, t0 + 2 * HOUR - 2 * MIN, "r1", Step::Otp, false), &mut out);
        assert!(!early.late);
        // A day after the first hour r2 and the applicant have left the day;
        // r1, active in its third hour, has not.
        assert_eq!(read(&store, &mut out, t0 + 24 * HOUR), 1.0);
        // The count is part of what a snapshot carries, and goes on moving customers.
        let again = FeatureStore::new(&FeatureConfig::default()).unwrap();
        again.restore_state(store.export_state()).unwrap();
        assert_eq!(read(&again, &mut out, t0 + 24 * HOUR + MIN), 1.0);
        assert_eq!(read(&again, &mut out, t0 + 25 * HOUR), 1.0, "r1 is still in its third hour, not moved back to the second");
        again.observe(&at(10, t0 + 25 * HOUR + MIN, "r1", Step::Otp, false), &mut out);
        again.observe(&at(11, t0 + 25 * HOUR + 2 * MIN, "r2", Step::Otp, false), &mut out);
        assert_eq!(read(&again, &mut out, t0 + 25 * HOUR + 3 * MIN), 2.0, "r1 moved, not counted twice; r2 back");
        assert_eq!(read(&again, &mut out, t0 + 49 * HOUR), 0.0);
    }

    #[test]
    fn a_step_among_an_honest_crowd_at_its_floor_is_not_fast_one_apart_from_everyone_is() {
        // One code in ten is auto-filled in 300-330 ms, the rest typed in 5-20 s:
        // the fastest 1% of codes are all auto-filled ones. (Two kinds of
        // code: a session counts a retried step once.)
        const STEPS: [Step; 2] = [Step::Otp, Step::PhoneAuth];
        let population = |store: &FeatureStore, out: &mut [f32]| {
            let t0 = 1_764_000_000_000;
            for i in 0..2_000usize {
                let mut e = event(i, t0 + i as i64 * 1000, &format!("c{i}"), "10.0.0.1", &format!("d{i}"), false);
                e.step = STEPS[i % 2];
                e.duration_ms = Some(if i / 2 % 10 == 0 { 300 + (i as u64 * 7) % 31 } else { 5_000 + (i as u64 * 7_919) % 15_000 });
                store.observe(&e, out);
            }
            t0 + 2_000 * 1000
        };
        let session = |store: &FeatureStore, out: &mut [f32], t: i64, customer: &str, ms: u64| {
            for (k, step) in STEPS.into_iter().enumerate() {
                let mut e = event(10_000 + k, t + k as i64 * 1000, customer, "10.0.0.2", "dx", false);
                e.step = step;
                e.duration_ms = Some(ms);
                store.observe(&e, out);
            }
            (get(store, out, "session.fast_steps"), get(store, out, "session.quick_steps"))
        };
        let apart = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; apart.catalog().len()];
        let t = population(&apart, &mut out);
        assert_eq!(session(&apart, &mut out, t, "honest", 300), (0.0, 0.0), "two codes at the auto-filled crowd's floor");
        assert_eq!(session(&apart, &mut out, t + 60_000, "script", 150), (2.0, 2.0), "two codes in half the time anyone took");
        // Without the margin, the crowd's own fastest read as fast: what the margin is for.
        let bare = FeatureStore::new(&FeatureConfig { step_rank_margin: 0.0, ..FeatureConfig::default() }).unwrap();
        let t = population(&bare, &mut out);
        assert_eq!(session(&bare, &mut out, t, "honest", 300), (2.0, 2.0));
    }

    /// A new install, for the take-back tests: one address, a device per
    /// customer, each customer's events one session, one event a second.
    struct Install {
        store: FeatureStore,
        out: Vec<f32>,
        n: usize,
    }

    /// What a step read: its duration rank, the session's fast steps so
    /// far, and the samples its step baseline had before it.
    #[derive(Debug, PartialEq)]
    struct Read {
        rank: f32,
        fast: f32,
        samples: f32,
    }

    const APP: &str = "KBankApp/5.2.1 (Android 14)";

    impl Install {
        fn new() -> Install {
            let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
            let out = vec![0.0; store.catalog().len()];
            Install { store, out, n: 0 }
        }

        /// The first people: ten face matches of 4-4.9 s and liveness checks of 4.5-5.4 s.
        fn with_ten_people() -> Install {
            let mut install = Install::new();
            for i in 0..10 {
                install.step(&format!("c{i}"), Step::FaceMatch, 4_000 + i * 100);
                install.step(&format!("c{i}"), Step::Liveness, 4_500 + i * 100);
            }
            install
        }

        fn step(&mut self, customer: &str, step: Step, ms: u64) -> Read {
            self.step_as(customer, APP, step, ms)
        }

        fn step_as(&mut self, customer: &str, agent: &str, step: Step, ms: u64) -> Read {
            self.n += 1;
            let mut e = event(self.n, 1_764_000_000_000 + self.n as i64 * 1000, customer, "10.0.0.1", &format!("d-{customer}"), false);
            e.step = step;
            e.duration_ms = Some(ms);
            e.user_agent = Some(agent.into());
            self.store.observe(&e, &mut self.out);
            let read = |name: &str| get(&self.store, &self.out, name);
            Read { rank: read("event.duration_rank"), fast: read("session.fast_steps"), samples: read("event.baseline_samples") }
        }
    }

    #[test]
    fn a_session_fast_at_two_steps_teaches_a_young_baseline_nothing_a_lone_fast_step_does() {
        use crate::baseline::MIN_BASELINE_SAMPLES;
        let mut install = Install::with_ten_people();
        let mut step = |customer: &str, step: Step, ms: u64| {
            let r = install.step(customer, step, ms);
            (r.rank, r.fast)
        };
        // A script's first session: both steps rank fast, and are taken back.
        assert_eq!(step("bot1", Step::FaceMatch, 300), (0.0, 1.0));
        assert_eq!(step("bot1", Step::Liveness, 320), (0.0, 2.0));
        // So its next session ranks fast too. Learnt, the first session's
        // 300 ms would be the step's fastest, and 310 ms would read 0.5.
        assert_eq!(step("bot2", Step::FaceMatch, 310), (0.0, 1.0));
        assert_eq!(step("bot2", Step::Liveness, 330), (0.0, 2.0));
        // A person fast at one step only (an auto-capture) teaches it: the
        // next face match at that speed is no longer far under everyone.
        assert_eq!(step("quick", Step::FaceMatch, 900), (0.0, 1.0));
        assert_eq!(step("quick", Step::Liveness, 4_800), (0.5, 1.0));
        assert_eq!(step("next", Step::FaceMatch, 950).0, 0.5, "900 ms was learnt");
        assert_eq!(install.step("bot3", Step::Liveness, 330), Read { rank: 0.0, fast: 1.0, samples: 11.0 }, "eleven people at liveness; the scripts were taken back");
        // A ready baseline keeps what it learnt: two steps at 2.5 s among
        // 4-5 s rank fast, are not far enough under to be held, and stay.
        let mut ready = Install::new();
        for i in 0..MIN_BASELINE_SAMPLES {
            ready.step(&format!("p{i}"), Step::FaceMatch, 4_000 + i * 10);
            ready.step(&format!("p{i}"), Step::Liveness, 4_000 + i * 10);
        }
        let before = ready.step("before", Step::Liveness, 4_000).samples;
        assert_eq!(before, MIN_BASELINE_SAMPLES as f32);
        assert_eq!(ready.step("ready", Step::FaceMatch, 2_500), Read { rank: 0.0, fast: 1.0, samples: before });
        assert_eq!(ready.step("ready", Step::Liveness, 2_500), Read { rank: 0.0, fast: 2.0, samples: before + 1.0 });
        assert_eq!(ready.step("after", Step::Liveness, 4_000).samples, before + 2.0, "the 4 s before and the 2.5 s stayed");
    }

    #[test]
    fn in_a_devices_implied_session_named_methods_count_only_for_their_customer_and_an_opening_spends_them() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let mut n = 0;
        // Steps on one PC방 seat, no session id: the session's methods as each step reads them.
        let mut step = |step: Step, customer: Option<&str>| {
            n += 1;
            let mut e = event(n, 1_764_000_000_000 + n as i64 * 20_000, customer.unwrap_or("-"), "121.1.2.3", "seat-7", false);
            (e.step, e.customer_id, e.session_id) = (step, customer.map(Into::into), None);
            store.observe(&e, &mut out);
            get(&store, &out, "session.methods_ok")
        };
        step(Step::IdAuthenticity, Some("cA"));
        assert_eq!(step(Step::Otp, Some("cA")), 2.0);
        // Nobody named, or another customer: A's methods are not theirs, and they spend none of them.
        assert_eq!(step(Step::AccountOpen, None), 0.0);
        assert_eq!(step(Step::AccountOpen, Some("cB")), 0.0);
        // A method that names nobody is anyone's.
        assert_eq!(step(Step::AccountVerify, None), 1.0);
        assert_eq!(step(Step::AccountOpen, Some("cA")), 3.0);
        // A's opening spent all three.
        assert_eq!(step(Step::AccountOpen, Some("cA")), 0.0);
        // A new customer's methods replace the last one's.
        step(Step::IdAuthenticity, Some("cA"));
        assert_eq!(step(Step::Otp, Some("cB")), 1.0);
        assert_eq!(step(Step::AccountOpen, Some("cA")), 0.0);
    }

    #[test]
    fn session_ids_that_no_two_steps_share_give_way_to_the_devices_run_of_events() {
        let run = |session_ids: SessionIds, step: Step, failed: bool| {
            let store = FeatureStore::new(&FeatureConfig { session_ids, ..FeatureConfig::default() }).unwrap();
            let mut out = vec![0.0; store.catalog().len()];
            let t0 = 1_764_000_000_000;
            // A pipeline that puts a request id in the field: three thousand people, a fresh id on each step.
            for i in 0..3_000 {
                let mut e = event(i, t0 + i as i64 * 1_000, &format!("c{i}"), "121.1.2.3", &format!("d{i}"), failed);
                e.step = step;
                e.session_id = Some(format!("req-{i}").into());
                store.observe(&e, &mut out);
            }
            // One device's two steps, a request id each: one session or two?
            let mut e = event(4_000, t0 + 3_001_000, "c-bot", "121.1.2.3", "d-bot", false);
            for id in ["req-a", "req-b"] {
                e.session_id = Some(id.into());
                store.observe(&e, &mut out);
            }
            let together = get(&store, &out, "session.events_10m");
            // The device back two hours later: a new visit, as for events that name no session.
            e.ts_ms += 2 * 3_600_000;
            e.session_id = Some("req-c".into());
            store.observe(&e, &mut out);
            (together, get(&store, &out, "session.events_24h"), store.trusts_session_ids())
        };
        assert_eq!(run(SessionIds::Auto, Step::Login, false), (2.0, 1.0, false));
        assert_eq!(run(SessionIds::AsReported, Step::Login, false), (1.0, 1.0, true));
        // Failed logins with fresh ids are anyone's to send, and so are
        // codes passed on one's own phone under made-up customers: they do not count.
        assert_eq!(run(SessionIds::Auto, Step::Login, true), (1.0, 1.0, true));
        assert_eq!(run(SessionIds::Auto, Step::Otp, false), (1.0, 1.0, true));
    }

    #[test]
    fn a_session_keeps_its_login_and_what_it_taught_through_a_snapshot() {
        let mut install = Install::with_ten_people();
        // A login, then one fast face match: a young baseline learns it, as
        // one fast step is not yet a script.
        install.step("bot", Step::Login, 5_000);
        assert_eq!(install.step("bot", Step::FaceMatch, 300), Read { rank: 0.0, fast: 1.0, samples: 10.0 });
        // A restart, through the bytes the service writes.
        let bytes = postcard::to_stdvec(&install.store.export_state()).unwrap();
        let restored = FeatureStore::new(&FeatureConfig::default()).unwrap();
        restored.restore_state(postcard::from_bytes(&bytes).unwrap()).unwrap();
        install.store = restored;
        // The login is still the session's...
        let next = install.n + 1;
        let code = Event { customer_id: None, ..event(next, 1_764_000_000_000 + next as i64 * 1000, "bot", "10.0.0.1", "d-bot", true) };
        assert_eq!(install.store.session_customer(&code, i64::MAX).as_deref(), Some("bot"));
        // ... and so is what it taught: its second fast step shows it
        // scripted, and takes back the face match learnt before the restart.
        assert_eq!(install.step("bot", Step::Liveness, 320).fast, 2.0);
        assert_eq!(install.step("next", Step::FaceMatch, 4_000).samples, 10.0, "the face match taught before the restart was taken back");
        assert_eq!(install.store.session_customer(&code, i64::MAX).as_deref(), Some("bot"), "the take-back leaves the login");
    }

    #[test]
    fn a_script_takes_back_its_slower_retries_and_the_steps_before_anything_ranked() {
        // Nobody yet at the ID photo, whose baseline ranks nothing until its sixth sample.
        let mut install = Install::with_ten_people();
        let mut step = |customer: &str, step: Step, ms: u64| {
            let r = install.step(customer, step, ms);
            (r.fast, r.samples)
        };
        // The script: an ID photo too early to rank, a fast face match, its
        // retry a little slower (not fast: over a quarter of the fastest),
        // and then a fast liveness check, which shows it scripted.
        assert_eq!(step("bot", Step::IdOcr, 200), (0.0, 0.0));
        assert_eq!(step("bot", Step::FaceMatch, 300), (1.0, 10.0));
        assert_eq!(step("bot", Step::FaceMatch, 1_200), (1.0, 11.0));
        assert_eq!(step("bot", Step::Liveness, 320), (2.0, 10.0));
        // Once scripted, what it teaches goes back at once, fast or not.
        assert_eq!(step("bot", Step::IdOcr, 2_000), (2.0, 0.0));
        // Everything it taught was taken back: the face match table holds
        // the ten people again, the ID photo's nobody, and liveness ten.
        assert_eq!(step("next", Step::FaceMatch, 4_000).1, 10.0, "the retry was taken back");
        assert_eq!(step("next", Step::IdOcr, 4_000).1, 0.0, "the unranked ID photos were taken back");
        assert_eq!(step("next", Step::Liveness, 4_000).1, 10.0);
        // A session fast at one step only keeps everything it taught.
        step("quick", Step::FaceMatch, 900);
        step("quick", Step::FaceMatch, 1_500);
        step("quick", Step::IdOcr, 3_000);
        assert_eq!(step("after", Step::FaceMatch, 4_000).1, 13.0, "next's 4 s and quick's two stayed");
        assert_eq!(step("after", Step::IdOcr, 4_000).1, 2.0);
    }

    #[test]
    fn padding_or_retrying_a_session_does_not_keep_a_scripts_durations_learnt() {
        let mut install = Install::with_ten_people();
        let mut step = |customer: &str, agent: &str, step: Step, ms: u64| {
            let r = install.step_as(customer, agent, step, ms);
            (r.fast, r.samples)
        };
        // A fast face match, then forty slow ID photos and codes (more than a
        // session may teach a step), then a fast liveness check: scripted.
        assert_eq!(step("bot", APP, Step::FaceMatch, 300).0, 1.0);
        for i in 0..40 {
            step("bot", APP, if i % 2 == 0 { Step::IdOcr } else { Step::Otp }, 20_000 + i);
        }
        assert_eq!(step("bot", APP, Step::Liveness, 320).0, 2.0);
        assert_eq!(step("next", APP, Step::FaceMatch, 4_000).1, 10.0, "the fast face match was taken back");
        assert_eq!(step("next", APP, Step::Liveness, 4_000).1, 10.0, "and the fast liveness check");
        // A script that retries one step a hundred times teaches a young
        // baseline three of them (it cannot make the baseline ready by
        // itself), and gives those three back once it shows itself scripted.
        for _ in 0..100 {
            step("retrier", APP, Step::FaceMatch, 300);
        }
        assert_eq!(step("next2", APP, Step::FaceMatch, 4_000).1, 14.0, "eleven people and three of the retries");
        assert_eq!(step("retrier", APP, Step::Liveness, 320).0, 2.0);
        assert_eq!(step("next3", APP, Step::FaceMatch, 4_000).1, 12.0, "the twelve people only");
        // An agent that names itself automation teaches nothing, so its session,
        // scripted, takes nothing back: not the 4 s person in the bucket its
        // 4 s face match would have been learnt into.
        assert_eq!(step("headless", "HeadlessChrome/130.0", Step::FaceMatch, 4_000), (0.0, 13.0));
        step("headless", "HeadlessChrome/130.0", Step::FaceMatch, 300);
        assert_eq!(step("headless", "HeadlessChrome/130.0", Step::Liveness, 300).0, 2.0);
        assert_eq!(step("after", APP, Step::FaceMatch, 4_000).1, 13.0, "ten people, next's, next2's and next3's 4 s");
    }

    #[test]
    fn failures_an_hour_of_quiet_apart_start_a_new_streak() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        let fail = |store: &FeatureStore, out: &mut Vec<f32>, ms: i64| {
            store.observe(&event(0, ms, "victim", "10.0.0.1", "d1", true), out);
            get(store, out, "customer.failure_streak")
        };
        for i in 0..11 {
            fail(&store, &mut out, t0 + i * 600_000);
        }
        // Ten minutes after the eleventh: the twelfth in a row.
        assert_eq!(fail(&store, &mut out, t0 + 11 * 600_000), 12.0);
        // Just inside the middle window (1 h) of quiet: still the same streak.
        let last = t0 + 11 * 600_000;
        assert_eq!(fail(&store, &mut out, last + 3_600_000), 13.0);
        // A day later the owner's typo is a first failure, not the fourteenth.
        assert_eq!(fail(&store, &mut out, last + 3_600_000 + 86_400_000), 1.0);
    }

    #[test]
    fn one_event_updates_every_named_entity_once() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        for i in 0..5 {
            let mut e = event(i, t0 + i as i64 * 1000, &format!("c{i}"), "10.0.0.1", "d1", true);
            e.user_agent = Some("Mozilla/5.0 HeadlessChrome/120".into());
            store.observe(&e, &mut out);
        }
        assert_eq!(get(&store, &out, "ip.events_10m"), 5.0);
        assert_eq!(get(&store, &out, "ip.distinct_customers_24h"), 5.0);
        assert_eq!(get(&store, &out, "subnet.distinct_customers_1h"), 5.0);
        assert_eq!(get(&store, &out, "device.distinct_customers_10m"), 5.0);
        assert_eq!(get(&store, &out, "customer.events_24h"), 1.0);
        assert_eq!(get(&store, &out, "ip.failure_streak"), 5.0);
        assert_eq!(get(&store, &out, "ip.gap_mean_ms"), 1000.0);
        assert!(get(&store, &out, "ip.gap_cv") < 0.01);
        assert_eq!(get(&store, &out, "event.ua_automation"), 1.0);
        assert_eq!(get(&store, &out, "id_doc.present"), 0.0);
        assert_eq!(store.entity_count(EntityKind::Ip), 1);
        assert_eq!(store.entity_count(EntityKind::Customer), 5);
    }

    #[test]
    fn each_channel_reads_how_often_its_returning_customers_bring_a_new_device() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        let on = |id: usize, ms: i64, customer: &str, device: Option<&str>, step: Step, channel: Option<Channel>| {
            let mut e = event(id, ms, customer, "10.0.0.1", device.unwrap_or("-"), false);
            e.device_id = device.map(Into::into);
            e.step = step;
            e.channel = channel;
            e
        };
        let share = |store: &FeatureStore, out: &mut Vec<f32>, e: &Event| {
            store.observe(e, out);
            get(store, out, "event.channel_new_device_share")
        };
        let mut id = 0;
        let mut next = || {
            id += 1;
            id
        };
        for i in 0..300i64 {
            let t = t0 + i * 60_000;
            // A passed code teaches the profile its phone; the first login
            // makes the customer returning, and is not counted.
            let (app, web) = (format!("a{i}"), format!("w{i}"));
            for c in [&app, &web] {
                share(&store, &mut out, &on(next(), t, c, Some(&format!("phone-{c}")), Step::Otp, Some(Channel::App)));
                share(&store, &mut out, &on(next(), t + 1_000, c, Some(&format!("phone-{c}")), Step::Login, Some(Channel::App)));
            }
            // None of these counts (each would take the customer's one login
            // of the day before the one below): a failed login on a new
            // phone (anyone's to send), a passed code on one (not a login),
            // a login naming no device.
            let mut failed = on(next(), t + 1_500, &app, Some("a-strangers-phone"), Step::Login, Some(Channel::App));
            failed.result = Outcome::Failure;
            share(&store, &mut out, &failed);
            share(&store, &mut out, &on(next(), t + 1_600, &app, Some(&format!("a-phone-with-a-code-{i}")), Step::Otp, Some(Channel::App)));
            share(&store, &mut out, &on(next(), t + 1_700, &app, None, Step::Login, Some(Channel::App)));
            // Back on the app: on the known phone, but one in ten on a new one.
            let app_device = if i % 10 == 0 { format!("new-phone-{i}") } else { format!("phone-{app}") };
            share(&store, &mut out, &on(next(), t + 2_000, &app, Some(&app_device), Step::Login, Some(Channel::App)));
            // Through the web, on a fingerprint of its own.
            share(&store, &mut out, &on(next(), t + 2_000, &web, Some(&format!("browser-{i}")), Step::Login, Some(Channel::Web)));
            // Nor a second login of the day on yet another new phone (one a
            // day per customer), nor the logins of a customer whose profile
            // knows no device (nothing to call new).
            share(&store, &mut out, &on(next(), t + 3_300, &app, Some(&format!("made-up-{i}")), Step::Login, Some(Channel::App)));
            let codeless = format!("codeless{i}");
            for k in 0..2 {
                share(&store, &mut out, &on(next(), t + 5_000 + k, &codeless, Some(&format!("p{i}-{k}")), Step::Login, Some(Channel::App)));
            }
        }
        let t = t0 + 300 * 60_000;
        let app = share(&store, &mut out, &on(next(), t, "a1", Some("phone-a1"), Step::Otp, Some(Channel::App)));
        let web = share(&store, &mut out, &on(next(), t, "w1", Some("browser-x"), Step::Otp, Some(Channel::Web)));
        assert!((app - 0.1).abs() < 1e-6, "app {app}");
        assert_eq!(web, 1.0);
        assert_eq!(share(&store, &mut out, &on(next(), t, "a1", Some("phone-a1"), Step::Otp, None)), -1.0, "no channel named: a bucket of its own, empty");
        let mut staff = on(next(), t, "a1", Some("pc-1"), Step::RecordView, Some(Channel::Web));
        staff.staff_id = Some("s1".into());
        assert_eq!(share(&store, &mut out, &staff), -1.0, "a staff access names its record's customer, not its own");
        let mut nobody = on(next(), t, "a1", Some("phone-a1"), Step::Otp, Some(Channel::App));
        nobody.customer_id = None;
        assert_eq!(share(&store, &mut out, &nobody), -1.0);
        // The day's first login on another channel counts there (the
        // customer's phone, known, through the web this time).
        share(&store, &mut out, &on(next(), t, "a2", Some("phone-a2"), Step::Login, Some(Channel::Web)));
        let web = share(&store, &mut out, &on(next(), t + 1_000, "w1", Some("browser-x"), Step::Otp, Some(Channel::Web)));
        assert!((web - 300.0 / 301.0).abs() < 1e-6, "web {web}");
        // A day later, the customer's login counts again.
        let day = t0 + 86_400_000 + 600 * 60_000;
        share(&store, &mut out, &on(next(), day, "a0", Some("yet-another-phone"), Step::Login, Some(Channel::App)));
        let after = share(&store, &mut out, &on(next(), day + 1_000, "a1", Some("phone-a1"), Step::Otp, Some(Channel::App)));
        assert!((after - 31.0 / 301.0).abs() < 1e-6, "app {after}");
    }

    #[test]
    fn before_the_populations_regions_are_known_a_region_abroad_reads_rare() {
        let t0 = 1_764_000_000_000;
        let share = |store: &FeatureStore, out: &mut Vec<f32>, id: usize, customer: &str, region: &str| {
            let mut e = event(id, t0 + id as i64 * 1_000, customer, "10.0.0.1", "d1", false);
            e.region = Some(region.into());
            store.observe(&e, out);
            get(store, out, "event.region_share")
        };
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        assert_eq!(share(&store, &mut out, 0, "c0", "JP-13"), 0.0, "abroad, by the bank's country");
        assert_eq!(share(&store, &mut out, 1, "c1", "KR-26"), -1.0, "at home: not known yet");
        let none = FeatureStore::new(&FeatureConfig { home_country: String::new(), ..FeatureConfig::default() }).unwrap();
        assert_eq!(share(&none, &mut out, 2, "c2", "JP-13"), -1.0, "no prior");
        // Once the returning customers' regions are known, they speak: a
        // bank whose customers bank from Tokyo does not read it as rare.
        // Each customer's first login is not yet a returning customer's: 50 more.
        for i in 0..crate::baseline::MIN_REGION_SAMPLES as usize + 60 {
            let customer = format!("r{}", i % 50);
            let mut login = event(10 + 2 * i, t0 + 10_000 + i as i64 * 1_000, &customer, "10.0.0.1", "d1", false);
            login.step = Step::Login;
            login.region = Some(if i % 2 == 0 { "JP-13" } else { "KR-11" }.into());
            store.observe(&login, &mut out);
        }
        assert!(share(&store, &mut out, 100_000, "c0", "JP-13") > 0.3);
        assert_eq!(share(&store, &mut out, 100_001, "c0", "US-CA"), 0.0, "never seen");
    }

    #[test]
    fn new_device_and_region_and_hour_profile() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        // 02:00 UTC = 11:00 KST.
        let day = 1_764_036_000_000 - 1_764_036_000_000 % 86_400_000 + 2 * 3_600_000;
        for d in 0..5 {
            store.observe(&event(d, day + d as i64 * 86_400_000, "c1", "10.0.0.1", "phone-a", false), &mut out);
        }
        assert_eq!(get(&store, &out, "customer.hour_seen"), 1.0);
        assert_eq!(get(&store, &out, "customer.new_device"), 0.0);
        let mut night = event(9, day + 5 * 86_400_000 + 16 * 3_600_000, "c1", "10.9.9.9", "phone-b", false);
        night.region = Some("KR-26".into());
        store.observe(&night, &mut out);
        assert_eq!(get(&store, &out, "event.hour"), 3.0);
        assert_eq!(get(&store, &out, "customer.hour_seen"), 0.0);
        assert_eq!(get(&store, &out, "customer.new_device"), 1.0);
        assert_eq!(get(&store, &out, "customer.new_region"), 1.0);
        assert_eq!(get(&store, &out, "customer.prior_events"), 5.0);
    }

    #[test]
    fn only_a_code_or_a_face_match_with_liveness_teaches_devices_hours_and_regions() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        // 02:00 UTC = 11:00 KST: the owner's daytime habit, on phone-a.
        let day = 1_764_036_000_000 - 1_764_036_000_000 % 86_400_000 + 2 * 3_600_000;
        for d in 0..3 {
            store.observe(&event(d, day + d as i64 * 86_400_000, "c1", "10.0.0.1", "phone-a", false), &mut out);
        }
        // 18:00 UTC = 03:00 KST, from Busan on another phone: an attacker
        // with the password passes every check that does not say who they
        // are, a face match on a held-up photo but not its liveness check.
        let night = day + 3 * 86_400_000 + 16 * 3_600_000;
        let step = |id: usize, dt_s: i64, step: Step, failure: bool| {
            let mut e = event(id, night + dt_s * 1_000, "c1", "10.9.9.9", "phone-b", failure);
            e.step = step;
            e.region = Some("KR-26".into());
            e
        };
        let asked = |store: &FeatureStore, out: &[f32]| {
            ["customer.hour_seen", "customer.new_device", "customer.new_region"].map(|n| get(store, out, n))
        };
        let stranger = [0.0, 1.0, 1.0];
        let passes = [Step::Login, Step::Liveness, Step::IdOcr, Step::IdAuthenticity, Step::AccountOpen];
        for (i, s) in passes.into_iter().enumerate() {
            store.observe(&step(10 + i, i as i64 * 30, s, false), &mut out);
            assert_eq!(asked(&store, &out), stranger, "{s:?}, step {i}, read before it teaches");
        }
        // Read after the last of them: none of them taught.
        store.observe(&step(20, 200, Step::Login, false), &mut out);
        assert_eq!(asked(&store, &out), stranger, "after {passes:?}");
        // A face match on another device than the liveness pass teaches nothing either.
        let mut elsewhere = step(21, 230, Step::FaceMatch, false);
        elsewhere.device_id = Some("phone-c".into());
        store.observe(&elsewhere, &mut out);
        store.observe(&step(22, 260, Step::Login, false), &mut out);
        assert_eq!(asked(&store, &out), stranger, "a face match on phone-c beside liveness on phone-b");
        // A face match on the device that passed liveness does teach.
        store.observe(&step(23, 290, Step::FaceMatch, false), &mut out);
        store.observe(&step(24, 320, Step::AccountOpen, false), &mut out);
        assert_eq!(asked(&store, &out), [1.0, 0.0, 0.0]);

        // Another customer, from here on (two hours later).
        let t = night + 2 * 3_600_000;
        let on = |id: usize, dt_s: i64, step: Step, device: &str, failure: bool| {
            let mut e = event(id, t + dt_s * 1_000, "c2", "10.0.0.2", device, failure);
            e.step = step;
            e
        };
        let new_device = |store: &FeatureStore, out: &[f32]| get(store, out, "customer.new_device");
        // A passed code alone teaches: phone-x is known, so phone-y reads new.
        store.observe(&on(30, 0, Step::Otp, "phone-x", false), &mut out);
        store.observe(&on(31, 60, Step::Login, "phone-y", false), &mut out);
        assert_eq!(new_device(&store, &out), 1.0);
        // The pair the other way round (face match, then liveness) teaches too.
        store.observe(&on(32, 120, Step::FaceMatch, "phone-y", false), &mut out);
        store.observe(&on(33, 150, Step::Liveness, "phone-y", false), &mut out);
        store.observe(&on(34, 180, Step::Login, "phone-y", false), &mut out);
        assert_eq!(new_device(&store, &out), 0.0, "face match then liveness on phone-y");
        // A liveness pass more than the middle window before the face match does not pair.
        store.observe(&on(35, 200, Step::Liveness, "phone-z", false), &mut out);
        store.observe(&on(36, 200 + 3_700, Step::FaceMatch, "phone-z", false), &mut out);
        store.observe(&on(37, 200 + 3_730, Step::Login, "phone-z", false), &mut out);
        assert_eq!(new_device(&store, &out), 1.0, "liveness an hour before the face match");
        // A code passed after a burst of failed ones may be the guess that worked: it teaches nothing.
        for k in 0..3 {
            store.observe(&on(40 + k, 4_000 + k as i64, Step::Otp, "guesser", true), &mut out);
        }
        store.observe(&on(43, 4_010, Step::Otp, "guesser", false), &mut out);
        store.observe(&on(44, 4_020, Step::Login, "guesser", false), &mut out);
        assert_eq!(new_device(&store, &out), 1.0, "the guesser's passed code");
    }

    #[test]
    fn history_runs_from_the_oldest_event_learned_from_to_the_newest() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        // Each event reads the history that includes it, as the rules see it.
        let mut observe = |i: usize, at: i64| {
            store.observe(&event(i, at, &format!("c{i}"), &format!("10.0.0.{i}"), &format!("d{i}"), false), &mut out);
            let read = get(&store, &out, "event.history_hours");
            assert_eq!(read, (store.history_ms() as f64 / 3_600_000.0) as f32, "event {i}: the feature is the history, in hours");
            read
        };
        const H: i64 = 3_600_000;
        assert_eq!(store.history_ms(), 0);
        let t0 = 1_764_000_000_000;
        assert_eq!(observe(1, t0), 0.0);
        assert_eq!(observe(2, t0 + 180_000), 0.05);
        // Within the lateness an older event still counts as history.
        assert_eq!(observe(3, t0 - 36_000), 0.06);
        assert_eq!(observe(4, t0 + 2 * H - 36_000), 2.0);
        // A too-late one does not: it is not learned from.
        assert_eq!(observe(5, t0 - 24 * H), 2.0);
        // A quiet night is history: a small bank's stream must not go cold
        // every morning.
        assert_eq!(observe(6, t0 + 16 * H - 36_000), 16.0);
        // A day with no events at all (an outage): history starts over.
        let back = t0 + 40 * H;
        assert_eq!(observe(7, back), 0.0);
        assert_eq!(observe(8, back + 12 * H), 12.0);
    }

    #[test]
    fn code_failures_count_only_failed_codes() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        // An elderly customer: four failed photos and faces, one failed code.
        for (i, step) in [Step::IdOcr, Step::IdOcr, Step::FaceMatch, Step::Liveness, Step::AccountVerify].into_iter().enumerate() {
            let mut e = event(i, t0 + i as i64 * 30_000, "c1", "10.0.0.1", "d1", true);
            e.step = step;
            store.observe(&e, &mut out);
        }
        assert_eq!(get(&store, &out, "customer.failures_10m"), 5.0);
        assert_eq!(get(&store, &out, "customer.code_failures_10m"), 1.0);
        // A passed code is not a failure; failed codes an hour apart leave the short window.
        store.observe(&event(10, t0 + 200_000, "c1", "10.0.0.1", "d1", false), &mut out);
        assert_eq!(get(&store, &out, "customer.code_failures_10m"), 1.0);
        for i in 0..3 {
            store.observe(&event(20 + i, t0 + (i as i64 + 1) * 3_600_000, "c1", "10.0.0.1", "d1", true), &mut out);
        }
        assert_eq!(get(&store, &out, "customer.code_failures_10m"), 1.0);
        assert_eq!(get(&store, &out, "customer.code_failures_24h"), 4.0);
        // Two days later the old failures are gone from every window.
        store.observe(&event(50, t0 + 2 * 86_400_000, "c1", "10.0.0.1", "d1", true), &mut out);
        assert_eq!(get(&store, &out, "customer.code_failures_24h"), 1.0);
        // Under a flood the kept list stays bounded; counts saturate at the cap.
        for i in 0..100 {
            store.observe(&event(100 + i, t0 + 2 * 86_400_000 + (i as i64 + 1) * 1_000, "c1", "10.0.0.1", "d1", true), &mut out);
        }
        assert_eq!(get(&store, &out, "customer.code_failures_24h"), crate::entity::CODE_FAILURES_KEPT as f32);
        assert_eq!(get(&store, &out, "customer.code_failures_10m"), crate::entity::CODE_FAILURES_KEPT as f32);
    }

    #[test]
    fn a_face_match_and_a_liveness_check_teach_the_profile_only_as_a_pair_in_one_place() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        let mut n = 0;
        let mut taught = |customer: &str, at_s: i64, what: Step, device: Option<&str>, ip: Option<&str>| {
            n += 1;
            let mut e = step(n, t0 + at_s * 1_000, what, None, Some(customer), device.unwrap_or("-"), None, false);
            e.device_id = device.map(Into::into);
            e.ip = ip.map(|a| a.parse().unwrap());
            store.observe(&e, &mut out);
            (get(&store, &out, "customer.known_devices"), get(&store, &out, "customer.profile_hours"))
        };
        // A face match on the phone and a liveness check on the laptop: no
        // pair, so neither device nor hour is the customer's.
        assert_eq!(taught("c1", 0, Step::FaceMatch, Some("phone"), Some("121.1.2.3")), (0.0, 0.0));
        assert_eq!(taught("c1", 10, Step::Liveness, Some("laptop"), Some("121.1.2.3")), (0.0, 0.0));
        // The laptop's face match completes a pair there: it is known.
        assert_eq!(taught("c1", 20, Step::FaceMatch, Some("laptop"), Some("121.1.2.3")), (1.0, 1.0));
        // Without a device, one subnet is one place...
        assert_eq!(taught("c2", 0, Step::FaceMatch, None, Some("121.1.2.3")), (0.0, 0.0));
        assert_eq!(taught("c2", 10, Step::Liveness, None, Some("121.1.2.40")).1, 1.0);
        // ... two subnets are not, and neither are two events that name no
        // place at all.
        assert_eq!(taught("c3", 0, Step::FaceMatch, None, Some("121.1.2.3")), (0.0, 0.0));
        assert_eq!(taught("c3", 10, Step::Liveness, None, Some("175.9.8.7")), (0.0, 0.0));
        assert_eq!(taught("c4", 0, Step::FaceMatch, None, None), (0.0, 0.0));
        assert_eq!(taught("c4", 10, Step::Liveness, None, None), (0.0, 0.0));
    }

    #[test]
    fn face_shown_s_counts_only_a_face_match_and_a_liveness_check_passed_on_the_events_device() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        let mut n = 0;
        let mut shown = |at_s: i64, what: Step, device: &str, failure: bool| {
            n += 1;
            store.observe(&step(n, t0 + at_s * 1_000, what, None, Some("c1"), device, None, failure), &mut out);
            get(&store, &out, "customer.face_shown_s")
        };
        assert_eq!(shown(0, Step::Login, "phone", false), -1.0, "nothing shown yet");
        // A face match alone passes on a held-up photo: nothing.
        assert_eq!(shown(10, Step::FaceMatch, "phone", false), -1.0);
        // A failed liveness check pairs with nothing.
        assert_eq!(shown(20, Step::Liveness, "phone", true), -1.0);
        // The pair, on one device: counted from the older of the two.
        assert_eq!(shown(30, Step::Liveness, "phone", false), 20.0);
        assert_eq!(shown(100, Step::AccountVerify, "phone", true), 90.0);
        // Another device of the customer's has shown nothing.
        assert_eq!(shown(110, Step::Otp, "laptop", false), -1.0);
        // A liveness check on the laptop breaks the phone's pair: the latest
        // of each must pass in one place.
        assert_eq!(shown(120, Step::Liveness, "laptop", false), -1.0);
        assert_eq!(shown(130, Step::Otp, "phone", false), -1.0);
        // A face match on the laptop pairs with it there, and the count runs on past the window.
        assert_eq!(shown(140, Step::FaceMatch, "laptop", false), 20.0);
        assert_eq!(shown(140 + 7_200, Step::Login, "laptop", false), 7_220.0);
        // A failed face match does not undo the pair; an event dated before
        // the pair, arriving after it, cannot borrow it.
        assert_eq!(shown(150, Step::FaceMatch, "laptop", true), 30.0);
        assert_eq!(shown(125, Step::Otp, "laptop", false), -1.0);
        // Checks an hour and more apart are no pair.
        assert_eq!(shown(140 + 7_300, Step::Liveness, "laptop", false), -1.0);
        // Without device ids the pair would be the subnet's, a carrier exit's
        // perhaps: it counts for nobody.
        let mut bare = |id: usize, at_s: i64, what: Step| {
            let mut e = step(id, t0 + (10_000 + at_s) * 1_000, what, None, Some("c2"), "x", None, false);
            e.device_id = None;
            store.observe(&e, &mut out);
            get(&store, &out, "customer.face_shown_s")
        };
        bare(50, 0, Step::FaceMatch);
        bare(51, 10, Step::Liveness);
        assert_eq!(bare(52, 20, Step::Otp), -1.0);
    }

    #[test]
    fn code_failure_pace_is_the_gap_to_the_last_failed_code_over_the_longest_pause_before_it() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        let pace = |store: &FeatureStore, out: &[f32]| get(store, out, "customer.code_failure_pace");
        let fail = |id: usize, at_s: i64| event(id, t0 + at_s * 1_000, "c1", "10.0.0.1", &format!("d{id}"), true);
        // Six guesses ten minutes apart: each is in step once two came before it.
        for i in 0..6 {
            store.observe(&fail(i, i as i64 * 600), &mut out);
            let expected = if i < 2 { 0.0 } else { 1.0 };
            assert_eq!(pace(&store, &out), expected, "guess {i}");
        }
        // A passed code is not a failed one: it reads 0 and moves nothing.
        store.observe(&event(10, t0 + 3_100 * 1_000, "c1", "10.0.0.1", "d10", false), &mut out);
        assert_eq!(pace(&store, &out), 0.0);
        // The owner's typo nine hours after the last guess (at 3,000 s): 54 pauses late.
        store.observe(&fail(20, 3_000 + 9 * 3_600), &mut out);
        assert_eq!(pace(&store, &out), 54.0);
        // Their second typo half a minute on is measured against that nine-hour pause.
        store.observe(&fail(21, 3_000 + 9 * 3_600 + 30), &mut out);
        assert_eq!(pace(&store, &out), 30.0 / 32_400.0);
        // Two days later the night's failures have left the long window.
        store.observe(&fail(22, 3_000 + 9 * 3_600 + 30 + 2 * 86_400), &mut out);
        assert_eq!(pace(&store, &out), 0.0);
        // A guesser who doubles each wait is never more than two pauses late;
        // over the mean gap, the wait of 960 s and every one after it would
        // have read more than four.
        let other = |id: usize, at_s: i64| event(id, t0 + (3 * 86_400 + at_s) * 1_000, "c2", "10.0.0.2", "e", true);
        let mut at = 0;
        for (k, wait) in [0, 60, 120, 240, 480, 960, 1_920, 3_840].into_iter().enumerate() {
            at += wait;
            store.observe(&other(30 + k, at), &mut out);
            assert!(pace(&store, &out) <= 2.0, "wait {wait}: {}", pace(&store, &out));
        }
        // Failures in the same second pause for a second, not for nothing.
        let third = |id: usize, at_s: i64| event(id, t0 + (3 * 86_400 + 10_000 + at_s) * 1_000, "c3", "10.0.0.3", "f", true);
        store.observe(&third(40, 0), &mut out);
        store.observe(&third(41, 0), &mut out);
        store.observe(&third(42, 5), &mut out);
        assert_eq!(pace(&store, &out), 5.0);
        // Arrival order is not time order: a late-arriving earlier failure
        // (within the allowed lateness) still counts where it belongs.
        store.observe(&third(43, 10), &mut out);
        // Backdated: measured against the failures before it only (0, 0, 5).
        store.observe(&third(44, 7), &mut out);
        assert_eq!(pace(&store, &out), 0.4);
        store.observe(&third(45, 20), &mut out);
        // Earlier: 0, 0, 5, 7, 10; the longest pause is 5 s, the gap 10 s.
        assert_eq!(pace(&store, &out), 2.0);
    }

    #[test]
    fn only_a_customer_who_has_logged_in_vouches_for_an_address() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        let at = |id: usize, dt_s: i64, step: Step, customer: &str, ip: &str, failure: bool| {
            let mut e = event(id, t0 + dt_s * 1_000, customer, ip, &format!("d-{customer}"), failure);
            e.step = step;
            e
        };
        // A farm ages made-up ids: one failed login each from the exit's /24, a day
        // and a half before it uses them.
        for k in 0..6 {
            store.observe(&at(k, 0, Step::Login, &format!("made-up-{k}"), &format!("203.0.113.{}", 20 + k), true), &mut out);
        }
        // One real customer logs in through the same /24 the next day.
        store.observe(&at(10, 86_400, Step::Login, "owner", "203.0.113.40", false), &mut out);
        // Then the made-up ids come back through the same /24, then a fresh identity onboards.
        let back = 86_400 * 3 / 2;
        for k in 0..6 {
            store.observe(&at(20 + k, back + k as i64, Step::Otp, &format!("made-up-{k}"), &format!("203.0.113.{}", 20 + k), false), &mut out);
        }
        store.observe(&at(30, back + 10, Step::Login, "owner", "203.0.113.40", false), &mut out);
        store.observe(&at(31, back + 20, Step::IdOcr, "fresh", "203.0.113.9", false), &mut out);
        assert_eq!(get(&store, &out, "subnet.distinct_returning_24h"), 1.0, "the made-up ids are a day and a half old, never logged in");
        assert_eq!(get(&store, &out, "customer.returning"), 0.0);
        // A made-up id onboarding is a new identity, however old it is.
        store.observe(&at(32, back + 30, Step::IdOcr, "made-up-0", "203.0.113.20", false), &mut out);
        assert_eq!(get(&store, &out, "customer.returning"), 0.0);
        assert_eq!(get(&store, &out, "subnet.distinct_new_identities_24h"), 2.0);
        // The owner was returning before this event; a login makes a customer so
        // from the next event on, never on the event itself.
        store.observe(&at(33, back + 40, Step::Otp, "owner", "203.0.113.40", false), &mut out);
        assert_eq!(get(&store, &out, "customer.returning"), 1.0);
        // A customer the store never saw onboard opened their account before
        // the stream: their first login is what an exit carries all day, and
        // counts them there. Not on the device: a password alone opens a
        // stolen account on a fresh phone as well.
        store.observe(&at(34, back + 50, Step::Login, "newcomer", "203.0.113.41", false), &mut out);
        assert_eq!(get(&store, &out, "customer.returning"), 0.0);
        assert_eq!(get(&store, &out, "subnet.distinct_returning_24h"), 2.0);
        assert_eq!(get(&store, &out, "ip.distinct_returning_24h"), 1.0);
        assert_eq!(get(&store, &out, "device.distinct_returning_total"), 0.0);
        store.observe(&at(35, back + 60, Step::Otp, "newcomer", "203.0.113.41", false), &mut out);
        assert_eq!(get(&store, &out, "customer.returning"), 1.0);
        assert_eq!(get(&store, &out, "subnet.distinct_returning_24h"), 2.0);
        assert_eq!(get(&store, &out, "device.distinct_returning_total"), 1.0);
        // The fresh identity the store saw onboard does not vouch with the
        // login its onboarding earned: a farm's would, for the exit it came through.
        store.observe(&at(39, back + 65, Step::Login, "fresh", "203.0.113.9", false), &mut out);
        assert_eq!(get(&store, &out, "ip.distinct_returning_24h"), 0.0);
        assert_eq!(get(&store, &out, "subnet.distinct_returning_24h"), 2.0);
        // A failed event adds no returning customer (anyone can send a customer's
        // wrong password), and a returning customer's failed check is no new identity.
        store.observe(&at(36, back + 70, Step::Login, "owner", "203.0.113.77", true), &mut out);
        assert_eq!(get(&store, &out, "ip.distinct_returning_24h"), 0.0);
        store.observe(&at(37, back + 80, Step::AccountVerify, "owner", "203.0.113.77", true), &mut out);
        assert_eq!((get(&store, &out, "ip.distinct_returning_24h"), get(&store, &out, "ip.distinct_new_identities_24h")), (0.0, 0.0));
        store.observe(&at(38, back + 90, Step::Otp, "owner", "203.0.113.77", false), &mut out);
        assert_eq!(get(&store, &out, "ip.distinct_returning_24h"), 1.0);
    }

    #[test]
    fn a_device_counts_the_networks_it_came_through() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        // A tablet at one office: three exits of one /24.
        for (k, ip) in ["147.6.99.206", "147.6.99.209", "147.6.99.207", "147.6.99.206"].iter().enumerate() {
            store.observe(&event(k, t0 + k as i64 * 60_000, &format!("c{k}"), ip, "tablet", false), &mut out);
        }
        assert_eq!((get(&store, &out, "device.distinct_ips_total"), get(&store, &out, "device.distinct_subnets_total")), (3.0, 1.0));
        // The next /24 over is a second network.
        store.observe(&event(9, t0 + 600_000, "c9", "147.6.98.206", "tablet", false), &mut out);
        assert_eq!((get(&store, &out, "device.distinct_ips_total"), get(&store, &out, "device.distinct_subnets_total")), (4.0, 2.0));
        // IPv6: a /64 is one network, whatever the interface id.
        store.observe(&event(10, t0 + 660_000, "c10", "2001:2d8:2724:e97a::1", "phone", false), &mut out);
        store.observe(&event(11, t0 + 720_000, "c10", "2001:2d8:2724:e97a:e108:32d8:b2ad:9951", "phone", false), &mut out);
        assert_eq!((get(&store, &out, "device.distinct_ips_total"), get(&store, &out, "device.distinct_subnets_total")), (2.0, 1.0));
        store.observe(&event(12, t0 + 780_000, "c10", "2001:2d8:2724:e97b::1", "phone", false), &mut out);
        assert_eq!(get(&store, &out, "device.distinct_subnets_total"), 2.0);
    }

    #[test]
    fn a_device_is_vouched_for_by_its_first_passed_code_only() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        let on = |id: usize, dt_s: i64, step: Step, device: &str, failure: bool| {
            let mut e = event(id, t0 + dt_s * 1_000, "c1", "10.0.0.1", device, failure);
            e.step = step;
            e
        };
        // A password and a good ID photo neither make the phone known nor vouch for it.
        store.observe(&on(1, 0, Step::Login, "phone", false), &mut out);
        store.observe(&on(2, 10, Step::IdOcr, "phone", false), &mut out);
        assert_eq!(get(&store, &out, "customer.known_devices"), 0.0);
        store.observe(&on(3, 20, Step::Otp, "phone", false), &mut out);
        assert_eq!(get(&store, &out, "customer.device_passed_code_s"), -1.0, "asked before this event's code");
        assert_eq!(get(&store, &out, "customer.new_device"), 0.0);
        store.observe(&on(4, 80, Step::Login, "phone", false), &mut out);
        assert_eq!(get(&store, &out, "customer.device_passed_code_s"), 60.0);
        // A second passed code does not move the first one's time.
        store.observe(&on(5, 100, Step::Otp, "phone", false), &mut out);
        store.observe(&on(6, 140, Step::Login, "phone", false), &mut out);
        assert_eq!(get(&store, &out, "customer.device_passed_code_s"), 120.0);
        // A stranger's device with the password, failed codes and a passed photo stays unvouched.
        store.observe(&on(7, 150, Step::Login, "stranger", false), &mut out);
        store.observe(&on(8, 160, Step::Otp, "stranger", true), &mut out);
        store.observe(&on(9, 170, Step::Liveness, "stranger", false), &mut out);
        store.observe(&on(10, 180, Step::Login, "stranger", false), &mut out);
        assert_eq!(get(&store, &out, "customer.device_passed_code_s"), -1.0);
        // A backdated code (within the lateness) is stamped with the newest time seen.
        store.observe(&on(11, 120, Step::AccountVerify, "stranger", false), &mut out);
        store.observe(&on(12, 190, Step::Login, "stranger", false), &mut out);
        assert_eq!(get(&store, &out, "customer.device_passed_code_s"), 10.0);
        // An event dated before that vouch does not borrow it.
        store.observe(&on(14, 175, Step::Login, "stranger", false), &mut out);
        assert_eq!(get(&store, &out, "customer.device_passed_code_s"), -1.0);
        // A code passed right after a burst of failed ones may be the guess that worked.
        for k in 0..3 {
            store.observe(&on(20 + k, 200 + k as i64, Step::Otp, "guesser", true), &mut out);
        }
        store.observe(&on(30, 210, Step::Otp, "guesser", false), &mut out);
        store.observe(&on(31, 220, Step::Login, "guesser", false), &mut out);
        assert_eq!(get(&store, &out, "customer.device_passed_code_s"), -1.0);
        // A stream of new devices (each passing a face match and liveness)
        // pushes out unvouched ones, never the owner's phone.
        for k in 0..40 {
            store.observe(&on(100 + k, 300 + k as i64, Step::Liveness, &format!("new-{k}"), false), &mut out);
            store.observe(&on(1_000 + k, 300 + k as i64, Step::FaceMatch, &format!("new-{k}"), false), &mut out);
        }
        assert_eq!(get(&store, &out, "customer.known_devices"), crate::entity::PROFILE_DEVICES as f32, "the pairs taught every device they could");
        store.observe(&on(200, 400, Step::Login, "phone", false), &mut out);
        assert_eq!(get(&store, &out, "customer.device_passed_code_s"), 380.0);
        // An event without a device is on no vouched device.
        let mut bare = on(13, 200, Step::Login, "phone", false);
        bare.device_id = None;
        store.observe(&bare, &mut out);
        assert_eq!(get(&store, &out, "customer.device_passed_code_s"), -1.0);
    }

    #[test]
    fn too_late_events_are_counted_and_read_but_change_nothing() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        store.observe(&event(1, t0, "c1", "10.0.0.1", "d1", false), &mut out);
        let o = store.observe(&event(2, t0 - 301_000, "c1", "10.0.0.1", "d1", true), &mut out);
        assert!(o.late);
        assert_eq!(get(&store, &out, "event.late"), 1.0);
        assert_eq!(get(&store, &out, "customer.events_24h"), 1.0);
        assert_eq!(get(&store, &out, "customer.failures_24h"), 0.0);
        let o = store.observe(&event(3, t0 - 299_000, "c1", "10.0.0.1", "d1", true), &mut out);
        assert!(!o.late);
        assert_eq!(get(&store, &out, "customer.failures_24h"), 1.0);
        assert_eq!(store.stats().late_events, 1);
    }

    #[test]
    fn idle_entities_expire() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        for i in 0..100 {
            store.observe(&event(i, t0, &format!("c{i}"), &format!("10.0.{}.1", i % 50), &format!("d{i}"), false), &mut out);
        }
        assert_eq!(store.entity_count(EntityKind::Device), 100);
        store.observe(&event(1000, t0 + 2 * 86_400_000, "late-comer", "10.9.0.1", "dz", false), &mut out);
        store.sweep();
        assert_eq!(store.entity_count(EntityKind::Ip), 1);
        assert_eq!(store.entity_count(EntityKind::Subnet), 1);
        // Identities (customers, devices) are kept for 30 days: slow attacks add up.
        assert_eq!(store.entity_count(EntityKind::Customer), 101);
        assert_eq!(store.entity_count(EntityKind::Device), 101);
        assert!(store.stats().expired >= 100);
    }

    #[test]
    fn background_sweeps_leave_observe_alone_until_asked() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        store.sweep_in_background();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        for i in 0..10 {
            store.observe(&event(i, t0 + i as i64 * 4 * 3_600_000, &format!("c{i}"), &format!("10.0.{i}.1"), &format!("d{i}"), false), &mut out);
        }
        assert_eq!(store.entity_count(EntityKind::Ip), 10, "no inline sweep");
        assert!(store.sweep_due() > 0);
        assert!(store.entity_count(EntityKind::Ip) < 10);
    }

    #[test]
    fn an_idle_entity_starts_afresh_on_its_next_event_swept_or_not() {
        const DAY: i64 = 86_400_000;
        let t0 = 1_764_000_000_000;
        // The features of three returns: an address after three days (past its
        // day and lateness), a customer after 31 days (past the 30-day profile),
        // and a late event naming the address again.
        let run = |sweeps: Option<bool>| {
            let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
            let mut out = vec![0.0; store.catalog().len()];
            if sweeps.is_some() {
                store.sweep_in_background();
            }
            let sweep = |at: &str| {
                if sweeps == Some(true) {
                    assert!(store.sweep_due() > 0, "the sweep removes the idle entities ({at})");
                }
            };
            for i in 0..3 {
                store.observe(&event(i, t0 + i as i64 * 60_000, &format!("c{i}"), "10.0.0.1", &format!("d{i}"), false), &mut out);
            }
            // Other addresses move the clock first.
            store.observe(&event(10, t0 + 3 * DAY, "c10", "10.9.0.1", "d10", false), &mut out);
            sweep("day 3");
            store.observe(&event(11, t0 + 3 * DAY + 1000, "c11", "10.0.0.1", "d11", false), &mut out);
            let address = out.clone();
            store.observe(&event(12, t0 + 31 * DAY, "c12", "10.8.0.1", "d12", false), &mut out);
            sweep("day 31");
            store.observe(&event(13, t0 + 31 * DAY + 1000, "c0", "10.7.0.1", "d0", false), &mut out);
            let customer = out.clone();
            store.observe(&event(14, t0 + 31 * DAY - 3_600_000, "c14", "10.0.0.1", "d14", false), &mut out);
            (address, customer, out)
        };
        let inline = run(None);
        let catalog_of = FeatureStore::new(&FeatureConfig::default()).unwrap();
        assert_eq!(get(&catalog_of, &inline.0, "ip.age_s"), 0.0, "the address is new again");
        assert_eq!(get(&catalog_of, &inline.1, "customer.prior_events"), 0.0, "the customer is new again");
        assert_eq!(get(&catalog_of, &inline.2, "ip.age_s"), 0.0, "a late event finds no address to read");
        assert_eq!(run(Some(true)), inline, "swept off the event path");
        assert_eq!(run(Some(false)), inline, "not swept at all");
    }

    #[test]
    fn a_step_without_a_duration_is_timed_by_the_gap_since_its_sessions_last_event() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        let untimed = |i: usize, at: i64, customer: &str| Event { duration_ms: None, ..event(i, at, customer, "10.0.0.1", "d1", false) };
        store.observe(&untimed(0, t0, "c1"), &mut out);
        assert_eq!(get(&store, &out, "session.steps"), 0.0, "a session's first event has nothing to be timed against");
        store.observe(&untimed(1, t0 + 2_500, "c1"), &mut out);
        store.observe(&untimed(2, t0 + 6_500, "c1"), &mut out);
        assert_eq!(get(&store, &out, "session.steps"), 2.0);
        assert_eq!(get(&store, &out, "session.step_ms_min"), 2_500.0);
        assert_eq!(get(&store, &out, "session.step_ms_mean"), 3_250.0);
        // A reported duration is taken as it is.
        store.observe(&event(3, t0 + 60_000, "c1", "10.0.0.1", "d1", false), &mut out);
        assert_eq!(get(&store, &out, "session.step_ms_min"), 900.0);
        // Another session's events are not this one's clock.
        store.observe(&untimed(4, t0 + 61_000, "c2"), &mut out);
        assert_eq!(get(&store, &out, "session.steps"), 0.0);
        // Nor is a session idle past its time to live, swept or not: three days is no step's duration.
        store.observe(&untimed(5, t0 + 3 * 86_400_000, "c1"), &mut out);
        assert_eq!(get(&store, &out, "session.steps"), 0.0);
    }

    #[test]
    fn an_implied_session_ends_after_a_pause_or_an_hour() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        const MIN: i64 = 60_000;
        let sessionless = |i: usize, at: i64, step: Step| Event { session_id: None, step, ..event(i, at, "c1", "10.0.0.1", "d1", false) };
        let methods = |out: &[f32]| get(&store, out, "session.methods_ok");
        store.observe(&sessionless(0, t0, Step::IdAuthenticity), &mut out);
        store.observe(&sessionless(1, t0 + 20 * MIN, Step::Liveness), &mut out);
        assert_eq!(methods(&out), 2.0, "twenty minutes apart: one session, across any half-hour mark");
        store.observe(&sessionless(2, t0 + 55 * MIN, Step::Otp), &mut out);
        assert_eq!(methods(&out), 1.0, "after a 35-minute pause, another session");
        for k in 1..=4 {
            store.observe(&sessionless(2 + k, t0 + 55 * MIN + k as i64 * 20 * MIN, Step::Otp), &mut out);
        }
        assert_eq!(get(&store, &out, "session.events_24h"), 1.0, "an hour on, busy or not, another session");
    }

    #[test]
    fn a_record_access_without_a_count_touches_one_record() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        let access = |i: usize, records: Option<u64>| {
            let mut e = event(i, t0 + i as i64 * 1000, &format!("c{i}"), "10.0.0.1", "desk-1", false);
            e.step = Step::RecordView;
            e.staff_id = Some("st1".into());
            e.records = records;
            e
        };
        for i in 0..30 {
            store.observe(&access(i, None), &mut out);
        }
        assert_eq!(get(&store, &out, "staff.records_1h"), 30.0, "an event per record, no count given");
        store.observe(&access(30, Some(12)), &mut out);
        assert_eq!(get(&store, &out, "staff.records_1h"), 42.0, "a count given is taken as it is");
    }

    #[test]
    fn a_staff_members_pace_today_is_their_accesses_over_the_hours_they_worked() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        let at = |ts: &str| crate::event::parse_rfc3339_ms(ts).unwrap();
        let access = |i: usize, ts: &str, records: u64| {
            let mut e = event(i, at(ts), &format!("c{i}"), "10.0.0.1", "desk-1", false);
            e.step = Step::RecordExport;
            e.staff_id = Some("st1".into());
            e.records = Some(records);
            e
        };
        let today = |store: &FeatureStore, out: &[f32]| ["staff.hours_today", "staff.accesses_today", "staff.records_today"].map(|n| get(store, out, n));
        store.observe(&access(0, "2026-11-02T09:10:00+09:00", 500), &mut out);
        assert_eq!(today(&store, &out), [1.0, 1.0, 500.0], "this access included");
        store.observe(&access(1, "2026-11-02T09:50:00+09:00", 1), &mut out);
        store.observe(&access(2, "2026-11-02T13:05:00+09:00", 1), &mut out);
        assert_eq!(today(&store, &out), [2.0, 3.0, 502.0], "an export of hundreds is one access");
        // The next local day starts afresh.
        store.observe(&access(3, "2026-11-03T08:30:00+09:00", 2), &mut out);
        assert_eq!(today(&store, &out), [1.0, 1.0, 2.0]);
    }

    #[test]
    fn a_refused_night_does_not_become_the_staff_members_habit() {
        let at = |ts: &str| crate::event::parse_rfc3339_ms(ts).unwrap();
        // Days A and B: a day's work, then records at 23:00. Day C: a morning
        // (it closes day B), then 23:05 again. An hour is a habit once worked
        // on two days.
        let read_night_c = |refuse_a: bool| {
            let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
            let mut out = vec![0.0; store.catalog().len()];
            let mut n = 0;
            let mut access = |ts: i64| {
                n += 1;
                let mut e = event(n, ts, &format!("c{n}"), "10.0.0.1", "desk-1", false);
                e.step = Step::RecordView;
                e.staff_id = Some("st1".into());
                store.observe(&e, &mut out)
            };
            let day_work = |access: &mut dyn FnMut(i64) -> Observation, day: &str| {
                for i in 0..20 {
                    access(at(&format!("{day}T10:00:00+09:00")) + i * 900_000);
                }
            };
            day_work(&mut access, "2026-11-02");
            for i in 0..30 {
                let ts = at("2026-11-02T23:00:00+09:00") + i * 60_000;
                let seen = access(ts);
                if refuse_a {
                    store.refuse_staff_day(&seen.keys, ts, true);
                }
            }
            day_work(&mut access, "2026-11-03");
            access(at("2026-11-03T23:00:00+09:00"));
            access(at("2026-11-03T23:10:00+09:00"));
            access(at("2026-11-04T10:00:00+09:00"));
            access(at("2026-11-04T23:05:00+09:00"));
            ["staff.hour_seen", "staff.hour_habit", "staff.days_active", "staff.typical_daily_records", "staff.days_since_refused"].map(|n| get(&store, &out, n))
        };
        // Learned: 23:00 was worked on two days, and a day is (50 + 22) / 2 records.
        assert_eq!(read_night_c(false), [1.0, 1.0, 2.0, 36.0, crate::NEVER_REFUSED_DAYS]);
        // Refused: day A taught nothing; day B alone makes 23:00 seen, but no
        // habit yet. Day A is two days before day C.
        assert_eq!(read_night_c(true), [1.0, 0.0, 1.0, 22.0, 2.0]);
    }

    #[test]
    fn entity_api_reads_features_by_text_key() {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; store.catalog().len()];
        store.observe(&event(1, 1_764_000_000_000, "c1", "10.0.0.1", "d1", true), &mut out);
        let f = store.entity_features(EntityKind::Subnet, "10.0.0.0/24").unwrap();
        assert!(f.contains(&("subnet.failures_10m".to_owned(), 1.0)));
        assert!(store.entity_features(EntityKind::Ip, "10.0.0.2").is_none());
    }

    fn capped(cap: usize) -> FeatureStore {
        FeatureStore::new(&FeatureConfig { max_entities: crate::config::EntityCaps::all(cap), ..Default::default() }).unwrap()
    }

    #[test]
    fn a_spray_with_event_time_standing_still_stays_under_the_cap() {
        let store = capped(1000);
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        for i in 0..20_000u32 {
            let ip = std::net::Ipv6Addr::from(u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
            store.observe(&event(i as usize, t0, &format!("c{i}"), &ip.to_string(), &format!("d{i}"), false), &mut out);
            for kind in [EntityKind::Ip, EntityKind::Subnet, EntityKind::Device, EntityKind::Customer, EntityKind::Session] {
                assert!(store.entity_count(kind) <= 1000, "{kind}: {} live after {i} events", store.entity_count(kind));
            }
        }
        let stats = store.stats();
        assert!(store.entity_count(EntityKind::Device) >= 850, "falls to about 90%, not far below: {}", store.entity_count(EntityKind::Device));
        assert_eq!(stats.evicted[EntityKind::Device.index()] as usize + store.entity_count(EntityKind::Device), 20_000);
        assert_eq!(stats.expired, 0);
    }

    #[test]
    fn the_least_recently_seen_go_first_and_hot_entities_survive() {
        let store = capped(1000);
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        // Ten hot devices, seen every second; a stream of fresh ones, each once.
        for i in 0..5_000i64 {
            let ts = t0 + i * 1000;
            store.observe(&event(i as usize, ts, "hot", "10.0.0.1", &format!("hot-{}", i % 10), false), &mut out);
            store.observe(&event(i as usize, ts, "cold", "10.0.0.2", &format!("cold-{i}"), false), &mut out);
        }
        for d in 0..10 {
            assert!(store.entity_features(EntityKind::Device, &format!("hot-{d}")).is_some(), "hot device {d} was evicted");
        }
        // The survivors among the fresh devices are the most recent ones.
        assert!(store.entity_features(EntityKind::Device, "cold-4999").is_some());
        assert!(store.entity_features(EntityKind::Device, "cold-4200").is_some());
        let oldest_alive = (0..5000).find(|i| store.entity_features(EntityKind::Device, &format!("cold-{i}")).is_some()).unwrap();
        assert!(oldest_alive >= 4000 - 10, "device cold-{oldest_alive} outlived newer ones");
        assert!(store.stats().evicted[EntityKind::Device.index()] >= 3_900);
        assert_eq!(store.stats().evicted[EntityKind::Ip.index()], 0);
    }

    #[test]
    fn background_mode_leaves_eviction_to_the_sweeper_until_it_falls_behind() {
        let store = capped(800);
        store.sweep_in_background();
        let mut out = vec![0.0; store.catalog().len()];
        let t0 = 1_764_000_000_000;
        for i in 0..850 {
            store.observe(&event(i, t0, "c", "10.0.0.1", &format!("d{i}"), false), &mut out);
        }
        assert_eq!(store.entity_count(EntityKind::Device), 850, "within an eighth over the cap: left to the sweeper");
        store.sweep_due();
        assert!(store.entity_count(EntityKind::Device) <= 720 + 8);
        for i in 0..2_000 {
            store.observe(&event(i, t0, "c", "10.0.0.1", &format!("e{i}"), false), &mut out);
            assert!(store.entity_count(EntityKind::Device) <= 900, "hard bound: cap plus an eighth");
        }
    }

    #[test]
    fn automation_agents() {
        assert!(is_automation_agent("Mozilla/5.0 (X11) HeadlessChrome/119.0"));
        assert!(is_automation_agent("python-requests/2.31"));
        assert!(!is_automation_agent("Mozilla/5.0 (Linux; Android 14) KBank/5.2 okhttp/4.12"));
    }

    /// Events for the snapshot tests: many customers, shared addresses and
    /// devices, failures, varied durations and steps (durations feed the baselines).
    fn snapshot_stream(from: usize, to: usize) -> Vec<Event> {
        (from..to)
            .map(|i| {
                let mut e = event(i, 1_764_000_000_000 + i as i64 * 7_000, &format!("c{}", i % 97), &format!("10.0.{}.{}", i % 5, i % 13), &format!("d{}", i % 41), i % 7 == 0);
                e.duration_ms = Some(300 + (i as u64 * 37) % 4_000);
                e.step = [Step::Otp, Step::Login, Step::IdOcr, Step::FaceMatch][i % 4];
                e
            })
            .collect()
    }

    #[test]
    fn a_restored_store_goes_on_exactly_as_the_original() {
        let config = FeatureConfig::default();
        let original = FeatureStore::new(&config).unwrap();
        let mut out = vec![0.0; original.catalog().len()];
        for e in snapshot_stream(0, 3_000) {
            original.observe(&e, &mut out);
        }
        // Through serde, as a snapshot file carries it.
        let saved = serde_json::to_vec(&original.export_state()).unwrap();
        let state: StoreState = serde_json::from_slice(&saved).unwrap();
        assert_eq!(state.entity_count(), EntityKind::ALL.iter().map(|k| original.entity_count(*k)).sum::<usize>());
        let restored = FeatureStore::new(&config).unwrap();
        restored.restore_state(state).unwrap();
        let mut again = vec![0.0; restored.catalog().len()];
        for e in snapshot_stream(3_000, 4_000) {
            original.observe(&e, &mut out);
            restored.observe(&e, &mut again);
            for (slot, (a, b)) in out.iter().zip(&again).enumerate() {
                assert!(a.to_bits() == b.to_bits(), "{}: {a} != {b} after the restore", original.catalog().name(slot));
            }
        }
        assert_eq!(original.stats(), restored.stats());
        assert_eq!(original.watermark_ms(), restored.watermark_ms());
        assert_eq!(original.history_ms(), restored.history_ms());
        assert!(restored.history_ms() > 0);
    }

    #[test]
    fn state_saved_under_another_key_or_windows_is_refused() {
        let original = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; original.catalog().len()];
        for e in snapshot_stream(0, 50) {
            original.observe(&e, &mut out);
        }
        let other_key = FeatureStore::new(&FeatureConfig { hash_seed: 99, ..FeatureConfig::default() }).unwrap();
        let err = other_key.restore_state(original.export_state()).unwrap_err();
        assert!(err.to_string().contains("another entity-hash key"), "{err}");
        assert_eq!(other_key.entity_count(EntityKind::Customer), 0, "a refused state leaves the store as it was");
        let other_windows = FeatureStore::new(&FeatureConfig { short_window: std::time::Duration::from_secs(1_200), ..FeatureConfig::default() }).unwrap();
        assert!(other_windows.restore_state(original.export_state()).is_err());
    }

}
