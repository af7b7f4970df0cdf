//! `kdprune score`: every method's scores and kept indices, without training students — the
//! path for users who train elsewhere (PyTorch). Runs the plan and inputs stages of
//! [`super::run`], then scores and selects each (method, seed, keep) and writes, under
//! `<output>/scores/`:
//! - `<method>_<params>_seed<s>.scores.npy`: f32 `[N]`, for methods that return scores (one
//!   per keep, `..._keep<k>_seed<s>.scores.npy`, when they depend on the budget);
//! - `<method>_<params>_keep<k>_seed<s>.npy`: the kept indices, u32 `[K]`, sorted;
//! - `summary.json`: what each file is (method, parameters, policy, what a high score means).

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::plan::{check_methods, normalise, params_json, RunOptions};
use super::stages::{cell_key, input_stage, TimeSplit};
use crate::data;
use crate::inputs::Needs;
use crate::manifest::Manifest;
use crate::plugins::{self, PluginData, Registry};
use crate::select::{kept_indices, Answer};
use crate::Error;

/// The kept indices of one keep fraction.
#[derive(Debug, Clone, Serialize)]
pub struct KeptFile {
    pub keep: f32,
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

/// What `kdprune score` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreSummary {
    pub experiment: String,
    pub train_size: usize,
    pub num_classes: usize,
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
pub fn score(manifest: &Manifest, options: &RunOptions) -> Result<ScoreSummary, Error> {
    let dirs = plugins::plugin_dirs(&manifest.plugin_dirs, &options.plugin_dirs);
    let registry = Registry::load_with(&dirs, manifest.allow_writable_plugins)?;
    for problem in &registry.problems {
        tracing::warn!("{problem}");
    }
    let methods = check_methods(manifest, &registry)?;
    let _lock = crate::results::OutputLock::acquire(&manifest.output)?;
    let (raw_train, raw_test) = data::load(&manifest.data, manifest.seeds[0])?;
    let (train_set, _, student_norm) = normalise(&manifest.data.normalise, &raw_train, &raw_test)?;
    let n = train_set.len();
    let mut needs = Needs::default();
    for method in &methods {
        for &name in &method.inputs {
            needs.add(name);
        }
    }
    super::plan::check_dynamics_memory(manifest, &needs, &train_set)?;
    let (needed, teachers, training_teachers) = super::plan::teachers_to_ready(
        manifest,
        &needs,
        &vec![false; manifest.teachers.len()],
        &train_set,
        &student_norm,
    )?;
    let stage = input_stage(
        manifest,
        &teachers,
        &needed,
        &registry,
        (&raw_train, &raw_test),
        &train_set,
        &needs,
    )?;
    let mut time = stage.time;
    time.teacher += training_teachers;
    let mut shape = vec![n as u64];
    shape.extend(train_set.sample_shape.iter().map(|&s| s as u64));
    let plugin_data = PluginData {
        features: train_set.features.as_slice().unwrap_or(&[]),
        shape,
        labels: &train_set.labels,
        num_classes: train_set.num_classes,
    };
    let dir = manifest.output.join("scores");
    let mut summary = Vec::new();
    let mut score_cache =
        super::score_cache::ScoreCache::new(&manifest.cache_dir, train_set.content_hash());
    let bar = crate::progress::bar((methods.len() * manifest.seeds.len()) as u64, "scoring");
    for (m, method) in methods.iter().enumerate() {
        let params = params_json(&method.params);
        let tag = format!(
            "{}_{}",
            method.spec.method,
            cell_key(&params).get(..6).unwrap_or("")
        );
        let description = &method.plugin.description;
        let views = stage.inputs.views(&method.inputs);
        let identity = super::plan::plugin_identity(method, &super::plan::plugin_sha256(method)?);
        for &seed in &manifest.seeds {
            bar.set_message(format!("{} seed {seed}", method.spec.method));
            let started = Instant::now();
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
            let largest = method
                .spec
                .keep
                .iter()
                .map(|k| k.budget(n))
                .max()
                .unwrap_or(n);
            let shared = if description.budget_independent {
                Some(score_cache.scores(m, &identity, seed, &views, n, || {
                    method
                        .plugin
                        .score(&plugin_data, &views, &method.params, seed, largest)
                })?)
            } else {
                None
            };
            if let Some(Answer::Scores(values)) = &shared {
                let rel = format!("scores/{tag}_seed{seed}.scores.npy");
                crate::results::write_npy_f32(&manifest.output.join(&rel), values)
                    .map_err(io_error(manifest.output.join(&rel)))?;
                entry.scores = Some(rel);
                entry.high_is_hard = Some(description.high_is_hard);
            }
            for &keep in &method.spec.keep {
                let budget = keep.budget(n);
                let answer = match &shared {
                    Some(a) => a.clone(),
                    None => {
                        method
                            .plugin
                            .score(&plugin_data, &views, &method.params, seed, budget)?
                    }
                };
                let mut per_keep_scores = None;
                if let (None, Answer::Scores(values)) = (&shared, &answer) {
                    let rel = format!("scores/{tag}_keep{:.4}_seed{seed}.scores.npy", keep.get());
                    crate::results::write_npy_f32(&manifest.output.join(&rel), values)
                        .map_err(io_error(manifest.output.join(&rel)))?;
                    per_keep_scores = Some(rel);
                    entry.high_is_hard = Some(description.high_is_hard);
                }
                let kept = kept_indices(
                    &answer,
                    budget,
                    method.policy,
                    description.high_is_hard,
                    &train_set.labels,
                    train_set.num_classes,
                    keep.get() as f64,
                    seed,
                );
                let rel = format!("scores/{tag}_keep{:.4}_seed{seed}.npy", keep.get());
                crate::results::write_npy_u32(&manifest.output.join(&rel), &kept)
                    .map_err(io_error(manifest.output.join(&rel)))?;
                entry.keeps.push(KeptFile {
                    keep: keep.get(),
                    kept: kept.len(),
                    indices: rel,
                    scores: per_keep_scores,
                });
            }
            entry.seconds = started.elapsed().as_secs_f64();
            time.scoring += entry.seconds;
            tracing::info!(method = %entry.method, seed, seconds = entry.seconds, "scored");
            summary.push(entry);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let result = ScoreSummary {
        experiment: manifest.name.clone(),
        train_size: n,
        num_classes: train_set.num_classes,
        methods: summary,
        time,
        summary_path: dir.join("summary.json"),
    };
    let mut value = serde_json::to_value(&result).unwrap_or_default();
    crate::results::tidy_floats(&mut value);
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    std::fs::create_dir_all(&dir).map_err(io_error(dir.clone()))?;
    let tmp = dir.join("summary.json.tmp");
    std::fs::write(&tmp, text).map_err(io_error(tmp.clone()))?;
    std::fs::rename(&tmp, &result.summary_path).map_err(io_error(result.summary_path.clone()))?;
    Ok(result)
}
