"""Maintenance across all tenants: the orphan sweep (`faceauth repair`, and at Face API start-up) and re-embedding
after a model change (`faceauth reembed`)."""

from faceauth.maintenance.service import SweepReport, start_sweep, stop_sweep, sweep_orphans

__all__ = ["SweepReport", "start_sweep", "stop_sweep", "sweep_orphans"]
