//! Stride-1 convolutions computed directly on AVX-512 or AVX2, without an im2col matrix: the
//! forward pass, the input gradient and the weight gradient of [`super::Conv2d`] when its
//! stride is 1, its padding below its kernel size and the CPU has AVX-512 F or AVX2 with FMA
//! ([`Isa`]).
//!
//! Why not im2col and a product: for the CNN benchmark's second convolution (16 → 32
//! channels, 3 × 3, 14 × 14) the im2col matrix of a 64-image shard is 7 MB, 144 rows of
//! 12 544 columns, written and read again by every step, and the `gemm` crate runs its thin
//! products at 39–60 % of its 1024³ rate (docs/performance.md). Here every product reads the
//! padded image (16 KB) and the packed weights (18 KB) from L1.
//!
//! The "wide" layout: an image is zero-padded to `[C, Hp, Wp]`; output position `(oy, ox)` is
//! computed at flat index `p = oy·Wp + ox` of a `[O, ⌈OH·Wp⌉₁₆]` buffer, so that kernel tap
//! `(ky, kx)` of channel `c` reads the padded input at the single shift
//! `c·Hp·Wp + ky·Wp + kx + p`: 16 consecutive outputs of one channel are one unaligned vector
//! load per tap. Lanes with `ox ≥ OW` read across a row's end and are dropped: each vector's
//! outputs are compressed and stored straight into `[O, OH, OW]` (masked store). Padded
//! buffers end with zeros so that every such read stays inside them.
//!
//! - forward: `y[o, p] = b[o] + Σ_{c,ky,kx} x̃[c, p + ky·Wp + kx] · w[o, c, ky, kx]`, blocks of
//!   8 output channels × 3 vectors of positions (24 accumulators, weights broadcast);
//! - input gradient: the same kernel on the output gradient padded by `K − 1 − P`, with the
//!   weights flipped and their channel axes swapped;
//! - weight gradient: `dw[o, c, ky, kx] = Σ_b Σ_p g̃[b, o, p] · x̃[b, c, p + ky·Wp + kx]` (`g̃`
//!   zero where `ox ≥ OW`), blocks of 4 output channels × 6 taps of vector accumulators,
//!   summed over the batch's images in order and over lanes at the end; where widening the
//!   gradient copies more than gathering the input's taps (a first layer: one input channel,
//!   planes of whole vectors), the taps are gathered compact instead (im2col of one image).
//!
//! Every output element is one kernel's sum in a fixed order, whatever the thread count. The
//! AVX2 kernels ([`avx2`]) take the same 16-lane vectors as two halves and add in the same
//! order, so they give the AVX-512 kernels' bits; only their register blocks are smaller (16
//! registers instead of 32), and, AVX2 having no compress, a forward block stores whole
//! vectors into wide planes whose rows are copied compact once the channel block is done.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::train::kernels::isa::Isa;

/// Output channels × vectors of positions of a forward block.
const FWD_CHANNELS: usize = 8;
const FWD_VECTORS: usize = 3;
/// Output channels × taps of a weight-gradient block.
const WGRAD_CHANNELS: usize = 4;
const WGRAD_TAPS: usize = 6;
/// f32 lanes of a zmm register.
const LANES: usize = 16;
/// Images per group of the weight gradient: a group's gradient (or gathered taps) is copied
/// once into a buffer that stays in L2 while every block passes over it, each block's partial
/// sums kept in registers over the group.
const WGRAD_GROUP: usize = 8;

/// Whether this CPU runs the direct convolutions (AVX-512 F, or AVX2 and FMA).
#[cfg(test)]
pub fn available() -> bool {
    Isa::detect().is_some()
}

/// The geometry of one stride-1 convolution: input `[C, H, W]`, `O` output channels, kernel
/// `K × K`, padding `P < K`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direct {
    channels: usize,
    height: usize,
    width: usize,
    out_channels: usize,
    kernel: usize,
    padding: usize,
    isa: Isa,
}

/// A convolution of padded planes `[in, Hp, Wp]` into `[out, Hp − K + 1, Wp − K + 1]`, with
/// weights packed as `[in·K·K, out]`.
#[derive(Debug, Clone, Copy)]
struct Wide {
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    hp: usize,
    wp: usize,
    isa: Isa,
}

impl Wide {
    fn out_hw(&self) -> (usize, usize) {
        (self.hp + 1 - self.kernel, self.wp + 1 - self.kernel)
    }

    /// Length of a wide output plane: `OH·Wp` rounded up to whole vectors.
    fn wide_len(&self) -> usize {
        (self.out_hw().0 * self.wp).div_ceil(LANES) * LANES
    }

    fn image_len(&self) -> usize {
        self.in_channels * self.hp * self.wp
    }

    /// Flat offset of each tap `(c, ky, kx)` in a padded image, in weight-row order.
    fn taps(&self) -> Vec<usize> {
        let k = self.kernel;
        (0..self.in_channels * k * k)
            .map(|t| {
                let (c, ky, kx) = (t / (k * k), t / k % k, t % k);
                (c * self.hp + ky) * self.wp + kx
            })
            .collect()
    }

    /// Where each vector of a wide plane lands in the compact `[OH, OW]` plane: the lanes that
    /// hold an output (`ox < OW`, inside `OH` rows) and the compact index of the first one.
    /// The outputs of a vector are consecutive in the compact plane (the wide order with the
    /// dropped lanes removed), so one compress and one masked store write them.
    fn stores(&self) -> (Vec<u16>, Vec<usize>) {
        let (oh, ow) = self.out_hw();
        let vectors = self.wide_len() / LANES;
        let valid = |p: usize| p < oh * self.wp && p % self.wp < ow;
        let masks = (0..vectors)
            .map(|v| {
                (0..LANES)
                    .filter(|&l| valid(v * LANES + l))
                    .map(|l| 1u16 << l)
                    .sum()
            })
            .collect();
        let firsts = (0..vectors)
            .map(|v| {
                let p = v * LANES;
                (p / self.wp) * ow + (p % self.wp).min(ow)
            })
            .collect();
        (masks, firsts)
    }

    /// `bias` + the convolution of `padded` (B padded images and the zeros of [`pad_into`])
    /// with `packed` `[in·K·K, O]`, as `[B, O, OH, OW]`. Images are spread over the cores
    /// unless the caller is a shard.
    fn run(&self, padded: &[f32], packed: &[f32], bias: Option<&[f32]>, batch: usize) -> Vec<f32> {
        let (oh, ow) = self.out_hw();
        let plane = oh * ow;
        let per_image = self.out_channels * plane;
        assert!(
            padded.len() >= batch * self.image_len() + self.slack(),
            "padded input"
        );
        let taps = self.taps();
        assert_eq!(
            packed.len(),
            taps.len() * self.out_channels,
            "packed weights"
        );
        if let Some(bias) = bias {
            assert_eq!(bias.len(), self.out_channels, "bias");
        }
        let (masks, firsts) = self.stores();
        let mut out = Vec::<f32>::with_capacity(batch * per_image);
        let spare = &mut out.spare_capacity_mut()[..batch * per_image];
        // `wide`: the AVX2 kernels' wide planes, one buffer per worker.
        let one = |wide: &mut Vec<f32>, b: usize, image_out: &mut [MaybeUninit<f32>]| {
            let input = &padded[b * self.image_len()..];
            self.image(input, &taps, packed, bias, &masks, &firsts, wide, image_out);
        };
        if crate::train::kernels::gemm::is_serial() {
            let mut wide = Vec::new();
            for (b, image_out) in spare.chunks_exact_mut(per_image.max(1)).enumerate() {
                one(&mut wide, b, image_out);
            }
        } else {
            spare
                .par_chunks_exact_mut(per_image.max(1))
                .enumerate()
                .for_each_init(Vec::new, |wide, (b, image_out)| one(wide, b, image_out));
        }
        // SAFETY: the capacity is `batch · per_image`, and every one of those values was
        // written: each image's chunk by [`Self::image`], whose blocks cover every output
        // channel and every vector of the plane, each vector storing the outputs of its lanes
        // (AVX-512, `stores`: every compact position is the lane of exactly one vector) or
        // the AVX2 wide planes' rows being copied whole (`OH` rows of `OW`).
        unsafe { out.set_len(batch * per_image) };
        out
    }

    /// Zeros a padded buffer needs past its last image so that the wide lanes' reads stay in
    /// it: the last vector of a plane starts below `OH·Wp` and the largest tap shift is
    /// `(K − 1)·(Wp + 1)`, so `K + 15` values (see the module doc).
    fn slack(&self) -> usize {
        self.kernel + LANES - 1
    }

    /// One image: `out [O, OH, OW]` (every value written) from `input` (its padded image
    /// first); `wide` is the AVX2 kernels' scratch (`[8, wide_len]`, grown here).
    #[allow(clippy::too_many_arguments)]
    fn image(
        &self,
        input: &[f32],
        taps: &[usize],
        packed: &[f32],
        bias: Option<&[f32]>,
        masks: &[u16],
        firsts: &[usize],
        wide: &mut Vec<f32>,
        out: &mut [MaybeUninit<f32>],
    ) {
        let (oh, ow) = self.out_hw();
        let wide_len = self.wide_len();
        let vectors = wide_len / LANES;
        // Every read: the largest tap plus the last lane of the plane.
        let last_read = taps.last().copied().unwrap_or(0) + wide_len;
        assert!(input.len() >= last_read, "padded image too short");
        assert_eq!(out.len(), self.out_channels * oh * ow);
        assert!(masks.len() == vectors && firsts.len() == vectors);
        let zeros = [0.0f32; FWD_CHANNELS];
        // AVX2 has no compress: its blocks store whole vectors into the wide planes of the
        // channel block, whose rows are then copied compact (a masked store per run of lanes
        // stalled on store forwarding and cost a sixth of the kernel's time).
        if self.isa == Isa::Avx2 {
            wide.resize(FWD_CHANNELS * wide_len, 0.0);
        }
        for o0 in (0..self.out_channels).step_by(FWD_CHANNELS) {
            let channels = FWD_CHANNELS.min(self.out_channels - o0);
            let mut init = zeros;
            if let Some(bias) = bias {
                init[..channels].copy_from_slice(&bias[o0..o0 + channels]);
            }
            for v0 in (0..vectors).step_by(FWD_VECTORS) {
                let count = FWD_VECTORS.min(vectors - v0);
                let block = ForwardBlock {
                    input,
                    taps,
                    packed: &packed[o0..],
                    packed_stride: self.out_channels,
                    init: &init,
                    position: v0 * LANES,
                    masks: &masks[v0..v0 + count],
                    firsts: &firsts[v0..v0 + count],
                    plane: oh * ow,
                };
                let out = &mut out[o0 * oh * ow..];
                #[cfg(target_arch = "x86_64")]
                // SAFETY: a `Direct` (and its `Wide`s) holds only an `Isa` this CPU supports
                // (`Direct::new`, `Direct::with_isa`).
                unsafe {
                    match self.isa {
                        Isa::Avx512 => avx512::forward(&block, channels, count, out),
                        Isa::Avx2 => avx2::forward(&block, channels, count, wide, wide_len),
                    }
                };
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (block, out, count);
            }
            if self.isa == Isa::Avx2 {
                for (r, plane) in wide.chunks_exact(wide_len).take(channels).enumerate() {
                    let to = &mut out[(o0 + r) * oh * ow..(o0 + r + 1) * oh * ow];
                    copy_rows_uninit(self.isa, plane, self.wp, to, ow, oh, ow);
                }
            }
        }
    }
}

/// One forward block's operands: for `r` < channels and `v` < vectors, the sums
/// `init[r] + Σ_t input[taps[t] + position + 16v + l] · packed[t·packed_stride + r]` of the
/// lanes `l` in `masks[v]` go, in lane order, to `out[r·plane + firsts[v] ..]`.
struct ForwardBlock<'a> {
    input: &'a [f32],
    taps: &'a [usize],
    packed: &'a [f32],
    packed_stride: usize,
    init: &'a [f32; FWD_CHANNELS],
    position: usize,
    masks: &'a [u16],
    firsts: &'a [usize],
    plane: usize,
}

/// `src [B, ch, h, w]` zero-padded by `q` on every side into `dst` `[B, ch, h + 2q, w + 2q]`,
/// followed by `slack` zeros.
#[allow(clippy::too_many_arguments)]
fn pad_into(
    isa: Isa,
    src: &[f32],
    ch: usize,
    h: usize,
    w: usize,
    q: usize,
    slack: usize,
    dst: &mut Vec<f32>,
) {
    let (hp, wp) = (h + 2 * q, w + 2 * q);
    let planes = src.len() / (h * w).max(1);
    assert_eq!(planes * h * w, src.len());
    assert!(planes.is_multiple_of(ch.max(1)));
    dst.resize(planes * hp * wp + slack, 0.0);
    let fill = |(from, to): (&[f32], &mut [f32])| {
        zero_border(to, h, w, q);
        copy_rows(isa, from, w, &mut to[q * wp + q..], wp, h, w);
    };
    let (body, tail) = dst.split_at_mut(planes * hp * wp);
    tail.fill(0.0);
    if crate::train::kernels::gemm::is_serial() {
        src.chunks_exact(h * w)
            .zip(body.chunks_exact_mut(hp * wp))
            .for_each(fill);
    } else {
        src.par_chunks_exact(h * w)
            .zip(body.par_chunks_exact_mut(hp * wp))
            .for_each(fill);
    }
}

/// Zeros all of a padded plane `[h + 2q, w + 2q]` but its `h × w` interior, which the caller
/// writes: zero-filling the whole plane first wrote each value twice.
fn zero_border(plane: &mut [f32], h: usize, w: usize, q: usize) {
    let wp = w + 2 * q;
    assert_eq!(plane.len(), (h + 2 * q) * wp, "padded plane");
    if h == 0 {
        plane.fill(0.0);
        return;
    }
    // The top rows and the first row's left border, then from each row's right border to
    // the next row's first value (the last row's run reaches the bottom rows' end).
    let first = q * wp + q;
    plane[..first].fill(0.0);
    for row in 0..h {
        let end = first + row * wp + w;
        let next = if row + 1 < h {
            end + 2 * q
        } else {
            plane.len()
        };
        plane[end..next].fill(0.0);
    }
}

/// `rows` rows of `width` values from `src` (rows `src_stride` apart) to `dst` (rows
/// `dst_stride` apart): masked vector copies, where a `copy_from_slice` per row would call
/// `memcpy` for 14 values.
fn copy_rows(
    isa: Isa,
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
    rows: usize,
    width: usize,
) {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and only f32 values are written through
    // the view, so `dst` stays initialised.
    let dst = unsafe { &mut *(dst as *mut [f32] as *mut [MaybeUninit<f32>]) };
    copy_rows_uninit(isa, src, src_stride, dst, dst_stride, rows, width);
}

/// [`copy_rows`] into values not yet written (an output's chunk).
fn copy_rows_uninit(
    isa: Isa,
    src: &[f32],
    src_stride: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
    rows: usize,
    width: usize,
) {
    if rows == 0 || width == 0 {
        return;
    }
    assert!(width <= src_stride && width <= dst_stride);
    assert!(
        src.len() >= (rows - 1) * src_stride + width
            && dst.len() >= (rows - 1) * dst_stride + width
    );
    let dst = dst.as_mut_ptr().cast::<f32>();
    #[cfg(target_arch = "x86_64")]
    // SAFETY: only `Direct`'s methods call this, with the `Isa` of a `Direct`, which this CPU
    // supports; the bounds are asserted above, and writing f32s through a pointer into
    // `MaybeUninit<f32>`s initialises them.
    unsafe {
        match isa {
            Isa::Avx512 => avx512::copy_rows(src, src_stride, dst, dst_stride, rows, width),
            Isa::Avx2 => avx2::copy_rows(src, src_stride, dst, dst_stride, rows, width),
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (isa, src, src_stride, dst, dst_stride, rows, width);
}

/// The sum of `values` (a multiple of 16 long) in a fixed order: 16 lanes, then across them.
fn sum(values: &[f32]) -> f32 {
    assert!(values.len().is_multiple_of(LANES));
    let mut lanes = [0.0f32; LANES];
    for chunk in values.chunks_exact(LANES) {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    lanes.iter().sum()
}

impl Direct {
    /// The direct path of a convolution, where it applies (stride 1, padding below the
    /// kernel, AVX-512 F or AVX2); `None` sends the layer to im2col.
    pub fn new(
        in_shape: [usize; 3],
        out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Option<Self> {
        let [channels, height, width] = in_shape;
        let isa = Isa::detect()?;
        (stride == 1
            && padding < kernel
            && height + 2 * padding >= kernel
            && width + 2 * padding >= kernel)
            .then_some(Self {
                channels,
                height,
                width,
                out_channels: out,
                kernel,
                padding,
                isa,
            })
    }

    /// The same convolution on another instruction set's kernels (to check one against the
    /// other); panics if this CPU does not support it, as running them would be undefined.
    #[cfg(test)]
    pub fn with_isa(self, isa: Isa) -> Self {
        assert!(isa.supported(), "{isa:?} kernels on a CPU without them");
        Self { isa, ..self }
    }

    /// The instruction set of its kernels.
    #[cfg(test)]
    pub fn isa(&self) -> Isa {
        self.isa
    }

    fn forward_wide(&self) -> Wide {
        Wide {
            in_channels: self.channels,
            out_channels: self.out_channels,
            kernel: self.kernel,
            hp: self.height + 2 * self.padding,
            wp: self.width + 2 * self.padding,
            isa: self.isa,
        }
    }

    /// The input gradient's convolution: over the output gradient padded by `K − 1 − P`.
    fn backward_wide(&self) -> Wide {
        let (oh, ow) = self.forward_wide().out_hw();
        let q = self.kernel - 1 - self.padding;
        Wide {
            in_channels: self.out_channels,
            out_channels: self.channels,
            kernel: self.kernel,
            hp: oh + 2 * q,
            wp: ow + 2 * q,
            isa: self.isa,
        }
    }

    /// `(OH, OW)`.
    fn out_hw(&self) -> (usize, usize) {
        self.forward_wide().out_hw()
    }

    /// Images `[B, C, H, W]` zero-padded into `padded` (kept by the layer for the weight
    /// gradient).
    pub fn pad_input(&self, images: &[f32], padded: &mut Vec<f32>) {
        let wide = self.forward_wide();
        pad_into(
            self.isa,
            images,
            self.channels,
            self.height,
            self.width,
            self.padding,
            wide.slack(),
            padded,
        );
    }

    /// `y [B, O, OH, OW]` from `padded` (`batch` images, of [`Self::pad_input`]), the weights
    /// `w [O, C, K, K]` and `bias [O]`.
    pub fn forward(
        &self,
        padded: &[f32],
        batch: usize,
        w: &[f32],
        bias: Option<&[f32]>,
    ) -> Vec<f32> {
        let (o, k) = (self.out_channels, self.kernel);
        let taps = self.channels * k * k;
        assert_eq!(w.len(), o * taps, "conv weight");
        // [O, C·K·K] → [C·K·K, O].
        let mut packed = vec![0.0f32; w.len()];
        for (oc, row) in w.chunks_exact(taps).enumerate() {
            for (t, &v) in row.iter().enumerate() {
                packed[t * o + oc] = v;
            }
        }
        self.forward_wide().run(padded, &packed, bias, batch)
    }

    /// `dx [B, C, H, W]` from the output gradient `grad [B, O, OH, OW]`; `scratch` holds the
    /// padded gradient.
    pub fn input_grad(&self, grad: &[f32], w: &[f32], scratch: &mut Vec<f32>) -> Vec<f32> {
        let (c, o, k) = (self.channels, self.out_channels, self.kernel);
        assert_eq!(w.len(), o * c * k * k, "conv weight");
        let wide = self.backward_wide();
        let (oh, ow) = self.out_hw();
        let q = k - 1 - self.padding;
        pad_into(self.isa, grad, o, oh, ow, q, wide.slack(), scratch);
        // packed[(oc, ky', kx')][ci] = w[oc, ci, K−1−ky', K−1−kx'].
        let mut packed = vec![0.0f32; w.len()];
        for oc in 0..o {
            for ci in 0..c {
                for ky in 0..k {
                    for kx in 0..k {
                        let tap = (oc * k + (k - 1 - ky)) * k + (k - 1 - kx);
                        packed[tap * c + ci] = w[((oc * c + ci) * k + ky) * k + kx];
                    }
                }
            }
        }
        let batch = grad.len() / (o * oh * ow).max(1);
        wide.run(scratch, &packed, None, batch)
    }

    /// `gw [O, C, K, K]` (and `gb [O]`) from `padded` (the forward pass's) and `grad [B, O,
    /// OH, OW]`; `scratch` holds the gradient in the wide layout.
    pub fn weight_grad(
        &self,
        padded: &[f32],
        grad: &[f32],
        scratch: &mut Vec<f32>,
        gw: &mut [f32],
        gb: Option<&mut [f32]>,
    ) {
        let wide = self.forward_wide();
        let o = self.out_channels;
        let (oh, ow) = wide.out_hw();
        let (wide_len, plane) = (wide.wide_len(), oh * ow);
        let batch = grad.len() / (o * plane).max(1);
        assert_eq!(grad.len(), batch * o * plane, "conv output gradient");
        assert!(
            padded.len() >= batch * wide.image_len() + wide.slack(),
            "padded input"
        );
        let taps = wide.taps();
        assert_eq!(gw.len(), o * taps.len(), "conv weight gradient");
        let blocks: Vec<(usize, usize)> = (0..o)
            .step_by(WGRAD_CHANNELS)
            .flat_map(|o0| (0..taps.len()).step_by(WGRAD_TAPS).map(move |t0| (o0, t0)))
            .collect();
        let ntaps = taps.len();
        let image_len = wide.image_len();
        let block_len = WGRAD_CHANNELS * WGRAD_TAPS * LANES;
        // Each block's vector sums `[4][6][16]`, carried from group to group.
        let mut partials = vec![0.0f32; blocks.len() * block_len];
        let mut gb = gb;
        if let Some(gb) = gb.as_deref_mut() {
            gb.fill(0.0);
        }
        // What a group copies: the gradient widened (`O · wide_len` values an image) or, where
        // that is more and a compact plane is whole vectors, each tap of the padded input
        // gathered compact (im2col of one image from L1, `taps · OH·OW` values), the gradient
        // then read where it lies. The first layer of a CNN (one input channel, 16 outputs)
        // takes the second.
        let narrow = plane.is_multiple_of(LANES) && ntaps * plane < o * wide_len;
        let narrow_taps: Vec<usize> = (0..ntaps).map(|t| t * plane).collect();
        let per_image = if narrow { ntaps * plane } else { o * wide_len };
        scratch.resize(WGRAD_GROUP * per_image, 0.0);
        for b0 in (0..batch).step_by(WGRAD_GROUP) {
            let images = WGRAD_GROUP.min(batch - b0);
            let group = &grad[b0 * o * plane..(b0 + images) * o * plane];
            let copied = &mut scratch[..images * per_image];
            if narrow {
                for (b, cols) in copied.chunks_exact_mut(per_image).enumerate() {
                    let image = &padded[(b0 + b) * image_len..];
                    for (&tap, to) in taps.iter().zip(cols.chunks_exact_mut(plane)) {
                        copy_rows(self.isa, &image[tap..], wide.wp, to, ow, oh, ow);
                    }
                }
            } else {
                // The group's gradient `[images, O, OH, OW]` → `[images, O, wide_len]`, zero
                // where ox ≥ OW and past OH·Wp: small enough to stay in L2 while every block
                // reads it.
                for (from, to) in group
                    .chunks_exact(plane)
                    .zip(copied.chunks_exact_mut(wide_len))
                {
                    to.fill(0.0);
                    copy_rows(self.isa, from, ow, to, wide.wp, oh, ow);
                }
            }
            let copied: &[f32] = copied;
            // The operands of the blocks: inputs, their length an image, the taps' offsets,
            // the gradient, its length an image, a channel, and the vectors of a channel.
            let (inputs, inputs_len, tap_offsets, grads, grads_len, grad_stride, vectors) =
                if narrow {
                    (
                        copied,
                        per_image,
                        &narrow_taps[..],
                        group,
                        o * plane,
                        plane,
                        plane / LANES,
                    )
                } else {
                    let inputs = &padded[b0 * image_len..];
                    (
                        inputs,
                        image_len,
                        &taps[..],
                        copied,
                        o * wide_len,
                        wide_len,
                        wide_len / LANES,
                    )
                };
            if let Some(gb) = gb.as_deref_mut() {
                for (i, plane) in grads.chunks_exact(grad_stride).enumerate() {
                    gb[i % o] += sum(plane);
                }
            }
            let run = |(&(o0, t0), partial): (&(usize, usize), &mut [f32])| {
                let block = WeightBlock {
                    inputs,
                    image_len: inputs_len,
                    taps: &tap_offsets[t0..t0 + WGRAD_TAPS.min(ntaps - t0)],
                    grads: &grads[o0 * grad_stride..],
                    grad_image_len: grads_len,
                    grad_stride,
                    images: 0..images,
                    vectors,
                };
                let channels = WGRAD_CHANNELS.min(o - o0);
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the `Isa` of a `Direct` is one this CPU supports.
                unsafe {
                    match self.isa {
                        Isa::Avx512 => {
                            avx512::weight_grad(&block, channels, block.taps.len(), partial)
                        }
                        Isa::Avx2 => avx2::weight_grad(&block, channels, block.taps.len(), partial),
                    }
                };
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (block, partial, channels);
            };
            if crate::train::kernels::gemm::is_serial() {
                blocks
                    .iter()
                    .zip(partials.chunks_exact_mut(block_len))
                    .for_each(run);
            } else {
                blocks
                    .par_iter()
                    .zip(partials.par_chunks_exact_mut(block_len))
                    .for_each(run);
            }
        }
        for (&(o0, t0), partial) in blocks.iter().zip(partials.chunks_exact(block_len)) {
            let channels = WGRAD_CHANNELS.min(o - o0);
            let count = WGRAD_TAPS.min(ntaps - t0);
            for r in 0..channels {
                for t in 0..count {
                    let lanes = &partial[(r * WGRAD_TAPS + t) * LANES..][..LANES];
                    gw[(o0 + r) * ntaps + t0 + t] = lanes.iter().sum();
                }
            }
        }
    }
}

/// One weight-gradient block's operands: for `r` < channels and tap `t`, lane `l` of
/// `partial[r][t]` gains `Σ_{b ∈ images} Σ_v grads[b·grad_image_len + r·grad_stride + 16v + l]
/// · inputs[b·image_len + taps[t] + 16v + l]`.
struct WeightBlock<'a> {
    inputs: &'a [f32],
    image_len: usize,
    taps: &'a [usize],
    grads: &'a [f32],
    grad_image_len: usize,
    grad_stride: usize,
    images: std::ops::Range<usize>,
    vectors: usize,
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::{
        ForwardBlock, WeightBlock, FWD_CHANNELS, FWD_VECTORS, LANES, WGRAD_CHANNELS, WGRAD_TAPS,
    };

    /// See [`super::copy_rows`], which checks the bounds.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; `src` and `dst` hold every row.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn copy_rows(
        src: &[f32],
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
        rows: usize,
        width: usize,
    ) {
        let tail = width % LANES;
        let mask: __mmask16 = ((1u32 << tail) - 1) as __mmask16;
        for row in 0..rows {
            // SAFETY: row < rows and every access is below row·stride + width (the caller's
            // bounds); the tail is masked.
            unsafe {
                let from = src.as_ptr().add(row * src_stride);
                let to = dst.add(row * dst_stride);
                let mut i = 0;
                while i + LANES <= width {
                    _mm512_storeu_ps(to.add(i), _mm512_loadu_ps(from.add(i)));
                    i += LANES;
                }
                if tail != 0 {
                    _mm512_mask_storeu_ps(
                        to.add(i),
                        mask,
                        _mm512_maskz_loadu_ps(mask, from.add(i)),
                    );
                }
            }
        }
    }

    /// Runs one forward block of `channels` ≤ 8 output channels and `vectors` ≤ 3.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward(
        block: &ForwardBlock<'_>,
        channels: usize,
        vectors: usize,
        out: &mut [MaybeUninit<f32>],
    ) {
        macro_rules! by_vectors {
            ($r:literal) => {
                match vectors {
                    3 => forward_of::<$r, 3>(block, out),
                    2 => forward_of::<$r, 2>(block, out),
                    _ => forward_of::<$r, 1>(block, out),
                }
            };
        }
        match channels {
            8 => by_vectors!(8),
            7 => by_vectors!(7),
            6 => by_vectors!(6),
            5 => by_vectors!(5),
            4 => by_vectors!(4),
            3 => by_vectors!(3),
            2 => by_vectors!(2),
            _ => by_vectors!(1),
        }
    }

    #[target_feature(enable = "avx512f")]
    fn forward_of<const R: usize, const V: usize>(
        block: &ForwardBlock<'_>,
        out: &mut [MaybeUninit<f32>],
    ) {
        assert!(R <= FWD_CHANNELS && V <= FWD_VECTORS);
        let ntaps = block.taps.len();
        let last_tap = block.taps.iter().copied().max().unwrap_or(0);
        assert!(
            block.input.len() >= last_tap + block.position + V * LANES,
            "forward block reads"
        );
        assert!(ntaps == 0 || block.packed.len() > (ntaps - 1) * block.packed_stride + R - 1);
        assert!(block.masks.len() == V && block.firsts.len() == V);
        for (&mask, &first) in block.masks.iter().zip(block.firsts) {
            let stored = first + mask.count_ones() as usize;
            assert!(
                out.len() >= (R - 1) * block.plane + stored,
                "forward block writes"
            );
        }
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            *acc = [_mm512_set1_ps(block.init[r]); V];
        }
        let input = block.input.as_ptr();
        let packed = block.packed.as_ptr();
        for (t, &tap) in block.taps.iter().enumerate() {
            // SAFETY: tap + position + V·16 ≤ input.len() and the packed index
            // t·stride + r ≤ (ntaps − 1)·stride + R − 1 < packed.len() (asserted above);
            // loads are unaligned.
            unsafe {
                let from = input.add(tap + block.position);
                let mut x = [_mm512_setzero_ps(); V];
                for (v, x) in x.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(from.add(v * LANES));
                }
                let weights = packed.add(t * block.packed_stride);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_ps(*weights.add(r));
                    for (a, &x) in acc.iter_mut().zip(&x) {
                        *a = _mm512_fmadd_ps(w, x, *a);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, &a) in acc.iter().enumerate() {
                let mask = block.masks[v];
                let kept = _mm512_maskz_compress_ps(mask, a);
                let count = mask.count_ones();
                let first: __mmask16 = ((1u32 << count) - 1) as __mmask16;
                // SAFETY: the `count` values from r·plane + firsts[v] are inside `out`
                // (asserted above); the store is masked to them and unaligned.
                unsafe {
                    _mm512_mask_storeu_ps(
                        out.as_mut_ptr()
                            .add(r * block.plane + block.firsts[v])
                            .cast::<f32>(),
                        first,
                        kept,
                    )
                };
            }
        }
    }

    /// Adds one weight-gradient block of `channels` ≤ 4 output channels and `taps` ≤ 6 into
    /// `partial` `[4][6][16]`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight_grad(
        block: &WeightBlock<'_>,
        channels: usize,
        taps: usize,
        partial: &mut [f32],
    ) {
        macro_rules! by_taps {
            ($r:literal) => {
                match taps {
                    6 => weight_grad_of::<$r, 6>(block, partial),
                    5 => weight_grad_of::<$r, 5>(block, partial),
                    4 => weight_grad_of::<$r, 4>(block, partial),
                    3 => weight_grad_of::<$r, 3>(block, partial),
                    2 => weight_grad_of::<$r, 2>(block, partial),
                    _ => weight_grad_of::<$r, 1>(block, partial),
                }
            };
        }
        match channels {
            4 => by_taps!(4),
            3 => by_taps!(3),
            2 => by_taps!(2),
            _ => by_taps!(1),
        }
    }

    #[target_feature(enable = "avx512f")]
    fn weight_grad_of<const R: usize, const T: usize>(
        block: &WeightBlock<'_>,
        partial: &mut [f32],
    ) {
        assert!(R <= WGRAD_CHANNELS && T <= WGRAD_TAPS && block.taps.len() == T);
        assert!(partial.len() >= WGRAD_CHANNELS * WGRAD_TAPS * LANES);
        let span = block.vectors * LANES;
        if block.images.is_empty() {
            return;
        }
        let last = block.images.end - 1;
        let last_tap = block.taps.iter().copied().max().unwrap_or(0);
        assert!(
            block.inputs.len() >= last * block.image_len + last_tap + span,
            "weight block reads inputs"
        );
        assert!(
            block.grads.len() >= last * block.grad_image_len + (R - 1) * block.grad_stride + span,
            "weight block reads gradients"
        );
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            for (t, a) in acc.iter_mut().enumerate() {
                // SAFETY: (r·6 + t + 1)·16 ≤ partial.len() (asserted); unaligned.
                *a = unsafe { _mm512_loadu_ps(partial.as_ptr().add((r * WGRAD_TAPS + t) * LANES)) };
            }
        }
        let mut tap = [0usize; T];
        tap.copy_from_slice(block.taps);
        for b in block.images.clone() {
            // SAFETY (for the loads below): b ≤ last, v < vectors, so every read ends at or
            // before the bounds asserted above; loads are unaligned.
            let input = unsafe { block.inputs.as_ptr().add(b * block.image_len) };
            let grads = unsafe { block.grads.as_ptr().add(b * block.grad_image_len) };
            for v in 0..block.vectors {
                unsafe {
                    let mut g = [_mm512_setzero_ps(); R];
                    for (r, g) in g.iter_mut().enumerate() {
                        *g = _mm512_loadu_ps(grads.add(r * block.grad_stride + v * LANES));
                    }
                    for (t, &off) in tap.iter().enumerate() {
                        let x = _mm512_loadu_ps(input.add(off + v * LANES));
                        for (acc, &g) in acc.iter_mut().zip(&g) {
                            acc[t] = _mm512_fmadd_ps(g, x, acc[t]);
                        }
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (t, &a) in acc.iter().enumerate() {
                // SAFETY: as for the loads of `partial` above.
                unsafe {
                    _mm512_storeu_ps(partial.as_mut_ptr().add((r * WGRAD_TAPS + t) * LANES), a)
                };
            }
        }
    }
}

/// The AVX2 kernels: the AVX-512 kernels' sums, in their order, on 8-lane registers.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{
        ForwardBlock, WeightBlock, FWD_CHANNELS, FWD_VECTORS, LANES, WGRAD_CHANNELS, WGRAD_TAPS,
    };
    use crate::train::kernels::isa::avx2::first_lanes;

    /// f32 lanes of a ymm register: a 16-lane vector is two of them.
    const HALF: usize = 8;
    /// Output channels of a forward sub-block (× the block's up to 3 vectors: 12
    /// accumulators, a broadcast weight per channel and the input half being added, in 16
    /// registers).
    const FWD_SUB: usize = 2;
    /// Output channels of a weight-gradient sub-block (× up to 6 taps over one half of
    /// every vector: 12 accumulators, 2 gradients and an input).
    const WGRAD_SUB: usize = 2;

    /// See [`super::copy_rows`], which checks the bounds.
    ///
    /// # Safety
    /// The CPU has AVX2; `src` and `dst` hold every row.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn copy_rows(
        src: &[f32],
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
        rows: usize,
        width: usize,
    ) {
        let tail = width % HALF;
        let mask = first_lanes(tail);
        for row in 0..rows {
            // SAFETY: row < rows and every access is below row·stride + width (the caller's
            // bounds); the tail is masked (masked lanes are neither read nor written).
            unsafe {
                let from = src.as_ptr().add(row * src_stride);
                let to = dst.add(row * dst_stride);
                let mut i = 0;
                while i + HALF <= width {
                    _mm256_storeu_ps(to.add(i), _mm256_loadu_ps(from.add(i)));
                    i += HALF;
                }
                if tail != 0 {
                    _mm256_maskstore_ps(to.add(i), mask, _mm256_maskload_ps(from.add(i), mask));
                }
            }
        }
    }

    /// Runs one forward block of `channels` ≤ 8 output channels and `vectors` ≤ 3, as
    /// sub-blocks of 2 channels × every vector. Channel `r` of the block writes its vectors'
    /// lanes, all of them, to `wide[r·wide_len + position ..]` (the caller copies the
    /// outputs compact; the block's masks and firsts are not read).
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward(
        block: &ForwardBlock<'_>,
        channels: usize,
        vectors: usize,
        wide: &mut [f32],
        wide_len: usize,
    ) {
        assert!(channels <= FWD_CHANNELS);
        macro_rules! by_vectors {
            ($r:literal, $r0:expr) => {
                match vectors {
                    3 => forward_of::<$r, 3>(block, $r0, wide, wide_len),
                    2 => forward_of::<$r, 2>(block, $r0, wide, wide_len),
                    _ => forward_of::<$r, 1>(block, $r0, wide, wide_len),
                }
            };
        }
        for r0 in (0..channels).step_by(FWD_SUB) {
            if channels - r0 >= 2 {
                by_vectors!(2, r0);
            } else {
                by_vectors!(1, r0);
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn forward_of<const R: usize, const V: usize>(
        block: &ForwardBlock<'_>,
        r0: usize,
        wide: &mut [f32],
        wide_len: usize,
    ) {
        assert!(r0 + R <= FWD_CHANNELS && V <= FWD_VECTORS);
        let ntaps = block.taps.len();
        let last_tap = block.taps.iter().copied().max().unwrap_or(0);
        assert!(
            block.input.len() >= last_tap + block.position + V * LANES,
            "forward block reads"
        );
        let stride = block.packed_stride;
        assert!(ntaps == 0 || block.packed.len() > (ntaps - 1) * stride + r0 + R - 1);
        assert!(
            block.position + V * LANES <= wide_len
                && wide.len() >= (r0 + R - 1) * wide_len + block.position + V * LANES,
            "forward block writes"
        );
        // acc[r][h]: channel r0 + r, half h of the block's positions (vector h / 2).
        let mut acc = [[_mm256_setzero_ps(); 2 * FWD_VECTORS]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            *acc = [_mm256_set1_ps(block.init[r0 + r]); 2 * FWD_VECTORS];
        }
        let input = block.input.as_ptr();
        let packed = block.packed.as_ptr();
        for (t, &tap) in block.taps.iter().enumerate() {
            // SAFETY: tap + position + V·16 ≤ input.len() and t·stride + r0 + r ≤
            // (ntaps − 1)·stride + r0 + R − 1 < packed.len() (asserted above); unaligned.
            unsafe {
                let from = input.add(tap + block.position);
                let weights = packed.add(t * stride + r0);
                let mut w = [_mm256_setzero_ps(); R];
                for (r, w) in w.iter_mut().enumerate() {
                    *w = _mm256_set1_ps(*weights.add(r));
                }
                for h in 0..2 * V {
                    let x = _mm256_loadu_ps(from.add(h * HALF));
                    for (acc, &w) in acc.iter_mut().zip(&w) {
                        acc[h] = _mm256_fmadd_ps(w, x, acc[h]);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (h, &a) in acc.iter().enumerate().take(2 * V) {
                // SAFETY: (r0 + r)·wide_len + position + 8h + 8 ≤ wide.len() (asserted).
                unsafe {
                    let to = wide
                        .as_mut_ptr()
                        .add((r0 + r) * wide_len + block.position + h * HALF);
                    _mm256_storeu_ps(to, a);
                }
            }
        }
    }

    /// Adds one weight-gradient block of `channels` ≤ 4 output channels and `taps` ≤ 6 into
    /// `partial` `[4][6][16]`, as sub-blocks of 2 channels over one half of every vector.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weight_grad(
        block: &WeightBlock<'_>,
        channels: usize,
        taps: usize,
        partial: &mut [f32],
    ) {
        macro_rules! by_taps {
            ($r:literal, $r0:expr, $half:expr) => {
                match taps {
                    6 => weight_grad_of::<$r, 6>(block, $r0, $half, partial),
                    5 => weight_grad_of::<$r, 5>(block, $r0, $half, partial),
                    4 => weight_grad_of::<$r, 4>(block, $r0, $half, partial),
                    3 => weight_grad_of::<$r, 3>(block, $r0, $half, partial),
                    2 => weight_grad_of::<$r, 2>(block, $r0, $half, partial),
                    _ => weight_grad_of::<$r, 1>(block, $r0, $half, partial),
                }
            };
        }
        assert!(channels <= WGRAD_CHANNELS);
        for half in 0..LANES / HALF {
            for r0 in (0..channels).step_by(WGRAD_SUB) {
                if channels - r0 >= 2 {
                    by_taps!(2, r0, half);
                } else {
                    by_taps!(1, r0, half);
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn weight_grad_of<const R: usize, const T: usize>(
        block: &WeightBlock<'_>,
        r0: usize,
        half: usize,
        partial: &mut [f32],
    ) {
        assert!(r0 + R <= WGRAD_CHANNELS && T <= WGRAD_TAPS && block.taps.len() == T);
        assert!(half < LANES / HALF);
        assert!(partial.len() >= WGRAD_CHANNELS * WGRAD_TAPS * LANES);
        let span = block.vectors * LANES;
        if block.images.is_empty() {
            return;
        }
        let last = block.images.end - 1;
        let last_tap = block.taps.iter().copied().max().unwrap_or(0);
        assert!(
            block.inputs.len() >= last * block.image_len + last_tap + span,
            "weight block reads inputs"
        );
        assert!(
            block.grads.len()
                >= last * block.grad_image_len + (r0 + R - 1) * block.grad_stride + span,
            "weight block reads gradients"
        );
        let lane0 = half * HALF;
        let slot = |r: usize, t: usize| ((r0 + r) * WGRAD_TAPS + t) * LANES + lane0;
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            for (t, a) in acc.iter_mut().enumerate() {
                // SAFETY: slot(r, t) + 8 ≤ (4·6)·16 ≤ partial.len() (asserted); unaligned.
                *a = unsafe { _mm256_loadu_ps(partial.as_ptr().add(slot(r, t))) };
            }
        }
        let mut tap = [0usize; T];
        tap.copy_from_slice(block.taps);
        for b in block.images.clone() {
            // SAFETY (for the loads below): b ≤ last, v < vectors and lane0 + 8 ≤ 16, so
            // every read ends at or before the bounds asserted above; loads are unaligned.
            let input = unsafe { block.inputs.as_ptr().add(b * block.image_len + lane0) };
            let grads = unsafe {
                block
                    .grads
                    .as_ptr()
                    .add(b * block.grad_image_len + r0 * block.grad_stride + lane0)
            };
            for v in 0..block.vectors {
                unsafe {
                    let mut g = [_mm256_setzero_ps(); R];
                    for (r, g) in g.iter_mut().enumerate() {
                        *g = _mm256_loadu_ps(grads.add(r * block.grad_stride + v * LANES));
                    }
                    for (t, &off) in tap.iter().enumerate() {
                        let x = _mm256_loadu_ps(input.add(off + v * LANES));
                        for (acc, &g) in acc.iter_mut().zip(&g) {
                            acc[t] = _mm256_fmadd_ps(g, x, acc[t]);
                        }
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (t, &a) in acc.iter().enumerate() {
                // SAFETY: as for the loads of `partial` above.
                unsafe { _mm256_storeu_ps(partial.as_mut_ptr().add(slot(r, t)), a) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::zero_border;

    #[test]
    fn zero_border_writes_exactly_the_border() {
        for (h, w, q) in [(4, 5, 1), (3, 3, 2), (1, 7, 1), (2, 2, 0), (0, 3, 1)] {
            let (hp, wp) = (h + 2 * q, w + 2 * q);
            let mut plane = vec![f32::NAN; hp * wp];
            zero_border(&mut plane, h, w, q);
            for y in 0..hp {
                for x in 0..wp {
                    let inside = (q..q + h).contains(&y) && (q..q + w).contains(&x);
                    let v = plane[y * wp + x];
                    assert_eq!(v.is_nan(), inside, "({h}, {w}, {q}) at ({y}, {x})");
                }
            }
        }
    }
}
