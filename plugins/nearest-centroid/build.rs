// The source hash the host keys this plugin's results by (kdprune-plugin-build).
fn main() {
    kdprune_plugin_build::declare_source();
}
