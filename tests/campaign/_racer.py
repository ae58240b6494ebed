"""Run a toy campaign in-process, logging every generation, scoring and oracle call (fsync'd).

usage: python _racer.py CONFIG LOG NAME GO_FILE
Writes GO_FILE.NAME when imported and ready, waits for GO_FILE (so two racers start together),
then runs. Each generator / scorer / oracle call sleeps a little so the runs overlap.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

from matgen.campaign import (
    Campaign,
    DatasetGenerator,
    DatasetOracle,
    DatasetScorer,
    load_config,
)

config, log, name, go = sys.argv[1:5]


def note(what: str) -> None:
    with open(log, "a") as fh:
        fh.write(f"{name} {what}\n")
        fh.flush()
        os.fsync(fh.fileno())


class Gen(DatasetGenerator):
    def __call__(self, n, conditions, chemsys, seed):
        note(f"generate {seed}")
        time.sleep(0.3)
        return super().__call__(n, conditions, chemsys, seed)


class Score(DatasetScorer):
    def __call__(self, batch, seed):
        note(f"score {seed} {' '.join(batch.ids)}")
        time.sleep(0.3)
        return super().__call__(batch, seed)


class Oracle(DatasetOracle):
    def request(self, candidates, round_index):
        for c in candidates:
            note(f"oracle {c['id']}")
        time.sleep(1.0)
        return super().request(candidates, round_index)


cfg = load_config(config)
props = list(dict.fromkeys([*cfg.property_names(), "e_above_hull"]))
camp = Campaign(cfg, generator=Gen(cfg.generator.pool_csv),
                scorer=Score(cfg.scorer.labels_csv, props, dict(cfg.scorer.noise)),
                oracle=Oracle(cfg.oracle.csv, cfg.property_names()))
Path(f"{go}.{name}").touch()
deadline = time.time() + 120
while not Path(go).exists() and time.time() < deadline:
    time.sleep(0.05)
camp.run()
print("finished", name)
