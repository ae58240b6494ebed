"""matgen.data: datasets (registry, splits, resolution, download, processed cache).

Public API:
    load_dataset(name_or_path, split="train", ...) -> CrystalDataset
    CrystalDataset: packed tensors; ``dataset.batch(indices) -> CrystalBatch``; ``stats()``.
    REGISTRY / DatasetSpec: registered datasets (mp20, perov5, carbon24, mpts52).
    resolve_data_dir / resolve_source: where data is looked for.
    cache_dir / download / file_sha256: the cache folder and checked downloads.
"""

from __future__ import annotations

from matgen.data._dataset import (
    CACHE_VERSION,
    CrystalDataset,
    DatasetStats,
    load_dataset,
    source_sha256,
)
from matgen.data._download import (
    ChecksumError,
    DownloadError,
    cache_dir,
    download,
    file_sha256,
)
from matgen.data._registry import (
    REGISTRY,
    DatasetNotFound,
    DatasetSpec,
    resolve_data_dir,
    resolve_source,
)

__all__ = [
    "CACHE_VERSION",
    "REGISTRY",
    "ChecksumError",
    "CrystalDataset",
    "DatasetNotFound",
    "DatasetSpec",
    "DatasetStats",
    "DownloadError",
    "cache_dir",
    "download",
    "file_sha256",
    "load_dataset",
    "resolve_data_dir",
    "resolve_source",
    "source_sha256",
]
