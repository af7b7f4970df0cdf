//! DUAL's Beta sampling (Cho et al., ICML 2025; `behaapyy/dual-pruning`,
//! `exp_cifar/data_subset.py::beta_sampling`) as a selection policy any score can use.
//!
//! The reference draws `K` examples without replacement, each with probability proportional
//! to `Beta(a, b).pdf(m) · s`, where `s` is the DUAL score, `m` the example's mean true-class
//! probability over the first epochs, and, with the pruned fraction `r = 1 − keep`,
//! `b = 15 · (1 − m_anchor) · (1 − r^c_D)`, `a = 16 − b` (`m_anchor`: the mean `m` of the 10
//! highest-scored examples; `c_D = 4`). A large keep puts the density's mass on hard examples
//! (`m` near 0); a small keep moves it toward easier ones.
//!
//! A policy sees scores, not probabilities, so `m` is taken as the example's easiness
//! quantile `u = (rank + ½) / n` (rank 0 the hardest) and `s` as the hardness scaled to
//! `[0, 1]` over the candidates; `m_anchor` is then the mean `u` of the 10 hardest. The draw is
//! the Gumbel-top-`K` form of weighted sampling without replacement (the same distribution as
//! NumPy's `choice(p=…, replace=False)`), seeded.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The reference's `c_D` (its `--c_d` default).
pub const DEFAULT_C_D: f64 = 4.0;

/// The Beta parameters `(a, b)` at `keep` with anchor easiness `anchor`.
pub fn beta_parameters(keep: f64, anchor: f64, c_d: f64) -> (f64, f64) {
    let pruned = 1.0 - keep;
    let b = 15.0 * (1.0 - anchor) * (1.0 - pruned.powf(c_d));
    (16.0 - b, b)
}

/// `k` of `ranked` (candidates sorted hardest first, their hardness in `hardness`), drawn
/// with weights `Beta(a, b).pdf(u) · s` (see the module doc).
pub(super) fn beta_sample(
    hardness: &[f32],
    ranked: &[u32],
    k: usize,
    keep: f64,
    c_d: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<u32> {
    let n = ranked.len();
    if k >= n {
        return ranked.to_vec();
    }
    let u = |j: usize| (j as f64 + 0.5) / n as f64;
    let anchors = n.min(10);
    let anchor = (0..anchors).map(u).sum::<f64>() / anchors as f64;
    let (a, b) = beta_parameters(keep, anchor, c_d);
    let (lo, hi) = ranked
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &i| {
            (lo.min(hardness[i as usize]), hi.max(hardness[i as usize]))
        });
    let span = (hi - lo) as f64;
    let mut keyed: Vec<(f64, u32)> = ranked
        .iter()
        .enumerate()
        .map(|(j, &i)| {
            let s = if span > 0.0 {
                (hardness[i as usize] - lo) as f64 / span
            } else {
                1.0
            };
            let log_weight = (a - 1.0) * u(j).ln() + (b - 1.0) * (1.0 - u(j)).ln() + s.ln();
            // Gumbel noise: the K largest of log w + G are a weighted draw without replacement.
            let uniform: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            (log_weight - (-uniform.ln()).ln(), i)
        })
        .collect();
    // Zero weights (s = 0) key at −∞ and come last, in their ranked order (a stable sort).
    keyed.sort_by(|x, y| y.0.total_cmp(&x.0));
    keyed.truncate(k);
    keyed.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_parameters_follow_the_reference_formula() {
        // keep 0.3: r = 0.7, r⁴ = 0.2401; anchor 0.2 → b = 15 · 0.8 · 0.7599 = 9.1188.
        let (a, b) = beta_parameters(0.3, 0.2, 4.0);
        assert!((b - 9.1188).abs() < 1e-9 && (a - (16.0 - 9.1188)).abs() < 1e-9);
    }

    #[test]
    fn a_large_keep_favours_the_hard_and_a_small_keep_the_easier() {
        let n = 10_000usize;
        // Hardness n − j for example j: example 0 the hardest.
        let hardness: Vec<f32> = (0..n).map(|j| (n - j) as f32).collect();
        let ranked: Vec<u32> = (0..n as u32).collect();
        let mean_rank = |keep: f64| {
            let k = (keep * n as f64) as usize;
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let kept = beta_sample(&hardness, &ranked, k, keep, DEFAULT_C_D, &mut rng);
            assert_eq!(kept.len(), k);
            let mut sorted = kept.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), k, "without replacement");
            kept.iter().map(|&i| i as f64).sum::<f64>() / k as f64 / n as f64
        };
        // keep 0.9: b ≈ 15, a ≈ 1: density ∝ (1 − u)^14 · s, the hardest end.
        // keep 0.1: b ≈ 5.2, a ≈ 10.8: the mode near u = 0.7, easier examples.
        let (large, small) = (mean_rank(0.9), mean_rank(0.1));
        assert!(large < 0.5 && small > 0.5, "{large} {small}");
        // The same seed draws the same subset.
        let mut r1 = ChaCha8Rng::seed_from_u64(1);
        let mut r2 = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            beta_sample(&hardness, &ranked, 100, 0.3, 4.0, &mut r1),
            beta_sample(&hardness, &ranked, 100, 0.3, 4.0, &mut r2)
        );
    }
}
