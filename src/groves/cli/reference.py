"""``docs/request.md``, the reference of every request field, generated from the fields'
definitions (``groves.steps.request``): ``python -m groves.cli.reference > docs/request.md``.
A test checks that the committed file is what this writes."""

from __future__ import annotations

import json
import sys
from typing import Any

from groves.steps.request import ABSENT, BATCH, REQUIRED, SEARCH_ONLY, TRAIN, Field, Flag

COMMAND = "python -m groves.cli.reference > docs/request.md"

INTRO = (
    "# The requests\n\n"
    "Every field of the three requests groves takes: a build's (training), a batch "
    "prediction's and a hyper-parameter search's. Generated from their definitions in "
    f"`groves.steps.request` by `{COMMAND}`: edit them there, not here. A request names no "
    "other field; plan refuses a value of the wrong type or out of bounds before any work, "
    "naming the field (`invalid request: FIELD: ...` on the command line)."
)

SECTIONS = (
    (
        "Training",
        "Execution input of the training state machine (`statemachine/forest.asl.json`, started "
        "by `aws stepfunctions start-execution` or `groves start`), of `groves run`, and the "
        "keywords of `groves.train(build_id, **fields)`; a sample: `events/execution.json`.",
        TRAIN,
    ),
    (
        "Batch prediction",
        "Execution input of the batch prediction state machine "
        "(`statemachine/batch_predict.asl.json`, `groves start-predict`), of `groves predict`, "
        "and the keywords of `groves.predict(build_id, data, output, **fields)`; a sample: "
        "`events/batch_predict.json`.",
        BATCH,
    ),
    (
        "Search",
        "Execution input of the search state machine (`statemachine/search.asl.json`) and of "
        "`groves search`: the training fields but `predict` and `resume`, and these; a sample: "
        "`events/search.json`.",
        SEARCH_ONLY,
    ),
)


def shown_default(field: Field) -> str:
    default = field.default
    if default is REQUIRED or default is ABSENT:
        return repr(default)
    if isinstance(default, int | float) and not isinstance(default, bool):
        return f"{default:,}"
    return f"`{default}`" if isinstance(default, str) else f"`{json.dumps(default)}`"


def command_line(field: Field) -> str:
    if not isinstance(field.cli, Flag):
        return field.cli
    flag = field.cli
    if flag.positional:
        return f"`{flag.metavar}`"
    value = "" if flag.switch else f" {flag.metavar or flag.key.upper()}"
    return ", ".join(f"`{name}{value}`" for name in flag.names)


def meaning(field: Field) -> str:
    text = f"{field.help[0].upper()}{field.help[1:]}."
    if field.default_note:
        text += f" Null: {field.default_note}."
    return f"{text} {field.details}".strip()


def table(fields: tuple[Field, ...]) -> list[str]:
    lines = [
        "| field | default | allowed | command line | what it is |",
        "|---|---|---|---|---|",
    ]
    for field in fields:
        cells = (
            f"`{field.name}`",
            shown_default(field),
            field.allowed(grouped=True),
            command_line(field),
            meaning(field),
        )
        lines.append(f"| {' | '.join(cells)} |")
    return lines


def estimators_table() -> list[str]:
    lines = [
        "How `GrovesClassifier` and `GrovesRegressor` set each training field: by a parameter of",
        "the same meaning, type and bounds (checked as scikit-learn checks its own), or otherwise:",
        "",
        "| field | the estimators |",
        "|---|---|",
    ]
    for field in TRAIN:
        shown = f"`{field.estimator}`" if field.estimator.isidentifier() else field.estimator
        lines.append(f"| `{field.name}` | {shown} |")
    return lines


def markdown() -> str:
    lines = [INTRO]
    for title, intro, fields in SECTIONS:
        lines += ["", f"## {title}", "", intro, "", *table(fields)]
        if fields is TRAIN:
            lines += ["", *estimators_table()]
    return "\n".join(lines) + "\n"


def main(argv: Any = None) -> int:
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
