//! Teachers and their soft labels.
//!
//! Owns running a teacher (an ONNX model via [`onnx`], or a teacher plugin) over a data set in
//! batches, interpreting its output (logits, probabilities or log-probabilities, see
//! [`OutputKind`]), and the on-disk cache of the result ([`cache`]), keyed by the content
//! hashes of the model, the data and the preprocessing. The result is always kept as
//! log-space scores ("logits"): `softmax(logits / τ)` is the soft label at temperature τ for
//! every output kind, because for probabilities `p`, `softmax(ln p / τ) ∝ p^(1/τ)`.

mod cache;
pub mod error;
pub mod inputs;
pub mod onnx;
pub mod onnx_graph;
pub mod runtime;
pub mod spec;
pub mod trained;

use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::data::Dataset;
use crate::plugins::{check_params, PluginData, PluginError, PluginTeacher, Registry};
use crate::progress;
use crate::tensor::{argmax, softmax_rows, Elements, HostTensor};
pub use error::TeacherError;
use kdprune_plugin_api::PluginKind;
use spec::{Combine, OutputKind, TeacherSource, TeacherSpec};

/// A teacher's scores for a data set.
#[derive(Debug, Clone)]
pub struct TeacherLogits {
    /// `[N, C]` log-space scores; `softmax(logits / τ)` is the soft label at τ.
    pub logits: Array2<f32>,
    /// The kind the raw output was read as.
    pub kind: OutputKind,
    /// Whether these came from the cache.
    pub cached: bool,
}

impl TeacherLogits {
    /// Accuracy of the teacher's argmax against `labels` `[N]`.
    pub fn accuracy(&self, labels: &[u32]) -> f64 {
        let correct = self
            .logits
            .rows()
            .into_iter()
            .zip(labels)
            .filter(|(row, &y)| argmax(row.as_slice().unwrap_or(&[])) == y as usize)
            .count();
        correct as f64 / labels.len().max(1) as f64
    }

    /// Probabilities at temperature `tau`, `[N, C]`.
    pub fn probabilities(&self, tau: f32) -> Array2<f32> {
        softmax_rows(self.logits.view(), tau)
    }

    /// `[N, C]` log-probabilities at τ = 1 (`log_softmax` of the scores, each row shifted by
    /// its own constant): `softmax(values / τ)` is the soft label at any τ.
    pub fn log_probabilities(&self) -> Array2<f32> {
        let mut out = self.logits.clone();
        for mut row in out.rows_mut() {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
            let shift = max + sum.ln();
            row.mapv_inplace(|v| v - shift);
        }
        out
    }

    /// An ensemble of `members` (each `[N, C]`, one data set): every member's scores turned
    /// into log-probabilities at τ = 1, then the log of their mean probability
    /// ([`Combine::Probabilities`]) or their mean log-probability
    /// ([`Combine::LogProbabilities`], a geometric mean the soft label's softmax normalises).
    pub fn combine(members: &[&TeacherLogits], how: Combine) -> TeacherLogits {
        let first = &members[0].logits;
        let (n, c) = first.dim();
        let log_probs: Vec<Array2<f32>> = members
            .iter()
            .map(|m| {
                assert_eq!(m.logits.dim(), (n, c), "ensemble members label one set");
                let mut lp = m.logits.clone();
                for mut row in lp.rows_mut() {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let log_sum = row.iter().map(|v| (v - max).exp()).sum::<f32>().ln() + max;
                    row.mapv_inplace(|v| v - log_sum);
                }
                lp
            })
            .collect();
        let k = members.len() as f32;
        let mut out = Array2::<f32>::zeros((n, c));
        match how {
            Combine::Probabilities => {
                for lp in &log_probs {
                    out.zip_mut_with(lp, |o, &l| *o += l.exp() / k);
                }
                out.mapv_inplace(|p| p.max(1e-30).ln());
            }
            Combine::LogProbabilities => {
                for lp in &log_probs {
                    out.zip_mut_with(lp, |o, &l| *o += l / k);
                }
            }
        }
        TeacherLogits {
            logits: out,
            kind: OutputKind::LogProbabilities,
            cached: members.iter().all(|m| m.cached),
        }
    }
}

/// The content key of every teacher of a manifest, in order: an ensemble's is made of its
/// members' keys and how it combines them.
pub fn content_keys(
    teachers: &[TeacherSpec],
    registry: &Registry,
) -> Result<Vec<String>, TeacherError> {
    let mut keys: Vec<String> = Vec::with_capacity(teachers.len());
    for spec in teachers {
        let key = match &spec.source {
            TeacherSource::Ensemble { members, combine } => {
                let parts: Vec<&str> = members.iter().map(|&m| keys[m].as_str()).collect();
                crate::hash::sha256_hex(
                    format!("ensemble|{combine:?}|{}", parts.join("|")).as_bytes(),
                )
            }
            TeacherSource::Trained { spec, seed, .. } => trained::recipe_key(spec, *seed),
            _ => content_key(spec, registry)?,
        };
        keys.push(key);
    }
    Ok(keys)
}

/// Detects what a batch of raw outputs `[B, C]` holds.
pub fn detect_output_kind(values: &[f32], num_classes: usize) -> OutputKind {
    let rows = values.chunks(num_classes.max(1));
    let tolerance = 1e-3;
    let all = |f: &dyn Fn(&[f32]) -> bool| rows.clone().all(f);
    if all(&|r| {
        r.iter().all(|&v| (0.0..=1.0 + 1e-6).contains(&v))
            && (r.iter().sum::<f32>() - 1.0).abs() < tolerance
    }) {
        OutputKind::Probabilities
    } else if all(&|r| {
        r.iter().all(|&v| v <= 1e-6)
            && (r.iter().map(|v| v.exp()).sum::<f32>() - 1.0).abs() < tolerance
    }) {
        OutputKind::LogProbabilities
    } else {
        OutputKind::Logits
    }
}

/// Refuses a first batch whose values are impossible for the kind the manifest declared
/// (probabilities outside [0, 1] or not summing to 1, positive log-probabilities), or that
/// are plainly another kind than declared logits.
pub fn check_declared_kind(
    values: &[f32],
    num_classes: usize,
    kind: OutputKind,
) -> Result<(), String> {
    let detected = detect_output_kind(values, num_classes);
    let hint = "set [teacher] output_kind to what the model outputs, or \"auto\"";
    match (kind, detected) {
        (OutputKind::Probabilities, d) if d != OutputKind::Probabilities => Err(format!(
            "[teacher] output_kind = \"probabilities\" but the first batch's rows are not probabilities (values outside [0, 1] or rows not summing to 1); {hint}"
        )),
        (OutputKind::LogProbabilities, d) if d != OutputKind::LogProbabilities => Err(format!(
            "[teacher] output_kind = \"log_probabilities\" but the first batch's rows are not log-probabilities (positive values or rows whose exponentials do not sum to 1); {hint}"
        )),
        (OutputKind::Logits, d) if d != OutputKind::Logits => Err(format!(
            "[teacher] output_kind = \"logits\" but the first batch looks like {}; using them as logits would flatten the soft labels; {hint}",
            if d == OutputKind::Probabilities { "probabilities (rows in [0, 1] summing to 1)" } else { "log-probabilities" }
        )),
        _ => Ok(()),
    }
}

/// A batch's bad outputs located at the batch's first example.
fn at_batch(e: TeacherError, start: usize) -> TeacherError {
    match e {
        TeacherError::NotAScore { teacher, value, .. } => TeacherError::NotAScore {
            teacher,
            value,
            start: Some(start),
        },
        other => other,
    }
}

/// Turns raw outputs of `kind` into log-space scores, in place.
fn to_log_space(values: &mut [f32], kind: OutputKind) {
    if kind == OutputKind::Probabilities {
        // The floor keeps a zero probability finite; at τ = 1 its weight is 1e-30.
        for v in values.iter_mut() {
            *v = v.max(1e-30).ln();
        }
    }
}

enum Live {
    Onnx(onnx::OnnxTeacher),
    Plugin(PluginTeacher),
}

/// The teacher's content key (model file or plugin file and parameters, preprocessing,
/// output kind), without starting it: what a cell distilled from it depends on.
pub fn content_key(spec: &TeacherSpec, registry: &Registry) -> Result<String, TeacherError> {
    Ok(cache::KeyBase::new(spec, registry)?.hex())
}

/// A teacher ready to label data sets.
pub struct Teacher<'a> {
    spec: &'a TeacherSpec,
    live: Option<Live>,
    key_base: cache::KeyBase,
    cache_dir: PathBuf,
    registry: &'a Registry,
    train: &'a Dataset,
    seed: u64,
    /// The output kind, once known (from the manifest or the first batch).
    kind: Option<OutputKind>,
    /// Whether the first batch was checked against the kind.
    kind_checked: bool,
    /// Whether the teacher only labels whole sets (no online distillation beside training).
    bulk: bool,
    /// The preprocessed batch `[B, D]`, reused from batch to batch.
    batch_input: Array2<f32>,
}

impl<'a> Teacher<'a> {
    /// Prepares a teacher: hashes its model (for the cache) but starts it only when a data
    /// set is not in the cache.
    pub fn new(
        spec: &'a TeacherSpec,
        registry: &'a Registry,
        train: &'a Dataset,
        cache_dir: &Path,
        seed: u64,
    ) -> Result<Self, TeacherError> {
        let key_base = cache::KeyBase::new(spec, registry)?;
        Ok(Self {
            spec,
            live: None,
            key_base,
            cache_dir: cache_dir.to_path_buf(),
            registry,
            train,
            seed,
            kind: (spec.output_kind != OutputKind::Auto).then_some(spec.output_kind),
            kind_checked: false,
            bulk: false,
            batch_input: Array2::zeros((0, 0)),
        })
    }

    /// Declares that this teacher will only label whole data sets, never batches beside a
    /// training student (online distillation): ONNX Runtime's workers may then spin between
    /// batches instead of sleeping. Takes effect when the model is opened.
    pub fn set_bulk(&mut self, bulk: bool) {
        self.bulk = bulk;
    }

    /// The teacher's log-space scores for `data`, `[N, C]`, from the cache or by running it.
    pub fn logits(&mut self, data: &Dataset, what: &str) -> Result<TeacherLogits, TeacherError> {
        if let Some(file) = self.precomputed_file(data) {
            // Reading the file is as fast as reading a cache of it.
            let (logits, kind) = self.read_precomputed(file, data)?;
            tracing::info!(set = what, file = %file.display(), "teacher outputs precomputed");
            return Ok(TeacherLogits {
                logits,
                kind,
                cached: false,
            });
        }
        let key = self.key_base.key_for(data);
        let path = key.path(&self.cache_dir);
        if let Some((logits, kind)) = cache::read(&path, data.len(), data.num_classes)? {
            tracing::info!(set = what, cache = %path.display(), "teacher outputs from the cache");
            return Ok(TeacherLogits {
                logits,
                kind,
                cached: true,
            });
        }
        if let Some((logits, kind, parts)) = cache::assemble(&path, data.len(), data.num_classes) {
            tracing::info!(set = what, parts = parts.len(), cache = %path.display(), "teacher outputs joined from the shards' parts");
            if cache::write(&path, &logits, kind).is_ok() {
                for part in parts {
                    let _ = std::fs::remove_file(part);
                }
            }
            return Ok(TeacherLogits {
                logits,
                kind,
                cached: true,
            });
        }
        // Another shard may have joined the parts (and removed them) since the first look:
        // it writes the whole file before removing a part, so the file is there now.
        if let Some((logits, kind)) = cache::read(&path, data.len(), data.num_classes)? {
            return Ok(TeacherLogits {
                logits,
                kind,
                cached: true,
            });
        }
        let (logits, kind) = self.run(data, what)?;
        if let Err(e) = cache::write(&path, &logits, kind) {
            tracing::warn!("{e}; going on without caching the soft labels");
        }
        Ok(TeacherLogits {
            logits,
            kind,
            cached: false,
        })
    }

    /// Opens the teacher (an ONNX model through ONNX Runtime, with every check against the
    /// data; a plugin teacher made from the training set) and, unless its outputs on the
    /// training set are cached, runs it on the first batch (its declared output kind and
    /// finite values checked, as [`Teacher::logits`] would); checks that its
    /// `[teacher] embedding` tensor exists.
    pub fn open(&mut self) -> Result<(), TeacherError> {
        if let Some(file) = self.precomputed_file(self.train) {
            self.read_precomputed(file, self.train)?;
            return Ok(());
        }
        self.start()?;
        let cached = self.key_base.key_for(self.train).path(&self.cache_dir);
        if !cached.exists() && !self.train.is_empty() {
            let rows = self.batch()?.min(self.train.len());
            let first = self.train.features.slice(ndarray::s![..rows, ..]);
            self.batch_scores(first, &self.train.sample_shape, self.train.num_classes)
                .map_err(|e| at_batch(e, 0))?;
        }
        if let (Some(tensor), Some(options)) = (self.spec.embedding.clone(), self.onnx_options()) {
            let bytes = std::fs::read(options.model).map_err(|e| TeacherError::Model {
                model: options.model.to_path_buf(),
                message: format!("cannot read: {e}"),
            })?;
            onnx_graph::with_output(&bytes, &tensor).map_err(|m| TeacherError::Model {
                model: options.model.to_path_buf(),
                message: format!("[teacher] embedding: {m}"),
            })?;
        }
        Ok(())
    }

    fn onnx_options(&self) -> Option<onnx::OnnxOptions<'_>> {
        match &self.spec.source {
            TeacherSource::Onnx {
                model,
                input,
                output,
                provider,
                allow_cpu_fallback,
                ort_library,
                threads,
            } => Some(onnx::OnnxOptions {
                model,
                input: input.as_deref(),
                output: output.as_deref(),
                provider: *provider,
                allow_cpu_fallback: *allow_cpu_fallback,
                ort_library: ort_library.as_deref(),
                threads: *threads,
                spin: self.bulk,
                layout: self.spec.layout,
                sample_shape: &self.train.sample_shape,
                num_classes: self.train.num_classes,
            }),
            TeacherSource::Plugin { .. }
            | TeacherSource::Precomputed { .. }
            | TeacherSource::Ensemble { .. }
            | TeacherSource::Trained { .. } => None,
        }
    }

    /// The precomputed file for `data`: the training file for the training set this teacher
    /// was made with, the test file for any other set.
    fn precomputed_file(&self, data: &Dataset) -> Option<&'a Path> {
        match &self.spec.source {
            TeacherSource::Precomputed { train, test } => Some(if std::ptr::eq(data, self.train) {
                train
            } else {
                test
            }),
            _ => None,
        }
    }

    /// Reads precomputed outputs `[N, C]` for `data` from `file`, checked against the set's
    /// size and class count, as log-space scores.
    fn read_precomputed(
        &mut self,
        file: &Path,
        data: &Dataset,
    ) -> Result<(Array2<f32>, OutputKind), TeacherError> {
        let err = |message: String| TeacherError::Model {
            model: file.to_path_buf(),
            message,
        };
        let values = crate::data::npy::read_f32_matrix(file)
            .map_err(|e| TeacherError::Runtime(e.to_string()))?;
        let (n, c) = values.dim();
        if n != data.len() || c != data.num_classes {
            return Err(err(format!(
                "holds [{n}, {c}] but the set has {} examples of {} classes; write the teacher's outputs for every example, in the order kdprune loads them (after any holdout split)",
                data.len(),
                data.num_classes
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(err(format!(
                "row {}, column {} is not finite",
                i / c,
                i % c
            )));
        }
        let mut flat = values.into_raw_vec_and_offset().0;
        let kind = match self.kind {
            Some(kind) => kind,
            None => detect_output_kind(&flat, c),
        };
        to_log_space(&mut flat, kind);
        let logits = Array2::from_shape_vec((n, c), flat).map_err(|e| err(e.to_string()))?;
        Ok((logits, kind))
    }

    /// The `[teacher] embedding` tensor for every example of `data`, flattened: f32 `[N, H]`,
    /// from the cache or by running the model.
    pub fn embedding(&mut self, data: &Dataset) -> Result<HostTensor, TeacherError> {
        let spec = self.spec;
        let tensor = spec.embedding.clone().ok_or_else(|| {
            TeacherError::Runtime(
                "no [teacher] embedding is set; name a tensor of the model".into(),
            )
        })?;
        let key = self.key_base.key_for(data);
        let path = key.embedding_path(&self.cache_dir, &tensor);
        if let Some(t) = cache::read_embedding(&path, data.len()) {
            tracing::info!(cache = %path.display(), "teacher embedding from the cache");
            return Ok(t);
        }
        self.start()?;
        let options = self.onnx_options().ok_or_else(|| {
            TeacherError::Runtime("[teacher] embedding needs an ONNX teacher".into())
        })?;
        let mut embedder = match &self.live {
            Some(Live::Onnx(t)) => t.open_embedder(&options, &tensor)?,
            _ => unreachable!("an ONNX source starts an ONNX teacher"),
        };
        let n = data.len();
        let batch = spec.batch_size;
        let bar = progress::bar(n as u64, "teacher: embedding");
        let mut values = Vec::new();
        let mut width = 0;
        for start in (0..n).step_by(batch) {
            let rows = batch.min(n - start);
            let pre = spec
                .preprocess
                .apply(data.features.slice(ndarray::s![start..start + rows, ..]));
            let (v, w) = embedder.run(pre.as_slice().expect("standard layout"), rows)?;
            width = w;
            values.extend(v);
            bar.inc(rows as u64);
        }
        bar.finish_and_clear();
        let t = HostTensor::new(vec![n as u64, width as u64], Elements::F32(values)).ok_or_else(
            || {
                TeacherError::Runtime(format!(
                    "[teacher] embedding {tensor:?} changed its width between batches"
                ))
            },
        )?;
        if let Err(message) = cache::write_embedding(&path, &t) {
            tracing::warn!(cache = %path.display(), "the teacher embedding could not be cached ({message}); going on");
        }
        Ok(t)
    }

    fn start(&mut self) -> Result<&mut Live, TeacherError> {
        if self.live.is_none() {
            let live = match &self.spec.source {
                TeacherSource::Ensemble { .. } => {
                    return Err(TeacherError::Runtime(format!(
                        "teacher {}: an ensemble is combined from its members' outputs, never run itself",
                        self.spec.name
                    )))
                }
                TeacherSource::Trained { .. } => {
                    return Err(TeacherError::Runtime(format!(
                        "teacher {}: a teacher to train is served as the ONNX model teacher::trained makes of it",
                        self.spec.name
                    )))
                }
                TeacherSource::Precomputed { train, .. } => {
                    return Err(TeacherError::Model {
                        model: train.clone(),
                        message: "precomputed logits cannot label new images (online distillation); use augment.teacher = \"cached\"".into(),
                    })
                }
                TeacherSource::Onnx { .. } => Live::Onnx(
                    onnx::OnnxTeacher::open(&self.onnx_options().expect("an ONNX source"))
                        .inspect(
                            |t| tracing::info!(provider = ?t.provider, "ONNX teacher opened"),
                        )?,
                ),
                TeacherSource::Plugin {
                    name,
                    params,
                    params_at,
                } => {
                    let plugin = self.registry.get(name, PluginKind::Teacher)?;
                    let params =
                        check_params(name, &plugin.description.params, params).map_err(|m| {
                            PluginError::Param(format!(
                                "[teacher] params at line {}, column {}: {m}",
                                params_at.0, params_at.1
                            ))
                        })?;
                    let data = PluginData::of(self.train);
                    Live::Plugin(plugin.new_teacher(&data, &params, self.seed)?)
                }
            };
            self.live = Some(live);
        }
        Ok(self.live.as_mut().expect("started above"))
    }

    /// The teacher's log-space scores `[B, C]` for one batch of raw examples `[B, D]`
    /// (before the teacher's preprocessing), without the cache: what online distillation
    /// calls for every augmented batch.
    pub fn batch_scores(
        &mut self,
        raw: ndarray::ArrayView2<'_, f32>,
        sample_shape: &[usize],
        num_classes: usize,
    ) -> Result<Array2<f32>, TeacherError> {
        let spec = self.spec;
        let rows = raw.nrows();
        let mut pre = std::mem::replace(&mut self.batch_input, Array2::zeros((0, 0)));
        spec.preprocess.apply_into(raw, &mut pre);
        let live = self.start();
        let values = live.and_then(|live| {
            let features = pre.as_slice().expect("a standard layout array");
            match live {
                Live::Onnx(t) => t.run(features, rows),
                Live::Plugin(t) => Ok(t.logits(features, rows, sample_shape, num_classes)?),
            }
        });
        self.batch_input = pre;
        let mut values = values?;
        let kind = match self.kind {
            Some(kind) => kind,
            None => {
                let detected = detect_output_kind(&values, num_classes);
                tracing::info!(kind = ?detected, "teacher output kind detected from the first batch (override with [teacher] output_kind)");
                self.kind = Some(detected);
                detected
            }
        };
        if !self.kind_checked {
            check_declared_kind(&values, num_classes, kind)
                .map_err(|m| TeacherError::Runtime(format!("teacher {}: {m}", spec.name)))?;
            self.kind_checked = true;
        }
        // -inf is a log-probability of 0; NaN and +inf are no score at all.
        if let Some(bad) = values.iter().find(|v| v.is_nan() || **v == f32::INFINITY) {
            return Err(TeacherError::NotAScore {
                teacher: spec.name.clone(),
                value: *bad,
                start: None,
            });
        }
        to_log_space(&mut values, kind);
        Array2::from_shape_vec((rows, num_classes), values)
            .map_err(|e| TeacherError::Runtime(e.to_string()))
    }

    /// Runs the teacher on `data` without the cache: `[N, C]` log-space scores and the kind
    /// the raw output was read as.
    pub fn run(
        &mut self,
        data: &Dataset,
        what: &str,
    ) -> Result<(Array2<f32>, OutputKind), TeacherError> {
        self.run_rows(data, 0..data.len(), what)
    }

    /// The rows per inference call.
    fn batch(&mut self) -> Result<usize, TeacherError> {
        let wanted = self.spec.batch_size;
        Ok(match self.start()? {
            Live::Onnx(t) => t.fixed_batch().map_or(wanted, |b| {
                // Whole multiples of the fixed batch avoid padding inside a request.
                (wanted / b).max(1) * b
            }),
            Live::Plugin(_) => wanted,
        })
    }

    /// Labels shard `shard`'s rows of `data` (cut at batch boundaries, so the bits are those
    /// of one process labelling the whole set) into a part file of the cache, which
    /// [`Teacher::logits`] joins with the other shards' once all are there. Nothing to do
    /// when the whole set is cached already.
    pub fn label_part(
        &mut self,
        data: &Dataset,
        what: &str,
        shard: crate::shard::Shard,
    ) -> Result<(), TeacherError> {
        let key = self.key_base.key_for(data);
        if cache::read(&key.path(&self.cache_dir), data.len(), data.num_classes)?.is_some() {
            tracing::info!(set = what, "teacher outputs already cached whole");
            return Ok(());
        }
        let rows = shard.rows(data.len(), self.batch()?);
        let start = rows.start;
        let (logits, kind) = self.run_rows(data, rows, what)?;
        cache::write_part(&key.part_path(&self.cache_dir, shard), start, &logits, kind)
    }

    /// The scores of `rows` of `data`, `[rows.len(), C]`, in batches from `rows.start`.
    fn run_rows(
        &mut self,
        data: &Dataset,
        rows: std::ops::Range<usize>,
        what: &str,
    ) -> Result<(Array2<f32>, OutputKind), TeacherError> {
        let c = data.num_classes;
        let batch = self.batch()?;
        let (first, end) = (rows.start, rows.end);
        let n = end - first;
        let bar = progress::bar(n as u64, &format!("teacher: {what}"));
        let mut out = Vec::with_capacity(n * c);
        let started = std::time::Instant::now();
        for start in (first..end).step_by(batch) {
            let rows = batch.min(end - start);
            let raw = data.features.slice(ndarray::s![start..start + rows, ..]);
            let scores = self
                .batch_scores(raw, &data.sample_shape, c)
                .map_err(|e| at_batch(e, start))?;
            out.extend(scores.iter());
            bar.inc(rows as u64);
        }
        bar.finish_and_clear();
        tracing::info!(
            set = what,
            examples = n,
            seconds = started.elapsed().as_secs_f64(),
            "teacher ran"
        );
        let logits = Array2::from_shape_vec((n, c), out)
            .map_err(|e| TeacherError::Runtime(e.to_string()))?;
        Ok((logits, self.kind.unwrap_or(OutputKind::Logits)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_ensemble_averages_probabilities_or_log_probabilities() {
        let member = |row: [f32; 2]| TeacherLogits {
            logits: ndarray::arr2(&[row]),
            kind: OutputKind::Logits,
            cached: false,
        };
        // Probabilities (0.8, 0.2) and (0.4, 0.6), given as logits.
        let a = member([0.8f32.ln() + 3.0, 0.2f32.ln() + 3.0]);
        let b = member([0.4f32.ln(), 0.6f32.ln()]);
        let mix = TeacherLogits::combine(&[&a, &b], Combine::Probabilities).probabilities(1.0);
        assert!((mix[[0, 0]] - 0.6).abs() < 1e-6, "{mix:?}");
        let geo = TeacherLogits::combine(&[&a, &b], Combine::LogProbabilities).probabilities(1.0);
        let (p, q) = ((0.8f32 * 0.4).sqrt(), (0.2f32 * 0.6).sqrt());
        assert!((geo[[0, 0]] - p / (p + q)).abs() < 1e-6, "{geo:?}");
    }

    use super::*;

    #[test]
    fn a_declared_kind_is_checked_against_the_first_batch() {
        let probs = [0.2f32, 0.8, 0.5, 0.5];
        assert!(check_declared_kind(&probs, 2, OutputKind::Probabilities).is_ok());
        let err = check_declared_kind(&probs, 2, OutputKind::Logits).unwrap_err();
        assert!(err.contains("looks like probabilities"), "{err}");
        let logits = [3.0f32, -1.0, 0.5, 2.0];
        assert!(check_declared_kind(&logits, 2, OutputKind::Probabilities).is_err());
        assert!(check_declared_kind(&logits, 2, OutputKind::LogProbabilities).is_err());
        assert!(check_declared_kind(&logits, 2, OutputKind::Logits).is_ok());
    }

    #[test]
    fn detects_output_kinds() {
        assert_eq!(
            detect_output_kind(&[0.2, 0.8, 1.0, 0.0], 2),
            OutputKind::Probabilities
        );
        let lp = [0.2f32.ln(), 0.8f32.ln()];
        assert_eq!(detect_output_kind(&lp, 2), OutputKind::LogProbabilities);
        assert_eq!(detect_output_kind(&[3.0, -1.0], 2), OutputKind::Logits);
    }

    #[test]
    fn probabilities_and_logits_give_the_same_soft_labels() {
        let logits = ndarray::array![[2.0f32, 0.5, -1.0]];
        let p = softmax_rows(logits.view(), 1.0);
        let mut from_p = p.clone().into_raw_vec_and_offset().0;
        to_log_space(&mut from_p, OutputKind::Probabilities);
        let from_p = Array2::from_shape_vec((1, 3), from_p).unwrap();
        let a = softmax_rows(logits.view(), 4.0);
        let b = softmax_rows(from_p.view(), 4.0);
        for (x, y) in a.iter().zip(b.iter()) {
            assert!((x - y).abs() < 1e-6);
        }
    }
}
