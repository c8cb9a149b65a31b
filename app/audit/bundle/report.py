"""The human-readable report of an export bundle: what an auditor checks, where it is.

The report maps the bundle's records to the record-keeping duties of the EU AI Act —
Art. 12 (automatic logging: the period of each use, the reference data checked against,
the input data that led to a result, the people who verified results) and Art. 19 / 26(6)
(keeping the logs at least six months) — with the counts, the signed heads, the model
lineage and the erased rows. The same content is rendered as HTML (`render_html`) and PDF
(`render_pdf`, fpdf2). Both are files of the bundle, so the manifest's signature covers them;
they cannot state the bundle's own verification, only what the exporter checked and how to
verify.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, select_autoescape

from app.audit import chain, layout

if TYPE_CHECKING:
    from app.audit.bundle.facts import Facts

_SIX_MONTHS_DAYS = 183
_PDF_ROWS = 50  # rows of the long tables in the PDF (the HTML has up to Facts.SAMPLE)
_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
_FONT_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def _iso(unix_nano: int | None) -> str:
    if unix_nano is None:
        return "—"
    return chain.format_time(datetime.fromtimestamp(unix_nano / 1e9, UTC))


def _short(text: str | None, keep: int = 16) -> str:
    if not text:
        return "—"
    return text if len(text) <= keep else text[:keep] + "…"


def _retention(facts: Facts) -> dict[str, Any]:
    since = facts.retention.get("ledger_since")
    days = None
    if since:
        days = (datetime.now(UTC) - chain.parse_time(since)).days
    return {
        **facts.retention,
        "kept": days,
        "six_months": days is not None and days >= _SIX_MONTHS_DAYS,
    }


def counts(tally: Mapping[str, int]) -> str:
    """A tally for people, largest first: `booked 171,428; denied 28,572`.

    >>> counts({"denied": 3, "booked": 1200})
    'booked 1,200; denied 3'
    """
    ordered = sorted(tally.items(), key=lambda item: (-item[1], item[0]))
    return "; ".join(f"{name} {count:,}" for name, count in ordered) or "none"


def policy_set(payload: Mapping[str, Any]) -> str:
    """A `policy_set.changed` event's payload for people: its hash, the one it replaced and
    its policies.

    >>> policy_set({"new": "9c0f", "old": None, "policies": [{"id": "risk-cap", "version": "1"}]})
    'set 9c0f (replacing none); 1 policy: risk-cap v1'
    """
    policies = payload.get("policies") or []
    names = ", ".join(f"{p.get('id')} v{p.get('version')}" for p in policies)
    noun = "policy" if len(policies) == 1 else "policies"
    return (
        f"set {payload.get('new')} (replacing {payload.get('old') or 'none'}); "
        f"{len(policies)} {noun}: {names or '—'}"
    )


def _kept(retention: dict[str, Any]) -> str:
    days = retention.get("days")
    what = "for ever" if days is None else f"{days} days"
    return what + (" (high-risk system)" if retention.get("high_risk") else "")


def _datasets(entry: dict[str, Any]) -> list[dict[str, Any]]:
    lineage = entry.get("lineage") or {}
    found = lineage.get("datasets") if isinstance(lineage, dict) else None
    return [d for d in found or [] if isinstance(d, dict)]


def duties(facts: Facts) -> list[dict[str, str]]:
    """Each record-keeping duty: what it asks, where the bundle holds it, what it holds."""
    retention = _retention(facts)
    dataset_count = sum(len(_datasets(v)) for v in facts.lineage)
    erased = f"; {facts.erased} erased" if facts.erased else ""
    return [
        {
            "duty": "Art. 12(1) — automatic recording of events over the system's lifetime",
            "where": f"ledger/events-*.jsonl, {layout.HEADS}, manifest.json > ledger",
            "holds": (
                f"{facts.events} ledger events (seq {facts.first_seq or '—'}-"
                f"{facts.last_seq or '—'}), {facts.mode} scope, anchored in a head of "
                f"{facts.anchor.tree_size} events"
            ),
        },
        {
            "duty": "Art. 12(3)(a) — period of each use (start and end date and time)",
            "where": (
                "records/requests-*.jsonl, .parquet > start_time_unix_nano, end_time_unix_nano"
            ),
            "holds": (
                f"{facts.requests} uses from {_iso(facts.first_start)} to "
                f"{_iso(facts.last_start)}{erased}"
            ),
        },
        {
            "duty": "Art. 12(3)(b) — reference database against which input data was checked",
            "where": "records/model_versions.* > lineage; manifest.json > lineage",
            "holds": (
                f"{len(facts.lineage)} model versions, {dataset_count} training/reference "
                "datasets (MLflow run and dataset digests)"
            ),
        },
        {
            "duty": "Art. 12(3)(c) — input data for which the search led to a match",
            "where": (
                "records/requests-*.jsonl, .parquet > fingerprint, outcome; "
                "records/planner_decisions.*; records/policy_evaluations.*"
            ),
            "holds": (
                f"{facts.requests} input fingerprints (HMAC-SHA256 of the input); outcomes "
                f"{counts(dict(facts.outcomes.most_common(6)))}; "
                f"{facts.counts.get('planner_decisions', 0)} decisions, "
                f"{facts.counts.get('policy_evaluations', 0)} policy evaluations"
            ),
        },
        {
            "duty": "Art. 12(3)(d) — natural persons involved in the verification of results",
            "where": "records/reviews.* > decided_by, decided_at, status",
            "holds": f"{facts.review_count} review decisions",
        },
        {
            "duty": "Art. 19(1), 26(6) — logs kept at least six months",
            "where": "manifest.json > ledger; ledger retention events",
            "holds": (
                f"ledger since {retention.get('ledger_since') or '—'}"
                + (f" ({retention['kept']} days)" if retention["kept"] is not None else "")
                + ("; six months or more" if retention["six_months"] else "")
                + f"; request detail kept {_kept(retention)}"
                + f"; {retention['retention_events']} retention events in the bundle"
            ),
        },
    ]


def _head_row(head: Any) -> dict[str, Any]:
    return {
        "tree_size": head.tree_size,
        "root_hash": head.root_hash.hex(),
        "signed_at": chain.format_time(head.signed_at),
        "key_id": head.key_id,
    }


def _model(value: Any) -> str:
    if isinstance(value, dict) and "name" in value:
        return f"{value['name']} v{value.get('version', '?')}"
    return str(value)


def _request_row(sample: dict[str, Any]) -> dict[str, Any]:
    models = sample["models"] or {}
    return {
        **sample,
        "start": _iso(sample["start"]),
        "end": _iso(sample["end"]),
        "fingerprint": _short(sample["fingerprint"]),
        "models": ", ".join(f"{role}: {_model(v)}" for role, v in sorted(models.items())),
    }


def _context(facts: Facts) -> dict[str, Any]:
    anchor = facts.anchor
    scope = facts.scope
    return {
        "f": facts,
        "scope": scope,
        "anchor": {
            "tree_size": anchor.tree_size,
            "root_hash": anchor.root_hash.hex(),
            "signed_at": chain.format_time(anchor.signed_at),
            "key_id": anchor.key_id,
        },
        "heads": [_head_row(h) for h in facts.heads_in_range],
        "duties": duties(facts),
        "retention": _retention(facts),
        "requests": [_request_row(r) for r in facts.sample],
        "policies": [{**row, "outcomes": counts(row["outcomes"])} for row in facts.policy_rows()],
        "outcomes": counts(facts.outcomes),
        "policy_set": policy_set,
        "lineage": [{**v, "datasets": _datasets(v)} for v in facts.lineage],
        "files": sorted(facts.files, key=lambda f: f.path),
        "period": (
            f"from {chain.format_time(scope.since) if scope.since else 'the first record'} "
            f"to {chain.format_time(scope.until) if scope.until else 'the time of export'}"
        ),
        "model": (
            (scope.model_name or "all")
            + (f" version {scope.model_version}" if scope.model_version else "")
        ),
    }


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Warden audit export — {{ scope.project }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222 }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; width: 100% }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top }
th { background: #f3f3f3 } code { font-size: 12px; word-break: break-all }
.erased { color: #a00; font-weight: bold } .note { color: #555 }
</style></head><body>
<h1>Audit export — project <code>{{ scope.project }}</code></h1>
<p>Created {{ f.created_at }} by Warden; signed by key <code>{{ f.key_id }}</code>.
Period {{ period }}; model {{ model }}{% if scope.subject %}; subject
<code>{{ scope.subject }}</code>{% endif %}. Scope: <b>{{ f.mode }}</b>.</p>

<h2>Verification</h2>
{% if f.mode == "full" %}
<p>At export, ledger events 1-{{ anchor.tree_size }} were replayed: every event hashed to its
stored hash, each linked to the one before, and together they give the root of the signed head
below. The bundle holds all of them, so the verifier replays the chain itself.</p>
{% else %}
<p>At export, each selected ledger event hashed to its stored hash. The bundle holds the
selected events only, each covered by an RFC 6962 inclusion proof against the signed head
below (a whole log of {{ anchor.tree_size }} events).</p>
{% endif %}
<table><tr><th>anchor head: events</th><th>root</th><th>signed at</th><th>key</th></tr>
<tr><td>{{ anchor.tree_size }}</td><td><code>{{ anchor.root_hash }}</code></td>
<td>{{ anchor.signed_at }}</td><td><code>{{ anchor.key_id }}</code></td></tr></table>
{% if heads %}<p>Heads signed in the period:</p>
<table><tr><th>events</th><th>root</th><th>signed at</th><th>key</th></tr>
{% for h in heads %}<tr><td>{{ h.tree_size }}</td><td><code>{{ h.root_hash }}</code></td>
<td>{{ h.signed_at }}</td><td><code>{{ h.key_id }}</code></td></tr>{% endfor %}</table>{% endif %}
<p>{{ f.earlier_heads }} earlier signed heads are in <code>ledger/heads.jsonl</code>, each with a
consistency proof to the anchor head.</p>
<p class="note">Check this bundle offline, with the public key you hold for this project:
<code>warden verify bundle.zip --public-key warden.pub --pin HEAD.json</code>. With
<code>--pin</code> a head you kept from an earlier export, it also proves the log was only
appended to since; without, it proves the bundle is what the key's holder signed.</p>

<h2>Record-keeping duties</h2>
<table><tr><th>duty</th><th>where in this bundle</th><th>in this export</th></tr>
{% for d in duties %}<tr><td>{{ d.duty }}</td><td><code>{{ d.where }}</code></td>
<td>{{ d.holds }}</td></tr>{% endfor %}</table>

<h2>Uses (requests)</h2>
<p>{{ f.requests }} requests{% if f.uncovered %}, of which {{ f.uncovered }} were stored before
the ledger began (no ledger event){% endif %}{% if f.erased %}; <span class="erased">{{ f.erased }}
erased</span> (their subject's personal data was erased: the rows stay, marked, and the ledger
still verifies){% endif %}.
Outcomes: {{ outcomes }}.{% if f.requests > f.sample|length %} The first {{ f.sample|length }}
are listed; all are in <code>records/requests-*.jsonl</code>.{% endif %}</p>
<table><tr><th>trace</th><th>start</th><th>end</th><th>outcome</th><th>input fingerprint</th>
<th>models</th><th>ledger seq</th><th>erased</th></tr>
{% for r in requests %}<tr><td><code>{{ r.trace_id }}</code></td><td>{{ r.start }}</td>
<td>{{ r.end }}</td><td>{{ r.outcome or "—" }}</td><td><code>{{ r.fingerprint }}</code></td>
<td>{{ r.models }}</td><td>{{ r.seq or "—" }}</td>
<td>{% if r.erased %}<span class="erased">erased</span>{% endif %}</td></tr>{% endfor %}</table>

<h2>Verification of results by people (reviews)</h2>
{% if f.reviews %}<table><tr><th>trace</th><th>policy</th><th>status</th><th>decided by</th>
<th>decided at</th></tr>
{% for r in f.reviews %}<tr><td><code>{{ r.trace_id }}</code></td><td>{{ r.policy_id or "—" }}</td>
<td>{{ r.status }}</td><td>{{ r.decided_by or "—" }}</td><td>{{ r.decided_at or "—" }}</td></tr>
{% endfor %}</table>{% else %}<p>No review decisions in scope.</p>{% endif %}

<h2>Policies in force</h2>
{% if f.policy_sets %}<p>Policy set changes recorded in the ledger:</p>
<table><tr><th>seq</th><th>at</th><th>policy set</th></tr>
{% for p in f.policy_sets %}<tr><td>{{ p.seq }}</td><td>{{ p.created_at }}</td>
<td>{{ policy_set(p.payload) }}</td></tr>{% endfor %}</table>{% endif %}
{% if policies %}<table>
<tr><th>policy</th><th>version</th><th>content hash</th><th>outcomes</th></tr>
{% for p in policies %}<tr><td>{{ p.policy_id }}</td><td>{{ p.version or "—" }}</td>
<td><code>{{ p.hash or "—" }}</code></td><td>{{ p.outcomes }}</td></tr>{% endfor %}</table>
{% else %}<p>No policy evaluations in scope.</p>{% endif %}

<h2>Model lineage</h2>
{% if lineage %}<table><tr><th>model</th><th>version</th><th>role</th><th>MLflow run</th>
<th>datasets</th></tr>
{% for v in lineage %}<tr><td>{{ v.name }}</td><td>{{ v.version }}</td><td>{{ v.role or "—" }}</td>
<td><code>{{ v.run_id or "—" }}</code></td><td>{% for d in v.datasets %}{{ d.name }}
(<code>{{ d.digest }}</code>, {{ d.source_type }}){% if not loop.last %}; {% endif %}{% else %}—
{% endfor %}</td></tr>{% endfor %}</table>{% else %}<p>No model versions in scope.</p>{% endif %}

<h2>Drift reports</h2>
{% if f.drift %}<table><tr><th>model</th><th>version</th><th>kind</th><th>verdict</th>
<th>created</th><th>MLflow run</th></tr>
{% for d in f.drift %}<tr><td>{{ d.model_name }}</td><td>{{ d.model_version }}</td>
<td>{{ d.kind }}</td><td>{{ d.verdict }}</td><td>{{ d.created_at }}</td>
<td><code>{{ d.mlflow_run_id or "—" }}</code></td>
</tr>{% endfor %}</table>{% else %}<p>No drift reports in the period.</p>{% endif %}

<h2>Retention</h2>
<p>Ledger kept since {{ retention.ledger_since or "—" }}{% if retention.kept is not none %}
({{ retention.kept }} days){% endif %}; requests stored since {{ retention.requests_since or "—" }};
request detail kept {{ "for ever" if retention.days is none else retention.days ~ " days" }}{%
if retention.high_risk %} (high-risk system: at least six months){% endif %};
{{ retention.retention_events }} retention events in this bundle.</p>

{% if f.erased_ids %}<h2>Erased</h2>
<p>Requests whose subject was erased (an <code>erasure</code> event in the ledger names the
subject's digest); marked <code>"erased": true</code> in <code>records/requests-*.jsonl</code>:</p>
<p>{% for t in f.erased_ids %}<code>{{ t }}</code> <span class="erased">erased</span>{% if not
loop.last %}, {% endif %}{% endfor %}</p>{% endif %}

<h2>Files</h2>
<table><tr><th>file</th><th>records</th><th>bytes</th><th>SHA-256</th></tr>
{% for x in files %}<tr><td><code>{{ x.path }}</code></td><td>{{ x.records if x.records is not none
else "" }}</td><td>{{ x.bytes }}</td><td><code>{{ x.sha256 }}</code></td></tr>{% endfor %}</table>
<p class="note">manifest.json lists these digests too, and its signature covers them and this
report.</p>
</body></html>
"""

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_TEMPLATE = _ENV.from_string(_HTML)


def render_html(facts: Facts) -> str:
    return _TEMPLATE.render(**_context(facts))


def render_pdf(facts: Facts) -> bytes:
    """The report as PDF: the same sections, tables of at most the sampled rows."""
    from fpdf import FPDF
    from fpdf.enums import WrapMode

    context = _context(facts)
    pdf = FPDF(orientation="landscape", format="A4")
    pdf.set_creation_date(datetime.fromisoformat(facts.created_at.replace("Z", "+00:00")))
    unicode = _FONT.exists() and _FONT_BOLD.exists()
    if unicode:
        pdf.add_font("body", "", str(_FONT))
        pdf.add_font("body", "B", str(_FONT_BOLD))
        family = "body"
    else:
        family = "Helvetica"

    def text(value: object) -> str:
        out = "—" if value is None else str(value)
        if not unicode:
            out = out.replace("\u2014", "-").replace("\u2026", "...")
            out = out.encode("latin-1", "replace").decode("latin-1")
        return out

    def heading(title: str) -> None:
        pdf.set_font(family, "B", 13)
        pdf.ln(3)
        pdf.multi_cell(0, 7, text(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, "", 8)

    def paragraph(body: str) -> None:
        pdf.multi_cell(0, 4.5, text(body), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)

    def table(header: list[str], rows: list[list[object]], widths: list[float]) -> None:
        if not rows:
            paragraph("None in scope.")
            return
        with pdf.table(col_widths=widths, text_align="LEFT", wrapmode=WrapMode.WORD,
                       line_height=4) as grid:  # fmt: skip
            grid.row([text(h) for h in header])
            for row in rows:
                grid.row([text(c) for c in row])
        pdf.ln(2)

    pdf.set_auto_page_break(True, margin=12)
    pdf.add_page()
    pdf.set_font(family, "B", 16)
    pdf.multi_cell(0, 9, text(f"Audit export — project {facts.scope.project}"),
                   new_x="LMARGIN", new_y="NEXT")  # fmt: skip
    pdf.set_font(family, "", 8)
    subject = f"; subject {facts.scope.subject}" if facts.scope.subject else ""
    paragraph(
        f"Created {facts.created_at} by Warden; signed by key {facts.key_id}. Period "
        f"{context['period']}; model {context['model']}{subject}. Scope: {facts.mode}."
    )
    heading("Verification")
    anchor = context["anchor"]
    paragraph(
        f"Anchor head: {anchor['tree_size']} events, root {anchor['root_hash']}, signed "
        f"{anchor['signed_at']} by key {anchor['key_id']}. {facts.earlier_heads} earlier heads "
        "with consistency proofs in ledger/heads.jsonl. Verify offline: warden verify "
        "bundle.zip --public-key warden.pub --pin HEAD.json (a head kept from an earlier "
        "export); without --pin the check proves the bundle is what the key's holder signed."
    )
    table(["events", "root", "signed at", "key"],
          [[h["tree_size"], h["root_hash"], h["signed_at"], h["key_id"]]
           for h in context["heads"]], [12, 60, 25, 20])  # fmt: skip
    heading("Record-keeping duties")
    table(["duty", "where in this bundle", "in this export"],
          [[d["duty"], d["where"], d["holds"]] for d in context["duties"]],
          [35, 30, 45])  # fmt: skip
    heading("Uses (requests)")
    paragraph(
        f"{facts.requests} requests ({facts.uncovered} without a ledger event, "
        f"{facts.erased} erased). Outcomes: {context['outcomes']}. "
        f"Up to {_PDF_ROWS} are listed; all are in records/requests-*.jsonl."
    )
    table(["trace", "start", "end", "outcome", "fingerprint", "models", "seq", "erased"],
          [[r["trace_id"], r["start"], r["end"], r["outcome"], r["fingerprint"], r["models"],
            r["seq"], "erased" if r["erased"] else ""] for r in context["requests"][:_PDF_ROWS]],
          [30, 24, 24, 12, 18, 40, 8, 8])  # fmt: skip
    heading("Verification of results by people (reviews)")
    table(["trace", "policy", "status", "decided by", "decided at"],
          [[r["trace_id"], r["policy_id"], r["status"], r["decided_by"], r["decided_at"]]
           for r in facts.reviews[:_PDF_ROWS]], [30, 20, 12, 25, 25])  # fmt: skip
    heading("Policies in force")
    table(["seq", "at", "policy set"],
          [[p["seq"], p["created_at"], policy_set(p["payload"])] for p in facts.policy_sets],
          [10, 25, 80])  # fmt: skip
    table(["policy", "version", "content hash", "outcomes"],
          [[p["policy_id"], p["version"], p["hash"], p["outcomes"]] for p in context["policies"]],
          [25, 10, 55, 30])  # fmt: skip
    heading("Model lineage")
    table(["model", "version", "role", "MLflow run", "datasets"],
          [[v["name"], v["version"], v["role"], v["run_id"],
            "; ".join(f"{d.get('name')} ({d.get('digest')}, {d.get('source_type')})"
                      for d in v["datasets"]) or None]
           for v in context["lineage"]], [25, 10, 15, 30, 60])  # fmt: skip
    heading("Drift reports")
    table(["model", "version", "kind", "verdict", "created", "MLflow run"],
          [[d["model_name"], d["model_version"], d["kind"], d["verdict"], d["created_at"],
            d["mlflow_run_id"]] for d in facts.drift], [25, 10, 12, 12, 25, 30])  # fmt: skip
    heading("Retention")
    retention = context["retention"]
    paragraph(
        f"Ledger kept since {retention.get('ledger_since')} ({retention['kept']} days); "
        f"requests stored since {retention.get('requests_since')}; request detail kept "
        f"{_kept(retention)}; "
        f"{retention['retention_events']} retention events in this bundle."
    )
    if facts.erased_ids:
        heading("Erased")
        paragraph("Requests whose subject was erased (marked \"erased\": true in the records): "
                  + ", ".join(f"{t} (erased)" for t in facts.erased_ids[:_PDF_ROWS]))  # fmt: skip
    heading("Files")
    table(["file", "records", "bytes", "SHA-256"],
          [[f.path, f.records, f.bytes, f.sha256] for f in context["files"]],
          [35, 10, 12, 60])  # fmt: skip
    return bytes(pdf.output())
