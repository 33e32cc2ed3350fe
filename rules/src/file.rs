//! The rule-file format as analysts write it, and reading it from disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use haechi_features::{EntityKind, Mode, Severity};
use serde::Deserialize;

use crate::error::{Diagnostic, RulesError};

/// One YAML rule file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Named lists: inline entries, or `{file: path}` with one entry per line.
    #[serde(default)]
    pub lists: BTreeMap<String, ListSource>,
    /// Named sub-expressions, usable by name in any rule of the set.
    #[serde(default)]
    pub macros: BTreeMap<String, String>,
    #[serde(default)]
    pub rules: Vec<RuleDef>,
}

/// Where a named list's entries come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ListSource {
    Inline(Vec<String>),
    File { file: PathBuf },
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    /// An allowlist entry: the event is allowed whatever else fires.
    Allow,
    Alert,
    Challenge,
    Block,
}

/// One rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub severity: Severity,
    /// A CEL condition.
    pub when: String,
    pub action: ActionName,
    /// The entity the finding is about; a block applies to it.
    #[serde(default)]
    pub scope: Option<EntityKind>,
    /// How long a block lasts (default one hour).
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub tests: Vec<TestDef>,
}

/// A test written beside a rule: events fed in order to a fresh store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestDef {
    pub name: String,
    /// Events in the event contract; `event_id`, `ts` and `result` may be left
    /// out (ids are numbered, times spaced by `spacing`, results succeed).
    pub events: Vec<serde_json::Value>,
    /// Whether the rule fires on the last event.
    pub expect: Expect,
    #[serde(default, with = "humantime_serde")]
    pub spacing: Option<Duration>,
}

/// The expected outcome of a rule test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    Fire,
    NoFire,
}

/// A rule file read from disk, with its text for locating errors.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    pub name: String,
    pub dir: Option<PathBuf>,
    pub text: String,
    pub parsed: RuleFile,
}

/// Parse one file's text.
///
/// # Errors
/// [`RulesError::Invalid`] with the YAML problem located.
pub fn parse_file(name: &str, dir: Option<PathBuf>, text: String) -> Result<LoadedFile, RulesError> {
    match serde_norway::from_str::<RuleFile>(&text) {
        Ok(parsed) => Ok(LoadedFile { name: name.to_owned(), dir, text, parsed }),
        Err(e) => {
            let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
            Err(RulesError::Invalid(vec![Diagnostic { file: name.to_owned(), line, col, rule: None, message }]))
        }
    }
}

/// Read a rule file, or every `*.yaml`/`*.yml` file of a directory, in name order.
///
/// # Errors
/// [`RulesError::Io`] when a path cannot be read; [`RulesError::Invalid`] with
/// every file's YAML problems.
pub fn read_path(path: &Path) -> Result<Vec<LoadedFile>, RulesError> {
    let io = |p: &Path, e: std::io::Error| RulesError::Io { path: p.display().to_string(), source: e };
    let mut paths = Vec::new();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| io(path, e))? {
            let p = entry.map_err(|e| io(path, e))?.path();
            if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                paths.push(p);
            }
        }
        paths.sort();
    } else {
        paths.push(path.to_path_buf());
    }
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
        match parse_file(&p.display().to_string(), p.parent().map(Path::to_path_buf), text) {
            Ok(f) => files.push(f),
            Err(RulesError::Invalid(d)) => problems.extend(d),
            Err(e) => return Err(e),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(RulesError::Invalid(problems))
    }
}

/// Where the k-th `when:` of a file starts, for turning an offset inside an
/// expression into a file line and column.
#[derive(Debug, Clone)]
pub(crate) struct WhenLocation {
    /// (file line, column of the first expression character) for each line of the expression.
    lines: Vec<(usize, usize)>,
}

impl WhenLocation {
    /// Locate the `index`-th rule's `when` in the file text.
    pub(crate) fn find(text: &str, index: usize) -> Option<WhenLocation> {
        let lines: Vec<&str> = text.lines().collect();
        let mut seen = 0;
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start().trim_start_matches("- ");
            let Some(rest) = trimmed.strip_prefix("when:") else { continue };
            if seen < index {
                seen += 1;
                continue;
            }
            let key_indent = line.len() - line.trim_start().len();
            let after = rest.trim_start();
            let value_col = line.len() - after.len() + 1;
            if after.starts_with('|') || after.starts_with('>') {
                let mut out = Vec::new();
                for (j, l) in lines.iter().enumerate().skip(i + 1) {
                    let indent = l.len() - l.trim_start().len();
                    if !l.trim().is_empty() && indent <= key_indent {
                        break;
                    }
                    out.push((j + 1, indent + 1));
                }
                return Some(WhenLocation { lines: out });
            }
            let quote = usize::from(after.starts_with('"') || after.starts_with('\''));
            return Some(WhenLocation { lines: vec![(i + 1, value_col + quote)] });
        }
        None
    }

    /// File (line, column) of a byte offset inside the expression.
    pub(crate) fn at(&self, expr: &str, offset: usize) -> (usize, usize) {
        let mut line_start = 0;
        for (k, seg) in expr.split_inclusive('\n').enumerate() {
            if offset < line_start + seg.len() || k + 1 == self.lines.len() {
                let (l, c) = self.lines.get(k).copied().unwrap_or((1, 1));
                return (l, c + offset.saturating_sub(line_start));
            }
            line_start += seg.len();
        }
        self.lines.first().copied().unwrap_or((1, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_inline_and_block_expressions() {
        let text = "rules:\n  - id: a\n    when: features.ip.events_10m > 3\n  - id: b\n    when: |\n      event.step == \"otp\" &&\n      features.x > 1\n";
        let a = WhenLocation::find(text, 0).unwrap();
        assert_eq!(a.at("features.ip.events_10m > 3", 9), (3, 20));
        let b = WhenLocation::find(text, 1).unwrap();
        let expr = "event.step == \"otp\" &&\nfeatures.x > 1\n";
        assert_eq!(b.at(expr, expr.find("features.x").unwrap()), (7, 7));
    }

    #[test]
    fn yaml_errors_are_located() {
        let e = parse_file("f.yaml", None, "rules:\n  - id: a\n    severity: hgh\n".into()).unwrap_err();
        let d = &e.diagnostics()[0];
        assert_eq!((d.file.as_str(), d.line), ("f.yaml", 3), "{d}");
        let e = parse_file("f.yaml", None, "rulez: []\n".into()).unwrap_err();
        assert!(e.to_string().contains("rulez"));
    }
}
