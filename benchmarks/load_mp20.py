"""Load time of the 9,894 MP-20 (reduced) training rows: first load (parse + check + cache
write) and cached load, plus the cost of ``dataset.batch`` in a training loop.

Usage:
    MATGEN_DATA_DIR=../shared/datasets python benchmarks/load_mp20.py \
        [--workers 1 2] [--out benchmarks/results/load_mp20.json]

Each first load uses a fresh, empty cache folder, so nothing is reused between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _machine() -> dict:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cpus = os.cpu_count()
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpus_usable": cpus,
        "load_average_1min_at_start": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "note": "shared 2-core CPU machine; other jobs were running (see load average)",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="mp20")
    ap.add_argument("--split", default="train")
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--cached-repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/load_mp20.json"))
    args = ap.parse_args()

    from matgen.data import load_dataset, resolve_source

    src = resolve_source(args.name, args.split, allow_download=False)
    result: dict = {
        "dataset": f"{args.name}/{args.split}",
        "source": str(src),
        "machine": _machine(),
        "first_load": [],
    }
    for w in args.workers:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["MATGEN_CACHE_DIR"] = cache
            t0 = time.perf_counter()
            c0 = time.process_time()
            k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            ds = load_dataset(args.name, args.split, workers=w)
            wall = time.perf_counter() - t0
            cpu_main = time.process_time() - c0
            k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_workers = (k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime)
            cached = []
            for _ in range(args.cached_repeats):
                t0 = time.perf_counter()
                ds2 = load_dataset(args.name, args.split, workers=w)
                cached.append(time.perf_counter() - t0)
            assert len(ds2) == len(ds) and ds2.ids == ds.ids
        result["first_load"].append(
            {
                "workers": w,
                "wall_s": round(wall, 2),
                "cpu_s_main": round(cpu_main, 2),
                "cpu_s_workers": round(cpu_workers, 2),
            }
        )
        result["cached_load_s_median"] = round(statistics.median(cached), 4)
        result["cached_load_s_all"] = [round(c, 4) for c in cached]
    result["rows"] = ds.num_entries
    result["good"] = len(ds)
    result["bad"] = len(ds.errors)
    result["atoms"] = int(ds.atomic_numbers.shape[0])
    # batching cost in the training hot loop
    g = torch.Generator().manual_seed(0)
    times = []
    for _ in range(200):
        idx = torch.randint(len(ds), (256,), generator=g)
        t0 = time.perf_counter()
        ds.batch(idx)
        times.append(time.perf_counter() - t0)
    result["batch_256_ms_median"] = round(1000 * statistics.median(times), 3)
    result["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]
    result["date_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
