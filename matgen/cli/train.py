"""`matgen train`: train, fine-tune (``--init``) or resume (``--resume``) a crystal denoiser.

A thin wrapper over :func:`matgen.training.train`. Under ``torchrun`` (e.g.
``torchrun --standalone --nproc_per_node=4 --no-python matgen train --config ...``) every
process runs this command and trains one DDP rank.
Exit codes: 0 ok, 1 bad data or a diverged run, 2 usage error.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from matgen.cli._app import app, fail

_out = Console(highlight=False, soft_wrap=True)


@app.command("train")
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="Training YAML (configs/train/).")],
    data: Annotated[
        str | None,
        typer.Option(help="Dataset name or path (CSV / CIF folder / extxyz); overrides the "
                     "config's data.dataset."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default: runs/<config name>).")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Steps of the run (overrides max_steps).", min=1)
    ] = None,
    max_time: Annotated[
        float | None,
        typer.Option(help="Wall-clock budget in minutes: stop cleanly with a checkpoint.", min=0),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run directory's last checkpoint.")
    ] = False,
    init: Annotated[
        Path | None,
        typer.Option(help="Checkpoint whose weights initialise the model (fine-tuning)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a denoiser from a YAML config; checkpoints go to RUN_DIR/checkpoints/. Unusable
    training entries are named and skipped: the run trains on the rest, then exits 1."""
    from pydantic import ValidationError

    from matgen.training import (
        ConfigFileError,
        NonFiniteLossError,
        ResumeMismatchError,
        TrainConfig,
        TrainDataError,
        config_error_line,
    )
    from matgen.training import train as run_training

    if not config.is_file():
        fail(f"config {config} not found", 2)
    try:
        cfg = TrainConfig.from_yaml(config)
    except ValidationError as e:
        fail(f"{config}: invalid config: {config_error_line(e)}", 2)
    except ConfigFileError as e:  # not YAML, empty, not a mapping, unreadable
        fail(str(e), 2)
    if max_time is not None and not math.isfinite(max_time):
        fail(f"--max-time must be a finite number of minutes (got {max_time})", 2)
    if cfg.optim.schedule == "time" and max_time is None:
        fail(f"{config}: optim.schedule: time needs a time budget (--max-time MINUTES)", 2)
    if init is not None and not init.exists():
        fail(f"--init {init}: not found", 2)
    if device not in ("auto", "cpu", "cuda"):
        fail(f"--device must be auto, cpu or cuda (got {device!r})", 2)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: CUDA is not available on this machine (use --device cpu "
                 "or auto)", 2)
    run_dir = out if out is not None else Path("runs") / config.stem
    source = f"--data {data}" if data is not None else f"data.dataset {cfg.data.dataset!r}"
    is_main = os.environ.get("RANK", "0") == "0"
    try:
        res = run_training(
            cfg, data=data, out=run_dir, max_steps=max_steps, max_time_minutes=max_time,
            resume=resume, init=init, device=None if device == "auto" else device,
            progress=progress,
            log=lambda m: _out.print(escape(m)),
        )
    except (FileExistsError, ResumeMismatchError) as e:
        fail(str(e), 2)
    except NonFiniteLossError as e:
        fail(f"training diverged: {e}", 1)
    except TrainDataError as e:
        fail(f"data ({source}): {e}", 1)
    except FileNotFoundError as e:  # --init or distill.teacher that is not a checkpoint
        fail(" ".join(str(e).split()), 2)
    except (KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        fail(" ".join(str(msg).split()), 1)
    if is_main:
        tail = [v for _, v in res.losses[-50:] if math.isfinite(v)]
        last = sum(tail) / len(tail) if tail else float("nan")
        _out.print(
            f"{res.stopped}: step {res.step} (from {res.resumed_from}), loss {last:.4g} "
            f"(mean of the last {len(tail)} steps), "
            f"{res.steps_per_s:.2f} steps/s, {res.nonfinite_steps} skipped steps; "
            f"checkpoint {escape(str(res.checkpoint))}"
        )
    if res.unusable_entries:  # the run trained on the good entries; the bad ones are data errors
        if not is_main:
            raise typer.Exit(1)
        fail(f"data ({source}): {res.unusable_entries} unusable training "
             f"entr{'y was' if res.unusable_entries == 1 else 'ies were'} skipped (named in the "
             "warnings above; `matgen data validate` lists them); the run trained on the rest", 1)


@app.command("train-composition")
def train_composition(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for composition.safetensors + "
                           "composition.json: a checkpoint folder, to pair them with its "
                           "denoiser.")],
    data: Annotated[str, typer.Option(help="Dataset name or path (CSV / CIF folder / extxyz).")
                    ] = "mp20",
    condition: Annotated[
        list[str] | None,
        typer.Option(help="Property columns to condition on (repeat; default: band_gap, "
                     "formation_energy_per_atom, e_above_hull where the data has them)."),
    ] = None,
    max_atoms: Annotated[int, typer.Option(help="Atoms per cell at most.", min=1)] = 20,
    epochs: Annotated[int, typer.Option(help="Epochs at most (early stopping on the "
                                        "validation NLL).", min=1)] = 60,
    members: Annotated[int, typer.Option(help="Networks trained from seeds SEED, SEED+1, ... "
                                         "whose next-step distributions are averaged (an "
                                         "ensemble).", min=1)] = 1,
    hidden: Annotated[int, typer.Option(help="GRU width of each network.", min=8)] = 256,
    dropout: Annotated[float, typer.Option(help="Dropout on the GRU's inputs, between its "
                                           "layers and on its outputs.", min=0.0, max=0.95)
                       ] = 0.5,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.", min=0.0)] = 0.1,
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without a lower "
                                          "validation NLL.", min=1)] = 10,
    float16: Annotated[bool, typer.Option("--float16", help="Store the weights as float16 "
                                          "(half the file; read back as float32).")] = False,
    temperature: Annotated[
        float, typer.Option(help="Sampling temperature recorded as the folder's default.",
                            min=0.01)] = 1.0,
    make_default: Annotated[
        bool, typer.Option("--make-default", help="Make composition-first the folder's de "
                           "novo default (else --denovo composition asks for it).")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train the composition model of composition-first de novo generation (train split,
    early stopping on the val split); writes it into OUT."""
    import torch

    from matgen.data import DatasetNotFound, load_dataset
    from matgen.models import CompositionConfig, save_composition_model
    from matgen.training import CompositionTrainConfig, train_composition_model

    torch.manual_seed(seed)
    try:
        sets = [load_dataset(data, split, max_atoms=max_atoms) for split in ("train", "val")]
    except (DatasetNotFound, FileNotFoundError) as e:
        fail(f"--data {data}: {' '.join(str(e).split())}", 2)
    known = sets[0].property_names
    names = condition if condition else [n for n in ("band_gap", "formation_energy_per_atom",
                                                     "e_above_hull") if n in known]
    missing = [n for n in names if n not in known or n not in sets[1].property_names]
    if missing:
        fail(f"--condition {missing[0]}: not a property column of {data} (has: "
             f"{', '.join(known) or 'none'})", 2)
    cfg = CompositionTrainConfig(epochs=epochs, seed=seed, weight_decay=weight_decay,
                                 patience=patience,
                                 model=CompositionConfig(max_atoms=max_atoms, members=members,
                                                         hidden=hidden, dropout=dropout))
    model, record = train_composition_model(sets[0], sets[1], names, cfg,
                                            log=lambda m: _out.print(escape(m)))
    record["data"] = {"source": sets[0].source, "sha256": sets[0].sha256}
    save_composition_model(model, out, record, sampling={
        "denovo": "composition" if make_default else "joint", "temperature": temperature},
        half=float16)
    what = (f"best epoch {record['best_epoch']}" if members == 1 else
            f"{members} networks, best epochs {record['best_epoch']}")
    _out.print(f"composition model ({what}, val NLL {record['val_nll']:.3f} per crystal) -> "
               f"{out}")
