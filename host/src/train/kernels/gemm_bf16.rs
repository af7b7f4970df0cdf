//! The bf16 product of `[student] precision = "bf16"`: `c = alpha · a · b + beta · c` with `a`
//! and `b` rounded to bf16 (round to nearest, ties to even) and every sum kept in f32, by
//! AVX512-BF16's `vdpbf16ps` (two bf16 products added into each f32 lane per instruction: twice
//! the f32 FMA's rate on the CPUs that have it; `cargo bench --bench bf16`, docs/performance.md).
//!
//! One single-threaded product per call, like [`super::gemm`]'s leaf: `a` is rounded into a
//! row-major bf16 copy `[M, K']` (`K'` = `K` rounded up to even, the pad zero), `b` into panels
//! of 32 columns holding, for each pair of rows `(2p, 2p + 1)`, 32 pairs `(b[2p][j],
//! b[2p + 1][j])`, and a kernel of 8 rows × 32 columns of f32 accumulators walks the pairs in
//! order. An element's sum is one kernel's, in a fixed order, so the result does not depend on
//! how the caller splits the output.

use std::cell::RefCell;

use ndarray::{ArrayView2, ArrayViewMut2};

/// Columns of a panel (two zmm of 16 f32) and rows of the kernel.
const NR: usize = 32;
const MR: usize = 8;

/// Whether this CPU runs bf16 products (AVX-512 F and BF16, in a build that takes AVX-512).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::isa::avx512() && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The instruction peaks of one core, f32 FMA and `vdpbf16ps`, in GFLOP/s: `iters` × 16
/// independent instructions on registers, the fastest of `tries` (64 FLOP per `vdpbf16ps`, 32
/// per FMA); `None` without AVX-512 BF16.
pub fn instruction_peaks(iters: usize, tries: usize) -> Option<(f64, f64)> {
    if !available() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let fastest = |work: &dyn Fn()| {
            (0..tries.max(1))
                .map(|_| {
                    let t = std::time::Instant::now();
                    work();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
                .max(f64::MIN_POSITIVE)
        };
        // SAFETY (both): `available()` checked AVX-512 F and BF16 above.
        let f32_s = fastest(&|| {
            std::hint::black_box(unsafe { kernel::fma_peak(iters) });
        });
        let bf16_s = fastest(&|| {
            std::hint::black_box(unsafe { kernel::dpbf16_peak(iters) });
        });
        let instructions = (iters * 16) as f64;
        Some((
            instructions * 32.0 / f32_s / 1e9,
            instructions * 64.0 / bf16_s / 1e9,
        ))
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The FLOP rate of `vdpbf16ps` over that of f32 FMA on one core of this CPU, measured once
/// per process ([`instruction_peaks`], about 10 ms); `None` without AVX-512 BF16. 2.0 on an AMD
/// EPYC (Zen 4), 0.50 on an Intel Xeon with AMX (docs/performance.md), where bf16 training is
/// slower than f32.
pub fn rate_against_f32() -> Option<f64> {
    static RATE: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
    *RATE.get_or_init(|| instruction_peaks(200_000, 2).map(|(f32, bf16)| bf16 / f32))
}

/// Below this [`rate_against_f32`], `precision = "bf16"` is warned against: the rounding and
/// packing of its operands cost about a fifth of a step (docs/performance.md).
pub const PAYING_RATE: f64 = 1.2;

/// A warning for `precision = "bf16"` on this CPU, if its bf16 instructions do not pay.
pub fn slower_warning() -> Option<String> {
    let rate = rate_against_f32()?;
    (rate < PAYING_RATE).then(|| {
        format!(
            "[student] precision = \"bf16\": this CPU runs its bf16 dot products (vdpbf16ps) at {rate:.2}× the FLOP rate of f32 FMA (measured), so bf16 training will be slower than f32; use \"f32\" here"
        )
    })
}

/// `x` rounded to bf16 (nearest, ties to even; NaN stays NaN; subnormals to a signed zero, as
/// `vcvtne2ps2bf16` does), as its bits.
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        ((bits >> 16) | 0x40) as u16
    } else if bits & 0x7F80_0000 == 0 {
        (bits >> 16) as u16 & 0x8000
    } else {
        ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
    }
}

/// The f32 value of bf16 bits.
pub fn from_bf16(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

thread_local! {
    /// The rounded copy of `a`, the panels of `b` and a row of rounded values, kept between
    /// calls on this thread.
    static SCRATCH: RefCell<(Vec<u16>, Vec<u32>, Vec<u16>)> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// `src` rounded into `dst` (same length): 32 values per instruction, the tail one by one
/// (the same rounding).
fn round_into(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len());
    let whole = src.len() / 32 * 32;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: [`product`], the only caller's caller, checked AVX-512 F and BF16.
    unsafe {
        kernel::round(&src[..whole], &mut dst[..whole]);
    }
    for (d, &s) in dst[whole..].iter_mut().zip(&src[whole..]) {
        *d = to_bf16(s);
    }
}

/// Rounds `a` `[m, k]` into `out`, row-major `[m, kp]`, the pad columns zero.
fn round_a(a: &ArrayView2<'_, f32>, kp: usize, out: &mut Vec<u16>, line: &mut Vec<u16>) {
    let (m, k) = a.dim();
    out.clear();
    out.resize(m * kp, 0);
    if let Some(rows) = a.as_slice() {
        for (src, dst) in rows.chunks_exact(k).zip(out.chunks_exact_mut(kp)) {
            round_into(src, &mut dst[..k]);
        }
    } else if let Some(columns) = a.t().as_slice() {
        // A transposed view (xᵀ of the weight gradient): its memory holds the columns.
        line.resize(m, 0);
        for (kk, src) in columns.chunks_exact(m).enumerate() {
            round_into(src, line);
            for (i, &v) in line.iter().enumerate() {
                out[i * kp + kk] = v;
            }
        }
    } else {
        for ((i, kk), &v) in a.indexed_iter() {
            out[i * kp + kk] = to_bf16(v);
        }
    }
}

/// Rounds `b` `[k, n]` into panels of pairs (see the module doc), a pair `(b[2p][j],
/// b[2p + 1][j])` as one u32 (the first in the low half): `[⌈n/32⌉][kp/2][32]`, zero past the
/// edges.
fn pack_b(b: &ArrayView2<'_, f32>, kp: usize, out: &mut Vec<u32>, line: &mut Vec<u16>) {
    let (k, n) = b.dim();
    let pairs = kp / 2;
    out.clear();
    out.resize(n.div_ceil(NR) * pairs * NR, 0);
    let pair = |lo: u16, hi: u16| lo as u32 | (hi as u32) << 16;
    if let Some(rows) = b.as_slice() {
        line.resize(2 * n, 0);
        for p in 0..pairs {
            let (first, second) = line.split_at_mut(n);
            round_into(&rows[2 * p * n..(2 * p + 1) * n], first);
            if 2 * p + 1 < k {
                round_into(&rows[(2 * p + 1) * n..(2 * p + 2) * n], second);
            } else {
                second.fill(0);
            }
            for (block, (lo, hi)) in first.chunks(NR).zip(second.chunks(NR)).enumerate() {
                let dst = &mut out[(block * pairs + p) * NR..][..lo.len()];
                for (d, (&l, &h)) in dst.iter_mut().zip(lo.iter().zip(hi)) {
                    *d = pair(l, h);
                }
            }
        }
    } else if let Some(columns) = b.t().as_slice() {
        // wᵀ of the input gradient: its memory holds w's rows, whose neighbours are a pair.
        line.resize(kp, 0);
        line[k..].fill(0);
        for (j, src) in columns.chunks_exact(k).enumerate() {
            round_into(src, &mut line[..k]);
            let base = (j / NR) * pairs * NR + j % NR;
            for (p, two) in line.chunks_exact(2).enumerate() {
                out[base + p * NR] = pair(two[0], two[1]);
            }
        }
    } else {
        for ((kk, j), &v) in b.indexed_iter() {
            let at = ((j / NR) * pairs + kk / 2) * NR + j % NR;
            out[at] |= (to_bf16(v) as u32) << (16 * (kk % 2));
        }
    }
}

/// The bf16 product on this core: `c [M, N] = alpha · a [M, K] · b [K, N] + beta · c`, any
/// strides. Panics when the CPU lacks AVX512-BF16 (callers check [`available`]).
pub fn product(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    mut c: ArrayViewMut2<'_, f32>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(b.nrows(), k, "inner dimensions");
    assert_eq!(c.dim(), (m, n), "output shape");
    assert!(available(), "bf16 products need AVX512-BF16");
    if m == 0 || n == 0 {
        return;
    }
    let kp = k.div_ceil(2) * 2;
    SCRATCH.with(|scratch| {
        let (a16, panels, line) = &mut *scratch.borrow_mut();
        round_a(&a, kp, a16, line);
        pack_b(&b, kp, panels, line);
        let mut tile = [0f32; MR * NR];
        for (block, j0) in (0..n).step_by(NR).enumerate() {
            let cols = NR.min(n - j0);
            let panel = &panels[block * kp / 2 * NR..(block + 1) * kp / 2 * NR];
            for i0 in (0..m).step_by(MR) {
                let rows = MR.min(m - i0);
                let a_rows = &a16[i0 * kp..(i0 + rows) * kp];
                // SAFETY: AVX-512 F and BF16 were checked above (`available`); `a_rows` holds
                // `rows` rows of `kp` values and `panel` `kp / 2` pairs of 32 columns, as the
                // kernel reads them.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    kernel::tile(a_rows, rows, kp, panel, &mut tile);
                }
                for r in 0..rows {
                    let sums = &tile[r * NR..r * NR + cols];
                    let write = |v: &mut f32, &t: &f32| {
                        *v = if beta == 0.0 {
                            alpha * t
                        } else {
                            alpha * t + beta * *v
                        }
                    };
                    match c.row_mut(i0 + r).into_slice() {
                        Some(row) => row[j0..j0 + cols]
                            .iter_mut()
                            .zip(sums)
                            .for_each(|(v, t)| write(v, t)),
                        None => {
                            let mut row = c.row_mut(i0 + r);
                            for (jj, t) in sums.iter().enumerate() {
                                write(&mut row[j0 + jj], t);
                            }
                        }
                    }
                }
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// `iters` × 16 independent f32 FMAs on registers (a value returned, so the loop stays).
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma_peak(iters: usize) -> f32 {
        let mut acc = [_mm512_set1_ps(0.0); 16];
        let a = _mm512_set1_ps(1.000_001);
        let b = _mm512_set1_ps(0.999_999);
        for _ in 0..iters {
            for r in acc.iter_mut() {
                *r = _mm512_fmadd_ps(a, b, *r);
            }
        }
        acc.iter().map(|&r| _mm512_reduce_add_ps(r)).sum()
    }

    /// `iters` × 16 independent `vdpbf16ps` on registers.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn dpbf16_peak(iters: usize) -> f32 {
        let mut acc = [_mm512_set1_ps(0.0); 16];
        let a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1.0), _mm512_set1_ps(0.5));
        let b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.25), _mm512_set1_ps(1.0));
        for _ in 0..iters {
            for r in acc.iter_mut() {
                *r = _mm512_dpbf16_ps(*r, a, b);
            }
        }
        acc.iter().map(|&r| _mm512_reduce_add_ps(r)).sum()
    }

    /// `src` rounded to bf16 into `dst`; lengths equal, a multiple of 32.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) fn round(src: &[f32], dst: &mut [u16]) {
        assert!(src.len() == dst.len() && src.len().is_multiple_of(32));
        for (s, d) in src.chunks_exact(32).zip(dst.chunks_exact_mut(32)) {
            // SAFETY: `s` holds 32 f32 and `d` 32 u16 (chunks_exact); loads and the store are
            // unaligned. The low 16 lanes of the result come from the second operand.
            unsafe {
                let lo = _mm512_loadu_ps(s.as_ptr());
                let hi = _mm512_loadu_ps(s.as_ptr().add(16));
                let packed = _mm512_cvtne2ps_pbh(hi, lo);
                _mm512_storeu_si512(
                    d.as_mut_ptr().cast(),
                    std::mem::transmute::<__m512bh, __m512i>(packed),
                );
            }
        }
    }

    /// `tile [MR, NR]` (its first `rows` rows) = `a_rows [rows, kp]` (bf16, row-major) ·
    /// `panel` (`kp / 2` pairs of NR columns).
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) fn tile(a_rows: &[u16], rows: usize, kp: usize, panel: &[u32], tile: &mut [f32]) {
        match rows {
            8 => rows_of::<8>(a_rows, kp, panel, tile),
            7 => rows_of::<7>(a_rows, kp, panel, tile),
            6 => rows_of::<6>(a_rows, kp, panel, tile),
            5 => rows_of::<5>(a_rows, kp, panel, tile),
            4 => rows_of::<4>(a_rows, kp, panel, tile),
            3 => rows_of::<3>(a_rows, kp, panel, tile),
            2 => rows_of::<2>(a_rows, kp, panel, tile),
            _ => rows_of::<1>(a_rows, kp, panel, tile),
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    fn rows_of<const R: usize>(a_rows: &[u16], kp: usize, panel: &[u32], tile: &mut [f32]) {
        assert!(R <= MR && a_rows.len() >= R * kp && panel.len() >= kp / 2 * NR);
        assert!(tile.len() >= MR * NR);
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        for p in 0..kp / 2 {
            // SAFETY: p < kp / 2, so the 32 u32 at p·NR are inside `panel` (length kp/2·NR,
            // asserted); row r < R has kp values in `a_rows` (asserted), so the pair at 2p
            // is inside it. Loads are unaligned.
            unsafe {
                let b = panel.as_ptr().add(p * NR);
                let b0 = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(b.cast()));
                let b1 = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                    b.add(NR / 2).cast(),
                ));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let pair = a_rows
                        .as_ptr()
                        .add(r * kp + 2 * p)
                        .cast::<i32>()
                        .read_unaligned();
                    let a = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair));
                    acc[0] = _mm512_dpbf16_ps(acc[0], a, b0);
                    acc[1] = _mm512_dpbf16_ps(acc[1], a, b1);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: tile holds MR·NR f32 (asserted) and r < R ≤ MR: 32 values at r·NR.
            unsafe {
                _mm512_storeu_ps(tile.as_mut_ptr().add(r * NR), acc[0]);
                _mm512_storeu_ps(tile.as_mut_ptr().add(r * NR + 16), acc[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even (1).
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 1.0 / 64.0);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }

    #[test]
    fn the_bf16_product_is_the_f32_product_of_the_rounded_operands() {
        if !available() {
            eprintln!("skipped: no AVX512-BF16 on this CPU");
            return;
        }
        // Odd shapes (row, column and pair remainders), row-major and transposed operands.
        for (m, k, n) in [(13, 37, 45), (8, 2, 32), (1, 1, 1), (70, 64, 10)] {
            let a =
                Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 3.0 - 1.5);
            let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 13) as f32 / 7.0 - 0.9);
            let round = |x: &Array2<f32>| x.mapv(|v| from_bf16(to_bf16(v)));
            let (ra, rb) = (round(&a), round(&b));
            let a_t = a.t().as_standard_layout().into_owned();
            let b_t = b.t().as_standard_layout().into_owned();
            for beta in [0.0f32, 1.0] {
                let mut expected = Array2::from_elem((m, n), 0.5f32);
                ndarray::linalg::general_mat_mul(2.0, &ra, &rb, beta, &mut expected);
                for (a, b) in [(a.view(), b.view()), (a_t.t(), b_t.t())] {
                    let mut c = Array2::from_elem((m, n), 0.5f32);
                    product(2.0, a, b, beta, c.view_mut());
                    for (x, y) in c.iter().zip(expected.iter()) {
                        assert!(
                            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                            "{m}x{k}x{n}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }
}
