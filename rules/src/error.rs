//! The one error type of this crate, and the diagnostics it carries.

use std::fmt;

use thiserror::Error;

/// One problem in a rule file, located for an editor: `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    /// The rule it concerns, if any.
    pub rule: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if let Some(r) = &self.rule {
            write!(f, "rule `{r}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// What can go wrong loading rules.
#[derive(Debug, Error)]
pub enum RulesError {
    /// A rule file or list file could not be read.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The files were read but do not make a valid rule set: every problem found.
    #[error("{}", format_all(.0))]
    Invalid(Vec<Diagnostic>),
}

fn format_all(d: &[Diagnostic]) -> String {
    d.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl RulesError {
    /// The diagnostics, for a caller that prints them one per line.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            RulesError::Invalid(d) => d.clone(),
            RulesError::Io { path, source } => {
                vec![Diagnostic { file: path.clone(), line: 0, col: 0, rule: None, message: source.to_string() }]
            }
        }
    }
}
