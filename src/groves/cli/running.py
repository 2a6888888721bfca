"""Running a state machine here for a command, and what a command prints of its result."""

from __future__ import annotations

import sys
from typing import Any

from groves.cli.scores import described, per_class_lines, per_output_lines
from groves.engine.console import Progress, local_root_cause, report_failure
from groves.engine.limits import check_memory_mb
from groves.engine.local import run_local, start_workers
from groves.steps.cost import TEMPLATE_MEMORY_MB, describe


def summary_lines(output: dict[str, Any], seconds: float) -> list[str]:
    model = output.get("model", {})
    lines = [
        f"build     {output['build_id']} (run {output['run_id']})",
        f"groves    {output['n_groves']}",
        f"trees     {model.get('n_trees')}",
        f"seconds   {seconds:.2f}",
        *rows_line(output.get("sample")),
        *[f"warning   {warning}" for warning in output.get("warnings", [])],
        f"run       {model.get('run')}/",
    ]
    metrics = output.get("metrics")
    if metrics:
        lines.append(
            f"score     {metrics['metric']} {metrics['score']:.4f} on {metrics['n_test']:,} "
            f"held-out rows (groves alone: {metrics['grove_score_min']:.4f}-"
            f"{metrics['grove_score_max']:.4f})"
        )
        lines += measure_lines(metrics)
    else:
        lines.append(unscored_line(output))
    if model.get("latest") is False:
        lines.append(
            f"latest    unchanged: build {output['build_id']!r}'s latest is a newer run, or a "
            f"promoted one (groves promote {output['build_id']} --run {output['run_id']})"
        )
    cost = (metrics or model).get("cost")
    if cost:
        lines.append(f"cost      {describe(cost)}")
        memory = memory_line(cost)
        if memory:
            lines.append(memory)
    lines += [
        f"model     groves.load_model(store, {output['build_id']!r}), or one file: "
        f"groves export {output['build_id']} --out model.joblib",
        f"manifest  {model.get('manifest')}",
    ]
    if metrics:
        lines.append(f"metrics   {metrics['metrics']}")
    return lines


def unscored_line(output: dict[str, Any]) -> str:
    """What scoring a committed run takes: held-out rows, and the predict step (``-p`` runs it
    at the end of a build, ``groves score`` later)."""
    if not (output.get("data") or {}).get("n_test"):
        return "score     not scored: no held-out rows (--test-size 0)"
    name, run = output["build_id"], output["run_id"]
    return f"score     not scored (-p scores a build at its end): groves score {name} --run {run}"


def measure_lines(metrics: dict[str, Any]) -> list[str]:
    """The measures beside the score, and each class's when the output carries them (at most
    ``score.SUMMARY_CLASSES``; else metrics.json and the report have them)."""
    line = described(metrics)
    lines = [f"measures  {line}"] if line else []
    per_class = metrics.get("per_class")
    if per_class:
        lines += [f"class     {text}" for text in per_class_lines(per_class)]
    elif line and "roc_auc" in metrics.get("scores", {}):
        lines.append("class     each class's precision, recall and F1: metrics.json, groves report")
    for output in metrics.get("per_output", ()):
        lines.append(f"output    {per_output_lines([output])[0]}")
        lines += [f"  class   {text}" for text in per_class_lines(output.get("per_class") or [])]
    if len(metrics.get("per_output", ())) < (metrics.get("n_outputs") or 0):
        lines.append("output    the other outputs' measures: metrics.json, groves report")
    return lines


def rows_line(sample: dict[str, Any] | None) -> list[str]:
    """How many training rows each grove read, and what chose it."""
    if not sample:
        return []
    holds = f"train_grove's {sample['memory_mb']:,} MB holds about {sample['fits']:,}"
    if sample["rows"] is None:
        return [f"rows      every grove read all {sample['of']:,} training rows ({holds})"]
    why = "rows_per_grove" if sample["asked"] else "as many as fit"
    return [
        f"rows      each grove read a sample of {sample['rows']:,} of {sample['of']:,} training "
        f"rows ({why}; {holds})"
    ]


def memory_line(cost: dict[str, Any]) -> str | None:
    """Each step's peak resident memory against its memory size: ``memory   plan 140/2048 MB,
    train_grove 152/3008 MB (peak of 10 invocations), ...`` (none for a run recorded before
    steps recorded their peaks)."""
    parts = []
    order = list(TEMPLATE_MEMORY_MB)  # the steps in the order they run
    for name, step in sorted(cost["steps"].items(), key=lambda s: order.index(s[0])):
        if "peak_rss_mb" in step:
            n = step["invocations"]
            of = f" (peak of {n} invocations)" if n > 1 else ""
            parts.append(f"{name} {step['peak_rss_mb']:.0f}/{step['memory_mb']} MB{of}")
    return f"memory    {', '.join(parts)}" if parts else None


def run_here(
    machine: str,
    request: dict[str, Any],
    store: str,
    unit: str,
    failed: str,
    memory_mb: int | None = None,
) -> tuple[int, Any]:
    """Run a state machine on this machine with warm workers and a progress bar of ``unit``;
    on failure print one line (``failed: error: cause``). The exit code, and the execution
    if it succeeded. Every function is held to its template's memory size and timeout, or to
    ``memory_mb`` (``--memory-mb``: a ``RequestError`` naming it unless 128 to 10,240).

    The first step validates the request before any work, in a warm worker: this process never
    imports scikit-learn, and on 2 cores does not compete with the workers doing so."""
    if memory_mb is not None:
        check_memory_mb(memory_mb, "--memory-mb")
    progress = Progress(sys.stderr, unit=unit)
    with start_workers(memory_mb=memory_mb) as pool:
        execution = run_local(
            request,
            store,
            on_progress=progress,
            on_event=progress.event,
            pool=pool,
            machine=machine,
        )
    if execution.status != "SUCCEEDED":
        return report_failure(*local_root_cause(execution), failed), None
    return 0, execution


def batch_summary(output: dict[str, Any], seconds: float) -> str:
    written = output["output"]
    return (
        f"predicted {written['n_rows']} rows with build {written['build_id']} "
        f"(run {written['run_id']}, {written['n_trees']} trees) in {seconds:.2f} s\n"
        f"cost      {describe(written['cost'])}\n"
        f"output    {written['output']}\nsidecar   {written['output']}.json"
    )
