"""ingest.safe_pickle: DataFrame pickles load; any other callable named in a pickle is refused, unrun."""

from __future__ import annotations

import builtins
import gzip
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ingest.safe_pickle import UnsafePickleError, load_dataframe, loads


class _Payload:
    """Unpickling this calls `func(*args)` with the standard unpickler."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def test_a_pickled_os_system_is_refused_by_name():
    with pytest.raises(UnsafePickleError, match=rf"refused to load {os.system.__module__}\.system"):
        loads(pickle.dumps(os.system))


def test_a_payload_calling_os_system_is_refused_and_never_runs(tmp_path: Path):
    marker = tmp_path / "ran"
    data = pickle.dumps(_Payload(os.system, f"touch {marker}"))
    with pytest.raises(UnsafePickleError, match=r"\.system: only pandas/numpy DataFrame classes"):
        load_dataframe(data)
    assert not marker.exists()
    pickle.loads(data)  # the standard unpickler would have run it: the payload is real
    assert marker.exists()


@pytest.mark.parametrize(
    ("func", "args", "name"),
    [
        (subprocess.Popen, (["true"],), "subprocess.Popen"),
        (builtins.eval, ("1 + 1",), "builtins.eval"),
        (np.load, ("x.npy",), "numpy.load"),
        (pd.read_pickle, ("x.pkl",), "pandas.read_pickle"),
    ],
)
def test_other_callables_are_refused(func, args, name: str):
    with pytest.raises(UnsafePickleError, match=rf"refused to load {name}:"):
        loads(pickle.dumps(_Payload(func, *args)))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_dataframes_round_trip(protocol: int):
    frames = [
        pd.DataFrame({"x": np.linspace(-1.5, 2.5, 7), "d": np.arange(7)}),
        pd.DataFrame({"z": np.arange(4, dtype=np.float32), "ok": np.ones(4, bool)}, index=pd.Index([3, 5, 7, 9])),
        pd.DataFrame({"label": np.array(["car", "tree"], dtype=object), "t": [1.0, 2.0]}),
    ]
    for frame in frames:
        out = load_dataframe(pickle.dumps(frame, protocol=protocol))
        pd.testing.assert_frame_equal(out, frame)


def test_a_pickle_that_is_not_a_dataframe_is_rejected():
    with pytest.raises(pickle.UnpicklingError, match="expected a pickled pandas DataFrame, got dict"):
        load_dataframe(pickle.dumps({"x": [1, 2]}))


@pytest.mark.real
def test_pandaset_lidar_pickle_loads(real_root: Path):
    """PandaSet's lidar frame (pandas 1.0, numpy 1.x, protocol 3) through the restricted unpickler."""
    data = gzip.decompress((real_root / "pandaset_devkit_test/test/data/002/lidar/00.pkl.gz").read_bytes())
    frame = load_dataframe(data)
    assert frame.shape == (166768, 6) and list(frame.columns) == ["x", "y", "z", "i", "t", "d"]
    assert frame["d"].value_counts().to_dict() == {0: 106169, 1: 60599}  # Pandar64, PandarGT points
    pd.testing.assert_frame_equal(frame, pickle.loads(data))
