//! Plain `#[repr(C)]` values that cross the plugin boundary.
//!
//! Every slice is borrowed from the host for the duration of one call; a plugin that wants to
//! keep data copies it. Shapes are row-major and written `[N, ...]` in the docs.
//!
//! # Growth
//! The enums that will gain variants — the kinds of plugin ([`PluginKind`]), of parameter value
//! ([`ParamValue`]), of answer ([`Selection`]) and of tensor element ([`DType`]) — cross the
//! boundary as abi_stable `NonExhaustive` wrappers (`*_NE`) with storage sized for later
//! variants, so a variant added in a later `0.2.x` does not change the layout. Reading one is
//! [`NonExhaustive::as_enum`], which fails on a variant the reader does not know; the glue
//! ([`ScoreRequest::param`], [`Tensor::to_f32`], ...) does that for plugin authors.

use abi_stable::{
    nonexhaustive_enum::NonExhaustive,
    sabi_trait,
    std_types::{RBox, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};
use half::f16;

/// What a plugin does.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 2], traits(Debug, Clone, PartialEq))))]
#[non_exhaustive]
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

/// The type of a parameter (derived from its default; not itself sent across).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Int,
    Float,
    Bool,
    Text,
    IntList,
    FloatList,
    TextList,
}

impl ParamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamKind::Int => "int",
            ParamKind::Float => "float",
            ParamKind::Bool => "bool",
            ParamKind::Text => "text",
            ParamKind::IntList => "list of int",
            ParamKind::FloatList => "list of float",
            ParamKind::TextList => "list of text",
        }
    }
}

/// A parameter value.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 8], traits(Debug, Clone, PartialEq))))]
#[non_exhaustive]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(RString),
    IntList(RVec<i64>),
    FloatList(RVec<f64>),
    TextList(RVec<RString>),
}

impl ParamValue {
    pub fn kind(&self) -> ParamKind {
        match self {
            ParamValue::Int(_) => ParamKind::Int,
            ParamValue::Float(_) => ParamKind::Float,
            ParamValue::Bool(_) => ParamKind::Bool,
            ParamValue::Text(_) => ParamKind::Text,
            ParamValue::IntList(_) => ParamKind::IntList,
            ParamValue::FloatList(_) => ParamKind::FloatList,
            ParamValue::TextList(_) => ParamKind::TextList,
        }
    }

    /// Wraps the value for the boundary.
    pub fn into_ne(self) -> ParamValue_NE {
        NonExhaustive::new(self)
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn list<T: std::fmt::Display>(
            f: &mut std::fmt::Formatter<'_>,
            items: impl Iterator<Item = T>,
        ) -> std::fmt::Result {
            let items: Vec<String> = items.map(|i| i.to_string()).collect();
            write!(f, "[{}]", items.join(", "))
        }
        match self {
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Float(v) => write!(f, "{v:?}"),
            ParamValue::Bool(v) => write!(f, "{v}"),
            ParamValue::Text(v) => write!(f, "{v:?}"),
            ParamValue::IntList(v) => list(f, v.iter()),
            ParamValue::FloatList(v) => list(f, v.iter().map(|x| format!("{x:?}"))),
            ParamValue::TextList(v) => list(f, v.iter().map(|x| format!("{:?}", x.as_str()))),
        }
    }
}

/// The declaration of one parameter: the host rejects names not declared and values of
/// another kind, and fills in the default when the manifest is silent.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct ParamSpec {
    pub name: RString,
    /// The default, which also fixes the parameter's kind.
    pub default: ParamValue_NE,
    pub description: RString,
}

impl ParamSpec {
    /// The default, or `None` when it is a kind this side does not know.
    pub fn default_value(&self) -> Option<&ParamValue> {
        self.default.as_enum().ok()
    }
}

/// A parameter as handed to the plugin: always every declared parameter, checked and with
/// defaults filled in.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct Param {
    pub name: RString,
    pub value: ParamValue_NE,
}

/// An input a pruning method asks for, by name (the table of names is in
/// `docs/writing-a-plugin.md`; the constants `INPUT_*` name the common ones).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: RString,
    /// A required input the host cannot supply (no teacher for `soft_labels`, say) stops the
    /// run before any work; an optional one is then simply absent from the request.
    pub required: bool,
}

/// How a plugin describes itself.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PluginInfo {
    /// Unique among all loaded plugins; what a manifest names.
    pub name: RString,
    pub kind: PluginKind_NE,
    /// The plugin's own version (usually its crate version).
    pub version: RString,
    /// One line.
    pub description: RString,
    pub params: RVec<ParamSpec>,
    /// Inputs the plugin asks for, by name. The host refuses names it does not know.
    pub inputs: RVec<InputSpec>,
    /// For pruning methods that return scores: whether a high score means a hard example.
    pub high_is_hard: bool,
    /// For pruning methods that return scores: the scores do not depend on the budget, so
    /// the host scores once per (method, parameters, seed) and selects every keep fraction
    /// from the same scores.
    pub budget_independent: bool,
    /// The selection policy used when the manifest names none (`""`: the host's default,
    /// `hardest`). Written as in a manifest's `policy` field.
    pub default_policy: RString,
    /// What a high score means, in words (for `kdprune plugins --verbose`); may be empty.
    pub score_meaning: RString,
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
            kind: NonExhaustive::new(kind),
            version: version.into(),
            description: description.into(),
            params: RVec::new(),
            inputs: RVec::new(),
            high_is_hard: true,
            budget_independent: false,
            default_policy: RString::new(),
            score_meaning: RString::new(),
        }
    }

    /// The kind, or `None` when it is one this side does not know.
    pub fn plugin_kind(&self) -> Option<PluginKind> {
        self.kind.as_enum().ok().copied()
    }

    /// Declares a parameter with its default.
    pub fn param(mut self, name: &str, default: ParamValue, description: &str) -> Self {
        self.params.push(ParamSpec {
            name: name.into(),
            default: default.into_ne(),
            description: description.into(),
        });
        self
    }

    /// Asks for an input the method cannot work without.
    pub fn input(mut self, name: &str) -> Self {
        self.inputs.push(InputSpec {
            name: name.into(),
            required: true,
        });
        self
    }

    /// Asks for an input the method uses when the host has it.
    pub fn optional_input(mut self, name: &str) -> Self {
        self.inputs.push(InputSpec {
            name: name.into(),
            required: false,
        });
        self
    }

    /// States whether a high score means hard (ignored for methods that return subsets).
    pub fn high_is_hard(mut self, high_is_hard: bool) -> Self {
        self.high_is_hard = high_is_hard;
        self
    }

    /// States that the scores are the same for every budget (see
    /// [`PluginInfo::budget_independent`]).
    pub fn budget_independent(mut self) -> Self {
        self.budget_independent = true;
        self
    }

    /// The policy used when the manifest names none.
    pub fn default_policy(mut self, policy: &str) -> Self {
        self.default_policy = policy.into();
        self
    }

    /// What a high score means, in words.
    pub fn score_meaning(mut self, meaning: &str) -> Self {
        self.score_meaning = meaning.into();
        self
    }
}

/// Name of the input carrying the teacher's probabilities at temperature 1, f32 `[N, C]`.
pub const INPUT_SOFT_LABELS: &str = "soft_labels";

/// A bool parameter a pruning method may declare when whether its scores depend on the budget
/// depends on its parameters (the `external` method's): set to true in the manifest, the host
/// scores once per seed and selects every keep from those scores, as for
/// [`PluginInfo::budget_independent`].
pub const BUDGET_INDEPENDENT_PARAM: &str = "budget_independent";

/// Every input name of this plugin-api version (the table in `docs/writing-a-plugin.md`); a
/// host of this version supplies each (a test holds the host to this list).
pub const INPUT_NAMES: &[&str] = &[
    INPUT_SOFT_LABELS,
    "dynamics/batch/loss",
    "dynamics/batch/true_prob",
    "dynamics/batch/correct",
    "dynamics/batch/margin",
    "dynamics/batch/el2n",
    "dynamics/batch/logits",
    "dynamics/pass/loss",
    "dynamics/pass/true_prob",
    "dynamics/pass/correct",
    "dynamics/pass/margin",
    "dynamics/pass/el2n",
    "dynamics/pass/grad_norm",
    "dynamics/pass/logits",
    "dynamics/pass/epochs",
    "embeddings/proxy",
    "embeddings/grad",
    "embeddings/teacher",
];

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

/// The element type of a [`Tensor`].
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 1], traits(Debug, Clone, PartialEq))))]
#[non_exhaustive]
pub enum DType {
    F32,
    /// IEEE 754 half precision (what dynamics store where 3 significant digits suffice).
    F16,
    U8,
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 => 2,
            DType::U8 => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::U8 => "u8",
            DType::U32 => "u32",
        }
    }
}

/// A named input tensor, borrowed: `shape.iter().product()` elements of `dtype`, row-major,
/// little-endian, aligned for `dtype` (the host guarantees it).
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct Tensor<'a> {
    pub name: RStr<'a>,
    pub dtype: DType_NE,
    pub shape: RSlice<'a, u64>,
    pub bytes: RSlice<'a, u8>,
}

impl<'a> Tensor<'a> {
    /// The element type, or an error naming the tensor when it is one this plugin does not know.
    pub fn dtype(&self) -> Result<DType, PluginError> {
        self.dtype.as_enum().copied().map_err(|_| {
            PluginError::new(format!(
                "input {} has an element type this plugin does not know; rebuild it against a newer kdprune-plugin-api",
                self.name
            ))
        })
    }

    /// The shape, e.g. `[R, E, N]`.
    pub fn shape(&self) -> &'a [u64] {
        self.shape.as_slice()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product::<u64>() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn typed<T: bytemuck::Pod>(&self, want: DType) -> Result<&'a [T], PluginError> {
        let have = self.dtype()?;
        if have != want {
            return Err(PluginError::new(format!(
                "input {} is {}, not {}",
                self.name,
                have.as_str(),
                want.as_str()
            )));
        }
        let values: &'a [T] = bytemuck::try_cast_slice(self.bytes.as_slice())
            .map_err(|e| PluginError::new(format!("input {}: {e}", self.name)))?;
        if values.len() != self.len() {
            return Err(PluginError::new(format!(
                "input {} holds {} values for shape {:?}",
                self.name,
                values.len(),
                self.shape()
            )));
        }
        Ok(values)
    }

    /// The values of an f32 tensor.
    pub fn f32(&self) -> Result<&'a [f32], PluginError> {
        self.typed(DType::F32)
    }

    /// The values of an f16 tensor.
    pub fn f16(&self) -> Result<&'a [f16], PluginError> {
        self.typed(DType::F16)
    }

    /// The values of a u8 tensor.
    pub fn u8(&self) -> Result<&'a [u8], PluginError> {
        self.typed(DType::U8)
    }

    /// The values of a u32 tensor.
    pub fn u32(&self) -> Result<&'a [u32], PluginError> {
        self.typed(DType::U32)
    }

    /// The values as f32, whatever the element type (f16 widened exactly, integers converted).
    pub fn to_f32(&self) -> Result<Vec<f32>, PluginError> {
        Ok(match self.dtype()? {
            DType::F32 => self.f32()?.to_vec(),
            DType::F16 => self.f16()?.iter().map(|v| v.to_f32()).collect(),
            DType::U8 => self.u8()?.iter().map(|&v| v as f32).collect(),
            DType::U32 => self.u32()?.iter().map(|&v| v as f32).collect(),
        })
    }

    /// Checks the number of dimensions and returns the shape as `usize`s.
    pub fn dims<const D: usize>(&self) -> Result<[usize; D], PluginError> {
        let shape = self.shape();
        if shape.len() != D {
            return Err(PluginError::new(format!(
                "input {} has shape {shape:?}, expected {D} dimensions",
                self.name
            )));
        }
        let mut dims = [0usize; D];
        for (d, &s) in dims.iter_mut().zip(shape) {
            *d = s as usize;
        }
        Ok(dims)
    }
}

/// Everything a pruning method gets for one call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct ScoreRequest<'a> {
    /// The training set after the student's normalisation.
    pub train: DataView<'a>,
    /// Seed of this call; a plugin must be deterministic given it.
    pub seed: u64,
    /// Number of examples to keep, `K` in `1..=N`. For a budget-independent method scored
    /// once for several keep fractions, the largest of their budgets.
    pub budget: u64,
    /// Every declared parameter, checked, defaults filled.
    pub params: RSlice<'a, Param>,
    /// The inputs the plugin asked for that the host has, by name.
    pub inputs: RSlice<'a, Tensor<'a>>,
}

impl<'a> ScoreRequest<'a> {
    /// The value of a declared parameter.
    pub fn param(&self, name: &str) -> Option<&ParamValue> {
        self.params
            .iter()
            .find(|p| p.name.as_str() == name)
            .and_then(|p| p.value.as_enum().ok())
    }

    fn param_error(&self, name: &str, kind: &str) -> PluginError {
        PluginError::new(format!("parameter {name:?} is missing or not {kind}"))
    }

    /// An int parameter (declared with an int default).
    pub fn int(&self, name: &str) -> Result<i64, PluginError> {
        match self.param(name) {
            Some(ParamValue::Int(v)) => Ok(*v),
            _ => Err(self.param_error(name, "an int")),
        }
    }

    /// A float parameter.
    pub fn float(&self, name: &str) -> Result<f64, PluginError> {
        match self.param(name) {
            Some(ParamValue::Float(v)) => Ok(*v),
            _ => Err(self.param_error(name, "a float")),
        }
    }

    /// A bool parameter.
    pub fn bool(&self, name: &str) -> Result<bool, PluginError> {
        match self.param(name) {
            Some(ParamValue::Bool(v)) => Ok(*v),
            _ => Err(self.param_error(name, "a bool")),
        }
    }

    /// A text parameter.
    pub fn text(&self, name: &str) -> Result<&str, PluginError> {
        match self.param(name) {
            Some(ParamValue::Text(v)) => Ok(v.as_str()),
            _ => Err(self.param_error(name, "text")),
        }
    }

    /// An input by name, when the host supplied it.
    pub fn input(&self, name: &str) -> Option<&Tensor<'a>> {
        self.inputs.iter().find(|t| t.name.as_str() == name)
    }

    /// An input the plugin declared as required; an error naming it when absent.
    pub fn require(&self, name: &str) -> Result<&Tensor<'a>, PluginError> {
        self.input(name).ok_or_else(|| {
            PluginError::new(format!(
                "input {name:?} is missing; declare it with PluginInfo::input"
            ))
        })
    }
}

/// What a pruning method returns.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 6], traits(Debug, Clone, PartialEq))))]
#[non_exhaustive]
pub enum Selection {
    /// One score per training example, `[N]`; the host's selection policy picks `K` of them.
    Scores { values: RVec<f32> },
    /// The kept examples themselves: `K` distinct indices `< N`.
    Subset { indices: RVec<u32> },
}

impl Selection {
    /// Scores `[N]`.
    pub fn scores(values: Vec<f32>) -> Self {
        Selection::Scores {
            values: RVec::from(values),
        }
    }

    /// A subset of `K` distinct indices.
    pub fn subset(indices: Vec<u32>) -> Self {
        Selection::Subset {
            indices: RVec::from(indices),
        }
    }
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
            .and_then(|p| p.value.as_enum().ok())
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

impl BatchView<'_> {
    /// The batch's row count `B`, checked against its values: `B · dim` of them for examples
    /// of `dim` values each.
    pub fn rows(&self, dim: usize) -> Result<usize, PluginError> {
        let b = self.shape.first().copied().unwrap_or(0) as usize;
        if self.features.len() == b * dim {
            Ok(b)
        } else {
            Err(PluginError::new(format!(
                "batch of {} values for {b} examples of {dim}",
                self.features.len()
            )))
        }
    }
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
