"""What a scikit-learn user reads off ``GrovesClassifier`` and ``GrovesRegressor``: numpydoc
docstrings whose examples run, the forests' ``feature_importances_`` and
``feature_names_in_``, and progress on stderr with ``verbose``."""

from __future__ import annotations

import doctest
import inspect
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_dates import timed

import groves

ESTIMATORS = [groves.GrovesClassifier, groves.GrovesRegressor]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_the_docstring_documents_every_parameter_and_its_examples_run(
    estimator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = inspect.getdoc(estimator)
    titles = re.findall(r"^(\w[\w ]*)\n-+$", doc, re.M)
    assert titles == ["Parameters", "Attributes", "See Also", "Examples"]
    assert len(doc.splitlines()[0]) <= 75 and doc.splitlines()[1] == ""  # a one-line summary
    parameters = doc.split("Parameters\n----------\n")[1].split("\n\nAttributes")[0]
    documented = re.findall(r"^(\w+) : ", parameters, re.M)
    assert documented == list(inspect.signature(estimator).parameters)
    attributes = doc.split("Attributes\n----------\n")[1].split("\n\nSee Also")[0]
    for name in ("model_", "n_features_in_", "feature_names_in_", "feature_importances_"):
        assert re.search(rf"^{name} : ", attributes, re.M), name
    monkeypatch.chdir(tmp_path)
    (test,) = doctest.DocTestFinder(recurse=False).find(estimator, estimator.__name__, globs={})
    assert len(test.examples) >= 5
    result = doctest.DocTestRunner().run(test)
    assert result.failed == 0


def test_importances_and_names_are_the_forests_one_per_input_column(tmp_path: Path) -> None:
    """GIVEN a DataFrame with text, numbers and a timestamp (six features in the forest),
    THEN the estimator's importances pair with its input columns, as a forest's do."""
    frame = timed(300)
    X, y = frame[["carrier", "dep_delay", "departs"]], frame["status"]
    model = groves.GrovesClassifier(6, 3, random_state=0, store=str(tmp_path)).fit(X, y)
    assert list(model.feature_names_in_) == ["carrier", "dep_delay", "departs"]
    forest = model.model_[-1].feature_importances_
    assert forest.shape == (8,)  # carrier, dep_delay, and the timestamp's 6 parts
    np.testing.assert_allclose(model.feature_importances_, [forest[0], forest[1], forest[2:].sum()])
    assert model.feature_importances_.sum() == pytest.approx(1.0)
    plain = groves.GrovesRegressor(4, 2, random_state=0, store=str(tmp_path))
    plain.fit(np.random.default_rng(0).normal(size=(60, 3)), np.arange(60.0))
    assert plain.feature_importances_.shape == (3,) and not hasattr(plain, "feature_names_in_")
    np.testing.assert_array_equal(plain.feature_importances_, plain.model_.feature_importances_)


def test_verbose_shows_the_builds_progress_on_stderr(tmp_path: Path, capsys) -> None:
    X = np.random.default_rng(1).normal(size=(80, 3))
    groves.GrovesRegressor(4, 2, random_state=0, store=str(tmp_path)).fit(X, X[:, 0])
    assert capsys.readouterr().err == ""  # silent by default, as scikit-learn's forests
    groves.GrovesRegressor(4, 2, random_state=0, store=str(tmp_path), verbose=1).fit(X, X[:, 0])
    err = capsys.readouterr().err
    assert re.search(r"^Plan +\d+\.\d\d s", err, re.M), err
    assert "TrainGroves" in err and "2/2 groves" in err and re.search(r"^Merge ", err, re.M)
