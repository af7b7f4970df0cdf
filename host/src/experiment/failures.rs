//! `failures.jsonl`: one line per cell skipped because its plugin failed, when the manifest
//! says `on_plugin_error = "continue"` — what failed and why, so a user can mend and rerun
//! (the cell has no result, so a rerun tries it again).

use std::io::Write;
use std::path::Path;

use crate::Error;

/// Appends one failure to `<output>/failures.jsonl`.
pub fn record(output: &Path, method: &str, keep: f32, seed: u64, error: &str) -> Result<(), Error> {
    let path = output.join("failures.jsonl");
    let line = serde_json::json!({ "method": method, "keep": keep, "seed": seed, "error": error });
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"))
        .map_err(|e| Error::Io {
            path,
            message: format!("cannot record a failed cell: {e}"),
        })
}
