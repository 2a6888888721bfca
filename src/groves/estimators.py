"""scikit-learn estimators whose ``fit`` runs a groves build: ``GrovesClassifier`` and
``GrovesRegressor``.

``fit(X, y, sample_weight=None)`` writes the rows to the store (an array as
``inputs/<sha256>.npz``; a DataFrame, text columns included, as ``inputs/<sha256>.parquet``,
which the build reads and encodes as any table), trains a build on them with the given forest
parameters and the weights, here or on the deployed state machine (``stack_name``: the stack's
state machine and store), and keeps what ``groves.load_model`` returns as ``model_`` (the plain
forest, or the ``Pipeline`` of the text encoding and the forest; verified against the
manifest); ``predict``, ``predict_proba`` and ``score`` use it. ``feature_names_in_`` and
``n_features_in_`` are set as scikit-learn sets them. ``fit`` trains on every row it is given,
as scikit-learn's forests do (cross-validation is the caller's); ``test_size`` above 0 holds
out that share of them instead, and the forest's score on them is ``holdout_score_``.
Each ``fit`` is a run of its own of build ``build_id``: cross-validation folds never mix.
``memory_mb`` holds every function of a local ``fit`` to that memory size, as
``groves run --memory-mb`` does; ``verbose`` shows the build's progress on stderr, as
``groves run`` does. ``feature_importances_`` are the forest's, one per input column (a date
column's parts summed). Each class's docstring lists every parameter (numpydoc).

They are plain estimators: ``clone``, ``get_params``/``set_params``, ``Pipeline``,
``GridSearchCV`` and ``cross_val_score`` work with them.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import textwrap
import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.sparse import issparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import DataConversionWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from groves import api
from groves.data.datasets import MIN_ROWS
from groves.data.encoding import input_name
from groves.data.rows import feature_columns
from groves.engine.limits import MEMORY_RANGE
from groves.steps.request import DEFAULTS, FOREST_PARAMS, TRAIN, Field
from groves.store.artifacts import read_manifest
from groves.store.uris import DEFAULT_STORE, open_store


def _keep(estimator: BaseEstimator, arguments: dict[str, Any]) -> None:
    """Set each ``__init__`` argument as the attribute of its name, as scikit-learn expects
    (``get_params`` reads them back; nothing is checked or changed until ``fit``)."""
    for name, value in arguments.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


# The request fields a parameter of the same meaning, type and bounds sets, by the parameter's
# name (``Field.estimator``); ``fit`` sets the others (the rows, the seed, the forest's
# parameters) or leaves them at the request's default.
REQUEST_PARAMETERS = {f.estimator: f for f in TRAIN if f.estimator.isidentifier()}
# Where the estimators' default is not the request's: fit trains on every row, as
# scikit-learn's forests do.
OWN_DEFAULTS = {"test_size": 0.0}
_TYPES = {"integer": ("int", Integral), "number": ("float", Real)}

# The parameters that are neither a request field nor the forest's: (type, scikit-learn's
# constraints, description).
RUN_PARAMETERS: dict[str, tuple[str, list[Any], str]] = {
    "random_state": (
        "int, RandomState instance or None",
        ["random_state"],
        "Seeds the build: its split and every grove's seed derive from it. An int gives the "
        "same model on every ``fit`` of the same rows.",
    ),
    "store": (
        "str",
        [str],
        "Where builds are written: a directory or ``s3://bucket[/prefix]``. Ignored when "
        "``stack_name`` names a deployed stack without ``state_machine_arn`` (its store is "
        "used).",
    ),
    "build_id": (
        "str",
        [str, None],
        "The build each ``fit`` commits a run of; None: ``sklearn-{estimator}``.",
    ),
    "memory_mb": (
        "int",
        [Interval(Integral, *MEMORY_RANGE, closed="both"), None],
        f"Hold every function of a local ``fit`` to this many MB ({MEMORY_RANGE[0]} to "
        f"{MEMORY_RANGE[1]:,}), as Lambda would; None: each function's memory size in "
        "``template.yaml``.",
    ),
    "stack_name": (
        "str",
        [str, None],
        "Train on this deployed stack's state machine (AWS) instead of here.",
    ),
    "state_machine_arn": (
        "str",
        [str, None],
        "Train on this deployed state machine (AWS) instead of here.",
    ),
    "verbose": (
        "int",
        ["verbose"],
        "Above 0, show the build's progress on stderr: each step with its seconds, and the "
        "groves trained (a bar on a terminal, else a line per tenth of them).",
    ),
}


def _constraint(field: Field) -> list[Any]:
    """A request field's type and bounds as scikit-learn's parameter constraints."""
    interval = Interval(_TYPES[field.kind][1], field.low, field.high, closed=field.closed)
    return [interval, None] if field.null else [interval]


def _constraints(forest: type[BaseEstimator], estimator: str) -> dict[str, list[Any]]:
    """An estimator's ``_parameter_constraints``: its request fields', its forest's own (as
    scikit-learn declares them) and its run's."""
    return {
        **{name: _constraint(field) for name, field in REQUEST_PARAMETERS.items()},
        **{name: forest._parameter_constraints[name] for name in FOREST_PARAMS[estimator]},
        **{name: constraints for name, (_, constraints, _) in RUN_PARAMETERS.items()},
    }


class _GrovesForest(BaseEstimator):
    """What both estimators share; subclasses set ``_estimator``, ``_parameter_constraints``
    and their ``__init__``."""

    _estimator = "classifier"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # as scikit-learn's forests: NaN is a missing value
        tags.input_tags.sparse = True  # densified when written for the build
        tags.target_tags.multi_output = True  # y of one column per output, as the forests
        return tags

    def _request(self, dataset: str) -> dict[str, Any]:
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        return {
            **{field.name: getattr(self, name) for name, field in REQUEST_PARAMETERS.items()},
            "dataset": dataset,
            "estimator": self._estimator,
            "seed": int(seed),
            "params": {name: self._param(name) for name in FOREST_PARAMS[self._estimator]},
            "predict": self.test_size > 0,
        }

    def _param(self, name: str) -> Any:
        """A forest parameter as the request carries it: a ``class_weight`` dict maps the
        labels the build sees (the codes of ``classes_``) to their weights."""
        value = getattr(self, name)
        if name == "class_weight" and isinstance(value, dict):
            if isinstance(self.classes_, list):
                raise ValueError(
                    "class_weight: a dict applies to one output; with several outputs use "
                    "'balanced', 'balanced_subsample' or None"
                )
            labels = list(self.classes_)
            unknown = [label for label in value if label not in labels]
            if unknown:
                raise ValueError(f"class_weight: class label {unknown[0]!r} not present in y")
            return {str(labels.index(label)): weight for label, weight in value.items()}
        return value

    def _fit(self, X: Any, y: np.ndarray, sample_weight: Any) -> Any:
        """Train a build on ``X`` and ``y`` (labels as given) and load its model."""
        deployed = self.stack_name is not None or self.state_machine_arn is not None
        store_uri = self.store
        if deployed and self.state_machine_arn is None:
            store_uri = api.deployed_store(self.stack_name)
        store = open_store(store_uri)
        rows, suffix, columns = _rows_file(X, y, sample_weight)
        key = f"inputs/{hashlib.sha256(rows).hexdigest()}.{suffix}"
        if not store.exists(key):
            store.put_bytes(key, rows)
        build_id = self.build_id or f"sklearn-{self._estimator}"
        output = api.train(
            build_id,
            store=store_uri,
            stack_name=self.stack_name,
            state_machine_arn=self.state_machine_arn,
            memory_mb=self.memory_mb,
            progress=bool(self.verbose),
            **self._request(f"{store.uri}/{key}"),
            **columns,
        )
        self.build_id_, self.run_id_ = build_id, output["run_id"]
        self.holdout_score_ = output["metrics"]["score"] if "metrics" in output else None
        self.model_ = api.load_model(store, build_id, self.run_id_)
        data = read_manifest(store, build_id, self.run_id_)["data"]
        self._inputs = [input_name(c) for c in feature_columns(data)]  # each forest feature's
        for warning in data.get("warnings", []):  # what plan warned of: a column like an id
            warnings.warn(warning, UserWarning, stacklevel=3)
        return self

    @property
    def feature_importances_(self) -> np.ndarray:
        """The forest's impurity-based importances, one per input column, in the order of
        ``feature_names_in_`` (a date column's parts summed: importances add up)."""
        check_is_fitted(self, "model_")
        forest = self.model_[-1] if hasattr(self.model_, "steps") else self.model_
        importances = forest.feature_importances_
        inputs = np.asarray(self._inputs, dtype=object)
        names = list(dict.fromkeys(self._inputs))
        if len(names) == len(inputs):
            return importances
        return np.array([importances[inputs == name].sum() for name in names])

    def _check(self, X: Any) -> Any:
        """Rows to predict: a DataFrame by its columns' names as the build's table has them
        (text: a column named 0 was written as '0'; the model matches columns by name), an
        array checked as scikit-learn checks it."""
        check_is_fitted(self, "model_")
        if _is_frame(X):
            validate_data(self, X, reset=False, skip_check_array=True)
            return X.rename(columns=str)
        return validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float32)

    def _validate_fit(
        self, X: Any, y: Any, sample_weight: Any, **checks: Any
    ) -> tuple[Any, Any, Any]:
        """``X`` as given if a DataFrame (text columns are encoded by the build), else a
        float32 array (a sparse one densified); ``y`` checked; ``sample_weight`` one
        non-negative number per row, or ``None``; the parameters checked first, by their
        constraints."""
        self._validate_params()
        if _is_frame(X):
            validate_data(self, X, skip_check_array=True)
            if np.ndim(y) == 2 and np.shape(y)[1] > 1:
                raise ValueError(
                    f"y has {np.shape(y)[1]} outputs: several outputs are trained from an array "
                    "X (a DataFrame X, whose text columns groves encodes, takes one y column)"
                )
            y = column_or_1d(y, warn=True)  # a DataFrame's rows take one target column
            if len(y) != len(X):
                raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
            if checks.get("y_numeric"):
                y = y.astype(np.float64)
        else:
            X, y = validate_data(
                self,
                X,
                y,
                accept_sparse=("csr", "csc"),
                ensure_all_finite="allow-nan",
                dtype=np.float32,
                multi_output=True,
                **checks,
            )
            if issparse(X):
                X = X.toarray()
            if y.ndim == 2 and y.shape[1] == 1:
                warnings.warn(
                    "A column-vector y was passed when a 1d array was expected. Please change "
                    "the shape of y to (n_samples,), for example using ravel().",
                    DataConversionWarning,
                    stacklevel=3,
                )
                y = y[:, 0]
        if len(y) < MIN_ROWS:
            raise ValueError(f"n_samples={len(y)}: a groves build needs at least {MIN_ROWS} rows")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        return X, y, sample_weight


TARGET, WEIGHT = "__groves_target__", "__groves_weight__"

# The estimators' docstrings (numpydoc), one text for what they share: ``_docstring``.
_SUMMARY = {
    "classifier": "A random forest classifier trained as groves, here or on AWS.",
    "regressor": "A random forest regressor trained as groves, here or on AWS.",
}
# The forest's parameters: (type, description; ``{forest}`` is the forest's class name).
FOREST_PARAMETERS = {
    "criterion": ("str", "The function measuring a split's quality, as in ``{forest}``."),
    "max_depth": (
        "int",
        "The maximum depth of a tree; None grows each until its leaves are pure or hold fewer "
        "than ``min_samples_split`` rows.",
    ),
    "min_samples_split": (
        "int or float",
        "The minimum number of rows (a float: a share of them) to split a node.",
    ),
    "min_samples_leaf": (
        "int or float",
        "The minimum number of rows (a float: a share of them) in a leaf.",
    ),
    "min_weight_fraction_leaf": (
        "float",
        "The minimum share of the total sample weight in a leaf.",
    ),
    "max_features": (
        '{{"sqrt", "log2"}}, int, float or None',
        "The number of features to consider at each split, as in ``{forest}``.",
    ),
    "max_leaf_nodes": (
        "int",
        "Grow trees with at most this many leaves, best first; None: unlimited.",
    ),
    "min_impurity_decrease": (
        "float",
        "Split a node only if the split decreases the impurity by at least this much.",
    ),
    "bootstrap": (
        "bool",
        "Whether each tree fits on a bootstrap sample of its grove's rows (else on all of them).",
    ),
    "max_samples": (
        "int or float",
        "With ``bootstrap``, the rows (a float: a share of them) each tree draws.",
    ),
    "ccp_alpha": (
        "float",
        "The complexity parameter of minimal cost-complexity pruning; 0 prunes nothing.",
    ),
    "class_weight": (
        '{{"balanced", "balanced_subsample"}}, dict or None',
        "Weights of the classes, as in ``RandomForestClassifier``; a dict maps class labels (as "
        "given in ``y``) to weights, for one output only.",
    ),
}
# What the estimators add to a request field's help.
REQUEST_NOTES = {
    "test_size": "The forest's score on them is ``holdout_score_``; 0 (the default) trains on "
    "every row, as scikit-learn's forests do.",
}
_ATTRIBUTES = """\
model_ : RandomForest{Kind} or Pipeline
    The committed model, as ``groves.load_model`` returns it: the forest, or with text or
    date columns (a DataFrame ``X``), the ``Pipeline`` of their encoding and the forest.{classes}
n_features_in_ : int
    The number of features seen during ``fit``.
feature_names_in_ : ndarray of shape (n_features_in_,)
    The column names of a DataFrame ``X`` whose names are all text.
feature_importances_ : ndarray of shape (n_features_in_,)
    The forest's impurity-based importances, one per input column (a date column's parts
    summed).
build_id_ : str
    The build the model was committed to.
run_id_ : str
    The committed run of ``build_id_`` that ``fit`` trained.
holdout_score_ : float or None
    The model's {metric} on the held-out rows when ``test_size`` is above 0, else None.
"""
_CLASSES = """
classes_ : ndarray of shape (n_classes,) or list of ndarray
    The class labels (one array per output with several outputs)."""
_SEE_ALSO = """\
sklearn.ensemble.{forest} : The forest each build commits.
groves.load_model : The committed model of a build, from its verified groves.
"""
_EXAMPLES = """\
>>> import tempfile
>>> from sklearn.datasets import {load}
>>> from groves import {name}
>>> X, y = {load}(return_X_y=True)
>>> model = {name}(n_estimators=20, grove_size=5, random_state=0,
...                 store=tempfile.mkdtemp()).fit(X, y)
>>> model.predict(X[:3]).shape
(3,)
>>> model.feature_importances_.shape
({n_features},)
>>> round(model.score(X, y), 1) >= 0.{floor}
True
"""


def _section(title: str, body: str) -> str:
    return f"{title}\n{'-' * len(title)}\n{body}"


def _parameter(name: str, default: Any, forest: str) -> str:
    """A parameter's numpydoc entry: a request field's from its help (``Field.help``)."""
    if name in REQUEST_PARAMETERS:
        field = REQUEST_PARAMETERS[name]
        kind = _TYPES[field.kind][0] + (" or None" if field.null else "")
        text = f"{field.help[0].upper()}{field.help[1:]}. {REQUEST_NOTES.get(name, '')}"
    elif name in FOREST_PARAMETERS:
        kind, text = (part.format(forest=forest) for part in FOREST_PARAMETERS[name])
    else:
        kind, _, text = RUN_PARAMETERS[name]
    shown = f'"{default}"' if isinstance(default, str) else default
    body = textwrap.fill(text.strip(), 92, initial_indent="    ", subsequent_indent="    ")
    return f"{name} : {kind}, default={shown}\n{body}\n"


def _docstring(estimator: type[_GrovesForest]) -> str:
    """The numpydoc docstring of ``GrovesClassifier`` or ``GrovesRegressor``, each parameter's
    entry derived from its definition."""
    classify = estimator._estimator == "classifier"
    forest = "RandomForestClassifier" if classify else "RandomForestRegressor"
    parameters = "".join(
        _parameter(name, p.default, forest)
        for name, p in inspect.signature(estimator).parameters.items()
    ).rstrip()
    attributes = _ATTRIBUTES.format(
        Kind="Classifier" if classify else "Regressor",
        classes=_CLASSES if classify else "",
        metric="accuracy" if classify else "R^2",
    )
    examples = _EXAMPLES.format(
        load="load_iris" if classify else "load_diabetes",
        name=estimator.__name__,
        n_features=4 if classify else 10,
        floor=9 if classify else 7,
    )
    sections = [
        _SUMMARY[estimator._estimator],
        f"``{forest}``'s parameters: ``fit`` writes the rows to the store, trains a\n"
        "groves build on them (here, or on the deployed state machine) and keeps its committed\n"
        "model; see ``groves.estimators``, and docs/request.md for the request it sends.",
        _section("Parameters", parameters),
        _section("Attributes", attributes),
        _section("See Also", _SEE_ALSO.format(forest=forest)),
        _section("Examples", examples),
    ]
    return "\n\n".join(sections)


def _is_frame(X: Any) -> bool:
    return hasattr(X, "columns") and not isinstance(X, np.ndarray)


def _rows_file(X: Any, y: np.ndarray, w: np.ndarray | None) -> tuple[bytes, str, dict[str, str]]:
    """The rows as the file a build reads: a DataFrame as Parquet (its columns by name, the
    target and weights in columns of their own), an array as ``.npz`` (``X``, ``y``, ``w``);
    its suffix, and the request fields that name the target and weights."""
    if _is_frame(X):
        table = pa.table(X)
        taken = {TARGET, WEIGHT} & set(table.column_names)
        if taken:
            raise ValueError(f"X has a column named {taken.pop()!r}, which groves uses itself")
        table = table.append_column(TARGET, pa.array(y))
        fields = {"target": TARGET}
        if w is not None:
            table = table.append_column(WEIGHT, pa.array(w))
            fields["weight"] = WEIGHT
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return sink.getvalue().to_pybytes(), "parquet", fields
    buffer = io.BytesIO()
    arrays = {"X": np.asarray(X, dtype=np.float32), "y": y}
    if w is not None:
        arrays["w"] = w
    np.savez(buffer, **arrays)
    return buffer.getvalue(), "npz", ({"weight": "w"} if w is not None else {})


class GrovesClassifier(ClassifierMixin, _GrovesForest):
    _estimator = "classifier"
    _parameter_constraints = _constraints(RandomForestClassifier, "classifier")

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True  # a 0/1 column per label, as the forests
        return tags

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
        test_size: float = OWN_DEFAULTS["test_size"],
        store: str = DEFAULT_STORE,
        build_id: str | None = None,
        max_concurrency: int = DEFAULTS["max_concurrency"],
        groves_per_invocation: int = DEFAULTS["groves_per_invocation"],
        memory_mb: int | None = None,
        stack_name: str | None = None,
        state_machine_arn: str | None = None,
        verbose: int = 0,
    ) -> None:
        _keep(self, locals())

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> GrovesClassifier:
        """Train a build on the rows (an array, or a DataFrame with text columns too); labels
        of any type (kept as ``classes_``); ``sample_weight`` reaches every grove."""
        X, y, sample_weight = self._validate_fit(X, y, sample_weight)
        check_classification_targets(y)
        if y.ndim == 1:
            self.classes_, codes = np.unique(y, return_inverse=True)
        else:  # one output per column: classes_ is a list, as in scikit-learn's forests
            found = [np.unique(column, return_inverse=True) for column in y.T]
            self.classes_ = [classes for classes, _ in found]
            codes = np.column_stack([inverse for _, inverse in found])
        return self._fit(X, codes, sample_weight)

    def predict_proba(self, X: Any) -> np.ndarray | list[np.ndarray]:
        """Class probabilities; a list of them, one per output, with several outputs."""
        X = self._check(X)
        return self.model_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class (of each output), as the forest's own ``predict`` picks it."""
        proba = self.predict_proba(X)
        if isinstance(proba, list):
            picked = [c[np.argmax(p, axis=1)] for c, p in zip(self.classes_, proba, strict=True)]
            return np.column_stack(picked)
        return self.classes_[np.argmax(proba, axis=1)]


class GrovesRegressor(RegressorMixin, _GrovesForest):
    _estimator = "regressor"
    _parameter_constraints = _constraints(RandomForestRegressor, "regressor")

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
        test_size: float = OWN_DEFAULTS["test_size"],
        store: str = DEFAULT_STORE,
        build_id: str | None = None,
        max_concurrency: int = DEFAULTS["max_concurrency"],
        groves_per_invocation: int = DEFAULTS["groves_per_invocation"],
        memory_mb: int | None = None,
        stack_name: str | None = None,
        state_machine_arn: str | None = None,
        verbose: int = 0,
    ) -> None:
        _keep(self, locals())

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> GrovesRegressor:
        """Train a build on the rows (an array, or a DataFrame with text columns too);
        ``sample_weight`` reaches every grove."""
        X, y, sample_weight = self._validate_fit(X, y, sample_weight, y_numeric=True)
        return self._fit(X, y, sample_weight)

    def predict(self, X: Any) -> np.ndarray:
        X = self._check(X)
        return self.model_.predict(X)


GrovesClassifier.__doc__ = _docstring(GrovesClassifier)
GrovesRegressor.__doc__ = _docstring(GrovesRegressor)
