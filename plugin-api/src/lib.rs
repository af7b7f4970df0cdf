//! The stable ABI between the kdprune host and its plugins.
//!
//! This crate is the only one a plugin depends on. It owns:
//! - the `#[repr(C)]` values that cross the boundary ([`types`]): views of the training set,
//!   parameters, the plugin's self-description, the answer of a pruning method, errors;
//! - the root module every plugin library exports ([`PluginLibrary`]) and the per-plugin entry
//!   ([`PluginEntry`]), both abi_stable *prefix types* so that fields added later stay optional;
//! - the safe glue ([`glue`]): a plugin author implements the plain Rust traits [`Scorer`] or
//!   [`Teacher`] and calls [`export_plugins!`]; the glue catches panics and turns them into
//!   errors so that no unwind ever crosses the boundary.
//!
//! It does not own loading libraries, checking parameters against their specs, or anything
//! about training: that is the host's.
//!
//! # Growth
//! A host built against plugin-api `0.2.x` loads plugins built against any `0.2.y`; a plugin
//! built against `0.1` is refused with one line that says to rebuild it. Inputs for pruning
//! methods (soft labels, training dynamics, embeddings, ...) arrive as typed
//! [`types::Tensor`]s in [`types::ScoreRequest::inputs`], asked for by name in
//! [`types::PluginInfo::inputs`], so a new input kind does not change the layout. The enums
//! that grow are abi_stable `NonExhaustive` (see [`types`]). New functions go after the last
//! prefix field of [`PluginEntry`] or [`PluginLibrary`]; an older plugin then reports them as
//! missing (`None`).
// abi_stable's derives expand to impls that trip this lint on recent compilers.
#![allow(non_local_definitions)]
// abi_stable names the prefix references `<Type>_Ref`; we keep its convention.
#![allow(non_camel_case_types)]

pub mod glue;
#[cfg(feature = "pairwise")]
pub mod pairwise;
pub mod records;
pub mod types;

pub use abi_stable;
pub use glue::{optional, required, Params, Scorer, Teacher};
pub use half;
pub use types::*;

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RSlice, RVec},
    StableAbi,
};

/// The version of this crate, which a plugin records when it is built. The host rejects a
/// plugin whose version is incompatible (another `0.x` minor) before touching its layout.
pub const PLUGIN_API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Signature of a pruning method: one call per (method, parameters, seed, keep), or per
/// (method, parameters, seed) for a budget-independent one.
pub type ScoreFn = extern "C" fn(&ScoreRequest<'_>) -> RResult<Selection_NE, PluginError>;

/// Signature of a teacher constructor: called once per run; the teacher then labels batches.
pub type NewTeacherFn = extern "C" fn(&TeacherInit<'_>) -> RResult<TeacherBox, PluginError>;

/// One plugin inside a library: its description and the function(s) of its kind.
///
/// A prefix type: fields after `score`/`new_teacher` may be added in later `0.1.x` versions and
/// are then read by the host as `Option`s.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginEntry_Ref, prefix_fields = PluginEntry_Prefix)))]
#[sabi(missing_field(option))]
pub struct PluginEntry {
    /// Describes the plugin: name, kind, version, parameters, inputs it asks for.
    pub info: extern "C" fn() -> PluginInfo,
    /// Set for pruning methods.
    pub score: Option<extern "C" fn(&ScoreRequest<'_>) -> RResult<Selection_NE, PluginError>>,
    /// Set for teachers.
    pub new_teacher: Option<extern "C" fn(&TeacherInit<'_>) -> RResult<TeacherBox, PluginError>>,
    /// For pruning methods whose inputs depend on their parameters (`source = "teacher"`,
    /// a user's list): the inputs to supply for these checked parameters, instead of
    /// [`PluginInfo::inputs`] (which then lists every input the method may ask for).
    #[sabi(last_prefix_field)]
    pub inputs_for:
        Option<extern "C" fn(RSlice<'_, Param>) -> RResult<RVec<InputSpec>, PluginError>>,
}

/// The root module of a plugin library: the list of plugins it exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginLibrary_Ref, prefix_fields = PluginLibrary_Prefix)))]
#[sabi(missing_field(panic))]
pub struct PluginLibrary {
    /// The plugins of this library, in the order the author listed them.
    #[sabi(last_prefix_field)]
    pub plugins: extern "C" fn() -> RVec<PluginEntry_Ref>,
}

impl RootModule for PluginLibrary_Ref {
    declare_root_module_statics! {PluginLibrary_Ref}
    const BASE_NAME: &'static str = "kdprune_plugin";
    const NAME: &'static str = "kdprune_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The symbol every plugin library exports; the host finds the root module through it.
/// Spelled out because [`export_plugins!`] must name it as a literal; a test checks that it
/// matches abi_stable's own constant.
#[doc(hidden)]
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

#[cfg(test)]
mod tests {
    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(
            super::ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
