"""Quiet by default: what a user sees of a run is its progress line and its result (`--verbose` shows all).

Our own warnings are fixed where they arise; these are the third-party lines that carry no information for
a user of a finished feature (each named below, so `--verbose` brings it back).
"""

from __future__ import annotations

import logging
import os
import warnings

QUIET_ENV = "METRICDEPTH_QUIET"  # set by quiet(); read by Ray Train workers (forwarded in the runtime env)


def quiet() -> None:
    """Silence third-party chatter in this process and, through QUIET_ENV, in the Ray workers it starts."""
    os.environ[QUIET_ENV] = "1"
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Ray's own INFO lines (start-up banners, autoscaler notes) in the driver.
    os.environ.setdefault("RAY_LOG_TO_DRIVER_EVENT_LEVEL", "ERROR")
    _filters()


def quiet_worker() -> None:
    """In a Ray Train worker: the same filters when the driver asked for quiet."""
    if os.environ.get(QUIET_ENV) == "1":
        _filters()


def _filters() -> None:
    # MLflow: hints about pyfunc type hints and integer columns (our signature is explicit), and its
    # "git not found"/"no input example" notes.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow(\.|$)")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"mlflow(\.|$)")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    # Ray Train V2 logs every ray.train.report() call at INFO ("Reporting training result ..."), from a logger
    # named by its file path.
    for name in list(logging.root.manager.loggerDict):
        if name.endswith(
            ("ray/train/v2/_internal/execution/context.py", "ray\\train\\v2\\_internal\\execution\\context.py")
        ):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except ImportError:
        pass
    # Ray Data progress and torch's "NumPy array is not writable" (Ray hands out read-only buffers; we copy).
    warnings.filterwarnings("ignore", message=r"The given NumPy array is not writable")
