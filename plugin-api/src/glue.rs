//! The safe side of the boundary for plugin authors.
//!
//! A plugin implements [`Scorer`] (a pruning method) or [`Teacher`] in plain Rust and lists its
//! types in [`export_plugins!`](crate::export_plugins). The glue here turns them into the
//! `extern "C"` functions of [`PluginEntry`](crate::PluginEntry), and catches every panic so
//! that it reaches the host as a [`PluginError`] instead of aborting the process.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RVec},
};

use abi_stable::nonexhaustive_enum::NonExhaustive;

use abi_stable::std_types::RSlice;

use crate::types::{
    BatchView, InputSpec, Param, ParamValue, PluginError, PluginInfo, ScoreRequest, Selection,
    Selection_NE, TeacherBox, TeacherInit, TeacherModel, TeacherModel_TO,
};
use crate::{PluginEntry, PluginEntry_Ref};

/// A pruning method. Stateless: everything arrives in the request.
pub trait Scorer {
    /// Name, version, description, parameters and inputs.
    fn info() -> PluginInfo;
    /// Scores every example or picks the kept ones (see [`Selection`]).
    fn score(request: &ScoreRequest<'_>) -> Result<Selection, PluginError>;
    /// The inputs to supply for these checked parameters, when they depend on them (a
    /// `source` parameter, say); `None` (the default): those of [`Scorer::info`]. Each name
    /// must be one `info` lists.
    fn inputs_for(_params: &Params<'_>) -> Option<Result<Vec<InputSpec>, PluginError>> {
        None
    }
}

/// A method's checked parameters, by name (what [`Scorer::inputs_for`] reads).
pub struct Params<'a>(pub &'a [Param]);

impl Params<'_> {
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0
            .iter()
            .find(|p| p.name.as_str() == name)
            .and_then(|p| p.value.as_enum().ok())
    }

    /// A text parameter.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(ParamValue::Text(t)) => Some(t.as_str()),
            _ => None,
        }
    }
}

/// A required input of that name (for [`Scorer::inputs_for`]).
pub fn required(name: &str) -> InputSpec {
    InputSpec {
        name: name.into(),
        required: true,
    }
}

/// An optional input of that name (for [`Scorer::inputs_for`]).
pub fn optional(name: &str) -> InputSpec {
    InputSpec {
        name: name.into(),
        required: false,
    }
}

/// A teacher: made once from the training set and its parameters, then asked for logits.
pub trait Teacher: Sized + Send + 'static {
    fn info() -> PluginInfo;
    fn new(init: &TeacherInit<'_>) -> Result<Self, PluginError>;
    /// Logits for a batch, `[B, num_classes]` row-major.
    fn logits(&mut self, batch: BatchView<'_>) -> Result<Vec<f32>, PluginError>;
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

/// Runs `f`, turning a panic into an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(err)) => RResult::RErr(err),
        Err(payload) => RResult::RErr(PluginError::new(format!(
            "the plugin panicked in {what}: {}",
            panic_message(payload)
        ))),
    }
}

extern "C" fn info_glue_scorer<S: Scorer>() -> PluginInfo {
    // A panic while describing itself cannot be reported as a value of this type; describe
    // the failure instead, which the host shows and refuses to run.
    catch_unwind(S::info).unwrap_or_else(|payload| {
        PluginInfo::pruning_method(
            "<panicked>",
            "0",
            &format!("info() panicked: {}", panic_message(payload)),
        )
    })
}

extern "C" fn score_glue<S: Scorer>(
    request: &ScoreRequest<'_>,
) -> RResult<Selection_NE, PluginError> {
    guarded("score", || S::score(request).map(NonExhaustive::new))
}

extern "C" fn inputs_for_glue<S: Scorer>(
    params: RSlice<'_, Param>,
) -> RResult<RVec<InputSpec>, PluginError> {
    guarded("inputs_for", || {
        match S::inputs_for(&Params(params.as_slice())) {
            None => Ok(S::info().inputs.into_iter().collect()),
            Some(r) => r.map(RVec::from),
        }
    })
}

extern "C" fn info_glue_teacher<T: Teacher>() -> PluginInfo {
    catch_unwind(T::info).unwrap_or_else(|payload| {
        PluginInfo::teacher(
            "<panicked>",
            "0",
            &format!("info() panicked: {}", panic_message(payload)),
        )
    })
}

/// Wraps a [`Teacher`] so that its panics become errors.
struct GuardedTeacher<T>(T);

impl<T: Teacher> TeacherModel for GuardedTeacher<T> {
    fn logits(&mut self, batch: BatchView<'_>) -> RResult<RVec<f32>, PluginError> {
        guarded("logits", || self.0.logits(batch).map(RVec::from))
    }
}

extern "C" fn new_teacher_glue<T: Teacher>(
    init: &TeacherInit<'_>,
) -> RResult<TeacherBox, PluginError> {
    guarded("new", || {
        T::new(init).map(|t| TeacherModel_TO::from_value(GuardedTeacher(t), TD_Opaque))
    })
}

/// The entry of a pruning method; used by [`export_plugins!`](crate::export_plugins).
pub fn scorer_entry<S: Scorer>() -> PluginEntry_Ref {
    use abi_stable::prefix_type::PrefixTypeTrait;
    PluginEntry {
        info: info_glue_scorer::<S>,
        score: Some(score_glue::<S>),
        new_teacher: None,
        inputs_for: Some(inputs_for_glue::<S>),
    }
    .leak_into_prefix()
}

/// The entry of a teacher; used by [`export_plugins!`](crate::export_plugins).
pub fn teacher_entry<T: Teacher>() -> PluginEntry_Ref {
    use abi_stable::prefix_type::PrefixTypeTrait;
    PluginEntry {
        info: info_glue_teacher::<T>,
        score: None,
        new_teacher: Some(new_teacher_glue::<T>),
        inputs_for: None,
    }
    .leak_into_prefix()
}

/// The source hash a plugin library exports under [`SOURCE_SYMBOL`]: the 64 hex digits its
/// build script declared (kdprune-plugin-build's `declare_source`), or zeros where it declared
/// none. The host keys the plugin's results by it; see that crate.
#[repr(C)]
pub struct SourceId(pub [u8; 64]);

/// The name of the exported [`SourceId`], as the host looks it up.
pub const SOURCE_SYMBOL: &[u8] = b"kdprune_plugin_source\0";

impl SourceId {
    /// From `option_env!("KDPRUNE_PLUGIN_SOURCE")`: zeros unless it is 64 characters.
    pub const fn new(hex: Option<&str>) -> Self {
        let mut out = [0u8; 64];
        if let Some(hex) = hex {
            let bytes = hex.as_bytes();
            if bytes.len() == 64 {
                let mut i = 0;
                while i < 64 {
                    out[i] = bytes[i];
                    i += 1;
                }
            }
        }
        Self(out)
    }

    /// The hash, when one was declared (64 hex digits).
    pub fn hex(&self) -> Option<&str> {
        let text = std::str::from_utf8(&self.0).ok()?;
        text.bytes().all(|b| b.is_ascii_hexdigit()).then_some(text)
    }
}

/// Builds the root module from a list of entries; used by [`export_plugins!`](crate::export_plugins).
pub fn library(plugins: extern "C" fn() -> RVec<PluginEntry_Ref>) -> crate::PluginLibrary_Ref {
    use abi_stable::prefix_type::PrefixTypeTrait;
    crate::PluginLibrary { plugins }.leak_into_prefix()
}

/// Exports the plugins of a library. Call it once, at the crate root of a `cdylib`:
///
/// ```ignore
/// kdprune_plugin_api::export_plugins! {
///     scorers: [MyScorer],
///     teachers: [],
/// }
/// ```
#[macro_export]
macro_rules! export_plugins {
    (scorers: [$($scorer:ty),* $(,)?], teachers: [$($teacher:ty),* $(,)?] $(,)?) => {
        extern "C" fn __kdprune_plugin_entries()
            -> $crate::abi_stable::std_types::RVec<$crate::PluginEntry_Ref>
        {
            let mut entries = $crate::abi_stable::std_types::RVec::new();
            $( entries.push($crate::glue::scorer_entry::<$scorer>()); )*
            $( entries.push($crate::glue::teacher_entry::<$teacher>()); )*
            entries
        }

        /// The plugin's source hash (kdprune-plugin-build), read by the host through
        /// `kdprune_plugin_api::glue::SOURCE_SYMBOL`.
        #[export_name = "kdprune_plugin_source"]
        pub static __KDPRUNE_PLUGIN_SOURCE: $crate::glue::SourceId =
            $crate::glue::SourceId::new(option_env!("KDPRUNE_PLUGIN_SOURCE"));

        fn __kdprune_root_module() -> $crate::PluginLibrary_Ref {
            $crate::glue::library(__kdprune_plugin_entries)
        }

        /// The library header abi_stable's loader looks for (what `#[export_root_module]`
        /// would generate, spelled out so plugins need no direct abi_stable dependency).
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static __KDPRUNE_LIB_HEADER: $crate::abi_stable::library::LibHeader = {
            extern "C" fn erased_module() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(__kdprune_root_module)
            }
            // SAFETY: `erased_module` returns the `PrefixRef` of a `PluginLibrary_Ref`, erased
            // by abi_stable's own loader wrapper, which is what `from_constructor` requires.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::PluginLibrary_Ref>(
                    erased_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}
