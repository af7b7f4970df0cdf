//! Pairwise products and distances of a group of examples' rows, each row's nearest
//! neighbours, and the farthest-first traversal: what the coreset methods (CRAIG,
//! Submodular, D2, Cal, k-center, Contextual Diversity) build their graphs and covers from.
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

/// The element types [`product`] multiplies.
pub trait Element: Copy + Send + Sync + 'static {
    const ZERO: Self;
    const ONE: Self;
}

impl Element for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
}

impl Element for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
}

/// `a · b` `[m, n]` for `a` `[m, k]` and `b` `[k, n]`, all row-major, on `threads` threads
/// (1 inside a task that already runs beside others).
pub fn product<T: Element>(
    a: &[T],
    b: &[T],
    m: usize,
    k: usize,
    n: usize,
    threads: usize,
) -> Vec<T> {
    assert_eq!(a.len(), m * k, "a is [m, k]");
    assert_eq!(b.len(), k * n, "b is [k, n]");
    let mut out = vec![T::ZERO; m * n];
    if m > 0 && n > 0 && k > 0 {
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: `a` is [m, k] row-major (column stride 1, row stride k), `b` [k, n] (1, n)
        // and `out` [m, n] (1, n), lengths asserted above; `out` is a fresh buffer distinct
        // from both. gemm reads and writes only inside those shapes and does not read `out`
        // (read_dst = false): it computes `1·a·b`.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                1,
                n as isize,
                T::ZERO,
                T::ONE,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
    out
}

/// The inner products `[m, m]` of the members' last-layer gradients `a = [e, e_1·h, …,
/// e_C·h]` (`embeddings/grad`'s layout) from their factors, `e` `[N, C]` and `h` `[N, H]`:
/// `a_i·a_j = (e_i·e_j)·(1 + h_i·h_j)`, two products of widths `C` and `H` instead of one of
/// width `C·(H+1)` (a tenth of the work at `C = 10`, `H = 128`).
pub fn gradient_gram(e: &[f32], c: usize, h: &[f32], dim: usize, members: &[u32]) -> Vec<f32> {
    let mut out = gram(e, c, members);
    let hh = gram(h, dim, members);
    out.par_iter_mut()
        .zip(hh.par_iter())
        .for_each(|(a, &b)| *a *= 1.0 + b);
    out
}

/// Squared Euclidean distances `[m, m]` from inner products `[m, m]`: `G_ii + G_jj − 2·G_ij`,
/// floored at 0.
pub fn squared_distances_from_gram(mut gram: Vec<f32>, m: usize) -> Vec<f32> {
    let norms: Vec<f32> = (0..m).map(|i| gram[i * m + i]).collect();
    gram.par_chunks_mut(m.max(1))
        .enumerate()
        .for_each(|(i, row)| {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (norms[i] + norms[j] - 2.0 * *v).max(0.0);
            }
        });
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

/// The first `k` picks of the farthest-first traversal (greedy k-center) of the rows
/// `members` of `x` `[N, h]` under `distance` (any dissimilarity; the k-center picks use the
/// squared Euclidean distance), starting from `members[first]`: each step adds the member
/// whose smallest distance to those picked is largest (ties: the earlier in `members`).
/// Returns training indices, in the order picked.
pub fn farthest_first<D>(
    x: &[f32],
    h: usize,
    members: &[u32],
    k: usize,
    first: usize,
    distance: D,
) -> Vec<u32>
where
    D: Fn(&[f32], &[f32]) -> f32 + Sync,
{
    let m = members.len();
    let k = k.min(m);
    if k == 0 {
        return Vec::new();
    }
    // The unpicked members' rows side by side (every step reads them all, front to back); a
    // pick is swapped out, so the set read shrinks. `position` keeps each row's place among
    // `members`, which breaks ties as in index order.
    let mut rows: Vec<f32> = members
        .iter()
        .flat_map(|&i| x[i as usize * h..(i as usize + 1) * h].iter().copied())
        .collect();
    let mut min_dist = vec![f32::INFINITY; m];
    let mut position: Vec<usize> = (0..m).collect();
    let mut order = Vec::with_capacity(k);
    let mut next = first;
    loop {
        order.push(members[position[next]]);
        let center = rows[next * h..(next + 1) * h].to_vec();
        let last = position.len() - 1;
        rows.copy_within(last * h..(last + 1) * h, next * h);
        rows.truncate(last * h);
        min_dist.swap_remove(next);
        position.swap_remove(next);
        if order.len() == k {
            return order;
        }
        // One task per 4096 rows: a class is covered on one core (classes run in parallel).
        min_dist
            .par_iter_mut()
            .with_min_len(4096)
            .enumerate()
            .for_each(|(a, d)| *d = d.min(distance(&rows[a * h..(a + 1) * h], &center)));
        next = (0..position.len())
            .max_by(|&a, &b| {
                min_dist[a]
                    .total_cmp(&min_dist[b])
                    .then(position[b].cmp(&position[a]))
            })
            .expect("k <= members");
    }
}

/// [`farthest_first`] in each of `groups` (`(members, quota)`, as
/// [`crate::records::selection_groups`] gives them), each started from a member drawn from one
/// seeded stream in group order, the groups covered in parallel: the picks, group by group.
pub fn farthest_first_by_group<D>(
    x: &[f32],
    h: usize,
    groups: &[(Vec<u32>, usize)],
    seed: u64,
    distance: D,
) -> Vec<u32>
where
    D: Fn(&[f32], &[f32]) -> f32 + Sync,
{
    let mut rng = crate::records::SplitMix64(seed);
    let firsts: Vec<usize> = groups
        .iter()
        .map(|(g, _)| rng.below(g.len().max(1)))
        .collect();
    let picked: Vec<Vec<u32>> = groups
        .par_iter()
        .zip(firsts)
        .map(|((members, quota), first)| farthest_first(x, h, members, *quota, first, &distance))
        .collect();
    picked.concat()
}

/// A candidate's gain bound in a lazy greedy's max-heap: the larger gain first, then the
/// smaller position (NumPy's `argmax` on ties, as DeepCore's greedy takes them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GainBound(pub f64, pub usize);

impl Eq for GainBound {}

impl Ord for GainBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

impl PartialOrd for GainBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_products_from_their_factors() {
        // e = (1, −1), h = (2); e' = (0.5, 0.5), h' = (−1): a = (1, −1, 2, −2),
        // a' = (0.5, 0.5, −0.5, −0.5). a·a = 10, a'·a' = 1, a·a' = 0 (e·e' = 0).
        let e = [1.0f32, -1.0, 0.5, 0.5];
        let h = [2.0f32, -1.0];
        let g = gradient_gram(&e, 2, &h, 1, &[0, 1]);
        assert_eq!(g, vec![10.0, 0.0, 0.0, 1.0]);
        assert_eq!(
            squared_distances_from_gram(g, 2),
            vec![0.0, 11.0, 11.0, 0.0]
        );
    }

    #[test]
    fn products_by_hand() {
        // [[1, 2, 3], [4, 5, 6]] · [[1, 0], [0, 1], [1, 1]] = [[4, 5], [10, 11]].
        let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0f64, 0.0, 0.0, 1.0, 1.0, 1.0];
        assert_eq!(product(&a, &b, 2, 3, 2, 1), vec![4.0, 5.0, 10.0, 11.0]);
        let (a32, b32): (Vec<f32>, Vec<f32>) = (
            a.iter().map(|&v| v as f32).collect(),
            b.iter().map(|&v| v as f32).collect(),
        );
        assert_eq!(product(&a32, &b32, 2, 3, 2, 2), vec![4.0, 5.0, 10.0, 11.0]);
    }

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
