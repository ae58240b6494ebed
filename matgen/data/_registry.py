"""The dataset registry and source resolution (explicit path, MATGEN_DATA_DIR, cache, download).

Each dataset card lives in ``datasets/<name>.md``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from matgen.data._download import cache_dir, download

log = logging.getLogger("matgen.data")

_CDVAE = "https://raw.githubusercontent.com/txie-93/cdvae/main/data"
_DIFFCSP = "https://raw.githubusercontent.com/jiaor17/DiffCSP/main/data"


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    Attributes:
        name: registry name (``mp20``).
        folders: folder names looked for under a data root, first found wins.
        files: split -> candidate file names inside the folder.
        urls: split -> canonical public URL (downloaded into the cache folder when online).
        sha256: split -> pinned hex digest of the file at ``urls[split]`` (None: not pinned; the
            digest of the download is logged and recorded beside it).
        split_fallback: split -> split to use when a local folder lacks the requested one.
        description: one line.
    """

    name: str
    folders: tuple[str, ...]
    files: Mapping[str, tuple[str, ...]]
    urls: Mapping[str, str] = field(default_factory=dict)
    sha256: Mapping[str, str | None] = field(default_factory=dict)
    split_fallback: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.files)


def _csv(split: str) -> tuple[str, ...]:
    return (f"{split}.csv", f"{split}.csv.gz")


_SPLITS = ("train", "val", "test")

REGISTRY: Mapping[str, DatasetSpec] = MappingProxyType(
    {
        "mp20": DatasetSpec(
            name="mp20",
            folders=("mp20_reduced", "mp_20", "mp20"),
            files={s: _csv(s) for s in _SPLITS},
            urls={s: f"{_CDVAE}/mp_20/{s}.csv" for s in _SPLITS},
            description="MP-20 (CDVAE split): Materials Project crystals with <= 20 atoms",
        ),
        "perov5": DatasetSpec(
            name="perov5",
            folders=("perov_5", "perov5"),
            files={s: _csv(s) for s in _SPLITS},
            urls={s: f"{_CDVAE}/perov_5/{s}.csv" for s in _SPLITS},
            # digests of the val/test files kept in the shared data folder (CDVAE's files)
            sha256={
                "val": "326f401219901270374b71e2faff63df3a29a99fd26f469993b9f476b693daf2",
                "test": "a85878c685037f0a578257f6d4fcdde00e968dbab73c5f1e90ecef65218513f6",
            },
            split_fallback={"train": "val"},
            description="perov-5 (CDVAE): cubic perovskites ABX3, 5 atoms per cell",
        ),
        "carbon24": DatasetSpec(
            name="carbon24",
            folders=("carbon_24", "carbon24"),
            files={s: _csv(s) for s in _SPLITS},
            urls={s: f"{_CDVAE}/carbon_24/{s}.csv" for s in _SPLITS},
            sha256={
                "val": "36c00689cd63073c954a58bc6ed6e2adb7aeed5a630c994970959a1babffd50e",
                "test": "386b17c08816f434818d51e46687bf72ff3f92348f3ba24823e4758f1fe8a969",
            },
            split_fallback={"train": "val"},
            description="carbon-24 (CDVAE): carbon allotropes, 6-24 atoms per cell",
        ),
        "mpts52": DatasetSpec(
            name="mpts52",
            folders=("mpts_52_partial", "mpts_52", "mpts52"),
            files={s: _csv(s) for s in _SPLITS},
            urls={s: f"{_DIFFCSP}/mpts_52/{s}.csv" for s in _SPLITS},
            split_fallback={"train": "val"},
            description="MPTS-52 (DiffCSP time split): Materials Project, <= 52 atoms per cell",
        ),
    }
)


class DatasetNotFound(FileNotFoundError):
    """Neither a path nor a registered dataset that can be found or downloaded."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The data root: ``data_dir`` if given, else ``MATGEN_DATA_DIR``, else None."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("MATGEN_DATA_DIR")
    return Path(env).expanduser() if env else None


def _split_file_in(folder: Path, split: str) -> Path | None:
    for name in _csv(split):
        if (folder / name).is_file():
            return folder / name
    return None


def resolve_source(
    name_or_path: str | os.PathLike,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
) -> Path:
    """Find the file (or folder) to read for a dataset name or path.

    Order: an existing path (a folder holding ``<split>.csv[.gz]`` gives that file, any other
    folder is read as a folder of crystals); for a registry name: ``data_dir``, then
    ``MATGEN_DATA_DIR``, then the cache folder (``<cache>/datasets/<name>/``), then a download
    into the cache folder from the canonical URL. A local registry folder lacking the split
    uses the spec's ``split_fallback`` (e.g. perov5 ``train`` -> ``val``) with a logged note.

    Raises:
        DatasetNotFound: nothing matches.
    """
    p = Path(name_or_path).expanduser()
    if p.exists():
        if p.is_dir():
            f = _split_file_in(p, split)
            return f if f is not None else p
        return p
    key = str(name_or_path).lower().replace("-", "").replace("_", "")
    spec = REGISTRY.get(key)
    if spec is None:
        raise DatasetNotFound(
            f"{name_or_path!r} is neither an existing path nor a dataset name "
            f"(known: {', '.join(REGISTRY)})"
        )
    if split not in spec.files:
        raise DatasetNotFound(f"dataset {spec.name} has no split {split!r} ({spec.splits})")
    roots = []
    for root in (Path(data_dir).expanduser() if data_dir else None, resolve_data_dir()):
        if root is not None and root not in roots:
            roots.append(root)
    for root in roots:
        for folder in spec.folders:
            d = root / folder
            if not d.is_dir():
                continue
            f = _split_file_in(d, split)
            if f is not None:
                return f
            alt = spec.split_fallback.get(split)
            if alt is not None and (f := _split_file_in(d, alt)) is not None:
                log.warning(
                    "%s: no %s split in %s; using the %s split instead", spec.name, split, d, alt
                )
                return f
    cached = cache_dir() / "datasets" / spec.name
    if (f := _split_file_in(cached, split)) is not None:
        return f
    url = spec.urls.get(split)
    if not allow_download or url is None:
        where = ", ".join(str(r) for r in roots) or "MATGEN_DATA_DIR not set"
        raise DatasetNotFound(
            f"dataset {spec.name} split {split} not found (looked in {where} and {cached})"
        )
    dest = cached / url.rsplit("/", 1)[-1]
    log.warning("%s %s not found locally; downloading %s", spec.name, split, url)
    return download(url, dest, spec.sha256.get(split))
