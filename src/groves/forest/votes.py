"""A forest's votes: what its trees say about rows, summed tree by tree in the forest's order,
and the labels, values and scores read from those sums.

Training (each grove's votes on the held-out rows), scoring, search and batch prediction all
add votes here, so a prediction rebuilt from stored sums equals the forest's own.

Votes are one 2-D array per set of rows: a classifier's are class probabilities, the outputs'
classes side by side (one output: ``(n, n_classes)``; several: ``(n, sum of their classes)``);
a regressor's are predictions, ``(n,)`` or ``(n, n_outputs)``. ``Target`` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def forest_classes(forest: Any) -> list[Any] | None:
    """A fitted forest's classes as JSON records them: a list, one list per output when it
    has several, or ``None`` for a regressor."""
    if not hasattr(forest, "classes_"):
        return None
    if isinstance(forest.classes_, list):
        return [np.asarray(c).tolist() for c in forest.classes_]
    return forest.classes_.tolist()


def tree_votes(tree: Any, X: np.ndarray, classifier: bool) -> np.ndarray:
    """One tree's class probabilities (every output's side by side) or predictions on ``X``."""
    if not classifier:
        return tree.predict(X, check_input=False)
    proba = tree.predict_proba(X, check_input=False)
    return np.hstack(proba) if isinstance(proba, list) else proba


def add_votes(
    total: np.ndarray | None, trees: list[Any], X: np.ndarray, classifier: bool
) -> np.ndarray:
    """``total`` plus each tree's votes on ``X``, tree by tree in order: the sums scikit-learn's
    forest computes in ``predict_proba``/``predict``, in the same order (so a forest's
    predictions can be rebuilt exactly), without its thread pool."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    for tree in trees:
        votes = tree_votes(tree, X, classifier)
        total = votes.astype(np.float64) if total is None else total + votes
    assert total is not None
    return total


def summed_votes(forest: Any, X: np.ndarray) -> np.ndarray:
    """The sum over a forest's trees of their votes on ``X``."""
    return add_votes(None, forest.estimators_, X, hasattr(forest, "classes_"))


@dataclass(frozen=True)
class Target:
    """What a forest predicts, as a plan records it: each output's classes (``None`` for a
    regressor) and the number of outputs."""

    classes: tuple[np.ndarray, ...] | None
    n_outputs: int = 1

    @classmethod
    def of(cls, data: dict[str, Any]) -> Target:
        """From a record with ``classes`` and ``n_outputs`` (a plan's ``data``, a batch)."""
        n_outputs = int(data.get("n_outputs", 1))
        classes = data["classes"]
        if classes is None:
            return cls(None, n_outputs)
        per_output = classes if n_outputs > 1 else [classes]
        return cls(tuple(np.asarray(c) for c in per_output), n_outputs)

    @property
    def metric(self) -> str:
        return "r2" if self.classes is None else "accuracy"

    def per_output(self, votes: np.ndarray) -> list[np.ndarray]:
        """A classifier's votes cut into each output's class columns."""
        assert self.classes is not None
        edges = np.cumsum([len(c) for c in self.classes])[:-1]
        return np.split(votes, edges, axis=1)

    def decide(self, votes: np.ndarray, n_trees: int) -> np.ndarray:
        """Labels (each output's most voted class) or values (the mean) from summed votes."""
        if self.classes is None:
            return votes / n_trees
        labels = [
            c[np.argmax(part, axis=1)]
            for c, part in zip(self.classes, self.per_output(votes), strict=True)
        ]
        return labels[0] if self.n_outputs == 1 else np.column_stack(labels)

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        """Accuracy (of whole rows, with several outputs) or R^2 (averaged over outputs), as
        scikit-learn's ``score`` computes them (a constant target scores 1.0 if predicted
        exactly, else 0.0), without its input checks: scoring 2,000 groves twice each took
        10 s of checks for 0.1 s of arithmetic."""
        if self.classes is not None:
            hits = y_true == y_pred
            return float(np.mean(hits if hits.ndim == 1 else np.all(hits, axis=1)))
        if y_true.ndim == 2:
            return float(np.mean([_r2(t, p) for t, p in zip(y_true.T, y_pred.T, strict=True)]))
        return _r2(y_true, y_pred)


def _r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    residual = float(np.sum((y_true - y_pred) ** 2))
    spread = float(np.sum((y_true - np.mean(y_true)) ** 2))
    if spread == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / spread
