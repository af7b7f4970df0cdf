//! Image data: folders in torchvision's `ImageFolder` layout (`<root>/<class>/<image>`, PNG
//! or JPEG, classes in sorted order, decoded in parallel by the `image` crate, with a decoded
//! cache so a second run does not decode again) and the CIFAR-10/100 binary format (records
//! of label bytes then 3072 bytes of 32 × 32 RGB planes). Examples are `[C, H, W]` with values
//! 0..255: 1 channel when every image is greyscale, 3 otherwise.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::dataset::{DataError, Dataset};

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// Image files with their class index.
type Labelled = Vec<(PathBuf, u32)>;

/// The class folders of `root`, sorted, and each image file with its class.
fn list(root: &Path, classes: Option<&[String]>) -> Result<(Vec<String>, Labelled), DataError> {
    let io = |source| DataError::Io {
        path: root.to_path_buf(),
        source,
    };
    let mut found: Vec<String> = std::fs::read_dir(root)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(DataError::format(
            root,
            "has no class folders; the layout is <root>/<class>/<image>.png|jpg",
        ));
    }
    let classes: Vec<String> = match classes {
        Some(train) => {
            if let Some(extra) = found.iter().find(|c| !train.contains(c)) {
                return Err(DataError::format(
                    root,
                    format!(
                        "class folder {extra:?} is not a class of the training set ({})",
                        train.join(", ")
                    ),
                ));
            }
            train.to_vec()
        }
        None => found.clone(),
    };
    let mut files = Vec::new();
    for name in &found {
        let label = classes
            .iter()
            .position(|c| c == name)
            .expect("checked above") as u32;
        let dir = root.join(name);
        let mut images: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|source| DataError::Io {
                path: dir.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        images.sort();
        files.extend(images.into_iter().map(|p| (p, label)));
    }
    if files.is_empty() {
        return Err(DataError::format(
            root,
            "has class folders but no .png or .jpg images in them",
        ));
    }
    Ok((classes, files))
}

/// The cache key of a listing: names, sizes and modification times of the files.
fn listing_key(files: &[(PathBuf, u32)], classes: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(b"image-folder-1");
    for c in classes {
        h.update(c.as_bytes());
        h.update([0]);
    }
    for (p, label) in files {
        h.update(p.to_string_lossy().as_bytes());
        h.update(label.to_le_bytes());
        if let Ok(m) = std::fs::metadata(p) {
            h.update(m.len().to_le_bytes());
            if let Ok(t) = m.modified().and_then(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_err(std::io::Error::other)
            }) {
                h.update(t.as_nanos().to_le_bytes());
            }
        }
    }
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decoded images `[N, C·H·W]` (u8) and their example shape.
fn decode(files: &[(PathBuf, u32)]) -> Result<(Vec<u8>, [usize; 3]), DataError> {
    let bar = crate::progress::bar(files.len() as u64, "decoding images");
    let decoded: Vec<image::DynamicImage> = files
        .par_iter()
        .map(|(p, _)| {
            let img = image::open(p).map_err(|e| {
                DataError::format(p, format!("cannot decode: {}", crate::one_line(e)))
            });
            bar.inc(1);
            img
        })
        .collect::<Result<_, _>>()?;
    bar.finish_and_clear();
    let (w, h) = (decoded[0].width() as usize, decoded[0].height() as usize);
    if let Some(i) = decoded
        .iter()
        .position(|d| d.width() as usize != w || d.height() as usize != h)
    {
        return Err(DataError::format(
            &files[i].0,
            format!(
                "is {}×{} but {} is {w}×{h}; every image must have one size (resize them first)",
                decoded[i].width(),
                decoded[i].height(),
                files[0].0.display()
            ),
        ));
    }
    let grey = decoded.iter().all(|d| d.color().channel_count() <= 2);
    let c = if grey { 1 } else { 3 };
    let per = c * h * w;
    let mut out = vec![0u8; files.len() * per];
    out.par_chunks_mut(per)
        .zip(decoded.par_iter())
        .for_each(|(dst, img)| {
            if grey {
                dst.copy_from_slice(img.to_luma8().as_raw());
            } else {
                // HWC → CHW planes.
                let rgb = img.to_rgb8();
                for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
                    for ch in 0..3 {
                        dst[ch * h * w + i] = px[ch];
                    }
                }
            }
        });
    Ok((out, [c, h, w]))
}

fn to_dataset(
    pixels: &[u8],
    shape: [usize; 3],
    labels: Vec<u32>,
    classes: usize,
    path: &Path,
) -> Result<Dataset, DataError> {
    let d = shape.iter().product::<usize>();
    let n = labels.len();
    let features = Array2::from_shape_vec((n, d), pixels.iter().map(|&v| v as f32).collect())
        .map_err(|e| DataError::format(path, e.to_string()))?;
    Dataset::new(features, shape.to_vec(), labels, classes)
        .map_err(|e| DataError::format(path, e.to_string()))
}

/// An `ImageFolder` tree as a data set, with its class names; `classes` (the training set's)
/// for a test folder; decoded images cached under `cache` when given.
pub fn read_image_folder(
    root: &Path,
    classes: Option<&[String]>,
    cache: Option<&Path>,
) -> Result<(Dataset, Vec<String>), DataError> {
    let (classes, files) = list(root, classes)?;
    let labels: Vec<u32> = files.iter().map(|(_, l)| *l).collect();
    let cache_file = cache.map(|dir| {
        dir.join(format!(
            "images-{}.safetensors",
            listing_key(&files, &classes)
        ))
    });
    if let Some(path) = &cache_file {
        if let Some((pixels, shape)) = read_cache(path, files.len()) {
            tracing::info!(folder = %root.display(), cache = %path.display(), "decoded images from the cache");
            return Ok((
                to_dataset(&pixels, shape, labels, classes.len(), root)?,
                classes,
            ));
        }
    }
    let (pixels, shape) = decode(&files)?;
    if let Some(path) = &cache_file {
        if let Err(e) = write_cache(path, &pixels, shape, files.len()) {
            tracing::warn!(cache = %path.display(), "the decoded images could not be cached ({e}); going on");
        }
    }
    Ok((
        to_dataset(&pixels, shape, labels, classes.len(), root)?,
        classes,
    ))
}

fn read_cache(path: &Path, n: usize) -> Option<(Vec<u8>, [usize; 3])> {
    let bytes = std::fs::read(path).ok()?;
    let file = safetensors::SafeTensors::deserialize(&bytes).ok()?;
    let t = file.tensor("pixels").ok()?;
    match t.shape() {
        [m, c, h, w] if *m == n => Some((t.data().to_vec(), [*c, *h, *w])),
        _ => None,
    }
}

fn write_cache(path: &Path, pixels: &[u8], shape: [usize; 3], n: usize) -> Result<(), String> {
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::U8,
        vec![n, shape[0], shape[1], shape[2]],
        pixels,
    )
    .map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    safetensors::serialize_to_file([("pixels", view)], None, &tmp).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

/// CIFAR-10 (`label_bytes = 1`) or CIFAR-100 (`2`: coarse then fine; the fine label is used)
/// binary files, concatenated.
pub fn read_cifar(
    files: &[PathBuf],
    label_bytes: usize,
    num_classes: usize,
) -> Result<Dataset, DataError> {
    const PIXELS: usize = 3 * 32 * 32;
    let record = label_bytes + PIXELS;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        super::dataset::regular_file(path)?;
        let bytes = std::fs::read(path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        if bytes.is_empty() || bytes.len() % record != 0 {
            return Err(DataError::format(
                path,
                format!("{} bytes is not a whole number of {record}-byte CIFAR records; the file is truncated or not CIFAR-{}", bytes.len(), if label_bytes == 1 { 10 } else { 100 }),
            ));
        }
        for (i, r) in bytes.chunks_exact(record).enumerate() {
            let label = r[label_bytes - 1] as usize;
            if label >= num_classes {
                return Err(DataError::LabelOutOfRange {
                    path: path.clone(),
                    index: i,
                    label: label as u64,
                    num_classes,
                });
            }
            labels.push(label as u32);
            pixels.extend_from_slice(&r[label_bytes..]);
        }
    }
    let path = files.first().cloned().unwrap_or_default();
    to_dataset(&pixels, [3, 32, 32], labels, num_classes, &path)
}
