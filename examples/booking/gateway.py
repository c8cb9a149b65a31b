"""The booking assistant as a stack the Warden service runs itself (`POST /v1/infer`).

    WARDEN_STACK=examples.booking.gateway:answer warden serve

The world model is the registry's `champion`, loaded on the first call from the MLflow store
in `WARDEN_MLFLOW_TRACKING_URI` (default `sqlite:///./.warden/mlflow.db`); run `warden demo`
once first to train and register it. The stack is arm-aware (`ExperimentAssistant`): while an
experiment of the project varies the world model, each request is answered by the version of
the arm the gateway assigned it, and its sampled shadow arms run after the answer.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import collectors

from .experiments import ExperimentAssistant, WorldModels

_lock = threading.Lock()
_assistant: list[ExperimentAssistant] = []


def _load() -> ExperimentAssistant:
    uri = os.environ.get("WARDEN_MLFLOW_TRACKING_URI") or "sqlite:///./.warden/mlflow.db"
    # An arm's version is loaded from MLflow the first time a request is assigned to it.
    assistant = ExperimentAssistant(
        WorldModels(uri), "models:/booking-world-model@champion", hand_over=False
    )
    # Declared again through the registry: the gates then see its aliases and tags.
    name, version = assistant.world_model_name, assistant.world_model_version
    collectors.model("world_model", f"models:/{name}/{version}", tracking_uri=uri)
    return assistant


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """Answer `{"text": ...}`; the assistant is built once and used one request at a time
    (its calendar changes with every booking)."""
    with _lock:
        if not _assistant:
            _assistant.append(_load())
        reply = _assistant[0].handle(str(request.get("text", "")))
    return {
        "kind": reply.kind,
        "message": reply.message,
        "chosen": reply.decision.chosen.label if reply.decision.chosen else None,
    }
