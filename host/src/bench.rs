//! Throughput measurements on a manifest's data: teacher images per second (ONNX Runtime,
//! cache bypassed), student training samples per second (the trainer of [`crate::train`] on
//! the whole training set, with and without the distillation term), the achieved GFLOP/s,
//! this machine's f32 GEMM rate measured in the same process, and peak memory.

use std::time::Instant;

use ndarray::Array2;
use serde::Serialize;

use crate::data;
use crate::manifest::{Alpha, Manifest};
use crate::plugins::{self, Registry};
use crate::teacher::Teacher;
use crate::train::{self, Kd, TrainSet};
use crate::Error;

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub train_examples: usize,
    pub teacher: Option<String>,
    pub teacher_images_per_s: Option<f64>,
    pub student_layers: Vec<String>,
    pub student_parameters: usize,
    pub batch_size: usize,
    pub epochs: usize,
    /// Hard-label training rate of the fastest epoch (the machine's rate moves between
    /// seconds; the peers of `bench/peers.py` report their fastest pass too).
    pub student_samples_per_s_hard: f64,
    /// Hard-label training rate of each epoch, in order.
    pub student_samples_per_s_hard_epochs: Vec<f64>,
    /// KD training rate (α = 0.5) of the fastest epoch.
    pub student_samples_per_s_kd: Option<f64>,
    /// Training FLOPs per sample: 3 × forward FLOPs (= 6 × parameters for an MLP).
    pub train_flops_per_sample: u64,
    /// Achieved training GFLOP/s at the hard-label rate.
    pub student_gflops: f64,
    /// Of which in convolutions.
    pub conv_gflops: f64,
    /// f32 GEMM rate of this machine: 1024³ products through the trainer's own product
    /// (`train::gemm`, both cores), best of 5 right before and 5 right after the timed
    /// hard-label training.
    pub gemm_peak_gflops: f64,
    pub fraction_of_gemm_peak: f64,
    /// Peak resident memory of the process (VmHWM), bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Training features + labels + soft labels + model + optimiser state, bytes.
    pub accounted_bytes: u64,
}

/// GFLOP/s of `n × n × n` f32 matrix products, best of `reps`.
pub fn gemm_gflops(n: usize, reps: usize) -> f64 {
    let a = Array2::<f32>::from_shape_fn((n, n), |(i, j)| ((i * 7 + j * 3) % 17) as f32 * 0.01);
    let b = a.t().to_owned();
    let mut c = Array2::<f32>::zeros((n, n));
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let started = Instant::now();
        crate::train::gemm::gemm(1.0, &a.view(), &b.view(), 0.0, &mut c.view_mut());
        best = best.min(started.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best / 1e9
}

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs the benchmark with `epochs` of student training per measurement; `with_teacher`
/// also times the teacher and the KD step.
pub fn run(
    manifest: &Manifest,
    extra_plugin_dirs: &[std::path::PathBuf],
    epochs: usize,
    with_teacher: bool,
) -> Result<BenchReport, Error> {
    let registry = Registry::load(&plugins::plugin_dirs(
        &manifest.plugin_dirs,
        extra_plugin_dirs,
    ))?;
    let (raw_train, _) = data::load(&manifest.data, manifest.seeds[0])?;
    let norm = match &manifest.data.normalise {
        crate::manifest::NormaliseSpec::Fixed(n) => n.clone(),
        crate::manifest::NormaliseSpec::Standardize { scale } => {
            data::Normalisation::fit(raw_train.features.view(), *scale)
        }
    };
    let features = norm.apply(raw_train.features.view());

    let (teacher_rate, teacher_logits) = match (&manifest.teacher, with_teacher) {
        (Some(spec), true) => {
            let mut teacher = Teacher::new(spec, &registry, &raw_train, &manifest.cache_dir, 0)?;
            // One small batch first, so that session creation is not timed.
            let warm = raw_train
                .subset(&(0..spec.batch_size.min(raw_train.len()) as u32).collect::<Vec<_>>());
            teacher.run(&warm, "warm-up")?;
            let started = Instant::now();
            let (logits, _) = teacher.run(&raw_train, "bench")?;
            (
                Some(raw_train.len() as f64 / started.elapsed().as_secs_f64()),
                Some(logits),
            )
        }
        _ => (None, None),
    };

    let mut student = manifest.student.clone();
    student.epochs = epochs;
    let n = raw_train.len();
    // Samples/s of each epoch.
    let time_training = |alpha: f32| -> Result<(Vec<f64>, train::Network), Error> {
        let set = TrainSet {
            x: features.view(),
            sample_shape: &raw_train.sample_shape,
            y: &raw_train.labels,
            teacher: teacher_logits.as_ref().map(|t| t.view()),
            num_classes: raw_train.num_classes,
        };
        let kd = Kd {
            alpha: Alpha::new(alpha).expect("constant in range"),
            temperature: manifest.distillation.temperature,
        };
        let (model, logs) = train::train(&student, &set, kd, 0, None)?;
        let rates = logs.iter().map(|log| n as f64 / log.seconds).collect();
        Ok((rates, model))
    };
    let fastest = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
    // The machine's rate moves between seconds on a shared host: the GEMM rate is measured
    // right before and right after the timed training, and the higher one is the peak.
    let gemm_before = gemm_gflops(1024, 5);
    let (hard_epochs, mut model) = time_training(0.0)?;
    let gemm = gemm_before.max(gemm_gflops(1024, 5));
    let hard = fastest(&hard_epochs);
    let kd = match teacher_logits {
        Some(_) => Some(fastest(&time_training(0.5)?.0)),
        None => None,
    };
    let parameters = model.num_parameters();
    let (forward, conv_forward) = model.flops_per_example();
    let student_gflops = hard * 3.0 * forward as f64 / 1e9;
    // Optimiser state: one buffer per parameter for SGD with momentum, two for AdamW.
    let optimiser_buffers = match manifest.student.optimizer {
        train::optim::OptimizerSpec::Sgd { .. } => 1,
        train::optim::OptimizerSpec::AdamW { .. } => 2,
    };
    let accounted = (features.len() * 4
        + raw_train.features.len() * 4
        + n * 4
        + teacher_logits.as_ref().map_or(0, |t| t.len() * 4 * 2)
        + parameters * 4 * (2 + optimiser_buffers)) as u64;
    Ok(BenchReport {
        train_examples: n,
        teacher: manifest.teacher.as_ref().map(|t| t.name.clone()),
        teacher_images_per_s: teacher_rate,
        student_layers: model.describe(),
        student_parameters: parameters,
        batch_size: manifest.student.batch_size,
        epochs,
        student_samples_per_s_hard: hard,
        student_samples_per_s_hard_epochs: hard_epochs,
        student_samples_per_s_kd: kd,
        train_flops_per_sample: 3 * forward,
        student_gflops,
        conv_gflops: hard * 3.0 * conv_forward as f64 / 1e9,
        gemm_peak_gflops: gemm,
        fraction_of_gemm_peak: student_gflops / gemm,
        peak_rss_bytes: peak_rss(),
        accounted_bytes: accounted,
    })
}
