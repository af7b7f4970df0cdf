//! The student trainer: an MLP on ndarray, trained on the kept subset with the distillation
//! loss.
//!
//! Owns the model ([`mlp`]), the loss ([`loss`]), the optimiser and schedule ([`optim`]) and
//! the loop ([`train`]); does not own which examples are kept or where soft labels come from.

pub mod loss;
pub mod mlp;
pub mod optim;

use ndarray::{s, Array2, ArrayView2};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::manifest::{Alpha, StudentSpec, Temperature};
use crate::progress;
pub use mlp::Mlp;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training data: {0}")]
    Shape(String),
    #[error("training diverged at epoch {epoch} (loss {loss}); lower [student] lr")]
    Diverged { epoch: usize, loss: f32 },
}

/// What the student learns from.
pub struct TrainSet<'a> {
    /// `[K, D]` normalised features of the kept examples.
    pub x: ArrayView2<'a, f32>,
    /// `[K]` labels.
    pub y: &'a [u32],
    /// `[K, C]` teacher log-space scores; required when `alpha > 0`.
    pub teacher: Option<ArrayView2<'a, f32>>,
    pub num_classes: usize,
}

/// Distillation settings of one run.
#[derive(Debug, Clone, Copy)]
pub struct Kd {
    pub alpha: Alpha,
    pub temperature: Temperature,
}

/// Per-epoch record of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f32,
    pub lr: f32,
}

/// Trains a fresh student. Same inputs and seed give the same model.
pub fn train(
    spec: &StudentSpec,
    data: &TrainSet<'_>,
    kd: Kd,
    seed: u64,
) -> Result<(Mlp, Vec<EpochLog>), TrainError> {
    let (k, d) = data.x.dim();
    if data.y.len() != k {
        return Err(TrainError::Shape(format!(
            "{k} rows but {} labels",
            data.y.len()
        )));
    }
    if k == 0 {
        return Err(TrainError::Shape("no examples to train on".into()));
    }
    let c = data.num_classes;
    let teacher_probs = match (kd.alpha.needs_teacher(), data.teacher) {
        (false, _) => None,
        (true, None) => return Err(TrainError::Shape("alpha > 0 needs teacher scores".into())),
        (true, Some(t)) => {
            if t.dim() != (k, c) {
                return Err(TrainError::Shape(format!(
                    "teacher scores have shape {:?}, expected [{k}, {c}]",
                    t.dim()
                )));
            }
            Some(crate::teacher::softmax_rows(t, kd.temperature.get()))
        }
    };

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut layers = vec![d];
    layers.extend(&spec.hidden);
    layers.push(c);
    let mut model = Mlp::new(&layers, &mut rng);
    let mut opt = optim::Sgd::new(&model, spec.momentum, spec.weight_decay);
    let batch = spec.batch_size.min(k);
    let steps_per_epoch = k.div_ceil(batch);
    let schedule = optim::LrSchedule::new(spec.schedule, spec.lr, spec.epochs * steps_per_epoch);
    let mut order: Vec<usize> = (0..k).collect();
    let mut xb = Array2::<f32>::zeros((batch, d));
    let mut tb = Array2::<f32>::zeros((batch, c));
    let mut yb = vec![0u32; batch];
    let mut workspace = mlp::Workspace::new(&model, batch);
    let mut grads = model.zeros_like();
    let mut logs = Vec::with_capacity(spec.epochs);
    let bar = progress::bar((spec.epochs * steps_per_epoch) as u64, "student");
    let mut step = 0;
    for epoch in 0..spec.epochs {
        order.shuffle(&mut rng);
        let mut epoch_loss = 0.0f64;
        for chunk in order.chunks(batch) {
            let b = chunk.len();
            for (r, &i) in chunk.iter().enumerate() {
                xb.row_mut(r).assign(&data.x.row(i));
                yb[r] = data.y[i];
                if let Some(t) = &teacher_probs {
                    tb.row_mut(r).assign(&t.row(i));
                }
            }
            let x = xb.slice(s![..b, ..]);
            let t = teacher_probs.as_ref().map(|_| tb.slice(s![..b, ..]));
            let loss = model.loss_and_grad(x, &yb[..b], t, kd, &mut workspace, &mut grads);
            let lr = schedule.at(step);
            opt.step(&mut model, &grads, lr);
            epoch_loss += loss as f64 * b as f64;
            step += 1;
            bar.inc(1);
        }
        let loss = (epoch_loss / k as f64) as f32;
        if !loss.is_finite() {
            return Err(TrainError::Diverged { epoch, loss });
        }
        logs.push(EpochLog {
            epoch,
            loss,
            lr: schedule.at(step.saturating_sub(1)),
        });
        tracing::debug!(epoch, loss, "epoch done");
    }
    bar.finish_and_clear();
    Ok((model, logs))
}

/// Accuracy of `model` on `x` `[N, D]` against `y` `[N]`.
pub fn evaluate(model: &Mlp, x: ArrayView2<'_, f32>, y: &[u32]) -> f64 {
    let mut correct = 0usize;
    for start in (0..x.nrows()).step_by(1024) {
        let end = (start + 1024).min(x.nrows());
        let logits = model.forward(x.slice(s![start..end, ..]));
        for (row, &label) in logits.rows().into_iter().zip(&y[start..end]) {
            if crate::teacher::argmax(row.as_slice().unwrap_or(&[])) == label as usize {
                correct += 1;
            }
        }
    }
    correct as f64 / y.len().max(1) as f64
}
