//! Layers built from their spec: where a [`LayerSpec`] becomes layers. Each kind's checks
//! and wiring live in its own file (`from_spec`); this module only dispatches, one line per
//! kind, and names the layer in every error.

use super::layer::{Layer, Site};
use super::spec::LayerSpec;
use super::{conv, dense, norm, pool, residual, simple};

/// The layers of `site.spec` in execution order (a dense layer after an image is preceded
/// by a flatten; a residual block is followed by its ReLU).
pub fn build(site: &mut Site<'_>) -> Result<Vec<Box<dyn Layer>>, String> {
    let shape = site.shape.to_vec();
    Ok(match *site.spec {
        LayerSpec::Dense { units } => dense::from_spec(units, site),
        LayerSpec::Relu => vec![Box::new(simple::Relu::new(shape))],
        LayerSpec::Flatten => vec![Box::new(simple::Flatten::new(shape))],
        LayerSpec::Bn => vec![Box::new(norm::BatchNorm::new(shape))],
        LayerSpec::Dropout { p } => vec![simple::dropout_from_spec(p, site)],
        LayerSpec::Conv { .. } => vec![conv::from_spec(site)?],
        LayerSpec::MaxPool { .. } | LayerSpec::AvgPool { .. } => vec![pool::from_spec(site)?],
        LayerSpec::Gap => vec![Box::new(pool::GlobalAvgPool::new(site.image()?))],
        LayerSpec::Res { out, stride } => residual::residual_from_spec(out, stride, site)?,
    })
}
