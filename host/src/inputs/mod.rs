//! The inputs of pruning methods: their names (the table in `docs/writing-a-plugin.md`), what
//! the planned methods need, and one provider per kind, each computed once per run and
//! cached by content:
//!
//! | name | dtype, shape | provider |
//! |---|---|---|
//! | `soft_labels` | f32 `[N, C]` | the teacher ([`crate::teacher`], soft-label cache) |
//! | `dynamics/batch/<q>` | f16 (u8 for `correct`) `[R, E, N]` | the proxy ([`crate::dynamics`]) |
//! | `dynamics/pass/<q>` | f16 (u8 for `correct`) `[R, T, N]`, logits `[R, T, N, C]` | the proxy |
//! | `dynamics/pass/epochs` | f32 `[T]` | the proxy |
//! | `embeddings/proxy` | f32 `[N, H]` | the proxy, run 0, after training |
//! | `embeddings/grad` | f32 `[N, C·(H+1)]` | the proxy's last-layer gradients, run 0, after training |
//! | `embeddings/teacher` | f32 `[N, H]` | the ONNX teacher's `[teacher] embedding` tensor |
//!
//! Each kind of input has one [`Provider`]: the proxy's ([`DynamicsContext`], here) and the
//! teacher's (`teacher::TeacherInputs`); the inputs stage hands each its names
//! ([`Inputs::gather`]). Adding an input kind is its names here (an [`InputName`] variant,
//! its [`InputKind`] and what the manifest must offer for it, [`InputName::unmet`]), a
//! provider, and the plugin-api table.

use std::time::Instant;

use kdprune_plugin_api::Tensor;

use crate::dynamics::DynamicsError;
use crate::dynamics::{self, Dynamics, DynamicsSpec, Quantity, Request, Source};
use crate::tensor::HostTensor;
use crate::train::TrainSet;

/// Name of the teacher's embedding input.
pub const TEACHER_EMBEDDING: &str = "embeddings/teacher";

/// An input a plugin can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InputName {
    /// The teacher's probabilities at temperature 1.
    SoftLabels,
    /// A recorded quantity of the proxy.
    Dynamics(Source, Quantity),
    /// The epochs of the pass records.
    PassEpochs,
    /// The proxy's penultimate activations after training.
    ProxyEmbedding,
    /// The proxy's per-example last-layer gradients after training.
    ProxyGrad,
    /// A named intermediate tensor of the ONNX teacher.
    TeacherEmbedding,
}

impl InputName {
    /// Every name this host can supply.
    pub fn all() -> Vec<InputName> {
        let mut names = vec![InputName::SoftLabels];
        for source in [Source::Batch, Source::Pass] {
            for q in Quantity::ALL {
                if q.available_from(source) {
                    names.push(InputName::Dynamics(source, q));
                }
            }
        }
        names.extend([
            InputName::PassEpochs,
            InputName::ProxyEmbedding,
            InputName::ProxyGrad,
            InputName::TeacherEmbedding,
        ]);
        names
    }

    /// The input called `name`; otherwise the list of known names, for the error.
    pub fn parse(name: &str) -> Result<InputName, String> {
        Self::all()
            .into_iter()
            .find(|n| n.to_string() == name)
            .ok_or_else(|| {
                Self::all()
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
    }

    /// The provider that computes it.
    pub fn kind(self) -> InputKind {
        match self {
            InputName::SoftLabels | InputName::TeacherEmbedding => InputKind::Teacher,
            InputName::Dynamics(..)
            | InputName::PassEpochs
            | InputName::ProxyEmbedding
            | InputName::ProxyGrad => InputKind::Proxy,
        }
    }

    /// Whether the proxy must be trained for it.
    pub fn needs_proxy(self) -> bool {
        self.kind() == InputKind::Proxy
    }

    /// What the manifest must add for this input, when `offer` lacks it (`None`: it can be
    /// computed).
    pub fn unmet(self, offer: &Offer) -> Option<&'static str> {
        match self {
            InputName::SoftLabels if !offer.teacher => Some("add a [teacher]"),
            InputName::TeacherEmbedding if !offer.onnx_teacher => {
                Some("add an ONNX [teacher] with embedding = \"<tensor name>\"")
            }
            InputName::TeacherEmbedding if !offer.teacher_embedding => {
                Some("set [teacher] embedding = \"<tensor name>\" (a tensor of the model)")
            }
            InputName::SoftLabels
            | InputName::TeacherEmbedding
            | InputName::Dynamics(..)
            | InputName::PassEpochs
            | InputName::ProxyEmbedding
            | InputName::ProxyGrad => None,
        }
    }
}

/// Which provider computes an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// The first teacher: its soft labels and embeddings.
    Teacher,
    /// The proxy's training: dynamics and its embedding.
    Proxy,
}

/// What a manifest offers the providers (for [`InputName::unmet`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Offer {
    /// A `[teacher]` is declared.
    pub teacher: bool,
    /// The first teacher is an ONNX model.
    pub onnx_teacher: bool,
    /// The first teacher names an `embedding` tensor.
    pub teacher_embedding: bool,
}

/// One kind of input's computation, handed the names of its kind that the planned methods
/// need.
pub trait Provider {
    type Error;
    /// The kind of the names it computes.
    const KIND: InputKind;
    /// The `wanted` inputs (all of [`Self::KIND`]), each over the training set (`[N, ...]`).
    fn provide(self, wanted: &[InputName]) -> Result<Vec<(InputName, HostTensor)>, Self::Error>;
}

impl std::fmt::Display for InputName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputName::SoftLabels => f.write_str(kdprune_plugin_api::INPUT_SOFT_LABELS),
            InputName::Dynamics(s, q) => f.write_str(&dynamics::tensor_name(*s, *q)),
            InputName::PassEpochs => f.write_str(dynamics::PASS_EPOCHS),
            InputName::ProxyEmbedding => f.write_str(dynamics::PROXY_EMBEDDING),
            InputName::ProxyGrad => f.write_str(dynamics::PROXY_GRAD),
            InputName::TeacherEmbedding => f.write_str(TEACHER_EMBEDDING),
        }
    }
}

/// What the planned methods need, gathered before any work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Every input asked for.
    pub names: std::collections::BTreeSet<InputName>,
    /// What the proxy must record for the names of [`InputKind::Proxy`].
    pub dynamics: Request,
}

impl Needs {
    /// The needs of `names`.
    pub fn of(names: impl IntoIterator<Item = InputName>) -> Needs {
        let mut needs = Needs::default();
        for name in names {
            needs.add(name);
        }
        needs
    }

    /// Whether any input comes from the first teacher.
    pub fn reads_teacher(&self) -> bool {
        self.names.iter().any(|n| n.kind() == InputKind::Teacher)
    }

    /// Adds one plugin's input.
    pub fn add(&mut self, name: InputName) {
        self.names.insert(name);
        match name {
            InputName::SoftLabels | InputName::TeacherEmbedding => {}
            InputName::Dynamics(s, q) => {
                self.dynamics.recorded.insert((s, q));
            }
            // The epochs come with any pass record; asked alone, they need one.
            InputName::PassEpochs => {
                if !self
                    .dynamics
                    .recorded
                    .iter()
                    .any(|(s, _)| *s == Source::Pass)
                {
                    self.dynamics
                        .recorded
                        .insert((Source::Pass, Quantity::Correct));
                }
            }
            InputName::ProxyEmbedding => self.dynamics.embedding = true,
            InputName::ProxyGrad => self.dynamics.grad = true,
        }
    }
}

/// The computed inputs of a run, by name.
#[derive(Debug, Default)]
pub struct Inputs {
    tensors: Vec<(String, HostTensor)>,
}

impl Inputs {
    /// Adds a computed input.
    pub fn insert(&mut self, name: InputName, tensor: HostTensor) {
        let name = name.to_string();
        self.tensors.retain(|(n, _)| *n != name);
        self.tensors.push((name, tensor));
    }

    pub fn get(&self, name: InputName) -> Option<&HostTensor> {
        let name = name.to_string();
        self.tensors
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t)
    }

    /// Computes with `provider` the inputs of its kind that `needs` names (nothing when it
    /// names none).
    pub fn gather<P: Provider>(&mut self, needs: &Needs, provider: P) -> Result<(), P::Error> {
        let wanted: Vec<InputName> = needs
            .names
            .iter()
            .copied()
            .filter(|n| n.kind() == P::KIND)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        for (name, tensor) in provider.provide(&wanted)? {
            self.insert(name, tensor);
        }
        Ok(())
    }

    /// The borrowed tensors for a plugin that asked for `names` (those the run has).
    pub fn views(&self, names: &[InputName]) -> Vec<Tensor<'_>> {
        names
            .iter()
            .filter_map(|n| {
                let name = n.to_string();
                self.tensors
                    .iter()
                    .find(|(t, _)| *t == name)
                    .map(|(t, tensor)| tensor.view(t))
            })
            .collect()
    }
}

/// Where the dynamics provider looks and what it trains on.
pub struct DynamicsContext<'a> {
    pub spec: &'a DynamicsSpec,
    /// The full training set, student-normalised: `x` `[N, D]`, `y` `[N]`.
    pub set: TrainSet<'a>,
    /// The content hash of `set`.
    pub data_hash: [u8; 32],
    pub cache_dir: &'a std::path::Path,
}

/// The dynamics provider: the cached records when they cover `request`, otherwise the runs'
/// parts `kdprune prepare --shard` wrote (joined into one file, the parts removed) with any
/// run they lack recorded here, otherwise a proxy training that records the union of
/// `request` and what the cache file held.
pub fn provide_dynamics(
    ctx: &DynamicsContext<'_>,
    request: &Request,
) -> Result<Dynamics, DynamicsError> {
    if let Some(import) = &ctx.spec.import {
        let started = Instant::now();
        let read = dynamics::import::read(
            import,
            request,
            dynamics::import::Described {
                labels: ctx.set.y,
                classes: ctx.set.num_classes,
            },
        )?;
        tracing::info!(
            runs = read.runs.len(),
            seconds = started.elapsed().as_secs_f64(),
            "dynamics read from [dynamics] from"
        );
        return Ok(read);
    }
    let key = dynamics::cache::DynamicsKey::new(ctx.spec, &ctx.data_hash);
    let path = key.path(ctx.cache_dir);
    let cached = dynamics::cache::read(&path, &key);
    let wanted = match cached {
        Some(c) if c.request.covers(request) => {
            tracing::info!(cache = %path.display(), "dynamics from the cache");
            return Ok(c);
        }
        Some(c) => c.request.union(request),
        None => request.clone(),
    };
    let runs = dynamics::runs_needed(ctx.spec, &wanted);
    let mut parts = Vec::new();
    let mut missing = Vec::new();
    for &run in &runs {
        match dynamics::cache::read(&key.run_path(ctx.cache_dir, run), &key) {
            Some(part)
                if part.runs == [run]
                    && part.request.covers(&dynamics::run_request(&wanted, run)) =>
            {
                parts.push(part)
            }
            _ => missing.push(run),
        }
    }
    if missing.len() < runs.len() {
        tracing::info!(
            parts = runs.len() - missing.len(),
            missing = missing.len(),
            "dynamics: joining the runs' parts from the cache"
        );
    }
    let started = Instant::now();
    if !missing.is_empty() {
        parts.push(record(ctx, &wanted, &missing)?);
    }
    let recorded = dynamics::join_runs(&parts, &wanted, &runs).ok_or_else(|| {
        dynamics::DynamicsError::Spec(format!(
            "the cached parts of runs in {} disagree on their records' shapes; remove {}",
            ctx.cache_dir.display(),
            key.run_path(ctx.cache_dir, 0).display()
        ))
    })?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        pass_seconds = recorded.pass_seconds,
        "dynamics recorded"
    );
    match dynamics::cache::write(&path, &key, &recorded) {
        Ok(()) => {
            for &run in &runs {
                let _ = std::fs::remove_file(key.run_path(ctx.cache_dir, run));
            }
        }
        Err(message) => {
            tracing::warn!(cache = %path.display(), "the dynamics cache could not be written ({message}); going on without it")
        }
    }
    Ok(recorded)
}

fn record(
    ctx: &DynamicsContext<'_>,
    request: &Request,
    runs: &[usize],
) -> Result<Dynamics, DynamicsError> {
    dynamics::record_runs(ctx.spec, request, &ctx.set, runs)
}

/// `kdprune prepare --shard i/n`'s share of the dynamics: each proxy run `r` with
/// `r mod n = i` that neither the whole cache file nor its own part covers is recorded
/// and written as its part (one file per run, so an interrupted prepare resumes). Returns
/// the runs recorded here.
pub fn prepare_dynamics(
    ctx: &DynamicsContext<'_>,
    request: &Request,
    shard: crate::shard::Shard,
) -> Result<Vec<usize>, DynamicsError> {
    if ctx.spec.import.is_some() {
        return Ok(Vec::new());
    }
    let key = dynamics::cache::DynamicsKey::new(ctx.spec, &ctx.data_hash);
    let whole = dynamics::cache::read(&key.path(ctx.cache_dir), &key);
    if whole.is_some_and(|c| c.request.covers(request)) {
        return Ok(Vec::new());
    }
    let mut done = Vec::new();
    for run in dynamics::runs_needed(ctx.spec, request) {
        if run % shard.count() != shard.index() {
            continue;
        }
        let part_path = key.run_path(ctx.cache_dir, run);
        let wanted = dynamics::run_request(request, run);
        let part = dynamics::cache::read(&part_path, &key);
        if part.is_some_and(|p| p.runs == [run] && p.request.covers(&wanted)) {
            continue;
        }
        let recorded = record(ctx, &wanted, &[run])?;
        dynamics::cache::write(&part_path, &key, &recorded).map_err(|message| {
            DynamicsError::Io {
                path: part_path.clone(),
                message,
            }
        })?;
        done.push(run);
    }
    Ok(done)
}

/// The proxy's inputs: recorded (or read from the cache) by [`provide_dynamics`]; records a
/// cache file held beyond the request are dropped, not copied.
impl Provider for &DynamicsContext<'_> {
    type Error = DynamicsError;
    const KIND: InputKind = InputKind::Proxy;

    fn provide(self, wanted: &[InputName]) -> Result<Vec<(InputName, HostTensor)>, DynamicsError> {
        let needs = Needs::of(wanted.iter().copied());
        let recorded = provide_dynamics(self, &needs.dynamics)?;
        Ok(recorded
            .tensors
            .into_iter()
            .filter_map(|(name, tensor)| {
                let input = InputName::parse(&name).ok()?;
                let with_pass = needs
                    .dynamics
                    .recorded
                    .iter()
                    .any(|(s, _)| *s == Source::Pass);
                let kept =
                    needs.names.contains(&input) || (input == InputName::PassEpochs && with_pass);
                kept.then_some((input, tensor))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_supplies_exactly_the_names_of_its_plugin_api() {
        let host: Vec<String> = InputName::all().iter().map(|n| n.to_string()).collect();
        assert_eq!(host, kdprune_plugin_api::INPUT_NAMES);
    }

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_known() {
        for name in InputName::all() {
            assert_eq!(InputName::parse(&name.to_string()), Ok(name));
        }
        assert_eq!(
            InputName::parse("dynamics/batch/margin"),
            Ok(InputName::Dynamics(Source::Batch, Quantity::Margin))
        );
        // The gradient norm needs the evaluation pass.
        let err = InputName::parse("dynamics/batch/grad_norm").unwrap_err();
        assert!(err.contains("dynamics/pass/grad_norm"), "{err}");
        assert!(InputName::parse("dynamics/forgetting").is_err());
    }
}
