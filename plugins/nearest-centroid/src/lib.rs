//! kdprune teacher `nearest-centroid`: fits one centroid per class on the training set and
//! gives the logits `−‖x − μ_c‖² / (2 σ²)` (σ² the mean within-class variance per feature),
//! i.e. a Gaussian classifier with a shared isotropic covariance. A weak but real teacher,
//! and the reference for writing teacher plugins.

use kdprune_plugin_api::{
    export_plugins, BatchView, ParamValue, PluginError, PluginInfo, Teacher, TeacherInit,
};

pub struct NearestCentroid {
    /// `[C, D]`.
    centroids: Vec<f32>,
    dim: usize,
    classes: usize,
    inv_two_var: f32,
    /// Applied to batches as to the training set.
    scale: f32,
}

impl Teacher for NearestCentroid {
    fn info() -> PluginInfo {
        PluginInfo::teacher(
            "nearest-centroid",
            env!("CARGO_PKG_VERSION"),
            "Gaussian nearest-class-centroid classifier fitted on the training set",
        )
        .param(
            "scale",
            ParamValue::Float(1.0),
            "divides the features the teacher sees, at fit and at inference (e.g. 255 for pixels)",
        )
    }

    fn new(init: &TeacherInit<'_>) -> Result<Self, PluginError> {
        let scale = match init.param("scale") {
            Some(ParamValue::Float(s)) if *s > 0.0 => *s as f32,
            _ => return Err(PluginError::new("scale must be a positive float")),
        };
        let train = init.train;
        let (n, d, c) = (train.len(), train.row_len(), train.num_classes as usize);
        if n == 0 {
            return Err(PluginError::new("empty training set"));
        }
        let mut centroids = vec![0f32; c * d];
        let mut counts = vec![0usize; c];
        for i in 0..n {
            let y = train.labels[i] as usize;
            counts[y] += 1;
            for (m, &x) in centroids[y * d..(y + 1) * d].iter_mut().zip(train.row(i)) {
                *m += x / scale;
            }
        }
        for (k, &count) in counts.iter().enumerate() {
            for m in &mut centroids[k * d..(k + 1) * d] {
                *m /= count.max(1) as f32;
            }
        }
        let mut var = 0f64;
        for i in 0..n {
            let y = train.labels[i] as usize;
            for (m, &x) in centroids[y * d..(y + 1) * d].iter().zip(train.row(i)) {
                var += ((x / scale - m) as f64).powi(2);
            }
        }
        let var = (var / (n * d) as f64).max(1e-12) as f32;
        Ok(Self {
            centroids,
            dim: d,
            classes: c,
            inv_two_var: 1.0 / (2.0 * var),
            scale,
        })
    }

    fn logits(&mut self, batch: BatchView<'_>) -> Result<Vec<f32>, PluginError> {
        let b = batch.rows(self.dim)?;
        let mut out = Vec::with_capacity(b * self.classes);
        for x in batch.features.chunks_exact(self.dim) {
            for k in 0..self.classes {
                let m = &self.centroids[k * self.dim..(k + 1) * self.dim];
                let dist: f32 = x
                    .iter()
                    .zip(m)
                    .map(|(a, b)| (a / self.scale - b) * (a / self.scale - b))
                    .sum();
                out.push(-dist * self.inv_two_var);
            }
        }
        Ok(out)
    }
}

export_plugins! {
    scorers: [],
    teachers: [NearestCentroid],
}
