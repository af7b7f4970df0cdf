//! The IDX format of MNIST and Fashion-MNIST (raw or gzip): unsigned-byte tensors with a
//! big-endian header `0x00 0x00 type ndim`, then `ndim` u32 dimensions, then the values.

use std::path::Path;

use ndarray::Array2;

use super::dataset::{check_label_range, infer_classes, read_maybe_gz, DataError, Dataset};

const TYPE_U8: u8 = 0x08;

/// A decoded IDX tensor of unsigned bytes.
struct IdxTensor {
    dims: Vec<usize>,
    values: Vec<u8>,
}

fn parse_idx(path: &Path, bytes: &[u8]) -> Result<IdxTensor, DataError> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::format(
            path,
            "not an IDX file (the first two bytes must be zero); expected MNIST-style idx[13]-ubyte files",
        ));
    }
    if bytes[2] != TYPE_U8 {
        return Err(DataError::format(
            path,
            format!(
                "IDX value type 0x{:02x} is not supported; only unsigned bytes (0x08)",
                bytes[2]
            ),
        ));
    }
    let ndim = bytes[3] as usize;
    let header_len = 4 + 4 * ndim;
    if ndim == 0 || bytes.len() < header_len {
        return Err(DataError::format(
            path,
            "truncated IDX header; download the file again",
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::format(path, "IDX dimensions overflow"))?;
    let got = bytes.len() - header_len;
    if got < expected {
        return Err(DataError::format(
            path,
            format!(
                "truncated: header promises {expected} values ({dims:?}) but the file holds {got}; download the file again"
            ),
        ));
    }
    if got > expected {
        return Err(DataError::format(
            path,
            format!("{} trailing bytes after {expected} values ({dims:?}); the file is not a valid IDX file", got - expected),
        ));
    }
    Ok(IdxTensor {
        dims,
        values: bytes[header_len..].to_vec(),
    })
}

/// Reads an IDX images file (`[N, H, W]` or `[N, D]`) and its labels file (`[N]`).
///
/// Returns a data set with features `[N, H*W]` (raw 0..255 values) and sample shape
/// `[1, H, W]`. `num_classes`: given, or [`infer_classes`].
pub fn read_idx_pair(
    images: &Path,
    labels: &Path,
    num_classes: Option<usize>,
) -> Result<Dataset, DataError> {
    let x = parse_idx(images, &read_maybe_gz(images)?)?;
    let y = parse_idx(labels, &read_maybe_gz(labels)?)?;
    if y.dims.len() != 1 {
        return Err(DataError::format(
            labels,
            format!(
                "a labels file has one dimension, this one has shape {:?}; did you swap images and labels?",
                y.dims
            ),
        ));
    }
    if x.dims.len() < 2 {
        return Err(DataError::format(
            images,
            format!(
                "an images file has at least two dimensions, this one has shape {:?}; did you swap images and labels?",
                x.dims
            ),
        ));
    }
    let n = x.dims[0];
    if y.dims[0] != n {
        return Err(DataError::CountMismatch {
            images: images.to_path_buf(),
            n_images: n,
            labels: labels.to_path_buf(),
            n_labels: y.dims[0],
        });
    }
    let sample_shape: Vec<usize> = if x.dims.len() == 3 {
        vec![1, x.dims[1], x.dims[2]]
    } else {
        x.dims[1..].to_vec()
    };
    let d: usize = sample_shape.iter().product();
    let labels_u32: Vec<u32> = y.values.iter().map(|&v| v as u32).collect();
    let num_classes = infer_classes(labels, &labels_u32, num_classes)?;
    check_label_range(labels, y.values.iter().map(|&v| v as u64), num_classes)?;
    let features = Array2::from_shape_vec((n, d), x.values.iter().map(|&v| v as f32).collect())
        .map_err(|e| DataError::format(images, e.to_string()))?;
    Dataset::new(features, sample_shape, labels_u32, num_classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_bytes(dims: &[u32], values: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, TYPE_U8, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(values);
        out
    }

    #[test]
    fn reads_images_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let xi = dir.path().join("x");
        let yi = dir.path().join("y");
        std::fs::write(&xi, idx_bytes(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7])).unwrap();
        std::fs::write(&yi, idx_bytes(&[2], &[1, 0])).unwrap();
        let ds = read_idx_pair(&xi, &yi, Some(3)).unwrap();
        assert_eq!(ds.sample_shape, vec![1, 2, 2]);
        assert_eq!(ds.features.row(1).to_vec(), vec![4.0, 5.0, 6.0, 7.0]);
        assert_eq!(ds.labels, vec![1, 0]);
    }

    #[test]
    fn truncated_and_mismatched_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let xi = dir.path().join("x");
        let yi = dir.path().join("y");
        std::fs::write(&xi, idx_bytes(&[2, 2, 2], &[0, 1, 2])).unwrap();
        std::fs::write(&yi, idx_bytes(&[2], &[1, 0])).unwrap();
        let err = read_idx_pair(&xi, &yi, None).unwrap_err().to_string();
        assert!(err.contains("truncated") && err.contains("x"), "{err}");

        std::fs::write(&xi, idx_bytes(&[3, 1, 1], &[0, 1, 2])).unwrap();
        let err = read_idx_pair(&xi, &yi, None).unwrap_err().to_string();
        assert!(
            err.contains("3 examples") && err.contains("2 labels"),
            "{err}"
        );

        std::fs::write(&xi, idx_bytes(&[2, 1, 1], &[0, 1])).unwrap();
        std::fs::write(&yi, idx_bytes(&[2], &[1, 9])).unwrap();
        let err = read_idx_pair(&xi, &yi, Some(3)).unwrap_err().to_string();
        assert!(err.contains("label 9"), "{err}");
    }
}
