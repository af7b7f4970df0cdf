//! Finding and starting ONNX Runtime.
//!
//! `ort` is built with `load-dynamic`: the shared library is found at run time, in this
//! order: the manifest's `ort_library`, `ORT_DYLIB_PATH`, then the project's set-up location
//! (`.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*`, searched in the
//! current folder and the folders above the `kdprune` executable).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::error::TeacherError;

static ENVIRONMENT: OnceLock<Result<(PathBuf, ort::environment::Environment), String>> =
    OnceLock::new();

const WHAT_TO_DO: &str = "run scripts/setup.sh (it installs the PyPI wheel onnxruntime==1.32.0 into .venv), or set ORT_DYLIB_PATH or [teacher] ort_library to a libonnxruntime.so";

fn find_in_venv(root: &Path) -> Option<PathBuf> {
    let lib = root.join(".venv").join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
        })
        .collect();
    pythons.sort();
    for py in pythons {
        let capi = py.join("site-packages/onnxruntime/capi");
        let Ok(entries) = std::fs::read_dir(&capi) else {
            continue;
        };
        let mut libs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with("libonnxruntime.so") || n.starts_with("libonnxruntime.dylib")
                })
            })
            .collect();
        // The longest name is the fully versioned file (libonnxruntime.so.1.32.0).
        libs.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        if let Some(found) = libs.into_iter().next() {
            return Some(found);
        }
    }
    None
}

/// Why `p` is not a library file: missing, or a folder.
fn not_a_file(p: &Path) -> &'static str {
    if p.is_dir() {
        "is a folder, not the libonnxruntime.so file in it"
    } else {
        "does not exist"
    }
}

/// The ONNX Runtime library to load, with where it was found.
pub fn locate(manifest_choice: Option<&Path>) -> Result<PathBuf, TeacherError> {
    if let Some(p) = manifest_choice {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(TeacherError::Runtime(format!(
                "[teacher] ort_library {} {}; {WHAT_TO_DO}",
                p.display(),
                not_a_file(p)
            )))
        };
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(TeacherError::Runtime(format!(
                "ORT_DYLIB_PATH={} {}; {WHAT_TO_DO}",
                p.display(),
                not_a_file(&p)
            )))
        };
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots
        .iter()
        .find_map(|r| find_in_venv(r))
        .ok_or_else(|| TeacherError::Runtime(format!("ONNX Runtime not found; {WHAT_TO_DO}")))
}

/// Loads ONNX Runtime once per process and returns its environment.
///
/// A second call with another library path is refused: ONNX Runtime cannot be swapped
/// inside a running process.
pub fn environment(
    manifest_choice: Option<&Path>,
) -> Result<&'static ort::environment::Environment, TeacherError> {
    let wanted = locate(manifest_choice)?;
    let entry = ENVIRONMENT.get_or_init(|| {
        let builder = ort::init_from(&wanted).map_err(|e| {
            format!(
                "cannot load ONNX Runtime from {}: {e}; {WHAT_TO_DO}",
                wanted.display()
            )
        })?;
        let env = builder
            .with_name("kdprune")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", wanted.display()))?;
        tracing::info!(library = %wanted.display(), "ONNX Runtime loaded");
        Ok((wanted.clone(), env))
    });
    match entry {
        Ok((loaded, env)) => {
            if loaded != &wanted {
                tracing::warn!(
                    loaded = %loaded.display(),
                    wanted = %wanted.display(),
                    "ONNX Runtime is already loaded from another file; keeping it"
                );
            }
            Ok(env)
        }
        Err(message) => Err(TeacherError::Runtime(message.clone())),
    }
}
