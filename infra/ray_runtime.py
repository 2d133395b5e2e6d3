"""One way to start Ray: a cluster through RAY_ADDRESS, else a local runtime sized for this machine."""

from __future__ import annotations

import logging
import os

# A local runtime's object store: Ray would take 30 % of RAM by default, far more than ingest or a
# small training run needs, and the rest is wanted by the workers themselves.
LOCAL_OBJECT_STORE_BYTES = 1_000_000_000


def init_ray(num_cpus: int | None = None) -> None:
    """Connect to RAY_ADDRESS when set, else start (once) a local runtime with `num_cpus` CPUs."""
    import ray

    if ray.is_initialized():
        return
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        return
    ray.init(
        address="local",  # a new local runtime, even when a `ray start` cluster runs on this machine
        num_cpus=num_cpus or os.cpu_count() or 1,
        object_store_memory=LOCAL_OBJECT_STORE_BYTES,
        # The dashboard serves the state API Ray Train polls (without it, every few seconds: "Failed to query
        # Ray Train Controller actor state"), and users get the dashboard of their local runs.
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        logging_level=logging.WARNING,
    )
