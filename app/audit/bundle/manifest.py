"""The manifest, its signature, and the zip that holds them with the bundle's files.

`manifest.json` lists every other file with its SHA-256, size and record count, and the
scope, counts, ledger range, heads, policy sets and lineage; `manifest.sig` is the Ed25519
signature of its exact bytes; `public-key.pem` is the signer's key, for convenience only
(`layout`). The verifier trusts nothing in the zip that the signed manifest does not vouch for.
"""

from __future__ import annotations

import importlib.metadata
import zipfile
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit import heads, layout
from app.audit.bundle.facts import Facts

# Files that deflate would hardly shrink: stored as they are.
_STORED_SUFFIXES = (".parquet", ".pdf")


def software_version() -> str:
    try:
        return importlib.metadata.version("warden")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_manifest(facts: Facts, policy_hashes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": layout.FORMAT,
        "created_at": facts.created_at,
        "software": {"name": "warden", "version": software_version()},
        "key_id": facts.key_id,
        "scope": {**facts.scope.to_json(), "mode": facts.mode},
        "ledger": {
            "first_seq": facts.first_seq,
            "last_seq": facts.last_seq,
            "events": facts.events,
            "anchor": heads.head_to_json(facts.anchor),
            "heads_in_range": [heads.head_to_json(h) for h in facts.heads_in_range],
            "earlier_heads": facts.earlier_heads,
            "chain_checked_at_export": facts.chain_checked,
        },
        "counts": {
            **facts.counts,
            "erased_requests": facts.erased,
            "requests_without_ledger_event": facts.uncovered,
            "requests_left_out": facts.left_out,
        },
        "policy_sets": facts.policy_sets,
        "policies": policy_hashes,
        "lineage": facts.lineage,
        "files": {f.path: f.to_json() for f in sorted(facts.files, key=lambda f: f.path)},
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The bytes signed: sorted members, indented, one newline at the end."""
    return orjson.dumps(
        manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
    )


def write_zip(
    path: Path,
    signed: bytes,
    key: Ed25519PrivateKey,
    staging: Path,
    facts: Facts,
    compresslevel: int | None,
) -> None:
    """The manifest's bytes `signed`, their signature, the public key, and every file the
    manifest lists (from `staging`), zipped into `path`."""
    with zipfile.ZipFile(path, "w", allowZip64=True) as bundle:
        bundle.writestr(layout.MANIFEST, signed, zipfile.ZIP_DEFLATED)
        bundle.writestr(layout.SIGNATURE, heads.sign_bytes(key, signed))
        bundle.writestr(layout.PUBLIC_KEY, heads.public_key_pem(key))
        for info in sorted(facts.files, key=lambda f: f.path):
            stored = compresslevel is None or info.path.endswith(_STORED_SUFFIXES)
            bundle.write(
                staging / info.path,
                info.path,
                zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
                None if stored else compresslevel,
            )
