"""Damage the stored files of a committed build N times and count what every entry point did.

    python bench/fuzz_store.py 300 [--seed 0] [--show 40]

One probe is one damaged file (bytes overwritten, truncated, a JSON field replaced by another
type, deleted or duplicated) on a fresh copy of a template store, then every entry point of
``tests/workflow/test_stored_damage.py`` (load_model, export, predict, batch, report, ls,
history, scoring). Prints the counts per probe and per entry point: clean (the same answer),
refused in one line, silently wrong (another answer, or a refusal of several lines), and
tracebacks by exception type; then each failure: file, damage, entry point, outcome.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "workflow")]

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_stored_damage import damages, make_template, probe  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="probes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=60, help="failures printed")
    args = parser.parse_args()
    failures: list[tuple[str, str, str, str, str]] = []
    per_probe: Counter[str] = Counter()
    per_entry: dict[str, Counter[str]] = defaultdict(Counter)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="groves-fuzz-") as folder:
        template = make_template(Path(folder))

        @settings(
            max_examples=args.n,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],
        )
        @given(data=st.data())
        def run(data) -> None:
            name, described, change = data.draw(damages(template.files))
            try:
                found = probe(template, name, change)
            except Exception as exc:  # the harness's own fault: counted, shown, not fatal
                per_probe["harness error"] += 1
                failures.append((name, described, "harness", "harness error", repr(exc)))
                return
            if not found:
                per_probe["unchanged"] += 1
                return
            verdicts = {v for v, _ in found.values()}
            bad = sorted(v for v in verdicts if v not in ("clean", "refused"))
            per_probe[bad[0] if bad else "refused" if "refused" in verdicts else "clean"] += 1
            for entry, (verdict, outcome) in found.items():
                per_entry[entry][verdict] += 1
                if verdict not in ("clean", "refused"):
                    failures.append((name, described, entry, verdict, str(outcome[1])[:200]))

        seed(args.seed)(run)()
    seconds = time.perf_counter() - started
    probes = sum(per_probe.values())
    print(
        f"{probes} probes in {seconds:.0f} s: "
        + ", ".join(f"{n} {k}" for k, n in per_probe.most_common())
    )
    print("(a probe counts as its worst entry point: wrong or raised before refused before clean)")
    for entry, counts in per_entry.items():
        print(f"  {entry:<16} " + ", ".join(f"{n} {k}" for k, n in counts.most_common()))
    print(f"\n{len(failures)} failures (file | damage | entry point | verdict | outcome):")
    shown = Counter()
    for name, described, entry, verdict, outcome in failures:
        key = (_kind(name), entry, verdict)
        shown[key] += 1
        if shown[key] <= 2 and sum(shown.values()) <= args.show:
            print(f"- {name} | {described[:80]} | {entry} | {verdict} | {outcome}")
    print("\nby file kind, entry point, verdict:")
    for (kind, entry, verdict), n in sorted(
        Counter((_kind(f[0]), f[2], f[3]) for f in failures).items()
    ):
        print(f"  {n:>4}  {kind:<24} {entry:<16} {verdict}")
    return 0


def _kind(name: str) -> str:
    last = Path(name).name
    if last.startswith(("grove_", "chunk_")):
        return last.split("_", 1)[0] + "_N." + last.split(".", 1)[1]
    if "/history/" in name:
        return ("predictions/" if "/predictions/" in name else "runs/") + "history/*.json"
    return last


if __name__ == "__main__":
    sys.exit(main())
