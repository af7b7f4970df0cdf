//! Teachers the host trains itself: `[teacher] train = { ... }`. The network (the student's
//! own architecture by default: the paper's self-distillation setting) is trained by the
//! students' trainer on the whole training set, with labels only, exported to ONNX into the
//! cache under a key of its recipe and the data, and from then on served through ONNX Runtime
//! like any model a user brings — same checks, same soft-label cache, same online path.
//!
//! The recipe key (the checked training settings and seed) is what a cell distilled from it
//! depends on besides the data, which the cell key holds already; training is deterministic,
//! so a cache emptied and refilled gives the same model file, byte for byte.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::error::TeacherError;
use super::spec::{Layout, TeacherSource, TeacherSpec};
use crate::data::{Dataset, Normalisation};
use crate::train::kd::{Alpha, Temperature};
use crate::train::spec::StudentSpec;
use crate::train::{self, Kd, TrainSet};

/// The teacher's identity before it exists: its training settings and seed, hashed.
pub fn recipe_key(spec: &StudentSpec, seed: u64) -> String {
    let recipe = serde_json::json!({ "trained-teacher": "v1", "spec": spec, "seed": seed });
    crate::hash::sha256_hex(recipe.to_string().as_bytes())
}

/// Where the model of a recipe trained on `train` lives in `cache_dir`.
pub fn model_path(cache_dir: &Path, recipe: &str, train: &Dataset) -> PathBuf {
    let data = crate::hash::sha256_hex(&train.content_hash());
    cache_dir.join(format!(
        "trained-teacher-{}-{}.onnx",
        recipe.get(..16).unwrap_or(recipe),
        data.get(..16).unwrap_or(&data)
    ))
}

/// Every teacher of `teachers`, with each `train = { ... }` one that `needed` marks turned
/// into the ONNX teacher of its model (trained now unless the cache holds it). `train` is the
/// student's view of the training set (`[N, ...]` after `norm`); the model reads raw data
/// through `norm`, as the student does. Returns the teachers and the seconds spent training.
pub fn materialise(
    teachers: &[TeacherSpec],
    needed: &[bool],
    train: &Dataset,
    norm: &Normalisation,
    cache_dir: &Path,
) -> Result<(Vec<TeacherSpec>, f64), TeacherError> {
    let mut seconds = 0.0;
    let mut out = Vec::with_capacity(teachers.len());
    for (spec, &needed) in teachers.iter().zip(needed) {
        let TeacherSource::Trained {
            spec: recipe,
            seed,
            threads,
        } = &spec.source
        else {
            out.push(spec.clone());
            continue;
        };
        if !needed {
            out.push(spec.clone());
            continue;
        }
        let layout = layout_of(train)?;
        let path = model_path(cache_dir, &recipe_key(recipe, *seed), train);
        if path.exists() {
            tracing::info!(teacher = %spec.name, model = %path.display(), "trained teacher from the cache");
        } else {
            let started = Instant::now();
            train_and_export(&spec.name, recipe, *seed, train, &path)?;
            seconds += started.elapsed().as_secs_f64();
        }
        out.push(TeacherSpec {
            name: spec.name.clone(),
            source: TeacherSource::Onnx {
                model: path,
                input: None,
                output: None,
                provider: super::spec::Provider::Cpu,
                allow_cpu_fallback: false,
                ort_library: None,
                threads: *threads,
            },
            preprocess: norm.clone(),
            layout,
            output_kind: spec.output_kind,
            batch_size: spec.batch_size,
            embedding: None,
        });
    }
    Ok((out, seconds))
}

/// Checks that the recipe builds a network for `train`'s examples, without training it.
pub fn check(recipe: &StudentSpec, seed: u64, train: &Dataset) -> Result<(), TeacherError> {
    layout_of(train)?;
    train::Network::build_with_init(
        &recipe.layers,
        &train.sample_shape,
        train.num_classes,
        seed,
        recipe.init,
    )
    .map(|_| ())
    .map_err(|m| TeacherError::Train(train::TrainError::Model(format!("[teacher] train: {m}"))))
}

/// How the exported model reads examples of `train`: flat or `[C, H, W]`; other shapes
/// are refused before any training.
fn layout_of(train: &Dataset) -> Result<Layout, TeacherError> {
    match train.sample_shape.len() {
        1 => Ok(Layout::Flat),
        3 => Ok(Layout::Nchw),
        _ => Err(TeacherError::Data(crate::data::DataError::Invalid(format!(
            "[teacher] train: examples of shape {:?} cannot be fed to the exported model; give 1-D or [C, H, W] data",
            train.sample_shape
        )))),
    }
}

fn train_and_export(
    name: &str,
    recipe: &StudentSpec,
    seed: u64,
    train: &Dataset,
    path: &Path,
) -> Result<(), TeacherError> {
    tracing::info!(teacher = %name, examples = train.len(), epochs = recipe.epochs, "training the teacher on the full training set");
    let set = TrainSet {
        x: train.features.view(),
        sample_shape: &train.sample_shape,
        y: &train.labels,
        teacher: None,
        num_classes: train.num_classes,
    };
    let labels_only = Kd {
        alpha: Alpha::new(0.0).expect("0 is a weight"),
        temperature: Temperature::new(1.0).expect("1 is a temperature"),
    };
    let (mut model, logs) = train::train(recipe, &set, labels_only, seed, None)?;
    let train_accuracy = train::evaluate(&mut model, train.features.view(), &train.labels);
    tracing::info!(
        teacher = %name,
        train_accuracy,
        last_loss = logs.last().map(|l| l.loss),
        "teacher trained"
    );
    let io = |e: std::io::Error| TeacherError::Io {
        path: path.to_path_buf(),
        message: crate::io_message(&e),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Through a temporary file and a rename: a half-written model is never taken for one.
    let partial = path.with_extension("onnx.partial");
    std::fs::write(&partial, model.to_onnx()).map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)
}
