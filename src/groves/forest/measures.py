"""A forest's measures on held-out rows beyond its score, from its summed votes (what scoring
and the report read; scikit-learn's ``sklearn.metrics`` computes each):

- a classifier (one output): balanced accuracy, log-loss, ROC AUC (binary: of the second
  class; more classes: one-vs-rest, macro-averaged; ``None`` when the rows lack a class), and
  each class's precision, recall, F1 and support;
- a regressor: R², MAE and RMSE (averaged over outputs);
- a classifier of several outputs: its score (the accuracy of whole rows), and for each output
  (``per_output``) what a classifier of that output alone has: accuracy, balanced accuracy,
  log-loss, ROC AUC and each class's precision, recall, F1 and support.

Probabilities are the votes divided by the trees, as the forest's ``predict_proba``
(normalized: log-loss wants rows that sum to 1 to the last bit).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from groves.forest.votes import Target


def measures(target: Target, y_true: np.ndarray, votes: np.ndarray, n_trees: int) -> dict[str, Any]:
    """``{"scores": {name: value}, "per_class": [...]}`` (``per_class`` for a classifier of one
    output; with several, ``per_output``: one such record per output, with ``output``, its
    index), plain JSON numbers."""
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
        outputs = zip(target.classes, target.per_output(votes), y_true.T, strict=True)
        return {
            "scores": {"accuracy": target.score(y_true, y_pred)},
            "per_output": [
                {"output": j, **measures(Target((classes,)), y, part, n_trees)}
                for j, (classes, part, y) in enumerate(outputs)
            ],
        }
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
