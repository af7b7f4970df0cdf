//! The grid runner: every cell (method × keep × α × seed) of a manifest, in stages — plan the
//! cells, compute the inputs the planned methods need (each once, through
//! [`crate::inputs`]), score (once per method and seed for budget-independent scores, cached
//! by content in `score_cache`),
//! select, train, record — with results appended as each cell ends and cells already in
//! `results.jsonl` skipped (resume).
//!
//! Owns the order of the work and what is checked before any of it starts (every method
//! exists, is a pruning method, takes the given parameters, gets the inputs it asks for, and
//! the dynamics fit in memory).

mod check;
pub mod distributed;
mod failures;
mod key;
pub mod results;
mod score;
pub mod score_cache;

pub use check::{check, CheckReport};
pub use key::sha256_hex;
pub use score::{score, KeptFile, MethodScores, ScoreSummary};

use std::path::PathBuf;
use std::time::Instant;

use std::collections::HashMap;

use kdprune_plugin_api::{Param, PluginKind};
use sha2::{Digest, Sha256};

use crate::data::{self, Dataset, Normalisation};
use crate::dynamics;
use crate::inputs::{InputName, Inputs, Needs};
use crate::manifest::{
    Alpha, AlphaChoice, Keep, Manifest, NormaliseSpec, OnPluginError, PruneSpec, TeacherSpec,
};
use crate::plugins::{self, check_params, Plugin, PluginData, Registry};
use crate::select::{Answer, Policy};
use crate::teacher::{Teacher, TeacherLogits};
use crate::train::{self, Kd, TrainSet};
use crate::Error;
pub use results::{CellResult, ResultStore};

/// Options of a run that do not belong in the manifest.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Extra plugin folders (`--plugin-dir`).
    pub plugin_dirs: Vec<PathBuf>,
    /// Run only this share of the cells, into `<output>/shards/i-of-n/` (`--shard i/n`);
    /// [`merge`] joins the shares.
    pub shard: Option<crate::shard::Shard>,
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
    /// Test accuracy of the first teacher, when this run made it ready.
    pub teacher_test_accuracy: Option<f64>,
    /// Where this run's time went.
    pub time: TimeSplit,
    /// Cells skipped because their plugin failed (`on_plugin_error = "continue"`), recorded
    /// in `failures.jsonl`.
    pub failed: usize,
}

/// A pruning method checked against its plugin.
struct Method<'r> {
    spec: &'r PruneSpec,
    plugin: &'r Plugin,
    params: Vec<Param>,
    /// The manifest's policy, or the plugin's default, checked.
    policy: Policy,
    /// The inputs it asked for that this run supplies (optional ones it cannot are left out).
    inputs: Vec<InputName>,
}

impl Method<'_> {
    fn uses_proxy(&self) -> bool {
        self.inputs.iter().any(|i| i.needs_proxy())
    }
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
    let onnx_teacher = matches!(
        manifest.teacher().map(|t| &t.source),
        Some(crate::manifest::TeacherSource::Onnx { .. })
    );
    let teacher_embedding = manifest.teacher().is_some_and(|t| t.embedding.is_some());
    for (name, pinned) in &manifest.plugin_sha256 {
        let plugin = registry
            .plugins()
            .iter()
            .find(|p| &p.description.name == name)
            .ok_or_else(|| {
                Error::Manifest(crate::manifest::ManifestError::File {
                    path: manifest.path.clone(),
                    message: format!("plugin_sha256 pins {name:?}, which no plugin folder holds"),
                })
            })?;
        plugins::check_pin(plugin, pinned)?;
    }
    manifest
        .prune
        .iter()
        .map(|spec| {
            let plugin = registry
                .get(&spec.method, PluginKind::PruningMethod)
                .map_err(|e| {
                    let mut message = format!("[[prune]] method: {e}");
                    match registry.problems.as_slice() {
                        [] => {}
                        [only] => message.push_str(&format!(" (one file did not load: {only})")),
                        many => message.push_str(&format!(
                            " ({} files in the plugin folders did not load, first {}; run `kdprune plugins`)",
                            many.len(),
                            many[0]
                        )),
                    }
                    at(spec, message)
                })?;
            let params = check_params(&spec.method, &plugin.description.params, &spec.params)
                .map_err(|m| at(spec, format!("[[prune]] params: {m}")))?;
            let policy = match (&spec.policy, &plugin.description.default_policy) {
                (Some(p), _) => *p,
                (None, default) => {
                    let text = default.as_deref().unwrap_or("hardest");
                    let (rule, plugin_balance) = match text.split_once(':') {
                        Some((r, b)) => (r.trim(), Some(b.trim())),
                        None => (text.trim(), None),
                    };
                    let balance = spec.balance.as_deref().or(plugin_balance);
                    Policy::build(rule, balance, &Default::default()).map_err(|m| {
                        at(spec, format!("[[prune]] the default policy {text:?} of plugin {:?}: {m}; name a policy", spec.method))
                    })?
                }
            };
            let mut inputs = Vec::new();
            let requested = plugin
                .inputs_for(&params)
                .map_err(|e| at(spec, format!("[[prune]] params: {e}")))?;
            for request in &requested {
                let missing = match request.name {
                    InputName::SoftLabels if manifest.teacher().is_none() => Some("add a [teacher]"),
                    InputName::TeacherEmbedding if !onnx_teacher => {
                        Some("add an ONNX [teacher] with embedding = \"<tensor name>\"")
                    }
                    InputName::TeacherEmbedding if !teacher_embedding => {
                        Some("set [teacher] embedding = \"<tensor name>\" (a tensor of the model)")
                    }
                    _ => None,
                };
                match (missing, request.required) {
                    (None, _) => inputs.push(request.name),
                    (Some(what), true) => {
                        return Err(at(
                            spec,
                            format!("method {:?} needs the input {}; {what}", spec.method, request.name),
                        ))
                    }
                    (Some(_), false) => {}
                }
            }
            Ok(Method {
                spec,
                plugin,
                params,
                policy,
                inputs,
            })
        })
        .collect()
}

/// Checks that the dynamics the methods ask for fit in memory, before any work.
fn check_dynamics_memory(manifest: &Manifest, needs: &Needs, train: &Dataset) -> Result<(), Error> {
    if needs.dynamics.is_empty() {
        return Ok(());
    }
    let width = if needs.dynamics.embedding {
        dynamics::embedding_width(&manifest.dynamics, &train.sample_shape, train.num_classes)?
    } else {
        0
    };
    let extent = dynamics::extent(&manifest.dynamics, train.len(), train.num_classes, width);
    let bytes = dynamics::check_memory(&manifest.dynamics, &needs.dynamics, extent)?;
    tracing::info!(
        bytes,
        runs = extent.runs,
        epochs = extent.epochs,
        checkpoints = extent.checkpoints,
        "dynamics planned"
    );
    Ok(())
}

/// The student's view of a data set: features normalised as the manifest says.
pub(crate) fn normalise(
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
            let v = match p.value.as_enum() {
                Ok(ParamValue::Int(i)) => serde_json::json!(i),
                Ok(ParamValue::Float(f)) => serde_json::json!(f),
                Ok(ParamValue::Bool(b)) => serde_json::json!(b),
                Ok(ParamValue::Text(t)) => serde_json::json!(t.as_str()),
                Ok(ParamValue::IntList(v)) => serde_json::json!(v.as_slice()),
                Ok(ParamValue::FloatList(v)) => serde_json::json!(v.as_slice()),
                Ok(ParamValue::TextList(v)) => {
                    serde_json::json!(v.iter().map(|t| t.as_str()).collect::<Vec<_>>())
                }
                // Checked parameters are always of a kind this host knows.
                _ => serde_json::Value::Null,
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
        message: crate::io_message(&e),
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
        message: crate::io_message(&e),
    })
}

/// A teacher made ready by the inputs stage.
struct ReadyTeacher<'a> {
    /// Kept for online distillation, which runs it on every augmented batch (`None` for an
    /// ensemble, which is never run itself).
    live: Option<Teacher<'a>>,
    /// `[N, C]` on the training set.
    train: TeacherLogits,
    /// `[M, C]` on the test set.
    test: TeacherLogits,
    test_accuracy: f64,
}

/// What the inputs stage hands on.
struct InputStage<'a> {
    /// One entry per `manifest.teachers`, `None` for a teacher no pending cell uses.
    teachers: Vec<Option<ReadyTeacher<'a>>>,
    inputs: Inputs,
    time: TimeSplit,
}

/// Which teachers are made ready: those a pending cell distils from (`distilling[i]`), the
/// first one too when methods read its inputs, and the members of a needed ensemble (members
/// come first).
fn needed_teachers(teachers: &[TeacherSpec], needs: &Needs, distilling: &[bool]) -> Vec<bool> {
    let mut needed: Vec<bool> = (0..teachers.len())
        .map(|i| distilling[i] || (i == 0 && (needs.soft_labels || needs.teacher_embedding)))
        .collect();
    for (i, spec) in teachers.iter().enumerate().rev() {
        if let (true, crate::manifest::TeacherSource::Ensemble { members, .. }) =
            (needed[i], &spec.source)
        {
            for &m in members {
                needed[m] = true;
            }
        }
    }
    needed
}

/// The proxy's records `needs` asks for, on the student's view of the training set (from the
/// cache, or by training the proxy).
/// The SHA-256 of a method's plugin library, hex: part of every key made of the plugin.
fn plugin_sha256(method: &Method<'_>) -> Result<String, Error> {
    std::fs::read(&method.plugin.file)
        .map(|b| key::sha256_hex(&b))
        .map_err(|e| Error::Io {
            path: method.plugin.file.clone(),
            message: format!("cannot read the plugin library: {e}"),
        })
}

/// What a method's scores depend on besides its inputs, seed and data: the score cache's
/// plugin identity.
fn plugin_identity(method: &Method<'_>, sha256: &str) -> serde_json::Value {
    serde_json::json!({
        "method": method.spec.method,
        "version": method.plugin.description.version,
        "plugin_sha256": sha256,
        "params": params_json(&method.params),
    })
}

fn dynamics_of(
    manifest: &Manifest,
    train_set: &Dataset,
    needs: &Needs,
) -> Result<crate::dynamics::Dynamics, Error> {
    crate::inputs::provide_dynamics(&dynamics_context(manifest, train_set), &needs.dynamics)
}

/// The proxy's settings, training set (`[N, D]` student-normalised) and cache folder.
fn dynamics_context<'a>(
    manifest: &'a Manifest,
    train_set: &'a Dataset,
) -> crate::inputs::DynamicsContext<'a> {
    crate::inputs::DynamicsContext {
        spec: &manifest.dynamics,
        set: TrainSet {
            x: train_set.features.view(),
            sample_shape: &train_set.sample_shape,
            y: &train_set.labels,
            teacher: None,
            num_classes: train_set.num_classes,
        },
        data_hash: train_set.content_hash(),
        cache_dir: &manifest.cache_dir,
    }
}

/// The teachers stage 2 makes ready ([`needed_teachers`]) and the manifest's teachers with
/// every needed `train = { ... }` one trained (or taken from the cache) and made a model, and
/// the seconds that training took.
fn teachers_to_ready(
    manifest: &Manifest,
    needs: &Needs,
    distilling: &[bool],
    train_set: &Dataset,
    student_norm: &Normalisation,
) -> Result<(Vec<bool>, Vec<TeacherSpec>, f64), Error> {
    let needed = needed_teachers(&manifest.teachers, needs, distilling);
    let (specs, seconds) = crate::teacher::trained::materialise(
        &manifest.teachers,
        &needed,
        train_set,
        student_norm,
        &manifest.cache_dir,
    )?;
    Ok((needed, specs, seconds))
}

/// Stage 2: the `needed` teachers ([`needed_teachers`]; `teachers` are the manifest's with
/// trained ones made into models) and every input `needs` names, each computed once (and
/// cached by content).
fn input_stage<'a>(
    manifest: &'a Manifest,
    teachers: &'a [TeacherSpec],
    needed: &[bool],
    registry: &'a Registry,
    (raw_train, raw_test): (&'a Dataset, &Dataset),
    train_set: &Dataset,
    needs: &Needs,
) -> Result<InputStage<'a>, Error> {
    let mut stage = InputStage {
        teachers: Vec::new(),
        inputs: Inputs::default(),
        time: TimeSplit::default(),
    };
    for (i, spec) in teachers.iter().enumerate() {
        let reads_inputs = i == 0 && (needs.soft_labels || needs.teacher_embedding);
        if !needed[i] {
            stage.teachers.push(None);
            continue;
        }
        let started = Instant::now();
        if let crate::manifest::TeacherSource::Ensemble { members, combine } = &spec.source {
            let ready: Vec<&ReadyTeacher<'_>> = members
                .iter()
                .map(|&m| {
                    stage.teachers[m]
                        .as_ref()
                        .expect("members are made ready first")
                })
                .collect();
            let trains: Vec<&TeacherLogits> = ready.iter().map(|r| &r.train).collect();
            let tests: Vec<&TeacherLogits> = ready.iter().map(|r| &r.test).collect();
            let on_train = TeacherLogits::combine(&trains, *combine);
            let on_test = TeacherLogits::combine(&tests, *combine);
            let accuracy = on_test.accuracy(&raw_test.labels);
            tracing::info!(teacher = %spec.name, members = ready.len(), combine = ?combine, test_accuracy = accuracy, "ensemble ready");
            if reads_inputs && needs.soft_labels {
                stage.inputs.insert(
                    InputName::SoftLabels,
                    crate::inputs::soft_labels_tensor(&on_train.probabilities(1.0)),
                );
            }
            stage.teachers.push(Some(ReadyTeacher {
                live: None,
                train: on_train,
                test: on_test,
                test_accuracy: accuracy,
            }));
            stage.time.teacher += started.elapsed().as_secs_f64();
            continue;
        }
        let mut teacher = Teacher::new(
            spec,
            registry,
            raw_train,
            &manifest.cache_dir,
            manifest.seeds[0],
        )?;
        // Kept for online distillation, it must not spin beside the student's products.
        teacher.set_bulk(!manifest.student.augment.online_teacher);
        let on_train = teacher.logits(raw_train, "train")?;
        let on_test = teacher.logits(raw_test, "test")?;
        let accuracy = on_test.accuracy(&raw_test.labels);
        tracing::info!(
            teacher = %spec.name,
            kind = ?on_train.kind,
            train_accuracy = on_train.accuracy(&raw_train.labels),
            test_accuracy = accuracy,
            "teacher ready"
        );
        if reads_inputs && needs.soft_labels {
            stage.inputs.insert(
                InputName::SoftLabels,
                crate::inputs::soft_labels_tensor(&on_train.probabilities(1.0)),
            );
        }
        if reads_inputs && needs.teacher_embedding {
            let embedding = teacher.embedding(raw_train)?;
            stage.inputs.insert(InputName::TeacherEmbedding, embedding);
        }
        stage.teachers.push(Some(ReadyTeacher {
            live: Some(teacher),
            train: on_train,
            test: on_test,
            test_accuracy: accuracy,
        }));
        stage.time.teacher += started.elapsed().as_secs_f64();
    }
    if !needs.dynamics.is_empty() {
        let started = Instant::now();
        let recorded = dynamics_of(manifest, train_set, needs)?;
        crate::inputs::add_dynamics(&mut stage.inputs, needs, recorded);
        stage.time.dynamics += started.elapsed().as_secs_f64();
    }
    Ok(stage)
}

/// One student of a (method, keep, seed) group: its α and the teacher it distils from.
#[derive(Debug, Clone, Copy)]
struct Student {
    choice: AlphaChoice,
    /// The fixed α; `None` for `"auto"`, searched for when the cell trains.
    alpha: Option<Alpha>,
    /// Index into `manifest.teachers`; `None` when α = 0.
    teacher: Option<usize>,
}

/// A (method, keep, seed) cell group: one selection, trained for every pending student.
struct Cell {
    method: usize,
    keep: Keep,
    seed: u64,
    /// The students not yet in the results.
    pending: Vec<Student>,
}

/// Where the time of a run went, seconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct TimeSplit {
    /// The whole run, from loading plugins to the last result.
    pub total: f64,
    pub teacher: f64,
    pub dynamics: f64,
    pub scoring: f64,
    pub training: f64,
}

/// Runs every cell of `manifest` that is not yet in its results, in stages: plan the cells,
/// compute the inputs the planned methods need (each once), score, select, train, record.
pub fn run(manifest: &Manifest, options: &RunOptions) -> Result<RunSummary, Error> {
    let run_started = Instant::now();
    // A shard writes into a folder of its own (its own lock and results), and leaves the
    // cells the main folder holds already.
    let sharded;
    let mut done_before = std::collections::HashSet::new();
    let manifest = match options.shard {
        None => manifest,
        Some(shard) => {
            if manifest.output.join("results.jsonl").exists() {
                done_before = results::read(&manifest.output)?
                    .into_iter()
                    .map(|r| r.key)
                    .collect();
            }
            sharded = Manifest {
                output: distributed::shard_dir(&manifest.output, shard),
                ..manifest.clone()
            };
            &sharded
        }
    };
    // Stage 1: plan. Everything that can be refused is refused here, before any work.
    let dirs = plugins::plugin_dirs(&manifest.plugin_dirs, &options.plugin_dirs);
    let registry = Registry::load_with(&dirs, manifest.allow_writable_plugins)?;
    for problem in &registry.problems {
        tracing::warn!("{problem}");
    }
    let methods = check_methods(manifest, &registry)?;
    let _lock = results::OutputLock::acquire(&manifest.output)?;
    let mut store = ResultStore::open(&manifest.output)?;
    store.check_writable()?;

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
    let n = train_set.len();
    let student_json = serde_json::to_value(&manifest.student).unwrap_or_default();
    let temperature = manifest.distillation.temperature;
    let data_hash = train_set.content_hash();
    let test_hash = key::sha256_hex(&test_set.content_hash());
    let dynamics_key = dynamics::cache::DynamicsKey::new(&manifest.dynamics, &data_hash);
    let teacher_keys = crate::teacher::content_keys(&manifest.teachers, &registry)?;
    let plugin_sha: Vec<String> = methods
        .iter()
        .map(plugin_sha256)
        .collect::<Result<_, _>>()?;
    let student_key = key::StudentKey::new(&manifest.student);
    let params_of: Vec<serde_json::Value> =
        methods.iter().map(|m| params_json(&m.params)).collect();
    let policy_of: Vec<String> = methods.iter().map(|m| m.policy.describe()).collect();
    let cell_key_of = |m: usize, keep: Keep, seed: u64, student: &Student| {
        let method = &methods[m];
        let reads_teacher = method
            .inputs
            .iter()
            .any(|i| matches!(i, InputName::SoftLabels | InputName::TeacherEmbedding))
            && !keep.is_full();
        let distils = student.choice.needs_teacher();
        let (teacher, input_teacher) = match student.teacher.filter(|_| distils) {
            Some(t) => (
                Some(teacher_keys[t].clone()),
                (reads_teacher && t != 0).then(|| teacher_keys[0].clone()),
            ),
            None => (reads_teacher.then(|| teacher_keys[0].clone()), None),
        };
        key::CellKey {
            method: method.spec.method.clone(),
            plugin_version: method.plugin.description.version.clone(),
            plugin_sha256: plugin_sha[m].clone(),
            params: params_of[m].clone(),
            policy: policy_of[m].clone(),
            keep: keep.get(),
            alpha: student.alpha.map(Alpha::get),
            temperature: distils.then(|| temperature.get()),
            teacher,
            input_teacher,
            alpha_rule: student.choice.rule().map(str::to_string),
            alpha_search: student
                .alpha
                .is_none()
                .then(|| manifest.distillation.auto.clone()),
            seed,
            train_data: key::sha256_hex(&data_hash),
            test_data: test_hash.clone(),
            dynamics: (method.uses_proxy() && !keep.is_full())
                .then(|| dynamics_key.as_str().to_string()),
            student: student_key.clone(),
        }
    };
    let key_of = |m: usize, keep: Keep, seed: u64, student: &Student| {
        cell_key_of(m, keep, seed, student).key()
    };
    // The students of one group: one per α = 0, one per (α > 0 or "auto", teacher).
    let students_at = || -> Vec<Student> {
        let mut all = Vec::new();
        for &choice in &manifest.distillation.alphas {
            let alpha = choice.fixed();
            if choice.needs_teacher() {
                all.extend((0..manifest.teachers.len()).map(|t| Student {
                    choice,
                    alpha,
                    teacher: Some(t),
                }));
            } else {
                all.push(Student {
                    choice,
                    alpha,
                    teacher: None,
                });
            }
        }
        all
    };
    // Every cell of this manifest, run now or before: what the report shows.
    let mut current = std::collections::HashSet::new();
    let mut cells = Vec::new();
    let mut skipped = 0;
    // Groups are numbered over the whole grid, so a shard's share does not depend on what is
    // done; a shard lists its share for `merge`.
    let mut group = 0;
    let mut share = Vec::new();
    for (m, method) in methods.iter().enumerate() {
        for &keep in &method.spec.keep {
            for &seed in &manifest.seeds {
                let g = group;
                group += 1;
                if options.shard.is_some_and(|s| !s.owns(g)) {
                    continue;
                }
                let all = students_at();
                let keys: Vec<String> = all.iter().map(|st| key_of(m, keep, seed, st)).collect();
                current.extend(keys.iter().cloned());
                let pending: Vec<Student> = all
                    .iter()
                    .zip(&keys)
                    .filter(|(_, k)| !store.is_done(k) && !done_before.contains(*k))
                    .map(|(st, _)| *st)
                    .collect();
                share.push(distributed::Group { group: g, keys });
                skipped += all.len() - pending.len();
                if !pending.is_empty() {
                    cells.push(Cell {
                        method: m,
                        keep,
                        seed,
                        pending,
                    });
                }
            }
        }
    }
    if let Some(shard) = options.shard {
        distributed::write_share(&manifest.output, shard, group, &share)?;
    }
    let scored = |c: &Cell| !c.keep.is_full();
    let mut needs = Needs::default();
    for cell in cells.iter().filter(|c| scored(c)) {
        for &name in &methods[cell.method].inputs {
            needs.add(name);
        }
    }
    check_dynamics_memory(manifest, &needs, &train_set)?;
    tracing::info!(cells = cells.len(), skipped, "cells planned");

    // Stage 2: inputs, each computed once.
    let distilling: Vec<bool> = (0..manifest.teachers.len())
        .map(|t| {
            cells
                .iter()
                .any(|c| c.pending.iter().any(|st| st.teacher == Some(t)))
        })
        .collect();
    let (needed, teacher_specs, training_teachers) =
        teachers_to_ready(manifest, &needs, &distilling, &train_set, &student_norm)?;
    let InputStage {
        mut teachers,
        inputs,
        mut time,
    } = input_stage(
        manifest,
        &teacher_specs,
        &needed,
        &registry,
        (&raw_train, &raw_test),
        &train_set,
        &needs,
    )?;
    time.teacher += training_teachers;
    let teacher_test_accuracy = teachers
        .first()
        .and_then(|t| t.as_ref())
        .map(|t| t.test_accuracy);
    // One bar over every student still to train, in examples × epochs (a cell at keep 0.5
    // weighs five times one at 0.1), so its time left holds across the whole grid.
    // An "auto" student weighs its search too.
    let auto_weight = 1.0 + manifest.distillation.auto.relative_cost();
    let work_of = |c: &Cell, st: &Student| {
        let one = (c.keep.budget(n) * manifest.student.epochs) as f64;
        (if st.alpha.is_none() {
            one * auto_weight
        } else {
            one
        }) as u64
    };
    let total_work: u64 = cells
        .iter()
        .flat_map(|c| c.pending.iter().map(move |st| (c, st)))
        .map(|(c, st)| work_of(c, st))
        .sum();
    let students_total: usize = cells.iter().map(|c| c.pending.len()).sum();
    let overall = crate::progress::bar(total_work, "cells");

    let mut shape = vec![n as u64];
    shape.extend(train_set.sample_shape.iter().map(|&s| s as u64));
    let plugin_data = PluginData {
        features: train_set.features.as_slice().unwrap_or(&[]),
        shape,
        labels: &train_set.labels,
        num_classes: train_set.num_classes,
    };
    // Budget-independent scores, once per (method, seed): scored for the largest budget, and
    // cached by content for other processes (shards, `kdprune score`, later runs).
    let mut shared_scores: HashMap<(usize, u64), Answer> = HashMap::new();
    let mut score_cache = score_cache::ScoreCache::new(&manifest.cache_dir, data_hash);
    let identities: Vec<serde_json::Value> = methods
        .iter()
        .zip(&plugin_sha)
        .map(|(m, sha)| plugin_identity(m, sha))
        .collect();
    let mut ran = 0;
    let mut failed = 0;
    for cell in &cells {
        let method = &methods[cell.method];
        let (keep, seed) = (cell.keep, cell.seed);
        let budget = keep.budget(n);
        // Stages 3 and 4: score and select.
        let kept: Vec<u32> = if keep.is_full() {
            (0..n as u32).collect()
        } else {
            let started = Instant::now();
            let views = inputs.views(&method.inputs);
            let scored_answer = if method.plugin.description.budget_independent {
                let largest = cells
                    .iter()
                    .filter(|c| c.method == cell.method && c.seed == seed && scored(c))
                    .map(|c| c.keep.budget(n))
                    .max()
                    .unwrap_or(budget);
                match shared_scores.get(&(cell.method, seed)) {
                    Some(a) => Ok(a.clone()),
                    None => score_cache
                        .scores(
                            cell.method,
                            &identities[cell.method],
                            seed,
                            &views,
                            n,
                            || {
                                method.plugin.score(
                                    &plugin_data,
                                    &views,
                                    &method.params,
                                    seed,
                                    largest,
                                )
                            },
                        )
                        .inspect(|a| {
                            shared_scores.insert((cell.method, seed), a.clone());
                        }),
                }
            } else {
                method
                    .plugin
                    .score(&plugin_data, &views, &method.params, seed, budget)
            };
            let answer = match (scored_answer, manifest.on_plugin_error) {
                (Ok(a), _) => a,
                (Err(e), OnPluginError::Stop) => return Err(e.into()),
                (Err(e), OnPluginError::Continue) => {
                    // Recorded and skipped; the run ends non-zero (RunSummary::failed).
                    tracing::error!("{e}; cell skipped (on_plugin_error = \"continue\")");
                    failures::record(
                        &manifest.output,
                        &method.spec.method,
                        keep.get(),
                        seed,
                        &e.to_string(),
                    )?;
                    failed += 1;
                    continue;
                }
            };
            time.scoring += started.elapsed().as_secs_f64();
            crate::select::kept_indices(
                &answer,
                budget,
                method.policy,
                method.plugin.description.high_is_hard,
                &train_set.labels,
                train_set.num_classes,
                keep.get() as f64,
                seed,
            )
        };
        let indices_rel = format!(
            "indices/{}_{}_keep{:.4}_seed{}.npy",
            method.spec.method,
            cell_key(&params_of[cell.method]).get(..6).unwrap_or(""),
            keep.get(),
            seed
        );
        results::write_npy_u32(&manifest.output.join(&indices_rel), &kept).map_err(|e| {
            Error::Io {
                path: manifest.output.join(&indices_rel),
                message: crate::io_message(&e),
            }
        })?;
        // Stage 5: train, one student per pending (α, teacher).
        let subset = train_set.subset(&kept);
        let kept_usize: Vec<usize> = kept.iter().map(|&i| i as usize).collect();
        for student in &cell.pending {
            let started = Instant::now();
            let ready = student.teacher.and_then(|t| teachers[t].as_mut());
            let teacher_subset = ready
                .as_ref()
                .map(|t| t.train.logits.select(ndarray::Axis(0), &kept_usize));
            let this_teacher_accuracy = ready.as_ref().map(|t| t.test_accuracy);
            // The whole set's scores (the α search) and the live model (online distillation).
            let (full_teacher, mut live_teacher) = match ready {
                Some(t) => (Some(&t.train.logits), t.live.as_mut()),
                None => (None, None),
            };
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
            let mut online: Option<train::OnlineTeacher<'_>> = online;
            let (alpha, trials) = match student.alpha {
                Some(alpha) => (alpha, None),
                None => {
                    overall.set_message(format!(
                        "{} keep {} α search",
                        method.spec.method,
                        keep.get()
                    ));
                    let full = TrainSet {
                        x: train_set.features.view(),
                        sample_shape: &train_set.sample_shape,
                        y: &train_set.labels,
                        teacher: full_teacher.map(|t| t.view()),
                        num_classes: train_set.num_classes,
                    };
                    let choice = train::alpha_search::search(
                        &manifest.student,
                        &full,
                        &kept_usize,
                        &manifest.distillation.auto,
                        temperature,
                        keep,
                        seed,
                        train::lend(&mut online),
                    )?;
                    tracing::info!(
                        method = %method.spec.method, keep = %keep.get(), seed,
                        alpha = %choice.alpha.get(),
                        trials = ?choice.trials.iter().map(|t| (t.alpha, t.holdout_accuracy)).collect::<Vec<_>>(),
                        "alpha = \"auto\": held-out search done"
                    );
                    (choice.alpha, Some(choice.trials))
                }
            };
            let kd = Kd { alpha, temperature };
            overall.set_message(format!(
                "{} keep {} α {}",
                method.spec.method,
                keep.get(),
                alpha.get()
            ));
            let (mut model, _logs) = train::train(&manifest.student, &set, kd, seed, online)?;
            if manifest.student.augment.online_teacher && alpha.needs_teacher() {
                tracing::info!(
                    teacher_seconds,
                    training_seconds = started.elapsed().as_secs_f64(),
                    "online distillation: time spent running the teacher"
                );
            }
            let accuracy = train::evaluate(&mut model, test_set.features.view(), &test_set.labels);
            let cell_key = cell_key_of(cell.method, keep, seed, student);
            let key = cell_key.key();
            if manifest.student.save {
                save_student(&model, &manifest.output, &key)?;
            }
            time.training += started.elapsed().as_secs_f64();
            // Stage 6: record.
            let result = CellResult {
                experiment: manifest.name.clone(),
                method: method.spec.method.clone(),
                params: params_of[cell.method].clone(),
                policy: policy_of[cell.method].clone(),
                keep: keep.get(),
                alpha: alpha.get(),
                alpha_rule: student.choice.rule().map(str::to_string),
                alpha_search: trials,
                temperature: temperature.get(),
                teacher: student
                    .teacher
                    .filter(|_| student.choice.needs_teacher())
                    .map(|t| manifest.teachers[t].name.clone()),
                seed,
                kept: kept.len(),
                train_size: n,
                test_accuracy: accuracy,
                teacher_test_accuracy: this_teacher_accuracy,
                // Milliseconds are all a cell's time means; more digits are noise in the logs.
                seconds: (started.elapsed().as_secs_f64() * 1e3).round() / 1e3,
                indices: indices_rel.clone(),
                student: student_json.clone(),
                key,
                config: cell_key.config(),
            };
            store.append(&result)?;
            ran += 1;
            overall.inc(work_of(cell, student));
            let left = overall.eta().as_secs_f64();
            tracing::info!(
                cell = %format!("{ran}/{students_total}"),
                method = %result.method, keep = %result.keep, alpha = %result.alpha,
                auto = result.alpha_rule.is_some(),
                teacher = result.teacher.as_deref().unwrap_or("-"), seed,
                kept = result.kept, accuracy = result.test_accuracy, seconds = result.seconds,
                left_seconds = left.round(),
                "cell done"
            );
        }
    }
    overall.finish_and_clear();
    time.total = run_started.elapsed().as_secs_f64();
    tracing::info!(
        total_seconds = time.total,
        teacher_seconds = time.teacher,
        dynamics_seconds = time.dynamics,
        scoring_seconds = time.scoring,
        training_seconds = time.training,
        "where the time went"
    );
    // Only this manifest's cells: results of other configurations in the same file stay
    // there, untouched, but are not reported beside these.
    let results: Vec<CellResult> = store
        .results()
        .iter()
        .filter(|r| current.contains(&r.key))
        .cloned()
        .collect();
    Ok(RunSummary {
        results,
        ran,
        skipped,
        results_path: store.path().to_path_buf(),
        teacher_test_accuracy,
        time,
        failed,
    })
}
