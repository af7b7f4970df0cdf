//! Matrix products split across the cores.
//!
//! A product is cut into [`SPLIT_PARTS`] blocks of rows of the output (or of columns when the
//! output has fewer rows than columns), each computed by one single-threaded product of the
//! `gemm` crate, whose AVX-512 kernels (feature `x86-v4`, chosen at run time; FMA/AVX2 on
//! other CPUs) replaced `matrixmultiply`'s AVX2 ones: the MLP step 62–75k → 99–112k samples/s
//! on the Xeon (docs/performance.md). An element's sum is computed whole by one kernel, and
//! the blocks depend on the product's shape alone, never on the thread count (the `gemm`
//! crate's sums follow the block's shape), so the result is the same bits on any thread count.
//! rayon's pool (`RAYON_NUM_THREADS`) sets the number of cores that run the blocks. Inside [`serial`] (a shard of a
//! data-parallel step, which already has a core to itself) products are not split.
//!
//! Splitting ourselves rather than with `gemm`'s own parallelism or `matrixmultiply`'s
//! threading: those split one product's inner loops, which for the thin products of a
//! training step (a batch of 128 rows) ran at 73 % of the 1024³ rate on 2 cores against 82 %
//! single-threaded (measured with `matrixmultiply`). `faer` 0.24 was slower inside the training
//! step (48–58k against 59–65k samples/s for the MLP on 2 cores).

use ndarray::{ArrayView2, ArrayViewMut2, Axis};

pub use super::parallel::{is_serial, serial};

/// Products smaller than this many multiply-adds run on one core: splitting costs more.
const MIN_SPLIT_WORK: usize = 1 << 16;

/// The blocks a product is cut into outside a shard, whatever the number of threads: the
/// `gemm` crate's sum for an output element depends on the shape of the block it computes
/// (with a column-major `b`, `[32, 32768] × [32768, 16]` whole and as two blocks of 16 rows
/// differ in the last bits), so blocks that followed the thread count made a student's bits
/// depend on it. Two blocks: what two cores computed before, so results made on this project's
/// 2-core machines come out the same on any number of threads.
const SPLIT_PARTS: usize = 2;

/// The precision of a training step's products (`[student] precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 operands and sums.
    #[default]
    F32,
    /// Operands rounded to bf16, sums in f32 ([`super::gemm_bf16`]; AVX512-BF16 CPUs only).
    Bf16,
}

impl Precision {
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }
}

/// `c = alpha · a · b + beta · c`, with `a` `[M, K]`, `b` `[K, N]`, `c` `[M, N]`.
pub fn gemm(
    alpha: f32,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    gemm_in(Precision::F32, alpha, a, b, beta, c);
}

/// [`gemm`] in `precision`.
pub fn gemm_in(
    precision: Precision,
    alpha: f32,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(b.nrows(), k, "inner dimensions");
    assert_eq!(c.dim(), (m, n), "output shape");
    split(
        precision,
        alpha,
        a.view(),
        b.view(),
        beta,
        c.view_mut(),
        if is_serial() { 1 } else { SPLIT_PARTS },
    );
}

fn split(
    precision: Precision,
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c: ArrayViewMut2<'_, f32>,
    parts: usize,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    if parts <= 1 || m * n * k < MIN_SPLIT_WORK || (m < 2 && n < 2) {
        match precision {
            Precision::F32 => leaf(alpha, a, b, beta, c),
            Precision::Bf16 => super::gemm_bf16::product(alpha, a, b, beta, c),
        }
        return;
    }
    let first = parts / 2;
    if m >= n {
        let rows = m * first / parts;
        let (a1, a2) = a.split_at(Axis(0), rows);
        let (c1, c2) = c.split_at(Axis(0), rows);
        rayon::join(
            || split(precision, alpha, a1, b, beta, c1, first),
            || split(precision, alpha, a2, b, beta, c2, parts - first),
        );
    } else {
        let cols = n * first / parts;
        let (b1, b2) = b.split_at(Axis(1), cols);
        let (c1, c2) = c.split_at(Axis(1), cols);
        rayon::join(
            || split(precision, alpha, a, b1, beta, c1, first),
            || split(precision, alpha, a, b2, beta, c2, parts - first),
        );
    }
}

/// One product on this core: read in place ([`super::gemm_in_place`]) where that applies,
/// else by the `gemm` crate; the same bits either way.
fn leaf(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c: ArrayViewMut2<'_, f32>,
) {
    if super::gemm_in_place::applies(alpha, &a, &b, beta, &c) {
        super::gemm_in_place::product(a, b, beta == 1.0, c);
    } else {
        gemm_crate_leaf(alpha, a, b, beta, c);
    }
}

/// `c = a · b` by the `gemm` crate with its own threads (all of rayon's pool) rather than our
/// split: for large square products its threads share one packing of `b`. Only the benchmark's
/// GEMM peak uses it ([`crate::bench::gemm_gflops`] takes the better of the two), since the
/// training step's products run whole within shards.
pub fn gemm_crate_threaded(
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    let (m, k) = a.dim();
    assert_eq!(b.nrows(), k, "inner dimensions");
    assert_eq!(c.dim(), (m, b.ncols()), "output shape");
    crate_product(
        1.0,
        a.view(),
        b.view(),
        0.0,
        c.view_mut(),
        gemm::Parallelism::Rayon(rayon::current_num_threads()),
    );
}

/// One product on this core by the `gemm` crate (AVX-512 kernels where the CPU has them,
/// chosen at run time).
pub(super) fn gemm_crate_leaf(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c: ArrayViewMut2<'_, f32>,
) {
    crate_product(alpha, a, b, beta, c, gemm::Parallelism::None);
}

/// `c = alpha · a · b + beta · c` by the `gemm` crate with `parallelism`.
fn crate_product(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    mut c: ArrayViewMut2<'_, f32>,
    parallelism: gemm::Parallelism,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    if m == 0 || n == 0 {
        return;
    }
    let [a_rs, a_cs] = [a.strides()[0], a.strides()[1]];
    let [b_rs, b_cs] = [b.strides()[0], b.strides()[1]];
    let [c_rs, c_cs] = [c.strides()[0], c.strides()[1]];
    // SAFETY: the pointers and strides are those of live ndarray views of the stated shapes
    // ([m, k], [k, n], [m, n], checked by `gemm`'s asserts and the split), so every element
    // gemm reads or writes is inside its view; `c` is borrowed mutably and does not alias `a`
    // or `b` (a `&mut` view cannot). gemm computes `c = beta_g · c + alpha_g · a · b` and reads
    // `c` only when told to (`read_dst`), so `c` with beta = 0 may hold anything, as in BLAS.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            beta != 0.0,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::linalg::general_mat_mul;
    use ndarray::Array2;

    #[test]
    fn split_product_equals_plain_product() {
        for (m, k, n) in [(300, 50, 40), (7, 300, 500), (1, 3, 2)] {
            let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 3 + j) % 7) as f32 - 3.0);
            let b = Array2::from_shape_fn((k, n), |(i, j)| ((i + 5 * j) % 5) as f32 * 0.5);
            let b_columns = b.t().as_standard_layout().into_owned().reversed_axes();
            let a_strided = Array2::from_shape_fn((m, 2 * k), |(i, j)| a[(i, j / 2)]);
            let a_strided = a_strided.slice(ndarray::s![.., ..;2]);
            for beta in [0.0, 1.0, 0.5] {
                let mut expected = Array2::from_elem((m, n), 1.0f32);
                general_mat_mul(2.0, &a, &b, beta, &mut expected);
                // Row-major, column-major and strided operands; small integers keep every
                // product exact, so the kernels must agree to the bit.
                for (a, b) in [
                    (a.view(), b.view()),
                    (a.view(), b_columns.view()),
                    (a_strided, b.view()),
                ] {
                    let mut c = Array2::from_elem((m, n), 1.0f32);
                    gemm(2.0, &a, &b, beta, &mut c.view_mut());
                    assert_eq!(c, expected, "beta {beta}");
                    let mut c_columns = Array2::from_elem((n, m), 1.0f32).reversed_axes();
                    gemm(2.0, &a, &b, beta, &mut c_columns.view_mut());
                    assert_eq!(c_columns, expected, "beta {beta}, column-major output");
                }
            }
        }
    }

    #[test]
    fn a_product_has_the_same_bits_on_any_thread_count() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // A 1 × 1 convolution's weight gradient (`g · colsᵀ`, `b` column-major), among others.
        for (m, k, n) in [
            (32, 32768, 16),
            (16, 8192, 32),
            (64, 4096, 64),
            (7, 3000, 500),
        ] {
            let a = Array2::from_shape_fn((m, k), |_| rng.gen_range(-1.0f32..1.0));
            let bt = Array2::from_shape_fn((n, k), |_| rng.gen_range(-1.0f32..1.0));
            let b_rows = bt.t().as_standard_layout().into_owned();
            for b in [bt.t(), b_rows.view()] {
                let on = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
                    pool.unwrap().install(|| {
                        let mut c = Array2::zeros((m, n));
                        gemm(1.0, &a.view(), &b, 0.0, &mut c.view_mut());
                        c
                    })
                };
                let one = on(1);
                assert_eq!(one, on(2), "({m}, {k}, {n}), 2 threads");
                assert_eq!(one, on(3), "({m}, {k}, {n}), 3 threads");
            }
        }
    }
}
