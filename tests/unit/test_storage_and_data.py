"""Stores (local directory, S3 via moto) and dataset loading (built-in and NPZ arrays; CSV and
Parquet tables as plan prepares them)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import BUCKET

from groves.data.datasets import Split, load_dataset, split
from groves.data.prepared import read_prepared
from groves.errors import RequestError
from groves.steps.plan import plan_build
from groves.store.local import LocalStore
from groves.store.protocol import ArtifactNotFound
from groves.store.s3 import S3Store
from groves.store.uris import open_store, read_uri


def exercise(store) -> None:
    store.put_bytes("b/groves/grove_00001.json", b"{}")
    store.put_bytes("b/model.joblib", b"model")
    store.put_bytes("other/plan.json", b"x")
    assert store.get_bytes("b/model.joblib") == b"model"
    assert store.exists("b/model.joblib") and not store.exists("b/nothing")
    assert store.list_keys("b/") == ["b/groves/grove_00001.json", "b/model.joblib"]
    assert store.list_children("b") == store.list_children("b/") == ["groves", "model.joblib"]
    assert store.list_children("") == ["b", "other"]
    assert store.list_children("nothing/") == []
    with pytest.raises(ArtifactNotFound, match="b/nothing does not exist"):
        store.get_bytes("b/nothing")


def test_local_store(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "runs"))
    assert isinstance(store, LocalStore)
    exercise(store)
    assert not list((tmp_path / "runs" / "b").glob(".*")), "no temporary files left behind"
    with pytest.raises(ValueError, match="escapes the store root"):
        store.put_bytes("../outside", b"x")


def test_s3_store_with_prefix(s3) -> None:
    store = open_store(f"s3://{BUCKET}/builds")
    assert isinstance(store, S3Store) and store.uri == f"s3://{BUCKET}/builds"
    exercise(store)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert "builds/b/model.joblib" in keys


def test_unsupported_store_uri_is_refused() -> None:
    with pytest.raises(ValueError, match="use a directory or s3://"):
        open_store("gs://bucket")


def write_csv(path: Path, rows: list[str]) -> str:
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def table_rows(store: Path, source: str, target: str | None) -> tuple[dict, Split]:
    """A table's rows as a build's plan prepares them, none held out (in the table's order)."""
    request = {"build_id": "t", "dataset": source, "target": target, "test_size": 0}
    plan = plan_build(LocalStore(store), request)
    return plan["data"], read_prepared(LocalStore(store), plan)


def test_csv_with_string_labels_and_missing_values(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "d.csv", ["a,b,label", "1,2,cat", "3,,dog", "5,6,cat", "7,8,dog"])
    data, rows = table_rows(tmp_path / "st", source, "label")
    assert data["feature_names"] == ["a", "b"]
    assert rows.X_train.dtype == np.float32 and np.isnan(rows.X_train[1, 1])
    assert rows.y_train.tolist() == ["cat", "dog", "cat", "dog"]


def test_a_typo_in_a_numeric_column_names_the_column_and_row_not_the_value(
    tmp_path: Path,
) -> None:
    rows = [f"{i},{i % 7},{i % 2}" for i in range(300)]
    rows[41] = "41,secret-typo,1"  # 1 of 300 values is not a number: a typo, not a category
    source = write_csv(tmp_path / "d.csv", ["a,b,target", *rows])
    typo = r"^dataset: column 'b' of .*: row 42 of .* is not a number"
    with pytest.raises(RequestError, match=typo) as caught:
        table_rows(tmp_path / "st", source, None)
    assert "secret" not in str(caught.value)
    listed = r"^target: column 'y' is not in .*; its 3 columns: 'a', 'b', 'target'$"
    with pytest.raises(RequestError, match=listed):
        table_rows(tmp_path / "st", source, "y")


def test_npz_and_parquet_from_s3(s3, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.integers(0, 2, 20)
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y)
    s3.put_object(Bucket=BUCKET, Key="data/d.npz", Body=buffer.getvalue())
    table = pa.table({"f0": X[:, 0], "f1": X[:, 1], "f2": X[:, 2], "target": y})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3.put_object(Bucket=BUCKET, Key="data/d.parquet", Body=sink.getvalue())

    from_npz = load_dataset(f"s3://{BUCKET}/data/d.npz")
    _, from_parquet = table_rows(tmp_path / "st", f"s3://{BUCKET}/data/d.parquet", None)
    np.testing.assert_array_equal(from_npz.X, X.astype(np.float32))
    np.testing.assert_array_equal(from_parquet.X_train, from_npz.X)
    with pytest.raises(ArtifactNotFound):
        read_uri(f"s3://{BUCKET}/data/none.npz")


def test_npz_needs_X_and_y(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", features=np.zeros((5, 2)))
    with pytest.raises(RequestError, match=r"must hold arrays named X and y$"):
        load_dataset(str(tmp_path / "d.npz"))


def test_split_is_shared_deterministic_and_stratified() -> None:
    data = load_dataset("digits")
    first, again = split(data, 0.25, 7, True), split(data, 0.25, 7, True)
    np.testing.assert_array_equal(first.y_test, again.y_test)
    assert first.fingerprint == again.fingerprint
    assert split(data, 0.25, 8, True).fingerprint != first.fingerprint
    counts = np.bincount(first.y_test) / len(first.y_test)
    np.testing.assert_allclose(counts, np.bincount(data.y) / len(data.y), atol=0.01)


def test_the_s3_download_cache_is_bounded_least_recently_used_first(
    s3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os

    from groves.store import cache
    from groves.store.cache import CACHE_BYTES_ENV

    monkeypatch.setattr(cache, "cache_root", lambda: tmp_path / "cache")  # its own
    store = open_store(f"s3://{BUCKET}/cache-bound")
    for name in "abc":
        store.put_bytes(f"k/{name}.npy", bytes(1000))
    monkeypatch.setenv(CACHE_BYTES_ENV, "2500")  # room for two copies
    a = store.local_path("k/a.npy")
    b = store.local_path("k/b.npy")
    os.utime(a, (1, 1))  # a is the least recently used
    os.utime(b, (2, 2))
    c = store.local_path("k/c.npy")
    assert not a.exists() and b.exists() and c.exists()
    assert store.local_path("k/a.npy").read_bytes() == bytes(1000)  # fetched again when asked
    assert not b.exists()
