"""``groves export NAME --format onnx``: the forest and its text encodings as an ONNX model
that ONNX Runtime scores as ``groves.load_model`` does (within 1e-5), for a classifier with
text, missing and boolean values, a regressor, a model without names and several outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import groves
from groves import cli
from groves.engine.local import run_local
from groves.forest.onnx_export import export_onnx
from groves.store.local import LocalStore

ort = pytest.importorskip("onnxruntime")


def train(store: Path, dataset: str, **request: Any) -> None:
    run = run_local(
        {"build_id": "x", "n_trees": 9, "grove_size": 4, "dataset": dataset, "seed": 2} | request,
        str(store),
        workers=2,
    )
    assert run.status == "SUCCEEDED", run.cause


def table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "city": pd.Series(rng.choice(["oslo", "lima", "pune", "kyiv"], n), dtype=object),
            "rooms": rng.integers(1, 6, n).astype(float),
            "garden": rng.random(n) < 0.4,
            "area": rng.normal(80, 25, n).round(1),
        }
    )
    frame["price"] = frame["area"] * 3 + frame["rooms"] * 10 + frame["garden"] * 40
    frame["band"] = np.where(frame["price"] + (frame["city"] == "oslo") * 60 > 330, "high", "low")
    frame.loc[rng.random(n) < 0.1, "city"] = None
    frame.loc[rng.random(n) < 0.1, "area"] = np.nan
    return frame


def session(path: Path) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def feeds(frame: pd.DataFrame, columns: list[str]) -> dict[str, np.ndarray]:
    """One input per column: text as strings (a gap as ""), the rest as float32."""
    out = {}
    for name in columns:
        values = frame[name]
        if values.dtype == object:
            out[name] = values.fillna("").astype(str).to_numpy().reshape(-1, 1)
        else:
            out[name] = values.astype(np.float32).to_numpy().reshape(-1, 1)
    return out


@pytest.mark.parametrize("estimator", ["classifier", "regressor"])
def test_the_onnx_model_scores_as_the_loaded_model(tmp_path: Path, estimator: str) -> None:
    frame = table(400, 0)
    target = "band" if estimator == "classifier" else "price"
    data = tmp_path / "train.csv"
    frame.drop(columns="price" if target == "band" else "band").to_csv(data, index=False)
    train(tmp_path / "store", str(data), target=target, estimator=estimator)
    out = tmp_path / "model.onnx"
    assert (
        cli.main(
            [
                "export",
                "x",
                "--format",
                "onnx",
                "--out",
                str(out),
                "--store",
                str(tmp_path / "store"),
            ]
        )
        == 0
    )

    new = table(150, 1)[["area", "garden", "city", "rooms"]]  # any column order: by name
    new.loc[:4, "city"] = "rome"  # unseen: missing
    model = groves.load_model(str(tmp_path / "store"), "x")
    got = session(out).run(None, feeds(new, ["city", "rooms", "garden", "area"]))
    if estimator == "regressor":
        np.testing.assert_allclose(got[0][:, 0], model.predict(new), rtol=1e-5, atol=1e-5)
        return
    labels, proba = got
    expected = model.predict_proba(new)
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-5)
    clear = np.abs(expected[:, 0] - expected[:, 1]) > 1e-5  # ties may break either way
    assert clear.mean() > 0.8
    assert labels[clear].tolist() == model.predict(new)[clear].tolist()


def test_a_model_without_names_takes_one_matrix_and_several_outputs_regress(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = np.c_[np.nan_to_num(X[:, 0]) * 2, np.nan_to_num(X[:, 1]) - X[:, 2].clip(0)]
    y[np.isnan(y)] = 0.0
    np.savez(tmp_path / "d.npz", X=X, y=y)
    train(tmp_path / "store", str(tmp_path / "d.npz"), estimator="regressor")
    path = export_onnx(LocalStore(tmp_path / "store"), "x", tmp_path / "m.onnx")
    model = groves.load_model(str(tmp_path / "store"), "x")
    (got,) = session(path).run(None, {"X": X[:100].astype(np.float32)})
    np.testing.assert_allclose(got, model.predict(X[:100]), rtol=1e-5, atol=1e-5)


def test_a_classifier_with_several_outputs_has_a_label_and_probabilities_per_output(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 3))
    y = np.c_[X[:, 0] > 0, (X[:, 1] > 0.3) + (X[:, 2] > 0)].astype(int)
    np.savez(tmp_path / "m.npz", X=X, y=y)
    train(tmp_path / "store", str(tmp_path / "m.npz"))
    path = export_onnx(LocalStore(tmp_path / "store"), "x", tmp_path / "m.onnx")
    model = groves.load_model(str(tmp_path / "store"), "x")
    runner = session(path)
    got = dict(
        zip(
            [o.name for o in runner.get_outputs()],
            runner.run(None, {"X": X.astype(np.float32)}),
            strict=True,
        )
    )
    assert set(got) == {"label_0", "probabilities_0", "label_1", "probabilities_1"}
    for k, expected in enumerate(model.predict_proba(X)):
        np.testing.assert_allclose(got[f"probabilities_{k}"], expected, rtol=0, atol=1e-5)
        top = np.sort(expected, axis=1)
        clear = top[:, -1] - top[:, -2] > 1e-5
        assert got[f"label_{k}"][clear].tolist() == model.predict(X)[clear, k].tolist()
