// This crate's source hash, for the build scripts of plugins (kdprune-plugin-build).
fn main() {
    kdprune_plugin_build::declare_api_source();
}
