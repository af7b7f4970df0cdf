//! Plugin libraries: finding them in folders, loading them through the stable ABI, checking
//! what they declare, and calling them safely.
//!
//! Owns the [`Registry`] (name -> plugin), the translation of loader failures into one line
//! each, the checking of manifest parameters against a plugin's declaration, and the checking
//! of what a plugin returns (lengths, ranges, duplicates). It does not own what scores mean
//! (see [`crate::select`]) or how a teacher's logits are cached (see [`crate::teacher`]).

mod params;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError};
use abi_stable::std_types::{RResult, RSlice};
use kdprune_plugin_api::{
    BatchView, DataView, Param, ParamSpec, ParamValue, PluginEntry_Ref, PluginKind,
    PluginLibrary_Ref, ScoreRequest, Selection, TeacherBox, TeacherInit, Tensor,
    BUDGET_INDEPENDENT_PARAM, PLUGIN_API_VERSION,
};

use crate::inputs::InputName;
use crate::select::Answer;

pub use params::check_params;

/// An error about plugins; each names the file or the plugin and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{file}: {message}")]
    Load { file: PathBuf, message: String },
    #[error("two plugins are named {name:?}: {first} and {second}; remove or rename one")]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("no plugin named {name:?} in {dirs}{hint}; `kdprune plugins` lists what is loaded")]
    Unknown {
        name: String,
        dirs: String,
        /// "; did you mean ..." when a loaded plugin's name is close.
        hint: String,
    },
    #[error("plugin {name:?} is a {actual}, but it is used as a {wanted}")]
    WrongKind {
        name: String,
        actual: &'static str,
        wanted: &'static str,
    },
    #[error("plugin {name:?} ({file}): {message}")]
    Call {
        name: String,
        file: PathBuf,
        message: String,
    },
    #[error("{0}")]
    Param(String),
}

/// What a plugin says about itself, copied out of the library.
#[derive(Debug, Clone)]
pub struct PluginDescription {
    pub name: String,
    pub kind: PluginKind,
    pub version: String,
    pub description: String,
    pub params: Vec<ParamSpec>,
    /// The inputs asked for, parsed (names the host does not know refuse the library).
    pub inputs: Vec<InputRequest>,
    pub high_is_hard: bool,
    /// Scores that are the same for every budget: scored once for all keep fractions.
    pub budget_independent: bool,
    /// The plugin's default selection policy (`None`: the host's).
    pub default_policy: Option<String>,
    /// What a high score means, in words (may be empty).
    pub score_meaning: String,
}

/// One input a plugin asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRequest {
    pub name: InputName,
    pub required: bool,
}

/// A loaded plugin.
#[derive(Clone)]
pub struct Plugin {
    pub description: PluginDescription,
    pub file: PathBuf,
    /// The source hash its library exports (kdprune-plugin-build), if its build declared one.
    pub source: Option<String>,
    entry: PluginEntry_Ref,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("description", &self.description)
            .field("file", &self.file)
            .field("source", &self.source)
            .finish()
    }
}

/// A file that could not be loaded; the other plugins still are.
#[derive(Debug, Clone)]
pub struct LoadProblem {
    pub file: PathBuf,
    pub message: String,
}

impl std::fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

/// All plugins found in a list of folders.
#[derive(Debug, Default)]
pub struct Registry {
    plugins: Vec<Plugin>,
    /// Files skipped, with why.
    pub problems: Vec<LoadProblem>,
    dirs: Vec<PathBuf>,
}

/// The folders to search: the manifest's, then `--plugin-dir`, then `KDPRUNE_PLUGIN_PATH`
/// (separated like `PATH`), without repeats.
pub fn plugin_dirs(manifest_dirs: &[PathBuf], cli_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = manifest_dirs.iter().chain(cli_dirs).cloned().collect();
    if let Some(env) = std::env::var_os("KDPRUNE_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()));
    }
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let key = d.canonicalize().unwrap_or_else(|_| d.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    dirs
}

/// Whether users other than the owner and group may write to `path` (Unix mode o+w).
fn writable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o002 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Checks a plugin's library against the SHA-256 the manifest pins for it.
pub fn check_pin(plugin: &Plugin, pinned: &str) -> Result<(), PluginError> {
    let bytes = std::fs::read(&plugin.file).map_err(|e| PluginError::Load {
        file: plugin.file.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let actual = crate::hash::sha256_hex(&bytes);
    if !actual.eq_ignore_ascii_case(pinned.trim()) {
        return Err(PluginError::Load {
            file: plugin.file.clone(),
            message: format!(
                "plugin {:?} has SHA-256 {actual}, but the manifest pins {pinned}; the file changed: rebuild it from the source you trust, or update plugin_sha256 if the change is yours",
                plugin.description.name
            ),
        });
    }
    Ok(())
}

fn has_library_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == std::env::consts::DLL_EXTENSION)
}

/// Why a file named like a library cannot be loaded before it is opened: a broken or
/// looping symbolic link, or no regular file (a folder, a device, a FIFO).
fn not_a_library_file(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => None,
        Ok(_) => Some("not a regular file; remove it from the plugin folder".into()),
        Err(e) => Some(match std::fs::read_link(path) {
            Ok(target) => format!(
                "a broken or looping symbolic link (to {}: {e}); remove it or point it at a plugin library",
                target.display()
            ),
            Err(_) => format!("cannot read: {e}"),
        }),
    }
}

impl Registry {
    /// Loads every dynamic library in `dirs`. A file that is not a kdprune plugin, or one
    /// built against another plugin-api, is recorded in [`Registry::problems`] and skipped.
    /// A folder that does not exist is a problem too. Two plugins of the same name are an
    /// error.
    pub fn load(dirs: &[PathBuf]) -> Result<Self, PluginError> {
        Self::load_with(dirs, false)
    }

    /// [`Registry::load`]; a folder or library that other users may write to (anyone could
    /// swap in code that kdprune then runs) is refused unless `allow_writable`.
    pub fn load_with(dirs: &[PathBuf], allow_writable: bool) -> Result<Self, PluginError> {
        let mut registry = Registry {
            dirs: dirs.to_vec(),
            ..Default::default()
        };
        for dir in dirs {
            if !allow_writable && writable_by_others(dir) {
                registry.problems.push(LoadProblem {
                    file: dir.clone(),
                    message: "the plugin folder is writable by other users, who could put code in it that kdprune would run; chmod o-w it, or set allow_writable_plugins = true in the manifest".into(),
                });
                continue;
            }
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    registry.problems.push(LoadProblem {
                        file: dir.clone(),
                        message: format!("cannot read the plugin folder: {e}; build the plugins (scripts/setup.sh) or fix the path"),
                    });
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| has_library_name(p))
                .collect();
            files.sort();
            for file in files {
                if let Some(message) = not_a_library_file(&file) {
                    registry.problems.push(LoadProblem { file, message });
                    continue;
                }
                if !allow_writable && writable_by_others(&file) {
                    registry.problems.push(LoadProblem {
                        file,
                        message: "the plugin library is writable by other users, who could replace it; chmod o-w it, or set allow_writable_plugins = true in the manifest".into(),
                    });
                    continue;
                }
                match load_library(&file) {
                    Ok((plugins, refused)) => {
                        for plugin in plugins {
                            registry.add(plugin)?;
                        }
                        registry
                            .problems
                            .extend(refused.into_iter().map(|message| LoadProblem {
                                file: file.clone(),
                                message,
                            }));
                    }
                    Err(message) => registry.problems.push(LoadProblem { file, message }),
                }
            }
        }
        tracing::debug!(
            plugins = registry.plugins.len(),
            problems = registry.problems.len(),
            "plugins loaded"
        );
        Ok(registry)
    }

    fn add(&mut self, plugin: Plugin) -> Result<(), PluginError> {
        if let Some(other) = self
            .plugins
            .iter()
            .find(|p| p.description.name == plugin.description.name)
        {
            return Err(PluginError::Duplicate {
                name: plugin.description.name,
                first: other.file.clone(),
                second: plugin.file,
            });
        }
        self.plugins.push(plugin);
        Ok(())
    }

    /// Plugins in load order (folder order, then file name).
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// The plugin called `name`, which must be of `kind`.
    pub fn get(&self, name: &str, kind: PluginKind) -> Result<&Plugin, PluginError> {
        let plugin = self
            .plugins
            .iter()
            .find(|p| p.description.name == name)
            .ok_or_else(|| PluginError::Unknown {
                hint: crate::suggest::did_you_mean(
                    name,
                    self.plugins.iter().map(|p| p.description.name.as_str()),
                ),
                name: name.to_string(),
                dirs: if self.dirs.is_empty() {
                    "no plugin folder (set plugin_dirs, --plugin-dir or KDPRUNE_PLUGIN_PATH)".into()
                } else {
                    self.dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })?;
        if plugin.description.kind != kind {
            return Err(PluginError::WrongKind {
                name: name.to_string(),
                actual: plugin.description.kind.as_str(),
                wanted: kind.as_str(),
            });
        }
        Ok(plugin)
    }
}

/// One line for a loader failure: what is wrong with the file and what to do.
fn describe_library_error(err: &LibraryError) -> String {
    match err {
        LibraryError::OpenError { err, .. } => {
            format!("cannot be opened as a dynamic library ({err}); remove it from the plugin folder")
        }
        LibraryError::GetSymbolError { .. } => {
            "not a kdprune plugin (it exports no kdprune root module); remove it from the plugin folder".into()
        }
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "built against kdprune-plugin-api {actual_version}, this host uses {expected_version}; rebuild the plugin against kdprune-plugin-api {PLUGIN_API_VERSION}"
        ),
        LibraryError::AbiInstability(_) => format!(
            "its plugin ABI layout differs from this host's (built against another kdprune-plugin-api); rebuild the plugin against kdprune-plugin-api {PLUGIN_API_VERSION}"
        ),
        LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. } => format!(
            "built with an incompatible abi_stable or Rust ABI; rebuild the plugin against kdprune-plugin-api {PLUGIN_API_VERSION}"
        ),
        LibraryError::ParseVersionError(e) => {
            format!("its plugin-api version cannot be read ({e}); rebuild the plugin against kdprune-plugin-api {PLUGIN_API_VERSION}")
        }
        LibraryError::RootModule { err, .. } => {
            format!("its root module failed to load ({err}); fix the plugin")
        }
        LibraryError::Many(errs) => errs
            .iter()
            .map(describe_library_error)
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// The plugins of a library, and one line for each plugin of it that is refused (the others
/// still load); an error when the library itself cannot be loaded.
fn load_library(file: &Path) -> Result<(Vec<Plugin>, Vec<String>), String> {
    let header = lib_header_from_path(file).map_err(|e| describe_library_error(&e))?;
    let built_against = header.version_strings().version.to_string();
    let module = header
        .init_root_module::<PluginLibrary_Ref>()
        .map_err(|e| match e {
            LibraryError::AbiInstability(_) => format!(
                "built against kdprune-plugin-api {built_against} with another ABI layout than this host's {PLUGIN_API_VERSION}; rebuild the plugin against kdprune-plugin-api {PLUGIN_API_VERSION}"
            ),
            other => describe_library_error(&other),
        })?;
    let entries = (module.plugins())();
    let source = source_id(file);
    let mut plugins = Vec::new();
    let mut refused = Vec::new();
    for entry in entries.iter() {
        match describe_entry(entry) {
            Ok(description) => plugins.push(Plugin {
                description,
                file: file.to_path_buf(),
                source: source.clone(),
                entry: *entry,
            }),
            Err(message) => refused.push(message),
        }
    }
    Ok((plugins, refused))
}

/// The source hash `file` exports ([`kdprune_plugin_api::glue::SOURCE_SYMBOL`]), if it
/// declares one; a library built before the symbol existed has none.
fn source_id(file: &Path) -> Option<String> {
    use kdprune_plugin_api::glue::{SourceId, SOURCE_SYMBOL};
    // SAFETY: abi_stable's loader has just opened this file and keeps it open, so opening it
    // again returns the same handle and runs no initialiser; the symbol, where present, is the
    // `#[repr(C)]` `SourceId` static `export_plugins!` defines, read while `library` is open.
    unsafe {
        let library = libloading::Library::new(file).ok()?;
        let symbol = library.get::<*const SourceId>(SOURCE_SYMBOL).ok()?;
        let id: &SourceId = &**symbol;
        id.hex().map(str::to_string)
    }
}

/// A plugin's description, checked: a name, a kind this host knows, its function, known inputs.
fn describe_entry(entry: &PluginEntry_Ref) -> Result<PluginDescription, String> {
    {
        let info = (entry.info())();
        let name = info.name.to_string();
        if name.is_empty() || name.starts_with('<') {
            return Err(format!(
                "a plugin describes itself badly ({}); fix the plugin",
                info.description
            ));
        }
        let kind = info.plugin_kind().ok_or_else(|| {
            format!("plugin {name:?} is of a kind this host does not know; upgrade kdprune")
        })?;
        let inputs = info
            .inputs
            .iter()
            .map(|i| {
                InputName::parse(i.name.as_str())
                    .map(|name| InputRequest {
                        name,
                        required: i.required,
                    })
                    .map_err(|known| {
                        format!(
                            "plugin {name:?} asks for input {:?}, which this host cannot supply (known: {known}); upgrade kdprune",
                            i.name.as_str()
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let description = PluginDescription {
            name,
            kind,
            version: info.version.to_string(),
            description: info.description.to_string(),
            params: info.params.to_vec(),
            inputs,
            high_is_hard: info.high_is_hard,
            budget_independent: info.budget_independent,
            default_policy: Some(info.default_policy.to_string()).filter(|p| !p.is_empty()),
            score_meaning: info.score_meaning.to_string(),
        };
        let has_fn = match description.kind {
            PluginKind::PruningMethod => entry.score().is_some(),
            PluginKind::Teacher => entry.new_teacher().is_some(),
            _ => false,
        };
        if !has_fn {
            return Err(format!(
                "plugin {:?} is a {} but does not export its function; fix the plugin",
                description.name,
                description.kind.as_str()
            ));
        }
        Ok(description)
    }
}

/// A borrowed training set for a plugin call: `features` `[N, D]` row-major.
pub struct PluginData<'a> {
    pub features: &'a [f32],
    /// `[N, ...sample_shape]`.
    pub shape: Vec<u64>,
    pub labels: &'a [u32],
    pub num_classes: usize,
}

impl<'a> PluginData<'a> {
    /// The whole of `set` (`[N, ...]` features, `[N]` labels), as plugins see it.
    pub fn of(set: &'a crate::data::Dataset) -> Self {
        let mut shape = vec![set.len() as u64];
        shape.extend(set.sample_shape.iter().map(|&s| s as u64));
        PluginData {
            features: set.features.as_slice().unwrap_or(&[]),
            shape,
            labels: &set.labels,
            num_classes: set.num_classes,
        }
    }

    fn view(&self) -> DataView<'_> {
        DataView {
            features: RSlice::from_slice(self.features),
            shape: RSlice::from_slice(&self.shape),
            labels: RSlice::from_slice(self.labels),
            num_classes: self.num_classes as u32,
        }
    }
}

impl Plugin {
    fn call_error(&self, message: impl Into<String>) -> PluginError {
        PluginError::Call {
            name: self.description.name.clone(),
            file: self.file.clone(),
            message: message.into(),
        }
    }

    /// Runs a pruning method and checks its answer.
    ///
    /// `inputs`: the inputs it asked for that the host has, by name.
    /// Returns scores `[N]` or `K = budget` distinct indices `< N`.
    pub fn score(
        &self,
        data: &PluginData<'_>,
        inputs: &[Tensor<'_>],
        params: &[Param],
        seed: u64,
        budget: usize,
    ) -> Result<Answer, PluginError> {
        let n = data.labels.len();
        let independent = self.budget_independent(params);
        let score_fn = self
            .entry
            .score()
            .ok_or_else(|| self.call_error("exports no score function"))?;
        let request = ScoreRequest {
            train: data.view(),
            seed,
            budget: budget as u64,
            params: RSlice::from_slice(params),
            inputs: RSlice::from_slice(inputs),
        };
        let selection = match score_fn(&request) {
            RResult::ROk(s) => s.into_enum().map_err(|_| {
                self.call_error(
                    "returned a kind of answer this host does not know; upgrade kdprune",
                )
            })?,
            RResult::RErr(e) => return Err(self.call_error(e.message.to_string())),
        };
        match &selection {
            Selection::Scores { values } => {
                if values.len() != n {
                    return Err(self.call_error(format!(
                        "returned {} scores for {n} examples; a score plugin must return one per example",
                        values.len()
                    )));
                }
                if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                    return Err(self.call_error(format!("score {i} is {} (not finite)", values[i])));
                }
            }
            Selection::Subset { .. } if independent => {
                return Err(self.call_error(
                    "says its scores do not depend on the budget but returned a subset; return scores or drop budget_independent",
                ));
            }
            Selection::Subset { indices } => {
                if indices.len() != budget {
                    return Err(self.call_error(format!(
                        "returned {} indices but the budget is {budget}",
                        indices.len()
                    )));
                }
                let mut seen = vec![false; n];
                for &i in indices.iter() {
                    let slot = seen.get_mut(i as usize).ok_or_else(|| {
                        self.call_error(format!(
                            "returned index {i}, out of range for {n} training examples"
                        ))
                    })?;
                    if *slot {
                        return Err(self.call_error(format!("returned index {i} twice")));
                    }
                    *slot = true;
                }
            }
            _ => {
                return Err(self.call_error(
                    "returned a kind of answer this host does not know; upgrade kdprune",
                ))
            }
        }
        Ok(match selection {
            Selection::Scores { values } => Answer::Scores(values.into_vec()),
            Selection::Subset { indices } => Answer::Subset(indices.into_vec()),
            _ => unreachable!("checked above"),
        })
    }

    /// Whether, with these checked parameters, the method's scores do not depend on the
    /// budget: its description's flag, or, for a plugin whose answer depends on its
    /// parameters, a bool parameter it declares as [`BUDGET_INDEPENDENT_PARAM`] set to true
    /// (the `external` method's; a convention, not an ABI field, so that no library built
    /// against this plugin API needs rebuilding).
    pub fn budget_independent(&self, params: &[Param]) -> bool {
        self.description.budget_independent
            || params.iter().any(|p| {
                p.name.as_str() == BUDGET_INDEPENDENT_PARAM
                    && matches!(p.value.as_enum(), Ok(ParamValue::Bool(true)))
            })
    }

    /// The inputs to supply for these checked parameters: what the plugin says for them
    /// (`inputs_for`), or its declared inputs. Each must be one the plugin declared.
    pub fn inputs_for(&self, params: &[Param]) -> Result<Vec<InputRequest>, PluginError> {
        let Some(inputs_for) = self.entry.inputs_for() else {
            return Ok(self.description.inputs.clone());
        };
        let specs = match inputs_for(RSlice::from_slice(params)) {
            RResult::ROk(v) => v,
            RResult::RErr(e) => return Err(self.call_error(e.message.to_string())),
        };
        specs
            .iter()
            .map(|spec| {
                let name = InputName::parse(spec.name.as_str()).map_err(|known| {
                    self.call_error(format!(
                        "asks for input {:?}, which this host cannot supply (known: {known})",
                        spec.name.as_str()
                    ))
                })?;
                if !self.description.inputs.iter().any(|d| d.name == name) {
                    return Err(self.call_error(format!(
                        "asks for input {name}, which its description does not list; fix the plugin"
                    )));
                }
                Ok(InputRequest {
                    name,
                    required: spec.required,
                })
            })
            .collect()
    }

    /// Makes a teacher from the raw training set.
    pub fn new_teacher(
        &self,
        data: &PluginData<'_>,
        params: &[Param],
        seed: u64,
    ) -> Result<PluginTeacher, PluginError> {
        let new_fn = self
            .entry
            .new_teacher()
            .ok_or_else(|| self.call_error("exports no teacher constructor"))?;
        let init = TeacherInit {
            train: data.view(),
            params: RSlice::from_slice(params),
            seed,
        };
        match new_fn(&init) {
            RResult::ROk(model) => Ok(PluginTeacher {
                model,
                name: self.description.name.clone(),
                file: self.file.clone(),
            }),
            RResult::RErr(e) => Err(self.call_error(e.message.to_string())),
        }
    }
}

/// A live teacher from a plugin.
pub struct PluginTeacher {
    model: TeacherBox,
    name: String,
    file: PathBuf,
}

impl PluginTeacher {
    /// Logits `[B, num_classes]` for `features` `[B, D]` of examples of `sample_shape`.
    pub fn logits(
        &mut self,
        features: &[f32],
        batch: usize,
        sample_shape: &[usize],
        num_classes: usize,
    ) -> Result<Vec<f32>, PluginError> {
        let mut shape = vec![batch as u64];
        shape.extend(sample_shape.iter().map(|&s| s as u64));
        let view = BatchView {
            features: RSlice::from_slice(features),
            shape: RSlice::from_slice(&shape),
        };
        match self.model.logits(view) {
            RResult::ROk(v) if v.len() == batch * num_classes => Ok(v.into_vec()),
            RResult::ROk(v) => Err(PluginError::Call {
                name: self.name.clone(),
                file: self.file.clone(),
                message: format!(
                    "returned {} logits for a batch of {batch} with {num_classes} classes",
                    v.len()
                ),
            }),
            RResult::RErr(e) => Err(PluginError::Call {
                name: self.name.clone(),
                file: self.file.clone(),
                message: e.message.to_string(),
            }),
        }
    }
}

/// Formats a plugin's parameters for `kdprune plugins --verbose` style listings.
pub fn describe_params(params: &[ParamSpec]) -> BTreeMap<String, String> {
    params
        .iter()
        .map(|p| {
            (
                p.name.to_string(),
                match p.default_value() {
                    Some(d) => format!("{} = {d} ({})", d.kind().as_str(), p.description),
                    None => format!("(a kind this host does not know) ({})", p.description),
                },
            )
        })
        .collect()
}
/// What a run does when a pruning plugin fails in one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnPluginError {
    /// End the run with the plugin's error (results already written stay).
    Stop,
    /// Record the cell in `failures.jsonl`, go on with the others, exit non-zero at the end.
    Continue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_link_or_a_folder_named_like_a_library_is_a_named_problem() {
        let dir = tempfile::tempdir().unwrap();
        let ext = std::env::consts::DLL_EXTENSION;
        std::os::unix::fs::symlink(
            "/nowhere/libx.so",
            dir.path().join(format!("libbroken.{ext}")),
        )
        .unwrap();
        let looping = dir.path().join(format!("libloop.{ext}"));
        std::os::unix::fs::symlink(&looping, &looping).unwrap();
        std::fs::create_dir(dir.path().join(format!("libfolder.{ext}"))).unwrap();
        let registry = Registry::load_with(&[dir.path().to_path_buf()], true).unwrap();
        let problems: Vec<String> = registry.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems
                .iter()
                .filter(|p| p.contains("a broken or looping symbolic link"))
                .count()
                == 2,
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("libfolder") && p.contains("not a regular file")),
            "{problems:?}"
        );
    }
}
