//! The scoreboard: decisions compared with labels.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::attacks::Attack;
use crate::generator::{GeneratedEvent, Label};

/// What the scoreboard reads of one event: who it is, and the keys that can
/// tie it to another identity's events. Reads straight from an event line.
/// A field that is not a string (a broken line) is read as absent, so that
/// the line is still counted, as undecided, rather than dropped from the score.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ScoredEvent {
    pub event_id: String,
    #[serde(default, deserialize_with = "string_or_absent")]
    pub customer_id: Option<String>,
    #[serde(default, deserialize_with = "string_or_absent")]
    pub staff_id: Option<String>,
    #[serde(default, deserialize_with = "string_or_absent")]
    pub session_id: Option<String>,
    #[serde(default, deserialize_with = "string_or_absent")]
    pub ip: Option<String>,
    #[serde(default, deserialize_with = "string_or_absent")]
    pub device_id: Option<String>,
    #[serde(default, deserialize_with = "string_or_absent")]
    pub id_doc_hash: Option<String>,
    #[serde(default, deserialize_with = "string_or_absent")]
    pub account_hash: Option<String>,
}

fn string_or_absent<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

/// What can tie one identity's event to another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TieKind {
    Address,
    Device,
    IdDocument,
    Account,
}

impl ScoredEvent {
    /// The customer a block on this event refuses. A staff event's customer
    /// is the subject of the record looked up, not the person refused.
    pub fn refused_customer(&self) -> Option<&str> {
        self.customer_id.as_deref().filter(|_| self.staff_id.is_none())
    }

    /// Who acts: the staff member or else the customer, and the session.
    fn actor(&self) -> Actor<'_> {
        let person = match (&self.staff_id, &self.customer_id) {
            (Some(staff), _) => Some(Person::Staff(staff)),
            (None, Some(customer)) => Some(Person::Customer(customer)),
            (None, None) => None,
        };
        Actor { person, session: self.session_id.as_deref() }
    }

    /// Keys by kind: an address never matches a device id that happens to spell the same.
    fn ties(&self) -> impl Iterator<Item = (TieKind, &str)> {
        [(TieKind::Address, &self.ip), (TieKind::Device, &self.device_id), (TieKind::IdDocument, &self.id_doc_hash), (TieKind::Account, &self.account_hash)]
            .into_iter()
            .filter_map(|(kind, v)| Some((kind, v.as_deref()?)))
    }
}

/// A staff member and a customer never name one person, however they are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Person<'a> {
    Staff(&'a str),
    Customer(&'a str),
}

/// The names an event gives whoever acts in it.
#[derive(Debug, Clone, Copy)]
struct Actor<'a> {
    person: Option<Person<'a>>,
    session: Option<&'a str>,
}

impl Actor<'_> {
    /// Neither name: nobody to tell apart from anyone.
    fn is_unnamed(self) -> bool {
        self.person.is_none() && self.session.is_none()
    }

    /// Two events are one identity's when they name the same person or the
    /// same session. A pipeline that names the customer only at the account
    /// opening still ties that opening to its onboarding steps by the session.
    fn same_as(self, other: Actor<'_>) -> bool {
        (self.person.is_some() && self.person == other.person) || (self.session.is_some() && self.session == other.session)
    }
}

impl From<&GeneratedEvent> for ScoredEvent {
    fn from(e: &GeneratedEvent) -> Self {
        ScoredEvent {
            event_id: e.event_id.clone(),
            customer_id: e.customer_id.clone(),
            staff_id: e.staff_id.clone(),
            session_id: e.session_id.clone(),
            ip: e.ip.clone(),
            device_id: e.device_id.clone(),
            id_doc_hash: e.id_doc_hash.clone(),
            account_hash: e.account_hash.clone(),
        }
    }
}

/// How one attack type fared.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AttackScore {
    pub incidents: usize,
    pub caught: usize,
    /// Median number of the incident's events decided before the first catch.
    pub median_events_before_catch: Option<f64>,
    /// Median number of the incident's events decided after its first
    /// telltale and before the first catch: how long the detectors took once
    /// there was something to see. Until then an incident of many
    /// identities (ID reuse, a farm, a mule account) shows one applicant who
    /// looks like anyone.
    ///
    /// The telltale is the first event that shares an address, device, ID
    /// document or bank account with an earlier event of the same incident
    /// under another identity (neither the same customer or staff member nor
    /// the same session). When there is none before the catch (one actor,
    /// or a catch on the attack's own events, like a script's speed), the
    /// count runs from the incident's first event, as the plain median's does.
    ///
    /// Keys are compared as written: a shared carrier NAT exit is a tie (the
    /// telltale comes earlier than a detector could see it), while two
    /// addresses of one /24 are not (it may come later). An event that names
    /// neither a person nor a session ties nothing.
    pub median_events_past_telltale: Option<f64>,
    /// Attack events decided challenge or block, over all attack events.
    pub event_recall: f64,
    pub events: usize,
    /// Attack events decided block: refused, not only stepped up. Recall
    /// counts a step-up as a catch, so a pack that trades blocks for
    /// step-ups (a synthetic identity passes a face match with the
    /// attacker's own face) shows it here and nowhere else.
    pub events_blocked: usize,
}

/// The whole scoreboard.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scoreboard {
    pub attacks: BTreeMap<Attack, AttackScore>,
    pub incidents: usize,
    pub incidents_caught: usize,
    pub incident_recall: f64,
    pub benign_events: usize,
    pub benign_flagged: usize,
    /// Benign events decided challenge or block, over benign events.
    pub false_positive_rate: f64,
    /// Distinct customers of benign events decided block.
    pub honest_customers_blocked: usize,
    /// Distinct staff members of benign events decided block, other than
    /// those who acted in an incident: an insider refused their routine
    /// lookups after their own pull is refused rightly. The decisions alone
    /// do not say which scope the block was on (the member, or an address
    /// they share); `haechi bench worlds`, which runs the pipeline itself,
    /// counts only blocks on the member.
    pub honest_staff_blocked: usize,
    /// Events with no decision (rejected, or missing from the decisions file).
    /// `haechi eval` adds the event lines it could not read at all.
    pub undecided: usize,
}

/// One incident as the scoreboard follows it through the stream.
struct IncidentTrack<'a> {
    attack: Attack,
    /// Its events seen so far.
    seen: usize,
    /// Of them, how many came before the first one challenged or blocked.
    first_catch: Option<usize>,
    /// Of them, how many came before its first telltale.
    telltale: Option<usize>,
    /// Each key its events carried, with the first actor that carried it.
    keys: HashMap<(TieKind, &'a str), Actor<'a>>,
}

/// The staff members named on an incident's events: its insiders. (A
/// customer named on one may be its victim, so customers are not treated so.)
pub fn insiders<'a>(events: &'a [ScoredEvent], labels: &[Label]) -> HashSet<&'a str> {
    let labelled: HashSet<&str> = labels.iter().map(|l| l.event_id.as_str()).collect();
    events.iter().filter(|e| labelled.contains(e.event_id.as_str())).filter_map(|e| e.staff_id.as_deref()).collect()
}

/// Score `decisions` (event id → "allow" | "challenge" | "block") over
/// `events` (in stream order) against `labels`.
pub fn score(events: &[ScoredEvent], labels: &[Label], decisions: &HashMap<String, String>) -> Scoreboard {
    let label_of: HashMap<&str, &Label> = labels.iter().map(|l| (l.event_id.as_str(), l)).collect();
    let flagged = |id: &str| decisions.get(id).is_some_and(|d| d == "challenge" || d == "block");
    let mut board = Scoreboard::default();
    let mut incidents: BTreeMap<&str, IncidentTrack> = BTreeMap::new();
    let mut flagged_events: HashMap<Attack, usize> = HashMap::new();
    let mut blocked_customers: HashSet<&str> = HashSet::new();
    let mut blocked_staff: HashSet<&str> = HashSet::new();
    let insiders = insiders(events, labels);
    for e in events {
        let id = e.event_id.as_str();
        if !decisions.contains_key(id) {
            board.undecided += 1;
        }
        match label_of.get(id) {
            Some(l) => {
                let track = incidents.entry(l.incident.as_str()).or_insert_with(|| IncidentTrack {
                    attack: l.attack,
                    seen: 0,
                    first_catch: None,
                    telltale: None,
                    keys: HashMap::new(),
                });
                let attack = board.attacks.entry(l.attack).or_default();
                attack.events += 1;
                attack.events_blocked += usize::from(decisions.get(id).is_some_and(|d| d == "block"));
                let actor = e.actor();
                if !actor.is_unnamed() {
                    for key in e.ties() {
                        let first = track.keys.entry(key).or_insert(actor);
                        if first.same_as(actor) {
                            // Learn the names it had not given yet: a session that
                            // named its customer late, a customer's next session.
                            first.person = first.person.or(actor.person);
                            first.session = first.session.or(actor.session);
                        } else if track.telltale.is_none() {
                            track.telltale = Some(track.seen);
                        }
                    }
                }
                if flagged(id) {
                    *flagged_events.entry(l.attack).or_default() += 1;
                    if track.first_catch.is_none() {
                        track.first_catch = Some(track.seen);
                    }
                }
                track.seen += 1;
            }
            None => {
                board.benign_events += 1;
                if flagged(id) {
                    board.benign_flagged += 1;
                }
                if decisions.get(id).is_some_and(|d| d == "block") {
                    if let Some(c) = e.refused_customer() {
                        blocked_customers.insert(c);
                    }
                    if let Some(member) = e.staff_id.as_deref().filter(|m| !insiders.contains(m)) {
                        blocked_staff.insert(member);
                    }
                }
            }
        }
    }
    let mut before: HashMap<Attack, Vec<usize>> = HashMap::new();
    let mut past_telltale: HashMap<Attack, Vec<usize>> = HashMap::new();
    for track in incidents.values() {
        let s = board.attacks.entry(track.attack).or_default();
        s.incidents += 1;
        if let Some(k) = track.first_catch {
            s.caught += 1;
            before.entry(track.attack).or_default().push(k);
            let counted_from = track.telltale.filter(|t| *t <= k).unwrap_or(0);
            past_telltale.entry(track.attack).or_default().push(k - counted_from);
        }
    }
    for (attack, s) in board.attacks.iter_mut() {
        s.event_recall = ratio(flagged_events.get(attack).copied().unwrap_or(0), s.events);
        s.median_events_before_catch = before.get_mut(attack).map(|v| median(v));
        s.median_events_past_telltale = past_telltale.get_mut(attack).map(|v| median(v));
        board.incidents += s.incidents;
        board.incidents_caught += s.caught;
    }
    board.incident_recall = ratio(board.incidents_caught, board.incidents);
    board.false_positive_rate = ratio(board.benign_flagged, board.benign_events);
    board.honest_customers_blocked = blocked_customers.len();
    board.honest_staff_blocked = blocked_staff.len();
    board
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn median(v: &mut [usize]) -> f64 {
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    }
}

impl std::fmt::Display for Scoreboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<20} {:>9} {:>7} {:>14} {:>14} {:>12} {:>14}", "attack", "incidents", "caught", "median before", "past telltale", "event recall", "events blocked")?;
        let med = |m: Option<f64>| m.map_or("-".to_owned(), |m| format!("{m:.1}"));
        for (a, s) in &self.attacks {
            writeln!(
                f,
                "{:<20} {:>9} {:>7} {:>14} {:>14} {:>12.3} {:>14.3}",
                a.as_str(),
                s.incidents,
                s.caught,
                med(s.median_events_before_catch),
                med(s.median_events_past_telltale),
                s.event_recall,
                ratio(s.events_blocked, s.events)
            )?;
        }
        writeln!(f, "incident recall:          {:.3} ({}/{})", self.incident_recall, self.incidents_caught, self.incidents)?;
        writeln!(f, "benign false-positive rate: {:.5} ({}/{})", self.false_positive_rate, self.benign_flagged, self.benign_events)?;
        writeln!(f, "honest customers blocked: {}", self.honest_customers_blocked)?;
        writeln!(f, "honest staff blocked:     {}", self.honest_staff_blocked)?;
        write!(f, "undecided events:         {}", self.undecided)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, customer: &str) -> ScoredEvent {
        ScoredEvent { event_id: id.to_owned(), customer_id: Some(customer.to_owned()), ..ScoredEvent::default() }
    }

    fn decided(d: &[(&str, &str)]) -> HashMap<String, String> {
        d.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    fn label(id: &str, inc: &str, attack: Attack) -> Label {
        Label { event_id: id.into(), attack, incident: inc.into(), variant: None }
    }

    /// Score `events` with those whose id starts with `a` as one incident of
    /// `attack` (the rest honest): its medians before the catch and past the telltale.
    fn one_incident(events: &[ScoredEvent], attack: Attack, d: &[(&str, &str)]) -> (Option<f64>, Option<f64>) {
        let labels: Vec<Label> = events.iter().filter(|e| e.event_id.starts_with('a')).map(|e| label(&e.event_id, "i1", attack)).collect();
        let s = score(events, &labels, &decided(d));
        let a = &s.attacks[&attack];
        (a.median_events_before_catch, a.median_events_past_telltale)
    }

    #[test]
    fn a_step_up_is_a_catch_but_only_a_block_refuses() {
        let events = vec![ev("a1", "x"), ev("a2", "x"), ev("a3", "x"), ev("h1", "h")];
        let labels = vec![label("a1", "i1", Attack::IdReuse), label("a2", "i1", Attack::IdReuse), label("a3", "i1", Attack::IdReuse)];
        let d = decided(&[("a1", "challenge"), ("a2", "block"), ("a3", "allow"), ("h1", "block")]);
        let s = score(&events, &labels, &d);
        let a = &s.attacks[&Attack::IdReuse];
        assert_eq!((a.caught, a.events), (1, 3));
        assert!((a.event_recall - 2.0 / 3.0).abs() < 1e-9);
        // a2's block; a1 was only stepped up, and h1's block is not an attack's.
        assert_eq!(a.events_blocked, 1);
        let text = s.to_string();
        let row = text.lines().find(|l| l.starts_with("id_reuse")).expect("a row for id_reuse");
        assert!(row.ends_with(" 0.667          0.333"), "event recall, then events blocked: {row}");
    }

    #[test]
    fn counts_catches_recall_and_false_positives() {
        let events = vec![ev("a1", "x"), ev("a2", "x"), ev("a3", "x"), ev("b1", "y"), ev("h1", "h"), ev("h2", "h"), ev("h3", "g")];
        let labels = vec![label("a1", "i1", Attack::Bot), label("a2", "i1", Attack::Bot), label("a3", "i1", Attack::Bot), label("b1", "i2", Attack::Bot)];
        let d = decided(&[("a1", "allow"), ("a2", "allow"), ("a3", "block"), ("b1", "allow"), ("h1", "challenge"), ("h2", "block")]);
        let s = score(&events, &labels, &d);
        let bot = &s.attacks[&Attack::Bot];
        assert_eq!((bot.incidents, bot.caught), (2, 1));
        assert_eq!(bot.median_events_before_catch, Some(2.0));
        // One actor: the incident's first event is its telltale.
        assert_eq!(bot.median_events_past_telltale, Some(2.0));
        assert!((bot.event_recall - 0.25).abs() < 1e-9);
        assert_eq!((s.benign_events, s.benign_flagged), (3, 2));
        assert_eq!(s.honest_customers_blocked, 1);
        assert_eq!(s.undecided, 1);
        assert!((s.incident_recall - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_staff_lookup_blocked_refuses_the_staff_member_not_the_record_subject() {
        let lookup = ScoredEvent { staff_id: Some("st-1".into()), ..ev("h1", "subject") };
        let s = score(&[lookup, ev("h2", "c")], &[], &decided(&[("h1", "block"), ("h2", "allow")]));
        assert_eq!((s.benign_flagged, s.honest_customers_blocked, s.honest_staff_blocked), (1, 0, 1));
        assert!(s.to_string().contains("honest staff blocked:     1"), "{s}");
    }

    #[test]
    fn an_insider_refused_after_their_pull_is_not_an_honest_member_blocked() {
        let by = |id: &str, member: &str| ScoredEvent { staff_id: Some(member.into()), ..ev(id, "subject") };
        // st-1 pulls (a1, labelled) and is refused a routine lookup later (h1);
        // st-2, who pulled nothing, is refused one too (h2).
        let events = [by("a1", "st-1"), by("h1", "st-1"), by("h2", "st-2"), by("h3", "st-2")];
        let labels = [label("a1", "i1", Attack::StaffBulk)];
        let s = score(&events, &labels, &decided(&[("a1", "block"), ("h1", "block"), ("h2", "block"), ("h3", "block")]));
        assert_eq!((s.benign_flagged, s.honest_staff_blocked, s.honest_customers_blocked), (3, 1, 0));
    }

    #[test]
    fn the_telltale_is_the_first_event_tied_to_another_identity_of_the_incident() {
        let on = |id: &str, customer: &str, doc: Option<&str>, device: &str| ScoredEvent {
            id_doc_hash: doc.map(str::to_owned),
            device_id: Some(device.to_owned()),
            session_id: Some(format!("s-{customer}")),
            ..ev(id, customer)
        };
        // One card behind two applicants: the first's three steps look like
        // anyone's; the second's first step that shows the card ties them.
        // An honest event on the same card between them ties nothing: only
        // the incident's own earlier events count.
        let events = vec![
            on("a1", "c1", Some("doc"), "p1"),
            on("a2", "c1", None, "p1"),
            on("a3", "c1", Some("doc"), "p1"),
            on("h1", "honest", Some("doc"), "p1"),
            on("a4", "c2", None, "p2"),
            on("a5", "c2", Some("doc"), "p2"),
            on("a6", "c2", None, "p2"),
            on("a7", "c2", None, "p2"),
        ];
        let caught_at = |id: &str| one_incident(&events, Attack::IdReuse, &[(id, "block")]);
        // The telltale is a5, the incident's fifth event.
        assert_eq!(caught_at("a7"), (Some(6.0), Some(2.0)));
        assert_eq!(caught_at("a5"), (Some(4.0), Some(0.0)));
        // Caught before anything tied the identities: counted from the start.
        assert_eq!(caught_at("a2"), (Some(1.0), Some(1.0)));
        // The honest event on the card is no catch of the incident.
        assert_eq!(caught_at("h1"), (None, None));
    }

    #[test]
    fn a_customer_named_only_at_the_account_opening_is_tied_to_their_steps_by_the_session() {
        let step = |id: &str, session: &str, customer: Option<&str>| ScoredEvent {
            event_id: id.to_owned(),
            customer_id: customer.map(str::to_owned),
            session_id: Some(session.to_owned()),
            device_id: Some("farm-phone".to_owned()),
            ..ScoredEvent::default()
        };
        let events = vec![
            step("a1", "s1", None),
            step("a2", "s1", None),
            step("a3", "s1", Some("c1")),
            // The same customer's login the next day, in a session of its own.
            step("a4", "s9", Some("c1")),
            step("a5", "s2", None),
            step("a6", "s2", Some("c2")),
        ];
        // Neither the first applicant's own account opening (a3) nor their later
        // session (a4) is the telltale; the second applicant's first step (a5) is.
        assert_eq!(one_incident(&events, Attack::DeviceFarm, &[("a6", "challenge")]), (Some(5.0), Some(1.0)));
    }

    #[test]
    fn keys_of_different_kinds_never_tie_and_one_actor_ties_nothing() {
        let mut a = ev("a1", "c1");
        a.ip = Some("same".into());
        let mut b = ev("a2", "c2");
        b.device_id = Some("same".into());
        let mut c = ev("a3", "c2");
        c.device_id = Some("same".into());
        assert_eq!(one_incident(&[a, b, c], Attack::DeviceFarm, &[("a3", "challenge")]), (Some(2.0), Some(2.0)));
    }

    #[test]
    fn a_tie_after_the_catch_does_not_move_the_count() {
        // A script caught on its first session's speed; its second session
        // happens to come from the same address afterwards.
        let at = |id: &str, customer: &str| ScoredEvent { ip: Some("45.1.2.3".into()), ..ev(id, customer) };
        let events = vec![at("a1", "c1"), at("a2", "c1"), at("a3", "c1"), at("a4", "c2"), at("a5", "c2")];
        assert_eq!(one_incident(&events, Attack::Bot, &[("a3", "block")]), (Some(2.0), Some(2.0)));
    }

    #[test]
    fn a_staff_member_and_a_customer_spelled_alike_are_two_people() {
        let mut a = ev("a1", "x");
        a.device_id = Some("ws-1".into());
        let b = ScoredEvent { staff_id: Some("x".into()), device_id: Some("ws-1".into()), ..ev("a2", "subject") };
        assert_eq!(one_incident(&[a, b], Attack::StaffBulk, &[("a2", "block")]), (Some(1.0), Some(0.0)));
    }

    #[test]
    fn an_event_that_names_nobody_ties_nothing() {
        let bare = |id: &str| ScoredEvent { event_id: id.to_owned(), device_id: Some("d".into()), ..ScoredEvent::default() };
        assert_eq!(one_incident(&[bare("a1"), bare("a2"), bare("a3")], Attack::DeviceFarm, &[("a3", "challenge")]), (Some(2.0), Some(2.0)));
    }

    #[test]
    fn a_line_with_a_field_of_the_wrong_type_is_still_counted() {
        let line = r#"{"event_id":"e1","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"success","ip":5,"customer_id":["c1"]}"#;
        let e: ScoredEvent = serde_json::from_str(line).unwrap();
        assert_eq!((e.ip.as_deref(), e.customer_id.as_deref()), (None, None));
        let s = score(&[e], &[], &HashMap::new());
        assert_eq!((s.benign_events, s.undecided), (1, 1));
    }

    #[test]
    fn a_scored_event_reads_from_an_event_line() {
        let line = r#"{"event_id":"e1","ts":"2026-11-02T10:00:00+09:00","step":"id_ocr","result":"success","customer_id":"c1","ip":"10.0.0.1","id_doc_hash":"d1","duration_ms":4000}"#;
        let e: ScoredEvent = serde_json::from_str(line).unwrap();
        assert_eq!((e.customer_id.as_deref(), e.ip.as_deref(), e.id_doc_hash.as_deref(), e.device_id.as_deref()), (Some("c1"), Some("10.0.0.1"), Some("d1"), None));
    }
}
