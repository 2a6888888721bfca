"""Every malformed request ends in groves' own error naming the field, raised by plan before
any grove trains and before anything is written; no message quotes a file's contents."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import BUCKET, small_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groves import cli
from groves.engine.local import run_local
from groves.errors import BuildError, RequestError
from groves.steps import handlers
from groves.store.local import LocalStore


def csv_file(path: Path, lines: list[str], encoding: str = "utf-8") -> str:
    path.write_bytes("\n".join(lines).encode(encoding))
    return str(path)


def npz_file(path: Path, allow_pickle: bool = False, **arrays: Any) -> str:
    buffer = io.BytesIO()
    if allow_pickle:
        np.savez(buffer, allow_pickle=True, **arrays)
    else:
        np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    return str(path)


def parquet_file(path: Path, **columns: Any) -> str:
    pq.write_table(pa.table(columns), path)
    return str(path)


ROWS = ["a,b,target", "1,2,0", "3,4,1", "5,6,0", "7,8,1", "2,2,0", "4,4,1"]
X8 = np.arange(16, dtype=np.float64).reshape(8, 2)
Y8 = np.array([0, 1] * 4)

# name -> (make the request's overrides from a temporary folder, field named, message pattern)
CASES: dict[str, tuple[Callable[[Path], dict[str, Any]], str, str]] = {
    "estimator is a list": (lambda d: {"estimator": []}, "estimator", "is not one of"),
    "NaN label in a CSV": (
        lambda d: {"dataset": csv_file(d / "x.csv", [*ROWS, "9,9,nan"])},
        "target",
        "1 rows with a missing or non-finite label",
    ),
    "NaN label in an NPZ": (
        lambda d: {"dataset": npz_file(d / "x.npz", X=X8, y=np.where(Y8 == 1, np.nan, 0.0))},
        "target",
        "missing or non-finite label",
    ),
    "NaN label in a Parquet file": (
        lambda d: {"dataset": parquet_file(d / "x.parquet", a=X8[:, 0], target=[0.0, np.nan] * 4)},
        "target",
        "missing or non-finite label",
    ),
    "latin-1 CSV": (
        lambda d: {"dataset": csv_file(d / "x.csv", ["a,b,târget", *ROWS[1:]], "latin-1")},
        "dataset",
        "is not UTF-8 text",
    ),
    "junk .npz": (
        lambda d: {"dataset": str((d / "x.npz").write_bytes(b"junk" * 10) and d / "x.npz")},
        "dataset",
        "is not an .npz archive",
    ),
    "a .npy named .npz": (
        lambda d: (
            (np.save(d / "x.npy", X8), (d / "x.npy").rename(d / "y.npz"))
            and {"dataset": str(d / "y.npz")}
        ),
        "dataset",
        "is not an .npz archive",
    ),
    "an .npz holding a pickle": (
        lambda d: {
            "dataset": npz_file(
                d / "x.npz", allow_pickle=True, X=np.array([{"a": 1}] * 8, dtype=object), y=Y8
            )
        },
        "dataset",
        "plain numeric arrays",
    ),
    "an .npz of strings": (
        lambda d: {"dataset": npz_file(d / "x.npz", X=X8.astype(str), y=Y8)},
        "dataset",
        "non-numeric features",
    ),
    "junk .parquet": (
        lambda d: {"dataset": str((d / "x.parquet").write_bytes(b"PAR1junk") and d / "x.parquet")},
        "dataset",
        "is not a readable Parquet file",
    ),
    "a directory named x.csv": (
        lambda d: (d / "x.csv").mkdir() or {"dataset": str(d / "x.csv")},
        "dataset",
        "is a directory",
    ),
    "a NUL byte in the path": (lambda d: {"dataset": "a\x00b.csv"}, "dataset", "NUL"),
    "s3:///x.csv": (lambda d: {"dataset": "s3:///x.csv"}, "dataset", "valid bucket name"),
    "s3://": (lambda d: {"dataset": "s3://"}, "dataset", "neither a built-in"),
    "an invalid bucket name": (
        lambda d: {"dataset": "s3://Bad_Bucket/x.csv"},
        "dataset",
        "valid bucket name",
    ),
    "a missing file": (
        lambda d: {"dataset": str(d / "none.csv")},
        "dataset",
        "does not exist",
    ),
    "a build_id with a newline": (lambda d: {"build_id": "abc\n"}, "build_id", "1-80"),
    "a one-class target": (
        lambda d: {"dataset": npz_file(d / "x.npz", X=X8, y=np.zeros(8))},
        "target",
        "at least 2 classes; .* has 1",
    ),
    "empty labels": (
        lambda d: {"dataset": csv_file(d / "x.csv", [*ROWS, "9,9,"])},
        "target",
        "missing or non-finite label",
    ),
    "duplicate column names": (
        lambda d: {"dataset": csv_file(d / "x.csv", ["a,a,target", *ROWS[1:]])},
        "dataset",
        "columns with the same name",
    ),
    "the target column twice": (
        lambda d: {"dataset": csv_file(d / "x.csv", ["a,target,target", *ROWS[1:]])},
        "target",
        "appears 2 times",
    ),
    "an infinite feature": (
        lambda d: {"dataset": csv_file(d / "x.csv", [*ROWS, "inf,1,0"])},
        "dataset",
        "row 7 is infinite or beyond float32",
    ),
    "a feature beyond float32": (
        lambda d: {"dataset": npz_file(d / "x.npz", X=np.where(X8 == 3, 1e39, X8), y=Y8)},
        "dataset",
        "beyond float32",
    ),
    "complex features": (
        lambda d: {"dataset": npz_file(d / "x.npz", X=X8 + 1j, y=Y8)},
        "dataset",
        "complex features",
    ),
    "zero feature columns": (
        lambda d: {"dataset": npz_file(d / "x.npz", X=np.zeros((8, 0)), y=Y8)},
        "dataset",
        "no feature columns",
    ),
    "poisson with negative targets": (
        lambda d: {
            "dataset": npz_file(d / "x.npz", X=X8, y=np.linspace(-3, 3, 8)),
            "estimator": "regressor",
            "params": {"criterion": "poisson"},
        },
        "params.criterion",
        "non-negative",
    ),
    "max_samples 10**9": (
        lambda d: {"params": {"max_samples": 10**9}},
        "params.max_samples",
        "more than the 112 training rows; at most 112",
    ),
    "max_leaf_nodes 10**9": (
        lambda d: {"params": {"max_leaf_nodes": 10**9}},
        "params.max_leaf_nodes",
        "at most 112",
    ),
    "max_depth 10**30": (
        lambda d: {"params": {"max_depth": 10**30}},
        "params.max_depth",
        "at most 112",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_malformed_request_names_its_field_before_any_work(case: str, tmp_path: Path) -> None:
    make, field, pattern = CASES[case]
    data = tmp_path / "data"
    data.mkdir()
    request = small_request(**make(data))
    if request["dataset"].endswith((".csv", ".parquet")) and "target" not in request:
        request["target"] = "target"
    store = LocalStore(tmp_path / "store")
    with pytest.raises(RequestError, match=pattern) as caught:
        handlers.plan({"store": store.uri, "request": request})
    assert caught.value.field == field, caught.value
    assert "np.str_" not in str(caught.value)
    assert store.list_keys("") == [], "nothing is written for an invalid request"


def test_missing_bucket_and_key_on_s3_are_dataset_errors(s3, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    for dataset, reason in (
        ("s3://no-such-bucket/x.csv", "the bucket does not exist"),
        (f"s3://{BUCKET}/none.npz", "does not exist"),
    ):
        with pytest.raises(RequestError, match=reason) as caught:
            handlers.plan({"store": store.uri, "request": small_request(dataset=dataset)})
        assert caught.value.field == "dataset"


@pytest.mark.parametrize("store", [123, "", "http://example.com/x", "FILE"])
def test_a_bad_store_in_the_event_names_the_store(store: Any, tmp_path: Path) -> None:
    if store == "FILE":
        (tmp_path / "a-file").write_text("x")
        store = str(tmp_path / "a-file")
    with pytest.raises(RequestError) as caught:
        handlers.plan({"store": store, "request": small_request()})
    assert caught.value.field == "store"


def test_messages_never_quote_a_files_contents(tmp_path: Path) -> None:
    lines = ["secret_a,secret_b,target", "1,2,secret_x", "3,4,secret_y", "5,6,secret_x"]
    for lines_, estimator in ((lines, "classifier"), (lines, "regressor")):
        source = csv_file(tmp_path / "s.csv", [*lines_, "7,8,secret_z"])
        request = small_request(dataset=source, target="target", estimator=estimator)
        with pytest.raises(RequestError) as caught:
            handlers.plan({"store": str(tmp_path / "store"), "request": request})
        assert "secret" not in str(caught.value), caught.value
    with pytest.raises(RequestError) as caught:
        handlers.plan(
            {
                "store": str(tmp_path / "store"),
                "request": small_request(dataset=source, target="secret_q"),
            }
        )
    # a missing column names the table's columns (its header), never a value of a row
    assert "'secret_a', 'secret_b', 'target'" in str(caught.value)
    assert all(f"secret_{v}" not in str(caught.value) for v in "xyz")


def test_a_very_wide_csv_keeps_its_names_out_of_the_state_payload(tmp_path: Path) -> None:
    n_features = 15_000
    rng = np.random.default_rng(0)
    header = ",".join([*(f"feature_with_a_long_name_{i:05d}" for i in range(n_features)), "target"])
    rows = [",".join([*map(str, rng.integers(0, 9, n_features)), str(i % 2)]) for i in range(12)]
    source = csv_file(tmp_path / "wide.csv", [header, *rows])
    run = run_local(
        small_request(dataset=source, target="target", n_trees=2, grove_size=1, test_size=0.34),
        str(tmp_path / "store"),
        workers=1,
    )
    assert run.status == "SUCCEEDED", run.cause
    stored = (tmp_path / "store" / "t" / "runs" / run.output["run_id"] / "plan.json").read_text()
    assert "feature_with_a_long_name_14999" in stored and len(stored) > 300_000
    assert "feature_with_a_long_name" not in str(run.output)


def test_the_cli_answers_bad_input_in_one_line_with_exit_2(tmp_path: Path, capsys) -> None:
    for argv in (
        ["run", "t", "--store", "s3://"],
        ["run", "t", "--dataset", str(tmp_path / "none.csv"), "--store", str(tmp_path)],
        ["run", "t", "--param", "max_depth=1000000", "--dataset", "iris", "--store", str(tmp_path)],
    ):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("invalid request: ") and "\n" not in err and "Traceback" not in err


# ---- fuzzing: requests built from valid ones with fields replaced by arbitrary JSON ----------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELD_VALUES = {
    "dataset": st.sampled_from(
        ["iris", "wine", "x.csv", "s3://", "s3://b/x.parquet", "a.npz", "", "digits.csv"]
    )
    | JSON,
    "params": st.dictionaries(
        st.sampled_from(
            [
                "max_depth",
                "max_samples",
                "max_leaf_nodes",
                "criterion",
                "bootstrap",
                "max_features",
                "class_weight",
                "min_samples_leaf",
                "nope",
            ]
        ),
        JSON | st.integers(0, 10**12) | st.sampled_from(["sqrt", "log2", "poisson", "gini"]),
        max_size=3,
    )
    | JSON,
}
MALFORMED = st.one_of(
    JSON,
    st.fixed_dictionaries({}).flatmap(
        lambda _: st.dictionaries(
            st.sampled_from(
                [
                    "build_id",
                    "n_trees",
                    "grove_size",
                    "dataset",
                    "target",
                    "estimator",
                    "test_size",
                    "seed",
                    "params",
                    "max_concurrency",
                    "predict",
                    "resume",
                    "extra",
                ]
            ),
            JSON,
            min_size=1,
            max_size=4,
        ).map(lambda changes: {**small_request(), **changes})
    ),
    st.tuples(st.sampled_from(sorted(FIELD_VALUES)), st.data()).flatmap(
        lambda pair: FIELD_VALUES[pair[0]].map(lambda v, f=pair[0]: {**small_request(), f: v})
    ),
)


@settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=MALFORMED)
def test_fuzzed_requests_end_in_groves_errors_only(request: Any, tmp_path_factory) -> None:
    store = tmp_path_factory.mktemp("fuzz")
    try:
        handlers.plan({"store": str(store), "request": request})
    except (RequestError, BuildError) as exc:
        assert str(exc) and "Traceback" not in str(exc)
        if isinstance(exc, RequestError):
            assert exc.field, exc


@pytest.mark.parametrize(
    ("step", "event", "field"),
    [
        ("merge", {"build_id": "../escape", "run_id": "20261125T120301123Z-1a2b3c4d"}, "build_id"),
        ("merge", {"build_id": "t", "run_id": "../../x"}, "run_id"),
        ("predict", {"build_id": 7}, "build_id"),
        ("train_grove", {"build_id": "t", "run_id": "x", "grove": {}}, "Items"),
    ],
)
def test_malformed_step_events_name_their_field(
    step: str, event: dict, field: str, tmp_path
) -> None:
    with pytest.raises(RequestError) as caught:
        getattr(handlers, step)({"store": str(tmp_path), **event})
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("batch", "field"),
    [
        ({"Items": []}, "Items"),
        ({"Items": [{"grove_id": 0}]}, "BatchInput"),
        ({"Items": [{"grove_id": 0}], "BatchInput": []}, "BatchInput"),
        ({"Items": [{"grove_id": 0}], "BatchInput": {"build_id": "t", "run_id": "1"}}, "store"),
        ({"Items": [{}], "BatchInput": {"store": ".", "build_id": "t", "run_id": None}}, "run_id"),
    ],
)
def test_malformed_grove_batches_name_their_field(batch: dict, field: str) -> None:
    with pytest.raises(RequestError) as caught:
        handlers.train_grove(batch)
    assert caught.value.field == field


def test_a_missing_target_lists_the_columns_and_suggests_the_closest(tmp_path: Path) -> None:
    """``--target churn`` on a table with ``Churn``: the message lists the columns and suggests
    ``Churn`` (same name in another case first)."""
    from groves.data import stream

    source = tmp_path / "c.csv"
    source.write_text(
        "id,Churn,tenure,churned_at\n" + "".join(f"{i},{i % 2},{i},{i}\n" for i in range(20))
    )
    expected = (
        r"^target: column 'churn' is not in '.*c\.csv' \(did you mean 'Churn'\?\); its 4 "
        r"columns: 'id', 'Churn', 'tenure', 'churned_at'$"
    )
    with pytest.raises(RequestError, match=expected):
        stream.open_table(str(source), "churn", None)
    with pytest.raises(RequestError, match=r"\(did you mean 'tenure'\?\)"):
        stream.open_table(str(source), "tenur", None)
