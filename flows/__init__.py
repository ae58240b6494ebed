"""Prefect flows: orchestration of the matgen API. Nothing in matgen imports this package."""
