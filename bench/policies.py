"""Policy evaluation latency benchmark: the built-in set under cel-expr-python and cel-python.

Run from the repository root:

    .venv/bin/python bench/policies.py                      # 20,000 iterations per series
    .venv/bin/python bench/policies.py --iterations 5000 --json

What it measures, in one process:

1. Warden: `PolicySet.evaluate(phase, context)` of the built-in set (`policies.BUILTIN`), the
   call the SDK's inline gates and the gateway make: it builds the CEL activation from the
   Python context, evaluates every applicable policy's `when` and renders the messages of
   the policies that fired. Each call is timed with `time.perf_counter_ns` after a warm-up,
   on three contexts of the booking stack: the reference `post_decision` context (nothing
   fires), a risky one (a likely conflict and a low confidence: two policies fire, so message
   rendering is included) and the `pre_request` context.
2. Where that time goes: the same reference context without `decision.candidates` (which no
   built-in post_decision policy reads), and the `when` expressions alone on one activation
   reused across calls (no conversion of the context).
3. cel-python (`celpy`, pure Python): the same `when` expressions of the built-in
   post_decision policies, compiled once, evaluated on the same context converted with
   `celpy.json_to_cel`, with the default `InterpretedRunner` and with the `CompiledRunner`
   (the transpiler). Both engines must give the same boolean result per policy on the
   reference and on the risky context (a mismatch fails the run, exit status 1).

It prints figures; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import logging
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# This file is bench/policies.py: with bench/ first on sys.path (`python bench/policies.py`),
# `import policies` would import this script instead of the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import policies
from policies import ROOTS, Phase, PolicySet
from policies.engine import cel_literal

TARGET_P99_US = 100.0
N_CANDIDATES = 16
START_DATE = "2026-11-24"
SEED = 20261124

# --------------------------------------------------------------------------------------------
# Contexts of the booking stack (LLM intent parser + world model + MPC planner)
# --------------------------------------------------------------------------------------------

REQUEST = {
    "size": 118,  # bytes of the user's text
    "subject": "u-17",
    "intent": {
        "people": 6,
        "day_offset": 1,
        "start_hour": 15,
        "duration_hours": 2,
        "equipment": ["projector"],
        "flexibility_hours": 2,
    },
}
MODELS = {
    "llm": {"name": "booking-intent-llm", "version": "2", "aliases": ["champion"],
            "tags": {"base": "llama-3.1-8b-instruct", "approved": "true"}},
    "world_model": {"name": "booking-world-model", "version": "3", "aliases": ["champion"],
                    "tags": {"approved": "true", "sim_version": "4"}},
    "planner": {"name": "mpc-planner", "version": "1", "aliases": ["champion"],
                "tags": {"horizon": "8"}},
}  # fmt: skip
CONSTRAINTS = [
    "capacity >= 6",
    "equipment includes projector",
    "start within 2h of 15:00",
    "predicted conflict_probability <= 0.5",
]


def candidates(rng: random.Random) -> list[dict[str, Any]]:
    """16 candidates as `Candidate.to_record()` gives them, best score first (the planner's
    weights: -4 * p(conflict) - cost / 100 + utilisation fit around 0.7)."""
    out = []
    for _ in range(N_CANDIDATES):
        room = rng.randint(1, 12)
        hour = 15 + rng.randint(-2, 2)
        conflict = rng.betavariate(1.2, 9.0)
        utilisation = rng.uniform(0.25, 1.0)
        cost = rng.uniform(40.0, 180.0)
        fit = 1.0 - min(abs(utilisation - 0.7) / 0.7, 1.0)
        out.append({
            "action": f"room-{room:02d}@{START_DATE}T{hour:02d}:00/2h",
            "score": round(-4.0 * conflict - cost / 100 + fit, 6),
            "predicted": {"conflict_probability": round(conflict, 6),
                          "utilisation": round(utilisation, 6), "cost": round(cost, 4)},
            "feasible": conflict <= 0.5,
        })  # fmt: skip
    out.sort(key=lambda c: -c["score"])
    return out


def post_decision_context(risky: bool = False) -> dict[str, Any]:
    """The reference post_decision context; `risky`: the planner chose an action the world
    model expects to conflict, with a low confidence (risk-cap and the confidence floor fire)."""
    cands = candidates(random.Random(SEED))
    confidence = 0.93
    if risky:
        cands[0] = {
            "action": f"room-03@{START_DATE}T15:00/2h",
            "score": 0.412,
            "predicted": {"conflict_probability": 0.72, "utilisation": 0.857143, "cost": 80.0},
            "feasible": True,
        }
        confidence = 0.41
    chosen = cands[0]
    return {
        "project": "booking",
        "request": REQUEST,
        "models": MODELS,
        "decision": {
            "chosen": chosen["action"],
            "confidence": confidence,
            "constraints": CONSTRAINTS,
            "candidates": cands,
        },
        "predicted": dict(chosen["predicted"]),
    }


def pre_request_context() -> dict[str, Any]:
    return {"project": "booking", "request": REQUEST, "models": MODELS}


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass
class Series:
    label: str
    samples_ns: list[int]

    def pct(self, q: float) -> float:
        """Nearest-rank percentile, in µs."""
        s = self.samples_ns
        return s[max(0, math.ceil(q * len(s)) - 1)] / 1000

    @property
    def mean(self) -> float:
        return sum(self.samples_ns) / len(self.samples_ns) / 1000

    def figures(self, p999: bool = True) -> dict[str, float]:
        out = {"p50_us": round(self.pct(0.50), 2), "p99_us": round(self.pct(0.99), 2),
               "p999_us": round(self.pct(0.999), 2), "mean_us": round(self.mean, 2),
               "iterations": len(self.samples_ns)}  # fmt: skip
        if not p999:
            del out["p999_us"]
        return out


def timed(label: str, fn: Callable[[], object], iterations: int, warmup: int) -> Series:
    """Each call of `fn` timed on its own; the garbage collector stays on, as in a service."""
    for _ in range(warmup):
        fn()
    gc.collect()
    clock = time.perf_counter_ns
    samples = [0] * iterations
    for i in range(iterations):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    samples.sort()
    return Series(label, samples)


# --------------------------------------------------------------------------------------------
# cel-python
# --------------------------------------------------------------------------------------------


def warden_expression(policy: policies.Policy) -> str:
    """The text Warden compiles for a policy's `when` (engine.CompiledPolicy._compile)."""
    return f"cel.bind(params, dyn({cel_literal(policy.params)}), ({policy.when}))"


class CelPython:
    """The post_decision `when` expressions under cel-python, one Runner each."""

    def __init__(self, runner: str, selected: list[policies.Policy], probe: dict[str, Any]):
        import celpy
        import celpy.celparser

        self.celpy = celpy
        self.runner = runner
        runner_class = {"interpreted": celpy.InterpretedRunner,
                        "compiled": celpy.CompiledRunner}[runner]  # fmt: skip
        # The Lark parser is a class-level singleton built with the first environment's tree
        # class; the CompiledRunner needs its own (celpy's docs: reset CEL_PARSER).
        celpy.celparser.CELParser.CEL_PARSER = None
        self.env = celpy.Environment(runner_class=runner_class)
        self.policies = selected
        self.params = [celpy.json_to_cel(p.params) for p in selected]
        # Warden's own text first; if cel-python cannot run it, `params` becomes a variable.
        self.bind_error = ""
        logging.disable(logging.ERROR)  # the CompiledRunner logs every failed evaluation
        try:
            programs = [self.env.program(self.env.compile(warden_expression(p))) for p in selected]
            activation = self.activation(probe)
            for program in programs:
                program.evaluate(activation)
            self.uses_bind = True
        except Exception as exc:  # celpy raises its own types for parse and eval errors
            reason = str(exc.args[0] if exc.args else exc).split(" (in activation")[0]
            self.bind_error = " ".join(reason.split())[:80]
            programs = [self.env.program(self.env.compile(f"({p.when})")) for p in selected]
            self.uses_bind = False
        finally:
            logging.disable(logging.NOTSET)
        self.programs = programs

    def activation(self, context: dict[str, Any]) -> dict[str, Any]:
        """The variables Warden gives CEL (engine.PolicySet.evaluate), as cel-python values."""
        data: dict[str, Any] = {
            root: context.get(root) or {} for root in ROOTS[Phase.POST_DECISION]
        }
        data["project"] = context.get("project") or ""
        return {name: self.celpy.json_to_cel(value) for name, value in data.items()}

    def results(self, activation: dict[str, Any]) -> list[bool | str]:
        out: list[bool | str] = []
        for program, params in zip(self.programs, self.params, strict=True):
            variables = activation if self.uses_bind else {**activation, "params": params}
            try:
                value = program.evaluate(variables)
            except self.celpy.CELEvalError:
                out.append("error")
                continue
            is_bool = isinstance(value, self.celpy.celtypes.BoolType)
            out.append(bool(value) if is_bool else f"non-bool {value!r}")
        return out

    def call(self, context: dict[str, Any]) -> Callable[[], object]:
        """Convert the context, then evaluate every expression: what evaluate() does."""
        return lambda: self.results(self.activation(context))


def warden_results(
    policy_set: PolicySet, selected: list[policies.Policy], context: dict[str, Any]
) -> list[bool | str]:
    by_id = {v.policy_id: v for v in policy_set.evaluate(Phase.POST_DECISION, context)}
    out: list[bool | str] = []
    for policy in selected:
        verdict = by_id.get(policy.id)
        out.append("n/a" if verdict is None else "error" if verdict.error else verdict.fired)
    return out


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(
            "Warden policy evaluation benchmark. Times PolicySet.evaluate() of the built-in "
            "policy set (policies/builtin) in-process, call by call, on the reference "
            "post_decision context of the booking stack (16 candidates), on a context where "
            "policies fire (message rendering included) and on the pre_request context; then "
            "the same post_decision `when` expressions under the pure-Python cel-python "
            "(celpy), with a check that both engines agree. Prints figures; asserts nothing "
            "about time."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=20_000,
        help="timed calls per series of the Warden (cel-expr-python) part",
    )
    parser.add_argument(
        "--warmup", type=int, default=2_000, help="untimed calls before each Warden series"
    )
    parser.add_argument(
        "--cel-python-iterations",
        type=int,
        default=2_000,
        help="timed calls per cel-python series (about 1 ms each: p99.9 "
        "would need far more, so none is reported for them)",
    )
    parser.add_argument(
        "--json", action="store_true", help="also print the figures as one JSON line at the end"
    )
    args = parser.parse_args()
    if min(args.iterations, args.cel_python_iterations) < 1 or args.warmup < 0:
        parser.error("--iterations and --cel-python-iterations must be >= 1, --warmup >= 0")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    policy_set = PolicySet.load_dir(policies.BUILTIN)
    post = [p for p in policy_set.policies if p.phase is Phase.POST_DECISION]
    pre = [p for p in policy_set.policies if p.phase is Phase.PRE_REQUEST]
    reference = post_decision_context()
    risky = post_decision_context(risky=True)
    no_candidates = {**reference,
                     "decision": {k: v for k, v in reference["decision"].items()
                                  if k != "candidates"}}  # fmt: skip
    pre_ctx = pre_request_context()
    fired_ref = [
        v.policy_id for v in policy_set.evaluate(Phase.POST_DECISION, reference) if v.fired
    ]
    fired_risky = [v.policy_id for v in policy_set.evaluate(Phase.POST_DECISION, risky) if v.fired]
    fired_pre = [v.policy_id for v in policy_set.evaluate(Phase.PRE_REQUEST, pre_ctx) if v.fired]
    context_bytes = len(json.dumps(reference, separators=(",", ":")))

    n, w = args.iterations, args.warmup
    say(f"Warden: {n:,} timed calls per series after {w:,} warm-up calls ...")
    s_ref = timed(
        "post_decision, reference (nothing fires)",
        lambda: policy_set.evaluate("post_decision", reference),
        n,
        w,
    )
    s_risky = timed(
        f"post_decision, risky ({len(fired_risky)} fire, messages rendered)",
        lambda: policy_set.evaluate("post_decision", risky),
        n,
        w,
    )
    s_pre = timed(
        "pre_request (nothing fires)", lambda: policy_set.evaluate("pre_request", pre_ctx), n, w
    )
    s_nocand = timed(
        "post_decision, reference without decision.candidates",
        lambda: policy_set.evaluate("post_decision", no_candidates),
        n,
        w,
    )
    # The `when` programs alone, on one activation reused across calls: CEL's own cost,
    # without converting the context. Uses the engine's internals: skipped if they change.
    s_when: Series | None = None
    try:
        env = policy_set._envs[Phase.POST_DECISION]
        programs = [c.when for c in policy_set._compiled[Phase.POST_DECISION]]
        data = {root: reference.get(root) or {} for root in ROOTS[Phase.POST_DECISION]}
        data["project"] = reference["project"]
        activation = env.Activation(data)

        def when_only() -> None:
            for program in programs:
                program.eval(activation)

        s_when = timed("`when` programs only, activation reused", when_only, n, w)
    except (AttributeError, KeyError, TypeError) as exc:
        say(f"  skipped the `when`-only series (engine internals changed: {exc!r})")

    say(f"cel-python: {args.cel_python_iterations:,} timed calls per series ...")
    failures: list[str] = []
    checks: list[tuple[str, str, list[bool | str], list[bool | str]]] = []
    cp_series: dict[str, Series] = {}
    cp_note = ""
    for runner in ("interpreted", "compiled"):
        engine = CelPython(runner, post, reference)
        if not engine.uses_bind and not cp_note:
            cp_note = (
                f"cel-python cannot run Warden's `cel.bind(params, dyn(<params>), "
                f"(<when>))` ({engine.bind_error}); it evaluates `(<when>)` with "
                f"`params` passed as an activation variable (json_to_cel of the "
                f"policy's params) instead"
            )
        for name, ctx in (("reference", reference), ("risky", risky)):
            ours, theirs = warden_results(policy_set, post, ctx), engine.call(ctx)()
            assert isinstance(theirs, list)
            checks.append((runner, name, ours, theirs))
            if ours != theirs:
                failures.append(
                    f"{runner} runner, {name} context: cel-expr-python {ours} "
                    f"!= cel-python {theirs}"
                )
        m = args.cel_python_iterations
        cp_series[runner] = timed(
            f"cel-python {runner}: json_to_cel + evaluate",
            engine.call(reference),
            m,
            min(w, max(m // 10, 10)),
        )
        converted = engine.activation(reference)
        cp_series[runner + "_eval"] = timed(
            f"cel-python {runner}: evaluate only (context pre-converted)",
            lambda engine=engine, converted=converted: engine.results(converted),
            m, min(w, max(m // 10, 10)))  # fmt: skip

    seconds = time.perf_counter() - t_start
    versions = {}
    for dist in ("cel-expr-python", "cel-python"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    machine = {
        "nproc": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count()),
        "python": platform.python_version(),
        "cel_expr_python": versions["cel-expr-python"],
        "cel_python": versions["cel-python"],
        "platform": platform.platform(terse=True),
    }  # fmt: skip

    # ---- the table
    warden_rows = [s_ref, s_risky, s_pre, s_nocand] + ([s_when] if s_when else [])
    width = max(len(s.label) for s in [*warden_rows, *cp_series.values()])

    def line(s: Series, p999: bool = True) -> str:
        tail = f"{s.pct(0.999):>9.1f}" if p999 else f"{'-':>9}"
        return (
            f"{s.label:<{width}}  {s.pct(0.50):>8.1f}  {s.pct(0.99):>8.1f}  {tail}  {s.mean:>8.1f}"
        )

    rule = "-" * (width + 42)
    print()
    print(
        f"Warden policy evaluation benchmark (built-in set: {len(post)} post_decision, "
        f"{len(pre)} pre_request policies)"
    )
    print(
        f"reference context: {N_CANDIDATES} candidates, {context_bytes:,} bytes as JSON; "
        f"fired: reference {fired_ref or 'none'}, risky {fired_risky}, "
        f"pre_request {fired_pre or 'none'}"
    )
    print(rule)
    print(
        f"{'PolicySet.evaluate() (cel-expr-python), µs':<{width}}  {'p50':>8}  {'p99':>8}  "
        f"{'p99.9':>9}  {'mean':>8}"
    )
    print(rule)
    for s in warden_rows[:3]:
        print(line(s))
    print("where the time goes (reference post_decision context):")
    for s in warden_rows[3:]:
        print(line(s))
    conversion = s_ref.pct(0.50) - s_nocand.pct(0.50)
    print(
        f"  => of p50 {s_ref.pct(0.50):.1f} µs, {conversion:.1f} go to converting "
        f"decision.candidates into CEL values (no built-in post_decision policy reads them)"
    )
    if s_when is not None:
        print(
            f"     {s_when.pct(0.50):.1f} to the `when` programs, "
            f"{s_nocand.pct(0.50) - s_when.pct(0.50):.1f} to the rest (activation, converting "
            f"the fields read, Python around the calls)"
        )
    print(rule)
    print(
        f"{'cel-python ' + versions['cel-python'] + ', post_decision, µs':<{width}}  "
        f"{'p50':>8}  {'p99':>8}  {'p99.9':>9}  {'mean':>8}"
    )
    print(rule)
    for s in cp_series.values():
        print(line(s, p999=False))
    print(rule)
    ratios = {}
    for runner in ("interpreted", "compiled"):
        s = cp_series[runner]
        ratios[runner] = (s.pct(0.50) / s_ref.pct(0.50), s.pct(0.99) / s_ref.pct(0.99))
        print(
            f"ratio cel-python ({runner}, json_to_cel + evaluate) / cel-expr-python "
            f"(PolicySet.evaluate): p50 {ratios[runner][0]:.1f}x, p99 {ratios[runner][1]:.1f}x"
        )
    if s_when is not None:
        s = cp_series["interpreted_eval"]
        print(
            f"ratio of the evaluation alone (interpreted, pre-converted / `when` programs, "
            f"activation reused): p50 {s.pct(0.50) / s_when.pct(0.50):.0f}x"
        )
    if cp_note:
        print(f"note: {cp_note}.")
    print(f"same boolean results per policy ({', '.join(p.id for p in post)}; true = fires):")
    for runner, name, ours, theirs in checks:
        verdict = "same" if ours == theirs else "DIFFERENT"
        print(
            f"  {name:<9} context, {runner:<11} runner: cel-expr-python {_fmt(ours)}, "
            f"cel-python {_fmt(theirs)}: {verdict}"
        )
    met = s_ref.pct(0.99) < TARGET_P99_US
    print(
        f"target: p99 under {TARGET_P99_US:.0f} µs for the built-in post_decision set: "
        f"{'met' if met else 'NOT met'} (p99 {s_ref.pct(0.99):.1f} µs)"
    )
    print(
        f"machine: nproc={machine['nproc']}, python {machine['python']}, cel-expr-python "
        f"{machine['cel_expr_python']}, cel-python {machine['cel_python']}, "
        f"{machine['platform']}; run took {seconds:.0f} s"
    )
    if failures:
        print(f"\nCHECKS FAILED ({len(failures)}):")
        for failure in failures:
            print(f"  {failure}")
    if args.json:
        print(
            json.dumps(
                {
                    "warden": {
                        "post_decision_reference": s_ref.figures(),
                        "post_decision_risky": s_risky.figures(),
                        "pre_request": s_pre.figures(),
                        "post_decision_without_candidates": s_nocand.figures(),
                        "when_only_activation_reused": s_when.figures() if s_when else None,
                    },
                    "cel_python": {k: v.figures(p999=False) for k, v in cp_series.items()},
                    "cel_python_uses_cel_bind": not cp_note,
                    "ratio_p50": round(ratios["interpreted"][0], 2),
                    "ratio_p99": round(ratios["interpreted"][1], 2),
                    "ratio_compiled_p50": round(ratios["compiled"][0], 2),
                    "ratio_compiled_p99": round(ratios["compiled"][1], 2),
                    "results_agree": not failures,
                    "target_p99_us": TARGET_P99_US,
                    "target_met": met,
                    "context_bytes": context_bytes,
                    "machine": machine,
                }
            )
        )
    return 1 if failures else 0


def _fmt(results: list[bool | str]) -> str:
    return "[" + ", ".join(str(r).lower() for r in results) + "]"


if __name__ == "__main__":
    sys.exit(main())
