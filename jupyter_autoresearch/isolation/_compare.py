"""What runs after a candidate in the holdout's worker, a process of its own: outputs that must
stay the baseline's (``--same-output``) and the holdout (``--holdout``).

This module runs inside the checking worker: its source is executed there in a private
namespace (:class:`~._holdout.HoldoutWorker` sends it as the worker's last setup cell), so a
module a candidate planted in the target's folder can never stand in for it. It imports
only the standard library at the top; pandas and numpy are imported when a value needs
them. :func:`first_difference` is also imported normally, to be tested.

A candidate's values are unpickled here, never in the candidate's worker or the engine.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

__all__ = ["configure", "first_difference", "run"]

_SETTINGS: dict[str, Any] = {}


def configure(settings: dict[str, Any]) -> None:
    """Keep the checks' settings; compile the holdout once (``holdout``, ``holdout_name``)."""
    _SETTINGS.clear()
    _SETTINGS.update(settings)
    source = settings.get("holdout")
    _SETTINGS["code"] = compile(source, settings.get("holdout_name") or "<holdout>", "exec") if source else None


def run(space: dict[str, Any]) -> None:
    """Check one candidate: ``space`` is the namespace of the checking run, holding the
    candidate's and the baseline's pickled values in ``__autoresearch_inputs__``.

    The report (``__autoresearch_report__``) names the outputs that differ and how; then
    the holdout runs in ``space``, with the candidate's inputs in it, and prints its METRIC
    lines. An exception of the holdout fails the run (the report is already written).
    """
    report: dict[str, Any] = {"differences": {}, "unset": []}
    space["__autoresearch_report__"] = report
    candidate_bytes, reference_bytes = pickle.loads(space.pop("__autoresearch_inputs__"))
    values = pickle.loads(candidate_bytes)
    reference = pickle.loads(reference_bytes) if reference_bytes is not None else None
    if reference is not None:
        for name in _SETTINGS.get("same_output", ()):
            if name not in reference:
                report["unset"].append(name)
            elif name in values:
                difference = first_difference(values[name], reference[name], _SETTINGS["rtol"], _SETTINGS["atol"])
                if difference is not None:
                    report["differences"][name] = difference
    code = _SETTINGS.get("code")
    if code is not None:
        space.update({name: values[name] for name in _SETTINGS.get("inputs", ()) if name in values})
        exec(code, space)


def first_difference(value: Any, baseline: Any, rtol: float = 1e-7, atol: float = 0.0) -> str | None:
    """Where ``value`` first differs from ``baseline``, in words; None when they are equal.

    DataFrames and Series are compared as ``pandas.testing`` does (dtypes, labels, values
    within ``rtol``/``atol``), arrays and numpy numbers as ``numpy.testing`` does, dicts,
    lists and tuples item by item; anything else exactly (``==``).

    Example:
        >>> first_difference([1, 2.5], [1, 2.0])
        'item 1: 2.5 vs 2.0'
    """
    module = type(value).__module__.split(".")[0]
    base_module = type(baseline).__module__.split(".")[0]
    if "pandas" in (module, base_module):
        return _pandas_difference(value, baseline, rtol, atol)
    if "numpy" in (module, base_module):
        return _numpy_difference(value, baseline, rtol, atol)
    if isinstance(value, dict) and isinstance(baseline, dict):
        if list(value) != list(baseline):
            return f"keys {_show(list(value))} vs {_show(list(baseline))}"
        for key in value:
            found = first_difference(value[key], baseline[key], rtol, atol)
            if found is not None:
                return f"key {key!r}: {found}"
        return None
    if isinstance(value, (list, tuple)) and isinstance(baseline, (list, tuple)) and type(value) is type(baseline):
        if len(value) != len(baseline):
            return f"{len(value)} items vs {len(baseline)}"
        for index, (item, base) in enumerate(zip(value, baseline, strict=True)):
            found = first_difference(item, base, rtol, atol)
            if found is not None:
                return f"item {index}: {found}"
        return None
    if type(value) is not type(baseline):
        return f"a {type(value).__name__} vs a {type(baseline).__name__}"
    if isinstance(value, float) and math.isnan(value) and math.isnan(baseline):
        return None
    try:
        equal = bool(value == baseline)
    except Exception as err:  # a value whose == does not give one answer
        return f"cannot be compared ({type(err).__name__}: {err})"
    return None if equal else f"{_show(value)} vs {_show(baseline)}"


def _show(value: Any, width: int = 60) -> str:
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        value = item()  # a numpy scalar: its Python value
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _pandas_difference(value: Any, baseline: Any, rtol: float, atol: float) -> str | None:
    import pandas as pd
    import pandas.testing as pdt

    kinds = (pd.DataFrame, pd.Series, pd.Index)
    kind = next((k for k in kinds if isinstance(baseline, k)), None)
    if kind is None or not isinstance(value, kind):
        if isinstance(value, kinds) or isinstance(baseline, kinds):
            return f"a {type(value).__name__} vs a {type(baseline).__name__}"
        return _scalar_difference(value, baseline, rtol, atol)  # a pandas scalar (Timestamp, NA)
    assertion = {pd.DataFrame: pdt.assert_frame_equal, pd.Series: pdt.assert_series_equal}.get(
        kind, pdt.assert_index_equal
    )
    try:
        assertion(value, baseline, rtol=rtol, atol=atol)
        return None
    except AssertionError as err:
        message = str(err)
    if kind is pd.Index:
        return _labels_difference("labels", value, baseline) or _first_line(message)
    if value.shape != baseline.shape:
        rows, base_rows = value.shape[0], baseline.shape[0]
        if rows != base_rows:
            return f"{rows} rows vs {base_rows}"
    if kind is pd.DataFrame:
        if list(value.columns) != list(baseline.columns):
            return f"columns {_show(list(value.columns))} vs {_show(list(baseline.columns))}"
        found = _labels_difference("row labels", value.index, baseline.index)
        if found:
            return found
        for column in value.columns:
            if value[column].dtype != baseline[column].dtype:
                return f"column {column}: dtype {value[column].dtype} vs {baseline[column].dtype}"
        cells = [(_first_unequal(value[c], baseline[c], rtol, atol), i, c) for i, c in enumerate(value.columns)]
        found_cells = [(row, i, c) for row, i, c in cells if row is not None]
        if found_cells:
            row, _, column = min(found_cells)
            return (
                f"row {value.index[row]}, column {column}: {_show(value[column].iloc[row])} "
                f"vs {_show(baseline[column].iloc[row])}"
            )
        return _first_line(message)
    found = _labels_difference("row labels", value.index, baseline.index)
    if found:
        return found
    if value.dtype != baseline.dtype:
        return f"dtype {value.dtype} vs {baseline.dtype}"
    position = _first_unequal(value, baseline, rtol, atol)
    if position is not None:
        return f"row {value.index[position]}: {_show(value.iloc[position])} vs {_show(baseline.iloc[position])}"
    return _first_line(message)


def _labels_difference(what: str, labels: Any, base: Any) -> str | None:
    if len(labels) != len(base):
        return f"{len(labels)} {what} vs {len(base)}"
    for position, (a, b) in enumerate(zip(labels, base, strict=True)):
        if not (a == b or (a != a and b != b)):  # NaN labels equal each other
            return f"{what} differ at position {position}: {_show(a)} vs {_show(b)}"
    return None


def _first_unequal(values: Any, base: Any, rtol: float, atol: float) -> int | None:
    """The position of the first element of two Series that differs, or None."""
    import numpy as np
    import pandas as pd

    left, right = values.to_numpy(), base.to_numpy()
    missing = pd.isna(left) & pd.isna(right)
    if np.issubdtype(left.dtype, np.inexact) or np.issubdtype(right.dtype, np.inexact):
        try:
            same = np.isclose(left.astype(float), right.astype(float), rtol=rtol, atol=atol, equal_nan=True)
        except (TypeError, ValueError):
            same = left == right
    else:
        same = np.asarray(left == right, dtype=bool)
    unequal = np.flatnonzero(~(same | missing))
    return int(unequal[0]) if unequal.size else None


def _numpy_difference(value: Any, baseline: Any, rtol: float, atol: float) -> str | None:
    import numpy as np

    if not isinstance(value, np.ndarray) or not isinstance(baseline, np.ndarray):
        if isinstance(value, np.ndarray) or isinstance(baseline, np.ndarray):
            return f"a {type(value).__name__} vs a {type(baseline).__name__}"
        return _scalar_difference(value, baseline, rtol, atol)
    if value.shape != baseline.shape:
        return f"shape {value.shape} vs {baseline.shape}"
    if value.dtype != baseline.dtype:
        return f"dtype {value.dtype} vs {baseline.dtype}"
    try:
        if np.issubdtype(value.dtype, np.number):
            np.testing.assert_allclose(value, baseline, rtol=rtol, atol=atol, equal_nan=True)
        else:
            np.testing.assert_array_equal(value, baseline)
        return None
    except AssertionError as err:
        message = str(err)
    if np.issubdtype(value.dtype, np.number):
        same = np.isclose(value, baseline, rtol=rtol, atol=atol, equal_nan=True)
    else:
        same = np.asarray(value == baseline, dtype=bool)
    unequal = np.argwhere(~same)
    if not len(unequal):
        return _first_line(message)
    where = tuple(int(i) for i in unequal[0])
    shown = str(where[0]) if len(where) == 1 else str(where)
    return f"element {shown}: {_show(value[where])} vs {_show(baseline[where])}"


def _scalar_difference(value: Any, baseline: Any, rtol: float, atol: float) -> str | None:
    """A numpy or pandas number: within the tolerances; anything else exactly."""
    import numpy as np

    try:
        if np.isclose(value, baseline, rtol=rtol, atol=atol, equal_nan=True):
            return None
    except (TypeError, ValueError):
        try:
            if bool(value == baseline):
                return None
        except Exception as err:
            return f"cannot be compared ({type(err).__name__}: {err})"
    return f"{_show(value)} vs {_show(baseline)}"


def _first_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[0] if lines else "differs"
