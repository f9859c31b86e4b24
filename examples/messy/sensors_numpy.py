# Predict machine failures from sensor readings, NumPy style.
# usage: python sensors_numpy.py [DATA_DIR]   (sensors.csv, readings.csv)
import os
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "data", "sensors")

S = np.genfromtxt(os.path.join(d, "sensors.csv"), delimiter=",", names=True, dtype=None,
                  encoding="utf-8")  # fmt: skip
R = np.genfromtxt(os.path.join(d, "readings.csv"), delimiter=",", names=True, dtype=None,
                  encoding="utf-8")  # fmt: skip

# join readings -> sensors by hand: sort the sensor ids, binary-search each reading's id
order = np.argsort(S["sensor_id"])
sids = S["sensor_id"][order]
pos = np.searchsorted(sids, R["sensor_id"])
pos[pos >= len(sids)] = 0
known = sids[pos] == R["sensor_id"]  # readings of unknown sensors are dropped

ok = known & (R["pressure"] > 0) & ~np.isnan(R["temperature"])
R = R[ok]
idx = order[pos[ok]]
site = S["site"][idx]
kind = S["kind"][idx]

temp = R["temperature"]
vib = np.log1p(R["vibration"])
press = R["pressure"]

# standardise with mean/std of ALL rows (before the split!)
num = np.column_stack([temp, vib, press])
num = (num - num.mean(axis=0)) / num.std(axis=0)

sites = np.unique(site)
kinds = np.unique(kind)
site_1h = np.eye(len(sites))[np.searchsorted(sites, site)]
kind_1h = np.eye(len(kinds))[np.searchsorted(kinds, kind)]

X = np.hstack([num, site_1h, kind_1h])
y = np.where(R["failure"] > 0, 1, 0)

X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=1)
model = LogisticRegression(max_iter=500)
model.fit(X_train, y_train)
print(X.shape[0], "readings kept of", len(ok), "- test accuracy", model.score(X_test, y_test))
