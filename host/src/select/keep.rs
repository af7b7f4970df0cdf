//! `Keep`: the fraction of the training set a method keeps, in (0, 1] (the paper's f), and the
//! number of examples it means.

use serde::Serialize;

/// Fraction of the training set that is KEPT, in (0, 1]. `1.0` is the full set.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Keep(f32);

impl Keep {
    pub fn new(value: f32) -> Option<Self> {
        (value > 0.0 && value <= 1.0).then_some(Self(value))
    }
    pub fn get(self) -> f32 {
        self.0
    }
    /// Number of examples kept out of `n`: `round(keep * n)`, at least 1.
    pub fn budget(self, n: usize) -> usize {
        ((self.0 as f64 * n as f64).round() as usize).clamp(1, n.max(1))
    }
    pub fn is_full(self) -> bool {
        self.0 >= 1.0
    }
}
