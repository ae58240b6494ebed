"""The one-way dependency rules of the README's Architecture section, checked on the imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAIN = ["crystal", "data", "nn", "diffusion", "models", "guidance"]
ALLOWED: dict[str, set[str]] = {
    name: set(CHAIN[: i + 1]) for i, name in enumerate(CHAIN)
}
# generation (checkpoint lookup, sampling service) sits on the algorithms; training writes the
# checkpoints it reads and uses its diffusion cache and default model
ALLOWED["generate"] = set(CHAIN) | {"generate"}
ALLOWED["training"] = set(CHAIN) | {"generate", "training"}
ALLOWED["surrogates"] = {"crystal", "data", "nn", "surrogates"}
ALLOWED["acquisition"] = {"crystal", "data", "nn", "acquisition"}
ALLOWED["evaluation"] = set(CHAIN) | {"surrogates", "evaluation"}
ALLOWED["testing"] = set(CHAIN) | {"surrogates", "testing"}
# the DFT oracle (GPAW) sits beside the MLIP surrogates: a higher-fidelity judge of the same
# structures (it asks surrogates' MP hull which phases compete), used by campaign and cli
ALLOWED["dft"] = {"crystal", "data", "surrogates", "dft"}
EVERYTHING = set(CHAIN) | {
    "generate", "training", "surrogates", "acquisition", "evaluation", "testing", "dft"
}
ALLOWED["campaign"] = EVERYTHING | {"campaign"}
# The CLI is an application layer beside flows/: it may start flows (campaign run/serve).
ALLOWED["cli"] = EVERYTHING | {"campaign", "cli", "flows"}
# top-level helpers any layer may use (standard library only at import)
SHARED = {"_progress", "_files", "_errors", "_pool"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] in ("flows", "matgen_flows"):  # the folder flows/ installs as matgen_flows
        return "flows"
    if parts[0] == "matgen" and len(parts) > 1 and parts[1] not in SHARED:
        return parts[1]
    return None


def test_layers_import_only_downwards():
    violations = []
    for path in sorted((ROOT / "matgen").rglob("*.py")):
        rel = path.relative_to(ROOT / "matgen").parts
        if len(rel) == 1:  # matgen/__init__.py and top-level modules
            continue
        layer = rel[0]
        allowed = ALLOWED.get(layer)
        assert allowed is not None, f"layer {layer!r} has no import rule: add it to this test"
        for mod in _imports(path):
            target = _layer_of(mod)
            if target is not None and target not in allowed and target != layer:
                violations.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not violations, "\n".join(violations)


def test_nothing_in_matgen_imports_flows_except_cli():
    for path in (ROOT / "matgen").rglob("*.py"):
        if "cli" in path.relative_to(ROOT / "matgen").parts:
            continue
        for mod in _imports(path):
            assert not mod.startswith(("flows", "matgen_flows")), f"{path} imports {mod}"


def test_the_wheel_installs_no_top_level_flows_package():
    """flows/ ships as matgen_flows: a generic top-level name would clash with other tools."""
    import importlib.util

    assert importlib.util.find_spec("matgen_flows") is not None
    setup = (ROOT / "setup.py").read_text()
    assert '"matgen_flows": "flows"' in setup and "flows*" not in (ROOT / "pyproject.toml"
                                                                   ).read_text()
