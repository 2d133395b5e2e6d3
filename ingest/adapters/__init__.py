"""Importing this package registers every adapter (one module per dataset)."""

from ingest.adapters import kitti, metric3d_json, nyu, synthetic  # noqa: F401
