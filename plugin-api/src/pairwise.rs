//! Pairwise products and distances of a group of examples' rows, and each row's nearest
//! neighbours: what the coreset methods (CRAIG, Submodular, D2, Cal) build their graphs from.
//! Behind the `pairwise` feature, which brings the `gemm` crate (AVX-512/AVX2 kernels chosen
//! at run time) and `rayon`.

use rayon::prelude::*;

/// The inner products `[m, m]` of the rows `members` of `x` `[N, d]`, row-major.
pub fn gram(x: &[f32], d: usize, members: &[u32]) -> Vec<f32> {
    let m = members.len();
    let rows: Vec<f32> = members
        .iter()
        .flat_map(|&i| x[i as usize * d..(i as usize + 1) * d].iter().copied())
        .collect();
    let mut gram = vec![0f32; m * m];
    if m > 0 && d > 0 {
        // SAFETY: `rows` is [m, d] row-major (row stride d, column stride 1), read as the
        // left factor and, transposed (row stride 1, column stride d), as the right one;
        // `gram` is [m, m] row-major and distinct from `rows`. gemm reads and writes only
        // inside those shapes, and does not read `gram` (read_dst = false); it computes
        // `0·gram + 1·rows·rowsᵀ`.
        unsafe {
            gemm::gemm(
                m,
                m,
                d,
                gram.as_mut_ptr(),
                1,
                m as isize,
                false,
                rows.as_ptr(),
                1,
                d as isize,
                rows.as_ptr(),
                d as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(rayon::current_num_threads()),
            );
        }
    }
    gram
}

/// Squared Euclidean distances `[m, m]` between the rows `members` of `x` `[N, d]`, from
/// [`gram`] (`‖a‖² + ‖b‖² − 2·a·b`, floored at 0).
pub fn squared_distances(x: &[f32], d: usize, members: &[u32]) -> Vec<f32> {
    let m = members.len();
    let norms: Vec<f32> = members
        .iter()
        .map(|&i| {
            x[i as usize * d..(i as usize + 1) * d]
                .iter()
                .map(|v| v * v)
                .sum()
        })
        .collect();
    let mut out = gram(x, d, members);
    out.par_chunks_mut(m.max(1))
        .enumerate()
        .for_each(|(i, row)| {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (norms[i] + norms[j] - 2.0 * *v).max(0.0);
            }
        });
    out
}

/// Each row's `k` nearest by `dist` `[m, m]` (any distance or its square), itself excluded,
/// ties to the smaller index: `[m][≤ k]`, nearest first. The k smallest by insertion: `k` is
/// small, and most of a row is rejected at one comparison.
pub fn k_nearest(dist: &[f32], m: usize, k: usize) -> Vec<Vec<usize>> {
    let k = k.min(m.saturating_sub(1));
    (0..m)
        .into_par_iter()
        .map(|i| {
            let row = &dist[i * m..(i + 1) * m];
            let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
            for (j, &d) in row.iter().enumerate() {
                if j == i || k == 0 || (best.len() == k && d >= best[k - 1].0) {
                    continue;
                }
                let at = best.partition_point(|&(b, _)| b <= d);
                best.insert(at, (d, j));
                best.truncate(k);
            }
            best.into_iter().map(|(_, j)| j).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_neighbours_by_hand() {
        // 1-d points 0, 1, 3, 7, read through members in another order.
        let x = [3.0f32, 0.0, 7.0, 1.0];
        let members = [1u32, 3, 0, 2];
        let d = squared_distances(&x, 1, &members);
        assert_eq!(&d[..4], &[0.0, 1.0, 9.0, 49.0]);
        assert_eq!(d[2 * 4 + 1], 4.0);
        // Nearest of 0 is 1; of 1, 0; of 3, 1; of 7, 3 (positions in `members`).
        assert_eq!(
            k_nearest(&d, 4, 1),
            vec![vec![1], vec![0], vec![1], vec![2]]
        );
        // k past the group: every other row; k = 0: none.
        assert_eq!(k_nearest(&d, 4, 9)[0], vec![1, 2, 3]);
        assert!(k_nearest(&d, 4, 0).iter().all(Vec::is_empty));
    }
}
