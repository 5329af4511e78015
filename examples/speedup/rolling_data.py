"""Test data and the reference result for rolling_spend.py (off limits to candidates)."""

from collections import deque

import numpy as np
import pandas as pd

WINDOW = 5

rng = np.random.default_rng(42)
n = 100_000
transactions = pd.DataFrame({
    "ts": np.sort(rng.integers(0, 365 * 86_400, n)),  # seconds into the year, in time order
    "customer_id": rng.integers(0, 2_500, n),
    "amount": np.round(rng.lognormal(3, 1, n), 2),
})


def _reference(df: pd.DataFrame) -> np.ndarray:
    """The plain one-pass definition: each customer's last WINDOW purchases."""
    out, recent = np.empty(len(df)), {}
    for i, (customer, amount) in enumerate(zip(df["customer_id"].tolist(), df["amount"].tolist())):
        window = recent.setdefault(customer, deque(maxlen=WINDOW))
        window.append(amount)
        out[i] = sum(window) / len(window)
    return out


expected = _reference(transactions)
