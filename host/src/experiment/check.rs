//! `kdprune check`: everything `run` refuses before training, without training, running the
//! teacher over the data or recording dynamics — the plugins (found, loaded, of the right
//! kind, parameters and inputs), the policies, the data files (read and validated in full),
//! the teacher (opened by ONNX Runtime: input, output, classes against the data; the embedding
//! tensor exists), the dynamics' memory, and the output folder (writable, not in use).

use std::io::Write;

use std::collections::HashSet;

use super::plan::{load_registry, needed_teachers, params_json, Method, RunOptions};
use super::plan_stage::plan_stage;
use super::stages::DataStage;
use crate::manifest::Manifest;
use crate::plugins::Registry;
use crate::Error;

/// What `check` found, for the user to read.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// One line each: what was checked and the settings it resolved to.
    pub lines: Vec<String>,
    /// The same as structured fields (`--json`): `warnings`, `methods`, `data`, `cells`,
    /// `training_estimate_seconds`, `teachers`, `settings`, `output`.
    pub facts: serde_json::Value,
}

/// Checks `manifest` as `run` would before its first cell: `run`'s stage 1 itself
/// ([`plan_stage`]), then the teachers `run` would make ready, opened.
pub fn check(manifest: &Manifest, options: &RunOptions) -> Result<CheckReport, Error> {
    let mut lines = Vec::new();
    let registry = load_registry(manifest, options)?;
    let mut warnings: Vec<String> = registry.problems.iter().map(|p| p.to_string()).collect();
    if manifest.student.precision == crate::train::kernels::gemm::Precision::Bf16 {
        warnings.extend(crate::train::kernels::gemm_bf16::slower_warning());
    }
    let plan = plan_stage(manifest, &registry, &HashSet::new(), None)?;
    lines.extend(plan.methods.iter().map(method_line));
    let raw_train = &plan.data.raw_train;
    lines.push(format!(
        "data: {} training and {} test examples of shape {:?}, {} classes",
        raw_train.len(),
        plan.data.raw_test.len(),
        raw_train.sample_shape,
        raw_train.num_classes
    ));
    lines.push(format!(
        "cells: {} student(s) to train in {} group(s); {} already in {}",
        plan.grid.students(),
        plan.grid.cells.len(),
        plan.grid.skipped,
        plan.store.path().display()
    ));
    // Only an estimate: what its short pass runs into (a loss that needs warm-up, say) is for
    // the run itself to meet, not a refusal here.
    let estimate = training_estimate(manifest, &plan).unwrap_or_else(|e| {
        warnings.push(format!("no time estimate: the measured pass stopped: {e}"));
        None
    });
    lines.extend(estimate.as_ref().map(|(line, _)| line.clone()));
    if let (false, Some(import)) = (plan.needs.dynamics.is_empty(), &manifest.dynamics.import) {
        lines.push(format!(
            "dynamics: read from {} ({} layout), every file checked",
            import
                .folders
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            import.layout.as_str()
        ));
    } else if !plan.needs.dynamics.is_empty() {
        let d = &manifest.dynamics;
        lines.push(format!(
            "dynamics: {} run(s) × {} epochs of the proxy [{}], pass records at epochs {:?} and steps {:?}",
            d.runs,
            d.proxy.epochs,
            d.proxy.layers.iter().map(|l| format!("{:?}", l.to_string())).collect::<Vec<_>>().join(", "),
            d.checkpoint_epochs,
            d.early_steps
        ));
    }
    let needed = needed_teachers(
        &manifest.teachers,
        &plan.needs,
        &plan.grid.distilling(manifest.teachers.len()),
    );
    let teachers = check_teachers(manifest, &registry, &plan.data, &needed)?;
    lines.extend(teachers.iter().cloned());
    lines.extend(settings_lines(manifest));
    lines.push(format!(
        "output {}: not in use by another run; results.jsonl readable and writable",
        manifest.output.display()
    ));
    let cache = writable(&manifest.cache_dir);
    match &cache {
        Ok(()) => lines.push(format!("cache {}: writable", manifest.cache_dir.display())),
        Err(e) => warnings.push(format!("{e}; run computes what it would cache each time")),
    }
    let facts = serde_json::json!({
        "warnings": warnings,
        "methods": plan.methods.iter().map(|m| serde_json::json!({
            "method": m.spec.method,
            "plugin": m.plugin.file,
            "policy": m.policy.describe(),
            "params": params_json(&m.params),
            "inputs": m.inputs.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "data": {
            "train": plan.data.raw_train.len(),
            "test": plan.data.raw_test.len(),
            "sample_shape": plan.data.raw_train.sample_shape,
            "classes": plan.data.raw_train.num_classes,
        },
        "cells": {
            "to_train": plan.grid.students(),
            "groups": plan.grid.cells.len(),
            "done": plan.grid.skipped,
            "results": plan.store.path(),
            "pending": pending_json(manifest, &plan),
        },
        "training_estimate_seconds": estimate.map(|(_, seconds)| seconds),
        "teachers": teachers,
        "settings": settings_json(manifest),
        "output": { "folder": manifest.output, "cache": manifest.cache_dir, "cache_writable": cache.is_ok() },
    });
    lines.splice(0..0, warnings.iter().map(|w| format!("warning: {w}")));
    Ok(CheckReport { lines, facts })
}

/// Epochs timed by [`training_estimate`] after the one that pays for the start.
const TIMED_EPOCHS: usize = 3;

/// About how long the pending students take to train, from a short measured pass: the
/// student trained `1 + TIMED_EPOCHS` epochs on the first (at most) four batches of the
/// training set, the median of the timed epochs' times per step times the steps of every pending
/// student (the work the run's progress bar counts, [`super::grid::work_of`]). Not counted:
/// teachers, dynamics, scoring.
fn training_estimate(
    manifest: &Manifest,
    plan: &super::plan_stage::PlanStage<'_>,
) -> Result<Option<(String, f64)>, Error> {
    let spec = &manifest.student;
    let n = plan.data.train.len();
    if plan.grid.students() == 0 || n == 0 {
        return Ok(None);
    }
    let rows: Vec<u32> = (0..(4 * spec.batch_size).min(n) as u32).collect();
    let sample = plan.data.train.subset(&rows);
    let set = crate::train::TrainSet {
        x: sample.features.view(),
        sample_shape: &sample.sample_shape,
        y: &sample.labels,
        teacher: None,
        num_classes: sample.num_classes,
    };
    // The first epoch pays for the start (buffers, threads); the median of the others is the
    // rate, since these shared hosts drift by tens of percent within a minute and one short
    // epoch put ResNet-14 near ResNet-20's rate. Each epoch is timed per step of its own: an
    // InfoBatch student trains on fewer examples in its pruned epochs.
    let epochs = crate::train::spec::StudentSpec {
        epochs: 1 + TIMED_EPOCHS,
        warmup_epochs: 0,
        ..spec.clone()
    };
    let kd = crate::train::Kd {
        alpha: crate::train::kd::Alpha::new(0.0).expect("0 is a valid α"),
        temperature: manifest.distillation.temperature,
    };
    let (_, logs) = crate::train::train(&epochs, &set, kd, 0, None)?;
    let steps_per_epoch = rows.len().div_ceil(spec.batch_size) as f64;
    let mut timed: Vec<f64> = logs
        .iter()
        .skip(1)
        .map(|l| l.seconds / l.examples.div_ceil(spec.batch_size).max(1) as f64)
        .collect();
    timed.sort_by(f64::total_cmp);
    let per_step = timed.get(timed.len() / 2).copied().unwrap_or(0.0);
    // The grid's work (examples × epochs, an "auto" student weighted by its search), in steps.
    let steps = plan.grid.work(manifest, n) as f64 / spec.batch_size as f64;
    let seconds = steps * per_step;
    Ok(Some((
        format!(
            "time: about {} of training for the students still to run ({:.1} ms per step of batch {}, the median of {} epochs of {} steps; teachers, dynamics and scoring not counted)",
            human_seconds(seconds),
            per_step * 1e3,
            spec.batch_size,
            TIMED_EPOCHS,
            steps_per_epoch
        ),
        (seconds * 10.0).round() / 10.0,
    )))
}

fn human_seconds(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// A method as checked: its plugin file, policy, parameters and inputs.
fn method_line(m: &Method<'_>) -> String {
    let inputs: Vec<String> = m.inputs.iter().map(|i| i.to_string()).collect();
    format!(
        "method {} ({}): policy {}, params {}, inputs [{}]",
        m.spec.method,
        m.plugin.file.display(),
        m.policy.describe(),
        params_json(&m.params),
        inputs.join(", ")
    )
}

/// Opens every teacher `run` would make ready (`needed`, [`needed_teachers`]), checks a
/// teacher to train against the data, and describes each.
fn check_teachers(
    manifest: &Manifest,
    registry: &Registry,
    data: &DataStage,
    needed: &[bool],
) -> Result<Vec<String>, Error> {
    let (raw_train, raw_test, train_set) = (&data.raw_train, &data.raw_test, &data.train);
    let mut lines = Vec::new();
    // In run's order: the teachers kdprune trains first (all trained before any is opened),
    // then the others in manifest order.
    let teachers = &manifest.teachers;
    let trained = |i: &usize| {
        matches!(
            teachers[*i].source,
            crate::teacher::spec::TeacherSource::Trained { .. }
        )
    };
    let order = (0..teachers.len())
        .filter(trained)
        .chain((0..teachers.len()).filter(|i| !trained(i)));
    for i in order {
        let spec = &teachers[i];
        if !needed[i] {
            lines.push(format!(
                "teacher {}: not needed by the cells still to run",
                spec.name
            ));
            continue;
        }
        if let crate::teacher::spec::TeacherSource::Ensemble { members, .. } = &spec.source {
            // Its members are teachers of the manifest, each opened in this loop.
            lines.push(format!(
                "teacher {}: an ensemble of {}",
                spec.name,
                members
                    .iter()
                    .map(|&m| manifest.teachers[m].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        }
        if let crate::teacher::spec::TeacherSource::Trained {
            spec: recipe, seed, ..
        } = &spec.source
        {
            crate::teacher::trained::check(recipe, *seed, train_set)?;
            let model = crate::teacher::trained::model_path(
                &manifest.cache_dir,
                &crate::teacher::trained::recipe_key(recipe, *seed),
                train_set,
            );
            lines.push(format!(
                "teacher {}: {:?}, {} epochs on all {} training examples, seed {seed}; {}",
                spec.name,
                recipe
                    .layers
                    .iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>(),
                recipe.epochs,
                train_set.len(),
                if model.exists() {
                    format!("trained before, {}", model.display())
                } else {
                    "run trains it first (then cached)".into()
                }
            ));
            continue;
        }
        let mut teacher = crate::teacher::Teacher::new(
            spec,
            registry,
            raw_train,
            &manifest.cache_dir,
            manifest.seeds[0],
        )?;
        teacher.open()?;
        if matches!(
            spec.source,
            crate::teacher::spec::TeacherSource::Precomputed { .. }
        ) {
            // Its test file too: `run` reads it before training.
            teacher.logits(raw_test, "test")?;
        }
        lines.push(format!(
            "teacher {}: opened; input, output and {} classes match the data{}",
            spec.name,
            raw_train.num_classes,
            spec.embedding
                .as_ref()
                .map(|e| format!("; embedding tensor {e:?} found"))
                .unwrap_or_default()
        ));
    }
    Ok(lines)
}

/// The settings the run will use, as resolved, in the manifest's own words: the student
/// (layers as their spec strings), its input, each teacher's, and the distillation's.
fn settings_json(manifest: &Manifest) -> serde_json::Value {
    let st = &manifest.student;
    let mut student = serde_json::to_value(st).unwrap_or_default();
    student["layers"] = st.layers.iter().map(|l| l.to_string()).collect();
    let normalise = match &manifest.data.normalise {
        crate::data::spec::NormaliseSpec::Fixed(n) => serde_json::to_value(n).unwrap_or_default(),
        crate::data::spec::NormaliseSpec::Standardize { scale } => {
            serde_json::json!({ "standardize": true, "scale": scale })
        }
    };
    let teachers: serde_json::Map<String, serde_json::Value> = manifest
        .teachers
        .iter()
        .map(|t| {
            let settings = serde_json::json!({
                "preprocess": t.preprocess,
                "layout": t.layout,
                "output_kind": t.output_kind,
                "batch_size": t.batch_size,
            });
            (t.name.clone(), settings)
        })
        .collect();
    let alphas: Vec<serde_json::Value> = manifest
        .distillation
        .alphas
        .iter()
        .map(|a| match a {
            crate::train::alpha_search::AlphaChoice::Fixed(a) => a.get().into(),
            crate::train::alpha_search::AlphaChoice::Auto => "auto".into(),
        })
        .collect();
    let mut value = serde_json::json!({
        "student": student,
        "normalise": normalise,
        "teachers": teachers,
        "distillation": {
            "temperature": manifest.distillation.temperature.get(),
            "alphas": alphas,
            "auto": manifest.distillation.auto.describe(),
        },
    });
    crate::results::tidy_floats(&mut value);
    value
}

/// [`settings_json`] as lines of TOML inline tables.
fn settings_lines(manifest: &Manifest) -> Vec<String> {
    let settings = settings_json(manifest);
    let mut lines = vec![
        format!("[student] {}", inline_toml(settings["student"].clone())),
        format!(
            "[data.normalise] {}",
            inline_toml(settings["normalise"].clone())
        ),
    ];
    if let Some(teachers) = settings["teachers"].as_object() {
        for (name, t) in teachers {
            lines.push(format!("[teacher] {name}: {}", inline_toml(t.clone())));
        }
    }
    if manifest.distillation.distils() {
        lines.push(format!(
            "[distillation] {}",
            inline_toml(settings["distillation"].clone())
        ));
    }
    lines
}

/// `value` (a JSON object of a spec's serde form) as a TOML inline table, numbers that came
/// from f32 as written and unset (null) fields left out.
fn inline_toml(mut value: serde_json::Value) -> String {
    fn drop_nulls(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                map.values_mut().for_each(drop_nulls);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
            _ => {}
        }
    }
    crate::results::tidy_floats(&mut value);
    drop_nulls(&mut value);
    toml::Value::try_from(&value)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| value.to_string())
}

/// The folder exists or can be made, and a file can be written and removed in it.
fn writable(dir: &std::path::Path) -> Result<(), Error> {
    let err = |message: String| Error::Io {
        path: dir.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        err(format!(
            "cannot create the folder: {e}; choose a writable output or cache_dir"
        ))
    })?;
    let probe = dir.join(format!(".kdprune-write-check-{}", std::process::id()));
    std::fs::File::create(&probe)
        .and_then(|mut f| f.write_all(b"ok"))
        .map_err(|e| {
            err(format!(
                "cannot write in the folder: {e}; choose a writable output or cache_dir"
            ))
        })?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

/// Every student still to train, as `--json` lists it: its fields as its result will carry
/// them (method, keep, seed, α or `"auto"` and its rule, teacher, parameters, policy, τ,
/// `[student]`), its key and its configuration key.
fn pending_json(manifest: &Manifest, plan: &super::plan_stage::PlanStage<'_>) -> serde_json::Value {
    let student_json = serde_json::to_value(&manifest.student).unwrap_or_default();
    let mut pending = Vec::new();
    for cell in &plan.grid.cells {
        let method = &plan.methods[cell.method].spec.method;
        for (student, (key, config)) in cell.pending.iter().zip(&cell.pending_keys) {
            pending.push(serde_json::json!({
                "method": method,
                "keep": cell.keep.get(),
                "seed": cell.seed,
                "alpha": student.alpha.map(|a| a.get()),
                "auto": student.alpha.is_none(),
                "alpha_rule": student.choice.rule(),
                "teacher": student.teacher.map(|t| manifest.teachers[t].name.as_str()),
                "params": plan.keys.params[cell.method],
                "policy": plan.keys.policies[cell.method],
                "temperature": manifest.distillation.temperature.get(),
                "student": student_json,
                "key": key,
                "config": config,
            }));
        }
    }
    pending.into()
}
