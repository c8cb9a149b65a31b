"""Retained raw inputs, encrypted per subject, and erasure by destroying the subject's key.

When the SDK retains a request's raw input (`capture_input=True` puts it in the root span's
`warden.request.input` attribute), ingest takes the attribute out of the stored span and keeps
it in `request_payloads`, encrypted with AES-256-GCM under a data key of the request's subject
(`warden.request.subject`), or of the request alone when it names no subject. Data keys are
random, stored wrapped (RFC 3394 AES key wrap) under a key-encryption key derived from the
server secret with HKDF-SHA256, so a copy of the database alone opens nothing. The `Vault`
holding that key is made once from the server secret (the app factory, `warden replay`) and
handed to whoever seals or opens an input.

Each subject also gets a random pseudonym: the ledger names subjects by it, never by their
id. Erasing a subject (`warden erase`) overwrites its key and its id with NULL in
`subject_keys`, clears the id from the stored requests and root spans, clears the comments
of their scores (docs/scores.md) and the prompts and completions of their language-model
calls (docs/conventions.md, "GenAI spans"), and appends an
`erasure` event naming the pseudonym. The ciphertexts stay where they are, unreadable; every
ledger event stays as it was hashed, so the ledger still verifies, and the pseudonym in it
leads to no one any more. Rotating the server secret makes every retained input unreadable
too: keep `WARDEN_SECRET_KEY` as long as the inputs.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)
from sqlalchemy import Connection, Engine, Table, and_, func, insert, select, text, update

from app.audit import ledger
from app.errors import Conflict, NotFound
from app.store.dialect import insert_on_conflict, is_postgresql
from app.store.engine import read_connection, write_transaction
from app.store.tables import (
    LegalHold,
    LlmCall,
    Request,
    RequestPayload,
    Score,
    Span,
    SubjectKey,
)
from collectors import conventions as wire

_WRAP_INFO = b"warden subject-key wrap v1"
_NONCE = 12

KEYS: Table = SubjectKey.__table__  # type: ignore[assignment]
PAYLOADS: Table = RequestPayload.__table__  # type: ignore[assignment]


class Vault:
    """Wraps data keys under the key-encryption key, and seals and opens payloads."""

    def __init__(self, server_secret: bytes) -> None:
        self._kek = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"warden", info=_WRAP_INFO
        ).derive(server_secret)

    def new_key(self) -> tuple[bytes, bytes]:
        """A fresh 32-byte data key and its wrapped form (40 bytes)."""
        data_key = os.urandom(32)
        return data_key, aes_key_wrap(self._kek, data_key)

    def unwrap(self, wrapped: bytes) -> bytes:
        return aes_key_unwrap(self._kek, wrapped)

    @staticmethod
    def seal(data_key: bytes, project_id: int, trace_id: str, plaintext: bytes) -> bytes:
        """nonce || AES-256-GCM(plaintext), bound to the project and request."""
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(data_key).encrypt(nonce, plaintext, _aad(project_id, trace_id))

    @staticmethod
    def open(data_key: bytes, project_id: int, trace_id: str, sealed: bytes) -> bytes:
        return AESGCM(data_key).decrypt(
            sealed[:_NONCE], sealed[_NONCE:], _aad(project_id, trace_id)
        )


def _aad(project_id: int, trace_id: str) -> bytes:
    return f"warden-request-input-v1|{project_id}|{trace_id}".encode()


def take_inputs(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Remove the retained input from root span rows before they are stored: trace -> input."""
    taken: dict[str, str] = {}
    for row in rows:
        if row["parent_span_id"] is None:
            value = row["attributes"].pop(wire.REQUEST_INPUT, None)
            if value is not None:
                taken[row["trace_id"]] = value if isinstance(value, str) else str(value)
    return taken


# -- subject keys ------------------------------------------------------------------------------


@dataclass(slots=True)
class SubjectRow:
    id: int
    pseudonym: str
    key: bytes | None


def subject_rows(
    conn: Connection, project_id: int, subjects: Iterable[str]
) -> dict[str, SubjectRow]:
    """Each subject's live key row, made (with a new pseudonym, no key yet) when missing."""
    wanted = sorted(set(subjects))
    if not wanted:
        return {}
    query = select(KEYS.c.subject, KEYS.c.id, KEYS.c.pseudonym, KEYS.c.key).where(
        KEYS.c.project_id == project_id, KEYS.c.subject.in_(wanted)
    )
    found = {s: SubjectRow(int(i), p, k) for s, i, p, k in conn.execute(query)}
    missing = [s for s in wanted if s not in found]
    if missing:
        now = datetime.now(UTC)
        conn.execute(
            insert_on_conflict(conn, KEYS, ["project_id", "subject"]),
            [
                {"project_id": project_id, "subject": s, "pseudonym": secrets.token_hex(16),
                 "key": None, "created_at": now}
                for s in missing
            ],
        )  # fmt: skip
        found.update(
            {s: SubjectRow(int(i), p, k) for s, i, p, k in conn.execute(query)}
        )
    return found


def pseudonym(conn: Connection, project_id: int, subject: str) -> str:
    """The pseudonym the ledger names `subject` by (made when missing)."""
    return subject_rows(conn, project_id, [subject])[subject].pseudonym


def _data_key(conn: Connection, vault: Vault, row: SubjectRow) -> bytes:
    """The row's data key, made on first use (the first retained input of the subject)."""
    if row.key is None:
        data_key, wrapped = vault.new_key()
        done = conn.execute(
            update(KEYS)
            .where(KEYS.c.id == row.id, KEYS.c.key.is_(None), KEYS.c.destroyed_at.is_(None))
            .values(key=wrapped)
        ).rowcount
        if done:
            row.key = wrapped
            return data_key
        # another transaction made it first (PostgreSQL): use theirs
        row.key = conn.execute(select(KEYS.c.key).where(KEYS.c.id == row.id)).scalar_one()
        if row.key is None:
            raise Conflict("the subject was erased while its request was being stored; retry")
    return vault.unwrap(bytes(row.key))


def store_inputs(
    conn: Connection,
    vault: Vault,
    project_id: int,
    inputs: Mapping[str, tuple[str, str | None]],
    subjects: Mapping[str, SubjectRow],
) -> set[str]:
    """Seal with `vault` and store retained inputs (trace -> (input, subject)); returns the
    traces stored. A raw input is never kept in the clear."""
    if not inputs:
        return set()
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    keys: dict[int, bytes] = {}
    for trace_id in sorted(inputs):
        value, subject = inputs[trace_id]
        if subject is not None:
            row = subjects[subject]
            if row.id not in keys:
                keys[row.id] = _data_key(conn, vault, row)
            data_key, key_id = keys[row.id], row.id
        else:
            data_key, wrapped = vault.new_key()
            key_id = int(
                conn.execute(
                    insert(KEYS)
                    .values(project_id=project_id, subject=None,
                            pseudonym=secrets.token_hex(16), key=wrapped, created_at=now)
                    .returning(KEYS.c.id)
                ).scalar_one()
            )  # fmt: skip
        sealed = vault.seal(data_key, project_id, trace_id, value.encode("utf-8"))
        rows.append({"project_id": project_id, "trace_id": trace_id, "subject_key_id": key_id,
                     "ciphertext": sealed, "created_at": now})  # fmt: skip
    conn.execute(insert_on_conflict(conn, PAYLOADS, ["project_id", "trace_id"]), rows)
    return {str(r["trace_id"]) for r in rows}


# -- reading and erasing -----------------------------------------------------------------------


@dataclass(frozen=True)
class RetainedInput:
    """A request's retained input: `state` is "retained" (with `text`), "erased" or "absent"."""

    state: str
    text: str | None = None


def read_input(engine: Engine, vault: Vault, project_id: int, trace_id: str) -> RetainedInput:
    """Decrypt a request's retained input; "erased" once its subject's key is destroyed."""
    query = (
        select(PAYLOADS.c.ciphertext, KEYS.c.key, KEYS.c.destroyed_at)
        .join(KEYS, KEYS.c.id == PAYLOADS.c.subject_key_id)
        .where(PAYLOADS.c.project_id == project_id, PAYLOADS.c.trace_id == trace_id.lower())
    )
    with read_connection(engine) as conn:
        row = conn.execute(query).one_or_none()
    if row is None:
        return RetainedInput("absent")
    if row.key is None:
        return RetainedInput("erased")
    try:
        data_key = vault.unwrap(bytes(row.key))
        plain = Vault.open(data_key, project_id, trace_id.lower(), bytes(row.ciphertext))
    except (InvalidUnwrap, InvalidTag):
        raise Conflict(
            "the retained input cannot be decrypted with this server secret: it was sealed "
            "under another WARDEN_SECRET_KEY"
        ) from None
    return RetainedInput("retained", plain.decode("utf-8"))


@dataclass(frozen=True)
class Erasure:
    pseudonym: str | None
    payloads: int
    requests: int
    seq: int


def active_holds(conn: Connection, project_id: int) -> list[Any]:
    return list(
        conn.execute(
            select(LegalHold).where(
                LegalHold.project_id == project_id, LegalHold.released_at.is_(None)
            )
        )
    )


def erase_subject(
    engine: Engine, project_id: int, subject: str, actor: str, reason: str = ""
) -> Erasure:
    """Destroy a subject's data key and id; append an `erasure` event naming its pseudonym.

    Refused (409) while a legal hold covers the project or the subject.
    """
    with write_transaction(engine) as conn:
        for hold in active_holds(conn, project_id):
            if hold.scope == "project" or (hold.scope == "subject" and hold.subject == subject):
                raise Conflict(
                    f"legal hold {hold.id} ({hold.scope}: {hold.reason}) suspends deletion; "
                    f"release it first with `warden hold release {hold.id}`"
                )
        row = conn.execute(
            select(KEYS.c.id, KEYS.c.pseudonym).where(
                KEYS.c.project_id == project_id, KEYS.c.subject == subject
            )
        ).one_or_none()
        requests = conn.execute(
            select(Request.trace_id).where(
                Request.project_id == project_id, Request.subject == subject
            )
        ).scalars().all()
        if row is None and not requests:
            raise NotFound(f"no subject {subject!r} in this project")
        payloads = 0
        if row is not None:
            payloads = int(
                conn.execute(
                    select(func.count()).select_from(PAYLOADS).where(
                        PAYLOADS.c.subject_key_id == row.id
                    )
                ).scalar_one()
            )
            conn.execute(
                update(KEYS)
                .where(KEYS.c.id == row.id)
                .values(key=None, subject=None, destroyed_at=datetime.now(UTC))
            )
        if requests:
            conn.execute(
                update(Request)
                .where(Request.project_id == project_id, Request.subject == subject)
                .values(subject=None)
            )
            _strip_subject_attribute(conn, project_id, list(requests))
            _clear_score_comments(conn, project_id, list(requests))
            _clear_llm_messages(conn, project_id, list(requests))
        event = ledger.append(
            conn, project_id, None, ledger.ERASURE,
            {"subject_pseudonym": row.pseudonym if row is not None else None,
             "payloads": payloads, "requests": len(requests), "actor": actor,
             "reason": reason or None},
        )  # fmt: skip
    return Erasure(row.pseudonym if row is not None else None, payloads, len(requests), event.seq)


def _without(conn: Connection, attribute: str) -> Any:
    """The stored span attributes without `attribute`, in the database's own JSON dialect."""
    if is_postgresql(conn):
        return text("attributes - :name").bindparams(name=attribute)
    return text("json_remove(attributes, :path)").bindparams(path=f'$."{attribute}"')


# What a language-model span says of its prompt and completion: the attributes of the current
# form and OpenLLMetry's flattened ones (by prefix), and the events that carry messages.
_MESSAGE_ATTRIBUTES = frozenset(
    {wire.GEN_AI_INPUT_MESSAGES, wire.GEN_AI_OUTPUT_MESSAGES, wire.GEN_AI_SYSTEM_INSTRUCTIONS}
)
_MESSAGE_PREFIXES = (wire.GEN_AI_PROMPT + ".", wire.GEN_AI_COMPLETION + ".")
_MESSAGE_EVENTS = frozenset({
    wire.GEN_AI_OPERATION_DETAILS_EVENT, wire.GEN_AI_SYSTEM_MESSAGE_EVENT,
    wire.GEN_AI_USER_MESSAGE_EVENT, wire.GEN_AI_ASSISTANT_MESSAGE_EVENT,
    wire.GEN_AI_TOOL_MESSAGE_EVENT, wire.GEN_AI_CHOICE_EVENT, wire.GEN_AI_PROMPT_EVENT,
    wire.GEN_AI_COMPLETION_EVENT,
})  # fmt: skip


def _clear_llm_messages(conn: Connection, project_id: int, traces: list[str]) -> None:
    """A prompt is the subject's own words: the prompts and completions of these requests'
    language-model calls go with their subject, from `llm_calls` and from the spans that
    carried them. Models, tokens, cost and finish reasons stay: they are about the call."""
    for start in range(0, len(traces), 500):
        chunk = traces[start : start + 500]
        calls = conn.execute(
            select(LlmCall.trace_id, LlmCall.span_id).where(
                LlmCall.project_id == project_id, LlmCall.trace_id.in_(chunk)
            )
        ).all()
        conn.execute(
            update(LlmCall)
            .where(LlmCall.project_id == project_id, LlmCall.trace_id.in_(chunk))
            .values(input_messages=[], output_messages=[])
        )
        for trace_id, span_id in calls:
            where = (
                Span.project_id == project_id,
                Span.trace_id == trace_id,
                Span.span_id == span_id,
            )
            found = conn.execute(select(Span.attributes, Span.events).where(*where)).one_or_none()
            if found is None:
                continue
            attributes = {
                k: v
                for k, v in (found.attributes or {}).items()
                if k not in _MESSAGE_ATTRIBUTES and not k.startswith(_MESSAGE_PREFIXES)
            }
            spoken = [e for e in found.events or [] if e.get("name") not in _MESSAGE_EVENTS]
            conn.execute(update(Span).where(*where).values(attributes=attributes, events=spoken))


def _clear_score_comments(conn: Connection, project_id: int, traces: list[str]) -> None:
    """Free text about these requests goes with their subject: the comments of their scores,
    in `scores` and in the `warden.score` spans that brought them (the ledger holds only
    their hashes). Values, sources and corrections stay: they are about the decision."""
    for start in range(0, len(traces), 500):
        chunk = traces[start : start + 500]
        keys = conn.execute(
            select(Score.score_key).where(
                Score.project_id == project_id,
                Score.trace_id.in_(chunk),
                Score.comment.is_not(None),
            )
        ).scalars().all()
        conn.execute(
            update(Score)
            .where(Score.project_id == project_id, Score.trace_id.in_(chunk))
            .values(comment=None)
        )
        # A score sent over OTLP is keyed by its span ("<trace>:<span>", app/scores/spans.py);
        # one posted to the API ("api:<uuid>") has no span.
        spans = [tuple(k.split(":", 1)) for k in keys if not k.startswith("api:")]
        for trace_id, span_id in spans:
            conn.execute(
                update(Span)
                .where(
                    Span.project_id == project_id,
                    Span.trace_id == trace_id,
                    Span.span_id == span_id,
                )
                .values(attributes=_without(conn, wire.SCORE_COMMENT))
            )


def _strip_subject_attribute(conn: Connection, project_id: int, traces: list[str]) -> None:
    """Remove `warden.request.subject` from the stored root spans of these requests."""
    expression = _without(conn, wire.REQUEST_SUBJECT)
    for start in range(0, len(traces), 500):
        conn.execute(
            update(Span)
            .where(
                and_(
                    Span.project_id == project_id,
                    Span.trace_id.in_(traces[start : start + 500]),
                    Span.parent_span_id.is_(None),
                )
            )
            .values(attributes=expression)
        )
