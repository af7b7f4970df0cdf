//! The distillation loss of the paper (Hinton et al. 2015 form):
//!
//! `L = (1 - α) · CE(y, softmax(s)) + α · τ² · KL(softmax(t/τ) ‖ softmax(s/τ))`, batch mean.
//!
//! α weights the teacher term (torchdistill's `KDLoss` uses α for the *hard-label* term; our
//! α equals its `1 - α`). The τ² factor keeps the soft term's gradient on the scale of the
//! hard term's as τ changes.

use ndarray::{Array1, ArrayView1, ArrayView2, ArrayViewMut2, Zip};

use super::kd::Kd;

/// A batch's soft labels for the KD term.
#[derive(Clone, Copy)]
pub struct SoftLabels<'a> {
    /// The teacher's probabilities at τ, `[B, C]`.
    pub probs: ArrayView2<'a, f32>,
    /// Per row `Σ_j t_j ln t_j` (over `t_j > 0`), `[B]`, when computed once for the data set
    /// ([`neg_entropy`]): the KL term's value then needs no logarithm per step. Without it
    /// the loss takes the logarithms itself. Either way the gradient is the same.
    pub neg_entropy: Option<ArrayView1<'a, f32>>,
}

impl<'a> From<ArrayView2<'a, f32>> for SoftLabels<'a> {
    fn from(probs: ArrayView2<'a, f32>) -> Self {
        Self {
            probs,
            neg_entropy: None,
        }
    }
}

impl<'a> SoftLabels<'a> {
    /// Rows `rows` of the batch.
    pub fn rows(self, rows: std::ops::Range<usize>) -> SoftLabels<'a> {
        SoftLabels {
            probs: self.probs.slice_move(ndarray::s![rows.clone(), ..]),
            neg_entropy: self.neg_entropy.map(|e| e.slice_move(ndarray::s![rows])),
        }
    }
}

/// `Σ_j t_j ln t_j` over `t_j > 0` of each row of `probs` `[N, C]`: `[N]`.
pub fn neg_entropy(probs: ArrayView2<'_, f32>) -> Array1<f32> {
    probs
        .rows()
        .into_iter()
        .map(|t| t.iter().filter(|&&t| t > 0.0).map(|&t| t * t.ln()).sum())
        .collect()
}

/// Per-example weights of the loss and where each example's own loss goes.
#[derive(Debug, Default)]
pub struct PerExample<'a> {
    /// `[B]`: each example's loss and gradient are multiplied by its weight (InfoBatch's
    /// rescaling); `None`: all 1.
    pub weights: Option<&'a [f32]>,
    /// `[B]`, overwritten with each example's unweighted loss.
    pub losses: Option<&'a mut [f32]>,
}

/// Loss of a batch and its gradient with respect to the student's logits.
///
/// `logits`: `[B, C]`; `y`: `[B]`; `teacher`: `[B, C]` soft labels at τ (needed when
/// α > 0); `grad`: `[B, C]`, overwritten with `dL/dlogits`; `per_example`: weights `[B]` in,
/// losses `[B]` out.
pub fn kd_loss_and_grad(
    logits: ArrayView2<'_, f32>,
    y: &[u32],
    teacher: Option<SoftLabels<'_>>,
    kd: Kd,
    mut grad: ArrayViewMut2<'_, f32>,
    per_example: PerExample<'_>,
) -> f32 {
    let (b, c) = logits.dim();
    assert_eq!(grad.dim(), (b, c), "gradient buffer shape");
    let PerExample {
        weights,
        mut losses,
    } = per_example;
    assert!(weights.is_none_or(|w| w.len() == b), "one weight per row");
    assert!(
        losses.as_ref().is_none_or(|l| l.len() == b),
        "one loss per row"
    );
    let alpha = kd.alpha.get();
    let tau = kd.temperature.get();
    let inv_b = 1.0 / b as f32;
    let use_teacher = alpha > 0.0;
    let teacher = if use_teacher {
        let t = teacher.expect("alpha > 0 needs teacher probabilities");
        assert_eq!(t.probs.dim(), (b, c), "teacher probabilities shape");
        if let Some(e) = t.neg_entropy {
            assert_eq!(e.len(), b, "one teacher entropy per row");
        }
        Some(t)
    } else {
        None
    };
    let mut total = 0.0f64;
    let mut p = vec![0f32; c];
    let mut q = vec![0f32; c];
    for (i, (s, mut g)) in logits.rows().into_iter().zip(grad.rows_mut()).enumerate() {
        let label = y[i] as usize;
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for (pj, &sj) in p.iter_mut().zip(s.iter()) {
            *pj = (sj - max).exp();
            sum += *pj;
        }
        let log_sum = sum.ln();
        for pj in p.iter_mut() {
            *pj /= sum;
        }
        let ce = -(s[label] - max - log_sum);
        let mut loss = (1.0 - alpha) * ce;
        Zip::from(&mut g)
            .and(&p[..])
            .for_each(|gj, &pj| *gj = (1.0 - alpha) * pj);
        g[label] -= 1.0 - alpha;
        if let Some(teacher) = &teacher {
            let t = teacher.probs.row(i);
            let mut qsum = 0.0f32;
            for (qj, &sj) in q.iter_mut().zip(s.iter()) {
                *qj = ((sj - max) / tau).exp();
                qsum += *qj;
            }
            let log_qsum = qsum.ln();
            // KL = Σ t ln t − Σ t ln q; the first sum is the teacher's own, given or taken here.
            let mut own = 0.0f32;
            let mut cross = 0.0f32;
            for j in 0..c {
                let log_q = (s[j] - max) / tau - log_qsum;
                q[j] /= qsum;
                if t[j] > 0.0 {
                    cross += t[j] * log_q;
                    if teacher.neg_entropy.is_none() {
                        own += t[j] * t[j].ln();
                    }
                }
                g[j] += alpha * tau * (q[j] - t[j]);
            }
            let kl = teacher.neg_entropy.map_or(own, |e| e[i]) - cross;
            loss += alpha * tau * tau * kl;
        }
        if let Some(out) = losses.as_deref_mut() {
            out[i] = loss;
        }
        let w = weights.map_or(1.0, |w| w[i]);
        g.mapv_inplace(|v| v * w * inv_b);
        total += (w * loss) as f64;
    }
    (total * inv_b as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::kd::Alpha;
    use crate::train::kd::Temperature;
    use ndarray::{array, Array2};

    fn kd(alpha: f32, tau: f32) -> Kd {
        Kd {
            alpha: Alpha::new(alpha).unwrap(),
            temperature: Temperature::new(tau).unwrap(),
        }
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_ln_c() {
        let logits = Array2::<f32>::zeros((2, 4));
        let mut g = Array2::zeros((2, 4));
        let loss = kd_loss_and_grad(
            logits.view(),
            &[0, 3],
            None,
            kd(0.0, 1.0),
            g.view_mut(),
            PerExample::default(),
        );
        assert!((loss - 4f32.ln()).abs() < 1e-6);
        // Each row's gradient sums to zero.
        assert!(g.rows().into_iter().all(|r| r.sum().abs() < 1e-6));
    }

    #[test]
    fn kl_term_is_zero_when_student_matches_teacher() {
        let logits = array![[1.0f32, 2.0, 0.5]];
        let t = crate::tensor::softmax_rows(logits.view(), 3.0);
        let mut g = Array2::zeros((1, 3));
        let loss = kd_loss_and_grad(
            logits.view(),
            &[1],
            Some(t.view().into()),
            kd(1.0, 3.0),
            g.view_mut(),
            PerExample::default(),
        );
        assert!(loss.abs() < 1e-6, "{loss}");
        assert!(g.iter().all(|v| v.abs() < 1e-6));
    }

    #[test]
    fn a_given_teacher_entropy_changes_the_loss_by_rounding_only_and_the_gradient_not_at_all() {
        let logits = array![[1.0f32, 2.0, 0.5, -1.0], [0.3, -0.2, 4.0, 1.0]];
        let teacher = array![[0.5f32, 0.0, 2.0, 0.1], [1.0, 0.5, -3.0, 0.0]];
        let t = crate::tensor::softmax_rows(teacher.view(), 2.0);
        let e = neg_entropy(t.view());
        for alpha in [0.3f32, 1.0] {
            let mut g1 = Array2::zeros((2, 4));
            let mut g2 = Array2::zeros((2, 4));
            let taken = kd_loss_and_grad(
                logits.view(),
                &[1, 2],
                Some(t.view().into()),
                kd(alpha, 2.0),
                g1.view_mut(),
                PerExample::default(),
            );
            let given = kd_loss_and_grad(
                logits.view(),
                &[1, 2],
                Some(SoftLabels {
                    probs: t.view(),
                    neg_entropy: Some(e.view()),
                }),
                kd(alpha, 2.0),
                g2.view_mut(),
                PerExample::default(),
            );
            assert_eq!(g1, g2, "alpha {alpha}");
            assert!(
                (taken - given).abs() <= 1e-5 * taken.abs().max(1.0),
                "{taken} vs {given}"
            );
            assert!(taken > 0.0);
        }
    }

    #[test]
    fn weights_scale_each_examples_loss_and_gradient_and_losses_come_out_unweighted() {
        let logits = array![[1.0f32, 2.0, 0.5], [0.3, -0.2, 4.0]];
        let t =
            crate::tensor::softmax_rows(array![[0.5f32, 0.0, 2.0], [1.0, 0.5, -3.0]].view(), 2.0);
        let (mut plain, mut weighted) = (Array2::zeros((2, 3)), Array2::zeros((2, 3)));
        let mut losses = [0f32; 2];
        let mean = kd_loss_and_grad(
            logits.view(),
            &[1, 2],
            Some(t.view().into()),
            kd(0.5, 2.0),
            plain.view_mut(),
            PerExample {
                weights: None,
                losses: Some(&mut losses),
            },
        );
        assert!(((losses[0] + losses[1]) / 2.0 - mean).abs() < 1e-6);
        let rescaled = kd_loss_and_grad(
            logits.view(),
            &[1, 2],
            Some(t.view().into()),
            kd(0.5, 2.0),
            weighted.view_mut(),
            PerExample {
                weights: Some(&[2.0, 1.0]),
                losses: None,
            },
        );
        assert!((rescaled - (2.0 * losses[0] + losses[1]) / 2.0).abs() < 1e-6);
        for j in 0..3 {
            assert!((weighted[[0, j]] - 2.0 * plain[[0, j]]).abs() < 1e-7);
            assert_eq!(weighted[[1, j]], plain[[1, j]]);
        }
    }
}
