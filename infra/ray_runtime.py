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


def cluster_capacity() -> tuple[dict[str, float], bool]:
    """The CPUs and GPUs the connected runtime can hold, and whether that is all it can ever hold.

    A runtime of this machine (no RAY_ADDRESS) is final. A cluster counts up to the maximum its autoscaler
    reports (final; Ray Train's own start check reads the same figure), else the nodes up now: not final, as a
    cluster launcher's autoscaler adds nodes on demand without reporting how many it may add."""
    import ray
    import ray._private.state

    now = {k: float(ray.cluster_resources().get(k, 0.0)) for k in ("CPU", "GPU")}
    if not os.environ.get("RAY_ADDRESS"):
        return now, True
    most = ray._private.state.state.get_max_resources_from_cluster_config()
    if not most:
        return now, False
    return {k: max(now[k], float(most.get(k, 0))) for k in now}, True
