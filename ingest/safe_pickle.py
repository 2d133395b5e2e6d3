"""A restricted unpickler for datasets that ship pandas DataFrames as pickles (PandaSet's lidar .pkl.gz).

A pickle can name any importable callable (`os.system`, `subprocess.Popen`) and the standard unpickler
calls it. This one resolves only the numpy and pandas classes a DataFrame pickle is built from (arrays,
dtypes, indexes, block managers, written by pandas 0.25 to 3.x) and refuses every other name with an
error that says which module.class the file asked for. The data inside arrays is never executed.
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import Any

import pandas as pd

# (module, name) pairs a pandas/numpy DataFrame pickle references. Older module paths are kept because
# pickles record the path of the pandas/numpy version that wrote them (PandaSet: pandas 1.0, numpy 1.x).
_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [
        ("builtins", "slice"),
        ("builtins", "bytearray"),
        ("__builtin__", "slice"),  # protocol 2 records Python 2 module names
        ("__builtin__", "bytearray"),
        ("_codecs", "encode"),  # protocol 2 stores bytes as _codecs.encode(text, "latin1")
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("pandas", "DataFrame"),  # pandas >= 2 records the public names
        ("pandas", "Series"),
        ("pandas", "Index"),
        ("pandas", "RangeIndex"),
        ("pandas.core.frame", "DataFrame"),
        ("pandas.core.series", "Series"),
        ("pandas.core.indexes.base", "Index"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.indexes.range", "RangeIndex"),
        ("pandas.core.indexes.numeric", "Int64Index"),
        ("pandas.core.indexes.numeric", "UInt64Index"),
        ("pandas.core.indexes.numeric", "Float64Index"),
        ("pandas.core.internals.managers", "BlockManager"),
        ("pandas.core.internals.managers", "SingleBlockManager"),
        ("pandas.core.internals.blocks", "new_block"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas._libs.internals", "BlockPlacement"),
        # pandas 3 keeps text (column labels included) as pyarrow-backed strings: buffers plus a type alias.
        ("pandas", "StringDtype"),
        ("pandas.arrays", "ArrowStringArray"),
        ("pandas.arrays", "StringArray"),
        ("pyarrow.lib", "_restore_array"),
        ("pyarrow.lib", "py_buffer"),
        ("pyarrow.lib", "type_for_alias"),
    ]
)

# Allowed names that no longer exist where old pandas/numpy wrote them -> where they live now.
_MOVED: dict[tuple[str, str], tuple[str, str]] = {
    ("__builtin__", "slice"): ("builtins", "slice"),
    ("__builtin__", "bytearray"): ("builtins", "bytearray"),
    ("pandas.core.indexes.numeric", "Int64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "UInt64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "Float64Index"): ("pandas.core.indexes.base", "Index"),
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names something outside the allowed pandas/numpy data classes."""


class DataFrameUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only the names in `_ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"refused to load {module}.{name}: only pandas/numpy DataFrame classes may be unpickled"
            )
        # The current location first (no deprecation shims), then the one the pickle names.
        for mod, attr in [*filter(None, [_MOVED.get((module, name))]), (module, name)]:
            try:
                return getattr(importlib.import_module(mod), attr)
            except (ImportError, AttributeError):
                continue
        raise UnsafePickleError(f"{module}.{name} is allowed but not found in this pandas/numpy version")


def loads(data: bytes) -> Any:
    """Unpickle bytes admitting only pandas/numpy data classes; raises pickle.UnpicklingError otherwise."""
    return DataFrameUnpickler(io.BytesIO(data)).load()


def load_dataframe(data: bytes) -> pd.DataFrame:
    """Unpickle a pandas DataFrame; anything else (a dict, an array, a refused class) is an error."""
    obj = loads(data)
    if not isinstance(obj, pd.DataFrame):
        raise pickle.UnpicklingError(f"expected a pickled pandas DataFrame, got {type(obj).__name__}")
    return obj
