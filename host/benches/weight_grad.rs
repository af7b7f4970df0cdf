//! The weight-gradient phase of docs/performance.md: the MLP 784-256-128-10's weight gradients
//! and SGD update for one batch of 128 rows in two shards of 64, as the trainer did it before
//! `train::weight_grad` (one `gemm` product per shard, the shards at once, each single-threaded,
//! then the optimiser adding the shards' gradients as it updates) against it (the gradient
//! summed over both shards block by block, the cores splitting its rows, the update applied to
//! each block).
//!
//! `cargo bench -p kdprune --bench weight_grad` prints the CPU, then for each of `ROUNDS`
//! rounds (default 5) the two ways' time per step, in turn, and their ratio; the results are
//! checked equal to the bit first. Threads: rayon's pool (`RAYON_NUM_THREADS`, default all).

use std::time::Instant;

use kdprune::train::kernels::gemm;
use kdprune::train::kernels::weight_grad::Factors;
use kdprune::train::optim::{Gradient, Optimizer, OptimizerSpec, Update};
use ndarray::{Array2, ArrayD};
use rand::{Rng, SeedableRng};

const LAYERS: [(usize, usize); 3] = [(784, 256), (256, 128), (128, 10)];
const SHARD_ROWS: usize = 64;
const STEPS: usize = 500;

/// One layer's shards: inputs `[64, in]` and output gradients `[64, out]`.
struct Layer {
    x: [Array2<f32>; 2],
    g: [Array2<f32>; 2],
}

/// The trainer before `weight_grad`: per shard `gw_s = x_sᵀ g_s` (both shards at once, each
/// product whole on its core), then one update summing the parts.
fn per_shard_products(
    layers: &[Layer],
    weights: &mut [ArrayD<f32>],
    partials: &mut [[ArrayD<f32>; 2]],
    optimizer: &mut Optimizer,
) {
    // The shards run at once, each through every layer, as `Network::training_step` runs them.
    let (first, second): (Vec<_>, Vec<_>) = partials.iter_mut().map(|[a, b]| (a, b)).unzip();
    let product = |shard: usize, outs: Vec<&mut ArrayD<f32>>| {
        gemm::serial(|| {
            for (layer, out) in layers.iter().zip(outs) {
                let mut out = out
                    .view_mut()
                    .into_dimensionality::<ndarray::Ix2>()
                    .expect("2-D");
                gemm::gemm(
                    1.0,
                    &layer.x[shard].t(),
                    &layer.g[shard].view(),
                    0.0,
                    &mut out,
                );
            }
        })
    };
    rayon::join(|| product(0, first), || product(1, second));
    let updates = weights
        .iter_mut()
        .zip(partials.iter())
        .map(|(w, [a, b])| Update {
            value: w,
            decay: true,
            gradient: Gradient::Parts(vec![a, b]),
        })
        .collect();
    optimizer.step_summing(updates, 0.05);
}

/// `weight_grad`: the factors summed and applied block by block.
fn summed_in_blocks(layers: &[Layer], weights: &mut [ArrayD<f32>], optimizer: &mut Optimizer) {
    let updates = weights
        .iter_mut()
        .zip(layers)
        .map(|(w, layer)| Update {
            value: w,
            decay: true,
            gradient: Gradient::Factors {
                parts: (0..2)
                    .map(|s| Factors {
                        x: layer.x[s].view(),
                        g: layer.g[s].view(),
                    })
                    .collect(),
                packed: None,
            },
        })
        .collect();
    optimizer.step_summing(updates, 0.05);
}

fn sgd() -> Optimizer {
    Optimizer::new(
        OptimizerSpec::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        5e-4,
    )
}

fn main() {
    // On a worker of rayon's pool, as the trainer's loop runs (`train::train_observed`): a
    // parallel call from outside the pool sleeps until a worker has done it.
    rayon::scope(|_| measure());
}

fn measure() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut random =
        |r: usize, c: usize| Array2::from_shape_simple_fn((r, c), || rng.gen_range(-1.0f32..1.0));
    let layers: Vec<Layer> = LAYERS
        .iter()
        .map(|&(i, o)| Layer {
            x: [random(SHARD_ROWS, i), random(SHARD_ROWS, i)],
            g: [random(SHARD_ROWS, o), random(SHARD_ROWS, o)],
        })
        .collect();
    let weights0: Vec<ArrayD<f32>> = LAYERS
        .iter()
        .map(|&(i, o)| random(i, o).into_dyn())
        .collect();
    let mut partials: Vec<[ArrayD<f32>; 2]> = LAYERS
        .iter()
        .map(|&(i, o)| [ArrayD::zeros(vec![i, o]), ArrayD::zeros(vec![i, o])])
        .collect();

    // Equal to the bit after a few steps.
    let (mut w_old, mut w_new) = (weights0.clone(), weights0.clone());
    let (mut o_old, mut o_new) = (sgd(), sgd());
    for _ in 0..3 {
        per_shard_products(&layers, &mut w_old, &mut partials, &mut o_old);
        summed_in_blocks(&layers, &mut w_new, &mut o_new);
    }
    assert_eq!(w_old, w_new, "the two ways must give the same weights");

    let flops: f64 = LAYERS
        .iter()
        .map(|&(i, o)| 2.0 * (i * o * 2 * SHARD_ROWS) as f64)
        .sum();
    println!(
        "# weight gradients + SGD update of MLP 784-256-128-10, batch {} in 2 shards; {}, {} threads, {STEPS} steps per timing",
        2 * SHARD_ROWS,
        kdprune::bench::cpu_description(),
        rayon::current_num_threads()
    );
    let time = |work: &mut dyn FnMut()| {
        work();
        let t = Instant::now();
        for _ in 0..STEPS {
            work();
        }
        t.elapsed().as_secs_f64() / STEPS as f64
    };
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let old = time(&mut || per_shard_products(&layers, &mut w_old, &mut partials, &mut o_old));
        let new = time(&mut || summed_in_blocks(&layers, &mut w_new, &mut o_new));
        ratios.push(old / new);
        println!(
            "{{\"round\":{round},\"per_shard_products_us\":{:.1},\"summed_in_blocks_us\":{:.1},\"per_shard_products_gflops\":{:.1},\"summed_in_blocks_gflops\":{:.1},\"speedup\":{:.3}}}",
            old * 1e6,
            new * 1e6,
            flops / old / 1e9,
            flops / new / 1e9,
            old / new
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "# speed-up (per-shard products / summed in blocks), median of {rounds} rounds: {:.2}×",
        ratios[ratios.len() / 2]
    );
}
