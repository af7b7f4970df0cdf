//! kdprune pruning method `contextual-diversity` (Agarwal, Arora, Anand and Arora, ECCV 2020,
//! "Contextual Diversity for Active Learning"; as DeepCore's `ContextualDiversity`,
//! `deepcore/methods/contextualdiversity.py` at 74ec709): the k-center greedy
//! (farthest-first traversal) of each class, from one seeded random member, over the proxy's
//! predicted probabilities with the symmetric KL divergence
//! `½·Σ a·ln(a/b) + ½·Σ b·ln(b/a)` as the distance. Quotas proportional to the class sizes
//! (DeepCore's `balance = True`). Returns the subset.
//!
//! Reads `dynamics/pass/logits` `[R, T, N, C]`: the softmax of the last pass record (the
//! trained proxy), averaged over the `R` runs (DeepCore has one model). Probabilities are
//! floored at 10⁻¹² inside the logarithms, where DeepCore's would give NaN at an exact 0.

use kdprune_plugin_api::pairwise::farthest_first_by_group;
use kdprune_plugin_api::{
    export_plugins,
    records::{self, softmax},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

/// `½·KL(a‖b) + ½·KL(b‖a)` of two probability rows, floored at 10⁻¹².
pub fn symmetric_kl(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| {
            let (a, b) = (a.max(1e-12), b.max(1e-12));
            0.5 * (a - b) * (a / b).ln()
        })
        .sum()
}

/// The symmetric KL of two rows `[p, ln p]` (`[2C]`, [`with_logs`]): the logarithms taken
/// once per example, not once per pair.
pub fn symmetric_kl_of_logs(a: &[f32], b: &[f32]) -> f32 {
    let c = a.len() / 2;
    let (pa, la) = a.split_at(c);
    let (pb, lb) = b.split_at(c);
    0.5 * pa
        .iter()
        .zip(pb)
        .zip(la.iter().zip(lb))
        .map(|((&x, &y), (&lx, &ly))| (x - y) * (lx - ly))
        .sum::<f32>()
}

/// Rows `[p, ln max(p, 10⁻¹²)]` `[n, 2C]` of probabilities `[n, C]`.
pub fn with_logs(probs: &[f32], c: usize) -> Vec<f32> {
    probs
        .chunks_exact(c)
        .flat_map(|row| {
            row.iter()
                .copied()
                .chain(row.iter().map(|&v| v.max(1e-12).ln()))
        })
        .collect()
}

/// The mean over runs of the softmax of the last pass record, `[n · c]`.
pub fn mean_probabilities(logits: &records::Records) -> Vec<f32> {
    let last = logits.records - 1;
    let mut mean = vec![0f32; logits.n * logits.width];
    for run in 0..logits.runs {
        for (row, out) in logits
            .at(run, last)
            .chunks_exact(logits.width)
            .zip(mean.chunks_exact_mut(logits.width))
        {
            for (o, p) in out.iter_mut().zip(softmax(row)) {
                *o += p / logits.runs as f32;
            }
        }
    }
    mean
}

pub struct ContextualDiversity;

impl Scorer for ContextualDiversity {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "contextual-diversity",
            env!("CARGO_PKG_VERSION"),
            "k-center greedy on the proxy's predictions under the symmetric KL (Agarwal et al. 2020; DeepCore's ContextualDiversity)",
        )
        .param(
            "per_class",
            ParamValue::Bool(true),
            "cover each class, quotas proportional to the class sizes (DeepCore's balance)",
        )
        .input("dynamics/pass/logits")
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let logits = records::records(request, "dynamics/pass/logits")?;
        let rows = with_logs(&mean_probabilities(&logits), logits.width);
        let groups = records::selection_groups(request, request.bool("per_class")?);
        Ok(Selection::subset(farthest_first_by_group(
            &rows,
            2 * logits.width,
            &groups,
            request.seed,
            symmetric_kl_of_logs,
        )))
    }
}

export_plugins! {
    scorers: [ContextualDiversity],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;
    use kdprune_plugin_api::pairwise::farthest_first;

    #[test]
    fn symmetric_kl_and_the_traversal_by_hand() {
        // ½·Σ (a − b)·ln(a/b) for a = (½, ½), b = (¼, ¾): ½·(¼·ln 2 − ¼·ln(2/3)).
        let expected = 0.5 * (0.25 * 2f32.ln() - 0.25 * (2.0f32 / 3.0).ln());
        assert!((symmetric_kl(&[0.5, 0.5], &[0.25, 0.75]) - expected).abs() < 1e-6);
        assert_eq!(symmetric_kl(&[0.3, 0.7], &[0.3, 0.7]), 0.0);
        let rows = with_logs(&[0.5, 0.5, 0.25, 0.75], 2);
        let got = symmetric_kl_of_logs(&rows[..4], &rows[4..]);
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
        // Rows: 0 (½, ½), 1 (0.9, 0.1), 2 (0.1, 0.9), 3 (0.55, 0.45). From row 0, the
        // farthest are rows 1 and 2 (0.439 each: the earlier, 1); then row 2 (0.439 from row
        // 0, 1.758 from row 1) before row 3 (0.005 from row 0).
        let p = [0.5f32, 0.5, 0.9, 0.1, 0.1, 0.9, 0.55, 0.45];
        assert_eq!(
            farthest_first(
                &with_logs(&p, 2),
                4,
                &[0, 1, 2, 3],
                4,
                0,
                symmetric_kl_of_logs
            ),
            vec![0, 1, 2, 3]
        );
        // From row 3 the divergence to row 2 is 0.540, to row 1 0.349: row 2.
        assert_eq!(
            farthest_first(&p, 2, &[0, 1, 2, 3], 2, 3, symmetric_kl),
            vec![3, 2]
        );
    }

    #[test]
    fn mean_probabilities_average_the_runs_last_records() {
        // Two runs, two records, one example, two classes: last records (0, 0) and (ln 3, 0)
        // → (½, ½) and (¾, ¼) → mean (⅝, ⅜).
        let logits = records::Records {
            values: vec![9.0, 0.0, 0.0, 0.0, 9.0, 9.0, 3f32.ln(), 0.0],
            runs: 2,
            records: 2,
            n: 1,
            width: 2,
        };
        let p = mean_probabilities(&logits);
        assert!(
            (p[0] - 0.625).abs() < 1e-6 && (p[1] - 0.375).abs() < 1e-6,
            "{p:?}"
        );
    }
}
