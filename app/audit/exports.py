"""Exports as a service: one export (`produce`), and the jobs the HTTP API queues.

`produce` (the CLI's `warden export`) writes the bundle to a file the user names
(`bundle.export_bundle`), records an `export.produced` event in the project's ledger and,
in the same transaction, a `done` row in `export_jobs` (so every export is listed, from any
path; its bundle is the user's file, not downloadable from the service), and
logs the export to MLflow as a run of the `warden` experiment (kind `export`, the manifest
and report.html as artifacts) — skipped, with a note, when MLflow cannot be reached: the
user has the file.

`ExportJobs` queues exports asked for over HTTP in the `export_jobs` table
(app/store/tables.py), so any process of the deployment submits, lists and serves any job,
and exactly one runs them: the leader of `exports` in the database
(`app.store.leadership.for_engine`: an advisory lock on PostgreSQL, a lock file beside a
SQLite file). Statuses go queued -> running -> done | failed, never back. A job runs as:

1. the bundle is written to a temporary file of the leader;
2. it is logged to MLflow through the tracking URI as an artifact of the export's run
   (`export/bundle.zip`, beside `export/manifest.json` and `export/report.html`): a
   tracking server proxies it to its artifact store (S3, ...), the embedded store keeps it
   under `<data_dir>/mlartifacts`. If it cannot be stored there the job fails with a
   one-line error and nothing else happens: no user could download it;
3. the `export.produced` ledger event;
4. `done`, with `bundle = {"bytes", "sha256", "uri"}` (the artifact's URI).

The download streams the artifact back from MLflow on whichever process is asked, checked
against the recorded SHA-256. On taking the lead, a process reports the jobs a dead leader
left `running` as failed ("interrupted"); queued jobs simply wait for the next leader.
"""


from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, Row, Table, select, update

from app.audit import chain, ledger
from app.audit.bundle import ExportResult, Progress, Scope, export_bundle
from app.audit.read_models import ExportStatus
from app.config import Settings
from app.daemons import PeriodicWorker
from app.errors import BadRequest, Conflict, NotFound, WardenError
from app.metrics import Metrics
from app.registry.lineage import mlflow_client
from app.registry.mlflow_results import Result, log_result
from app.store import leadership
from app.store.engine import read_connection, write_transaction
from app.store.tables import ExportJob, Project

log = logging.getLogger("warden.exports")

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
BUNDLE = "bundle.zip"
# Where the bundle is in the export's MLflow run.
BUNDLE_ARTIFACT = f"export/{BUNDLE}"
# How often the leader looks for jobs queued through other processes.
POLL_SECONDS = 1.0
INTERRUPTED = "interrupted: the process running it ended before it finished; start it again"
_CHUNK = 1 << 20
JOB: Table = ExportJob.__table__  # type: ignore[assignment]


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


def _export_run(result: ExportResult, files: dict[str, Path] | None = None) -> Result:
    """The export as a run of the `warden` experiment."""
    scope = result.facts.scope
    manifest = result.manifest
    return Result(
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
        files=files or {},
    )


def log_to_mlflow(settings: Settings, result: ExportResult) -> tuple[str | None, str]:
    """Log the export as an MLflow run; (run id, "") or (None, why it was skipped)."""
    uri = settings.resolved_mlflow_tracking_uri
    if not _mlflow_reachable(uri):
        return None, f"MLflow at {uri} is not reachable; the export was not logged there"
    try:
        run_id = log_result(uri, _export_run(result))
    except Exception as exc:  # MLflow is a convenience here: the bundle stands without it
        log.warning("could not log export to MLflow: %s", exc)
        return None, f"could not log the export to MLflow: {_first_line(exc)}"
    return run_id, ""


class BundleNotStored(WardenError):
    """The bundle of an export job could not be stored in MLflow's artifact store."""


def store_in_mlflow(settings: Settings, result: ExportResult) -> tuple[str, str]:
    """Log the export with its bundle (`result.path`) as an MLflow run; (run id, the
    bundle's artifact URI). Raises `BundleNotStored`, with one line saying why."""
    uri = settings.resolved_mlflow_tracking_uri
    if not _mlflow_reachable(uri):
        raise BundleNotStored(
            f"MLflow at {uri} is not reachable, so the bundle could not be stored in its "
            "artifact store: start the export again once MLflow answers"
        )
    try:
        run_id = log_result(uri, _export_run(result, {BUNDLE_ARTIFACT: result.path}))
        root = str(mlflow_client(uri).get_run(run_id).info.artifact_uri).rstrip("/")
    except Exception as exc:
        raise BundleNotStored(
            f"the bundle could not be stored in MLflow at {uri}: {_first_line(exc)}"
        ) from exc
    return run_id, f"{root}/{BUNDLE_ARTIFACT}"


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
    """Export `scope` to `out`, record it in the ledger and (if it can) in MLflow.

    It is listed with the export jobs (`ExportJobs.list`: the API, the dashboard) as a job
    already `done` whose bundle is the file `out`, not one the service keeps to download."""
    started = _now()
    result = export_bundle(
        engine, scope, out, key, progress=progress, prove_from=prove_from,
        compresslevel=compresslevel,
    )  # fmt: skip
    project_id = result.facts.project_id
    job_id = uuid.uuid4().hex
    events = int(result.manifest["counts"]["ledger_events"])
    with write_transaction(engine) as conn:
        event = ledger.record_export(
            conn, project_id, scope.project, _ledger_summary(result, actor)
        )
        conn.execute(
            JOB.insert().values(
                id=job_id, project_id=project_id, scope=scope.to_json(), status=DONE,
                progress={"done": events, "total": events}, requested_by=actor,
                created_at=started, started_at=started, finished_at=_now(),
                runner=f"{socket.gethostname()}:{os.getpid()}",
                bundle={"bytes": result.bytes, "sha256": result.sha256, "uri": None,
                        "file": str(out.resolve())},
                counts=result.manifest["counts"], anchor=result.manifest["ledger"]["anchor"],
                ledger_seq=event.seq,
            )
        )  # fmt: skip
    run_id, note = log_to_mlflow(settings, result) if mlflow else (None, "")
    if run_id or note:
        with write_transaction(engine) as conn:
            conn.execute(
                update(ExportJob)
                .where(ExportJob.id == job_id)
                .values(mlflow_run_id=run_id, mlflow_note=note or None)
            )
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


def _now() -> datetime:
    return datetime.now(UTC)


def _time(moment: datetime | None) -> str | None:
    return chain.format_time(moment) if moment is not None else None


@dataclass
class BundleDownload:
    """A finished job's bundle, fetched from MLflow: an open file whose name is already
    gone from the disk (the space is freed when it is closed), so no copy outlives it."""

    file: IO[bytes]
    size: int
    filename: str

    def chunks(self) -> Iterator[bytes]:
        """The file's content, then the file closed: for a streaming response."""
        try:
            while chunk := self.file.read(_CHUNK):
                yield chunk
        finally:
            self.file.close()


class ExportJobs(PeriodicWorker):
    """The deployment's export jobs: queued in the database by any process, run one at a
    time by the process that leads `exports`."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        key: Ed25519PrivateKey,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__("exports", POLL_SECONDS, leadership.for_engine(engine, "exports"), metrics)
        self.engine = engine
        self.settings = settings
        self.key = key
        self.runner = f"{socket.gethostname()}:{os.getpid()}"

    def submit(self, scope: Scope, actor: str) -> ExportStatus:
        """Queue an export of `scope`; its status (`queued`)."""
        job_id = uuid.uuid4().hex
        with write_transaction(self.engine) as conn:
            project_id = conn.execute(
                select(Project.id).where(Project.name == scope.project)
            ).scalar_one_or_none()
            if project_id is None:
                raise NotFound(f"no project named {scope.project!r}")
            conn.execute(
                JOB.insert().values(
                    id=job_id, project_id=project_id, scope=scope.to_json(), status=QUEUED,
                    progress={"done": 0, "total": 0}, requested_by=actor, created_at=_now(),
                )
            )  # fmt: skip
        self.wake()
        return self.get(scope.project, job_id)

    def became_leader(self) -> None:
        # Only the leader runs jobs, and the lead was someone else's until now: a job still
        # `running` was left by a process that died (or lost the database) meanwhile.
        with write_transaction(self.engine) as conn:
            ended = conn.execute(
                update(ExportJob)
                .where(ExportJob.status == RUNNING)
                .values(status=FAILED, finished_at=_now(), error=INTERRUPTED)
            ).rowcount
        if ended:
            log.warning("%d export job(s) left running by another process marked failed", ended)

    def tick(self) -> None:
        while not self.stopping and (job := self._claim_next()) is not None:
            try:
                self._execute(job)
            except Exception:  # one job's failure must not stop the worker
                log.exception("export job %s failed", job.id)

    def _claim_next(self) -> Row[Any] | None:
        """The oldest queued job, now `running` here; None when none is queued."""
        with write_transaction(self.engine) as conn:
            job = conn.execute(
                select(*JOB.c)
                .where(ExportJob.status == QUEUED)
                .order_by(ExportJob.created_at, ExportJob.id)
                .limit(1)
            ).first()
            if job is None:
                return None
            claimed = conn.execute(
                update(ExportJob)
                .where(ExportJob.id == job.id, ExportJob.status == QUEUED)
                .values(status=RUNNING, started_at=_now(), runner=self.runner)
            ).rowcount
        return job if claimed else None

    def _update(self, job_id: str, **values: Any) -> bool:
        """Change a job this process runs; False if it is no longer running here (a new
        leader reported it interrupted)."""
        with write_transaction(self.engine) as conn:
            changed = conn.execute(
                update(ExportJob)
                .where(
                    ExportJob.id == job_id,
                    ExportJob.status == RUNNING,
                    ExportJob.runner == self.runner,
                )
                .values(**values)
            ).rowcount
        return bool(changed)

    def _execute(self, job: Row[Any]) -> None:
        last = [0.0]
        seen = {"done": 0, "total": 0}

        def progress(done: int, total: int) -> None:
            seen.update(done=done, total=total)
            now = time.monotonic()
            if now - last[0] >= 0.5 or done >= total:
                last[0] = now
                self._update(job.id, progress=dict(seen))

        scope = _scope(job.scope)
        with tempfile.TemporaryDirectory(prefix="warden-export-") as tmp:
            try:
                result = export_bundle(
                    self.engine, scope, Path(tmp) / BUNDLE, self.key, progress=progress,
                    compresslevel=1,
                )  # fmt: skip
                run_id, uri = store_in_mlflow(self.settings, result)
                if not self._update(job.id, mlflow_run_id=run_id):
                    log.warning("export job %s was taken from this process; dropped", job.id)
                    return
                event = ledger.record_export(
                    self.engine, result.facts.project_id, scope.project,
                    _ledger_summary(result, job.requested_by),
                )  # fmt: skip
            except Exception as exc:
                error = _message(exc)
                self._update(job.id, status=FAILED, finished_at=_now(), error=error)
                log.warning("export job %s failed: %s", job.id, error)
                return
        self._update(
            job.id,
            status=DONE,
            finished_at=_now(),
            progress={"done": seen["total"], "total": seen["total"]},
            bundle={"bytes": result.bytes, "sha256": result.sha256, "uri": uri},
            counts=result.manifest["counts"],
            anchor=result.manifest["ledger"]["anchor"],
            ledger_seq=event.seq,
        )

    def _public(self, job: Row[Any], project: str) -> ExportStatus:
        return ExportStatus.model_validate(
            {
                "id": job.id,
                "project": project,
                "scope": job.scope,
                "status": job.status,
                "progress": job.progress,
                "created_at": _time(job.created_at),
                "started_at": _time(job.started_at),
                "finished_at": _time(job.finished_at),
                "error": job.error,
                "requested_by": job.requested_by,
                "bundle": job.bundle,
                "counts": job.counts,
                "anchor": job.anchor,
                "mlflow_run_id": job.mlflow_run_id,
                "mlflow_note": job.mlflow_note,
                "ledger_seq": job.ledger_seq,
                "download": (
                    f"/v1/exports/{job.id}/download" if job.status == DONE and _kept(job) else None
                ),
            }
        )

    def _find(self, project: str, job_id: str) -> Row[Any]:
        """The job, or 404: for an unknown id and for another project's job alike."""
        if not (job_id.isalnum() and len(job_id) <= 32):
            raise NotFound(f"no export {job_id!r}")
        with read_connection(self.engine) as conn:
            job = conn.execute(
                select(*JOB.c)
                .join(Project, Project.id == ExportJob.project_id)
                .where(ExportJob.id == job_id, Project.name == project)
            ).first()
        if job is None:
            raise NotFound(f"no export {job_id!r}")
        return job

    def get(self, project: str, job_id: str) -> ExportStatus:
        """A job's status; 404 for another project's job, as if it did not exist."""
        return self._public(self._find(project, job_id), project)

    def list(self, project: str) -> list[ExportStatus]:
        """The project's jobs, newest first."""
        with read_connection(self.engine) as conn:
            jobs = conn.execute(
                select(*JOB.c)
                .join(Project, Project.id == ExportJob.project_id)
                .where(Project.name == project)
                .order_by(ExportJob.created_at.desc(), ExportJob.id)
            ).all()
        return [self._public(job, project) for job in jobs]

    def bundle(self, project: str, job_id: str) -> BundleDownload:
        """The bundle of a finished job, fetched from MLflow; 409 while it is not done."""
        job = self._find(project, job_id)
        if job.status == DONE and not _kept(job):
            raise NotFound(
                f"export {job_id} was written to a file by `warden export` "
                f"({job.bundle.get('file') if job.bundle else 'its --out'}); the service "
                "does not keep its bundle"
            )
        if job.status != DONE or not job.bundle or not job.mlflow_run_id:
            raise Conflict(f"export {job_id} is {job.status}, not done: ask again later")
        uri = self.settings.resolved_mlflow_tracking_uri
        folder = tempfile.mkdtemp(prefix="warden-download-")
        try:
            try:
                path = mlflow_client(uri).download_artifacts(
                    job.mlflow_run_id, BUNDLE_ARTIFACT, dst_path=folder
                )
            except Exception as exc:
                raise WardenError(
                    f"the bundle of export {job_id} could not be fetched from MLflow at {uri}:"
                    f" {_first_line(exc)}"
                ) from exc
            file = open(path, "rb")  # noqa: SIM115 (closed by BundleDownload.chunks)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        digest = hashlib.sha256()
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
        if digest.hexdigest() != job.bundle["sha256"]:
            file.close()
            raise WardenError(
                f"the bundle MLflow holds for export {job_id} is not the one exported "
                f"(SHA-256 {digest.hexdigest()}, expected {job.bundle['sha256']})"
            )
        file.seek(0)
        return BundleDownload(
            file, int(job.bundle["bytes"]), f"warden-export-{project}-{job_id}.zip"
        )


def _kept(job: Row[Any]) -> bool:
    """Whether the service keeps the job's bundle (in MLflow's artifact store): not for an
    export `warden export` wrote to a file."""
    return bool(job.bundle and job.bundle.get("uri"))


def _scope(data: dict[str, Any]) -> Scope:
    """The scope a job holds (`Scope.to_json`): times to the microsecond, in UTC."""
    model = data.get("model") or {}
    return Scope(
        project=data["project"],
        since=parse_time(data.get("from"), "from"),
        until=parse_time(data.get("to"), "to"),
        model_name=model.get("name"),
        model_version=model.get("version"),
        subject=data.get("subject"),
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _message(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message).splitlines()[0]
