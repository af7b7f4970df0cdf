//! The distillation loss of the paper (Hinton et al. 2015 form):
//!
//! `L = (1 - α) · CE(y, softmax(s)) + α · τ² · KL(softmax(t/τ) ‖ softmax(s/τ))`, batch mean.
//!
//! α weights the teacher term (torchdistill's `KDLoss` uses α for the *hard-label* term; our
//! α equals its `1 - α`). The τ² factor keeps the soft term's gradient on the scale of the
//! hard term's as τ changes.

use ndarray::{ArrayView2, ArrayViewMut2, Zip};

use super::Kd;

/// Loss of a batch and its gradient with respect to the student's logits.
///
/// `logits`: `[B, C]`; `y`: `[B]`; `teacher_probs`: `[B, C]`, soft labels at τ (needed when
/// α > 0); `grad`: `[B, C]`, overwritten with `dL/dlogits`.
pub fn kd_loss_and_grad(
    logits: ArrayView2<'_, f32>,
    y: &[u32],
    teacher_probs: Option<ArrayView2<'_, f32>>,
    kd: Kd,
    mut grad: ArrayViewMut2<'_, f32>,
) -> f32 {
    let (b, c) = logits.dim();
    assert_eq!(grad.dim(), (b, c), "gradient buffer shape");
    let alpha = kd.alpha.get();
    let tau = kd.temperature.get();
    let inv_b = 1.0 / b as f32;
    let use_teacher = alpha > 0.0;
    let teacher_probs = if use_teacher {
        let t = teacher_probs.expect("alpha > 0 needs teacher probabilities");
        assert_eq!(t.dim(), (b, c), "teacher probabilities shape");
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
        if let Some(teacher) = &teacher_probs {
            let t = teacher.row(i);
            let mut qsum = 0.0f32;
            for (qj, &sj) in q.iter_mut().zip(s.iter()) {
                *qj = ((sj - max) / tau).exp();
                qsum += *qj;
            }
            let log_qsum = qsum.ln();
            let mut kl = 0.0f32;
            for j in 0..c {
                let log_q = (s[j] - max) / tau - log_qsum;
                q[j] /= qsum;
                if t[j] > 0.0 {
                    kl += t[j] * (t[j].ln() - log_q);
                }
                g[j] += alpha * tau * (q[j] - t[j]);
            }
            loss += alpha * tau * tau * kl;
        }
        g.mapv_inplace(|v| v * inv_b);
        total += loss as f64;
    }
    (total * inv_b as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Alpha, Temperature};
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
        let loss = kd_loss_and_grad(logits.view(), &[0, 3], None, kd(0.0, 1.0), g.view_mut());
        assert!((loss - 4f32.ln()).abs() < 1e-6);
        // Each row's gradient sums to zero.
        assert!(g.rows().into_iter().all(|r| r.sum().abs() < 1e-6));
    }

    #[test]
    fn kl_term_is_zero_when_student_matches_teacher() {
        let logits = array![[1.0f32, 2.0, 0.5]];
        let t = crate::teacher::softmax_rows(logits.view(), 3.0);
        let mut g = Array2::zeros((1, 3));
        let loss = kd_loss_and_grad(
            logits.view(),
            &[1],
            Some(t.view()),
            kd(1.0, 3.0),
            g.view_mut(),
        );
        assert!(loss.abs() < 1e-6, "{loss}");
        assert!(g.iter().all(|v| v.abs() < 1e-6));
    }
}
