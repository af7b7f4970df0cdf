//! kdprune pruning method `random`: keeps a uniform random subset of exactly `K` examples.
//!
//! The paper's finding is that with distillation this baseline matches or beats sophisticated
//! scores, so it is the method every experiment should include. Seeded: the same seed and
//! budget give the same subset on every machine (a SplitMix64 stream and a partial
//! Fisher-Yates shuffle, no dependency on a random-number crate's version).

use kdprune_plugin_api::{
    export_plugins, ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and stable across versions.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` without modulo bias (Lemire's method).
    fn below(&mut self, bound: u64) -> u64 {
        loop {
            let product = (self.next_u64() as u128) * (bound as u128);
            let low = product as u64;
            let threshold = bound.wrapping_neg() % bound;
            if low >= threshold {
                return (product >> 64) as u64;
            }
        }
    }
}

/// Picks `k` distinct indices of `0..n`, uniformly, sorted.
pub fn uniform_subset(n: usize, k: usize, seed: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut rng = SplitMix64(seed);
    for i in 0..k.min(n) {
        let j = i + rng.below((n - i) as u64) as usize;
        order.swap(i, j);
    }
    order.truncate(k.min(n));
    order.sort_unstable();
    order
}

pub struct Random;

impl Scorer for Random {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "random",
            env!("CARGO_PKG_VERSION"),
            "uniform random subset of exactly K examples (seeded)",
        )
        .param(
            "seed_offset",
            ParamValue::Int(0),
            "added to the cell's seed, to draw another subset with the same run seed",
        )
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let n = request.train.len();
        let k = request.budget as usize;
        if k == 0 || k > n {
            return Err(PluginError::new(format!("budget {k} is not in 1..={n}")));
        }
        let offset = request.int("seed_offset")? as u64;
        let indices = uniform_subset(n, k, request.seed.wrapping_add(offset));
        Ok(Selection::subset(indices))
    }
}

export_plugins! {
    scorers: [Random],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::uniform_subset;

    #[test]
    fn subset_is_distinct_sorted_and_seeded() {
        let a = uniform_subset(1000, 100, 7);
        assert_eq!(a.len(), 100);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, uniform_subset(1000, 100, 7));
        assert_ne!(a, uniform_subset(1000, 100, 8));
    }

    #[test]
    fn subset_is_roughly_uniform() {
        // Each index is kept with probability k/n; over many seeds the first half of the
        // indices gets about half of the picks.
        let mut first_half = 0usize;
        for seed in 0..200 {
            first_half += uniform_subset(100, 10, seed)
                .iter()
                .filter(|&&i| i < 50)
                .count();
        }
        let share = first_half as f64 / 2000.0;
        assert!((share - 0.5).abs() < 0.05, "share {share}");
    }
}
