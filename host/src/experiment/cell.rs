//! A cell group's work after the plan: score and select its kept subset (stages 3 and 4),
//! then train, evaluate and record one student per pending (α, teacher) (stages 5 and 6).

use std::collections::HashMap;
use std::time::Instant;

use super::failures;
use super::grid::{work_of, Cell, CellKeys, Grid, Student};
use super::plan::Method;
use super::score_cache::ScoreCache;
use super::stages::DataStage;
use super::stages::{save_student, ReadyTeacher, TimeSplit};
use crate::data::Dataset;
use crate::inputs::Inputs;
use crate::manifest::Manifest;
use crate::plugins::{OnPluginError, PluginData};
use crate::results::{self, CellResult, ResultStore};
use crate::select::Answer;
use crate::train::{self, Kd, TrainSet};
use crate::Error;

/// A group's kept subset, shared by its students.
struct Kept {
    /// `[K]` positions in the training set, sorted.
    indices: Vec<u32>,
    /// The same as `usize`, for selecting rows.
    positions: Vec<usize>,
    /// Rows `indices` of the student's view of the training set, `[K, D]`.
    subset: Dataset,
    /// Where `indices` were written, relative to the output folder.
    file: String,
}

/// What the α search of a cell reads.
#[derive(Clone, Copy)]
struct SearchContext<'a> {
    manifest: &'a Manifest,
    /// The method's name, for the progress bar and the log.
    method: &'a str,
    /// The student's view of the whole training set, `[N, D]`.
    train: &'a Dataset,
    overall: &'a indicatif::ProgressBar,
}

/// Everything the cells of a run read, and what they add to as they run.
pub(crate) struct CellRunner<'a, 'r> {
    pub(crate) manifest: &'a Manifest,
    pub(crate) methods: &'a [Method<'r>],
    pub(crate) grid: &'a Grid,
    pub(crate) keys: &'a CellKeys,
    /// The data; students read its normalised views.
    pub(crate) data: &'a DataStage,
    /// The student's view of the training set as plugins see it.
    pub(crate) plugin_data: PluginData<'a>,
    pub(crate) inputs: &'a Inputs,
    pub(crate) teachers: &'a mut [Option<ReadyTeacher<'r>>],
    pub(crate) store: &'a mut ResultStore,
    pub(crate) time: &'a mut TimeSplit,
    pub(crate) overall: &'a indicatif::ProgressBar,
    /// Budget-independent scores, once per (method, seed), also cached by content for other
    /// processes (shards, `kdprune score`, later runs).
    pub(crate) shared_scores: HashMap<(usize, u64), Answer>,
    pub(crate) score_cache: ScoreCache<'a>,
    pub(crate) identities: Vec<serde_json::Value>,
    pub(crate) ran: usize,
    pub(crate) failed: usize,
    /// `[student]` as results record it.
    pub(crate) student_json: serde_json::Value,
}

impl CellRunner<'_, '_> {
    /// Stages 3 to 6 for one group: its kept indices, then each pending student. A plugin
    /// failure under `on_plugin_error = "continue"` is recorded and the group skipped.
    pub(crate) fn run(&mut self, cell: &Cell) -> Result<(), Error> {
        let Some(indices) = self.select(cell)? else {
            return Ok(());
        };
        let kept = Kept {
            file: self.write_indices(cell, &indices)?,
            positions: indices.iter().map(|&i| i as usize).collect(),
            subset: self.data.train.subset(&indices),
            indices,
        };
        for student in &cell.pending {
            let result = self.train_student(cell, student, &kept)?;
            self.store.append(&result)?;
            self.ran += 1;
            self.overall
                .inc(work_of(self.manifest, self.data.train.len(), cell, student));
            let left = self.overall.eta().as_secs_f64();
            tracing::info!(
                cell = %format!("{}/{}", self.ran, self.grid.students()),
                method = %result.method, keep = %result.keep, alpha = %result.alpha,
                auto = result.alpha_rule.is_some(),
                teacher = result.teacher.as_deref().unwrap_or("-"), seed = result.seed,
                kept = result.kept, accuracy = result.test_accuracy, seconds = result.seconds,
                left_seconds = left.round(),
                "cell done"
            );
        }
        Ok(())
    }

    /// Stages 3 and 4: the group's kept indices `[K]`, sorted; `None` when its plugin failed
    /// and the run goes on.
    fn select(&mut self, cell: &Cell) -> Result<Option<Vec<u32>>, Error> {
        let n = self.data.train.len();
        if !cell.is_scored() {
            return Ok(Some((0..n as u32).collect()));
        }
        let started = Instant::now();
        let answer = match (self.score(cell), self.manifest.on_plugin_error) {
            (Ok(a), _) => a,
            (Err(e), OnPluginError::Stop) => return Err(e.into()),
            (Err(e), OnPluginError::Continue) => {
                // Recorded and skipped; the run ends non-zero (RunSummary::failed).
                tracing::error!("{e}; cell skipped (on_plugin_error = \"continue\")");
                let method = &self.methods[cell.method];
                failures::record(
                    &self.manifest.output,
                    &method.spec.method,
                    cell.keep.get(),
                    cell.seed,
                    &e.to_string(),
                )?;
                self.failed += 1;
                return Ok(None);
            }
        };
        self.time.scoring += started.elapsed().as_secs_f64();
        let method = &self.methods[cell.method];
        let data = self.data;
        let train = &data.train;
        Ok(Some(crate::select::kept_indices(
            &answer,
            cell.keep.budget(n),
            method.policy,
            method.plugin.description.high_is_hard,
            &train.labels,
            train.num_classes,
            cell.keep.get() as f64,
            cell.seed,
        )))
    }

    /// The plugin's answer for the group: budget-independent scores once per (method, seed),
    /// scored for the largest budget; otherwise scored for this budget.
    fn score(&mut self, cell: &Cell) -> Result<Answer, crate::plugins::PluginError> {
        let data = self.data;
        let train = &data.train;
        let n = train.len();
        let method = &self.methods[cell.method];
        let budget = cell.keep.budget(n);
        let views = self.inputs.views(&method.inputs);
        let plugin_data = &self.plugin_data;
        let seed = cell.seed;
        if !method.budget_independent {
            return method
                .plugin
                .score(plugin_data, &views, &method.params, seed, budget);
        }
        if let Some(a) = self.shared_scores.get(&(cell.method, seed)) {
            return Ok(a.clone());
        }
        let largest = self
            .grid
            .largest_budget(cell.method, seed, n)
            .unwrap_or(budget);
        let compute = || {
            method
                .plugin
                .score(plugin_data, &views, &method.params, seed, largest)
        };
        let answer = if method.cache_scores {
            let identity = &self.identities[cell.method];
            self.score_cache
                .scores(cell.method, identity, seed, &views, n, compute)?
        } else {
            compute()?
        };
        self.shared_scores
            .insert((cell.method, seed), answer.clone());
        Ok(answer)
    }

    /// Writes the kept indices as `indices/<method>_<params>_keep<k>_seed<s>.npy`; returns
    /// that path, relative to the output folder.
    fn write_indices(&self, cell: &Cell, kept: &[u32]) -> Result<String, Error> {
        let method = &self.methods[cell.method];
        let rel = format!(
            "indices/{}_{}_keep{}_seed{}.npy",
            method.spec.method,
            self.keys.selection_tag(self.methods, cell.method),
            cell.keep.in_full(),
            cell.seed
        );
        let path = self.manifest.output.join(&rel);
        results::write_npy_u32(&path, kept).map_err(|e| Error::Io {
            path,
            message: crate::io_message(&e),
        })?;
        Ok(rel)
    }

    /// `alpha = "auto"`: the held-out search of [`train::alpha_search`] for the group's
    /// kept examples `kept` (positions in the training set), with the teacher's scores on the
    /// whole set `full_teacher` (`[N, C]`).
    fn search_alpha(
        search: SearchContext<'_>,
        cell: &Cell,
        kept: &[usize],
        full_teacher: Option<&ndarray::Array2<f32>>,
        online: &mut Option<train::OnlineTeacher<'_>>,
    ) -> Result<train::alpha_search::Choice, Error> {
        let SearchContext {
            manifest,
            method,
            train: train_set,
            overall,
        } = search;
        let (keep, seed) = (cell.keep, cell.seed);
        overall.set_message(format!("{method} keep {} α search", keep.get()));
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
            kept,
            &manifest.distillation.auto,
            manifest.distillation.temperature,
            keep,
            seed,
            train::lend(online),
        )?;
        tracing::info!(
            method = %method, keep = %keep.get(), seed,
            alpha = %choice.alpha.get(),
            trials = ?choice.trials.iter().map(|t| (t.alpha, t.holdout_accuracy)).collect::<Vec<_>>(),
            "alpha = \"auto\": held-out search done"
        );
        Ok(choice)
    }

    /// Stage 5 and the record of stage 6: one student on the group's kept subset, its α
    /// searched for when `"auto"`, evaluated on the test set.
    fn train_student(
        &mut self,
        cell: &Cell,
        student: &Student,
        kept: &Kept,
    ) -> Result<CellResult, Error> {
        let started = Instant::now();
        let manifest = self.manifest;
        let method = &self.methods[cell.method];
        let (keep, seed) = (cell.keep, cell.seed);
        let subset = &kept.subset;
        let temperature = manifest.distillation.temperature;
        let search = SearchContext {
            manifest,
            method: &method.spec.method,
            train: &self.data.train,
            overall: self.overall,
        };
        let ready = student.teacher.and_then(|t| self.teachers[t].as_mut());
        let teacher_subset = ready
            .as_ref()
            .map(|t| t.train.logits.select(ndarray::Axis(0), &kept.positions));
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
        let norm = &self.data.norm;
        let mut teacher_seconds = 0.0f64;
        let mut online = |batch: ndarray::ArrayView2<'_, f32>| {
            let started = Instant::now();
            let raw = norm.invert(batch);
            let scores = live_teacher
                .as_mut()
                .ok_or_else(|| "no teacher".to_string())?
                .batch_scores(raw.view(), &sample_shape, num_classes)
                .map_err(|e| e.to_string());
            teacher_seconds += started.elapsed().as_secs_f64();
            scores
        };
        let mut online: Option<train::OnlineTeacher<'_>> = manifest
            .student
            .augment
            .online_teacher
            .then_some(&mut online);
        let (alpha, trials) = match student.alpha {
            Some(alpha) => (alpha, None),
            None => {
                let choice =
                    Self::search_alpha(search, cell, &kept.positions, full_teacher, &mut online)?;
                (choice.alpha, Some(choice.trials))
            }
        };
        let kd = Kd { alpha, temperature };
        self.overall.set_message(format!(
            "cell {}/{}: {} keep {} α {}",
            self.ran + 1,
            self.grid.students(),
            method.spec.method,
            keep.get(),
            alpha.get()
        ));
        let (mut model, logs) = train::train(&manifest.student, &set, kd, seed, online)?;
        if manifest.student.augment.online_teacher && alpha.needs_teacher() {
            tracing::info!(
                teacher_seconds,
                training_seconds = started.elapsed().as_secs_f64(),
                "online distillation: time spent running the teacher"
            );
        }
        let test = &self.data.test;
        let accuracy = train::evaluate(&mut model, test.features.view(), &test.labels);
        let cell_key = self
            .keys
            .of(manifest, self.methods, (cell.method, keep, seed), student);
        let key = cell_key.key();
        if manifest.student.save {
            save_student(&model, &manifest.output, &key)?;
        }
        self.time.training += started.elapsed().as_secs_f64();
        Ok(CellResult {
            experiment: manifest.name.clone(),
            method: method.spec.method.clone(),
            params: self.keys.params[cell.method].clone(),
            policy: self.keys.policies[cell.method].clone(),
            policy_params: method.policy.chosen_params(keep.get() as f64),
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
            kept: kept.indices.len(),
            examples_seen: train::fit::examples_seen(&manifest.student, &logs),
            train_size: self.data.train.len(),
            test_accuracy: accuracy,
            teacher_test_accuracy: this_teacher_accuracy,
            // Milliseconds are all a cell's time means; more digits are noise in the logs.
            seconds: (started.elapsed().as_secs_f64() * 1e3).round() / 1e3,
            indices: kept.file.clone(),
            student: self.student_json.clone(),
            key,
            config: cell_key.config(),
        })
    }
}
