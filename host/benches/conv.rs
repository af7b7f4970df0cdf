//! The 3×3 stride-1 convolutions of ResNet-20 (docs/performance.md, "Where ResNet-20's time
//! goes"), each pass on its own against this machine's f32 GEMM rate measured in the same run:
//! the three stages' shapes (16 channels at 32 × 32, 32 at 16 × 16, 64 at 8 × 8), batch 128,
//! through [`Conv2d`]'s `forward` and `backward` (weight and input gradients), as the trainer
//! calls them.
//!
//! `cargo bench -p kdprune --bench conv` prints the CPU, the GEMM peak, then for each of
//! `ROUNDS` rounds (default 3) and each stage the best of `REPS` (default 5) calls of each
//! pass: milliseconds, GFLOP/s and the fraction of the peak. Threads: rayon's pool
//! (`RAYON_NUM_THREADS`, default all).

use std::time::Instant;

use kdprune::bench::{cpu_description, gemm_gflops};
use kdprune::train::layers::{Conv2d, Layer, Mode};
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};

const BATCH: usize = 128;
/// `(channels, side)` of each stage: the convolution maps `[C, S, S]` to itself.
const STAGES: [(usize, usize); 3] = [(16, 32), (32, 16), (64, 8)];

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Best seconds of `reps` calls of `f`.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let rounds = env_or("ROUNDS", 3);
    let reps = env_or("REPS", 5);
    println!("cpu: {}", cpu_description());
    println!("threads: {}", rayon::current_num_threads());
    let peak = rayon::scope(|_| gemm_gflops(1024, 5));
    println!("gemm peak: {peak:.1} GFLOP/s (1024³ f32, best of 5)");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for round in 1..=rounds {
        for &(c, s) in &STAGES {
            let mut conv = Conv2d::new([c, s, s], c, 3, 1, 1, false, &mut rng);
            let x = ArrayD::from_shape_simple_fn(IxDyn(&[BATCH, c, s, s]), || {
                rng.gen_range(-1.0f32..1.0)
            });
            let g = ArrayD::from_shape_simple_fn(IxDyn(&[BATCH, c, s, s]), || {
                rng.gen_range(-1.0f32..1.0)
            });
            // One product's FLOPs: 2 · B · C · C · 9 · S².
            let flops = 2.0 * (BATCH * c * c * 9 * s * s) as f64;
            let (forward, backward) = rayon::scope(|_| {
                let forward = best_of(reps, || {
                    std::hint::black_box(conv.forward(x.clone(), Mode::Train));
                });
                let backward = (0..reps)
                    .map(|_| {
                        conv.forward(x.clone(), Mode::Train);
                        let g = g.clone();
                        let started = Instant::now();
                        std::hint::black_box(conv.backward(g));
                        started.elapsed().as_secs_f64()
                    })
                    .fold(f64::INFINITY, f64::min);
                (forward, backward)
            });
            let rate = |seconds: f64, products: f64| products * flops / seconds / 1e9;
            println!(
                "round {round} conv {c}@{s}x{s}: forward {:.2} ms {:.1} GFLOP/s ({:.0} % of peak), \
                 backward {:.2} ms {:.1} GFLOP/s ({:.0} % of peak)",
                forward * 1e3,
                rate(forward, 1.0),
                100.0 * rate(forward, 1.0) / peak,
                backward * 1e3,
                rate(backward, 2.0),
                100.0 * rate(backward, 2.0) / peak,
            );
        }
    }
}
