"""Rows at any scale, measured: memory flat as the table grows, and what sampling per grove
costs in accuracy.

    python bench/bench_rows.py memory --rows 5000000 20000000 --memory-mb 1024
    python bench/bench_rows.py accuracy --rows 1500000

``memory`` generates a wide messy table (6 text columns with thousands of values, 50 numbers and
a boolean, 10% of every feature missing, a text label) as Parquet in several files (and, with
``--csv``, as CSV files), then runs a build on it with every function held to ``--memory-mb``
(the local runner kills an invocation over it, as Lambda does), and prints the plan's and the
groves' peak memory, the prepared rows' bytes and the times, side by side for each size.

``accuracy`` trains forests on the messy table (``bench/messy_table.py``) whose groves each
sample 1%, 5%, 10%, 25% and 100% of the training rows, and one scikit-learn forest on a single
global 10% sample (the field's anchor), all scored on the same held-out rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))

from messy_table import written

TEXT = {"carrier": 16, "tailnum": 4000, "origin": 3, "dest": 105, "model": 1200, "maker": 35}
NUMBERS = 50
CHUNK = 1_000_000  # rows generated at once: the generator's memory is bounded too


def wide_chunk(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    columns: dict[str, pa.Array] = {}
    codes = {name: rng.zipf(1.3, rows) % count for name, count in TEXT.items()}
    for name, count in TEXT.items():
        words = np.array([f"{name[:2].upper()}{i:04d}" for i in range(count)], dtype=object)
        columns[name] = pa.array(words[codes[name]], mask=rng.random(rows) < 0.1)
    numbers = rng.normal(size=(rows, NUMBERS)).astype(np.float32)
    for j in range(NUMBERS):
        columns[f"x{j:02d}"] = pa.array(numbers[:, j], mask=rng.random(rows) < 0.1)
    weekend = rng.random(rows) < 2 / 7
    columns["weekend"] = pa.array(weekend, mask=rng.random(rows) < 0.1)
    score = numbers[:, :5].sum(axis=1) * 0.4 + 0.5 * (codes["carrier"] % 4 == 1) + 0.2 * weekend
    late = score + rng.normal(0, 0.8, rows) > 0.3
    columns["status"] = pa.array(np.where(late, "late", "on time"))
    return pa.table(columns)


def generate(rows: int, files: int, folder: Path, csv: bool) -> Path:
    """The wide table in ``files`` Parquet (or CSV) files under ``folder``, made once."""
    kind = "csv" if csv else "parquet"
    out = folder / f"wide-{rows}-{kind}"
    if out.exists():
        return out
    partial = out.with_name(out.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    per_file = -(-rows // files)
    for i in range(files):
        path = partial / f"part-{i:03d}.{kind}"
        n = min(per_file, rows - i * per_file)
        writer = None
        for start in range(0, n, CHUNK):
            chunk = wide_chunk(min(CHUNK, n - start), seed=i * 1000 + start // CHUNK)
            if csv:
                if writer is None:
                    writer = pa_csv.CSVWriter(path, chunk.schema)
                writer.write_table(chunk)
            else:
                if writer is None:
                    writer = pq.ParquetWriter(path, chunk.schema)
                writer.write_table(chunk)
        if writer is not None:
            writer.close()
    partial.rename(out)
    return out


def build(dataset: str, store: str, memory_mb: int | None, **request: object) -> dict:
    from groves.engine.local import run_local

    started = time.perf_counter()
    run = run_local({"dataset": dataset, "target": "status", **request}, store, memory_mb=memory_mb)
    seconds = time.perf_counter() - started
    if run.status != "SUCCEEDED":
        raise SystemExit(f"{request['build_id']}: {run.error}: {run.cause}")
    return {"seconds": seconds, **run.output}


def build_name(rows: int, csv: bool) -> str:
    return f"rows-{rows}" + ("-csv" if csv else "")


def memory(args: argparse.Namespace) -> None:
    from groves.store.artifacts import read_plan
    from groves.store.uris import open_store

    rows_seen = []
    for rows in args.rows:
        folder = generate(rows, args.files, args.out, args.csv)
        size = sum(p.stat().st_size for p in folder.iterdir())
        store = str(args.out / "store")
        out = build(
            f"{folder}/",
            store,
            args.memory_mb,
            build_id=build_name(rows, args.csv),
            n_trees=args.trees,
            grove_size=1,
            predict=True,
        )
        plan = read_plan(open_store(store), build_name(rows, args.csv), out["run_id"])
        train = plan["data"]["prepared"]["train"]
        prepared = sum(s["bytes"] for s in train["shards"])
        steps = out["metrics"]["cost"]["steps"]
        row = {
            "rows": rows,
            "input MB": size / 1e6,
            "prepared MB": prepared / 1e6,
            "x memory": prepared / (args.memory_mb * 2**20),
            "plan peak MB": steps["plan"]["peak_rss_mb"],
            "part peak MB": steps.get("plan_part", {}).get("peak_rss_mb", 0.0),
            "grove peak MB": steps["train_grove"]["peak_rss_mb"],
            "grove rows": plan["sample"]["rows"] or plan["sample"]["of"],
            "plan s": steps["plan"]["billed_seconds"],
            "part s": steps.get("plan_part", {}).get("billed_seconds", 0.0),
            "build s": out["seconds"],
            "score": out["metrics"]["score"],
        }
        rows_seen.append(row)
        print(
            "  ".join(
                f"{k} {v:,.2f}" if isinstance(v, float) else f"{k} {v:,}" for k, v in row.items()
            ),
            flush=True,
        )
    if len(rows_seen) > 1:
        first, last = rows_seen[0], rows_seen[-1]
        print(
            f"{last['rows']:,} / {first['rows']:,} rows: plan peak x"
            f"{last['plan peak MB'] / first['plan peak MB']:.2f}, plan_part peak x"
            f"{last['part peak MB'] / (first['part peak MB'] or 1):.2f}, grove peak x"
            f"{last['grove peak MB'] / first['grove peak MB']:.2f}, prepared x"
            f"{last['prepared MB'] / first['prepared MB']:.2f}"
        )


def accuracy(args: argparse.Namespace) -> None:
    from sklearn.ensemble import RandomForestClassifier

    from groves.data.prepared import read_prepared
    from groves.store.artifacts import read_plan
    from groves.store.uris import open_store

    _, parquet = written(args.rows, args.out)
    store = str(args.out / "store-accuracy")
    results = {}
    n_train = None
    for share in args.shares:
        request = {"build_id": f"acc-{share}", "n_trees": args.trees, "grove_size": 10}
        if share < 1:
            request["rows_per_grove"] = max(1, int(share * (n_train or args.rows * 0.75)))
        out = build(str(parquet), store, None, predict=True, seed=0, **request)
        n_train = out["data"]["n_train"]
        results[share] = (out["metrics"]["score"], out["seconds"])
        print(
            f"groves sampling {share:>5.0%} of {n_train:,} rows each: accuracy "
            f"{out['metrics']['score']:.4f} in {out['seconds']:.1f} s",
            flush=True,
        )
    plan = read_plan(open_store(store), f"acc-{args.shares[-1]}", out["run_id"])
    split = read_prepared(open_store(store), plan)
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(split.y_train), size=len(split.y_train) // 10, replace=False)
    started = time.perf_counter()
    forest = RandomForestClassifier(args.trees, n_jobs=-1, random_state=0)
    forest.fit(split.X_train[chosen], split.y_train[chosen])
    score = forest.score(split.X_test, split.y_test)
    print(
        f"one forest on one global 10% sample: accuracy {score:.4f} in "
        f"{time.perf_counter() - started:.1f} s"
    )
    if 1.0 in results and 0.1 in results:
        print(
            f"10% per grove vs all rows: {100 * (results[0.1][0] - results[1.0][0]):+.2f} "
            f"points; vs one global 10% sample: {100 * (results[0.1][0] - score):+.2f} points"
        )


# What a deployed build adds that a local run does not measure (stated, not measured); the
# same figures as bench/project_aws.py's where they overlap.
ASSUMPTIONS = {
    "mb_per_vcpu": 1769.0,  # Lambda's CPU share: one vCPU at 1,769 MB, six at 10,240 MB
    "part_cores": 1.0,  # cores a part's pass uses: measured two at once on two cores, and
    # taken to gain nothing from more than one vCPU (pyarrow's and numpy's work a block at a time)
    "s3_read_mb_per_s": 100.0,  # one function's S3 reads (a file's download; ranged stripes)
    "s3_write_mb_per_s": 100.0,  # one function's S3 writes (a part's shards)
    "s3_request_s": 0.03,  # one small S3 GET or PUT: the reduces read a record a file, in turn
    "lambda_init_s": 3.0,  # a cold start with scikit-learn's imports
    "child_start_per_s": 100.0,  # child executions a Distributed Map starts per second
    "concurrency": 1000.0,  # Lambda's default concurrent executions per region
    "merge_and_score_s": 30.0,  # merge's metadata reads and scoring's capped votes (measured
    # at 10,000 trees by project_aws.py: 3.0 s and 11.8 s), rounded up
    "json_to_python": 5.0,  # memory a scan's JSON takes once parsed, per byte: PlanScanned
    # holds every file's scan (measured by tracemalloc: 4.9 while parsed, 3.0 kept)
    "tmp_mb": 10240.0,  # the template's TmpStorageSize
}


def project(args: argparse.Namespace) -> None:
    """A deployed build of ``--target-rows`` rows in ``--target-files`` files, from a ``memory``
    run's measurements: each plan step's and each part's seconds (a part's per row, scaled to
    its file), memory peaks, and a tree's fit seconds on the grove's sample. The plan is the
    state machine's: Plan (open), ScanParts (the files in waves of ``max_concurrency``, each
    wave as long as a file's scan), PlanScanned, PrepareParts, PlanPrepared; then the groves."""
    import json
    import math

    from groves.data.shards import SHARD_BYTES, Layout
    from groves.steps.cost import TEMPLATE_MEMORY_MB, TEMPLATE_TIMEOUT_SECONDS
    from groves.steps.planned import FIT_BYTES_PER_ROW, grove_sample
    from groves.store.artifacts import data_prefix, read_plan
    from groves.store.codec import get_json
    from groves.store.uris import open_store

    a, mb = ASSUMPTIONS, 2**20
    store = open_store(str(args.out / "store"))
    build = build_name(args.measured_rows, args.csv)
    run = sorted(store.list_children(f"{build}/runs/"))[-1]
    plan = read_plan(store, build, run)
    manifest = json.loads(store.get_bytes(f"{build}/runs/{run}/manifest.json"))
    data = data_prefix(build, run)
    parts = get_json(store, f"{data}decided.json")["parts"]
    files = [Path(f) for f in get_json(store, f"{data}table.json")["table"]["files"]]
    n = len(parts)
    scans, prepares = plan["part_usages"][:n], plan["part_usages"][n:]
    opened, scanned = plan["plan_usages"]
    prepared = plan["usage"]
    scan_json = sum(len(store.get_bytes(f"{data}scan_{k:05d}.json")) for k in range(n)) / n
    input_per_row = sum(f.stat().st_size for f in files) / args.measured_rows
    train = plan["data"]["prepared"]["train"]
    row_bytes = Layout.of(train).row_bytes
    train_share = plan["data"]["n_train"] / plan["data"]["n_rows"]
    held = sum(plan["data"]["prepared"][k]["bytes"] for k in ("X_test", "y_test"))

    def per_row(usages: list[dict]) -> float:  # the slowest file's seconds a row
        return max(u["billed_ms"] / 1000 / p["n_rows"] for u, p in zip(usages, parts, strict=True))

    def seconds(usage: dict) -> float:
        return usage["billed_ms"] / 1000

    # The projected table: files of equal rows.
    rows, n_files = args.target_rows, args.target_files
    file_rows = math.ceil(rows / n_files)
    file_mb = file_rows * input_per_row / 1e6
    cores = min(a["part_cores"], TEMPLATE_MEMORY_MB["plan_part"] / a["mb_per_vcpu"])
    download = file_mb / a["s3_read_mb_per_s"]
    scan_s = download + file_rows * per_row(scans) / cores
    shards_mb = file_rows * train_share * row_bytes / 1e6
    prepare_s = (
        download + file_rows * per_row(prepares) / cores + shards_mb / a["s3_write_mb_per_s"]
    )
    at_once = min(args.max_concurrency, a["concurrency"])
    part_waves = math.ceil(n_files / at_once)
    children_s = n_files / a["child_start_per_s"]
    open_s = seconds(opened) + download  # the first file is downloaded whole for its header
    more = n_files / n  # the reduces read a record (and PlanPrepared a part's held-out rows) a file
    scanned_s = seconds(scanned) * more + n_files * a["s3_request_s"]
    prepared_s = seconds(prepared) * more + 2 * n_files * a["s3_request_s"]
    plan_s = (
        open_s
        + part_waves * scan_s
        + scanned_s
        + part_waves * prepare_s
        + prepared_s
        + 2 * children_s
    )
    # The groves.
    groves = manifest["groves"]
    sampled = plan["sample"]["rows"] or plan["sample"]["of"]
    fit_per_tree = sum(g["fit_seconds"] for g in groves) / sum(g["n_trees"] for g in groves)
    record = {**train, "n_rows": int(rows * train_share)}
    sample = grove_sample({"rows_per_grove": args.rows_per_grove}, record, held)
    per_grove = sample["rows"] or sample["of"]
    train_vcpu = sample["memory_mb"] / a["mb_per_vcpu"]
    tree_s = fit_per_tree * per_grove / sampled * math.log(per_grove) / math.log(sampled)
    n_groves = math.ceil(args.trees / args.grove_size)
    grove_s = (
        a["lambda_init_s"]
        + per_grove * row_bytes / 1e6 / a["s3_read_mb_per_s"]
        + args.grove_size * tree_s / min(train_vcpu, args.grove_size)
    )
    waves = math.ceil(n_groves / at_once)
    groves_s = n_groves / a["child_start_per_s"] + waves * grove_s
    total = plan_s + groves_s + a["merge_and_score_s"]
    # Each function's peak memory, longest invocation and /tmp.
    peaks = manifest["cost"]["steps"]
    plan_peak = max(
        opened["peak_rss_mb"],
        scanned["peak_rss_mb"] + (n_files - n) * scan_json * a["json_to_python"] / mb,
        prepared["peak_rss_mb"],
    )
    grove_peak = (
        peaks["train_grove"]["peak_rss_mb"]
        + (per_grove - sampled) * (row_bytes + FIT_BYTES_PER_ROW) / mb
    )
    limits = {  # peak MB, longest s, /tmp MB
        "plan": (plan_peak, max(open_s, scanned_s, prepared_s), file_mb),
        "plan_part": (
            peaks["plan_part"]["peak_rss_mb"],
            max(scan_s, prepare_s),
            file_mb + SHARD_BYTES / 1e6,
        ),
        "train_grove": (grove_peak, grove_s, held / 1e6),
    }

    kind = "CSV" if args.csv else "Parquet"
    measured_file = args.measured_rows // n
    print(
        f"measured on {args.measured_rows:,} rows of {kind} in {n} files of ~{measured_file:,} "
        f"rows, every function held to {opened['memory_mb']:,} MB (a noisy, shared 2-core "
        "machine; two parts at once):"
    )
    print(
        f"  a file's scan {per_row(scans) * 1e6:.1f} us/row, prepare "
        f"{per_row(prepares) * 1e6:.1f} us/row (the slowest file's); Plan open "
        f"{seconds(opened):.1f} s, PlanScanned {seconds(scanned):.1f} s, PlanPrepared "
        f"{seconds(prepared):.1f} s; a scan's record {scan_json / 1e3:.0f} kB; a tree "
        f"{fit_per_tree:.1f} s on {sampled:,} rows; input {input_per_row:.0f} B/row, "
        f"prepared {row_bytes} B/row"
    )
    print(
        f"projected: {rows:,} rows in {n_files:,} files of {file_rows:,} rows "
        f"({file_mb:,.0f} MB of {kind} each), {args.trees:,} trees in {n_groves:,} groves of "
        f"{args.grove_size}, max_concurrency {args.max_concurrency:,}"
    )
    lines = [
        ("Plan (open)", open_s, "list, and the first file downloaded whole for its header"),
        (
            "ScanParts",
            part_waves * scan_s + children_s,
            f"{part_waves} wave(s) of a file's scan {scan_s:.0f} s ({download:.0f} s download); "
            f"{children_s:.0f} s starting children",
        ),
        ("PlanScanned", scanned_s, f"reads {n_files:,} scans in turn"),
        (
            "PrepareParts",
            part_waves * prepare_s + children_s,
            f"{part_waves} wave(s) of a file's prepare {prepare_s:.0f} s ({download:.0f} s "
            f"download, {shards_mb / a['s3_write_mb_per_s']:.0f} s writing {shards_mb:.0f} MB "
            "of shards)",
        ),
        ("PlanPrepared", prepared_s, f"reads {n_files:,} parts' records and held-out rows"),
        (
            "TrainGroves",
            groves_s,
            f"{waves} wave(s) of a grove {grove_s:.0f} s: {per_grove:,} rows each "
            f"({'rows_per_grove' if sample['asked'] else 'as many as fit'}), train_grove's "
            f"{sample['memory_mb']:,} MB, {train_vcpu:.2f} vCPU, a tree {tree_s:.0f} s",
        ),
        ("merge + score", a["merge_and_score_s"], "assumed"),
    ]
    for name, secs, why in lines:
        print(f"  {name:<14}{secs:7.0f} s  {why}")
    goal = "within" if total <= 15 * 60 else "OVER"
    print(f"  {'build':<14}{total:7.0f} s  = {total / 60:.1f} min ({goal} the 15-minute goal)")
    print("function      peak MB / memory   longest s / timeout   /tmp MB / size")
    for step, (peak, secs, tmp) in limits.items():
        memory_mb, timeout = TEMPLATE_MEMORY_MB[step], TEMPLATE_TIMEOUT_SECONDS[step]
        print(
            f"  {step:<12}{peak:6,.0f} / {memory_mb:,} ({peak / memory_mb:4.0%})"
            f"  {secs:5.0f} / {timeout} ({secs / timeout:4.0%})"
            f"  {tmp:6,.0f} / {a['tmp_mb']:,.0f} ({tmp / a['tmp_mb']:4.0%})"
            + ("  OVER" if peak > memory_mb or secs > timeout or tmp > a["tmp_mb"] else "")
        )
    print(
        f"  (plan_part's peak as measured on ~{measured_file:,}-row files; plan's PlanScanned "
        f"peak plus {n_files - n} more scans held)"
    )
    print("assumptions:")
    for name, value in a.items():
        print(f"    {name} = {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    mem = commands.add_parser("memory", help="peak memory as the table grows")
    mem.add_argument("--rows", type=int, nargs="+", default=[5_000_000, 20_000_000])
    mem.add_argument("--files", type=int, default=10, help="files the table is cut into")
    mem.add_argument("--csv", action="store_true", help="CSV files instead of Parquet")
    mem.add_argument("--memory-mb", type=int, default=1024, help="every function held to it")
    mem.add_argument("--trees", type=int, default=4, help="trees, one a grove")
    mem.add_argument("--out", type=Path, default=Path("/tmp/groves-bench"))
    mem.set_defaults(run=memory)
    acc = commands.add_parser("accuracy", help="sampling per grove against all rows")
    acc.add_argument("--rows", type=int, default=1_500_000)
    acc.add_argument("--trees", type=int, default=100)
    acc.add_argument("--shares", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.25, 1.0])
    acc.add_argument("--out", type=Path, default=Path("/tmp/groves-bench"))
    acc.set_defaults(run=accuracy)
    pro = commands.add_parser("project", help="a deployed build of many rows, projected")
    pro.add_argument("--measured-rows", type=int, default=20_000_000)
    pro.add_argument("--target-rows", type=int, default=100_000_000)
    pro.add_argument("--trees", type=int, default=1000)
    pro.add_argument("--target-files", type=int, default=100, help="files of equal rows")
    pro.add_argument("--csv", action="store_true", help="project the CSV run")
    pro.add_argument("--max-concurrency", type=int, default=1000, help="the request's")
    pro.add_argument("--grove-size", type=int, default=2)
    pro.add_argument("--rows-per-grove", type=int, help="default: as many as fit")
    pro.add_argument("--out", type=Path, default=Path("/tmp/groves-bench"))
    pro.set_defaults(run=project)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
