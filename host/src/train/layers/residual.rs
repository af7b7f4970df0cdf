//! The residual block: `body(x) + shortcut(x)`, and the ReLU after it when the block takes it
//! over ([`Layer::absorb_relu`]). Its own work is elementwise over the whole batch (a copy of
//! the input for the shortcut, the add, the ReLU), spread over the cores: a batch-norm network
//! runs unsharded, so a serial pass here would leave a core idle.

use ndarray::ArrayD;
use rayon::prelude::*;

use super::layer::{backward_timed, forward_timed, Layer, Mode, ParamRef};
use crate::train::onnx_export::GraphBuilder;
use crate::train::profile::{self, Pass};

/// Elements per task of the block's elementwise passes.
const CHUNK: usize = 1 << 14;

/// `body(x) + shortcut(x)`; an empty shortcut is the identity.
#[derive(Clone)]
pub struct Residual {
    pub body: Vec<Box<dyn Layer>>,
    pub shortcut: Vec<Box<dyn Layer>>,
    label: String,
    /// The block applies the ReLU that follows it in its add (and its gradient in the copy).
    relu: bool,
    /// 1 where the sum of the last training forward pass was positive; reused between steps.
    mask: Vec<u8>,
    /// Whether `mask` belongs to a training forward pass not yet gone back through.
    mask_pending: bool,
}

/// `res out sS`: ResNet's basic block (conv 3×3 stride S, BN, ReLU, conv 3×3, BN; a 1×1
/// conv and BN on the shortcut when the shape changes), then its ReLU.
pub(super) fn residual_from_spec(
    out: usize,
    stride: usize,
    site: &mut super::layer::Site<'_>,
) -> Result<Vec<Box<dyn Layer>>, String> {
    use super::conv::Conv2d;
    use super::norm::BatchNorm;
    use super::simple::Relu;
    let in_shape = site.image()?;
    let rng = &mut *site.rng;
    let conv1 = Conv2d::new(in_shape, out, 3, stride, 1, false, rng);
    let mid = conv1.output_shape();
    let mid3 = [mid[0], mid[1], mid[2]];
    let mut body: Vec<Box<dyn Layer>> = vec![
        Box::new(conv1),
        Box::new(BatchNorm::new(mid.clone())),
        Box::new(Relu::new(mid.clone())),
        Box::new(Conv2d::new(mid3, out, 3, 1, 1, false, rng)),
        Box::new(BatchNorm::new(mid.clone())),
    ];
    if site.fuse_relus {
        super::layer::fuse_relus(&mut body);
    }
    let shortcut: Vec<Box<dyn Layer>> = if stride != 1 || in_shape[0] != out {
        vec![
            Box::new(Conv2d::new(in_shape, out, 1, stride, 0, false, rng)),
            Box::new(BatchNorm::new(mid)),
        ]
    } else {
        Vec::new()
    };
    let block = Residual::new(format!("res {out} s{stride}"), body, shortcut);
    let relu = Relu::new(block.output_shape());
    Ok(vec![Box::new(block), Box::new(relu)])
}

impl Residual {
    pub fn new(label: String, body: Vec<Box<dyn Layer>>, shortcut: Vec<Box<dyn Layer>>) -> Self {
        Self {
            body,
            shortcut,
            label,
            relu: false,
            mask: Vec::new(),
            mask_pending: false,
        }
    }

    /// `y += short`, then the ReLU if the block took it over (recording where it passes in
    /// training). Shapes: both `[B, ...output_shape]`.
    fn add_shortcut(&mut self, y: &mut ArrayD<f32>, short: &ArrayD<f32>, mode: Mode) {
        if !self.relu {
            return parallel_add(y, short);
        }
        assert_eq!(
            y.shape(),
            short.shape(),
            "residual block: body and shortcut shapes"
        );
        let y = y.as_slice_mut().expect("standard layout");
        let short = short.as_slice().expect("standard layout");
        if mode == Mode::Train && self.mask.len() != y.len() {
            self.mask = vec![0; y.len()];
        }
        let pairs = y.par_chunks_mut(CHUNK).zip(short.par_chunks(CHUNK));
        match mode {
            Mode::Eval => pairs.for_each(|(y, s)| {
                y.iter_mut()
                    .zip(s)
                    .for_each(|(y, s)| *y = (*y + s).max(0.0))
            }),
            Mode::Train => {
                pairs
                    .zip(self.mask.par_chunks_mut(CHUNK))
                    .for_each(|((y, s), m)| {
                        for ((y, s), m) in y.iter_mut().zip(s).zip(m) {
                            let sum = *y + s;
                            *m = u8::from(sum > 0.0);
                            *y = sum.max(0.0);
                        }
                    });
                self.mask_pending = true;
            }
        }
    }

    /// The gradient at the block's output, through its ReLU if it took it over (in place),
    /// and a copy of it for the shortcut. Shape `[B, ...output_shape]`.
    fn output_grad_and_copy(&mut self, grad: &mut ArrayD<f32>) -> ArrayD<f32> {
        if !self.relu {
            return parallel_copy(grad);
        }
        super::layer::take_pending_forward(&mut self.mask_pending);
        let mut copy = ArrayD::<f32>::zeros(grad.raw_dim());
        let g = grad.as_slice_mut().expect("standard layout");
        let c = copy.as_slice_mut().expect("standard layout");
        assert_eq!(g.len(), self.mask.len(), "residual block: gradient shape");
        g.par_chunks_mut(CHUNK)
            .zip(c.par_chunks_mut(CHUNK))
            .zip(self.mask.par_chunks(CHUNK))
            .for_each(|((g, c), m)| {
                for ((g, c), &m) in g.iter_mut().zip(c).zip(m) {
                    *g = if m != 0 { *g } else { 0.0 };
                    *c = *g;
                }
            });
        copy
    }
}

/// A copy of `x` made on all cores.
fn parallel_copy(x: &ArrayD<f32>) -> ArrayD<f32> {
    let mut copy = ArrayD::<f32>::zeros(x.raw_dim());
    copy.as_slice_mut()
        .expect("standard layout")
        .par_chunks_mut(CHUNK)
        .zip(x.as_slice().expect("standard layout").par_chunks(CHUNK))
        .for_each(|(c, x)| c.copy_from_slice(x));
    copy
}

/// `a += b` on all cores; same shapes.
fn parallel_add(a: &mut ArrayD<f32>, b: &ArrayD<f32>) {
    assert_eq!(a.shape(), b.shape(), "residual block: gradient shapes");
    a.as_slice_mut()
        .expect("standard layout")
        .par_chunks_mut(CHUNK)
        .zip(b.as_slice().expect("standard layout").par_chunks(CHUNK))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
}

fn run_forward(layers: &mut [Box<dyn Layer>], mut x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
    for l in layers.iter_mut() {
        x = forward_timed(l, x, mode);
    }
    x
}

fn run_backward(layers: &mut [Box<dyn Layer>], mut g: ArrayD<f32>) -> ArrayD<f32> {
    for l in layers.iter_mut().rev() {
        g = backward_timed(l, g);
    }
    g
}

/// The kind a residual block's own work (the copy for the shortcut, the add and the ReLU it
/// took over) is timed as.
const RESIDUAL_KIND: &str = "residual copy and add";

impl Layer for Residual {
    fn replicate(&self, shard: u64) -> Box<dyn Layer> {
        Box::new(Self {
            body: self.body.iter().map(|l| l.replicate(shard)).collect(),
            shortcut: self.shortcut.iter().map(|l| l.replicate(shard)).collect(),
            label: self.label.clone(),
            relu: self.relu,
            mask: Vec::new(),
            mask_pending: false,
        })
    }
    fn describe(&self) -> String {
        self.label.clone()
    }
    fn output_shape(&self) -> Vec<usize> {
        self.body
            .last()
            .map(|l| l.output_shape())
            .unwrap_or_default()
    }
    fn absorb_relu(&mut self) -> bool {
        self.relu = true;
        true
    }
    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let x = super::layer::into_standard_layout(x);
        let copy = profile::time(|| RESIDUAL_KIND.into(), Pass::Forward, || parallel_copy(&x));
        let short = run_forward(&mut self.shortcut, copy, mode);
        let mut y = super::layer::into_standard_layout(run_forward(&mut self.body, x, mode));
        let short = super::layer::into_standard_layout(short);
        profile::time(
            || RESIDUAL_KIND.into(),
            Pass::Forward,
            || self.add_shortcut(&mut y, &short, mode),
        );
        y
    }
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let mut grad = super::layer::into_standard_layout(grad);
        let copy = profile::time(
            || RESIDUAL_KIND.into(),
            Pass::Backward,
            || self.output_grad_and_copy(&mut grad),
        );
        let g_short = super::layer::into_standard_layout(run_backward(&mut self.shortcut, copy));
        let mut g = super::layer::into_standard_layout(run_backward(&mut self.body, grad));
        profile::time(
            || RESIDUAL_KIND.into(),
            Pass::Backward,
            || parallel_add(&mut g, &g_short),
        );
        g
    }
    fn params(&mut self) -> Vec<ParamRef<'_>> {
        self.body
            .iter_mut()
            .chain(self.shortcut.iter_mut())
            .flat_map(|l| l.params())
            .collect()
    }
    fn children(&self) -> Vec<&dyn Layer> {
        self.body
            .iter()
            .chain(&self.shortcut)
            .map(|l| l.as_ref())
            .collect()
    }
    fn children_mut(&mut self) -> Vec<&mut Box<dyn Layer>> {
        self.body
            .iter_mut()
            .chain(self.shortcut.iter_mut())
            .collect()
    }
    fn to_onnx(&self, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        let mut body = input.to_string();
        for (i, l) in self.body.iter().enumerate() {
            body = l.to_onnx(graph, &body, &format!("{prefix}.body.{i}"));
        }
        let mut short = input.to_string();
        for (i, l) in self.shortcut.iter().enumerate() {
            short = l.to_onnx(graph, &short, &format!("{prefix}.shortcut.{i}"));
        }
        graph.node("Add", &[&body, &short], prefix, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::layers::layer::fuse_relus;
    use crate::train::layers::{BatchNorm, Relu};
    use ndarray::IxDyn;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Every bit a pair `[layer, relu]` computes: the training output, the input gradient,
    /// the parameter gradients, the evaluation output.
    fn bits_of(layers: &mut [Box<dyn Layer>], x: &ArrayD<f32>, g: &ArrayD<f32>) -> Vec<u32> {
        let y = layers
            .iter_mut()
            .fold(x.clone(), |x, l| l.forward(x, Mode::Train));
        let gx = layers
            .iter_mut()
            .rev()
            .fold(g.clone(), |g, l| l.backward(g));
        let grads: Vec<f32> = layers[0]
            .params()
            .iter()
            .flat_map(|p| p.grad.iter().copied().collect::<Vec<_>>())
            .collect();
        let eval = layers
            .iter_mut()
            .fold(x.clone(), |x, l| l.forward(x, Mode::Eval));
        y.iter()
            .chain(&gx)
            .chain(&grads)
            .chain(&eval)
            .map(|v| v.to_bits())
            .collect()
    }

    /// `make()` followed by a ReLU gives the same bits whether the ReLU is its own layer or
    /// absorbed; `shape` is the batch `[B, C, H, W]`, over several elementwise chunks.
    fn assert_absorbing_keeps_bits(make: impl Fn() -> Box<dyn Layer>, shape: &[usize]) {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut draw = || ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.gen_range(-1.0..1.0));
        let (x, g) = (draw(), draw());
        // γ and β drawn per channel, some γ negative and some β past the values' range, so
        // that the gate's sign depends on both.
        let pair = || -> Vec<Box<dyn Layer>> {
            let mut layer = make();
            let mut params = ChaCha8Rng::seed_from_u64(4);
            for p in layer.params() {
                p.value.mapv_inplace(|_| params.gen_range(-3.0..3.0f32));
            }
            vec![layer, Box::new(Relu::new(shape[1..].to_vec()))]
        };
        let mut fused = pair();
        fuse_relus(&mut fused);
        let (plain_bits, fused_bits) = (bits_of(&mut pair(), &x, &g), bits_of(&mut fused, &x, &g));
        assert_eq!(plain_bits.len(), fused_bits.len());
        // Some values are clamped, some pass: the ReLU did something to compare.
        assert!(plain_bits.contains(&0) && plain_bits.iter().any(|&b| b != 0));
        assert!(
            plain_bits == fused_bits,
            "{} bits differ",
            make().describe()
        );
    }

    #[test]
    fn absorbing_the_relu_keeps_every_bit() {
        // Planes whose lengths are and are not multiples of the eight lanes, a batch above
        // the ReLU's parallel threshold, and a dense layer's `[B, C]`.
        assert_absorbing_keeps_bits(|| Box::new(BatchNorm::new(vec![16])), &[64, 16]);
        for shape in [[3, 8, 7, 7], [4, 8, 32, 32], [5, 16, 32, 32]] {
            let image = || shape[1..].to_vec();
            assert_absorbing_keeps_bits(|| Box::new(BatchNorm::new(image())), &shape);
            assert_absorbing_keeps_bits(
                || {
                    let body: Vec<Box<dyn Layer>> = vec![Box::new(BatchNorm::new(image()))];
                    Box::new(Residual::new("res".into(), body, Vec::new()))
                },
                &shape,
            );
            assert_absorbing_keeps_bits(
                || {
                    let body: Vec<Box<dyn Layer>> = vec![Box::new(BatchNorm::new(image()))];
                    let shortcut: Vec<Box<dyn Layer>> = vec![Box::new(BatchNorm::new(image()))];
                    Box::new(Residual::new("res".into(), body, shortcut))
                },
                &shape,
            );
        }
    }
}
