//! The result store: `results.jsonl`, one JSON object per finished cell, appended and flushed
//! as each cell ends (a crash loses at most the cell in progress, never earlier results), and
//! the kept indices as `.npy` files that NumPy and PyTorch read with `np.load`.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One finished cell (method × keep × α × seed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CellResult {
    pub experiment: String,
    pub method: String,
    pub params: serde_json::Value,
    pub policy: String,
    /// The parameters the policy chose at this keep (CCS's β and bins), when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_params: Option<serde_json::Value>,
    pub keep: f32,
    /// The α trained with (for `"auto"`, the one its search chose).
    pub alpha: f32,
    /// The search's name (`"auto-v4"`; `"auto-v2"`, a rule of keep alone, and `"auto-v3"`, a
    /// search inside the kept subset, in older results)
    /// when α came from `alpha = "auto"`; absent for a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha_rule: Option<String>,
    /// `"auto"`'s candidates with their held-out accuracies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha_search: Option<Vec<crate::train::alpha_search::Trial>>,
    pub temperature: f32,
    /// The teacher distilled from (α > 0).
    pub teacher: Option<String>,
    pub seed: u64,
    /// Examples kept, `K`.
    pub kept: usize,
    /// Examples the student trained on over its epochs, when it prunes during training
    /// (`[student] infobatch`); otherwise `epochs × K`, and absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples_seen: Option<usize>,
    /// Training set size, `N`.
    pub train_size: usize,
    pub test_accuracy: f64,
    /// Test accuracy of the teacher this cell distilled from; `None` at α = 0.
    pub teacher_test_accuracy: Option<f64>,
    /// Seconds for this cell's training and evaluation: written to `timings.jsonl`, not to
    /// `results.jsonl`, so that a result is the same bytes however and wherever it ran (a
    /// sharded run merges into the file an unsharded run writes). Read from older files.
    #[serde(default, skip_serializing)]
    pub seconds: f64,
    /// The `.npy` file of the kept indices, relative to the output folder.
    pub indices: String,
    pub student: serde_json::Value,
    /// Identifies the cell for resuming: the same key is not run twice (`experiment::key`).
    pub key: String,
    /// The key without the seed: results of one configuration, which the report averages.
    /// Empty in results written before it existed (each then stands alone).
    #[serde(default)]
    pub config: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct StoreError {
    pub path: PathBuf,
    pub message: String,
}

/// An open `results.jsonl`.
pub struct ResultStore {
    path: PathBuf,
    done: HashSet<String>,
    /// Every result in the file: those read when it was opened, then those appended.
    results: Vec<CellResult>,
}

/// The whole lines of a results file, parsed.
fn parse_lines(path: &Path, bytes: &[u8]) -> Result<Vec<CellResult>, StoreError> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cell: CellResult = serde_json::from_str(line).map_err(|e| StoreError {
            path: path.to_path_buf(),
            message: format!(
                "line {} is not a result ({e}), and not the torn last line a crash leaves; delete or mend that line (the other results are kept and resumed)",
                i + 1
            ),
        })?;
        out.push(cell);
    }
    Ok(out)
}

/// Reads `<dir>/results.jsonl` without changing it (a run may be appending to it): a last
/// line without its newline is left out, not cut.
pub fn read(dir: &Path) -> Result<Vec<CellResult>, StoreError> {
    let path = dir.join("results.jsonl");
    let bytes = std::fs::read(&path).map_err(|e| StoreError {
        path: path.clone(),
        message: format!("cannot read: {e}; is this a kdprune output folder?"),
    })?;
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    Ok(once_per_key(&path, parse_lines(&path, &bytes[..whole])?))
}

/// The results with a line written twice (the same key: a copy pasted in, two files
/// concatenated) kept once, at its first place, and a warning naming the lines left out; a
/// report must not count one result as two seeds.
fn once_per_key(path: &Path, results: Vec<CellResult>) -> Vec<CellResult> {
    let mut seen = HashSet::new();
    let mut repeated = Vec::new();
    let mut kept = Vec::with_capacity(results.len());
    for (line, result) in results.into_iter().enumerate() {
        if seen.insert(result.key.clone()) {
            kept.push(result);
        } else {
            repeated.push(line + 1);
        }
    }
    if !repeated.is_empty() {
        tracing::warn!(
            file = %path.display(),
            results = ?repeated,
            "results.jsonl repeats earlier results (same key): these results (1-based, blank lines not counted) are each counted once"
        );
    }
    kept
}

impl ResultStore {
    /// Opens (or creates) `<dir>/results.jsonl` and reads the keys already there.
    ///
    /// A torn last line — no newline at its end, the one damage a crash or a full disk can do
    /// to an append — is dropped (the file is cut back to the last whole line) and logged; it
    /// never blocks a resume. Any other line that does not parse is an error: whole results
    /// are never rewritten.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError {
            path: dir.to_path_buf(),
            message: format!("cannot create the output folder: {e}"),
        })?;
        let path = dir.join("results.jsonl");
        let mut existing = Vec::new();
        if path.exists() {
            let bytes = std::fs::read(&path).map_err(|e| StoreError {
                path: path.clone(),
                message: format!("cannot read: {e}"),
            })?;
            let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            if whole < bytes.len() {
                tracing::warn!(
                    file = %path.display(),
                    bytes = bytes.len() - whole,
                    "dropping a torn last line (an append cut short by a crash or a full disk)"
                );
                truncate(&path, whole as u64).map_err(|e| StoreError {
                    path: path.clone(),
                    message: format!("cannot drop the torn last line: {e}"),
                })?;
            }
            existing = once_per_key(&path, parse_lines(&path, &bytes[..whole])?);
        }
        let done = existing.iter().map(|c| c.key.clone()).collect();
        Ok(Self {
            path,
            done,
            results: existing,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fails now, before any work, when the results file could not be appended to.
    /// Leaves no file behind: a results file not there yet is tried as a probe beside it,
    /// removed at once (`check` runs this too).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let exists = self.path.exists();
        let probe = if exists {
            self.path.clone()
        } else {
            self.path.with_extension("jsonl.write-check")
        };
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&probe)
            .map(|_| {
                if !exists {
                    let _ = std::fs::remove_file(&probe);
                }
            })
            .map_err(|e| StoreError {
                path: self.path.clone(),
                message: format!(
                    "cannot be written: {e}; fix its permissions or choose another output"
                ),
            })
    }

    pub fn is_done(&self, key: &str) -> bool {
        self.done.contains(key)
    }

    /// Every result in the file, in file order (earlier runs' and this run's).
    pub fn results(&self) -> &[CellResult] {
        &self.results
    }

    /// Appends one result as a single line and flushes it to disk, and its time to
    /// `timings.jsonl` beside it.
    pub fn append(&mut self, cell: &CellResult) -> Result<(), StoreError> {
        let mut value = serde_json::to_value(cell).map_err(|e| StoreError {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        tidy_floats(&mut value);
        self.append_line(&value.to_string(), cell)?;
        let timing = serde_json::json!({ "key": cell.key, "seconds": cell.seconds });
        let timings = self.path.with_file_name("timings.jsonl");
        if let Err(e) = append_line(&timings, &timing.to_string()) {
            tracing::warn!(file = %timings.display(), "{e}; the cell's time is not kept (its result is)");
        }
        Ok(())
    }

    /// Appends `line`, the serialised form of `cell` (as another store wrote it), unchanged.
    pub fn append_line(&mut self, line: &str, cell: &CellResult) -> Result<(), StoreError> {
        append_line(&self.path, line).map_err(|message| StoreError {
            path: self.path.clone(),
            message,
        })?;
        self.done.insert(cell.key.clone());
        self.results.push(cell.clone());
        Ok(())
    }
}

/// Appends `line` and a newline to `path` in one write, flushed; a write that fails part-way
/// (a full disk) is cut off again, so the file stays a list of whole lines.
fn append_line(path: &Path, line: &str) -> Result<(), String> {
    let mut bytes = line.as_bytes().to_vec();
    bytes.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot append: {e}"))?;
    let before = f
        .metadata()
        .map_err(|e| format!("cannot append: {e}"))?
        .len();
    // One write call per line: a concurrent reader never sees half a line.
    if let Err(e) = f.write_all(&bytes).and_then(|_| f.sync_data()) {
        let _ = f.set_len(before);
        return Err(format!("cannot append: {}", crate::io_message(&e)));
    }
    Ok(())
}

/// The lines of `<dir>/results.jsonl` with their results, as written (whole lines only).
pub fn read_lines(dir: &Path) -> Result<Vec<(String, CellResult)>, StoreError> {
    let path = dir.join("results.jsonl");
    let bytes = std::fs::read(&path).map_err(|e| StoreError {
        path: path.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let text = String::from_utf8_lossy(&bytes[..whole]);
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let parsed = parse_lines(&path, &bytes[..whole])?;
    Ok(lines.into_iter().zip(parsed).collect())
}

/// Writes numbers that came from an f32 (keep 0.1, lr 0.05) as the user wrote them, not as
/// the f64 they widen to (0.10000000149011612): a number that an f32 holds exactly is
/// replaced by the shortest decimal that reads back as that f32.
pub fn tidy_floats(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            let single = f as f32;
            if single as f64 == f && single.is_finite() {
                if let Some(short) = format!("{single}")
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                {
                    *n = short;
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(tidy_floats),
        serde_json::Value::Object(map) => map.values_mut().for_each(tidy_floats),
        _ => {}
    }
}

/// An exclusive lock on an output folder (`<dir>/.kdprune.lock`), held while a run or a
/// scoring writes there: a second `kdprune` on the same folder refuses at once instead of
/// training the same cells twice. The operating system releases it when the process ends,
/// however it ends.
#[derive(Debug)]
pub struct OutputLock {
    _file: std::fs::File,
}

impl OutputLock {
    pub fn acquire(dir: &Path) -> Result<Self, StoreError> {
        let err = |message: String| StoreError {
            path: dir.to_path_buf(),
            message,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("cannot create the output folder: {e}")))?;
        let path = dir.join(".kdprune.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                err(format!(
                    "cannot open {}: {e}; check that the folder is writable",
                    path.display()
                ))
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(err(format!(
                    "another kdprune ({}) is writing to this output folder; wait for it to end, or give this run another output",
                    holder.trim()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(err(format!("cannot lock {}: {e}", path.display())))
            }
        }
        file.set_len(0).ok();
        let _ = write!(file, "pid {}", std::process::id());
        Ok(Self { _file: file })
    }
}

fn truncate(path: &Path, len: u64) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()
}

/// Writes `values` as a 1-D u32 `.npy` file (`np.load` reads it), atomically.
pub fn write_npy_u32(path: &Path, values: &[u32]) -> std::io::Result<()> {
    write_npy(path, &ndarray::ArrayView1::from(values))
}

/// Writes `values` as a 1-D f32 `.npy` file, atomically.
pub fn write_npy_f32(path: &Path, values: &[f32]) -> std::io::Result<()> {
    write_npy(path, &ndarray::ArrayView1::from(values))
}

/// Writes `values` (`[N, C]`, say) as an f32 `.npy` file of its shape, atomically.
pub fn write_npy_f32_2d(path: &Path, values: &ndarray::ArrayView2<'_, f32>) -> std::io::Result<()> {
    write_npy(path, values)
}

/// Writes `values` as an `.npy` file of `shape` (row-major), atomically.
pub fn write_npy_nd<T: ndarray_npy::WritableElement + Clone>(
    path: &Path,
    shape: &[usize],
    values: &[T],
) -> std::io::Result<()> {
    let view = ndarray::ArrayViewD::from_shape(shape, values)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    write_npy(path, &view)
}

/// Through `ndarray-npy`, into a temporary file renamed into place.
fn write_npy<T: ndarray_npy::WritableElement, D: ndarray::Dimension>(
    path: &Path,
    values: &ndarray::ArrayView<'_, T, D>,
) -> std::io::Result<()> {
    use ndarray_npy::WriteNpyExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("npy.tmp");
    let file = std::fs::File::create(&tmp)?;
    let mut writer = std::io::BufWriter::new(file);
    let written = values
        .write_npy(&mut writer)
        .map_err(std::io::Error::other)
        .and_then(|_| writer.flush());
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Reads a 1-D u32 `.npy` file (what [`write_npy_u32`] writes), through `ndarray-npy`.
pub fn read_npy_u32(path: &Path) -> std::io::Result<Vec<u32>> {
    use ndarray_npy::ReadNpyExt;
    let file = std::fs::File::open(path)?;
    let array = ndarray::Array1::<u32>::read_npy(file).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a 1-D u32 .npy file: {}", crate::one_line(e)),
        )
    })?;
    Ok(array.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(key: &str) -> CellResult {
        CellResult {
            experiment: "e".into(),
            method: "random".into(),
            params: serde_json::json!({}),
            policy: "hardest".into(),
            policy_params: None,
            keep: 0.5,
            alpha: 0.0,
            alpha_rule: None,
            alpha_search: None,
            temperature: 4.0,
            teacher: None,
            seed: 0,
            kept: 5,
            examples_seen: None,
            train_size: 10,
            test_accuracy: 0.5,
            teacher_test_accuracy: None,
            seconds: 1.0,
            indices: "i.npy".into(),
            student: serde_json::json!({}),
            key: key.into(),
            config: String::new(),
        }
    }

    #[test]
    fn numbers_are_written_as_the_user_wrote_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ResultStore::open(dir.path()).unwrap();
        let mut c = cell("a");
        c.keep = 0.1;
        c.student = serde_json::json!({ "lr": 0.05f32 as f64, "epochs": 10 });
        store.append(&c).unwrap();
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(
            text.contains("\"keep\":0.1,") && text.contains("\"lr\":0.05"),
            "{text}"
        );
        assert!(!text.contains("0.10000000149011612"), "{text}");
        // Read back, the same f32.
        let back = ResultStore::open(dir.path()).unwrap();
        assert_eq!(back.results()[0].keep, 0.1f32);
    }

    #[test]
    fn a_line_written_twice_is_one_result() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ResultStore::open(dir.path()).unwrap();
        store.append(&cell("a")).unwrap();
        store.append(&cell("b")).unwrap();
        let text = std::fs::read_to_string(store.path()).unwrap();
        let first = text.lines().next().unwrap();
        std::fs::write(store.path(), format!("{text}{first}\n")).unwrap();
        let keys: Vec<String> = read(dir.path())
            .unwrap()
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(ResultStore::open(dir.path()).unwrap().results().len(), 2);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_damaged_middle_line_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ResultStore::open(dir.path()).unwrap();
        store.append(&cell("a")).unwrap();
        store.append(&cell("b")).unwrap();
        let path = store.path().to_path_buf();
        let whole = std::fs::read(&path).unwrap();
        // A crash in the middle of the third append.
        let mut torn = whole.clone();
        torn.extend_from_slice(br#"{"experiment":"e","meth"#);
        std::fs::write(&path, &torn).unwrap();
        let store = ResultStore::open(dir.path()).unwrap();
        assert_eq!(store.results().len(), 2);
        assert!(store.is_done("a") && store.is_done("b"));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            whole,
            "cut back to the whole lines"
        );
        // Damage that a crash cannot do is not repaired.
        let mut text = String::from_utf8(whole).unwrap();
        text.insert_str(0, "garbage\n");
        std::fs::write(&path, text).unwrap();
        let err = ResultStore::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("line 1 is not a result"), "{err}");
    }

    #[test]
    fn npy_round_trip_and_alignment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.npy");
        write_npy_u32(&p, &[3, 1, 4159]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(read_npy_u32(&p).unwrap(), vec![3, 1, 4159]);
    }
}
