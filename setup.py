"""Packaging that pyproject.toml cannot state: the ``flows/`` folder ships as the package
``matgen_flows``, so installing matgen never claims the generic top-level name ``flows``.
Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["matgen", "matgen.*"]), "matgen_flows"],
    package_dir={"matgen_flows": "flows"},
)
