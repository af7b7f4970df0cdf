//! Fully connected layer `y = x W + b`, `W` `[in, out]`.

use crate::train::kernels::gemm::{gemm_in, Precision};
use crate::train::kernels::{gemm_in_place, weight_grad};
use ndarray::{Array1, Array2, ArrayD, Axis, Ix2, IxDyn};
use rand::Rng;

use super::layer::{Layer, Mode, ParamRef, SharedTensor, WeightFactors};
use crate::train::onnx_export::GraphBuilder;

#[derive(Clone)]
pub struct Dense {
    /// `[in, out]`.
    w: SharedTensor,
    /// `[out]`.
    b: SharedTensor,
    gw: ArrayD<f32>,
    gb: ArrayD<f32>,
    /// `[B, in]`, the input of the last training forward pass.
    input: Option<Array2<f32>>,
    input_grad: bool,
    /// Of the training step's three products.
    precision: Precision,
    /// Leave the weight gradient as factors (see [`Layer::defer_weight_grad`]).
    defer: bool,
    /// `x` `[B, in]` and `g` `[B, out]` of the last backward pass, when it deferred.
    factors: Option<WeightFactors>,
    /// The weights in panels of 32 columns (`weight_grad::packed_len`), written by the fused
    /// SGD update, read by the replicas' forward products in the next sharded step instead
    /// of the `gemm` crate packing the weights once per shard; in a replica, the lent copy
    /// or an empty stand-in.
    packed: SharedTensor,
    /// Whether `packed` holds the current weights (the last update wrote it and nothing has
    /// had the weights mutably since).
    packed_fresh: bool,
}

/// `dense units` from its spec: a `[C, H, W]` input is flattened first.
pub(super) fn from_spec(units: usize, site: &mut super::layer::Site<'_>) -> Vec<Box<dyn Layer>> {
    let mut layers: Vec<Box<dyn Layer>> = Vec::new();
    let mut inputs = site.shape[0];
    if site.shape.len() > 1 {
        let flatten = super::simple::Flatten::new(site.shape.to_vec());
        inputs = flatten.output_shape()[0];
        layers.push(Box::new(flatten));
    }
    layers.push(Box::new(Dense::new(inputs, units, site.rng)));
    layers
}

impl Dense {
    /// He-uniform weights `U(±sqrt(6 / in))`, zero bias.
    pub fn new(inputs: usize, outputs: usize, rng: &mut impl Rng) -> Self {
        let bound = (6.0 / inputs as f32).sqrt();
        let w = Array2::from_shape_simple_fn((inputs, outputs), || rng.gen_range(-bound..bound))
            .into_dyn();
        Self {
            gw: ArrayD::zeros(w.raw_dim()),
            gb: ArrayD::zeros(IxDyn(&[outputs])),
            b: SharedTensor::new(Array1::<f32>::zeros(outputs).into_dyn()),
            w: SharedTensor::new(w),
            input: None,
            input_grad: true,
            precision: Precision::F32,
            defer: false,
            factors: None,
            packed: SharedTensor::detached(),
            packed_fresh: false,
        }
    }

    fn w2(&self) -> ndarray::ArrayView2<'_, f32> {
        self.w
            .view()
            .into_dimensionality::<Ix2>()
            .expect("dense weight is 2-D")
    }
}

impl Layer for Dense {
    fn init_like_torch(&mut self, rng: &mut rand_chacha::ChaCha8Rng) {
        self.packed_fresh = false;
        let bound = 1.0 / (self.w.shape()[0] as f32).sqrt();
        self.w
            .get_mut()
            .mapv_inplace(|_| rng.gen_range(-bound..bound));
        self.b
            .get_mut()
            .mapv_inplace(|_| rng.gen_range(-bound..bound));
    }

    fn describe(&self) -> String {
        format!("dense {}", self.w.shape()[1])
    }

    fn output_shape(&self) -> Vec<usize> {
        vec![self.w.shape()[1]]
    }

    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let x = x
            .into_dimensionality::<Ix2>()
            .expect("dense input is [B, in]");
        assert_eq!(x.ncols(), self.w.shape()[0], "dense input width");
        let outputs = self.w.shape()[1];
        let bias = self
            .b
            .view()
            .into_shape_with_order(outputs)
            .expect("dense bias is [out]");
        // The bias is the product's starting value (beta 1): one pass over the output less.
        let mut y = bias
            .broadcast((x.nrows(), outputs))
            .expect("bias row repeats")
            .to_owned();
        let precision = match mode {
            Mode::Train => self.precision,
            Mode::Eval => Precision::F32,
        };
        // A replica in a sharded training step reads the packed weights it was lent.
        let packed = (self.defer && mode == Mode::Train && precision.is_f32())
            .then(|| self.packed.as_slice())
            .flatten()
            .filter(|p| {
                !p.is_empty() && gemm_in_place::applies_packed(x.nrows(), x.ncols(), outputs)
            });
        match packed {
            Some(packed) => gemm_in_place::product_packed(x.view(), packed, y.view_mut()),
            None => gemm_in(
                precision,
                1.0,
                &x.view(),
                &self.w2().view(),
                1.0,
                &mut y.view_mut(),
            ),
        }
        if mode == Mode::Train {
            self.input = Some(x);
        }
        y.into_dyn()
    }

    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let g = grad
            .into_dimensionality::<Ix2>()
            .expect("dense gradient is [B, out]");
        let x = self
            .input
            .take()
            .expect("backward after a training forward pass");
        let defer = self.defer && self.precision.is_f32();
        if !defer {
            let mut gw = self
                .gw
                .view_mut()
                .into_dimensionality::<Ix2>()
                .expect("2-D");
            gemm_in(
                self.precision,
                1.0,
                &x.t().view(),
                &g.view(),
                0.0,
                &mut gw.view_mut(),
            );
        }
        self.gb.assign(&g.sum_axis(Axis(0)).into_dyn());
        let dx = self.input_grad.then(|| {
            let mut dx = Array2::<f32>::zeros(x.raw_dim());
            gemm_in(
                self.precision,
                1.0,
                &g.view(),
                &self.w2().t().view(),
                0.0,
                &mut dx.view_mut(),
            );
            dx.into_dyn()
        });
        self.factors = defer.then_some((x, g));
        dx.unwrap_or_else(|| ArrayD::zeros(IxDyn(&[0])))
    }

    fn defer_weight_grad(&mut self, defer: bool) {
        self.defer = defer;
    }

    fn take_weight_factors(&mut self) -> Option<WeightFactors> {
        self.factors.take()
    }

    fn flops(&self) -> u64 {
        2 * self.w.len() as u64
    }

    fn set_input_grad(&mut self, needed: bool) {
        self.input_grad = needed;
    }

    fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    fn params_and_packed(&mut self) -> (Vec<ParamRef<'_>>, Option<&mut [f32]>) {
        let (inputs, outputs) = (self.w.shape()[0], self.w.shape()[1]);
        // Only the network's own layer keeps packed weights (a replica borrows them).
        let keeps = !self.defer && gemm_in_place::applies_packed(2, inputs, outputs);
        let len = weight_grad::packed_len(inputs, outputs);
        if keeps && self.packed.len() != len {
            *self.packed.get_mut() = ArrayD::zeros(IxDyn(&[len]));
        }
        self.packed_fresh = false;
        let packed = keeps.then(|| self.packed.get_mut().as_slice_mut().expect("a flat buffer"));
        let params = param_refs(&mut self.w, &mut self.gw, &mut self.b, &mut self.gb);
        (params, packed)
    }

    fn set_packed_fresh(&mut self, fresh: bool) {
        self.packed_fresh = fresh && !self.packed.is_empty();
    }

    fn params(&mut self) -> Vec<ParamRef<'_>> {
        self.packed_fresh = false;
        param_refs(&mut self.w, &mut self.gw, &mut self.b, &mut self.gb)
    }

    fn has_params(&self) -> bool {
        true
    }

    fn shared_params(&self) -> Vec<SharedTensor> {
        let packed = if self.packed_fresh {
            self.packed.clone()
        } else {
            SharedTensor::detached()
        };
        vec![self.w.clone(), self.b.clone(), packed]
    }

    fn use_params(&mut self, shared: &mut dyn Iterator<Item = SharedTensor>) {
        self.w = shared.next().expect("a weight for each dense layer");
        self.b = shared.next().expect("a bias for each dense layer");
        self.packed = shared.next().expect("packed weights for each dense layer");
    }

    fn state(&self) -> Vec<(String, &ArrayD<f32>)> {
        vec![("weight".into(), &*self.w), ("bias".into(), &*self.b)]
    }

    fn state_mut(&mut self) -> Vec<(String, &mut ArrayD<f32>)> {
        self.packed_fresh = false;
        vec![
            ("weight".into(), self.w.get_mut()),
            ("bias".into(), self.b.get_mut()),
        ]
    }

    fn to_onnx(&self, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        let w = graph.initializer(&format!("{prefix}.weight"), &self.w);
        let b = graph.initializer(&format!("{prefix}.bias"), &self.b);
        graph.node("Gemm", &[input, &w, &b], prefix, &[])
    }
}

/// The weight (decayed) and the bias (not), with their gradients.
fn param_refs<'a>(
    w: &'a mut SharedTensor,
    gw: &'a mut ArrayD<f32>,
    b: &'a mut SharedTensor,
    gb: &'a mut ArrayD<f32>,
) -> Vec<ParamRef<'a>> {
    vec![
        ParamRef {
            value: w.get_mut(),
            grad: gw,
            decay: true,
        },
        ParamRef {
            value: b.get_mut(),
            grad: gb,
            decay: false,
        },
    ]
}
