"""Dashboard benchmark: page times on a store of 1,000,000 requests, through real HTTP.

Run from the repository root:

    .venv/bin/python bench/dashboard.py                      # 1,000,000 requests
    .venv/bin/python bench/dashboard.py --requests 200000 --repeat 20

What it does, in one run:

1. Fills a fresh SQLite store (the schema by the migrations) with `--requests` requests
   spread over the last 30 days, by `executemany` of generated rows: `requests` and
   `request_models` (three stages each: two world-model versions share the traffic), and for
   1% of them (`--detailed`) the rest of a real request: 5 spans, 9 world-model states, a
   planner decision over 16 candidates and 3 policy evaluations (a few denials, reviews and
   warnings). Then it folds the requests into the overview's rollups (`rollups.catch_up`,
   which the service's rollup thread does as traffic arrives) and prints how long that took.
2. Starts `warden serve` on it (a real process on a free port), logs in to the dashboard
   with an admin key, and asks for each page `--repeat` times after two warm-up requests:
   the overview over four ranges, the request list unfiltered, filtered (outcome, model
   version, fingerprint, time range, policy verdict, a drift window) and its second page,
   and the detail of detailed and of plain requests.
3. Prints per page the p50 and p95 of the server's own time (its `Server-Timing` header:
   routing to the answer, template rendering included) and of the round trip. The models,
   drift, policies and audit pages are measured too, in parentheses: they are outside the
   target (the models page counts every request of every version, as `GET /v1/models` does).

It asserts nothing about time; a page that answers anything but 200 fails the run.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench.warden_process import clean_env, start_server, stop_server
from collectors import conventions as wire

SECRET = "bench-dashboard-secret"
NS = 1_000_000_000
DAYS = 30
WORLD = "booking-world-model"
OUTCOMES = (("booked", 0.80), ("clarify", 0.10), ("counter_proposal", 0.06), ("denied", 0.03),
            ("handed_over", 0.01))  # fmt: skip
POLICIES = ("risk-cap", "planner-confidence-floor", "action-allowlist")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _when(ns: int) -> str:
    moment = datetime.fromtimestamp(ns / NS, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class Filled:
    requests: int
    detailed: list[str] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)
    drift_report: int = 0
    seconds: float = 0.0
    key: str = ""


def fill(db: Path, requests: int, detailed_share: float, seed: int = 0) -> Filled:
    """Generated rows straight into the tables, `executemany` in chunks of 20,000."""
    rng = random.Random(seed)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    project_id = conn.execute("SELECT id FROM projects WHERE name = 'default'").fetchone()[0]
    now = time.time_ns()
    start = now - DAYS * 86_400 * NS
    step = (now - start) // requests
    out = Filled(requests)
    started = time.perf_counter()
    names, weights = zip(*OUTCOMES, strict=True)
    detailed_every = max(1, round(1 / detailed_share)) if detailed_share else 0
    chunk = 20_000
    cols = ("project_id, trace_id, root_span_id, name, service_name, start_time_unix_nano, "
            "end_time_unix_nano, duration_ms, status, fingerprint, fingerprint_key_id, subject, "
            "outcome, models, features, ingested_at")  # fmt: skip
    for first in range(0, requests, chunk):
        req_rows, model_rows, spans, states, decisions, evaluations = [], [], [], [], [], []
        for i in range(first, min(first + chunk, requests)):
            t0 = start + i * step + rng.randrange(step)
            duration_ms = rng.lognormvariate(4.0, 0.8)
            t1 = t0 + int(duration_ms * 1e6)
            trace = f"{rng.getrandbits(128):032x}"
            root = f"{rng.getrandbits(64):016x}"
            fingerprint = f"{rng.getrandbits(256):064x}"
            version = "2" if i >= requests * 0.6 else "1"
            outcome = rng.choices(names, weights)[0]
            models = {"llm": {"name": "booking-intent-rules", "version": "1"},
                      "world_model": {"name": WORLD, "version": version},
                      "planner": {"name": "mpc-planner", "version": "1"}}  # fmt: skip
            req_rows.append((
                project_id, trace, root, "request", "booking-assistant", t0, t1, duration_ms,
                "unset", fingerprint, "k1", f"user-{i % 5000:04d}", outcome, _dumps(models),
                None, _when(t1 + 50_000_000),
            ))  # fmt: skip
            for role, model in models.items():
                model_rows.append((project_id, trace, role, model["name"], model["version"], t0))
            if i % 100_000 == 7:
                out.fingerprints.append(fingerprint)
            if detailed_every and i % detailed_every == 0:
                out.detailed.append(trace)
                _detail(rng, project_id, trace, root, t0, t1, outcome, spans, states, decisions,
                        evaluations)  # fmt: skip
            elif i % 997 == 0:
                out.plain.append(trace)
        conn.executemany(f"INSERT INTO requests ({cols}) VALUES ({','.join('?' * 16)})", req_rows)
        conn.executemany(
            "INSERT INTO request_models (project_id, trace_id, role, model_name, model_version, "
            "start_time_unix_nano) VALUES (?,?,?,?,?,?)",
            model_rows,
        )
        _insert(conn, "spans", spans)
        _insert(conn, "world_model_states", states)
        _insert(conn, "planner_decisions", decisions)
        _insert(conn, "policy_evaluations", evaluations)
        conn.commit()
    for version in ("1", "2"):
        conn.execute(
            "INSERT INTO model_versions (project_id, name, version, role, status, "
            "first_seen_unix_nano, last_seen_unix_nano, aliases, tags, lineage) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            (project_id, WORLD, version, "world_model", "unresolved", start, now,
             _dumps(["champion"] if version == "2" else []), "{}", "{}"),
        )  # fmt: skip
    for name, role in (("booking-intent-rules", "llm"), ("mpc-planner", "planner")):
        conn.execute(
            "INSERT INTO model_versions (project_id, name, version, role, status, "
            "first_seen_unix_nano, last_seen_unix_nano, aliases, tags, lineage) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            (project_id, name, "1", role, "unresolved", start, now, "[]", "{}", "{}"),
        )
    cursor = conn.execute(
        "INSERT INTO drift_reports (project_id, model_name, model_version, kind, "
        "window_start_unix_nano, window_end_unix_nano, reference, scores, verdict, "
        "mlflow_run_id, job_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (project_id, WORLD, "2", "latent", now - 3600 * NS, now, '{"source":"traffic"}',
         '{"layers":{},"share_drifted":0}', "none", None, "bench-job", _when(now)),
    )  # fmt: skip
    out.drift_report = int(cursor.lastrowid or 0)
    conn.commit()
    conn.close()
    out.seconds = time.perf_counter() - started
    return out


def _insert(conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        columns = list(rows[0])
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({','.join('?' * len(columns))})",
            [tuple(r[c] for c in columns) for r in rows],
        )


def _detail(
    rng: random.Random, project_id: int, trace: str, root: str, t0: int, t1: int, outcome: str,
    spans: list[dict[str, Any]], states: list[dict[str, Any]],
    decisions: list[dict[str, Any]], evaluations: list[dict[str, Any]],
) -> None:  # fmt: skip
    """The rest of a request as the service stores it: spans, states, decision, policies."""
    ids = [root] + [f"{rng.getrandbits(64):016x}" for _ in range(4)]
    names = [wire.REQUEST_SPAN, wire.llm_span("chat", "booking-intent-rules"), wire.ROLLOUT_SPAN,
             wire.DECISION_SPAN, "calendar.lookup"]  # fmt: skip
    for n, (span_id, name) in enumerate(zip(ids, names, strict=True)):
        spans.append({
            "project_id": project_id, "trace_id": trace, "span_id": span_id,
            "parent_span_id": None if n == 0 else root, "name": name, "kind": 1,
            "start_time_unix_nano": t0 + n, "end_time_unix_nano": t1 - n, "status_code": 0,
            "status_message": None, "service_name": "booking-assistant", "scope_name": "warden",
            "attributes": _dumps({"n": n}), "events": "[]", "links": "[]", "resource": "{}",
            "body_digest": hashlib.sha256(f"{trace}{span_id}".encode()).digest(),
        })  # fmt: skip
    for seq, (layer, step) in enumerate([("encoder", 0)] + [("transition", s) for s in range(8)]):
        projection = [round(rng.gauss(0, 1), 4) for _ in range(16)]
        states.append({
            "project_id": project_id, "trace_id": trace, "span_id": ids[2], "seq": seq,
            "step": step, "layer": layer, "mean": rng.gauss(0, 0.3), "std": 1 + rng.random(),
            "min": -2.0, "max": 2.0, "l2_norm": 5 + rng.random(), "projection": _dumps(projection),
            "tensor_sha256": None, "time_unix_nano": t0 + seq,
        })  # fmt: skip
    candidates = [
        {"action": f"room-{c:02d}@2026-11-27T10:00/1h", "score": round(rng.gauss(-2, 0.3), 4),
         "predicted": {"conflict_probability": round(rng.random(), 4),
                       "utilisation": round(rng.random(), 4),
                       "cost": round(50 + 50 * rng.random(), 2)},
         "feasible": rng.random() > 0.2}
        for c in range(16)
    ]  # fmt: skip
    chosen = max(candidates, key=lambda c: c["score"])["action"]
    decisions.append({
        "project_id": project_id, "trace_id": trace, "span_id": ids[3], "chosen": chosen,
        "confidence": rng.random(), "candidates": _dumps(candidates),
        "constraints": _dumps(["capacity >= 4"]), "rationale": "best feasible",
        "time_unix_nano": t1 - 10,
    })  # fmt: skip
    for seq, policy in enumerate(POLICIES):
        verdict = "allow"
        if policy == "risk-cap" and outcome == "denied":
            verdict = "deny"
        elif policy == "planner-confidence-floor" and rng.random() < 0.05:
            verdict = "require_review"
        elif policy == "action-allowlist" and rng.random() < 0.02:
            verdict = "warn"
        evaluations.append({
            "project_id": project_id, "trace_id": trace, "span_id": ids[3], "seq": seq,
            "phase": "post_decision", "policy_id": policy, "policy_version": "1",
            "policy_hash": hashlib.sha256(policy.encode()).hexdigest(), "outcome": verdict,
            "message": None if verdict == "allow" else f"{policy} said {verdict}",
            "time_unix_nano": t1 - 5,
        })  # fmt: skip


class Session:
    """A logged-in dashboard session over one keep-alive connection."""

    def __init__(self, port: int, key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.cookies: dict[str, str] = {}
        status, body, _ = self.request("GET", "/ui/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', body)
        assert status == 200 and token, status
        form = urllib.parse.urlencode({"key": key, "csrf_token": token[1], "next": "/ui/"})
        status, body, _ = self.request(
            "POST", "/ui/login", form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert status == 303, f"login failed: {status} {body[:300]}"

    def request(
        self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, float | None]:
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read().decode(errors="replace")
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        timing = re.search(r"dur=([0-9.]+)", response.headers.get("Server-Timing", ""))
        return response.status, data, float(timing[1]) if timing else None


def pages_to_measure(session: Session, filled: Filled) -> list[tuple[str, list[str]]]:
    """(name, the paths it cycles through) of each page measured."""
    quote = urllib.parse.quote

    def ago(days: float) -> str:
        moment = datetime.fromtimestamp(time.time() - days * 86_400, UTC)
        return quote(moment.strftime("%Y-%m-%dT%H:%M"))

    floor = "planner-confidence-floor"
    _, body, _ = session.request("GET", "/ui/requests")
    cursor = re.search(r'id="next-page" href="([^"]+)"', body)
    assert cursor, "no next page"
    detailed = filled.detailed[:: max(1, len(filled.detailed) // 50)]
    return [
        ("overview, last 1h", ["/ui/?range=1h"]),
        ("overview, last 24h", ["/ui/?range=24h"]),
        ("overview, last 7d", ["/ui/?range=7d"]),
        ("overview, last 30d", ["/ui/?range=30d"]),
        ("requests, newest", ["/ui/requests"]),
        ("requests, page 2", [cursor[1].replace("&amp;", "&")]),
        ("requests, outcome=denied", ["/ui/requests?outcome=denied"]),
        ("requests, model version (40%)", [f"/ui/requests?model={WORLD}@2"]),
        ("requests, model version (60%)", [f"/ui/requests?model={WORLD}@1"]),
        ("requests, fingerprint", [f"/ui/requests?fingerprint={f}" for f in filled.fingerprints]),
        ("requests, one day a week ago", [f"/ui/requests?since={ago(7)}&until={ago(6)}"]),
        ("requests, last day + outcome", [f"/ui/requests?since={ago(1)}&outcome=clarify"]),
        ("requests, policy risk-cap=deny", ["/ui/requests?policy=risk-cap&policy_outcome=deny"]),
        ("requests, policy floor=review", [f"/ui/requests?policy={floor}&policy_outcome="
                                            "require_review"]),
        ("requests, drift window", [f"/ui/requests?drift={filled.drift_report}"]),
        ("request detail (spans, states, decision)", [f"/ui/requests/{t}" for t in detailed]),
        ("request detail (plain)", [f"/ui/requests/{t}" for t in filled.plain[:50]]),
        # The other pages, outside the target: their service functions count every request.
        ("(models)", ["/ui/models"]),
        ("(drift)", ["/ui/drift"]),
        ("(policies, 7 days)", ["/ui/policies"]),
        ("(audit)", ["/ui/audit"]),
    ]  # fmt: skip


def measure(
    session: Session, paths: list[str], repeat: int
) -> tuple[list[float], list[float], str]:
    """Server and round-trip milliseconds of `repeat` requests cycling through `paths`."""
    server, trip = [], []
    last = ""
    for path in paths[:2]:
        session.request("GET", path)  # warm-up
    for i in range(repeat):
        path = paths[i % len(paths)]
        started = time.perf_counter()
        status, body, dur = session.request("GET", path)
        trip.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise SystemExit(f"GET {path} answered {status}: {body[:500]}")
        server.append(dur if dur is not None else trip[-1])
        last = body
    return server, trip, last


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _fresh_store(data_dir: Path, db: Path, requests: int, detailed: float) -> tuple[Filled, str]:
    from app.config import Settings
    from app.dashboard import rollups
    from app.store import schema
    from app.store.engine import create_db_engine
    from app.tenancy import projects

    for stale in data_dir.glob("warden.db*"):
        stale.unlink()
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{db}", secret_key=SECRET,
                        lineage_interval=0, drift_tick=0)  # fmt: skip
    engine = create_db_engine(settings)
    schema.upgrade(engine)
    projects.create_project(engine, "default")
    key = projects.create_key(engine, SECRET.encode(), "default", ["admin"], name="bench")
    print(f"filling {requests:,} requests ({detailed:.0%} with spans, states, "
          f"decisions, policies) into {db} ...", flush=True)  # fmt: skip
    filled = fill(db, requests, detailed)
    filled.key = key
    print(f"  {filled.seconds:.1f}s ({requests / filled.seconds:,.0f} requests/s), "
          f"{db.stat().st_size / 2**20:,.0f} MiB")  # fmt: skip
    started = time.perf_counter()
    folded = rollups.catch_up(engine, chunk=50_000)
    rolled = time.perf_counter() - started
    print(f"rollups: {folded:,} requests folded in {rolled:.1f}s "
          f"({folded / max(rolled, 1e-9):,.0f} requests/s)")  # fmt: skip
    engine.dispose()
    return filled, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument(
        "--detailed", type=float, default=0.01, help="share of requests with the whole detail"
    )
    parser.add_argument("--repeat", type=int, default=30, help="requests per page")
    parser.add_argument("--keep", type=Path, default=None, help="keep the store in this folder")
    parser.add_argument(
        "--reuse", action="store_true", help="measure the store --keep holds, without refilling"
    )
    args = parser.parse_args()

    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="warden-bench-dashboard-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    db = data_dir / "warden.db"
    saved = data_dir / "bench-fill.json"
    if args.reuse and saved.exists() and db.exists():
        filled = Filled(**json.loads(saved.read_text()))
        key = filled.key
        print(f"reusing the {filled.requests:,} requests of {db}")
    else:
        filled, key = _fresh_store(data_dir, db, args.requests, args.detailed)
        saved.write_text(json.dumps(filled.__dict__))
    env = clean_env(data_dir)
    env.update(WARDEN_DATABASE_URL=f"sqlite:///{db}", WARDEN_SECRET_KEY=SECRET,
               WARDEN_LINEAGE_INTERVAL="0", WARDEN_DRIFT_TICK="0",
               WARDEN_AUDIT_CHECKPOINT_INTERVAL="0")  # fmt: skip
    server = start_server(data_dir, env, timeout=120)
    try:
        session = Session(server.port, key)
        pages = pages_to_measure(session, filled)
        print(f"\n{'page':<42} {'server p50':>10} {'p95':>7} {'round trip p50':>15} {'p95':>7}")
        worst = 0.0
        for name, paths in pages:
            server_ms, trip_ms, _ = measure(session, paths, args.repeat)
            if not name.startswith("("):
                worst = max(worst, pct(server_ms, 0.95))
            print(f"{name:<42} {pct(server_ms, 0.5):>10.1f} {pct(server_ms, 0.95):>7.1f} "
                  f"{pct(trip_ms, 0.5):>15.1f} {pct(trip_ms, 0.95):>7.1f}", flush=True)  # fmt: skip
        print(f"\n(ms) worst page p95 (server): {worst:.1f} ms; target < 200 ms; "
              f"{os.cpu_count()} CPUs, SQLite {sqlite3.sqlite_version}")  # fmt: skip
    finally:
        stop_server(server)
        if args.keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
