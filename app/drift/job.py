"""One drift job: for each monitored model version of a project, compare its current traffic
with its reference on inputs, latent states and decisions; store a report per kind; log the
job to MLflow; hand each report to the `drift` policies; alert the project's webhook.

A kind without the data it needs (no input features recorded, no latent states, too few
requests) is skipped with the reason, never reported as "none".
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from sqlalchemy import Engine, insert, select

from app import mlflow_results
from app.audit import ledger
from app.db import read_connection, write_transaction
from app.drift import reference as references
from app.drift import settings as drift_settings
from app.drift import windows
from app.drift.alerts import post_alert
from app.drift.decisions import decision_drift
from app.drift.inputs import input_drift
from app.drift.latent import LatentReference, latent_drift
from app.drift.settings import DriftSettings
from app.drift.windows import Bounds, Window
from app.errors import NotFound
from app.models import DriftReport, ModelVersion
from app.projects import project_id as find_project
from collectors import conventions as wire
from policies import Effect, PolicySet, Verdict

log = logging.getLogger("warden.drift")

KINDS = ("input", "latent", "decision")
# The role whose versions are monitored: drift is judged per world-model version, whose
# training data and own early traffic are the references.
ROLE = "world_model"
SEVERITY = {"none": 0, "warn": 1, "drift": 2}
Progress = Callable[[str, int, int], None]
# Rows per side above which Evidently's HTML report is rendered from a sample (see judge_inputs).
HTML_ROWS = 5_000


@dataclass
class KindReport:
    kind: str
    verdict: str
    share_drifted: float
    scores: dict[str, Any]
    reference: dict[str, Any]
    current: Bounds
    current_requests: int

    def policy_context(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "verdict": self.verdict,
            "share_drifted": self.share_drifted,
            "scores": self.scores,
        }


@dataclass
class VersionResult:
    model_name: str
    model_version: str
    job_id: str
    reports: list[KindReport] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    policy_verdicts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    alerted: bool | None = None
    # Wall seconds per phase of the job: load, input, latent, decision, mlflow, ...
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        verdicts = [r.verdict for r in self.reports] or ["none"]
        return max(verdicts, key=SEVERITY.__getitem__)

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "verdict": self.verdict,
            "reports": [
                {
                    "kind": r.kind,
                    "verdict": r.verdict,
                    "share_drifted": r.share_drifted,
                    "current": {
                        "start_unix_nano": r.current.start,
                        "end_unix_nano": r.current.end,
                        "requests": r.current_requests,
                    },
                    "reference": r.reference,
                    "scores": r.scores,
                }
                for r in self.reports
            ],
            "skipped": self.skipped,
            "mlflow_run_id": self.mlflow_run_id,
            "policies": self.policy_verdicts,
            "rollbacks": self.rollbacks,
            "alerted": self.alerted,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


@dataclass
class JobResult:
    project: str
    versions: list[VersionResult]

    def to_json(self) -> dict[str, Any]:
        return {"project": self.project, "versions": [v.to_json() for v in self.versions]}


def _now_ns() -> int:
    return time.time_ns()


class DriftRunner:
    """Runs drift jobs; keeps what references cost to build between runs."""

    def __init__(
        self,
        engine: Engine,
        tracking_uri: str,
        data_dir: Path,
        policies: PolicySet | None = None,
        log_to_mlflow: bool = True,
    ) -> None:
        self.engine = engine
        self.tracking_uri = tracking_uri
        self.policies = policies
        self.log_to_mlflow = log_to_mlflow
        self.datasets = references.DatasetCache(data_dir / "cache" / "datasets")
        self.built = references.Built()
        # The pinned reference windows themselves (tens of MB each at 100,000 requests).
        self.reference_windows = references.Built(keep=4)

    # -- which versions ---------------------------------------------------------------------

    def monitored(self, project_id: int, config: DriftSettings, now: int) -> list[tuple[str, str]]:
        """World-model versions with traffic recently: within the time window, or the last
        day for count windows."""
        lookback = config.current_seconds if config.window == "time" else 86_400
        since = now - lookback * 1_000_000_000
        query = (
            select(ModelVersion.name, ModelVersion.version)
            .where(
                ModelVersion.project_id == project_id,
                ModelVersion.role == ROLE,
                ModelVersion.last_seen_unix_nano >= since,
            )
            .order_by(ModelVersion.name, ModelVersion.version)
        )
        with read_connection(self.engine) as conn:
            return [(r.name, r.version) for r in conn.execute(query)]

    # -- windows ----------------------------------------------------------------------------

    def traffic_reference(
        self, project_id: int, name: str, version: str, config: DriftSettings
    ) -> Bounds | None:
        if config.reference_since and config.reference_until:
            return Bounds(_unix_nano(config.reference_since), _unix_nano(config.reference_until))
        nth = windows.nth_start(
            self.engine, project_id, name, version, config.reference_count, newest=False
        )
        first = windows.span_of_traffic(self.engine, project_id, name, version)
        if nth is None or first is None:
            return None
        return Bounds(first.start, nth + 1)

    def current_window(
        self,
        project_id: int,
        name: str,
        version: str,
        config: DriftSettings,
        now: int,
        after: Bounds | None,
    ) -> Bounds | None:
        traffic = windows.span_of_traffic(self.engine, project_id, name, version)
        if traffic is None:
            return None
        end = max(traffic.end, now)
        if config.window == "time":
            start = now - config.current_seconds * 1_000_000_000
            end = now + 1
        else:
            nth = windows.nth_start(
                self.engine, project_id, name, version, config.current_count, newest=True
            )
            start = traffic.start if nth is None else nth
        if after is not None:
            start = max(start, after.end)
        return Bounds(start, end) if start < end else None

    # -- the job ----------------------------------------------------------------------------

    def run(
        self,
        project: str,
        name: str | None = None,
        version: str | None = None,
        progress: Progress | None = None,
        now: int | None = None,
        seed: int = 0,
    ) -> JobResult:
        """Judge the project's monitored versions (or just `name` `version`) now."""
        project_id = find_project(self.engine, project)
        config = drift_settings.load(self.engine, project_id)
        now = now or _now_ns()
        if name and version:
            targets = [(name, version)]
            if windows.span_of_traffic(self.engine, project_id, name, version) is None:
                raise NotFound(f"no traffic of {name} v{version} in project {project!r}")
        elif name or version:
            raise ValueError("name a model and a version together, or neither")
        else:
            targets = self.monitored(project_id, config, now)
        results = []
        for i, (model_name, model_version) in enumerate(targets):
            step: Progress = progress or (lambda _what, _done, _total: None)
            step(f"{model_name} v{model_version}", i, len(targets))
            results.append(
                self._version(project, project_id, config, model_name, model_version, now, seed)
            )
        if progress:
            progress("done", len(targets), len(targets))
        return JobResult(project, results)

    def _version(
        self,
        project: str,
        project_id: int,
        config: DriftSettings,
        name: str,
        version: str,
        now: int,
        seed: int,
    ) -> VersionResult:
        result = VersionResult(name, version, str(uuid.uuid4()))
        clock = _Clock(result.seconds)
        ref_bounds = self.traffic_reference(project_id, name, version, config)
        current = self.current_window(project_id, name, version, config, now, ref_bounds)
        if current is None:
            result.skipped = {k: "no traffic after the reference window" for k in KINDS}
            return result
        cur = windows.load(self.engine, project_id, name, version, current)
        ref = (
            self._reference_window(project_id, name, version, ref_bounds)
            if ref_bounds is not None
            else None
        )
        if cur.requests < config.min_requests:
            result.skipped = {
                k: f"{cur.requests} requests in the current window, fewer than "
                f"min_requests={config.min_requests}"
                for k in KINDS
            }
            return result
        traffic_ref_ok = ref is not None and ref.requests >= config.min_requests
        no_traffic_ref = (
            f"the version has fewer than reference_count={config.reference_count} "
            "requests before the current window: no traffic reference yet"
        )
        html = ""
        clock.lap("load")
        # Inputs: the training dataset, else the traffic reference.
        try:
            report, html = self._inputs(
                project_id, name, version, cur, ref if traffic_ref_ok else None
            )
            result.reports.append(report)
        except Skipped as skip:
            result.skipped["input"] = str(skip)
        clock.lap("input")

        def build(layer: str, vectors: np.ndarray) -> LatentReference:
            assert ref is not None
            key = (*references.reference_key(project_id, name, version, ref.bounds), layer, seed)
            built = self.built.get(key)
            if built is None:
                built = LatentReference.build(vectors, seed=seed)
                self.built.put(key, built)
            return cast(LatentReference, built)

        judges: dict[str, Callable[[Window, Window], KindReport]] = {
            "latent": lambda c, r: judge_latent(c, r, config, seed, build),
            "decision": lambda c, r: judge_decisions(c, r, config),
        }
        for kind, judge in judges.items():
            if not traffic_ref_ok or ref is None:
                result.skipped[kind] = no_traffic_ref
                continue
            try:
                result.reports.append(judge(cur, ref))
            except Skipped as skip:
                result.skipped[kind] = str(skip)
            clock.lap(kind)
        if not result.reports:
            return result
        if self.log_to_mlflow:
            result.mlflow_run_id = self._log(project, result, html)
            clock.lap("mlflow")
        self._store(project_id, result)
        self._judge(project, project_id, result)
        # The verdict, what the policies said and any rollback go to the audit ledger.
        ledger.record_drift(self.engine, project_id, project, result.to_json())
        clock.lap("store_and_judge")
        if config.webhook_url is not None:
            self._alert(project, config, result)
            clock.lap("alert")
        return result

    def _reference_window(self, project_id: int, name: str, version: str, bounds: Bounds) -> Window:
        """The reference window, read once: its bounds are pinned, so it is kept and used
        again while the count of requests in it is unchanged (a late request or retention
        changes the count, and the window is read anew)."""
        key = references.reference_key(project_id, name, version, bounds)
        count = windows.count_in(self.engine, project_id, name, version, bounds)
        kept = self.reference_windows.get(key)
        if kept is not None and kept.requests == count:
            return cast(Window, kept)
        window = windows.load(self.engine, project_id, name, version, bounds)
        self.reference_windows.put(key, window)
        return window

    def _inputs(
        self, project_id: int, name: str, version: str, cur: Window, ref: Window | None
    ) -> tuple[KindReport, str]:
        if cur.features.empty or not len(cur.features.columns):
            raise Skipped(f"no input features recorded ({wire.INPUT_FEATURES})")
        columns = sorted(cur.features.columns)
        dataset = references.training_dataset(self.engine, project_id, name, version)
        source: dict[str, Any]
        if dataset:
            try:
                frame = self.datasets.load(dataset, columns)
            except references.ReferenceUnavailable as exc:
                if ref is None:
                    raise Skipped(str(exc)) from exc
                log.warning("%s; the traffic reference serves instead", exc)
            else:
                source = {
                    "source": "training dataset",
                    "name": dataset.get("name"),
                    "digest": dataset.get("digest"),
                    "rows": len(frame),
                }
                return judge_inputs(frame, cur, source)
        if ref is None:
            raise Skipped("no training dataset in the lineage and no traffic reference yet")
        source = {"source": "traffic", **_bounds_json(ref.bounds), "rows": ref.requests}
        return judge_inputs(ref.features, cur, source)

    # -- after judging ----------------------------------------------------------------------

    def _log(self, project: str, result: VersionResult, html: str) -> str | None:
        metrics: dict[str, float] = {}
        for report in result.reports:
            metrics[f"{report.kind}.share_drifted"] = report.share_drifted
            metrics[f"{report.kind}.severity"] = float(SEVERITY[report.verdict])
        tags = {"warden.verdict": result.verdict, "warden.drift.job_id": result.job_id}
        tags.update({f"warden.verdict.{r.kind}": r.verdict for r in result.reports})
        artifacts: dict[str, bytes | str] = {
            "drift/report.json": _json_text(result.to_json()),
        }
        if html:
            artifacts["drift/inputs.html"] = html
        try:
            return mlflow_results.log_result(
                self.tracking_uri,
                mlflow_results.Result(
                    kind="drift",
                    project=project,
                    model_name=result.model_name,
                    model_version=result.model_version,
                    name=f"drift-{result.model_name}-v{result.model_version}",
                    metrics=metrics,
                    tags=tags,
                    artifacts=artifacts,
                ),
            )
        except Exception:  # MLflow away: the report is still stored and judged
            log.exception("could not log drift job %s to MLflow", result.job_id)
            return None

    def _store(self, project_id: int, result: VersionResult) -> None:
        rows = [
            {
                "project_id": project_id,
                "model_name": result.model_name,
                "model_version": result.model_version,
                "kind": r.kind,
                "window_start_unix_nano": r.current.start,
                "window_end_unix_nano": r.current.end,
                "reference": r.reference,
                "scores": {**r.scores, "requests": r.current_requests},
                "verdict": r.verdict,
                "mlflow_run_id": result.mlflow_run_id,
                "job_id": result.job_id,
                "created_at": datetime.now(UTC),
            }
            for r in result.reports
        ]
        with write_transaction(self.engine) as conn:
            conn.execute(insert(DriftReport), rows)

    def _judge(self, project: str, project_id: int, result: VersionResult) -> None:
        if self.policies is None:
            return
        from app import deploy
        from app.lineage import mlflow_client

        client = mlflow_client(self.tracking_uri)
        for report in result.reports:
            try:
                verdicts, moves = deploy.judge_drift(
                    self.engine, client, self.policies, project_id, project,
                    report.policy_context(), result.model_name, result.model_version,
                )  # fmt: skip
            except NotFound as exc:
                result.skipped[f"policies.{report.kind}"] = exc.message
                continue
            result.policy_verdicts[report.kind] = [_verdict_json(v) for v in verdicts]
            result.rollbacks += [
                {"alias": m.alias, "from": m.from_version, "to": m.to_version, "kind": report.kind}
                for m in moves
            ]

    def _alert(self, project: str, config: DriftSettings, result: VersionResult) -> None:
        acting = {
            kind: [
                v for v in verdicts if v["fired"] and v["effect"] in {Effect.WARN, Effect.ROLLBACK}
            ]
            for kind, verdicts in result.policy_verdicts.items()
        }
        if not any(acting.values()) and result.verdict == "none":
            return
        payload = {
            "event": "warden.drift",
            "project": project,
            **result.to_json(),
            "acting_policies": {k: v for k, v in acting.items() if v},
        }
        result.alerted = post_alert(
            str(config.webhook_url), payload, attempts=config.webhook_attempts
        )


def judge_inputs(
    reference: pd.DataFrame, cur: Window, source: dict[str, Any], render_html: bool = True
) -> tuple[KindReport, str]:
    """Input drift of `cur`'s features against `reference` (training data or traffic)."""
    common = [c for c in cur.features.columns if c in reference.columns]
    if not common:
        raise Skipped("the reference has none of the recorded input features")
    ref_frame, cur_frame = _comparable(reference[common], cur.features[common])
    numerical, categorical = _column_types(ref_frame, cur_frame)
    small = max(len(ref_frame), len(cur_frame)) <= HTML_ROWS
    found = input_drift(
        ref_frame, cur_frame, numerical, categorical, render_html=render_html and small
    )
    scores = found.to_json()
    html = found.html
    if render_html and not small:
        # The preset builds its charts while it tests, at several times the cost of the
        # tests themselves on large windows: the verdict and scores above come from every
        # row, the HTML report from a uniform sample of HTML_ROWS per side (said in the
        # report's scores), whose histograms show the same shapes.
        scores["html_sample_rows"] = HTML_ROWS
        html = input_drift(
            _sample(ref_frame), _sample(cur_frame), numerical, categorical, render_html=True
        ).html
    share = float(scores.get("share_drifted", 0.0))
    return (
        KindReport("input", found.verdict, share, scores, source, cur.bounds, cur.requests),
        html,
    )


def _sample(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) <= HTML_ROWS:
        return frame
    return frame.sample(n=HTML_ROWS, random_state=0).reset_index(drop=True)


def judge_latent(
    cur: Window,
    ref: Window,
    config: DriftSettings,
    seed: int = 0,
    build: Callable[[str, np.ndarray], LatentReference] | None = None,
) -> KindReport:
    """Latent-state drift per layer; `build` makes (or finds cached) a layer's reference."""
    layers = sorted(set(cur.latent) & set(ref.latent))
    if not layers:
        raise Skipped("no world-model latent states recorded in both windows")
    per_layer: dict[str, Any] = {}
    for layer in layers:
        ref_vectors, cur_vectors = ref.latent[layer][0], cur.latent[layer][0]
        if min(len(ref_vectors), len(cur_vectors)) < config.min_requests:
            continue
        built = (
            build(layer, ref_vectors)
            if build is not None
            else LatentReference.build(ref_vectors, seed=seed)
        )
        per_layer[layer] = latent_drift(
            built, cur_vectors, permutations=config.permutations, seed=seed
        ).to_json()
    if not per_layer:
        raise Skipped("too few latent states per layer in one of the windows")
    verdicts = [v["verdict"] for v in per_layer.values()]
    verdict = max(verdicts, key=SEVERITY.__getitem__)
    share = sum(v == "drift" for v in verdicts) / len(verdicts)
    source = {"source": "traffic", **_bounds_json(ref.bounds), "rows": ref.requests}
    scores = {"layers": per_layer, "share_drifted": share}
    return KindReport("latent", verdict, share, scores, source, cur.bounds, cur.requests)


def judge_decisions(cur: Window, ref: Window, config: DriftSettings) -> KindReport:
    """Decision drift: chosen actions, scores, confidence, margin, entropy, constraints."""
    if min(len(cur.decisions), len(ref.decisions)) < config.min_requests:
        raise Skipped("too few planner decisions in one of the windows")
    found = decision_drift(ref.decisions, cur.decisions)
    scores = found.to_json()
    share = sum(t.verdict == "drift" for t in found.tests) / max(len(found.tests), 1)
    scores["share_drifted"] = share
    source = {"source": "traffic", **_bounds_json(ref.bounds), "rows": ref.requests}
    return KindReport("decision", found.verdict, share, scores, source, cur.bounds, cur.requests)


class _Clock:
    def __init__(self, into: dict[str, float]) -> None:
        self.into = into
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.into[phase] = self.into.get(phase, 0.0) + now - self.last
        self.last = now


class Skipped(Exception):
    """A kind that cannot be judged on this data, and why."""


def _comparable(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames with numbers rounded to 6 decimals: a reference stored as float32 holds
    0.15000000596 where traffic says 0.15, and a rank test on tied discrete values would take
    that for a shift."""
    out = []
    for frame in (ref, cur):
        frame = frame.copy()
        for column in frame.columns:
            if pd.api.types.is_bool_dtype(frame[column]):
                frame[column] = frame[column].astype(str)
            elif pd.api.types.is_numeric_dtype(frame[column]):
                frame[column] = frame[column].astype(np.float64).round(6)
        out.append(frame.reset_index(drop=True))
    return out[0], out[1]


def _column_types(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Numbers with more than two distinct values are numerical; the rest (strings,
    booleans, 0/1 flags) categorical."""
    numerical, categorical = [], []
    for column in ref.columns:
        both = pd.concat([ref[column], cur[column]], ignore_index=True).dropna()
        if pd.api.types.is_numeric_dtype(both) and both.nunique() > 2:
            numerical.append(column)
        else:
            categorical.append(column)
    return numerical, categorical


def _bounds_json(bounds: Bounds) -> dict[str, int]:
    return {"start_unix_nano": bounds.start, "end_unix_nano": bounds.end}


def _unix_nano(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "policy_id": verdict.policy_id,
        "version": verdict.version,
        "effect": verdict.effect.value,
        "fired": verdict.fired,
        "message": verdict.message,
    }


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)
