"""Logs (structlog), metrics (Prometheus), dashboards and alert rules."""
