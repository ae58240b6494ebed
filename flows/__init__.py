"""Prefect flows: orchestration of the matgen API, installed as ``matgen_flows`` (the folder
keeps its name). Nothing in matgen imports it except the CLI, which starts flows."""

import os

# no usage telemetry from the Prefect server these flows start (set before prefect is imported)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
