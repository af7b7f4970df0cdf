//! Throughput measurements on a manifest's data: teacher images per second (ONNX Runtime,
//! cache bypassed) and student training samples per second (the trainer of [`crate::train`]
//! on the whole training set, with and without the distillation term).

use std::time::Instant;

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
    pub student_samples_per_s_hard: f64,
    pub student_samples_per_s_kd: Option<f64>,
    /// `6 × parameters` FLOPs per sample (forward + backward) at the hard-label rate.
    pub student_gflops: f64,
}

/// Runs the benchmark with `epochs` of student training per measurement.
pub fn run(
    manifest: &Manifest,
    extra_plugin_dirs: &[std::path::PathBuf],
    epochs: usize,
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

    let (teacher_rate, teacher_logits) = match &manifest.teacher {
        Some(spec) => {
            let mut teacher = Teacher::new(spec, &registry, &raw_train, &manifest.cache_dir, 0)?;
            // One small warm-up batch so session creation is not timed.
            let warm = raw_train
                .subset(&(0..spec.batch_size.min(raw_train.len()) as u32).collect::<Vec<_>>());
            teacher.run(&warm, "warm-up")?;
            let started = Instant::now();
            let (logits, _) = teacher.run(&raw_train, "bench")?;
            let rate = raw_train.len() as f64 / started.elapsed().as_secs_f64();
            (Some(rate), Some(logits))
        }
        None => (None, None),
    };

    let mut student = manifest.student.clone();
    student.epochs = epochs;
    let n = raw_train.len();
    let time_training = |alpha: f32| -> Result<(f64, usize), Error> {
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
        let started = Instant::now();
        let (mut model, _) = train::train(&student, &set, kd, 0)?;
        Ok((
            (n * epochs) as f64 / started.elapsed().as_secs_f64(),
            model.num_parameters(),
        ))
    };
    let (hard, parameters) = time_training(0.0)?;
    let kd = match teacher_logits {
        Some(_) => Some(time_training(0.5)?.0),
        None => None,
    };
    let layers: Vec<String> = train::Network::build(
        &manifest.student.layers,
        &raw_train.sample_shape,
        raw_train.num_classes,
        0,
    )
    .map_err(train::TrainError::Model)?
    .describe();
    Ok(BenchReport {
        train_examples: n,
        teacher: manifest.teacher.as_ref().map(|t| t.name.clone()),
        teacher_images_per_s: teacher_rate,
        student_layers: layers,
        student_parameters: parameters,
        batch_size: manifest.student.batch_size,
        epochs,
        student_samples_per_s_hard: hard,
        student_samples_per_s_kd: kd,
        student_gflops: hard * 6.0 * parameters as f64 / 1e9,
    })
}
