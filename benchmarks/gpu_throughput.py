"""Training and sampling throughput of the matgen denoiser (run on the GPU machine).

Training: steps/s at a global batch of 256 MP-20 crystals (mp20_reduced train split), for
precision/compile variants, timed from ``metrics.csv`` after a warm-up of ``--warmup`` steps.
Sampling: CSP structures/s on MP-20 test compositions at 1000 predictor-corrector steps and
with the few-step sampler, batch ``--sample-batch``.

    python benchmarks/gpu_throughput.py --config configs/train/mp20.yaml \
        --out benchmarks/results/gpu_throughput.json [--checkpoint CKPT]

``--sync-every N`` times the training loop with a host sync every N steps (recorded per row).

Runs on CPU too (tiny numbers; use ``--steps 20`` there).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from matgen.data import load_dataset
from matgen.diffusion import sample, sample_consistency, sample_fast
from matgen.generate import load_for_sampling
from matgen.training import TrainConfig, train


def _steps_per_s(metrics: Path, warmup: int) -> float:
    rows = list(csv.DictReader(metrics.open()))
    rows = [r for r in rows if int(r["step"]) >= warmup]
    if len(rows) < 2:
        raise RuntimeError("too few logged steps after warm-up; raise --steps")
    a, b = rows[0], rows[-1]
    return (int(b["step"]) - int(a["step"])) / (float(b["elapsed_s"]) - float(a["elapsed_s"]))


def bench_training(
    cfg: TrainConfig, steps: int, warmup: int, variants: list[str], keep: str | None = None,
    sync_every: int = 1,
) -> list[dict]:
    """Time each variant; the first variant's run is kept in ``keep`` (for the sampling bench).
    ``sync_every`` > 1: the loop reads its values every that many steps (``TrainConfig.
    sync_every``); the metrics rows then come every multiple of it from 10 on, so they add no
    syncs of their own."""
    out = []
    log_every = sync_every * -(-10 // sync_every)
    for n, v in enumerate(variants):
        precision, compile_ = v.split("+") if "+" in v else (v, "eager")
        c = cfg.model_copy(
            update={
                "precision": precision,
                "compile": compile_ == "compile",
                "log_every": log_every,
                "sync_every": sync_every,
                "checkpoint_every": 10**9,
                "max_steps": steps,
                # a fixed step count: a time-driven cosine (ablation configs) needs --max-time
                "optim": cfg.optim.model_copy(update={"schedule": "steps"}),
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            if keep and n == 0:  # a scratch run: an earlier invocation's is replaced, not resumed
                shutil.rmtree(keep, ignore_errors=True)
                tmp = keep
            t0 = time.perf_counter()
            res = train(c, out=tmp, max_steps=steps, progress=False, log=None)
            wall = time.perf_counter() - t0
            sps = _steps_per_s(Path(tmp) / "metrics.csv", warmup)
        mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        row = {
            "variant": v,
            "batch_size": c.batch_size,
            "sync_every": sync_every,
            "steps": res.step,
            "steps_per_s": round(sps, 3),
            "crystals_per_s": round(sps * c.batch_size, 1),
            "wall_s_incl_warmup": round(wall, 1),
            "peak_gpu_mem_gib": round(mem, 2),
        }
        print("train", row, flush=True)
        out.append(row)
    return out


def _sampling_chunks(ref, n: int, batch: int, by_size: bool):
    """``n`` compositions of ``ref`` (cycled when ``n`` exceeds it) as ``(num_atoms,
    atomic_numbers)`` chunks of at most ``batch`` crystals, sorted by size first when
    ``by_size`` (each chunk is then padded only to its own largest crystal)."""
    na = ref.num_atoms.tolist()
    start = [0]
    for a in na:
        start.append(start[-1] + a)
    idx = [i % len(na) for i in range(n)]
    if by_size:
        idx.sort(key=lambda i: na[i])
    out = []
    for lo in range(0, n, batch):
        sel = idx[lo:lo + batch]
        z = torch.cat([ref.atomic_numbers[start[i]:start[i + 1]] for i in sel])
        out.append((ref.num_atoms[sel], z))
    return out


def bench_sampling(checkpoint: str, n: int, variants: list[tuple[str, int]], seed: int = 0,
                   precision: str = "auto", split: str = "test", groups: tuple[int, ...] = (0,),
                   batch: int = 0, by_size: bool = False):
    """Structures/s of CSP sampling for each sampler variant; ``groups`` > 0 sets the dense
    denoiser's ``size_groups`` (0: the checkpoint's), ``batch`` > 0 samples the ``n``
    compositions in chunks of that many (``by_size``: sorted by atom count first)."""
    from matgen.generate._generate import sampling_denoiser

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, diffusion = load_for_sampling(checkpoint, device)[:2]
    net = sampling_denoiser(model, precision, device)  # as matgen sample runs it
    test = load_dataset("mp20", split=split)
    ref = test.batch(list(range(len(test)))).to(device)
    chunks = _sampling_chunks(ref, n, batch if batch > 0 else n, by_size)
    dense = [m for m in model.modules() if hasattr(getattr(m, "cfg", None), "size_groups")]

    def set_groups(k: int) -> None:  # the config is frozen: swap in a copy
        for m in dense:
            m.cfg = m.cfg.model_copy(update={"size_groups": k})

    own = dense[0].cfg.size_groups if dense else None
    out = []
    for g_count in groups:
        if g_count > 0 and dense:
            set_groups(g_count)
        for name, steps in variants:
            fn = {"pc": sample, "fast": sample_fast, "consistency": sample_consistency}[name]
            g = torch.Generator(device=device).manual_seed(seed)
            with torch.no_grad():
                na0, z0 = chunks[0]
                fn(net, diffusion, na0[:8], z0[: int(na0[:8].sum())], steps=2, generator=g)  # warm-up
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for na, z in chunks:
                    fn(net, diffusion, na, z, steps=steps, generator=g)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
            row = {"sampler": name, "steps": steps, "structures": n, "seconds": round(dt, 2),
                   "structures_per_s": round(n / dt, 2),
                   "size_groups": dense[0].cfg.size_groups if dense else None,
                   "batch": batch if batch > 0 else n, "sorted_by_size": by_size}
            print("sample", row, flush=True)
            out.append(row)
    if dense:
        set_groups(own)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="configs/train/mp20.yaml")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--variants", default="bf16,fp32,bf16+compile")
    ap.add_argument("--sync-every", type=int, default=1, help="training: host sync every N "
                    "steps (TrainConfig.sync_every; 1: every step)")
    ap.add_argument("--checkpoint", default=None, help="a checkpoint, or 'first-run' to use the "
                    "first training variant's (random-weight throughput numbers)")
    ap.add_argument("--keep-run", default="/tmp/gpu_throughput_run")
    ap.add_argument("--sample-n", type=int, default=1024)
    ap.add_argument("--sample-variants", default="pc:1000,fast:50,fast:20")
    ap.add_argument("--model", default="", help="overrides of the model config, e.g. hidden=512,vectors=128")
    ap.add_argument("--sample-precision", default="auto", help="auto (bf16 on CUDA), bf16, fp32")
    ap.add_argument("--sample-split", default="test", help="mp20 split whose compositions are sampled")
    ap.add_argument("--sample-groups", default="0", help="dense size_groups to try while sampling, "
                    "e.g. 1,2,4 (0: the checkpoint's)")
    ap.add_argument("--sample-batch", type=int, default=0, help="sample in chunks of this many (0: one)")
    ap.add_argument("--sample-sort", action="store_true", help="sort compositions by size before chunking")
    ap.add_argument("--out", default="benchmarks/results/gpu_throughput.json")
    args = ap.parse_args()

    cfg = TrainConfig.from_yaml(args.config)
    if args.model:
        upd = {k: type(getattr(cfg.model, k))(v) for k, v in (kv.split("=") for kv in args.model.split(","))}
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update=upd)})
    from matgen.models import build_denoiser

    result: dict = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor(),
        "torch": torch.__version__,
        "config": args.config,
        "model_overrides": args.model,
        "sync_every": args.sync_every,
        "parameters": build_denoiser(cfg.model).num_parameters,
    }
    if args.variants:
        result["training"] = bench_training(
            cfg, args.steps, args.warmup, args.variants.split(","), keep=args.keep_run,
            sync_every=args.sync_every,
        )
    if args.checkpoint == "first-run":
        args.checkpoint = str(Path(args.keep_run) / "checkpoints" / "last")
    if args.checkpoint:
        sv = [(v.split(":")[0], int(v.split(":")[1])) for v in args.sample_variants.split(",")]
        result["sampling"] = bench_sampling(
            args.checkpoint, args.sample_n, sv, precision=args.sample_precision, split=args.sample_split,
            groups=tuple(int(g) for g in args.sample_groups.split(",")), batch=args.sample_batch,
            by_size=args.sample_sort)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
