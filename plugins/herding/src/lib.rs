//! kdprune pruning method `herding` (Welling 2009, "Herding dynamical weights to learn"; the
//! coreset form of Chen et al. 2010 and iCaRL, Rebuffi et al. 2017, as in DeepCore): greedily
//! picks the examples whose running mean follows the mean `μ` of the embeddings — step `t`
//! takes the unpicked `x` nearest to `(t + 1) μ − Σ picked`. By default per class, with
//! quotas proportional to the class sizes. Returns the subset (it depends on the budget).
//!
//! DeepCore's `herding` takes the *farthest* point at each step (`argmax`), which drives the
//! running mean away from `μ`; we take the nearest, as herding is defined (docs/methods.md).
//! Reads `embeddings/proxy` `[N, H]` (default) or `embeddings/teacher`.

use kdprune_plugin_api::{
    export_plugins,
    records::{chosen_embedding, dot, selection_groups},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};
use rayon::prelude::*;

/// The first `k` herding picks among `members` of `x` `[N, h]`, in the order picked.
pub fn herding(x: &[f32], h: usize, members: &[u32], k: usize) -> Vec<u32> {
    let m = members.len();
    let k = k.min(m);
    let row_of = |i: u32| &x[i as usize * h..(i as usize + 1) * h];
    let mut mu = vec![0f64; h];
    for &i in members {
        for (a, &v) in mu.iter_mut().zip(row_of(i)) {
            *a += v as f64;
        }
    }
    mu.iter_mut().for_each(|a| *a /= m.max(1) as f64);
    // The unpicked members' rows side by side (every step reads them all, front to back); a
    // pick is swapped out, so the set read shrinks. `position` keeps each row's place among
    // `members`, which breaks ties as in index order.
    let mut rows: Vec<f32> = members
        .iter()
        .flat_map(|&i| row_of(i).iter().copied())
        .collect();
    let mut norms: Vec<f32> = members.iter().map(|&i| dot(row_of(i), row_of(i))).collect();
    let mut position: Vec<usize> = (0..m).collect();
    let mut sum = vec![0f64; h];
    let mut order = Vec::with_capacity(k);
    for t in 0..k {
        let target: Vec<f32> = mu
            .iter()
            .zip(&sum)
            .map(|(&mu, &s)| ((t + 1) as f64 * mu - s) as f32)
            .collect();
        // ‖target − x‖² = ‖target‖² − 2 target·x + ‖x‖²; the first term is the same for all.
        // One task per 4096 rows: a class herds on one core (classes run in parallel).
        let active = position.len();
        let best = (0..active)
            .into_par_iter()
            .with_min_len(4096)
            .map(|a| {
                (
                    norms[a] - 2.0 * dot(&rows[a * h..(a + 1) * h], &target),
                    position[a],
                )
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .expect("k <= unpicked members")
            .1;
        let a = position
            .iter()
            .position(|&p| p == best)
            .expect("an active row");
        for (s, &v) in sum.iter_mut().zip(&rows[a * h..(a + 1) * h]) {
            *s += v as f64;
        }
        order.push(members[best]);
        let last = active - 1;
        rows.copy_within(last * h..active * h, a * h);
        rows.truncate(last * h);
        norms.swap_remove(a);
        position.swap_remove(a);
    }
    order
}

pub struct Herding;

impl Scorer for Herding {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "herding",
            env!("CARGO_PKG_VERSION"),
            "herding: greedy picks whose running mean follows the embeddings' mean (Welling 2009; DeepCore)",
        )
        .param(
            "embedding",
            ParamValue::Text("proxy".into()),
            "\"proxy\": the proxy's penultimate layer; \"teacher\": [teacher] embedding",
        )
        .param(
            "per_class",
            ParamValue::Bool(true),
            "herd within each class, quotas proportional to the class sizes (DeepCore's balance)",
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
        let picked: Vec<Vec<u32>> = groups
            .par_iter()
            .map(|(members, q)| herding(&x, h, members, *q))
            .collect();
        Ok(Selection::subset(picked.concat()))
    }
}

export_plugins! {
    scorers: [Herding],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_follow_the_mean() {
        // 1-d points 0, 4, 5, 6, 10: mean 5. Step 1: nearest to 5 → 5 (index 2). Step 2:
        // target 2·5 − 5 = 5 → 4 and 6 tie at distance 1, the smaller index (4, index 1)
        // first. Step 3: target 15 − 9 = 6 → 6 (index 3). Step 4: 20 − 15 = 5 → 0 and 10 tie
        // → 0 (index 0).
        let x = [0.0f32, 4.0, 5.0, 6.0, 10.0];
        let all: Vec<u32> = (0..5).collect();
        assert_eq!(herding(&x, 1, &all, 4), vec![2, 1, 3, 0]);
        // The picks' mean stays at the mean: 5, 4.5, 5, 3.75.
    }
}
