"""Measures beyond accuracy: a scored run's metrics.json holds what scikit-learn's metrics give
on the held-out rows (from the groves' stored votes), and the run summary, ``groves report``
and ``groves ls`` show them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

import groves
from groves import cli
from groves.data.prepared import read_prepared
from groves.store.artifacts import metrics_key, read_latest, read_plan
from groves.store.codec import get_json
from groves.store.uris import open_store


@pytest.mark.parametrize(
    ("dataset", "estimator"),
    [("breast_cancer", "classifier"), ("iris", "classifier"), ("diabetes", "regressor")],
)
def test_metrics_json_holds_scikit_learns_measures_of_the_model(
    tmp_path: Path, dataset: str, estimator: str
) -> None:
    store = str(tmp_path / "store")
    output = groves.train(
        "m", store=store, dataset=dataset, estimator=estimator, n_trees=8, grove_size=4,
        seed=2, predict=True,
    )  # fmt: skip
    opened = open_store(store)
    record = get_json(opened, metrics_key("m", output["run_id"]))
    split = read_prepared(opened, read_plan(opened, "m", output["run_id"]), ("X_test", "y_test"))
    model = groves.load_model(store, "m")
    X, y = pd.DataFrame(split.X_test, columns=model.feature_names_in_), split.y_test
    scores = record["scores"]
    if estimator == "regressor":
        predicted = model.predict(X)
        assert scores["r2"] == pytest.approx(metrics.r2_score(y, predicted)) == record["score"]
        assert scores["mae"] == pytest.approx(metrics.mean_absolute_error(y, predicted))
        assert scores["rmse"] == pytest.approx(metrics.root_mean_squared_error(y, predicted))
        assert "per_class" not in record
        return
    proba, predicted = model.predict_proba(X), model.predict(X)
    assert scores["accuracy"] == record["score"] == metrics.accuracy_score(y, predicted)
    assert scores["balanced_accuracy"] == pytest.approx(
        metrics.balanced_accuracy_score(y, predicted)
    )
    assert scores["log_loss"] == pytest.approx(metrics.log_loss(y, proba, labels=model.classes_))
    expected_auc = (
        metrics.roc_auc_score(y, proba[:, 1])
        if len(model.classes_) == 2
        else metrics.roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )
    assert scores["roc_auc"] == pytest.approx(expected_auc)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(y, predicted)
    assert [c["class"] for c in record["per_class"]] == model.classes_.tolist()
    np.testing.assert_allclose([c["precision"] for c in record["per_class"]], precision)
    np.testing.assert_allclose([c["recall"] for c in record["per_class"]], recall)
    np.testing.assert_allclose([c["f1"] for c in record["per_class"]], f1)
    assert [c["support"] for c in record["per_class"]] == support.tolist()
    # the execution's output (what the summary prints) carries them too
    assert output["metrics"]["scores"] == scores


def test_the_summary_the_report_and_ls_show_the_measures(tmp_path: Path, capsys) -> None:
    """GIVEN a binary target, WHEN it is trained and scored, THEN the summary prints the
    measures and each class's, the report draws its ROC and precision-recall curves and lists
    each class, and ls shows the primary metric."""
    store = str(tmp_path / "store")
    argv = ["run", "b", "-t", "6", "-g", "3", "--dataset", "breast_cancer", "-p", "--store", store]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "measures  balanced accuracy 0." in out and ", log-loss 0." in out
    assert ", ROC AUC 0." in out and "one-vs-rest" not in out
    assert "class     0  precision 0." in out and "class     1  precision 0." in out
    page = tmp_path / "report"
    assert cli.main(["report", "b", "--store", store, "--out", str(page)]) == 0
    capsys.readouterr()
    assert (page / "roc_pr.png").read_bytes().startswith(b"\x89PNG")
    text = (page / "report.html").read_text()
    assert "ROC and precision-recall curves" in text and "<h2>Each class</h2>" in text
    assert "balanced accuracy 0." in text
    assert cli.main(["ls", "--store", store]) == 0
    assert " accuracy 0." in capsys.readouterr().out


def test_a_run_scored_before_the_measures_still_reports(tmp_path: Path, capsys) -> None:
    """metrics.json written before the measures (no ``scores``) is read as it was."""
    store = tmp_path / "store"
    output = groves.train("o", store=str(store), dataset="iris", n_trees=4, predict=True)
    path = store / metrics_key("o", output["run_id"])
    record = json.loads(path.read_text())
    path.write_text(
        json.dumps({k: v for k, v in record.items() if k not in ("scores", "per_class")})
    )
    assert cli.main(["report", "o", "--store", str(store), "--out", str(tmp_path / "r")]) == 0
    assert "balanced accuracy" not in (tmp_path / "r" / "report.html").read_text()


def test_a_classifier_of_several_outputs_is_measured_output_by_output(
    tmp_path: Path, capsys
) -> None:
    """GIVEN a target of four outputs (labels 0/1, 0/2, 0/3, 0/5), WHEN it is trained and
    scored, THEN metrics.json holds, beside the accuracy of whole rows, each output's accuracy,
    balanced accuracy, log-loss, ROC AUC and classes' precision, recall and F1 as scikit-learn
    computes them on the model's answers; the summary and the report show them."""
    from test_multi_output import heldout, multilabel

    path, _, _ = multilabel(tmp_path)
    store = str(tmp_path / "store")
    argv = ["run", "m", "-t", "9", "-g", "4", "--dataset", str(path), "-p", "--store", store]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    run_id = read_latest(open_store(store), "m")
    record = get_json(open_store(store), metrics_key("m", run_id))
    X, y = heldout(store, "m", run_id)
    model = groves.load_model(store, "m")
    predicted, probas = model.predict(X), model.predict_proba(X)
    assert record["scores"] == {"accuracy": record["score"]}
    assert [o["output"] for o in record["per_output"]] == [0, 1, 2, 3]
    for j, (output, proba) in enumerate(zip(record["per_output"], probas, strict=True)):
        truth, answer, classes = y[:, j], predicted[:, j], model.classes_[j]
        scores = output["scores"]
        assert scores["accuracy"] == metrics.accuracy_score(truth, answer)
        assert scores["balanced_accuracy"] == pytest.approx(
            metrics.balanced_accuracy_score(truth, answer)
        )
        assert scores["log_loss"] == pytest.approx(metrics.log_loss(truth, proba, labels=classes))
        assert scores["roc_auc"] == pytest.approx(metrics.roc_auc_score(truth, proba[:, 1]))
        precision, recall, _, support = metrics.precision_recall_fscore_support(truth, answer)
        assert [c["class"] for c in output["per_class"]] == classes.tolist()
        np.testing.assert_allclose([c["precision"] for c in output["per_class"]], precision)
        np.testing.assert_allclose([c["recall"] for c in output["per_class"]], recall)
        assert [c["support"] for c in output["per_class"]] == support.tolist()
        line = f"output    {j}  accuracy {scores['accuracy']:.4f}, balanced accuracy "
        assert line in out
    assert "  class   5  precision " in out
    page = tmp_path / "report"
    assert cli.main(["report", "m", "--store", store, "--out", str(page)]) == 0
    text = (page / "report.html").read_text()
    assert "<h2>Each output</h2>" in text and "output 3  accuracy 0." in text
