"""A generated messy table in the shape of flights joined with weather and planes: text columns
(carrier, a tail number with thousands of values, origin, destination, plane model and maker),
numbers and a boolean, 10% of every feature missing, and a text target ("late"/"on time")
that depends on them with noise. Written once as CSV (and Parquet) and reused.

    python bench/messy_table.py --rows 1500000 --out /tmp/groves-bench
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

TEXT = {  # column: number of distinct values
    "carrier": 16,
    "tailnum": 4000,
    "origin": 3,
    "dest": 105,
    "model": 1200,
    "manufacturer": 35,
}
MISSING = 0.10


def words(prefix: str, count: int) -> np.ndarray:
    return np.array([f"{prefix}{i:04d}" for i in range(count)], dtype=object)


def generate(rows: int, seed: int = 0) -> pa.Table:
    """The table: every feature 10% missing, the target never missing."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    codes = {name: rng.zipf(1.3, rows) % count for name, count in TEXT.items()}
    for name, count in TEXT.items():
        columns[name] = words(name[:2].upper(), count)[codes[name]]
    numbers = {
        "month": rng.integers(1, 13, rows).astype(np.float64),
        "day": rng.integers(1, 32, rows).astype(np.float64),
        "dep_hour": rng.integers(5, 24, rows).astype(np.float64),
        "distance": rng.integers(80, 4983, rows).astype(np.float64),
        "temp": np.round(rng.normal(55, 17, rows), 2),
        "humid": np.round(rng.uniform(10, 100, rows), 2),
        "wind_speed": np.round(rng.gamma(2, 5, rows), 3),
        "visib": np.round(rng.uniform(0, 10, rows), 1),
        "precip": np.round(rng.exponential(0.02, rows), 4),
        "year_built": rng.integers(1960, 2014, rows).astype(np.float64),
        "seats": rng.integers(20, 400, rows).astype(np.float64),
    }
    columns.update(numbers)
    weekend = rng.random(rows) < 2 / 7
    score = (
        0.06 * (numbers["dep_hour"] - 14)
        + 0.4 * (numbers["precip"] > 0.03)
        + 0.02 * (numbers["wind_speed"] - 10)
        - 0.3 * (numbers["visib"] > 5)
        + 0.5 * (codes["carrier"] % 4 == 1)
        + 0.3 * (codes["tailnum"] % 7 == 0)
        + 0.4 * (codes["dest"] % 5 == 2)
        + 0.2 * weekend
        + rng.normal(0, 0.6, rows)
    )
    status = np.where(score > 0.3, "late", "on time")
    table = {}
    for name, values in {**columns, "weekend": weekend}.items():
        table[name] = pa.array(values, mask=rng.random(rows) < MISSING)
    table["status"] = pa.array(status)
    return pa.table(table)


def written(rows: int, folder: Path) -> tuple[Path, Path]:
    """The table as CSV and Parquet in ``folder`` (generated once per row count)."""
    folder.mkdir(parents=True, exist_ok=True)
    csv, parquet = folder / f"messy-{rows}.csv", folder / f"messy-{rows}.parquet"
    if not csv.exists() or not parquet.exists():
        table = generate(rows)
        pa_csv.write_csv(table, csv)
        pq.write_table(table, parquet)
    return csv, parquet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/groves-bench"))
    args = parser.parse_args()
    for path in written(args.rows, args.out):
        print(f"{path}  {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
