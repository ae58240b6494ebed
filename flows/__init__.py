"""Prefect flows: orchestration of the matgen API. Nothing in matgen imports this package."""

import os

# no usage telemetry from the Prefect server these flows start (set before prefect is imported)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
