//! Elementwise work over many parameter tensors in one parallel region: the tensors are cut
//! into chunks and all chunks of all tensors go to rayon as one job list, so that a step pays
//! for one hand-off to the other cores instead of one per tensor.

use ndarray::ArrayD;
use rayon::prelude::*;

/// Values per chunk: large enough that a hand-off costs little next to the work, small enough
/// that the largest tensor of a small network still spreads over the cores.
pub const CHUNK: usize = 1 << 14;

/// An operand of elementwise work: a chunk read or a chunk written.
pub enum Operand<'a> {
    Read(&'a [f32]),
    Write(&'a mut [f32]),
}

impl<'a> Operand<'a> {
    /// All of `tensor`, read (parameters and their state are in standard layout).
    pub fn read(tensor: &'a ArrayD<f32>) -> Self {
        Operand::Read(tensor.as_slice().expect("tensors in standard layout"))
    }

    /// All of `tensor`, written.
    pub fn write(tensor: &'a mut ArrayD<f32>) -> Self {
        Operand::Write(tensor.as_slice_mut().expect("tensors in standard layout"))
    }

    fn len(&self) -> usize {
        match self {
            Operand::Read(s) => s.len(),
            Operand::Write(s) => s.len(),
        }
    }
}

fn split_operand(o: Operand<'_>, at: usize) -> (Operand<'_>, Operand<'_>) {
    match o {
        Operand::Read(s) => {
            let (a, b) = s.split_at(at);
            (Operand::Read(a), Operand::Read(b))
        }
        Operand::Write(s) => {
            let (a, b) = s.split_at_mut(at);
            (Operand::Write(a), Operand::Write(b))
        }
    }
}

/// Runs `work(tag, operands)` on every chunk of every tensor (`tensors[i]`: a tag such as
/// the tensor's weight decay, and the operands of tensor `i`, all of one length), chunks
/// spread over the cores in one parallel region.
pub fn for_each_chunk<'a, Tag: Sync>(
    tensors: Vec<(Tag, Vec<Operand<'a>>)>,
    work: impl Fn(&Tag, &mut [Operand<'a>]) + Sync,
) {
    map_chunks(tensors, work);
}

/// [`for_each_chunk`] that keeps what `work` returns: one result per chunk, tensor by tensor
/// and chunk by chunk in order, whichever core ran it (so that a reduction over the results
/// adds them in an order fixed by the tensors' lengths alone).
pub fn map_chunks<'a, Tag: Sync, R: Send>(
    mut tensors: Vec<(Tag, Vec<Operand<'a>>)>,
    work: impl Fn(&Tag, &mut [Operand<'a>]) -> R + Sync,
) -> Vec<R> {
    let mut jobs = Vec::new();
    for (tag_index, (_, operands)) in tensors.iter_mut().enumerate() {
        let mut operands = std::mem::take(operands);
        let len = operands.first().map_or(0, Operand::len);
        assert!(
            operands.iter().all(|o| o.len() == len),
            "elementwise operands of one length"
        );
        let mut remaining = len;
        while remaining > CHUNK {
            let (heads, tails) = operands
                .into_iter()
                .map(|o| split_operand(o, CHUNK))
                .unzip();
            jobs.push((tag_index, heads));
            operands = tails;
            remaining -= CHUNK;
        }
        if remaining > 0 {
            jobs.push((tag_index, operands));
        }
    }
    let tensors = &tensors;
    jobs.into_par_iter()
        .map(|(tag_index, mut operands)| work(&tensors[tag_index].0, &mut operands))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_visited_once_across_chunks_and_tensors() {
        let mut big = vec![0.0f32; 3 * CHUNK + 5];
        let mut small = vec![0.0f32; 7];
        let source_big: Vec<f32> = (0..big.len()).map(|i| i as f32).collect();
        let source_small: Vec<f32> = (0..7).map(|i| -(i as f32)).collect();
        for_each_chunk(
            vec![
                (
                    1.0,
                    vec![Operand::Write(&mut big), Operand::Read(&source_big)],
                ),
                (
                    -1.0,
                    vec![Operand::Write(&mut small), Operand::Read(&source_small)],
                ),
            ],
            |sign, ops| {
                let [Operand::Write(to), Operand::Read(from)] = ops else {
                    unreachable!()
                };
                for (t, f) in to.iter_mut().zip(from.iter()) {
                    *t += sign * f + 1.0;
                }
            },
        );
        assert!(big.iter().enumerate().all(|(i, &v)| v == i as f32 + 1.0));
        assert!(small.iter().enumerate().all(|(i, &v)| v == 1.0 + i as f32));
    }
}
