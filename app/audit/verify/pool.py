"""The process pool: a bundle's units of work checked by worker processes, or all in this
one; then the parts joined, the tree checked, the heads read.

Bundles above `PARALLEL_BYTES` are checked by as many worker processes as there are cores
(at most 8), one unit of work at a time: each part of the ledger with its part of the
request records (`part_check`), each big other file alone and the small ones together
(`plain`). A worker opens the zip itself and hands back a small summary; this process reads
`ledger/heads.jsonl` meanwhile, then joins the summaries. Smaller bundles are checked in
this process, the same way, a unit after the other.
"""

from __future__ import annotations

import os
import sys
import threading
import zipfile
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from typing import Any

from app.audit import layout
from app.audit.verify.framing import FileCheck, read_member
from app.audit.verify.join import LedgerResult, join
from app.audit.verify.members import BLOCK
from app.audit.verify.part_check import check_part
from app.audit.verify.plain import check_plain
from app.audit.verify.signed_heads import check_heads
from app.audit.verify.tree import tree_problem
from app.audit.verify.units import Context, Part, listed_bytes

# Bundles above this size are checked by worker processes, one part of the ledger at a time.
PARALLEL_BYTES = 64 * 1024 * 1024


def worker_count(source: str | bytes, bundle_bytes: int, units: int, workers: int | None) -> int:
    """Worker processes for a bundle: `workers` if given (0: none), else one per core (at
    most 8) above `PARALLEL_BYTES`; never more than the units of work, and none for a
    bundle given as bytes (a worker reads the file itself)."""
    cores = os.cpu_count() or 1
    parallel = (
        workers
        if workers is not None
        else (min(cores, 8) if bundle_bytes > PARALLEL_BYTES and cores > 1 else 0)
    )
    return min(parallel, units) if isinstance(source, str) else 0


def check_ledger(
    ctx: Context, parts: list[Part], plain: list[str], workers: int, bundle: zipfile.ZipFile
) -> tuple[LedgerResult, list[FileCheck]]:
    """Every part and every other file, by `workers` processes (0: this one); then the
    parts joined, the tree, the heads."""
    result = LedgerResult(files=[])
    if workers:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_start_method())
        try:
            # The largest first (the bytes to read are about what a unit costs), so that the
            # workers run out of work at about the same time.
            jobs: list[tuple[int, Any, tuple[Any, ...]]] = [
                (listed_bytes(ctx, [*part.names()]), check_part, (part,)) for part in parts
            ]
            groups = _plain_groups(ctx, plain)
            jobs += [(listed_bytes(ctx, group), check_plain, (ctx, group)) for group in groups]
            largest_first = sorted(range(len(jobs)), key=lambda i: -jobs[i][0])
            futures: dict[int, Future[Any]] = {
                i: pool.submit(jobs[i][1], *jobs[i][2]) for i in largest_first
            }
            heads_file = read_member(
                bundle, layout.HEADS, ctx.files[layout.HEADS],
                lambda lines: check_heads(ctx, result, lines),
            )  # fmt: skip
            answers = [futures[i].result() for i in range(len(jobs))]
            found = answers[: len(parts)]
            plain_checks = [check for checks in answers[len(parts) :] for check in checks]
        finally:
            # With every answer in, there is nothing to wait for: the workers end on their own
            # (a quarter of a second of interpreter teardown, measured, for a million records).
            pool.shutdown(wait=False, cancel_futures=True)
    else:
        found = [check_part(part, bundle) for part in parts]
        plain_checks = check_plain(ctx, plain, bundle)
        heads_file = read_member(
            bundle, layout.HEADS, ctx.files[layout.HEADS],
            lambda lines: check_heads(ctx, result, lines),
        )  # fmt: skip
    join(ctx, found, result)
    readable = all(not check.unreadable for check in result.files)
    if result.problem is None and readable:
        result.problem = tree_problem(ctx, result, found, bundle)
    result.files.append(heads_file)
    return result, plain_checks


def _start_method() -> BaseContext:
    """How worker processes start: forked where this process runs no other Python thread
    (Linux), at once and with nothing to import; else spawned, each importing the program's
    main module again first (over a second for `warden`, whose imports are many)."""
    if sys.platform == "linux" and threading.active_count() == 1:
        return get_context("fork")
    return get_context("spawn")


def _plain_groups(ctx: Context, names: Sequence[str]) -> list[list[str]]:
    """The other files as units of work: each big one alone, the small ones together."""
    big = [name for name in names if listed_bytes(ctx, [name]) > BLOCK * 8]
    small = [name for name in names if name not in big]
    return [[name] for name in big] + ([small] if small else [])
