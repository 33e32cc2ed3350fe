//! Reports for management and the regulator (금융감독원): what the records of one period say about
//! verification, processing time, failures and anomalies, set beside the period just before it.
//!
//! [`Report::build`] reads records the caller has already selected by `event_ms`; the report keeps
//! only counts and fixed-size histograms, so its memory does not grow with the number of records
//! (only with the number of distinct names: steps, methods, reasons, rules, alerted entities).
//! [`Report::to_json`], [`Report::to_csv`] and [`Report::to_html`] render it; the HTML page carries
//! its own copy of Apache ECharts and fetches nothing.

use std::collections::HashMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::error::RecordsError;
use crate::record::{Record, RecordBody};

/// How many alerted entities the report names.
pub const TOP_ENTITIES: usize = 10;

/// Durations above this (one day) are counted at this value in the percentiles; the mean and the
/// maximum stay exact. A fixed bound keeps each step's histogram at a fixed size.
const MAX_TRACKED_MS: u64 = 86_400_000;

/// The onboarding funnel's order (`haechi_features::Step::ALL`, which this crate does not depend
/// on): steps read in the order a customer meets them; steps not named here follow by name.
const STEP_ORDER: [&str; 11] =
    ["id_ocr", "id_authenticity", "face_match", "liveness", "account_verify", "phone_auth", "otp", "login", "account_open", "record_view", "record_export"];
const SEVERITY_ORDER: [&str; 4] = ["critical", "high", "medium", "low"];
const VERDICT_ORDER: [&str; 3] = ["allow", "challenge", "block"];

/// What a failed access without a recorded reason is counted under.
pub const UNSPECIFIED_REASON: &str = "(unspecified)";

/// One report period, `[from_ms, to_ms)` in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Period {
    /// The period of the same length that ends where this one begins.
    pub fn previous(self) -> Period {
        Period { from_ms: self.from_ms - (self.to_ms - self.from_ms), to_ms: self.from_ms }
    }
}

/// The report: every figure of the period, and the headline figures of the period before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub period: Period,
    pub previous_period: Period,
    /// How many records of each kind the period held.
    pub records: RecordCounts,
    /// Verification success and processing time per step, in funnel order.
    pub steps: Vec<StepFigures>,
    /// Verification success per method, most attempts first.
    pub methods: Vec<SuccessRate>,
    /// Failed accesses by reason, most first; shares of all failures.
    pub failure_reasons: Vec<Share>,
    pub anomalies: Anomalies,
    /// Each headline figure beside the previous period's.
    pub comparison: Vec<Comparison>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCounts {
    pub total: u64,
    pub access: u64,
    pub decision: u64,
    pub alert: u64,
    pub block: u64,
    /// Staff actions, reads, exports and destructions: counted, not analysed here.
    pub other: u64,
}

/// Attempts and successes under one name; `rate` is absent when there were no attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuccessRate {
    pub name: String,
    pub attempts: u64,
    pub successes: u64,
    pub rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFigures {
    pub name: String,
    pub attempts: u64,
    pub successes: u64,
    pub rate: Option<f64>,
    /// Absent when no access of the step recorded a duration.
    pub duration: Option<DurationFigures>,
}

/// Processing time of one step. Percentiles are nearest-rank, exact below 2,048 ms and within
/// 0.1% (rounded down) above; the mean and maximum are exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationFigures {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub max_ms: u64,
}

/// A count under one name and its share of the whole it is part of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub name: String,
    pub count: u64,
    pub share: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Anomalies {
    /// Shares of all alerts.
    pub alerts_by_rule: Vec<Share>,
    /// Critical first; shares of all alerts.
    pub alerts_by_severity: Vec<Share>,
    pub blocks_by_scope: Vec<BlockChanges>,
    /// The most alerted entities, at most [`TOP_ENTITIES`], values as recorded.
    pub top_entities: Vec<EntityAlerts>,
    /// Per rule, the share of decisions whose reasons name it.
    pub rule_hits: Vec<RuleHits>,
    /// Allow, challenge, block; shares of all decisions.
    pub decisions: Vec<Share>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockChanges {
    pub scope: String,
    pub set: u64,
    pub lifted: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityAlerts {
    pub entity_kind: Option<String>,
    pub entity: String,
    pub alerts: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleHits {
    pub rule: String,
    /// Decisions naming the rule at least once.
    pub decisions: u64,
    pub rate: f64,
}

/// The figures management reads first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Headline {
    /// Accepted events (one access record each).
    Events,
    SuccessRate,
    MeanDurationMs,
    Alerts,
    /// Blocks set.
    Blocks,
    /// Share of decisions that blocked.
    BlockRate,
}

impl Headline {
    pub const ALL: [Headline; 6] = [Headline::Events, Headline::SuccessRate, Headline::MeanDurationMs, Headline::Alerts, Headline::Blocks, Headline::BlockRate];

    pub fn as_str(self) -> &'static str {
        match self {
            Headline::Events => "events",
            Headline::SuccessRate => "success_rate",
            Headline::MeanDurationMs => "mean_duration_ms",
            Headline::Alerts => "alerts",
            Headline::Blocks => "blocks",
            Headline::BlockRate => "block_rate",
        }
    }

    fn label(self) -> (&'static str, &'static str) {
        match self {
            Headline::Events => ("처리 건수", "Events"),
            Headline::SuccessRate => ("인증 성공률", "Success rate"),
            Headline::MeanDurationMs => ("평균 처리 시간", "Mean processing time"),
            Headline::Alerts => ("경보", "Alerts"),
            Headline::Blocks => ("차단 설정", "Blocks set"),
            Headline::BlockRate => ("차단율", "Block rate"),
        }
    }

    fn is_rate(self) -> bool {
        matches!(self, Headline::SuccessRate | Headline::BlockRate)
    }
}

/// One headline figure in both periods. Absent values had nothing to be computed from (a rate
/// with no attempts); `change` is current − previous (for rates: in fractions, not percent), and
/// `change_ratio` is that change over the previous value, absent when the previous value is 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub figure: Headline,
    pub current: Option<f64>,
    pub previous: Option<f64>,
    pub change: Option<f64>,
    pub change_ratio: Option<f64>,
}

#[derive(Default)]
struct Outcomes {
    attempts: u64,
    successes: u64,
}

impl Outcomes {
    fn add(&mut self, success: bool) {
        self.attempts += 1;
        self.successes += u64::from(success);
    }

    fn rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.successes as f64 / self.attempts as f64)
    }
}

#[derive(Default)]
struct Durations {
    count: u64,
    sum: u128,
    max: u64,
}

impl Durations {
    fn add(&mut self, ms: u64) {
        self.count += 1;
        self.sum += u128::from(ms);
        self.max = self.max.max(ms);
    }

    fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }
}

struct StepTally {
    outcomes: Outcomes,
    durations: Durations,
    histogram: Histogram<u64>,
}

/// Everything one pass over a period's records counts.
#[derive(Default)]
struct Tally {
    records: RecordCounts,
    outcomes: Outcomes,
    durations: Durations,
    steps: HashMap<String, StepTally>,
    methods: HashMap<String, Outcomes>,
    failures: HashMap<String, u64>,
    failures_total: u64,
    alerts_by_rule: HashMap<String, u64>,
    alerts_by_severity: HashMap<String, u64>,
    entities: HashMap<(Option<String>, String), u64>,
    blocks: HashMap<String, (u64, u64)>,
    blocks_set: u64,
    verdicts: HashMap<String, u64>,
    rule_hits: HashMap<String, u64>,
}

/// The rule a decision reason names: the text before its first ':'.
fn rule_of(reason: &str) -> &str {
    reason.split(':').next().unwrap_or("").trim()
}

impl Tally {
    fn add(&mut self, record: &Record) -> Result<(), RecordsError> {
        self.records.total += 1;
        match &record.body {
            RecordBody::Access(a) => {
                self.records.access += 1;
                let success = a.result == "success";
                self.outcomes.add(success);
                self.methods.entry(a.method.clone()).or_default().add(success);
                if !success {
                    self.failures_total += 1;
                    let reason = a.failure_reason.as_deref().filter(|r| !r.trim().is_empty()).unwrap_or(UNSPECIFIED_REASON);
                    *self.failures.entry(reason.to_string()).or_default() += 1;
                }
                if !self.steps.contains_key(&a.step) {
                    let histogram = Histogram::new_with_bounds(1, MAX_TRACKED_MS, 3).map_err(|e| RecordsError::Report(format!("duration histogram: {e}")))?;
                    self.steps.insert(a.step.clone(), StepTally { outcomes: Outcomes::default(), durations: Durations::default(), histogram });
                }
                let step = self.steps.get_mut(&a.step).expect("inserted above");
                step.outcomes.add(success);
                if let Some(ms) = a.duration_ms {
                    self.durations.add(ms);
                    step.durations.add(ms);
                    step.histogram.saturating_record(ms);
                }
            }
            RecordBody::Decision(d) => {
                self.records.decision += 1;
                *self.verdicts.entry(d.decision.clone()).or_default() += 1;
                // A decision counts once per rule however many of its reasons name that rule.
                let mut named: Vec<&str> = d.reasons.iter().map(|r| rule_of(r)).filter(|r| !r.is_empty()).collect();
                named.sort_unstable();
                named.dedup();
                for rule in named {
                    *self.rule_hits.entry(rule.to_string()).or_default() += 1;
                }
            }
            RecordBody::Alert(a) => {
                self.records.alert += 1;
                *self.alerts_by_rule.entry(a.rule.clone()).or_default() += 1;
                *self.alerts_by_severity.entry(a.severity.clone()).or_default() += 1;
                if let Some(entity) = &a.entity {
                    *self.entities.entry((a.entity_kind.clone(), entity.clone())).or_default() += 1;
                }
            }
            RecordBody::Block(b) => {
                self.records.block += 1;
                let entry = self.blocks.entry(b.scope.clone()).or_default();
                match b.change.as_str() {
                    "set" => {
                        entry.0 += 1;
                        self.blocks_set += 1;
                    }
                    "lifted" => entry.1 += 1,
                    // Neither set nor lifted: the scope is listed, but there is no change to count.
                    _ => {}
                }
            }
            RecordBody::Action(_) | RecordBody::Read(_) | RecordBody::Export(_) | RecordBody::Destruction(_) => self.records.other += 1,
        }
        Ok(())
    }

    fn headline(&self, figure: Headline) -> Option<f64> {
        match figure {
            Headline::Events => Some(self.records.access as f64),
            Headline::SuccessRate => self.outcomes.rate(),
            Headline::MeanDurationMs => self.durations.mean(),
            Headline::Alerts => Some(self.records.alert as f64),
            Headline::Blocks => Some(self.blocks_set as f64),
            Headline::BlockRate => {
                let decisions = self.records.decision;
                (decisions > 0).then(|| self.verdicts.get("block").copied().unwrap_or(0) as f64 / decisions as f64)
            }
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Most first, then by name, so equal counts list the same way every time.
fn by_count(counts: HashMap<String, u64>, whole: u64) -> Vec<Share> {
    let mut v: Vec<Share> = counts.into_iter().map(|(name, count)| Share { share: ratio(count, whole), name, count }).collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v
}

/// Names in `order` first, in that order; the rest after them, most first.
fn in_order(counts: HashMap<String, u64>, whole: u64, order: &[&str]) -> Vec<Share> {
    let mut v = by_count(counts, whole);
    v.sort_by_key(|s| order.iter().position(|o| *o == s.name).unwrap_or(order.len()));
    v
}

impl Report {
    /// Builds the report of `period` from its records and the previous period's (the same length,
    /// just before), both selected by the caller by `event_ms`.
    pub fn build<'a>(period: (i64, i64), current: impl IntoIterator<Item = &'a Record>, previous: impl IntoIterator<Item = &'a Record>) -> Result<Report, RecordsError> {
        let (from_ms, to_ms) = period;
        if from_ms >= to_ms {
            return Err(RecordsError::Report(format!("the period {from_ms}..{to_ms} ms is empty or ends before it begins")));
        }
        let period = Period { from_ms, to_ms };
        let mut now = Tally::default();
        for r in current {
            now.add(r)?;
        }
        let mut before = Tally::default();
        for r in previous {
            before.add(r)?;
        }

        let comparison = Headline::ALL
            .into_iter()
            .map(|figure| {
                let (current, previous) = (now.headline(figure), before.headline(figure));
                let change = current.zip(previous).map(|(c, p)| c - p);
                let change_ratio = change.zip(previous).and_then(|(d, p)| (p != 0.0).then(|| d / p));
                Comparison { figure, current, previous, change, change_ratio }
            })
            .collect();

        let mut steps: Vec<StepFigures> = now
            .steps
            .into_iter()
            .map(|(name, t)| {
                let duration = t.durations.mean().map(|mean_ms| {
                    // Nearest rank, read back as the bottom of its bucket (the recorded value
                    // itself below 2,048 ms) and never above the exact maximum.
                    let at = |q: f64| t.histogram.lowest_equivalent(t.histogram.value_at_quantile(q)).min(t.durations.max);
                    DurationFigures { count: t.durations.count, mean_ms, p50_ms: at(0.50), p95_ms: at(0.95), max_ms: t.durations.max }
                });
                StepFigures { name, attempts: t.outcomes.attempts, successes: t.outcomes.successes, rate: t.outcomes.rate(), duration }
            })
            .collect();
        steps.sort_by(|a, b| {
            let rank = |n: &str| STEP_ORDER.iter().position(|s| *s == n).unwrap_or(STEP_ORDER.len());
            rank(&a.name).cmp(&rank(&b.name)).then_with(|| a.name.cmp(&b.name))
        });

        let mut methods: Vec<SuccessRate> =
            now.methods.into_iter().map(|(name, o)| SuccessRate { rate: o.rate(), attempts: o.attempts, successes: o.successes, name }).collect();
        methods.sort_by(|a, b| b.attempts.cmp(&a.attempts).then_with(|| a.name.cmp(&b.name)));

        let mut blocks_by_scope: Vec<BlockChanges> = now.blocks.into_iter().map(|(scope, (set, lifted))| BlockChanges { scope, set, lifted }).collect();
        blocks_by_scope.sort_by(|a, b| (b.set + b.lifted).cmp(&(a.set + a.lifted)).then_with(|| a.scope.cmp(&b.scope)));

        let mut top_entities: Vec<EntityAlerts> =
            now.entities.into_iter().map(|((entity_kind, entity), alerts)| EntityAlerts { entity_kind, entity, alerts }).collect();
        top_entities.sort_by(|a, b| b.alerts.cmp(&a.alerts).then_with(|| a.entity_kind.cmp(&b.entity_kind)).then_with(|| a.entity.cmp(&b.entity)));
        top_entities.truncate(TOP_ENTITIES);

        let decisions = now.records.decision;
        let mut rule_hits: Vec<RuleHits> = now.rule_hits.into_iter().map(|(rule, n)| RuleHits { rule, decisions: n, rate: ratio(n, decisions) }).collect();
        rule_hits.sort_by(|a, b| b.decisions.cmp(&a.decisions).then_with(|| a.rule.cmp(&b.rule)));

        let alerts = now.records.alert;
        let anomalies = Anomalies {
            alerts_by_rule: by_count(now.alerts_by_rule, alerts),
            alerts_by_severity: in_order(now.alerts_by_severity, alerts, &SEVERITY_ORDER),
            blocks_by_scope,
            top_entities,
            rule_hits,
            decisions: in_order(now.verdicts, decisions, &VERDICT_ORDER),
        };

        Ok(Report {
            period,
            previous_period: period.previous(),
            records: now.records,
            steps,
            methods,
            failure_reasons: by_count(now.failures, now.failures_total),
            anomalies,
            comparison,
        })
    }

    /// The report as JSON, every figure unrounded.
    pub fn to_json(&self) -> Result<String, RecordsError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// The report as one flat table, `section,key,metric,value,previous`: `previous` is filled in
    /// only for the headline figures. Names are written as recorded, except that a name a
    /// spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a leading `'`.
    pub fn to_csv(&self) -> Result<String, RecordsError> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["section", "key", "metric", "value", "previous"])?;
        let mut row = |section: &str, key: &str, metric: &str, value: String, previous: String| w.write_record([section, &csv_text(key), metric, &value, &previous]);

        for (key, p) in [("current", self.period), ("previous", self.previous_period)] {
            row("period", key, "from_ms", p.from_ms.to_string(), String::new())?;
            row("period", key, "to_ms", p.to_ms.to_string(), String::new())?;
        }
        let r = &self.records;
        for (metric, n) in [("total", r.total), ("access", r.access), ("decision", r.decision), ("alert", r.alert), ("block", r.block), ("other", r.other)] {
            row("records", metric, "count", n.to_string(), String::new())?;
        }
        for c in &self.comparison {
            row("headline", c.figure.as_str(), "value", num(c.current), num(c.previous))?;
            row("headline", c.figure.as_str(), "change", num(c.change), String::new())?;
            row("headline", c.figure.as_str(), "change_ratio", num(c.change_ratio), String::new())?;
        }
        for s in &self.steps {
            row("step", &s.name, "attempts", s.attempts.to_string(), String::new())?;
            row("step", &s.name, "successes", s.successes.to_string(), String::new())?;
            row("step", &s.name, "success_rate", num(s.rate), String::new())?;
            if let Some(d) = &s.duration {
                row("step", &s.name, "duration_count", d.count.to_string(), String::new())?;
                row("step", &s.name, "duration_mean_ms", num(Some(d.mean_ms)), String::new())?;
                row("step", &s.name, "duration_p50_ms", d.p50_ms.to_string(), String::new())?;
                row("step", &s.name, "duration_p95_ms", d.p95_ms.to_string(), String::new())?;
                row("step", &s.name, "duration_max_ms", d.max_ms.to_string(), String::new())?;
            }
        }
        for m in &self.methods {
            row("method", &m.name, "attempts", m.attempts.to_string(), String::new())?;
            row("method", &m.name, "successes", m.successes.to_string(), String::new())?;
            row("method", &m.name, "success_rate", num(m.rate), String::new())?;
        }
        let a = &self.anomalies;
        for (section, shares) in [("failure_reason", &self.failure_reasons), ("alert_rule", &a.alerts_by_rule), ("alert_severity", &a.alerts_by_severity), ("decision", &a.decisions)] {
            for s in shares {
                row(section, &s.name, "count", s.count.to_string(), String::new())?;
                row(section, &s.name, "share", num(Some(s.share)), String::new())?;
            }
        }
        for b in &a.blocks_by_scope {
            row("block_scope", &b.scope, "set", b.set.to_string(), String::new())?;
            row("block_scope", &b.scope, "lifted", b.lifted.to_string(), String::new())?;
        }
        for e in &a.top_entities {
            let metric = format!("alerts:{}", e.entity_kind.as_deref().unwrap_or("-"));
            row("top_entity", &e.entity, &metric, e.alerts.to_string(), String::new())?;
        }
        for h in &a.rule_hits {
            row("rule_hit", &h.rule, "decisions", h.decisions.to_string(), String::new())?;
            row("rule_hit", &h.rule, "hit_rate", num(Some(h.rate)), String::new())?;
        }
        let bytes = w.into_inner().map_err(|e| RecordsError::Csv(e.into_error().into()))?;
        String::from_utf8(bytes).map_err(|e| RecordsError::Report(format!("CSV is not UTF-8: {e}")))
    }

    /// One self-contained HTML page for executives: headline figures, charts (Apache ECharts,
    /// embedded) and the same numbers as plain tables. The page loads nothing from anywhere.
    pub fn to_html(&self) -> Result<String, RecordsError> {
        let data = script_json(&serde_json::to_string(self)?);
        let (from, to) = (kst(self.period.from_ms), kst(self.period.to_ms));
        let (pfrom, pto) = (kst(self.previous_period.from_ms), kst(self.previous_period.to_ms));
        let mut h = String::with_capacity(ECHARTS_JS.len() + 64 * 1024);
        // Written to a String, which cannot fail: the fmt::Results below are ignored for that reason.
        let _ = write!(
            h,
            r#"<!DOCTYPE html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>eKYC 이상거래 탐지 보고서 · Fraud-detection report {from} – {to}</title>
<style>{css}</style>
</head>
<body>
<header>
<h1>eKYC 이상거래 탐지 보고서 <span class="en">eKYC fraud-detection report</span></h1>
<p class="period"><strong>기간 Period</strong> {from} – {to} (KST) &nbsp;·&nbsp; <strong>비교 기간 Compared with</strong> {pfrom} – {pto}</p>
</header>
<main>
<section aria-labelledby="h-headline">
<h2 id="h-headline">핵심 지표 <span class="en">Headline figures</span></h2>
<div class="cards">
"#,
            css = REPORT_CSS,
        );
        for c in &self.comparison {
            let (ko, en) = c.figure.label();
            let _ = writeln!(
                h,
                r#"<div class="card"><div class="label">{ko} <span class="en">{en}</span></div><div class="value">{value}</div><div class="change">{change}</div><div class="prev">이전 Previous: {prev}</div></div>"#,
                value = headline_value(c.figure, c.current),
                change = change_text(c),
                prev = headline_value(c.figure, c.previous),
            );
        }
        h.push_str(
            r#"</div>
</section>
<section aria-labelledby="h-charts">
<h2 id="h-charts">한눈에 보기 <span class="en">At a glance</span></h2>
<div class="charts">
"#,
        );
        for (id, ko, en, table) in CHARTS {
            let _ = writeln!(
                h,
                r##"<figure class="{wide}"><figcaption>{ko} <span class="en">{en}</span></figcaption><div class="chart" id="{id}" role="img" aria-label="{en}: see the table {table}"></div></figure>"##,
                wide = if id == "chart-comparison" { "wide" } else { "" },
                table = table,
            );
        }
        h.push_str("</div>\n</section>\n");

        h.push_str("<section aria-labelledby=\"h-tables\">\n<h2 id=\"h-tables\">상세 수치 <span class=\"en\">Detailed figures</span></h2>\n");
        self.html_tables(&mut h);
        h.push_str("</section>\n");

        let _ = write!(
            h,
            r#"</main>
<footer>Haechi — 접근기록(전자금융거래법 §22, 개인정보 보호법 §29)에서 산출. Computed from the access records; shares are of the period's own totals. Charts: Apache ECharts {ECHARTS_VERSION} (Apache-2.0), embedded.</footer>
<script type="application/json" id="report-data">{data}</script>
<script>{echarts}</script>
<script>{page}</script>
</body>
</html>
"#,
            echarts = script_safe(ECHARTS_JS),
            page = script_safe(REPORT_JS),
        );
        Ok(h)
    }

    fn html_tables(&self, h: &mut String) {
        let mut t = Table::new(h, "t-headline", "기간 비교", "Period comparison", &["지표 Figure", "이번 기간 Current", "이전 기간 Previous", "변화 Change"]);
        for c in &self.comparison {
            let (ko, en) = c.figure.label();
            t.row(&[format!("{ko} / {en}"), headline_value(c.figure, c.current), headline_value(c.figure, c.previous), change_text(c)]);
        }
        t.end();

        let mut t = Table::new(
            h,
            "t-steps",
            "단계별 인증 성공률과 처리 시간",
            "Verification success and processing time by step",
            &["단계 Step", "시도 Attempts", "성공 Successes", "성공률 Rate", "평균 Mean", "p50", "p95", "최대 Max"],
        );
        for s in &self.steps {
            let d = s.duration.as_ref();
            t.row(&[
                s.name.clone(),
                count(s.attempts),
                count(s.successes),
                percent(s.rate),
                d.map_or(DASH.into(), |d| ms(d.mean_ms)),
                d.map_or(DASH.into(), |d| ms(d.p50_ms as f64)),
                d.map_or(DASH.into(), |d| ms(d.p95_ms as f64)),
                d.map_or(DASH.into(), |d| ms(d.max_ms as f64)),
            ]);
        }
        t.end();

        // The narrow tables side by side; the two wide ones above them keep their full width.
        h.push_str("<div class=\"tables\">\n");

        let mut t = Table::new(h, "t-methods", "인증 수단별 성공률", "Verification success by method", &["수단 Method", "시도 Attempts", "성공 Successes", "성공률 Rate"]);
        for m in &self.methods {
            t.row(&[m.name.clone(), count(m.attempts), count(m.successes), percent(m.rate)]);
        }
        t.end();

        share_table(h, "t-failures", "실패 사유", "Failure reasons", "사유 Reason", &self.failure_reasons);
        let a = &self.anomalies;
        share_table(h, "t-alert-rules", "규칙별 경보", "Alerts by rule", "규칙 Rule", &a.alerts_by_rule);
        share_table(h, "t-alert-severity", "심각도별 경보", "Alerts by severity", "심각도 Severity", &a.alerts_by_severity);

        let mut t = Table::new(h, "t-blocks", "범위별 차단", "Blocks by scope", &["범위 Scope", "설정 Set", "해제 Lifted"]);
        for b in &a.blocks_by_scope {
            t.row(&[b.scope.clone(), count(b.set), count(b.lifted)]);
        }
        t.end();

        let mut t = Table::new(h, "t-entities", "경보가 많은 대상 (상위 10)", "Most alerted entities (top 10)", &["대상 Entity", "유형 Kind", "경보 Alerts"]);
        t.text_columns = 2;
        for e in &a.top_entities {
            t.row(&[e.entity.clone(), e.entity_kind.clone().unwrap_or_else(|| DASH.into()), count(e.alerts)]);
        }
        t.end();

        let mut t = Table::new(h, "t-rule-hits", "규칙 적중률", "Rule hit rates (share of decisions naming the rule)", &["규칙 Rule", "결정 Decisions", "적중률 Hit rate"]);
        for r in &a.rule_hits {
            t.row(&[r.rule.clone(), count(r.decisions), percent(Some(r.rate))]);
        }
        t.end();

        share_table(h, "t-decisions", "판정 결과", "Decisions by verdict", "판정 Verdict", &a.decisions);
        h.push_str("</div>\n");
    }
}

/// The chart containers: id, Korean and English caption, and the table holding the same numbers.
const CHARTS: [(&str, &str, &str, &str); 5] = [
    ("chart-comparison", "이전 기간 대비", "Current vs previous period", "Period comparison"),
    ("chart-success-by-step", "단계별 인증 성공률", "Success rate by step", "Verification success and processing time by step"),
    ("chart-duration-by-step", "단계별 처리 시간 (p50 / p95)", "Processing time by step (p50 / p95)", "Verification success and processing time by step"),
    ("chart-failure-reasons", "실패 사유", "Failure reasons", "Failure reasons"),
    ("chart-alerts-by-rule", "규칙별 경보", "Alerts by rule", "Alerts by rule"),
];

/// The chart containers' ids, in page order: what a test of the rendered page looks for.
pub fn chart_ids() -> impl Iterator<Item = &'static str> {
    CHARTS.iter().map(|c| c.0)
}

/// Apache ECharts, vendored (see `assets/README.md`).
pub const ECHARTS_JS: &str = include_str!("../assets/echarts.min.js");
pub const ECHARTS_VERSION: &str = "5.6.0";
const REPORT_JS: &str = include_str!("../assets/report.js");
const REPORT_CSS: &str = include_str!("../assets/report.css");

const DASH: &str = "–";

struct Table<'a, 'b> {
    h: &'a mut String,
    rows: usize,
    columns: usize,
    /// Leading columns of text (left-aligned); the rest are figures.
    text_columns: usize,
    headers: Vec<&'b str>,
}

impl<'a, 'b> Table<'a, 'b> {
    fn new(h: &'a mut String, id: &str, ko: &str, en: &str, headers: &[&'b str]) -> Table<'a, 'b> {
        let _ = write!(h, "<section class=\"table\" aria-labelledby=\"{id}\">\n<table>\n<caption id=\"{id}\">{} <span class=\"en\">{}</span></caption>\n", esc(ko), esc(en));
        Table { h, rows: 0, columns: headers.len(), text_columns: 1, headers: headers.to_vec() }
    }

    fn head(&mut self) {
        self.h.push_str("<thead><tr>");
        for (i, head) in self.headers.iter().enumerate() {
            let class = if i < self.text_columns { "" } else { " class=\"num\"" };
            let _ = write!(self.h, "<th scope=\"col\"{class}>{}</th>", esc(head));
        }
        self.h.push_str("</tr></thead>\n<tbody>\n");
    }

    fn row(&mut self, cells: &[String]) {
        if self.rows == 0 {
            self.head();
        }
        self.rows += 1;
        self.h.push_str("<tr>");
        for (i, cell) in cells.iter().enumerate() {
            if i == 0 {
                let _ = write!(self.h, "<th scope=\"row\">{}</th>", esc(cell));
            } else if i < self.text_columns {
                let _ = write!(self.h, "<td>{}</td>", esc(cell));
            } else {
                let _ = write!(self.h, "<td class=\"num\">{}</td>", esc(cell));
            }
        }
        self.h.push_str("</tr>\n");
    }

    fn end(mut self) {
        if self.rows == 0 {
            self.head();
            let _ = writeln!(self.h, "<tr><td class=\"empty\" colspan=\"{}\">이 기간에 없음 · None in this period</td></tr>", self.columns);
        }
        self.h.push_str("</tbody>\n</table>\n</section>\n");
    }
}

fn share_table(h: &mut String, id: &str, ko: &str, en: &str, name: &str, shares: &[Share]) {
    let mut t = Table::new(h, id, ko, en, &[name, "건수 Count", "비중 Share"]);
    for s in shares {
        t.row(&[s.name.clone(), count(s.count), percent(Some(s.share))]);
    }
    t.end();
}

/// Text for an HTML element or a quoted attribute.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that cannot end the `<script>` it sits in, whatever the records held: `<`, `>` and `&`
/// become JSON escapes, which `JSON.parse` reads back as the same characters.
fn script_json(json: &str) -> String {
    json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

/// Script text with every `</script` (any case) written `<\/script`: the HTML parser would end the
/// element there, while in JavaScript strings, regexes and comments `<\/` reads as `</`.
fn script_safe(js: &str) -> String {
    let needle = b"</script";
    let bytes = js.as_bytes();
    let mut out = String::with_capacity(js.len());
    let mut last = 0;
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        if bytes[i..i + needle.len()].eq_ignore_ascii_case(needle) {
            out.push_str(&js[last..i]);
            out.push_str("<\\/");
            last = i + 2;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    out.push_str(&js[last..]);
    out
}

/// A spreadsheet runs a cell that starts with one of these as a formula.
fn csv_text(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        None => String::new(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Some(v) => v.to_string(),
    }
}

/// `yyyy-mm-dd hh:mm` in Korean time, which is what the bank's staff and the regulator read.
fn kst(ms: i64) -> String {
    let offset = time::UtcOffset::from_hms(9, 0, 0).expect("+09:00 is a valid offset");
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => {
            let t = t.to_offset(offset);
            format!("{:04}-{:02}-{:02} {:02}:{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
        }
        // Outside the calendar `time` knows: show the raw instant rather than a wrong date.
        Err(_) => format!("{ms} ms"),
    }
}

fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn percent(v: Option<f64>) -> String {
    v.map_or(DASH.into(), |v| format!("{:.1}%", v * 100.0))
}

fn ms(v: f64) -> String {
    format!("{} ms", count(v.round().max(0.0) as u64))
}

fn headline_value(figure: Headline, v: Option<f64>) -> String {
    match (figure, v) {
        (_, None) => DASH.into(),
        (Headline::MeanDurationMs, Some(v)) => ms(v),
        (f, Some(v)) if f.is_rate() => percent(Some(v)),
        (_, Some(v)) => count(v.round().max(0.0) as u64),
    }
}

/// Rates change in percentage points (%p, as Korean reports write it); counts and times by how
/// much and by what share of the previous value.
fn change_text(c: &Comparison) -> String {
    let Some(d) = c.change else { return DASH.into() };
    let arrow = if d > 0.0 {
        "▲"
    } else if d < 0.0 {
        "▼"
    } else {
        "="
    };
    if d == 0.0 {
        return if c.figure.is_rate() { "= 0.0%p".into() } else { "= 0".into() };
    }
    if c.figure.is_rate() {
        return format!("{arrow} {:+.1}%p", d * 100.0);
    }
    let amount = if c.figure == Headline::MeanDurationMs { format!("{d:+.0} ms") } else { format!("{d:+.0}") };
    match c.change_ratio {
        Some(r) => format!("{arrow} {amount} ({:+.1}%)", r * 100.0),
        None => format!("{arrow} {amount}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AccessRecord, AlertRecord, BlockRecord, DecisionRecord};

    fn rec(seq: u64, body: RecordBody) -> Record {
        Record { id: format!("t{seq}@n"), seq, event_ms: 1_000 + seq as i64, recorded_ms: 2_000, node: "n".into(), customer_id: None, log_offset: None, body }
    }

    fn access(seq: u64, step: &str, method: &str, ok: bool, reason: Option<&str>, duration_ms: Option<u64>) -> Record {
        rec(
            seq,
            RecordBody::Access(AccessRecord {
                event_id: format!("e{seq}"),
                step: step.into(),
                method: method.into(),
                result: if ok { "success" } else { "failure" }.into(),
                failure_reason: reason.map(Into::into),
                duration_ms,
                ..AccessRecord::default()
            }),
        )
    }

    fn decision(seq: u64, verdict: &str, reasons: &[&str]) -> Record {
        rec(seq, RecordBody::Decision(DecisionRecord { event_id: format!("e{seq}"), decision: verdict.into(), score: 0.5, reasons: reasons.iter().map(|r| r.to_string()).collect() }))
    }

    fn alert(seq: u64, rule: &str, severity: &str, kind: &str, entity: &str) -> Record {
        rec(
            seq,
            RecordBody::Alert(AlertRecord {
                alert_id: format!("a{seq}"),
                detector: "rules".into(),
                rule: rule.into(),
                severity: severity.into(),
                entity_kind: Some(kind.into()),
                entity: Some(entity.into()),
                action: "block".into(),
                event_id: format!("e{seq}"),
                count: 1,
            }),
        )
    }

    fn block(seq: u64, change: &str, scope: &str) -> Record {
        rec(seq, RecordBody::Block(BlockRecord { change: change.into(), scope: scope.into(), entity: "x".into(), by: "rule".into(), ..BlockRecord::default() }))
    }

    /// Four OTP attempts (three succeed), two face matches (one fails without a reason), three
    /// decisions, four alerts, three block changes.
    fn current() -> Vec<Record> {
        vec![
            access(1, "otp", "phone", true, None, Some(100)),
            access(2, "otp", "phone", true, None, Some(200)),
            access(3, "otp", "phone", true, None, Some(300)),
            access(4, "otp", "phone", false, Some("otp_mismatch"), Some(400)),
            access(5, "face_match", "face", true, None, Some(1_000)),
            access(6, "face_match", "face", false, None, None),
            decision(7, "block", &["otp_burst: 30 failures in 60 s", "otp_burst: again", "new_device: first seen"]),
            decision(8, "allow", &[]),
            decision(9, "challenge", &["new_device: first seen"]),
            alert(10, "otp_burst", "high", "customer", "c-1"),
            alert(11, "otp_burst", "high", "customer", "c-1"),
            alert(12, "new_device", "medium", "device", "d-9"),
            alert(13, "otp_burst", "critical", "customer", "c-2"),
            block(14, "set", "customer"),
            block(15, "set", "ip"),
            block(16, "lifted", "customer"),
        ]
    }

    fn previous() -> Vec<Record> {
        vec![access(20, "otp", "phone", true, None, Some(50)), access(21, "otp", "phone", false, Some("otp_mismatch"), Some(150)), decision(22, "allow", &[]), alert(23, "otp_burst", "high", "customer", "c-3")]
    }

    fn report() -> Report {
        Report::build((1_000, 2_000), &current(), &previous()).unwrap()
    }

    fn figure(r: &Report, f: Headline) -> &Comparison {
        r.comparison.iter().find(|c| c.figure == f).unwrap()
    }

    #[test]
    fn success_rates_per_step_and_method() {
        let r = report();
        let names: Vec<&str> = r.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["face_match", "otp"], "funnel order, not alphabetical or by count");
        let otp = &r.steps[1];
        assert_eq!((otp.attempts, otp.successes, otp.rate), (4, 3, Some(0.75)));
        let face = &r.steps[0];
        assert_eq!((face.attempts, face.successes, face.rate), (2, 1, Some(0.5)));
        assert_eq!(r.methods[0].name, "phone");
        assert_eq!((r.methods[0].attempts, r.methods[0].rate), (4, Some(0.75)));
        assert_eq!((r.methods[1].name.as_str(), r.methods[1].rate), ("face", Some(0.5)));
        assert_eq!(r.records, RecordCounts { total: 16, access: 6, decision: 3, alert: 4, block: 3, other: 0 });
    }

    #[test]
    fn durations_mean_and_percentiles() {
        let r = report();
        let otp = r.steps[1].duration.as_ref().unwrap();
        assert_eq!((otp.count, otp.mean_ms, otp.p50_ms, otp.p95_ms, otp.max_ms), (4, 250.0, 200, 400, 400));
        // One access without a duration: counted as an attempt, not as a time.
        let face = r.steps[0].duration.as_ref().unwrap();
        assert_eq!((face.count, face.p50_ms, face.p95_ms), (1, 1_000, 1_000));

        let many: Vec<Record> = (1..=100).map(|i| access(i, "liveness", "face", true, None, Some(i))).collect();
        let r = Report::build((0, 1), &many, []).unwrap();
        let d = r.steps[0].duration.as_ref().unwrap();
        assert_eq!((d.p50_ms, d.p95_ms, d.max_ms, d.mean_ms), (50, 95, 100, 50.5));

        // Above the histogram's exact range: within 0.1%, never above the maximum.
        let slow: Vec<Record> = (1..=20).map(|i| access(i, "id_ocr", "id_card", true, None, Some(10_000 + i * 1_000))).collect();
        let r = Report::build((0, 1), &slow, []).unwrap();
        let d = r.steps[0].duration.as_ref().unwrap();
        assert!(d.p50_ms.abs_diff(20_000) <= 20, "{d:?}");
        assert!(d.p95_ms.abs_diff(29_000) <= 29, "{d:?}");
        assert_eq!(d.max_ms, 30_000);

        // Far beyond a day: the maximum and mean stay exact, the percentiles stay at or below it.
        let huge = [access(1, "otp", "phone", true, None, Some(u64::MAX / 4))];
        let d = Report::build((0, 1), &huge, []).unwrap().steps[0].duration.clone().unwrap();
        assert_eq!(d.max_ms, u64::MAX / 4);
        assert!(d.p95_ms <= d.max_ms && d.p95_ms >= MAX_TRACKED_MS / 2, "{d:?}");
    }

    #[test]
    fn failure_reasons_with_unspecified() {
        let r = report();
        let reasons: Vec<(&str, u64, f64)> = r.failure_reasons.iter().map(|s| (s.name.as_str(), s.count, s.share)).collect();
        assert_eq!(reasons, [(UNSPECIFIED_REASON, 1, 0.5), ("otp_mismatch", 1, 0.5)]);
    }

    #[test]
    fn anomalies() {
        let a = report().anomalies;
        let rules: Vec<(&str, u64)> = a.alerts_by_rule.iter().map(|s| (s.name.as_str(), s.count)).collect();
        assert_eq!(rules, [("otp_burst", 3), ("new_device", 1)]);
        assert_eq!(a.alerts_by_rule[0].share, 0.75);
        let sev: Vec<(&str, u64)> = a.alerts_by_severity.iter().map(|s| (s.name.as_str(), s.count)).collect();
        assert_eq!(sev, [("critical", 1), ("high", 2), ("medium", 1)], "by severity, not by count");
        assert_eq!(a.blocks_by_scope, [BlockChanges { scope: "customer".into(), set: 1, lifted: 1 }, BlockChanges { scope: "ip".into(), set: 1, lifted: 0 }]);
        assert_eq!(a.top_entities[0], EntityAlerts { entity_kind: Some("customer".into()), entity: "c-1".into(), alerts: 2 });
        assert_eq!(a.top_entities.len(), 3);
        // otp_burst named twice in one decision still hits that decision once: 1 of 3.
        let hits: Vec<(&str, u64, f64)> = a.rule_hits.iter().map(|h| (h.rule.as_str(), h.decisions, h.rate)).collect();
        assert_eq!(hits, [("new_device", 2, 2.0 / 3.0), ("otp_burst", 1, 1.0 / 3.0)]);
        let verdicts: Vec<(&str, u64)> = a.decisions.iter().map(|s| (s.name.as_str(), s.count)).collect();
        assert_eq!(verdicts, [("allow", 1), ("challenge", 1), ("block", 1)]);
    }

    #[test]
    fn top_entities_keep_the_ten_most_alerted() {
        let alerts: Vec<Record> = (0..15u64).flat_map(|e| (0..=e).map(move |i| alert(e * 100 + i, "r", "low", "ip", &format!("10.0.0.{e}")))).collect();
        let top = Report::build((0, 1), &alerts, []).unwrap().anomalies.top_entities;
        assert_eq!(top.len(), TOP_ENTITIES);
        assert_eq!((top[0].entity.as_str(), top[0].alerts), ("10.0.0.14", 15));
        assert_eq!((top[9].entity.as_str(), top[9].alerts), ("10.0.0.5", 6));
    }

    #[test]
    fn the_previous_period_and_the_changes() {
        let r = report();
        assert_eq!(r.previous_period, Period { from_ms: 0, to_ms: 1_000 });
        let events = figure(&r, Headline::Events);
        assert_eq!((events.current, events.previous, events.change, events.change_ratio), (Some(6.0), Some(2.0), Some(4.0), Some(2.0)));
        let rate = figure(&r, Headline::SuccessRate);
        assert_eq!((rate.current, rate.previous), (Some(4.0 / 6.0), Some(0.5)));
        assert!((rate.change.unwrap() - (4.0 / 6.0 - 0.5)).abs() < 1e-12);
        let mean = figure(&r, Headline::MeanDurationMs);
        assert_eq!((mean.current, mean.previous, mean.change), (Some(400.0), Some(100.0), Some(300.0)));
        let alerts = figure(&r, Headline::Alerts);
        assert_eq!((alerts.current, alerts.previous, alerts.change, alerts.change_ratio), (Some(4.0), Some(1.0), Some(3.0), Some(3.0)));
        // No block set before: the change is there, a ratio of it is not.
        let blocks = figure(&r, Headline::Blocks);
        assert_eq!((blocks.current, blocks.previous, blocks.change, blocks.change_ratio), (Some(2.0), Some(0.0), Some(2.0), None));
        let rate = figure(&r, Headline::BlockRate);
        assert_eq!((rate.current, rate.previous, rate.change_ratio), (Some(1.0 / 3.0), Some(0.0), None));

        // Nothing before at all: rates there are absent, and so are their changes.
        let r = Report::build((1_000, 2_000), &current(), []).unwrap();
        let rate = figure(&r, Headline::SuccessRate);
        assert_eq!((rate.previous, rate.change), (None, None));
        assert_eq!(figure(&r, Headline::Events).previous, Some(0.0));
    }

    #[test]
    fn an_empty_or_inverted_period_is_refused() {
        for period in [(5, 5), (6, 5)] {
            let e = Report::build(period, [], []).unwrap_err();
            assert!(matches!(e, RecordsError::Report(_)), "{e}");
        }
    }

    #[test]
    fn json_shape_reads_back() {
        let r = report();
        let json = r.to_json().unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in ["period", "previous_period", "records", "steps", "methods", "failure_reasons", "anomalies", "comparison"] {
            assert!(v.get(key).is_some(), "{key} missing: {json}");
        }
        assert_eq!(v["steps"][1]["name"], "otp");
        assert_eq!(v["steps"][1]["rate"], 0.75);
        assert_eq!(v["comparison"][0]["figure"], "events");
        assert_eq!(v["anomalies"]["rule_hits"][0]["rule"], "new_device");
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
    }

    #[test]
    fn csv_shape() {
        let mut records = current();
        records.push(alert(30, "otp_burst", "low", "ip", "=HYPERLINK(\"x\")"));
        let csv = Report::build((1_000, 2_000), &records, &previous()).unwrap().to_csv().unwrap();
        let mut rd = csv::Reader::from_reader(csv.as_bytes());
        assert_eq!(rd.headers().unwrap(), vec!["section", "key", "metric", "value", "previous"]);
        let rows: Vec<Vec<String>> = rd.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
        let find = |section: &str, key: &str, metric: &str| {
            rows.iter().find(|r| r[0] == section && r[1] == key && r[2] == metric).unwrap_or_else(|| panic!("no {section},{key},{metric} in\n{csv}")).clone()
        };
        assert!(rows.iter().all(|r| r.len() == 5));
        assert_eq!(find("step", "otp", "success_rate")[3], "0.75");
        assert_eq!(find("step", "otp", "duration_p95_ms")[3], "400");
        assert_eq!(find("headline", "events", "value")[3..], ["6", "2"]);
        assert_eq!(find("headline", "blocks", "change_ratio")[3], "", "no ratio of a change from zero");
        assert_eq!(find("rule_hit", "otp_burst", "hit_rate")[3], (1.0f64 / 3.0).to_string());
        assert_eq!(find("failure_reason", UNSPECIFIED_REASON, "share")[3], "0.5");
        assert_eq!(find("top_entity", "c-1", "alerts:customer")[3], "2");
        // The formula reaches the spreadsheet as text.
        assert_eq!(find("top_entity", "'=HYPERLINK(\"x\")", "alerts:ip")[3], "1");
    }

    /// The part of the page between the data element's opening tag and the first `</script>` after it.
    fn data_element(html: &str) -> &str {
        let open = r#"<script type="application/json" id="report-data">"#;
        let start = html.find(open).expect("the data element") + open.len();
        &html[start..start + html[start..].find("</script>").expect("its end")]
    }

    /// The page with the text of every script element left out.
    fn outside_scripts(html: &str) -> String {
        let mut out = String::new();
        let mut rest = html;
        while let Some(start) = rest.find("<script") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("</script>").expect("every script ends");
            rest = &rest[start + end + "</script>".len()..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn hostile_record_values_cannot_leave_their_place_in_the_page() {
        let hostile = "</script><img src=x onerror=alert(1)>&amp;<!--";
        let mut records = current();
        records.push(alert(30, "<b>rule</b>", "high", "ip", hostile));
        records.push(alert(31, "<b>rule</b>", "high", "ip", hostile));
        records.push(access(32, "otp", "phone", false, Some("'\"><svg onload=alert(2)>"), Some(5)));
        let r = Report::build((1_000, 2_000), &records, []).unwrap();
        let html = r.to_html().unwrap();

        // The first `</script>` after the data is the element's own end: what lies before it
        // parses back to the whole report, hostile values included.
        let data = data_element(&html);
        assert!(!data.contains('<') && !data.contains('>') && !data.contains('&'), "{data}");
        assert_eq!(serde_json::from_str::<Report>(data).unwrap(), r);

        // In the tables the same values are text. (ECharts' own code mentions `<img`, so only the
        // markup outside the scripts is searched.)
        let markup = outside_scripts(&html);
        assert!(markup.contains("<table"), "{markup}");
        assert!(!markup.contains("<img"), "an img element made it into the page");
        assert!(!markup.contains("<svg"), "an svg element made it into the page");
        assert!(!markup.contains("<b>rule"));
        assert!(markup.contains("&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&amp;amp;&lt;!--"));
        assert!(markup.contains("&#39;&quot;&gt;&lt;svg onload=alert(2)&gt;"));
    }

    #[test]
    fn the_page_holds_echarts_whole_and_loads_nothing() {
        let html = report().to_html().unwrap();
        // The library is embedded, and nothing in the page could make it fetch a script, style
        // sheet, font or image from anywhere.
        assert!(html.contains(&format!("Apache ECharts {ECHARTS_VERSION}")));
        assert!(ECHARTS_JS.contains(&format!("version=\"{ECHARTS_VERSION}\"")), "assets/echarts.min.js is not {ECHARTS_VERSION}");
        assert!(html.contains("default-src 'none'"));
        for fetch in ["<script src", "<link", "@import", "url(http", "src=\"http"] {
            assert!(!html.contains(fetch), "{fetch}");
        }
        // Three script elements, each closed where it should be: nothing inside one ends it early.
        assert_eq!(html.matches("<script").count(), 3);
        assert_eq!(html.to_ascii_lowercase().matches("</script").count(), 3);
        // `<!--` in script text would change how the HTML parser looks for its end; the vendored
        // library has none, and an upgrade that brings one must deal with it.
        assert!(!ECHARTS_JS.contains("<!--") && !REPORT_JS.contains("<!--"));
        for id in chart_ids() {
            assert_eq!(html.matches(&format!("id=\"{id}\"")).count(), 1, "{id}");
            assert!(REPORT_JS.contains(&format!("'{id}'")), "report.js draws no chart into {id}");
        }
        assert!(REPORT_JS.contains("renderer: 'svg'"));
    }

    #[test]
    fn script_text_cannot_end_its_element() {
        assert_eq!(script_safe("a</script>b</SCRIPT >c"), "a<\\/script>b<\\/SCRIPT >c");
        assert_eq!(script_safe("if (a</scrip) {}"), "if (a</scrip) {}");
        assert_eq!(script_safe("한글</ScRiPt"), "한글<\\/ScRiPt");
        assert_eq!(script_json(r#"{"a":"</script>&"}"#), r#"{"a":"\u003c/script\u003e\u0026"}"#);
    }

    #[test]
    fn numbers_read_as_a_person_writes_them() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(percent(Some(0.75)), "75.0%");
        assert_eq!(kst(0), "1970-01-01 09:00");
        let c = |figure, change, change_ratio| change_text(&Comparison { figure, current: None, previous: None, change, change_ratio });
        assert_eq!(c(Headline::SuccessRate, Some(-0.012), None), "▼ -1.2%p");
        assert_eq!(c(Headline::Events, Some(20.0), Some(0.2)), "▲ +20 (+20.0%)");
        assert_eq!(c(Headline::MeanDurationMs, Some(0.0), Some(0.0)), "= 0");
        assert_eq!(c(Headline::BlockRate, Some(0.0), None), "= 0.0%p");
        assert_eq!(c(Headline::Blocks, None, None), DASH);
    }
}
