# Which shop customers will churn? A pandas-heavy notebook turned into a script.
# usage: python churn_pandas.py [DATA_DIR]   (customers.csv, orders.csv)
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data" / "churn"

customers = pd.read_csv(DATA / "customers.csv")
orders = pd.read_csv(DATA / "orders.csv")

# refunds are booked as orders with amount <= 0 - drop them
orders = orders[orders.amount > 0]
# only the recent orders count (filtered BEFORE aggregating)
recent = orders[orders["date"] >= "2023-01-01"]

df = recent.merge(customers[["customer_id", "plan"]], on="customer_id", how="inner")
agg = (
    df.groupby("customer_id")
    .agg(
        n_orders=("order_id", "count"),
        total=("amount", "sum"),
        avg_amount=("amount", "mean"),
        return_rate=("returned", "mean"),
    )
    .reset_index()
)

data = customers.merge(agg, on="customer_id", how="left")
for c in ["n_orders", "total", "avg_amount", "return_rate"]:
    data[c] = data[c].fillna(0)
data = data[data["plan"] != "trial"].copy()  # trial accounts are not customers yet


def age_group(a):
    if a < 30:
        return "young"
    elif a < 50:
        return "mid"
    return "senior"


data["age_group"] = data["age"].apply(age_group)
data["tenure_days"] = (pd.Timestamp("2024-12-31") - pd.to_datetime(data["signup_date"])).dt.days

num_cols = ["n_orders", "total", "avg_amount", "return_rate", "tenure_days"]
dummies = pd.get_dummies(data[["region", "plan", "age_group"]], dtype=float)
X = pd.concat([data[num_cols], dummies], axis=1)
y = data["churned"].values

X_tr, X_te, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=7, stratify=y)

scaler = StandardScaler()
X_train = np.hstack([scaler.fit_transform(X_tr[num_cols]), X_tr[dummies.columns].values])
X_test = np.hstack([scaler.transform(X_te[num_cols]), X_te[dummies.columns].values])

model = LogisticRegression(max_iter=1000)
model.fit(X_train, y_train)
print("train rows", X_train.shape, "test accuracy", round(model.score(X_test, y_test), 3))
