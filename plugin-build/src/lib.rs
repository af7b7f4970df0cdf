//! The build-script side of a plugin's identity. A result of kdprune is keyed by what it
//! depends on, the plugin among them; the bytes of a plugin's library are no such identity,
//! since they change with the compiler, the checkout's path (debug information) and the
//! features the other members of a workspace unify into shared dependencies, while the scores
//! do not. What the scores do depend on is the source: this crate hashes it at build time,
//! and [`kdprune_plugin_api::export_plugins!`] exports the hash in the library, where the host
//! reads it.
//!
//! A plugin's `build.rs`:
//!
//! ```ignore
//! fn main() {
//!     kdprune_plugin_build::declare_source();
//! }
//! ```
//!
//! with `kdprune-plugin-build` under `[build-dependencies]`. A plugin without it is keyed by
//! its library file's SHA-256, as before.
//!
//! What the hash covers: the crate's `Cargo.toml`, `build.rs` and every file under `src/`
//! (line endings as LF, so a checkout with CRLF hashes the same; symbolic links, dotfiles and
//! editors' backup and swap files left out), and kdprune-plugin-api's own source. What it does
//! not: other dependencies (a path dependency's source, a new version in `Cargo.lock`) and
//! files outside those; when one of them changes the scores, change the plugin's version.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The environment variable the plugin crate is compiled with (read by `export_plugins!`).
pub const SOURCE_ENV: &str = "KDPRUNE_PLUGIN_SOURCE";

/// For a plugin's build script: sets [`SOURCE_ENV`] to the SHA-256 (hex) of the crate's
/// `Cargo.toml` and every file under `src/`, and of kdprune-plugin-api's own source (which
/// its build script passes on as `links` metadata), so that a change to either gives the
/// plugin's results new keys and nothing else does.
pub fn declare_source() {
    let mut hash = crate_hash();
    match std::env::var("DEP_KDPRUNE_PLUGIN_API_SOURCE") {
        Ok(api) => {
            hash.update(b"kdprune-plugin-api\0");
            hash.update(api.as_bytes());
        }
        Err(_) => println!(
            "cargo:warning=kdprune-plugin-api passed no source hash (a version before this \
             crate, or not a direct dependency): this plugin's key covers its own source only"
        ),
    }
    println!("cargo:rustc-env={SOURCE_ENV}={}", hex(&hash.finalize()));
}

/// For kdprune-plugin-api's build script: its source hash, as `links` metadata
/// (`DEP_KDPRUNE_PLUGIN_API_SOURCE` in the build scripts of the crates that depend on it).
pub fn declare_api_source() {
    println!("cargo:source={}", hex(&crate_hash().finalize()));
}

/// `Cargo.toml` and the files under `src/` of the crate being built, each as its path
/// relative to the crate, its length and its bytes, in path order.
fn crate_hash() -> Sha256 {
    let root = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo sets CARGO_MANIFEST_DIR for build scripts"),
    );
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src");
    source_hash(&root)
}

/// The hash of the crate at `root` (see [`crate_hash`]).
fn source_hash(root: &Path) -> Sha256 {
    let mut files = vec![root.join("Cargo.toml")];
    if root.join("build.rs").is_file() {
        files.push(root.join("build.rs"));
    }
    collect(&root.join("src"), &mut files);
    files.sort();
    let mut hash = Sha256::new();
    for file in &files {
        let relative = file.strip_prefix(root).expect("under the crate");
        let name = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let bytes = std::fs::read(file).unwrap_or_else(|e| {
            panic!("kdprune-plugin-build: cannot read {}: {e}", file.display())
        });
        let bytes = without_carriage_returns(bytes);
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    hash
}

/// Every file under `dir`, recursively, but symbolic links (an editor's lock file is a
/// dangling one) and what an editor or a merge leaves beside the source.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() || is_scratch(&name) {
            continue;
        }
        if kind.is_dir() {
            collect(&entry.path(), files);
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
}

/// Dotfiles, and editors' and merges' leftovers (`~`, `.swp`, `.swo`, `.bk`, `.orig`, `.rej`).
fn is_scratch(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || [".swp", ".swo", ".bk", ".orig", ".rej"]
            .iter()
            .any(|end| name.ends_with(end))
}

/// `bytes` with the CR of every CRLF pair dropped.
fn without_carriage_returns(bytes: Vec<u8>) -> Vec<u8> {
    if !bytes.contains(&b'\r') {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crate at `root`: `Cargo.toml` and `src/lib.rs`, `src/score/mod.rs` with `text`.
    fn write_crate(root: &Path, text: &str) {
        std::fs::create_dir_all(root.join("src/score")).unwrap();
        std::fs::write(root.join("Cargo.toml"), "[package]\nname = \"p\"\n").unwrap();
        std::fs::write(root.join("src/lib.rs"), "mod score;\n").unwrap();
        std::fs::write(root.join("src/score/mod.rs"), text).unwrap();
    }

    fn hex_of(root: &Path) -> String {
        hex(&source_hash(root).finalize())
    }

    #[test]
    fn the_hash_follows_the_source_not_where_it_lies() {
        let base =
            std::env::temp_dir().join(format!("kdprune-plugin-build-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("elsewhere/b"));
        write_crate(&a, "pub fn f() {}\n");
        write_crate(&b, "pub fn f() {}\r\n");
        // Another path, CRLF, an editor's swap file and a dangling lock link: the same source.
        std::fs::write(b.join("src/.mod.rs.swp"), "x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/nonexistent", b.join("src/.#lib.rs")).unwrap();
        assert_eq!(hex_of(&a), hex_of(&b));
        // A nested file edited, or a build script added: another source.
        let before = hex_of(&a);
        std::fs::write(a.join("src/score/mod.rs"), "pub fn f() { }\n").unwrap();
        assert_ne!(hex_of(&a), before);
        let before = hex_of(&a);
        std::fs::write(a.join("build.rs"), "fn main() {}\n").unwrap();
        assert_ne!(hex_of(&a), before);
        std::fs::remove_dir_all(&base).ok();
    }

    #[test]
    fn line_endings_and_scratch_files_do_not_count() {
        assert_eq!(without_carriage_returns(b"a\r\nb\r\n".to_vec()), b"a\nb\n");
        assert_eq!(without_carriage_returns(b"a\rb".to_vec()), b"a\rb");
        for scratch in [
            ".#lib.rs",
            "lib.rs~",
            ".lib.rs.swp",
            "lib.rs.orig",
            ".DS_Store",
        ] {
            assert!(is_scratch(scratch), "{scratch}");
        }
        assert!(!is_scratch("lib.rs") && !is_scratch("score.rs"));
    }
}
