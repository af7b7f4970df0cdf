//! The grid of a run: every (method, keep, seed) group with its students (one per α and
//! teacher), each student's cell key, and which are still to run (not in the results).
//! Groups are numbered over the whole grid, so a shard's share does not depend on what is
//! done.

use std::collections::HashSet;

use super::distributed;
use super::key::{self, CellKey, StudentKey};
use super::plan::{params_json, plugin_code, Method, PluginCode};
use crate::data::Dataset;
use crate::dynamics::cache::DynamicsKey;
use crate::hash::sha256_hex;
use crate::inputs::{InputKind, Needs};
use crate::manifest::Manifest;
use crate::plugins::Registry;
use crate::results::ResultStore;
use crate::select::Keep;
use crate::shard::Shard;
use crate::train::alpha_search::AlphaChoice;
use crate::train::kd::Alpha;
use crate::Error;

/// One student of a (method, keep, seed) group: its α and the teacher it distils from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Student {
    pub(crate) choice: AlphaChoice,
    /// The fixed α; `None` for `"auto"`, searched for when the cell trains.
    pub(crate) alpha: Option<Alpha>,
    /// Index into `manifest.teachers`; `None` when α = 0.
    pub(crate) teacher: Option<usize>,
}

/// A (method, keep, seed) cell group: one selection, trained for every pending student.
pub(crate) struct Cell {
    pub(crate) method: usize,
    pub(crate) keep: Keep,
    pub(crate) seed: u64,
    /// The students not yet in the results.
    pub(crate) pending: Vec<Student>,
    /// Their keys and configuration keys ([`CellKey::key`], [`CellKey::config`]).
    pub(crate) pending_keys: Vec<(String, String)>,
}

impl Cell {
    /// Whether the cell calls its plugin (the full set does not).
    pub(crate) fn is_scored(&self) -> bool {
        !self.keep.is_full()
    }
}

/// What every cell key of a run shares, computed once.
pub(crate) struct CellKeys {
    plugin_code: Vec<PluginCode>,
    pub(crate) params: Vec<serde_json::Value>,
    pub(crate) policies: Vec<String>,
    teacher_keys: Vec<String>,
    student: StudentKey,
    train_hash: [u8; 32],
    train_data: String,
    test_data: String,
    dynamics: String,
}

impl CellKeys {
    /// `train` and `test` are the student's views (`[N, D]`, `[M, D]`).
    pub(crate) fn new(
        manifest: &Manifest,
        registry: &Registry,
        methods: &[Method<'_>],
        train: &Dataset,
        test: &Dataset,
    ) -> Result<Self, Error> {
        // In the order the checks of a run have always come: the teachers' files before the
        // plugin libraries'.
        let data_hash = train.content_hash();
        let test_data = sha256_hex(&test.content_hash());
        // Records read from elsewhere stand in the key by their content, not by the proxy
        // settings they were not made with.
        let reads_proxy = methods.iter().any(|m| m.uses_proxy());
        let dynamics = match &manifest.dynamics.import {
            Some(import) if reads_proxy => crate::dynamics::import::content_key(import)?,
            Some(_) => String::new(),
            None => DynamicsKey::new(&manifest.dynamics, &data_hash)
                .as_str()
                .to_string(),
        };
        let teacher_keys = crate::teacher::content_keys(&manifest.teachers, registry)?;
        let plugin_code = methods.iter().map(plugin_code).collect::<Result<_, _>>()?;
        Ok(Self {
            plugin_code,
            params: methods.iter().map(|m| params_json(&m.params)).collect(),
            policies: methods.iter().map(|m| m.policy.describe()).collect(),
            teacher_keys,
            student: StudentKey::new(&manifest.student),
            train_hash: data_hash,
            train_data: sha256_hex(&data_hash),
            test_data,
            dynamics,
        })
    }

    /// Eight hex digits naming what the kept examples of method `m` depend on besides keep and
    /// seed: its plugin, parameters and policy, the training data, and the first teacher or
    /// the proxy when the method reads them. In the indices' file names, so that no two
    /// selections, of this run or of an earlier one in the same folder, share a file.
    pub(crate) fn selection_tag(&self, methods: &[Method<'_>], m: usize) -> String {
        let method = &methods[m];
        let reads_teacher = method.inputs.iter().any(|i| i.kind() == InputKind::Teacher);
        let tag = crate::hash::json_digest(&(
            self.plugin_code[m].tag(),
            &self.params[m],
            &self.policies[m],
            &self.train_data,
            reads_teacher.then(|| &self.teacher_keys[0]),
            method.uses_proxy().then_some(&self.dynamics),
        ));
        tag[..8].to_string()
    }

    /// The content hash of the student's view of the training set.
    pub(crate) fn train_hash(&self) -> [u8; 32] {
        self.train_hash
    }

    /// The plugin identity the score cache keys budget-independent scores by.
    pub(crate) fn plugin_identities(&self, methods: &[Method<'_>]) -> Vec<serde_json::Value> {
        methods
            .iter()
            .zip(&self.plugin_code)
            .map(|(m, code)| super::plan::plugin_identity(m, code))
            .collect()
    }

    /// What the result of `student` in group (method `m`, `keep`, `seed`) depends on.
    pub(crate) fn of(
        &self,
        manifest: &Manifest,
        methods: &[Method<'_>],
        (m, keep, seed): (usize, Keep, u64),
        student: &Student,
    ) -> CellKey {
        let method = &methods[m];
        let reads_teacher =
            method.inputs.iter().any(|i| i.kind() == InputKind::Teacher) && !keep.is_full();
        let distils = student.choice.needs_teacher();
        let (teacher, input_teacher) = match student.teacher.filter(|_| distils) {
            Some(t) => (
                Some(self.teacher_keys[t].clone()),
                (reads_teacher && t != 0).then(|| self.teacher_keys[0].clone()),
            ),
            None => (reads_teacher.then(|| self.teacher_keys[0].clone()), None),
        };
        let (plugin_sha256, plugin_source) = self.plugin_code[m].fields();
        key::CellKey {
            method: method.spec.method.clone(),
            plugin_version: method.plugin.description.version.clone(),
            plugin_sha256,
            plugin_source,
            params: self.params[m].clone(),
            policy: self.policies[m].clone(),
            keep: keep.get(),
            alpha: student.alpha.map(Alpha::get),
            temperature: distils.then(|| manifest.distillation.temperature.get()),
            teacher,
            input_teacher,
            alpha_rule: student.choice.rule().map(str::to_string),
            alpha_search: student
                .alpha
                .is_none()
                .then(|| manifest.distillation.auto.clone()),
            seed,
            train_data: self.train_data.clone(),
            test_data: self.test_data.clone(),
            dynamics: (method.uses_proxy() && !keep.is_full()).then(|| self.dynamics.clone()),
            student: self.student.clone(),
        }
    }
}

/// The students of one group: one per α = 0, one per (α > 0 or `"auto"`, teacher).
fn students(manifest: &Manifest) -> Vec<Student> {
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
}

/// The cells of a run.
pub(crate) struct Grid {
    /// Groups with students still to train, in grid order.
    pub(crate) cells: Vec<Cell>,
    /// Every key of this manifest (of this shard), run now or before: what the report shows.
    pub(crate) current: HashSet<String>,
    /// Students whose result is already there.
    pub(crate) skipped: usize,
    /// Groups in the whole grid.
    pub(crate) groups: usize,
    /// This shard's groups and their keys (for `merge`).
    pub(crate) share: Vec<distributed::Group>,
}

impl Grid {
    /// Plans every group of `manifest` (those `shard` owns), leaving the students whose key is
    /// in `store` or in `done_before`.
    pub(crate) fn plan(
        manifest: &Manifest,
        methods: &[Method<'_>],
        keys: &CellKeys,
        (store, done_before): (&ResultStore, &HashSet<String>),
        shard: Option<Shard>,
    ) -> Self {
        let mut grid = Grid {
            cells: Vec::new(),
            current: HashSet::new(),
            skipped: 0,
            groups: 0,
            share: Vec::new(),
        };
        let all = students(manifest);
        for (m, method) in methods.iter().enumerate() {
            for &keep in &method.spec.keep {
                for &seed in &manifest.seeds {
                    let g = grid.groups;
                    grid.groups += 1;
                    if shard.is_some_and(|s| !s.owns(g)) {
                        continue;
                    }
                    let cell_keys: Vec<CellKey> = all
                        .iter()
                        .map(|st| keys.of(manifest, methods, (m, keep, seed), st))
                        .collect();
                    let group_keys: Vec<String> = cell_keys.iter().map(CellKey::key).collect();
                    grid.current.extend(group_keys.iter().cloned());
                    let (pending, pending_keys): (Vec<Student>, Vec<(String, String)>) = all
                        .iter()
                        .zip(&group_keys)
                        .zip(&cell_keys)
                        .filter(|((_, k), _)| !store.is_done(k) && !done_before.contains(*k))
                        .map(|((st, k), cell)| (*st, (k.clone(), cell.config())))
                        .unzip();
                    grid.share.push(distributed::Group {
                        group: g,
                        keys: group_keys,
                    });
                    grid.skipped += all.len() - pending.len();
                    if !pending.is_empty() {
                        grid.cells.push(Cell {
                            method: m,
                            keep,
                            seed,
                            pending,
                            pending_keys,
                        });
                    }
                }
            }
        }
        grid
    }

    /// The inputs the scored cells' methods ask for.
    pub(crate) fn needs(&self, methods: &[Method<'_>]) -> Needs {
        super::plan::needs_of(
            self.cells
                .iter()
                .filter(|c| c.is_scored())
                .map(|c| &methods[c.method]),
        )
    }

    /// For each teacher, whether a pending student distils from it.
    pub(crate) fn distilling(&self, teachers: usize) -> Vec<bool> {
        (0..teachers)
            .map(|t| {
                self.cells
                    .iter()
                    .any(|c| c.pending.iter().any(|st| st.teacher == Some(t)))
            })
            .collect()
    }

    /// The students still to train.
    pub(crate) fn students(&self) -> usize {
        self.cells.iter().map(|c| c.pending.len()).sum()
    }

    /// Their work in examples × epochs ([`work_of`]), for the overall progress bar.
    pub(crate) fn work(&self, manifest: &Manifest, n: usize) -> u64 {
        self.cells
            .iter()
            .flat_map(|c| c.pending.iter().map(move |st| (c, st)))
            .map(|(c, st)| work_of(manifest, n, c, st))
            .sum()
    }

    /// This grid's results in `store` (other configurations' lines in the same file stay
    /// there, untouched, but are not reported beside these).
    pub(crate) fn results_in(&self, store: &ResultStore) -> Vec<crate::results::CellResult> {
        store
            .results()
            .iter()
            .filter(|r| self.current.contains(&r.key))
            .cloned()
            .collect()
    }

    /// The largest budget of a scored group of (method `m`, `seed`): what a
    /// budget-independent method is scored for.
    pub(crate) fn largest_budget(&self, m: usize, seed: u64, n: usize) -> Option<usize> {
        self.cells
            .iter()
            .filter(|c| c.method == m && c.seed == seed && c.is_scored())
            .map(|c| c.keep.budget(n))
            .max()
    }
}

/// The work of one student, in examples × epochs (an `"auto"` student weighs its search
/// too), for the overall progress bar.
pub(crate) fn work_of(manifest: &Manifest, n: usize, cell: &Cell, student: &Student) -> u64 {
    let one = (cell.keep.budget(n) * manifest.student.epochs) as f64;
    let auto_weight = 1.0 + manifest.distillation.auto.relative_cost();
    (if student.alpha.is_none() {
        one * auto_weight
    } else {
        one
    }) as u64
}
