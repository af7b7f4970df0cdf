//! kdprune pruning method `glister` (Killamsetty, Sivasubramanian, Ramakrishnan and Iyer,
//! AAAI 2021, "GLISTER: Generalization based Data Subset Selection for Efficient and Robust
//! Learning"; as DeepCore's `Glister`, `deepcore/methods/glister.py` at 74ec709).
//!
//! Per class, with the class itself as the validation set (DeepCore's default, `dst_val =
//! dst_train`): the greedy adds the example whose last-layer gradient `g_i` best aligns with
//! the validation gradient, `gain(i) = g_i · mean_j g'_j`, and after each pick takes the
//! one-step look-ahead DeepCore's `update_val_gradients` writes: the validation logits after
//! one SGD step of size `η` on the last layer with the mean gradient of the picks,
//! `z'_j = z_j − η·ḡ_b − η·h_j·ḡ_Wᵀ`, and `g'_j` the cross-entropy gradient there. The
//! greedy is DeepCore's `LazyGreedy`. Quotas proportional to the class sizes. Returns the
//! subset.
//!
//! DeepCore passes the update as `upadate_state` (misspelled), so its optimiser never calls it
//! and it keeps the top of the static gain: `update = false` gives that.
//!
//! Reads `embeddings/grad` `[N, C·(H+1)]` (the bias part is `e = p − onehot(y)`, so `p`) and
//! `embeddings/proxy` `[N, H]` (the `h` of the same network). Everything is computed from
//! `e`, `p` and the Gram matrix `K = h·hᵀ` of the class: with `U_j = Σ_{s∈S} K_js·e_s`,
//! `h_j·ḡ_Wᵀ = U_j / |S|`, and `g_i · mean_j g'_j = e_i·mean_j e'_j + e_i·(K·E')_i / m`.

use std::collections::BinaryHeap;

use kdprune_plugin_api::pairwise::{gram, product, GainBound};
use kdprune_plugin_api::{
    export_plugins,
    records::{self, dot},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};
use rayon::prelude::*;

/// One class's look-ahead state, class-major (`[C, m]`: one row per class, so that every
/// pass over the members is a contiguous, vectorised loop): the members' `e` and `p`, their
/// label, the Gram matrix `K` `[m, m]` of their embeddings, and the current validation errors
/// `e'`.
pub struct Class {
    pub m: usize,
    pub c: usize,
    /// `e` `[C, m]`.
    pub e: Vec<f32>,
    /// `p = e + onehot(label)` `[C, m]`.
    pub p: Vec<f32>,
    pub label: usize,
    /// `K` `[m, m]`, symmetric.
    pub k: Vec<f32>,
    /// `e'` `[C, m]`: the validation errors after the look-ahead step (`e` before a pick).
    pub val: Vec<f32>,
    /// `mean_j e'_j` `[C]`.
    pub val_mean: Vec<f64>,
    /// `Σ_{s∈S} e_s` `[C]`.
    sum_e: Vec<f64>,
    /// `U = Σ_{s∈S} e_s K_{s,:}` `[C, m]`.
    u: Vec<f32>,
    /// Scratch `[C, m]` for the step's weights.
    scratch: Vec<f32>,
    picked: usize,
}

impl Class {
    /// `e` `[m, C]` of one class (all labelled `label`) and `K` `[m, m]`.
    pub fn new(e_rows: &[f32], c: usize, label: usize, k: Vec<f32>) -> Class {
        let m = e_rows.len() / c;
        assert_eq!(k.len(), m * m, "K is [m, m]");
        let e: Vec<f32> = (0..c)
            .flat_map(|t| e_rows.iter().skip(t).step_by(c).copied())
            .collect();
        let mut p = e.clone();
        p[label * m..(label + 1) * m]
            .iter_mut()
            .for_each(|v| *v += 1.0);
        let mut class = Class {
            m,
            c,
            val: e.clone(),
            e,
            p,
            label,
            k,
            val_mean: vec![0.0; c],
            sum_e: vec![0.0; c],
            u: vec![0.0; m * c],
            scratch: vec![0.0; m * c],
            picked: 0,
        };
        class.refresh_mean();
        class
    }

    fn refresh_mean(&mut self) {
        let m = self.m;
        self.val_mean = self
            .val
            .chunks_exact(m)
            .map(|row| lanes_sum(row) / m as f64)
            .collect();
    }

    /// `g_i · mean_j g'_j` for member `i`.
    pub fn gain(&self, i: usize) -> f64 {
        let row = &self.k[i * self.m..(i + 1) * self.m];
        let ke: Vec<f32> = self.val.chunks_exact(self.m).map(|v| dot(row, v)).collect();
        self.gain_from(i, |t| ke[t])
    }

    /// Every member's gain `[m]`, from one product `E'ᵀ·K` `[C, m]` (`K` symmetric).
    pub fn gains(&self) -> Vec<f64> {
        let ke = product(&self.val, &self.k, self.c, self.m, self.m, 1);
        (0..self.m)
            .map(|i| self.gain_from(i, |t| ke[t * self.m + i]))
            .collect()
    }

    /// `e_i·(mean_j e'_j + (K·E')_i / m)`, the class `t` entry of `(K·E')_i` from `ke(t)`.
    fn gain_from(&self, i: usize, ke: impl Fn(usize) -> f32) -> f64 {
        (0..self.c)
            .map(|t| {
                self.e[t * self.m + i] as f64 * (self.val_mean[t] + ke(t) as f64 / self.m as f64)
            })
            .sum()
    }

    /// Adds member `s` to the picks and moves the validation errors to the look-ahead step of
    /// size `eta`: `p'_j ∝ p_j · exp(−η·(Σ e_s + U_j) / |S|)`.
    pub fn pick(&mut self, s: usize, eta: f64) {
        let m = self.m;
        let k_s = &self.k[s * m..(s + 1) * m];
        for t in 0..self.c {
            let es = self.e[t * m + s];
            self.sum_e[t] += es as f64;
            for (u, &kjs) in self.u[t * m..(t + 1) * m].iter_mut().zip(k_s) {
                *u += es * kjs;
            }
        }
        self.picked += 1;
        let step = (-eta / self.picked as f64) as f32;
        // z' − z = −η·(Σ e_s + U_j) / |S|, shifted by each member's largest entry.
        for t in 0..self.c {
            let bias = self.sum_e[t] as f32;
            for (w, &u) in self.scratch[t * m..(t + 1) * m]
                .iter_mut()
                .zip(&self.u[t * m..(t + 1) * m])
            {
                *w = step * (bias + u);
            }
        }
        let mut top = self.scratch[..m].to_vec();
        for row in self.scratch.chunks_exact(m).skip(1) {
            top.iter_mut().zip(row).for_each(|(a, &v)| *a = a.max(v));
        }
        let mut total = vec![0f32; m];
        for (row, p) in self.scratch.chunks_exact_mut(m).zip(self.p.chunks_exact(m)) {
            for (((w, &t), &pk), sum) in row.iter_mut().zip(&top).zip(p).zip(total.iter_mut()) {
                *w = pk * exp(*w - t);
                *sum += *w;
            }
        }
        for (t, (val, w)) in self
            .val
            .chunks_exact_mut(m)
            .zip(self.scratch.chunks_exact(m))
            .enumerate()
        {
            let target = if t == self.label { 1.0 } else { 0.0 };
            for ((v, &wk), &sum) in val.iter_mut().zip(w).zip(&total) {
                *v = wk / sum - target;
            }
        }
        self.refresh_mean();
    }
}

/// `Σ v` in 16 independent f64 lanes (vectorised; a plain `.sum()` keeps its order).
fn lanes_sum(v: &[f32]) -> f64 {
    let mut lanes = [0f64; 16];
    let chunks = v.chunks_exact(16);
    let tail: f64 = chunks.remainder().iter().map(|&x| x as f64).sum();
    for chunk in chunks {
        for (l, &x) in lanes.iter_mut().zip(chunk) {
            *l += x as f64;
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// `eˣ` for `x ≤ 0` (a shifted logit), to within 4·10⁻⁷ relative, as straight-line code
/// that the compiler vectorises (`f32::exp` is a call per element): `x = n·ln 2 + r` with
/// `|r| ≤ ln 2 / 2`, `eʳ` by its degree-6 Taylor polynomial, `2ⁿ` written into the exponent
/// bits. Below −87 it returns `e⁻⁸⁷` (≈ 1.6·10⁻³⁸), where the softmax weight is 0 anyway.
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 0.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    // ln 2 in two parts (Cody and Waite): n·ln2_hi is exact, so r keeps its low bits.
    let r = (x - n * 0.693_359_4) - n * -2.121_944_4e-4;
    let poly = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    poly * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// DeepCore's `LazyGreedy` over `class`: `k` picks (positions, in the order picked); with
/// `eta = None` the gains never change (DeepCore as it runs) and the picks are the top `k`.
pub fn lazy_greedy(class: &mut Class, k: usize, eta: Option<f64>) -> Vec<usize> {
    let mut heap: BinaryHeap<GainBound> = class
        .gains()
        .into_iter()
        .enumerate()
        .map(|(i, g)| GainBound(g, i))
        .collect::<Vec<_>>()
        .into();
    let mut picked = Vec::with_capacity(k.min(class.m));
    while picked.len() < k.min(class.m) {
        let Some(GainBound(stale, i)) = heap.pop() else {
            break;
        };
        let fresh = if eta.is_some() { class.gain(i) } else { stale };
        // The element stays the argmax after its gain is refreshed: DeepCore takes it.
        if heap.peek().is_none_or(|next| GainBound(fresh, i) >= *next) {
            picked.push(i);
            if let Some(eta) = eta {
                class.pick(i, eta);
            }
        } else {
            heap.push(GainBound(fresh, i));
        }
    }
    picked
}

pub struct Glister;

impl Scorer for Glister {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "glister",
            env!("CARGO_PKG_VERSION"),
            "greedy alignment of last-layer gradients with the class's, one-step look-ahead (Killamsetty et al. 2021; DeepCore's Glister)",
        )
        .param(
            "eta",
            ParamValue::Float(0.1),
            "the look-ahead step's learning rate (DeepCore: args.lr, 0.1)",
        )
        .param(
            "update",
            ParamValue::Bool(true),
            "take the look-ahead after each pick (Glister); false: the static gain, as DeepCore's code runs",
        )
        .input("embeddings/grad")
        .input("embeddings/proxy")
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let g = records::factored_gradients(request)?;
        let c = g.classes;
        let eta = request.float("eta")?;
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(PluginError::new(format!(
                "eta = {eta}: use a finite learning rate ≥ 0"
            )));
        }
        let update = request.bool("update")?.then_some(eta);
        let labels = request.train.labels.as_slice();
        let groups = records::selection_groups(request, true);
        let picked: Vec<Vec<u32>> = groups
            .par_iter()
            .map(|(members, quota)| {
                let e = records::gather_rows(&g.e, c, members);
                let label = members.first().map_or(0, |&i| labels[i as usize] as usize);
                let mut class = Class::new(&e, c, label, gram(&g.h, g.dim, members));
                lazy_greedy(&mut class, *quota, update)
                    .into_iter()
                    .map(|p| members[p])
                    .collect()
            })
            .collect();
        Ok(Selection::subset(picked.concat()))
    }
}

export_plugins! {
    scorers: [Glister],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full gradients `[e, e_1·h, …, e_C·h]` `[m][C·(H+1)]` of a class's rows.
    fn full_gradients(e: &[f32], h: &[f32], c: usize, dim: usize) -> Vec<Vec<f64>> {
        e.chunks_exact(c)
            .zip(h.chunks_exact(dim))
            .map(|(e, h)| {
                let mut g: Vec<f64> = e.iter().map(|&v| v as f64).collect();
                for &ec in e {
                    g.extend(h.iter().map(|&hd| ec as f64 * hd as f64));
                }
                g
            })
            .collect()
    }

    fn class_of(e: &[f32], h: &[f32], c: usize, dim: usize, label: usize) -> Class {
        let members: Vec<u32> = (0..(e.len() / c) as u32).collect();
        Class::new(e, c, label, gram(h, dim, &members))
    }

    #[test]
    fn exp_is_within_its_bound() {
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let want = (x as f64).exp();
            worst = worst.max((exp(x) as f64 - want).abs() / want);
        }
        assert!(worst < 4e-7, "{worst}");
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn gains_are_the_full_gradients_dot_their_mean() {
        // Three members of class 0, C = 2, H = 2.
        let e = [-0.5f32, 0.5, -0.1, 0.1, -0.8, 0.8];
        let h = [1.0f32, 2.0, 0.5, -1.0, 3.0, 0.0];
        let class = class_of(&e, &h, 2, 2, 0);
        let g = full_gradients(&e, &h, 2, 2);
        let mean: Vec<f64> = (0..g[0].len())
            .map(|d| g.iter().map(|r| r[d]).sum::<f64>() / 3.0)
            .collect();
        for (i, row) in g.iter().enumerate() {
            let expected: f64 = row.iter().zip(&mean).map(|(a, b)| a * b).sum();
            assert!((class.gain(i) - expected).abs() < 1e-6, "{i}");
        }
    }

    #[test]
    fn the_look_ahead_is_one_sgd_step_on_the_last_layer() {
        // After picking member 2, the logits move by −η·(e_2 + (h_j·h_2)·e_2) (bias and weight
        // steps of the one pick); recomputed here from the logits z = ln p.
        let e = [-0.5f32, 0.5, -0.1, 0.1, -0.8, 0.8];
        let h = [1.0f32, 2.0, 0.5, -1.0, 3.0, 0.0];
        let eta = 0.3;
        let mut class = class_of(&e, &h, 2, 2, 0);
        class.pick(2, eta);
        for j in 0..3 {
            let p = [1.0 + e[2 * j] as f64, e[2 * j + 1] as f64];
            let k = (h[2 * j] * h[4] + h[2 * j + 1] * h[5]) as f64;
            let z: Vec<f64> = (0..2)
                .map(|c| p[c].ln() - eta * (e[4 + c] as f64) * (1.0 + k))
                .collect();
            let total = z[0].exp() + z[1].exp();
            let expected = [z[0].exp() / total - 1.0, z[1].exp() / total];
            for (c, want) in expected.iter().enumerate() {
                let got = class.val[c * 3 + j] as f64;
                assert!((got - want).abs() < 1e-6, "{j} {c}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn the_lazy_greedy_is_deepcores() {
        let mut state = 11u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let (m, c, dim) = (40, 3, 4);
        let mut e = Vec::new();
        for _ in 0..m {
            let p: Vec<f32> = (0..c).map(|_| next() + 0.05).collect();
            let total: f32 = p.iter().sum();
            e.extend(
                p.iter()
                    .enumerate()
                    .map(|(k, v)| v / total - (k == 1) as u8 as f32),
            );
        }
        let h: Vec<f32> = (0..m * dim).map(|_| next() * 2.0 - 1.0).collect();
        // Static: the top k by gain, ties to the smaller position.
        let mut class = class_of(&e, &h, c, dim, 1);
        let gains: Vec<f64> = (0..m).map(|i| class.gain(i)).collect();
        let mut top: Vec<usize> = (0..m).collect();
        top.sort_by(|&a, &b| gains[b].total_cmp(&gains[a]).then(a.cmp(&b)));
        assert_eq!(lazy_greedy(&mut class, 8, None), top[..8].to_vec());
        // With the look-ahead (a large step, so that the gains move): DeepCore's LazyGreedy
        // loop as written, on an array of gains refreshed in place.
        let mut lazy = class_of(&e, &h, c, dim, 1);
        let picks = lazy_greedy(&mut lazy, 8, Some(5.0));
        let mut plain = class_of(&e, &h, c, dim, 1);
        let mut greedy_gain: Vec<f64> = (0..m).map(|i| plain.gain(i)).collect();
        let argmax = |g: &[f64]| (0..m).fold(0, |b, i| if g[i] > g[b] { i } else { b });
        let mut reference = Vec::new();
        for _ in 0..8 {
            let (mut best_gain, mut last) = (f64::NEG_INFINITY, usize::MAX);
            loop {
                let current = argmax(&greedy_gain);
                if current == last {
                    reference.push(current);
                    greedy_gain[current] = f64::NEG_INFINITY;
                    plain.pick(current, 5.0);
                    break;
                }
                let new_gain = plain.gain(current);
                greedy_gain[current] = new_gain;
                if new_gain >= best_gain {
                    best_gain = new_gain;
                    last = current;
                }
            }
        }
        assert_eq!(picks, reference);
        assert_ne!(picks, top[..8].to_vec(), "the look-ahead changes the picks");
        assert_eq!(lazy.val, plain.val);
    }
}
