"""Run the fine-tuning campaign of ``_finetune_setup``; SIGKILL itself at POINT.

Usage: python _finetune_killer.py CONFIG CSV POINT
POINT: ``mid_train`` (after the fine-tuning run's first checkpoint), ``mid_composition`` (the
fine-tuned composition model written into the version's temporary folder, not yet renamed),
``before_record`` (the version folder is complete, the store has not recorded it) or ``none``.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
warnings.filterwarnings("ignore")


def _die(*_a, **_k):
    os.kill(os.getpid(), signal.SIGKILL)


def _die_after(module, name: str) -> None:
    """Replace ``module.name`` by a call of it followed by SIGKILL."""
    real = getattr(module, name)

    def call_then_die(*a, **k):
        real(*a, **k)
        _die()

    setattr(module, name, call_then_die)


def main() -> None:
    config, csv, point = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    from _finetune_setup import campaign

    import matgen.campaign._finetune as ft
    import matgen.training._loop as loop
    from matgen import models

    if point == "mid_train":
        _die_after(loop, "save_run_checkpoint")
    elif point == "mid_composition":
        _die_after(models, "save_composition_model")
    elif point == "before_record":
        ft._record = _die
    campaign(config, csv).run()


if __name__ == "__main__":
    main()
