//! kdprune pruning method `craig` (Mirzasoleiman, Bilmes and Leskovec, ICML 2020, "Coresets
//! for Data-efficient Training of Machine Learning Models"; as DeepCore's `Craig`,
//! `deepcore/methods/craig.py`): per class, the facility-location coreset of the examples'
//! last-layer gradients. The similarity of two examples is `max d − d + 10⁻³` over the
//! class's Euclidean distances `d` (DeepCore: `-dist`, minus its minimum, plus `1e-3`); the
//! facility-location function `Σ_i max_{j ∈ S} sim(i, j)` is maximised by the lazy greedy
//! (DeepCore's default `LazyGreedy`), with quotas proportional to the class sizes. Returns
//! the subset.
//!
//! Reads `embeddings/grad` `[N, C·(H+1)]` (default) or another embedding (`embedding =
//! "proxy"` or `"teacher"`).
//!
//! The library also exports `submodular`, DeepCore's `Submodular` as its `main.py` runs it
//! (per class, `GraphCut`, `LazyGreedy`): on the same gradients with DeepCore's similarity
//! `0.5 + 0.5·cos`, the graph cut `λ·Σ_i S(i, x) − 2·Σ_{a∈S} S(a, x)` (gains, `λ = 1`) or the
//! facility location. DeepCore's `LogDeterminant` is left out: its `calc_gain` returns the
//! quadratic form `s_xAᵀ S_AA⁺ s_xA` alone, whose argmax picks the example the set already
//! explains best, the opposite of the log-determinant's diversity; docs/methods.md.

use std::collections::BinaryHeap;

use kdprune_plugin_api::pairwise::{
    gradient_gram, gram, squared_distances, squared_distances_from_gram, GainBound,
};
use kdprune_plugin_api::{
    export_plugins, records, required, InputSpec, ParamValue, Params, PluginError, PluginInfo,
    ScoreRequest, Scorer, Selection,
};
use rayon::prelude::*;

/// The rows a method compares: an embedding `x` `[N, d]`, or the last-layer gradients in
/// factored form, `e` `[N, C]` (the bias part of `embeddings/grad`) and `h` `[N, H]`
/// (`embeddings/proxy`, the same network's penultimate layer), whose products
/// `a_i·a_j = (e_i·e_j)(1 + h_i·h_j)` are those of the full `[N, C·(H+1)]` gradients at a
/// tenth of the work.
pub enum Rows {
    Embedding {
        x: Vec<f32>,
        d: usize,
    },
    Gradients {
        e: Vec<f32>,
        c: usize,
        h: Vec<f32>,
        dim: usize,
    },
}

impl Rows {
    /// Squared Euclidean distances `[m, m]` between the rows `members`.
    pub fn squared_distances(&self, members: &[u32]) -> Vec<f32> {
        match self {
            Rows::Embedding { x, d } => squared_distances(x, *d, members),
            Rows::Gradients { e, c, h, dim } => {
                squared_distances_from_gram(gradient_gram(e, *c, h, *dim, members), members.len())
            }
        }
    }

    /// Cosines `[m, m]` between the rows `members` (a zero row's taken as 0).
    pub fn cosines(&self, members: &[u32]) -> Vec<f32> {
        match self {
            Rows::Embedding { x, d } => {
                let unit: Vec<f32> = members
                    .iter()
                    .flat_map(|&i| {
                        let row = &x[i as usize * d..(i as usize + 1) * d];
                        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
                        row.iter().map(move |v| v * scale)
                    })
                    .collect();
                let all: Vec<u32> = (0..members.len() as u32).collect();
                gram(&unit, *d, &all)
            }
            Rows::Gradients { e, c, h, dim } => {
                let m = members.len();
                let mut g = gradient_gram(e, *c, h, *dim, members);
                let scale: Vec<f32> = (0..m)
                    .map(|i| {
                        let norm = g[i * m + i].sqrt();
                        if norm > 0.0 {
                            1.0 / norm
                        } else {
                            0.0
                        }
                    })
                    .collect();
                g.par_chunks_mut(m.max(1)).enumerate().for_each(|(i, row)| {
                    for (v, &sj) in row.iter_mut().zip(&scale) {
                        *v *= scale[i] * sj;
                    }
                });
                g
            }
        }
    }
}

/// The similarities `[m, m]` of the rows `members`: `max d − d_ij + 10⁻³`.
pub fn similarities(rows: &Rows, members: &[u32]) -> Vec<f32> {
    let mut dist = rows.squared_distances(members);
    dist.par_iter_mut().for_each(|v| *v = v.sqrt());
    let max = dist.iter().copied().fold(0.0f32, f32::max);
    dist.par_iter_mut().for_each(|v| *v = max - *v + 1e-3);
    dist
}

/// DeepCore's `cossim`: `0.5 + 0.5·cos(x_i, x_j)` `[m, m]` of the rows `members`.
pub fn cosine_similarities(rows: &Rows, members: &[u32]) -> Vec<f32> {
    let mut sim = rows.cosines(members);
    sim.par_iter_mut().for_each(|v| *v = 0.5 + 0.5 * *v);
    sim
}

/// The greedy's `k` picks of the graph cut `λ·Σ_i S(i, x) − 2·Σ_{a∈S} S(a, x)` over the
/// symmetric similarities `sim` `[m, m]` (DeepCore's `GraphCut.calc_gain`). Each gain is
/// exact and cheap to keep, so every step takes the largest (ties: the smaller index).
pub fn graph_cut(sim: &[f32], m: usize, k: usize, lambda: f64) -> Vec<usize> {
    let column_sums: Vec<f64> = (0..m)
        .into_par_iter()
        .map(|x| sim[x * m..(x + 1) * m].iter().map(|&s| s as f64).sum())
        .collect();
    let mut to_picked = vec![0f64; m];
    let mut taken = vec![false; m];
    let mut picked = Vec::with_capacity(k.min(m));
    while picked.len() < k.min(m) {
        let x = (0..m)
            .filter(|&x| !taken[x])
            .map(|x| (lambda * column_sums[x] - 2.0 * to_picked[x], x))
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
            .expect("k <= m")
            .1;
        taken[x] = true;
        picked.push(x);
        for (t, &s) in to_picked.iter_mut().zip(&sim[x * m..(x + 1) * m]) {
            *t += s as f64;
        }
    }
    picked
}

/// The lazy greedy's `k` picks (positions in `0..m`, in the order picked) of the facility
/// location over the symmetric similarities `sim` `[m, m]`.
pub fn facility_location(sim: &[f32], m: usize, k: usize) -> Vec<usize> {
    let mut best = vec![0f32; m];
    let gain = |j: usize, best: &[f32]| -> f64 {
        sim[j * m..(j + 1) * m]
            .iter()
            .zip(best)
            .map(|(&s, &b)| (s - b).max(0.0) as f64)
            .sum()
    };
    let mut heap: BinaryHeap<GainBound> = (0..m)
        .into_par_iter()
        .map(|j| GainBound(gain(j, &best), j))
        .collect::<Vec<_>>()
        .into();
    let mut picked = Vec::with_capacity(k.min(m));
    while picked.len() < k.min(m) {
        let Some(GainBound(_, j)) = heap.pop() else {
            break;
        };
        let fresh = gain(j, &best);
        // Gains only shrink as picks are added (submodularity): a fresh gain at least the
        // next bound is the largest.
        if heap.peek().is_none_or(|next| GainBound(fresh, j) >= *next) {
            picked.push(j);
            for (b, &s) in best.iter_mut().zip(&sim[j * m..(j + 1) * m]) {
                *b = b.max(s);
            }
        } else {
            heap.push(GainBound(fresh, j));
        }
    }
    picked
}

pub struct Craig;

impl Scorer for Craig {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "craig",
            env!("CARGO_PKG_VERSION"),
            "facility-location coreset of last-layer gradients per class, lazy greedy (Mirzasoleiman et al. 2020; DeepCore's Craig)",
        )
        .param(
            "embedding",
            ParamValue::Text("grad".into()),
            "\"grad\": the proxy's last-layer gradients (CRAIG); \"proxy\" or \"teacher\": an embedding",
        )
        .optional_input("embeddings/grad")
        .optional_input("embeddings/proxy")
        .optional_input("embeddings/teacher")
    }

    fn inputs_for(params: &Params<'_>) -> Option<Result<Vec<InputSpec>, PluginError>> {
        grad_inputs(params)
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let rows = chosen(request)?;
        let groups = records::selection_groups(request, true);
        let mut kept = Vec::with_capacity(request.budget as usize);
        // One class at a time: its similarities take m² floats.
        for (members, quota) in groups {
            let sim = similarities(&rows, &members);
            let picks = facility_location(&sim, members.len(), quota);
            kept.extend(picks.into_iter().map(|p| members[p]));
        }
        Ok(Selection::subset(kept))
    }
}

/// The rows the `embedding` parameter names: the gradients (factored) or an embedding.
fn chosen(request: &ScoreRequest<'_>) -> Result<Rows, PluginError> {
    match request.text("embedding")? {
        "grad" => {
            let g = records::factored_gradients(request)?;
            Ok(Rows::Gradients {
                e: g.e,
                c: g.classes,
                h: g.h,
                dim: g.dim,
            })
        }
        _ => {
            let (x, d) = records::chosen_embedding(request)?;
            Ok(Rows::Embedding { x, d })
        }
    }
}

fn grad_inputs(params: &Params<'_>) -> Option<Result<Vec<InputSpec>, PluginError>> {
    match params.text("embedding") {
        Some("grad") | None => Some(Ok(vec![
            required("embeddings/grad"),
            required("embeddings/proxy"),
        ])),
        _ => records::embedding_inputs(params),
    }
}

pub struct Submodular;

impl Scorer for Submodular {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "submodular",
            env!("CARGO_PKG_VERSION"),
            "a submodular function of the last-layer gradients' cosine similarities per class, greedy (DeepCore's Submodular)",
        )
        .param(
            "function",
            ParamValue::Text("graph_cut".into()),
            "\"graph_cut\" (DeepCore's main.py default) or \"facility_location\"",
        )
        .param(
            "lambda",
            ParamValue::Float(1.0),
            "the graph cut's λ (DeepCore: 1)",
        )
        .param(
            "embedding",
            ParamValue::Text("grad".into()),
            "\"grad\": the proxy's last-layer gradients; \"proxy\" or \"teacher\": an embedding",
        )
        .optional_input("embeddings/grad")
        .optional_input("embeddings/proxy")
        .optional_input("embeddings/teacher")
    }

    fn inputs_for(params: &Params<'_>) -> Option<Result<Vec<InputSpec>, PluginError>> {
        match params.text("function") {
            Some("graph_cut" | "facility_location") | None => grad_inputs(params),
            Some(other) => Some(Err(PluginError::new(format!(
                "function = {other:?}: use \"graph_cut\" or \"facility_location\" (log-determinant is left out: docs/methods.md)"
            )))),
        }
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let rows = chosen(request)?;
        let function = request.text("function")?.to_string();
        let lambda = request.float("lambda")?;
        let mut kept = Vec::with_capacity(request.budget as usize);
        for (members, quota) in records::selection_groups(request, true) {
            let sim = cosine_similarities(&rows, &members);
            let m = members.len();
            let picks = match function.as_str() {
                "facility_location" => facility_location(&sim, m, quota),
                _ => graph_cut(&sim, m, quota, lambda),
            };
            kept.extend(picks.into_iter().map(|p| members[p]));
        }
        Ok(Selection::subset(kept))
    }
}

export_plugins! {
    scorers: [Craig, Submodular],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarities_are_the_largest_distance_minus_each() {
        // Three points on a line at 0, 3 and 4: distances 3, 4, 1; the largest 4.
        let rows = Rows::Embedding {
            x: vec![0.0f32, 3.0, 4.0],
            d: 1,
        };
        let sim = similarities(&rows, &[0, 1, 2]);
        let expected = [
            4.001, 1.001, 0.001, 1.001, 4.001, 3.001, 0.001, 3.001, 4.001,
        ];
        for (a, b) in sim.iter().zip(expected) {
            assert!((a - b).abs() < 1e-4, "{sim:?}");
        }
    }

    #[test]
    fn the_lazy_greedy_matches_the_plain_greedy() {
        // Similarities of the line 0, 3, 4 above: the first pick is the point with the largest
        // column sum (1: 1.001 + 4.001 + 3.001 = 8.003, against 5.003 and 7.003); then the
        // gains over best = column 1 are 3.0 for point 0 and 1.0 for point 2.
        let rows = Rows::Embedding {
            x: vec![0.0f32, 3.0, 4.0],
            d: 1,
        };
        let sim = similarities(&rows, &[0, 1, 2]);
        assert_eq!(facility_location(&sim, 3, 2), vec![1, 0]);
        // On random points, the picks of a greedy that recomputes every gain each step.
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let x: Vec<f32> = (0..60 * 3).map(|_| next()).collect();
        let members: Vec<u32> = (0..60).collect();
        let sim = similarities(&Rows::Embedding { x, d: 3 }, &members);
        let mut best = vec![0f32; 60];
        let mut plain = Vec::new();
        for _ in 0..10 {
            let gains: Vec<f64> = (0..60)
                .map(|j| {
                    (0..60)
                        .map(|i| (sim[j * 60 + i] - best[i]).max(0.0) as f64)
                        .sum()
                })
                .collect();
            let j = (0..60)
                .filter(|j| !plain.contains(j))
                .max_by(|&a, &b| gains[a].total_cmp(&gains[b]).then(b.cmp(&a)))
                .unwrap();
            plain.push(j);
            for i in 0..60 {
                best[i] = best[i].max(sim[j * 60 + i]);
            }
        }
        assert_eq!(facility_location(&sim, 60, 10), plain);
    }

    #[test]
    fn graph_cut_gains_and_cosine_similarities_by_hand() {
        // Rows (1, 0), (0, 1), (2, 2): cosines 0, 1/√2, 1/√2 → 0.5 + 0.5·cos.
        let rows = Rows::Embedding {
            x: vec![1.0f32, 0.0, 0.0, 1.0, 2.0, 2.0],
            d: 2,
        };
        let sim = cosine_similarities(&rows, &[0, 1, 2]);
        let h = 0.5 + 0.5 * std::f32::consts::FRAC_1_SQRT_2;
        let expected = [1.0, 0.5, h, 0.5, 1.0, h, h, h, 1.0];
        for (a, b) in sim.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{sim:?}");
        }
        // λ = 1: column sums 1.5 + h, 1.5 + h, 1 + 2h: the third first (2h > 0.5 + h).
        // Then gains Σ − 2·S(2, x) = 1.5 − h for both others: the smaller index.
        assert_eq!(graph_cut(&sim, 3, 2, 1.0), vec![2, 0]);
    }

    #[test]
    fn factored_gradients_compare_as_the_full_ones() {
        // Four examples, C = 3, H = 2: the full gradients [e, e_1·h, e_2·h, e_3·h] as an
        // embedding against their factors.
        let e = [
            0.2f32, -0.3, 0.1, -0.5, 0.4, 0.1, 0.0, 0.3, -0.3, 0.6, -0.9, 0.3,
        ];
        let h = [1.0f32, 2.0, -0.5, 0.5, 3.0, 0.0, 0.25, -1.0];
        let full: Vec<f32> = (0..4)
            .flat_map(|i| {
                let (ei, hi) = (&e[i * 3..i * 3 + 3], &h[i * 2..i * 2 + 2]);
                let weight: Vec<f32> = ei
                    .iter()
                    .flat_map(|&c| hi.iter().map(move |&d| c * d))
                    .collect();
                ei.iter().copied().chain(weight).collect::<Vec<_>>()
            })
            .collect();
        let embedding = Rows::Embedding { x: full, d: 9 };
        let factored = Rows::Gradients {
            e: e.to_vec(),
            c: 3,
            h: h.to_vec(),
            dim: 2,
        };
        let members = [3u32, 0, 2, 1];
        for (a, b) in [
            (
                similarities(&embedding, &members),
                similarities(&factored, &members),
            ),
            (
                cosine_similarities(&embedding, &members),
                cosine_similarities(&factored, &members),
            ),
        ] {
            // The square root turns the full product's rounding at a distance of 0 into
            // about 10⁻⁴.
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-3, "{a:?} vs {b:?}");
            }
        }
    }
}
