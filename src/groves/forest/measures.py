"""A forest's measures on held-out rows beyond its score, from its summed votes (what scoring
and the report read; scikit-learn's ``sklearn.metrics`` computes each):

- a classifier (one output): balanced accuracy, log-loss, ROC AUC (binary: of the second
  class; more classes: one-vs-rest, macro-averaged; ``None`` when the rows lack a class), and
  each class's precision, recall, F1 and support;
- a regressor: R², MAE and RMSE (averaged over outputs);
- a classifier of several outputs: its score (the accuracy of whole rows) alone.

Probabilities are the votes divided by the trees, as the forest's ``predict_proba``
(normalized: log-loss wants rows that sum to 1 to the last bit).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from groves.forest.votes import Target


def measures(target: Target, y_true: np.ndarray, votes: np.ndarray, n_trees: int) -> dict[str, Any]:
    """``{"scores": {name: value}, "per_class": [...]}`` (``per_class`` for a classifier of one
    output only), plain JSON numbers."""
    from sklearn import metrics

    y_pred = target.decide(votes, n_trees)
    if target.classes is None:
        return {
            "scores": {
                "r2": target.score(y_true, y_pred),
                "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
                "rmse": float(metrics.root_mean_squared_error(y_true, y_pred)),
            }
        }
    if target.n_outputs > 1:
        return {"scores": {"accuracy": target.score(y_true, y_pred)}}
    classes = target.classes[0]
    proba = votes / votes.sum(axis=1, keepdims=True)  # rows summing to 1 to the last bit
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    scores = {
        "accuracy": target.score(y_true, y_pred),
        # balanced_accuracy_score: the mean recall over the classes the rows have (computed
        # here, as that function warns of a predicted class the rows lack)
        "balanced_accuracy": float(np.mean(recall[support > 0])),
        "log_loss": float(metrics.log_loss(y_true, proba, labels=classes)),
        "roc_auc": roc_auc(y_true, proba, classes),
    }
    per_class = [
        {
            "class": c.item() if hasattr(c, "item") else c,
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(n),
        }
        for c, p, r, f, n in zip(classes, precision, recall, f1, support, strict=True)
    ]
    return {"scores": scores, "per_class": per_class}


def roc_auc(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float | None:
    """ROC AUC of the class probabilities: binary (the second class positive) or one-vs-rest
    macro; ``None`` when it is undefined (the rows lack a class)."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y_true)) < len(classes):
        return None
    if len(classes) == 2:
        return float(roc_auc_score(y_true == classes[1], proba[:, 1]))
    return float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes))


NAMES = {
    "balanced_accuracy": "balanced accuracy",
    "log_loss": "log-loss",
    "roc_auc": "ROC AUC",
    "mae": "MAE",
    "rmse": "RMSE",
}


def described(record: dict[str, Any]) -> str | None:
    """The measures of a metrics record beside its score, as one line (``balanced accuracy
    0.9788, log-loss 0.1234, ROC AUC 0.9990 (one-vs-rest macro)``), or ``None`` if it has none
    (a run scored before there were measures)."""
    scores = record.get("scores") or {}
    parts = [
        f"{label} {'undefined' if scores[name] is None else format(scores[name], '.4f')}"
        for name, label in NAMES.items()
        if name in scores
    ]
    if not parts:
        return None
    per_class = record.get("per_class")
    if "roc_auc" in scores and per_class and len(per_class) > 2:
        parts[-1] += " (one-vs-rest macro)"
    return ", ".join(parts)


def per_class_lines(per_class: list[dict[str, Any]]) -> list[str]:
    """Each class's precision, recall, F1 and support, one aligned line each."""
    width = max(len(str(c["class"])) for c in per_class)
    return [
        f"{c['class']!s:<{width}}  precision {c['precision']:.4f}  recall {c['recall']:.4f}  "
        f"F1 {c['f1']:.4f}  ({c['support']:,} rows)"
        for c in per_class
    ]
