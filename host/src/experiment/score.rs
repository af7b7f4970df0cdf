//! `kdprune score`: every method's scores and kept indices, without training students — the
//! path for users who train elsewhere (PyTorch). Runs the plan and inputs stages of
//! [`super::run`], then scores and selects each (method, seed, keep) and writes, under
//! `<output>/scores/`:
//! - `<method>_<params>_seed<s>.scores.npy`: f32 `[N]`, for methods that return scores (one
//!   per keep, `..._keep<k>_seed<s>.scores.npy`, when they depend on the budget);
//! - `<method>_<params>_keep<k>_seed<s>.npy`: the kept indices, u32 `[K]`, sorted;
//! - `teachers/<name>.{train,test}.npy`: each teacher's log-probabilities, f32 `[N, C]`;
//! - with `--export-dynamics`, `dynamics/**.npy` and `embeddings/proxy.npy`: the proxy inputs
//!   the methods read, in the layout `[dynamics] from` reads ([`crate::dynamics::import`]);
//! - `summary.json`: what each file is (method, parameters, policy, what a high score means).

use std::path::PathBuf;
use std::time::Instant;

use kdprune_plugin_api::Tensor;
use serde::Serialize;

use super::plan::{
    check_dynamics_memory, check_methods, load_registry, needs_of, params_json, plugin_code,
    plugin_identity, teachers_to_ready, Method, RunOptions,
};
use super::score_cache::ScoreCache;
use super::stages::{input_stage, load_data, TimeSplit};
use crate::data::Dataset;
use crate::hash::json_digest;
use crate::manifest::Manifest;
use crate::plugins::PluginData;
use crate::select::{kept_indices, Answer};
use crate::Error;

/// The kept indices of one keep fraction.
#[derive(Debug, Clone, Serialize)]
pub struct KeptFile {
    pub keep: f32,
    /// The parameters the policy chose at this keep (CCS's β and bins), when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_params: Option<serde_json::Value>,
    pub kept: usize,
    /// Relative to the output folder.
    pub indices: String,
    /// The scores this keep was selected from, when the method scores per budget.
    pub scores: Option<String>,
}

/// One (method, seed) of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct MethodScores {
    pub method: String,
    pub version: String,
    pub params: serde_json::Value,
    pub policy: String,
    pub seed: u64,
    /// `true`: a high score means hard; `None` for methods that return subsets.
    pub high_is_hard: Option<bool>,
    pub score_meaning: String,
    /// The scores (f32 `[N]`), relative to the output folder, for budget-independent methods.
    pub scores: Option<String>,
    pub keeps: Vec<KeptFile>,
    pub seconds: f64,
}

/// A teacher's outputs, written for a training loop of the user's.
#[derive(Debug, Clone, Serialize)]
pub struct TeacherOutputs {
    pub name: String,
    /// f32 `[N, C]` on the training set, relative to the output folder.
    pub train: String,
    /// f32 `[M, C]` on the test set.
    pub test: String,
    /// What the files hold.
    pub values: &'static str,
    /// The rows' order.
    pub rows: &'static str,
    /// What the teacher's raw outputs were read as (`logits`, `probabilities`, ...).
    pub output_kind: crate::teacher::spec::OutputKind,
    /// The manifest's τ: a loss like kdprune's uses `softmax(values / temperature)`.
    pub temperature: f32,
    pub test_accuracy: f64,
}

/// The proxy inputs `--export-dynamics` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedDynamics {
    /// The folder, relative to the output folder: `[dynamics] from = "<output>/<folder>"`.
    pub folder: String,
    /// The files, relative to the output folder.
    pub files: Vec<String>,
    pub layout: &'static str,
}

/// What `kdprune score` does beyond scoring.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScoreOptions {
    /// Write the proxy inputs the methods read (`--export-dynamics`).
    pub export_dynamics: bool,
}

/// What `kdprune score` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreSummary {
    pub experiment: String,
    pub train_size: usize,
    pub num_classes: usize,
    /// Every teacher's outputs.
    pub teachers: Vec<TeacherOutputs>,
    /// The proxy inputs written with `--export-dynamics` (relative to the output folder),
    /// a folder `[dynamics] from` reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamics: Option<ExportedDynamics>,
    pub methods: Vec<MethodScores>,
    pub time: TimeSplit,
    #[serde(skip)]
    pub summary_path: PathBuf,
}

fn io_error(path: PathBuf) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Io {
        path,
        message: crate::io_message(&e),
    }
}

/// Scores and selects every method of `manifest` at every keep and seed.
pub fn score(
    manifest: &Manifest,
    options: &RunOptions,
    score_options: ScoreOptions,
) -> Result<ScoreSummary, Error> {
    let registry = load_registry(manifest, options)?;
    let methods = check_methods(manifest, &registry)?;
    let _lock = crate::results::OutputLock::acquire(&manifest.output)?;
    let data = load_data(manifest)?;
    let train_set = &data.train;
    super::plan::refuse_empty_keeps(manifest, &methods, train_set.len())?;
    let needs = needs_of(&methods);
    super::plan::check_training_memory(manifest, &needs, train_set)?;
    check_dynamics_memory(manifest, &needs, train_set)?;
    // Every teacher, so that its outputs are written for the user's own training loop.
    let (needed, teachers, training_teachers) = teachers_to_ready(
        manifest,
        &needs,
        &vec![true; manifest.teachers.len()],
        train_set,
        &data.norm,
    )?;
    let stage = input_stage(
        manifest,
        &teachers,
        &needed,
        &registry,
        (&data.raw_train, &data.raw_test),
        train_set,
        &needs,
    )?;
    let mut time = stage.time;
    time.teacher += training_teachers;
    let teacher_outputs = write_teachers(manifest, &stage.teachers)?;
    let dynamics = if score_options.export_dynamics {
        Some(export_dynamics(manifest, &stage.inputs)?)
    } else {
        None
    };
    let mut scorer = Scorer {
        manifest,
        train: train_set,
        plugin_data: PluginData::of(train_set),
        cache: ScoreCache::new(&manifest.cache_dir, train_set.content_hash()),
    };
    let mut summary = Vec::new();
    let bar = crate::progress::bar((methods.len() * manifest.seeds.len()) as u64, "scoring");
    for (m, method) in methods.iter().enumerate() {
        let prepared = Prepared::new(m, method, stage.inputs.views(&method.inputs), train_set)?;
        for &seed in &manifest.seeds {
            bar.set_message(format!("{} seed {seed}", method.spec.method));
            let entry = scorer.method_at_seed(&prepared, seed)?;
            time.scoring += entry.seconds;
            tracing::info!(method = %entry.method, seed, seconds = entry.seconds, "scored");
            summary.push(entry);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let dir = manifest.output.join("scores");
    let result = ScoreSummary {
        experiment: manifest.name.clone(),
        train_size: train_set.len(),
        num_classes: train_set.num_classes,
        teachers: teacher_outputs,
        dynamics,
        methods: summary,
        time,
        summary_path: dir.join("summary.json"),
    };
    write_summary(&dir, &result)?;
    Ok(result)
}

/// Writes each ready teacher's log-probabilities on the training and test sets as
/// `<output>/scores/teachers/<name>.{train,test}.npy`.
fn write_teachers(
    manifest: &Manifest,
    ready: &[Option<super::stages::ReadyTeacher<'_>>],
) -> Result<Vec<TeacherOutputs>, Error> {
    let mut written = Vec::new();
    for (spec, teacher) in manifest.teachers.iter().zip(ready) {
        let Some(teacher) = teacher else { continue };
        let file = |set: &str, logits: &crate::teacher::TeacherLogits| {
            let rel = format!("scores/teachers/{}.{set}.npy", spec.name);
            let path = manifest.output.join(&rel);
            crate::results::write_npy_f32_2d(&path, &logits.log_probabilities().view())
                .map_err(io_error(path))?;
            Ok::<String, Error>(rel)
        };
        written.push(TeacherOutputs {
            name: spec.name.clone(),
            train: file("train", &teacher.train)?,
            test: file("test", &teacher.test)?,
            values: "log-probabilities at τ = 1 (log_softmax of the teacher's outputs), float32 [N, C]; the soft label at τ is softmax(values / τ)",
            rows: "the training set's examples in the order kdprune numbers them (the data as loaded, after any holdout split: what indices/*.npy and scores/*.npy index); the test set's likewise",
            output_kind: teacher.train.kind,
            temperature: manifest.distillation.temperature.get(),
            test_accuracy: teacher.test_accuracy,
        });
    }
    Ok(written)
}

/// Writes every proxy input of `inputs` under `<output>/scores/` as `<name>.npy`, the layout
/// `[dynamics] from` reads: f16 records widened to f32 (exactly, so reading them back gives
/// the same records bit for bit), `correct` as u8.
fn export_dynamics(
    manifest: &Manifest,
    inputs: &crate::inputs::Inputs,
) -> Result<ExportedDynamics, Error> {
    use crate::inputs::{InputKind, InputName};
    use crate::tensor::Elements;
    let mut files = Vec::new();
    for name in InputName::all() {
        let Some(tensor) = inputs.get(name).filter(|_| name.kind() == InputKind::Proxy) else {
            continue;
        };
        let rel = format!("scores/{name}.npy");
        let path = manifest.output.join(&rel);
        let shape: Vec<usize> = tensor.shape().iter().map(|&d| d as usize).collect();
        let written = match tensor.elements() {
            Elements::U8(v) => crate::results::write_npy_nd(&path, &shape, v),
            other => crate::results::write_npy_nd(&path, &shape, &other.to_f32()),
        };
        written.map_err(io_error(path))?;
        files.push(rel);
    }
    Ok(ExportedDynamics {
        folder: "scores".into(),
        files,
        layout: crate::dynamics::import::Layout::Kdprune.as_str(),
    })
}

/// What scoring a method reads.
struct Scorer<'a> {
    manifest: &'a Manifest,
    /// The student's view of the training set, `[N, D]`.
    train: &'a Dataset,
    plugin_data: PluginData<'a>,
    cache: ScoreCache<'a>,
}

/// What scoring a method needs at every seed, made once per method.
struct Prepared<'m, 'r> {
    /// The method's index in the plan, and the method.
    m: usize,
    method: &'m Method<'r>,
    /// What the score cache keys its scores by.
    identity: serde_json::Value,
    params: serde_json::Value,
    /// `<method>_<6 hex digits of the parameters>`, the start of its files' names.
    tag: String,
    /// The inputs it asked for.
    views: Vec<Tensor<'m>>,
    /// The largest of its budgets, what a budget-independent method is scored for.
    largest: usize,
}

impl<'m, 'r> Prepared<'m, 'r> {
    fn new(
        m: usize,
        method: &'m Method<'r>,
        views: Vec<Tensor<'m>>,
        train: &Dataset,
    ) -> Result<Self, Error> {
        let n = train.len();
        let params = params_json(&method.params);
        Ok(Self {
            m,
            method,
            identity: plugin_identity(method, &plugin_code(method)?),
            tag: format!(
                "{}_{}",
                method.spec.method,
                json_digest(&params).get(..6).unwrap_or("")
            ),
            params,
            views,
            largest: method
                .spec
                .keep
                .iter()
                .map(|k| k.budget(n))
                .max()
                .unwrap_or(n),
        })
    }
}

impl Scorer<'_> {
    /// One method at one seed: its scores (once, when they do not depend on the budget; else
    /// once per keep) and kept indices at every keep, written under `scores/`.
    fn method_at_seed(
        &mut self,
        prepared: &Prepared<'_, '_>,
        seed: u64,
    ) -> Result<MethodScores, Error> {
        let started = Instant::now();
        let n = self.train.len();
        let Prepared {
            m,
            method,
            identity,
            params,
            tag,
            views,
            largest,
        } = prepared;
        let (m, largest) = (*m, *largest);
        let description = &method.plugin.description;
        let mut entry = MethodScores {
            method: method.spec.method.clone(),
            version: description.version.clone(),
            params: params.clone(),
            policy: method.policy.describe(),
            seed,
            high_is_hard: None,
            score_meaning: description.score_meaning.clone(),
            scores: None,
            keeps: Vec::new(),
            seconds: 0.0,
        };
        let plugin_data = &self.plugin_data;
        let compute = || {
            method
                .plugin
                .score(plugin_data, views, &method.params, seed, largest)
        };
        let shared = match (method.budget_independent, method.cache_scores) {
            (true, true) => Some(self.cache.scores(m, identity, seed, views, n, compute)?),
            (true, false) => Some(compute()?),
            (false, _) => None,
        };
        if let Some(Answer::Scores(values)) = &shared {
            entry.scores = Some(self.write_f32(&format!("{tag}_seed{seed}.scores.npy"), values)?);
            entry.high_is_hard = Some(description.high_is_hard);
        }
        for &keep in &method.spec.keep {
            let budget = keep.budget(n);
            let answer = match &shared {
                Some(a) => a.clone(),
                None => method
                    .plugin
                    .score(plugin_data, views, &method.params, seed, budget)?,
            };
            let mut per_keep_scores = None;
            if let (None, Answer::Scores(values)) = (&shared, &answer) {
                let name = format!("{tag}_keep{}_seed{seed}.scores.npy", keep.in_full());
                per_keep_scores = Some(self.write_f32(&name, values)?);
                entry.high_is_hard = Some(description.high_is_hard);
            }
            let kept = kept_indices(
                &answer,
                budget,
                method.policy,
                description.high_is_hard,
                &self.train.labels,
                self.train.num_classes,
                keep.get() as f64,
                seed,
            );
            let rel = format!("scores/{tag}_keep{}_seed{seed}.npy", keep.in_full());
            let path = self.manifest.output.join(&rel);
            crate::results::write_npy_u32(&path, &kept).map_err(io_error(path))?;
            entry.keeps.push(KeptFile {
                keep: keep.get(),
                policy_params: method.policy.chosen_params(keep.get() as f64),
                kept: kept.len(),
                indices: rel,
                scores: per_keep_scores,
            });
        }
        entry.seconds = started.elapsed().as_secs_f64();
        Ok(entry)
    }

    /// Writes `values` (`[N]`) as `scores/<name>`; returns that path, relative to the output
    /// folder.
    fn write_f32(&self, name: &str, values: &[f32]) -> Result<String, Error> {
        let rel = format!("scores/{name}");
        let path = self.manifest.output.join(&rel);
        crate::results::write_npy_f32(&path, values).map_err(io_error(path))?;
        Ok(rel)
    }
}

/// Writes `summary.json` in `dir` whole or not at all (through a temporary file).
fn write_summary(dir: &std::path::Path, result: &ScoreSummary) -> Result<(), Error> {
    let mut value = serde_json::to_value(result).unwrap_or_default();
    crate::results::tidy_floats(&mut value);
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    std::fs::create_dir_all(dir).map_err(io_error(dir.to_path_buf()))?;
    let tmp = dir.join("summary.json.tmp");
    std::fs::write(&tmp, text).map_err(io_error(tmp.clone()))?;
    std::fs::rename(&tmp, &result.summary_path).map_err(io_error(result.summary_path.clone()))
}
