//! 2-D convolution (square kernel, stride, zero padding) by im2col and a matrix product per
//! image, images spread over the cores.
//!
//! Input `[B, C, H, W]`, weight `[O, C, K, K]` (PyTorch's layout), output `[B, O, OH, OW]`
//! with `OH = (H + 2P - K) / S + 1`. Per image, `W [O, C·K·K] × cols [C·K·K, OH·OW]` lands
//! directly in NCHW order (no transpose). The im2col matrices `[B, C·K·K, OH·OW]` of the last
//! training pass are kept for the backward pass.

use ndarray::linalg::general_mat_mul;
use ndarray::parallel::prelude::*;
use ndarray::Zip;
use ndarray::{Array2, Array3, ArrayD, ArrayViewMut2, Axis, IxDyn};
use rand::Rng;

use super::{Layer, Mode, ParamRef, SharedTensor};
use crate::train::onnx_export::{Attr, GraphBuilder};

/// Images per partial sum of the weight gradient.
const IMAGES_PER_BLOCK: usize = 16;

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
    /// `[B, C·K·K, OH·OW]` from the last training forward pass.
    cols: Option<Array3<f32>>,
    batch: usize,
    input_grad: bool,
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
            cols: None,
            batch: 0,
            input_grad: true,
        }
    }

    /// `(OH, OW)`.
    pub fn out_hw(&self) -> (usize, usize) {
        let [_, h, w] = self.in_shape;
        (
            (h + 2 * self.padding - self.kernel) / self.stride + 1,
            (w + 2 * self.padding - self.kernel) / self.stride + 1,
        )
    }

    fn w2(&self) -> ndarray::ArrayView2<'_, f32> {
        let ckk = self.in_shape[0] * self.kernel * self.kernel;
        self.w
            .view()
            .into_shape_with_order((self.out_channels, ckk))
            .expect("weight is contiguous")
    }

    /// One image `[C, H, W]` → its im2col matrix `[C·K·K, OH·OW]` (zeros where the window
    /// leaves the image; `cols` must be zero on entry).
    fn im2col_image(&self, image: &[f32], mut cols: ArrayViewMut2<'_, f32>) {
        let [c, h, w] = self.in_shape;
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (oh, ow) = self.out_hw();
        let dst = cols.as_slice_mut().expect("standard layout");
        for ci in 0..c {
            let plane = &image[ci * h * w..(ci + 1) * h * w];
            for ky in 0..k {
                for kx in 0..k {
                    let row = ((ci * k + ky) * k + kx) * oh * ow;
                    for oy in 0..oh {
                        let iy = (oy * s + ky) as isize - p as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                        let out = &mut dst[row + oy * ow..row + (oy + 1) * ow];
                        for (ox, v) in out.iter_mut().enumerate() {
                            let ix = (ox * s + kx) as isize - p as isize;
                            if ix >= 0 && ix < w as isize {
                                *v = src[ix as usize];
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds one image's column gradient `[C·K·K, OH·OW]` into its input gradient `[C, H, W]`.
    fn col2im_image(&self, cols: &[f32], image: &mut [f32]) {
        let [c, h, w] = self.in_shape;
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (oh, ow) = self.out_hw();
        for ci in 0..c {
            let plane = &mut image[ci * h * w..(ci + 1) * h * w];
            for ky in 0..k {
                for kx in 0..k {
                    let row = ((ci * k + ky) * k + kx) * oh * ow;
                    for oy in 0..oh {
                        let iy = (oy * s + ky) as isize - p as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let src = &cols[row + oy * ow..row + (oy + 1) * ow];
                        let out = &mut plane[iy as usize * w..(iy as usize + 1) * w];
                        for (ox, &v) in src.iter().enumerate() {
                            let ix = (ox * s + kx) as isize - p as isize;
                            if ix >= 0 && ix < w as isize {
                                out[ix as usize] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Layer for Conv2d {
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
        let ckk = c * self.kernel * self.kernel;
        let images = x
            .view()
            .into_shape_with_order((batch, c * h * w))
            .expect("standard layout");
        let mut cols = Array3::<f32>::zeros((batch, ckk, hw));
        let mut y = Array3::<f32>::zeros((batch, o, hw));
        let w2 = self.w2();
        let bias = self.b.as_ref();
        // One image per task: im2col, then `[O, C·K·K] × [C·K·K, OH·OW]` straight into the
        // image's `[O, OH·OW]` output, which is already NCHW.
        Zip::from(cols.axis_iter_mut(Axis(0)))
            .and(y.axis_iter_mut(Axis(0)))
            .and(images.axis_iter(Axis(0)))
            .par_for_each(|mut col, mut yb, image| {
                self.im2col_image(image.as_slice().expect("contiguous row"), col.view_mut());
                general_mat_mul(1.0, &w2, &col, 0.0, &mut yb);
                if let Some(b) = bias {
                    for (mut row, &bv) in yb.rows_mut().into_iter().zip(b.iter()) {
                        row.mapv_inplace(|v| v + bv);
                    }
                }
            });
        if mode == Mode::Train {
            self.cols = Some(cols);
            self.batch = batch;
        }
        y.into_shape_with_order(IxDyn(&[batch, o, oh, ow]))
            .expect("standard layout")
    }

    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let cols = self
            .cols
            .take()
            .expect("backward after a training forward pass");
        let batch = self.batch;
        let (oh, ow) = self.out_hw();
        let (o, hw) = (self.out_channels, oh * ow);
        let [c, h, w] = self.in_shape;
        let ckk = c * self.kernel * self.kernel;
        let grad = grad.as_standard_layout();
        let g = grad
            .view()
            .into_shape_with_order((batch, o, hw))
            .expect("standard layout");
        // dW = Σ_images g_b · cols_bᵀ: one partial sum per block of IMAGES_PER_BLOCK images,
        // added in block order, so that the result depends neither on how rayon schedules the
        // blocks nor on the number of threads.
        let parts = batch.div_ceil(IMAGES_PER_BLOCK).max(1);
        let partials: Vec<Array2<f32>> = (0..parts)
            .into_par_iter()
            .map(|part| {
                let mut acc = Array2::<f32>::zeros((o, ckk));
                for bi in batch * part / parts..batch * (part + 1) / parts {
                    let gb = g.index_axis(Axis(0), bi);
                    let col = cols.index_axis(Axis(0), bi);
                    general_mat_mul(1.0, &gb, &col.t(), 1.0, &mut acc);
                }
                acc
            })
            .collect();
        let mut gw = Array2::<f32>::zeros((o, ckk));
        for partial in &partials {
            gw += partial;
        }
        let shape = self.gw.raw_dim();
        self.gw.assign(
            &gw.into_dyn()
                .into_shape_with_order(shape)
                .expect("same size"),
        );
        if let Some(gb) = &mut self.gb {
            let sums: Vec<f32> = (0..o)
                .map(|oc| g.slice(ndarray::s![.., oc, ..]).sum())
                .collect();
            for (acc, v) in gb.iter_mut().zip(sums) {
                *acc = v;
            }
        }
        if !self.input_grad {
            return ArrayD::zeros(IxDyn(&[0]));
        }
        let mut dx = Array2::<f32>::zeros((batch, c * h * w));
        let w2 = self.w2();
        Zip::from(dx.axis_iter_mut(Axis(0)))
            .and(g.axis_iter(Axis(0)))
            .par_for_each(|mut dxb, gb| {
                let mut dcol = Array2::<f32>::zeros((ckk, hw));
                general_mat_mul(1.0, &w2.t(), &gb, 0.0, &mut dcol);
                self.col2im_image(
                    dcol.as_slice().expect("standard layout"),
                    dxb.as_slice_mut().expect("contiguous row"),
                );
            });
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
