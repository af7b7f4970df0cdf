//! Pruning during training: InfoBatch (Qin et al., ICLR 2024; `NUS-HPC-AI-Lab/InfoBatch`,
//! `infobatch/infobatch.py`), a training mode of the student (`[student] infobatch`).
//!
//! Each example keeps a score, the loss it had when last seen (3 at the start, as the
//! reference, so that the first epoch sees every example). At the start of each epoch of
//! the first `delta · E`, the examples scoring below the mean of all scores are the
//! well-learned ones; a random `1 − ratio` of them is kept, the rest skipped for the epoch,
//! and the kept ones' losses are weighted `1 / (1 − ratio)` so that the gradient's expectation
//! stays that of the full set. The last epochs see every example with weight 1 (annealing).
//! The loss is the cell's, distillation term included.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// `[student] infobatch = { ratio, delta }`, checked: `ratio` in [0, 0.9], `delta` in (0, 1].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct InfoBatchSpec {
    /// The fraction of the well-learned examples skipped each pruned epoch (the reference's
    /// `prune_ratio`, default 0.5).
    pub ratio: f32,
    /// The fraction of the epochs that prune (default 0.875); the rest see the full set. f64,
    /// as the reference's Python float: `0.9 × 10` must be 9.
    pub delta: f64,
}

impl InfoBatchSpec {
    pub const DEFAULT_RATIO: f32 = 0.5;
    pub const DEFAULT_DELTA: f64 = 0.875;
    /// The largest ratio: the reference keeps at least a tenth of the well-learned.
    pub const MAX_RATIO: f32 = 0.9;

    /// The kept fraction of the well-learned.
    fn keep_ratio(self) -> f32 {
        1.0 - self.ratio
    }
}

/// The reference's initial score of every example.
const INITIAL_SCORE: f32 = 3.0;

/// The state of one training run: scores and weights of its `K` examples.
#[derive(Debug)]
pub struct Sampler {
    spec: InfoBatchSpec,
    epochs: usize,
    /// `[K]`: each example's loss when last seen.
    scores: Vec<f32>,
    /// `[K]`: each example's loss weight this epoch.
    weights: Vec<f32>,
}

impl Sampler {
    pub fn new(spec: InfoBatchSpec, k: usize, epochs: usize) -> Self {
        Self {
            spec,
            epochs,
            scores: vec![INITIAL_SCORE; k],
            weights: vec![1.0; k],
        }
    }

    /// Whether epoch `epoch` (0-based) prunes: its 1-based number is at most `delta · E`.
    pub fn prunes(&self, epoch: usize) -> bool {
        (epoch + 1) as f64 <= self.spec.delta * self.epochs as f64
    }

    /// The examples epoch `epoch` visits, shuffled, and their weights set (see the module
    /// doc). Full epochs visit every example with weight 1.
    pub fn epoch_order(&mut self, epoch: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        self.weights.fill(1.0);
        let k = self.scores.len();
        let mut order: Vec<usize> = if self.prunes(epoch) {
            let mean = self.scores.iter().map(|&s| s as f64).sum::<f64>() / k.max(1) as f64;
            let (mut learned, mut order): (Vec<usize>, Vec<usize>) =
                (0..k).partition(|&i| (self.scores[i] as f64) < mean);
            let keep_ratio = self.spec.keep_ratio();
            let kept = (keep_ratio as f64 * learned.len() as f64) as usize;
            learned.shuffle(rng);
            for &i in &learned[..kept] {
                self.weights[i] = 1.0 / keep_ratio;
            }
            order.extend_from_slice(&learned[..kept]);
            order
        } else {
            (0..k).collect()
        };
        order.shuffle(rng);
        order
    }

    /// The weights `[b]` of the examples `chunk` of this epoch.
    pub fn weights_of(&self, chunk: &[usize], out: &mut Vec<f32>) {
        out.clear();
        out.extend(chunk.iter().map(|&i| self.weights[i]));
    }

    /// Records the unweighted losses `[b]` of the examples `chunk` as their scores.
    pub fn record(&mut self, chunk: &[usize], losses: &[f32]) {
        for (&i, &loss) in chunk.iter().zip(losses) {
            self.scores[i] = loss;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn below_mean_examples_are_halved_and_reweighted_until_the_annealing() {
        let spec = InfoBatchSpec {
            ratio: 0.5,
            delta: 0.75,
        };
        let mut s = Sampler::new(spec, 8, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        // Epoch 0: every score is 3, none below the mean: all 8 seen, weight 1.
        let order = s.epoch_order(0, &mut rng);
        assert_eq!(order.len(), 8);
        assert!(s.weights.iter().all(|&w| w == 1.0));
        // Losses 0..8: mean 3.5, examples 0-3 well learned; 2 of them kept, weighted 2.
        let all: Vec<usize> = (0..8).collect();
        s.record(&all, &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        let mut order = s.epoch_order(1, &mut rng);
        order.sort_unstable();
        assert_eq!(order.len(), 6);
        assert!(order.ends_with(&[4, 5, 6, 7]), "{order:?}");
        let mut weights = Vec::new();
        s.weights_of(&order, &mut weights);
        assert_eq!(weights, [2.0, 2.0, 1.0, 1.0, 1.0, 1.0]);
        // Epoch 3 (4th of 4) is past delta · E = 3: the full set, weights reset.
        assert!(s.prunes(2) && !s.prunes(3));
        assert_eq!(s.epoch_order(3, &mut rng).len(), 8);
        assert!(s.weights.iter().all(|&w| w == 1.0));
    }
}
