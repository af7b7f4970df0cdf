//! Subnormal floats flushed to zero while training (x86-64: the MXCSR FTZ and DAZ bits, on
//! the calling thread and every thread of rayon's pool). An arithmetic instruction that meets
//! a subnormal operand or result takes a microcode assist of about a hundred cycles on the
//! CPUs this project runs on; the KD term's gradients, small by construction, made training
//! up to 1.6× slower as α grew (docs/performance.md). Values below 1.2e-38 carry nothing a
//! student can learn from, and the flags are set on every thread that trains, so results stay
//! the same whatever the number of threads.

use std::sync::atomic::{AtomicBool, Ordering};

static FLUSH: AtomicBool = AtomicBool::new(true);

/// Whether [`apply`] flushes (the default) or restores IEEE subnormals: `kdprune bench`
/// turns flushing off to measure what it saves.
pub fn set_flushing(on: bool) {
    FLUSH.store(on, Ordering::Relaxed);
}

/// Sets (or, when flushing is off, clears) flush-to-zero and denormals-are-zero on this
/// thread and on every rayon worker.
pub fn apply() {
    let on = FLUSH.load(Ordering::Relaxed);
    set_on_this_thread(on);
    rayon::broadcast(|_| set_on_this_thread(on));
}

#[cfg(target_arch = "x86_64")]
fn set_on_this_thread(on: bool) {
    // FTZ (bit 15) and DAZ (bit 6) of MXCSR.
    const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);
    let mut csr: u32 = 0;
    // SAFETY: STMXCSR and LDMXCSR read and write this thread's SSE control register through
    // a valid pointer to a local u32; setting FTZ and DAZ changes only how subnormal floats
    // are rounded on this thread (every x86-64 CPU has SSE2 and both bits).
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
        if on {
            csr |= FTZ_DAZ;
        } else {
            csr &= !FTZ_DAZ;
        }
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly));
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn set_on_this_thread(_on: bool) {}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn subnormal_products_become_zero() {
        super::apply();
        let tiny = std::hint::black_box(1e-30f32);
        assert_eq!(tiny * 1e-10, 0.0);
        let on_pool = rayon::broadcast(|_| std::hint::black_box(1e-30f32) * 1e-10);
        assert!(on_pool.iter().all(|&v| v == 0.0));
    }
}
