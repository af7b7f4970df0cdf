//! The grid runner: every cell (method × keep × α × seed) of a manifest, in stages — plan the
//! cells, compute the inputs the planned methods need (each once, through
//! [`crate::inputs`]), score (once per method and seed for budget-independent scores, cached
//! by content in `score_cache`),
//! select, train, record — with results appended as each cell ends and cells already in
//! `results.jsonl` skipped (resume).
//!
//! Owns the order of the work: [`run`] is the list of stages; `plan` checks what can
//! be refused before any work (every method exists, is a pruning method, takes the given
//! parameters, gets the inputs it asks for, and the dynamics fit in memory), `grid` lays out
//! the cells, `stages` and `cell` do the work.

mod cell;
mod check;
pub mod distributed;
mod failures;
mod grid;
mod key;
mod plan;
mod plan_stage;
mod score;
pub mod score_cache;
mod stages;

pub use check::{check, CheckReport};
pub use score::{score, KeptFile, MethodScores, ScoreOptions, ScoreSummary};

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use crate::manifest::Manifest;
use crate::plugins::PluginData;
use crate::results::{self, CellResult};
use crate::Error;
use cell::CellRunner;
pub(crate) use plan::normalise;
use plan::teachers_to_ready;
pub use plan::RunOptions;
use plan_stage::{plan_stage, PlanStage};
use score_cache::ScoreCache;
pub use stages::TimeSplit;
use stages::{input_stage, InputStage};

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

/// Runs every cell of `manifest` that is not yet in its results, as a list of stages: plan
/// (plugins, data, cells, inputs needed, memory), inputs (teachers, dynamics: each once),
/// then per cell group score → select → train → record.
pub fn run(manifest: &Manifest, options: &RunOptions) -> Result<RunSummary, Error> {
    let run_started = Instant::now();
    // Stage 1: plan. Everything that can be refused is refused here, before any work.
    let (manifest, done_before) = shard_view(manifest, options.shard)?;
    let manifest = manifest.as_ref();
    let registry = plan::load_registry(manifest, options)?;
    let PlanStage {
        methods,
        lock: _lock,
        mut store,
        data,
        keys,
        grid,
        needs,
    } = plan_stage(manifest, &registry, &done_before, options.shard)?;
    if let Some(shard) = options.shard {
        distributed::write_share(&manifest.output, shard, grid.groups, &grid.share)?;
    }
    tracing::info!(
        cells = grid.cells.len(),
        skipped = grid.skipped,
        "cells planned"
    );

    // Stage 2: inputs, each computed once.
    let distilling = grid.distilling(manifest.teachers.len());
    let (needed, teacher_specs, training_teachers) =
        teachers_to_ready(manifest, &needs, &distilling, &data.train, &data.norm)?;
    let InputStage {
        mut teachers,
        inputs,
        mut time,
    } = input_stage(
        manifest,
        &teacher_specs,
        &needed,
        &registry,
        (&data.raw_train, &data.raw_test),
        &data.train,
        &needs,
    )?;
    time.teacher += training_teachers;
    let teacher_test_accuracy = teachers
        .first()
        .and_then(|t| t.as_ref())
        .map(|t| t.test_accuracy);

    // Stages 3 to 6, cell group by cell group.
    let overall = crate::progress::work_bar(
        grid.work(manifest, data.train.len()),
        &format!("cell 1/{}", grid.students()),
    );
    let mut runner = CellRunner {
        manifest,
        methods: &methods,
        grid: &grid,
        keys: &keys,
        data: &data,
        plugin_data: PluginData::of(&data.train),
        inputs: &inputs,
        teachers: &mut teachers,
        store: &mut store,
        time: &mut time,
        overall: &overall,
        shared_scores: HashMap::new(),
        score_cache: ScoreCache::new(&manifest.cache_dir, keys.train_hash()),
        identities: keys.plugin_identities(&methods),
        ran: 0,
        failed: 0,
        student_json: serde_json::to_value(&manifest.student).unwrap_or_default(),
    };
    for cell in &grid.cells {
        runner.run(cell)?;
    }
    let (ran, failed) = (runner.ran, runner.failed);
    overall.finish_and_clear();
    time.total = run_started.elapsed().as_secs_f64();
    log_time(&time);
    Ok(RunSummary {
        // Only this manifest's cells: results of other configurations in the same file stay
        // there, untouched, but are not reported beside these.
        results: grid.results_in(&store),
        ran,
        skipped: grid.skipped,
        results_path: store.path().to_path_buf(),
        teacher_test_accuracy,
        time,
        failed,
    })
}

/// The manifest a run works on: itself, or for a shard the same with its output in the
/// shard's folder (its own lock and results); and the keys the main folder holds already,
/// which a shard leaves.
fn shard_view(
    manifest: &Manifest,
    shard: Option<crate::shard::Shard>,
) -> Result<(Cow<'_, Manifest>, HashSet<String>), Error> {
    let Some(shard) = shard else {
        return Ok((Cow::Borrowed(manifest), HashSet::new()));
    };
    let done_before = if manifest.output.join("results.jsonl").exists() {
        results::read(&manifest.output)?
            .into_iter()
            .map(|r| r.key)
            .collect()
    } else {
        HashSet::new()
    };
    let sharded = Manifest {
        output: distributed::shard_dir(&manifest.output, shard),
        ..manifest.clone()
    };
    Ok((Cow::Owned(sharded), done_before))
}

fn log_time(time: &TimeSplit) {
    tracing::info!(
        total_seconds = time.total,
        teacher_seconds = time.teacher,
        dynamics_seconds = time.dynamics,
        scoring_seconds = time.scoring,
        training_seconds = time.training,
        "where the time went"
    );
}
