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
    records::{by_class, chosen_embedding, proportional_quotas},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};
use rayon::prelude::*;

/// The first `k` herding picks among `members` of `x` `[N, h]`, in the order picked.
pub fn herding(x: &[f32], h: usize, members: &[u32], k: usize) -> Vec<u32> {
    let m = members.len();
    let k = k.min(m);
    let mut mu = vec![0f64; h];
    for &i in members {
        for (a, &v) in mu.iter_mut().zip(&x[i as usize * h..(i as usize + 1) * h]) {
            *a += v as f64;
        }
    }
    mu.iter_mut().for_each(|a| *a /= m.max(1) as f64);
    let norms: Vec<f32> = members
        .iter()
        .map(|&i| {
            x[i as usize * h..(i as usize + 1) * h]
                .iter()
                .map(|v| v * v)
                .sum()
        })
        .collect();
    let mut picked = vec![false; m];
    let mut sum = vec![0f64; h];
    let mut order = Vec::with_capacity(k);
    for t in 0..k {
        let target: Vec<f32> = mu
            .iter()
            .zip(&sum)
            .map(|(&mu, &s)| ((t + 1) as f64 * mu - s) as f32)
            .collect();
        // ‖target − x‖² = ‖target‖² − 2 target·x + ‖x‖²; the first term is the same for all.
        let best = (0..m)
            .into_par_iter()
            .filter(|&j| !picked[j])
            .map(|j| {
                let row = &x[members[j] as usize * h..(members[j] as usize + 1) * h];
                let dot: f32 = row.iter().zip(&target).map(|(a, b)| a * b).sum();
                (norms[j] - 2.0 * dot, j)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, j)| j)
            .expect("k <= unpicked members");
        picked[best] = true;
        let i = members[best] as usize;
        for (s, &v) in sum.iter_mut().zip(&x[i * h..(i + 1) * h]) {
            *s += v as f64;
        }
        order.push(members[best]);
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
        .input("embeddings/proxy")
        .optional_input("embeddings/teacher")
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let (x, h) = chosen_embedding(request)?;
        let train = request.train;
        let k = request.budget as usize;
        let picked = if request.bool("per_class")? {
            let classes = by_class(train.labels.as_slice(), train.num_classes as usize);
            let sizes: Vec<usize> = classes.iter().map(Vec::len).collect();
            let quotas = proportional_quotas(&sizes, k);
            classes
                .iter()
                .zip(quotas)
                .flat_map(|(members, q)| herding(&x, h, members, q))
                .collect()
        } else {
            let all: Vec<u32> = (0..train.len() as u32).collect();
            herding(&x, h, &all, k)
        };
        Ok(Selection::subset(picked))
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
