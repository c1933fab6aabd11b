"""Torch CPU inference when another process is busy on one of the cores (libgomp spin-waiting).

On a 2-core box the embed worker shares the CPU with the 'prepare' worker, Postgres and
gunicorn. This starts one busy-loop "hog" process (standing in for them), then times
EfficientNet-Lite0 forwards in fresh interpreters under three OpenMP environments:
torch's default (2 threads, libgomp's default spin-wait), OMP_WAIT_POLICY=PASSIVE, and
OMP_NUM_THREADS=1; and the same without the hog.

    .venv/bin/python -m bench.omp_contention
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.common import ROOT, bench_env, log, table, write_result

ENVS = {
    "default (2 threads, spin)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}

CHILD = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
from ml.backbones import build_backbone
m = build_backbone("efficientnet_lite0")[0]
out = {}
with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
    for n in (1, 64):
        x = torch.randn(n, 3, 224, 224).contiguous(memory_format=torch.channels_last)
        m(x); ts = []
        for _ in range(5 if n == 1 else 2):
            t = time.perf_counter(); m(x); ts.append(time.perf_counter() - t)
        out[n] = sorted(ts)[len(ts) // 2]
print(json.dumps({"threads": torch.get_num_threads(), "single_ms": out[1] * 1000, "batch64_img_s": 64 / out[64]}))
"""


def run(env: dict[str, str]) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT)],
        env={**bench_env(), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    started = time.time()
    rows = []
    for hog in (True, False):
        proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if hog else None
        try:
            for label, env in ENVS.items():
                log(f"{'with' if hog else 'without'} hog: {label}")
                r = run(env)
                rows.append(
                    {
                        "other load": "1 busy process" if hog else "none (besides the machine's own)",
                        "OpenMP env": label,
                        "threads": r["threads"],
                        "single image ms": round(r["single_ms"], 1),
                        "batch 64 img/s": round(r["batch64_img_s"], 1),
                    }
                )
        finally:
            if proc:
                proc.kill()
                proc.wait()
    table(rows, title="EfficientNet-Lite0 @224, bf16 autocast + channels_last, median of fresh-process runs")
    write_result("omp_contention", {"rows": rows}, started)


if __name__ == "__main__":
    main()
