//! Helpers for methods that read training dynamics and embeddings (see the input table in
//! `docs/writing-a-plugin.md`): the records of one quantity as f32 with their shape, the pass
//! record nearest an epoch, means over runs. Plain functions over slices, so a method's own
//! arithmetic stays testable without a host.

use crate::types::{PluginError, ScoreRequest};

/// One recorded quantity, widened to f32: `values` `[runs, records, n]` (`[.., n, c]` for
/// logits, `c = 1` otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct Records {
    pub values: Vec<f32>,
    pub runs: usize,
    pub records: usize,
    pub n: usize,
    /// Values per example per record (classes for logits, else 1).
    pub width: usize,
}

impl Records {
    /// The values of `(run, record)`, `[n · width]`.
    pub fn at(&self, run: usize, record: usize) -> &[f32] {
        let len = self.n * self.width;
        let start = (run * self.records + record) * len;
        &self.values[start..start + len]
    }
}

/// Reads input `name` (declared by the plugin) as [`Records`], checking that it covers the
/// `n` training examples.
pub fn records(request: &ScoreRequest<'_>, name: &str) -> Result<Records, PluginError> {
    let tensor = request.require(name)?;
    let shape: Vec<usize> = tensor.shape().iter().map(|&d| d as usize).collect();
    let n = request.train.len();
    let (runs, records, width) = match shape.as_slice() {
        [r, t, m] if *m == n => (*r, *t, 1),
        [r, t, m, c] if *m == n => (*r, *t, *c),
        other => {
            return Err(PluginError::new(format!(
                "input {name} has shape {other:?}; expected [R, T, {n}] or [R, T, {n}, C]"
            )))
        }
    };
    if runs == 0 || records == 0 {
        return Err(PluginError::new(format!("input {name} holds no records")));
    }
    Ok(Records {
        values: tensor.to_f32()?,
        runs,
        records,
        n,
        width,
    })
}

/// The pass record to use for a requested `epoch` (`epochs` from `dynamics/pass/epochs`):
/// the one nearest to it (the earlier on a tie). A negative `epoch = −(e + 1)` picks the first
/// record taken at or after epoch `e`: `−1` the first record of all, `−2` the first at or
/// after epoch 1 (the earliest checkpoint past the early steps).
pub fn record_for_epoch(epochs: &[f32], epoch: f64) -> Result<usize, PluginError> {
    if epochs.is_empty() {
        return Err(PluginError::new(
            "no pass records (dynamics/pass/epochs is empty)",
        ));
    }
    if epoch < 0.0 {
        let from = -epoch - 1.0;
        return epochs
            .iter()
            .position(|&e| e as f64 >= from)
            .ok_or_else(|| {
                PluginError::new(format!(
                    "no pass record at or after epoch {from}; add one to [dynamics] checkpoints"
                ))
            });
    }
    let mut best = 0;
    for (t, &e) in epochs.iter().enumerate() {
        if (e as f64 - epoch).abs() < (epochs[best] as f64 - epoch).abs() {
            best = t;
        }
    }
    Ok(best)
}

/// Per run `[R][N]`: the mean over the sliding windows of `window` consecutive records among
/// the first `epochs` of `f(mean, sample std)` of each example's value (Dynamic Uncertainty,
/// DUAL). The standard deviation divides by `window − 1`, as `torch.std`.
pub fn sliding_windows(
    values: &Records,
    epochs: usize,
    window: usize,
    f: impl Fn(f64, f64) -> f64,
) -> Vec<Vec<f32>> {
    let windows = epochs + 1 - window;
    (0..values.runs)
        .map(|r| {
            (0..values.n)
                .map(|i| {
                    let p: Vec<f64> = (0..epochs).map(|e| values.at(r, e)[i] as f64).collect();
                    let total: f64 = p
                        .windows(window)
                        .map(|w| {
                            let mean = w.iter().sum::<f64>() / window as f64;
                            let var = w.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>()
                                / (window as f64 - 1.0).max(1.0);
                            f(mean, var.sqrt())
                        })
                        .sum();
                    (total / windows as f64) as f32
                })
                .collect()
        })
        .collect()
}

/// The mean over runs of per-run scores `[runs][n]`.
pub fn mean_over_runs(per_run: &[Vec<f32>]) -> Vec<f32> {
    let n = per_run.first().map_or(0, Vec::len);
    let mut mean = vec![0f32; n];
    for run in per_run {
        for (m, &v) in mean.iter_mut().zip(run) {
            *m += v;
        }
    }
    let r = per_run.len().max(1) as f32;
    mean.iter_mut().for_each(|m| *m /= r);
    mean
}

/// Softmax of one row of logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// The embedding input `name` as `([n · h], h)`.
pub fn embedding(request: &ScoreRequest<'_>, name: &str) -> Result<(Vec<f32>, usize), PluginError> {
    let tensor = request.require(name)?;
    let n = request.train.len();
    match tensor.shape() {
        [m, h] if *m as usize == n && *h > 0 => Ok((tensor.to_f32()?, *h as usize)),
        other => Err(PluginError::new(format!(
            "input {name} has shape {other:?}; expected [{n}, H]"
        ))),
    }
}

/// The embedding named by the method's `embedding` text parameter: `"proxy"`
/// (`embeddings/proxy`) or `"teacher"` (`embeddings/teacher`), as `([n · h], h)`.
pub fn chosen_embedding(request: &ScoreRequest<'_>) -> Result<(Vec<f32>, usize), PluginError> {
    match request.text("embedding")? {
        "proxy" => embedding(request, "embeddings/proxy"),
        "teacher" => embedding(request, "embeddings/teacher").map_err(|_| {
            PluginError::new("embedding = \"teacher\" needs [teacher] embedding = \"<tensor name>\" in the manifest")
        }),
        other => Err(PluginError::new(format!(
            "embedding = {other:?}: use \"proxy\" or \"teacher\""
        ))),
    }
}

/// The input the `embedding` parameter names, for [`crate::Scorer::inputs_for`]: only it is
/// computed (no proxy training when the teacher's embedding is used).
pub fn embedding_inputs(
    params: &crate::Params<'_>,
) -> Option<Result<Vec<crate::InputSpec>, PluginError>> {
    Some(match params.text("embedding") {
        Some("teacher") => Ok(vec![crate::required("embeddings/teacher")]),
        Some("proxy") | None => Ok(vec![crate::required("embeddings/proxy")]),
        Some(other) => Err(PluginError::new(format!(
            "embedding = {other:?}: use \"proxy\" or \"teacher\""
        ))),
    })
}

/// The proxy's last-layer gradients in factored form: `e = p − onehot(y)` `[N, C]` (the
/// bias part of `embeddings/grad` `[N, C·(H+1)]`) and `h` `[N, H]` (`embeddings/proxy`, the
/// same network's penultimate layer), so that the gradient of example `i` is
/// `[e_i, e_i1·h_i, …, e_iC·h_i]`. Methods that declare both inputs read them here.
#[derive(Debug, Clone, PartialEq)]
pub struct FactoredGradients {
    pub e: Vec<f32>,
    pub classes: usize,
    pub h: Vec<f32>,
    pub dim: usize,
}

/// Reads `embeddings/grad` and `embeddings/proxy` as [`FactoredGradients`], checking that
/// the gradients are `C·(H+1)` wide.
pub fn factored_gradients(request: &ScoreRequest<'_>) -> Result<FactoredGradients, PluginError> {
    let (grad, width) = embedding(request, "embeddings/grad")?;
    let (h, dim) = embedding(request, "embeddings/proxy")?;
    let classes = request.train.num_classes as usize;
    if width != classes * (dim + 1) {
        return Err(PluginError::new(format!(
            "embeddings/grad has {width} columns; expected C·(H+1) = {classes}·({dim}+1) from embeddings/proxy"
        )));
    }
    let e = grad
        .chunks_exact(width)
        .flat_map(|row| row[..classes].iter().copied())
        .collect();
    Ok(FactoredGradients { e, classes, h, dim })
}

/// The rows `members` of `x` `[N, d]`, side by side `[m, d]`.
pub fn gather_rows(x: &[f32], d: usize, members: &[u32]) -> Vec<f32> {
    members
        .iter()
        .flat_map(|&i| x[i as usize * d..(i as usize + 1) * d].iter().copied())
        .collect()
}

/// The members of each class, `[classes][..]`, in index order.
pub fn by_class(labels: &[u32], classes: usize) -> Vec<Vec<u32>> {
    let mut members = vec![Vec::new(); classes];
    for (i, &y) in labels.iter().enumerate() {
        members[y as usize].push(i as u32);
    }
    members
}

/// The groups a per-class selection works in — each class (`per_class`) or the whole set —
/// with each group's share of `budget` (proportional to its size).
pub fn selection_groups(request: &ScoreRequest<'_>, per_class: bool) -> Vec<(Vec<u32>, usize)> {
    let train = request.train;
    let groups = if per_class {
        by_class(train.labels.as_slice(), train.num_classes as usize)
    } else {
        vec![(0..train.len() as u32).collect()]
    };
    let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
    let quotas = proportional_quotas(&sizes, request.budget as usize);
    groups.into_iter().zip(quotas).collect()
}

/// Quotas proportional to `sizes` summing to `budget` (largest remainder, ties by class): how
/// a per-class selection splits its budget.
pub fn proportional_quotas(sizes: &[usize], budget: usize) -> Vec<usize> {
    let n: usize = sizes.iter().sum();
    let exact: Vec<f64> = sizes
        .iter()
        .map(|&s| s as f64 * budget as f64 / n.max(1) as f64)
        .collect();
    let mut quota: Vec<usize> = exact
        .iter()
        .zip(sizes)
        .map(|(e, &s)| (e.floor() as usize).min(s))
        .collect();
    let mut remaining = budget.min(n) - quota.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    while remaining > 0 {
        let before = remaining;
        for &c in &order {
            if remaining > 0 && quota[c] < sizes[c] {
                quota[c] += 1;
                remaining -= 1;
            }
        }
        if remaining == before {
            break;
        }
    }
    quota
}

/// `Σ a_i b_i` in 16 independent lanes, so that the compiler vectorises it (a plain `.sum()`
/// over floats must keep its order and does not).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        let (x, y): (&[f32; 16], &[f32; 16]) =
            (x.try_into().expect("16"), y.try_into().expect("16"));
        for l in 0..16 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `‖a − b‖²`, vectorised like [`dot`].
pub fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in ca.zip(cb) {
        let (x, y): (&[f32; 16], &[f32; 16]) =
            (x.try_into().expect("16"), y.try_into().expect("16"));
        for l in 0..16 {
            let d = x[l] - y[l];
            lanes[l] += d * d;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// A small seeded generator (SplitMix64) for methods that draw: stable across versions.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: usize) -> usize {
        ((self.unit() * bound as f64) as usize).min(bound - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_records_by_epoch() {
        let epochs = [0.0, 2.0, 20.0];
        assert_eq!(record_for_epoch(&epochs, 2.0).unwrap(), 1);
        assert_eq!(record_for_epoch(&epochs, 15.0).unwrap(), 2);
        assert_eq!(record_for_epoch(&epochs, -1.0).unwrap(), 0);
        assert_eq!(record_for_epoch(&epochs, -2.0).unwrap(), 1);
        assert!(record_for_epoch(&epochs, -22.0).is_err());
        assert_eq!(
            mean_over_runs(&[vec![1.0, 2.0], vec![3.0, 6.0]]),
            vec![2.0, 4.0]
        );
        let p = softmax(&[0.0, 0.0]);
        assert_eq!(p, vec![0.5, 0.5]);
        assert_eq!(proportional_quotas(&[5, 3, 2], 5), vec![3, 1, 1]);
        assert_eq!(by_class(&[1, 0, 1], 2), vec![vec![1], vec![0, 2]]);
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..37).map(|i| (i % 5) as f32).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(dot(&a, &b), naive);
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert_eq!(squared_distance(&a, &b), naive);
    }
}
