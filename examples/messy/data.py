"""Seeded data generators for the messy example scripts (one per dataset).

Each ``write_*`` function writes the csv files of one dataset into a directory (created if
missing) and returns their paths; equal arguments give byte-equal files. Sizes are small by
default so the tests stay fast. From the shell::

    python examples/messy/data.py [DIR]      # all datasets into DIR/<dataset>/ (default: ./data)

``complaints``: ``customers.csv`` and ``mails.csv`` of the running example (the package's own
generator, :func:`lester_dagster.examples.complaints_data.write_complaints`).
``churn``: ``customers.csv`` (customer_id, signup_date, region, plan, age, churned) and
``orders.csv`` (order_id, customer_id, date, amount, category, returned).
``sensors``: ``sensors.csv`` (sensor_id, site, kind) and ``readings.csv`` (reading_id,
sensor_id, temperature, vibration, pressure, failure), with readings of unknown sensors,
missing temperatures and an invalid-pressure sentinel (-1).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lester_dagster.examples.complaints_data import write_complaints

__all__ = ["DATASETS", "write_all", "write_churn", "write_complaints_data", "write_sensors"]


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def write_complaints_data(out_dir: str | Path, customers: int = 600, seed: int = 0) -> list[Path]:
    """``customers.csv`` and ``mails.csv`` (3 mails per customer) of the running example."""
    _check_positive("customers", customers)
    return list(write_complaints(out_dir, customers, seed=seed))


def write_churn(out_dir: str | Path, customers: int = 300, seed: int = 0) -> list[Path]:
    """Customers of an online shop, their orders (about 8 each, 2022-2024) and whether they
    churned (more likely with few recent orders, many returns and the basic plan)."""
    _check_positive("customers", customers)
    rng = np.random.default_rng(seed)
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    ids = np.arange(1, customers + 1)
    plans = rng.choice(["basic", "plus", "trial"], size=customers, p=[0.55, 0.35, 0.10])
    signup = np.datetime64("2019-01-01") + rng.integers(0, 5 * 365, customers)
    activity = rng.gamma(2.0, 4.0, customers)  # expected orders per customer
    n_orders = rng.poisson(activity)
    owner = np.repeat(ids, n_orders)
    count = owner.size
    return_propensity = rng.beta(1.5, 8.0, customers)
    orders = pd.DataFrame(
        {
            "order_id": np.arange(1, count + 1),
            "customer_id": owner,
            "date": np.datetime_as_string(
                np.datetime64("2022-01-01") + rng.integers(0, 3 * 365, count), unit="D"
            ),
            "amount": np.round(rng.lognormal(3.5, 0.8, count), 2),
            "category": rng.choice(["books", "garden", "toys", "tech", "food"], size=count),
            "returned": (rng.random(count) < return_propensity[owner - 1]).astype(int),
        }
    )
    refunds = rng.random(count) < 0.04  # refunds are booked as zero or negative amounts
    orders.loc[refunds, "amount"] = -orders.loc[refunds, "amount"].round(0)
    recent = np.bincount(owner[orders["date"].to_numpy() >= "2023-01-01"], minlength=customers + 1)
    score = 1.0 - 0.35 * recent[1:] + 4.0 * return_propensity + 0.8 * (plans == "basic")
    churned = (rng.random(customers) < 1.0 / (1.0 + np.exp(-score))).astype(int)
    customer_frame = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": np.datetime_as_string(signup, unit="D"),
            "region": rng.choice(["north", "south", "east", "west"], size=customers),
            "plan": plans,
            "age": rng.integers(18, 80, customers),
            "churned": churned,
        }
    )
    paths = [directory / "customers.csv", directory / "orders.csv"]
    customer_frame.to_csv(paths[0], index=False)
    orders.to_csv(paths[1], index=False)
    return paths


def write_sensors(
    out_dir: str | Path, sensors: int = 40, readings: int = 600, seed: int = 0
) -> list[Path]:
    """Machine sensors at a few sites and their readings; failures are more likely when hot,
    shaking and at low pressure. About 5% of readings come from unknown sensors, 3% miss the
    temperature and 4% carry the invalid-pressure sentinel -1."""
    _check_positive("sensors", sensors)
    _check_positive("readings", readings)
    rng = np.random.default_rng(seed)
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    sensor_ids = 1000 + rng.permutation(sensors * 3)[:sensors]  # not contiguous, not sorted
    kinds = rng.choice(["pump", "motor", "fan"], size=sensors)
    sensor_frame = pd.DataFrame(
        {
            "sensor_id": sensor_ids,
            "site": rng.choice(["berlin", "lyon", "delft", "porto"], size=sensors),
            "kind": kinds,
        }
    )
    owner = rng.integers(0, sensors, readings)
    reading_sensor = sensor_ids[owner].copy()
    unknown = rng.random(readings) < 0.05
    reading_sensor[unknown] = 5000 + rng.integers(0, 100, int(unknown.sum()))
    temperature = np.round(rng.normal(60.0, 12.0, readings) + 8.0 * (kinds[owner] == "motor"), 1)
    vibration = np.round(rng.gamma(2.0, 1.5, readings), 3)
    pressure = np.round(rng.normal(3.0, 0.6, readings), 2)
    risk = 0.08 * (temperature - 60.0) + 0.5 * (vibration - 3.0) - 1.2 * (pressure - 3.0) - 1.0
    failure = (rng.random(readings) < 1.0 / (1.0 + np.exp(-risk))).astype(int)
    temperature_text = temperature.astype(str).astype(object)
    temperature_text[rng.random(readings) < 0.03] = ""
    pressure[rng.random(readings) < 0.04] = -1.0
    reading_frame = pd.DataFrame(
        {
            "reading_id": np.arange(1, readings + 1),
            "sensor_id": reading_sensor,
            "temperature": temperature_text,
            "vibration": vibration,
            "pressure": pressure,
            "failure": failure,
        }
    )
    paths = [directory / "sensors.csv", directory / "readings.csv"]
    sensor_frame.to_csv(paths[0], index=False)
    reading_frame.to_csv(paths[1], index=False)
    return paths


DATASETS = {
    "complaints": write_complaints_data,
    "churn": write_churn,
    "sensors": write_sensors,
}
"""Dataset name (the sub-directory each script reads by default) -> its generator."""


def write_all(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Every dataset, with default sizes, into ``out_dir/<dataset>/``; returns the dirs."""
    written = {}
    for name, generate in DATASETS.items():
        target = Path(out_dir) / name
        generate(target, seed=seed)
        written[name] = target
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    for name, directory in write_all(target).items():
        print(f"{name}: {directory}")
