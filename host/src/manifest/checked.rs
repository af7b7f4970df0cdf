//! The checked manifest: every value valid, every default filled, every path resolved.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::dynamics::DynamicsSpec;
use crate::select::Policy;
use std::path::{Path, PathBuf};

use super::defaults;
use toml::Spanned;

use super::error::{line_column, ManifestError};
use super::raw::{self, RawManifest};
use crate::data::spec::{DataSource, DataSpec, Holdout, NormaliseSpec};
use crate::data::{LabelColumn, Normalisation};
use crate::plugins::OnPluginError;
use crate::select::Keep;
use crate::teacher::spec::{Combine, Layout, OutputKind, TeacherSource, TeacherSpec};
use crate::train::alpha_search::AlphaChoice;
use crate::train::augment::Augment;
use crate::train::kd::{Alpha, Temperature};
use crate::train::optim::{OptimizerSpec, ScheduleSpec};
use crate::train::spec::StudentSpec;
use crate::train::spec::{parse_layer, LayerSpec};

fn default_auto_search() -> crate::train::alpha_search::AutoSearch {
    crate::train::alpha_search::AutoSearch {
        candidates: defaults::AUTO_CANDIDATES
            .map(|a| Alpha::new(a).expect("the default candidates are in [0, 1]"))
            .to_vec(),
        holdout: defaults::AUTO_HOLDOUT,
    }
}

/// `[distillation] auto`: candidates in [0, 1], at least two, no repeats (kept ascending);
/// `holdout` in (0, 0.5].
fn check_auto_search(
    c: &Checker<'_>,
    raw: &Spanned<raw::RawAutoSearch>,
) -> Result<crate::train::alpha_search::AutoSearch, ManifestError> {
    let mut search = default_auto_search();
    let a = raw.get_ref();
    if let Some(list) = &a.candidates {
        let mut candidates = Vec::new();
        for v in list.get_ref() {
            let alpha = Alpha::new(*v.get_ref()).ok_or_else(|| {
                c.at(
                    v.span(),
                    format!("auto.candidates: {} is outside [0, 1]", v.get_ref()),
                )
            })?;
            if candidates.contains(&alpha) {
                return Err(c.at(
                    v.span(),
                    format!("auto.candidates lists {} twice; remove one", v.get_ref()),
                ));
            }
            candidates.push(alpha);
        }
        if candidates.len() < 2 {
            return Err(c.at(
                list.span(),
                "auto.candidates needs at least two weights to choose between (e.g. [0.0, 0.5, 0.9])",
            ));
        }
        candidates.sort_by(|x, y| x.get().total_cmp(&y.get()));
        search.candidates = candidates;
    }
    if let Some(h) = &a.holdout {
        let v = *h.get_ref();
        if !(v > 0.0 && v <= 0.5) {
            return Err(c.at(
                h.span(),
                format!(
                    "auto.holdout = {v}: the share of the kept subset set aside must be in (0, 0.5], e.g. 0.2"
                ),
            ));
        }
        search.holdout = v;
    }
    Ok(search)
}

#[derive(Debug, Clone)]
pub struct Distillation {
    pub alphas: Vec<AlphaChoice>,
    pub temperature: Temperature,
    /// How `"auto"` searches (the defaults when `alphas` has no `"auto"`).
    pub auto: crate::train::alpha_search::AutoSearch,
}

impl Distillation {
    /// Whether some student distils (an α above 0, or `"auto"`).
    pub fn distils(&self) -> bool {
        self.alphas.iter().any(|a| a.needs_teacher())
    }
}

#[derive(Debug, Clone)]
pub struct PruneSpec {
    pub method: String,
    pub keep: Vec<Keep>,
    /// The selection policy the manifest names (`policy`, `balance`, `policy_params`; the
    /// plugin's default when `None`), checked.
    pub policy: Option<Policy>,
    /// `balance` given without `policy`: applied to the plugin's default rule.
    pub balance: Option<String>,
    pub params: BTreeMap<String, toml::Value>,
    /// Line and column of this `[[prune]]` entry, for errors found once plugins are loaded.
    pub at: (usize, usize),
}

/// A checked manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub name: String,
    pub seeds: Vec<u64>,
    pub output: PathBuf,
    pub plugin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    pub on_plugin_error: OnPluginError,
    /// Plugin name → the SHA-256 its library must have (`plugin_sha256`).
    pub plugin_sha256: BTreeMap<String, String>,
    /// Load plugins from folders or files that other users may write to.
    pub allow_writable_plugins: bool,
    pub data: DataSpec,
    /// `[teacher]` or `[[teacher]]`, names unique; every one is a dimension of the grid for
    /// α > 0. Methods that read teacher inputs (soft labels, embeddings) read the first.
    pub teachers: Vec<TeacherSpec>,
    pub student: StudentSpec,
    pub distillation: Distillation,
    /// The proxy for training dynamics (defaults when the manifest has no `[dynamics]`).
    pub dynamics: DynamicsSpec,
    pub prune: Vec<PruneSpec>,
}

impl Manifest {
    /// The first teacher: the one whose soft labels and embeddings methods read.
    pub fn teacher(&self) -> Option<&TeacherSpec> {
        self.teachers.first()
    }
}

struct Checker<'a> {
    path: &'a Path,
    source: &'a str,
    base: PathBuf,
}

impl<'a> Checker<'a> {
    /// A checker of the manifest at `path` with text `source`; relative paths resolve against
    /// its folder.
    fn new(path: &'a Path, source: &'a str) -> Self {
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        Checker { path, source, base }
    }

    fn at(&self, span: Range<usize>, message: impl Into<String>) -> ManifestError {
        let (line, column) = line_column(self.source, span.start);
        ManifestError::At {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    fn file(&self, message: impl Into<String>) -> ManifestError {
        ManifestError::File {
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }

    fn position(&self, span: Range<usize>) -> (usize, usize) {
        line_column(self.source, span.start)
    }

    /// Resolves a path written in the manifest against the manifest's folder; `~` and
    /// environment variables are not expanded.
    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        };
        lexically_normal(&joined)
    }

    fn positive<T: PartialOrd + Default + Copy + std::fmt::Display>(
        &self,
        value: &Spanned<T>,
        field: &str,
    ) -> Result<T, ManifestError> {
        if *value.get_ref() > T::default() {
            Ok(*value.get_ref())
        } else {
            Err(self.at(
                value.span(),
                format!("{field} = {} must be positive", value.get_ref()),
            ))
        }
    }
}

/// `a/b/../c` -> `a/c` without touching the file system (symlinks are not resolved).
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                let can_pop = matches!(out.components().next_back(), Some(Component::Normal(_)));
                if can_pop {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

pub(super) fn check(
    path: &Path,
    source: &str,
    raw: RawManifest,
) -> Result<Manifest, ManifestError> {
    let c = Checker::new(path, source);
    let seeds = check_seeds(&c, &raw.seeds)?;
    let output = c.resolve(raw.output.get_ref());
    let plugin_dirs = raw.plugin_dirs.iter().map(|d| c.resolve(d)).collect();
    let cache_dir = raw
        .cache_dir
        .as_deref()
        .map(|d| c.resolve(d))
        .unwrap_or_else(|| output.join("cache"));
    let on_plugin_error = raw.on_plugin_error.unwrap_or(OnPluginError::Stop);
    let data = check_data(&c, raw.data, &cache_dir)?;
    let teachers = check_teachers(&c, raw.teacher, &raw.student)?;
    let dynamics = check_dynamics(&c, raw.dynamics, &raw.student)?;
    let student = check_student(&c, raw.student)?;
    let distillation = check_distillation(&c, raw.distillation)?;
    check_teachers_serve(&c, &teachers, &student, &distillation)?;
    let prune = check_prunes(&c, raw.prune)?;
    Ok(Manifest {
        path: path.to_path_buf(),
        name: raw.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "experiment".into())
        }),
        seeds,
        output,
        plugin_dirs,
        cache_dir,
        on_plugin_error,
        plugin_sha256: raw.plugin_sha256.unwrap_or_default(),
        allow_writable_plugins: raw.allow_writable_plugins,
        data,
        teachers,
        student,
        distillation,
        dynamics,
        prune,
    })
}

/// `seeds`: at least one, none twice (default `[0]`).
fn check_seeds(
    c: &Checker<'_>,
    seeds: &Option<Spanned<Vec<u64>>>,
) -> Result<Vec<u64>, ManifestError> {
    Ok(match seeds {
        Some(s) if s.get_ref().is_empty() => {
            return Err(c.at(s.span(), "seeds is empty; give at least one seed"))
        }
        Some(s) => {
            let list = s.get_ref();
            if let Some(i) = (1..list.len()).find(|&i| list[..i].contains(&list[i])) {
                return Err(c.at(
                    s.span(),
                    format!(
                        "seeds lists {} twice (at positions {} and {}); remove one",
                        list[i],
                        list[..i].iter().position(|x| *x == list[i]).unwrap_or(0) + 1,
                        i + 1
                    ),
                ));
            }
            list.clone()
        }
        None => defaults::SEEDS.to_vec(),
    })
}

/// `[teacher]` or `[[teacher]]`: each checked against those above it (ensembles name them),
/// names distinct.
fn check_teachers(
    c: &Checker<'_>,
    raw: Option<Spanned<raw::RawTeachers>>,
    student: &raw::RawStudent,
) -> Result<Vec<TeacherSpec>, ManifestError> {
    Ok(match raw {
        None => Vec::new(),
        Some(t) => {
            let span = t.span();
            let listed = match t.into_inner() {
                raw::RawTeachers::One(one) => vec![(span, *one)],
                raw::RawTeachers::Many(many) => {
                    if many.is_empty() {
                        return Err(c.at(span, "[[teacher]] is empty; give one or drop it"));
                    }
                    many.into_iter()
                        .map(|t| (t.span(), t.into_inner()))
                        .collect()
                }
            };
            let mut teachers: Vec<TeacherSpec> = Vec::new();
            for (span, t) in listed {
                let spec = check_teacher(c, span.clone(), t, &teachers, student)?;
                if teachers.iter().any(|o| o.name == spec.name) {
                    return Err(c.at(
                        span,
                        format!(
                            "two teachers are named {:?}; give each a distinct name = \"...\"",
                            spec.name
                        ),
                    ));
                }
                teachers.push(spec);
            }
            teachers
        }
    })
}

/// `[distillation]`: alphas (numbers in [0, 1] or `"auto"`, none twice), τ, the auto search.
fn check_distillation(
    c: &Checker<'_>,
    raw: Option<raw::RawDistillation>,
) -> Result<Distillation, ManifestError> {
    Ok(match raw {
        None => Distillation {
            alphas: defaults::ALPHAS
                .map(|a| {
                    AlphaChoice::Fixed(Alpha::new(a).expect("the default alphas are in [0, 1]"))
                })
                .to_vec(),
            temperature: Temperature::new(1.0).expect("1 is a valid temperature"),
            auto: default_auto_search(),
        },
        Some(d) => {
            if d.alphas.get_ref().is_empty() {
                return Err(c.at(
                    d.alphas.span(),
                    "alphas is empty; use [0.0] for no distillation",
                ));
            }
            let alphas = d
                .alphas
                .get_ref()
                .iter()
                .map(|a| match a.get_ref() {
                    raw::RawAlpha::Value(v) => Alpha::new(*v)
                        .map(AlphaChoice::Fixed)
                        .ok_or_else(|| c.at(a.span(), format!("alpha {v} is outside [0, 1]"))),
                    raw::RawAlpha::Word(w) if w == "auto" => Ok(AlphaChoice::Auto),
                    raw::RawAlpha::Word(w) => Err(c.at(
                        a.span(),
                        format!("alpha {w:?} is neither a number in [0, 1] nor \"auto\""),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(i) = (1..alphas.len()).find(|&i| alphas[..i].contains(&alphas[i])) {
                let shown = match alphas[i] {
                    AlphaChoice::Fixed(a) => a.get().to_string(),
                    AlphaChoice::Auto => "\"auto\"".into(),
                };
                return Err(c.at(
                    d.alphas.get_ref()[i].span(),
                    format!(
                        "alphas lists {shown} twice; each alpha trains its own students, remove one"
                    ),
                ));
            }
            let temperature = match &d.temperature {
                None => {
                    Temperature::new(defaults::TEMPERATURE).expect("the default temperature is > 0")
                }
                Some(t) => Temperature::new(*t.get_ref()).ok_or_else(|| {
                    c.at(
                        t.span(),
                        format!(
                            "temperature {:?} is out of range: τ must be in (0, {}] (the KD term is scaled by τ²; papers use 1 to 20)",
                            t.get_ref(),
                            Temperature::MAX
                        ),
                    )
                })?,
            };
            let auto = match &d.auto {
                None => default_auto_search(),
                Some(a) => check_auto_search(c, a)?,
            };
            Distillation {
                alphas,
                temperature,
                auto,
            }
        }
    })
}

/// What the teachers must serve: a teacher for every α > 0 or `"auto"`, and one that can run
/// on augmented batches for online distillation.
fn check_teachers_serve(
    c: &Checker<'_>,
    teachers: &[TeacherSpec],
    student: &StudentSpec,
    distillation: &Distillation,
) -> Result<(), ManifestError> {
    let teacher = teachers.first();
    if student.augment.online_teacher && teacher.is_none() {
        return Err(c.file("[student] augment.teacher = \"online\" needs a [teacher]"));
    }
    if student.augment.online_teacher
        && teachers.iter().any(|t| {
            matches!(
                t.source,
                TeacherSource::Precomputed { .. } | TeacherSource::Ensemble { .. }
            )
        })
    {
        return Err(c.file(
            "[student] augment.teacher = \"online\" runs the teacher on augmented images; precomputed logits and ensembles cannot; use \"cached\"",
        ));
    }
    if student.augment.online_teacher && !student.augment.is_active() {
        return Err(c.file(
            "[student] augment.teacher = \"online\" without crop_padding or flip runs the teacher on the same images as the cache; drop it",
        ));
    }
    if distillation.distils() && teacher.is_none() {
        return Err(c.file(
            "[distillation] has an alpha above 0 (or \"auto\") but there is no [teacher]; add a [teacher] or use alphas = [0.0]",
        ));
    }
    Ok(())
}

/// `[[prune]]`: at least one entry, no entry repeating another's method, parameters and
/// policy (its keep fractions belong in the first).
fn check_prunes(
    c: &Checker<'_>,
    raw: Spanned<Vec<Spanned<raw::RawPrune>>>,
) -> Result<Vec<PruneSpec>, ManifestError> {
    if raw.get_ref().is_empty() {
        return Err(c.at(
            raw.span(),
            "no [[prune]] entries; add one, e.g. method = \"random\"",
        ));
    }
    let prune = raw
        .into_inner()
        .into_iter()
        .map(|p| check_prune(c, p))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, p) in prune.iter().enumerate() {
        if let Some(first) = prune[..i].iter().find(|q| {
            q.method == p.method
                && q.params == p.params
                && q.policy == p.policy
                && q.balance == p.balance
        }) {
            return Err(ManifestError::At {
                path: c.path.to_path_buf(),
                line: p.at.0,
                column: p.at.1,
                message: format!(
                    "this [[prune]] entry repeats the one at line {} (method {:?}, same params and policy); put all its keep fractions in one entry",
                    first.at.0, p.method
                ),
            });
        }
    }
    Ok(prune)
}

/// Parses `"4GiB"`, `"512 MiB"`, `"2000000"` or a number into bytes.
fn parse_bytes(raw: &raw::RawBytes) -> Option<u64> {
    let text = match raw {
        raw::RawBytes::Number(n) => return Some(*n),
        raw::RawBytes::Text(t) => t.trim(),
    };
    let split = text
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    Some((number * scale as f64) as u64)
}

/// `[dynamics]`: the proxy is the student unless a field overrides it.
fn check_dynamics(
    c: &Checker<'_>,
    d: Option<Spanned<raw::RawDynamics>>,
    student: &raw::RawStudent,
) -> Result<DynamicsSpec, ManifestError> {
    let mut d = d.map(|d| d.into_inner());
    let overlay = d.as_mut().map(|d| d.take_training());
    let import = match d.as_mut() {
        Some(d) => check_import(c, d, overlay.as_ref())?,
        None => None,
    };
    let mut proxy = match overlay {
        Some(o) => o.over(student),
        None => student.clone(),
    };
    // The proxy never saves, and its augmentation (if any) uses no teacher.
    proxy.save = false;
    // The proxy records every example every epoch.
    proxy.infobatch = None;
    if let Some(a) = proxy.augment.as_mut() {
        a.teacher = None;
    }
    let mut runs = None;
    let mut seed = 0;
    let mut checkpoints = None;
    let mut early_steps = None;
    let mut max_memory = None;
    if let Some(d) = d {
        runs = d
            .runs
            .map(|r| c.positive(&r, "[dynamics] runs"))
            .transpose()?;
        seed = d.seed.unwrap_or(defaults::DYNAMICS_SEED);
        checkpoints = d.checkpoints;
        early_steps = d.early_steps;
        max_memory = d
            .max_memory
            .map(|m| {
                parse_bytes(m.get_ref()).filter(|&b| b > 0).ok_or_else(|| {
                    c.at(
                        m.span(),
                        "[dynamics] max_memory must be a positive size, e.g. 4GiB, 512MiB or a number of bytes",
                    )
                })
            })
            .transpose()?;
    }
    let proxy = check_student(c, proxy)?;
    let epochs = proxy.epochs;
    let checkpoint_epochs = match checkpoints {
        // Paul et al. score EL2N/GraNd at epoch 20 of 200 (a tenth of training); the last
        // epoch serves the uncertainty scores and the embedding.
        None => {
            let mut v = vec![epochs.div_ceil(10), epochs];
            v.dedup();
            v
        }
        Some(list) => {
            let mut v = list.get_ref().clone();
            if let Some(bad) = v.iter().find(|&&e| e == 0 || e > epochs) {
                return Err(c.at(
                    list.span(),
                    format!("[dynamics] checkpoints has epoch {bad}; epochs are 1..={epochs} (the end of that epoch)"),
                ));
            }
            v.sort_unstable();
            if v.windows(2).any(|w| w[0] == w[1]) {
                return Err(c.at(list.span(), "[dynamics] checkpoints lists an epoch twice"));
            }
            v
        }
    };
    let early_steps = match early_steps {
        None => Vec::new(),
        Some(list) => {
            let mut v = list.get_ref().clone();
            v.sort_unstable();
            if v.windows(2).any(|w| w[0] == w[1]) {
                return Err(c.at(list.span(), "[dynamics] early_steps lists a step twice"));
            }
            v
        }
    };
    Ok(DynamicsSpec {
        proxy,
        runs: runs.unwrap_or(defaults::DYNAMICS_RUNS),
        seed,
        checkpoint_epochs,
        early_steps,
        max_memory,
        import,
    })
}

/// `[dynamics] from` and `layout`: the folders, resolved; with them, the fields that train
/// a proxy are refused, since none is trained.
fn check_import(
    c: &Checker<'_>,
    d: &mut raw::RawDynamics,
    overlay: Option<&raw::TrainingOverlay>,
) -> Result<Option<crate::dynamics::import::Import>, ManifestError> {
    use crate::dynamics::import::{Import, Layout};
    let Some(from) = d.from.take() else {
        if d.layout.is_some() {
            return Err(c.file("[dynamics] layout without from; add from = \"<folder>\""));
        }
        return Ok(None);
    };
    let span = from.span();
    let folders: Vec<String> = match from.into_inner() {
        raw::RawFolders::One(f) => vec![f],
        raw::RawFolders::Many(list) => list,
    };
    if folders.is_empty() || folders.iter().any(|f| f.is_empty()) {
        return Err(c.at(
            span,
            "[dynamics] from must name a folder (or a list of folders)",
        ));
    }
    let mut proxy_fields = overlay.map(|o| o.set_fields()).unwrap_or_default();
    for (set, name) in [
        (d.runs.is_some(), "runs"),
        (d.seed.is_some(), "seed"),
        (d.checkpoints.is_some(), "checkpoints"),
        (d.early_steps.is_some(), "early_steps"),
        (d.max_memory.is_some(), "max_memory"),
    ] {
        if set {
            proxy_fields.push(name);
        }
    }
    if !proxy_fields.is_empty() {
        return Err(c.at(
            span,
            format!(
                "[dynamics] from reads records made elsewhere, so {} (which set the proxy kdprune would train) cannot go with it; remove them",
                proxy_fields.join(", ")
            ),
        ));
    }
    Ok(Some(Import {
        folders: folders.iter().map(|f| c.resolve(f)).collect(),
        layout: d.layout.unwrap_or(Layout::Kdprune),
    }))
}

fn check_data(
    c: &Checker<'_>,
    d: raw::RawData,
    cache_dir: &Path,
) -> Result<DataSpec, ManifestError> {
    let source = data_source(c, &d, cache_dir)?;
    if let Some(s) = &d.sample_shape {
        if s.get_ref().is_empty() || s.get_ref().contains(&0) {
            return Err(c.at(
                s.span(),
                "sample_shape must be non-empty with positive sizes",
            ));
        }
    }
    let holdout = check_holdout(c, &d)?;
    let has_test = source.has_test_files();
    if has_test && holdout.is_some() {
        return Err(c.at(
            d.format.span(),
            "[data] has test files and a holdout; keep one",
        ));
    }
    if !has_test && holdout.is_none() {
        return Err(c.at(
            d.format.span(),
            "[data] needs a test set: test files, or holdout = 0.2 (a seeded random fraction of train), or holdout_last = N",
        ));
    }
    let sample_shape = d.sample_shape.as_ref().map(|s| s.get_ref().clone());
    let normalise = check_normalise(c, d.normalise, sample_shape.as_deref())?;
    Ok(DataSpec {
        source,
        num_classes: d.num_classes,
        holdout,
        normalise,
    })
}

/// `[data]`'s files for its `format`, each required one named when missing.
fn data_source(
    c: &Checker<'_>,
    d: &raw::RawData,
    cache_dir: &Path,
) -> Result<DataSource, ManifestError> {
    let format = *d.format.get_ref();
    let need = |v: &Option<String>, field: &str| -> Result<PathBuf, ManifestError> {
        v.as_deref().map(|p| c.resolve(p)).ok_or_else(|| {
            c.at(
                d.format.span(),
                format!("[data] format = \"{format}\" needs {field}"),
            )
        })
    };
    // The test files of the formats that come as (features, labels) pairs.
    let test_pair = || -> Result<Option<(PathBuf, PathBuf)>, ManifestError> {
        match (&d.test_images, &d.test_labels) {
            (Some(x), Some(y)) => Ok(Some((c.resolve(x), c.resolve(y)))),
            (None, None) => Ok(None),
            _ => Err(c.at(
                d.format.span(),
                "[data] give both test_images and test_labels, or neither",
            )),
        }
    };
    Ok(if format == raw::DataFormat::ImageFolder {
        DataSource::ImageFolder {
            train: need(&d.train, "train (a folder of class folders)")?,
            test: d.test.as_deref().map(|p| c.resolve(p)),
            cache: cache_dir.to_path_buf(),
        }
    } else if matches!(format, raw::DataFormat::Cifar10 | raw::DataFormat::Cifar100) {
        let ten = format == raw::DataFormat::Cifar10;
        DataSource::Cifar {
            train: cifar_files(
                need(&d.train, "train (a CIFAR .bin file or its folder)")?,
                if ten { "data_batch" } else { "train" },
            ),
            test: d.test.as_deref().map(|p| cifar_files(c.resolve(p), "test")),
            label_bytes: if ten { 1 } else { 2 },
            classes: if ten { 10 } else { 100 },
        }
    } else if format == raw::DataFormat::Npz {
        DataSource::Npz {
            train: need(&d.train, "train (a .npz with arrays x and y)")?,
            test: d.test.as_deref().map(|p| c.resolve(p)),
        }
    } else if format == raw::DataFormat::Npy {
        let test = test_pair()?;
        DataSource::Npy {
            train_features: need(&d.train_images, "train_images (the features .npy)")?,
            train_labels: need(&d.train_labels, "train_labels (the labels .npy)")?,
            test,
        }
    } else if format == raw::DataFormat::Idx {
        let test = test_pair()?;
        DataSource::Idx {
            train_images: need(&d.train_images, "train_images")?,
            train_labels: need(&d.train_labels, "train_labels")?,
            test,
        }
    } else {
        let delimiter = csv_delimiter(c, d)?;
        DataSource::Csv {
            train: need(&d.train, "train")?,
            test: d.test.as_deref().map(|p| c.resolve(p)),
            label: match &d.label {
                Some(raw::RawLabel::Name(n)) => LabelColumn::Name(n.clone()),
                Some(raw::RawLabel::Index(i)) => LabelColumn::Index(*i),
                None => LabelColumn::Index(-1),
            },
            header: d.header,
            delimiter,
            classes: d.classes.clone(),
            sample_shape: d.sample_shape.as_ref().map(|s| s.get_ref().clone()),
        }
    })
}

/// A CIFAR path: the file itself, or in a folder the `.bin` files whose names start with
/// `pattern` (the folder itself when none does, for the reader to refuse by name).
fn cifar_files(p: PathBuf, pattern: &str) -> Vec<PathBuf> {
    if p.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&p)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(pattern) && n.ends_with(".bin"))
        });
        files.sort();
        if files.is_empty() {
            vec![p]
        } else {
            files
        }
    } else {
        vec![p]
    }
}

/// `[data] delimiter`: one character (or `"\\t"`, `"tab"`); `,` by default.
fn csv_delimiter(c: &Checker<'_>, d: &raw::RawData) -> Result<u8, ManifestError> {
    Ok(match d.delimiter.as_deref() {
        None => b',',
        Some(s) if s.len() == 1 => s.as_bytes()[0],
        Some("\\t") | Some("tab") => b'\t',
        Some(s) => {
            return Err(c.at(
                d.format.span(),
                format!("[data] delimiter {s:?} must be one character"),
            ))
        }
    })
}

/// `holdout` (a fraction in (0, 1)) or `holdout_last` (a count), not both.
fn check_holdout(c: &Checker<'_>, d: &raw::RawData) -> Result<Option<Holdout>, ManifestError> {
    Ok(match (&d.holdout, &d.holdout_last) {
        (Some(_), Some(l)) => return Err(c.at(l.span(), "give holdout or holdout_last, not both")),
        (Some(f), None) => {
            let v = *f.get_ref();
            if !(v > 0.0 && v < 1.0) {
                return Err(c.at(f.span(), format!("holdout = {v} must be in (0, 1)")));
            }
            Some(Holdout::Fraction(v))
        }
        (None, Some(l)) => Some(Holdout::Last(c.positive(l, "holdout_last")?)),
        (None, None) => None,
    })
}

/// `[data.normalise]`: fixed scale, mean and std (checked against `sample_shape` when known),
/// or `standardize = true`; none is the identity.
fn check_normalise(
    c: &Checker<'_>,
    raw: Option<Spanned<raw::RawNormalise>>,
    sample_shape: Option<&[usize]>,
) -> Result<NormaliseSpec, ManifestError> {
    Ok(match raw {
        None => NormaliseSpec::Fixed(Normalisation::default()),
        Some(n) => {
            let span = n.span();
            let n = n.into_inner();
            let scale = n.scale.unwrap_or(1.0);
            if n.standardize {
                if n.mean.is_some() || n.std.is_some() {
                    return Err(c.at(span, "[data.normalise] standardize = true fits mean and std; do not give them too"));
                }
                NormaliseSpec::Standardize { scale }
            } else {
                let norm = Normalisation {
                    scale,
                    mean: n.mean.unwrap_or_else(|| vec![0.0]),
                    std: n.std.unwrap_or_else(|| vec![1.0]),
                };
                if let Some(shape) = sample_shape {
                    norm.check(shape)
                        .map_err(|m| c.at(span.clone(), format!("[data.normalise] {m}")))?;
                } else if norm.mean.len() != norm.std.len() || norm.scale == 0.0 {
                    norm.check(&[norm.mean.len()])
                        .map_err(|m| c.at(span.clone(), format!("[data.normalise] {m}")))?;
                }
                NormaliseSpec::Fixed(norm)
            }
        }
    })
}

fn check_teacher(
    c: &Checker<'_>,
    span: Range<usize>,
    mut t: raw::RawTeacher,
    earlier: &[TeacherSpec],
    student: &raw::RawStudent,
) -> Result<TeacherSpec, ManifestError> {
    if let Some(train) = t.train.take() {
        return check_trained_teacher(c, span, t, train, student);
    }
    if t.combine.is_some() && t.ensemble.is_none() {
        return Err(c.at(
            span,
            "[teacher] combine is for an ensemble = [\"teacher\", ...]",
        ));
    }
    if let Some(names) = &t.ensemble {
        return check_ensemble(c, span, &t, names, earlier);
    }
    let source = teacher_source(c, span, &t)?;
    let name = t.name.clone().unwrap_or_else(|| source.default_name());
    let (preprocess, layout) = check_teacher_preprocess(c, t.preprocess)?;
    let output_kind = t.output_kind.unwrap_or(defaults::TEACHER_OUTPUT_KIND);
    let batch_size = match &t.batch_size {
        None => defaults::TEACHER_BATCH_SIZE,
        Some(b) => c.positive(b, "[teacher] batch_size")?,
    };
    let embedding = check_teacher_embedding(c, t.embedding.as_ref(), &source)?;
    Ok(TeacherSpec {
        name,
        source,
        preprocess,
        layout,
        output_kind,
        batch_size,
        embedding,
    })
}

/// `ensemble = [...]`: at least two teachers named above it, and nothing a member owns.
fn check_ensemble(
    c: &Checker<'_>,
    span: Range<usize>,
    t: &raw::RawTeacher,
    names: &[String],
    earlier: &[TeacherSpec],
) -> Result<TeacherSpec, ManifestError> {
    if t.onnx.is_some() || t.plugin.is_some() || t.logits.is_some() {
        return Err(c.at(span, "[teacher] an ensemble combines other teachers; give ensemble alone, not with onnx, plugin or logits"));
    }
    if names.len() < 2 {
        return Err(c.at(span, "[teacher] ensemble needs at least two teacher names"));
    }
    let members = names
        .iter()
        .map(|n| {
            earlier.iter().position(|e| &e.name == n).ok_or_else(|| {
                c.at(
                    span.clone(),
                    format!(
                        "[teacher] ensemble names {n:?}, which is not a [[teacher]] above it; the earlier ones are {:?}",
                        earlier.iter().map(|e| e.name.as_str()).collect::<Vec<_>>()
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if t.preprocess.is_some() || t.embedding.is_some() || t.output_kind.is_some() {
        return Err(c.at(span, "[teacher] an ensemble takes name, ensemble and combine; each member has its own preprocessing and output settings"));
    }
    Ok(TeacherSpec {
        name: t.name.clone().unwrap_or_else(|| "ensemble".into()),
        source: TeacherSource::Ensemble {
            members,
            combine: t.combine.unwrap_or(Combine::Probabilities),
        },
        preprocess: Normalisation::default(),
        layout: defaults::TEACHER_LAYOUT,
        output_kind: OutputKind::LogProbabilities,
        batch_size: defaults::TEACHER_BATCH_SIZE,
        embedding: None,
    })
}

/// Exactly one of `onnx`, `plugin` and `logits`, with the fields that kind takes.
fn teacher_source(
    c: &Checker<'_>,
    span: Range<usize>,
    t: &raw::RawTeacher,
) -> Result<TeacherSource, ManifestError> {
    Ok(match (&t.onnx, &t.plugin, &t.logits) {
        (None, None, Some(files)) => {
            if t.params.is_some() || t.input.is_some() || t.output.is_some() || t.provider.is_some() {
                return Err(c.at(span, "[teacher] logits = { ... } serves logits made elsewhere; it takes no params, input, output or provider"));
            }
            TeacherSource::Precomputed {
                train: c.resolve(&files.train),
                test: c.resolve(&files.test),
            }
        }
        (Some(model), None, None) => {
            if let Some(p) = &t.params {
                return Err(c.at(p.span(), "[teacher] params are for plugin teachers; an ONNX teacher takes input, output, output_kind, provider"));
            }
            let provider = t.provider.unwrap_or(defaults::TEACHER_PROVIDER);
            TeacherSource::Onnx {
                model: c.resolve(model),
                input: t.input.clone(),
                output: t.output.clone(),
                provider,
                allow_cpu_fallback: t.allow_cpu_fallback,
                ort_library: t.ort_library.as_deref().map(|p| c.resolve(p)),
                threads: t.threads.unwrap_or(0),
            }
        }
        (None, Some(name), None) => TeacherSource::Plugin {
            name: name.clone(),
            params: t
                .params
                .as_ref()
                .map(|p| p.get_ref().clone().into_iter().collect())
                .unwrap_or_default(),
            params_at: c.position(t.params.as_ref().map(|p| p.span()).unwrap_or(span.clone())),
        },
        _ => {
            return Err(c.at(
                span,
                "[teacher] give exactly one of onnx = \"model.onnx\", plugin = \"name\" or logits = { train = \"train.npy\", test = \"test.npy\" }",
            ))
        }
    })
}

/// `[teacher.preprocess]`: the teacher's own scaling and layout of the raw data.
fn check_teacher_preprocess(
    c: &Checker<'_>,
    raw: Option<Spanned<raw::RawPreprocess>>,
) -> Result<(Normalisation, Layout), ManifestError> {
    Ok(match raw {
        None => (Normalisation::default(), Layout::Flat),
        Some(p) => {
            let pspan = p.span();
            let p = p.into_inner();
            let layout = p.layout.unwrap_or(defaults::TEACHER_LAYOUT);
            let norm = Normalisation {
                scale: p.scale.unwrap_or(1.0),
                mean: p.mean.unwrap_or_else(|| vec![0.0]),
                std: p.std.unwrap_or_else(|| vec![1.0]),
            };
            if norm.mean.len() != norm.std.len()
                || norm.scale == 0.0
                || norm.std.iter().any(|&s| s <= 0.0)
            {
                return Err(c.at(pspan, "[teacher.preprocess] needs as many means as stds, a non-zero scale and positive stds"));
            }
            (norm, layout)
        }
    })
}

/// `[teacher] embedding`: a tensor name, for ONNX teachers only.
fn check_teacher_embedding(
    c: &Checker<'_>,
    embedding: Option<&Spanned<String>>,
    source: &TeacherSource,
) -> Result<Option<String>, ManifestError> {
    let Some(e) = embedding else {
        return Ok(None);
    };
    if !matches!(source, TeacherSource::Onnx { .. }) {
        return Err(c.at(
            e.span(),
            "[teacher] embedding names a tensor of an ONNX model; a plugin or precomputed teacher has none",
        ));
    }
    if e.get_ref().trim().is_empty() {
        return Err(c.at(
            e.span(),
            "[teacher] embedding is empty; name a tensor of the model",
        ));
    }
    Ok(Some(e.get_ref().clone()))
}

/// `[teacher] train = { ... }`: the student's settings with the table's over them; the teacher
/// sees the data as the student does (its preprocessing is `[data.normalise]`), so it takes
/// only `name`, `threads` and `batch_size` besides.
fn check_trained_teacher(
    c: &Checker<'_>,
    span: Range<usize>,
    t: raw::RawTeacher,
    train: Spanned<raw::RawTrainedTeacher>,
    student: &raw::RawStudent,
) -> Result<TeacherSpec, ManifestError> {
    let others = [
        ("onnx", t.onnx.is_some()),
        ("plugin", t.plugin.is_some()),
        ("logits", t.logits.is_some()),
        ("ensemble", t.ensemble.is_some()),
        ("params", t.params.is_some()),
        ("input", t.input.is_some()),
        ("output", t.output.is_some()),
        ("output_kind", t.output_kind.is_some()),
        ("provider", t.provider.is_some()),
        ("ort_library", t.ort_library.is_some()),
        ("preprocess", t.preprocess.is_some()),
        ("embedding", t.embedding.is_some()),
    ];
    if let Some((field, _)) = others.iter().find(|(_, given)| *given) {
        return Err(c.at(
            span,
            format!("[teacher] train = {{ ... }} makes its own model, which sees the data as the student does; drop {field} (it takes name, threads and batch_size besides)"),
        ));
    }
    let self_distillation = !train.get_ref().changes_architecture();
    let (seed, overlay) = train.into_inner().split();
    let mut raw = overlay.over(student);
    // The teacher is trained once, on labels, and is not saved among the students.
    raw.save = false;
    // The teacher trains on the full set every epoch; pruning during training is the student's.
    raw.infobatch = None;
    if let Some(a) = raw.augment.as_mut() {
        a.teacher = None;
    }
    let spec = check_student(c, raw).map_err(|e| match e {
        ManifestError::At {
            path,
            line,
            column,
            message,
        } => ManifestError::At {
            path,
            line,
            column,
            message: message.replacen("[student]", "[teacher] train", 1),
        },
        other => other,
    })?;
    let batch_size = t
        .batch_size
        .map(|b| c.positive(&b, "[teacher] batch_size"))
        .transpose()?
        .unwrap_or(defaults::TEACHER_BATCH_SIZE);
    Ok(TeacherSpec {
        name: t
            .name
            .unwrap_or_else(|| if self_distillation { "self" } else { "trained" }.into()),
        source: TeacherSource::Trained {
            spec: Box::new(spec),
            seed: seed.unwrap_or(defaults::TRAINED_TEACHER_SEED),
            threads: t.threads.unwrap_or(0),
        },
        // Filled in by `teacher::trained` with the student's fitted normalisation.
        preprocess: Normalisation::default(),
        layout: defaults::TEACHER_LAYOUT,
        output_kind: OutputKind::Logits,
        batch_size,
        embedding: None,
    })
}

/// `[student] infobatch`: `ratio` in [0, 0.9], `delta` in (0, 1].
fn check_infobatch(
    c: &Checker<'_>,
    raw: Option<&Spanned<raw::RawInfoBatch>>,
) -> Result<Option<crate::train::infobatch::InfoBatchSpec>, ManifestError> {
    use crate::train::infobatch::InfoBatchSpec;
    let Some(raw) = raw else { return Ok(None) };
    let ratio = raw.get_ref().ratio.unwrap_or(InfoBatchSpec::DEFAULT_RATIO);
    let delta = raw.get_ref().delta.unwrap_or(InfoBatchSpec::DEFAULT_DELTA);
    if !(0.0..=InfoBatchSpec::MAX_RATIO).contains(&ratio) {
        return Err(c.at(
            raw.span(),
            format!("[student] infobatch ratio = {ratio} must be in [0, 0.9] (the fraction of the well-learned examples skipped each pruned epoch; InfoBatch: 0.5, and it keeps at least a tenth)"),
        ));
    }
    if !(delta > 0.0 && delta <= 1.0) {
        return Err(c.at(
            raw.span(),
            format!("[student] infobatch delta = {delta} must be in (0, 1] (the fraction of the epochs that prune; InfoBatch: 0.875)"),
        ));
    }
    Ok(Some(InfoBatchSpec { ratio, delta }))
}

fn check_student(c: &Checker<'_>, s: raw::RawStudent) -> Result<StudentSpec, ManifestError> {
    let lr = *s.lr.get_ref();
    if !(lr > 0.0 && lr.is_finite()) {
        return Err(c.at(s.lr.span(), format!("lr = {lr} must be positive")));
    }
    let layers = check_layers(c, &s)?;
    let optimizer = check_optimizer(c, &s)?;
    let weight_decay = match &s.weight_decay {
        None => defaults::WEIGHT_DECAY,
        Some(w) if *w.get_ref() >= 0.0 => *w.get_ref(),
        Some(w) => return Err(c.at(w.span(), "weight_decay must be >= 0")),
    };
    let schedule = check_schedule(c, &s)?;
    let clip_grad_norm = s
        .clip_grad_norm
        .as_ref()
        .map(|v| c.positive(v, "clip_grad_norm"))
        .transpose()?;
    let augment = match s.augment {
        None => Augment::default(),
        Some(a) => {
            let online_teacher = a.teacher == Some(raw::AugmentTeacher::Online);
            Augment {
                crop_padding: a.crop_padding,
                flip: a.flip,
                online_teacher,
            }
        }
    };
    Ok(StudentSpec {
        layers,
        epochs: c.positive(&s.epochs, "[student] epochs")?,
        batch_size: match &s.batch_size {
            None => defaults::STUDENT_BATCH_SIZE,
            Some(b) => c.positive(b, "[student] batch_size")?,
        },
        lr,
        optimizer,
        weight_decay,
        schedule,
        warmup_epochs: s.warmup_epochs.unwrap_or(defaults::WARMUP_EPOCHS),
        clip_grad_norm,
        augment,
        init: s.init.unwrap_or_default(),
        precision: check_precision(c, s.precision.as_ref())?,
        save: s.save,
        infobatch: check_infobatch(c, s.infobatch.as_ref())?,
    })
}

/// `hidden` (an MLP) or `layers` (spec strings), not both; neither is a linear student.
fn check_layers(c: &Checker<'_>, s: &raw::RawStudent) -> Result<Vec<LayerSpec>, ManifestError> {
    Ok(match (&s.hidden, &s.layers) {
        (Some(_), Some(l)) => {
            return Err(c.at(
                l.span(),
                "[student] give hidden (an MLP) or layers, not both",
            ))
        }
        (Some(hidden), None) => {
            if hidden.contains(&0) {
                return Err(c.file("[student] hidden layer sizes must be positive"));
            }
            crate::train::spec::mlp(hidden)
        }
        (None, Some(layers)) => layers
            .get_ref()
            .iter()
            .map(|l| {
                parse_layer(l.get_ref())
                    .map_err(|m| c.at(l.span(), format!("[student] layers: {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        (None, None) => Vec::new(),
    })
}

/// `optimizer` with the fields it takes: SGD's `momentum` and `nesterov`, AdamW's `betas`.
fn check_optimizer(c: &Checker<'_>, s: &raw::RawStudent) -> Result<OptimizerSpec, ManifestError> {
    let momentum = match &s.momentum {
        None => defaults::SGD_MOMENTUM,
        Some(m) if (0.0..1.0).contains(m.get_ref()) => *m.get_ref(),
        Some(m) => {
            return Err(c.at(
                m.span(),
                format!("momentum = {} must be in [0, 1)", m.get_ref()),
            ))
        }
    };
    Ok(match s.optimizer {
        None | Some(raw::OptimizerName::Sgd) => {
            if let Some(b) = &s.betas {
                return Err(c.at(b.span(), "betas are for optimizer = \"adamw\""));
            }
            OptimizerSpec::Sgd {
                momentum,
                nesterov: s.nesterov.unwrap_or(defaults::SGD_NESTEROV),
            }
        }
        Some(raw::OptimizerName::Adamw) => {
            if s.nesterov.is_some() || s.momentum.is_some() {
                return Err(c.file("[student] momentum and nesterov are for optimizer = \"sgd\"; adamw takes betas"));
            }
            let [beta1, beta2] = s
                .betas
                .as_ref()
                .map(|b| *b.get_ref())
                .unwrap_or(defaults::ADAMW_BETAS);
            if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) {
                let span = s.betas.as_ref().map(|b| b.span()).unwrap_or(0..0);
                return Err(c.at(span, "betas must be in [0, 1)"));
            }
            OptimizerSpec::AdamW {
                beta1,
                beta2,
                eps: 1e-8,
            }
        }
    })
}

/// `schedule`, and for `"step"` its `step_every` and `step_gamma`.
fn check_schedule(c: &Checker<'_>, s: &raw::RawStudent) -> Result<ScheduleSpec, ManifestError> {
    Ok(match s.schedule {
        None | Some(raw::ScheduleName::Cosine) => ScheduleSpec::Cosine,
        Some(raw::ScheduleName::Constant) => ScheduleSpec::Constant,
        Some(raw::ScheduleName::Step) => {
            let every = s.step_every.as_ref().ok_or_else(|| {
                c.file("[student] schedule = \"step\" needs step_every (epochs) and step_gamma")
            })?;
            let gamma = s
                .step_gamma
                .as_ref()
                .map(|g| *g.get_ref())
                .unwrap_or(defaults::STEP_GAMMA);
            if !(gamma > 0.0 && gamma <= 1.0) {
                return Err(c.file("[student] step_gamma must be in (0, 1]"));
            }
            ScheduleSpec::Step {
                every_epochs: c.positive(every, "step_every")?,
                gamma,
            }
        }
    })
}

/// `precision`: `"bf16"` only where the CPU has AVX-512 BF16.
fn check_precision(
    c: &Checker<'_>,
    precision: Option<&Spanned<crate::train::kernels::gemm::Precision>>,
) -> Result<crate::train::kernels::gemm::Precision, ManifestError> {
    Ok(match precision {
        None => crate::train::kernels::gemm::Precision::F32,
        Some(p) => {
            let precision = *p.get_ref();
            if precision == crate::train::kernels::gemm::Precision::Bf16
                && !crate::train::kernels::gemm_bf16::available()
            {
                return Err(c.at(
                    p.span(),
                    "[student] precision = \"bf16\" needs a CPU with AVX-512 BF16 (vdpbf16ps), which this one lacks; use \"f32\" (the default)",
                ));
            }
            precision
        }
    })
}

fn check_prune(c: &Checker<'_>, p: Spanned<raw::RawPrune>) -> Result<PruneSpec, ManifestError> {
    let at = c.position(p.span());
    let p = p.into_inner();
    if p.keep.get_ref().is_empty() {
        return Err(c.at(
            p.keep.span(),
            "keep is empty; give fractions kept, e.g. [0.1, 0.5, 1.0]",
        ));
    }
    let keep = p
        .keep
        .get_ref()
        .iter()
        .map(|k| {
            Keep::new(*k.get_ref()).ok_or_else(|| {
                c.at(
                    k.span(),
                    format!("keep = {} is outside (0, 1]; keep is the fraction of the training set KEPT (0.1 keeps 10 %)", k.get_ref()),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(i) = (1..keep.len()).find(|&i| keep[..i].contains(&keep[i])) {
        return Err(c.at(
            p.keep.get_ref()[i].span(),
            format!("keep lists {} twice; remove one", keep[i].get()),
        ));
    }
    let policy_params = p
        .policy_params
        .as_ref()
        .map(|t| t.get_ref().clone())
        .unwrap_or_default();
    let balance = p.balance.as_ref().map(|b| b.get_ref().clone());
    let policy = match &p.policy {
        None => {
            if let Some(t) = &p.policy_params {
                return Err(c.at(
                    t.span(),
                    "policy_params without a policy; name the policy they are for",
                ));
            }
            if let Some(b) = &p.balance {
                // Checked here for its spelling; applied to the plugin's default rule later.
                Policy::build("hardest", Some(b.get_ref()), &BTreeMap::new())
                    .map_err(|m| c.at(b.span(), format!("balance: {m}")))?;
            }
            None
        }
        Some(v) => Some(
            Policy::build(v.get_ref(), balance.as_deref(), &policy_params)
                .map_err(|m| c.at(v.span(), format!("policy: {m}")))?,
        ),
    };
    if p.method.get_ref().trim().is_empty() {
        return Err(c.at(
            p.method.span(),
            "method is empty; name a pruning plugin, e.g. \"random\"",
        ));
    }
    Ok(PruneSpec {
        method: p.method.into_inner(),
        keep,
        policy,
        balance: if policy.is_some() { None } else { balance },
        params: p.params.map(|t| t.into_inner()).unwrap_or_default(),
        at,
    })
}
