//! From the manifest's `[data]` to train and test sets: the readers, then the test split
//! (test files, or a holdout of the training file).

use super::csv::{read_csv, CsvOptions};
use super::dataset::{DataError, Dataset};
use super::idx::read_idx_pair;
use super::images::{read_cifar, read_image_folder};
use super::npy::{read_npy_pair, read_npz};
use super::spec::{DataSource, DataSpec, Holdout};

/// Train and test sets as the manifest describes them, before the student's normalisation.
pub fn load(spec: &DataSpec, seed: u64) -> Result<(Dataset, Dataset), DataError> {
    let (train, test) = read_sets(spec)?;
    test_split(train, test, spec.holdout, seed)
}

/// The training set and, when files are named, the test set, each by its format's reader
/// (the test set read with the training set's classes).
fn read_sets(spec: &DataSpec) -> Result<(Dataset, Option<Dataset>), DataError> {
    Ok(match &spec.source {
        DataSource::Idx {
            train_images,
            train_labels,
            test,
        } => {
            let train = read_idx_pair(train_images, train_labels, spec.num_classes)?;
            let test = match test {
                Some((x, y)) => Some(read_idx_pair(x, y, Some(train.num_classes))?),
                None => None,
            };
            (train, test)
        }
        DataSource::Npy {
            train_features,
            train_labels,
            test,
        } => {
            let train = read_npy_pair(train_features, train_labels, spec.num_classes)?;
            let test = match test {
                Some((x, y)) => Some(read_npy_pair(x, y, Some(train.num_classes))?),
                None => None,
            };
            (train, test)
        }
        DataSource::ImageFolder { train, test, cache } => {
            let (train_set, classes) = read_image_folder(train, None, Some(cache))?;
            let test_set = match test {
                Some(path) => Some(read_image_folder(path, Some(&classes), Some(cache))?.0),
                None => None,
            };
            (train_set, test_set)
        }
        DataSource::Cifar {
            train,
            test,
            label_bytes,
            classes,
        } => {
            let train_set = read_cifar(train, *label_bytes, *classes)?;
            let test_set = match test {
                Some(files) => Some(read_cifar(files, *label_bytes, *classes)?),
                None => None,
            };
            (train_set, test_set)
        }
        DataSource::Npz { train, test } => {
            let train = read_npz(train, spec.num_classes)?;
            let test = match test {
                Some(path) => Some(read_npz(path, Some(train.num_classes))?),
                None => None,
            };
            (train, test)
        }
        DataSource::Csv {
            train,
            test,
            label,
            header,
            delimiter,
            classes,
            sample_shape,
        } => {
            let mut options = CsvOptions {
                label: label.clone(),
                header: *header,
                delimiter: *delimiter,
                classes: classes.clone(),
                num_classes: spec.num_classes,
                sample_shape: sample_shape.clone(),
            };
            let (train_set, names) = read_csv(train, &options)?;
            let test_set = match test {
                Some(path) => {
                    options.classes = names.or(options.classes);
                    options.num_classes = Some(train_set.num_classes);
                    Some(read_csv(path, &options)?.0)
                }
                None => None,
            };
            (train_set, test_set)
        }
    })
}

/// The test set: the test files' (shapes checked against training), or a holdout of the
/// training file — its last `k` rows, or a fraction drawn by `seed`.
fn test_split(
    train: Dataset,
    test: Option<Dataset>,
    holdout: Option<Holdout>,
    seed: u64,
) -> Result<(Dataset, Dataset), DataError> {
    match (test, holdout) {
        (Some(test), _) => {
            if test.sample_shape != train.sample_shape {
                return Err(DataError::Invalid(format!(
                    "test examples have shape {:?} but training examples {:?}",
                    test.sample_shape, train.sample_shape
                )));
            }
            Ok((train, test))
        }
        (None, Some(Holdout::Last(k))) => {
            if k >= train.len() {
                return Err(DataError::Invalid(format!(
                    "[data] holdout_last = {k} leaves no training examples out of {}",
                    train.len()
                )));
            }
            let test_idx: Vec<u32> = ((train.len() - k) as u32..train.len() as u32).collect();
            Ok(train.split(&test_idx))
        }
        (None, Some(Holdout::Fraction(f))) => {
            use rand::seq::SliceRandom;
            use rand::SeedableRng;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x0068_6f6c_646f_7574);
            let mut idx: Vec<u32> = (0..train.len() as u32).collect();
            idx.shuffle(&mut rng);
            let k = ((train.len() as f64 * f).round() as usize).clamp(1, train.len() - 1);
            let mut test_idx = idx[..k].to_vec();
            test_idx.sort_unstable();
            Ok(train.split(&test_idx))
        }
        (None, None) => Err(DataError::Invalid(
            "[data] needs test files or a holdout".into(),
        )),
    }
}
