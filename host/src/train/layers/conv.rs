//! 2-D convolution (square kernel, stride, zero padding): directly ([`super::conv_direct`])
//! when the stride is 1 and the CPU has AVX-512 or AVX2, otherwise by im2col and one matrix product for
//! the whole batch, as below.
//!
//! Input `[B, C, H, W]`, weight `[O, C, K, K]` (PyTorch's layout), output `[B, O, OH, OW]`
//! with `OH = (H + 2P - K) / S + 1`. The im2col matrix of the batch is `[C·K·K, B·OH·OW]`
//! (image `b` in columns `b·OH·OW ..`), so that the forward pass is one product
//! `W [O, C·K·K] × cols → [O, B·OH·OW]`, and the backward pass two:
//! `dW = g [O, B·OH·OW] × colsᵀ` and `dcols = Wᵀ × g`. One product per batch (or per shard of
//! a data-parallel step) packs the weights once and gives the weight gradient an inner
//! dimension of `B·OH·OW` instead of `OH·OW`; the price is moving `[O, B·OH·OW]` to and from
//! NCHW order, a copy of contiguous rows of `OH·OW`.

use ndarray::parallel::prelude::*;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut2, Axis, IxDyn};
use rand::Rng;

use super::conv_direct::Direct;
use super::layer::{Layer, Mode, ParamRef, SharedTensor};
use crate::train::kernels::gemm::{self, gemm};
use crate::train::onnx_export::{Attr, GraphBuilder};

#[derive(Clone)]
pub struct Conv2d {
    in_shape: [usize; 3],
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    /// `[O, C, K, K]`.
    w: SharedTensor,
    /// `[O]`, or `None` (a convolution followed by batch norm needs none).
    b: Option<SharedTensor>,
    gw: ArrayD<f32>,
    gb: Option<ArrayD<f32>>,
    /// Working buffers, kept from step to step so that they are neither allocated nor
    /// zero-filled again: `cols` `[C·K·K, B·OH·OW]` (of the last training forward pass while
    /// `cols_pending`), `products` `[O, B·OH·OW]`, `grad_columns` `[O, B·OH·OW]`, `dcols`
    /// `[C·K·K, B·OH·OW]`.
    cols: Array2<f32>,
    cols_pending: bool,
    products: Array2<f32>,
    grad_columns: Array2<f32>,
    dcols: Array2<f32>,
    /// `[K, OH·OW]`: 1 where output column `ox` of kernel column `kx` reads inside the image
    /// (used by the same-size, stride-1 path of im2col and col2im).
    column_masks: Vec<u8>,
    input_grad: bool,
    /// The direct path, where it applies; then `padded` holds the last forward pass's input
    /// zero-padded (`[B, C, H + 2P, W + 2P]` and zeros; while `cols_pending`), and
    /// `grad_scratch` and `dx_scratch` the output gradient in the layouts of the weight and
    /// input gradients.
    direct: Option<Direct>,
    padded: Vec<f32>,
    grad_scratch: Vec<f32>,
    dx_scratch: Vec<f32>,
}

/// `buffer`, reshaped to `shape` (reallocated, zero-filled, only when the shape changes).
fn scratch(buffer: &mut Array2<f32>, shape: (usize, usize)) -> &mut Array2<f32> {
    if buffer.dim() != shape {
        *buffer = Array2::zeros(shape);
    }
    buffer
}

/// Where one kernel offset reads along one axis: output positions `lo..hi` read input
/// `o·S + k - P`; the others fall into the padding.
fn valid_outputs(
    k: usize,
    stride: usize,
    padding: usize,
    input: usize,
    outputs: usize,
) -> (usize, usize) {
    // o·S + k ≥ P and o·S + k - P < input.
    let lo = padding.saturating_sub(k).div_ceil(stride);
    let hi = if input + padding > k {
        ((input + padding - k).div_ceil(stride)).min(outputs)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// `conv out kK sS pP [nobias]` from its spec, refused when the kernel is larger than the
/// padded input.
pub(super) fn from_spec(site: &mut super::layer::Site<'_>) -> Result<Box<dyn Layer>, String> {
    let super::spec::LayerSpec::Conv {
        out,
        kernel,
        stride,
        padding,
        bias,
    } = *site.spec
    else {
        unreachable!("dispatched on its kind")
    };
    let s = site.image()?;
    if s[1] + 2 * padding < kernel || s[2] + 2 * padding < kernel {
        return Err(site.error(format!("kernel larger than the padded input {s:?}")));
    }
    Ok(Box::new(Conv2d::new(
        s, out, kernel, stride, padding, bias, site.rng,
    )))
}

impl Conv2d {
    /// He-uniform weights `U(±sqrt(6 / (C·K·K)))`, zero bias.
    pub fn new(
        in_shape: [usize; 3],
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Self {
        let fan_in = in_shape[0] * kernel * kernel;
        let bound = (6.0 / fan_in as f32).sqrt();
        let w = ArrayD::from_shape_simple_fn(
            IxDyn(&[out_channels, in_shape[0], kernel, kernel]),
            || rng.gen_range(-bound..bound),
        );
        Self {
            in_shape,
            out_channels,
            kernel,
            stride,
            padding,
            gw: ArrayD::zeros(w.raw_dim()),
            w: SharedTensor::new(w),
            b: bias.then(|| SharedTensor::new(ArrayD::zeros(IxDyn(&[out_channels])))),
            gb: bias.then(|| ArrayD::zeros(IxDyn(&[out_channels]))),
            cols: Array2::zeros((0, 0)),
            cols_pending: false,
            products: Array2::zeros((0, 0)),
            grad_columns: Array2::zeros((0, 0)),
            dcols: Array2::zeros((0, 0)),
            column_masks: Vec::new(),
            input_grad: true,
            direct: Direct::new(in_shape, out_channels, kernel, stride, padding),
            padded: Vec::new(),
            grad_scratch: Vec::new(),
            dx_scratch: Vec::new(),
        }
        .with_column_masks()
    }

    /// The same layer on the im2col path (to check the direct path against it).
    #[cfg(test)]
    fn without_direct(mut self) -> Self {
        self.direct = None;
        self
    }

    fn with_column_masks(mut self) -> Self {
        let (oh, ow) = self.out_hw();
        let [_, _, w] = self.in_shape;
        self.column_masks = (0..self.kernel)
            .flat_map(|kx| {
                let (lo, hi) = valid_outputs(kx, self.stride, self.padding, w, ow);
                (0..oh * ow).map(move |i| u8::from((lo..hi).contains(&(i % ow))))
            })
            .collect();
        self
    }

    /// Whether output rows have the input's width and step one input row per output row, so
    /// that one kernel offset maps the whole plane by a single shift of the flat index.
    fn same_size_stride_1(&self) -> bool {
        let [_, h, w] = self.in_shape;
        self.stride == 1 && self.out_hw() == (h, w)
    }

    /// For kernel offset `(ky, kx)` of a same-size, stride-1 convolution: the shift from
    /// flat output position to flat input position, and the range of output positions whose
    /// shifted position stays inside the plane (rows out of the image excluded; columns out
    /// of it are masked by `column_masks`).
    fn shifted_range(&self, ky: usize, kx: usize) -> (isize, usize, usize) {
        let [_, h, w] = self.in_shape;
        let p = self.padding as isize;
        let shift = (ky as isize - p) * w as isize + (kx as isize - p);
        let (oy_lo, oy_hi) = valid_outputs(ky, 1, self.padding, h, h);
        let lo = ((oy_lo * w) as isize).max(-shift) as usize;
        let hi = ((oy_hi * w) as isize)
            .min((h * w) as isize - shift)
            .max(lo as isize) as usize;
        (shift, lo, hi)
    }

    /// `(OH, OW)`.
    pub fn out_hw(&self) -> (usize, usize) {
        let [_, h, w] = self.in_shape;
        (
            (h + 2 * self.padding - self.kernel) / self.stride + 1,
            (w + 2 * self.padding - self.kernel) / self.stride + 1,
        )
    }

    fn w2(&self) -> ArrayView2<'_, f32> {
        let ckk = self.in_shape[0] * self.kernel * self.kernel;
        self.w
            .view()
            .into_shape_with_order((self.out_channels, ckk))
            .expect("weight is contiguous")
    }

    /// Images `[B, C·H·W]` → im2col matrix `cols` `[C·K·K, B·OH·OW]`, every element written
    /// (zeros where the window leaves the image). Rows are spread over the cores.
    fn im2col(&self, images: ArrayView2<'_, f32>, cols: &mut Array2<f32>) {
        let [c, h, w] = self.in_shape;
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (oh, ow) = self.out_hw();
        let hw = oh * ow;
        let batch = images.nrows();
        assert_eq!(cols.dim(), (c * k * k, batch * hw), "im2col shape");
        let images = images.as_standard_layout();
        let images = images.as_slice().expect("standard layout");
        let same_size = self.same_size_stride_1();
        cols.axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(row, mut out)| {
                let out = out.as_slice_mut().expect("standard layout");
                let (ci, ky, kx) = (row / (k * k), row / k % k, row % k);
                if same_size {
                    // One shift maps the whole plane: long loops that vectorise.
                    let (shift, lo, hi) = self.shifted_range(ky, kx);
                    let mask = &self.column_masks[kx * hw..][lo..hi];
                    for (b, image_out) in out.chunks_exact_mut(hw).enumerate() {
                        let plane = &images[(b * c + ci) * h * w..][..h * w];
                        let from = (lo as isize + shift) as usize;
                        image_out[..lo].fill(0.0);
                        image_out[hi..].fill(0.0);
                        for ((o, &m), &v) in image_out[lo..hi]
                            .iter_mut()
                            .zip(mask)
                            .zip(&plane[from..from + (hi - lo)])
                        {
                            *o = if m != 0 { v } else { 0.0 };
                        }
                    }
                    return;
                }
                let (ox_lo, ox_hi) = valid_outputs(kx, s, p, w, ow);
                let (oy_lo, oy_hi) = valid_outputs(ky, s, p, h, oh);
                out.fill(0.0);
                for (b, image_out) in out.chunks_exact_mut(hw).enumerate() {
                    let plane = &images[(b * c + ci) * h * w..][..h * w];
                    for oy in oy_lo..oy_hi {
                        let src = &plane[(oy * s + ky - p) * w..][..w];
                        let dst = &mut image_out[oy * ow..(oy + 1) * ow];
                        for (ox, v) in dst[ox_lo..ox_hi].iter_mut().enumerate() {
                            *v = src[(ox + ox_lo) * s + kx - p];
                        }
                    }
                }
            });
    }

    /// Adds the columns of input channel `ci` in `dcols` `[C·K·K, B·OH·OW]` into its input
    /// gradient `planes` `[B, H·W]` (channel `ci` of every image). Each row of `dcols` is read
    /// once, front to back, while the batch's planes of the channel stay in cache.
    fn col2im_channel(
        &self,
        dcols: &ArrayView2<'_, f32>,
        ci: usize,
        mut planes: ArrayViewMut2<'_, f32>,
    ) {
        let [_, h, w] = self.in_shape;
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (oh, ow) = self.out_hw();
        let hw = oh * ow;
        let same_size = self.same_size_stride_1();
        for ky in 0..k {
            let (oy_lo, oy_hi) = valid_outputs(ky, s, p, h, oh);
            for kx in 0..k {
                let row = dcols.row((ci * k + ky) * k + kx);
                let row = row.to_slice().expect("standard layout");
                let planes_and_columns = planes.rows_mut().into_iter().zip(row.chunks_exact(hw));
                if same_size {
                    let (shift, lo, hi) = self.shifted_range(ky, kx);
                    let mask = &self.column_masks[kx * hw..][lo..hi];
                    let to = (lo as isize + shift) as usize;
                    for (mut plane, cols) in planes_and_columns {
                        let plane = plane.as_slice_mut().expect("contiguous plane");
                        for ((o, &m), &v) in plane[to..to + (hi - lo)]
                            .iter_mut()
                            .zip(mask)
                            .zip(&cols[lo..hi])
                        {
                            *o += if m != 0 { v } else { 0.0 };
                        }
                    }
                    continue;
                }
                let (ox_lo, ox_hi) = valid_outputs(kx, s, p, w, ow);
                for (mut plane, cols) in planes_and_columns {
                    let plane = plane.as_slice_mut().expect("contiguous plane");
                    for oy in oy_lo..oy_hi {
                        let src = &cols[oy * ow..(oy + 1) * ow];
                        let out = &mut plane[(oy * s + ky - p) * w..][..w];
                        for ox in ox_lo..ox_hi {
                            out[ox * s + kx - p] += src[ox];
                        }
                    }
                }
            }
        }
    }
}

impl Layer for Conv2d {
    fn init_like_torch(&mut self, rng: &mut rand_chacha::ChaCha8Rng) {
        let fan_in = self.in_shape[0] * self.kernel * self.kernel;
        let bound = 1.0 / (fan_in as f32).sqrt();
        self.w
            .get_mut()
            .mapv_inplace(|_| rng.gen_range(-bound..bound));
        if let Some(b) = self.b.as_mut() {
            b.get_mut().mapv_inplace(|_| rng.gen_range(-bound..bound));
        }
    }

    fn describe(&self) -> String {
        format!(
            "conv {} k{} s{} p{}",
            self.out_channels, self.kernel, self.stride, self.padding
        )
    }

    fn output_shape(&self) -> Vec<usize> {
        let (oh, ow) = self.out_hw();
        vec![self.out_channels, oh, ow]
    }

    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let batch = x.shape()[0];
        assert_eq!(&x.shape()[1..], &self.in_shape, "conv input shape");
        let x = x.as_standard_layout();
        let [c, h, w] = self.in_shape;
        let (oh, ow) = self.out_hw();
        let (o, hw) = (self.out_channels, oh * ow);
        if let Some(direct) = self.direct {
            let mut padded = std::mem::take(&mut self.padded);
            direct.pad_input(x.as_slice().expect("standard layout"), &mut padded);
            let y = direct.forward(
                &padded,
                batch,
                self.w.as_slice().expect("weight is contiguous"),
                self.b
                    .as_ref()
                    .map(|b| b.as_slice().expect("bias is contiguous")),
            );
            self.padded = padded;
            self.cols_pending = mode == Mode::Train;
            return ArrayD::from_shape_vec(IxDyn(&[batch, o, oh, ow]), y)
                .expect("one value per output");
        }
        let ckk = c * self.kernel * self.kernel;
        let images = x
            .view()
            .into_shape_with_order((batch, c * h * w))
            .expect("standard layout");
        let mut cols = std::mem::take(&mut self.cols);
        self.im2col(images, scratch(&mut cols, (ckk, batch * hw)));
        let mut products = std::mem::take(&mut self.products);
        let products_view = scratch(&mut products, (o, batch * hw));
        gemm(
            1.0,
            &self.w2(),
            &cols.view(),
            0.0,
            &mut products_view.view_mut(),
        );
        // `[O, B·OH·OW]` → `[B, O, OH·OW]`, adding the bias on the way.
        let bias_of = |oc: usize| self.b.as_ref().map_or(0.0, |bias| bias[oc]);
        let y = if gemm::is_serial() {
            // A shard: one core already, so push rather than assign, and skip zero-filling.
            let mut y = Vec::with_capacity(batch * o * hw);
            for b in 0..batch {
                for (oc, row) in products_view.rows().into_iter().enumerate() {
                    let from = &row.to_slice().expect("standard layout")[b * hw..(b + 1) * hw];
                    let bias = bias_of(oc);
                    y.extend(from.iter().map(|v| v + bias));
                }
            }
            ArrayD::from_shape_vec(IxDyn(&[batch, o, oh, ow]), y).expect("one value per output")
        } else {
            // A whole batch: the other cores would wait on a serial copy.
            let mut y = ndarray::Array3::<f32>::zeros((batch, o, hw));
            let products_read = products_view.view();
            y.axis_iter_mut(Axis(0))
                .into_par_iter()
                .enumerate()
                .for_each(|(b, mut image)| {
                    for (oc, mut out) in image.axis_iter_mut(Axis(0)).enumerate() {
                        let from = products_read.slice(ndarray::s![oc, b * hw..(b + 1) * hw]);
                        let bias = bias_of(oc);
                        out.zip_mut_with(&from, |o, &v| *o = v + bias);
                    }
                });
            y.into_shape_with_order(IxDyn(&[batch, o, oh, ow]))
                .expect("standard layout")
        };
        self.products = products;
        self.cols = cols;
        self.cols_pending = mode == Mode::Train;
        y
    }

    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        super::layer::take_pending_forward(&mut self.cols_pending);
        let batch = grad.shape()[0];
        let (oh, ow) = self.out_hw();
        let (o, hw) = (self.out_channels, oh * ow);
        let [c, h, w] = self.in_shape;
        let grad = grad.as_standard_layout();
        if let Some(direct) = self.direct {
            let g = grad.as_slice().expect("standard layout");
            direct.weight_grad(
                &self.padded,
                g,
                &mut self.grad_scratch,
                self.gw
                    .as_slice_mut()
                    .expect("weight gradient is contiguous"),
                self.gb
                    .as_mut()
                    .map(|gb| gb.as_slice_mut().expect("bias gradient is contiguous")),
            );
            if !self.input_grad {
                return ArrayD::zeros(IxDyn(&[0]));
            }
            let dx = direct.input_grad(
                g,
                self.w.as_slice().expect("weight is contiguous"),
                &mut self.dx_scratch,
            );
            return ArrayD::from_shape_vec(IxDyn(&[batch, c, h, w]), dx)
                .expect("one value per input");
        }
        let g = grad
            .view()
            .into_shape_with_order((batch, o, hw))
            .expect("standard layout");
        // `[B, O, OH·OW]` → `[O, B·OH·OW]`, the column order of `cols`.
        let mut grad_columns = std::mem::take(&mut self.grad_columns);
        let g2 = scratch(&mut grad_columns, (o, batch * hw));
        g2.axis_iter_mut(Axis(0))
            .into_par_iter()
            .enumerate()
            .for_each(|(oc, mut row)| {
                let row = row.as_slice_mut().expect("standard layout");
                for (b, to) in row.chunks_exact_mut(hw).enumerate() {
                    to.copy_from_slice(
                        g.slice(ndarray::s![b, oc, ..])
                            .to_slice()
                            .expect("standard layout"),
                    );
                }
            });
        let cols = &self.cols;
        let mut gw = self
            .gw
            .view_mut()
            .into_shape_with_order((o, cols.nrows()))
            .expect("weight gradient is contiguous");
        gemm(1.0, &g2.view(), &cols.t(), 0.0, &mut gw);
        if let Some(gb) = &mut self.gb {
            for (acc, row) in gb.iter_mut().zip(g2.rows()) {
                *acc = row.sum();
            }
        }
        if !self.input_grad {
            self.grad_columns = grad_columns;
            return ArrayD::zeros(IxDyn(&[0]));
        }
        let mut dcols = std::mem::take(&mut self.dcols);
        let dcols_view = scratch(&mut dcols, cols.dim());
        gemm(
            1.0,
            &self.w2().t(),
            &grad_columns.view(),
            0.0,
            &mut dcols_view.view_mut(),
        );
        let mut dx = ndarray::Array3::<f32>::zeros((batch, c, h * w));
        let dcols_read = dcols_view.view();
        dx.axis_iter_mut(Axis(1))
            .into_par_iter()
            .enumerate()
            .for_each(|(ci, planes)| self.col2im_channel(&dcols_read, ci, planes));
        self.dcols = dcols;
        self.grad_columns = grad_columns;
        dx.into_shape_with_order(IxDyn(&[batch, c, h, w]))
            .expect("standard layout")
    }

    fn flops(&self) -> u64 {
        let (oh, ow) = self.out_hw();
        2 * (self.w.len() * oh * ow) as u64
    }

    fn set_input_grad(&mut self, needed: bool) {
        self.input_grad = needed;
    }

    fn params(&mut self) -> Vec<ParamRef<'_>> {
        let mut out = vec![ParamRef {
            value: self.w.get_mut(),
            grad: &mut self.gw,
            decay: true,
        }];
        if let (Some(b), Some(gb)) = (&mut self.b, &mut self.gb) {
            out.push(ParamRef {
                value: b.get_mut(),
                grad: gb,
                decay: false,
            });
        }
        out
    }

    fn has_params(&self) -> bool {
        true
    }

    fn shared_params(&self) -> Vec<SharedTensor> {
        std::iter::once(self.w.clone())
            .chain(self.b.clone())
            .collect()
    }

    fn use_params(&mut self, shared: &mut dyn Iterator<Item = SharedTensor>) {
        self.w = shared.next().expect("a weight for each convolution");
        if let Some(b) = &mut self.b {
            *b = shared.next().expect("a bias for each convolution with one");
        }
    }

    fn state(&self) -> Vec<(String, &ArrayD<f32>)> {
        let mut out = vec![("weight".to_string(), &*self.w)];
        if let Some(b) = &self.b {
            out.push(("bias".into(), &**b));
        }
        out
    }

    fn state_mut(&mut self) -> Vec<(String, &mut ArrayD<f32>)> {
        let mut out = vec![("weight".to_string(), self.w.get_mut())];
        if let Some(b) = &mut self.b {
            out.push(("bias".into(), b.get_mut()));
        }
        out
    }

    fn to_onnx(&self, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        let w = graph.initializer(&format!("{prefix}.weight"), &self.w);
        let mut inputs = vec![input.to_string(), w];
        if let Some(b) = &self.b {
            inputs.push(graph.initializer(&format!("{prefix}.bias"), b));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let k = self.kernel as i64;
        let s = self.stride as i64;
        let p = self.padding as i64;
        graph.node(
            "Conv",
            &refs,
            prefix,
            &[
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![s, s])),
                ("pads", Attr::Ints(vec![p, p, p, p])),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::kernels::isa::Isa;
    use rand::SeedableRng;

    fn close(a: &ArrayD<f32>, b: &ArrayD<f32>, what: &str) {
        assert_eq!(a.shape(), b.shape(), "{what}");
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * scale, "{what}: {x} vs {y}");
        }
    }

    /// Forward pass, input gradient and parameter gradients of `layer` on `x` and `g`.
    fn pass(layer: &mut Conv2d, x: &ArrayD<f32>, g: &ArrayD<f32>) -> Vec<ArrayD<f32>> {
        let y = layer.forward(x.clone(), Mode::Train);
        let dx = layer.backward(g.clone());
        let mut out = vec![y, dx, layer.gw.clone()];
        out.extend(layer.gb.clone());
        out
    }

    #[test]
    fn the_direct_path_computes_what_im2col_computes_and_the_same_bits_on_any_thread_count() {
        if !super::super::conv_direct::available() {
            eprintln!("skipped: neither AVX-512 nor AVX2 on this CPU");
            return;
        }
        // (input [C, H, W], out channels, kernel, padding, bias): the CNN's two layers, no
        // padding, a 5 × 5 kernel, 1 × 1, padding that grows the output, channel counts that
        // leave remainders in every block.
        let cases = [
            ([1, 28, 28], 16, 3, 1, false),
            ([16, 14, 14], 32, 3, 1, true),
            ([3, 7, 9], 5, 3, 0, true),
            ([2, 6, 5], 19, 5, 2, false),
            ([4, 5, 5], 3, 1, 0, true),
            ([3, 8, 8], 10, 3, 2, true),
            // The weight gradient's compact path (few taps, planes of whole vectors), biased.
            ([1, 8, 8], 20, 3, 1, true),
        ];
        for (in_shape, out, k, p, bias) in cases {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            let mut direct = Conv2d::new(in_shape, out, k, 1, p, bias, &mut rng);
            assert!(direct.direct.is_some());
            if let Some(b) = direct.b.as_mut() {
                b.get_mut().mapv_inplace(|_| rng.gen_range(-0.5..0.5));
            }
            let mut im2col = direct.clone().without_direct();
            let batch = 3;
            let x = ArrayD::from_shape_simple_fn(
                IxDyn(&[batch, in_shape[0], in_shape[1], in_shape[2]]),
                || rng.gen_range(-1.0..1.0),
            );
            let mut shape = vec![batch];
            shape.extend(direct.output_shape());
            let g = ArrayD::from_shape_simple_fn(IxDyn(&shape), || rng.gen_range(-1.0..1.0));
            let want = pass(&mut im2col, &x, &g);
            let got = pass(&mut direct, &x, &g);
            let what = format!("{in_shape:?} → {out}, k{k} p{p}");
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                close(a, b, &format!("{what}, output {i}"));
            }
            let one_core = crate::train::kernels::gemm::serial(|| pass(&mut direct, &x, &g));
            assert_eq!(
                got, one_core,
                "{what}: the same bits split over cores or not"
            );
            // On an AVX-512 CPU, the AVX2 kernels (what an AVX2 machine runs) give its bits.
            if direct.direct.is_some_and(|d| d.isa() == Isa::Avx512) && Isa::Avx2.supported() {
                let mut avx2 = direct.clone();
                avx2.direct = avx2.direct.map(|d| d.with_isa(Isa::Avx2));
                assert_eq!(
                    got,
                    pass(&mut avx2, &x, &g),
                    "{what}: the AVX2 kernels' bits"
                );
            }
            // A first layer (no input gradient) may take another path to its weight gradient.
            direct.set_input_grad(false);
            im2col.set_input_grad(false);
            let want = pass(&mut im2col, &x, &g);
            let got = pass(&mut direct, &x, &g);
            for (i, (a, b)) in got.iter().zip(&want).enumerate().skip(2) {
                close(a, b, &format!("{what}, no input gradient, output {i}"));
            }
        }
    }
}
