//! kdprune pruning method `k-center` (Sener and Savarese 2018, "Active Learning for
//! Convolutional Neural Networks: A Core-Set Approach"; greedy k-center as in DeepCore's
//! `kCenterGreedy`): from one seeded random example, repeatedly adds the example farthest
//! (Euclidean) from all picked ones, so that the picks cover the embedding space. By default
//! per class, quotas proportional to the class sizes. Returns the subset.
//!
//! Reads `embeddings/proxy` `[N, H]` (default) or `embeddings/teacher`.

use kdprune_plugin_api::pairwise::{farthest_first, farthest_first_by_group};
use kdprune_plugin_api::{
    export_plugins,
    records::{chosen_embedding, selection_groups, squared_distance},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

/// The first `k` greedy k-center picks among `members` of `x` `[N, h]` (squared Euclidean
/// distance), starting from `members[first]`, in the order picked.
pub fn k_center(x: &[f32], h: usize, members: &[u32], k: usize, first: usize) -> Vec<u32> {
    farthest_first(x, h, members, k, first, squared_distance)
}

pub struct KCenter;

impl Scorer for KCenter {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "k-center",
            env!("CARGO_PKG_VERSION"),
            "k-center greedy: each pick the example farthest from those picked (Sener and Savarese 2018; DeepCore)",
        )
        .param(
            "embedding",
            ParamValue::Text("proxy".into()),
            "\"proxy\": the proxy's penultimate layer; \"teacher\": [teacher] embedding",
        )
        .param(
            "per_class",
            ParamValue::Bool(true),
            "cover each class, quotas proportional to the class sizes (DeepCore's balance)",
        )
        .optional_input("embeddings/proxy")
        .optional_input("embeddings/teacher")
    }

    fn inputs_for(
        params: &kdprune_plugin_api::Params<'_>,
    ) -> Option<Result<Vec<kdprune_plugin_api::InputSpec>, PluginError>> {
        kdprune_plugin_api::records::embedding_inputs(params)
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let (x, h) = chosen_embedding(request)?;
        let groups = selection_groups(request, request.bool("per_class")?);
        Ok(Selection::subset(farthest_first_by_group(
            &x,
            h,
            &groups,
            request.seed,
            squared_distance,
        )))
    }
}

export_plugins! {
    scorers: [KCenter],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_farthest_point_each_time() {
        // 2-d: a cluster near the origin, one far point, one mid point.
        // From index 0 (0,0): farthest is (10,0) (index 3); then the point farthest from both
        // is (5,5) (index 4: 50 vs 25+25=50 to (10,0)... min(50, 50) = 50), then (0,1)/(1,0)
        // at min distance 1: the smaller index (1) first.
        let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 10.0, 0.0, 5.0, 5.0];
        let all: Vec<u32> = (0..5).collect();
        assert_eq!(k_center(&x, 2, &all, 4, 0), vec![0, 3, 4, 1]);
    }
}
