"""Inline policy gates: `pre_request` and `post_decision` evaluated in-process.

The policy set comes from a folder, or from the service (`GET /v1/policies/bundle`), fetched
once at start and then refreshed in the background with `If-None-Match`, so the request path
never waits on the network: it evaluates whatever set is current. The service's bundle also
carries the project's running experiments (key `experiments`); a refresh replaces those in
the `Experiments` it was given, under the same ETag.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import requests

from collectors._experiments import Experiments, parse
from policies import PolicyError, PolicySet, Verdict

log = logging.getLogger("warden.collectors")
REFRESH_SECONDS = 30.0


class Gates:
    def __init__(
        self,
        policies: PolicySet | None = None,
        bundle_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 10.0,
        experiments: Experiments | None = None,
    ) -> None:
        self.policies = policies
        # Where the bundle's experiments go (None: the bundle's are not used).
        self.experiments = experiments
        self._url = bundle_url
        self._etag: str | None = None
        self._timeout = timeout
        self._session = requests.Session()
        if api_key:
            self._session.headers["Authorization"] = f"Bearer {api_key}"
        self._stop = threading.Event()

    @classmethod
    def from_folder(cls, folder: str | Path) -> Gates:
        return cls(PolicySet.load_dir(folder))

    @classmethod
    def from_service(
        cls,
        bundle_url: str,
        api_key: str | None,
        timeout: float,
        experiments: Experiments | None = None,
    ) -> Gates:
        gates = cls(None, bundle_url, api_key, timeout, experiments)
        gates.refresh()
        thread = threading.Thread(target=gates._refresh_loop, name="warden-policies", daemon=True)
        thread.start()
        return gates

    @property
    def ready(self) -> bool:
        return self.policies is not None

    def evaluate(self, phase: str, context: dict[str, Any]) -> list[Verdict]:
        current = self.policies
        return current.evaluate(phase, context) if current is not None else []

    def refresh(self) -> None:
        """Fetch the service's bundle if it changed; keep the current set on any failure."""
        if self._url is None:
            return
        headers = {"If-None-Match": self._etag} if self._etag else {}
        try:
            answer = self._session.get(self._url, headers=headers, timeout=self._timeout)
        except requests.RequestException as exc:
            log.warning("Warden policy bundle not fetched (%s); keeping the current set", exc)
            return
        if answer.status_code == 304:
            return
        if answer.status_code != 200:
            log.warning("Warden policy bundle: HTTP %d %s", answer.status_code, answer.text[:200])
            return
        try:
            bundle = answer.json()
            policies = PolicySet.from_bundle(bundle)
            experiments = parse(bundle.get("experiments") or ())
        except (PolicyError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("Warden policy bundle refused: %s; keeping the current set", exc)
            return
        self.policies = policies
        if self.experiments is not None:
            self.experiments.replace(experiments)
        self._etag = answer.headers.get("ETag")

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
