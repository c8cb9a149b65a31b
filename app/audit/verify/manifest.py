"""The signed manifest: read only once its signature verifies under a key you trust, then
held to its form (a `layout.FORMAT` manifest, no member twice); and the parts of the ledger
and of the request records among the files it lists, in order.

The bundle's own `public-key.pem` never decides: the manifest's signature is checked with the
keys you give, and the signer is the first of them it verifies under.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.audit import heads, layout
from app.audit.verify.verdict import Failure, Problem, Stop


def read_manifest(
    bundle: zipfile.ZipFile, keys: dict[str, Ed25519PublicKey]
) -> tuple[dict[str, Any], str]:
    """The manifest, once its signature verifies under one of `keys`; its signer's key id."""
    names = bundle.namelist()
    if len(names) != len(set(names)):
        raise Stop(Problem(Failure.FILE_DIGEST, "the zip holds a file name twice"))
    try:
        data = bundle.read(layout.MANIFEST)
        signature = bundle.read(layout.SIGNATURE)
    except KeyError as error:
        raise Stop(Problem(Failure.MANIFEST_SIGNATURE, f"the bundle has no {error}")) from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise Stop(
            Problem(Failure.MANIFEST_SIGNATURE, f"the manifest cannot be read: {error}")
        ) from None
    signer = next((kid for kid, k in keys.items() if heads.verify_bytes(k, data, signature)), None)
    if signer is None:
        raise Stop(Problem(Failure.MANIFEST_SIGNATURE, "manifest.sig is not a signature of "
                           "manifest.json by a key you trust", layout.MANIFEST))  # fmt: skip
    try:
        manifest = json.loads(data, object_pairs_hook=_no_duplicates)
        if not isinstance(manifest, dict):
            raise ValueError(f"not a {layout.FORMAT} manifest")
        if manifest.get("format") != layout.FORMAT:
            raise ValueError(f"not a {layout.FORMAT} manifest (its format is "
                             f"{manifest.get('format')!r})")  # fmt: skip
        for part in ("scope", "ledger", "counts", "files"):
            if not isinstance(manifest.get(part), dict):
                raise ValueError(f"the manifest has no {part}")
        if not all(isinstance(entry, dict) for entry in manifest["files"].values()):
            raise ValueError("the manifest lists a file without its digest and size")
    except ValueError as error:
        raise Stop(Problem(Failure.MANIFEST_SIGNATURE, f"signed, but unusable: {error}",
                           layout.MANIFEST)) from None  # fmt: skip
    return manifest, signer


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            raise ValueError(f"the manifest names {name!r} twice")
        found[name] = value
    return found


def part_names(files: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The parts of the ledger and of the request records, in order: each kind numbered 1,
    2, 3 ... without a gap, at least one of each, and a requests part for each events part."""
    found: dict[str, set[int]] = {"events": set(), "requests": set()}
    for name in files:
        part = layout.part_number(name)
        if part is not None:
            found[part[0]].add(part[1])
    events = max(len(found["events"]), 1)
    requests = max(len(found["requests"]), events)
    for kind, count, name_of in (
        ("events", events, layout.events_part),
        ("requests", requests, layout.requests_part),
    ):
        missing = sorted(set(range(1, count + 1)) - found[kind])
        if missing:  # as many numbers as parts, or more: any gap leaves one out
            raise Stop(Problem(Failure.FILE_DIGEST, f"the bundle has no {name_of(missing[0])} "
                               f"(its {kind} parts are numbered 1, 2, 3 ...)"))  # fmt: skip
    return (
        [layout.events_part(n) for n in range(1, events + 1)],
        [layout.requests_part(n) for n in range(1, requests + 1)],
    )
