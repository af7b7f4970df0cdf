//! kdprune pruning method `cal` (Margatina et al. 2021, "Active Learning by Acquiring
//! Contrastive Examples"; as DeepCore's `Cal`, `deepcore/methods/cal.py`): per class, each
//! example's `k` nearest neighbours (Euclidean) in an embedding, and its score the mean over
//! them of the symmetric KL divergence `½·KL(p‖q) + ½·KL(q‖p)` between the proxy's predicted
//! probabilities `p` (the example's) and `q` (the neighbour's), at the proxy's last pass
//! record, averaged over runs.
//!
//! DeepCore keeps the *lowest* scores (`np.argsort(scores)[::1][:budget]`), where the paper
//! acquires the most contrastive: the default policy here is `easiest`, DeepCore's; `policy =
//! "hardest"` gives the paper's. DeepCore's neighbours come from an ImageNet-pretrained
//! ResNet-18; here from `embeddings/proxy` (default) or `embeddings/teacher`. Probabilities
//! are floored at 10⁻¹² inside the logarithms (DeepCore's would give NaN at an exact 0).

use kdprune_plugin_api::pairwise::{k_nearest, squared_distances};
use kdprune_plugin_api::{
    export_plugins,
    records::{self, mean_over_runs, softmax},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

/// The `k` nearest of each member among `members` (itself excluded, ties by position), as
/// positions in `members`: `[m][k]`.
pub fn nearest(x: &[f32], h: usize, members: &[u32], k: usize) -> Vec<Vec<usize>> {
    k_nearest(&squared_distances(x, h, members), members.len(), k)
}

/// `½·KL(p‖q) + ½·KL(q‖p)`, probabilities floored at 10⁻¹².
pub fn symmetric_kl(p: &[f32], q: &[f32]) -> f32 {
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (a.max(1e-12), b.max(1e-12));
            0.5 * a * (a / b).ln() + 0.5 * b * (b / a).ln()
        })
        .sum()
}

pub struct Cal;

impl Scorer for Cal {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "cal",
            env!("CARGO_PKG_VERSION"),
            "mean symmetric KL between an example's predictions and its embedding neighbours' (Margatina et al. 2021; DeepCore's Cal)",
        )
        .param(
            "neighbors",
            ParamValue::Int(10),
            "k nearest neighbours, within the class (DeepCore: 10)",
        )
        .param(
            "embedding",
            ParamValue::Text("proxy".into()),
            "\"proxy\": the proxy's penultimate layer; \"teacher\": [teacher] embedding",
        )
        .input("dynamics/pass/logits")
        .optional_input("embeddings/proxy")
        .optional_input("embeddings/teacher")
        .high_is_hard(true)
        .budget_independent()
        .default_policy("easiest")
        .score_meaning("predictions unlike those of its nearest neighbours (contrastive); DeepCore keeps the lowest")
    }

    fn inputs_for(
        params: &kdprune_plugin_api::Params<'_>,
    ) -> Option<Result<Vec<kdprune_plugin_api::InputSpec>, PluginError>> {
        let embedding = records::embedding_inputs(params)?;
        Some(embedding.map(|mut inputs| {
            inputs.push(kdprune_plugin_api::required("dynamics/pass/logits"));
            inputs
        }))
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let logits = records::records(request, "dynamics/pass/logits")?;
        let (x, h) = records::chosen_embedding(request)?;
        let k = request.int("neighbors")?;
        if k < 1 {
            return Err(PluginError::new(format!(
                "neighbors = {k} must be at least 1"
            )));
        }
        let groups = records::selection_groups(request, true);
        let neighbours: Vec<(Vec<u32>, Vec<Vec<usize>>)> = groups
            .into_iter()
            .map(|(members, _)| {
                let near = nearest(&x, h, &members, k as usize);
                (members, near)
            })
            .collect();
        let last = logits.records - 1;
        let per_run: Vec<Vec<f32>> = (0..logits.runs)
            .map(|r| {
                let probs: Vec<Vec<f32>> = logits
                    .at(r, last)
                    .chunks_exact(logits.width)
                    .map(softmax)
                    .collect();
                let mut scores = vec![0f32; logits.n];
                for (members, near) in &neighbours {
                    for (i, list) in near.iter().enumerate() {
                        let p = &probs[members[i] as usize];
                        let total: f32 = list
                            .iter()
                            .map(|&j| symmetric_kl(p, &probs[members[j] as usize]))
                            .sum();
                        scores[members[i] as usize] = total / list.len().max(1) as f32;
                    }
                }
                scores
            })
            .collect();
        Ok(Selection::scores(mean_over_runs(&per_run)))
    }
}

export_plugins! {
    scorers: [Cal],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_and_the_symmetric_divergence_by_hand() {
        // 1-d points 0, 1, 3, 7: the nearest of 0 is 1; of 1, 0; of 3, 1; of 7, 3.
        let x = [0.0f32, 1.0, 3.0, 7.0];
        let near = nearest(&x, 1, &[0, 1, 2, 3], 1);
        assert_eq!(near, vec![vec![1], vec![0], vec![1], vec![2]]);
        // p = (½, ½), q = (¼, ¾): ½·Σ (p − q)·ln(p/q) = ½·(¼·ln 2 − ¼·ln(2/3)).
        let expected = 0.5 * (0.25 * 2f32.ln() - 0.25 * (2.0f32 / 3.0).ln());
        let got = symmetric_kl(&[0.5, 0.5], &[0.25, 0.75]);
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
        assert_eq!(symmetric_kl(&[0.3, 0.7], &[0.3, 0.7]), 0.0);
    }
}
