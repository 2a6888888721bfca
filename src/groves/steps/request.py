"""The requests' fields, each defined once: the training request (``TRAIN``: ``groves run``,
``statemachine/forest.asl.json``), a batch prediction's (``BATCH``) and a hyper-parameter
search's (``SEARCH``). Plan's checks of types and bounds, the command line's options, the
estimators' parameters and ``docs/request.md`` all derive from these (modelled on
scikit-learn's ``_parameter_constraints``). Kept apart from plan so that reading them imports
no scikit-learn or numpy (the CLI starts without them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from groves.errors import RequestError

MAX_TREES = 1_000_000
# The Distributed Map reads its items from the store, so the grove count is not bound by Step
# Functions' 256 KB payload limit; 100,000 groves of 1 tree each are allowed.
MAX_GROVES = 100_000
MAX_CONCURRENCY = 10_000  # a Distributed Map's child executions at once
MAX_GROVES_PER_INVOCATION = 1_000
MAX_ROWS_PER_CHUNK = 1_000_000
MAX_ROWS = 2**62

# Forest parameters a request may set (``params``); groves sets n_estimators, random_state and
# n_jobs itself.
TREE_PARAMS = (
    "criterion",
    "max_depth",
    "min_samples_split",
    "min_samples_leaf",
    "min_weight_fraction_leaf",
    "max_features",
    "max_leaf_nodes",
    "min_impurity_decrease",
    "bootstrap",
    "max_samples",
    "ccp_alpha",
)
FOREST_PARAMS = {"classifier": (*TREE_PARAMS, "class_weight"), "regressor": TREE_PARAMS}

Kind = Literal[
    "integer",
    "number",
    "boolean",
    "choice",
    "text",
    "columns",
    "object",
    "build id",
    "run id",
    "other",  # checked by its own function (``resume``)
]


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


REQUIRED: Any = _Marker("required")  # a field without a default
ABSENT: Any = _Marker("absent")  # a field whose absence means something (``resume``)


@dataclass(frozen=True)
class Flag:
    """A field's command-line option. ``names``: its flags (a positional: its name, shown as
    ``metavar``); ``dest`` when not derived from the first long flag; ``aliases``: more flags,
    left out where one would clash; ``comma``: a list given as one ``A,B,...`` argument (else
    the option repeats); ``switch``: a flag that sets ``true``; ``note``: help for the command
    line only."""

    names: tuple[str, ...]
    dest: str | None = None
    metavar: str | None = None
    aliases: tuple[str, ...] = ()
    comma: bool = False
    switch: bool = False
    note: str = ""

    @property
    def positional(self) -> bool:
        return not self.names[0].startswith("-")

    @property
    def key(self) -> str:
        """The argparse dest."""
        if self.dest:
            return self.dest
        long = next((n for n in self.names if n.startswith("--")), self.names[0])
        return long.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Field:
    """One request field: its ``kind`` (with ``low``/``high``/``closed`` bounds as in
    scikit-learn's ``Interval``, or ``choices``), whether ``null`` is allowed, its ``default``,
    its ``help`` (the CLI's, the estimators' docstrings' and the reference's), what a default
    of null means (``default_note``), ``details`` for the reference only, ``form``: what a
    value is, in words (else derived from the kind), ``cli``: its option, or why it has none,
    and ``estimator``: the estimators' parameter that sets it, or how they set it (words)."""

    name: str
    kind: Kind
    help: str
    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"
    choices: tuple[str, ...] = ()
    null: bool = False
    default_note: str = ""
    details: str = ""
    form: str = ""
    cli: Flag | str = ""
    estimator: str = ""

    def allowed(self, grouped: bool = False) -> str:
        """The values the field takes, in words (``grouped``: thousands separated)."""
        low, high = (
            f"{b:,}" if grouped and b is not None else str(b) for b in (self.low, self.high)
        )
        if self.kind == "integer":
            text = f"an integer from {low} to {high}"
        elif self.kind == "number":
            text = (
                "a number "
                + {
                    "both": f"from {low} to {high}",
                    "left": f"from {low} to below {high}",
                    "right": f"above {low}, at most {high}",
                    "neither": f"above {low} and below {high}",
                }[self.closed]
            )
        elif self.kind == "boolean":
            text = "true or false"
        elif self.kind == "choice":
            text = f"one of {', '.join(self.choices)}"
        elif self.kind == "columns":
            text = self.form or "a list of distinct column names"
        else:
            text = self.form
        return f"{text}, or null" if self.null else text

    def refused(self, value: Any, reason: str = "") -> RequestError:
        """The error for a value the field does not take."""
        if self.kind == "choice":
            return RequestError(self.name, f"{value!r} is not one of {', '.join(self.choices)}")
        return RequestError(self.name, reason or f"{value!r} must be {self.allowed()}")

    def check(self, value: Any) -> None:
        """``value`` has the field's type and is within its bounds; else a ``RequestError``."""
        if value is None and self.null:
            return
        if self.kind == "build id":
            from groves.store.artifacts import check_build_id

            try:
                check_build_id({"build_id": value})
            except RequestError as exc:
                raise self.refused(value, str(exc).split(": ", 1)[1]) from None
        elif self.kind == "run id":
            from groves.store.artifacts import check_run_id

            check_run_id(value, self.name)
        elif not self.takes(value):
            raise self.refused(value)

    def takes(self, value: Any) -> bool:
        """Whether ``value`` has the field's type and bounds (the kinds checked here)."""
        boolean = isinstance(value, bool)
        if self.kind in ("integer", "number"):
            types = int if self.kind == "integer" else int | float
            if boolean or not isinstance(value, types):
                return False
            above = value >= self.low if self.closed in ("both", "left") else value > self.low
            below = value <= self.high if self.closed in ("both", "right") else value < self.high
            return above and below
        if self.kind == "boolean":
            return boolean
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        if self.kind == "text":
            return isinstance(value, str) and bool(value)
        if self.kind == "columns":
            return (
                isinstance(value, list)
                and all(isinstance(n, str) and n for n in value)
                and len(set(value)) == len(value)
            )
        return self.kind == "other" or isinstance(value, dict)


NOT_A_PARAMETER = "not a parameter: the request's default"
BUILD_ID_FORM = "1-80 of `A-Za-z0-9._-`, starting with a letter or digit"

TRAIN: tuple[Field, ...] = (
    Field(
        "build_id",
        "build id",
        "the build's name: where its runs and model are stored",
        form=BUILD_ID_FORM,
        cli=Flag(("build_id",), metavar="NAME"),
        estimator="the `build_id` parameter (None: `sklearn-classifier` or `sklearn-regressor`)",
    ),
    Field(
        "n_trees",
        "integer",
        "trees in the forest",
        100,
        low=1,
        high=MAX_TREES,
        cli=Flag(("-t", "--trees")),
        estimator="n_estimators",
    ),
    Field(
        "grove_size",
        "integer",
        "trees per grove: each grove is trained by one Lambda invocation (or local worker) "
        "with a seed of its own; the last grove takes the remainder",
        10,
        low=1,
        high=MAX_TREES,
        details=f"At most {MAX_GROVES:,} groves.",
        cli=Flag(("-g", "--grove-size"), dest="grove", aliases=("--grove",)),
        estimator="grove_size",
    ),
    Field(
        "dataset",
        "text",
        "the rows to train on: digits, breast_cancer, iris, wine, diabetes, or a .csv/.npz/"
        ".parquet path or s3:// URI",
        "digits",
        form="a dataset name, a path or an s3:// URI",
        details="`diabetes` is a regression. An `.npz` holds arrays `X`, `y` (and `w`); a `y` "
        "with a column per output trains one multi-output forest, as scikit-learn's forests "
        "do: not stratified, scored by the accuracy of whole rows or R² averaged over outputs. "
        "A folder of `.csv` or `.parquet` files with the same columns (a directory, or "
        "`s3://bucket/prefix/` ending in `/`) is read in name order as one table, planned a "
        "file an invocation (the plan's Maps): no function holds the table.",
        cli=Flag(("--dataset",)),
        estimator="`fit`'s `X` and `y` (written to the store)",
    ),
    Field(
        "target",
        "text",
        "the label column of a CSV/Parquet table",
        None,
        null=True,
        default_note="the column named target",
        form="a column name",
        cli=Flag(("--target",)),
        estimator="`fit`'s `y`",
    ),
    Field(
        "weight",
        "text",
        "the column (CSV/Parquet) or array (.npz) of row weights, numbers >= 0: every grove "
        "fits with them as sample_weight",
        None,
        null=True,
        default_note="no weights",
        form="a column name",
        cli=Flag(("--weight",)),
        estimator="`fit`'s `sample_weight`",
    ),
    Field(
        "features",
        "columns",
        "train on only these columns of a CSV/Parquet table",
        None,
        null=True,
        default_note="every column but the target and the weights",
        cli=Flag(("--features",), metavar="COL,...", comma=True),
        estimator="the columns of `fit`'s `X`",
    ),
    Field(
        "drop",
        "columns",
        "columns of a CSV/Parquet table left out of the features, such as an id",
        [],
        details="Prediction ignores them if present. Plan warns (plan.json `data.warnings`, "
        "the run's summary) of an integer or text column with a distinct value in over 90% of "
        "1,000+ rows.",
        cli=Flag(("--drop",), metavar="COL"),
        estimator="the columns of `fit`'s `X`",
    ),
    Field(
        "estimator",
        "choice",
        "what the forest predicts: classes or a quantity",
        "classifier",
        choices=("classifier", "regressor"),
        cli=Flag(("--estimator",)),
        estimator="the class: `GrovesClassifier` or `GrovesRegressor`",
    ),
    Field(
        "test_size",
        "number",
        "the share of the rows held out from training, for scoring; 0 holds out none",
        0.25,
        low=0,
        high=1,
        closed="left",
        details="With 0, `predict` must be false, and a search refuses it.",
        cli=Flag(("--test-size",)),
        estimator="test_size",
    ),
    Field(
        "seed",
        "integer",
        "seeds the split and every grove",
        0,
        low=0,
        high=2**32 - 1,
        cli=Flag(("--seed",)),
        estimator="drawn from `random_state`",
    ),
    Field(
        "params",
        "object",
        "forest parameters, as scikit-learn's forests take them",
        {},
        form="an object of forest parameters",
        details=f"Any of {', '.join(TREE_PARAMS)}, and a classifier's `class_weight` (`balanced`, "
        "`balanced_subsample`, or an object of class labels to weights, each label one of the "
        "data's classes). They are checked with scikit-learn's own constraints; `max_samples`, "
        "`max_leaf_nodes` and `max_depth`, which scale a tree's memory, are bounded by the "
        "training rows.",
        cli=Flag(
            ("--param",),
            metavar="NAME=VALUE",
            note="VALUE is JSON (12, 0.5, null, true) or else a bare string (sqrt), e.g. "
            "max_depth=12 or max_features=sqrt",
        ),
        estimator="a parameter of its own each (`criterion`, `max_depth`, ...)",
    ),
    Field(
        "max_concurrency",
        "integer",
        "child executions (batches of groves) trained at once",
        10,
        low=1,
        high=MAX_CONCURRENCY,
        details="Locally also capped by the cores.",
        cli=Flag(("--max-concurrency",)),
        estimator="max_concurrency",
    ),
    Field(
        "groves_per_invocation",
        "integer",
        "groves one Lambda invocation (or local worker) trains, in turn",
        1,
        low=1,
        high=MAX_GROVES_PER_INVOCATION,
        details="The Map's `ItemBatcher`. Raise it for many tiny groves (2,000 one-tree groves "
        "on iris: 17.9 s with 1, 14.8 s with 10); for groves of 10+ trees 1 keeps every grove "
        "in parallel (digits: 3.0 s with 1, 2, 5 or 10).",
        cli=Flag(("--groves-per-invocation",)),
        estimator="groves_per_invocation",
    ),
    Field(
        "predict",
        "boolean",
        "score the model on the held-out split",
        False,
        cli=Flag(("-p", "--predict"), switch=True),
        estimator="true when `test_size` is above 0",
    ),
    Field(
        "rows_per_grove",
        "integer",
        "training rows each grove reads, a seeded sample of its own from which its trees bootstrap",
        None,
        low=1,
        high=MAX_ROWS,
        null=True,
        default_note="every row while they fit train_grove's memory, else as many as fit",
        details="Stripes of rows, read by range; the run's summary says how many and why.",
        cli=Flag(("--rows-per-grove",)),
        estimator=NOT_A_PARAMETER,
    ),
    Field(
        "max_test_rows",
        "integer",
        "held-out rows of a table kept for scoring, at most; the rest neither train nor score",
        200_000,
        low=1,
        high=MAX_ROWS,
        details="So that scoring's cost does not grow with the table; a search on a table "
        "keeps at most as many validation rows too.",
        cli=Flag(("--max-test-rows",)),
        estimator=NOT_A_PARAMETER,
    ),
    Field(
        "resume",
        "other",
        "continue an unfinished run of the build with its stored request, instead of starting "
        "one: groves with a verified file are not trained again",
        ABSENT,
        form="true (the newest uncommitted run of build_id), or a run id of it",
        details="A resuming request has only `build_id` and `resume`.",
        cli=Flag(("--resume",), switch=True, note="here, NAME's newest unfinished run"),
        estimator="not a parameter: each fit is a new run",
    ),
)

BATCH: tuple[Field, ...] = (
    Field(
        "build_id",
        "build id",
        "the build whose model predicts",
        form="a build with a committed run",
        cli=Flag(("build_id",), metavar="NAME"),
    ),
    Field(
        "data",
        "text",
        "the rows to predict: .csv/.parquet/.npz path or s3:// URI",
        form="a path or an s3:// URI",
        details="A CSV or Parquet table's training feature columns are matched by name, an "
        "`.npz` gives `X`; a built-in dataset's name also works.",
        cli=Flag(("--data",)),
    ),
    Field(
        "output",
        "text",
        "where the predictions go: a .csv or .parquet path or s3:// URI",
        form="a path or s3:// URI ending in .csv or .parquet",
        details="Checked before any work: not the input, not a directory, under a directory "
        "it can write (a real test write), in a bucket that exists; on AWS under "
        "`s3://<bucket>/outputs/`. The output and its sidecar end as one batch's pair when two "
        "batches write one output at once.",
        cli=Flag(("--out",)),
    ),
    Field(
        "run_id",
        "run id",
        "a committed run of the build",
        None,
        null=True,
        default_note="the build's latest",
        form="a run id",
        cli=Flag(("--run",)),
    ),
    Field(
        "rows_per_chunk",
        "integer",
        "rows each function predicts at once",
        50_000,
        low=1,
        high=MAX_ROWS_PER_CHUNK,
        cli=Flag(("--rows-per-chunk",)),
    ),
    Field(
        "groves_per_shard",
        "integer",
        "groves each function reads",
        None,
        low=1,
        high=MAX_GROVES,
        null=True,
        default_note="chosen from the groves' sizes, so that a function reads at most 512 MiB "
        "of them; a small forest is one shard",
        cli=Flag(("--groves-per-shard",)),
    ),
    Field(
        "max_concurrency",
        "integer",
        "functions predicting at once",
        10,
        low=1,
        high=MAX_CONCURRENCY,
        cli=Flag(("--max-concurrency",)),
    ),
    Field(
        "keep",
        "columns",
        "input columns carried into the output beside the predictions, such as an id",
        [],
        details="CSV and Parquet input only; not `prediction`, `prediction_<j>` or `proba_*`, "
        "the output's own columns.",
        cli=Flag(("--keep",), metavar="COL"),
    ),
)

# What a search adds to the training request's fields (but ``predict`` and ``resume``).
# What a search may rank its candidates by (``groves.forest.measures`` computes each); lower is
# better for these:
CLASSIFIER_METRICS = ("accuracy", "balanced_accuracy", "log_loss", "roc_auc")
REGRESSOR_METRICS = ("r2", "mae", "rmse")
LOWER_IS_BETTER = ("log_loss", "mae", "rmse")
SEARCH_ONLY: tuple[Field, ...] = (
    Field(
        "search",
        "object",
        "the forest parameters' candidates: a grid, or random draws seeded by the run's seed",
        form='{"grid": {param: [values]}} or {"random": {"n_candidates": N, "ranges": {param: '
        '[low, high]}, "choices": {param: [values]}}}',
        details="At most 1,000 candidates, a grid's counted before any is built; random "
        "ranges must be finite, and integer ranges draw integers.",
        cli="`--grid NAME=V1,V2`, or `--random N` with `--param-range NAME=LOW:HIGH`",
    ),
    Field(
        "validation_size",
        "number",
        "the share of the training rows candidates are compared on",
        0.2,
        low=0,
        high=1,
        closed="neither",
        details="A table's are chosen row by row, as its held-out rows are (at most "
        "`max_test_rows` kept); arrays' by a stratified split.",
        cli=Flag(("--validation-size",)),
    ),
    Field(
        "metric",
        "choice",
        "what the candidates are ranked by on the validation rows",
        None,
        choices=(*CLASSIFIER_METRICS, *REGRESSOR_METRICS),
        null=True,
        default_note="the forest's score: accuracy, or a regressor's R²",
        details="A classifier's: accuracy, balanced_accuracy (the mean recall over the classes: "
        "for a skewed target), log_loss, roc_auc; a regressor's: r2, mae, rmse. Lower is "
        "better for log_loss, mae and rmse. The leaderboard records it.",
        cli=Flag(("--metric",)),
    ),
    Field(
        "winner_build",
        "build id",
        "the build the candidates' runs and the committed best go to, so that build_id's "
        "model stays its latest",
        None,
        null=True,
        default_note="build_id, where the search's record always is",
        form=BUILD_ID_FORM,
        cli=Flag(("--build",), metavar="WINNER"),
    ),
    Field(
        "commit",
        "boolean",
        "make the best the build's latest (else it is committed beside it, and the search says "
        "how to promote it)",
        False,
        cli=Flag(("--commit",), switch=True),
    ),
)
SEARCH: tuple[Field, ...] = (
    *(f for f in TRAIN if f.name not in ("predict", "resume")),
    *SEARCH_ONLY,
)
REQUESTS = {"train": TRAIN, "batch": BATCH, "search": SEARCH}


def names(fields: tuple[Field, ...]) -> tuple[str, ...]:
    return tuple(f.name for f in fields)


def defaults(fields: tuple[Field, ...]) -> dict[str, Any]:
    """The fields' defaults (a fresh copy of each list and object)."""
    return {
        f.name: type(f.default)(f.default) if isinstance(f.default, list | dict) else f.default
        for f in fields
        if f.default is not REQUIRED and f.default is not ABSENT
    }


def field(fields: tuple[Field, ...], name: str) -> Field:
    return next(f for f in fields if f.name == name)


DEFAULTS = defaults(TRAIN)
BATCH_DEFAULTS = defaults(BATCH)


def check_fields(request: Any, fields: tuple[str, ...]) -> None:
    """``request`` is a JSON object of no fields but ``fields``; else a ``RequestError``."""
    if not isinstance(request, dict):
        raise RequestError("request", f"must be a JSON object, got {type(request).__name__}")
    unknown = sorted(str(name) for name in set(request) - set(fields))
    if unknown:
        raise RequestError(
            unknown[0] or "request",
            f"unknown field {unknown[0]!r}; allowed fields are {', '.join(fields)}",
        )


def checked(request: Any, fields: tuple[Field, ...]) -> dict[str, Any]:
    """``request`` (a JSON object of ``fields`` only) with the defaults filled in, each value
    of the field's type and within its bounds; else a ``RequestError`` naming the first bad
    field. What depends on the data (a column, a file) is checked where it is read."""
    check_fields(request, names(fields))
    spec = {**defaults(fields), **request}
    for f in fields:
        if f.name in spec:
            f.check(spec[f.name])
        elif f.default is REQUIRED:
            raise RequestError(f.name, f"required: {f.help}")
    return spec


# The serve function (``groves.steps.serve``, ``groves serve``): how often it reads the build's
# latest.json for a newer run, in seconds.
REFRESH_SECONDS = 5.0
