"""The progress of a run of the loop in one line: count, elapsed time, time left and rate."""

from __future__ import annotations

__all__ = ["meter"]


def meter(done: int, total: int | None, elapsed: float) -> str:
    """``3/20 runs [00:12<00:45, 4.00s/run]`` (tqdm's meter); without a total, no time left."""
    from tqdm import tqdm

    if total:
        text = tqdm.format_meter(
            done, total, elapsed, unit="run", bar_format="{n_fmt}/{total_fmt} runs [{elapsed}<{remaining}, {rate_fmt}]"
        )
    else:
        text = tqdm.format_meter(done, None, elapsed, unit="run", bar_format="{n_fmt} runs [{elapsed}, {rate_fmt}]")
    return str(text)
