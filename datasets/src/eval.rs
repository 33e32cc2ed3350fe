//! The scoreboard: decisions compared with labels.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::attacks::Attack;
use crate::generator::Label;

/// How one attack type fared.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AttackScore {
    pub incidents: usize,
    pub caught: usize,
    /// Median number of the incident's events decided before the first catch.
    pub median_events_before_catch: Option<f64>,
    /// Attack events decided challenge or block, over all attack events.
    pub event_recall: f64,
    pub events: usize,
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
    /// Events with no decision (rejected, or missing from the decisions file).
    pub undecided: usize,
}

/// Score `decisions` (event id → "allow" | "challenge" | "block") over
/// `events` (event id and customer, in stream order) against `labels`.
pub fn score(events: &[(String, Option<String>)], labels: &[Label], decisions: &HashMap<String, String>) -> Scoreboard {
    let label_of: HashMap<&str, &Label> = labels.iter().map(|l| (l.event_id.as_str(), l)).collect();
    let flagged = |id: &str| decisions.get(id).is_some_and(|d| d == "challenge" || d == "block");
    let mut board = Scoreboard::default();
    // incident -> (attack, events seen so far, events before first catch, caught?)
    let mut incidents: BTreeMap<&str, (Attack, usize, Option<usize>)> = BTreeMap::new();
    let mut flagged_events: HashMap<Attack, usize> = HashMap::new();
    let mut blocked_customers: HashSet<&str> = HashSet::new();
    for (id, customer) in events {
        if !decisions.contains_key(id) {
            board.undecided += 1;
        }
        match label_of.get(id.as_str()) {
            Some(l) => {
                let entry = incidents.entry(l.incident.as_str()).or_insert((l.attack, 0, None));
                board.attacks.entry(l.attack).or_default().events += 1;
                if flagged(id) {
                    *flagged_events.entry(l.attack).or_default() += 1;
                    if entry.2.is_none() {
                        entry.2 = Some(entry.1);
                    }
                }
                entry.1 += 1;
            }
            None => {
                board.benign_events += 1;
                if flagged(id) {
                    board.benign_flagged += 1;
                }
                if decisions.get(id).is_some_and(|d| d == "block") {
                    if let Some(c) = customer {
                        blocked_customers.insert(c.as_str());
                    }
                }
            }
        }
    }
    let mut before: HashMap<Attack, Vec<usize>> = HashMap::new();
    for (attack, _, first) in incidents.values() {
        let s = board.attacks.entry(*attack).or_default();
        s.incidents += 1;
        if let Some(k) = first {
            s.caught += 1;
            before.entry(*attack).or_default().push(*k);
        }
    }
    for (attack, s) in board.attacks.iter_mut() {
        s.event_recall = ratio(flagged_events.get(attack).copied().unwrap_or(0), s.events);
        s.median_events_before_catch = before.get_mut(attack).map(|v| median(v));
        board.incidents += s.incidents;
        board.incidents_caught += s.caught;
    }
    board.incident_recall = ratio(board.incidents_caught, board.incidents);
    board.false_positive_rate = ratio(board.benign_flagged, board.benign_events);
    board.honest_customers_blocked = blocked_customers.len();
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
        writeln!(f, "{:<20} {:>9} {:>7} {:>14} {:>12}", "attack", "incidents", "caught", "median before", "event recall")?;
        for (a, s) in &self.attacks {
            let med = s.median_events_before_catch.map_or("-".to_owned(), |m| format!("{m:.1}"));
            writeln!(f, "{:<20} {:>9} {:>7} {:>14} {:>12.3}", a.as_str(), s.incidents, s.caught, med, s.event_recall)?;
        }
        writeln!(f, "incident recall:          {:.3} ({}/{})", self.incident_recall, self.incidents_caught, self.incidents)?;
        writeln!(f, "benign false-positive rate: {:.5} ({}/{})", self.false_positive_rate, self.benign_flagged, self.benign_events)?;
        writeln!(f, "honest customers blocked: {}", self.honest_customers_blocked)?;
        write!(f, "undecided events:         {}", self.undecided)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_catches_recall_and_false_positives() {
        let ev = |id: &str, c: &str| (id.to_owned(), Some(c.to_owned()));
        let events = vec![ev("a1", "x"), ev("a2", "x"), ev("a3", "x"), ev("b1", "y"), ev("h1", "h"), ev("h2", "h"), ev("h3", "g")];
        let label = |id: &str, inc: &str, attack| Label { event_id: id.into(), attack, incident: inc.into(), variant: None };
        let labels = vec![label("a1", "i1", Attack::Bot), label("a2", "i1", Attack::Bot), label("a3", "i1", Attack::Bot), label("b1", "i2", Attack::Bot)];
        let d: HashMap<String, String> = [("a1", "allow"), ("a2", "allow"), ("a3", "block"), ("b1", "allow"), ("h1", "challenge"), ("h2", "block")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        let s = score(&events, &labels, &d);
        let bot = &s.attacks[&Attack::Bot];
        assert_eq!((bot.incidents, bot.caught), (2, 1));
        assert_eq!(bot.median_events_before_catch, Some(2.0));
        assert!((bot.event_recall - 0.25).abs() < 1e-9);
        assert_eq!((s.benign_events, s.benign_flagged), (3, 2));
        assert_eq!(s.honest_customers_blocked, 1);
        assert_eq!(s.undecided, 1);
        assert!((s.incident_recall - 0.5).abs() < 1e-9);
    }
}
