//! 2-D convolution (square kernel, stride, zero padding) by im2col and one matrix product.
//!
//! Input `[B, C, H, W]`, weight `[O, C, K, K]` (PyTorch's layout), output `[B, O, OH, OW]`
//! with `OH = (H + 2P - K) / S + 1`. The im2col matrix `[B·OH·OW, C·K·K]` of the last training
//! pass is kept for the backward pass.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use rand::Rng;

use super::{Layer, Mode, ParamRef};
use crate::train::onnx_export::{Attr, GraphBuilder};

pub struct Conv2d {
    in_shape: [usize; 3],
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    /// `[O, C, K, K]`.
    w: ArrayD<f32>,
    /// `[O]`, or `None` (a convolution followed by batch norm needs none).
    b: Option<ArrayD<f32>>,
    gw: ArrayD<f32>,
    gb: Option<ArrayD<f32>>,
    /// `[B·OH·OW, C·K·K]` from the last training forward pass.
    cols: Option<Array2<f32>>,
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
            w,
            b: bias.then(|| ArrayD::zeros(IxDyn(&[out_channels]))),
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

    /// `x` `[B, C, H, W]` → `[B·OH·OW, C·K·K]`.
    fn im2col(&self, x: &[f32], batch: usize) -> Array2<f32> {
        let [c, h, w] = self.in_shape;
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (oh, ow) = self.out_hw();
        let ckk = c * k * k;
        let mut cols = Array2::<f32>::zeros((batch * oh * ow, ckk));
        let data = cols.as_slice_mut().expect("standard layout");
        for bi in 0..batch {
            let image = &x[bi * c * h * w..(bi + 1) * c * h * w];
            for oy in 0..oh {
                for ox in 0..ow {
                    let row = ((bi * oh + oy) * ow + ox) * ckk;
                    let dst = &mut data[row..row + ckk];
                    for ci in 0..c {
                        let plane = &image[ci * h * w..(ci + 1) * h * w];
                        for ky in 0..k {
                            let iy = (oy * s + ky) as isize - p as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            let src_row = &plane[iy as usize * w..(iy as usize + 1) * w];
                            let base = (ci * k + ky) * k;
                            for kx in 0..k {
                                let ix = (ox * s + kx) as isize - p as isize;
                                if ix >= 0 && ix < w as isize {
                                    dst[base + kx] = src_row[ix as usize];
                                }
                            }
                        }
                    }
                }
            }
        }
        cols
    }

    /// Adds `dcols` `[B·OH·OW, C·K·K]` back into an input gradient `[B, C, H, W]`.
    fn col2im(&self, dcols: &Array2<f32>, batch: usize) -> ArrayD<f32> {
        let [c, h, w] = self.in_shape;
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (oh, ow) = self.out_hw();
        let ckk = c * k * k;
        let mut dx = ArrayD::<f32>::zeros(IxDyn(&[batch, c, h, w]));
        let out = dx.as_slice_mut().expect("standard layout");
        let src = dcols.as_slice().expect("standard layout");
        for bi in 0..batch {
            let image = &mut out[bi * c * h * w..(bi + 1) * c * h * w];
            for oy in 0..oh {
                for ox in 0..ow {
                    let row = ((bi * oh + oy) * ow + ox) * ckk;
                    let col = &src[row..row + ckk];
                    for ci in 0..c {
                        for ky in 0..k {
                            let iy = (oy * s + ky) as isize - p as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            let base = (ci * k + ky) * k;
                            let dst_row = ci * h * w + iy as usize * w;
                            for kx in 0..k {
                                let ix = (ox * s + kx) as isize - p as isize;
                                if ix >= 0 && ix < w as isize {
                                    image[dst_row + ix as usize] += col[base + kx];
                                }
                            }
                        }
                    }
                }
            }
        }
        dx
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
        let cols = self.im2col(x.as_slice().expect("standard layout"), batch);
        let (oh, ow) = self.out_hw();
        let o = self.out_channels;
        let mut ymat = Array2::<f32>::zeros((batch * oh * ow, o));
        general_mat_mul(1.0, &cols, &self.w2().t(), 0.0, &mut ymat);
        // [B·OH·OW, O] → [B, O, OH, OW].
        let hw = oh * ow;
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[batch, o, oh, ow]));
        let dst = y.as_slice_mut().expect("standard layout");
        let src = ymat.as_slice().expect("standard layout");
        let bias = self
            .b
            .as_ref()
            .map(|b| b.as_slice().expect("contiguous").to_vec());
        for bi in 0..batch {
            for i in 0..hw {
                let row = &src[(bi * hw + i) * o..(bi * hw + i + 1) * o];
                for (oc, &v) in row.iter().enumerate() {
                    dst[(bi * o + oc) * hw + i] = v + bias.as_ref().map_or(0.0, |b| b[oc]);
                }
            }
        }
        if mode == Mode::Train {
            self.cols = Some(cols);
            self.batch = batch;
        }
        y
    }

    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let cols = self
            .cols
            .take()
            .expect("backward after a training forward pass");
        let batch = self.batch;
        let (oh, ow) = self.out_hw();
        let (o, hw) = (self.out_channels, oh * ow);
        let grad = grad.as_standard_layout();
        let g = grad.as_slice().expect("standard layout");
        // [B, O, OH, OW] → [B·OH·OW, O].
        let mut gmat = Array2::<f32>::zeros((batch * hw, o));
        {
            let dst = gmat.as_slice_mut().expect("standard layout");
            for bi in 0..batch {
                for oc in 0..o {
                    let plane = &g[(bi * o + oc) * hw..(bi * o + oc + 1) * hw];
                    for (i, &v) in plane.iter().enumerate() {
                        dst[(bi * hw + i) * o + oc] = v;
                    }
                }
            }
        }
        let ckk = self.in_shape[0] * self.kernel * self.kernel;
        {
            let mut gw = self
                .gw
                .view_mut()
                .into_shape_with_order((o, ckk))
                .expect("contiguous");
            general_mat_mul(1.0, &gmat.t(), &cols, 1.0, &mut gw);
        }
        if let Some(gb) = &mut self.gb {
            *gb += &gmat.sum_axis(Axis(0)).into_dyn();
        }
        if !self.input_grad {
            return ArrayD::zeros(IxDyn(&[0]));
        }
        let mut dcols = Array2::<f32>::zeros((batch * hw, ckk));
        general_mat_mul(1.0, &gmat, &self.w2(), 0.0, &mut dcols);
        self.col2im(&dcols, batch)
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
            value: &mut self.w,
            grad: &mut self.gw,
            decay: true,
        }];
        if let (Some(b), Some(gb)) = (&mut self.b, &mut self.gb) {
            out.push(ParamRef {
                value: b,
                grad: gb,
                decay: false,
            });
        }
        out
    }

    fn state(&self) -> Vec<(String, &ArrayD<f32>)> {
        let mut out = vec![("weight".to_string(), &self.w)];
        if let Some(b) = &self.b {
            out.push(("bias".into(), b));
        }
        out
    }

    fn state_mut(&mut self) -> Vec<(String, &mut ArrayD<f32>)> {
        let mut out = vec![("weight".to_string(), &mut self.w)];
        if let Some(b) = &mut self.b {
            out.push(("bias".into(), b));
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
