//! Hyperparameters, checked before any fitting (linfa's `ParamGuard`).

use linfa::ParamGuard;
use serde::{Deserialize, Serialize};

use crate::errors::TrainingError;

/// How the anomaly threshold is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Threshold {
    /// The score above which this share of the training rows lie.
    Contamination(f64),
    /// A fixed score in (0, 1].
    Score(f64),
}

/// Checked parameters: only these can fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForestValidParams {
    pub(crate) n_trees: usize,
    pub(crate) sample_size: usize,
    pub(crate) max_depth: Option<usize>,
    pub(crate) seed: u64,
    pub(crate) threshold: Threshold,
}

impl IsolationForestValidParams {
    /// Trees in the forest.
    pub fn n_trees(&self) -> usize {
        self.n_trees
    }
    /// Rows drawn (without replacement) for each tree: ψ.
    pub fn sample_size(&self) -> usize {
        self.sample_size
    }
    /// Height limit; `None` means ⌈log₂ ψ⌉.
    pub fn max_depth(&self) -> Option<usize> {
        self.max_depth
    }
    /// Seed of the forest's randomness.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// How the threshold is chosen.
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }
}

/// Unchecked parameters, with the paper's defaults: 100 trees, ψ = 256.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForestParams(IsolationForestValidParams);

impl Default for IsolationForestParams {
    fn default() -> Self {
        IsolationForestParams(IsolationForestValidParams {
            n_trees: 100,
            sample_size: 256,
            max_depth: None,
            seed: 0,
            threshold: Threshold::Contamination(0.01),
        })
    }
}

impl IsolationForestParams {
    /// The paper's defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of trees.
    pub fn n_trees(mut self, n: usize) -> Self {
        self.0.n_trees = n;
        self
    }
    /// Subsample size ψ (all rows are used when there are fewer).
    pub fn sample_size(mut self, n: usize) -> Self {
        self.0.sample_size = n;
        self
    }
    /// Height limit; default ⌈log₂ ψ⌉.
    pub fn max_depth(mut self, d: Option<usize>) -> Self {
        self.0.max_depth = d;
        self
    }
    /// Seed: the same seed and data give the same model.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
    /// How the threshold is chosen.
    pub fn threshold(mut self, t: Threshold) -> Self {
        self.0.threshold = t;
        self
    }
}

impl ParamGuard for IsolationForestParams {
    type Checked = IsolationForestValidParams;
    type Error = TrainingError;

    fn check_ref(&self) -> Result<&Self::Checked, Self::Error> {
        let p = &self.0;
        if p.n_trees == 0 || p.n_trees > 10_000 {
            return Err(TrainingError::Params(format!("n_trees = {}: must be 1 to 10000", p.n_trees)));
        }
        if p.sample_size < 2 || p.sample_size > 1 << 20 {
            return Err(TrainingError::Params(format!("sample_size = {}: must be 2 to 1048576", p.sample_size)));
        }
        if p.max_depth.is_some_and(|d| d == 0 || d > 64) {
            return Err(TrainingError::Params("max_depth must be 1 to 64".into()));
        }
        match p.threshold {
            Threshold::Contamination(c) if !(c > 0.0 && c < 0.5) => {
                Err(TrainingError::Params(format!("contamination = {c}: must be in (0, 0.5)")))
            }
            Threshold::Score(s) if !(s > 0.0 && s <= 1.0) => Err(TrainingError::Params(format!("threshold score = {s}: must be in (0, 1]"))),
            _ => Ok(p),
        }
    }

    fn check(self) -> Result<Self::Checked, Self::Error> {
        self.check_ref()?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_papers() {
        let p = IsolationForestParams::default().check().unwrap();
        assert_eq!((p.n_trees(), p.sample_size(), p.max_depth()), (100, 256, None));
    }

    #[test]
    fn zero_trees_is_refused() {
        assert!(IsolationForestParams::new().n_trees(0).check().is_err());
    }

    #[test]
    fn a_sample_of_one_is_refused() {
        assert!(IsolationForestParams::new().sample_size(1).check().is_err());
    }

    #[test]
    fn depth_zero_is_refused() {
        assert!(IsolationForestParams::new().max_depth(Some(0)).check().is_err());
    }

    #[test]
    fn contamination_out_of_range_is_refused() {
        assert!(IsolationForestParams::new().threshold(Threshold::Contamination(0.5)).check().is_err());
        assert!(IsolationForestParams::new().threshold(Threshold::Contamination(0.0)).check().is_err());
    }

    #[test]
    fn fixed_score_out_of_range_is_refused() {
        assert!(IsolationForestParams::new().threshold(Threshold::Score(1.5)).check().is_err());
    }
}
