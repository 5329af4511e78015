# The hidden check: the candidate's forecast of the latest month, which the search never sees.
import numpy as np
import pandas as pd

sales = pd.read_csv("sales_history.csv").pivot(index="store", columns="month", values="sales")
latest = pd.read_csv("latest_month.csv")
actual = latest.set_index("store")["sales"]
predicted = forecast(sales, int(latest["month"].iloc[0]))  # `forecast` comes from the candidate
print(f"METRIC holdout_mape={100 * np.mean(np.abs(predicted / actual - 1)):.3f}")
