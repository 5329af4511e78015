"""Writes the example's data: 36 months of sales of 100 stores (seasonal, with a December
peak, each store growing at its own pace, 7% noise). The first 35 months are the history
the forecast is tuned on; the 36th, a December, is the hidden latest month."""

import numpy as np
import pandas as pd

rng = np.random.default_rng(0)
stores, months = 100, 36
base = rng.uniform(40, 160, stores)
growth = rng.normal(0.008, 0.006, stores)  # per month
season = np.array([0.85, 0.82, 0.9, 0.95, 1.0, 1.02, 0.98, 0.96, 1.0, 1.05, 1.15, 1.4])
rows = [
    (f"S{s + 1:03d}", t + 1, round(base[s] * (1 + growth[s]) ** t * season[t % 12] * np.exp(rng.normal(0, 0.07)), 2))
    for s in range(stores)
    for t in range(months)
]
sales = pd.DataFrame(rows, columns=["store", "month", "sales"])
sales[sales.month < months].to_csv("sales_history.csv", index=False)
sales[sales.month == months].to_csv("latest_month.csv", index=False)
