//! f32 products on AVX-512 or AVX2 that read their operands where they lie, without packing:
//! `c = a · b` or `c += a · b`, with `b` `[K, N]` and `c` `[M, N]` row-major and `a` `[M, K]`
//! of any strides.
//!
//! Why: the `gemm` crate packs both operands of every product and pads narrow outputs to its
//! 64-row register block; for an output a few columns wide (the classifier layer, `[B, 10]`)
//! that costs more than the product. Rows of a row-major `b` are already what a kernel with
//! vectors along `N` loads, and `a`'s elements are broadcast one at a time whatever its layout,
//! so here nothing is copied: a block of 12 rows × 32 columns of `c` sits in 24 zmm registers
//! while `k` runs (on AVX2, 6 rows × 16 columns in 12 ymm registers).
//!
//! The sums are those of the `gemm` crate to the bit, so swapping the kernel moved no result:
//! every element is one fused multiply-add chain over `k` from zero, in order, cut into the same
//! chunks (`kc`, from `gemm_common`'s own cache model), each chunk's sum added to `c` once.
//! Used by [`super::gemm`] only where it is faster and that holds: `alpha` 1, `beta` 0 or 1 (then
//! `1·x` and `x + y` are exact in both), `b` small enough to stay in L2 (beyond it `gemm`'s
//! packing pays), and not the shapes that `gemm` sends to its vector-product paths.

use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};

use super::isa::Isa;

/// Rows of `c` in one register block.
const ROWS: usize = 12;
/// 16-lane vectors of `c`'s columns in one register block.
const VECTORS: usize = 2;
/// Most values of `b` read in place: 1 MiB, half the Xeon's L2 per core, so that `b` and the
/// rows of `a` in use stay there while every block of rows walks it again.
const MOST_B_VALUES: usize = 1 << 18;
/// Widest `c` taken: one register block. Wider, `gemm`'s packed panels won on the Xeon
/// (one core, the MLP's shapes: 64×784×256 forward 98 against 104 GFLOP/s, 784×64×256 weight
/// gradient 75 against 96), because a block walking many rows of a row-major `b` 1 KiB apart
/// keeps few of them in L1; narrower, reading in place won: 64×128×10 (the last layer)
/// 37–39 against 20–21 GFLOP/s.
const MOST_COLUMNS: usize = 16 * VECTORS;

/// The `gemm` crate's register block (its chunks of `k` are computed from it): on AVX-512
/// `x4x6`, 4 vectors of 16 rows × 6 columns of its column-major view; on AVX2 `x2x6`, 2
/// vectors of 8 rows × 6 columns. `gemm` takes AVX-512 exactly where [`Isa::detect`] does (the
/// same build feature and CPU flag).
fn gemm_mr(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 64,
        Isa::Avx2 => 16,
    }
}
const GEMM_NR: usize = 6;

/// Whether [`product`] takes `c = alpha · a · b + beta · c` on this CPU.
pub(super) fn applies(
    alpha: f32,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    beta: f32,
    c: &ArrayViewMut2<'_, f32>,
) -> bool {
    let (m, k) = a.dim();
    let n = b.ncols();
    // `gemm` computes products with k ≤ 2, or with one row or column, by other paths
    // (vector products) whose sums run in another order.
    alpha == 1.0
        && (beta == 0.0 || beta == 1.0)
        && m >= 2
        && n >= 2
        && k >= 3
        && n <= MOST_COLUMNS
        && k * n <= MOST_B_VALUES
        && b.strides()[1] == 1
        && c.strides()[1] == 1
        && a.strides().iter().all(|&s| s >= 0)
        && b.strides()[0] >= 0
        && c.strides()[0] >= 0
        && Isa::detect().is_some()
}

/// The `gemm` crate's chunk of `k` for a product of `m × n` outputs (its `gemm_basic_generic`:
/// small outputs take chunks of 512, others `kernel_params`'s, which splits `k` evenly).
fn chunk_of_k(isa: Isa, m: usize, n: usize, k: usize) -> usize {
    // `gemm` transposes a row-major product to a column-major one of `n × m`.
    let (rows, cols) = (n, m);
    if rows <= 64 && cols <= 64 {
        k.min(512)
    } else {
        gemm_common::cache::kernel_params(rows, cols, k, gemm_mr(isa), GEMM_NR, 4).kc
    }
}

/// The instruction set of the kernels, where [`applies`] or [`applies_packed`] said yes.
fn isa() -> Isa {
    Isa::detect().expect("an in-place product on a CPU without AVX-512 or AVX2")
}

/// `c = a · b` (`accumulate` false) or `c += a · b`; `a` `[M, K]`, `b` `[K, N]`, `c` `[M, N]`.
/// Only where [`applies`] said so.
pub(super) fn product(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    accumulate: bool,
    c: ArrayViewMut2<'_, f32>,
) {
    let (m, k) = a.dim();
    let kc = chunk_of_k(isa(), m, b.ncols(), k);
    product_in_chunks(a, b, accumulate, c, kc);
}

/// [`product`] with `k` cut into chunks of `kc`.
fn product_in_chunks(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    accumulate: bool,
    mut c: ArrayViewMut2<'_, f32>,
    kc: usize,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(b.nrows(), k, "inner dimensions");
    assert_eq!(c.dim(), (m, n), "output shape");
    assert!(
        b.strides()[1] == 1 && c.strides()[1] == 1,
        "b and c row-major"
    );
    let operands = Operands {
        a: a.as_ptr(),
        a_rows: a.strides()[0] as usize,
        a_cols: a.strides()[1] as usize,
        b: b.as_ptr(),
        b_rows: b.strides()[0] as usize,
        c: c.as_mut_ptr(),
        c_rows: c.strides()[0] as usize,
    };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the kernel's instruction set (detected); the pointers and strides
    // are those of live views of the asserted shapes, so every offset the kernel forms (rows
    // < m, columns < n, depth < k) is inside them; `c` is a unique borrow, so it aliases
    // neither.
    unsafe {
        match isa() {
            Isa::Avx512 => avx512::product(&operands, m, n, k, kc, accumulate),
            Isa::Avx2 => avx2::product(&operands, m, n, k, kc, accumulate),
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (operands, accumulate, kc);
        unreachable!("applies() is false off x86_64");
    }
}

/// Whether [`product_packed`] takes `c += a · b` (`b` packed) on this CPU: the shapes
/// [`applies`] leaves to `gemm`'s vector-product paths excluded, any width.
pub(crate) fn applies_packed(m: usize, k: usize, n: usize) -> bool {
    m >= 2 && n >= 2 && k >= 3 && Isa::detect().is_some()
}

/// `c += a · b`, `a` `[M, K]` of any strides, `b` `[K, N]` as panels of 32 columns
/// ([`super::panels::packed_len`]: `[K, 32]` row-major each, one after another), `c`
/// `[M, N]` row-major: the `gemm` crate's sums of that product to the bit (its chunks of `k`
/// for `M × N` outputs, in each panel's product), each step of `k` reading 128 contiguous
/// bytes of a panel. Only where [`applies_packed`] said so.
pub(crate) fn product_packed(
    a: ArrayView2<'_, f32>,
    packed: &[f32],
    mut c: ArrayViewMut2<'_, f32>,
) {
    const PANEL: usize = super::panels::PANEL;
    const _: () = assert!(PANEL == MOST_COLUMNS, "a panel is one register block wide");
    let (m, k) = a.dim();
    let n = c.ncols();
    assert_eq!(
        packed.len(),
        super::panels::packed_len(k, n),
        "packed b [K, N]"
    );
    assert!(
        applies_packed(m, k, n),
        "packed product off its shapes or CPU"
    );
    let kc = chunk_of_k(isa(), m, n, k);
    for (p, panel) in packed.chunks_exact(k * PANEL).enumerate() {
        let columns = p * PANEL..(p * PANEL + PANEL).min(n);
        let b = ArrayView2::from_shape((k, columns.len()).strides((PANEL, 1)), panel)
            .expect("a panel holds k rows of 32 values");
        product_in_chunks(a, b, true, c.slice_mut(ndarray::s![.., columns]), kc);
    }
}

/// Raw views of the three operands; strides in elements.
struct Operands {
    a: *const f32,
    a_rows: usize,
    a_cols: usize,
    b: *const f32,
    b_rows: usize,
    c: *mut f32,
    c_rows: usize,
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Operands, ROWS, VECTORS};
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512F; the operands as [`super::product`] describes them.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product(
        o: &Operands,
        m: usize,
        n: usize,
        k: usize,
        kc: usize,
        accumulate: bool,
    ) {
        let width = 16 * VECTORS;
        let mut depth = 0;
        let mut add = accumulate;
        while depth < k {
            let chunk = kc.min(k - depth);
            let mut col = 0;
            while col < n {
                let cols = width.min(n - col);
                let mut row = 0;
                while row < m {
                    let rows = ROWS.min(m - row);
                    block_dispatch(o, row, rows, col, cols, depth, chunk, add);
                    row += rows;
                }
                col += cols;
            }
            // Later chunks add their sums to the first's, as `gemm` does.
            add = true;
            depth += chunk;
        }
    }

    /// # Safety
    /// As [`product`]; `rows ≤ ROWS`, `cols ≤ 16·VECTORS`, the block inside `c`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    unsafe fn block_dispatch(
        o: &Operands,
        row: usize,
        rows: usize,
        col: usize,
        cols: usize,
        depth: usize,
        chunk: usize,
        add: bool,
    ) {
        let vectors = cols.div_ceil(16);
        macro_rules! go {
            ($r:literal, $v:literal) => {
                block::<$r, $v>(o, row, col, cols, depth, chunk, add)
            };
        }
        macro_rules! by_vectors {
            ($r:literal) => {
                match vectors {
                    1 => go!($r, 1),
                    _ => go!($r, 2),
                }
            };
        }
        match rows {
            1 => by_vectors!(1),
            2 => by_vectors!(2),
            3 => by_vectors!(3),
            4 => by_vectors!(4),
            5 => by_vectors!(5),
            6 => by_vectors!(6),
            7 => by_vectors!(7),
            8 => by_vectors!(8),
            9 => by_vectors!(9),
            10 => by_vectors!(10),
            11 => by_vectors!(11),
            _ => by_vectors!(12),
        }
    }

    /// One block of `R` rows × `cols` (`≤ 16·V`) columns of `c`, over `chunk` steps of `k`
    /// from `depth`: its sums start at zero and are then stored (`add` false) or added to `c`.
    ///
    /// # Safety
    /// As [`block_dispatch`].
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const R: usize, const V: usize>(
        o: &Operands,
        row: usize,
        col: usize,
        cols: usize,
        depth: usize,
        chunk: usize,
        add: bool,
    ) {
        // Lanes of each vector inside the block's columns: the last may be partial.
        let masks: [__mmask16; V] = std::array::from_fn(|v| {
            let lanes = cols.saturating_sub(16 * v).min(16);
            ((1u32 << lanes) - 1) as __mmask16
        });
        let mut sums = [[_mm512_setzero_ps(); V]; R];
        let mut a = o.a.add(row * o.a_rows + depth * o.a_cols);
        let mut b = o.b.add(depth * o.b_rows + col);
        for _ in 0..chunk {
            let bv: [__m512; V] =
                std::array::from_fn(|v| _mm512_maskz_loadu_ps(masks[v], b.add(16 * v)));
            for (r, sum) in sums.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*a.add(r * o.a_rows));
                for v in 0..V {
                    sum[v] = _mm512_fmadd_ps(x, bv[v], sum[v]);
                }
            }
            a = a.add(o.a_cols);
            b = b.add(o.b_rows);
        }
        for (r, sum) in sums.iter().enumerate() {
            let c = o.c.add((row + r) * o.c_rows + col);
            for v in 0..V {
                let out = if add {
                    _mm512_add_ps(_mm512_maskz_loadu_ps(masks[v], c.add(16 * v)), sum[v])
                } else {
                    sum[v]
                };
                _mm512_mask_storeu_ps(c.add(16 * v), masks[v], out);
            }
        }
    }
}

/// The AVX2 kernels: the AVX-512 kernels' sums on 8-lane registers, blocks of 6 rows × 16
/// columns (12 accumulators, two vectors of `b` and a broadcast of `a` in 16 registers).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Operands;
    use crate::train::kernels::isa::avx2::first_lanes;
    use std::arch::x86_64::*;

    const ROWS: usize = 6;
    const VECTORS: usize = 2;
    const LANES: usize = 8;

    /// # Safety
    /// AVX2 and FMA; the operands as [`super::product`] describes them.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn product(
        o: &Operands,
        m: usize,
        n: usize,
        k: usize,
        kc: usize,
        accumulate: bool,
    ) {
        let width = LANES * VECTORS;
        let mut depth = 0;
        let mut add = accumulate;
        while depth < k {
            let chunk = kc.min(k - depth);
            let mut col = 0;
            while col < n {
                let cols = width.min(n - col);
                let mut row = 0;
                while row < m {
                    let rows = ROWS.min(m - row);
                    // Whole blocks load with plain loads: AVX2's masked loads are slower.
                    macro_rules! by_rows {
                        ($full:literal) => {
                            match rows {
                                1 => block::<1, $full>(o, row, col, cols, depth, chunk, add),
                                2 => block::<2, $full>(o, row, col, cols, depth, chunk, add),
                                3 => block::<3, $full>(o, row, col, cols, depth, chunk, add),
                                4 => block::<4, $full>(o, row, col, cols, depth, chunk, add),
                                5 => block::<5, $full>(o, row, col, cols, depth, chunk, add),
                                _ => block::<6, $full>(o, row, col, cols, depth, chunk, add),
                            }
                        };
                    }
                    // SAFETY: as this function's; rows ≤ 6, cols ≤ 16, inside `c`.
                    unsafe {
                        if cols == width {
                            by_rows!(true)
                        } else {
                            by_rows!(false)
                        }
                    }
                    row += rows;
                }
                col += cols;
            }
            // Later chunks add their sums to the first's, as `gemm` does.
            add = true;
            depth += chunk;
        }
    }

    /// One block of `R` rows × `cols` (≤ 16) columns of `c`, over `chunk` steps of `k` from
    /// `depth`: its sums start at zero and are then stored (`add` false) or added to `c`.
    ///
    /// # Safety
    /// As [`product`]; `R ≤ 6`, `cols ≤ 16` (16 if `FULL`), the block inside `c`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const R: usize, const FULL: bool>(
        o: &Operands,
        row: usize,
        col: usize,
        cols: usize,
        depth: usize,
        chunk: usize,
        add: bool,
    ) {
        // Lanes of each vector inside the block's columns: the last may be partial.
        let masks: [__m256i; VECTORS] =
            std::array::from_fn(|v| first_lanes(cols.saturating_sub(LANES * v)));
        let mut sums = [[_mm256_setzero_ps(); VECTORS]; R];
        // SAFETY (every access below): offsets of rows < m, columns < n (masked) and depths
        // < k of the caller's operands.
        unsafe {
            let mut a = o.a.add(row * o.a_rows + depth * o.a_cols);
            let mut b = o.b.add(depth * o.b_rows + col);
            for _ in 0..chunk {
                let bv: [__m256; VECTORS] = std::array::from_fn(|v| {
                    if FULL {
                        _mm256_loadu_ps(b.add(LANES * v))
                    } else {
                        _mm256_maskload_ps(b.add(LANES * v), masks[v])
                    }
                });
                for (r, sum) in sums.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(*a.add(r * o.a_rows));
                    for v in 0..VECTORS {
                        sum[v] = _mm256_fmadd_ps(x, bv[v], sum[v]);
                    }
                }
                a = a.add(o.a_cols);
                b = b.add(o.b_rows);
            }
            for (r, sum) in sums.iter().enumerate() {
                let c = o.c.add((row + r) * o.c_rows + col);
                for v in 0..VECTORS {
                    let out = if add {
                        _mm256_add_ps(_mm256_maskload_ps(c.add(LANES * v), masks[v]), sum[v])
                    } else {
                        sum[v]
                    };
                    _mm256_maskstore_ps(c.add(LANES * v), masks[v], out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};

    fn random(rows: usize, cols: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Array2<f32> {
        Array2::from_shape_simple_fn((rows, cols), || rng.gen_range(-1.0f32..1.0))
    }

    /// The `gemm` crate's result for the same call (what [`crate::train::kernels::gemm::gemm`] gave before).
    fn by_gemm_crate(
        a: &ArrayView2<'_, f32>,
        b: &ArrayView2<'_, f32>,
        beta: f32,
        c: &mut Array2<f32>,
    ) {
        crate::train::kernels::gemm::gemm_crate_leaf(1.0, a.view(), b.view(), beta, c.view_mut());
    }

    #[test]
    fn products_of_packed_panels_give_the_gemm_crates_bits() {
        if Isa::detect().is_none() {
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // The MLP's forward products of a shard (k in two chunks for the first), a last panel
        // narrower than 32, one below 16, ragged row blocks, strided `a`.
        for (m, k, n) in [
            (64, 784, 256),
            (64, 256, 128),
            (64, 128, 10),
            (51, 300, 45),
            (13, 1100, 40),
            (2, 3, 2),
        ] {
            let a = random(m, 2 * k, &mut rng);
            let a = a.slice(ndarray::s![.., ..;2]);
            let b = random(k, n, &mut rng);
            let start = random(m, n, &mut rng);
            let mut expected = start.clone();
            by_gemm_crate(&a, &b.view(), 1.0, &mut expected);
            let mut packed = vec![0f32; crate::train::kernels::weight_grad::packed_len(k, n)];
            for ((i, j), &v) in b.indexed_iter() {
                packed[crate::train::kernels::weight_grad::packed_offset(k, i, j)] = v;
            }
            let mut got = start.clone();
            product_packed(a, &packed, got.view_mut());
            assert_eq!(got, expected, "{m}×{k}×{n}");
        }
    }

    #[test]
    fn in_place_products_give_the_gemm_crates_bits() {
        if Isa::detect().is_none() {
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // The MLP's classifier layer (forward of a shard and of a batch, weight gradient),
        // chunked and unchunked k, outputs small and large, ragged blocks.
        let shapes = [
            (64, 128, 10),
            (128, 128, 10),
            (128, 64, 10),
            (64, 1100, 32),
            (13, 1100, 17),
            (50, 600, 31),
            (7, 3, 2),
            (2, 9, 30),
            (65, 513, 16),
            (600, 520, 24),
        ];
        for (m, k, n) in shapes {
            let a = random(m, k, &mut rng);
            let a_transposed = random(k, m, &mut rng);
            let b = random(k, n, &mut rng);
            for a in [a.view(), a_transposed.t()] {
                for beta in [0.0, 1.0] {
                    let start = random(m, n, &mut rng);
                    let mut expected = start.clone();
                    by_gemm_crate(&a, &b.view(), beta, &mut expected);
                    let mut c = start.clone();
                    assert!(applies(1.0, &a, &b.view(), beta, &c.view_mut()));
                    product(a.view(), b.view(), beta == 1.0, c.view_mut());
                    let same = c
                        .iter()
                        .zip(&expected)
                        .all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(
                        same,
                        "{m}×{k}×{n}, beta {beta}, a strides {:?}",
                        a.strides()
                    );
                }
            }
        }
    }

    #[test]
    fn products_it_does_not_take() {
        // Off AVX-512 nothing is taken, so the cases below would pass without testing anything.
        if Isa::detect().is_none() {
            return;
        }
        let refused = |alpha: f32, a: Array2<f32>, b: ArrayView2<'_, f32>, beta: f32| {
            let mut c = Array2::<f32>::zeros((a.nrows(), b.ncols()));
            !applies(alpha, &a.view(), &b, beta, &c.view_mut())
        };
        let square = Array2::<f32>::zeros((8, 8));
        let zeros = |rows, cols| Array2::<f32>::zeros((rows, cols));
        assert!(refused(2.0, zeros(8, 8), square.view(), 0.0), "alpha 2");
        assert!(refused(1.0, zeros(8, 8), square.view(), 0.5), "beta 0.5");
        assert!(refused(1.0, zeros(8, 8), square.t(), 0.0), "column-major b");
        assert!(
            refused(1.0, zeros(8, 8), zeros(8, 64).view(), 0.0),
            "64 columns"
        );
        assert!(
            refused(1.0, zeros(8, 40_000), zeros(40_000, 30).view(), 0.0),
            "b beyond L2"
        );
        assert!(refused(1.0, zeros(8, 2), zeros(2, 8).view(), 0.0), "k = 2");
        assert!(
            !refused(1.0, zeros(8, 8), square.view(), 1.0),
            "a product it takes"
        );
    }
}
