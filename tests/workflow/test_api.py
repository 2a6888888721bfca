"""The Python API (``groves.train``, ``groves.predict``, ``groves.load_model``) and the
scikit-learn estimators, here and on a deployed state machine (moto's engine)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from conftest import BUCKET, named
from moto import mock_aws
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from test_engines import RoutedLambda, definition, for_moto, functions_for

import groves
from groves import api
from groves.engine import console, executions
from groves.errors import AwsError, BuildError, RequestError
from groves.steps.planned import planned_groves
from groves.store.artifacts import read_plan
from groves.store.uris import open_store


def test_train_predict_and_load_model_mirror_the_cli(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    output = groves.train("api", n_trees=6, grove_size=3, dataset="iris", predict=True, store=store)
    assert output["n_groves"] == 2 and output["metrics"]["n_trees"] == 6
    model = groves.load_model(store, "api")
    assert len(model.estimators_) == 6
    written = groves.predict("api", "iris", str(tmp_path / "p.csv"), store=store)
    assert written["n_rows"] == 150 and written["run_id"] == output["run_id"]
    with (tmp_path / "p.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    X, _ = load_iris(return_X_y=True)
    assert [int(float(r["prediction"])) for r in rows] == model.predict(named(model, X)).tolist()


def test_the_api_raises_what_the_cli_prints(tmp_path: Path) -> None:
    with pytest.raises(RequestError) as bad:
        groves.train("api", n_trees=0, store=str(tmp_path))
    assert bad.value.field == "n_trees"
    assert not list(tmp_path.iterdir()), "nothing was written"
    with pytest.raises(RequestError, match="build_id: build 'none' has no committed run"):
        groves.predict("none", "iris", str(tmp_path / "p.csv"), store=str(tmp_path))
    # a failed execution's error, as the Lambda reported it, becomes a BuildError
    cause = json.dumps({"errorMessage": "grove 1 ran out of memory", "errorType": "MemoryError"})
    error = api.failed("MemoryError", cause)
    assert isinstance(error, BuildError) and str(error) == "MemoryError: grove 1 ran out of memory"


def test_aws_that_cannot_be_used_is_one_line_not_botocores_traceback(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """GIVEN no AWS region, or a stack that does not exist, WHEN a deployed call is made,
    THEN it raises ``AwsError`` with the line ``groves start`` prints, botocore's error
    suppressed (no botocore frames in the traceback)."""
    with mock_aws():
        with pytest.raises(AwsError) as missing:
            groves.train("x", stack_name="nope")
        with pytest.raises(AwsError) as estimator:
            groves.GrovesClassifier(stack_name="nope").fit([[0], [1]] * 4, [0, 1] * 4)
    for raised in (missing, estimator):
        assert str(raised.value) == (
            "stack 'nope' does not exist in this region: deploy it with sam deploy, "
            "or pass stack_name or state_machine_arn"
        )
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(AwsError, match=r"^no AWS region: set AWS_DEFAULT_REGION") as no_region:
        groves.train("x", n_trees=4, stack_name="groves")
    assert no_region.value.__suppress_context__ and no_region.value.__cause__ is None


def test_estimators_are_plain_scikit_learn_estimators(tmp_path: Path) -> None:
    estimator = groves.GrovesClassifier(12, 4, max_depth=3, random_state=0, store=str(tmp_path))
    params = estimator.get_params()
    assert params["n_estimators"] == 12 and params["max_depth"] == 3
    copy = clone(estimator).set_params(max_depth=5)
    assert copy.get_params()["max_depth"] == 5 and estimator.max_depth == 3
    assert not hasattr(copy, "model_")
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    estimator.fit(X, labels)
    assert list(estimator.classes_) == ["setosa", "versicolor", "virginica"]
    proba = estimator.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # predictions are the committed plain forest's, with the labels as given
    model = groves.load_model(str(tmp_path), "sklearn-classifier", estimator.run_id_)
    np.testing.assert_array_equal(estimator.predict(X), estimator.classes_[model.predict(X)])
    assert estimator.score(X, labels) > 0.9 and estimator.holdout_score_ is None
    assert estimator.model_.get_params()["max_depth"] == 3
    with pytest.raises(ValueError, match="features"):
        estimator.predict(X[:, :3])


def test_fit_trains_on_every_row_unless_asked_to_hold_some_out(tmp_path: Path) -> None:
    """As scikit-learn's forests: every row given to fit trains (cross-validation is the
    caller's); test_size above 0 holds out that share and scores the forest on it."""
    X, y = load_iris(return_X_y=True)
    store = str(tmp_path)
    everything = groves.GrovesClassifier(6, 3, random_state=0, store=store).fit(X, y)
    plan = read_plan(open_store(store), "sklearn-classifier", everything.run_id_)
    assert (plan["data"]["n_train"], plan["data"]["n_test"]) == (150, 0)
    # every grove is the forest scikit-learn fits on all the rows with the grove's seed
    seed = planned_groves(plan["spec"])[0]["seed"]
    alone = RandomForestClassifier(3, random_state=seed).fit(X.astype(np.float32), y)
    np.testing.assert_array_equal(
        everything.model_.estimators_[0].tree_.value, alone.estimators_[0].tree_.value
    )
    held = groves.GrovesClassifier(6, 3, random_state=0, test_size=0.2, store=store).fit(X, y)
    plan = read_plan(open_store(store), "sklearn-classifier", held.run_id_)
    assert (plan["data"]["n_train"], plan["data"]["n_test"]) == (120, 30)
    assert 0.8 < held.holdout_score_ <= 1.0


def test_cross_validation_and_search_work_and_match_one_forest(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    ours = groves.GrovesClassifier(20, 5, random_state=0, store=str(tmp_path))
    theirs = RandomForestClassifier(20, random_state=0)
    scores = cross_val_score(ours, X, y, cv=3)
    assert (
        len(scores) == 3 and abs(scores.mean() - cross_val_score(theirs, X, y, cv=3).mean()) < 0.08
    )
    runs = list((tmp_path / "sklearn-classifier" / "runs").iterdir())
    assert len(runs) == 3, "each fold is a run of its own"
    search = GridSearchCV(ours, {"min_samples_leaf": [50, 1]}, cv=2).fit(X, y)
    assert search.best_params_ == {"min_samples_leaf": 1}  # leaves of 50 rows cannot split
    assert search.best_estimator_.model_.get_params()["min_samples_leaf"] == 1


def test_a_regressor_in_a_pipeline(tmp_path: Path) -> None:
    X, y = load_diabetes(return_X_y=True)
    pipeline = make_pipeline(
        StandardScaler(), groves.GrovesRegressor(20, 10, random_state=1, store=str(tmp_path))
    )
    pipeline.fit(X[:300], y[:300])
    assert pipeline.score(X[300:], y[300:]) > 0.2
    assert pipeline[-1].model_.__class__.__name__ == "RandomForestRegressor"


def iris_frame() -> tuple[pd.DataFrame, np.ndarray]:
    """iris as a DataFrame with a text column and gaps."""
    X, y = load_iris(return_X_y=True)
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    frame["kind"] = np.where(X[:, 2] > 3, "long", None)
    frame.loc[::9, "sw"] = np.nan
    return frame, y


@pytest.mark.parametrize("rows", ["array", "dataframe"])
def test_an_estimator_fits_on_the_deployed_state_machine(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, rows: str
) -> None:
    """``stack_name``: the data goes to the stack's store, the build runs on its state machine
    (moto's engine, every Lambda invocation routed to the handlers), the model comes back."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    routed = RoutedLambda(functions_for({}))
    real = lambda_eval_utils.boto_client_for
    monkeypatch.setattr(
        lambda_eval_utils,
        "boto_client_for",
        lambda region, service, state_credentials=None: (
            routed if service == "lambda" else real(region, service, state_credentials)
        ),
    )
    pause = time.sleep
    monkeypatch.setattr(console.time, "sleep", lambda seconds: pause(0.05))  # poll often
    store = f"s3://{BUCKET}/deployed"
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        machine = boto3.client("stepfunctions").create_state_machine(
            name="groves",
            definition=json.dumps(for_moto(definition(store))),
            roleArn="arn:aws:iam::123456789012:role/r",
        )
        outputs = {"StateMachineArn": machine["stateMachineArn"], "StoreUri": store}
        template: dict[str, Any] = {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {k: {"Value": v} for k, v in outputs.items()},
        }
        boto3.client("cloudformation").create_stack(
            StackName="groves", TemplateBody=json.dumps(template)
        )
        # an array goes to the stack's store as .npz; a DataFrame with a text column and gaps
        # as Parquet, which the deployed plan reads and encodes
        X, y = load_iris(return_X_y=True) if rows == "array" else iris_frame()
        estimator = groves.GrovesClassifier(6, 3, random_state=0, stack_name="groves")
        estimator.fit(X, y, sample_weight=np.ones(len(y)))
        assert estimator.score(X, y) > 0.9
        if rows == "dataframe":
            assert list(estimator.feature_names_in_) == ["sl", "sw", "pl", "pw", "kind"]
        keys = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="deployed/")["Contents"]
        names = [k["Key"] for k in keys]
        suffix = ".npz" if rows == "array" else ".parquet"
        assert any(n.startswith("deployed/inputs/") and n.endswith(suffix) for n in names)
        assert f"deployed/sklearn-classifier/runs/{estimator.run_id_}/manifest.json" in names
        # and the deployed execution's history reads back through get_execution_history
        sfn = boto3.client("stepfunctions")
        (execution,) = sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]
        history = executions.deployed(MapRunChildrenUnlisted(sfn), execution["executionArn"])
    table = executions.table(history)
    assert "SUCCEEDED" in table[0]
    events = [line.split()[2] for line in table[2 : 2 + len(history["events"])]]
    assert events[0] == "ExecutionStarted" and events[-1] == "ExecutionSucceeded"
    assert "MapRunStarted" in events and "LambdaFunctionSucceeded" in events
    assert any(line.startswith("map run arn:aws:states:") for line in table)


class MapRunChildrenUnlisted:
    """moto cannot list a Map Run's child executions (``list_executions(mapRunArn=...)``
    fails inside moto): this client lists none, and passes every other call to moto's."""

    def __init__(self, sfn: Any) -> None:
        self.sfn = sfn

    def get_paginator(self, name: str) -> Any:
        if name == "list_executions":
            return types.SimpleNamespace(paginate=lambda **kwargs: [{"executions": []}])
        return self.sfn.get_paginator(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sfn, name)


NO_GUARD = """
import sys
import groves
store = sys.argv[1]
out = groves.train("plain", n_trees=4, grove_size=2, dataset="iris", store=store, predict=True)
print("score", out["metrics"]["score"])
"""


@pytest.mark.parametrize("how", ["script", "stdin"])
def test_a_script_without_a_main_guard_trains(tmp_path: Path, how: str) -> None:
    """Workers never re-import the caller's ``__main__``: a plain script, a notebook or
    ``python -`` trains as scikit-learn's ``n_jobs`` does, without ``if __name__ == ...``."""
    script = tmp_path / "plain.py"
    script.write_text(NO_GUARD)
    store = str(tmp_path / "store")
    command = (
        [sys.executable, str(script), store] if how == "script" else [sys.executable, "-", store]
    )
    done = subprocess.run(
        command,
        input=NO_GUARD if how == "stdin" else None,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("score ") == 1  # the script ran once, not again in each worker


def test_a_dataframe_with_integer_column_names_fits_and_predicts(tmp_path: Path) -> None:
    """pandas' default names (0, 1, ...) are written as '0', '1' in the build's table: the
    estimator predicts such a DataFrame by those names, text column included, without
    scikit-learn's 'X does not have valid feature names' (an error in this suite)."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({0: rng.normal(size=120), 1: rng.choice(["a", "b", None], 120)})
    y = (X[0] > 0) & (X[1] != "b")
    estimator = groves.GrovesClassifier(4, 2, random_state=0, store=str(tmp_path)).fit(X, y)
    assert not hasattr(estimator, "feature_names_in_")  # as scikit-learn: names are not text
    assert estimator.score(X, y) > 0.8
    numbers = groves.GrovesRegressor(4, 2, random_state=0, store=str(tmp_path))
    assert numbers.fit(X[[0]], X[0]).predict(X[[0]]).shape == (120,)
