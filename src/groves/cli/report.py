"""``groves report``: one self-contained HTML page about a committed run, its plots embedded
as PNG data (and written beside it as PNG files), drawn with matplotlib:

- the held-out score as trees are added, grove by grove (``metrics.json``);
- each grove's own held-out score, against the forest's;
- the forest's feature importances (the model, from its verified groves);
- a classifier's confusion matrix (and for two classes its ROC and precision-recall curves),
  or a regressor's predictions against the actual values, on the run's held-out rows (a
  search's candidate: its validation rows), from the groves' stored votes;
- a timeline of grove training: one bar per grove from its start to its end, one row per
  execution environment (a Lambda's log stream, or a local worker process);
- the measures beside the score and each class's precision, recall and F1 (``metrics.json``);
- the request, the execution's steps with their seconds (its stored history; a search's best:
  the search's), what a search measured (validation and held-out scores), the cost, and every
  file of the run with its size.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from groves.cli.scores import described, per_class_lines, per_output_lines
from groves.data.prepared import read_prepared
from groves.engine.asl.history import state_name
from groves.engine.executions import stored
from groves.errors import BuildError, CorruptFile
from groves.forest.loading import load_forest
from groves.forest.votes import Target
from groves.steps.cost import describe, run_cost
from groves.steps.search import search_key
from groves.steps.trained import stored_votes
from groves.store.artifacts import (
    manifest_key,
    metrics_key,
    read_committed_plan,
    read_manifest,
    run_prefix,
)
from groves.store.codec import get_json
from groves.store.protocol import ArtifactNotFound, Store
from groves.store.records import List, Rec, check, checked

REPORT = "report.html"
FIGURE_SIZE = (7.5, 3.6)
TOP_FEATURES = 20  # the importances plot shows the largest
REPORTED_CLASSES = 100  # classes whose precision, recall and F1 the page lists


@dataclass
class Report:
    """The page and its plots (file name -> PNG bytes), of run ``run_id``."""

    run_id: str
    html: str
    images: dict[str, bytes]


def _optional(read: Callable[[], Any]) -> Any:
    """What ``read`` reads, or ``None`` for a run without it (no scores, no history); a
    damaged file is refused (``CorruptFile``), never drawn as a run without it."""
    try:
        return read()
    except CorruptFile:
        raise
    except (ArtifactNotFound, BuildError):
        return None


# What the report reads of metrics.json and of the manifest beyond its schema (records no
# sha256 covers): a damaged one is one CorruptFile line naming the file and the field.
REPORTED_METRICS = Rec(
    {
        "metric": str,
        "score": float,
        "grove_score_min": float,
        "grove_score_max": float,
        "grove_scores": List(float, 1),
        "score_by_trees": List(Rec({"n_trees": int, "score": float}), 1),
    }
)
REPORTED_MANIFEST = Rec(
    {
        "timings": Rec({"fit_seconds_total": float}),
        "groves": List(
            Rec({}, {"usage": Rec({"started_at": float, "ended_at": float, "environment": str})})
        ),
    }
)


def _reported(record: Any, schema: Any, store: Store, key: str) -> Any:
    problem = None if record is None else check(record, schema)
    if problem:
        raise CorruptFile(f"{store.uri}/{key} is not a valid record for the report: {problem}")
    return record


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _plots(
    manifest: dict[str, Any], metrics: dict[str, Any] | None, extra: Evaluation | None = None
) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib import pyplot as plt

    images = {}
    if metrics:
        figure, axes = plt.subplots(figsize=FIGURE_SIZE)
        by_trees = metrics["score_by_trees"]
        axes.plot([p["n_trees"] for p in by_trees], [p["score"] for p in by_trees], marker="o")
        axes.set(xlabel="trees", ylabel=f"held-out {metrics['metric']}")
        axes.set_title("Score as groves are added")
        axes.grid(alpha=0.3)
        images["score_by_trees.png"] = _png(figure)
        plt.close(figure)

        figure, axes = plt.subplots(figsize=FIGURE_SIZE)
        scores = metrics["grove_scores"]
        axes.bar(range(len(scores)), scores, color="tab:blue", label="each grove")
        axes.axhline(metrics["score"], color="tab:red", label="the forest")
        low, high = min(*scores, metrics["score"]), max(*scores, metrics["score"])
        margin = max(0.02, (high - low) * 0.5)
        axes.set_ylim(
            max(0.0, low - margin) if metrics["metric"] == "accuracy" else None, high + margin
        )
        axes.set(xlabel="grove", ylabel=f"held-out {metrics['metric']}")
        axes.set_title("Each grove alone")
        axes.legend(loc="upper right", ncols=2, fontsize="small")
        images["grove_scores.png"] = _png(figure)
        plt.close(figure)

    groves = [g for g in manifest["groves"] if "usage" in g]
    if extra is not None:
        images.update(_model_plots(plt, manifest, extra))
    if groves:
        start = min(g["usage"]["started_at"] for g in groves)
        rows = sorted({g["usage"]["environment"] for g in groves})
        figure, axes = plt.subplots(figsize=(FIGURE_SIZE[0], max(2.0, 0.45 * len(rows) + 1.2)))
        for row, environment in enumerate(rows):
            spans = [
                (
                    g["usage"]["started_at"] - start,
                    g["usage"]["ended_at"] - g["usage"]["started_at"],
                )
                for g in groves
                if g["usage"]["environment"] == environment
            ]
            axes.broken_barh(spans, (row - 0.4, 0.8), color="tab:green", edgecolor="white")
        axes.set_yticks(range(len(rows)), [r[-28:] for r in rows])
        axes.set(xlabel="seconds since the first grove started")
        axes.set_title(f"Grove training: {len(groves)} groves on {len(rows)} workers")
        images["timeline.png"] = _png(figure)
        plt.close(figure)
    return images


@dataclass
class Evaluation:
    """What the report draws of the model itself: its feature importances by name, and its
    predictions on the run's own held-out rows (``rows`` names them) with the true values, and
    a classifier's probabilities on them."""

    names: list[str]
    importances: np.ndarray
    target: Target
    y_true: np.ndarray
    y_pred: np.ndarray
    rows: str
    proba: np.ndarray | None = None


def evaluate(store: Store, manifest: dict[str, Any], plan: dict[str, Any]) -> Evaluation:
    """The forest's importances (the model read from its verified groves) and its decisions on
    the run's held-out rows, from the groves' stored votes (no tree predicts here)."""
    forest = load_forest(store, manifest)
    build_id, run_id = manifest["build_id"], manifest["run_id"]
    target = Target.of(plan["data"])
    total = None
    for _, votes in stored_votes(store, build_id, run_id, manifest["groves"]):
        total = votes if total is None else total + votes
    y_true = read_prepared(store, plan, ("y_test",)).y_test
    y_pred = target.decide(total, manifest["n_trees"]) if len(y_true) else y_true
    rows = "validation" if "search_id" in plan else "held-out"
    names = list(plan["data"]["feature_names"])
    proba = total / manifest["n_trees"] if target.classes is not None else None
    return Evaluation(names, forest.feature_importances_, target, y_true, y_pred, rows, proba)


def _model_plots(plt: Any, manifest: dict[str, Any], found: Evaluation) -> dict[str, bytes]:
    images = {}
    order = np.argsort(found.importances)[::-1][:TOP_FEATURES][::-1]
    figure, axes = plt.subplots(figsize=(FIGURE_SIZE[0], max(2.5, 0.28 * len(order) + 1.0)))
    axes.barh([found.names[i] for i in order], found.importances[order], color="tab:blue")
    axes.set(xlabel="mean decrease in impurity (the forest's feature_importances_)")
    shown = (
        f"the {len(order)} largest of {len(found.names)}"
        if len(found.names) > len(order)
        else "every feature"
    )
    axes.set_title(f"Feature importances: {shown}")
    images["importances.png"] = _png(figure)
    plt.close(figure)
    if not len(found.y_true):
        return images
    y_true, y_pred = found.y_true, found.y_pred
    if found.target.classes is not None and found.target.n_outputs == 1:
        classes = found.target.classes[0]
        truth = np.searchsorted(classes, y_true)
        guess = np.searchsorted(classes, y_pred)
        counts = np.bincount(truth * len(classes) + guess, minlength=len(classes) ** 2)
        matrix = counts.reshape(len(classes), len(classes))
        side = min(7.5, 2.5 + 0.4 * len(classes))
        figure, axes = plt.subplots(figsize=(side + 1.2, side))
        shown = axes.imshow(matrix, cmap="Blues")
        figure.colorbar(shown, ax=axes, label="rows")
        labels = [str(c) for c in classes]
        axes.set_xticks(range(len(classes)), labels, rotation=90 if len(classes) > 8 else 0)
        axes.set_yticks(range(len(classes)), labels)
        if len(classes) <= 20:
            for (i, j), n in np.ndenumerate(matrix):
                color = "white" if n > matrix.max() / 2 else "black"
                axes.text(j, i, str(n), ha="center", va="center", color=color, fontsize="small")
        axes.set(xlabel="predicted class", ylabel="true class")
        axes.set_title(f"Confusion matrix on {len(y_true)} {found.rows} rows")
        images["confusion.png"] = _png(figure)
        plt.close(figure)
        if len(classes) == 2 and len(np.unique(y_true)) == 2 and found.proba is not None:
            images["roc_pr.png"] = _roc_pr(plt, y_true == classes[1], found.proba[:, 1], found)
    elif found.target.classes is None:
        truth, guess = np.ravel(y_true), np.ravel(y_pred)
        figure, axes = plt.subplots(figsize=(5.5, 5.0))
        axes.scatter(truth, guess, s=8, alpha=0.5, color="tab:blue")
        low, high = float(min(truth.min(), guess.min())), float(max(truth.max(), guess.max()))
        axes.plot([low, high], [low, high], color="tab:red", label="predicted = actual")
        axes.set(xlabel="actual", ylabel="predicted")
        axes.set_title(f"Predicted against actual, {len(truth)} {found.rows} rows")
        axes.legend(loc="upper left", fontsize="small")
        images["predicted_vs_actual.png"] = _png(figure)
        plt.close(figure)
    return images


def _roc_pr(plt: Any, positive: np.ndarray, proba: np.ndarray, found: Evaluation) -> bytes:
    """A binary target's ROC curve and precision-recall curve, side by side."""
    from sklearn import metrics

    label = found.target.classes[0][1] if found.target.classes else "1"
    figure, (roc, pr) = plt.subplots(1, 2, figsize=(FIGURE_SIZE[0], 3.8))
    fpr, tpr, _ = metrics.roc_curve(positive, proba)
    roc.plot(fpr, tpr, label=f"AUC {metrics.roc_auc_score(positive, proba):.4f}")
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    roc.legend(loc="lower right", fontsize="small")
    precision, recall, _ = metrics.precision_recall_curve(positive, proba)
    average = metrics.average_precision_score(positive, proba)
    pr.plot(recall, precision, drawstyle="steps-post", label=f"average precision {average:.4f}")
    pr.axhline(positive.mean(), color="grey", linestyle=":", label="chance")
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall curve")
    pr.legend(loc="lower left", fontsize="small")
    figure.suptitle(f"Class {label!s} against the other, {len(positive)} {found.rows} rows")
    png = _png(figure)
    plt.close(figure)
    return png


def _size(n: int) -> str:
    """Bytes as ``812 B``, ``105.0 KiB``, ``1.2 MiB`` or ``3.4 GiB``."""
    if n < 1024:
        return f"{n:,} B"
    size = n / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"


def _steps(histories: list[dict[str, Any]] | None) -> list[tuple[str, float]]:
    """The last execution's top-level steps and their seconds."""
    if not histories:
        return []
    entered: dict[str, datetime] = {}
    steps = []
    for event in histories[-1]["events"]:
        name, when = state_name(event), datetime.fromisoformat(event["timestamp"])
        if event["type"].endswith("StateEntered") and name:
            entered[name] = when
        elif event["type"].endswith("StateExited") and name in entered:
            steps.append((name, (when - entered.pop(name)).total_seconds()))
    return steps


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def build(
    store: Store,
    build_id: str,
    run_id: str | None = None,
    histories: list[dict[str, Any]] | None = None,
) -> Report:
    """The report of a committed run (by default the build's latest); its steps from
    ``histories`` (a deployed execution's, read from Step Functions) or from the store."""
    manifest = read_manifest(store, build_id, run_id)
    run_id = manifest["run_id"]
    _reported(manifest, REPORTED_MANIFEST, store, manifest_key(build_id, run_id))
    plan = read_committed_plan(store, manifest)
    key = metrics_key(build_id, run_id)
    metrics = _optional(lambda: checked(get_json(store, key), "metrics", f"{store.uri}/{key}"))
    _reported(metrics, REPORTED_METRICS, store, key)
    search_id = plan.get("search_id")
    search_build = plan.get("search_build", build_id)  # where the search's record is
    searched = search_results(store, search_build, search_id, run_id) if search_id else None
    histories = histories or _optional(
        lambda: (
            stored(store, search_build, search_id, "searches")
            if search_id
            else stored(store, build_id, run_id)
        )
    )
    cost = run_cost(manifest, metrics)
    images = _plots(manifest, metrics, evaluate(store, manifest, plan))

    summary = [
        ("build", build_id),
        ("run", run_id),
        ("estimator", manifest["estimator"]),
        ("trees", f"{manifest['n_trees']} in {manifest['n_groves']} groves"),
        ("data", _data_line(plan["data"], searched)),
        ("fit seconds", f"{manifest['timings']['fit_seconds_total']:.2f} in all groves"),
    ]
    if metrics:
        summary.append(
            (
                "score",
                f"{metrics['metric']} {metrics['score']:.4f} (groves alone: "
                f"{metrics['grove_score_min']:.4f}-{metrics['grove_score_max']:.4f})",
            )
        )
        if described(metrics):
            summary.append(("measures", described(metrics) or ""))
    elif searched:
        summary += searched["lines"]
    elif plan["data"]["n_test"] == 0:
        summary.append(("score", "not scored: every row trained (test_size 0)"))
    else:
        summary.append(("score", "not scored: run with --predict"))
    if searched and searched["cost"]:  # the candidate's own steps are part of its search's
        summary.append(("cost on AWS", f"{describe(searched['cost'])}, the whole search"))
    elif cost:
        summary.append(("cost on AWS", describe(cost)))
    titles = {
        "score_by_trees.png": "Held-out score against the number of trees",
        "grove_scores.png": "Each grove's held-out score",
        "importances.png": "Feature importances",
        "confusion.png": "Confusion matrix",
        "roc_pr.png": "ROC and precision-recall curves",
        "predicted_vs_actual.png": "Predicted against actual values",
        "timeline.png": "Timeline of grove training, one row per worker or Lambda",
    }
    figures = "".join(
        f'<figure><img alt="{html.escape(titles[name])}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"><figcaption>{html.escape(titles[name])}'
        "</figcaption></figure>"
        for name, png in images.items()
    )
    steps = _steps(histories)
    steps_html = (
        _table([(name, f"{seconds:.2f} s") for name, seconds in steps])
        if steps
        else ("<p>no stored execution history</p>")
    )
    files = store.list_sizes(run_prefix(build_id, run_id))
    prefix = len(run_prefix(build_id, run_id)) + 1
    files_html = _table([(key[prefix:], _size(size)) for key, size in files.items()])
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>groves report: {html.escape(build_id)} {html.escape(run_id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ text-align: left; padding: 0.2em 1em 0.2em 0; vertical-align: top; }}
th {{ font-weight: 600; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
pre {{ background: #f4f4f4; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>groves: {html.escape(build_id)}</h1>
{_table(summary)}
<h2>Plots</h2>
{figures or "<p>no plots: the run has no scores and no grove timings</p>"}
{_classes_html(metrics)}
<h2>Steps of the last execution</h2>
{steps_html}
<h2>Request</h2>
<pre>{html.escape(json.dumps(plan["spec"], indent=2, sort_keys=True))}</pre>
<h2>Files of the run</h2>
{files_html}
</body></html>
"""
    return Report(run_id, page, images)


def _classes_html(metrics: dict[str, Any] | None) -> str:
    """Each class's precision, recall and F1 (the first ``REPORTED_CLASSES``), if scored;
    with several outputs, each output's measures and then its classes'."""
    per_class = (metrics or {}).get("per_class")
    per_output = (metrics or {}).get("per_output")
    if per_output:
        lines, room, more = [], REPORTED_CLASSES, 0
        for output, line in zip(per_output, per_output_lines(per_output), strict=True):
            lines.append(f"output {line}")
            shown = output["per_class"][:room]
            lines += [f"  {text}" for text in per_class_lines(shown)] if shown else []
            room, more = room - len(shown), more + len(output["per_class"]) - len(shown)
        note = f"<p>and {more:,} more classes in metrics.json</p>" if more else ""
        return f"<h2>Each output</h2>\n<pre>{html.escape(chr(10).join(lines))}</pre>{note}"
    if not per_class:
        return ""
    shown = per_class[:REPORTED_CLASSES]
    more = len(per_class) - len(shown)
    note = f"<p>and {more:,} more classes in metrics.json</p>" if more else ""
    lines = "\n".join(per_class_lines(shown))
    return f"<h2>Each class</h2>\n<pre>{html.escape(lines)}</pre>{note}"


def _data_line(data: dict[str, Any], searched: dict[str, Any] | None) -> str:
    if searched:  # a search's candidate: its held-out rows are the search's own
        record = searched["record"]
        return (
            f"{record['n_fit']} rows to fit, {record['n_validation']} validation rows, "
            f"{record['n_test']:,} held out by the search, {data['n_features']} features"
        )
    return (
        f"{data['n_train']:,} training rows, {data['n_test']:,} held out, "
        f"{data['n_features']:,} features"
    )


def search_results(
    store: Store, build_id: str, search_id: str, run_id: str
) -> dict[str, Any] | None:
    """What the search that committed this run measured: the run's validation score and rank,
    and the held-out score it read once after choosing."""
    record = _optional(lambda: get_json(store, search_key(build_id, search_id, "search.json")))
    board = _optional(lambda: get_json(store, search_key(build_id, search_id, "leaderboard.json")))
    result = _optional(lambda: get_json(store, search_key(build_id, search_id, "result.json")))
    if record is None or board is None:
        return None
    rank, row = next((i, r) for i, r in enumerate(board, 1) if r["run_id"] == run_id)
    lines = [
        (
            "search",
            f"{search_id}: candidate {row['candidate']}, ranked {rank} of {len(board)} by "
            f"validation {row.get('metric') or 'score'} "
            + ("-" if row["validation_score"] is None else f"{row['validation_score']:.4f}"),
        )
    ]
    if result and result["run_id"] == run_id:
        lines.append(
            (
                "score",
                f"{result['metric']} {result['test_score']:.4f} on the search's "
                f"{result['n_test']:,} held-out rows (read once, after the choice)",
            )
        )
    cost = result.get("cost") if result and result["run_id"] == run_id else None
    return {"record": record, "lines": lines, "cost": cost}


def write(
    store: Store,
    build_id: str,
    run_id: str | None = None,
    out: Path | None = None,
    histories: list[dict[str, Any]] | None = None,
) -> str:
    """Write the report and its PNGs to ``out``, or by default to the run's ``report/`` folder
    in the store; where the page is."""
    report = build(store, build_id, run_id, histories)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name, png in report.images.items():
            (out / name).write_bytes(png)
        (out / REPORT).write_text(report.html)
        return str(out / REPORT)
    folder = f"{run_prefix(build_id, report.run_id)}/report"
    for name, png in report.images.items():
        store.put_bytes(f"{folder}/{name}", png)
    store.put_bytes(f"{folder}/{REPORT}", report.html.encode())
    return f"{store.uri}/{folder}/{REPORT}"
