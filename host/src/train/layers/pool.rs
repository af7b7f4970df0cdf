//! Pooling over `[B, C, H, W]`: max and average with a square window and stride (no
//! padding), and global average pooling to `[B, C]`.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::layer::{Layer, Mode};
use crate::train::onnx_export::{Attr, GraphBuilder};

/// A square window sliding over `[C, H, W]` with a stride, without padding.
#[derive(Debug, Clone, Copy)]
struct Window {
    in_shape: [usize; 3],
    kernel: usize,
    stride: usize,
}

impl Window {
    /// `(OH, OW)`.
    fn out_hw(&self) -> (usize, usize) {
        let [_, h, w] = self.in_shape;
        (
            (h - self.kernel) / self.stride + 1,
            (w - self.kernel) / self.stride + 1,
        )
    }

    fn output_shape(&self) -> Vec<usize> {
        let (oh, ow) = self.out_hw();
        vec![self.in_shape[0], oh, ow]
    }

    fn describe(&self, name: &str) -> String {
        format!("{name} {} s{}", self.kernel, self.stride)
    }

    fn onnx_node(&self, op: &str, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        let (k, s) = (self.kernel as i64, self.stride as i64);
        graph.node(
            op,
            &[input],
            prefix,
            &[
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![s, s])),
            ],
        )
    }
}

#[derive(Clone)]
pub struct MaxPool2d {
    window: Window,
    /// For each output value of the last training forward pass, the flat input position of
    /// its maximum; the buffer is reused from step to step.
    argmax: Vec<u32>,
    /// Whether `argmax` belongs to a training forward pass not yet gone back through.
    argmax_pending: bool,
}

/// `maxpool`/`avgpool K sS` from its spec, refused when the window is larger than the input.
pub(super) fn from_spec(site: &super::layer::Site<'_>) -> Result<Box<dyn Layer>, String> {
    use super::spec::LayerSpec;
    let (LayerSpec::MaxPool { kernel, stride } | LayerSpec::AvgPool { kernel, stride }) =
        *site.spec
    else {
        unreachable!("dispatched on its kind")
    };
    let s = site.image()?;
    if s[1] < kernel || s[2] < kernel {
        return Err(site.error(format!("window larger than the input {s:?}")));
    }
    Ok(if matches!(site.spec, LayerSpec::MaxPool { .. }) {
        Box::new(MaxPool2d::new(s, kernel, stride))
    } else {
        Box::new(AvgPool2d::new(s, kernel, stride))
    })
}

impl MaxPool2d {
    pub fn new(in_shape: [usize; 3], kernel: usize, stride: usize) -> Self {
        Self {
            window: Window {
                in_shape,
                kernel,
                stride,
            },
            argmax: Vec::new(),
            argmax_pending: false,
        }
    }

    /// The input gradient `[B, C, H, W]` of the 2×2, stride-2 window from `grad` `[B, C, H/2,
    /// W/2]`: every value written once (the gradient at its window's maximum, zero elsewhere),
    /// in place of zero-filling and scattering.
    #[cfg(target_arch = "x86_64")]
    fn backward_2x2(&self, grad: &[f32], batch: usize) -> ArrayD<f32> {
        let [c, h, w] = self.window.in_shape;
        let (oh, ow) = self.window.out_hw();
        let (plane_in, plane_out) = (h * w, oh * ow);
        let mut dx = Vec::<f32>::with_capacity(batch * c * plane_in);
        let spare = &mut dx.spare_capacity_mut()[..batch * c * plane_in];
        let one = |(p, (to, (g, at))): PlaneGradient<'_>| {
            // SAFETY: `backward` calls this only where AVX-512 F is present.
            unsafe { kernel::max_pool_2x2_backward(g, at, w, h, (p * plane_in) as u32, to) };
        };
        let planes = spare
            .chunks_exact_mut(plane_in)
            .zip(
                grad.chunks_exact(plane_out)
                    .zip(self.argmax.chunks_exact(plane_out)),
            )
            .enumerate();
        if crate::train::kernels::gemm::is_serial() {
            planes.for_each(one);
        } else {
            spare
                .par_chunks_exact_mut(plane_in)
                .zip(
                    grad.par_chunks_exact(plane_out)
                        .zip(self.argmax.par_chunks_exact(plane_out)),
                )
                .enumerate()
                .for_each(one);
        }
        // SAFETY: every plane of the capacity was written whole by `max_pool_2x2_backward`
        // (the windows' values, and zeros in an odd last row or column).
        unsafe { dx.set_len(batch * c * plane_in) };
        ArrayD::from_shape_vec(IxDyn(&[batch, c, h, w]), dx).expect("one value per input")
    }
}

/// One plane's work in the 2×2 backward pass: its number, its input gradient (written), and
/// its output gradient and maxima positions.
#[cfg(target_arch = "x86_64")]
type PlaneGradient<'a> = (
    usize,
    (&'a mut [std::mem::MaybeUninit<f32>], (&'a [f32], &'a [u32])),
);

/// Planes (one image's channel) per task.
const PLANES_PER_TASK: usize = 16;

/// The common 2×2 window with stride 2 over one plane `[H, W]` (`plane` starts at flat input
/// position `base`): output `[H/2, W/2]` and the position of each maximum, the first of equal
/// values winning, as in the general loop. Written as selects over the four values, which the
/// compiler keeps free of branches (which value wins is random).
fn max_pool_2x2(plane: &[f32], w: usize, base: usize, out: &mut [f32], at_out: &mut [u32]) {
    let ow = w / 2;
    for (oy, (out, at_out)) in out
        .chunks_exact_mut(ow)
        .zip(at_out.chunks_exact_mut(ow))
        .enumerate()
    {
        let top = &plane[2 * oy * w..][..2 * ow];
        let bottom = &plane[(2 * oy + 1) * w..][..2 * ow];
        let row_base = (base + 2 * oy * w) as u32;
        for (ox, ((o, at), (t, b))) in out
            .iter_mut()
            .zip(at_out.iter_mut())
            .zip(top.chunks_exact(2).zip(bottom.chunks_exact(2)))
            .enumerate()
        {
            let x = row_base + 2 * ox as u32;
            let (top_max, top_at) = if t[1] > t[0] {
                (t[1], x + 1)
            } else {
                (t[0], x)
            };
            let w = w as u32;
            let (bottom_max, bottom_at) = if b[1] > b[0] {
                (b[1], x + w + 1)
            } else {
                (b[0], x + w)
            };
            (*o, *at) = if bottom_max > top_max {
                (bottom_max, bottom_at)
            } else {
                (top_max, top_at)
            };
        }
    }
}

impl Layer for MaxPool2d {
    fn describe(&self) -> String {
        self.window.describe("maxpool")
    }
    fn output_shape(&self) -> Vec<usize> {
        self.window.output_shape()
    }
    fn forward(&mut self, x: ArrayD<f32>, mode: Mode) -> ArrayD<f32> {
        let b = x.shape()[0];
        let [c, h, w] = self.window.in_shape;
        let (k, s) = (self.window.kernel, self.window.stride);
        let (oh, ow) = self.window.out_hw();
        let x = x.as_standard_layout();
        let src = x.as_slice().expect("standard layout");
        assert!(
            u32::try_from(src.len()).is_ok(),
            "max pooling input of {} values: positions are kept as u32",
            src.len()
        );
        let outputs = b * c * oh * ow;
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[b, c, oh, ow]));
        if self.argmax.len() != outputs {
            self.argmax = vec![0; outputs];
        }
        let dst = y.as_slice_mut().expect("standard layout");
        let plane_out = oh * ow;
        dst.par_chunks_mut(plane_out * PLANES_PER_TASK)
            .zip(self.argmax.par_chunks_mut(plane_out * PLANES_PER_TASK))
            .enumerate()
            .for_each(|(task, (out, at_out))| {
                for (p, (out, at_out)) in out
                    .chunks_mut(plane_out)
                    .zip(at_out.chunks_mut(plane_out))
                    .enumerate()
                {
                    let base = (task * PLANES_PER_TASK + p) * h * w;
                    if k == 2 && s == 2 {
                        let plane = &src[base..base + h * w];
                        #[cfg(target_arch = "x86_64")]
                        if crate::train::kernels::isa::avx512() {
                            // SAFETY: AVX-512 F is present (checked on the line above).
                            unsafe { kernel::max_pool_2x2(plane, w, base as u32, out, at_out) };
                            continue;
                        }
                        max_pool_2x2(plane, w, base, out, at_out);
                        continue;
                    }
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut best = f32::NEG_INFINITY;
                            let mut at = base;
                            for ky in 0..k {
                                let row = base + (oy * s + ky) * w + ox * s;
                                for (kx, &v) in src[row..row + k].iter().enumerate() {
                                    // Selects, not branches: which value wins is random.
                                    let better = v > best;
                                    best = if better { v } else { best };
                                    at = if better { row + kx } else { at };
                                }
                            }
                            out[oy * ow + ox] = best;
                            at_out[oy * ow + ox] = at as u32;
                        }
                    }
                }
            });
        self.argmax_pending = mode == Mode::Train;
        y
    }
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        super::layer::take_pending_forward(&mut self.argmax_pending);
        let [c, h, w] = self.window.in_shape;
        let batch = grad.shape()[0];
        let grad = grad.as_standard_layout();
        let grad = grad.as_slice().expect("standard layout");
        assert_eq!(grad.len(), self.argmax.len(), "max pooling gradient shape");
        #[cfg(target_arch = "x86_64")]
        if self.window.kernel == 2
            && self.window.stride == 2
            && crate::train::kernels::isa::avx512()
        {
            return self.backward_2x2(grad, batch);
        }
        let mut dx = ArrayD::<f32>::zeros(IxDyn(&[batch, c, h, w]));
        let dst = dx.as_slice_mut().expect("standard layout");
        for (&at, &g) in self.argmax.iter().zip(grad) {
            dst[at as usize] += g;
        }
        dx
    }
    fn to_onnx(&self, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        self.window.onnx_node("MaxPool", graph, input, prefix)
    }
}

#[derive(Clone)]
pub struct AvgPool2d {
    window: Window,
    batch: usize,
}

impl AvgPool2d {
    pub fn new(in_shape: [usize; 3], kernel: usize, stride: usize) -> Self {
        Self {
            window: Window {
                in_shape,
                kernel,
                stride,
            },
            batch: 0,
        }
    }
}

impl Layer for AvgPool2d {
    fn describe(&self) -> String {
        self.window.describe("avgpool")
    }
    fn output_shape(&self) -> Vec<usize> {
        self.window.output_shape()
    }
    fn forward(&mut self, x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let b = x.shape()[0];
        let [c, h, w] = self.window.in_shape;
        let (k, s) = (self.window.kernel, self.window.stride);
        let (oh, ow) = self.window.out_hw();
        let x = x.as_standard_layout();
        let src = x.as_slice().expect("standard layout");
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[b, c, oh, ow]));
        let dst = y.as_slice_mut().expect("standard layout");
        let inv = 1.0 / (k * k) as f32;
        for plane in 0..b * c {
            let base = plane * h * w;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = 0.0;
                    for ky in 0..k {
                        for kx in 0..k {
                            sum += src[base + (oy * s + ky) * w + ox * s + kx];
                        }
                    }
                    dst[(plane * oh + oy) * ow + ox] = sum * inv;
                }
            }
        }
        self.batch = b;
        y
    }
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let [c, h, w] = self.window.in_shape;
        let (k, s) = (self.window.kernel, self.window.stride);
        let (oh, ow) = self.window.out_hw();
        let mut dx = ArrayD::<f32>::zeros(IxDyn(&[self.batch, c, h, w]));
        let dst = dx.as_slice_mut().expect("standard layout");
        let grad = grad.as_standard_layout();
        let g = grad.as_slice().expect("standard layout");
        let inv = 1.0 / (k * k) as f32;
        for plane in 0..self.batch * c {
            let base = plane * h * w;
            for oy in 0..oh {
                for ox in 0..ow {
                    let v = g[(plane * oh + oy) * ow + ox] * inv;
                    for ky in 0..k {
                        for kx in 0..k {
                            dst[base + (oy * s + ky) * w + ox * s + kx] += v;
                        }
                    }
                }
            }
        }
        dx
    }
    fn to_onnx(&self, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        self.window.onnx_node("AveragePool", graph, input, prefix)
    }
}

/// Mean over `H, W`: `[B, C, H, W]` → `[B, C]`.
#[derive(Clone)]
pub struct GlobalAvgPool {
    in_shape: [usize; 3],
    batch: usize,
}

impl GlobalAvgPool {
    pub fn new(in_shape: [usize; 3]) -> Self {
        Self { in_shape, batch: 0 }
    }
}

impl Layer for GlobalAvgPool {
    fn describe(&self) -> String {
        "gap".into()
    }
    fn output_shape(&self) -> Vec<usize> {
        vec![self.in_shape[0]]
    }
    fn forward(&mut self, x: ArrayD<f32>, _mode: Mode) -> ArrayD<f32> {
        let b = x.shape()[0];
        let [c, h, w] = self.in_shape;
        let x = x.as_standard_layout();
        let src = x.as_slice().expect("standard layout");
        let inv = 1.0 / (h * w) as f32;
        let y: Vec<f32> = src
            .chunks_exact(h * w)
            .map(|p| p.iter().sum::<f32>() * inv)
            .collect();
        self.batch = b;
        ArrayD::from_shape_vec(IxDyn(&[b, c]), y).expect("b * c values")
    }
    fn backward(&mut self, grad: ArrayD<f32>) -> ArrayD<f32> {
        let [c, h, w] = self.in_shape;
        let inv = 1.0 / (h * w) as f32;
        let grad = grad.as_standard_layout();
        let g = grad.as_slice().expect("standard layout");
        let mut dx = Vec::with_capacity(self.batch * c * h * w);
        for &v in g {
            dx.extend(std::iter::repeat_n(v * inv, h * w));
        }
        ArrayD::from_shape_vec(IxDyn(&[self.batch, c, h, w]), dx).expect("sizes match")
    }
    fn to_onnx(&self, graph: &mut GraphBuilder, input: &str, prefix: &str) -> String {
        let pooled = graph.node(
            "GlobalAveragePool",
            &[input],
            &format!("{prefix}.pool"),
            &[],
        );
        graph.node("Flatten", &[&pooled], prefix, &[("axis", Attr::Int(1))])
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// The lanes below `n` (≤ 16).
    fn first(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    /// Up to 16 consecutive 2×2 windows of output row `oy`, from output `ox0`: `n` of them,
    /// their outputs at `oy·OW + ox0`, their top row at `2·oy·W + 2·ox0` of the plane, the flat
    /// input position of the first (the plane starting at `base`), and the masks of their 2n
    /// values of a row as two vectors.
    struct Run {
        n: usize,
        output: usize,
        top: usize,
        first_at: u32,
        lo: __mmask16,
        hi: __mmask16,
    }

    /// The runs of a plane's `oh × ow` windows, row by row.
    fn runs(oh: usize, ow: usize, w: usize, base: u32) -> impl Iterator<Item = Run> {
        (0..oh).flat_map(move |oy| {
            (0..ow).step_by(16).map(move |ox0| {
                let n = (ow - ox0).min(16);
                let top = 2 * oy * w + 2 * ox0;
                Run {
                    n,
                    output: oy * ow + ox0,
                    top,
                    first_at: base + top as u32,
                    lo: first((2 * n).min(16)),
                    hi: first((2 * n).saturating_sub(16)),
                }
            })
        })
    }

    /// [`super::max_pool_2x2`] on 16 outputs at a time: the same selects, so the same values
    /// and positions.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn max_pool_2x2(
        plane: &[f32],
        w: usize,
        base: u32,
        out: &mut [f32],
        at_out: &mut [u32],
    ) {
        let ow = w / 2;
        if ow == 0 {
            return;
        }
        let oh = out.len() / ow;
        assert!(out.len() == oh * ow && at_out.len() == out.len());
        assert!(plane.len() >= 2 * oh * w, "max pooling plane");
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        let twice_lane = even;
        let one = _mm512_set1_epi32(1);
        let width = _mm512_set1_epi32(w as i32);
        for Run {
            n,
            output,
            top,
            first_at,
            lo,
            hi,
        } in runs(oh, ow, w, base)
        {
            // SAFETY: the loads are masked to the 2n values of the window pairs, inside
            // rows 2·oy and 2·oy + 1 (asserted); the stores to the n outputs of this row.
            unsafe {
                let top = plane.as_ptr().add(top);
                let bottom = top.add(w);
                let (t0, t1) = (
                    _mm512_maskz_loadu_ps(lo, top),
                    _mm512_maskz_loadu_ps(hi, top.add(16)),
                );
                let (b0, b1) = (
                    _mm512_maskz_loadu_ps(lo, bottom),
                    _mm512_maskz_loadu_ps(hi, bottom.add(16)),
                );
                let (te, to) = (
                    _mm512_permutex2var_ps(t0, even, t1),
                    _mm512_permutex2var_ps(t0, odd, t1),
                );
                let (be, bo) = (
                    _mm512_permutex2var_ps(b0, even, b1),
                    _mm512_permutex2var_ps(b0, odd, b1),
                );
                let top_odd = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(to, te);
                let top_max = _mm512_mask_blend_ps(top_odd, te, to);
                let bottom_odd = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(bo, be);
                let bottom_max = _mm512_mask_blend_ps(bottom_odd, be, bo);
                let bottom_wins = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(bottom_max, top_max);
                let best = _mm512_mask_blend_ps(bottom_wins, top_max, bottom_max);
                let x = _mm512_add_epi32(_mm512_set1_epi32(first_at as i32), twice_lane);
                let top_at = _mm512_mask_add_epi32(x, top_odd, x, one);
                let xb = _mm512_add_epi32(x, width);
                let bottom_at = _mm512_mask_add_epi32(xb, bottom_odd, xb, one);
                let at = _mm512_mask_blend_epi32(bottom_wins, top_at, bottom_at);
                let outputs = first(n);
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(output), outputs, best);
                _mm512_mask_storeu_epi32(at_out.as_mut_ptr().add(output).cast(), outputs, at);
            }
        }
    }

    /// One plane of the 2×2, stride-2 input gradient: `dx [H, W]` (every value written) from
    /// `grad` and `at` `[H/2, W/2]` (positions counted from `base`).
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn max_pool_2x2_backward(
        grad: &[f32],
        at: &[u32],
        w: usize,
        h: usize,
        base: u32,
        dx: &mut [MaybeUninit<f32>],
    ) {
        let (oh, ow) = (h / 2, w / 2);
        assert!(grad.len() == oh * ow && at.len() == grad.len() && dx.len() == h * w);
        let twice_lane =
            _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let one = _mm512_set1_epi32(1);
        let width = _mm512_set1_epi32(w as i32);
        let to = dx.as_mut_ptr().cast::<f32>();
        for Run {
            n,
            output,
            top,
            first_at,
            lo,
            hi,
        } in runs(oh, ow, w, base)
        {
            // SAFETY: loads masked to the n windows of this output row; stores masked to
            // their 2n values in rows 2·oy and 2·oy + 1 of `dx` (asserted H·W long).
            unsafe {
                let outputs = first(n);
                let g = _mm512_maskz_loadu_ps(outputs, grad.as_ptr().add(output));
                let a = _mm512_maskz_loadu_epi32(outputs, at.as_ptr().add(output).cast());
                let x = _mm512_add_epi32(_mm512_set1_epi32(first_at as i32), twice_lane);
                let xb = _mm512_add_epi32(x, width);
                let pick = |p: __m512i| _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a, p), g);
                let (v00, v01) = (pick(x), pick(_mm512_add_epi32(x, one)));
                let (v10, v11) = (pick(xb), pick(_mm512_add_epi32(xb, one)));
                let top = to.add(top);
                let bottom = top.add(w);
                _mm512_mask_storeu_ps(top, lo, _mm512_permutex2var_ps(v00, low, v01));
                _mm512_mask_storeu_ps(top.add(16), hi, _mm512_permutex2var_ps(v00, high, v01));
                _mm512_mask_storeu_ps(bottom, lo, _mm512_permutex2var_ps(v10, low, v11));
                _mm512_mask_storeu_ps(bottom.add(16), hi, _mm512_permutex2var_ps(v10, high, v11));
            }
        }
        if w % 2 == 1 {
            for row in 0..2 * oh {
                dx[row * w + w - 1].write(0.0);
            }
        }
        if h % 2 == 1 {
            for v in &mut dx[(h - 1) * w..] {
                v.write(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The 2×2, stride-2 window against the scalar loop and a zero-fill-and-scatter backward:
    /// even and odd sides, rows wider than two vectors, ties and equal maxima.
    #[test]
    fn the_2x2_max_pooling_kernels_give_the_scalar_loops_values_positions_and_gradients() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for [c, h, w] in [[3, 28, 28], [2, 7, 37], [1, 5, 2], [2, 9, 65]] {
            let batch = 2;
            let x = ArrayD::from_shape_simple_fn(IxDyn(&[batch, c, h, w]), || {
                rng.gen_range(-4i32..4) as f32 * 0.25
            });
            let mut pool = MaxPool2d::new([c, h, w], 2, 2);
            let y = pool.forward(x.clone(), Mode::Train);
            let (oh, ow) = (h / 2, w / 2);
            let src = x.as_slice().unwrap();
            let mut want_y = vec![0.0f32; batch * c * oh * ow];
            let mut want_at = vec![0u32; want_y.len()];
            for p in 0..batch * c {
                let range = p * oh * ow..(p + 1) * oh * ow;
                max_pool_2x2(
                    &src[p * h * w..(p + 1) * h * w],
                    w,
                    p * h * w,
                    &mut want_y[range.clone()],
                    &mut want_at[range],
                );
            }
            assert_eq!(y.as_slice().unwrap(), want_y, "{c}×{h}×{w}: values");
            assert_eq!(pool.argmax, want_at, "{c}×{h}×{w}: positions");
            let g = ArrayD::from_shape_simple_fn(IxDyn(&[batch, c, oh, ow]), || {
                rng.gen_range(-1.0f32..1.0)
            });
            let mut want_dx = vec![0.0f32; batch * c * h * w];
            for (&at, &g) in want_at.iter().zip(g.iter()) {
                want_dx[at as usize] += g;
            }
            let dx = pool.backward(g.clone());
            assert_eq!(dx.shape(), &[batch, c, h, w]);
            assert_eq!(
                dx.as_slice().unwrap(),
                want_dx,
                "{c}×{h}×{w}: input gradient"
            );
            // A shard's pass (one core) gives the same.
            let (y_one, dx_one) = crate::train::kernels::gemm::serial(|| {
                let y = pool.forward(x.clone(), Mode::Train);
                (y, pool.backward(g))
            });
            assert_eq!((y_one, dx_one), (y, dx));
        }
    }
}
