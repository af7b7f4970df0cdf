//! SGD with momentum and decoupled-from-nothing (L2) weight decay, as in PyTorch's `SGD`:
//! `g += wd · w; v = μ v + g; w -= lr · v`. Weight decay applies to weights, not biases.
//! And the learning-rate schedule, evaluated per step.

use ndarray::Zip;

use super::mlp::Mlp;
use crate::manifest::Schedule;

pub struct Sgd {
    momentum: f32,
    weight_decay: f32,
    velocity: Mlp,
}

impl Sgd {
    pub fn new(model: &Mlp, momentum: f32, weight_decay: f32) -> Self {
        Self {
            momentum,
            weight_decay,
            velocity: model.zeros_like(),
        }
    }

    /// One update of `model` with `grads` (same shapes) at learning rate `lr`.
    pub fn step(&mut self, model: &mut Mlp, grads: &Mlp, lr: f32) {
        let (mu, wd) = (self.momentum, self.weight_decay);
        for ((layer, grad), vel) in model
            .layers
            .iter_mut()
            .zip(&grads.layers)
            .zip(&mut self.velocity.layers)
        {
            Zip::from(&mut layer.w)
                .and(&grad.w)
                .and(&mut vel.w)
                .for_each(|w, &g, v| {
                    *v = mu * *v + g + wd * *w;
                    *w -= lr * *v;
                });
            Zip::from(&mut layer.b)
                .and(&grad.b)
                .and(&mut vel.b)
                .for_each(|b, &g, v| {
                    *v = mu * *v + g;
                    *b -= lr * *v;
                });
        }
    }
}

/// Learning rate as a function of the step.
pub struct LrSchedule {
    kind: Schedule,
    base: f32,
    total_steps: usize,
}

impl LrSchedule {
    pub fn new(kind: Schedule, base: f32, total_steps: usize) -> Self {
        Self {
            kind,
            base,
            total_steps: total_steps.max(1),
        }
    }

    /// Cosine: `base · (1 + cos(π · step / total)) / 2`, from `base` down to 0.
    pub fn at(&self, step: usize) -> f32 {
        match self.kind {
            Schedule::Constant => self.base,
            Schedule::Cosine => {
                let progress = step.min(self.total_steps) as f32 / self.total_steps as f32;
                self.base * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_goes_from_base_to_zero() {
        let s = LrSchedule::new(Schedule::Cosine, 0.1, 100);
        assert!((s.at(0) - 0.1).abs() < 1e-7);
        assert!((s.at(50) - 0.05).abs() < 1e-6);
        assert!(s.at(100).abs() < 1e-7);
    }
}
