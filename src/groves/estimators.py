"""scikit-learn estimators whose ``fit`` runs a groves build: ``GrovesClassifier`` and
``GrovesRegressor``.

``fit(X, y)`` writes the rows to the store as an ``.npz`` (``inputs/<sha256>.npz``), trains a
build on them with the given forest parameters, here or on the deployed state machine
(``stack_name``: the stack's state machine and store), and loads the committed run's plain
forest as ``model_`` (verified against its manifest); ``predict``, ``predict_proba`` and
``score`` use it. As every build does, a build holds out ``test_size`` of the rows to score the
forest (``holdout_score_``) and trains on the rest. Each ``fit`` is a run of its own of build
``build_id``: cross-validation folds never mix.

They are plain estimators: ``clone``, ``get_params``/``set_params``, ``Pipeline``,
``GridSearchCV`` and ``cross_val_score`` work with them.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, check_X_y, validate_data

from groves import api
from groves.plan import TREE_PARAMS
from groves.request import DEFAULTS
from groves.storage import DEFAULT_STORE, open_store


def _keep(estimator: BaseEstimator, arguments: dict[str, Any]) -> None:
    """Set each ``__init__`` argument as the attribute of its name, as scikit-learn expects
    (``get_params`` reads them back; nothing is checked or changed until ``fit``)."""
    for name, value in arguments.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


class _GrovesForest(BaseEstimator):
    """What both estimators share; subclasses set ``_estimator`` and their ``__init__``."""

    _estimator = "classifier"
    _forest_params: tuple[str, ...] = TREE_PARAMS

    def _request(self, dataset: str) -> dict[str, Any]:
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        return {
            "n_trees": self.n_estimators,
            "grove_size": self.grove_size,
            "dataset": dataset,
            "estimator": self._estimator,
            "test_size": self.test_size,
            "seed": int(seed),
            "params": {name: getattr(self, name) for name in self._forest_params},
            "max_concurrency": self.max_concurrency,
            "groves_per_invocation": self.groves_per_invocation,
            "predict": True,
        }

    def _fit(self, X: Any, y: np.ndarray) -> Any:
        """Train a build on ``X`` and ``y`` (labels as given) and load its forest."""
        deployed = self.stack_name is not None or self.state_machine_arn is not None
        store_uri = self.store
        if deployed and self.state_machine_arn is None:
            store_uri = api.deployed_store(self.stack_name)
        store = open_store(store_uri)
        buffer = io.BytesIO()
        np.savez(buffer, X=np.asarray(X, dtype=np.float32), y=y)
        blob = buffer.getvalue()
        key = f"inputs/{hashlib.sha256(blob).hexdigest()}.npz"
        if not store.exists(key):
            store.put_bytes(key, blob)
        build_id = self.build_id or f"sklearn-{self._estimator}"
        output = api.train(
            build_id,
            store=store_uri,
            stack_name=self.stack_name,
            state_machine_arn=self.state_machine_arn,
            **self._request(f"{store.uri}/{key}"),
        )
        self.build_id_, self.run_id_ = build_id, output["run_id"]
        self.holdout_score_ = output["metrics"]["score"]
        self.model_ = api.load_model(store, build_id, self.run_id_)
        self.n_features_in_ = self.model_.n_features_in_
        return self

    def _check(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        return validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float32)


class GrovesClassifier(ClassifierMixin, _GrovesForest):
    """A random forest classifier trained as groves (see the module's docstring)."""

    _estimator = "classifier"
    _forest_params = (*TREE_PARAMS, "class_weight")

    def __init__(
        self,
        n_estimators: int = DEFAULTS["n_trees"],
        grove_size: int = DEFAULTS["grove_size"],
        *,
        criterion: str = "gini",
        max_depth: int | None = None,
        min_samples_split: int | float = 2,
        min_samples_leaf: int | float = 1,
        min_weight_fraction_leaf: float = 0.0,
        max_features: Any = "sqrt",
        max_leaf_nodes: int | None = None,
        min_impurity_decrease: float = 0.0,
        bootstrap: bool = True,
        max_samples: int | float | None = None,
        ccp_alpha: float = 0.0,
        class_weight: Any = None,
        random_state: Any = None,
        test_size: float = DEFAULTS["test_size"],
        store: str = DEFAULT_STORE,
        build_id: str | None = None,
        max_concurrency: int = DEFAULTS["max_concurrency"],
        groves_per_invocation: int = DEFAULTS["groves_per_invocation"],
        stack_name: str | None = None,
        state_machine_arn: str | None = None,
    ) -> None:
        _keep(self, locals())

    def fit(self, X: Any, y: Any) -> GrovesClassifier:
        """Train a build on the rows; labels of any type (kept as ``classes_``)."""
        X, y = check_X_y(X, y, ensure_all_finite="allow-nan", dtype=np.float32)
        self.classes_, codes = np.unique(y, return_inverse=True)
        return self._fit(X, codes)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.model_.predict_proba(self._check(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class, as the forest's own ``predict`` picks it."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class GrovesRegressor(RegressorMixin, _GrovesForest):
    """A random forest regressor trained as groves (see the module's docstring)."""

    _estimator = "regressor"

    def __init__(
        self,
        n_estimators: int = DEFAULTS["n_trees"],
        grove_size: int = DEFAULTS["grove_size"],
        *,
        criterion: str = "squared_error",
        max_depth: int | None = None,
        min_samples_split: int | float = 2,
        min_samples_leaf: int | float = 1,
        min_weight_fraction_leaf: float = 0.0,
        max_features: Any = 1.0,
        max_leaf_nodes: int | None = None,
        min_impurity_decrease: float = 0.0,
        bootstrap: bool = True,
        max_samples: int | float | None = None,
        ccp_alpha: float = 0.0,
        random_state: Any = None,
        test_size: float = DEFAULTS["test_size"],
        store: str = DEFAULT_STORE,
        build_id: str | None = None,
        max_concurrency: int = DEFAULTS["max_concurrency"],
        groves_per_invocation: int = DEFAULTS["groves_per_invocation"],
        stack_name: str | None = None,
        state_machine_arn: str | None = None,
    ) -> None:
        _keep(self, locals())

    def fit(self, X: Any, y: Any) -> GrovesRegressor:
        X, y = check_X_y(X, y, ensure_all_finite="allow-nan", dtype=np.float32, y_numeric=True)
        return self._fit(X, y)

    def predict(self, X: Any) -> np.ndarray:
        return self.model_.predict(self._check(X))
