"""Summary of scripts/study-infobatch.sh: accuracy (mean ± sample std over seeds), examples
seen and training seconds per cell, for each run and α, with the CPU."""
import json
import os
import platform
import statistics
import sys


def cpu():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(out):
    print(f"CPU: {cpu()}, {os.cpu_count()} cores")
    print(f"{'run':<10} {'alpha':>5} {'keep':>7} {'examples seen':>14} {'accuracy (mean ± sd, 3 seeds)':>31} {'seconds per cell':>17}")
    for run in ["full", "infobatch", "static"]:
        results = [json.loads(l) for l in open(os.path.join(out, run, "results.jsonl"))]
        seconds = {}
        for line in open(os.path.join(out, run, "timings.jsonl")):
            t = json.loads(line)
            seconds[t["key"]] = t["seconds"]
        for alpha in sorted({r["alpha"] for r in results}):
            rows = [r for r in results if r["alpha"] == alpha]
            acc = [r["test_accuracy"] for r in rows]
            seen = [r.get("examples_seen", r["kept"] * r["student"]["epochs"]) for r in rows]
            secs = [seconds[r["key"]] for r in rows if r["key"] in seconds]
            print(f"{run:<10} {alpha:>5} {rows[0]['keep']:>7} {statistics.mean(seen):>14.0f} "
                  f"{statistics.mean(acc):>22.4f} ± {statistics.stdev(acc):.4f} "
                  f"{statistics.mean(secs):>17.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
