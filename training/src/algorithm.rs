//! Fitting isolation trees and scoring with them.
//!
//! Trees are flattened into one array of 16-byte nodes, children side by side
//! (right = left + 1), so scoring one row walks a few cache lines per tree and
//! allocates nothing.

use linfa::dataset::DatasetBase;
use linfa::traits::{Fit, PredictInplace};
use ndarray::{Array1, ArrayBase, Data, Ix2};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::errors::TrainingError;
use crate::hyperparams::{IsolationForestValidParams, Threshold};

const LEAF: u32 = u32::MAX;
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// c(n): the average path length of an unsuccessful search in a binary search
/// tree of n points, which normalises depths (paper, eq. 1).
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// The anomaly score s = 2^(−E[h]/c(ψ)) for a mean path length (paper, eq. 2).
pub fn anomaly_score(mean_path_length: f64, psi: usize) -> f64 {
    let c = average_path_length(psi);
    if c == 0.0 {
        return 0.5;
    }
    2f64.powf(-mean_path_length / c)
}

/// One node: a split (feature, threshold, index of the left child) or a leaf
/// (`feature == LEAF`, value = depth + c(size)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node(pub u32, pub u32, pub f64);

/// The fitted trees, flattened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forest {
    pub(crate) n_features: usize,
    pub(crate) psi: usize,
    pub(crate) roots: Vec<u32>,
    pub(crate) nodes: Vec<Node>,
    /// Training rows that reached each node. Kept apart from `nodes` so that
    /// scoring reads 16 bytes a node; only explanations read these.
    pub(crate) sizes: Vec<u32>,
    /// The form scoring walks, built by [`Forest::prepare`]: see [`Step`].
    #[serde(skip)]
    steps: Vec<Step>,
    /// The same for rows of `f32` features, the stream's: see [`Step32`].
    #[serde(skip)]
    steps32: Vec<Step32>,
    /// Path length (depth + c(size)) of each leaf, by node index.
    #[serde(skip)]
    leaf_value: Vec<f64>,
    /// The deepest leaf: every walk takes exactly this many steps.
    #[serde(skip)]
    depth: u32,
    /// The roots in the order [`Forest::score_above`] walks them: the trees
    /// whose shallowest leaf is shallowest first. What is left to walk then
    /// has the longest least paths, so the bound that stops a normal row
    /// tightens sooner.
    #[serde(skip)]
    stop_order: Vec<u32>,
    /// Per chunk of [`STOP_LANES`] trees of `stop_order`: the least path
    /// length the trees from that chunk on can still add (each tree's
    /// shallowest leaf), so that [`Forest::score_above`] can stop as soon as
    /// the row cannot be anomalous.
    #[serde(skip)]
    least_rest: Vec<f64>,
}

impl PartialEq for Forest {
    fn eq(&self, o: &Self) -> bool {
        (self.n_features, self.psi, &self.roots, &self.nodes, &self.sizes) == (o.n_features, o.psi, &o.roots, &o.nodes, &o.sizes)
    }
}

/// One node as scoring sees it. A leaf points at itself with a NaN threshold
/// (`x >= NaN` is never true), so a walk that reaches it stays there: every
/// tree is walked a fixed number of steps with no branch on "is this a
/// leaf?", and many trees can be walked in lockstep, their memory loads in
/// flight together rather than one after another.
#[derive(Debug, Clone, Copy)]
struct Step {
    feature: u32,
    left: u32,
    threshold: f64,
}

/// A [`Step`] for rows of `f32` (the stream's feature vector): 12 bytes,
/// so more of the forest stays in cache. The threshold is the least `f32`
/// at or above the split value, which makes `x >= threshold` for any `f32` x
/// the same test as the `f64` one ([`at_least_f32`]), so a row scores the same
/// to the last bit either way.
#[derive(Debug, Clone, Copy)]
struct Step32 {
    threshold: f32,
    feature: u32,
    left: u32,
}

/// The least `f32` at or above `t` (NaN for NaN): for every `f32` x,
/// `f64::from(x) >= t` exactly when `x >= at_least_f32(t)`.
fn at_least_f32(t: f64) -> f32 {
    let near = t as f32;
    if f64::from(near) < t {
        near.next_up()
    } else {
        near
    }
}

/// Trees walked in lockstep.
const LANES: usize = 16;
/// Trees walked in lockstep between two checks of the early stop: fewer
/// than [`LANES`], so that a stop overshoots by fewer trees.
const STOP_LANES: usize = 8;
const _: () = assert!(STOP_LANES <= LANES, "a chunk is walked in one lockstep of at most LANES trees");

impl Forest {
    /// Build the scoring form. Called after fitting and after loading.
    pub(crate) fn prepare(&mut self) {
        self.steps = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, &Node(feature, left, value))| {
                if feature == LEAF {
                    Step { feature: 0, left: i as u32, threshold: f64::NAN }
                } else {
                    Step { feature, left, threshold: value }
                }
            })
            .collect();
        self.steps32 = self.steps.iter().map(|s| Step32 { threshold: at_least_f32(s.threshold), feature: s.feature, left: s.left }).collect();
        self.leaf_value = self.nodes.iter().map(|n| if n.0 == LEAF { n.2 } else { 0.0 }).collect();
        let mut deepest = 0;
        for &root in &self.roots {
            let mut stack = vec![(root as usize, 0u32)];
            while let Some((i, d)) = stack.pop() {
                let Node(feature, left, _) = self.nodes[i];
                if feature == LEAF {
                    deepest = deepest.max(d);
                } else {
                    stack.push((left as usize, d + 1));
                    stack.push((left as usize + 1, d + 1));
                }
            }
        }
        self.depth = deepest;
        let shallowest: Vec<f64> = self.roots.iter().map(|&root| self.shallowest_leaf(root)).collect();
        let mut order: Vec<usize> = (0..self.roots.len()).collect();
        order.sort_by(|&a, &b| shallowest[a].total_cmp(&shallowest[b]));
        self.stop_order = order.iter().map(|&t| self.roots[t]).collect();
        let least: Vec<f64> = order.iter().map(|&t| shallowest[t]).collect();
        let chunks = least.len().div_ceil(STOP_LANES);
        self.least_rest = (0..=chunks).map(|c| least[(c * STOP_LANES).min(least.len())..].iter().sum()).collect();
    }

    /// The least path length (depth + c(size)) of any leaf of the tree at `root`.
    fn shallowest_leaf(&self, root: u32) -> f64 {
        let (mut least, mut stack) = (f64::INFINITY, vec![root as usize]);
        while let Some(i) = stack.pop() {
            let Node(feature, left, value) = self.nodes[i];
            if feature == LEAF {
                least = least.min(value);
            } else {
                stack.extend([left as usize, left as usize + 1]);
            }
        }
        least
    }

    /// Mean path length of a row whose feature `f` is `get(f)`. A NaN feature
    /// goes left. Allocation-free.
    #[inline]
    pub fn mean_path_length(&self, get: impl Fn(usize) -> f64) -> f64 {
        let total: f64 = self.roots.chunks(LANES).map(|chunk| self.walk(chunk, &get)).fold(0.0, |t, x| t + x);
        total / self.roots.len() as f64
    }

    /// Walk up to [`LANES`] trees in lockstep; the sum of their path lengths.
    #[inline]
    fn walk(&self, roots: &[u32], get: &impl Fn(usize) -> f64) -> f64 {
        self.walk_by(roots, |i| {
            let s = self.steps[i as usize];
            s.left + u32::from(get(s.feature as usize) >= s.threshold)
        })
    }

    /// [`Forest::walk`] for a row of `f32` features.
    #[inline]
    fn walk32(&self, roots: &[u32], row: &[f32]) -> f64 {
        self.walk_by(roots, |i| {
            let s = self.steps32[i as usize];
            s.left + u32::from(row[s.feature as usize] >= s.threshold)
        })
    }

    /// The lockstep walk, `next` taking a node to the child the row goes to.
    #[inline]
    fn walk_by(&self, roots: &[u32], next: impl Fn(u32) -> u32) -> f64 {
        let mut at = [0u32; LANES];
        let lanes = roots.len();
        at[..lanes].copy_from_slice(roots);
        for _ in 0..self.depth {
            for i in at.iter_mut().take(lanes) {
                *i = next(*i);
            }
        }
        at[..lanes].iter().map(|&i| self.leaf_value[i as usize]).sum::<f64>()
    }

    /// Anomaly score in (0, 1]; higher is more anomalous.
    #[inline]
    pub fn score(&self, get: impl Fn(usize) -> f64) -> f64 {
        anomaly_score(self.mean_path_length(get), self.psi)
    }

    /// The score, when it is above `threshold`; `None` as soon as the trees
    /// walked so far, plus the shortest paths the others could still give,
    /// already make the mean path too long for that. Most rows are normal
    /// and leave early. Whenever a score is returned, it is [`Forest::score`]'s,
    /// computed the same way to the last bit.
    #[inline]
    pub fn score_above(&self, get: impl Fn(usize) -> f64, threshold: f64) -> Option<f64> {
        self.score_above_walking(threshold, |chunk| self.walk(chunk, &get))
    }

    /// [`Forest::score_above`] for a row of `f32` features (the stream's),
    /// with the same answer, to the last bit, as for the same row widened to `f64`.
    ///
    /// # Panics
    /// When `row` has fewer than [`Forest::n_features`] values.
    #[inline]
    pub fn score_above_f32(&self, row: &[f32], threshold: f64) -> Option<f64> {
        assert!(row.len() >= self.n_features, "a row of {} features for a forest of {}", row.len(), self.n_features);
        self.score_above_walking(threshold, |chunk| self.walk32(chunk, row))
    }

    #[inline]
    fn score_above_walking(&self, threshold: f64, walk: impl Fn(&[u32]) -> f64) -> Option<f64> {
        let c = average_path_length(self.psi);
        // score > threshold  ⟺  mean path < -c·log2(threshold). Stopping waits
        // for a margin well above rounding, so no row that the whole walk
        // would score above the threshold is stopped.
        let longest = if c == 0.0 || threshold <= 0.0 { f64::INFINITY } else { -c * threshold.log2() * self.roots.len() as f64 * (1.0 + 1e-9) + 1e-9 };
        if longest.is_finite() {
            let mut total = 0.0;
            for (k, chunk) in self.stop_order.chunks(STOP_LANES).enumerate() {
                total += walk(chunk);
                if total + self.least_rest[k + 1] > longest {
                    return None;
                }
            }
        }
        // Not stopped (about seven rows in a thousand on the bench stream):
        // walked again in the trees' own order, so that the sum, and so the
        // score, is `score`'s to the last bit.
        let total = self.roots.chunks(LANES).map(walk).fold(0.0, |t, x| t + x);
        let score = anomaly_score(total / self.roots.len() as f64, self.psi);
        (score > threshold).then_some(score)
    }

    /// How much each feature set this row apart. Split features are drawn at
    /// random whatever the row, so what tells is how far each split narrowed
    /// the row's company: a split taking it from n to m training rows credits
    /// its feature with log₂(n/m) bits. A feature on which the row is extreme
    /// sends it to the small side again and again. Normalised to sum to 1,
    /// largest first.
    pub fn contributions(&self, get: impl Fn(usize) -> f64) -> Vec<(usize, f64)> {
        let mut weight = vec![0.0; self.n_features];
        for &root in &self.roots {
            let mut i = root as usize;
            loop {
                let Node(feature, left, value) = self.nodes[i];
                if feature == LEAF {
                    break;
                }
                let next = left as usize + usize::from(get(feature as usize) >= value);
                let (n, m) = (f64::from(self.sizes[i].max(1)), f64::from(self.sizes[next].max(1)));
                weight[feature as usize] += (n / m).log2();
                i = next;
            }
        }
        let sum: f64 = weight.iter().sum();
        let mut out: Vec<(usize, f64)> = weight.into_iter().enumerate().filter(|(_, w)| *w > 0.0).map(|(f, w)| (f, w / sum.max(f64::MIN_POSITIVE))).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    /// Features the forest expects per row.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The subsample size ψ the trees were grown on.
    pub fn psi(&self) -> usize {
        self.psi
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// Check the structure of a forest read from outside: every index in
    /// range, children after their parent (so no cycles), features known.
    ///
    /// # Errors
    /// A message naming the first problem.
    pub fn validate(&self) -> Result<(), crate::TrainingError> {
        if self.roots.is_empty() {
            return Err(model_text!("no trees"));
        }
        if self.psi < 2 {
            return Err(model_text!("psi = {}: must be at least 2", self.psi));
        }
        let n = self.nodes.len();
        if self.sizes.len() != n {
            return Err(model_text!("{} node sizes for {n} nodes", self.sizes.len()));
        }
        for &r in &self.roots {
            if r as usize >= n {
                return Err(model_text!("root {r} out of range ({n} nodes)"));
            }
        }
        for (i, Node(feature, left, value)) in self.nodes.iter().enumerate() {
            if *feature == LEAF {
                if !value.is_finite() || *value < 0.0 {
                    return Err(model_text!("node {i}: leaf depth {value} is not a non-negative number"));
                }
                continue;
            }
            if *feature as usize >= self.n_features {
                return Err(model_text!("node {i}: feature {feature} but the model has {} features", self.n_features));
            }
            if (*left as usize) <= i || *left as usize + 1 >= n {
                return Err(model_text!("node {i}: child {left} out of order or range"));
            }
            if value.is_nan() {
                return Err(model_text!("node {i}: threshold is NaN"));
            }
        }
        Ok(())
    }
}

/// A fitted isolation forest with its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForest {
    pub(crate) forest: Forest,
    pub(crate) params: IsolationForestValidParams,
    /// Scores above this are anomalies.
    pub(crate) threshold: f64,
}

impl IsolationForest {
    /// Score one row (a slice in training column order).
    #[inline]
    pub fn score_row(&self, row: &[f64]) -> f64 {
        self.forest.score(|f| row[f])
    }

    /// Score a row given by an accessor (e.g. a feature vector read by slot).
    #[inline]
    pub fn score_by(&self, get: impl Fn(usize) -> f64) -> f64 {
        self.forest.score(get)
    }

    /// The trees.
    pub fn forest(&self) -> &Forest {
        &self.forest
    }

    /// The parameters it was fitted with.
    pub fn params(&self) -> &IsolationForestValidParams {
        &self.params
    }

    /// The anomaly threshold.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
}

impl<F, D, T> Fit<ArrayBase<D, Ix2>, T, TrainingError> for IsolationForestValidParams
where
    F: linfa::Float,
    D: Data<Elem = F>,
{
    type Object = IsolationForest;

    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<IsolationForest, TrainingError> {
        let x = dataset.records.mapv(|v| v.to_f64().unwrap_or(f64::NAN));
        let (rows, cols) = x.dim();
        if rows < 2 || cols == 0 {
            return Err(TrainingError::Data(format!("need at least 2 rows and 1 column, got {rows}×{cols}")));
        }
        if let Some(((r, c), _)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(TrainingError::Data(format!("row {r}, column {c} is not a finite number")));
        }
        let psi = self.sample_size.min(rows);
        let limit = self.max_depth.unwrap_or_else(|| (psi as f64).log2().ceil() as usize);
        // Columns contiguous: splitting scans one feature over many rows.
        let columns: Vec<Vec<f64>> = (0..cols).map(|c| x.column(c).to_vec()).collect();
        let trees: Vec<(Vec<Node>, Vec<u32>)> = (0..self.n_trees)
            .into_par_iter()
            .map(|t| {
                // Each tree has its own stream, so threads change nothing.
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                rng.set_stream(t as u64);
                let mut idx: Vec<usize> = sample(&mut rng, rows, psi).into_vec();
                let mut nodes = vec![Node(LEAF, 0, 0.0)];
                let mut sizes = vec![0];
                grow(&columns, &mut idx, 0, limit, 0, &mut nodes, &mut sizes, &mut rng);
                (nodes, sizes)
            })
            .collect();
        let mut forest = Forest {
            n_features: cols,
            psi,
            roots: Vec::with_capacity(trees.len()),
            nodes: Vec::new(),
            sizes: Vec::new(),
            steps: Vec::new(),
            steps32: Vec::new(),
            leaf_value: Vec::new(),
            depth: 0,
            stop_order: Vec::new(),
            least_rest: Vec::new(),
        };
        for (tree, sizes) in trees {
            let base = forest.nodes.len() as u32;
            forest.roots.push(base);
            forest.nodes.extend(tree.into_iter().map(|Node(f, l, v)| Node(f, if f == LEAF { 0 } else { l + base }, v)));
            forest.sizes.extend(sizes);
        }
        forest.prepare();
        let threshold = match self.threshold {
            Threshold::Score(s) => s,
            Threshold::Contamination(c) => {
                let mut scores: Vec<f64> = x.rows().into_iter().map(|r| forest.score(|f| r[f])).collect();
                scores.sort_by(f64::total_cmp);
                let k = ((1.0 - c) * (scores.len() - 1) as f64).round() as usize;
                scores[k.min(scores.len() - 1)]
            }
        };
        Ok(IsolationForest { forest, params: self.clone(), threshold })
    }
}

/// Grow the subtree for rows `idx` at node `at`.
#[allow(clippy::too_many_arguments)]
fn grow(columns: &[Vec<f64>], idx: &mut [usize], depth: usize, limit: usize, at: usize, nodes: &mut Vec<Node>, sizes: &mut Vec<u32>, rng: &mut ChaCha8Rng) {
    sizes[at] = idx.len() as u32;
    if depth >= limit || idx.len() <= 1 {
        nodes[at] = Node(LEAF, 0, depth as f64 + average_path_length(idx.len()));
        return;
    }
    // A random feature among those not constant on these rows, tried in random order.
    let mut order: Vec<usize> = (0..columns.len()).collect();
    let mut chosen = None;
    for k in 0..order.len() {
        let j = rng.gen_range(k..order.len());
        order.swap(k, j);
        let col = &columns[order[k]];
        let (lo, hi) = idx.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| (lo.min(col[r]), hi.max(col[r])));
        if hi > lo {
            chosen = Some((order[k], lo, hi));
            break;
        }
    }
    let Some((feature, lo, hi)) = chosen else {
        nodes[at] = Node(LEAF, 0, depth as f64 + average_path_length(idx.len()));
        return;
    };
    let mut split = rng.gen_range(lo..hi);
    if split <= lo {
        split = f64::midpoint(lo, hi);
    }
    let col = &columns[feature];
    let mut mid = 0;
    for i in 0..idx.len() {
        if col[idx[i]] < split {
            idx.swap(i, mid);
            mid += 1;
        }
    }
    let left = nodes.len();
    nodes.push(Node(LEAF, 0, 0.0));
    nodes.push(Node(LEAF, 0, 0.0));
    sizes.extend([0, 0]);
    nodes[at] = Node(feature as u32, left as u32, split);
    let (l, r) = idx.split_at_mut(mid);
    grow(columns, l, depth + 1, limit, left, nodes, sizes, rng);
    grow(columns, r, depth + 1, limit, left + 1, nodes, sizes, rng);
}

impl<F: linfa::Float, D: Data<Elem = F>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for IsolationForest {
    /// Anomaly scores, one per row; higher is more anomalous.
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        assert_eq!(x.ncols(), self.forest.n_features, "rows must have the model's features");
        for (row, out) in x.rows().into_iter().zip(y.iter_mut()) {
            *out = self.forest.score(|f| row[f].to_f64().unwrap_or(f64::NAN));
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyperparams::IsolationForestParams;
    use linfa::traits::Predict;
    use linfa::ParamGuard;
    use ndarray::Array2;

    #[test]
    fn c_of_n_matches_hand_computation() {
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        // c(3) = 2(ln 2 + γ) − 4/3
        let c3 = 2.0 * (2f64.ln() + EULER_GAMMA) - 4.0 / 3.0;
        assert!((average_path_length(3) - c3).abs() < 1e-12);
        // c(256) ≈ 10.2448 (the value in the paper's experiments)
        assert!((average_path_length(256) - 10.2448).abs() < 1e-3, "{}", average_path_length(256));
    }

    #[test]
    fn score_formula_on_hand_checkable_cases() {
        // E[h] = c(ψ) gives 0.5; E[h] → 0 gives 1; E[h] = 2 c(ψ) gives 0.25.
        let c = average_path_length(256);
        assert!((anomaly_score(c, 256) - 0.5).abs() < 1e-12);
        assert!((anomaly_score(0.0, 256) - 1.0).abs() < 1e-12);
        assert!((anomaly_score(2.0 * c, 256) - 0.25).abs() < 1e-12);
    }

    /// Stopping early never changes an answer: over normal rows, outliers and the
    /// rows right at the threshold, `score_above` is `score` where it is above, `None` elsewhere.
    #[test]
    fn stopping_early_gives_the_whole_walks_answer() {
        let x = blob(3);
        let m = IsolationForestParams::new().n_trees(100).seed(9).check().unwrap().fit(&linfa::Dataset::from(x.clone())).unwrap();
        let f = m.forest();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let rows: Vec<[f64; 3]> = (0..3000).map(|i| {
            let spread = if i % 3 == 0 { 8.0 } else { 1.5 };
            [rng.gen_range(-spread..spread), rng.gen_range(-spread..spread), rng.gen_range(-spread..spread)]
        }).collect();
        let mut above = 0;
        for t in [m.threshold(), 0.45, 0.55, 0.6, 0.7] {
            for r in &rows {
                let whole = f.score(|c| r[c]);
                let early = f.score_above(|c| r[c], t);
                assert_eq!(early, (whole > t).then_some(whole), "row {r:?} at threshold {t}");
                above += usize::from(early.is_some());
                // At the row's own score, on either side of it.
                assert_eq!(f.score_above(|c| r[c], whole), None);
                assert_eq!(f.score_above(|c| r[c], whole - 1e-12), Some(whole));
            }
        }
        assert!(above > 100, "outliers were scored: {above}");
    }

    /// The bound that stops a walk adds the shallowest leaf of exactly the
    /// trees not walked yet, in the order they are walked; and it does stop
    /// most ordinary rows well before the last tree.
    #[test]
    fn the_early_stop_bounds_the_trees_left_in_walking_order_and_stops_ordinary_rows() {
        let x = blob(3);
        let m = IsolationForestParams::new().n_trees(100).seed(9).check().unwrap().fit(&linfa::Dataset::from(x.clone())).unwrap();
        let f = m.forest();
        let mut walked_order = f.stop_order.clone();
        walked_order.sort_unstable();
        let mut roots = f.roots.clone();
        roots.sort_unstable();
        assert_eq!(walked_order, roots, "every tree walked once");
        let least: Vec<f64> = f.stop_order.iter().map(|&r| f.shallowest_leaf(r)).collect();
        assert!(least.windows(2).all(|w| w[0] <= w[1]), "shallowest leaves first");
        assert_eq!(f.least_rest.len(), f.stop_order.len().div_ceil(STOP_LANES) + 1);
        for (k, rest) in f.least_rest.iter().enumerate() {
            let expected: f64 = least[(k * STOP_LANES).min(least.len())..].iter().sum();
            assert!((rest - expected).abs() < 1e-9, "chunk {k}: {rest} against {expected}");
        }
        // Ordinary rows (the training blob's own) leave well before the last tree.
        let trees = std::cell::Cell::new(0usize);
        let mut normal = 0;
        for r in x.rows().into_iter().take(300) {
            let row: Vec<f64> = r.to_vec();
            let got = f.score_above_walking(m.threshold(), |c| {
                trees.set(trees.get() + c.len());
                f.walk(c, &|i: usize| row[i])
            });
            normal += usize::from(got.is_none());
        }
        assert!(normal > 250, "{normal} of 300 ordinary rows below the threshold");
        let per_row = trees.get() as f64 / 300.0;
        assert!(per_row < 0.9 * f.n_trees() as f64, "{per_row} trees walked a row on average, of {}", f.n_trees());
    }

    /// Rounding a split up to f32 keeps `x >= t` for every f32 x, at the
    /// values a fitted forest rarely draws: splits that are f32 values
    /// already, zeros, subnormals, the ends of f32's range, infinities, NaN.
    #[test]
    fn a_split_rounded_up_to_f32_keeps_every_comparison() {
        let tiny = f64::from(f32::from_bits(1));
        let max = f64::from(f32::MAX);
        let splits = [
            0.0, -0.0, 1.0, -1.0, 0.5, 0.1, -0.1, 1e-50, -1e-50, tiny, tiny / 2.0, -tiny, 3.0 * tiny / 2.0,
            max, -max, max * 1.5, -max * 1.5, f64::MAX, f64::MIN, f64::INFINITY, f64::NEG_INFINITY, f64::NAN,
        ];
        let mut xs = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, f32::MAX, f32::MIN, f32::from_bits(1), -f32::from_bits(1)];
        for &t in &splits {
            let near = t as f32;
            xs.extend([near, near.next_up(), near.next_down()]);
        }
        for &t in &splits {
            let up = at_least_f32(t);
            for &x in &xs {
                assert_eq!(f64::from(x) >= t, x >= up, "x {x:e}, split {t:e}, rounded {up:e}");
            }
        }
    }

    /// The f32 walk answers as the f64 one on every row, including values
    /// exactly at, just below and just above every split, and NaN and infinities.
    #[test]
    fn an_f32_row_scores_as_the_same_row_widened() {
        let x = blob(5);
        let m = IsolationForestParams::new().n_trees(40).seed(3).check().unwrap().fit(&linfa::Dataset::from(x)).unwrap();
        let f = m.forest();
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let splits: Vec<f64> = f.nodes.iter().filter(|n| n.0 != LEAF).map(|n| n.2).collect();
        let mut candidates: Vec<f32> = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0];
        for &t in &splits {
            let near = t as f32;
            candidates.extend([near, near.next_down(), near.next_up()]);
        }
        let mut differing_thresholds = 0;
        for &t in &splits {
            differing_thresholds += usize::from(f64::from(t as f32) != t);
            let up = at_least_f32(t);
            for x in [t as f32, (t as f32).next_down(), (t as f32).next_up()] {
                assert_eq!(f64::from(x) >= t, x >= up, "x {x:e}, split {t:e}");
            }
        }
        assert!(differing_thresholds > splits.len() / 2, "most splits are not f32 values, so rounding is exercised");
        let mut rows: Vec<Vec<f32>> = (0..4000)
            .map(|_| (0..3).map(|_| if rng.gen_bool(0.7) { candidates[rng.gen_range(0..candidates.len())] } else { rng.gen_range(-8.0f32..8.0) }).collect())
            .collect();
        // Every row passes each root's split: put the row right at it.
        for &root in &f.roots {
            let Node(feature, _, t) = f.nodes[root as usize];
            for x in [t as f32, (t as f32).next_down(), (t as f32).next_up()] {
                let mut row: Vec<f32> = (0..3).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                row[feature as usize] = x;
                rows.push(row);
            }
        }
        for row in &rows {
            let wide = |c: usize| f64::from(row[c]);
            for t in [1e-300, m.threshold(), 0.6] {
                assert_eq!(f.score_above_f32(row, t), f.score_above(wide, t), "row {row:?} at {t}");
            }
        }
    }

    fn blob(seed: u64) -> Array2<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Array2::zeros((1000, 3));
        x.mapv_inplace(|_: f64| rng.gen_range(-1.0..1.0));
        x
    }

    #[test]
    fn outliers_score_higher_and_the_same_seed_gives_the_same_model() {
        let x = blob(1);
        let ds = DatasetBase::from(x.clone());
        let params = IsolationForestParams::new().seed(7).check().unwrap();
        let a: IsolationForest = params.fit(&ds).unwrap();
        let b: IsolationForest = params.fit(&ds).unwrap();
        assert_eq!(a, b);
        let c: IsolationForest = IsolationForestParams::new().seed(8).check().unwrap().fit(&ds).unwrap();
        assert_ne!(a.forest, c.forest);
        let inlier = a.score_row(&[0.0, 0.0, 0.0]);
        let outlier = a.score_row(&[6.0, -6.0, 6.0]);
        assert!(outlier > 0.6 && inlier < 0.5, "inlier {inlier}, outlier {outlier}");
        let scores: Array1<f64> = a.predict(&x);
        assert_eq!(scores.len(), 1000);
        let above = scores.iter().filter(|s| **s > a.threshold()).count();
        assert!(above <= 12, "contamination 1% → about 10 rows above, got {above}");
        a.forest.validate().unwrap();
        let top = a.forest.contributions(|f| [0.0, 9.0, 0.0][f]);
        assert_eq!(top[0].0, 1, "the far-out feature should explain most: {top:?}");
    }

    #[test]
    fn bad_data_is_refused() {
        let params = IsolationForestParams::new().check().unwrap();
        let one: Result<IsolationForest, _> = params.fit(&DatasetBase::from(Array2::<f64>::zeros((1, 3))));
        assert!(one.is_err());
        let mut x = blob(2);
        x[[5, 1]] = f64::NAN;
        let nan: Result<IsolationForest, _> = params.fit(&DatasetBase::from(x));
        assert!(nan.unwrap_err().to_string().contains("row 5, column 1"));
    }

    #[test]
    fn corrupt_forests_are_refused() {
        let x = blob(3);
        let m: IsolationForest = IsolationForestParams::new().n_trees(3).check().unwrap().fit(&DatasetBase::from(x)).unwrap();
        let mut f = m.forest.clone();
        f.nodes[0].1 = 0;
        assert!(f.validate().is_err(), "a child pointing back would loop forever");
        let mut f = m.forest.clone();
        f.nodes[0].0 = 99;
        assert!(f.validate().is_err());
    }
}
