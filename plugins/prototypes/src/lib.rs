//! kdprune pruning method `prototypes` (Sorscher et al. 2022, "Beyond neural scaling laws:
//! beating power law scaling via data pruning"): k-means on the embeddings, ignoring the
//! labels (the self-supervised prototype metric), and each example's distance to its nearest
//! centroid. High means hard (far from every prototype); the authors keep hard examples when
//! data is plentiful and easy ones when it is scarce (`policy = "easiest"`).
//!
//! By default the embeddings are L2-normalised and the centroids kept on the unit sphere
//! (spherical k-means), the distance being the cosine distance `1 − cos`, as in the authors'
//! code; `normalize = false` gives plain k-means with Euclidean distances. Seeded k-means++
//! initialisation, Lloyd iterations. Reads `embeddings/proxy` `[N, H]` (default) or
//! `embeddings/teacher`.

use kdprune_plugin_api::{
    export_plugins,
    records::{chosen_embedding, SplitMix64},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};
use rayon::prelude::*;

use kdprune_plugin_api::records::squared_distance as sq_dist;

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Distance of each row of `x` `[n, h]` to its nearest of `k` centroids after `iterations`
/// Lloyd steps from a k-means++ start drawn with `seed`.
pub fn prototype_distances(
    x: &[f32],
    h: usize,
    k: usize,
    iterations: usize,
    spherical: bool,
    seed: u64,
) -> Vec<f32> {
    let n = x.len() / h;
    let mut data = x.to_vec();
    if spherical {
        data.chunks_exact_mut(h).for_each(normalise);
    }
    let row = |i: usize| &data[i * h..(i + 1) * h];
    let k = k.min(n).max(1);
    // k-means++: each next centroid drawn with probability ∝ squared distance to the nearest.
    let mut rng = SplitMix64(seed);
    let mut centroids: Vec<f32> = row(rng.below(n)).to_vec();
    let mut nearest: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|i| sq_dist(row(i), &centroids[..h]))
        .collect();
    while centroids.len() < k * h {
        let total: f64 = nearest.iter().map(|&d| d as f64).sum();
        let pick = if total > 0.0 {
            let mut u = rng.unit() * total;
            let mut chosen = n - 1;
            for (i, &d) in nearest.iter().enumerate() {
                u -= d as f64;
                if u < 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        } else {
            rng.below(n)
        };
        let c = row(pick).to_vec();
        nearest
            .par_iter_mut()
            .enumerate()
            .for_each(|(i, d)| *d = d.min(sq_dist(row(i), &c)));
        centroids.extend(c);
    }
    let assign = |centroids: &[f32]| -> Vec<(usize, f32)> {
        (0..n)
            .into_par_iter()
            .map(|i| {
                centroids
                    .chunks_exact(h)
                    .enumerate()
                    .map(|(c, cen)| (c, sq_dist(row(i), cen)))
                    .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
                    .expect("k >= 1")
            })
            .collect()
    };
    for _ in 0..iterations {
        let labels = assign(&centroids);
        let mut sums = vec![0f64; k * h];
        let mut counts = vec![0usize; k];
        for (i, &(c, _)) in labels.iter().enumerate() {
            counts[c] += 1;
            for (s, &v) in sums[c * h..(c + 1) * h].iter_mut().zip(row(i)) {
                *s += v as f64;
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                let cen = &mut centroids[c * h..(c + 1) * h];
                for (dst, &s) in cen.iter_mut().zip(&sums[c * h..(c + 1) * h]) {
                    *dst = (s / counts[c] as f64) as f32;
                }
                if spherical {
                    normalise(cen);
                }
            }
        }
    }
    assign(&centroids)
        .into_iter()
        .map(|(_, sq)| if spherical { sq / 2.0 } else { sq.sqrt() })
        .collect()
}

pub struct Prototypes;

impl Scorer for Prototypes {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "prototypes",
            env!("CARGO_PKG_VERSION"),
            "self-supervised prototypes: distance to the nearest k-means centroid of the embeddings (Sorscher et al. 2022)",
        )
        .param(
            "embedding",
            ParamValue::Text("proxy".into()),
            "\"proxy\": the proxy's penultimate layer; \"teacher\": [teacher] embedding",
        )
        .param("clusters", ParamValue::Int(0), "k; 0: the number of classes")
        .param("iterations", ParamValue::Int(20), "Lloyd iterations after the k-means++ start")
        .param(
            "normalize",
            ParamValue::Bool(true),
            "L2-normalise and use the cosine distance (spherical k-means, as the authors)",
        )
        .optional_input("embeddings/proxy")
        .optional_input("embeddings/teacher")
        .high_is_hard(true)
        .budget_independent()
        .score_meaning("far from every prototype: atypical, hard")
    }

    fn inputs_for(
        params: &kdprune_plugin_api::Params<'_>,
    ) -> Option<Result<Vec<kdprune_plugin_api::InputSpec>, PluginError>> {
        kdprune_plugin_api::records::embedding_inputs(params)
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let (x, h) = chosen_embedding(request)?;
        let k = match request.int("clusters")? {
            0 => request.train.num_classes as usize,
            k if k > 0 => k as usize,
            k => return Err(PluginError::new(format!("clusters = {k} must be >= 0"))),
        };
        let iterations = request.int("iterations")?;
        if iterations < 0 {
            return Err(PluginError::new("iterations must be >= 0"));
        }
        Ok(Selection::scores(prototype_distances(
            &x,
            h,
            k,
            iterations as usize,
            request.bool("normalize")?,
            request.seed,
        )))
    }
}

export_plugins! {
    scorers: [Prototypes],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_to_the_centroids_of_two_clear_clusters() {
        // Two clusters on a line: {0, 1, 2} and {10, 11, 12}; k = 2 finds their means 1 and
        // 11, so the distances are 1, 0, 1, 1, 0, 1 whatever the seed.
        let x = [0.0f32, 1.0, 2.0, 10.0, 11.0, 12.0];
        for seed in 0..5 {
            let d = prototype_distances(&x, 1, 2, 10, false, seed);
            for (a, b) in d.iter().zip([1.0, 0.0, 1.0, 1.0, 0.0, 1.0]) {
                assert!((a - b).abs() < 1e-5, "seed {seed}: {d:?}");
            }
        }
        // Spherical: directions (1,0), (0.8,0.6), (0,1): one cluster each with k = 3 → 0.
        let y = [1.0f32, 0.0, 0.8, 0.6, 0.0, 2.0];
        let d = prototype_distances(&y, 2, 3, 5, true, 1);
        assert!(d.iter().all(|v| v.abs() < 1e-5), "{d:?}");
    }
}
