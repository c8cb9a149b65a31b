"""Exports as a service: one export (`produce`), and the jobs the HTTP API runs in the background.

`produce` writes the bundle (`bundle.export_bundle`), records an `export.produced` event in
the project's ledger, and logs the export to MLflow as a run of the `warden` experiment
(kind `export`, the manifest and report.html as artifacts) — skipped, with a note, when
MLflow cannot be reached: the bundle does not depend on it.

`ExportJobs` runs exports one at a time in a worker thread of the service. Each job has a
folder `<data_dir>/exports/<id>/` with `bundle.zip` and `status.json`:

    {"id", "project", "scope", "status": queued | running | done | failed,
     "progress": {"done", "total"}, "created_at", "started_at", "finished_at", "error",
     "requested_by", "bundle": {"bytes", "sha256"}, "counts", "anchor", "mlflow_run_id",
     "ledger_seq"}

The queue is these folders: a job is queued when its status says so. Every process of the
service answers for every job of its data folder, and one of them runs the queue: the holder
of `<data_dir>/exports.leader` (a `PeriodicWorker`, app/daemons.py, whose leadership is the
data folder's, not the database's, because a process of another machine cannot see the
folder; the queue moves to shared storage later). It runs a job submitted to it at once,
and looks for jobs submitted to the other processes every `POLL_SECONDS`. A job whose
process died while running it is reported `failed` ("interrupted"); a queued job waits for
the next leader.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from app.audit import chain, ledger
from app.audit.bundle import ExportResult, Progress, Scope, export_bundle
from app.audit.read_models import ExportStatus
from app.config import Settings
from app.daemons import PeriodicWorker
from app.errors import BadRequest, Conflict, NotFound
from app.metrics import Metrics
from app.registry.mlflow_results import Result, log_result
from app.store.leadership import FileLeadership

log = logging.getLogger("warden.exports")

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
BUNDLE = "bundle.zip"
STATUS = "status.json"
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Produced:
    result: ExportResult
    ledger_seq: int | None
    mlflow_run_id: str | None
    mlflow_note: str


def _ledger_summary(result: ExportResult, actor: str) -> dict[str, Any]:
    """The `export.produced` payload: what was exported, never who the subject is."""
    manifest = result.manifest
    scope = dict(manifest["scope"])
    if scope.get("subject") is not None:
        scope["subject"] = True  # the ledger names people by pseudonym only
    anchor = manifest["ledger"]["anchor"]
    return {
        "bundle_sha256": result.sha256,
        "bytes": result.bytes,
        "scope": scope,
        "first_seq": manifest["ledger"]["first_seq"],
        "last_seq": manifest["ledger"]["last_seq"],
        "anchor": {"tree_size": anchor["tree_size"], "root_hash": anchor["root_hash"]},
        "requests": manifest["counts"]["requests"],
        "actor": actor,
    }


def _mlflow_reachable(tracking_uri: str) -> bool:
    if not tracking_uri.startswith(("http://", "https://")):
        return True
    try:
        return httpx.get(f"{tracking_uri.rstrip('/')}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def log_to_mlflow(settings: Settings, result: ExportResult) -> tuple[str | None, str]:
    """Log the export as an MLflow run; (run id, "") or (None, why it was skipped)."""
    uri = settings.resolved_mlflow_tracking_uri
    if not _mlflow_reachable(uri):
        return None, f"MLflow at {uri} is not reachable; the export was not logged there"
    scope = result.facts.scope
    manifest = result.manifest
    try:
        run_id = log_result(
            uri,
            Result(
                kind="export",
                project=scope.project,
                model_name=scope.model_name or "",
                model_version=scope.model_version or "",
                name=f"export-{scope.project}-{manifest['created_at']}",
                params={
                    "from": manifest["scope"]["from"] or "",
                    "to": manifest["scope"]["to"] or "",
                    "mode": manifest["scope"]["mode"],
                    "subject_scoped": str(scope.subject is not None).lower(),
                    "anchor_tree_size": manifest["ledger"]["anchor"]["tree_size"],
                    "bundle_sha256": result.sha256,
                },
                metrics={
                    "requests": float(manifest["counts"]["requests"]),
                    "ledger_events": float(manifest["counts"]["ledger_events"]),
                    "erased_requests": float(manifest["counts"]["erased_requests"]),
                    "bytes": float(result.bytes),
                    "seconds": result.seconds,
                },
                artifacts={
                    "export/manifest.json": result.manifest_bytes,
                    "export/report.html": result.report_html,
                },
            ),
        )
    except Exception as exc:  # MLflow is a convenience here: the bundle stands without it
        log.warning("could not log export to MLflow: %s", exc)
        return None, f"could not log the export to MLflow: {str(exc).splitlines()[0]}"
    return run_id, ""


def produce(
    engine: Engine,
    settings: Settings,
    key: Ed25519PrivateKey,
    scope: Scope,
    out: Path,
    actor: str,
    *,
    progress: Progress | None = None,
    prove_from: tuple[int, ...] = (),
    compresslevel: int | None = 1,
    mlflow: bool = True,
) -> Produced:
    """Export `scope` to `out`, record it in the ledger and (if it can) in MLflow."""
    result = export_bundle(
        engine, scope, out, key, progress=progress, prove_from=prove_from,
        compresslevel=compresslevel,
    )  # fmt: skip
    project_id = result.facts.project_id
    event = ledger.record_export(
        engine, project_id, scope.project, _ledger_summary(result, actor)
    )
    run_id, note = log_to_mlflow(settings, result) if mlflow else (None, "")
    return Produced(result, event.seq, run_id, note)


def parse_time(text: str | None, name: str) -> datetime | None:
    """An ISO 8601 time; without a zone it is taken as UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{name}: {text!r} is not an ISO 8601 time, e.g. 2025-01-02T00:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- jobs ----------------------------------------------------------------------------------


def _now() -> str:
    return chain.format_time(datetime.now(UTC))


def _write_status(folder: Path, status: dict[str, Any]) -> None:
    tmp = folder / f".{STATUS}.{os.getpid()}.{threading.get_ident()}"
    tmp.write_bytes(orjson.dumps(status, option=orjson.OPT_INDENT_2))
    os.replace(tmp, folder / STATUS)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ExportJobs(PeriodicWorker):
    """The service's export worker: the data folder's queue of jobs, run one at a time."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        key: Ed25519PrivateKey,
        metrics: Metrics | None = None,
    ) -> None:
        lead = FileLeadership(settings.data_dir / "exports.leader")
        super().__init__("exports", POLL_SECONDS, lead, metrics)
        self.engine = engine
        self.settings = settings
        self.key = key
        self.root = settings.data_dir / "exports"
        # Jobs seen past `queued`: a status never goes back, so they are not read again.
        self._settled: set[str] = set()

    def submit(self, scope: Scope, actor: str) -> ExportStatus:
        """Queue an export of `scope`; its status (`queued`)."""
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        folder.mkdir(parents=True)
        status = {
            "id": job_id,
            "project": scope.project,
            "scope": scope.to_json(),
            "status": QUEUED,
            "progress": {"done": 0, "total": 0},
            "created_at": _now(),
            "started_at": None,
            "finished_at": None,
            "error": None,
            "requested_by": actor,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "bundle": None,
            "counts": None,
            "anchor": None,
            "mlflow_run_id": None,
            "mlflow_note": None,
            "ledger_seq": None,
        }
        _write_status(folder, status)
        self.wake()
        return self._public(status)

    def tick(self) -> None:
        while not self.stopping and (job_id := self._next_queued()) is not None:
            try:
                self._execute(job_id)
            except Exception:  # one job's failure must not stop the worker
                log.exception("export job %s failed", job_id)
            self._settled.add(job_id)

    def _next_queued(self) -> str | None:
        """The oldest queued job of the data folder."""
        queued = []
        if self.root.is_dir():
            for folder in self.root.iterdir():
                if folder.name in self._settled:
                    continue
                try:
                    status = self._read(folder)
                except NotFound:
                    continue  # not a job, or one being written right now
                if status.get("status") == QUEUED:
                    queued.append((str(status["created_at"]), folder.name))
                else:
                    self._settled.add(folder.name)
        return min(queued)[1] if queued else None

    def _execute(self, job_id: str) -> None:
        folder = self.root / job_id
        status = self._read(folder)
        # The process that runs the job answers for it from now on (`_public`).
        status.update(
            status=RUNNING, started_at=_now(), host=socket.gethostname(), pid=os.getpid()
        )
        _write_status(folder, status)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.5 or done >= total:
                last[0] = now
                status["progress"] = {"done": done, "total": total}
                _write_status(folder, status)

        try:
            produced = produce(
                self.engine, self.settings, self.key, _scope(status["scope"]), folder / BUNDLE,
                str(status["requested_by"]), progress=progress, mlflow=False,
            )  # fmt: skip
        except Exception as exc:
            status.update(status=FAILED, finished_at=_now(), error=_message(exc))
            _write_status(folder, status)
            log.warning("export job %s failed: %s", job_id, status["error"])
            return
        result = produced.result
        status.update(
            status=DONE,
            finished_at=_now(),
            bundle={"bytes": result.bytes, "sha256": result.sha256},
            counts=result.manifest["counts"],
            anchor=result.manifest["ledger"]["anchor"],
            ledger_seq=produced.ledger_seq,
        )
        status["progress"]["done"] = status["progress"]["total"]
        _write_status(folder, status)
        # MLflow last: the bundle is ready whatever MLflow does (it may retry for a while).
        run_id, note = log_to_mlflow(self.settings, result)
        status.update(mlflow_run_id=run_id, mlflow_note=note or None)
        _write_status(folder, status)

    def _read(self, folder: Path) -> dict[str, Any]:
        try:
            data: dict[str, Any] = orjson.loads((folder / STATUS).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            raise NotFound(f"no export {folder.name!r}") from None
        return data

    def _public(self, status: dict[str, Any]) -> ExportStatus:
        shown = {k: v for k, v in status.items() if k not in ("host", "pid")}
        if (
            status["status"] == RUNNING
            and status.get("host") == socket.gethostname()
            and not _alive(int(status.get("pid") or 0))
        ):
            shown.update(status=FAILED, error="interrupted: the process running it ended")
        shown["download"] = (
            f"/v1/exports/{status['id']}/download" if status["status"] == DONE else None
        )
        return ExportStatus.model_validate(shown)

    def get(self, project: str, job_id: str) -> ExportStatus:
        """A job's status; 404 for another project's job, as if it did not exist."""
        if not job_id.isalnum():
            raise NotFound(f"no export {job_id!r}")
        status = self._read(self.root / job_id)
        if status.get("project") != project:
            raise NotFound(f"no export {job_id!r}")
        return self._public(status)

    def list(self, project: str) -> list[ExportStatus]:
        """The project's jobs, newest first."""
        found = []
        if self.root.is_dir():
            for folder in self.root.iterdir():
                with contextlib.suppress(NotFound):
                    status = self._read(folder)
                    if status.get("project") == project:
                        found.append(self._public(status))
        return sorted(found, key=lambda s: s.created_at, reverse=True)

    def bundle(self, project: str, job_id: str) -> Path:
        """The bundle of a finished job; 409 while it is not done."""
        status = self.get(project, job_id)
        if status.status != DONE:
            raise Conflict(f"export {job_id} is {status.status}, not done: ask again later")
        return self.root / job_id / BUNDLE


def _scope(data: dict[str, Any]) -> Scope:
    """The scope a job's status holds (`Scope.to_json`): times to the microsecond, in UTC."""
    model = data.get("model") or {}
    return Scope(
        project=data["project"],
        since=parse_time(data.get("from"), "from"),
        until=parse_time(data.get("to"), "to"),
        model_name=model.get("name"),
        model_version=model.get("version"),
        subject=data.get("subject"),
    )


def _message(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message).splitlines()[0]
