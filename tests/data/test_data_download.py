"""Downloads against a local HTTP server: checksum ok, mismatch, HTTP error, registry fetch."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from types import MappingProxyType

import pytest

import matgen.data._registry as registry_mod
from matgen.data import (
    ChecksumError,
    DatasetSpec,
    DownloadError,
    download,
    load_dataset,
    resolve_source,
)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_sha256(server, tmp_path):
    root, url = server
    payload = b"material_id,cif\n" * 1000
    (root / "f.csv").write_bytes(payload)
    good = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "dl" / "f.csv"
    assert download(f"{url}/f.csv", dest, good) == dest
    assert dest.read_bytes() == payload
    dest.unlink()
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        download(f"{url}/f.csv", dest, "0" * 64)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no partial file left behind
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{url}/missing.csv", dest, None)
    assert list(dest.parent.iterdir()) == []
    # unpinned: accepted, digest recorded beside the file
    download(f"{url}/f.csv", dest, None)
    assert (dest.parent / "f.csv.sha256").read_text().strip() == good


def test_registry_download_into_cache(server, tmp_path, monkeypatch, tiny_structures):
    import csv

    from pymatgen.io.cif import CifWriter

    root, url = server
    with open(root / "val.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["material_id", "cif", "energy_per_atom"])
        for i, s in enumerate(tiny_structures):
            w.writerow([f"x-{i}", str(CifWriter(s)), -1.0])
    digest = hashlib.sha256((root / "val.csv").read_bytes()).hexdigest()
    spec = DatasetSpec(
        name="toy",
        folders=("toy",),
        files={"val": ("val.csv",)},
        urls={"val": f"{url}/val.csv"},
        sha256={"val": digest},
    )
    monkeypatch.setattr(registry_mod, "REGISTRY", MappingProxyType({"toy": spec}))
    monkeypatch.setenv("MATGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MATGEN_DATA_DIR", str(tmp_path / "empty"))
    path = resolve_source("toy", "val")
    assert path == tmp_path / "cache" / "datasets" / "toy" / "val.csv"
    (root / "val.csv").unlink()  # a second resolve uses the cached copy, not the network
    assert resolve_source("toy", "val") == path
    ds = load_dataset("toy", "val", workers=1)
    assert len(ds) == 4 and ds.property_names == ["energy_per_atom"]

    bad = DatasetSpec(
        name="toy",
        folders=("toy",),
        files={"test": ("test.csv",)},
        urls={"test": f"{url}/val2.csv"},
        sha256={"test": "f" * 64},
    )
    (root / "val2.csv").write_text("material_id,cif\n")
    monkeypatch.setattr(registry_mod, "REGISTRY", MappingProxyType({"toy": bad}))
    with pytest.raises(ChecksumError):
        resolve_source("toy", "test")
    assert not (tmp_path / "cache" / "datasets" / "toy" / "val2.csv").exists()
