//! Training dynamics: how a proxy model trained on the full training set behaved on each
//! example, run by run and epoch by epoch — the input of EL2N, GraNd, Forgetting, AUM,
//! Dynamic Uncertainty and the uncertainty scores — and the proxy's penultimate embedding.
//!
//! Owns the proxy's settings ([`DynamicsSpec`]), what can be recorded ([`Quantity`],
//! [`Source`]) and its memory cost, the [`Recorder`] that watches the students' own trainer
//! (`train::Observer`), and the cache ([`cache`]). Does not own which plugin asked for what
//! (see [`crate::inputs`]).
//!
//! Two sources, following the reference implementations:
//! - **batch**: from the example's own training minibatch, the training-mode forward pass just
//!   before its update (Toneva et al.'s forgetting code, Pleiss et al.'s AUM), once per epoch:
//!   `[R, E, N]`.
//! - **pass**: from a separate pass over the whole training set in evaluation mode, at chosen
//!   epoch ends and early steps (Paul et al.'s EL2N/GraNd at an early epoch, DeepCore's
//!   uncertainty scores after training): `[R, T, N]`, checkpoint epochs in
//!   `dynamics/pass/epochs` `[T]`.

pub mod cache;
pub mod import;

use std::collections::BTreeSet;

use half::f16;
use ndarray::{s, ArrayView2};
use rayon::prelude::*;

use crate::tensor::{Elements, HostTensor};
use crate::train::spec::StudentSpec;
use crate::train::{self, Kd, Network, Observer, TrainError, TrainSet};

/// Where a quantity is taken from (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Batch,
    Pass,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Batch => "batch",
            Source::Pass => "pass",
        }
    }
}

/// A per-example quantity computed from the logits `s` `[C]` and the label `y`
/// (`p = softmax(s)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quantity {
    /// Cross-entropy `−log p_y`; f16.
    Loss,
    /// `p_y`; f16.
    TrueProb,
    /// `argmax s == y` (first maximum on ties); u8 0/1.
    Correct,
    /// `s_y − max_{j≠y} s_j` (AUM's margin); f16.
    Margin,
    /// `‖p − onehot(y)‖₂` (EL2N); f16.
    El2n,
    /// Norm of the loss gradient with respect to the last dense layer's weights and bias,
    /// in closed form `‖p − onehot(y)‖₂ · sqrt(‖h‖² + 1)` (`h` the penultimate activation);
    /// f16. Pass only.
    GradNorm,
    /// The logits `[C]`; f16, `[R, E, N, C]` or `[R, T, N, C]` (TDDS reads the batch's).
    Logits,
}

impl Quantity {
    pub const ALL: [Quantity; 7] = [
        Quantity::Loss,
        Quantity::TrueProb,
        Quantity::Correct,
        Quantity::Margin,
        Quantity::El2n,
        Quantity::GradNorm,
        Quantity::Logits,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Quantity::Loss => "loss",
            Quantity::TrueProb => "true_prob",
            Quantity::Correct => "correct",
            Quantity::Margin => "margin",
            Quantity::El2n => "el2n",
            Quantity::GradNorm => "grad_norm",
            Quantity::Logits => "logits",
        }
    }

    /// Whether it can be taken from `source` (the gradient norm needs the evaluation pass:
    /// it needs the penultimate activations, which the training step does not keep).
    pub fn available_from(self, source: Source) -> bool {
        source == Source::Pass || self != Quantity::GradNorm
    }

    /// Bytes per example per record.
    pub fn bytes(self, num_classes: usize) -> usize {
        match self {
            Quantity::Correct => 1,
            Quantity::Logits => 2 * num_classes,
            Quantity::Loss
            | Quantity::TrueProb
            | Quantity::Margin
            | Quantity::El2n
            | Quantity::GradNorm => 2,
        }
    }
}

/// The proxy model and what to record, checked (`[dynamics]` in the manifest).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DynamicsSpec {
    /// The proxy: the student's architecture and optimiser unless `[dynamics]` overrides
    /// them; trained on the full training set. `epochs` is `E`.
    pub proxy: StudentSpec,
    /// Independent runs `R`, seeded `seed`, `seed + 1`, ...
    pub runs: usize,
    pub seed: u64,
    /// Epochs (1-based, `1..=E`) at whose end the evaluation pass records, sorted, distinct.
    pub checkpoint_epochs: Vec<usize>,
    /// Training steps (0: at initialisation) before which the pass records, sorted, distinct.
    pub early_steps: Vec<usize>,
    /// Most bytes the records may take (`None`: half of the memory available at start).
    pub max_memory: Option<u64>,
    /// Records read from a training run elsewhere instead of recorded ([`import`]); the
    /// proxy is then never trained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<import::Import>,
}

/// What some loaded plugin asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub recorded: BTreeSet<(Source, Quantity)>,
    /// The proxy's penultimate activations at the end of run 0's training.
    pub embedding: bool,
    /// Each example's gradient of the loss with respect to the last dense layer, at the end
    /// of run 0's training ([`PROXY_GRAD`]).
    pub grad: bool,
}

impl Request {
    pub fn is_empty(&self) -> bool {
        self.recorded.is_empty() && !self.embedding && !self.grad
    }

    /// Whether run 0 ends with a pass for the embedding or the gradients.
    pub fn embeds(&self) -> bool {
        self.embedding || self.grad
    }

    fn has_pass(&self) -> bool {
        self.recorded.iter().any(|(s, _)| *s == Source::Pass)
    }

    /// The union of two requests.
    pub fn union(&self, other: &Request) -> Request {
        Request {
            recorded: self.recorded.union(&other.recorded).copied().collect(),
            embedding: self.embedding || other.embedding,
            grad: self.grad || other.grad,
        }
    }

    /// Whether `self` holds everything `other` asks for.
    pub fn covers(&self, other: &Request) -> bool {
        other.recorded.is_subset(&self.recorded)
            && (self.embedding || !other.embedding)
            && (self.grad || !other.grad)
    }

    /// What run `run` records: the embedding and gradients belong to run 0.
    pub fn for_run(&self, run: usize) -> Request {
        Request {
            recorded: self.recorded.clone(),
            embedding: self.embedding && run == 0,
            grad: self.grad && run == 0,
        }
    }
}

/// The tensor name of a recorded quantity, as plugins ask for it.
pub fn tensor_name(source: Source, quantity: Quantity) -> String {
    format!("dynamics/{}/{}", source.as_str(), quantity.as_str())
}

/// Name of the checkpoint epochs of the pass records, f32 `[T]`.
pub const PASS_EPOCHS: &str = "dynamics/pass/epochs";
/// Name of the proxy's embedding, f32 `[N, H]`.
pub const PROXY_EMBEDDING: &str = "embeddings/proxy";
/// Name of the proxy's last-layer gradients, f32 `[N, C·(H + 1)]`: per example, with
/// `e = p − onehot(y)` and `h` the penultimate activation, the bias gradient `e` `[C]` then
/// the weight gradient `e_c · h` `[H]` for each class `c` (DeepCore's closed form and order).
pub const PROXY_GRAD: &str = "embeddings/grad";

/// Each row's last-layer gradient into `out` `[C·(H+1)]` (see [`PROXY_GRAD`]).
pub fn last_layer_grad(logits: &[f32], y: usize, h: &[f32], out: &mut [f32]) {
    let c = logits.len();
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&v| (v - max).exp()).sum();
    for (j, &v) in logits.iter().enumerate() {
        out[j] = (v - max).exp() / sum - if j == y { 1.0 } else { 0.0 };
    }
    let (e, weights) = out.split_at_mut(c);
    for (ej, row) in e.iter().zip(weights.chunks_exact_mut(h.len())) {
        for (w, &hk) in row.iter_mut().zip(h) {
            *w = ej * hk;
        }
    }
}

/// The shape of a run: examples, classes, epochs, checkpoints, embedding width.
#[derive(Debug, Clone, Copy)]
pub struct Extent {
    pub n: usize,
    pub classes: usize,
    pub epochs: usize,
    pub checkpoints: usize,
    pub runs: usize,
    pub embedding_width: usize,
}

/// Bytes the records of `request` take, and one line itemising them.
pub fn memory_needed(request: &Request, extent: Extent) -> (u64, String) {
    let mut total = 0u64;
    let mut items = Vec::new();
    for &(source, quantity) in &request.recorded {
        let records = match source {
            Source::Batch => extent.epochs,
            Source::Pass => extent.checkpoints,
        };
        let per_example = quantity.bytes(extent.classes) as u64;
        total += per_example * (records * extent.n * extent.runs) as u64;
        items.push(format!("{} {per_example} B", tensor_name(source, quantity)));
    }
    if request.embedding {
        let bytes = (extent.n * extent.embedding_width * 4) as u64;
        total += bytes;
        items.push(format!(
            "{PROXY_EMBEDDING} {} B/example",
            extent.embedding_width * 4
        ));
    }
    if request.grad {
        let per_example = extent.classes * (extent.embedding_width + 1) * 4;
        total += (extent.n * per_example) as u64;
        items.push(format!("{PROXY_GRAD} {per_example} B/example"));
    }
    (
        total,
        format!(
            "R = {} runs × N = {} examples × (E = {} epochs | T = {} checkpoints) × bytes per example per record: {}",
            extent.runs,
            extent.n,
            extent.epochs,
            extent.checkpoints,
            items.join(", ")
        ),
    )
}

/// Half of the memory available now ([`available_memory`]).
pub fn default_max_memory() -> u64 {
    available_memory() / 2
}

/// The memory available now (`MemAvailable` in `/proc/meminfo`), or 16 GiB where that
/// cannot be read.
pub fn available_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(16 << 30)
}

/// Bytes as a short human figure.
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

/// An error of the dynamics stage; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum DynamicsError {
    #[error("[dynamics] the records asked for need {needed} ({detail}), over max_memory = {limit}; lower runs or epochs, drop checkpoints, or raise [dynamics] max_memory")]
    Memory {
        needed: String,
        limit: String,
        detail: String,
    },
    #[error("[dynamics] {0}")]
    Spec(String),
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A file of `[dynamics] from` (see [`import`]).
    #[error("{path}: {message}")]
    Import {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("{path}: {message}")]
    Io {
        path: std::path::PathBuf,
        message: String,
    },
}

/// Per-example quantities of one logits row; `h_sq` is `‖h‖²` of the penultimate
/// activation (for the gradient norm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowStats {
    pub loss: f32,
    pub true_prob: f32,
    pub correct: bool,
    pub margin: f32,
    pub el2n: f32,
    pub grad_norm: f32,
}

/// The quantities of logits `s` `[C]` with label `y`.
pub fn row_stats(s: &[f32], y: usize, h_sq: f32) -> RowStats {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = s.iter().map(|&v| (v - max).exp()).sum();
    let lse = max + sum.ln();
    let mut err_sq = 0.0f32;
    let mut best = 0usize;
    let mut other = f32::NEG_INFINITY;
    for (j, &v) in s.iter().enumerate() {
        let p = (v - lse).exp();
        let target = if j == y { 1.0 } else { 0.0 };
        err_sq += (p - target) * (p - target);
        if v > s[best] {
            best = j;
        }
        if j != y && v > other {
            other = v;
        }
    }
    let el2n = err_sq.sqrt();
    RowStats {
        loss: lse - s[y],
        true_prob: (s[y] - lse).exp(),
        correct: best == y,
        margin: s[y] - other,
        el2n,
        grad_norm: el2n * (h_sq + 1.0).sqrt(),
    }
}

/// Storage of one quantity over all runs: `[R, records, N]` (`[R, T, N, C]` for logits).
struct Store {
    source: Source,
    quantity: Quantity,
    records: usize,
    elements: Elements,
}

impl Store {
    fn new(source: Source, quantity: Quantity, records: usize, extent: Extent) -> Self {
        let per = if quantity == Quantity::Logits {
            extent.classes
        } else {
            1
        };
        let len = extent.runs * records * extent.n * per;
        let elements = match quantity {
            Quantity::Correct => Elements::U8(vec![0; len]),
            _ => Elements::F16(vec![f16::ZERO; len]),
        };
        Self {
            source,
            quantity,
            records,
            elements,
        }
    }

    /// Writes example `i`'s value at (`run`, `record`).
    fn put(
        &mut self,
        extent: Extent,
        run: usize,
        record: usize,
        i: usize,
        stats: &RowStats,
        logits: &[f32],
    ) {
        let at = (run * self.records + record) * extent.n + i;
        match (&mut self.elements, self.quantity) {
            (Elements::U8(v), _) => v[at] = stats.correct as u8,
            (Elements::F16(v), Quantity::Logits) => {
                let c = extent.classes;
                for (dst, &src) in v[at * c..(at + 1) * c].iter_mut().zip(logits) {
                    *dst = f16::from_f32(src);
                }
            }
            (Elements::F16(v), q) => {
                v[at] = f16::from_f32(match q {
                    Quantity::Loss => stats.loss,
                    Quantity::TrueProb => stats.true_prob,
                    Quantity::Margin => stats.margin,
                    Quantity::El2n => stats.el2n,
                    Quantity::GradNorm => stats.grad_norm,
                    // A new quantity must say here which statistic it stores.
                    Quantity::Correct | Quantity::Logits => {
                        unreachable!("Correct is stored as u8, Logits as whole rows")
                    }
                })
            }
            _ => unreachable!("stores hold u8 or f16"),
        }
    }

    fn into_tensor(self, extent: Extent) -> (String, HostTensor) {
        let mut shape = vec![extent.runs as u64, self.records as u64, extent.n as u64];
        if self.quantity == Quantity::Logits {
            shape.push(extent.classes as u64);
        }
        (
            tensor_name(self.source, self.quantity),
            HostTensor::new(shape, self.elements).expect("store sized by its shape"),
        )
    }
}

/// Watches one proxy run and writes its records into the stores.
pub struct Recorder<'a> {
    extent: Extent,
    run: usize,
    batch: Vec<Store>,
    pass: Vec<Store>,
    /// Features `[N, D]` and labels `[N]` of the whole training set, for the pass.
    x: ArrayView2<'a, f32>,
    y: &'a [u32],
    early_steps: &'a [usize],
    checkpoint_epochs: &'a [usize],
    /// Index of the next pass record.
    next_record: usize,
    /// Run 0's embedding `[N, H]`, filled at the end of the last epoch when asked.
    embedding: Option<Vec<f32>>,
    /// Run 0's last-layer gradients `[N, C·(H+1)]`, filled with the embedding.
    grad: Option<Vec<f32>>,
    /// Seconds spent in the evaluation passes.
    pub pass_seconds: f64,
}

const PASS_ROWS: usize = 1024;

impl Recorder<'_> {
    /// One pass over the training set: every pass store at the next record when `write`,
    /// and the embedding when `embed`.
    fn pass(&mut self, model: &mut Network, write: bool, embed: bool) {
        let started = std::time::Instant::now();
        let (n, extent, run, record) = (self.extent.n, self.extent, self.run, self.next_record);
        let want_pass = write && !self.pass.is_empty();
        for start in (0..n).step_by(PASS_ROWS) {
            let end = (start + PASS_ROWS).min(n);
            let (h, logits) = model.embed(self.x.slice(s![start..end, ..]));
            if embed {
                let h = h.as_standard_layout();
                let w = h.ncols();
                if let Some(e) = self.embedding.as_mut() {
                    e[start * w..end * w].copy_from_slice(h.as_slice().expect("contiguous"));
                }
                if let Some(g) = self.grad.as_mut() {
                    let width = extent.classes * (w + 1);
                    let logits = logits.as_standard_layout();
                    g[start * width..end * width]
                        .par_chunks_mut(width)
                        .enumerate()
                        .for_each(|(r, out)| {
                            let s = logits.row(r);
                            let y = self.y[start + r] as usize;
                            let hr = h.row(r);
                            let (s, hr) = (s.as_slice().expect("row"), hr.as_slice().expect("row"));
                            last_layer_grad(s, y, hr, out);
                        });
                }
            }
            if !want_pass {
                continue;
            }
            let stats: Vec<RowStats> = (0..end - start)
                .into_par_iter()
                .map(|r| {
                    let h_sq = h.row(r).iter().map(|v| v * v).sum();
                    let row = logits.row(r);
                    row_stats(
                        row.as_slice().expect("contiguous"),
                        self.y[start + r] as usize,
                        h_sq,
                    )
                })
                .collect();
            for store in &mut self.pass {
                for (r, st) in stats.iter().enumerate() {
                    let row = logits.row(r);
                    store.put(
                        extent,
                        run,
                        record,
                        start + r,
                        st,
                        row.as_slice().expect("contiguous"),
                    );
                }
            }
        }
        if want_pass {
            self.next_record += 1;
        }
        self.pass_seconds += started.elapsed().as_secs_f64();
    }
}

impl Observer for Recorder<'_> {
    fn wants_batch_logits(&self) -> bool {
        !self.batch.is_empty()
    }

    fn on_batch(
        &mut self,
        epoch: usize,
        indices: &[usize],
        labels: &[u32],
        logits: ArrayView2<'_, f32>,
    ) {
        let (extent, run) = (self.extent, self.run);
        let logits = logits.as_standard_layout();
        for ((&i, &y), row) in indices.iter().zip(labels).zip(logits.rows()) {
            let row = row.as_slice().expect("standard layout");
            let stats = row_stats(row, y as usize, 0.0);
            for store in &mut self.batch {
                store.put(extent, run, epoch, i, &stats, row);
            }
        }
    }

    fn before_step(&mut self, step: usize, model: &mut Network) -> Result<(), TrainError> {
        if self.early_steps.binary_search(&step).is_ok() {
            self.pass(model, true, false);
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, model: &mut Network) -> Result<(), TrainError> {
        let last = epoch + 1 == self.extent.epochs;
        let checkpoint = self.checkpoint_epochs.binary_search(&(epoch + 1)).is_ok();
        let embed = last && (self.embedding.is_some() || self.grad.is_some());
        if checkpoint || embed {
            self.pass(model, checkpoint, embed);
        }
        Ok(())
    }
}

/// Records of one request: tensors by name, with where the time went.
#[derive(Debug, Clone, Default)]
pub struct Dynamics {
    pub tensors: Vec<(String, HostTensor)>,
    pub request: Request,
    /// The proxy runs the records hold, in the order of their first axis (`R`).
    pub runs: Vec<usize>,
    /// Seconds of proxy training (passes included) and of the passes alone; 0 from the cache.
    pub train_seconds: f64,
    pub pass_seconds: f64,
}

/// The width of the proxy's penultimate layer for examples of `sample_shape`.
pub fn embedding_width(
    spec: &DynamicsSpec,
    sample_shape: &[usize],
    classes: usize,
) -> Result<usize, DynamicsError> {
    let mut net = Network::build(&spec.proxy.layers, sample_shape, classes, spec.seed)
        .map_err(|m| DynamicsError::Spec(format!("layers: {m}")))?;
    let d: usize = sample_shape.iter().product();
    let (h, _) = net.embed(ndarray::Array2::<f32>::zeros((1, d)).view());
    Ok(h.ncols())
}

/// The record's extent for a training set of `n` examples.
pub fn extent(spec: &DynamicsSpec, n: usize, classes: usize, embedding_width: usize) -> Extent {
    Extent {
        n,
        classes,
        epochs: spec.proxy.epochs,
        checkpoints: spec.early_steps.len() + spec.checkpoint_epochs.len(),
        runs: spec.runs,
        embedding_width,
    }
}

/// Checks `request` against the memory limit before any training.
pub fn check_memory(
    spec: &DynamicsSpec,
    request: &Request,
    extent: Extent,
) -> Result<u64, DynamicsError> {
    let (needed, detail) = memory_needed(request, extent);
    let limit = spec.max_memory.unwrap_or_else(default_max_memory);
    if needed > limit {
        return Err(DynamicsError::Memory {
            needed: human_bytes(needed),
            limit: human_bytes(limit),
            detail,
        });
    }
    Ok(needed)
}

/// Trains the proxy `R` times on `set` (the full training set) and records `request`.
///
/// `set.x`: `[N, D]` student-normalised features; `set.y`: `[N]`.
pub fn record(
    spec: &DynamicsSpec,
    request: &Request,
    set: &TrainSet<'_>,
) -> Result<Dynamics, DynamicsError> {
    record_runs(spec, request, set, &runs_needed(spec, request))
}

/// The runs `request` needs: all `R`, or run 0 alone when only the embedding is asked for.
pub fn runs_needed(spec: &DynamicsSpec, request: &Request) -> Vec<usize> {
    if request.recorded.is_empty() {
        vec![0]
    } else {
        (0..spec.runs).collect()
    }
}

/// What run `run` of `request` records: the embedding belongs to run 0.
pub fn run_request(request: &Request, run: usize) -> Request {
    request.for_run(run)
}

/// Joins records of disjoint runs (parts written by `kdprune prepare --shard`, or a part and
/// a fresh recording) into one [`Dynamics`] holding `request` for `runs`, in that order:
/// each recorded tensor `[R, ...]` is the parts' slices `[1, ...]` stacked in run order;
/// the checkpoint epochs come from any part and the embedding from run 0's. `None` when a
/// run or a tensor is missing, or the parts disagree on a tensor's per-run shape.
pub fn join_runs(parts: &[Dynamics], request: &Request, runs: &[usize]) -> Option<Dynamics> {
    let find = |run: usize| {
        parts.iter().find_map(|p| {
            let slot = p.runs.iter().position(|&r| r == run)?;
            Some((p, slot))
        })
    };
    let slots: Vec<(&Dynamics, usize)> = runs.iter().map(|&r| find(r)).collect::<Option<_>>()?;
    let tensor_of = |p: &'_ Dynamics, name: &str| -> Option<HostTensor> {
        p.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    };
    let mut tensors = Vec::new();
    for &(source, quantity) in &request.recorded {
        let name = tensor_name(source, quantity);
        let mut bytes = Vec::new();
        let mut per_run: Option<Vec<u64>> = None;
        let mut dtype = None;
        for &(part, slot) in &slots {
            let t = tensor_of(part, &name)?;
            let shape = t.shape();
            if shape.first().copied() != Some(part.runs.len() as u64) {
                return None;
            }
            let rest = shape[1..].to_vec();
            if per_run.get_or_insert_with(|| rest.clone()) != &rest {
                return None;
            }
            dtype = Some(t.elements().dtype());
            let stride = t.elements().bytes().len() / part.runs.len();
            bytes.extend_from_slice(&t.elements().bytes()[slot * stride..(slot + 1) * stride]);
        }
        let mut shape = vec![runs.len() as u64];
        shape.extend(per_run?);
        let elements = Elements::from_bytes(dtype?, &bytes)?;
        tensors.push((name, HostTensor::new(shape, elements)?));
    }
    if request.recorded.iter().any(|(s, _)| *s == Source::Pass) {
        tensors.push((
            PASS_EPOCHS.to_string(),
            tensor_of(slots.first()?.0, PASS_EPOCHS)?,
        ));
    }
    for (asked, name) in [
        (request.embedding, PROXY_EMBEDDING),
        (request.grad, PROXY_GRAD),
    ] {
        if asked {
            let (part, _) = find(0)?;
            tensors.push((name.to_string(), tensor_of(part, name)?));
        }
    }
    Some(Dynamics {
        tensors,
        request: request.clone(),
        runs: runs.to_vec(),
        train_seconds: parts.iter().map(|p| p.train_seconds).sum(),
        pass_seconds: parts.iter().map(|p| p.pass_seconds).sum(),
    })
}

/// Trains the proxy's runs `runs` (each seeded `seed + run`, as in [`record`]) and records
/// `request`: tensors `[R', ...]` with `R' = runs.len()`, in the order of `runs`; the
/// embedding only when run 0 is among them. Joining the parts of every run in run order
/// ([`join_runs`]) gives [`record`]'s tensors, bit for bit.
pub fn record_runs(
    spec: &DynamicsSpec,
    request: &Request,
    set: &TrainSet<'_>,
    runs: &[usize],
) -> Result<Dynamics, DynamicsError> {
    if let Some(&bad) = runs.iter().find(|&&r| r >= spec.runs) {
        return Err(DynamicsError::Spec(format!(
            "run {bad} asked for, but runs = {}",
            spec.runs
        )));
    }
    let request = &if runs.contains(&0) {
        request.clone()
    } else {
        request.for_run(1)
    };
    if runs.is_empty() {
        return Err(DynamicsError::Spec("no run to record".into()));
    }
    let steps_per_epoch = check_record_points(spec, set.y.len())?;
    let (n, c) = (set.y.len(), set.num_classes);
    let width = if request.embeds() {
        embedding_width(spec, set.sample_shape, c)?
    } else {
        0
    };
    check_memory(spec, request, extent(spec, n, c, width))?;
    let extent = Extent {
        runs: runs.len(),
        ..extent(spec, n, c, width)
    };
    let (mut batch, mut pass) = stores_for(request, extent);
    let mut embedding = None;
    let mut grad = None;
    let started = std::time::Instant::now();
    let mut pass_seconds = 0.0;
    let kd = Kd {
        alpha: crate::train::kd::Alpha::new(0.0).expect("0 is a valid alpha"),
        temperature: crate::train::kd::Temperature::new(1.0).expect("1 is a valid temperature"),
    };
    let (early, checkpoints) = if request.has_pass() {
        (&spec.early_steps[..], &spec.checkpoint_epochs[..])
    } else {
        (&[][..], &[][..])
    };
    for (slot, &run) in runs.iter().enumerate() {
        let mut recorder = Recorder {
            extent,
            run: slot,
            batch,
            pass,
            x: set.x,
            y: set.y,
            early_steps: early,
            checkpoint_epochs: checkpoints,
            next_record: 0,
            embedding: (request.embedding && run == 0).then(|| vec![0f32; n * width]),
            grad: (request.grad && run == 0).then(|| vec![0f32; n * c * (width + 1)]),
            pass_seconds: 0.0,
        };
        let label = format!("dynamics run {}/{}", run + 1, spec.runs);
        train::train_observed(
            &spec.proxy,
            set,
            kd,
            spec.seed.wrapping_add(run as u64),
            None,
            Some(&mut recorder),
            &label,
        )?;
        tracing::info!(
            run = run + 1,
            runs = spec.runs,
            pass_seconds = recorder.pass_seconds,
            "dynamics: proxy run done"
        );
        pass_seconds += recorder.pass_seconds;
        if let Some(e) = recorder.embedding.take() {
            embedding = Some(e);
        }
        if let Some(g) = recorder.grad.take() {
            grad = Some(g);
        }
        batch = recorder.batch;
        pass = recorder.pass;
    }
    let mut tensors = into_tensors(spec, request, (batch, pass), extent, steps_per_epoch);
    if let Some(e) = embedding {
        tensors.push((
            PROXY_EMBEDDING.to_string(),
            HostTensor::new(vec![n as u64, width as u64], Elements::F32(e)).expect("[N, H]"),
        ));
    }
    if let Some(g) = grad {
        let shape = vec![n as u64, (c * (width + 1)) as u64];
        tensors.push((
            PROXY_GRAD.to_string(),
            HostTensor::new(shape, Elements::F32(g)).expect("[N, C(H+1)]"),
        ));
    }
    Ok(Dynamics {
        tensors,
        request: request.clone(),
        runs: runs.to_vec(),
        train_seconds: started.elapsed().as_secs_f64(),
        pass_seconds,
    })
}

/// Checks the early steps and checkpoint epochs against the proxy's training on `n`
/// examples; returns its steps per epoch.
fn check_record_points(spec: &DynamicsSpec, n: usize) -> Result<usize, DynamicsError> {
    let steps_per_epoch = n.div_ceil(spec.proxy.batch_size.min(n).max(1));
    let total_steps = steps_per_epoch * spec.proxy.epochs;
    if let Some(&bad) = spec.early_steps.iter().find(|&&s| s >= total_steps) {
        return Err(DynamicsError::Spec(format!(
            "early_steps has step {bad}, but the proxy trains {total_steps} steps ({steps_per_epoch} per epoch)"
        )));
    }
    if let Some(&bad) = spec
        .checkpoint_epochs
        .iter()
        .find(|&&e| e == 0 || e > spec.proxy.epochs)
    {
        return Err(DynamicsError::Spec(format!(
            "checkpoints has epoch {bad}, outside 1..={}",
            spec.proxy.epochs
        )));
    }
    Ok(steps_per_epoch)
}

/// Empty stores for every recorded quantity: batch records (one per epoch) and pass records
/// (one per early step and checkpoint, when any is asked for).
fn stores_for(request: &Request, extent: Extent) -> (Vec<Store>, Vec<Store>) {
    let pass_records = if request.has_pass() {
        extent.checkpoints
    } else {
        0
    };
    let mut batch = Vec::new();
    let mut pass = Vec::new();
    for &(source, quantity) in &request.recorded {
        match source {
            Source::Batch => batch.push(Store::new(source, quantity, extent.epochs, extent)),
            Source::Pass => pass.push(Store::new(source, quantity, pass_records, extent)),
        }
    }
    (batch, pass)
}

/// The stores as named tensors, with the pass records' epochs (fractional for early steps)
/// when there are pass records.
fn into_tensors(
    spec: &DynamicsSpec,
    request: &Request,
    (batch, pass): (Vec<Store>, Vec<Store>),
    extent: Extent,
    steps_per_epoch: usize,
) -> Vec<(String, HostTensor)> {
    let mut tensors: Vec<(String, HostTensor)> = batch
        .into_iter()
        .chain(pass)
        .map(|s| s.into_tensor(extent))
        .collect();
    if request.has_pass() {
        let epochs: Vec<f32> = spec
            .early_steps
            .iter()
            .map(|&s| s as f32 / steps_per_epoch as f32)
            .chain(spec.checkpoint_epochs.iter().map(|&e| e as f32))
            .collect();
        tensors.push((
            PASS_EPOCHS.to_string(),
            HostTensor::new(vec![epochs.len() as u64], Elements::F32(epochs)).expect("1-d"),
        ));
    }
    tensors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_layer_gradient_is_the_bias_error_then_its_outer_product_with_h() {
        // Logits [0, ln 3]: p = [1/4, 3/4]; label 1: e = [1/4, −1/4]; h = [2, 4].
        let mut out = [0f32; 6];
        last_layer_grad(&[0.0, 3.0f32.ln()], 1, &[2.0, 4.0], &mut out);
        let expected = [0.25, -0.25, 0.5, 1.0, -0.5, -1.0];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn row_stats_match_hand_computed_values() {
        // s = [2, 0, 1], y = 2: p = e^s / Σ, Σ = e² + 1 + e.
        let s = [2.0f32, 0.0, 1.0];
        let z = (2.0f32).exp() + 1.0 + 1.0f32.exp();
        let p = [(2.0f32).exp() / z, 1.0 / z, 1.0f32.exp() / z];
        let st = row_stats(&s, 2, 3.0);
        assert!((st.loss - (-p[2].ln())).abs() < 1e-6);
        assert!((st.true_prob - p[2]).abs() < 1e-6);
        assert!(!st.correct);
        assert_eq!(st.margin, -1.0);
        let el2n = (p[0] * p[0] + p[1] * p[1] + (p[2] - 1.0) * (p[2] - 1.0)).sqrt();
        assert!((st.el2n - el2n).abs() < 1e-6);
        assert!((st.grad_norm - el2n * 2.0).abs() < 1e-6);
        assert!(row_stats(&s, 0, 0.0).correct);
        assert_eq!(row_stats(&s, 0, 0.0).margin, 1.0);
    }

    #[test]
    fn parts_of_runs_join_in_run_order_and_refuse_disagreeing_shapes() {
        let name = tensor_name(Source::Batch, Quantity::Correct);
        let part = |runs: Vec<usize>, per_run: u64| {
            let values: Vec<u8> = runs
                .iter()
                .flat_map(|&r| (0..per_run).map(move |i| (10 * r as u64 + i) as u8))
                .collect();
            let t = HostTensor::new(vec![runs.len() as u64, 1, per_run], Elements::U8(values));
            Dynamics {
                tensors: vec![(name.clone(), t.unwrap())],
                runs,
                ..Default::default()
            }
        };
        let mut request = Request::default();
        request.recorded.insert((Source::Batch, Quantity::Correct));
        let joined = join_runs(
            &[part(vec![0, 2], 3), part(vec![1], 3)],
            &request,
            &[0, 1, 2],
        )
        .expect("every run has a part");
        assert_eq!(joined.runs, vec![0, 1, 2]);
        let (_, t) = &joined.tensors[0];
        assert_eq!(t.shape(), &[3, 1, 3]);
        assert_eq!(t.elements().bytes(), &[0, 1, 2, 10, 11, 12, 20, 21, 22]);
        assert!(join_runs(
            &[part(vec![0, 2], 3), part(vec![1], 4)],
            &request,
            &[0, 1, 2]
        )
        .is_none());
        assert!(join_runs(&[part(vec![0, 2], 3)], &request, &[0, 1, 2]).is_none());
    }

    #[test]
    fn memory_is_itemised_and_refused_over_the_limit() {
        let mut request = Request::default();
        request.recorded.insert((Source::Batch, Quantity::Margin));
        request.recorded.insert((Source::Pass, Quantity::Logits));
        let extent = Extent {
            n: 1000,
            classes: 10,
            epochs: 20,
            checkpoints: 2,
            runs: 3,
            embedding_width: 0,
        };
        let (bytes, _) = memory_needed(&request, extent);
        assert_eq!(bytes, 3 * 1000 * (20 * 2 + 2 * 20));
        // Fashion-MNIST, R = 3, E = 20, every quantity of both sources and the embedding.
        let mut all = Request {
            embedding: true,
            ..Default::default()
        };
        for q in Quantity::ALL {
            for s in [Source::Batch, Source::Pass] {
                if q.available_from(s) {
                    all.recorded.insert((s, q));
                }
            }
        }
        let fmnist = Extent {
            n: 60_000,
            classes: 10,
            epochs: 20,
            checkpoints: 20,
            runs: 3,
            embedding_width: 128,
        };
        let (bytes, _) = memory_needed(&all, fmnist);
        assert!(bytes < 1 << 30, "{bytes} bytes");
    }
}
