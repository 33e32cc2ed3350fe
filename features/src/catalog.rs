//! The feature catalog: every feature's name and slot, fixed at start-up.
//!
//! The store writes each event's features into a flat `f32` vector; rules and
//! the model find a feature by name once, at load time, and read its slot on
//! the hot path. Names are `event.hour`, `ip.events_10m`,
//! `id_doc.distinct_customers_24h`, `customer.new_device`, and so on.

use std::collections::HashMap;

use crate::config::Windows;
use crate::keys::{EntityKind, KIND_COUNT};

/// At most this many distinct-count relations per entity kind.
pub const MAX_RELATIONS: usize = 5;

// An entity holds MAX_RELATIONS distinct sets: a kind given one more
// relation would index past them at its first event, so it fails the build.
const _: () = {
    let mut i = 0;
    while i < KIND_COUNT {
        assert!(relations(EntityKind::ALL[i]).len() <= MAX_RELATIONS, "a kind counts more relations than an entity holds (MAX_RELATIONS)");
        i += 1;
    }
};

/// What an entity counts distinct members of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Entities of another kind seen with it.
    Kind(EntityKind),
    /// Returning customers: ones who have logged in successfully (a made-up
    /// id cannot, however long ago it was first seen), counted from their
    /// next passed event. What a shared address or device carries honestly,
    /// and what the blast-radius guard counts. An address (and its /24)
    /// counts a customer the store never saw onboard from their first
    /// successful login: they opened their account before the stream began,
    /// and an exit's logins are most of what it carries.
    Returning,
    /// Customers onboarding (an onboarding step) who are not returning: the
    /// fresh identities a proxy or a device farm brings.
    NewIdentity,
}

/// For each kind, what it counts distinct members of. A device counts the
/// /24s (IPv6: /64s) it came through, not the ID documents (its fresh
/// identities say as much): a farm that moves between networks is told
/// from a tablet that stays at one office's few exits. An account counts
/// the devices it was given from: a mule's recruits give it from their own
/// phones, a household from the one it shares.
pub const fn relations(kind: EntityKind) -> &'static [Relation] {
    use EntityKind::*;
    use Relation::{Kind as K, NewIdentity, Returning};
    match kind {
        Customer => &[K(Device), K(Ip), K(IdDoc)],
        IdDoc => &[K(Customer), K(Device), K(Ip)],
        Ip => &[K(Customer), K(IdDoc), K(Device), Returning, NewIdentity],
        Subnet => &[K(Customer), K(Ip), K(IdDoc), Returning, NewIdentity],
        Device => &[K(Customer), K(Subnet), K(Ip), Returning, NewIdentity],
        Account => &[K(Customer), K(IdDoc), K(Device), Returning, NewIdentity],
        Staff => &[K(Customer)],
        Session => &[K(Ip), K(Device)],
    }
}

fn plural(rel: Relation) -> &'static str {
    match rel {
        Relation::Kind(EntityKind::Customer) => "customers",
        Relation::Kind(EntityKind::IdDoc) => "id_docs",
        Relation::Kind(EntityKind::Ip) => "ips",
        Relation::Kind(EntityKind::Subnet) => "subnets",
        Relation::Kind(EntityKind::Device) => "devices",
        Relation::Kind(EntityKind::Account) => "accounts",
        Relation::Kind(EntityKind::Staff) => "staff",
        Relation::Kind(EntityKind::Session) => "sessions",
        Relation::Returning => "returning",
        Relation::NewIdentity => "new_identities",
    }
}

/// Columns per distinct relation: the three windows, then `total` (everything
/// the entity remembers, for slow attacks spread over days).
pub const DISTINCT_COLUMNS: usize = 4;

/// Whether a kind keeps inter-arrival statistics.
pub fn has_timing(kind: EntityKind) -> bool {
    matches!(kind, EntityKind::Ip | EntityKind::Device | EntityKind::Session | EntityKind::Customer)
}

/// Whether a kind keeps step-duration statistics.
pub fn has_durations(kind: EntityKind) -> bool {
    matches!(kind, EntityKind::Session | EntityKind::Device)
}

/// Event-level features, in slot order from 0.
///
/// `duration_rank` and `hour_activity` are relative to the population
/// (see `baseline.rs`): a rule that reads them holds in any world of traffic.
/// `history_hours` is how much event time the store stands on
/// ([`crate::FeatureStore::history_ms`]): a rule that reads an absence over a
/// window ("no returning customer in 24 h") can ask for enough of it.
/// `population_hours_known` is 1 once the population's hours rest on
/// enough events to say which are quiet, and every hour of day has closed
/// at least once: a day of event time (for staff steps, always: the
/// bank's office hours are their prior); until then `hour_activity` reads
/// 1.0, so a rule that asks for a quiet hour can fall back on what it asked
/// before there was a population to ask.
/// `population_returning_24h` is the population's distinct returning
/// customers in the last 24 clock hours (read at onboarding events): against
/// `population_new_identities_24h`, how much of this population's traffic is
/// applicants, which an address's own mix is compared with.
/// `stranger_login_failure` is 1 for a failed login of a returning customer
/// (one who has logged in before) on a device that never carried a
/// returning customer, or that the event does not name;
/// `population_stranger_failures_1h` counts those of the whole population in
/// the last hour (each customer once a day), this one included, and `population_stranger_failures_hourly`
/// is the median hour of the day before (-1 until six hours have passed since
/// the first): a credential-stuffing campaign that spreads its tries so that
/// no address, device or customer sees more than one or two shows here only.
/// The two counts are read at every login (0 and -1 at other events).
/// `region_share` is the share of the population's events (with a region)
/// that named the event's region, before it: a region this bank's customers
/// almost never use reads near 0 (-1 without a region, at staff accesses,
/// or before 2,000 passed events of returning customers with one, which
/// alone teach it; until then a region outside `home_country` reads 0).
/// `channel_new_device_share` is the share of the event's channel's (app,
/// web, or none named) passed logins of returning customers whose profile
/// knew a device that came from a device it did not (one a day per
/// customer and channel, neither late nor from an automation agent), before the event:
/// near 0 where devices keep their ids, high where web sessions reset their
/// fingerprint, so that `customer.new_device` is weighed against it (-1 at
/// staff accesses, at events naming no customer, or before 20 such logins).
pub const EVENT_FEATURES: [&str; 25] = [
    "event.hour",
    "event.duration_ms",
    "event.failure",
    "event.records",
    "event.late",
    "event.ua_automation",
    "event.ua_missing",
    "event.sensitive_step",
    "event.duration_rank",
    "event.baseline_samples",
    "event.hour_activity",
    "event.onboarding_step",
    "event.has_region",
    "event.ip_new_identities_1h_p99",
    "event.onboarding_surge",
    "event.population_new_identities_1h",
    "event.population_new_identities_24h",
    "event.history_hours",
    "event.population_returning_24h",
    "event.population_hours_known",
    "event.stranger_login_failure",
    "event.population_stranger_failures_1h",
    "event.population_stranger_failures_hourly",
    "event.region_share",
    "event.channel_new_device_share",
];

/// Slot offsets of one kind's features.
#[derive(Debug, Clone, Copy, Default)]
pub struct KindLayout {
    /// `present`; the common block follows: events ×3, failures ×3, failure_streak (failures in a
    /// row; a middle window of quiet starts a new one), age_s, gap_s.
    pub base: usize,
    /// First distinct-count slot: relation r, column j at `distinct + DISTINCT_COLUMNS * r + j`
    /// (columns: the three windows, then `total`).
    pub distinct: usize,
    /// gap_mean_ms, gap_cv, gap_n.
    pub timing: Option<usize>,
    /// step_ms_mean, step_ms_min, steps, fast_steps, quick_steps, timed_steps:
    /// fast and quick count steps ranked among their population's fastest 1%
    /// and 5%, and apart from it (`FeatureConfig::step_rank_margin`; in a
    /// session, each kind of step once), timed_steps the kinds of
    /// step a session timed (a device: every timed step).
    pub durations: Option<usize>,
    /// prior_events, hour_seen, profile_hours, new_device, new_region, known_devices,
    /// history_days, returning, device_passed_code_s (seconds since the event's
    /// device first passed a one-time code for this customer; -1: never), code_failures ×3,
    /// code_failure_pace (a failed code's gap to the customer's previous one,
    /// over the longest pause between their failed codes before it, of
    /// those kept for the long window; 0 for any other event, or with fewer
    /// than two before it), face_shown_s (seconds since the event's device
    /// passed a face match and a liveness check for this customer, counted
    /// from the older of the two; -1: the event names no device, or the
    /// latest passed of each did not pass on it, or they passed more than
    /// the middle window apart, or after the event), owner_login_here_s (seconds
    /// since the customer's latest passed login on a device that had passed
    /// a code for them, or while their profile knew no device and every
    /// passed event of theirs came from the login's place, if it was in this event's
    /// place: its device, else its subnet, or for an event that names
    /// neither, the customer's place within the short window before it;
    /// -1 otherwise), then the `methods` pair.
    pub profile: Option<usize>,
    /// methods_ok and methods_mask of the middle window: verification
    /// methods the customer passed in it in the event's place (as
    /// owner_login_here_s says), whatever the session (customers only).
    pub methods: Option<usize>,
    /// methods_ok, methods_mask (sessions only).
    pub session: Option<usize>,
    /// records ×3, hour_seen, typical_daily_records, days_active, records_today,
    /// hour_habit, days_since_refused (staff only). hour_seen: worked at this
    /// hour on an earlier day; hour_habit: on two earlier days or more. A day
    /// joins at 06:00 the next morning, and one on which an access was
    /// refused never does. days_since_refused: local days since the last day
    /// a block on the member themself refused them an access (0: today; a
    /// block on an address or session they share does not count;
    /// [`crate::NEVER_REFUSED_DAYS`] if never, or not within what the store
    /// remembers), peers_typical_daily_records (the bank's: the median
    /// records of the staff's latest 1,024 closed working days that read
    /// something and were refused nothing; 0 before five), hours_today (the
    /// distinct local hours the member has worked today, this one
    /// included), accesses_today (the member's accesses today, this one
    /// included: with hours_today, their own pace today, which a burst is
    /// measured against on a new install's first day too; in accesses, as
    /// one export of hundreds of records is a routine batch).
    pub records: Option<usize>,
    /// One past the kind's last slot.
    pub end: usize,
}

/// All feature names and their slots.
#[derive(Debug, Clone)]
pub struct FeatureCatalog {
    names: Vec<String>,
    index: HashMap<String, usize>,
    layouts: [KindLayout; KIND_COUNT],
}

impl FeatureCatalog {
    /// Build the catalog for the configured windows.
    pub fn new(w: &Windows) -> FeatureCatalog {
        let labels = [w.short.label.as_str(), w.mid.label.as_str(), w.long.label.as_str()];
        let mut names: Vec<String> = EVENT_FEATURES.iter().map(|s| (*s).to_owned()).collect();
        let mut layouts = [KindLayout::default(); KIND_COUNT];
        for kind in EntityKind::ALL {
            let k = kind.as_str();
            let mut l = KindLayout { base: names.len(), ..Default::default() };
            names.push(format!("{k}.present"));
            for what in ["events", "failures"] {
                for label in labels {
                    names.push(format!("{k}.{what}_{label}"));
                }
            }
            for n in ["failure_streak", "age_s", "gap_s"] {
                names.push(format!("{k}.{n}"));
            }
            l.distinct = names.len();
            for rel in relations(kind) {
                for label in labels.iter().copied().chain(["total"]) {
                    names.push(format!("{k}.distinct_{}_{label}", plural(*rel)));
                }
            }
            if has_timing(kind) {
                l.timing = Some(names.len());
                for n in ["gap_mean_ms", "gap_cv", "gap_n"] {
                    names.push(format!("{k}.{n}"));
                }
            }
            if has_durations(kind) {
                l.durations = Some(names.len());
                for n in ["step_ms_mean", "step_ms_min", "steps", "fast_steps", "quick_steps", "timed_steps"] {
                    names.push(format!("{k}.{n}"));
                }
            }
            if kind == EntityKind::Customer {
                l.profile = Some(names.len());
                for n in ["prior_events", "hour_seen", "profile_hours", "new_device", "new_region", "known_devices", "history_days", "returning"] {
                    names.push(format!("{k}.{n}"));
                }
                names.push(format!("{k}.device_passed_code_s"));
                for label in labels {
                    names.push(format!("{k}.code_failures_{label}"));
                }
                names.push(format!("{k}.code_failure_pace"));
                names.push(format!("{k}.face_shown_s"));
                names.push(format!("{k}.owner_login_here_s"));
                l.methods = Some(names.len());
                for n in ["methods_ok", "methods_mask"] {
                    names.push(format!("{k}.{n}_{}", labels[1]));
                }
            }
            if kind == EntityKind::Session {
                l.session = Some(names.len());
                for n in ["methods_ok", "methods_mask"] {
                    names.push(format!("{k}.{n}"));
                }
            }
            if kind == EntityKind::Staff {
                l.records = Some(names.len());
                for label in labels {
                    names.push(format!("{k}.records_{label}"));
                }
                for n in ["hour_seen", "typical_daily_records", "days_active", "records_today", "hour_habit", "days_since_refused", "peers_typical_daily_records", "hours_today", "accesses_today"] {
                    names.push(format!("{k}.{n}"));
                }
            }
            l.end = names.len();
            layouts[kind.index()] = l;
        }
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        FeatureCatalog { names, index, layouts }
    }

    /// Number of features (the length of every feature vector).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Never true: there are always event features.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The slot of a feature name.
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The name of a slot.
    pub fn name(&self, slot: usize) -> &str {
        &self.names[slot]
    }

    /// All names in slot order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The layout of one kind's slots.
    pub fn layout(&self, kind: EntityKind) -> &KindLayout {
        &self.layouts[kind.index()]
    }

    /// Up to five known names closest to `name`, for "unknown feature" errors.
    pub fn suggest(&self, name: &str) -> Vec<&str> {
        let mut scored: Vec<(f64, &str)> = self
            .names
            .iter()
            .map(|n| (strsim::jaro_winkler(name, n), n.as_str()))
            .filter(|(s, _)| *s > 0.85)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().take(5).map(|(_, n)| n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FeatureConfig;

    #[test]
    fn names_are_unique_and_slots_line_up() {
        let c = FeatureCatalog::new(&FeatureConfig::default().validate().unwrap());
        assert_eq!(c.index.len(), c.len(), "duplicate names");
        assert_eq!(c.slot("id_doc.distinct_customers_24h"), Some(c.layout(EntityKind::IdDoc).distinct + 2));
        assert_eq!(c.slot("id_doc.distinct_customers_total"), Some(c.layout(EntityKind::IdDoc).distinct + 3));
        assert_eq!(c.slot("ip.distinct_returning_24h"), Some(c.layout(EntityKind::Ip).distinct + 4 * 3 + 2));
        assert_eq!(c.slot("ip.distinct_new_identities_1h"), Some(c.layout(EntityKind::Ip).distinct + 4 * 4 + 1));
        assert_eq!(c.name(c.layout(EntityKind::Session).session.unwrap()), "session.methods_ok");
        assert_eq!(c.name(c.layout(EntityKind::Ip).base + 1), "ip.events_10m");
        assert_eq!(c.name(c.layout(EntityKind::Customer).profile.unwrap() + 3), "customer.new_device");
        assert_eq!(c.name(c.layout(EntityKind::Staff).records.unwrap() + 2), "staff.records_24h");
        assert!(c.suggest("ip.distinct_customer_24h").contains(&"ip.distinct_customers_24h"));
    }
}
