//! kdprune pruning method `gradmatch` (Killamsetty, Durga, Ramakrishnan, De and Iyer, ICML
//! 2021, "GRAD-MATCH: Gradient Matching based Data Subset Selection for Efficient Deep Model
//! Training"; as DeepCore's `GradMatch`, `deepcore/methods/gradmatch.py` at 74ec709, and the
//! authors' CORDS for the fill).
//!
//! Per class: orthogonal matching pursuit of the class's mean last-layer gradient `b` by the
//! members' gradients `a_i`, exactly `k` steps: each adds the unpicked member with the largest
//! (signed) projection `a_i · r` on the residual, then solves the ridge problem
//! `(A_S A_Sᵀ + λI)·x = A_S b` (`λ = 1`; the first step `x = a_j·b / ‖a_j‖²` without it) and
//! sets `r = b − A_Sᵀ x`. The final weights are the non-negative least squares of the same
//! system (`scipy.optimize.nnls` in DeepCore; block principal pivoting here, the same unique
//! solution); picks whose weight is 0 are
//! dropped, as DeepCore drops them, and the class's quota is filled with members drawn at
//! random (seeded), as CORDS fills it. Returns the subset (kdprune trains on it unweighted).
//!
//! Reads `embeddings/grad` `[N, C·(H+1)]` (its bias part `e = p − onehot(y)`) and
//! `embeddings/proxy` `[N, H]` (`h`). The gradient `a = [e, e_1·h, …, e_C·h]` is never formed:
//! `a_i · a_j = (e_i·e_j)(1 + h_i·h_j)` and `a_i · [r_b, R] = e_i·(r_b + R·h_i)` with the
//! residual's weight part `R` `[C, H]`, so a step reads `m·(C + H)` floats, not `m·C·(H+1)`.

use kdprune_plugin_api::pairwise::product;
use kdprune_plugin_api::{
    export_plugins,
    records::{self, dot, SplitMix64},
    ParamValue, PluginError, PluginInfo, ScoreRequest, Scorer, Selection,
};
use rayon::prelude::*;

/// One class's gradients in factored form: `e` `[m, C]` and `h` `[m, H]`.
pub struct Gradients {
    pub m: usize,
    pub c: usize,
    pub dim: usize,
    pub e: Vec<f32>,
    pub h: Vec<f32>,
}

impl Gradients {
    fn e(&self, i: usize) -> &[f32] {
        &self.e[i * self.c..(i + 1) * self.c]
    }

    fn h(&self, i: usize) -> &[f32] {
        &self.h[i * self.dim..(i + 1) * self.dim]
    }

    /// `a_i · a_j`.
    pub fn inner(&self, i: usize, j: usize) -> f64 {
        dot(self.e(i), self.e(j)) as f64 * (1.0 + dot(self.h(i), self.h(j)) as f64)
    }

    /// The mean gradient `b = [mean e, mean e ⊗ h]` as `(b_b [C], B [C·H])`.
    pub fn mean(&self) -> (Vec<f64>, Vec<f64>) {
        let mut bias = vec![0f64; self.c];
        let mut weight = vec![0f64; self.c * self.dim];
        for i in 0..self.m {
            for (c, &ec) in self.e(i).iter().enumerate() {
                bias[c] += ec as f64;
                for (w, &hd) in weight[c * self.dim..(c + 1) * self.dim]
                    .iter_mut()
                    .zip(self.h(i))
                {
                    *w += ec as f64 * hd as f64;
                }
            }
        }
        let scale = 1.0 / self.m.max(1) as f64;
        bias.iter_mut()
            .chain(weight.iter_mut())
            .for_each(|v| *v *= scale);
        (bias, weight)
    }

    /// `a_i · [r_b, R]` for every member `[m]`: `e_i · (r_b + (h·Rᵀ)_i)`.
    pub fn projections(&self, bias: &[f64], weight: &[f64]) -> Vec<f64> {
        // Rᵀ [H, C], so that h [m, H] · Rᵀ is one product.
        let transposed: Vec<f32> = (0..self.dim)
            .flat_map(|d| (0..self.c).map(move |c| weight[c * self.dim + d] as f32))
            .collect();
        let hr = product(&self.h, &transposed, self.m, self.dim, self.c, 1);
        hr.chunks_exact(self.c)
            .zip(self.e.chunks_exact(self.c))
            .map(|(hr, e)| {
                e.iter()
                    .zip(hr)
                    .zip(bias)
                    .map(|((&ec, &v), &bc)| ec as f64 * (bc + v as f64))
                    .sum()
            })
            .collect()
    }
}

/// A lower-triangular Cholesky factor grown one row at a time (rows `[i + 1]`).
#[derive(Default)]
pub struct Cholesky {
    rows: Vec<Vec<f64>>,
}

impl Cholesky {
    /// Appends a row and column to the factored matrix: `column` its entries against the rows
    /// so far, `diagonal` its own. `None` when the matrix stops being positive definite.
    pub fn push(&mut self, column: &[f64], diagonal: f64) -> Option<()> {
        let mut row = self.forward(column);
        let rest = diagonal - row.iter().map(|v| v * v).sum::<f64>();
        if rest.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return None;
        }
        row.push(rest.sqrt());
        self.rows.push(row);
        Some(())
    }

    /// `L⁻¹ b`.
    fn forward(&self, b: &[f64]) -> Vec<f64> {
        let mut y: Vec<f64> = Vec::with_capacity(b.len());
        for (i, row) in self.rows.iter().enumerate() {
            let s = dot64(&row[..i], &y);
            y.push((b[i] - s) / row[i]);
        }
        y
    }

    /// `(L Lᵀ)⁻¹ b`.
    pub fn solve(&self, b: &[f64]) -> Vec<f64> {
        self.back(self.forward(b))
    }

    /// Extends `y = L⁻¹ b` by the last row's entry, for `b`'s new last value `b_last`.
    pub fn extend_forward(&self, y: &mut Vec<f64>, b_last: f64) {
        let row = self.rows.last().expect("a row");
        let i = row.len() - 1;
        y.push((b_last - dot64(&row[..i], y)) / row[i]);
    }

    /// `L⁻ᵀ y`.
    pub fn back(&self, mut x: Vec<f64>) -> Vec<f64> {
        for i in (0..x.len()).rev() {
            x[i] /= self.rows[i][i];
            let xi = x[i];
            for (v, l) in x[..i].iter_mut().zip(&self.rows[i][..i]) {
                *v -= l * xi;
            }
        }
        x
    }

    /// The factor of `m` `[n, n]` (symmetric positive definite), or `None`.
    pub fn of(m: &[f64], n: usize) -> Option<Cholesky> {
        let mut chol = Cholesky::default();
        for i in 0..n {
            chol.push(&m[i * n..i * n + i], m[i * n + i])?;
        }
        Some(chol)
    }
}

/// What the matching pursuit ends with.
pub struct Pursuit {
    /// Positions, in the order picked `[k]`.
    pub picks: Vec<usize>,
    /// The ridge system `Q = A_S A_Sᵀ + λI` `[k, k]` and its right side `A_S b` `[k]`.
    pub q: Vec<f64>,
    pub rhs: Vec<f64>,
    /// The last step's weights `x` `[k]` (`Q⁻¹ A_S b` past the first step).
    pub x: Vec<f64>,
}

/// Orthogonal matching pursuit of the mean gradient, `k` steps with ridge `lambda`.
pub fn matching_pursuit(g: &Gradients, k: usize, lambda: f64) -> Pursuit {
    let k = k.min(g.m);
    let (b_bias, b_weight) = g.mean();
    let along_b = g.projections(&b_bias, &b_weight);
    let mut residual = (b_bias.clone(), b_weight.clone());
    let mut taken = vec![false; g.m];
    let mut picks: Vec<usize> = Vec::with_capacity(k);
    let mut q = vec![0f64; k * k];
    let mut chol = Cholesky::default();
    // y = L⁻¹ A_S b, grown with the factor; the picks' h rows `[s, H]`.
    let mut y = Vec::with_capacity(k);
    let mut picked_h: Vec<f64> = Vec::with_capacity(k * g.dim);
    let mut x = Vec::new();
    while picks.len() < k {
        let proj = g.projections(&residual.0, &residual.1);
        let j = (0..g.m)
            .filter(|&i| !taken[i])
            .fold(None, |best: Option<usize>, i| match best {
                Some(b) if proj[b] >= proj[i] => Some(b),
                _ => Some(i),
            })
            .expect("k <= m");
        let s = picks.len();
        let column: Vec<f64> = picks.iter().map(|&p| g.inner(p, j)).collect();
        for (t, &v) in column.iter().enumerate() {
            q[t * k + s] = v;
            q[s * k + t] = v;
        }
        let norm = g.inner(j, j);
        q[s * k + s] = norm + lambda;
        taken[j] = true;
        picks.push(j);
        picked_h.extend(g.h(j).iter().map(|&v| v as f64));
        // λ > 0 keeps Q positive definite; a failed push means a ridge of 0 on a repeated
        // gradient, where DeepCore's solver would fail too.
        let grown = chol.push(&column, norm + lambda).is_some();
        if grown {
            chol.extend_forward(&mut y, along_b[j]);
        }
        x = if s == 0 {
            vec![if norm > 0.0 { proj[j] / norm } else { 0.0 }]
        } else if grown {
            chol.back(y.clone())
        } else {
            vec![0.0; picks.len()]
        };
        residual = residual_of(g, &b_bias, &b_weight, &picks, &picked_h, &x);
    }
    let rhs = picks.iter().map(|&p| along_b[p]).collect();
    Pursuit { picks, q, rhs, x }
}

/// `r = b − A_Sᵀ x` as `(r_b [C], R [C·H])`: `R = B − (E_S ∘ x)ᵀ·H_S` as one product.
fn residual_of(
    g: &Gradients,
    b_bias: &[f64],
    b_weight: &[f64],
    picks: &[usize],
    picked_h: &[f64],
    x: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let s = picks.len();
    let mut bias = b_bias.to_vec();
    // (E_S ∘ x)ᵀ [C, s].
    let mut scaled = vec![0f64; g.c * s];
    for (t, (&p, &xt)) in picks.iter().zip(x).enumerate() {
        for (c, &ec) in g.e(p).iter().enumerate() {
            scaled[c * s + t] = xt * ec as f64;
            bias[c] -= xt * ec as f64;
        }
    }
    let explained = product(&scaled, picked_h, g.c, s, g.dim, 1);
    let weight = b_weight
        .iter()
        .zip(&explained)
        .map(|(b, e)| b - e)
        .collect();
    (bias, weight)
}

/// The non-negative least squares solution from its normal equations `M w = d` (`M = AᵀA`
/// `[n, n]` positive definite, `d = Aᵀb` `[n]`), by block principal pivoting (Júdice and
/// Pires 1994, as Kim and Park 2011 use it), started from the passive set `start` (`[n]`,
/// true = free). The solution is unique, so it is the one `scipy.optimize.nnls`
/// (Lawson–Hanson) finds; a good start (the unconstrained solution's positive entries) makes
/// it a few factorisations instead of one step per variable. `None` if it does not settle in
/// `10·n` exchanges or `M` is not positive definite.
pub fn nnls_normal(m: &[f64], n: usize, d: &[f64], start: &[bool]) -> Option<Vec<f64>> {
    let scale = d
        .iter()
        .fold(0f64, |s, v| s.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    let tol = 1e-12 * scale;
    let mut free = start.to_vec();
    let (mut best, mut backup) = (n + 1, 3);
    for _ in 0..10 * n.max(1) {
        let set: Vec<usize> = (0..n).filter(|&i| free[i]).collect();
        let sub: Vec<f64> = set
            .iter()
            .flat_map(|&i| set.iter().map(move |&j| m[i * n + j]))
            .collect();
        let z =
            Cholesky::of(&sub, set.len())?.solve(&set.iter().map(|&i| d[i]).collect::<Vec<_>>());
        let mut w = vec![0f64; n];
        for (&i, &v) in set.iter().zip(&z) {
            w[i] = v;
        }
        // Infeasible: a free weight below 0, or a bound one whose gradient (M w − d) pulls it up.
        let wrong: Vec<usize> = (0..n)
            .into_par_iter()
            .with_min_len(64)
            .filter(|&i| {
                if free[i] {
                    w[i] < 0.0
                } else {
                    let row = &m[i * n..(i + 1) * n];
                    set.iter().map(|&j| row[j] * w[j]).sum::<f64>() - d[i] < -tol
                }
            })
            .collect();
        if wrong.is_empty() {
            return Some(w);
        }
        if wrong.len() < best {
            (best, backup) = (wrong.len(), 3);
            wrong.iter().for_each(|&i| free[i] = !free[i]);
        } else if backup > 0 {
            backup -= 1;
            wrong.iter().for_each(|&i| free[i] = !free[i]);
        } else {
            let last = *wrong.last().expect("not empty");
            free[last] = !free[last];
        }
    }
    None
}

/// `Σ a_i b_i` in 8 independent lanes, so that the compiler vectorises it (a plain `.sum()`
/// must keep its order and does not).
pub fn dot64(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0f64; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// One class's selection: the matching pursuit's picks with a positive final weight, filled
/// to `k` with other members at random (positions).
pub fn select(g: &Gradients, k: usize, lambda: f64, seed: u64) -> Result<Vec<usize>, PluginError> {
    let k = k.min(g.m);
    let Pursuit { picks, q, rhs, x } = matching_pursuit(g, k, lambda);
    let weights = match k {
        0 => Vec::new(),
        1 => vec![1.0],
        // The unconstrained solution is feasible: it is the non-negative one.
        _ if x.iter().all(|&v| v > 0.0) => x,
        _ => {
            // Q is symmetric: QᵀQ = Q·Q and Qᵀ(A_S b) = Q·(A_S b).
            let m = product(&q, &q, k, k, k, 1);
            let d = product(&q, &rhs, k, k, 1, 1);
            let start: Vec<bool> = x.iter().map(|&v| v > 0.0).collect();
            nnls_normal(&m, k, &d, &start).ok_or_else(|| {
                PluginError::new(format!(
                    "the final non-negative least squares ({k} picks) did not settle in {} exchanges",
                    10 * k
                ))
            })?
        }
    };
    let mut kept: Vec<usize> = picks
        .iter()
        .zip(&weights)
        .filter(|(_, &w)| w > 0.0)
        .map(|(&p, _)| p)
        .collect();
    let mut taken = vec![false; g.m];
    kept.iter().for_each(|&p| taken[p] = true);
    let mut rest: Vec<usize> = (0..g.m).filter(|&i| !taken[i]).collect();
    let mut rng = SplitMix64(seed);
    while kept.len() < k {
        let at = rng.below(rest.len());
        kept.push(rest.swap_remove(at));
    }
    Ok(kept)
}

pub struct GradMatch;

impl Scorer for GradMatch {
    fn info() -> PluginInfo {
        PluginInfo::pruning_method(
            "gradmatch",
            env!("CARGO_PKG_VERSION"),
            "orthogonal matching pursuit of each class's mean last-layer gradient (Killamsetty et al. 2021; DeepCore's GradMatch)",
        )
        .param(
            "lambda",
            ParamValue::Float(1.0),
            "the ridge of the pursuit's least squares (DeepCore: 1)",
        )
        .input("embeddings/grad")
        .input("embeddings/proxy")
    }

    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError> {
        let grads = records::factored_gradients(request)?;
        let lambda = request.float("lambda")?;
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(PluginError::new(format!(
                "lambda = {lambda}: use a finite ridge > 0"
            )));
        }
        let groups = records::selection_groups(request, true);
        let picked: Vec<Result<Vec<u32>, PluginError>> = groups
            .par_iter()
            .enumerate()
            .map(|(class, (members, quota))| {
                let g = Gradients {
                    m: members.len(),
                    c: grads.classes,
                    dim: grads.dim,
                    e: records::gather_rows(&grads.e, grads.classes, members),
                    h: records::gather_rows(&grads.h, grads.dim, members),
                };
                let seed = request.seed ^ (class as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                Ok(select(&g, *quota, lambda, seed)?
                    .into_iter()
                    .map(|p| members[p])
                    .collect())
            })
            .collect();
        let mut kept = Vec::with_capacity(request.budget as usize);
        for class in picked {
            kept.extend(class?);
        }
        Ok(Selection::subset(kept))
    }
}

export_plugins! {
    scorers: [GradMatch],
    teachers: [],
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Non-negative least squares `min ‖A w − b‖, w ≥ 0` for `A` `[rows, n]`, from no guess:
    /// [`nnls_normal`] on `AᵀA` and `Aᵀb`.
    fn nnls(a: &[f64], rows: usize, n: usize, b: &[f64]) -> Option<Vec<f64>> {
        let at: Vec<f64> = (0..n)
            .flat_map(|j| (0..rows).map(move |r| a[r * n + j]))
            .collect();
        let m = product(&at, a, n, rows, n, 1);
        let d = product(&at, b, n, rows, 1, 1);
        nnls_normal(&m, n, &d, &vec![false; n])
    }

    fn random_gradients(m: usize, c: usize, dim: usize, seed: u64) -> Gradients {
        let mut rng = SplitMix64(seed);
        let mut e = Vec::new();
        for _ in 0..m {
            let p: Vec<f32> = (0..c).map(|_| rng.unit() as f32 + 0.05).collect();
            let total: f32 = p.iter().sum();
            e.extend(
                p.iter()
                    .enumerate()
                    .map(|(k, v)| v / total - (k == 0) as u8 as f32),
            );
        }
        let h = (0..m * dim)
            .map(|_| rng.unit() as f32 * 2.0 - 1.0)
            .collect();
        Gradients { m, c, dim, e, h }
    }

    /// The full gradient `[e, e_1·h, …, e_C·h]` of member `i`.
    fn full(g: &Gradients, i: usize) -> Vec<f64> {
        let mut a: Vec<f64> = g.e(i).iter().map(|&v| v as f64).collect();
        for &ec in g.e(i) {
            a.extend(g.h(i).iter().map(|&hd| ec as f64 * hd as f64));
        }
        a
    }

    /// Solves `a x = b` `[n, n]` by Gaussian elimination with partial pivoting.
    fn gauss(mut a: Vec<f64>, mut b: Vec<f64>) -> Vec<f64> {
        let n = b.len();
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&x, &y| a[x * n + col].abs().total_cmp(&a[y * n + col].abs()))
                .unwrap();
            for k in 0..n {
                a.swap(col * n + k, pivot * n + k);
            }
            b.swap(col, pivot);
            for row in col + 1..n {
                let f = a[row * n + col] / a[col * n + col];
                for k in col..n {
                    a[row * n + k] -= f * a[col * n + k];
                }
                b[row] -= f * b[col];
            }
        }
        let mut x = vec![0f64; n];
        for row in (0..n).rev() {
            let s: f64 = (row + 1..n).map(|k| a[row * n + k] * x[k]).sum();
            x[row] = (b[row] - s) / a[row * n + row];
        }
        x
    }

    #[test]
    fn factored_products_are_the_full_gradients() {
        let g = random_gradients(7, 3, 4, 1);
        let a: Vec<Vec<f64>> = (0..7).map(|i| full(&g, i)).collect();
        for i in 0..7 {
            for j in 0..7 {
                assert!((g.inner(i, j) - dot64(&a[i], &a[j])).abs() < 1e-5);
            }
        }
        let (bias, weight) = g.mean();
        let b: Vec<f64> = bias.iter().chain(&weight).copied().collect();
        for d in 0..b.len() {
            let mean = a.iter().map(|r| r[d]).sum::<f64>() / 7.0;
            assert!((b[d] - mean).abs() < 1e-6);
        }
        let proj = g.projections(&bias, &weight);
        for (i, row) in a.iter().enumerate() {
            assert!((proj[i] - dot64(row, &b)).abs() < 1e-5);
        }
    }

    #[test]
    fn the_pursuit_is_deepcores_on_the_full_gradients() {
        // DeepCore's loop on explicit vectors: signed argmax of Aᵀr, x = proj/‖a‖² at the first
        // step, else the ridge solve, r = b − A_Sᵀ x.
        let g = random_gradients(12, 3, 2, 2);
        let (k, lambda) = (5, 1.0);
        let a: Vec<Vec<f64>> = (0..12).map(|i| full(&g, i)).collect();
        let d = a[0].len();
        let b: Vec<f64> = (0..d)
            .map(|t| a.iter().map(|r| r[t]).sum::<f64>() / 12.0)
            .collect();
        let mut resid = b.clone();
        let mut picks: Vec<usize> = Vec::new();
        for _ in 0..k {
            let proj: Vec<f64> = a.iter().map(|r| dot64(r, &resid)).collect();
            let j = (0..12)
                .filter(|i| !picks.contains(i))
                .fold(None, |best: Option<usize>, i| match best {
                    Some(p) if proj[p] >= proj[i] => Some(p),
                    _ => Some(i),
                })
                .unwrap();
            picks.push(j);
            let x = if picks.len() == 1 {
                vec![proj[j] / dot64(&a[j], &a[j])]
            } else {
                let s = picks.len();
                let q: Vec<f64> = (0..s * s)
                    .map(|t| {
                        dot64(&a[picks[t / s]], &a[picks[t % s]])
                            + if t / s == t % s { lambda } else { 0.0 }
                    })
                    .collect();
                gauss(q, picks.iter().map(|&p| dot64(&a[p], &b)).collect())
            };
            resid = b.clone();
            for (&p, &xp) in picks.iter().zip(&x) {
                for t in 0..d {
                    resid[t] -= xp * a[p][t];
                }
            }
        }
        let Pursuit {
            picks: got, q, rhs, ..
        } = matching_pursuit(&g, k, lambda);
        assert_eq!(got, picks);
        assert!((q[k + 1] - dot64(&a[picks[1]], &a[picks[1]]) - lambda).abs() < 1e-5);
        assert!((rhs[2] - dot64(&a[picks[2]], &b)).abs() < 1e-6);
    }

    #[test]
    fn nnls_by_hand_and_by_its_conditions() {
        // A = I, b = (1, −1): w = (1, 0).
        let w = nnls(&[1.0, 0.0, 0.0, 1.0], 2, 2, &[1.0, -1.0]).unwrap();
        assert_eq!(w, vec![1.0, 0.0]);
        // A = [[1, 0], [1, 1]], b = (2, 1): unconstrained (2, −1); with w₂ = 0, w₁ minimises
        // (w₁ − 2)² + (w₁ − 1)²: 1.5.
        let w = nnls(&[1.0, 0.0, 1.0, 1.0], 2, 2, &[2.0, 1.0]).unwrap();
        assert!((w[0] - 1.5).abs() < 1e-12 && w[1] == 0.0, "{w:?}");
        // A random 30 × 20 problem: w ≥ 0, the gradient Aᵀ(b − Aw) ≤ 0 where w = 0 and ≈ 0
        // where w > 0 (the Karush–Kuhn–Tucker conditions).
        let mut rng = SplitMix64(5);
        let (rows, n) = (30, 20);
        let a: Vec<f64> = (0..rows * n).map(|_| rng.unit() * 2.0 - 1.0).collect();
        let b: Vec<f64> = (0..rows).map(|_| rng.unit() * 2.0 - 1.0).collect();
        let w = nnls(&a, rows, n, &b).unwrap();
        let resid: Vec<f64> = (0..rows)
            .map(|r| b[r] - dot64(&a[r * n..(r + 1) * n], &w))
            .collect();
        let mut zeros = 0;
        for j in 0..n {
            let grad: f64 = (0..rows).map(|r| a[r * n + j] * resid[r]).sum();
            assert!(w[j] >= 0.0);
            if w[j] == 0.0 {
                zeros += 1;
                assert!(grad <= 1e-9, "{j}: {grad}");
            } else {
                assert!(grad.abs() < 1e-9, "{j}: {grad}");
            }
        }
        assert!(zeros > 0 && zeros < n, "{zeros} of {n} at the bound");
        // Any start gives the same solution.
        let a_ref = &a;
        let at: Vec<f64> = (0..n)
            .flat_map(|j| (0..rows).map(move |r| a_ref[r * n + j]))
            .collect();
        let m = product(&at, &a, n, rows, n, 1);
        let d = product(&at, &b, n, rows, 1, 1);
        for start in [vec![true; n], (0..n).map(|i| i % 3 == 0).collect()] {
            let warm = nnls_normal(&m, n, &d, &start).unwrap();
            for (u, v) in warm.iter().zip(&w) {
                assert!((u - v).abs() < 1e-9, "{warm:?} vs {w:?}");
            }
        }
    }

    #[test]
    fn a_selection_is_filled_to_its_quota() {
        let g = random_gradients(40, 4, 3, 3);
        let kept = select(&g, 15, 1.0, 9).unwrap();
        assert_eq!(kept.len(), 15);
        let mut sorted = kept.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 15);
        assert_eq!(select(&g, 15, 1.0, 9).unwrap(), kept, "seeded");
    }
}
