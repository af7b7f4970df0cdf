//! The one `Dataset` type every reader returns (`[N, D]` features, `[N]` labels, the sample
//! shape), what reading data can fail with (`DataError`), and the helpers readers share.

use std::path::{Path, PathBuf};

use ndarray::{Array2, Axis};

/// A labelled data set.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `[N, D]` features, row-major, values as read from the file (no scaling).
    pub features: Array2<f32>,
    /// Shape of one example, product `D`: `[1, 28, 28]` for MNIST, `[D]` for tabular data.
    pub sample_shape: Vec<usize>,
    /// `[N]`, each `< num_classes`.
    pub labels: Vec<u32>,
    pub num_classes: usize,
}

/// Errors reading or checking a data set. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: label {label} at example {index} is out of range for {num_classes} classes; set [data] num_classes or check the file")]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: u64,
        num_classes: usize,
    },
    #[error("{images}: {n_images} examples but {labels} has {n_labels} labels; the two files must come from the same split")]
    CountMismatch {
        images: PathBuf,
        n_images: usize,
        labels: PathBuf,
        n_labels: usize,
    },
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

impl Dataset {
    /// SHA-256 of the shape, class count, features and labels: the data's part of a cache key.
    pub fn content_hash(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(format!(
            "{:?}|{}|{}",
            self.sample_shape,
            self.num_classes,
            self.len()
        ));
        let mut buf = Vec::with_capacity(self.dim() * 4);
        for row in self.features.rows() {
            buf.clear();
            buf.extend(row.iter().flat_map(|v| v.to_le_bytes()));
            h.update(&buf);
        }
        buf.clear();
        buf.extend(self.labels.iter().flat_map(|y| y.to_le_bytes()));
        h.update(&buf);
        h.finalize().into()
    }

    /// Builds a data set, checking shapes and labels.
    ///
    /// `features`: `[N, D]`; `labels`: `[N]`; `sample_shape` product must be `D`.
    pub fn new(
        features: Array2<f32>,
        sample_shape: Vec<usize>,
        labels: Vec<u32>,
        num_classes: usize,
    ) -> Result<Self, DataError> {
        let (n, d) = features.dim();
        if labels.len() != n {
            return Err(DataError::Invalid(format!(
                "{n} feature rows but {} labels",
                labels.len()
            )));
        }
        if sample_shape.iter().product::<usize>() != d {
            return Err(DataError::Invalid(format!(
                "sample shape {sample_shape:?} has {} values but each example has {d}",
                sample_shape.iter().product::<usize>()
            )));
        }
        if let Some((i, &y)) = labels
            .iter()
            .enumerate()
            .find(|(_, &y)| y as usize >= num_classes)
        {
            return Err(DataError::Invalid(format!(
                "label {y} at example {i} is out of range for {num_classes} classes"
            )));
        }
        if features.iter().any(|v| !v.is_finite()) {
            return Err(DataError::Invalid(
                "features contain NaN or infinite values".into(),
            ));
        }
        Ok(Self {
            features,
            sample_shape,
            labels,
            num_classes,
        })
    }

    /// Number of examples, `N`.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per example, `D`.
    pub fn dim(&self) -> usize {
        self.features.ncols()
    }

    /// The examples at `indices` (in that order), as a new data set.
    pub fn subset(&self, indices: &[u32]) -> Dataset {
        let idx: Vec<usize> = indices.iter().map(|&i| i as usize).collect();
        Dataset {
            features: self.features.select(Axis(0), &idx),
            sample_shape: self.sample_shape.clone(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            num_classes: self.num_classes,
        }
    }

    /// Splits off a held-out set: `test` gets `indices`, train the rest (order kept).
    pub fn split(&self, test_indices: &[u32]) -> (Dataset, Dataset) {
        let mut is_test = vec![false; self.len()];
        for &i in test_indices {
            is_test[i as usize] = true;
        }
        let train: Vec<u32> = (0..self.len() as u32)
            .filter(|&i| !is_test[i as usize])
            .collect();
        (self.subset(&train), self.subset(test_indices))
    }
}

/// Number of channels of a sample shape: `C` of `[C, H, W]`, 1 for flat data.
pub fn channels_of(sample_shape: &[usize]) -> usize {
    if sample_shape.len() == 3 {
        sample_shape[0]
    } else {
        1
    }
}

/// The first label `>= num_classes`, as an error naming the file that holds the labels.
pub(crate) fn check_label_range(
    path: &Path,
    labels: impl IntoIterator<Item = u64>,
    num_classes: usize,
) -> Result<(), DataError> {
    match labels
        .into_iter()
        .enumerate()
        .find(|&(_, y)| y as usize >= num_classes)
    {
        Some((index, label)) => Err(DataError::LabelOutOfRange {
            path: path.to_path_buf(),
            index,
            label,
            num_classes,
        }),
        None => Ok(()),
    }
}

/// The number of classes: as declared, or the largest label + 1, refused when a class below
/// it has no example (a stray 200 among 0..9 would silently make empty classes) or when it
/// passes 65 536, unless the manifest declares the count. The same for every format.
pub(crate) fn infer_classes(
    path: &Path,
    labels: &[u32],
    declared: Option<usize>,
) -> Result<usize, DataError> {
    if let Some(c) = declared {
        return Ok(c);
    }
    let largest = labels.iter().copied().max().unwrap_or(0);
    if largest >= 1 << 16 {
        return Err(DataError::format(
            path,
            format!("a label of {largest}: more than 65536 classes; check the labels or set [data] num_classes"),
        ));
    }
    let c = largest as usize + 1;
    let mut seen = vec![false; c];
    for &y in labels {
        seen[y as usize] = true;
    }
    if let Some(empty) = seen.iter().position(|s| !s) {
        let at = labels.iter().position(|&y| y == largest).unwrap_or(0);
        return Err(DataError::format(
            path,
            format!(
                "labels run up to {largest} (example {at}) but class {empty} has no example; check the labels, or set [data] num_classes = {c} if classes are meant to be missing"
            ),
        ));
    }
    Ok(c)
}

/// Refuses what is not a regular file (a device such as `/dev/zero`, a FIFO, a folder),
/// which a reader would read without end or block on.
pub(crate) fn regular_file(path: &Path) -> Result<(), DataError> {
    let meta = std::fs::metadata(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_file() {
        return Ok(());
    }
    let what = if meta.is_dir() {
        "a folder"
    } else {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        }
    };
    Err(DataError::format(
        path,
        format!("{what}, not a data file; name the file itself"),
    ))
}

/// Opens a file, decompressing it when it starts with the gzip magic bytes.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    regular_file(path)?;
    let raw = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                DataError::format(
                    path,
                    format!("corrupt or truncated gzip stream ({e}); download the file again"),
                )
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_rejects_label_out_of_range() {
        let err = Dataset::new(Array2::zeros((2, 3)), vec![3], vec![0, 5], 3).unwrap_err();
        assert!(err.to_string().contains("label 5"), "{err}");
    }
}
