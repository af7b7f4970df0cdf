//! kdprune pruning method `forgetting` (Toneva et al. 2019, "An Empirical Study of Example
//! Forgetting"): how often an example goes from correctly classified to misclassified between
//! two consecutive presentations during the proxy's training. Examples never classified
//! correctly count as most forgotten (Toneva et al. sort them first), with the value `E`
//! (more than the most events `E` presentations allow, `⌊E/2⌋`). Mean over runs. High means
//! hard.
//!
//! Reads `dynamics/batch/correct` `[R, E, N]`: correctness in each example's own training
//! minibatch, as Toneva et al.'s code records it.

use kdprune_plugin_api::{
    export_plugins,
    records::{mean_over_runs, records, Records},
    PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

/// Forgetting counts per run `[R][N]` from correctness `[R, E, N]`.
pub fn forgetting_counts(correct: &Records) -> Vec<Vec<f32>> {
    let (epochs, n) = (correct.records, correct.n);
    (0..correct.runs)
        .map(|r| {
            (0..n)
                .map(|i| {
                    let seq: Vec<bool> = (0..epochs).map(|e| correct.at(r, e)[i] > 0.5).collect();
                    if !seq.iter().any(|&c| c) {
                        return epochs as f32;
                    }
                    seq.windows(2).filter(|w| w[0] && !w[1]).count() as f32
                })
                .collect()
        })
        .collect()
}

pub struct Forgetting;

impl Scorer for Forgetting {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "forgetting",
            env!("CARGO_PKG_VERSION"),
            "forgetting events during the proxy's training, never-learned examples most forgotten, mean over runs (Toneva et al. 2019)",
        )
        .input("dynamics/batch/correct")
        .high_is_hard(true)
        .budget_independent()
        .score_meaning("often forgotten, or never learned: hard; 0 = learned once and never forgotten")
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let correct = records(request, "dynamics/batch/correct")?;
        Ok(Selection::scores(mean_over_runs(&forgetting_counts(
            &correct,
        ))))
    }
}

export_plugins! {
    scorers: [Forgetting],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_transitions_from_correct_to_wrong() {
        // One run, 6 epochs, 4 examples; columns are examples.
        // ex 0: 1 0 1 0 1 1 → 2 events; ex 1: 0 0 0 0 0 0 → never learned → 6;
        // ex 2: 0 1 1 1 1 1 → 0; ex 3: 1 1 1 1 1 0 → 1.
        let seqs = [
            [1, 0, 1, 0, 1, 1],
            [0; 6],
            [0, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 0],
        ];
        let mut values = vec![0f32; 6 * 4];
        for (i, s) in seqs.iter().enumerate() {
            for (e, &c) in s.iter().enumerate() {
                values[e * 4 + i] = c as f32;
            }
        }
        let r = Records {
            values,
            runs: 1,
            records: 6,
            n: 4,
            width: 1,
        };
        assert_eq!(forgetting_counts(&r), vec![vec![2.0, 6.0, 0.0, 1.0]]);
    }
}
