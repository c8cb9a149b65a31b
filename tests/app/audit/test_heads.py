"""Signed tree heads and Ed25519 keys: a head verifies under its key only, and unchanged only."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import heads
from app.audit.heads import TreeHead, head_from_json, head_to_json, sign_head, verify_head

# RFC 8032 §7.1, TEST 1: a published key, never to sign anything real.
RFC8032_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_EMPTY_SIGNATURE = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
    "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_SECRET))
PUBLIC = KEY.public_key()
ROOT = hashlib.sha256(b"a root").digest()
WHEN = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
HEAD = sign_head(KEY, "shop", 1234, ROOT, WHEN)


def test_sign_bytes_is_pure_ed25519() -> None:
    assert heads.sign_bytes(KEY, b"").hex() == RFC8032_EMPTY_SIGNATURE
    raw = PUBLIC.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw.hex() == RFC8032_PUBLIC
    assert heads.key_id(PUBLIC) == hashlib.sha256(raw).hexdigest()[:16] == "21fe31dfa154a261"


def test_the_signed_message_is_the_tag_and_the_canonical_json() -> None:
    assert heads.head_message("shop", 1234, ROOT, WHEN, "21fe31dfa154a261") == (
        b"warden-tree-head-v1\n"
        b'{"key_id":"21fe31dfa154a261","project":"shop","root_hash":"' + ROOT.hex().encode() + b'",'
        b'"signed_at":"2025-01-02T03:04:05.678901Z","tree_size":1234}'
    )
    message = heads.head_message(HEAD.project, 1234, ROOT, WHEN, HEAD.key_id)
    assert heads.verify_bytes(PUBLIC, message, HEAD.signature)


def test_a_head_verifies_under_its_key_and_no_other() -> None:
    assert verify_head(HEAD, PUBLIC)
    assert HEAD.signed_at == WHEN and HEAD.signed_at.tzinfo is UTC
    other = heads.generate_key()
    assert not verify_head(HEAD, other.public_key())
    # Relabelled with the other key's id, it still is not the other key's signature.
    relabelled = dataclasses.replace(HEAD, key_id=heads.key_id(other.public_key()))
    assert not verify_head(relabelled, other.public_key())
    assert not verify_head(relabelled, PUBLIC)
    # A head the other key did sign does not verify under ours.
    assert not verify_head(sign_head(other, "shop", 1234, ROOT, WHEN), PUBLIC)
    # Nor does a head that names another key than the one that signed it, signature or not.
    other_id = heads.key_id(other.public_key())
    message = heads.head_message("shop", 1234, ROOT, WHEN, other_id)
    mislabelled = TreeHead("shop", 1234, ROOT, WHEN, other_id, heads.sign_bytes(KEY, message))
    assert heads.verify_bytes(PUBLIC, message, mislabelled.signature)
    assert not verify_head(mislabelled, PUBLIC)


def test_a_time_in_another_zone_is_kept_as_the_same_instant_in_utc() -> None:
    local = WHEN.astimezone(timezone(timedelta(hours=9, minutes=30)))
    head = sign_head(KEY, "shop", 1234, ROOT, local)
    assert head == HEAD
    with pytest.raises(ValueError, match="time zone"):
        sign_head(KEY, "shop", 1, ROOT, datetime(2025, 1, 2))


def flips(data: bytes) -> list[bytes]:
    out = []
    for i in range(len(data) * 8):
        changed = bytearray(data)
        changed[i // 8] ^= 1 << (i % 8)
        out.append(bytes(changed))
    return out


def test_any_single_bit_flip_invalidates_the_head() -> None:
    variants: list[TreeHead] = []
    variants += [dataclasses.replace(HEAD, signature=s) for s in flips(HEAD.signature)]
    variants += [dataclasses.replace(HEAD, root_hash=r) for r in flips(HEAD.root_hash)]
    variants += [dataclasses.replace(HEAD, tree_size=HEAD.tree_size ^ (1 << b)) for b in range(64)]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    micros = (HEAD.signed_at - epoch) // timedelta(microseconds=1)
    for bit in range(56):
        changed = epoch + timedelta(microseconds=micros ^ (1 << bit))
        variants.append(dataclasses.replace(HEAD, signed_at=changed))
    for raw in flips(HEAD.project.encode()):
        with contextlib.suppress(UnicodeDecodeError):
            variants.append(dataclasses.replace(HEAD, project=raw.decode()))
    for raw in flips(HEAD.key_id.encode()):
        variants.append(dataclasses.replace(HEAD, key_id=raw.decode("latin-1")))
    assert len(variants) > 512 + 256 + 64 + 56 + 100
    for variant in variants:
        assert variant != HEAD
        assert not verify_head(variant, PUBLIC), variant


def test_a_malformed_head_is_rejected_without_raising() -> None:
    changes: list[dict[str, Any]] = [
        {"signature": b""},
        {"signature": "not bytes"},
        {"root_hash": b"short"},
        {"tree_size": -1},
        {"tree_size": 2**53},
        {"tree_size": True},
        {"project": ""},
        {"signed_at": datetime(2025, 1, 2)},
        {"signed_at": "2025-01-02T03:04:05.678901Z"},
    ]
    for change in changes:
        assert not verify_head(dataclasses.replace(HEAD, **change), PUBLIC), change
    assert not heads.verify_bytes(PUBLIC, b"data", b"\x00" * 64)
    assert not heads.verify_bytes(PUBLIC, b"data", b"\x00" * 65)
    assert not heads.verify_bytes(PUBLIC, b"data", "text")  # type: ignore[arg-type]


def test_sign_and_verify_arbitrary_bytes() -> None:
    manifest = b'{"files":{"events.jsonl":"ab12"}}'
    signature = heads.sign_bytes(KEY, manifest)
    assert len(signature) == 64 and heads.verify_bytes(PUBLIC, manifest, signature)
    assert not heads.verify_bytes(PUBLIC, manifest + b" ", signature)
    assert not heads.verify_bytes(heads.generate_key().public_key(), manifest, signature)


def test_json_round_trip() -> None:
    data = head_to_json(HEAD)
    assert data == {
        "format": "warden-tree-head-v1",
        "project": "shop",
        "tree_size": 1234,
        "root_hash": ROOT.hex(),
        "signed_at": "2025-01-02T03:04:05.678901Z",
        "key_id": "21fe31dfa154a261",
        "signature": data["signature"],
    }
    restored = head_from_json(json.loads(json.dumps(data)))
    assert restored == HEAD and verify_head(restored, PUBLIC)


@pytest.mark.parametrize(
    "change",
    [
        {"format": "warden-tree-head-v2"},
        {"extra": 1},
        {"root_hash": ROOT.hex().upper()},
        {"root_hash": ROOT.hex()[:-2]},
        {"root_hash": "zz" * 32},
        {"signature": "not base64!"},
        {"signed_at": "2025-01-02T03:04:05Z"},
        {"tree_size": "1234"},
        {"tree_size": -1},
        {"project": None},
        {"key_id": 5},
    ],
)
def test_malformed_head_json_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        head_from_json({**head_to_json(HEAD), **change})


def test_head_json_missing_a_member_is_refused() -> None:
    for member in head_to_json(HEAD):
        data = head_to_json(HEAD)
        del data[member]
        with pytest.raises(ValueError):
            head_from_json(data)


def test_private_keys_are_saved_for_the_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "audit-signing.pem"
    old_umask = os.umask(0)  # even a permissive umask leaves the key private
    try:
        heads.save_private_key(KEY, path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
    loaded = heads.load_private_key(path)
    assert heads.key_id(loaded.public_key()) == heads.key_id(PUBLIC)
    assert verify_head(sign_head(loaded, "shop", 1, ROOT, WHEN), PUBLIC)
    with pytest.raises(FileExistsError, match="move it away"):
        heads.save_private_key(heads.generate_key(), path)
    assert heads.key_id(heads.load_private_key(str(path)).public_key()) == heads.key_id(PUBLIC)


def test_public_keys_load_from_pem_text_bytes_or_a_file(tmp_path: Path) -> None:
    pem = heads.public_key_pem(KEY)
    assert pem == heads.public_key_pem(PUBLIC) and pem.startswith("-----BEGIN PUBLIC KEY-----")
    path = tmp_path / "audit.pub"
    path.write_text(pem)
    for source in (pem, pem.encode(), path, str(path)):
        assert heads.key_id(heads.load_public_key(source)) == "21fe31dfa154a261"


def test_keys_of_another_algorithm_are_refused(tmp_path: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.pem"
    path.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="not an Ed25519"):
        heads.load_private_key(path)
    ec_public = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="Ed25519"):
        heads.load_public_key(ec_public)
