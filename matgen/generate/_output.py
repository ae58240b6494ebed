"""Writing generated crystals: a file that grows batch by batch (``OUT.partial``, renamed to
``OUT`` at the end), in the format the file name asks for.

A journal next to it (``OUT.partial.json``, replaced atomically after each batch is on disk)
records the run's fingerprint and how many batches and bytes of the partial file are complete.
A killed run re-run with the same options resumes there: bytes past the journal (a batch cut
short by the kill) are cut off and the finished batches are not redone. A partial file from
other options, or without a journal, is never deleted: it is renamed to
``OUT.partial.kept-N`` and the run says so.

* ``.extxyz`` / ``.xyz``: extended XYZ, one frame per crystal with its metadata in ``info``;
* ``.cif``: one CIF data block per crystal (named by its ``sample_id``), pymatgen-readable, the
  same metadata as ``#`` comment lines above each block.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from matgen._files import atomic_write_text
from matgen.crystal import CrystalBatch

#: Output suffixes and their format.
FORMATS = {".extxyz": "extxyz", ".xyz": "extxyz", ".cif": "cif"}

_BLOCK_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def output_format(out: str | Path) -> str:
    """``extxyz`` or ``cif`` from the file name.

    Raises:
        ValueError: another suffix (one line naming the ones understood).
    """
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"--out {out}: unknown output format {suffix or '(no suffix)'!r}; "
                         "use .extxyz (or .xyz) or .cif")
    return FORMATS[suffix]


class PartialExtxyz:
    """``OUT.partial`` grows while batches finish (a crash keeps them); :meth:`finish` renames
    it to ``OUT``.

    Args:
        out: the final file.
        fingerprint: what the run will write (same fingerprint: same frames); an unfinished
            ``OUT.partial`` with this fingerprint in its journal is resumed (see
            :attr:`batches_done`). ``None``: never resume.
        say: where the one-line notes go (resumed, kept aside).
    """

    def __init__(self, out: str | Path, fingerprint: str | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.out = Path(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.journal = self.out.with_name(self.out.name + ".partial.json")
        self.fingerprint = fingerprint
        self.batches_done = self.frames_done = self.failed_done = 0
        say = say or (lambda _m: None)
        old = self._read_journal()
        if self.partial.exists():
            if (fingerprint is not None and old.get("fingerprint") == fingerprint
                    and self.partial.stat().st_size >= int(old.get("bytes", -1)) >= 0):
                with self.partial.open("r+b") as fh:  # drop a batch the kill cut short
                    fh.truncate(int(old["bytes"]))
                self.batches_done = int(old.get("batches", 0))
                self.frames_done = int(old.get("frames", 0))
                self.failed_done = int(old.get("failed", 0))
                if self.frames_done or self.batches_done:
                    say(f"resuming {self.partial}: {self.frames_done} structures of "
                        f"{self.batches_done} finished batches kept, not redone")
            else:
                kept = self._keep_aside()
                why = ("made with other options" if old.get("fingerprint")
                       else "with no journal of its batches")
                say(f"kept an unfinished {self.partial.name} {why} as {kept.name}; "
                    "this run starts afresh")
        self._write_journal()

    def _read_journal(self) -> dict:
        try:
            data = json.loads(self.journal.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _keep_aside(self) -> Path:
        k = 1
        while (kept := self.partial.with_name(f"{self.partial.name}.kept-{k}")).exists():
            k += 1
        os.replace(self.partial, kept)
        return kept

    def _write_journal(self) -> None:
        """Record the finished batches (after their bytes are flushed to disk)."""
        if self.fingerprint is None:
            self.journal.unlink(missing_ok=True)
            return
        size = self.partial.stat().st_size if self.partial.exists() else 0
        if self.partial.exists():
            with self.partial.open("rb+") as fh:
                os.fsync(fh.fileno())
        state = {"fingerprint": self.fingerprint, "batches": self.batches_done,
                 "frames": self.frames_done, "failed": self.failed_done, "bytes": size}
        atomic_write_text(self.journal, json.dumps(state))

    def batch_done(self, frames: int, failed: int = 0) -> None:
        """One more batch is in the file (``frames`` written, ``failed`` not)."""
        self.batches_done += 1
        self.frames_done += frames
        self.failed_done += failed
        self._write_journal()

    def append(self, crystals: CrystalBatch, info: dict[str, list], keep_id: list[bool]) -> None:
        """Append one batch's frames with :func:`matgen.crystal.write_extxyz` (the file is
        closed after, so finished batches are on disk). ``keep_id[i]`` false drops frame
        ``i``'s ``material_id`` (no source row: the ``sample_id`` identifies it)."""
        from matgen.crystal import write_extxyz

        atoms = crystals.to_atoms()
        for a, keep in zip(atoms, keep_id, strict=True):
            if not keep:
                a.info.pop("material_id", None)
        write_extxyz(self.partial, atoms, info=info, append=self.partial.exists())

    def finish(self) -> Path:
        if not self.partial.exists():  # every crystal failed: an empty file, not a crash
            self.partial.touch()
        os.replace(self.partial, self.out)
        self.journal.unlink(missing_ok=True)
        return self.out


class PartialCif(PartialExtxyz):
    """The same growing file, as CIF data blocks: ``data_<sample_id>`` per crystal, with the
    sampling metadata (checkpoint, seed, sampler, conditions, ...) as ``#`` comments."""

    def append(self, crystals: CrystalBatch, info: dict[str, list], keep_id: list[bool]) -> None:
        from pymatgen.io.cif import CifWriter

        structs = crystals.to_structures()
        ids = list(crystals.ids)
        texts = []
        for i, s in enumerate(structs):
            meta = {k: v[i] for k, v in info.items()}
            if keep_id[i] and ids[i] and ids[i] != meta.get("sample_id"):
                meta.setdefault("material_id", ids[i])
            name = _BLOCK_SAFE.sub("_", str(meta.get("sample_id") or ids[i] or i))
            s = s.copy()
            s.properties = {}
            body = str(CifWriter(s))
            body = re.sub(r"^data_\S*", f"data_{name}", body, count=1, flags=re.MULTILINE)
            body = "\n".join(ln for ln in body.splitlines() if ln != "# generated using pymatgen")
            head = "".join(f"# {k} = {_one_line(v)}\n" for k, v in meta.items())
            texts.append(f"{head}{body}\n")
        with self.partial.open("a") as fh:
            fh.write("".join(texts))


def _one_line(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    return " ".join(str(v).split())


def open_writer(out: str | Path, fingerprint: str | None = None,
                say: Callable[[str], None] | None = None) -> PartialExtxyz:
    """The growing-file writer for ``out``'s format (see :func:`output_format` and
    :class:`PartialExtxyz` for ``fingerprint`` and ``say``)."""
    cls = PartialCif if output_format(out) == "cif" else PartialExtxyz
    return cls(out, fingerprint, say)
