//! Which vector instruction set the trainer's own kernels run on: the direct convolutions, the
//! dense weight-gradient phase, the products read in place and the 2×2 max pooling.
//!
//! AVX-512 F where the CPU has it and the build takes it (feature `x86-v4`, on by default,
//! which also lets the `gemm` crate take its AVX-512 kernels); else AVX2 with FMA (every
//! x86-64 CPU of the last decade); else none, and the layers use their portable loops. A build
//! without `x86-v4` runs the AVX2 path on an AVX-512 machine, which is how that path is
//! measured and tested where no AVX2-only machine is at hand (`SIMD=avx2
//! scripts/bench-trainer.sh`, `scripts/test.sh`).

/// An instruction set of the trainer's kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 F: 32 registers of 16 f32 lanes, masked loads and stores, compress.
    Avx512,
    /// AVX2 and FMA: 16 registers of 8 f32 lanes.
    Avx2,
}

impl Isa {
    /// The widest this CPU has and this build takes, if any.
    pub fn detect() -> Option<Self> {
        if Self::Avx512.supported() {
            Some(Self::Avx512)
        } else if Self::Avx2.supported() {
            Some(Self::Avx2)
        } else {
            None
        }
    }

    /// Its name in reports: `avx512` or `avx2`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2",
        }
    }

    /// Whether this CPU (and build) runs this instruction set's kernels.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Self::Avx512 => cfg!(feature = "x86-v4") && is_x86_feature_detected!("avx512f"),
                Self::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = self;
            false
        }
    }
}

/// Whether the AVX-512 kernels run here (shorthand of `Isa::Avx512.supported()`).
pub(crate) fn avx512() -> bool {
    Isa::Avx512.supported()
}

/// Helpers of the AVX2 kernels.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// The lanes below `n` set (all for `n` ≥ 8), for masked loads and stores.
    #[target_feature(enable = "avx2")]
    pub(crate) fn first_lanes(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n.min(8) as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}
