"""Scoring's measures (``groves.forest.measures``, in ``metrics.json``) as text, for the run
summary and the report: plain text, no numpy (the CLI starts without it)."""

from __future__ import annotations

from typing import Any

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


def per_output_lines(per_output: list[dict[str, Any]]) -> list[str]:
    """Each output's accuracy and measures (a classifier of several outputs), one line each."""
    return [
        f"{o['output']}  accuracy {o['scores']['accuracy']:.4f}"
        + (f", {described(o)}" if described(o) else "")
        for o in per_output
    ]
