//! The `Layer` trait every layer implements, the training/evaluation `Mode`, and the handles
//! through which the optimiser and the data-parallel shards reach a layer's parameters.

use std::ops::Deref;
use std::sync::Arc;

use crate::train::profile;
use ndarray::{Array2, ArrayD, IxDyn};

/// `x` in standard (row-major, contiguous) layout, copied only when it is not already: layers
/// that rewrite their input in place take it as it comes.
pub(super) fn into_standard_layout(x: ArrayD<f32>) -> ArrayD<f32> {
    if x.is_standard_layout() {
        x
    } else {
        x.as_standard_layout().into_owned()
    }
}

/// Clears a layer's "cache of a training forward pass awaits backward" flag, panicking if it
/// was not set: a backward pass must follow a training forward pass.
pub(super) fn take_pending_forward(pending: &mut bool) {
    assert!(
        std::mem::take(pending),
        "backward after a training forward pass"
    );
}

/// Training (batch statistics, dropout, caches for backward) or evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// A parameter tensor that the replicas of a layer share, without copying, while the shards
/// of a data-parallel step run (see [`crate::train::network`]); outside a step it has one
/// owner, which the optimiser writes through.
#[derive(Clone)]
pub struct SharedTensor(Arc<ArrayD<f32>>);

impl SharedTensor {
    pub fn new(value: ArrayD<f32>) -> Self {
        Self(Arc::new(value))
    }

    /// An empty stand-in held by a replica between steps.
    pub fn detached() -> Self {
        Self::new(ArrayD::zeros(IxDyn(&[0])))
    }

    /// The tensor, for writing: only while no replica shares it.
    pub fn get_mut(&mut self) -> &mut ArrayD<f32> {
        Arc::get_mut(&mut self.0).expect("a parameter is written only while no replica shares it")
    }
}

impl Deref for SharedTensor {
    type Target = ArrayD<f32>;
    fn deref(&self) -> &ArrayD<f32> {
        &self.0
    }
}

/// The factors of a dense layer's weight gradient `xᵀg`: its input `x` `[B, in]` and the
/// gradient of its output `g` `[B, out]`, row-major.
pub type WeightFactors = (Array2<f32>, Array2<f32>);

/// A parameter and its gradient.
pub struct ParamRef<'a> {
    pub value: &'a mut ArrayD<f32>,
    pub grad: &'a mut ArrayD<f32>,
    /// Whether weight decay applies (weights yes; biases and norm scales no).
    pub decay: bool,
}

/// A copy of a layer behind `dyn Layer`; every `Clone` layer has it.
pub trait CloneLayer {
    fn clone_layer(&self) -> Box<dyn Layer>;
}

impl<T: Layer + Clone + 'static> CloneLayer for T {
    fn clone_layer(&self) -> Box<dyn Layer> {
        Box::new(self.clone())
    }
}

impl Clone for Box<dyn Layer> {
    fn clone(&self) -> Self {
        self.clone_layer()
    }
}

/// One layer of a network.
pub trait Layer: Send + CloneLayer {
    /// The spec this layer was built from, e.g. `conv 16 k3 s1 p1`.
    fn describe(&self) -> String;
    /// Shape of one output example (without the batch axis).
    fn output_shape(&self) -> Vec<usize>;
    /// `x`: `[B, ...input_shape]` → `[B, ...output_shape]`.
    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32>;
    /// `grad`: `[B, ...output_shape]` → gradient with respect to the input of the last
    /// training-mode forward pass; the parameter gradients of the layer are set (replacing
    /// the previous ones, so that nothing has to clear them before a step).
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32>;
    /// A copy for another shard of a data-parallel batch (see [`crate::train::network`]): the
    /// same parameters and settings, its own gradients and caches; `shard` picks its own
    /// random stream where the layer draws random numbers (by default, a clone).
    fn replicate(&self, _shard: u64) -> Box<dyn Layer> {
        self.clone_layer()
    }
    /// Whether, in training, one example's output depends on the other examples of its batch
    /// (batch statistics). A network with such a layer is not split into shards.
    fn couples_examples(&self) -> bool {
        self.children().iter().any(|c| c.couples_examples())
    }
    /// Parameters with their gradients.
    fn params(&mut self) -> Vec<ParamRef<'_>> {
        Vec::new()
    }
    /// Whether the layer (or a sub-layer) has parameters.
    fn has_params(&self) -> bool {
        self.children().iter().any(|c| c.has_params())
    }
    /// Handles on the parameters that replicas may share, in [`Layer::params`] order, then any
    /// derived copies of them (a dense layer's packed weights, an empty stand-in when stale).
    fn shared_params(&self) -> Vec<SharedTensor> {
        self.children()
            .iter()
            .flat_map(|c| c.shared_params())
            .collect()
    }
    /// Re-draws the parameters as PyTorch initialises `nn.Linear` and `nn.Conv2d`: weights
    /// and biases `U(±1/sqrt(fan_in))` (kaiming-uniform with `a = √5`); layers without such
    /// parameters (batch norm keeps γ = 1, β = 0, as PyTorch) pass it to their children.
    fn init_like_torch(&mut self, rng: &mut rand_chacha::ChaCha8Rng) {
        for c in self.children_mut() {
            c.init_like_torch(rng);
        }
    }
    /// Takes the layer's parameters from `shared` (handles from [`Layer::shared_params`] of
    /// a layer of the same spec, or [`SharedTensor::detached`] stand-ins), in the same order.
    fn use_params(&mut self, shared: &mut dyn Iterator<Item = SharedTensor>) {
        for c in self.children_mut() {
            c.use_params(shared);
        }
    }
    /// Named tensors that make up the layer's state (parameters and buffers such as running
    /// statistics), for saving. Names are relative (`weight`, `running_mean`, ...).
    fn state(&self) -> Vec<(String, &ArrayD<f32>)> {
        Vec::new()
    }
    /// Mutable access to the same tensors, for loading.
    fn state_mut(&mut self) -> Vec<(String, &mut ArrayD<f32>)> {
        Vec::new()
    }
    /// Floating-point operations of the forward pass for one example (multiply and add
    /// counted separately); layers whose cost is negligible return 0.
    fn flops(&self) -> u64 {
        self.children().iter().map(|c| c.flops()).sum()
    }
    /// Tells the layer whether its input gradient is needed. The first layer with parameters
    /// has no use for it, and for a first dense layer it would be a quarter of the step's
    /// work.
    fn set_input_grad(&mut self, _needed: bool) {}
    /// The precision of the layer's products in training steps (evaluation stays f32, so that
    /// a student scores as its ONNX export does).
    fn set_precision(&mut self, _precision: crate::train::kernels::gemm::Precision) {}
    /// Asks the layer to leave its weight gradient, from the next backward pass on, as the
    /// factors `(x, g)` of `xᵀg` for the network to sum over a batch's shards
    /// ([`crate::train::kernels::weight_grad`]) rather than computing it (dense layers in f32).
    fn defer_weight_grad(&mut self, _defer: bool) {}
    /// The factors the last backward pass left for its first parameter's gradient, if it
    /// deferred it: `x` `[B, in]` and `g` `[B, out]`, row-major.
    fn take_weight_factors(&mut self) -> Option<WeightFactors> {
        None
    }
    /// [`Layer::params`], with the buffer of the layer's packed weights (a dense layer's panels
    /// for its forward products) for an update that writes them too; `None` where the layer
    /// has none. The packed copy counts as stale until [`Layer::set_packed_fresh`].
    fn params_and_packed(&mut self) -> (Vec<ParamRef<'_>>, Option<&mut [f32]>) {
        (self.params(), None)
    }
    /// Declares the packed weights written by the last update (true) or not: only fresh ones
    /// are lent to the replicas of the next sharded step ([`Layer::shared_params`]).
    fn set_packed_fresh(&mut self, _fresh: bool) {}
    /// Takes over the ReLU that follows this layer, applying it within its own passes over
    /// the tensor (batch norm, a residual block's add) so that the ReLU costs no pass of its
    /// own; returns whether it did. The caller then marks the ReLU absorbed
    /// ([`Layer::mark_absorbed`]); the results are the same bits either way.
    fn absorb_relu(&mut self) -> bool {
        false
    }
    /// Whether the layer is a ReLU that no layer has absorbed yet.
    fn is_relu(&self) -> bool {
        false
    }
    /// Makes a ReLU pass values and gradients through, its work taken over by the layer
    /// before it. Only [`fuse_relus`] calls it, right after that layer's
    /// [`Layer::absorb_relu`] returned true: alone, it would drop the ReLU.
    fn mark_absorbed(&mut self) {}
    /// Whether the layer passes values and gradients through unchanged (an absorbed ReLU):
    /// the profiler leaves it out.
    fn passes_through(&self) -> bool {
        false
    }
    /// Sub-layers (for residual blocks), so that walks over the network reach them.
    fn children(&self) -> Vec<&dyn Layer> {
        Vec::new()
    }
    fn children_mut(&mut self) -> Vec<&mut Box<dyn Layer>> {
        Vec::new()
    }
    /// The layer as ONNX nodes (see [`crate::train::onnx_export`]); returns the output name.
    fn to_onnx(
        &self,
        graph: &mut crate::train::onnx_export::GraphBuilder,
        input: &str,
        prefix: &str,
    ) -> String;
}

/// Lets each layer absorb a ReLU that follows it ([`Layer::absorb_relu`]), in one list of
/// layers in execution order.
pub fn fuse_relus(layers: &mut [Box<dyn Layer>]) {
    for i in 1..layers.len() {
        let (before, after) = layers.split_at_mut(i);
        if after[0].is_relu() && before[i - 1].absorb_relu() {
            after[0].mark_absorbed();
        }
    }
}

/// Where a layer is built: the shape it receives, its place in the list, the draws.
pub struct Site<'a> {
    /// One example as the layer receives it, `[D]` or `[C, H, W]`.
    pub shape: &'a [usize],
    /// 0-based position in the list of specs (messages and per-layer seeds).
    pub index: usize,
    pub spec: &'a super::spec::LayerSpec,
    /// The network's seed (layers that draw per step, such as dropout, seed from it).
    pub seed: u64,
    /// The initial weights' draws, shared in list order.
    pub rng: &'a mut rand_chacha::ChaCha8Rng,
    /// Whether layers inside a block take over the ReLU after them ([`fuse_relus`]): always,
    /// but in the tests that compare the two.
    pub fuse_relus: bool,
}

impl Site<'_> {
    /// The `[C, H, W]` input of a layer that needs an image.
    pub fn image(&self) -> Result<[usize; 3], String> {
        match self.shape {
            [c, h, w] => Ok([*c, *h, *w]),
            shape => Err(self.error(format!(
                "needs image input [C, H, W] but gets {shape:?}; set [data] sample_shape or put it before any dense layer"
            ))),
        }
    }

    /// `layer <i> (<spec>): <what>`.
    pub fn error(&self, what: String) -> String {
        format!("layer {} ({:?}): {what}", self.index + 1, self.spec)
    }
}

/// `layer.forward`, its wall time added to its kind's when profiling is on and it is a leaf
/// (a block's parts time themselves): [`crate::train::profile`].
pub fn forward_timed(layer: &mut Box<dyn Layer>, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
    if profile::enabled() && layer.children().is_empty() && !layer.passes_through() {
        let kind = profile::kind_of(&layer.describe());
        profile::time(|| kind, profile::Pass::Forward, || layer.forward(x, mode))
    } else {
        layer.forward(x, mode)
    }
}

/// `layer.backward`, timed as [`forward_timed`].
pub fn backward_timed(layer: &mut Box<dyn Layer>, grad: ArrayD<f32>) -> ArrayD<f32> {
    if profile::enabled() && layer.children().is_empty() && !layer.passes_through() {
        let kind = profile::kind_of(&layer.describe());
        profile::time(|| kind, profile::Pass::Backward, || layer.backward(grad))
    } else {
        layer.backward(grad)
    }
}
