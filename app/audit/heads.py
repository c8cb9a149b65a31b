"""Signed tree heads: Ed25519 signatures over (project, tree size, root, time, key id).

The signed message is

    b"warden-tree-head-v1\\n" || JCS({"key_id": ..., "project": ..., "root_hash": <64 hex>,
                                      "signed_at": <RFC 3339 µs Z>, "tree_size": <int>})

that is, the ASCII tag and a newline, then the RFC 8785 canonical JSON (members sorted, no
whitespace, UTF-8) of those five members: `root_hash` in lower-case hex, `signed_at` as
`chain.format_time` writes it (`2025-01-02T03:04:05.678901Z`). The signature is the 64-byte
Ed25519 (RFC 8032, pure) signature of those bytes.

A key's id is the first 16 lower-case hex characters of SHA-256 of its raw 32-byte public key.

A head is what an auditor keeps (`head_to_json`, e.g. as HEAD.json): later heads must be
consistent with it (`merkle.verify_consistency`), and a log shorter than a head it once
signed has been cut.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.audit import jcs
from app.audit.chain import format_time, parse_time

HEAD_FORMAT = "warden-tree-head-v1"
_MESSAGE_TAG = HEAD_FORMAT.encode("ascii") + b"\n"
_KEY_ID_LENGTH = 16


@dataclass(frozen=True)
class TreeHead:
    project: str
    tree_size: int
    root_hash: bytes
    signed_at: datetime  # UTC, microsecond precision
    key_id: str
    signature: bytes


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex characters of SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:_KEY_ID_LENGTH]


def head_message(
    project: str, tree_size: int, root_hash: bytes, signed_at: datetime, key_id: str
) -> bytes:
    """The bytes a tree head's signature covers; ValueError when a field is out of shape."""
    if not isinstance(project, str) or not project:
        raise ValueError("a tree head needs a non-empty project name")
    if (
        not isinstance(tree_size, int)
        or isinstance(tree_size, bool)
        or not 0 <= tree_size <= jcs.MAX_SAFE_INTEGER
    ):
        raise ValueError(f"tree_size must be an int from 0 to 2^53 - 1, not {tree_size!r}")
    if not isinstance(root_hash, bytes) or len(root_hash) != 32:
        raise ValueError("root_hash must be the 32-byte Merkle root")
    if not isinstance(key_id, str) or not key_id:
        raise ValueError("a tree head needs the id of the key that signs it")
    body = {
        "key_id": key_id,
        "project": project,
        "root_hash": root_hash.hex(),
        "signed_at": format_time(signed_at),
        "tree_size": tree_size,
    }
    return _MESSAGE_TAG + jcs.dumps(body)


def sign_head(
    private_key: Ed25519PrivateKey, project: str, size: int, root: bytes, when: datetime
) -> TreeHead:
    """Sign the head (project, size, root) at `when` (an aware datetime; kept in UTC, to the µs).

    >>> from datetime import datetime, timezone
    >>> key = generate_key()
    >>> head = sign_head(key, "shop", 0, bytes(32), datetime.now(timezone.utc))
    >>> verify_head(head, key.public_key())
    True
    """
    kid = key_id(private_key.public_key())
    message = head_message(project, size, root, when, kid)
    signed_at = parse_time(format_time(when))
    return TreeHead(project, size, root, signed_at, kid, private_key.sign(message))


def verify_head(head: TreeHead, public_key: Ed25519PublicKey) -> bool:
    """True when `head` was signed by `public_key`; False for anything else, never raises."""
    try:
        if head.key_id != key_id(public_key):
            return False
        message = head_message(
            head.project, head.tree_size, head.root_hash, head.signed_at, head.key_id
        )
    except (AttributeError, TypeError, ValueError):
        return False
    return verify_bytes(public_key, message, head.signature)


def head_to_json(head: TreeHead) -> dict[str, Any]:
    """The head as JSON: hex root, RFC 3339 time, base64 (standard, padded) signature."""
    return {
        "format": HEAD_FORMAT,
        "project": head.project,
        "tree_size": head.tree_size,
        "root_hash": head.root_hash.hex(),
        "signed_at": format_time(head.signed_at),
        "key_id": head.key_id,
        "signature": base64.b64encode(head.signature).decode("ascii"),
    }


def head_from_json(data: dict[str, Any]) -> TreeHead:
    """The head `head_to_json` wrote; ValueError, saying what is wrong, for anything else.

    It checks the shape only: call `verify_head` to know the head is genuine.
    """
    if not isinstance(data, dict):
        raise ValueError("a tree head is a JSON object")
    if data.get("format") != HEAD_FORMAT:
        raise ValueError(f"not a {HEAD_FORMAT} tree head (format is {data.get('format')!r})")
    expected = {"format", "project", "tree_size", "root_hash", "signed_at", "key_id", "signature"}
    if data.keys() != expected:
        raise ValueError(f"a tree head has exactly the members {sorted(expected)}")
    root_hex, signature_b64 = data["root_hash"], data["signature"]
    if not isinstance(root_hex, str) or len(root_hex) != 64 or root_hex != root_hex.lower():
        raise ValueError("root_hash must be 64 lower-case hex characters")
    try:
        root_hash = bytes.fromhex(root_hex)
        signature = base64.b64decode(signature_b64, validate=True)
    except (TypeError, ValueError, binascii.Error) as error:
        raise ValueError(f"root_hash or signature is not valid hex/base64: {error}") from None
    head = TreeHead(
        project=data["project"],
        tree_size=data["tree_size"],
        root_hash=root_hash,
        signed_at=parse_time(data["signed_at"]),
        key_id=data["key_id"],
        signature=signature,
    )
    head_message(head.project, head.tree_size, head.root_hash, head.signed_at, head.key_id)
    return head


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def save_private_key(key: Ed25519PrivateKey, path: str | Path) -> None:
    """Write `key` as unencrypted PKCS#8 PEM, readable by the owner only (mode 0o600).

    Refuses to overwrite a file: replacing a signing key would leave the heads it signed
    without a key to check them against.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(
            f"{path} exists already; move it away first if you mean to replace the signing key "
            "(keep its public key to verify the heads it signed)"
        ) from None
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), 0o600)  # the umask may have narrowed it; never widened
        file.write(pem)


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 key in the unencrypted PEM (PKCS#8) file at `path`."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as SubjectPublicKeyInfo PEM, the text to hand an auditor."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode("ascii")


def load_public_key(pem_or_path: str | bytes | Path) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM text (str or bytes) or from the file at a path."""
    if isinstance(pem_or_path, bytes):
        pem = pem_or_path
    elif isinstance(pem_or_path, str) and pem_or_path.lstrip().startswith("-----BEGIN"):
        pem = pem_or_path.encode("ascii")
    else:
        pem = Path(pem_or_path).read_bytes()
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"expected an Ed25519 public key, got a {type(key).__name__}")
    return key


def sign_bytes(private_key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The 64-byte Ed25519 signature of `data` (e.g. an export's manifest)."""
    return private_key.sign(data)


def verify_bytes(public_key: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    """True when `signature` is `public_key`'s signature of `data`; never raises."""
    try:
        public_key.verify(signature, data)
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True
