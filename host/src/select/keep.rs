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
    /// Number of examples kept out of `n`: `round(keep * n)` (0 when the keep is below
    /// `0.5 / n`; a plan refuses it, [`Keep::refuse_empty`]).
    pub fn budget(self, n: usize) -> usize {
        ((self.0 as f64 * n as f64).round() as usize).min(n)
    }

    /// Refuses a keep that keeps no example of `n`, with what to write instead.
    pub fn refuse_empty(self, n: usize) -> Result<usize, String> {
        if n == 0 {
            return Err("the training set is empty; check the data files".into());
        }
        match self.budget(n) {
            0 => Err(format!(
                "keep {:?} keeps round({:?} × {n}) = 0 examples; the smallest keep for these {n} examples is {}",
                self.0,
                self.0,
                Keep::smallest(n)
            )),
            k => Ok(k),
        }
    }

    /// The smallest keep that keeps one example of `n`.
    fn smallest(n: usize) -> f32 {
        let mut keep = (0.5 / n as f64) as f32;
        while Keep(keep).budget(n) == 0 {
            keep = f32::from_bits(keep.to_bits() + 1);
        }
        keep
    }

    /// As file names write it: four decimals when they are exact (`0.1000`), every digit
    /// otherwise (`0.00011`), so that two keeps never share a name.
    pub fn in_full(self) -> String {
        let four = format!("{:.4}", self.0);
        if four.parse::<f32>() == Ok(self.0) {
            four
        } else {
            self.0.to_string()
        }
    }
    pub fn is_full(self) -> bool {
        self.0 >= 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keep_of_no_example_is_refused_with_the_smallest_that_keeps_one() {
        let n = 60_000;
        let tiny = Keep::new(1e-6).unwrap();
        assert_eq!(tiny.budget(n), 0);
        let err = tiny.refuse_empty(n).unwrap_err();
        assert!(err.contains("= 0 examples"), "{err}");
        let smallest: f32 = err.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(Keep::new(smallest).unwrap().refuse_empty(n), Ok(1));
        let below = f32::from_bits(smallest.to_bits() - 1);
        assert_eq!(Keep::new(below).unwrap().budget(n), 0);
        assert_eq!(Keep::new(1.0).unwrap().refuse_empty(n), Ok(n));
    }

    #[test]
    fn file_names_write_a_keep_so_that_two_never_share_one() {
        let name = |k: f32| Keep::new(k).unwrap().in_full();
        assert_eq!(name(0.1), "0.1000");
        assert_eq!(name(1.0), "1.0000");
        assert_eq!(name(0.00011), "0.00011");
        assert_ne!(name(0.00011), name(0.00014));
        assert_ne!(name(0.12345), name(0.1234));
    }
}
