"""docs/audit.md's worked example is what the code computes, and the docstring examples run."""

from __future__ import annotations

import base64
import doctest
import json
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import chain, fastjcs, heads, jcs, layout, merkle
from app.audit.bundle import scope

DOC = Path(__file__).resolve().parents[3] / "docs" / "audit.md"

EVENT_1 = {
    "seq": 1,
    "project": "shop",
    "kind": "policy.evaluation",
    "created_at": "2025-01-02T03:04:05.678901Z",
    "payload": {"policy": "pii-guard", "outcome": "deny", "score": 0.25, "note": "café"},
}
EVENT_2 = {
    "seq": 2,
    "project": "shop",
    "kind": "request",
    "created_at": "2025-01-02T03:04:06.000000Z",
    "payload": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "outcome": "booked"},
}
RFC8032_KEY = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"


def test_the_worked_example_is_what_the_code_computes() -> None:
    doc = DOC.read_text(encoding="utf-8")
    c1, c2 = chain.canonical(EVENT_1), chain.canonical(EVENT_2)
    h1 = chain.event_hash(chain.GENESIS, EVENT_1)
    h2 = chain.event_hash(h1, EVENT_2)
    leaves = [chain.merkle_leaf(h1), chain.merkle_leaf(h2)]
    root = merkle.root(leaves)
    assert merkle.inclusion_proof(leaves, 0, 2) == [leaves[1]]
    assert merkle.consistency_proof(leaves, 1, 2) == [leaves[1]]

    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_KEY))
    when = datetime(2025, 1, 2, 3, 5, tzinfo=UTC)
    head = heads.sign_head(key, "shop", 2, root, when)
    message = heads.head_message("shop", 2, root, when, head.key_id)
    pem_body = heads.public_key_pem(key).splitlines()[1]

    assert f"`canonical(event 1)`, {len(c1)} bytes" in doc
    expected_in_doc = [
        c1.decode("utf-8"),
        c1.hex(),
        c2.decode("utf-8"),
        h1.hex(),
        h2.hex(),
        leaves[0].hex(),
        leaves[1].hex(),
        root.hex(),
        head.key_id,
        head.signature.hex(),
        pem_body,
        message.decode("utf-8"),
        json.dumps(heads.head_to_json(head), indent=2),
        base64.b64encode(head.signature).decode(),
    ]
    for value in expected_in_doc:
        assert value in doc, value
    assert merkle.EMPTY_ROOT.hex() in doc


def test_the_documented_top_level_order_is_jcs_order() -> None:
    assert list(json.loads(jcs.dumps(EVENT_1))) == [
        "created_at",
        "kind",
        "payload",
        "project",
        "seq",
    ]


@pytest.mark.parametrize("module", [jcs, chain, merkle, heads, fastjcs, layout, scope])
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
