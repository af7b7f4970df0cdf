//! The weight gradient of a dense layer over the shards of a batch, `Σ_s x_sᵀ g_s`, computed
//! after every shard's backward pass, either stored or with the SGD update applied to each
//! block of it as soon as it is summed (and the new weights also written in the panels of 32
//! columns that the next sharded step's forward products read, `gemm_in_place::product_packed`,
//! so that no pass of its own packs them).
//!
//! Why: each shard computing its own `x_sᵀ g_s` wrote a full `[in, out]` gradient (0.8 MB for
//! the MLP's first layer), which the optimiser then read back with the other shards' to add
//! them, so a step streamed the weights, the momenta and one gradient per shard through memory
//! that the cache does not hold. Here the cores split the rows of the gradient; a block of
//! 12 rows × 32 columns is summed in registers over one shard's rows, added to the shards
//! before it, and the update reads and writes only the weights and momenta of that block.
//!
//! The sums are those of the products they replace, to the bit: per shard, one fused
//! multiply-add chain over the shard's rows from zero, in order (the `gemm` crate's sum for
//! `k` ≤ 512, and [`super::gemm_in_place`]'s), then the shards added in shard order, as the
//! optimiser added their gradients. The update is [`SgdStep`] (the optimiser's SGD formula), operation
//! for operation (no fused multiply-add, which Rust does not contract either). Tests check
//! both against the code they replace.

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::isa::Isa;
pub use super::panels::{packed_len, packed_offset, PANEL};

/// PyTorch's SGD step on one weight: `g += decay·w; v = μv + g; w -= lr·(nesterov ? g + μv : v)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdStep {
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub decay: f32,
}

impl SgdStep {
    /// The step on one value, `w` and its momentum `v`, with gradient `g`.
    #[inline]
    pub fn apply(&self, w: &mut f32, v: &mut f32, g: f32) {
        let g = g + self.decay * *w;
        *v = self.momentum * *v + g;
        let update = if self.nesterov {
            g + self.momentum * *v
        } else {
            *v
        };
        *w -= self.lr * update;
    }
}

/// One shard's factors of a weight gradient `xᵀ g`: `x` `[b, in]` (the layer's input) and `g`
/// `[b, out]` (the gradient of its output), both row-major.
#[derive(Clone, Copy)]
pub struct Factors<'a> {
    pub x: ArrayView2<'a, f32>,
    pub g: ArrayView2<'a, f32>,
}

/// What becomes of the summed gradient `[in, out]` (row-major slices).
pub enum Sink<'a> {
    /// Written to the gradient.
    Store(&'a mut [f32]),
    /// Applied to the weights and their momenta; the new weights also written to `packed`
    /// when given, in the panels of 32 columns that a dense layer's forward products read
    /// (the layout `gemm_in_place::product_packed` reads).
    Step {
        weights: &'a mut [f32],
        momenta: &'a mut [f32],
        step: SgdStep,
        packed: Option<&'a mut [f32]>,
    },
}

/// Where a task writes its rows of the packed weights: panels `[in, 32]` one after another,
/// `in · ⌈out/32⌉ · 32` values. Tasks own disjoint rows, which lie in every panel, so the
/// panels cannot be cut into one slice per task; each task writes only its rows.
#[derive(Clone, Copy)]
struct PackedPanels {
    at: *mut f32,
    inputs: usize,
}

// SAFETY: a `PackedPanels` is made from a `&mut [f32]` that `sum` holds for the whole
// parallel region, and every task writes only the rows it owns (disjoint), so sharing the
// pointer between the tasks' threads races on nothing.
unsafe impl Send for PackedPanels {}
unsafe impl Sync for PackedPanels {}

/// Rows of the gradient per block of work (and per register block of the kernel).
const ROWS: usize = 12;

/// Whether [`sum`] runs a vector kernel here, AVX-512 or AVX2 (else a scalar loop with the
/// same sums).
pub fn vectorised() -> bool {
    Isa::detect().is_some()
}

/// `Σ_s x_sᵀ g_s` (`parts` in shard order) into `sink`; the cores split the rows unless the
/// caller is a shard ([`super::gemm::serial`]).
pub fn sum(parts: &[Factors<'_>], sink: Sink<'_>) {
    let (inputs, outputs) = match parts.first() {
        Some(p) => (p.x.ncols(), p.g.ncols()),
        None => return,
    };
    for p in parts {
        assert_eq!(p.x.nrows(), p.g.nrows(), "one gradient row per input row");
        assert_eq!(
            (p.x.ncols(), p.g.ncols()),
            (inputs, outputs),
            "every shard's factors of one shape"
        );
        assert!(
            p.x.is_standard_layout() && p.g.is_standard_layout(),
            "row-major factors"
        );
    }
    let len = inputs * outputs;
    let block = ROWS * outputs;
    // Each task takes whole blocks of rows: `Store` one slice, `Step` two, cut alike.
    let run = |first_row: usize, out: SinkRows<'_>| {
        let rows = out.len() / outputs;
        #[cfg(target_arch = "x86_64")]
        match Isa::detect() {
            // SAFETY: the CPU has the kernel's instruction set (detected); the shapes are
            // asserted above and in the kernels' `rows`.
            Some(Isa::Avx512) => return unsafe { avx512::rows(parts, first_row, rows, out) },
            Some(Isa::Avx2) => return unsafe { avx2::rows(parts, first_row, rows, out) },
            None => {}
        }
        scalar_rows(parts, first_row, rows, out);
    };
    let serial = super::gemm::is_serial() || rayon::current_num_threads() == 1;
    match sink {
        Sink::Store(gradient) => {
            assert_eq!(gradient.len(), len, "gradient [in, out]");
            if serial {
                run(0, SinkRows::Store(gradient));
            } else {
                gradient
                    .par_chunks_mut(block)
                    .enumerate()
                    .for_each(|(i, g)| run(i * ROWS, SinkRows::Store(g)));
            }
        }
        Sink::Step {
            weights,
            momenta,
            step,
            packed,
        } => {
            assert_eq!(weights.len(), len, "weights [in, out]");
            assert_eq!(momenta.len(), len, "momenta [in, out]");
            let packed = packed.map(|p| {
                assert_eq!(p.len(), packed_len(inputs, outputs), "packed weights");
                PackedPanels {
                    at: p.as_mut_ptr(),
                    inputs,
                }
            });
            if serial {
                run(0, SinkRows::Step(weights, momenta, step, packed));
            } else {
                weights
                    .par_chunks_mut(block)
                    .zip(momenta.par_chunks_mut(block))
                    .enumerate()
                    .for_each(|(i, (w, v))| run(i * ROWS, SinkRows::Step(w, v, step, packed)));
            }
        }
    }
}

/// The rows of a [`Sink`] one task owns.
enum SinkRows<'a> {
    Store(&'a mut [f32]),
    Step(&'a mut [f32], &'a mut [f32], SgdStep, Option<PackedPanels>),
}

impl SinkRows<'_> {
    fn len(&self) -> usize {
        match self {
            SinkRows::Store(g) => g.len(),
            SinkRows::Step(w, _, _, _) => w.len(),
        }
    }
}

/// Rows `first_row..first_row + rows` of the sum, one fused multiply-add chain per shard and
/// element, as the kernel computes them.
fn scalar_rows(parts: &[Factors<'_>], first_row: usize, rows: usize, out: SinkRows<'_>) {
    let outputs = parts[0].g.ncols();
    let mut sums = vec![0f32; rows * outputs];
    for (s, part) in parts.iter().enumerate() {
        for r in 0..rows {
            for j in 0..outputs {
                let mut acc = 0f32;
                for k in 0..part.x.nrows() {
                    acc = part.x[(k, first_row + r)].mul_add(part.g[(k, j)], acc);
                }
                let total = &mut sums[r * outputs + j];
                *total = if s == 0 { acc } else { *total + acc };
            }
        }
    }
    match out {
        SinkRows::Store(g) => g.copy_from_slice(&sums),
        SinkRows::Step(w, v, step, packed) => {
            for ((w, v), &g) in w.iter_mut().zip(v.iter_mut()).zip(&sums) {
                step.apply(w, v, g);
            }
            if let Some(p) = packed {
                for (r, row) in w.chunks_exact(outputs).enumerate() {
                    for (j, &value) in row.iter().enumerate() {
                        let at = packed_offset(p.inputs, first_row + r, j);
                        // SAFETY: row first_row + r < inputs and column j < outputs, inside the
                        // asserted packed length; this task owns the row (see `PackedPanels`).
                        unsafe { *p.at.add(at) = value };
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{packed_offset, Factors, SinkRows, ROWS};

    /// 16-lane vectors of columns per register block.
    const VECTORS: usize = 2;
    const LANES: usize = 16;

    /// See [`super::scalar_rows`]: the same sums, in register blocks of `ROWS` × 32.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows(
        parts: &[Factors<'_>],
        first_row: usize,
        rows: usize,
        mut out: SinkRows<'_>,
    ) {
        let inputs = parts[0].x.ncols();
        let outputs = parts[0].g.ncols();
        assert!(first_row + rows <= inputs, "rows of the gradient");
        assert_eq!(out.len(), rows * outputs);
        // Blocks of rows outer: a block's inputs (R values of each row of x, in lines 3 KB
        // apart for the MLP's first layer) stay in L1 while the blocks of columns walk the
        // gradient's rows, which lie in whole lines.
        for r0 in (0..rows).step_by(ROWS) {
            let count = (rows - r0).min(ROWS);
            for j0 in (0..outputs).step_by(LANES * VECTORS) {
                let columns = (outputs - j0).min(LANES * VECTORS);
                let block = Block {
                    row: first_row + r0,
                    column: j0,
                    columns,
                    out_offset: r0 * outputs + j0,
                    outputs,
                };
                macro_rules! by_rows {
                    ($($r:literal)*) => {
                        match count {
                            $($r => block_of::<$r>(parts, &block, &mut out),)*
                            _ => unreachable!("1 to 12 rows"),
                        }
                    };
                }
                by_rows!(1 2 3 4 5 6 7 8 9 10 11 12);
            }
        }
    }

    /// Where one register block lies: gradient rows `row..row + R`, columns
    /// `column..column + columns` (≤ 32), at `out_offset` in the task's rows (row stride
    /// `outputs`).
    struct Block {
        row: usize,
        column: usize,
        columns: usize,
        out_offset: usize,
        outputs: usize,
    }

    #[target_feature(enable = "avx512f")]
    fn block_of<const R: usize>(parts: &[Factors<'_>], block: &Block, out: &mut SinkRows<'_>) {
        let masks: [__mmask16; VECTORS] = std::array::from_fn(|v| {
            let lanes = block.columns.saturating_sub(v * LANES).min(LANES);
            ((1u32 << lanes) - 1) as __mmask16
        });
        let mut total = [[_mm512_setzero_ps(); VECTORS]; R];
        for (s, part) in parts.iter().enumerate() {
            let (b, inputs) = part.x.dim();
            let outputs = part.g.ncols();
            assert!(block.row + R <= inputs && block.column + block.columns <= outputs);
            let x = part.x.as_ptr();
            let g = part.g.as_ptr();
            let mut acc = [[_mm512_setzero_ps(); VECTORS]; R];
            for k in 0..b {
                // SAFETY: k < b rows; the x reads are columns row..row + R < inputs of row k,
                // the g reads masked to columns column..column + columns ≤ outputs of row k
                // (asserted above), in the row-major arrays asserted by `super::sum`.
                unsafe {
                    let g_row = g.add(k * outputs + block.column);
                    let gv: [__m512; VECTORS] = std::array::from_fn(|v| {
                        _mm512_maskz_loadu_ps(masks[v], g_row.add(v * LANES))
                    });
                    let x_row = x.add(k * inputs + block.row);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let xr = _mm512_set1_ps(*x_row.add(r));
                        for (a, &gv) in acc.iter_mut().zip(&gv) {
                            *a = _mm512_fmadd_ps(xr, gv, *a);
                        }
                    }
                }
            }
            for (t, a) in total.iter_mut().zip(&acc) {
                for (t, &a) in t.iter_mut().zip(a) {
                    *t = if s == 0 { a } else { _mm512_add_ps(*t, a) };
                }
            }
        }
        let at = |r: usize, v: usize| block.out_offset + r * block.outputs + v * LANES;
        match out {
            SinkRows::Store(gradient) => {
                assert!(at(R - 1, 0) + block.columns <= gradient.len());
                for (r, t) in total.iter().enumerate() {
                    for (v, &t) in t.iter().enumerate() {
                        // SAFETY: the masked lanes are columns below `columns` of row r, inside
                        // the task's rows (asserted).
                        unsafe {
                            _mm512_mask_storeu_ps(gradient.as_mut_ptr().add(at(r, v)), masks[v], t)
                        };
                    }
                }
            }
            SinkRows::Step(weights, momenta, step, packed) => {
                assert!(at(R - 1, 0) + block.columns <= weights.len());
                assert_eq!(weights.len(), momenta.len());
                let lr = _mm512_set1_ps(step.lr);
                let momentum = _mm512_set1_ps(step.momentum);
                let decay = _mm512_set1_ps(step.decay);
                for (r, t) in total.iter().enumerate() {
                    for (v, &g) in t.iter().enumerate() {
                        // SAFETY: as for the stores above; loads and stores are masked alike;
                        // the packed store is row `row + r` of panel `column / 32`, inside
                        // the length `sum` asserted, a row this task owns.
                        unsafe {
                            let wp = weights.as_mut_ptr().add(at(r, v));
                            let vp = momenta.as_mut_ptr().add(at(r, v));
                            let w = _mm512_maskz_loadu_ps(masks[v], wp);
                            let buf = _mm512_maskz_loadu_ps(masks[v], vp);
                            // The operations of `SgdStep::apply`, each rounded alike.
                            let g = _mm512_add_ps(g, _mm512_mul_ps(decay, w));
                            let buf = _mm512_add_ps(_mm512_mul_ps(momentum, buf), g);
                            let update = if step.nesterov {
                                _mm512_add_ps(g, _mm512_mul_ps(momentum, buf))
                            } else {
                                buf
                            };
                            let w = _mm512_sub_ps(w, _mm512_mul_ps(lr, update));
                            _mm512_mask_storeu_ps(wp, masks[v], w);
                            _mm512_mask_storeu_ps(vp, masks[v], buf);
                            if let Some(p) = packed {
                                // Block columns start at multiples of 32, so a vector's
                                // 16 lanes lie in one panel (see `PackedPanels`).
                                let at = packed_offset(
                                    p.inputs,
                                    block.row + r,
                                    block.column + v * LANES,
                                );
                                _mm512_mask_storeu_ps(p.at.add(at), masks[v], w);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The AVX2 kernel: the AVX-512 kernel's sums and update, operation for operation, on
/// 8-lane registers, in register blocks of 6 rows × 16 columns (12 accumulators, the two
/// vectors of a gradient row and a broadcast input in 16 registers).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{packed_offset, Factors, SinkRows, ROWS};
    use crate::train::kernels::isa::avx2::first_lanes;

    /// Rows of a register block (a task's `ROWS` rows are two of them).
    const BLOCK_ROWS: usize = 6;
    const _: () = assert!(ROWS.is_multiple_of(BLOCK_ROWS));
    /// 8-lane vectors of columns per register block.
    const VECTORS: usize = 2;
    const LANES: usize = 8;

    /// See [`super::scalar_rows`]: the same sums, in register blocks of 6 × 16.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows(
        parts: &[Factors<'_>],
        first_row: usize,
        rows: usize,
        mut out: SinkRows<'_>,
    ) {
        let inputs = parts[0].x.ncols();
        let outputs = parts[0].g.ncols();
        assert!(first_row + rows <= inputs, "rows of the gradient");
        assert_eq!(out.len(), rows * outputs);
        for r0 in (0..rows).step_by(BLOCK_ROWS) {
            let count = (rows - r0).min(BLOCK_ROWS);
            for j0 in (0..outputs).step_by(LANES * VECTORS) {
                let columns = (outputs - j0).min(LANES * VECTORS);
                let block = Block {
                    row: first_row + r0,
                    column: j0,
                    columns,
                    out_offset: r0 * outputs + j0,
                    outputs,
                };
                // Whole blocks load with plain loads: AVX2's masked loads are slower.
                macro_rules! by_rows {
                    ($full:literal) => {
                        match count {
                            1 => block_of::<1, $full>(parts, &block, &mut out),
                            2 => block_of::<2, $full>(parts, &block, &mut out),
                            3 => block_of::<3, $full>(parts, &block, &mut out),
                            4 => block_of::<4, $full>(parts, &block, &mut out),
                            5 => block_of::<5, $full>(parts, &block, &mut out),
                            _ => block_of::<6, $full>(parts, &block, &mut out),
                        }
                    };
                }
                if columns == LANES * VECTORS {
                    by_rows!(true);
                } else {
                    by_rows!(false);
                }
            }
        }
    }

    /// Where one register block lies: gradient rows `row..row + R`, columns
    /// `column..column + columns` (≤ 16), at `out_offset` in the task's rows (row stride
    /// `outputs`).
    struct Block {
        row: usize,
        column: usize,
        columns: usize,
        out_offset: usize,
        outputs: usize,
    }

    /// `FULL`: the block is 16 columns wide (`columns` is then 16).
    #[target_feature(enable = "avx2,fma")]
    fn block_of<const R: usize, const FULL: bool>(
        parts: &[Factors<'_>],
        block: &Block,
        out: &mut SinkRows<'_>,
    ) {
        assert!(!FULL || block.columns == LANES * VECTORS);
        let masks: [__m256i; VECTORS] =
            std::array::from_fn(|v| first_lanes(block.columns.saturating_sub(v * LANES)));
        let mut total = [[_mm256_setzero_ps(); VECTORS]; R];
        for (s, part) in parts.iter().enumerate() {
            let (b, inputs) = part.x.dim();
            let outputs = part.g.ncols();
            assert!(block.row + R <= inputs && block.column + block.columns <= outputs);
            let x = part.x.as_ptr();
            let g = part.g.as_ptr();
            let mut acc = [[_mm256_setzero_ps(); VECTORS]; R];
            for k in 0..b {
                // SAFETY: k < b rows; the x reads are columns row..row + R < inputs of row k,
                // the g reads masked to columns column..column + columns ≤ outputs of row k
                // (asserted above), in the row-major arrays asserted by `super::sum`.
                unsafe {
                    let g_row = g.add(k * outputs + block.column);
                    let gv: [__m256; VECTORS] = std::array::from_fn(|v| {
                        if FULL {
                            _mm256_loadu_ps(g_row.add(v * LANES))
                        } else {
                            _mm256_maskload_ps(g_row.add(v * LANES), masks[v])
                        }
                    });
                    let x_row = x.add(k * inputs + block.row);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let xr = _mm256_set1_ps(*x_row.add(r));
                        for (a, &gv) in acc.iter_mut().zip(&gv) {
                            *a = _mm256_fmadd_ps(xr, gv, *a);
                        }
                    }
                }
            }
            for (t, a) in total.iter_mut().zip(&acc) {
                for (t, &a) in t.iter_mut().zip(a) {
                    *t = if s == 0 { a } else { _mm256_add_ps(*t, a) };
                }
            }
        }
        let at = |r: usize, v: usize| block.out_offset + r * block.outputs + v * LANES;
        match out {
            SinkRows::Store(gradient) => {
                assert!(at(R - 1, 0) + block.columns <= gradient.len());
                for (r, t) in total.iter().enumerate() {
                    for (v, &t) in t.iter().enumerate() {
                        // SAFETY: the masked lanes are columns below `columns` of row r, inside
                        // the task's rows (asserted).
                        unsafe {
                            _mm256_maskstore_ps(gradient.as_mut_ptr().add(at(r, v)), masks[v], t)
                        };
                    }
                }
            }
            SinkRows::Step(weights, momenta, step, packed) => {
                assert!(at(R - 1, 0) + block.columns <= weights.len());
                assert_eq!(weights.len(), momenta.len());
                let lr = _mm256_set1_ps(step.lr);
                let momentum = _mm256_set1_ps(step.momentum);
                let decay = _mm256_set1_ps(step.decay);
                for (r, t) in total.iter().enumerate() {
                    for (v, &g) in t.iter().enumerate() {
                        // SAFETY: as for the stores above; loads and stores are masked alike;
                        // the packed store is row `row + r` of panel `column / 32`, inside
                        // the length `sum` asserted, a row this task owns.
                        unsafe {
                            let wp = weights.as_mut_ptr().add(at(r, v));
                            let vp = momenta.as_mut_ptr().add(at(r, v));
                            let w = _mm256_maskload_ps(wp, masks[v]);
                            let buf = _mm256_maskload_ps(vp, masks[v]);
                            // The operations of `SgdStep::apply`, each rounded alike.
                            let g = _mm256_add_ps(g, _mm256_mul_ps(decay, w));
                            let buf = _mm256_add_ps(_mm256_mul_ps(momentum, buf), g);
                            let update = if step.nesterov {
                                _mm256_add_ps(g, _mm256_mul_ps(momentum, buf))
                            } else {
                                buf
                            };
                            let w = _mm256_sub_ps(w, _mm256_mul_ps(lr, update));
                            _mm256_maskstore_ps(wp, masks[v], w);
                            _mm256_maskstore_ps(vp, masks[v], buf);
                            if let Some(p) = packed {
                                // Block columns start at multiples of 16, so a vector's
                                // 8 lanes lie in one panel.
                                let at = packed_offset(
                                    p.inputs,
                                    block.row + r,
                                    block.column + v * LANES,
                                );
                                _mm256_maskstore_ps(p.at.add(at), masks[v], w);
                            }
                        }
                    }
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

    /// The code this replaces: one product per shard (the trainer's, single-threaded, as in a
    /// shard), then the shards' gradients added in order.
    fn products_then_sum(parts: &[Factors<'_>]) -> Array2<f32> {
        let (inputs, outputs) = (parts[0].x.ncols(), parts[0].g.ncols());
        let mut total = Array2::<f32>::zeros((inputs, outputs));
        for (s, p) in parts.iter().enumerate() {
            let mut gw = Array2::<f32>::zeros((inputs, outputs));
            super::super::gemm::serial(|| {
                super::super::gemm::gemm(1.0, &p.x.t(), &p.g, 0.0, &mut gw.view_mut())
            });
            if s == 0 {
                total = gw;
            } else {
                total.zip_mut_with(&gw, |t, &g| *t += g);
            }
        }
        total
    }

    #[test]
    fn sums_are_those_of_one_product_per_shard_added_in_order() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // The MLP's three layers over two shards of 64 rows, and odd shapes: a tail of rows
        // below 12, columns below 16 and between 16 and 32, three shards of unequal size.
        for (inputs, outputs, shard_rows) in [
            (784, 256, vec![64, 64]),
            (256, 128, vec![64, 64]),
            (128, 10, vec![64, 64]),
            (37, 45, vec![20, 21, 19]),
            (5, 3, vec![7]),
        ] {
            let xs: Vec<Array2<f32>> = shard_rows
                .iter()
                .map(|&b| random(b, inputs, &mut rng))
                .collect();
            let gs: Vec<Array2<f32>> = shard_rows
                .iter()
                .map(|&b| random(b, outputs, &mut rng))
                .collect();
            let parts: Vec<Factors<'_>> = xs
                .iter()
                .zip(&gs)
                .map(|(x, g)| Factors {
                    x: x.view(),
                    g: g.view(),
                })
                .collect();
            let expected = products_then_sum(&parts);
            let mut got = vec![f32::NAN; inputs * outputs];
            sum(&parts, Sink::Store(&mut got));
            assert_eq!(
                got,
                expected.as_slice().unwrap(),
                "{inputs}×{outputs} over {shard_rows:?}"
            );
            // The scalar loop (other CPUs) gives the same bits.
            let mut scalar = vec![f32::NAN; inputs * outputs];
            scalar_rows(&parts, 0, inputs, SinkRows::Store(&mut scalar));
            assert_eq!(scalar, got, "scalar, {inputs}×{outputs}");
            // So does the AVX2 kernel (what a CPU without AVX-512 runs).
            #[cfg(target_arch = "x86_64")]
            if Isa::Avx2.supported() {
                let mut avx2 = vec![f32::NAN; inputs * outputs];
                // SAFETY: the CPU has AVX2 and FMA (checked).
                unsafe { avx2::rows(&parts, 0, inputs, SinkRows::Store(&mut avx2)) };
                assert_eq!(avx2, got, "AVX2, {inputs}×{outputs}");
            }

            for nesterov in [false, true] {
                let step = SgdStep {
                    lr: 0.05,
                    momentum: 0.9,
                    nesterov,
                    decay: 5e-4,
                };
                let w0 = random(inputs, outputs, &mut rng);
                let v0 = random(inputs, outputs, &mut rng);
                let (mut w_expected, mut v_expected) = (w0.clone(), v0.clone());
                for ((w, v), &g) in w_expected
                    .iter_mut()
                    .zip(v_expected.iter_mut())
                    .zip(&expected)
                {
                    step.apply(w, v, g);
                }
                let (mut w, mut v) = (w0.clone(), v0.clone());
                let mut packed = vec![f32::NAN; packed_len(inputs, outputs)];
                sum(
                    &parts,
                    Sink::Step {
                        weights: w.as_slice_mut().unwrap(),
                        momenta: v.as_slice_mut().unwrap(),
                        step,
                        packed: Some(&mut packed),
                    },
                );
                assert_eq!(
                    (&w, &v),
                    (&w_expected, &v_expected),
                    "step, nesterov {nesterov}"
                );
                for ((i, j), &value) in w.indexed_iter() {
                    let at = packed_offset(inputs, i, j);
                    assert_eq!(packed[at].to_bits(), value.to_bits(), "packed");
                }
                #[cfg(target_arch = "x86_64")]
                if Isa::Avx2.supported() {
                    let (mut w2, mut v2) = (w0.clone(), v0.clone());
                    let mut packed2 = vec![f32::NAN; packed_len(inputs, outputs)];
                    let panels = PackedPanels {
                        at: packed2.as_mut_ptr(),
                        inputs,
                    };
                    let rows = SinkRows::Step(
                        w2.as_slice_mut().unwrap(),
                        v2.as_slice_mut().unwrap(),
                        step,
                        Some(panels),
                    );
                    // SAFETY: the CPU has AVX2 and FMA (checked); `packed2` has the length
                    // of `inputs × outputs` panels and outlives the call.
                    unsafe { avx2::rows(&parts, 0, inputs, rows) };
                    assert_eq!((&w2, &v2), (&w, &v), "AVX2 step");
                    for (a, b) in packed2.iter().zip(&packed) {
                        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                    }
                }
            }
        }
    }
}
