"""The booking assistant in experiments: each request is answered by the world model of its
arm, and the shadow arms sampled for it answer it again afterwards, booking nothing.

The SDK decides the arm when the request opens (`req.assignment("world_model")`, from the
experiments the service's bundle carries); `ExperimentAssistant` serves it with that arm's
world model, names that version on the request (`collectors.model` inside a request applies
to that request only), and hands each sampled shadow arm to `collectors.shadow`, which runs
it on the SDK's background worker after the live answer is given. A shadow answers on a copy
of the calendar as the live request saw it, with its own parser and no bookings, so nothing of
it reaches the caller or the live calendar.

World models are loaded from MLflow by `models:/` URI once (`WorldModels`), keyed by the name
and version the URI resolves to, and each loaded version has one watch (forward hooks) that
records into whichever request or shadow run is current.

    >>> models = WorldModels("sqlite:///./.warden/mlflow.db")  # doctest: +SKIP
    >>> assistant = ExperimentAssistant(models, "models:/booking-world-model@champion")
    >>> assistant.handle("a room for 6 tomorrow 3-5pm", subject="u-17").kind  # doctest: +SKIP
    'booked'
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import collectors
from collectors.experiments import Assignment, ShadowArm

from .instrumented import WATCHED_LAYERS, InstrumentedAssistant
from .registry import LoadedWorldModel, load_world_model, resolve_version
from .sim import Calendar
from .stack import Answer

STAGE = "world_model"


class WorldModels:
    """World models by `models:/` URI, each loaded from MLflow once and watched once.

    An alias is resolved the first time its URI is asked for; two URIs naming the same
    version (`@champion` and `/1`) share one loaded model. Safe to use from the live path
    and the SDK's shadow worker at once.
    """

    def __init__(self, tracking_uri: str, *, dim: int = 16) -> None:
        self.tracking_uri = tracking_uri
        self.dim = dim
        self._versions: dict[str, tuple[str, str]] = {}
        self._loaded: dict[tuple[str, str], LoadedWorldModel] = {}
        self._watches: list[collectors.Watch] = []
        self._lock = threading.Lock()

    def get(self, uri: str) -> LoadedWorldModel:
        """The world model `uri` names, loading (and watching) it on first use."""
        with self._lock:
            key = self._versions.get(uri)
            if key is None:
                key = self._versions[uri] = resolve_version(self.tracking_uri, uri)
            loaded = self._loaded.get(key)
            if loaded is None:
                name, version = key
                loaded = load_world_model(self.tracking_uri, f"models:/{name}/{version}")
                self._watches.append(
                    collectors.watch(loaded.model, layers=WATCHED_LAYERS, dim=self.dim)
                )
                self._loaded[key] = loaded
            return loaded

    def preload(self, uris: list[str]) -> None:
        """Load every URI now, so no request waits for MLflow."""
        for uri in uris:
            self.get(uri)

    def close(self) -> None:
        with self._lock:
            for watch in self._watches:
                watch.remove()
            self._watches.clear()


class ExperimentAssistant(InstrumentedAssistant):
    """An `InstrumentedAssistant` that serves each request with its experiment arm's world
    model (the `default` one outside any experiment) and runs its sampled shadow arms.

    `handle(..., assignment=...)` takes the assignment as given instead of asking the SDK for
    it (a caller that assigns arms itself, or a test).
    """

    def __init__(
        self, models: WorldModels, default: str, *, stage: str = STAGE, **kwargs: Any
    ) -> None:
        self.models = models
        self.stage = stage
        self.default = models.get(default)
        super().__init__(
            self.default.model,
            self.default.name,
            self.default.version,
            watched=False,  # `models` watches every version it loads
            **kwargs,
        )
        self.last_arm: str | None = None
        self._shadows: dict[tuple[str, str], InstrumentedAssistant] = {}
        self._shadow_lock = threading.Lock()

    def handle(
        self,
        text: str,
        subject: str | None = None,
        request_id: str | None = None,
        *,
        assignment: Assignment | None = None,
    ) -> Answer:
        with collectors.request({"text": text}, subject, request_id=request_id) as req:
            if assignment is None:
                assignment = req.assignment(self.stage)
            served = self.models.get(assignment.model) if assignment else self.default
            self.last_arm = assignment.arm if assignment else None
            # What the request saw, before its own booking: what its shadows plan against.
            seen = self.calendar.copy() if assignment and assignment.shadows else None
            if req.trace_id is not None:  # recorded: the version is this request's alone
                collectors.model(self.stage, served.name, served.version)
            with self._serving(served):
                # The request opened by the instrumented assistant joins this one.
                answer = super().handle(text, subject, request_id)
            if assignment is not None and seen is not None:
                for arm in assignment.shadows:
                    collectors.shadow(arm, _ShadowRun(self, arm, text, seen))
        return answer

    @contextmanager
    def _serving(self, loaded: LoadedWorldModel) -> Iterator[None]:
        kept = self.world_model, self.world_model_name, self.world_model_version
        self.world_model = loaded.model
        self.world_model_name, self.world_model_version = loaded.name, loaded.version
        try:
            yield
        finally:
            self.world_model, self.world_model_name, self.world_model_version = kept

    def shadow_answer(self, arm: ShadowArm, text: str, calendar: Calendar) -> Answer:
        """Answer `text` with the shadow arm's world model on `calendar` (left unchanged),
        booking nothing: what a shadow run does. Call it where `collectors.shadow` runs it
        (everything it records goes to the shadow run, which the request scope it opens
        joins) or with no SDK client active; elsewhere it would record a request of its own.
        """
        loaded = self.models.get(arm.model)
        with self._shadow_lock:
            assistant = self._shadows.get((loaded.name, loaded.version))
            if assistant is None:
                assistant = InstrumentedAssistant(
                    loaded.model,
                    loaded.name,
                    loaded.version,
                    # Its own parser: the live one's last usage belongs to the live request.
                    parser=copy.copy(self.parser),
                    planner=self.planner,
                    calendar=calendar,
                    commit_bookings=False,
                    declare_models=False,
                    watched=False,
                )
                self._shadows[(loaded.name, loaded.version)] = assistant
        assistant.calendar = calendar
        with collectors.request({"text": text}) as req:
            if req.trace_id is not None:
                collectors.model(self.stage, loaded.name, loaded.version)
            return assistant.handle(text)

    def close(self) -> None:
        super().close()
        self.models.close()


@dataclasses.dataclass(frozen=True)
class _ShadowRun:
    """One shadow arm's run for one request, as `collectors.shadow` calls it."""

    assistant: ExperimentAssistant
    arm: ShadowArm
    text: str
    calendar: Calendar

    def __call__(self) -> str:
        return self.assistant.shadow_answer(self.arm, self.text, self.calendar).kind
