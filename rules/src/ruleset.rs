//! A compiled rule set, the detector that runs it, and the hot-swappable engine.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use haechi_features::{Action, Detector, EntityKind, Event, Evidence, FeatureCatalog, FeatureView, Finding, Mode, Severity};
use xxhash_rust::xxh3::Xxh3;

use crate::compile::{compile, Scope};
use crate::error::{Diagnostic, RulesError};
use crate::eval::{Cond, Ctx, NamedList};
use crate::file::{read_path, ActionName, LoadedFile, TestDef, WhenLocation};

const DEFAULT_BLOCK_TTL_S: u32 = 3600;

/// One rule, ready to run.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub id: Arc<str>,
    pub description: String,
    pub severity: Severity,
    pub action: Action,
    pub scope: Option<EntityKind>,
    pub mode: Mode,
    pub tags: Vec<String>,
    pub file: String,
    pub(crate) cond: Cond,
    /// Feature slots the condition reads: the evidence when it fires.
    pub(crate) reads: Box<[usize]>,
    pub(crate) tests: Vec<TestDef>,
}

/// Rules compiled from one or more files, with their lists and a version.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
    lists: Vec<NamedList>,
    list_names: Vec<String>,
    version: Arc<str>,
    detector: Arc<str>,
}

/// The default rule pack, shipped in the binary.
pub const DEFAULT_PACK: &str = include_str!("../default/ekyc.yaml");

impl RuleSet {
    /// Compile the files at `path` (a file or a directory).
    ///
    /// # Errors
    /// Every problem of every file, located file:line:col.
    pub fn load(path: &Path, catalog: &FeatureCatalog) -> Result<RuleSet, RulesError> {
        RuleSet::compile(read_path(path)?, catalog)
    }

    /// The default pack.
    ///
    /// # Errors
    /// Only if the shipped pack no longer compiles against `catalog` (a test guards this).
    pub fn default_pack(catalog: &FeatureCatalog) -> Result<RuleSet, RulesError> {
        let file = crate::file::parse_file("default/ekyc.yaml", None, DEFAULT_PACK.to_owned())?;
        RuleSet::compile(vec![file], catalog)
    }

    /// Compile YAML text (tests, the API).
    ///
    /// # Errors
    /// Every problem found.
    pub fn from_text(name: &str, text: &str, catalog: &FeatureCatalog) -> Result<RuleSet, RulesError> {
        RuleSet::compile(vec![crate::file::parse_file(name, None, text.to_owned())?], catalog)
    }

    fn compile(files: Vec<LoadedFile>, catalog: &FeatureCatalog) -> Result<RuleSet, RulesError> {
        let mut problems = Vec::new();
        let mut hasher = Xxh3::new();
        let mut lists = Vec::new();
        let mut list_names = Vec::new();
        let mut list_index: HashMap<String, usize> = HashMap::new();
        let mut macros: BTreeMap<String, String> = BTreeMap::new();
        let at = |f: &LoadedFile, needle: &str| -> (usize, usize) {
            f.text.find(needle).map_or((1, 1), |off| {
                let line = f.text[..off].matches('\n').count() + 1;
                let col = off - f.text[..off].rfind('\n').map_or(0, |p| p + 1) + 1;
                (line, col)
            })
        };
        for f in &files {
            hasher.update(f.name.as_bytes());
            hasher.update(f.text.as_bytes());
            for (name, source) in &f.parsed.lists {
                let (line, col) = at(f, &format!("{name}:"));
                if list_index.contains_key(name) {
                    problems.push(Diagnostic { file: f.name.clone(), line, col, rule: None, message: format!("list `{name}` is defined twice") });
                    continue;
                }
                let entries: Vec<String> = match source {
                    crate::file::ListSource::Inline(v) => v.clone(),
                    crate::file::ListSource::File { file } => {
                        let p = f.dir.as_deref().map_or_else(|| file.clone(), |d| d.join(file));
                        match std::fs::read_to_string(&p) {
                            Ok(text) => {
                                hasher.update(text.as_bytes());
                                text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect()
                            }
                            Err(e) => {
                                problems.push(Diagnostic { file: f.name.clone(), line, col, rule: None, message: format!("list `{name}`: cannot read {}: {e}", p.display()) });
                                continue;
                            }
                        }
                    }
                };
                list_index.insert(name.clone(), lists.len());
                lists.push(NamedList::from_entries(entries.iter().map(String::as_str)));
                list_names.push(name.clone());
            }
            for (name, body) in &f.parsed.macros {
                if macros.insert(name.clone(), body.clone()).is_some() {
                    let (line, col) = at(f, &format!("{name}:"));
                    problems.push(Diagnostic { file: f.name.clone(), line, col, rule: None, message: format!("macro `{name}` is defined twice") });
                }
            }
        }
        let scope = Scope { catalog, lists: &list_index, macros: &macros };
        let mut rules = Vec::new();
        let mut ids: HashMap<String, String> = HashMap::new();
        for f in &files {
            for (k, def) in f.parsed.rules.iter().enumerate() {
                let (id_line, id_col) = at(f, &format!("id: {}", def.id));
                let diag = |line, col, message: String| Diagnostic { file: f.name.clone(), line, col, rule: Some(def.id.clone()), message };
                if def.id.is_empty() || !def.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
                    problems.push(diag(id_line, id_col, "ids are letters, digits, `_`, `-` and `.`".into()));
                }
                // An id goes into decisions, alerts and records verbatim: it must not be able to carry one.
                if haechi_features::find_resident_number(&def.id).is_some() {
                    problems.push(diag(id_line, id_col, "an id must not have the shape of a resident registration number".into()));
                }
                if let Some(other) = ids.insert(def.id.clone(), f.name.clone()) {
                    problems.push(diag(id_line, id_col, format!("duplicate rule id (also in {other})")));
                }
                let action = match def.action {
                    ActionName::Allow => Action::Allow,
                    ActionName::Alert => Action::Alert,
                    ActionName::Challenge => Action::Challenge,
                    ActionName::Block => {
                        if def.scope.is_none() {
                            problems.push(diag(id_line, id_col, "a block needs a scope: ip, subnet, device, customer, id_doc, account, staff or session".into()));
                        }
                        let ttl = def.ttl.map_or(DEFAULT_BLOCK_TTL_S, |t| t.as_secs().min(u64::from(u32::MAX)) as u32);
                        if ttl == 0 {
                            problems.push(diag(id_line, id_col, "a block needs a TTL of at least one second".into()));
                        }
                        Action::Block { ttl_s: ttl }
                    }
                };
                if def.ttl.is_some() && def.action != ActionName::Block {
                    problems.push(diag(id_line, id_col, "ttl only applies to block".into()));
                }
                let mut reads = Vec::new();
                match compile(&def.when, &scope, &mut reads) {
                    Ok(cond) => rules.push(CompiledRule {
                        id: Arc::from(def.id.as_str()),
                        description: def.description.clone(),
                        severity: def.severity,
                        action,
                        scope: def.scope,
                        mode: def.mode,
                        tags: def.tags.clone(),
                        file: f.name.clone(),
                        cond,
                        reads: reads.into(),
                        tests: def.tests.clone(),
                    }),
                    Err(e) => {
                        let offset = e.offset.or_else(|| e.needle.as_deref().and_then(|n| def.when.find(n))).unwrap_or(0);
                        let (line, col) = WhenLocation::find(&f.text, k).map_or((id_line, id_col), |w| w.at(&def.when, offset));
                        problems.push(diag(line, col, e.message));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(RulesError::Invalid(problems));
        }
        Ok(RuleSet { rules, lists, list_names, version: Arc::from(format!("{:016x}", hasher.digest())), detector: Arc::from("rules") })
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// Content hash of the files (and list files) the set was built from.
    pub fn version(&self) -> &Arc<str> {
        &self.version
    }

    /// Names and sizes of the named lists.
    pub fn lists(&self) -> impl Iterator<Item = (&str, usize)> {
        self.list_names.iter().map(String::as_str).zip(self.lists.iter().map(NamedList::len))
    }

    /// Evaluate every rule on one event; call `fired` with the index of each that fires.
    pub fn evaluate(&self, event: &Event, features: &[f32], mut fired: impl FnMut(usize)) {
        let ctx = Ctx { event, features, lists: &self.lists };
        for (i, r) in self.rules.iter().enumerate() {
            if r.cond.eval(&ctx) {
                fired(i);
            }
        }
    }

    /// The finding rule `index` makes, with the values of the features it read.
    pub fn finding(&self, index: usize, features: &[f32]) -> Finding {
        let r = &self.rules[index];
        Finding {
            detector: self.detector.clone(),
            id: r.id.clone(),
            version: Some(self.version.clone()),
            severity: r.severity,
            action: r.action,
            mode: r.mode,
            score: r.severity.score(),
            entity: r.scope,
            evidence: r.reads.iter().map(|&s| Evidence { slot: s as u16, value: features[s], weight: None }).collect(),
            note: None,
        }
    }
}

impl Detector for RuleSet {
    fn name(&self) -> &str {
        &self.detector
    }

    fn detect(&self, event: &Event, features: &FeatureView<'_>, findings: &mut Vec<Finding>) {
        let values = features.values();
        self.evaluate(event, values, |i| findings.push(self.finding(i, values)));
    }
}

/// Counters of the engine's reloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadStats {
    pub reloads: u64,
    pub failures: u64,
}

/// The running rule set, swappable while events flow. A reload compiles the
/// new files off the hot path and swaps them in at once; a bad file is
/// refused, counted, and the old set keeps running. Feature state lives in
/// the store, so no reload resets a window.
pub struct RuleEngine {
    current: ArcSwap<RuleSet>,
    source: Option<PathBuf>,
    catalog: Arc<FeatureCatalog>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

impl RuleEngine {
    /// Load rules from `source`, or the default pack when `None`.
    ///
    /// # Errors
    /// When the rules do not compile.
    pub fn new(source: Option<PathBuf>, catalog: Arc<FeatureCatalog>) -> Result<RuleEngine, RulesError> {
        let set = match &source {
            Some(p) => RuleSet::load(p, &catalog)?,
            None => RuleSet::default_pack(&catalog)?,
        };
        Ok(RuleEngine { current: ArcSwap::from_pointee(set), source, catalog, reloads: AtomicU64::new(0), failures: AtomicU64::new(0) })
    }

    /// Re-read the source and swap the new set in.
    ///
    /// # Errors
    /// The new files' problems; the running set is unchanged.
    pub fn reload(&self) -> Result<Arc<RuleSet>, RulesError> {
        let compiled = match &self.source {
            Some(p) => RuleSet::load(p, &self.catalog),
            None => RuleSet::default_pack(&self.catalog),
        };
        match compiled {
            Ok(set) => {
                let set = Arc::new(set);
                self.current.store(set.clone());
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(set)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// The set running now.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current.load_full()
    }

    /// Where the rules come from (`None`: the default pack).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Successful and failed reloads so far.
    pub fn stats(&self) -> ReloadStats {
        ReloadStats { reloads: self.reloads.load(Ordering::Relaxed), failures: self.failures.load(Ordering::Relaxed) }
    }
}

impl Detector for RuleEngine {
    fn name(&self) -> &str {
        "rules"
    }

    fn detect(&self, event: &Event, features: &FeatureView<'_>, findings: &mut Vec<Finding>) {
        // One load per event: a reload mid-event cannot mix two sets.
        self.current.load().detect(event, features, findings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haechi_features::{FeatureConfig, FeatureStore, EntityKeys};

    fn catalog() -> Arc<FeatureCatalog> {
        Arc::new(FeatureCatalog::new(&FeatureConfig::default().validate().unwrap()))
    }

    #[test]
    fn the_default_pack_compiles_and_its_tests_pass() {
        let set = RuleSet::default_pack(&catalog()).unwrap();
        assert!(set.rules().len() >= 10);
        let results = crate::run_tests(&set, &FeatureConfig::default());
        assert!(results.len() >= 15);
        let failed: Vec<_> = results.iter().filter(|r| r.failure.is_some()).collect();
        assert!(failed.is_empty(), "{failed:#?}");
    }

    #[test]
    fn every_problem_is_reported_with_file_line_and_column() {
        let text = "rules:\n  - id: a\n    severity: high\n    when: features.ip.distinct_custmers_24h >= 3\n    action: alert\n  - id: b\n    severity: low\n    when: event.step == \"otp\" &&\n    action: block\n  - id: a\n    severity: low\n    when: true\n    action: alert\n";
        let e = RuleSet::from_text("x.yaml", text, &catalog()).unwrap_err();
        let d = e.diagnostics();
        assert_eq!(d.len(), 4, "{e}");
        assert_eq!((d[0].line, d[0].col), (4, 11), "{}", d[0]);
        assert!(d[0].message.contains("did you mean features.ip.distinct_customers_24h"), "{}", d[0]);
        assert!(d.iter().any(|x| x.message.contains("needs a scope")), "{e}");
        assert!(d.iter().any(|x| x.message.contains("syntax error") && x.line == 8), "{e}");
        assert!(d.iter().any(|x| x.message.contains("duplicate rule id")), "{e}");
    }

    #[test]
    fn an_id_shaped_like_a_resident_number_is_refused() {
        let e = RuleSet::from_text("x.yaml", "rules:\n  - id: 900101-1234567\n    severity: low\n    when: true\n    action: alert\n", &catalog()).unwrap_err();
        assert!(e.diagnostics().iter().any(|d| d.message.contains("resident registration number")), "{e}");
    }

    #[test]
    fn findings_carry_rule_version_and_the_features_read() {
        let cat = catalog();
        let set = RuleSet::from_text("x.yaml", "rules:\n  - id: r\n    severity: high\n    when: features.ip.events_10m >= 2.0\n    action: block\n    scope: ip\n    ttl: 10m\n", &cat).unwrap();
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut f = vec![0.0; cat.len()];
        let mut findings = Vec::new();
        for i in 0..2 {
            let e = haechi_features::Event::parse(format!(r#"{{"event_id":"e{i}","ts":"2026-11-02T10:00:0{i}+09:00","step":"login","result":"success","ip":"10.0.0.1"}}"#).as_bytes(), 4096).unwrap();
            let obs = store.observe(&e, &mut f);
            let keys: EntityKeys = obs.keys;
            set.detect(&e, &FeatureView::new(&f, &cat, &keys), &mut findings);
        }
        assert_eq!(findings.len(), 1);
        let x = &findings[0];
        assert_eq!((&*x.id, x.action, x.entity), ("r", Action::Block { ttl_s: 600 }, Some(EntityKind::Ip)));
        assert_eq!(x.version.as_deref(), Some(&**set.version()));
        assert_eq!(x.evidence.len(), 1);
        assert_eq!(cat.name(usize::from(x.evidence[0].slot)), "ip.events_10m");
        assert_eq!(x.evidence[0].value, 2.0);
    }

    #[test]
    fn a_bad_reload_keeps_the_old_set_and_is_counted() {
        let dir = std::env::temp_dir().join(format!("haechi-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("r.yaml");
        std::fs::write(&file, "rules:\n  - id: one\n    severity: low\n    when: true\n    action: alert\n").unwrap();
        let engine = RuleEngine::new(Some(file.clone()), catalog()).unwrap();
        let v1 = engine.current().version().clone();
        std::fs::write(&file, "rules:\n  - id: one\n    severity: low\n    when: nonsense >\n    action: alert\n").unwrap();
        assert!(engine.reload().is_err());
        assert_eq!(engine.current().version(), &v1);
        assert_eq!(engine.stats(), ReloadStats { reloads: 0, failures: 1 });
        std::fs::write(&file, "rules:\n  - id: two\n    severity: low\n    when: false\n    action: alert\n").unwrap();
        engine.reload().unwrap();
        assert_ne!(engine.current().version(), &v1);
        assert_eq!(&*engine.current().rules()[0].id, "two");
        assert_eq!(engine.stats(), ReloadStats { reloads: 1, failures: 1 });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lists_come_from_side_files_and_cidrs_match_addresses() {
        let dir = std::env::temp_dir().join(format!("haechi-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("nat.txt"), "# carrier NAT\n203.0.113.0/24\n198.51.100.7\n").unwrap();
        std::fs::write(dir.join("r.yaml"), "lists:\n  nat: {file: nat.txt}\nrules:\n  - id: nat\n    severity: low\n    when: event.ip in lists.nat\n    action: allow\n").unwrap();
        let set = RuleSet::load(&dir, &catalog()).unwrap();
        assert_eq!(set.lists().collect::<Vec<_>>(), vec![("nat", 2)]);
        let cat = catalog();
        let f = vec![0.0; cat.len()];
        for (ip, want) in [("203.0.113.77", true), ("198.51.100.7", true), ("198.51.100.8", false)] {
            let e = haechi_features::Event::parse(format!(r#"{{"event_id":"e","ts":"2026-11-02T10:00:00+09:00","step":"login","result":"success","ip":"{ip}"}}"#).as_bytes(), 4096).unwrap();
            let mut fired = false;
            set.evaluate(&e, &f, |_| fired = true);
            assert_eq!(fired, want, "{ip}");
        }
        std::fs::write(dir.join("r.yaml"), "lists:\n  nat: {file: missing.txt}\nrules: []\n").unwrap();
        assert!(RuleSet::load(&dir, &catalog()).unwrap_err().to_string().contains("missing.txt"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
