//! Dynamics recorded elsewhere (`[dynamics] from = "<folder>"`): what a researcher's own
//! training run wrote, read into the records the proxy would give ([`super::Dynamics`]), so
//! that every dynamics- and embedding-based method scores it as if kdprune had recorded it.
//!
//! **kdprune's layout** mirrors the input names (the table of `docs/writing-a-plugin.md`); it
//! is what `kdprune score --export-dynamics` writes:
//! - `dynamics/<source>/<quantity>.npy`: `[R, E, N]` (`batch`, one record per epoch) or
//!   `[R, T, N]` (`pass`), logits `[R, E|T, N, C]`; float16, float32 or float64 (`correct`:
//!   bool or integers 0/1).
//! - `dynamics/<source>/order.npy` (optional): integers `[R, E|T, N]`; row `j` of record
//!   `(r, e)` is example `order[r, e, j]` (each record a permutation of `0..N`). Without it,
//!   rows are in the data's order.
//! - `dynamics/pass/epochs.npy`: `[T]`, the epoch of each pass record, with any pass record.
//! - `embeddings/proxy.npy`: `[N, H]`.
//!
//! A quantity asked for but absent is computed from its source's `logits.npy`, as the
//! recorder computes it ([`super::row_stats`]); `grad_norm` cannot be (it needs the
//! penultimate activations).
//!
//! **TDDS's layout** (Zhang et al.'s `train.py --dynamics`, which DUAL's CIFAR code shares):
//! per epoch `e = 0, 1, ...`, `<e>_Output.npy` (float32 logits `[N, C]` in the epoch's
//! shuffled order) and `<e>_Index.npy` (int64 `[N]`, the example of each row), in the folder
//! or its `npy/`. They are training-mode outputs of each example's own minibatch: the `batch`
//! source. One folder is one run; several folders are several runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::f16;
use ndarray::ArrayD;
use ndarray_npy::{ReadDataError, ReadNpyError, ReadNpyExt, ReadableElement};

use super::{
    row_stats, tensor_name, Dynamics, DynamicsError, Quantity, Request, Source, PASS_EPOCHS,
    PROXY_EMBEDDING, PROXY_GRAD,
};
use crate::tensor::{Elements, HostTensor};

/// How the folders of `[dynamics] from` are laid out (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Kdprune,
    Tdds,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Kdprune => "kdprune",
            Layout::Tdds => "tdds",
        }
    }
}

/// `[dynamics] from` and `layout`, checked: the folders, one part of the runs each, in order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Import {
    pub folders: Vec<PathBuf>,
    pub layout: Layout,
}

/// The training set the records describe.
#[derive(Debug, Clone, Copy)]
pub struct Described<'a> {
    /// `[N]`.
    pub labels: &'a [u32],
    pub classes: usize,
}

fn error(path: &Path, message: impl Into<String>) -> DynamicsError {
    DynamicsError::Import {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads `request` from `import`'s folders: tensors `[R, ...]` with the folders' runs
/// stacked in order, the embedding from the first folder.
pub fn read(
    import: &Import,
    request: &Request,
    set: Described<'_>,
) -> Result<Dynamics, DynamicsError> {
    let mut parts: Vec<Dynamics> = Vec::new();
    let mut next_run = 0;
    for (i, folder) in import.folders.iter().enumerate() {
        if !folder.is_dir() {
            return Err(error(
                folder,
                "not a folder; [dynamics] from names folders of recorded dynamics",
            ));
        }
        let part_request = request.for_run(i);
        let mut part = match import.layout {
            Layout::Kdprune => read_kdprune(folder, &part_request, set)?,
            Layout::Tdds => read_tdds(folder, &part_request, set)?,
        };
        if let Some(first) = parts.first() {
            same_records(first, &part, &import.folders[0], folder)?;
        }
        let runs = part.runs.len();
        part.runs = (next_run..next_run + runs).collect();
        next_run += runs;
        parts.push(part);
    }
    let runs: Vec<usize> = (0..next_run).collect();
    let joined = super::join_runs(&parts, request, &runs).ok_or_else(|| {
        error(
            &import.folders[0],
            "the folders' records do not join into one set of runs",
        )
    })?;
    Ok(Dynamics {
        train_seconds: 0.0,
        pass_seconds: 0.0,
        ..joined
    })
}

/// The content key of the records `import` names, in place of the proxy's settings in what a
/// cell depends on: SHA-256 of the layout and, folder by folder, every file the layout can
/// read (relative path, length, bytes), in sorted order. Files the layout never reads (a
/// `scores/` folder's score files, TDDS's `_Loss.npy`) leave it unchanged.
pub fn content_key(import: &Import) -> Result<String, DynamicsError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update("kdprune-dynamics-import-1");
    h.update(import.layout.as_str());
    for folder in &import.folders {
        let files = readable_files(folder, import.layout)?;
        h.update((files.len() as u64).to_le_bytes());
        for rel in files {
            let path = folder.join(&rel);
            h.update(rel.to_string_lossy().as_bytes());
            h.update([0]);
            let mut file =
                std::fs::File::open(&path).map_err(|e| error(&path, crate::io_message(&e)))?;
            let len = std::io::copy(&mut file, &mut h)
                .map_err(|e| error(&path, crate::io_message(&e)))?;
            h.update(len.to_le_bytes());
        }
    }
    Ok(crate::hash::hex(&h.finalize()))
}

/// The files under `folder` that `layout` can read, relative to it, sorted.
fn readable_files(folder: &Path, layout: Layout) -> Result<Vec<PathBuf>, DynamicsError> {
    if !folder.is_dir() {
        return Err(error(
            folder,
            "not a folder; [dynamics] from names folders of recorded dynamics",
        ));
    }
    let list = |rel: &str, keep: &dyn Fn(&str) -> bool| -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(folder.join(rel)) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| keep(name))
            .map(|name| Path::new(rel).join(name))
            .collect()
    };
    let npy = |name: &str| name.ends_with(".npy");
    let mut files = match layout {
        Layout::Kdprune => {
            let mut f = list("dynamics/batch", &npy);
            f.extend(list("dynamics/pass", &npy));
            f
        }
        Layout::Tdds => {
            let epoch_file = |name: &str| {
                name.split_once('_').is_some_and(|(e, rest)| {
                    e.bytes().all(|b| b.is_ascii_digit())
                        && (rest == "Output.npy" || rest == "Index.npy")
                })
            };
            let mut f = list("", &epoch_file);
            f.extend(list("npy", &epoch_file));
            f
        }
    };
    files.extend(list("embeddings", &|name| {
        name == "proxy.npy" || name == "grad.npy"
    }));
    files.sort();
    Ok(files)
}

/// Refuses a second folder whose records differ from the first's beyond the number of runs.
fn same_records(
    first: &Dynamics,
    other: &Dynamics,
    first_folder: &Path,
    folder: &Path,
) -> Result<(), DynamicsError> {
    for (name, tensor) in &other.tensors {
        let Some((_, reference)) = first.tensors.iter().find(|(n, _)| n == name) else {
            continue;
        };
        // What must agree: the pass records' epochs by value, the rest by shape per run.
        let described = |t: &HostTensor| {
            if name == PASS_EPOCHS {
                format!("epochs {:?}", t.elements().to_f32())
            } else if name == PROXY_EMBEDDING {
                format!("shape {:?}", t.shape())
            } else {
                format!("records {:?} per run", &t.shape()[1..])
            }
        };
        if described(tensor) != described(reference) {
            return Err(error(
                folder,
                format!(
                    "{name} has {}, but {} has {}; every folder must record the same epochs",
                    described(tensor),
                    first_folder.display(),
                    described(reference)
                ),
            ));
        }
    }
    Ok(())
}

/// Records of one source in the data's order: `[R, records, N, width]` as f32 (width `C` for
/// logits, 1 otherwise).
struct Records {
    runs: usize,
    records: usize,
    n: usize,
    width: usize,
    values: Vec<f32>,
}

impl Records {
    fn row(&self, r: usize, e: usize, i: usize) -> &[f32] {
        let at = ((r * self.records + e) * self.n + i) * self.width;
        &self.values[at..at + self.width]
    }
}

/// kdprune's layout (see the module doc).
fn read_kdprune(
    folder: &Path,
    request: &Request,
    set: Described<'_>,
) -> Result<Dynamics, DynamicsError> {
    let mut tensors = Vec::new();
    let mut logits: BTreeMap<Source, Records> = BTreeMap::new();
    let mut runs: Option<(usize, PathBuf)> = None;
    let mut records_of: BTreeMap<Source, Option<(usize, PathBuf)>> = BTreeMap::new();
    for &(source, quantity) in &request.recorded {
        let path = folder.join(format!("{}.npy", tensor_name(source, quantity)));
        let records = if path.exists() {
            let order = read_order(folder, source, set.labels.len())?;
            read_records(&path, quantity, set, order.as_ref())?
        } else {
            if quantity == Quantity::Logits {
                return Err(error(
                    &path,
                    "missing; a method asks for the logits, float [R, records, N, C]",
                ));
            }
            if quantity == Quantity::GradNorm {
                return Err(error(
                    &path,
                    "missing; the gradient norm cannot be computed from logits (it needs the penultimate activations): write it, or drop grand",
                ));
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = logits.entry(source) {
                let logits_path =
                    folder.join(format!("{}.npy", tensor_name(source, Quantity::Logits)));
                if !logits_path.exists() {
                    return Err(error(
                        &path,
                        format!(
                            "missing, and no {} to compute it from; a method asks for {}",
                            logits_path.display(),
                            tensor_name(source, quantity)
                        ),
                    ));
                }
                let order = read_order(folder, source, set.labels.len())?;
                let read = read_records(&logits_path, Quantity::Logits, set, order.as_ref())?;
                slot.insert(read);
            }
            derive(&logits[&source], quantity, set.labels)
        };
        same_count(&mut runs, records.runs, &path, "runs")?;
        let seen = records_of.entry(source).or_default();
        same_count(seen, records.records, &path, "records")?;
        tensors.push((tensor_name(source, quantity), to_tensor(records, quantity)));
    }
    if request.recorded.iter().any(|(s, _)| *s == Source::Pass) {
        tensors.push((PASS_EPOCHS.to_string(), read_pass_epochs(folder, &tensors)?));
    }
    push_embeddings(folder, request, set, &mut tensors)?;
    let runs = runs.map_or(1, |(r, _)| r);
    Ok(Dynamics {
        tensors,
        request: request.clone(),
        runs: (0..runs).collect(),
        train_seconds: 0.0,
        pass_seconds: 0.0,
    })
}

/// Refuses a count that differs from the first file's (`seen`, set by the first).
fn same_count(
    seen: &mut Option<(usize, PathBuf)>,
    count: usize,
    path: &Path,
    what: &str,
) -> Result<(), DynamicsError> {
    match seen {
        Some((first, from)) if *first != count => Err(error(
            path,
            format!(
                "{count} {what}, but {} has {first}; the files of one source must hold the same {what}",
                from.display()
            ),
        )),
        Some(_) => Ok(()),
        None => {
            *seen = Some((count, path.to_path_buf()));
            Ok(())
        }
    }
}

/// The order of a source's records: `[R, records]` and, record by record, the example of
/// each row.
struct Order {
    shape: [usize; 2],
    rows: Vec<usize>,
}

/// `dynamics/<source>/order.npy` as one permutation of `0..n` per record, when present.
fn read_order(folder: &Path, source: Source, n: usize) -> Result<Option<Order>, DynamicsError> {
    let path = folder.join(format!("dynamics/{}/order.npy", source.as_str()));
    if !path.exists() {
        return Ok(None);
    }
    let (shape, order) = read_integers(&path)?;
    if shape.len() != 3 || shape[2] != n {
        return Err(error(
            &path,
            format!("shape {shape:?}, expected [R, records, {n}] (one row per example)"),
        ));
    }
    let rows = order
        .chunks(n.max(1))
        .map(|record| permutation(record, n).map_err(|m| error(&path, m)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Order {
        shape: [shape[0], shape[1]],
        rows: rows.concat(),
    }))
}

/// `record` as indices when it is a permutation of `0..n`.
fn permutation(record: &[i64], n: usize) -> Result<Vec<usize>, String> {
    let mut seen = vec![false; n];
    record
        .iter()
        .map(|&i| {
            let at = usize::try_from(i)
                .ok()
                .filter(|&i| i < n)
                .ok_or_else(|| format!("index {i} outside 0..{n}"))?;
            if std::mem::replace(&mut seen[at], true) {
                return Err(format!(
                    "example {at} twice in one record; each record must list every example once"
                ));
            }
            Ok(at)
        })
        .collect()
}

/// A record file of `quantity` `[R, records, N]` (`[..., C]` for logits), checked, in the
/// data's order (`order`: the example of each row, record by record).
fn read_records(
    path: &Path,
    quantity: Quantity,
    set: Described<'_>,
    order: Option<&Order>,
) -> Result<Records, DynamicsError> {
    let n = set.labels.len();
    let (shape, values) = if quantity == Quantity::Correct {
        let (shape, v) = read_integers(path)?;
        if let Some(bad) = v.iter().find(|&&b| b != 0 && b != 1) {
            return Err(error(path, format!("value {bad}; correct is 0 or 1")));
        }
        (shape, v.into_iter().map(|b| b as f32).collect())
    } else {
        read_floats(path)?
    };
    let width = if quantity == Quantity::Logits {
        set.classes
    } else {
        1
    };
    let expected = if width == 1 {
        format!("[R, records, {n}]")
    } else {
        format!("[R, records, {n}, {width}]")
    };
    let rank = if width == 1 { 3 } else { 4 };
    if shape.len() != rank || shape[2] != n || (rank == 4 && shape[3] != width) {
        return Err(error(
            path,
            format!("shape {shape:?}, expected {expected} (N examples of the data, C classes)"),
        ));
    }
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        return Err(error(
            path,
            format!("element {at} is {}; records must be finite", values[at]),
        ));
    }
    if let Some(order) = order {
        if order.shape != [shape[0], shape[1]] {
            return Err(error(
                path,
                format!(
                    "[R, records] = {:?}, but its order.npy is {:?} (×{n}); one row order per run and record",
                    [shape[0], shape[1]],
                    order.shape
                ),
            ));
        }
    }
    Ok(Records {
        runs: shape[0],
        records: shape[1],
        n,
        width,
        values: match order {
            Some(order) => in_data_order(&values, &order.rows, n, width),
            None => values,
        },
    })
}

/// Rows `[records, N, width]` put in the data's order: row `j` of record `t` is example
/// `order[t * n + j]`.
fn in_data_order(values: &[f32], order: &[usize], n: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    for (j, &example) in order.iter().enumerate() {
        let record = j / n;
        let to = (record * n + example) * width;
        out[to..to + width].copy_from_slice(&values[j * width..(j + 1) * width]);
    }
    out
}

/// `quantity` computed from `logits` as the recorder computes it.
fn derive(logits: &Records, quantity: Quantity, labels: &[u32]) -> Records {
    if quantity == Quantity::Logits {
        return Records {
            values: logits.values.clone(),
            ..*logits
        };
    }
    let mut values = Vec::with_capacity(logits.runs * logits.records * logits.n);
    for r in 0..logits.runs {
        for e in 0..logits.records {
            for (i, &y) in labels.iter().enumerate() {
                let s = row_stats(logits.row(r, e, i), y as usize, 0.0);
                values.push(match quantity {
                    Quantity::Loss => s.loss,
                    Quantity::TrueProb => s.true_prob,
                    Quantity::Correct => f32::from(u8::from(s.correct)),
                    Quantity::Margin => s.margin,
                    Quantity::El2n => s.el2n,
                    Quantity::GradNorm | Quantity::Logits => unreachable!("handled above"),
                });
            }
        }
    }
    Records {
        width: 1,
        values,
        ..*logits
    }
}

/// The records as the recorder stores them: f16, u8 for `correct`.
fn to_tensor(records: Records, quantity: Quantity) -> HostTensor {
    let mut shape = vec![
        records.runs as u64,
        records.records as u64,
        records.n as u64,
    ];
    if quantity == Quantity::Logits {
        shape.push(records.width as u64);
    }
    let elements = if quantity == Quantity::Correct {
        Elements::U8(records.values.iter().map(|&v| v as u8).collect())
    } else {
        Elements::F16(records.values.iter().map(|&v| f16::from_f32(v)).collect())
    };
    HostTensor::new(shape, elements).expect("records sized by their shape")
}

/// `dynamics/pass/epochs.npy`, one finite epoch per pass record.
fn read_pass_epochs(
    folder: &Path,
    tensors: &[(String, HostTensor)],
) -> Result<HostTensor, DynamicsError> {
    let path = folder.join(format!("{PASS_EPOCHS}.npy"));
    if !path.exists() {
        return Err(error(
            &path,
            "missing; pass records need the epoch of each record, float [T]",
        ));
    }
    let (shape, epochs) = read_floats(&path)?;
    let records = tensors
        .iter()
        .find(|(n, _)| n.starts_with("dynamics/pass/"))
        .map_or(0, |(_, t)| t.shape()[1] as usize);
    if shape != [records] {
        return Err(error(
            &path,
            format!("shape {shape:?}, expected [{records}] (one epoch per pass record)"),
        ));
    }
    if epochs.iter().any(|e| !e.is_finite() || *e < 0.0) {
        return Err(error(path.as_path(), "epochs must be finite and ≥ 0"));
    }
    Ok(HostTensor::new(vec![records as u64], Elements::F32(epochs)).expect("[T]"))
}

/// The embedding and the last-layer gradients `request` asks for, from the folder.
fn push_embeddings(
    folder: &Path,
    request: &Request,
    set: Described<'_>,
    tensors: &mut Vec<(String, HostTensor)>,
) -> Result<(), DynamicsError> {
    if request.embedding {
        tensors.push((
            PROXY_EMBEDDING.to_string(),
            read_embedding(folder, PROXY_EMBEDDING, set)?,
        ));
    }
    if request.grad {
        tensors.push((
            PROXY_GRAD.to_string(),
            read_embedding(folder, PROXY_GRAD, set)?,
        ));
    }
    Ok(())
}

/// `embeddings/proxy.npy` `[N, H]` or `embeddings/grad.npy` `[N, C·(H+1)]`, finite.
fn read_embedding(
    folder: &Path,
    name: &str,
    set: Described<'_>,
) -> Result<HostTensor, DynamicsError> {
    let path = folder.join(format!("{name}.npy"));
    let (what, expected) = if name == PROXY_GRAD {
        (
            "the last-layer gradients (bias, then weights by class; docs/writing-a-plugin.md)",
            "C·(H+1)",
        )
    } else {
        ("the proxy's embedding", "H")
    };
    if !path.exists() {
        return Err(error(
            &path,
            format!("missing; a method asks for {what}, float [N, {expected}]"),
        ));
    }
    let (shape, values) = read_floats(&path)?;
    let n = set.labels.len();
    let width_ok = |w: usize| {
        if name == PROXY_GRAD {
            w.is_multiple_of(set.classes) && w / set.classes >= 2
        } else {
            w > 0
        }
    };
    if shape.len() != 2 || shape[0] != n || !width_ok(shape[1]) {
        return Err(error(
            &path,
            format!("shape {shape:?}, expected [{n}, {expected}] (one row per example)"),
        ));
    }
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        return Err(error(
            &path,
            format!(
                "element {at} is {}; an embedding must be finite",
                values[at]
            ),
        ));
    }
    Ok(HostTensor::new(vec![n as u64, shape[1] as u64], Elements::F32(values)).expect("[N, H]"))
}

/// TDDS's layout (see the module doc): one run of batch logits, from which every batch
/// quantity is computed.
fn read_tdds(
    folder: &Path,
    request: &Request,
    set: Described<'_>,
) -> Result<Dynamics, DynamicsError> {
    if let Some((_, q)) = request.recorded.iter().find(|(s, _)| *s == Source::Pass) {
        return Err(error(
            folder,
            format!(
                "the tdds layout holds training-mode outputs (dynamics/batch/...) only, but a method asks for {}; write evaluation passes in the kdprune layout",
                tensor_name(Source::Pass, *q)
            ),
        ));
    }
    let dir = if folder.join("0_Output.npy").exists() {
        folder.to_path_buf()
    } else {
        folder.join("npy")
    };
    let n = set.labels.len();
    let mut values = Vec::new();
    let mut order = Vec::new();
    let mut epochs = 0;
    while dir.join(format!("{epochs}_Output.npy")).exists() {
        let output = dir.join(format!("{epochs}_Output.npy"));
        let index = dir.join(format!("{epochs}_Index.npy"));
        let (shape, logits) = read_floats(&output)?;
        if shape != [n, set.classes] {
            return Err(error(
                &output,
                format!(
                    "shape {shape:?}, expected [{n}, {}] (N examples of the data, C classes)",
                    set.classes
                ),
            ));
        }
        if !index.exists() {
            return Err(error(
                &index,
                "missing; each epoch's outputs need the index of each row",
            ));
        }
        let (index_shape, rows) = read_integers(&index)?;
        if index_shape != [n] {
            return Err(error(
                &index,
                format!("shape {index_shape:?}, expected [{n}]"),
            ));
        }
        if let Some(at) = logits.iter().position(|v| !v.is_finite()) {
            return Err(error(
                &output,
                format!("element {at} is {}; logits must be finite", logits[at]),
            ));
        }
        order.extend(permutation(&rows, n).map_err(|m| error(&index, m))?);
        values.extend(logits);
        epochs += 1;
    }
    if epochs == 0 {
        return Err(error(
            folder,
            "no 0_Output.npy here or in npy/; the tdds layout is <epoch>_Output.npy and <epoch>_Index.npy per epoch, from 0",
        ));
    }
    let logits = Records {
        runs: 1,
        records: epochs,
        n,
        width: set.classes,
        values: in_data_order(&values, &order, n, set.classes),
    };
    let mut tensors = Vec::new();
    for &(source, quantity) in &request.recorded {
        if quantity == Quantity::GradNorm {
            return Err(error(folder, "the gradient norm cannot be computed from logits (it needs the penultimate activations); drop grand"));
        }
        tensors.push((
            tensor_name(source, quantity),
            to_tensor(derive(&logits, quantity, set.labels), quantity),
        ));
    }
    push_embeddings(folder, request, set, &mut tensors)?;
    Ok(Dynamics {
        tensors,
        request: request.clone(),
        runs: vec![0],
        train_seconds: 0.0,
        pass_seconds: 0.0,
    })
}

/// A float16 element, for reading `np.float16` arrays (`ndarray-npy` reads f32 and f64).
#[derive(Debug, Clone, Copy)]
struct NpyF16(f16);

impl ReadableElement for NpyF16 {
    fn read_to_end_exact_vec<R: std::io::Read>(
        mut reader: R,
        type_desc: &py_literal::Value,
        len: usize,
    ) -> Result<Vec<Self>, ReadDataError> {
        match type_desc {
            py_literal::Value::String(s) if s == "<f2" => {}
            other => return Err(ReadDataError::WrongDescriptor(other.clone())),
        }
        let mut bytes = vec![0u8; len * 2];
        reader.read_exact(&mut bytes)?;
        let extra = reader.read_to_end(&mut Vec::new())?;
        if extra > 0 {
            return Err(ReadDataError::ExtraBytes(extra));
        }
        Ok(bytes
            .chunks_exact(2)
            .map(|b| NpyF16(f16::from_le_bytes([b[0], b[1]])))
            .collect())
    }
}

/// The array as `T`; `Ok(None)` when it holds another element type.
fn try_read<T: ReadableElement>(path: &Path) -> Result<Option<ArrayD<T>>, DynamicsError> {
    let file = std::fs::File::open(path).map_err(|e| error(path, crate::io_message(&e)))?;
    match ArrayD::<T>::read_npy(std::io::BufReader::new(file)) {
        Ok(a) => Ok(Some(a)),
        Err(ReadNpyError::WrongDescriptor(_)) => Ok(None),
        Err(e) => Err(error(
            path,
            format!("not a readable .npy array: {}", crate::one_line(e)),
        )),
    }
}

/// A float16/32/64 array as f32 (float64 rounded), with its shape.
fn read_floats(path: &Path) -> Result<(Vec<usize>, Vec<f32>), DynamicsError> {
    if let Some(a) = try_read::<f32>(path)? {
        return Ok((a.shape().to_vec(), a.into_iter().collect()));
    }
    if let Some(a) = try_read::<f64>(path)? {
        return Ok((
            a.shape().to_vec(),
            a.into_iter().map(|v| v as f32).collect(),
        ));
    }
    if let Some(a) = try_read::<NpyF16>(path)? {
        return Ok((
            a.shape().to_vec(),
            a.into_iter().map(|v| v.0.to_f32()).collect(),
        ));
    }
    Err(error(
        path,
        "not float16, float32 or float64; save it as float32",
    ))
}

/// An integer or bool array as i64, with its shape.
fn read_integers(path: &Path) -> Result<(Vec<usize>, Vec<i64>), DynamicsError> {
    macro_rules! try_as {
        ($($t:ty),*) => {
            $(if let Some(a) = try_read::<$t>(path)? {
                return Ok((a.shape().to_vec(), a.into_iter().map(|v| v as i64).collect()));
            })*
        };
    }
    try_as!(i64, i32, u32, u8, i16, u16, i8);
    if let Some(a) = try_read::<u64>(path)? {
        return Ok((
            a.shape().to_vec(),
            a.into_iter()
                .map(|v| i64::try_from(v).unwrap_or(-1))
                .collect(),
        ));
    }
    if let Some(a) = try_read::<bool>(path)? {
        return Ok((a.shape().to_vec(), a.into_iter().map(i64::from).collect()));
    }
    Err(error(
        path,
        "not an integer or bool array; save it as int64",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray_npy::WriteNpyExt;

    fn save<T: ndarray_npy::WritableElement>(path: &Path, shape: &[usize], values: Vec<T>) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        ArrayD::from_shape_vec(shape, values)
            .unwrap()
            .write_npy(std::fs::File::create(path).unwrap())
            .unwrap();
    }

    fn batch_request(qs: &[Quantity]) -> Request {
        Request {
            recorded: qs.iter().map(|&q| (Source::Batch, q)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn quantities_are_computed_from_shuffled_logits_in_the_data_order() {
        let dir = tempfile::tempdir().unwrap();
        // Two examples, three classes, one run of one epoch, rows written in the order [1, 0].
        let labels = [2u32, 0];
        let example0 = [2.0f32, 0.0, 1.0];
        let example1 = [0.5f32, 0.25, -1.0];
        let mut rows = example1.to_vec();
        rows.extend(example0);
        save(
            &dir.path().join("dynamics/batch/logits.npy"),
            &[1, 1, 2, 3],
            rows,
        );
        save(
            &dir.path().join("dynamics/batch/order.npy"),
            &[1, 1, 2],
            vec![1i64, 0],
        );
        let import = Import {
            folders: vec![dir.path().to_path_buf()],
            layout: Layout::Kdprune,
        };
        let set = Described {
            labels: &labels,
            classes: 3,
        };
        let read = read(
            &import,
            &batch_request(&[Quantity::El2n, Quantity::Correct]),
            set,
        )
        .unwrap();
        let get = |name: &str| {
            read.tensors
                .iter()
                .find(|(n, _)| n == name)
                .unwrap()
                .1
                .clone()
        };
        let el2n = get("dynamics/batch/el2n");
        assert_eq!(el2n.shape(), &[1, 1, 2]);
        let expected: Vec<f32> = [(&example0[..], 2usize), (&example1[..], 0)]
            .iter()
            .map(|(s, y)| f16::from_f32(row_stats(s, *y, 0.0).el2n).to_f32())
            .collect();
        assert_eq!(el2n.elements().to_f32(), expected);
        // Example 0 (label 2, logits max at 0) is wrong; example 1 (label 0) is right.
        assert_eq!(
            get("dynamics/batch/correct").elements(),
            &Elements::U8(vec![0, 1])
        );
    }

    #[test]
    fn bad_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let labels = [0u32, 1];
        let set = Described {
            labels: &labels,
            classes: 2,
        };
        let import = Import {
            folders: vec![dir.path().to_path_buf()],
            layout: Layout::Kdprune,
        };
        let err = |q: Quantity| {
            read(&import, &batch_request(&[q]), set)
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(Quantity::El2n).contains("no "),
            "{}",
            err(Quantity::El2n)
        );
        let logits = dir.path().join("dynamics/batch/logits.npy");
        save(&logits, &[1, 1, 3, 2], vec![0f32; 6]);
        assert!(err(Quantity::El2n).contains("expected [R, records, 2, 2]"));
        save(&logits, &[1, 1, 2, 2], vec![0.0, f32::NAN, 0.0, 0.0]);
        assert!(err(Quantity::El2n).contains("finite"));
        save(&logits, &[1, 1, 2, 2], vec![0f32; 4]);
        save(
            &dir.path().join("dynamics/batch/order.npy"),
            &[1, 1, 2],
            vec![1i64, 1],
        );
        assert!(
            err(Quantity::Loss).contains("twice"),
            "{}",
            err(Quantity::Loss)
        );
        save(
            &dir.path().join("dynamics/batch/order.npy"),
            &[1, 1, 2],
            vec![1i64, 0],
        );
        assert!(read(&import, &batch_request(&[Quantity::Loss]), set).is_ok());
        save(
            &dir.path().join("dynamics/batch/correct.npy"),
            &[1, 1, 2],
            vec![0u8, 2],
        );
        assert!(err(Quantity::Correct).contains("0 or 1"));
        assert!(err(Quantity::GradNorm).contains("penultimate"));
        // An order of another [R, records] than the records'.
        save(
            &dir.path().join("dynamics/batch/order.npy"),
            &[2, 1, 2],
            vec![1i64, 0, 0, 1],
        );
        assert!(
            err(Quantity::Loss).contains("order.npy is [2, 1]"),
            "{}",
            err(Quantity::Loss)
        );
        std::fs::remove_file(dir.path().join("dynamics/batch/order.npy")).unwrap();
        // Two files of one source with different numbers of records.
        save(
            &dir.path().join("dynamics/batch/correct.npy"),
            &[1, 2, 2],
            vec![0u8; 4],
        );
        let both = batch_request(&[Quantity::Correct, Quantity::Loss]);
        let message = read(&import, &both, set).unwrap_err().to_string();
        assert!(message.contains("the same records"), "{message}");
    }

    #[test]
    fn the_content_key_follows_the_files_the_layout_reads_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let import = Import {
            folders: vec![dir.path().to_path_buf()],
            layout: Layout::Kdprune,
        };
        let logits = dir.path().join("dynamics/batch/logits.npy");
        save(&logits, &[1, 1, 2, 2], vec![0f32, 1.0, 2.0, 3.0]);
        let first = content_key(&import).unwrap();
        std::fs::write(dir.path().join("el2n_seed0.scores.npy"), b"not read").unwrap();
        assert_eq!(
            content_key(&import).unwrap(),
            first,
            "a file the layout never reads"
        );
        save(&logits, &[1, 1, 2, 2], vec![0f32, 1.0, 2.0, 4.0]);
        let changed = content_key(&import).unwrap();
        assert_ne!(changed, first);
        save(
            &dir.path().join("embeddings/proxy.npy"),
            &[2, 1],
            vec![0f32, 1.0],
        );
        assert_ne!(content_key(&import).unwrap(), changed);
        let tdds = Import {
            layout: Layout::Tdds,
            ..import
        };
        assert_ne!(
            content_key(&tdds).unwrap(),
            changed,
            "the layout is in the key"
        );
    }

    #[test]
    fn the_tdds_layout_is_one_run_of_batch_logits_with_each_epochs_order() {
        let dir = tempfile::tempdir().unwrap();
        let npy = dir.path().join("npy");
        let labels = [1u32, 0, 1];
        // Epoch 0 in the order [2, 0, 1], epoch 1 in the data order.
        save(
            &npy.join("0_Output.npy"),
            &[3, 2],
            vec![5f32, 6.0, 1.0, 2.0, 3.0, 4.0],
        );
        save(&npy.join("0_Index.npy"), &[3], vec![2i64, 0, 1]);
        save(
            &npy.join("1_Output.npy"),
            &[3, 2],
            vec![1f32, 2.0, 3.0, 4.0, 5.0, 6.0],
        );
        save(&npy.join("1_Index.npy"), &[3], vec![0i64, 1, 2]);
        let import = Import {
            folders: vec![dir.path().to_path_buf(), dir.path().to_path_buf()],
            layout: Layout::Tdds,
        };
        let set = Described {
            labels: &labels,
            classes: 2,
        };
        let read = read(&import, &batch_request(&[Quantity::Logits]), set).unwrap();
        let logits = &read.tensors[0].1;
        assert_eq!(logits.shape(), &[2, 2, 3, 2], "two folders, two runs");
        let epoch =
            |r: usize, e: usize| logits.elements().to_f32()[(r * 2 + e) * 6..][..6].to_vec();
        assert_eq!(epoch(0, 0), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(epoch(1, 1), epoch(0, 0));
        let pass = Request {
            recorded: [(Source::Pass, Quantity::El2n)].into(),
            ..Default::default()
        };
        let err = super::read(&import, &pass, set).unwrap_err().to_string();
        assert!(err.contains("training-mode"), "{err}");
        std::fs::remove_file(npy.join("1_Index.npy")).unwrap();
        let err = super::read(&import, &batch_request(&[Quantity::Loss]), set)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1_Index.npy: missing"), "{err}");
    }
}
