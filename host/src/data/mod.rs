//! Data sets: readers (IDX, CSV, NumPy `.npy`/`.npz`, image folders, CIFAR binary) into one
//! [`Dataset`] type, validation, and the student's
//! normalisation.
//!
//! Owns decoding and checking files and the per-channel scaling; does not own where the
//! files are named (the manifest) or what the teacher does with the raw values (the teacher
//! applies its own preprocessing to [`Dataset::features`]).

mod csv;
pub mod dataset;
mod idx;
mod images;
mod load;
pub mod normalise;
pub(crate) mod npy;
pub mod spec;

pub use self::csv::{read_csv, CsvOptions, LabelColumn};
pub use self::dataset::{channels_of, DataError, Dataset};
pub use self::idx::read_idx_pair;
pub use self::images::{read_cifar, read_image_folder};
pub use self::load::load;
pub use self::normalise::Normalisation;
pub use self::npy::{read_npy_pair, read_npz};
