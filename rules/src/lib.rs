//! # haechi-rules — analyst-editable detection rules
//!
//! This crate owns the rule files analysts write (YAML: rules with a CEL
//! condition, an action, a mode, tags and tests beside them; named lists;
//! macros), their compilation into a [`RuleSet`], and the [`RuleEngine`] that
//! runs the current set as a detector and swaps in a new one without a
//! restart.
//!
//! Data moves one way: files → [`RuleSet::load`] (parse, resolve every name
//! to a slot, check types; any problem is a load error with file:line:col) →
//! [`RuleEngine`] → findings. Evaluation reads the feature vector by slot and
//! allocates nothing unless a rule fires.
//!
//! ```
//! use haechi_features::{FeatureCatalog, FeatureConfig};
//! use haechi_rules::RuleSet;
//! let catalog = FeatureCatalog::new(&FeatureConfig::default().validate().unwrap());
//! let set = RuleSet::from_text("mine.yaml", r#"
//! rules:
//!   - id: many_customers_on_one_card
//!     severity: high
//!     when: features.id_doc.distinct_customers_24h >= 3
//!     action: block
//!     scope: id_doc
//!     ttl: 24h
//! "#, &catalog).unwrap();
//! assert_eq!(set.rules().len(), 1);
//! ```

mod compile;
mod error;
mod eval;
mod file;
mod ruleset;
mod testing;

pub use error::{Diagnostic, RulesError};
pub use file::{ActionName, Expect, ListSource, RuleDef, RuleFile, TestDef};
pub use ruleset::{CompiledRule, ReloadStats, RuleEngine, RuleSet, DEFAULT_PACK};
pub use testing::{run_tests, TestOutcome};
