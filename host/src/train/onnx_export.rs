//! Writing a trained student as an ONNX model (opset 13), so it can be deployed or serve as
//! the next teacher. A small protobuf encoder for the messages ONNX needs (Model, Graph,
//! Node, Attribute, Tensor, ValueInfo); field numbers from onnx/onnx.proto.

use ndarray::ArrayD;

/// A protobuf message being written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }
    fn int(&mut self, field: u32, v: i64) {
        self.key(field, 0);
        self.varint(v as u64);
    }
    fn bytes(&mut self, field: u32, data: &[u8]) {
        self.key(field, 2);
        self.varint(data.len() as u64);
        self.0.extend_from_slice(data);
    }
    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }
    fn message(&mut self, field: u32, m: Message) {
        self.bytes(field, &m.0);
    }
    fn float(&mut self, field: u32, v: f32) {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

/// A node attribute.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

const FLOAT: i64 = 1;

/// Collects nodes and initializers in order.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<Message>,
    initializers: Vec<Message>,
}

impl GraphBuilder {
    /// Adds a float tensor initializer; returns its name.
    pub fn initializer(&mut self, name: &str, value: &ArrayD<f32>) -> String {
        let mut t = Message::default();
        for &d in value.shape() {
            t.int(1, d as i64);
        }
        t.int(2, FLOAT);
        t.string(8, name);
        let raw: Vec<u8> = value.iter().flat_map(|v| v.to_le_bytes()).collect();
        t.bytes(9, &raw);
        self.initializers.push(t);
        name.to_string()
    }

    /// Adds a node named `name` with one output, also called `name`; returns it.
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        name: &str,
        attrs: &[(&str, Attr)],
    ) -> String {
        let mut n = Message::default();
        for i in inputs {
            n.string(1, i);
        }
        n.string(2, name);
        n.string(3, name);
        n.string(4, op);
        for (attr_name, value) in attrs {
            let mut a = Message::default();
            a.string(1, attr_name);
            match value {
                Attr::Int(v) => {
                    a.int(3, *v);
                    a.int(20, 2);
                }
                Attr::Ints(vs) => {
                    for v in vs {
                        a.int(8, *v);
                    }
                    a.int(20, 7);
                }
                Attr::Float(v) => {
                    a.float(2, *v);
                    a.int(20, 1);
                }
            }
            n.message(5, a);
        }
        self.nodes.push(n);
        name.to_string()
    }

    /// The serialised model: input `input` `[N, ...input_shape]` (N dynamic), output `output`
    /// `[N, classes]`.
    pub fn finish(
        self,
        input: &str,
        input_shape: &[usize],
        output: &str,
        classes: usize,
    ) -> Vec<u8> {
        let value_info = |name: &str, dims: &[Option<usize>]| {
            let mut shape = Message::default();
            for d in dims {
                let mut dim = Message::default();
                match d {
                    Some(v) => dim.int(1, *v as i64),
                    None => dim.string(2, "N"),
                }
                shape.message(1, dim);
            }
            let mut tensor = Message::default();
            tensor.int(1, FLOAT);
            tensor.message(2, shape);
            let mut ty = Message::default();
            ty.message(1, tensor);
            let mut vi = Message::default();
            vi.string(1, name);
            vi.message(2, ty);
            vi
        };
        let mut graph = Message::default();
        for n in self.nodes {
            graph.message(1, n);
        }
        graph.string(2, "kdprune-student");
        for t in self.initializers {
            graph.message(5, t);
        }
        let in_dims: Vec<Option<usize>> = std::iter::once(None)
            .chain(input_shape.iter().map(|&d| Some(d)))
            .collect();
        graph.message(11, value_info(input, &in_dims));
        graph.message(12, value_info(output, &[None, Some(classes)]));
        let mut model = Message::default();
        model.int(1, 8); // IR version 8 (ONNX 1.10+).
        model.string(2, "kdprune");
        model.string(3, env!("CARGO_PKG_VERSION"));
        model.message(7, graph);
        let mut opset = Message::default();
        opset.string(1, "");
        opset.int(2, 13);
        model.message(8, opset);
        model.0
    }
}
