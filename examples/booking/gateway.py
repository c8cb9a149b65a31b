"""The booking assistant as a stack the Warden service runs itself (`POST /v1/infer`).

    WARDEN_STACK=examples.booking.gateway:answer warden serve

The service starts it once (`answer.start(environment)`) before it serves: the world model is
the registry's `champion`, loaded from the MLflow store the service's settings name
(`WARDEN_MLFLOW_TRACKING_URI`, default `<WARDEN_DATA_DIR>/mlflow.db`), and every stage's
version is declared then, so each request names them. Run `warden demo` once first to train
and register the world model. The stack is arm-aware (`ExperimentAssistant`): while an
experiment of the project varies the world model, each request is answered by the version of
the arm the gateway assigned it, and its sampled shadow arms run after the answer.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import collectors

from .experiments import ExperimentAssistant, WorldModels


class Environment(Protocol):
    """What the service tells its stack at start (app.governance.gateway.StackEnvironment)."""

    @property
    def mlflow_tracking_uri(self) -> str: ...


class BookingStack:
    """The assistant behind `POST /v1/infer`, used one request at a time (its calendar
    changes with every booking)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._assistant: ExperimentAssistant | None = None

    def start(self, environment: Environment) -> None:
        """Load the champion from the service's MLflow store and declare every stage's
        version for all requests (called outside any request)."""
        uri = environment.mlflow_tracking_uri
        # An arm's version is loaded from MLflow the first time a request is assigned to it.
        assistant = ExperimentAssistant(
            WorldModels(uri), "models:/booking-world-model@champion", hand_over=False
        )
        # Declared again through the registry: the gates then see its aliases and tags.
        name, version = assistant.world_model_name, assistant.world_model_version
        collectors.model("world_model", f"models:/{name}/{version}", tracking_uri=uri)
        with self._lock:
            previous, self._assistant = self._assistant, assistant
        if previous is not None:
            previous.close()

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer `{"text": ...}`."""
        with self._lock:
            if self._assistant is None:
                raise RuntimeError("the booking stack is not started: call start() first")
            reply = self._assistant.handle(str(request.get("text", "")))
        return {
            "kind": reply.kind,
            "message": reply.message,
            "chosen": reply.decision.chosen.label if reply.decision.chosen else None,
        }


answer = BookingStack()
