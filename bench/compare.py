"""Run one benchmark from two checkouts in alternating rounds and print their figures side by side.

Machines drift in speed over minutes, so a figure measured now is only comparable with one
measured beside it. This runs `bench/<name>.py --json` from a baseline checkout (another
commit, e.g. a `git worktree` of the previous release) and from this one, in turns — A B,
then B A, ... — each with its own checkout first on the import path (servers the benchmark
starts inherit it), and prints every numeric figure of the JSON line each run ends with:
the median of each side and the ratio of the medians.

    git worktree add /tmp/warden-base HEAD~1
    .venv/bin/python bench/compare.py /tmp/warden-base policies --rounds 3 -- --iterations 5000

It asserts nothing; `--figure` keeps only figures whose dotted name contains the text.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def run_once(checkout: Path, bench: str, extra: list[str], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    script = checkout / "bench" / f"{bench}.py"
    done = subprocess.run(
        [sys.executable, str(script), "--json", *extra],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(
            f"{script} printed no JSON line (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return dict(json.loads(lines[-1]))


def numbers(value: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every numeric leaf of a JSON value, by dotted path (list items by index)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield prefix, float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from numbers(item, f"{prefix}[{i}]")


def main() -> int:
    parser = argparse.ArgumentParser(
        usage="%(prog)s [options] BASELINE BENCH [-- BENCH-ARGUMENTS]",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("baseline", type=Path, help="the other checkout (its bench/ is run)")
    parser.add_argument("bench", help="benchmark name: ingest, sdk_overhead, policies, audit ...")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side")
    parser.add_argument("--figure", action="append", default=[], help="keep figures naming this")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    # What follows `--` goes to the benchmark untouched (argparse would read its options).
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    args.extra = argv[cut + 1 :]
    sides = {"baseline": args.baseline.resolve(), "this": HERE}
    results: dict[str, list[dict[str, float]]] = {"baseline": [], "this": []}
    for r in range(args.rounds):
        order = ["baseline", "this"] if r % 2 == 0 else ["this", "baseline"]
        for side in order:
            print(f"round {r + 1}/{args.rounds}: {side} ...", file=sys.stderr, flush=True)
            figures = run_once(sides[side], args.bench, args.extra, args.timeout)
            results[side].append(dict(numbers(figures)))
    names = [
        n for n in results["this"][0]
        if n in results["baseline"][0] and (not args.figure or any(f in n for f in args.figure))
    ]  # fmt: skip
    width = max((len(n) for n in names), default=10)
    print(f"bench/{args.bench}.py, {args.rounds} rounds each, medians "
          f"(baseline {sides['baseline']}, this {sides['this']})")  # fmt: skip
    print(f"{'figure':<{width}}  {'baseline':>14}  {'this':>14}  {'this/base':>9}")
    for name in names:
        base = statistics.median(r[name] for r in results["baseline"] if name in r)
        this = statistics.median(r[name] for r in results["this"] if name in r)
        ratio = f"{this / base:9.3f}" if base else f"{'-':>9}"
        print(f"{name:<{width}}  {base:14.4g}  {this:14.4g}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
