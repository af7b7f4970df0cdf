//! The bf16 study of docs/performance.md: does a bf16 product pay on this CPU?
//!
//! `cargo bench -p kdprune --bench bf16` prints the CPU, then, on one core:
//! 1. the instruction peak: independent `vfmadd…ps` (f32, 32 FLOP per zmm instruction)
//!    against `vdpbf16ps` (bf16 pairs summed into f32, 64 FLOP per instruction);
//! 2. a register-blocked bf16 product (`C f32 [M, N] = A bf16 [M, K] · B bf16 [K, N]`, B packed
//!    in k-pairs, 8 rows × 32 columns of accumulators) against the f32 product the trainer uses
//!    (the `gemm` crate, single-threaded), on the MLP step's shapes and 1024³, with the
//!    largest difference from the f32 result;
//! 3. the cost of rounding f32 to bf16 (`vcvtne2ps2bf16`), which a bf16 step pays on every
//!    activation and weight it multiplies.
//!
//! On a CPU without AVX512-BF16 it says so and measures nothing else. Output: one JSON line per
//! figure, and a summary.

use std::time::Instant;

/// Fastest of `rounds` timings of `work`, in seconds.
fn fastest(rounds: usize, mut work: impl FnMut()) -> f64 {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            work();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// f32 product by the `gemm` crate on one core: `c [m, n] = a [m, k] · b [k, n]`, row-major.
fn gemm_f32(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    // SAFETY: the slices hold m·k, k·n and m·n values, row-major with the strides given, and
    // `c` does not alias `a` or `b` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

#[cfg(target_arch = "x86_64")]
mod bf16 {
    use std::arch::x86_64::*;

    /// Microkernel rows and columns (two zmm of 16 f32 each).
    pub const MR: usize = 8;
    pub const NR: usize = 32;

    /// Rounds `src` to bf16 (round to nearest even), 32 values per instruction; `src.len()`
    /// a multiple of 32.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub fn to_bf16(src: &[f32], dst: &mut [u16]) {
        assert_eq!(src.len(), dst.len());
        assert!(src.len().is_multiple_of(32));
        for (s, d) in src.chunks_exact(32).zip(dst.chunks_exact_mut(32)) {
            // SAFETY: `s` holds 32 f32 and `d` 32 u16 (chunks_exact); unaligned loads/stores.
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

    /// B `[k, n]` (bf16, row-major) packed for the kernel: for each block of NR columns, for
    /// each pair of rows `(2p, 2p+1)`, NR pairs `(b[2p][j], b[2p+1][j])`. `k` even, `n` a
    /// multiple of NR.
    pub fn pack_b(b: &[u16], k: usize, n: usize) -> Vec<u16> {
        let mut out = Vec::with_capacity(k * n);
        for j0 in (0..n).step_by(NR) {
            for p in 0..k / 2 {
                for j in j0..j0 + NR {
                    out.push(b[2 * p * n + j]);
                    out.push(b[(2 * p + 1) * n + j]);
                }
            }
        }
        out
    }

    /// `c [m, n] = a [m, k] · b [k, n]`, `a` bf16 row-major, `b` packed by [`pack_b`], `c` f32
    /// row-major; `m` a multiple of MR, `n` of NR, `k` even.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub fn gemm_bf16(m: usize, n: usize, k: usize, a: &[u16], packed_b: &[u16], c: &mut [f32]) {
        assert!(m.is_multiple_of(MR) && n.is_multiple_of(NR) && k.is_multiple_of(2));
        assert!(a.len() >= m * k && packed_b.len() >= k * n && c.len() >= m * n);
        let pairs = k / 2;
        for (block, j0) in (0..n).step_by(NR).enumerate() {
            let panel = &packed_b[block * pairs * 2 * NR..(block + 1) * pairs * 2 * NR];
            for i0 in (0..m).step_by(MR) {
                let mut acc = [[_mm512_setzero_ps(); 2]; MR];
                for p in 0..pairs {
                    // SAFETY: `panel` holds `pairs` × 2·NR u16 (checked above), so the two
                    // 32-lane loads at p·2·NR stay inside it; `a` holds m·k values and
                    // i0 + r < m, 2p + 1 < k, so the 32-bit read of a pair stays inside too.
                    unsafe {
                        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(
                            panel.as_ptr().add(p * 2 * NR).cast(),
                        ));
                        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(
                            panel.as_ptr().add(p * 2 * NR + NR).cast(),
                        ));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let pair = a
                                .as_ptr()
                                .add((i0 + r) * k + 2 * p)
                                .cast::<i32>()
                                .read_unaligned();
                            let av =
                                std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair));
                            acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
                            acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    let row = &mut c[(i0 + r) * n + j0..(i0 + r) * n + j0 + NR];
                    // SAFETY: `row` holds NR = 32 f32: two 16-lane unaligned stores.
                    unsafe {
                        _mm512_storeu_ps(row.as_mut_ptr(), acc[0]);
                        _mm512_storeu_ps(row.as_mut_ptr().add(16), acc[1]);
                    }
                }
            }
        }
    }
}

fn main() {
    println!(
        "# {} — bf16 study, one core; {}",
        kdprune::bench::cpu_description(),
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = is_x86_feature_detected!("avx512f");
        let bf16 = is_x86_feature_detected!("avx512bf16");
        let amx = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|t| t.contains("amx_bf16"));
        println!("{{\"avx512f\": {avx512}, \"avx512_bf16\": {bf16}, \"amx_bf16\": {amx}}}");
        if !(avx512 && bf16) {
            println!("no AVX512-BF16 on this CPU: nothing to measure");
            return;
        }
        let (f32_peak, bf16_peak) =
            kdprune::train::kernels::gemm_bf16::instruction_peaks(20_000_000, 3)
                .expect("AVX512-BF16 detected above");
        println!("{{\"figure\": \"instruction peak\", \"f32_fma_gflops\": {f32_peak:.1}, \"bf16_dot_gflops\": {bf16_peak:.1}, \"ratio\": {:.2}}}", bf16_peak / f32_peak);

        let mut rows = Vec::new();
        for (name, m, n, k) in [
            ("mlp forward 1 (shard of 64)", 64, 256, 784),
            ("mlp forward 2", 64, 128, 256),
            ("mlp weight gradient 1", 784, 256, 64),
            ("square 1024", 1024, 1024, 1024),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 9.0)
                .collect();
            let mut c32 = vec![0f32; m * n];
            let mut c16 = vec![0f32; m * n];
            let mut a16 = vec![0u16; m * k];
            let mut b16 = vec![0u16; k * n];
            let reps = (2e9 / (2.0 * (m * n * k) as f64)).max(1.0) as usize;
            let t32 = fastest(5, || {
                for _ in 0..reps {
                    gemm_f32(m, n, k, &a, &b, &mut c32);
                }
            }) / reps as f64;
            // SAFETY: AVX512-BF16 was detected above.
            let convert = fastest(5, || unsafe {
                bf16::to_bf16(&a, &mut a16);
                bf16::to_bf16(&b, &mut b16);
            });
            let packed = bf16::pack_b(&b16, k, n);
            let t16 = fastest(5, || {
                for _ in 0..reps {
                    // SAFETY: as above; shapes are multiples of MR, NR and 2.
                    unsafe { bf16::gemm_bf16(m, n, k, &a16, &packed, &mut c16) };
                }
            }) / reps as f64;
            let scale = c32.iter().fold(0f32, |s, v| s.max(v.abs()));
            let err = c32
                .iter()
                .zip(&c16)
                .fold(0f32, |e, (x, y)| e.max((x - y).abs()));
            let flops = 2.0 * (m * n * k) as f64;
            let (g32, g16) = (flops / t32 / 1e9, flops / t16 / 1e9);
            println!("{{\"figure\": \"product\", \"shape\": \"{name}\", \"m\": {m}, \"n\": {n}, \"k\": {k}, \"f32_gemm_gflops\": {g32:.1}, \"bf16_gflops\": {g16:.1}, \"ratio\": {:.2}, \"bf16_with_rounding_gflops\": {:.1}, \"largest_difference_relative\": {:.2e}}}", g16 / g32, flops / (t16 + convert) / 1e9, err / scale);
            rows.push((name, g32, g16, flops / (t16 + convert) / 1e9, err / scale));
        }
        println!("\n# summary (GFLOP/s, one core)");
        println!(
            "instruction peak: f32 FMA {f32_peak:.1}, bf16 dot {bf16_peak:.1} ({:.2}x)",
            bf16_peak / f32_peak
        );
        for (name, g32, g16, g16c, err) in rows {
            println!("{name:32} f32 gemm {g32:6.1}  bf16 kernel {g16:6.1} ({:.2}x)  with rounding {g16c:6.1}  rel. diff {err:.1e}", g16 / g32);
        }
    }
}
