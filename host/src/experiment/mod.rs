//! The grid runner: every cell (method × keep × α × seed) of a manifest — score, select,
//! train, evaluate — with results appended as each cell ends and cells already in
//! `results.jsonl` skipped (resume).
//!
//! Owns the order of the work and what is checked before any of it starts (every method
//! exists, is a pruning method, takes the given parameters, and gets the inputs it asks for).

pub mod results;

use std::path::PathBuf;
use std::time::Instant;

use kdprune_plugin_api::{Param, PluginKind, INPUT_SOFT_LABELS};
use sha2::{Digest, Sha256};

use crate::data::{self, Dataset, Normalisation};
use crate::manifest::{Manifest, NormaliseSpec, PruneSpec};
use crate::plugins::{self, check_params, Plugin, PluginData, Registry};
use crate::teacher::{Teacher, TeacherLogits};
use crate::train::{self, Kd, TrainSet};
use crate::Error;
pub use results::{CellResult, ResultStore};

/// Options of a run that do not belong in the manifest.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Extra plugin folders (`--plugin-dir`).
    pub plugin_dirs: Vec<PathBuf>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Every result in the store after the run (earlier ones included), in file order.
    pub results: Vec<CellResult>,
    /// Cells run now.
    pub ran: usize,
    /// Cells skipped because their result was already there.
    pub skipped: usize,
    pub results_path: PathBuf,
    pub teacher_test_accuracy: Option<f64>,
}

/// A pruning method checked against its plugin.
struct Method<'r> {
    spec: &'r PruneSpec,
    plugin: &'r Plugin,
    params: Vec<Param>,
    wants_soft_labels: bool,
}

fn check_methods<'r>(
    manifest: &'r Manifest,
    registry: &'r Registry,
) -> Result<Vec<Method<'r>>, Error> {
    let at = |spec: &PruneSpec, message: String| {
        Error::Manifest(crate::manifest::ManifestError::At {
            path: manifest.path.clone(),
            line: spec.at.0,
            column: spec.at.1,
            message,
        })
    };
    manifest
        .prune
        .iter()
        .map(|spec| {
            let plugin = registry
                .get(&spec.method, PluginKind::PruningMethod)
                .map_err(|e| {
                    let mut message = format!("[[prune]] method: {e}");
                    if !registry.problems.is_empty() {
                        message.push_str(&format!(
                            " ({} file(s) in the plugin folders did not load; run `kdprune plugins`)",
                            registry.problems.len()
                        ));
                    }
                    at(spec, message)
                })?;
            let params = check_params(&spec.method, &plugin.description.params, &spec.params)
                .map_err(|m| at(spec, format!("[[prune]] params: {m}")))?;
            let wants_soft_labels = plugin
                .description
                .inputs
                .iter()
                .any(|i| i == INPUT_SOFT_LABELS);
            if wants_soft_labels && manifest.teacher.is_none() {
                return Err(at(
                    spec,
                    format!("method {:?} needs the teacher's soft labels; add a [teacher]", spec.method),
                ));
            }
            Ok(Method {
                spec,
                plugin,
                params,
                wants_soft_labels,
            })
        })
        .collect()
}

/// The student's view of a data set: features normalised as the manifest says.
fn normalise(
    spec: &NormaliseSpec,
    train: &Dataset,
    test: &Dataset,
) -> Result<(Dataset, Dataset, Normalisation), Error> {
    let norm = match spec {
        NormaliseSpec::Fixed(n) => n.clone(),
        NormaliseSpec::Standardize { scale } => Normalisation::fit(train.features.view(), *scale),
    };
    norm.check(&train.sample_shape)
        .map_err(|m| Error::Data(data::DataError::Invalid(format!("[data.normalise] {m}"))))?;
    let apply = |d: &Dataset| Dataset {
        features: norm.apply(d.features.view()),
        ..d.clone()
    };
    Ok((apply(train), apply(test), norm))
}

fn cell_key(parts: &serde_json::Value) -> String {
    let digest = Sha256::digest(parts.to_string().as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

fn params_json(params: &[Param]) -> serde_json::Value {
    use kdprune_plugin_api::ParamValue;
    let map = params
        .iter()
        .map(|p| {
            let v = match &p.value {
                ParamValue::Int(i) => serde_json::json!(i),
                ParamValue::Float(f) => serde_json::json!(f),
                ParamValue::Bool(b) => serde_json::json!(b),
                ParamValue::Text(t) => serde_json::json!(t.as_str()),
            };
            (p.name.to_string(), v)
        })
        .collect::<serde_json::Map<_, _>>();
    serde_json::Value::Object(map)
}

/// Writes a cell's student as `students/<key>.safetensors` and `students/<key>.onnx`.
fn save_student(model: &train::Network, output: &std::path::Path, key: &str) -> Result<(), Error> {
    let dir = output.join("students");
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    let weights = dir.join(format!("{key}.safetensors"));
    model
        .save_safetensors(&weights)
        .map_err(|message| Error::Io {
            path: weights.clone(),
            message,
        })?;
    let onnx = dir.join(format!("{key}.onnx"));
    std::fs::write(&onnx, model.to_onnx()).map_err(|e| Error::Io {
        path: onnx,
        message: e.to_string(),
    })
}

/// Runs every cell of `manifest` that is not yet in its results.
pub fn run(manifest: &Manifest, options: &RunOptions) -> Result<RunSummary, Error> {
    let dirs = plugins::plugin_dirs(&manifest.plugin_dirs, &options.plugin_dirs);
    let registry = Registry::load(&dirs)?;
    for problem in &registry.problems {
        tracing::warn!("{problem}");
    }
    let methods = check_methods(manifest, &registry)?;
    let mut store = ResultStore::open(&manifest.output)?;

    let data_seed = manifest.seeds[0];
    let (raw_train, raw_test) = data::load(&manifest.data, data_seed)?;
    tracing::info!(
        train = raw_train.len(),
        test = raw_test.len(),
        classes = raw_train.num_classes,
        shape = ?raw_train.sample_shape,
        "data loaded"
    );
    let (train_set, test_set, student_norm) =
        normalise(&manifest.data.normalise, &raw_train, &raw_test)?;

    let needs_teacher = manifest
        .distillation
        .alphas
        .iter()
        .any(|a| a.needs_teacher())
        || methods.iter().any(|m| m.wants_soft_labels);
    // Kept for online distillation, which runs it on every augmented batch.
    let mut live_teacher: Option<Teacher> = None;
    let (teacher_train, teacher_test_accuracy): (Option<TeacherLogits>, Option<f64>) =
        match (&manifest.teacher, needs_teacher) {
            (Some(spec), true) => {
                let teacher = live_teacher.insert(Teacher::new(
                    spec,
                    &registry,
                    &raw_train,
                    &manifest.cache_dir,
                    data_seed,
                )?);
                let on_train = teacher.logits(&raw_train, "train")?;
                let on_test = teacher.logits(&raw_test, "test")?;
                let accuracy = on_test.accuracy(&raw_test.labels);
                tracing::info!(
                    teacher = %spec.name,
                    kind = ?on_train.kind,
                    train_accuracy = on_train.accuracy(&raw_train.labels),
                    test_accuracy = accuracy,
                    "teacher ready"
                );
                (Some(on_train), Some(accuracy))
            }
            _ => (None, None),
        };

    let n = train_set.len();
    let student_json = serde_json::to_value(&manifest.student).unwrap_or_default();
    let temperature = manifest.distillation.temperature;
    let mut ran = 0;
    let mut skipped = 0;
    let mut shape = vec![n as u64];
    shape.extend(train_set.sample_shape.iter().map(|&s| s as u64));
    let plugin_data = PluginData {
        features: train_set.features.as_slice().unwrap_or(&[]),
        shape,
        labels: &train_set.labels,
        num_classes: train_set.num_classes,
    };
    let soft_labels_t1 = teacher_train.as_ref().map(|t| t.probabilities(1.0));
    let teacher_name = manifest.teacher.as_ref().map(|t| t.name.clone());

    for method in &methods {
        let params = params_json(&method.params);
        let policy = format!("{:?}", method.spec.policy).to_lowercase();
        for &keep in &method.spec.keep {
            for &seed in &manifest.seeds {
                let key_of = |alpha: f32| {
                    cell_key(&serde_json::json!({
                        "method": method.spec.method, "version": method.plugin.description.version,
                        "params": params, "policy": policy, "keep": keep.get(), "alpha": alpha,
                        "temperature": temperature.get(), "teacher": teacher_name, "seed": seed,
                        "student": student_json, "data": format!("{:?}", manifest.data.source),
                        "train_size": n,
                    }))
                };
                let pending: Vec<_> = manifest
                    .distillation
                    .alphas
                    .iter()
                    .filter(|a| !store.is_done(&key_of(a.get())))
                    .copied()
                    .collect();
                skipped += manifest.distillation.alphas.len() - pending.len();
                if pending.is_empty() {
                    continue;
                }
                let budget = keep.budget(n);
                let kept: Vec<u32> = if keep.is_full() {
                    (0..n as u32).collect()
                } else {
                    let soft = if method.wants_soft_labels {
                        soft_labels_t1.as_ref().and_then(|p| p.as_slice())
                    } else {
                        None
                    };
                    let selection =
                        method
                            .plugin
                            .score(&plugin_data, soft, &method.params, seed, budget)?;
                    crate::select::kept_indices(
                        &selection,
                        budget,
                        method.spec.policy,
                        method.plugin.description.high_is_hard,
                        &train_set.labels,
                        train_set.num_classes,
                    )
                };
                let indices_rel = format!(
                    "indices/{}_{}_keep{:.4}_seed{}.npy",
                    method.spec.method,
                    cell_key(&params).get(..6).unwrap_or(""),
                    keep.get(),
                    seed
                );
                results::write_npy_u32(&manifest.output.join(&indices_rel), &kept).map_err(
                    |e| Error::Io {
                        path: manifest.output.join(&indices_rel),
                        message: e.to_string(),
                    },
                )?;
                let subset = train_set.subset(&kept);
                let teacher_subset = teacher_train.as_ref().map(|t| {
                    t.logits.select(
                        ndarray::Axis(0),
                        &kept.iter().map(|&i| i as usize).collect::<Vec<_>>(),
                    )
                });
                for alpha in pending {
                    let started = Instant::now();
                    let kd = Kd { alpha, temperature };
                    let set = TrainSet {
                        x: subset.features.view(),
                        sample_shape: &subset.sample_shape,
                        y: &subset.labels,
                        teacher: teacher_subset.as_ref().map(|t| t.view()),
                        num_classes: subset.num_classes,
                    };
                    let sample_shape = subset.sample_shape.clone();
                    let num_classes = subset.num_classes;
                    let mut teacher_seconds = 0.0f64;
                    let mut online = |batch: ndarray::ArrayView2<'_, f32>| {
                        let started = Instant::now();
                        let raw = student_norm.invert(batch);
                        let scores = live_teacher
                            .as_mut()
                            .ok_or_else(|| "no teacher".to_string())?
                            .batch_scores(raw.view(), &sample_shape, num_classes)
                            .map_err(|e| e.to_string());
                        teacher_seconds += started.elapsed().as_secs_f64();
                        scores
                    };
                    let online: Option<train::OnlineTeacher<'_>> = manifest
                        .student
                        .augment
                        .online_teacher
                        .then_some(&mut online);
                    let (mut model, _logs) =
                        train::train(&manifest.student, &set, kd, seed, online)?;
                    if manifest.student.augment.online_teacher && alpha.needs_teacher() {
                        tracing::info!(
                            teacher_seconds,
                            training_seconds = started.elapsed().as_secs_f64(),
                            "online distillation: time spent running the teacher"
                        );
                    }
                    let accuracy =
                        train::evaluate(&mut model, test_set.features.view(), &test_set.labels);
                    if manifest.student.save {
                        save_student(&model, &manifest.output, &key_of(alpha.get()))?;
                    }
                    let cell = CellResult {
                        experiment: manifest.name.clone(),
                        method: method.spec.method.clone(),
                        params: params.clone(),
                        policy: policy.clone(),
                        keep: keep.get(),
                        alpha: alpha.get(),
                        temperature: temperature.get(),
                        teacher: if alpha.needs_teacher() {
                            teacher_name.clone()
                        } else {
                            None
                        },
                        seed,
                        kept: kept.len(),
                        train_size: n,
                        test_accuracy: accuracy,
                        teacher_test_accuracy,
                        seconds: started.elapsed().as_secs_f64(),
                        indices: indices_rel.clone(),
                        student: student_json.clone(),
                        key: key_of(alpha.get()),
                    };
                    tracing::info!(
                        method = %cell.method, keep = cell.keep, alpha = cell.alpha, seed,
                        kept = cell.kept, accuracy = cell.test_accuracy, seconds = cell.seconds,
                        "cell done"
                    );
                    store.append(&cell)?;
                    ran += 1;
                }
            }
        }
    }
    let results = store.results().to_vec();
    Ok(RunSummary {
        results,
        ran,
        skipped,
        results_path: store.path().to_path_buf(),
        teacher_test_accuracy,
    })
}
