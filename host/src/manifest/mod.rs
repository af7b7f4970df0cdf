//! The experiment manifest: TOML read into [`raw`] serde types (unknown fields rejected with
//! file:line:column), then each section checked into the spec of the stage that owns it
//! ([`crate::data::spec`], [`crate::teacher::spec`], [`crate::train::spec`], the α and τ of
//! [`crate::train::kd`], [`crate::select::Keep`]) and composed into [`Manifest`], whose paths
//! are resolved against the manifest's folder. Owns the schema and its defaults; does not open
//! data files or plugins, and no stage imports it.

mod checked;
pub mod defaults;
mod error;
pub mod overrides;
mod raw;

use std::path::Path;

pub use checked::*;
use error::line_column;
pub use error::ManifestError;

/// Reads, parses and checks a manifest.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    load_with(path, &[])
}

/// [`load`] with `--set` overrides applied to the text first ([`overrides`]).
pub fn load_with(path: &Path, sets: &[overrides::Override]) -> Result<Manifest, ManifestError> {
    let source = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let source = overrides::apply(&source, sets).map_err(|message| ManifestError::File {
        path: path.to_path_buf(),
        message,
    })?;
    parse(path, &source)
}

/// Parses and checks manifest text; `path` names it in errors and anchors relative paths.
pub fn parse(path: &Path, source: &str) -> Result<Manifest, ManifestError> {
    let raw: raw::RawManifest = toml::from_str(source).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| line_column(source, s.start))
            .unwrap_or((1, 1));
        // The key written before the value the error points at, to name the field.
        let key = e.span().and_then(|s| {
            let start = source[..s.start.min(source.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            let (k, _) = source[start..s.start.min(source.len())].rsplit_once('=')?;
            let k = k.trim().rsplit(['{', ',']).next()?.trim();
            (!k.is_empty()).then_some(k)
        });
        ManifestError::At {
            path: path.to_path_buf(),
            line,
            column,
            message: crate::suggest::unknown_field_hint(
                &e.message().trim().replace('\n', "; "),
                key,
            ),
        }
    })?;
    checked::check(path, source, raw)
}
