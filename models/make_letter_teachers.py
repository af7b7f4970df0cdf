"""Train the three letter-recognition teachers shipped in models/ and export them to ONNX.

UCI letter recognition (../shared/data/tabular/letter-recognition.csv, from Debian's
r-cran-mlbench): 20 000 rows, 16 integer features 0..15, 26 classes (`lettr`, A..Z). The usual
split: the first 16 000 rows train, the last 4 000 test (kdprune: `holdout_last = 4000`). The
teachers see the raw features, f32 [N, 16], and output `label` (int64 [N]) and `probabilities`
(f32 [N, 26], classes in alphabetical order, as kdprune orders text labels).

    linear  multinomial LogisticRegression
    mlp-small  MLPClassifier (32,)
    mlp-large  MLPClassifier (512, 256)

Usage (from the repository root): .venv/bin/python models/make_letter_teachers.py
    [--csv ../shared/data/tabular/letter-recognition.csv] [--out models]
"""

import argparse
import csv
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", default="../shared/data/tabular/letter-recognition.csv")
    ap.add_argument("--out", default="models")
    args = ap.parse_args()

    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from skl2onnx import to_onnx
    import onnxruntime as ort

    with open(args.csv, newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    label = header.index("lettr")
    classes = sorted({r[label] for r in rows})
    y = np.array([classes.index(r[label]) for r in rows], dtype=np.int64)
    x = np.array([[float(v) for i, v in enumerate(r) if i != label] for r in rows], dtype=np.float32)
    x_train, y_train, x_test, y_test = x[:16000], y[:16000], x[16000:], y[16000:]

    models = {
        "linear": LogisticRegression(C=1.0, max_iter=1000, random_state=0),
        "mlp-small": MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0),
        "mlp-large": MLPClassifier(hidden_layer_sizes=(512, 256), max_iter=200, random_state=0),
    }
    for name, clf in models.items():
        start = time.time()
        clf.fit(x_train, y_train)
        onx = to_onnx(clf, x_train[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
        path = f"{args.out}/letter-{name}.onnx"
        with open(path, "wb") as f:
            f.write(onx.SerializeToString())
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        probs = sess.run(None, {sess.get_inputs()[0].name: x_test})[1]
        acc = float((probs.argmax(1) == y_test).mean())
        print(
            f"{name}: trained in {time.time() - start:.0f} s; sklearn test accuracy "
            f"{clf.score(x_test, y_test):.4f}, onnxruntime {acc:.4f}"
        )


if __name__ == "__main__":
    main()
