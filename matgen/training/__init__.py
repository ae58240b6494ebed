"""matgen.training: config-driven training of crystal denoisers (sampling is matgen.generate).

Public API:
    TrainConfig (and its parts DataConfig, ConditionConfig, OptimConfig): YAML configs;
        ConfigFileError (a file that is not a YAML mapping) and config_error_line (a
        validation error as one line naming the keys).
    train(cfg, ...) -> RunResult: the loop (AdamW, warm-up + cosine LR, EMA, grad clipping,
        bf16 autocast on CUDA, optional torch.compile, resumable atomic checkpoints, DDP under
        torchrun).
    EMA, warmup_cosine, IndexStream: the loop's parts, reusable.
    setup_distributed / DistInfo: torchrun environment handling.
    training_conditions: a batch's condition labels. TrainingObjective: the loss protocol the
        loop trains (plain diffusion and consistency distillation implement it).
    Checkpoint helpers: read_weights, load_init_weights (writing: save_run_checkpoint).
    train_subset_indices: which crystals ``data.train_limit`` keeps.
    train_composition_model(train_set, val_set, names, CompositionTrainConfig) -> (model,
        record): the composition model of composition-first de novo generation (``matgen
        train-composition``); cell_compositions: a dataset's cells as ``{Z: count}``;
        condition_matrix: its labels as condition columns; finetune_composition_model: a
        trained one continued on a small set (the campaign's generator fine-tuning).

Sampling (``generate``, checkpoint lookup, the default model, condition targets) lives in
:mod:`matgen.generate` only.

Run directory written by :func:`train`::

    RUN_DIR/config.yaml                 the effective config
    RUN_DIR/metrics.csv                 step, epoch, loss, lr, grad_norm, steps_per_s, ...
    RUN_DIR/checkpoints/step_N/         every ``checkpoint_every`` steps and at the end
        model.safetensors               EMA weights (the sampling checkpoint)
        model.json                      denoiser config + metadata (config, diffusion, stats,
                                        conditions, dataset sha256, versions, step)
        training_state.pt               weights, EMA, optimizer, scheduler, RNG, data position
    RUN_DIR/checkpoints/last/           hard links to the newest step_N

Multi-GPU / multi-node: start one process per GPU with ``torchrun`` (rendezvous from the
environment), e.g. ``torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d
--rdzv_endpoint HOST:29500 --no-python matgen train --config ...``; the global batch size is
kept (each rank takes ``batch_size / world_size``), rank 0 writes checkpoints.
"""

from __future__ import annotations

from matgen.training._checkpoint import read_weights
from matgen.training._components import (
    ResumeMismatchError,
    TrainDataError,
    TrainingObjective,
    build_components,
    load_init_weights,
)
from matgen.training._composition import (
    CompositionTrainConfig,
    cell_compositions,
    condition_matrix,
    finetune_composition_model,
    train_composition_model,
)
from matgen.training._conditions import training_conditions
from matgen.training._config import (
    ConditionConfig,
    ConfigFileError,
    DataConfig,
    OptimConfig,
    TrainConfig,
    config_error_line,
)
from matgen.training._data import IndexStream, InMemorySource, dataset_stats
from matgen.training._distributed import DistInfo, setup_distributed
from matgen.training._ema import EMA
from matgen.training._loop import NonFiniteLossError, RunResult, train
from matgen.training._schedule import warmup_cosine
from matgen.training._setup import train_subset_indices

__all__ = [
    "EMA",
    "CompositionTrainConfig",
    "ConditionConfig",
    "ConfigFileError",
    "DataConfig",
    "DistInfo",
    "InMemorySource",
    "IndexStream",
    "NonFiniteLossError",
    "OptimConfig",
    "ResumeMismatchError",
    "RunResult",
    "TrainConfig",
    "TrainDataError",
    "TrainingObjective",
    "build_components",
    "cell_compositions",
    "condition_matrix",
    "config_error_line",
    "dataset_stats",
    "finetune_composition_model",
    "load_init_weights",
    "read_weights",
    "setup_distributed",
    "train",
    "train_composition_model",
    "train_subset_indices",
    "training_conditions",
    "warmup_cosine",
]
