//! Plain `#[repr(C)]` values that cross the plugin boundary.
//!
//! Every slice is borrowed from the host for the duration of one call; a plugin that wants to
//! keep data copies it. Shapes are row-major and written `[N, ...]` in the docs.

use abi_stable::{
    sabi_trait,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

/// What a plugin does.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// Scores or selects training examples.
    PruningMethod,
    /// Labels batches with logits (a teacher for distillation).
    Teacher,
}

impl PluginKind {
    /// The word used in manifests and in `kdprune plugins`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::PruningMethod => "pruning-method",
            PluginKind::Teacher => "teacher",
        }
    }
}

/// The type of a parameter.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Int,
    Float,
    Bool,
    Text,
}

impl ParamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamKind::Int => "int",
            ParamKind::Float => "float",
            ParamKind::Bool => "bool",
            ParamKind::Text => "text",
        }
    }
}

/// A parameter value.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(RString),
}

impl ParamValue {
    pub fn kind(&self) -> ParamKind {
        match self {
            ParamValue::Int(_) => ParamKind::Int,
            ParamValue::Float(_) => ParamKind::Float,
            ParamValue::Bool(_) => ParamKind::Bool,
            ParamValue::Text(_) => ParamKind::Text,
        }
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Float(v) => write!(f, "{v}"),
            ParamValue::Bool(v) => write!(f, "{v}"),
            ParamValue::Text(v) => write!(f, "{v:?}"),
        }
    }
}

/// The declaration of one parameter: the host rejects names not declared and values of
/// another kind, and fills in the default when the manifest is silent.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct ParamSpec {
    pub name: RString,
    pub kind: ParamKind,
    pub default: ParamValue,
    pub description: RString,
}

/// A parameter as handed to the plugin: always every declared parameter, checked and with
/// defaults filled in.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct Param {
    pub name: RString,
    pub value: ParamValue,
}

/// How a plugin describes itself.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PluginInfo {
    /// Unique among all loaded plugins; what a manifest names.
    pub name: RString,
    pub kind: PluginKind,
    /// The plugin's own version (usually its crate version).
    pub version: RString,
    /// One line.
    pub description: RString,
    pub params: RVec<ParamSpec>,
    /// Optional inputs the plugin asks for, by name: `"soft_labels"` for the teacher's
    /// probabilities; later versions add more (the host refuses names it does not know).
    pub inputs: RVec<RString>,
    /// For pruning methods that return scores: whether a high score means a hard example.
    pub high_is_hard: bool,
}

impl PluginInfo {
    /// Starts the description of a pruning method.
    pub fn pruning_method(name: &str, version: &str, description: &str) -> Self {
        Self::new(name, PluginKind::PruningMethod, version, description)
    }

    /// Starts the description of a teacher.
    pub fn teacher(name: &str, version: &str, description: &str) -> Self {
        Self::new(name, PluginKind::Teacher, version, description)
    }

    fn new(name: &str, kind: PluginKind, version: &str, description: &str) -> Self {
        Self {
            name: name.into(),
            kind,
            version: version.into(),
            description: description.into(),
            params: RVec::new(),
            inputs: RVec::new(),
            high_is_hard: true,
        }
    }

    /// Declares a parameter with its default.
    pub fn param(mut self, name: &str, default: ParamValue, description: &str) -> Self {
        self.params.push(ParamSpec {
            name: name.into(),
            kind: default.kind(),
            default,
            description: description.into(),
        });
        self
    }

    /// Asks the host for an optional input (see [`PluginInfo::inputs`]).
    pub fn input(mut self, name: &str) -> Self {
        self.inputs.push(name.into());
        self
    }

    /// States whether a high score means hard (ignored for methods that return subsets).
    pub fn high_is_hard(mut self, high_is_hard: bool) -> Self {
        self.high_is_hard = high_is_hard;
        self
    }
}

/// Name of the input carrying the teacher's probabilities (see [`ScoreRequest::soft_labels`]).
pub const INPUT_SOFT_LABELS: &str = "soft_labels";

/// A labelled data set, borrowed.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct DataView<'a> {
    /// Features, row-major, `shape.iter().product()` values.
    pub features: RSlice<'a, f32>,
    /// `[N, ...]`: `[N, D]` for flat features, `[N, C, H, W]` for images.
    pub shape: RSlice<'a, u64>,
    /// `[N]`, each `< num_classes`.
    pub labels: RSlice<'a, u32>,
    pub num_classes: u32,
}

impl<'a> DataView<'a> {
    /// Number of examples, `N`.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per example (product of the shape after `N`).
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product::<u64>() as usize
    }

    /// The features of example `i`, `[row_len]`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        let d = self.row_len();
        &self.features.as_slice()[i * d..(i + 1) * d]
    }
}

/// A named tensor, for inputs added after this version (training dynamics, embeddings, ...).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct NamedTensor<'a> {
    pub name: RStr<'a>,
    pub shape: RSlice<'a, u64>,
    pub data: RSlice<'a, f32>,
}

/// Everything a pruning method gets for one (method, keep) cell.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct ScoreRequest<'a> {
    /// The training set after the student's normalisation.
    pub train: DataView<'a>,
    /// Teacher probabilities at temperature 1, `[N, num_classes]`; present when the plugin
    /// asked for [`INPUT_SOFT_LABELS`] and the manifest has a teacher.
    pub soft_labels: ROption<RSlice<'a, f32>>,
    /// Seed of this cell; a plugin must be deterministic given it.
    pub seed: u64,
    /// Number of examples to keep, `K` in `1..=N`.
    pub budget: u64,
    /// Every declared parameter, checked, defaults filled.
    pub params: RSlice<'a, Param>,
    /// Further inputs by name; empty in 0.1.0.
    pub extras: RSlice<'a, NamedTensor<'a>>,
}

impl ScoreRequest<'_> {
    /// The value of a declared parameter.
    pub fn param(&self, name: &str) -> Option<&ParamValue> {
        self.params
            .iter()
            .find(|p| p.name.as_str() == name)
            .map(|p| &p.value)
    }

    /// A further input by name.
    pub fn extra(&self, name: &str) -> Option<&NamedTensor<'_>> {
        self.extras.iter().find(|t| t.name.as_str() == name)
    }
}

/// What a pruning method returns.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone)]
pub enum Selection {
    /// One score per training example, `[N]`; the host's selection policy picks `K` of them.
    Scores { values: RVec<f32> },
    /// The kept examples themselves: `K` distinct indices `< N`.
    Subset { indices: RVec<u32> },
}

/// What a teacher plugin gets when it is made: the training set (which it may fit on) and its
/// parameters.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct TeacherInit<'a> {
    /// The training set as loaded, before any normalisation.
    pub train: DataView<'a>,
    pub params: RSlice<'a, Param>,
    pub seed: u64,
}

impl TeacherInit<'_> {
    /// The value of a declared parameter.
    pub fn param(&self, name: &str) -> Option<&ParamValue> {
        self.params
            .iter()
            .find(|p| p.name.as_str() == name)
            .map(|p| &p.value)
    }
}

/// A batch of inputs for a teacher.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct BatchView<'a> {
    /// Row-major, `shape.iter().product()` values.
    pub features: RSlice<'a, f32>,
    /// `[B, ...]`, the same trailing shape as the training set.
    pub shape: RSlice<'a, u64>,
}

/// An error returned by a plugin. The host prefixes it with the plugin's name and file.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub message: RString,
}

impl PluginError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: RString::from(message.into()),
        }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message.as_str())
    }
}

impl std::error::Error for PluginError {}

/// A live teacher made by a teacher plugin.
#[sabi_trait]
pub trait TeacherModel {
    /// Logits for a batch, `[B, num_classes]` row-major.
    #[sabi(last_prefix_field)]
    fn logits(&mut self, batch: BatchView<'_>) -> RResult<RVec<f32>, PluginError>;
}

/// An owned teacher object across the boundary.
pub type TeacherBox = TeacherModel_TO<'static, RBox<()>>;
