"""Run every benchmark in turn (``make bench``); each writes bench/results/<name>.json.

Budgets on the 2-core reference machine: about 2-5 min each, about 25 min in all, so
the slowest options are trimmed here (torch.compile only for ResNet50, HNSW at 100k,
a 20,000-row bulk import; the load test's four 1-minute runs: two query mixes, caches on
and off). On a machine others are using it takes longer.
Run a module on its own for the full options.

    .venv/bin/python -m bench.run_all [--only search_latency,hnsw_recall]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from bench.common import ROOT, bench_env, log

BENCHMARKS: list[tuple[str, list[str]]] = [
    ("encoder_throughput", ["--compile", "resnet50"]),
    ("embed_profile", []),
    ("omp_contention", []),
    ("search_latency", []),
    ("ingest_throughput", ["--bulk-rows", "20000"]),
    ("hnsw_recall", ["--sizes", "100000"]),
    ("load_test", []),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    args = parser.parse_args()
    only = {n for n in args.only.split(",") if n}
    env = bench_env()
    failed = []
    started = time.time()
    for name, extra in BENCHMARKS:
        if only and name not in only:
            continue
        log(f"=== bench.{name} {' '.join(extra)}")
        t = time.time()
        code = subprocess.run([sys.executable, "-m", f"bench.{name}", *extra], cwd=ROOT, env=env).returncode
        log(f"=== bench.{name}: exit {code} after {time.time() - t:.0f} s")
        if code:
            failed.append(name)
    log(f"all done in {time.time() - started:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
