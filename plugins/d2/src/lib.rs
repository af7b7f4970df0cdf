//! kdprune pruning method `d2` (Maharana, Yadav and Bansal, ICLR 2024, "D2 Pruning: Message
//! Passing for Balancing Diversity and Difficulty in Data Pruning";
//! `adymaharana/d2pruning`, `core/data/sampling.py::GraphDensitySampler`), per class as its
//! CIFAR-10 command runs it (`--coreset-mode class`, `--graph-mode sum`,
//! `--graph-sampling-mode weighted`):
//! - a graph joining each example to its `k` nearest (Euclidean) in the embedding, made
//!   symmetric; the edge `i → j` carries `exp(−d_ij) · s_j`;
//! - forward message passing, one hop: `g_i = s_i + Σ_{j ∈ N(i)} exp(−d_ij) · s_j`;
//! - reverse message passing while selecting: take the largest `g`, lower each neighbour's
//!   `g_j` by `exp(−γ · d_ij) · g_i`, never take it again.
//!
//! The difficulty `s` is the forgetting count (the command's `--coreset-key forgetting`),
//! computed here from `dynamics/batch/correct` as the `forgetting` method does; the
//! embedding is `embeddings/proxy` (default) or `embeddings/teacher`. Returns the subset.

use kdprune_plugin_api::pairwise::{k_nearest, squared_distances};
use kdprune_plugin_api::{
    export_plugins, records, ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};

/// Forgetting counts `[N]` from `correct` `[R, E, N]`: correct → wrong transitions between
/// consecutive epochs, `E` when never correct, mean over runs.
pub fn forgetting(correct: &records::Records) -> Vec<f32> {
    let (runs, epochs, n) = (correct.runs, correct.records, correct.n);
    (0..n)
        .map(|i| {
            let total: f32 = (0..runs)
                .map(|r| {
                    let seq: Vec<bool> = (0..epochs).map(|e| correct.at(r, e)[i] > 0.5).collect();
                    if !seq.iter().any(|&c| c) {
                        return epochs as f32;
                    }
                    seq.windows(2).filter(|w| w[0] && !w[1]).count() as f32
                })
                .sum();
            total / runs as f32
        })
        .collect()
}

/// The symmetric kNN graph of the squared distances `dist2` `[m, m]`: each node's neighbour
/// list (its `k` nearest, itself excluded, ties by index, and every node that has it among
/// its own `k`), sorted.
pub fn knn_graph(dist2: &[f32], m: usize, k: usize) -> Vec<Vec<usize>> {
    let nearest = k_nearest(dist2, m, k);
    let mut graph = nearest.clone();
    for (i, list) in nearest.iter().enumerate() {
        for &j in list {
            graph[j].push(i);
        }
    }
    for list in &mut graph {
        list.sort_unstable();
        list.dedup();
    }
    graph
}

/// D2's picks (positions in `0..m`, in the order picked) from difficulties `s` `[m]` and the
/// squared distances `dist2` `[m, m]`.
pub fn d2_select(
    s: &[f32],
    dist2: &[f32],
    m: usize,
    k: usize,
    neighbours: usize,
    gamma: f32,
) -> Vec<usize> {
    let graph = knn_graph(dist2, m, neighbours);
    let dist = |i: usize, j: usize| dist2[i * m + j].sqrt();
    let mut g: Vec<f64> = (0..m)
        .map(|i| {
            let messages: f64 = graph[i]
                .iter()
                .map(|&j| ((-dist(i, j)).exp() * s[j].max(1e-7)) as f64)
                .sum();
            s[i] as f64 + messages
        })
        .collect();
    let mut taken = vec![false; m];
    let mut picked = Vec::with_capacity(k.min(m));
    while picked.len() < k.min(m) {
        let i = (0..m)
            .filter(|&i| !taken[i])
            .max_by(|&a, &b| g[a].total_cmp(&g[b]).then(b.cmp(&a)))
            .expect("k <= m");
        for &j in &graph[i] {
            g[j] -= ((-gamma * dist(i, j)).exp()) as f64 * g[i];
        }
        taken[i] = true;
        picked.push(i);
    }
    picked
}

pub struct D2;

impl Scorer for D2 {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "d2",
            env!("CARGO_PKG_VERSION"),
            "message passing of forgetting scores over a kNN graph of embeddings, then greedy picks that lower their neighbours (Maharana et al. 2024)",
        )
        .param(
            "neighbors",
            ParamValue::Int(5),
            "k of the kNN graph (the authors' CIFAR-10 command: 5; their default: 10)",
        )
        .param(
            "gamma",
            ParamValue::Float(0.1),
            "γ of the reverse messages exp(−γ·d) (the authors' CIFAR-10 command: 0.1)",
        )
        .param(
            "embedding",
            ParamValue::Text("proxy".into()),
            "\"proxy\": the proxy's penultimate layer; \"teacher\": [teacher] embedding",
        )
        .input("dynamics/batch/correct")
        .optional_input("embeddings/proxy")
        .optional_input("embeddings/teacher")
    }

    fn inputs_for(
        params: &kdprune_plugin_api::Params<'_>,
    ) -> Option<Result<Vec<kdprune_plugin_api::InputSpec>, PluginError>> {
        let embedding = records::embedding_inputs(params)?;
        Some(embedding.map(|mut inputs| {
            inputs.push(kdprune_plugin_api::required("dynamics/batch/correct"));
            inputs
        }))
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let correct = records::records(request, "dynamics/batch/correct")?;
        let scores = forgetting(&correct);
        let (x, h) = records::chosen_embedding(request)?;
        let neighbours = request.int("neighbors")?;
        if neighbours < 1 {
            return Err(PluginError::new(format!(
                "neighbors = {neighbours} must be at least 1"
            )));
        }
        let gamma = request.float("gamma")? as f32;
        let mut kept = Vec::with_capacity(request.budget as usize);
        for (members, quota) in records::selection_groups(request, true) {
            let m = members.len();
            let s: Vec<f32> = members.iter().map(|&i| scores[i as usize]).collect();
            let dist2 = squared_distances(&x, h, &members);
            let picks = d2_select(&s, &dist2, m, quota, neighbours as usize, gamma);
            kept.extend(picks.into_iter().map(|p| members[p]));
        }
        Ok(Selection::subset(kept))
    }
}

export_plugins! {
    scorers: [D2],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_raise_dense_hard_regions_and_picks_lower_their_neighbours() {
        // Points on a line at 0, 1, 2 and 10; difficulties 1, 1, 1, 1.5; k = 1.
        // Nearest: 0→1, 1→0 (tie with 2, the smaller index), 2→1, 3→2; symmetric graph:
        // 0: {1}, 1: {0, 2}, 2: {1, 3}, 3: {2}.
        let x = [0.0f32, 1.0, 2.0, 10.0];
        let dist = squared_distances(&x, 1, &[0, 1, 2, 3]);
        let graph = knn_graph(&dist, 4, 1);
        assert_eq!(graph, vec![vec![1], vec![0, 2], vec![1, 3], vec![2]]);
        let s = [1.0f32, 1.0, 1.0, 1.5];
        let e1 = (-1.0f64).exp();
        let e8 = (-8.0f64).exp();
        // g = s + Σ exp(−d)·s_j: g0 = 1 + e1, g1 = 1 + 2e1, g2 = 1 + e1 + 1.5e8, g3 = 1.5 + e8.
        // Pick 1 (1.7358); then g0 and g2 drop by exp(−0.1)·g1: 3 (1.5003) comes next.
        let picks = d2_select(&s, &dist, 4, 2, 1, 0.1);
        assert_eq!(picks, vec![1, 3]);
        assert!(1.0 + 2.0 * e1 > 1.5 + e8);
        // Forgetting: one run of 3 epochs: learned then forgotten once; never learned = E.
        let correct = records::Records {
            values: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            runs: 1,
            records: 3,
            n: 2,
            width: 1,
        };
        assert_eq!(forgetting(&correct), vec![1.0, 3.0]);
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// Where a class's time goes: `cargo test --release -p kdprune-plugin-d2 -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn one_class_of_fashion_mnist_size() {
        let (m, h) = (6000usize, 128usize);
        let mut state = 1u64;
        let x: Vec<f32> = (0..m * h)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect();
        let members: Vec<u32> = (0..m as u32).collect();
        let s: Vec<f32> = (0..m).map(|i| (i % 7) as f32).collect();
        let t = std::time::Instant::now();
        let dist = squared_distances(&x, h, &members);
        let t1 = t.elapsed().as_secs_f64();
        let graph = knn_graph(&dist, m, 5);
        let t2 = t.elapsed().as_secs_f64();
        let picks = d2_select(&s, &dist, m, 1800, 5, 0.1);
        let t3 = t.elapsed().as_secs_f64();
        eprintln!(
            "distances {t1:.3} s, knn {:.3} s, select (knn again + picks) {:.3} s; {} picks, {} edges",
            t2 - t1,
            t3 - t2,
            picks.len(),
            graph.iter().map(Vec::len).sum::<usize>()
        );
    }
}
