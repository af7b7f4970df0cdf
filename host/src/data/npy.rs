//! NumPy arrays as data (through `ndarray-npy`): features `[N, ...]` of uint8, float32 or
//! float64 in a `.npy` file (or array `x` of a `.npz`), labels `[N]` of any integer type (or
//! array `y`). Features `[N, C, H, W]` keep their example shape; `[N, D]` are flat.

use std::fs::File;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{NpzReader, ReadNpyError, ReadNpyExt, ReadNpzError, ReadableElement};

use super::dataset::{check_label_range, infer_classes, regular_file, DataError, Dataset};

/// A `.npy` file or one array of a `.npz`.
enum Source<'a> {
    Npy(&'a Path),
    Npz(&'a Path, &'a str),
}

impl Source<'_> {
    fn path(&self) -> &Path {
        match self {
            Source::Npy(p) | Source::Npz(p, _) => p,
        }
    }

    fn what(&self) -> String {
        match self {
            Source::Npy(_) => String::new(),
            Source::Npz(_, name) => format!("array {name:?}: "),
        }
    }

    /// The array as `T`, `Ok(None)` when it holds another element type.
    fn read<T: ReadableElement>(&self) -> Result<Option<ArrayD<T>>, DataError> {
        let path = self.path();
        let err = |m: String| DataError::format(path, format!("{}{m}", self.what()));
        match self {
            Source::Npy(p) => {
                regular_file(p)?;
                let file = File::open(p).map_err(|source| DataError::Io {
                    path: p.to_path_buf(),
                    source,
                })?;
                match ArrayD::<T>::read_npy(file) {
                    Ok(a) => Ok(Some(a)),
                    Err(ReadNpyError::WrongDescriptor(_)) => Ok(None),
                    Err(e) => Err(err(format!(
                        "not a readable .npy array: {}",
                        crate::one_line(e)
                    ))),
                }
            }
            Source::Npz(p, name) => {
                regular_file(p)?;
                let file = File::open(p).map_err(|source| DataError::Io {
                    path: p.to_path_buf(),
                    source,
                })?;
                let mut npz = NpzReader::new(file)
                    .map_err(|e| err(format!("not a readable .npz: {}", crate::one_line(e))))?;
                let names = npz.names().map_err(|e| err(crate::one_line(e)))?;
                let entry = names
                    .iter()
                    .find(|n| n.as_str() == *name || n.strip_suffix(".npy") == Some(name))
                    .cloned()
                    .ok_or_else(|| {
                        err(format!(
                            "not in the file, whose arrays are {}; name them x (features) and y (labels)",
                            names.join(", ")
                        ))
                    })?;
                match npz.by_name::<ndarray::OwnedRepr<T>, IxDyn>(&entry) {
                    Ok(a) => Ok(Some(a)),
                    Err(ReadNpzError::Npy(ReadNpyError::WrongDescriptor(_))) => Ok(None),
                    Err(e) => Err(err(format!("not a readable array: {}", crate::one_line(e)))),
                }
            }
        }
    }

    /// Features as f32, from uint8, float32 or float64.
    fn features(&self) -> Result<ArrayD<f32>, DataError> {
        if let Some(a) = self.read::<u8>()? {
            return Ok(a.mapv(f32::from));
        }
        if let Some(a) = self.read::<f32>()? {
            return Ok(a);
        }
        if let Some(a) = self.read::<f64>()? {
            return Ok(a.mapv(|v| v as f32));
        }
        Err(DataError::format(
            self.path(),
            format!("{}features must be uint8, float32 or float64", self.what()),
        ))
    }

    /// Labels as i64, from any integer type.
    fn labels(&self) -> Result<ArrayD<i64>, DataError> {
        macro_rules! try_int {
            ($($t:ty),*) => {$(
                if let Some(a) = self.read::<$t>()? {
                    return Ok(a.mapv(|v| v as i64));
                }
            )*};
        }
        if let Some(a) = self.read::<i64>()? {
            return Ok(a);
        }
        try_int!(i32, i16, i8, u8, u16, u32);
        if let Some(a) = self.read::<u64>()? {
            return Ok(a.mapv(|v| v.min(i64::MAX as u64) as i64));
        }
        Err(DataError::format(
            self.path(),
            format!("{}labels must be integers (class indices)", self.what()),
        ))
    }
}

fn dataset(
    x: ArrayD<f32>,
    y: ArrayD<i64>,
    x_path: &Path,
    y_path: &Path,
    num_classes: Option<usize>,
) -> Result<Dataset, DataError> {
    if x.ndim() < 2 {
        return Err(DataError::format(
            x_path,
            format!(
                "features have shape {:?}; expected [N, ...] with at least 2 dimensions",
                x.shape()
            ),
        ));
    }
    if y.ndim() != 1 {
        return Err(DataError::format(
            y_path,
            format!("labels have shape {:?}; expected [N]", y.shape()),
        ));
    }
    let n = x.shape()[0];
    if y.len() != n {
        return Err(DataError::CountMismatch {
            images: x_path.to_path_buf(),
            n_images: n,
            labels: y_path.to_path_buf(),
            n_labels: y.len(),
        });
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        let d = x.len() / n.max(1);
        return Err(DataError::format(
            x_path,
            format!(
                "example {}, value {}: {} is not finite",
                i / d.max(1),
                i % d.max(1),
                x.as_slice_memory_order().map_or(f32::NAN, |s| s[i])
            ),
        ));
    }
    if let Some((i, &v)) = y.iter().enumerate().find(|(_, &v)| v < 0) {
        return Err(DataError::format(
            y_path,
            format!("example {i}: negative label {v}"),
        ));
    }
    let sample_shape = x.shape()[1..].to_vec();
    let d: usize = sample_shape.iter().product();
    let labels: Vec<u32> = match y.iter().find(|&&v| v > u32::MAX as i64) {
        Some(v) => {
            return Err(DataError::format(
                y_path,
                format!("a label of {v}: more than 65536 classes; check the labels or set [data] num_classes"),
            ))
        }
        None => y.iter().map(|&v| v as u32).collect(),
    };
    let classes = infer_classes(y_path, &labels, num_classes)?;
    check_label_range(y_path, y.iter().map(|&v| v as u64), classes)?;
    let features = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((n, d))
        .map_err(|e| DataError::format(x_path, e.to_string()))?;
    Dataset::new(features, sample_shape, labels, classes)
        .map_err(|e| DataError::format(x_path, e.to_string()))
}

/// Features and labels from two `.npy` files.
pub fn read_npy_pair(x: &Path, y: &Path, num_classes: Option<usize>) -> Result<Dataset, DataError> {
    let features = Source::Npy(x).features()?;
    let labels = Source::Npy(y).labels()?;
    dataset(features, labels, x, y, num_classes)
}

/// Features `x` and labels `y` of a `.npz` file.
pub fn read_npz(path: &Path, num_classes: Option<usize>) -> Result<Dataset, DataError> {
    let features = Source::Npz(path, "x").features()?;
    let labels = Source::Npz(path, "y").labels()?;
    dataset(features, labels, path, path, num_classes)
}

/// A float matrix `[N, C]` (float32 or float64) from a `.npy` file: a teacher's outputs made
/// elsewhere. The error is one line that names the file.
pub fn read_f32_matrix(path: &Path) -> Result<ndarray::Array2<f32>, DataError> {
    let source = Source::Npy(path);
    let values = match source.read::<f32>()? {
        Some(a) => a,
        None => source
            .read::<f64>()?
            .map(|a| a.mapv(|v| v as f32))
            .ok_or_else(|| DataError::format(path, "must hold float32 or float64 values"))?,
    };
    let shape = values.shape().to_vec();
    values.into_dimensionality::<ndarray::Ix2>().map_err(|_| {
        DataError::format(
            path,
            format!("has shape {shape:?}; a teacher's outputs are [examples, classes]"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array1, Array4};
    use ndarray_npy::{NpzWriter, WriteNpyExt};

    #[test]
    fn reads_uint8_images_and_int_labels_in_npy_and_npz() {
        let dir = tempfile::tempdir().unwrap();
        let x = Array4::<u8>::from_shape_fn((3, 1, 2, 2), |(i, _, h, w)| (i * 4 + h * 2 + w) as u8);
        let y: Array1<i16> = array![0, 2, 1];
        let (xp, yp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
        x.write_npy(File::create(&xp).unwrap()).unwrap();
        y.write_npy(File::create(&yp).unwrap()).unwrap();
        let ds = read_npy_pair(&xp, &yp, None).unwrap();
        assert_eq!(ds.sample_shape, vec![1, 2, 2]);
        assert_eq!(ds.labels, vec![0, 2, 1]);
        assert_eq!(ds.num_classes, 3);
        assert_eq!(ds.features.row(2).to_vec(), vec![8.0, 9.0, 10.0, 11.0]);

        let zp = dir.path().join("d.npz");
        let mut npz = NpzWriter::new(File::create(&zp).unwrap());
        npz.add_array("x", &x.mapv(|v| v as f64)).unwrap();
        npz.add_array("y", &y.mapv(|v| v as u64)).unwrap();
        npz.finish().unwrap();
        let ds2 = read_npz(&zp, None).unwrap();
        assert_eq!(ds2.features, ds.features);
        assert_eq!(ds2.labels, ds.labels);
    }

    #[test]
    fn bad_arrays_name_the_file_and_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let (xp, yp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
        array![[0.5f32, f32::NAN], [1.0, 2.0]]
            .write_npy(File::create(&xp).unwrap())
            .unwrap();
        array![0i64, 1]
            .write_npy(File::create(&yp).unwrap())
            .unwrap();
        let err = read_npy_pair(&xp, &yp, None).unwrap_err().to_string();
        assert!(
            err.contains("x.npy") && err.contains("example 0, value 1"),
            "{err}"
        );
        array![[0.5f32, 1.0], [1.0, 2.0]]
            .write_npy(File::create(&xp).unwrap())
            .unwrap();
        array![0.5f32, 1.0]
            .write_npy(File::create(&yp).unwrap())
            .unwrap();
        let err = read_npy_pair(&xp, &yp, None).unwrap_err().to_string();
        assert!(err.contains("labels must be integers"), "{err}");
        array![0i64, 1, 1]
            .write_npy(File::create(&yp).unwrap())
            .unwrap();
        let err = read_npy_pair(&xp, &yp, None).unwrap_err().to_string();
        assert!(
            err.contains("2 examples but") && err.contains("3 labels"),
            "{err}"
        );
        std::fs::write(&xp, b"not numpy").unwrap();
        let err = read_npy_pair(&xp, &yp, None).unwrap_err().to_string();
        assert!(
            err.contains("x.npy") && err.contains("not a readable .npy"),
            "{err}"
        );
    }
}
