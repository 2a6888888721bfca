"""Rows at any scale: the training rows are shards of stripes, each grove reads a seeded sample
of its own (only those stripes, by ranged reads), and a table whose rows do not fit a grove's
memory is sampled by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import train_batch
from sklearn.datasets import make_classification

import groves
from groves.data import shards
from groves.engine.local import run_local
from groves.steps import handlers
from groves.steps.plan import grove_sample
from groves.steps.score import score_build
from groves.store.artifacts import read_plan
from groves.store.storage import LocalStore, get_json


@pytest.fixture
def table(tmp_path: Path) -> str:
    X, y = make_classification(6_000, 8, n_informative=5, random_state=0)
    np.savez(tmp_path / "t.npz", X=X, y=y)
    return str(tmp_path / "t.npz")


def grove_records(store: Path, build_id: str, run_id: str) -> list[dict[str, Any]]:
    folder = store / build_id / "runs" / run_id / "groves"
    return [
        get_json(LocalStore(store), str(p.relative_to(store)))
        for p in sorted(folder.glob("*.json"))
    ]


def test_each_grove_reads_only_its_own_sample_by_ranged_reads(
    tmp_path: Path, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[tuple[str, int, int]] = []
    original = LocalStore.get_range

    def counted(self: LocalStore, key: str, start: int, stop: int) -> bytes:
        read.append((key, start, stop))
        return original(self, key, start, stop)

    monkeypatch.setattr(LocalStore, "get_range", counted)
    store = tmp_path / "st"
    request = {"build_id": "s", "dataset": table, "n_trees": 8, "grove_size": 2, "seed": 4}
    request |= {"rows_per_grove": 450, "predict": True}
    planned = handlers.plan({"store": str(store), "request": request})
    train_batch(planned)  # in this process, so that its reads are counted
    run_id = planned["run_id"]
    plan = read_plan(LocalStore(store), "s", run_id)
    train = plan["data"]["prepared"]["train"]
    assert plan["sample"]["rows"] == 450 and plan["sample"]["of"] == 4_500
    metas = grove_records(store, "s", run_id)
    step = train["stripe_rows"]
    assert all(450 <= m["n_train"] < 450 + step for m in metas)
    row_bytes = 4 * 8 + 8
    assert (
        sum(stop - start for _, start, stop in read) == sum(m["n_train"] for m in metas) * row_bytes
    )
    samples = {tuple(shards.sample_stripes(train, 450, m["seed"])) for m in metas}
    assert len(samples) == len(metas)  # each grove its own rows
    handlers.merge({"store": str(store), "build_id": "s", "run_id": run_id})
    assert score_build(LocalStore(store), "s", run_id)["score"] > 0.8


def test_every_grove_reads_every_row_by_default_and_fits_as_scikit_learn(
    tmp_path: Path, table: str
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    request = {"build_id": "a", "dataset": table, "n_trees": 4, "grove_size": 4, "seed": 1}
    out = run_local(request, str(tmp_path / "st"), workers=1)
    assert out.status == "SUCCEEDED", out.cause
    plan = read_plan(LocalStore(tmp_path / "st"), "a", out.output["run_id"])
    assert plan["sample"]["rows"] is None
    from groves.data.prepared import read_prepared

    split = read_prepared(LocalStore(tmp_path / "st"), plan)
    seed = grove_records(tmp_path / "st", "a", out.output["run_id"])[0]["seed"]
    forest = RandomForestClassifier(4, random_state=seed).fit(split.X_train, split.y_train)
    model = groves.load_model(str(tmp_path / "st"), "a")
    np.testing.assert_array_equal(
        model.predict_proba(split.X_test), forest.predict_proba(split.X_test)
    )


def test_a_table_larger_than_a_groves_memory_is_sampled_by_default() -> None:
    spec = {"rows_per_grove": None}
    record = {"n_rows": 400_000_000, "n_features": 26, "weighted": False}
    sample = grove_sample(spec, record)
    assert sample["rows"] == sample["fits"] < 400_000_000 and not sample["asked"]
    # what it holds: twice its rows' bytes and the trees' share, in train_grove's memory
    assert 5_000_000 < sample["fits"] < 10_000_000
    small = grove_sample(spec, {**record, "n_rows": 1_000})
    assert small["rows"] is None
