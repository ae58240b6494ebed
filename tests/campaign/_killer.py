"""Run a toy campaign and SIGKILL this process at a named point (used by test_kill9.py).

usage: python _killer.py CONFIG KILL_POINT SEND_LOG
KILL_POINT: none | in_generate_tx | after_scored | after_submit | after_oracle | in_label_tx
"""

from __future__ import annotations

import os
import signal
import sys
import warnings

warnings.filterwarnings("ignore")

from matgen.campaign import Campaign, DatasetOracle, load_config

config, point, send_log = sys.argv[1], sys.argv[2], sys.argv[3]
KILL_ROUND = int(os.environ.get("KILL_ROUND", "0"))


def die(where: str, index: int | None = None) -> None:
    if where == point and (index is None or index == KILL_ROUND):
        os.kill(os.getpid(), signal.SIGKILL)


class LoggingOracle(DatasetOracle):
    """The dataset oracle, logging every candidate it is asked about (fsync'd)."""

    def request(self, candidates, round_index):
        with open(send_log, "a") as fh:
            fh.writelines(c["id"] + "\n" for c in candidates)
            fh.flush()
            os.fsync(fh.fileno())
        out = super().request(candidates, round_index)
        die("after_oracle", round_index)
        return out


cfg = load_config(config)
camp = Campaign(cfg, oracle=LoggingOracle(cfg.oracle.csv, cfg.property_names()))
store = camp.store
orig_advance = store.advance


def advance(conn, index, step, **fields):
    if step == "generated":
        die("in_generate_tx", index)  # candidates inserted, transaction not committed
    if step == "labelled":
        die("in_label_tx", index)
    orig_advance(conn, index, step, **fields)


store.advance = advance
orig_score, orig_submit = camp.score, camp.submit


def score(index):
    orig_score(index)
    die("after_scored", index)


def submit(index):
    orig_submit(index)
    die("after_submit", index)


camp.score, camp.submit = score, submit
camp.run()
print("finished")
