//! What the manifest says of the data, checked: where the files are (`DataSource`), how the
//! test set is made (`Holdout`), the student's preprocessing (`NormaliseSpec`).

use std::path::PathBuf;

use super::csv::LabelColumn;
use super::normalise::Normalisation;

/// Where the data come from.
#[derive(Debug, Clone)]
pub enum DataSource {
    Idx {
        train_images: PathBuf,
        train_labels: PathBuf,
        test: Option<(PathBuf, PathBuf)>,
    },
    /// Features and labels as two `.npy` files each.
    Npy {
        train_features: PathBuf,
        train_labels: PathBuf,
        test: Option<(PathBuf, PathBuf)>,
    },
    /// torchvision `ImageFolder` trees (`<root>/<class>/<image>`); decoded images cached in
    /// `cache`.
    ImageFolder {
        train: PathBuf,
        test: Option<PathBuf>,
        cache: PathBuf,
    },
    /// CIFAR binary records: `label_bytes` 1 (CIFAR-10) or 2 (CIFAR-100, fine label).
    Cifar {
        train: Vec<PathBuf>,
        test: Option<Vec<PathBuf>>,
        label_bytes: usize,
        classes: usize,
    },
    /// Arrays `x` and `y` of a `.npz` file each.
    Npz {
        train: PathBuf,
        test: Option<PathBuf>,
    },
    Csv {
        train: PathBuf,
        test: Option<PathBuf>,
        label: LabelColumn,
        header: Option<bool>,
        delimiter: u8,
        classes: Option<Vec<String>>,
        sample_shape: Option<Vec<usize>>,
    },
}

/// How the test set is made when no test file is given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Holdout {
    /// A seeded random fraction of the training file.
    Fraction(f64),
    /// The last rows of the training file.
    Last(usize),
}

/// The student's preprocessing of the data.
#[derive(Debug, Clone, PartialEq)]
pub enum NormaliseSpec {
    Fixed(Normalisation),
    /// Per-feature mean and std fitted on the training set after `scale`.
    Standardize {
        scale: f32,
    },
}

#[derive(Debug, Clone)]
pub struct DataSpec {
    pub source: DataSource,
    pub num_classes: Option<usize>,
    pub holdout: Option<Holdout>,
    pub normalise: NormaliseSpec,
}

impl DataSource {
    /// Whether test files are named (else the test set is a holdout of the training file).
    pub fn has_test_files(&self) -> bool {
        match self {
            DataSource::Idx { test, .. } | DataSource::Npy { test, .. } => test.is_some(),
            DataSource::Csv { test, .. }
            | DataSource::Npz { test, .. }
            | DataSource::ImageFolder { test, .. } => test.is_some(),
            DataSource::Cifar { test, .. } => test.is_some(),
        }
    }
}

impl NormaliseSpec {
    /// The normalisation itself: the fixed one, or mean and std fitted on `train` `[N, D]`.
    pub fn resolve(&self, train: &super::dataset::Dataset) -> Normalisation {
        match self {
            NormaliseSpec::Fixed(n) => n.clone(),
            NormaliseSpec::Standardize { scale } => {
                Normalisation::fit(train.features.view(), *scale)
            }
        }
    }
}
