//! Training-time image augmentation on a batch `[B, C·H·W]` of examples `[C, H, W]`:
//! random crop with zero padding (a shift of up to `padding` pixels each way, as
//! `RandomCrop(size, padding)`) and horizontal flip with probability 1/2.
//!
//! Works on the student's normalised values: the padding is 0, which is the data mean after
//! standardisation.

use ndarray::ArrayViewMut2;
use rand::Rng;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Augment {
    pub crop_padding: usize,
    pub flip: bool,
    /// Run the teacher on every augmented batch (soft labels of the images the student
    /// sees) instead of using the cached soft labels of the un-augmented images.
    pub online_teacher: bool,
}

impl Augment {
    pub fn is_active(&self) -> bool {
        self.crop_padding > 0 || self.flip
    }

    /// Augments every row of `batch` in place.
    pub fn apply(&self, mut batch: ArrayViewMut2<'_, f32>, shape: [usize; 3], rng: &mut impl Rng) {
        let [c, h, w] = shape;
        let p = self.crop_padding as isize;
        let mut scratch = vec![0f32; c * h * w];
        for mut row in batch.rows_mut() {
            let dy = if p > 0 { rng.gen_range(-p..=p) } else { 0 };
            let dx = if p > 0 { rng.gen_range(-p..=p) } else { 0 };
            let flip = self.flip && rng.gen::<bool>();
            if dy == 0 && dx == 0 && !flip {
                continue;
            }
            let src = row
                .as_slice()
                .expect("rows of a standard-layout batch are contiguous");
            for ci in 0..c {
                for y in 0..h {
                    let sy = y as isize + dy;
                    for x in 0..w {
                        let xx = if flip { w - 1 - x } else { x };
                        let sx = xx as isize + dx;
                        scratch[(ci * h + y) * w + x] =
                            if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                                src[(ci * h + sy as usize) * w + sx as usize]
                            } else {
                                0.0
                            };
                    }
                }
            }
            row.as_slice_mut()
                .expect("contiguous")
                .copy_from_slice(&scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::SeedableRng;

    #[test]
    fn flip_reverses_columns_and_crop_shifts() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let original = Array2::from_shape_vec((1, 6), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        // Over many draws, a flip-only augmentation gives either the row or its mirror.
        let mut seen_flip = false;
        for _ in 0..20 {
            let mut b = original.clone();
            Augment {
                crop_padding: 0,
                flip: true,
                online_teacher: false,
            }
            .apply(b.view_mut(), [1, 2, 3], &mut rng);
            let v = b.row(0).to_vec();
            assert!(
                v == vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0] || v == vec![3.0, 2.0, 1.0, 6.0, 5.0, 4.0],
                "{v:?}"
            );
            seen_flip |= v[0] == 3.0;
        }
        assert!(seen_flip);
        // A crop keeps values or pads with zeros; it never invents values.
        for _ in 0..20 {
            let mut b = original.clone();
            Augment {
                crop_padding: 1,
                flip: false,
                online_teacher: false,
            }
            .apply(b.view_mut(), [1, 2, 3], &mut rng);
            assert!(b
                .iter()
                .all(|v| *v == 0.0 || original.iter().any(|o| o == v)));
        }
    }
}
