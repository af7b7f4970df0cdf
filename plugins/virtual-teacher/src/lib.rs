//! kdprune teacher `virtual-teacher`: the teacher-free baseline of Yuan et al., "Revisiting
//! Knowledge Distillation via Label Smoothing Regularization" (CVPR 2020), Tf-KD_reg. The
//! "virtual teacher" of an example with label `y` gives probability `a` (`correct_prob`,
//! 0.99 as in the authors' code) to `y` and `(1 − a)/(K − 1)` to every other class; like the
//! authors' `loss_kd_regularization`, these values are served as the teacher's *logits*, so
//! the host's `softmax(logits / τ)` is their `softmax(teacher_soft / T)`. Each is served plus
//! 1 (a softmax does not see a constant added to a row), so that the host's output-kind
//! detection, which takes rows summing to 1 for probabilities, sees logits. A run with it
//! shows what a real teacher adds beyond a label-derived soft target.
//!
//! A teacher plugin sees only features, so the virtual teacher finds an example's label by
//! its exact feature values, remembered from the training set it is given at start. Rows it
//! has not seen (the test set, augmented images) get equal logits, a uniform soft label:
//! its test accuracy is chance by construction. Use it without `[teacher.preprocess]` (the
//! identity), so the rows it is asked about are bit for bit the training rows.

use std::collections::HashMap;

use kdprune_plugin_api::{
    export_plugins, BatchView, ParamValue, PluginError, PluginInfo, Teacher, TeacherInit,
};

pub struct VirtualTeacher {
    /// Hash of a row's f32 bits → its label (the first one's, for duplicate rows).
    labels: HashMap<u64, u32>,
    dim: usize,
    classes: usize,
    correct: f32,
}

/// FNV-1a over the rows' bit patterns: exact equality of values, not of rounding.
fn row_hash(row: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in row {
        for b in v.to_bits().to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Teacher for VirtualTeacher {
    fn info() -> PluginInfo {
        PluginInfo::teacher(
            "virtual-teacher",
            env!("CARGO_PKG_VERSION"),
            "teacher-free baseline (Yuan et al. 2020, Tf-KD_reg): probability correct_prob on the example's own label, the rest spread evenly, served as logits",
        )
        .param(
            "correct_prob",
            ParamValue::Float(0.99),
            "the value on the true class, in (1/K, 1); the others get (1 - correct_prob)/(K - 1)",
        )
    }

    fn new(init: &TeacherInit<'_>) -> Result<Self, PluginError> {
        let train = init.train;
        let (n, d, c) = (train.len(), train.row_len(), train.num_classes as usize);
        if c < 2 {
            return Err(PluginError::new(
                "a virtual teacher needs at least 2 classes",
            ));
        }
        let correct = match init.param("correct_prob") {
            Some(ParamValue::Float(p)) if *p > 1.0 / c as f64 && *p < 1.0 => *p as f32,
            Some(ParamValue::Float(p)) => {
                return Err(PluginError::new(format!(
                    "correct_prob = {p} must be in (1/{c}, 1): above every other class's share, below 1"
                )))
            }
            _ => return Err(PluginError::new("correct_prob must be a float")),
        };
        let mut labels = HashMap::with_capacity(n);
        for i in 0..n {
            labels
                .entry(row_hash(train.row(i)))
                .or_insert(train.labels[i]);
        }
        Ok(Self {
            labels,
            dim: d,
            classes: c,
            correct,
        })
    }

    fn logits(&mut self, batch: BatchView<'_>) -> Result<Vec<f32>, PluginError> {
        let b = batch.rows(self.dim)?;
        // + 1: see the module doc.
        let other = 1.0 + (1.0 - self.correct) / (self.classes - 1) as f32;
        let correct = 1.0 + self.correct;
        let unseen = 1.0 + 1.0 / self.classes as f32;
        let mut out = Vec::with_capacity(b * self.classes);
        for x in batch.features.chunks_exact(self.dim) {
            match self.labels.get(&row_hash(x)) {
                Some(&y) => {
                    out.extend((0..self.classes).map(
                        |k| {
                            if k == y as usize {
                                correct
                            } else {
                                other
                            }
                        },
                    ))
                }
                None => out.extend(std::iter::repeat_n(unseen, self.classes)),
            }
        }
        Ok(out)
    }
}

export_plugins! {
    scorers: [],
    teachers: [VirtualTeacher],
}
