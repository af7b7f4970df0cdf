//! The distillation term's settings: the weight `Alpha` in [0, 1] and the temperature
//! `Temperature` > 0, valid by construction, and `Kd`, the pair one training run uses.

use serde::Serialize;

/// Weight of the distillation term in [0, 1]; 0 is training on hard labels only.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Alpha(f32);

impl Alpha {
    pub fn new(value: f32) -> Option<Self> {
        (0.0..=1.0).contains(&value).then_some(Self(value))
    }
    pub fn get(self) -> f32 {
        self.0
    }
    pub fn needs_teacher(self) -> bool {
        self.0 > 0.0
    }
}

/// Softmax temperature τ of the distillation term, in (0, [`Temperature::MAX`]].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Temperature(f32);

impl Temperature {
    /// The largest τ: the KD term is scaled by τ², and much past this the soft labels of any
    /// teacher are uniform to f32 (papers use 1 to 20).
    pub const MAX: f32 = 100.0;

    pub fn new(value: f32) -> Option<Self> {
        (value > 0.0 && value <= Self::MAX).then_some(Self(value))
    }
    pub fn get(self) -> f32 {
        self.0
    }
}

/// Distillation settings of one run.
#[derive(Debug, Clone, Copy)]
pub struct Kd {
    pub alpha: Alpha,
    pub temperature: Temperature,
}
