//! `haechi rules backtest`: replay a stream in event time against a rule set
//! (and a baseline), and report what each rule would have done.
//!
//! Each set runs in a whole [`Pipeline`] (features, built-in detectors, model,
//! block list, rate limits, blast-radius guard), so the set's summary is what
//! production would have decided, not an imitation of it. Every rule is also
//! measured on its own, whatever its mode, from the findings it produced.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::BufRead;

use haechi_alerting::alert_id;
use haechi_datasets::{Attack, Label};
use haechi_features::{entity_text, Action, Mode};
use serde::Serialize;

use crate::decision::Verdict;
use crate::error::DetectorError;
use crate::driver::read_bounded_line;
use crate::{Config, Pipeline};

/// An analyst's judgement of an alert, the ground truth the floor gives back
/// (`GET /v1/labels`). Alert ids are derived from (detector, rule, entity,
/// window), so a backtest finds the alerts a rule set would raise again.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FloorLabel {
    pub alert_id: String,
    pub label: crate::service::triage::TriageLabel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub entity_kind: Option<haechi_features::EntityKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// The alert's first and newest event times, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Floor labels from a file: a JSON array (as `GET /v1/labels` answers) or NDJSON.
///
/// # Errors
/// When the file cannot be read or a label does not parse.
pub fn read_floor_labels(path: &std::path::Path) -> Result<Vec<FloorLabel>, DetectorError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| DetectorError::Input { path: name.clone(), message: e.to_string() })?;
    let bad = |e: serde_json::Error| DetectorError::Input { path: name.clone(), message: format!("floor labels: {e}") };
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text).map_err(bad);
    }
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).map_err(bad)).collect()
}

/// What one rule did over the stream.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleReport {
    pub rule: String,
    pub action: String,
    pub mode: String,
    pub hits: u64,
    /// Hits on labelled attack events (with labels).
    pub attack_hits: u64,
    /// Hits on unlabelled, honest events (with labels).
    pub benign_hits: u64,
    /// attack_hits / hits (with labels).
    pub precision: Option<f64>,
    /// Distinct entities the rule would have blocked.
    pub entities_blocked: usize,
    /// Per attack type: share of its incidents in which the rule fired at least once.
    pub recall: BTreeMap<Attack, f64>,
    /// Its alerts that analysts marked true positive (with floor labels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_true_positives: Option<u64>,
    /// Its alerts that analysts marked false positive (with floor labels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_false_positives: Option<u64>,
}

/// Differences from the baseline.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BaselineDiff {
    pub alerts_gained: usize,
    pub alerts_lost: usize,
    /// Entities the new set blocks that the baseline did not.
    pub entities_newly_blocked: Vec<String>,
    pub entities_no_longer_blocked: usize,
    /// The baseline's labelled attack events decided block (with labels):
    /// beside [`SetSummary::attack_events_blocked`], what the change refuses
    /// that the baseline did, or only steps up now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack_events_blocked: Option<u64>,
    /// Alerts analysts marked false positive that the new set no longer raises (with floor labels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub false_positives_removed: Option<usize>,
    /// Alerts analysts marked true positive that the new set no longer raises (with floor labels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_positives_lost: Option<usize>,
}

/// The set as a whole, decided the way the service decides.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SetSummary {
    pub events: u64,
    pub flagged: u64,
    pub incident_recall: Option<f64>,
    pub false_positive_rate: Option<f64>,
    /// Labelled attack events decided block, and all labelled attack events
    /// (with labels). Recall counts a step-up as a catch; a set that turns
    /// blocks into step-ups shows here.
    pub attack_events_blocked: Option<(u64, u64)>,
}

/// The backtest's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BacktestReport {
    pub version: String,
    pub rules: Vec<RuleReport>,
    pub summary: SetSummary,
    pub baseline: Option<BaselineDiff>,
}

struct Tally {
    hits: Vec<u64>,
    /// Per rule: the alert ids it raised.
    rule_alerts: Vec<HashSet<String>>,
    attack_hits: Vec<u64>,
    blocked: Vec<HashSet<String>>,
    incidents: Vec<HashSet<String>>,
    alerts: HashSet<String>,
    blocked_all: HashSet<String>,
    flagged: u64,
    caught_incidents: HashSet<String>,
    benign_flagged: u64,
    attack_events: u64,
    attack_blocked: u64,
}

impl Tally {
    fn new(n: usize) -> Tally {
        Tally {
            hits: vec![0; n],
            rule_alerts: vec![HashSet::new(); n],
            attack_hits: vec![0; n],
            blocked: vec![HashSet::new(); n],
            incidents: vec![HashSet::new(); n],
            alerts: HashSet::new(),
            blocked_all: HashSet::new(),
            flagged: 0,
            caught_incidents: HashSet::new(),
            benign_flagged: 0,
            attack_events: 0,
            attack_blocked: 0,
        }
    }
}

/// Run the backtest: `config` with its rules (the new set), and, if given,
/// the same configuration with `baseline` rules.
///
/// # Errors
/// When a rule set does not load or the input cannot be read.
pub fn backtest(config: &Config, baseline: Option<&std::path::Path>, input: &mut dyn BufRead, labels: Option<&[Label]>) -> Result<BacktestReport, DetectorError> {
    backtest_with_floor(config, baseline, input, labels, None)
}

/// [`backtest`], also scoring each rule, and the difference from the
/// baseline, against the analysts' judgements of past alerts.
///
/// # Errors
/// As [`backtest`].
pub fn backtest_with_floor(
    config: &Config,
    baseline: Option<&std::path::Path>,
    input: &mut dyn BufRead,
    labels: Option<&[Label]>,
    floor: Option<&[FloorLabel]>,
) -> Result<BacktestReport, DetectorError> {
    let fold_window_ms = config.alerts.fold_window.as_millis() as i64;
    let max_event_bytes = config.pipeline.max_event_bytes;
    let mut pipelines = vec![Pipeline::new(config.clone())?];
    if let Some(b) = baseline {
        let mut c = config.clone();
        c.rules.path = Some(b.to_path_buf());
        pipelines.push(Pipeline::new(c)?);
    }
    let sets: Vec<std::sync::Arc<haechi_rules::RuleSet>> = pipelines.iter().map(|p| p.rules().current()).collect();
    let index_of: Vec<HashMap<&str, usize>> = sets.iter().map(|s| s.rules().iter().enumerate().map(|(i, r)| (&*r.id, i)).collect()).collect();
    let mut scratches: Vec<_> = pipelines.iter().map(Pipeline::scratch).collect();
    let rules = &*sets[0];
    let label_of: HashMap<&str, &Label> = labels.unwrap_or(&[]).iter().map(|l| (l.event_id.as_str(), l)).collect();
    let mut incidents_by_attack: BTreeMap<Attack, BTreeSet<&str>> = BTreeMap::new();
    for l in labels.unwrap_or(&[]) {
        incidents_by_attack.entry(l.attack).or_default().insert(l.incident.as_str());
    }
    let mut tallies: Vec<Tally> = sets.iter().map(|s| Tally::new(s.rules().len())).collect();
    let mut line = Vec::new();
    let mut events = 0u64;
    let mut benign = 0u64;
    let mut fired = Vec::new();
    while read_bounded_line(input, &mut line, max_event_bytes)?.is_some() {
        let Ok(event) = haechi_features::Event::parse(&line, max_event_bytes) else { continue };
        events += 1;
        let label = label_of.get(event.event_id.as_str()).copied();
        benign += u64::from(label.is_none());
        for k in 0..pipelines.len() {
            let Ok(processed) = pipelines[k].process(&event, &mut scratches[k]) else { continue };
            let (set, tally) = (&sets[k], &mut tallies[k]);
            fired.clear();
            fired.extend(scratches[k].findings.iter().filter(|f| &*f.detector == "rules").filter_map(|f| index_of[k].get(&*f.id).copied()));
            for &i in &fired {
                let rule = &set.rules()[i];
                tally.hits[i] += 1;
                // A customer the pipeline judged the event as (its session's) is the one blocked.
                let entity = rule.scope.and_then(|k| entity_text(processed.judged_as.as_deref().unwrap_or(&event), k));
                if let Some(l) = label {
                    tally.attack_hits[i] += 1;
                    tally.incidents[i].insert(l.incident.clone());
                }
                if let (Action::Block { .. }, Some(e)) = (rule.action, &entity) {
                    let key = format!("{}:{e}", rule.scope.map_or("", |k| k.as_str()));
                    tally.blocked[i].insert(key.clone());
                    if rule.mode == Mode::Enforce {
                        tally.blocked_all.insert(key);
                    }
                }
                let window = event.ts_ms.div_euclid(fold_window_ms) * fold_window_ms;
                let id = alert_id("rules", &rule.id, rule.scope, entity.as_deref(), window);
                if floor.is_some() {
                    tally.rule_alerts[i].insert(id.clone());
                }
                tally.alerts.insert(id);
            }
            if label.is_some() {
                tally.attack_events += 1;
                tally.attack_blocked += u64::from(processed.decision.verdict == Verdict::Block);
            }
            if processed.decision.verdict != Verdict::Allow {
                tally.flagged += 1;
                match label {
                    Some(l) => {
                        tally.caught_incidents.insert(l.incident.clone());
                    }
                    None => tally.benign_flagged += 1,
                }
            }
        }
    }
    let main = &tallies[0];
    let have_labels = labels.is_some();
    let judged: HashMap<&str, crate::service::triage::TriageLabel> = floor.unwrap_or(&[]).iter().map(|l| (l.alert_id.as_str(), l.label)).collect();
    let judged_as = |ids: &HashSet<String>, want: crate::service::triage::TriageLabel| floor.map(|_| ids.iter().filter(|id| judged.get(id.as_str()) == Some(&want)).count() as u64);
    use crate::service::triage::TriageLabel::{FalsePositive, TruePositive};
    let all_incidents: usize = incidents_by_attack.values().map(BTreeSet::len).sum();
    let report_rules = rules
        .rules()
        .iter()
        .enumerate()
        .map(|(i, r)| RuleReport {
            rule: r.id.to_string(),
            action: match r.action {
                Action::Allow => "allow".into(),
                Action::Alert => "alert".into(),
                Action::Challenge => "challenge".into(),
                Action::Block { ttl_s } => format!("block {}s", ttl_s),
            },
            mode: if r.mode == Mode::Shadow { "shadow".into() } else { "enforce".into() },
            hits: main.hits[i],
            attack_hits: main.attack_hits[i],
            benign_hits: main.hits[i] - main.attack_hits[i],
            precision: (have_labels && main.hits[i] > 0).then(|| main.attack_hits[i] as f64 / main.hits[i] as f64),
            entities_blocked: main.blocked[i].len(),
            recall: incidents_by_attack
                .iter()
                .map(|(a, incs)| (*a, incs.iter().filter(|x| main.incidents[i].contains(**x)).count() as f64 / incs.len() as f64))
                .filter(|(_, r)| *r > 0.0)
                .collect(),
            floor_true_positives: judged_as(&main.rule_alerts[i], TruePositive),
            floor_false_positives: judged_as(&main.rule_alerts[i], FalsePositive),
        })
        .collect();
    let summary = SetSummary {
        events,
        flagged: main.flagged,
        incident_recall: have_labels.then(|| main.caught_incidents.len() as f64 / all_incidents.max(1) as f64),
        false_positive_rate: have_labels.then(|| main.benign_flagged as f64 / benign.max(1) as f64),
        attack_events_blocked: have_labels.then_some((main.attack_blocked, main.attack_events)),
    };
    let baseline = tallies.get(1).map(|old| BaselineDiff {
        alerts_gained: main.alerts.difference(&old.alerts).count(),
        alerts_lost: old.alerts.difference(&main.alerts).count(),
        entities_newly_blocked: {
            let mut v: Vec<String> = main.blocked_all.difference(&old.blocked_all).cloned().collect();
            v.sort();
            v
        },
        entities_no_longer_blocked: old.blocked_all.difference(&main.blocked_all).count(),
        attack_events_blocked: have_labels.then_some(old.attack_blocked),
        false_positives_removed: judged_as(&old.alerts.difference(&main.alerts).cloned().collect(), FalsePositive).map(|n| n as usize),
        true_positives_lost: judged_as(&old.alerts.difference(&main.alerts).cloned().collect(), TruePositive).map(|n| n as usize),
    });
    Ok(BacktestReport { version: rules.version().to_string(), rules: report_rules, summary, baseline })
}

impl std::fmt::Display for BacktestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "rule set {}", self.version)?;
        writeln!(f, "{:<36} {:<14} {:>8} {:>8} {:>8} {:>9} {:>8}  recall by attack", "rule", "action", "hits", "attack", "benign", "precision", "blocked")?;
        for r in &self.rules {
            let p = r.precision.map_or("-".to_owned(), |p| format!("{p:.3}"));
            let rec: Vec<String> = r.recall.iter().map(|(a, x)| format!("{a}={x:.2}")).collect();
            let floor = match (r.floor_true_positives, r.floor_false_positives) {
                (Some(tp), Some(fp)) if tp + fp > 0 => format!("  floor: {tp} true, {fp} false positives"),
                _ => String::new(),
            };
            writeln!(f, "{:<36} {:<14} {:>8} {:>8} {:>8} {:>9} {:>8}  {}{floor}", r.rule, r.action, r.hits, r.attack_hits, r.benign_hits, p, r.entities_blocked, rec.join(" "))?;
        }
        write!(f, "events {}, flagged {}", self.summary.events, self.summary.flagged)?;
        if let (Some(r), Some(fp)) = (self.summary.incident_recall, self.summary.false_positive_rate) {
            write!(f, ", incident recall {r:.3}, benign false-positive rate {fp:.5}")?;
        }
        if let Some((blocked, attack)) = self.summary.attack_events_blocked {
            write!(f, ", attack events blocked {blocked} of {attack}")?;
        }
        if let Some(b) = &self.baseline {
            write!(
                f,
                "\nagainst the baseline: alerts gained {}, lost {}; entities newly blocked {}, no longer blocked {}",
                b.alerts_gained,
                b.alerts_lost,
                b.entities_newly_blocked.len(),
                b.entities_no_longer_blocked
            )?;
            if let (Some(old), Some((new, _))) = (b.attack_events_blocked, self.summary.attack_events_blocked) {
                write!(f, "; attack events blocked {old} → {new}")?;
            }
            if let (Some(fp), Some(tp)) = (b.false_positives_removed, b.true_positives_lost) {
                write!(f, "\nagainst the analysts' labels: false positives removed {fp}, true positives lost {tp}")?;
            }
            for e in b.entities_newly_blocked.iter().take(20) {
                write!(f, "\n  + {e}")?;
            }
        }
        Ok(())
    }
}
