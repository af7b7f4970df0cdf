//! Planning a run: the manifest's methods checked against their plugins (parameters, policy,
//! the inputs they ask for), the teachers the cells need, and what is checked before any
//! work (dynamics memory). Shared by `run`, `score`, `check` and `prepare`.

use std::path::PathBuf;

use kdprune_plugin_api::{Param, PluginKind};

use crate::data::spec::NormaliseSpec;
use crate::data::{self, Dataset, Normalisation};
use crate::dynamics;
use crate::inputs::{InputName, Needs};
use crate::manifest::{Manifest, PruneSpec};
use crate::plugins::{self, check_params, Plugin, Registry};
use crate::select::Policy;
use crate::teacher::spec::{TeacherSource, TeacherSpec};
use crate::train::TrainSet;
use crate::Error;

/// Options of a run that do not belong in the manifest.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Extra plugin folders (`--plugin-dir`).
    pub plugin_dirs: Vec<PathBuf>,
    /// Run only this share of the cells, into `<output>/shards/i-of-n/` (`--shard i/n`);
    /// [`super::distributed::merge`] joins the shares.
    pub shard: Option<crate::shard::Shard>,
}

/// A pruning method checked against its plugin.
pub(crate) struct Method<'r> {
    pub(crate) spec: &'r PruneSpec,
    pub(crate) plugin: &'r Plugin,
    pub(crate) params: Vec<Param>,
    /// The manifest's policy, or the plugin's default, checked.
    pub(crate) policy: Policy,
    /// The inputs it asked for that this run supplies (optional ones it cannot are left out).
    pub(crate) inputs: Vec<InputName>,
    /// Its scores do not depend on the budget (with these parameters): scored once per seed,
    /// every keep selected from them.
    pub(crate) budget_independent: bool,
    /// Its budget-independent scores go to the score cache: when the plugin itself says they
    /// are; not when a parameter does (the `external` command's), whose key cannot see the
    /// command's own files.
    pub(crate) cache_scores: bool,
}

impl Method<'_> {
    pub(crate) fn uses_proxy(&self) -> bool {
        self.inputs.iter().any(|i| i.needs_proxy())
    }
}

pub(crate) fn check_methods<'r>(
    manifest: &'r Manifest,
    registry: &'r Registry,
) -> Result<Vec<Method<'r>>, Error> {
    let at = |spec: &PruneSpec, message: String| {
        Error::Manifest(crate::manifest::ManifestError::At {
            path: manifest.path.clone(),
            line: spec.at.0,
            column: spec.at.1,
            message,
        })
    };
    let offer = crate::inputs::Offer {
        teacher: manifest.teacher().is_some(),
        onnx_teacher: matches!(
            manifest.teacher().map(|t| &t.source),
            Some(TeacherSource::Onnx { .. })
        ),
        teacher_embedding: manifest.teacher().is_some_and(|t| t.embedding.is_some()),
    };
    for (name, pinned) in &manifest.plugin_sha256 {
        let plugin = registry
            .plugins()
            .iter()
            .find(|p| &p.description.name == name)
            .ok_or_else(|| {
                Error::Manifest(crate::manifest::ManifestError::File {
                    path: manifest.path.clone(),
                    message: format!("plugin_sha256 pins {name:?}, which no plugin folder holds"),
                })
            })?;
        plugins::check_pin(plugin, pinned)?;
    }
    manifest
        .prune
        .iter()
        .map(|spec| {
            let plugin = registry
                .get(&spec.method, PluginKind::PruningMethod)
                .map_err(|e| {
                    let mut message = format!("[[prune]] method: {e}");
                    match registry.problems.as_slice() {
                        [] => {}
                        [only] => message.push_str(&format!(" (one file did not load: {only})")),
                        many => message.push_str(&format!(
                            " ({} files in the plugin folders did not load, first {}; run `kdprune plugins`)",
                            many.len(),
                            many[0]
                        )),
                    }
                    at(spec, message)
                })?;
            let params = check_params(&spec.method, &plugin.description.params, &spec.params)
                .map_err(|m| at(spec, format!("[[prune]] params: {m}")))?;
            let policy = match (&spec.policy, &plugin.description.default_policy) {
                (Some(p), _) => *p,
                (None, default) => {
                    let text = default.as_deref().unwrap_or("hardest");
                    let (rule, plugin_balance) = match text.split_once(':') {
                        Some((r, b)) => (r.trim(), Some(b.trim())),
                        None => (text.trim(), None),
                    };
                    let balance = spec.balance.as_deref().or(plugin_balance);
                    Policy::build(rule, balance, &Default::default()).map_err(|m| {
                        at(spec, format!("[[prune]] the default policy {text:?} of plugin {:?}: {m}; name a policy", spec.method))
                    })?
                }
            };
            let mut inputs = Vec::new();
            let requested = plugin
                .inputs_for(&params)
                .map_err(|e| at(spec, format!("[[prune]] params: {e}")))?;
            for request in &requested {
                let missing = request.name.unmet(&offer);
                match (missing, request.required) {
                    (None, _) => inputs.push(request.name),
                    (Some(what), true) => {
                        return Err(at(
                            spec,
                            format!("method {:?} needs the input {}; {what}", spec.method, request.name),
                        ))
                    }
                    (Some(_), false) => {}
                }
            }
            let budget_independent = plugin.budget_independent(&params);
            Ok(Method {
                spec,
                plugin,
                params,
                policy,
                inputs,
                budget_independent,
                cache_scores: plugin.description.budget_independent,
            })
        })
        .collect()
}

/// Checks that the dynamics the methods ask for fit in memory, before any work; records
/// read from elsewhere (`[dynamics] from`) are read here, so that every file is checked.
pub(crate) fn check_dynamics_memory(
    manifest: &Manifest,
    needs: &Needs,
    train: &Dataset,
) -> Result<(), Error> {
    if needs.dynamics.is_empty() {
        return Ok(());
    }
    if let Some(import) = &manifest.dynamics.import {
        let read = dynamics::import::read(
            import,
            &needs.dynamics,
            dynamics::import::Described {
                labels: &train.labels,
                classes: train.num_classes,
            },
        )?;
        let bytes: usize = read.tensors.iter().map(|(_, t)| t.nbytes()).sum();
        tracing::info!(bytes, runs = read.runs.len(), "dynamics read and checked");
        return Ok(());
    }
    let width = if needs.dynamics.embeds() {
        dynamics::embedding_width(&manifest.dynamics, &train.sample_shape, train.num_classes)?
    } else {
        0
    };
    let extent = dynamics::extent(&manifest.dynamics, train.len(), train.num_classes, width);
    let bytes = dynamics::check_memory(&manifest.dynamics, &needs.dynamics, extent)?;
    tracing::info!(
        bytes,
        runs = extent.runs,
        epochs = extent.epochs,
        checkpoints = extent.checkpoints,
        "dynamics planned"
    );
    Ok(())
}

/// Refuses, before any network is built, one that training could not hold in the memory
/// available now ([`crate::train::memory`]): the student, the proxy when dynamics are
/// recorded, and each teacher kdprune trains. `train`: the student's view, `[N, ...]`.
pub(crate) fn check_training_memory(
    manifest: &Manifest,
    needs: &Needs,
    train: &Dataset,
) -> Result<(), Error> {
    let mut networks = vec![("[student]", &manifest.student)];
    if !needs.dynamics.is_empty() && manifest.dynamics.import.is_none() {
        networks.push(("[dynamics]", &manifest.dynamics.proxy));
    }
    for teacher in &manifest.teachers {
        if let TeacherSource::Trained { spec, .. } = &teacher.source {
            networks.push(("[teacher] train", spec));
        }
    }
    let available = dynamics::available_memory();
    for (table, spec) in networks {
        // A shape the build refuses is named by the build.
        let Some((bytes, size)) =
            crate::train::memory::training_bytes(spec, &train.sample_shape, train.num_classes)
        else {
            continue;
        };
        if bytes > available {
            return Err(Error::Manifest(crate::manifest::ManifestError::File {
                path: manifest.path.clone(),
                message: format!(
                    "{table} would take about {} to train ({} parameters with their gradients and optimiser state, {} values of activations per example at batch_size {}) but {} is available; use fewer or narrower layers, or a smaller batch_size",
                    dynamics::human_bytes(bytes),
                    size.parameters,
                    size.activations,
                    spec.batch_size,
                    dynamics::human_bytes(available)
                ),
            }));
        }
    }
    Ok(())
}

/// The student's view of a data set: features normalised as the manifest says.
pub(crate) fn normalise(
    spec: &NormaliseSpec,
    train: &Dataset,
    test: &Dataset,
) -> Result<(Dataset, Dataset, Normalisation), Error> {
    let norm = spec.resolve(train);
    norm.check(&train.sample_shape)
        .map_err(|m| Error::Data(data::DataError::Invalid(format!("[data.normalise] {m}"))))?;
    let apply = |d: &Dataset| Dataset {
        features: norm.apply(d.features.view()),
        ..d.clone()
    };
    Ok((apply(train), apply(test), norm))
}

pub(crate) fn params_json(params: &[Param]) -> serde_json::Value {
    use kdprune_plugin_api::ParamValue;
    let map = params
        .iter()
        .map(|p| {
            let v = match p.value.as_enum() {
                Ok(ParamValue::Int(i)) => serde_json::json!(i),
                Ok(ParamValue::Float(f)) => serde_json::json!(f),
                Ok(ParamValue::Bool(b)) => serde_json::json!(b),
                Ok(ParamValue::Text(t)) => serde_json::json!(t.as_str()),
                Ok(ParamValue::IntList(v)) => serde_json::json!(v.as_slice()),
                Ok(ParamValue::FloatList(v)) => serde_json::json!(v.as_slice()),
                Ok(ParamValue::TextList(v)) => {
                    serde_json::json!(v.iter().map(|t| t.as_str()).collect::<Vec<_>>())
                }
                // Checked parameters are always of a kind this host knows.
                _ => serde_json::Value::Null,
            };
            (p.name.to_string(), v)
        })
        .collect::<serde_json::Map<_, _>>();
    serde_json::Value::Object(map)
}

/// Which teachers are made ready: those a pending cell distils from (`distilling[i]`), the
/// first one too when methods read its inputs, and the members of a needed ensemble (members
/// come first).
pub(crate) fn needed_teachers(
    teachers: &[TeacherSpec],
    needs: &Needs,
    distilling: &[bool],
) -> Vec<bool> {
    let mut needed: Vec<bool> = (0..teachers.len())
        .map(|i| distilling[i] || (i == 0 && needs.reads_teacher()))
        .collect();
    for (i, spec) in teachers.iter().enumerate().rev() {
        if let (true, TeacherSource::Ensemble { members, .. }) = (needed[i], &spec.source) {
            for &m in members {
                needed[m] = true;
            }
        }
    }
    needed
}

/// What a method's plugin is, in every key made of it: the source hash its library exports
/// (kdprune-plugin-build: the same on any machine, compiler and checkout, until the source
/// changes), else the SHA-256 of its library file (which a rebuild changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PluginCode {
    Source(String),
    File(String),
}

impl PluginCode {
    /// As a selection's tag holds it: the file hash as it always was, or `source:<hex>`.
    pub(crate) fn tag(&self) -> String {
        match self {
            Self::Source(hex) => format!("source:{hex}"),
            Self::File(sha) => sha.clone(),
        }
    }

    /// `(plugin_sha256, plugin_source)` as keys hold them: one of the two.
    pub(crate) fn fields(&self) -> (Option<String>, Option<String>) {
        match self {
            Self::Source(hex) => (None, Some(hex.clone())),
            Self::File(sha) => (Some(sha.clone()), None),
        }
    }
}

/// A method's [`PluginCode`].
pub(crate) fn plugin_code(method: &Method<'_>) -> Result<PluginCode, Error> {
    if let Some(source) = &method.plugin.source {
        return Ok(PluginCode::Source(source.clone()));
    }
    std::fs::read(&method.plugin.file)
        .map(|b| PluginCode::File(crate::hash::sha256_hex(&b)))
        .map_err(|e| Error::Io {
            path: method.plugin.file.clone(),
            message: format!("cannot read the plugin library: {e}"),
        })
}

/// What a method's scores depend on besides its inputs, seed and data: the score cache's
/// plugin identity.
pub(crate) fn plugin_identity(method: &Method<'_>, code: &PluginCode) -> serde_json::Value {
    let mut identity = serde_json::json!({
        "method": method.spec.method,
        "version": method.plugin.description.version,
        "params": params_json(&method.params),
    });
    match code {
        PluginCode::File(sha) => identity["plugin_sha256"] = sha.as_str().into(),
        PluginCode::Source(hex) => identity["plugin_source"] = hex.as_str().into(),
    }
    identity
}

/// The proxy's records `needs` asks for, on the student's view of the training set
/// `train_set` (`[N, D]`): from the cache, or by training the proxy.
pub(crate) fn dynamics_of(
    manifest: &Manifest,
    train_set: &Dataset,
    needs: &Needs,
) -> Result<crate::dynamics::Dynamics, Error> {
    Ok(crate::inputs::provide_dynamics(
        &dynamics_context(manifest, train_set),
        &needs.dynamics,
    )?)
}

/// The proxy's settings, training set (`[N, D]` student-normalised) and cache folder.
pub(crate) fn dynamics_context<'a>(
    manifest: &'a Manifest,
    train_set: &'a Dataset,
) -> crate::inputs::DynamicsContext<'a> {
    crate::inputs::DynamicsContext {
        spec: &manifest.dynamics,
        set: TrainSet {
            x: train_set.features.view(),
            sample_shape: &train_set.sample_shape,
            y: &train_set.labels,
            teacher: None,
            num_classes: train_set.num_classes,
        },
        data_hash: train_set.content_hash(),
        cache_dir: &manifest.cache_dir,
    }
}

/// The teachers stage 2 makes ready ([`needed_teachers`]) and the manifest's teachers with
/// every needed `train = { ... }` one trained (or taken from the cache) and made a model, and
/// the seconds that training took.
pub(crate) fn teachers_to_ready(
    manifest: &Manifest,
    needs: &Needs,
    distilling: &[bool],
    train_set: &Dataset,
    student_norm: &Normalisation,
) -> Result<(Vec<bool>, Vec<TeacherSpec>, f64), Error> {
    let needed = needed_teachers(&manifest.teachers, needs, distilling);
    let (specs, seconds) = crate::teacher::trained::materialise(
        &manifest.teachers,
        &needed,
        train_set,
        student_norm,
        &manifest.cache_dir,
    )?;
    Ok((needed, specs, seconds))
}

/// The plugin libraries of the manifest's folders and the run's (`--plugin-dir`); a file that
/// did not load is logged, and named again if a method asks for it.
pub(crate) fn load_registry(manifest: &Manifest, options: &RunOptions) -> Result<Registry, Error> {
    let dirs = plugins::plugin_dirs(&manifest.plugin_dirs, &options.plugin_dirs);
    let registry = Registry::load_with(&dirs, manifest.allow_writable_plugins)?;
    for problem in &registry.problems {
        tracing::warn!("{problem}");
    }
    Ok(registry)
}

/// Refuses a keep of `methods` that keeps no example of the `n` training examples, at its
/// `[[prune]]` entry.
pub(crate) fn refuse_empty_keeps(
    manifest: &Manifest,
    methods: &[Method<'_>],
    n: usize,
) -> Result<(), Error> {
    for method in methods {
        for keep in &method.spec.keep {
            keep.refuse_empty(n).map_err(|message| {
                Error::Manifest(crate::manifest::ManifestError::At {
                    path: manifest.path.clone(),
                    line: method.spec.at.0,
                    column: method.spec.at.1,
                    message: format!("[[prune]] {message}"),
                })
            })?;
        }
    }
    Ok(())
}

/// The inputs `methods` ask for, each once.
pub(crate) fn needs_of<'m, 'r: 'm>(methods: impl IntoIterator<Item = &'m Method<'r>>) -> Needs {
    Needs::of(methods.into_iter().flat_map(|m| m.inputs.iter().copied()))
}
