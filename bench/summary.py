"""Summary of a scripts/bench-trainer.sh output: per round, kdprune's samples/s, its share of
the machine's f32 GEMM rate and its ratio to each peer (and to an earlier build, `x before`,
when the script ran one); then the median over rounds.

The GEMM rate of a round is the higher of kdprune's own 1024³ product (measured right before
and after its timed training) and OpenBLAS's (numpy-gemm), so the share is not flattered by a
slow reference.
"""

import json
import statistics
import sys


def rounds(lines):
    found = []
    current = None
    before = False
    for line in lines:
        if line.startswith("## round"):
            current = {"ours": [], "before": [], "peers": {}}
            found.append(current)
        elif line.startswith("## "):
            # The sections of KDPRUNE_BEFORE's binary, beside this one's.
            before = line.startswith("## before")
        elif current is not None and line.startswith("{") and '"train_examples"' in line:
            current["before" if before else "ours"].append(json.loads(line))
        elif current is not None and line.startswith('{"peer'):
            d = json.loads(line)
            current["peers"][d["peer"]] = d
    return found


def main():
    table = []
    kernels = set()
    ours_kernels = set()
    for r in rounds(open(sys.argv[1]).read().splitlines()):
        kernels.add(r["peers"].get("numpy-gemm", {}).get("openblas_kernel", "not reported"))
        ours_kernels.update(o.get("kernels", "not reported") for o in r["ours"])
        mlp, cnn = r["ours"][:2]
        resnet = r["ours"][2] if len(r["ours"]) > 2 else None
        peers = r["peers"]
        numpy_gemm = peers.get("numpy-gemm", {}).get("gflops", 0.0)
        peak = max(mlp["gemm_peak_gflops"], numpy_gemm)
        row = {
            "mlp samples/s": mlp["student_samples_per_s_hard"],
            "mlp GFLOP/s": mlp["student_gflops"],
            "GEMM kdprune": mlp["gemm_peak_gflops"],
            "GEMM OpenBLAS": numpy_gemm,
            "mlp % of GEMM peak": 100 * mlp["student_gflops"] / peak,
            "cnn samples/s": cnn["student_samples_per_s_hard"],
            "cnn conv GFLOP/s": cnn["conv_gflops"],
            "cnn % of GEMM peak": 100 * cnn["student_gflops"] / max(cnn["gemm_peak_gflops"], numpy_gemm),
        }
        if resnet is not None:
            resnet_peak = max(resnet["gemm_peak_gflops"], numpy_gemm)
            row["resnet20 samples/s"] = resnet["student_samples_per_s_hard"]
            row["resnet20 GFLOP/s"] = resnet["student_gflops"]
            row["resnet20 % of peak"] = 100 * resnet["student_gflops"] / resnet_peak
        pairs = [("numpy-mlp", mlp), ("sklearn-mlp", mlp), ("jax-mlp", mlp), ("torch-mlp", mlp)]
        pairs += [("numpy-cnn", cnn), ("jax-cnn", cnn)]
        pairs += [(f"torch-cnn-{layout}", cnn) for layout in ("channels-last", "nchw")]
        if resnet is not None:
            pairs += [(f"torch-resnet20-{layout}", resnet) for layout in ("channels-last", "nchw")]
        for peer, model in pairs:
            if peer in peers:
                row[f"{peer} samples/s"] = peers[peer]["samples_per_s"]
                row[f"x {peer}"] = model["student_samples_per_s_hard"] / peers[peer]["samples_per_s"]
        if r["before"]:
            b_mlp, b_cnn = r["before"][:2]
            row["before mlp samples/s"] = b_mlp["student_samples_per_s_hard"]
            row["x before mlp"] = mlp["student_samples_per_s_hard"] / b_mlp["student_samples_per_s_hard"]
            row["before cnn samples/s"] = b_cnn["student_samples_per_s_hard"]
            row["x before cnn"] = cnn["student_samples_per_s_hard"] / b_cnn["student_samples_per_s_hard"]
            if resnet is not None and len(r["before"]) > 2:
                b_resnet = r["before"][2]
                row["before resnet20 samples/s"] = b_resnet["student_samples_per_s_hard"]
                row["x before resnet20"] = (
                    resnet["student_samples_per_s_hard"] / b_resnet["student_samples_per_s_hard"]
                )
        row["mlp peak RSS MiB"] = mlp["peak_rss_bytes"] / 2**20
        row["mlp accounted MiB"] = mlp["accounted_bytes"] / 2**20
        row["cnn peak RSS MiB"] = cnn["peak_rss_bytes"] / 2**20
        row["cnn accounted MiB"] = cnn["accounted_bytes"] / 2**20
        table.append(row)
    keys = list(dict.fromkeys(k for row in table for k in row))
    print("\n# summary: per round, then the median over rounds (x peer = kdprune / peer)")
    print(f"# OpenBLAS kernel (NumPy, scikit-learn): {', '.join(sorted(kernels))}")
    print(f"# kdprune's kernels: {', '.join(sorted(ours_kernels))}")
    print(f"{'':24}" + "".join(f"{'round ' + str(i + 1):>12}" for i in range(len(table))) + f"{'median':>12}")
    for k in keys:
        values = [row.get(k, float("nan")) for row in table]
        fmt = (lambda v: f"{v:12.2f}") if k.startswith("x ") else (lambda v: f"{v:12.1f}")
        print(f"{k:24}" + "".join(fmt(v) for v in values) + fmt(statistics.median(values)))


def layer_table(lines):
    """Where the time goes (`kdprune bench --layers`), per network, from the last round."""
    last = rounds(lines)[-1]
    for name, report in zip(("mlp", "cnn", "resnet20"), last["ours"]):
        times = report.get("layer_times")
        if not times:
            continue
        total = report["profiled_seconds"]
        layers = sum(t["seconds"] for t in times)
        # A network without batch norm runs in shards on several threads at once: its layer
        # times are thread-seconds, given as shares of their own sum.
        sharded = layers > total
        base = layers if sharded else total
        what = "thread-seconds, shares of the layers' sum" if sharded else "shares of the epochs' time"
        print(f"\n# where {name}'s label-only training goes (last round; {total:.2f} s over its epochs; {what})")
        for t in times:
            print(f"{t['kind']:<24}{t['pass']:<10}{t['seconds']:9.3f} s {100 * t['seconds'] / base:6.1f} %  {t['calls']} calls")
        if not sharded:
            rest = total - layers
            print(f"{'loss, update, batches':<34}{rest:9.3f} s {100 * rest / total:6.1f} %")


if __name__ == "__main__":
    main()
    layer_table(open(sys.argv[1]).read().splitlines())
