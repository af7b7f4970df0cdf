//! The student's preprocessing: `Normalisation`, per-channel `(x / scale - mean) / std`.

use ndarray::{Array2, ArrayView2};

use super::dataset::channels_of;

/// Affine preprocessing `((x / scale) - mean[c]) / std[c]`, with `c` the channel of a value.
///
/// Channels are the first axis of the sample shape for images (`[C, H, W]`); for flat data
/// (`[D]`) a single mean/std applies to all values, or one per feature when `D` are given.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Normalisation {
    pub scale: f32,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Default for Normalisation {
    fn default() -> Self {
        Self {
            scale: 1.0,
            mean: vec![0.0],
            std: vec![1.0],
        }
    }
}

impl Normalisation {
    /// Per-feature mean and standard deviation of `features` `[N, D]` after `scale`
    /// (standardisation fitted on the training set).
    pub fn fit(features: ArrayView2<'_, f32>, scale: f32) -> Self {
        let n = features.nrows().max(1) as f32;
        let mut mean = vec![0f32; features.ncols()];
        let mut sq = vec![0f32; features.ncols()];
        for row in features.rows() {
            for (j, &v) in row.iter().enumerate() {
                let v = v / scale;
                mean[j] += v;
                sq[j] += v * v;
            }
        }
        let std = mean
            .iter_mut()
            .zip(&sq)
            .map(|(m, &s)| {
                *m /= n;
                let var = (s / n - *m * *m).max(0.0);
                // A constant feature keeps std 1 so it maps to 0, not to NaN.
                if var > 1e-12 {
                    var.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        Self { scale, mean, std }
    }

    /// Checks that the number of means and stds fits `sample_shape`.
    pub fn check(&self, sample_shape: &[usize]) -> Result<(), String> {
        if self.mean.len() != self.std.len() {
            return Err(format!(
                "mean has {} values but std has {}",
                self.mean.len(),
                self.std.len()
            ));
        }
        if self.scale == 0.0 || !self.scale.is_finite() {
            return Err("scale must be a finite non-zero number".into());
        }
        if self.std.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
            return Err("every std must be positive".into());
        }
        let channels = channels_of(sample_shape);
        let d: usize = sample_shape.iter().product();
        let k = self.mean.len();
        if k != 1 && k != channels && k != d {
            return Err(format!(
                "{k} means/stds for examples of shape {sample_shape:?}: give 1, one per channel ({channels}) or one per value ({d})"
            ));
        }
        Ok(())
    }

    /// Applies the preprocessing to `features` `[N, D]`, returning a new `[N, D]` array.
    /// Call [`Normalisation::check`] first: it guarantees the means fit the sample shape.
    pub fn apply(&self, features: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut out = Array2::zeros((0, 0));
        self.apply_into(features, &mut out);
        out
    }

    /// [`Normalisation::apply`] into `out` (reshaped to `[N, D]` when its shape differs, else
    /// reused: a teacher's batches neither allocate nor copy), the same values.
    pub fn apply_into(&self, features: ArrayView2<'_, f32>, out: &mut Array2<f32>) {
        let d = features.ncols();
        let k = self.mean.len();
        let per_value: Vec<(f32, f32)> = if k == d {
            (0..d).map(|j| (self.mean[j], self.std[j])).collect()
        } else {
            let channel_len = d / k.max(1);
            (0..d)
                .map(|j| {
                    let c = if k == 1 { 0 } else { j / channel_len };
                    (self.mean[c], self.std[c])
                })
                .collect()
        };
        let inv_scale = 1.0 / self.scale;
        if out.dim() != features.dim() {
            *out = Array2::zeros(features.dim());
        }
        for (mut row, src) in out.rows_mut().into_iter().zip(features.rows()) {
            for ((v, &x), &(m, s)) in row.iter_mut().zip(src.iter()).zip(&per_value) {
                *v = (x * inv_scale - m) / s;
            }
        }
    }
}

impl Normalisation {
    /// Undoes [`Normalisation::apply`]: `x · std[c] + mean[c]`, times `scale`, `[N, D]`.
    pub fn invert(&self, features: ArrayView2<'_, f32>) -> Array2<f32> {
        let d = features.ncols();
        let k = self.mean.len();
        let channel_len = d / k.max(1);
        let mut out = features.to_owned();
        for mut row in out.rows_mut() {
            for (j, v) in row.iter_mut().enumerate() {
                let c = if k == d {
                    j
                } else if k == 1 {
                    0
                } else {
                    j / channel_len
                };
                *v = (*v * self.std[c] + self.mean[c]) * self.scale;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn normalisation_per_channel() {
        // Two channels of two values each.
        let x = array![[255.0f32, 0.0, 127.5, 255.0]];
        let norm = Normalisation {
            scale: 255.0,
            mean: vec![0.5, 0.0],
            std: vec![0.5, 2.0],
        };
        norm.check(&[2, 1, 2]).unwrap();
        let y = norm.apply(x.view());
        assert_eq!(y, array![[1.0f32, -1.0, 0.25, 0.5]]);
        assert_eq!(norm.invert(y.view()), x);
    }

    #[test]
    fn fitted_standardisation_has_zero_mean_unit_std() {
        let x = array![[1.0f32, 5.0], [3.0, 5.0], [5.0, 5.0]];
        let norm = Normalisation::fit(x.view(), 1.0);
        let y = norm.apply(x.view());
        let col0: Vec<f32> = y.column(0).to_vec();
        assert!((col0.iter().sum::<f32>()).abs() < 1e-6);
        assert!((col0.iter().map(|v| v * v).sum::<f32>() / 3.0 - 1.0).abs() < 1e-5);
        assert!(y.column(1).iter().all(|&v| v == 0.0));
    }
}
