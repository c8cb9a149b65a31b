"""An export made with `warden export` (another process, writing a file) is listed beside the
service's export jobs: on the Audit page and in `GET /v1/exports`, with its digest and the
file it went to, and no download the service could not serve."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from app.audit.ledger import checkpoints
from app.store import schema
from app.store.engine import create_db_engine
from app.tenancy import projects
from tests import otlp
from tests.app.dashboard.browsing import UiClient
from tests.conftest import TEST_SECRET, embedded_settings, running

WARDEN = str(Path(sys.executable).parent / "warden")
PROJECT = "shop"


def test_an_export_made_with_the_cli_is_listed(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    try:
        with running(settings, engine) as live:
            ingest, audit = live.key(PROJECT, "ingest"), live.key(PROJECT, "audit")
            spans = otlp.hybrid_trace(otlp.Ids(3))
            with live.client(ingest) as client:
                client.post(
                    "/v1/traces", content=otlp.request(spans).SerializeToString(),
                    headers=otlp.PROTOBUF,
                ).raise_for_status()  # fmt: skip
            pid = projects.project_id(engine, PROJECT)
            checkpoints.sign_now(engine, checkpoints.signing_key(settings), pid)
            out = tmp_path / "q.zip"
            env = {
                **os.environ,
                "WARDEN_DATA_DIR": str(settings.data_dir),
                "WARDEN_DATABASE_URL": settings.database_url,
                "WARDEN_MLFLOW_TRACKING_URI": str(settings.mlflow_tracking_uri),
                "WARDEN_SECRET_KEY": TEST_SECRET,
                "COLUMNS": "200",
            }
            exported = subprocess.run(
                [WARDEN, "export", "--project", PROJECT, "--out", str(out)],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert exported.returncode == 0, exported.stdout + exported.stderr
            sha = re.search(r"SHA-256 ([0-9a-f]{64})", exported.stdout)
            assert sha, exported.stdout

            with live.client(audit) as client:
                (job,) = client.get("/v1/exports").raise_for_status().json()["items"]
                assert job["status"] == "done" and job["requested_by"].startswith("cli:")
                assert job["bundle"]["sha256"] == sha.group(1)
                assert job["bundle"]["file"] == str(out.resolve())
                assert job["counts"]["requests"] == 1 and job["ledger_seq"] is not None
                assert job["mlflow_run_id"]  # the CLI logged it to MLflow
                assert job["download"] is None  # the bundle is the user's file
                refused = client.get(f"/v1/exports/{job['id']}/download")
                assert refused.status_code == 404 and "warden export" in refused.text

            ui = UiClient(live.url, audit)
            try:
                html = ui.get("/ui/audit").text
            finally:
                ui.close()
            assert "No export yet" not in html
            found = re.search(rf'<tr id="export-{job["id"]}">(.*?)</tr>', html, re.DOTALL)
            assert found, "the CLI's export is not on the Audit page"
            listed = found.group(1)
            assert "cli:" in listed and "done" in listed and sha.group(1)[:16] in listed
            assert str(out.resolve()) in listed and "Download bundle" not in listed
    finally:
        engine.dispose()
