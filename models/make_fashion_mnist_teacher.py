"""Train a Fashion-MNIST teacher shipped in models/ and export it to ONNX.

Made with scikit-learn's MLPClassifier and exported by skl2onnx, so the teacher comes from a
mainstream tool and not from kdprune itself. The model takes raw pixels scaled to [0, 1]
(x / 255), flat [N, 784] f32, and outputs `label` (int64 [N]) and `probabilities` (f32 [N, 10]).

Usage (from the repository root, after scripts/setup.sh made .venv):
    .venv/bin/python models/make_fashion_mnist_teacher.py \
        --data /usr/share/datasets/fashion-mnist --out models/fashion-mnist-mlp.onnx
    .venv/bin/python models/make_fashion_mnist_teacher.py --model linear \
        --data /usr/share/datasets/fashion-mnist --out models/fashion-mnist-linear.onnx

`--model mlp` (default) is MLPClassifier; `--model linear` is multinomial LogisticRegression
(the low-capacity teacher).

Prints the test accuracy of the sklearn model and of the exported ONNX model (via onnxruntime).
"""

import argparse
import gzip
import struct
import time

import numpy as np


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default="models/fashion-mnist-mlp.onnx")
    ap.add_argument("--model", choices=["mlp", "linear"], default="mlp")
    ap.add_argument("--hidden", default="512,256")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from sklearn.neural_network import MLPClassifier
    from skl2onnx import to_onnx
    import onnxruntime as ort

    x_train = read_idx(f"{args.data}/train-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0
    y_train = read_idx(f"{args.data}/train-labels-idx1-ubyte.gz").astype(np.int64)
    x_test = read_idx(f"{args.data}/t10k-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0
    y_test = read_idx(f"{args.data}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    x_train = x_train.astype(np.float32)
    x_test = x_test.astype(np.float32)

    hidden = tuple(int(h) for h in args.hidden.split(","))
    if args.model == "linear":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=0.1, max_iter=200, random_state=args.seed)
    else:
        clf = MLPClassifier(
            hidden_layer_sizes=hidden,
            batch_size=256,
            learning_rate_init=1e-3,
            alpha=1e-4,
            max_iter=args.epochs,
            early_stopping=False,
            random_state=args.seed,
        )
    start = time.time()
    clf.fit(x_train, y_train)
    what = "linear" if args.model == "linear" else f"MLP {hidden}"
    print(f"trained {what} for {int(np.max(clf.n_iter_))} iterations in {time.time() - start:.0f} s")
    print(f"sklearn test accuracy: {clf.score(x_test, y_test):.4f}")

    onx = to_onnx(
        clf,
        x_train[:1],
        options={id(clf): {"zipmap": False}},
        target_opset=17,
    )
    with open(args.out, "wb") as f:
        f.write(onx.SerializeToString())

    sess = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    outputs = sess.run(None, {sess.get_inputs()[0].name: x_test})
    probs = outputs[1]
    acc = float((probs.argmax(1) == y_test).mean())
    print(f"onnx inputs: {[(i.name, i.shape) for i in sess.get_inputs()]}")
    print(f"onnx outputs: {[(o.name, o.shape) for o in sess.get_outputs()]}")
    print(f"onnxruntime test accuracy: {acc:.4f}")


if __name__ == "__main__":
    main()
