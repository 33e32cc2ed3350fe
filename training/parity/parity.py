#!/usr/bin/env python3
"""Haechi's isolation forest beside scikit-learn's, on the same data, in one run.

Prints, for each data set: mean AUC over seeds for both; batch scoring
throughput of each whole process (load data and model, score every row, print
the scores), single-threaded; and scikit-learn's per-event streaming rate (one
score_samples call per event). Haechi's per-event streaming cost comes from
`cargo bench -p haechi-training --bench score`, run at the end with --bench.

Usage: python3 training/parity/parity.py [--csv PATH --label last]... [--seeds 5] [--bench]
Needs: pip install scikit-learn; a release build (cargo build --release --bin haechi).
"""
import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAECHI = os.path.join(ROOT, "target", "release", "haechi")
DEFAULT_CSV = os.path.join(ROOT, "training", "data", "odds", "mammography.csv")


def load(path):
    rows = [l for l in open(path) if l.strip() and not l.startswith("#")]
    first = rows[0].split(",")
    try:
        [float(v) for v in first]
        header = None
    except ValueError:
        header, rows = first, rows[1:]
    data = np.array([[float(v) for v in r.split(",")] for r in rows])
    return data[:, :-1], data[:, -1], header


def haechi(*args, capture=True):
    out = subprocess.run([HAECHI, *args], check=True, capture_output=capture, text=True)
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", action="append")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=20, help="rows ×N for the throughput runs")
    ap.add_argument("--stream-events", type=int, default=2000)
    ap.add_argument("--bench", action="store_true", help="also run Haechi's criterion streaming benchmark")
    args = ap.parse_args()
    if not os.path.exists(HAECHI):
        sys.exit(f"build first: cargo build --release --bin haechi ({HAECHI} missing)")
    env_threads = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    os.environ.update(env_threads)
    tmp = tempfile.mkdtemp(prefix="haechi-parity-")
    for csv in args.csv or [DEFAULT_CSV]:
        X, y, _ = load(csv)
        print(f"== {os.path.basename(csv)}: {X.shape[0]} rows, {X.shape[1]} features, {int(y.sum())} anomalies")
        ours, theirs = [], []
        for seed in range(args.seeds):
            model = os.path.join(tmp, f"m{seed}.json")
            haechi("model", "fit", "--csv", csv, "--label", "last", "--trees", "100", "--sample", "256", "--seed", str(seed), "--out", model)
            s = np.array([float(v) for v in haechi("model", "score", "--model", model, "--csv", csv, "--label", "last").split()])
            ours.append(roc_auc_score(y, s))
            sk = IsolationForest(n_estimators=100, max_samples=256, random_state=seed, n_jobs=1).fit(X)
            theirs.append(roc_auc_score(y, -sk.score_samples(X)))
        mo, mt = np.mean(ours), np.mean(theirs)
        print(f"AUC over {args.seeds} seeds   haechi {mo:.4f} ± {np.std(ours):.4f}   scikit-learn {mt:.4f} ± {np.std(theirs):.4f}   difference {mo - mt:+.4f}")
        print(f"   per seed haechi {[round(a, 4) for a in ours]}")
        print(f"   per seed sklearn {[round(a, 4) for a in theirs]}")

        # Batch throughput, whole process each, single-threaded.
        big = os.path.join(tmp, "big.csv")
        with open(big, "w") as f:
            for _ in range(args.repeat):
                for row, label in zip(X, y):
                    f.write(",".join(repr(float(v)) for v in row) + f",{float(label)}\n")
        n = X.shape[0] * args.repeat
        t = time.perf_counter()
        subprocess.run(f"taskset -c 0 {HAECHI} model score --model {os.path.join(tmp, 'm0.json')} --csv {big} --label last > /dev/null", shell=True, check=True)
        ours_s = time.perf_counter() - t
        pkl = os.path.join(tmp, "sk.pkl")
        pickle.dump(IsolationForest(n_estimators=100, max_samples=256, random_state=0, n_jobs=1).fit(X), open(pkl, "wb"))
        script = (
            "import pickle,sys,numpy as np\n"
            f"m=pickle.load(open({pkl!r},'rb'))\n"
            f"d=np.loadtxt({big!r},delimiter=',')\n"
            "s=-m.score_samples(d[:,:-1])\n"
            "sys.stdout.write('\\n'.join(map(repr,s.tolist())))\n"
        )
        t = time.perf_counter()
        subprocess.run(["taskset", "-c", "0", sys.executable, "-c", script], check=True, stdout=subprocess.DEVNULL, env={**os.environ, **env_threads})
        sk_s = time.perf_counter() - t
        print(f"batch scoring, {n} rows, whole process, one core:  haechi {n / ours_s:,.0f} rows/s ({ours_s:.2f}s)   scikit-learn {n / sk_s:,.0f} rows/s ({sk_s:.2f}s)   ratio {sk_s / ours_s:.1f}x")

        sk = IsolationForest(n_estimators=100, max_samples=256, random_state=0, n_jobs=1).fit(X)
        k = min(args.stream_events, X.shape[0])
        t = time.perf_counter()
        for i in range(k):
            sk.score_samples(X[i : i + 1])
        dt = time.perf_counter() - t
        print(f"streaming, one call per event: scikit-learn {k / dt:,.0f} events/s ({dt / k * 1e6:,.0f} µs/event)")
    if args.bench:
        subprocess.run(["cargo", "bench", "-p", "haechi-training", "--bench", "score", "--", "--warm-up-time", "2", "--measurement-time", "5"], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
