"""A grove's verified arrays as the scikit-learn forest that fitted them.

Each tree is rebuilt through ``Tree``'s constructor and ``__setstate__`` (as skops rebuilds
trees), its node records mapped by field name onto the installed scikit-learn's
``NODE_DTYPE`` (as scikit-learn's own unpickling maps byte order and index width); a node
layout the installed scikit-learn cannot hold is refused naming both versions. Parameters are
JSON scalars only (a ``class_weight`` object as pairs), checked by scikit-learn's own parameter
validation before any is used. Predictions of a grove read back equal the fitted forest's
exactly; its attributes are those ``fit`` sets (``_sample_weight``, kept by scikit-learn only
for out-of-bag scores, which groves does not compute, is ``None``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sklearn
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.tree._tree import NODE_DTYPE, Tree

from groves.errors import BuildError
from groves.forest.format import NODE_LAYOUT, GroveArrays, decode_grove

KINDS = {
    "classifier": (RandomForestClassifier, DecisionTreeClassifier),
    "regressor": (RandomForestRegressor, DecisionTreeRegressor),
}


def read_grove(blob: bytes, what: str = "grove", expected: dict[str, Any] | None = None) -> Any:
    """The forest a grove file holds (``decode_grove``, then ``build_forest``)."""
    return build_forest(decode_grove(blob, what, expected), what)


def installed_nodes(grove: GroveArrays, what: str) -> np.ndarray:
    """The grove's node records in the installed scikit-learn's ``NODE_DTYPE``."""
    if NODE_DTYPE == NODE_LAYOUT:
        return grove.nodes
    lacking = [name for name in NODE_DTYPE.names if name not in NODE_LAYOUT.names]
    if lacking:
        raise BuildError(
            f"{what}: written by scikit-learn {grove.header.get('sklearn_version', '1.6-1.9')}, "
            f"whose trees lack {', '.join(lacking)}, which scikit-learn {sklearn.__version__} "
            "needs; retrain it, or install the scikit-learn that wrote it"
        )
    nodes = np.zeros(len(grove.nodes), NODE_DTYPE)
    for name in NODE_DTYPE.names:
        nodes[name] = grove.nodes[name]
    return nodes


def build_forest(grove: GroveArrays, what: str = "grove") -> Any:
    """The scikit-learn forest of a verified grove."""
    forest_type, tree_type = KINDS[grove.estimator]
    header = grove.header
    forest = _estimator(forest_type, header["forest"], {}, what)
    template = _estimator(tree_type, header["tree"], {"random_state": 0}, what)
    tree_params = template.get_params()
    n_features, n_outputs, n_classes = grove.n_features, grove.n_outputs, grove.n_classes
    classes = grove.classes
    nodes, values = installed_nodes(grove, what), grove.values
    trees = []
    for record, start, count, depth in zip(
        header["trees"], grove.starts, grove.counts, grove.depths, strict=True
    ):
        tree = tree_type(**{**tree_params, "random_state": record["random_state"]})
        tree.n_features_in_, tree.n_outputs_ = n_features, n_outputs
        if classes is not None:  # a forest's trees learn the classes' indices
            indices = [np.arange(n, dtype=np.float64) for n in n_classes]
            tree.classes_ = indices[0] if n_outputs == 1 else indices
            tree.n_classes_ = n_classes[0] if n_outputs == 1 else n_classes.copy()
        tree.max_features_ = int(header["max_features"])
        tree.tree_ = Tree(n_features, n_classes, n_outputs)
        tree.tree_.__setstate__(
            {
                "max_depth": int(depth),
                "node_count": int(count),
                "nodes": nodes[start : start + count],
                "values": values[start : start + count],
            }
        )
        trees.append(tree)
    # the attributes fit sets, in its order
    forest.n_features_in_ = n_features
    forest._n_samples = int(header["n_samples"])
    forest.n_outputs_ = n_outputs
    if classes is not None:
        forest.classes_ = classes[0] if n_outputs == 1 else list(classes)
        forest.n_classes_ = int(n_classes[0]) if n_outputs == 1 else [int(n) for n in n_classes]
    forest._sample_weight = None
    forest._n_samples_bootstrap = header.get("n_samples_bootstrap")
    forest.estimator_ = tree_type()
    forest.estimators_ = trees
    return forest


def _estimator(kind: type, params: dict[str, Any], extra: dict[str, Any], what: str) -> Any:
    """An estimator of ``kind`` with stored parameters, validated by scikit-learn itself."""
    try:
        estimator = kind(**{**_unparams(params, what), **extra})
        estimator._validate_params()
    except (TypeError, ValueError) as exc:  # InvalidParameterError is a ValueError
        raise BuildError(f"{what}: its {kind.__name__} parameters are not valid ({exc})") from exc
    return estimator


def _unparams(params: dict[str, Any], what: str) -> dict[str, Any]:
    """Parameters read back: JSON scalars only (and ``class_weight`` pairs)."""
    out = {}
    for name, value in params.items():
        if isinstance(value, dict) and set(value) == {"pairs"} and isinstance(value["pairs"], list):
            try:
                value = {_label(k, what): _number(v, what) for k, v in value["pairs"]}
            except (TypeError, ValueError) as exc:
                raise BuildError(f"{what}: parameter {name!r} is not pairs") from exc
        elif value is not None and not isinstance(value, bool | int | float | str):
            raise BuildError(f"{what}: parameter {name!r} is not a number, text or null")
        out[name] = value
    return out


def _label(value: Any, what: str) -> Any:
    if not isinstance(value, bool | int | float | str):
        raise BuildError(f"{what}: a class label is not a number, boolean or text")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BuildError(f"{what}: a weight is not a number")
    return value
