//! One manifest spread over processes the user's scheduler starts (docs/scale.md):
//! `kdprune prepare M --shard i/n` computes shard i's share of the inputs (each teacher's
//! outputs on its rows and the proxy's runs `r` with `r mod n = i`, into part files the first
//! run joins; a teacher's embedding and any teacher kdprune trains on shard 0), `kdprune run M --shard i/n` trains shard i's share of
//! the cell groups into `<output>/shards/i-of-n/`, and [`merge`] joins the shares into the
//! output folder — the same `results.jsonl`, byte for byte, as one process running the whole
//! manifest, and the same index files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::plan::{check_methods, load_registry, needed_teachers, needs_of, RunOptions};
use super::stages::load_data;
use crate::inputs::InputName;
use crate::manifest::Manifest;
use crate::results::{self, OutputLock, ResultStore, StoreError};
use crate::shard::Shard;
use crate::teacher::spec::TeacherSource;
use crate::teacher::Teacher;
use crate::Error;

/// Where shard `shard` of a run writes: `<output>/shards/i-of-n`.
pub fn shard_dir(output: &Path, shard: Shard) -> PathBuf {
    output.join("shards").join(shard.tag())
}

/// A cell group of a shard's share: its number in the whole grid and its students' keys, in
/// the order one process trains them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub group: usize,
    pub keys: Vec<String>,
}

/// `shard.json`: what a shard was given, for [`merge`] to check and order by.
#[derive(Debug, Serialize, Deserialize)]
struct Share {
    shard: String,
    /// Groups in the whole grid.
    groups: usize,
    share: Vec<Group>,
}

/// Writes `<dir>/shard.json` (through a temporary file and a rename).
pub(super) fn write_share(
    dir: &Path,
    shard: Shard,
    groups: usize,
    share: &[Group],
) -> Result<(), Error> {
    let text = serde_json::to_string(&Share {
        shard: shard.to_string(),
        groups,
        share: share.to_vec(),
    })
    .unwrap_or_default();
    let path = dir.join("shard.json");
    let partial = dir.join("shard.json.partial");
    let io = |e: std::io::Error| Error::Io {
        path: path.clone(),
        message: crate::io_message(&e),
    };
    std::fs::write(&partial, text).map_err(io)?;
    std::fs::rename(&partial, &path).map_err(io)
}

/// What a `prepare` shard did.
#[derive(Debug, Clone, Default)]
pub struct PrepareSummary {
    /// (teacher, what was labelled: "rows a..b of train and test" or "whole").
    pub teachers: Vec<(String, String)>,
    /// The proxy runs recorded here (the others came from the cache or fall to other shards).
    pub dynamics_runs: Vec<usize>,
    pub seconds: f64,
}

/// `kdprune prepare --shard i/n`: this shard's share of the inputs every cell of the
/// manifest needs, into the cache. Teacher outputs are split by rows (at batch boundaries),
/// the proxy's dynamics by run (run `r` to shard `r mod n`; the embedding is run 0's); a
/// teacher's embedding and any teacher kdprune trains are one job each and fall to shard 0.
/// Without a shard, all of it.
pub fn prepare(manifest: &Manifest, options: &RunOptions) -> Result<PrepareSummary, Error> {
    let started = Instant::now();
    let shard = options.shard.unwrap_or(Shard::new(0, 1).expect("0/1"));
    let first = shard.index() == 0;
    let registry = load_registry(manifest, options)?;
    let methods = check_methods(manifest, &registry)?;
    let data = load_data(manifest)?;
    let (raw_train, raw_test, train_set) = (&data.raw_train, &data.raw_test, &data.train);
    // Inputs are read only by scored cells: those of a keep below 1.
    let needs = needs_of(
        methods
            .iter()
            .filter(|m| m.spec.keep.iter().any(|k| !k.is_full())),
    );
    super::plan::check_training_memory(manifest, &needs, train_set)?;
    super::plan::check_dynamics_memory(manifest, &needs, train_set)?;
    let distils = manifest.distillation.distils();
    let mut needed = needed_teachers(
        &manifest.teachers,
        &needs,
        &vec![distils; manifest.teachers.len()],
    );
    let trained = |i: usize| matches!(manifest.teachers[i].source, TeacherSource::Trained { .. });
    for (i, n) in needed.iter_mut().enumerate() {
        *n = *n && (first || !trained(i));
    }
    let (teachers, _) = crate::teacher::trained::materialise(
        &manifest.teachers,
        &needed,
        train_set,
        &data.norm,
        &manifest.cache_dir,
    )?;
    let mut summary = PrepareSummary::default();
    for (i, spec) in teachers.iter().enumerate() {
        if !needed[i]
            || matches!(
                spec.source,
                TeacherSource::Ensemble { .. } | TeacherSource::Precomputed { .. }
            )
        {
            continue;
        }
        let mut teacher = Teacher::new(
            spec,
            &registry,
            raw_train,
            &manifest.cache_dir,
            manifest.seeds[0],
        )?;
        teacher.set_bulk(true);
        let whole = trained(i) || shard.count() == 1;
        if whole {
            teacher.logits(raw_train, "train")?;
            teacher.logits(raw_test, "test")?;
            summary.teachers.push((spec.name.clone(), "whole".into()));
        } else {
            teacher.label_part(raw_train, "train", shard)?;
            teacher.label_part(raw_test, "test", shard)?;
            summary.teachers.push((
                spec.name.clone(),
                format!("shard {shard} of train and test"),
            ));
        }
        if i == 0 && first && needs.names.contains(&InputName::TeacherEmbedding) {
            teacher.embedding(raw_train)?;
        }
    }
    if !needs.dynamics.is_empty() {
        let ctx = super::plan::dynamics_context(manifest, train_set);
        summary.dynamics_runs = if shard.count() == 1 {
            let dynamics = super::plan::dynamics_of(manifest, train_set, &needs)?;
            let recorded_here = dynamics.train_seconds > 0.0;
            if recorded_here {
                dynamics.runs
            } else {
                Vec::new()
            }
        } else {
            crate::inputs::prepare_dynamics(&ctx, &needs.dynamics, shard)?
        };
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// What [`merge`] did.
#[derive(Debug, Clone)]
pub struct MergeSummary {
    pub shards: usize,
    /// Results appended to the output's `results.jsonl`.
    pub merged: usize,
    /// Results the output held already.
    pub already: usize,
    pub results_path: PathBuf,
}

/// Joins the shards of `<output>/shards/` into `<output>`: checks that every shard of one
/// split has run and finished (nothing is written otherwise), then appends their results in
/// the order one process would have written them, with their index files, saved students
/// and timings.
pub fn merge(manifest: &Manifest) -> Result<MergeSummary, Error> {
    let output = &manifest.output;
    let _lock = OutputLock::acquire(output)?;
    let count = shard_count(&output.join("shards"))?;
    let shards = read_shards(output, count)?;
    let mut store = ResultStore::open(output)?;
    // Check everything before writing anything.
    let order = merge_order(output, &shards, &store, count)?;
    let planned = shards
        .groups
        .iter()
        .flatten()
        .map(|g| g.keys.len())
        .sum::<usize>();
    for dir in &shards.dirs {
        for sub in ["indices", "students"] {
            copy_new_files(&dir.join(sub), &output.join(sub))?;
        }
    }
    for key in &order {
        let (line, result) = &shards.lines[*key];
        store.append_line(line, result)?;
    }
    append_timings(&shards.dirs, &output.join("timings.jsonl"), &order);
    Ok(MergeSummary {
        shards: count,
        merged: order.len(),
        already: planned - order.len(),
        results_path: store.path().to_path_buf(),
    })
}

/// A store error naming `path`.
fn store_error(path: &Path, message: String) -> Error {
    Error::Store(StoreError {
        path: path.to_path_buf(),
        message,
    })
}

/// The number of processes the shards of `shards_dir` (folders `i-of-n`) were split into:
/// one split, or an error saying what to do.
fn shard_count(shards_dir: &Path) -> Result<usize, Error> {
    let mut counts: Vec<usize> = std::fs::read_dir(shards_dir)
        .map_err(|e| {
            store_error(
                shards_dir,
                format!("cannot read ({e}); run `kdprune run MANIFEST --shard i/n` for each shard first"),
            )
        })?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.split_once("-of-")?.1.parse().ok()
        })
        .collect();
    counts.sort_unstable();
    counts.dedup();
    match counts.as_slice() {
        [one] => Ok(*one),
        [] => Err(store_error(
            shards_dir,
            "holds no shard folder (i-of-n); run `kdprune run MANIFEST --shard i/n` for each shard first".into(),
        )),
        many => Err(store_error(
            shards_dir,
            format!("holds shards of splits into {many:?} processes; keep one split's folders and remove the others"),
        )),
    }
}

/// What the shards of one split planned and wrote.
struct Shards {
    /// Every group of the grid, as the shard that owns it planned it.
    groups: Vec<Option<Group>>,
    /// Every result line the shards wrote, by key: the line as written and its result.
    lines: HashMap<String, (String, results::CellResult)>,
    /// The shards' folders, in shard order.
    dirs: Vec<PathBuf>,
}

/// Reads every shard's `shard.json` and results; refuses a shard that has not run or that
/// planned another grid.
fn read_shards(output: &Path, count: usize) -> Result<Shards, Error> {
    let mut shards = Shards {
        groups: Vec::new(),
        lines: HashMap::new(),
        dirs: Vec::new(),
    };
    for i in 0..count {
        let shard = Shard::new(i, count).expect("i < count");
        let dir = shard_dir(output, shard);
        let share_path = dir.join("shard.json");
        let text = std::fs::read_to_string(&share_path).map_err(|_| {
            store_error(
                &share_path,
                format!("missing: shard {shard} has not run; run `kdprune run MANIFEST --shard {shard}`"),
            )
        })?;
        let share: Share = serde_json::from_str(&text).map_err(|e| {
            store_error(
                &share_path,
                format!("unreadable ({e}); run that shard again"),
            )
        })?;
        if shards.groups.is_empty() {
            shards.groups = vec![None; share.groups];
        } else if shards.groups.len() != share.groups {
            return Err(store_error(
                &share_path,
                format!("this shard planned {} cell groups, another {}: the shards ran different manifests; run them all again with the same one", share.groups, shards.groups.len()),
            ));
        }
        for g in share.share {
            let slot = shards.groups.get_mut(g.group).ok_or_else(|| {
                store_error(
                    &share_path,
                    "names a group outside the grid; run that shard again".into(),
                )
            })?;
            *slot = Some(g);
        }
        if dir.join("results.jsonl").exists() {
            for (line, result) in results::read_lines(&dir)? {
                shards.lines.insert(result.key.clone(), (line, result));
            }
        }
        shards.dirs.push(dir);
    }
    Ok(shards)
}

/// The keys to append, in the order one process would have written them: every planned key
/// not yet in `store`; an error when a group was planned by no shard or a key's shard has
/// not finished.
fn merge_order<'s>(
    output: &Path,
    shards: &'s Shards,
    store: &ResultStore,
    count: usize,
) -> Result<Vec<&'s str>, Error> {
    let mut order = Vec::new();
    for (g, group) in shards.groups.iter().enumerate() {
        let group = group.as_ref().ok_or_else(|| {
            store_error(
                &output.join("shards"),
                format!("no shard planned cell group {g}; the shards ran different manifests or splits; run them all again"),
            )
        })?;
        for key in &group.keys {
            if store.is_done(key) {
                continue;
            }
            if !shards.lines.contains_key(key) {
                let owner = Shard::new(g % count, count).expect("g % count < count");
                return Err(store_error(
                    &shard_dir(output, owner).join("results.jsonl"),
                    format!("shard {owner} has not finished (cell {key} missing); run `kdprune run MANIFEST --shard {owner}` again, it resumes"),
                ));
            }
            order.push(key.as_str());
        }
    }
    Ok(order)
}

/// Appends to `timings_path` the shards' timing lines of the merged cells `keys`; a failure
/// loses only the times, with a warning.
fn append_timings(dirs: &[PathBuf], timings_path: &Path, keys: &[&str]) {
    let wanted: std::collections::HashSet<&str> = keys.iter().copied().collect();
    let mut kept = String::new();
    for dir in dirs {
        let timings = std::fs::read_to_string(dir.join("timings.jsonl")).unwrap_or_default();
        for line in timings.lines() {
            let key = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["key"].as_str().map(str::to_string));
            if key.is_some_and(|k| wanted.contains(k.as_str())) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    if kept.is_empty() {
        return;
    }
    use std::io::Write;
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(timings_path)
        .and_then(|mut f| f.write_all(kept.as_bytes()));
    if let Err(e) = appended {
        tracing::warn!(file = %timings_path.display(), "{e}; the merged cells' times are not kept");
    }
}

/// Copies the files of `from` that `to` lacks (a file of the same name is the same content:
/// names are made of the cell's identity).
fn copy_new_files(from: &Path, to: &Path) -> Result<(), Error> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(());
    };
    let io = |path: &Path, e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        message: crate::io_message(&e),
    };
    std::fs::create_dir_all(to).map_err(|e| io(to, e))?;
    for entry in entries.flatten() {
        let target = to.join(entry.file_name());
        if !target.exists() {
            let partial = target.with_extension("partial");
            std::fs::copy(entry.path(), &partial).map_err(|e| io(&target, e))?;
            std::fs::rename(&partial, &target).map_err(|e| io(&target, e))?;
        }
    }
    Ok(())
}
