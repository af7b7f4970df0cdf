//! What training a network takes in memory, estimated from its specs before anything is
//! allocated: its parameters with their gradients (one copy per shard) and optimiser state,
//! and a batch's activations kept for the backward pass. A request the machine cannot hold
//! is refused with what it needs, instead of aborting in the allocator.

use super::layers::spec::LayerSpec;
use super::optim::OptimizerSpec;
use super::spec::StudentSpec;

/// A network's size, counted from its specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Trainable values (weights, biases, batch-norm scales and shifts).
    pub parameters: u64,
    /// Values the layers' outputs hold for one example.
    pub activations: u64,
}

/// Counts the layers of `specs`, then `dense classes`, for examples of `input_shape`
/// (`[D]` or `[C, H, W]`); `None` for a shape the build refuses (it names the layer).
pub fn footprint(specs: &[LayerSpec], input_shape: &[usize], classes: usize) -> Option<Footprint> {
    let mut shape: Vec<u64> = input_shape.iter().map(|&d| d as u64).collect();
    let mut total = Footprint {
        parameters: 0,
        activations: 0,
    };
    let classifier = LayerSpec::Dense { units: classes };
    for spec in specs.iter().chain(std::iter::once(&classifier)) {
        let (out, parameters, kept) = layer(spec, &shape)?;
        total.parameters = total.parameters.saturating_add(parameters);
        total.activations = total.activations.saturating_add(kept);
        shape = out;
    }
    Some(total)
}

fn product(shape: &[u64]) -> u64 {
    shape.iter().fold(1u64, |a, &d| a.saturating_mul(d))
}

/// One layer: its output shape, its parameters and the values it keeps per example.
fn layer(spec: &LayerSpec, shape: &[u64]) -> Option<(Vec<u64>, u64, u64)> {
    let image = || match shape {
        [c, h, w] => Some((*c, *h, *w)),
        _ => None,
    };
    let slide = |size: u64, kernel: u64, stride: u64, padding: u64| {
        (size + 2 * padding)
            .checked_sub(kernel)
            .map(|d| d / stride.max(1) + 1)
    };
    let (out, parameters): (Vec<u64>, u64) = match *spec {
        LayerSpec::Dense { units } => {
            let units = units as u64;
            let inputs = product(shape);
            (vec![units], inputs.saturating_add(1).saturating_mul(units))
        }
        LayerSpec::Relu | LayerSpec::Dropout { .. } => (shape.to_vec(), 0),
        LayerSpec::Flatten => (vec![product(shape)], 0),
        LayerSpec::Bn => (shape.to_vec(), 2 * shape.first().copied().unwrap_or(0)),
        LayerSpec::Conv {
            out,
            kernel,
            stride,
            padding,
            bias,
        } => {
            let (c, h, w) = image()?;
            let (k, s, p, o) = (kernel as u64, stride as u64, padding as u64, out as u64);
            let weights = o.saturating_mul(c).saturating_mul(k.saturating_mul(k));
            let out = vec![o, slide(h, k, s, p)?, slide(w, k, s, p)?];
            // The output, and the unfolded input `[C·K², OH·OW]` kept for the backward pass
            // (its gradient is counted with the outputs' in `training_bytes`).
            let unfolded = c
                .saturating_mul(k.saturating_mul(k))
                .saturating_mul(out[1].saturating_mul(out[2]));
            let kept = product(&out).saturating_add(unfolded);
            return Some((out, weights.saturating_add(if bias { o } else { 0 }), kept));
        }
        LayerSpec::MaxPool { kernel, stride } | LayerSpec::AvgPool { kernel, stride } => {
            let (c, h, w) = image()?;
            let (k, s) = (kernel as u64, stride as u64);
            (vec![c, slide(h, k, s, 0)?, slide(w, k, s, 0)?], 0)
        }
        LayerSpec::Gap => {
            let (c, _, _) = image()?;
            (vec![c], 0)
        }
        LayerSpec::Res { out, stride } => {
            let (c, h, w) = image()?;
            let (o, s) = (out as u64, stride as u64);
            let body = o
                .saturating_mul(c)
                .saturating_mul(9)
                .saturating_add(o.saturating_mul(o).saturating_mul(9))
                .saturating_add(o.saturating_mul(4));
            let shortcut = if s != 1 || c != o {
                o.saturating_mul(c).saturating_add(o.saturating_mul(2))
            } else {
                0
            };
            let out = vec![o, slide(h, 3, s, 1)?, slide(w, 3, s, 1)?];
            // conv, bn, relu, conv, bn, the shortcut's two, the sum and its ReLU (the ReLUs'
            // outputs counted though batch norm and the sum apply them in place: an upper
            // bound); the two convolutions' unfolded inputs.
            let unfolded = c
                .max(o)
                .saturating_mul(9)
                .saturating_mul(product(&out[1..]))
                .saturating_mul(2);
            let kept = product(&out).saturating_mul(9).saturating_add(unfolded);
            return Some((out, body.saturating_add(shortcut), kept));
        }
    };
    let kept = product(&out);
    Some((out, parameters, kept))
}

/// Bytes that training `spec` on examples of `input_shape` takes, about: f32 parameters,
/// their gradients (the network's and one per shard of a batch, as training cuts it:
/// `ceil(batch / SHARD_ROWS)` shards, one when batch normalisation couples the examples),
/// the optimiser's state, and a batch's activations with their gradients. `None` as
/// [`footprint`].
pub fn training_bytes(
    spec: &StudentSpec,
    input_shape: &[usize],
    classes: usize,
) -> Option<(u64, Footprint)> {
    let size = footprint(&spec.layers, input_shape, classes)?;
    let couples = spec
        .layers
        .iter()
        .any(|l| matches!(l, LayerSpec::Bn | LayerSpec::Res { .. }));
    let shards = if couples {
        1
    } else {
        spec.batch_size.div_ceil(super::network::SHARD_ROWS)
    };
    let states = match spec.optimizer {
        OptimizerSpec::Sgd { .. } => 1,
        OptimizerSpec::AdamW { .. } => 2,
    };
    let copies = 2 + shards as u64 + states;
    // Each output and its gradient, for every example of a batch.
    let per_batch = size
        .activations
        .saturating_mul(spec.batch_size as u64)
        .saturating_mul(2);
    let values = size
        .parameters
        .saturating_mul(copies)
        .saturating_add(per_batch);
    Some((values.saturating_mul(4), size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::network::Network;
    use crate::train::spec::parse_layer;

    #[test]
    fn the_count_from_specs_is_the_built_networks() {
        let cases: [(&[&str], &[usize]); 4] = [
            (&["dense 32", "relu", "dropout 0.2", "bn"], &[64]),
            (
                &[
                    "conv 8",
                    "relu",
                    "maxpool 2",
                    "conv 6 k5 s2 p0 nobias",
                    "avgpool 2 s1",
                    "flatten",
                    "dense 10",
                ],
                &[3, 28, 28],
            ),
            (
                &["conv 16", "bn", "relu", "res 16", "res 32 s2", "gap"],
                &[3, 32, 32],
            ),
            (&["conv 4 k3 s1 p0", "dense 5"], &[1, 8, 8]),
        ];
        for (layers, shape) in cases {
            let specs: Vec<LayerSpec> = layers.iter().map(|l| parse_layer(l).unwrap()).collect();
            let counted = footprint(&specs, shape, 10).unwrap();
            let mut net = Network::build(&specs, shape, 10, 0).unwrap();
            assert_eq!(
                counted.parameters,
                net.num_parameters() as u64,
                "{layers:?}"
            );
        }
    }

    #[test]
    fn resnet_20_on_cifar_is_counted_at_about_two_gigabytes_at_batch_128() {
        let layers = [
            "conv 16 k3 s1 p1 nobias",
            "bn",
            "relu",
            "res 16",
            "res 16",
            "res 16",
            "res 32 s2",
            "res 32",
            "res 32",
            "res 64 s2",
            "res 64",
            "res 64",
            "gap",
        ];
        let specs: Vec<LayerSpec> = layers.iter().map(|l| parse_layer(l).unwrap()).collect();
        let size = footprint(&specs, &[3, 32, 32], 10).unwrap();
        let mut net = Network::build(&specs, &[3, 32, 32], 10, 0).unwrap();
        assert_eq!(size.parameters, net.num_parameters() as u64);
        // Activations and unfolded inputs of 128 examples, with their gradients: more than
        // the tensors alone, far from a refusal on any machine kdprune runs on.
        let bytes = 4 * size.activations * 128 * 2;
        assert!((1 << 30..4 << 30).contains(&bytes), "{bytes}");
    }

    #[test]
    fn a_network_past_any_memory_is_counted_without_being_built() {
        let specs = vec![parse_layer("dense 2000000000").unwrap()];
        let size = footprint(&specs, &[64], 10).unwrap();
        assert_eq!(size.parameters, 65 * 2_000_000_000 + 2_000_000_001 * 10);
        // A window larger than the image: the build names it.
        assert!(footprint(&[parse_layer("maxpool 9").unwrap()], &[1, 8, 8], 10).is_none());
    }
}
