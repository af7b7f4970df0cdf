//! The packed layout of a dense layer's weights: panels of 32 columns, row after row, which
//! the fused weight-gradient step writes ([`super::weight_grad`]) and the products read in
//! place ([`super::gemm_in_place`]).

/// Columns of a panel of packed weights.
pub const PANEL: usize = 32;

/// Values of the packed weights of an `[inputs, outputs]` layer.
pub fn packed_len(inputs: usize, outputs: usize) -> usize {
    inputs * outputs.div_ceil(PANEL) * PANEL
}

/// Where weight `(row, column)` of a layer with `inputs` rows lies in its packed panels: row
/// `row` of panel `column / 32`, lane `column % 32`.
pub fn packed_offset(inputs: usize, row: usize, column: usize) -> usize {
    ((column / PANEL) * inputs + row) * PANEL + column % PANEL
}
