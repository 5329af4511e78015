# Next month's sales of each store, and how well the rule did on the last six months.
import numpy as np
import pandas as pd

sales = pd.read_csv("sales_history.csv").pivot(index="store", columns="month", values="sales")


def forecast(sales, month):
    """Each store's sales in `month`, from the months before it: the same month last
    year, grown as the last three months grew on the same three a year before."""
    recent = sales[[month - 1, month - 2, month - 3]].sum(axis=1)
    year_before = sales[[month - 13, month - 14, month - 15]].sum(axis=1)
    return sales[month - 12] * recent / year_before


# Backtest: forecast each of the last six months from the months before it.
last = sales.columns.max()
errors = [np.abs(forecast(sales.loc[:, : m - 1], m) / sales[m] - 1) for m in range(last - 5, last + 1)]
print(f"METRIC mape={100 * np.mean(errors):.3f}")
