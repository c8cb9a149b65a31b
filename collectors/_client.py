"""The SDK's process-wide client: configuration, export pipeline, stage models.

Like OpenTelemetry's global tracer provider, one client serves the whole process; `init()`
sets it and `shutdown()` clears it. After a fork the child gets a fresh client of its own:
the parent's queue is not copied into it (so nothing is sent twice) and the child's export
thread and spool connection are its own.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from collectors import conventions as wire
from collectors._config import Config, resolve
from collectors._experiments import Experiments, parse
from collectors._gates import Gates
from collectors._pipeline import Pipeline
from collectors._transport import Sender
from collectors.errors import ConfigurationError
from policies import PolicySet

if TYPE_CHECKING:
    from collectors._shadow import ShadowWorker

log = logging.getLogger("warden.collectors")
SHADOW_COUNTERS = ("queued", "run", "failed", "dropped")


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model version serving one stage of the stack, with its registry metadata (aliases
    and tags as MLflow had them when the version was resolved)."""

    role: str
    name: str
    version: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "aliases": list(self.aliases),
            "tags": dict(self.tags),
        }


class _Forward(SpanProcessor):
    """Sends spans of any other OpenTelemetry instrumentation through Warden's pipeline."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def on_end(self, span: ReadableSpan) -> None:
        if self.client.pipeline is not None:
            self.client.pipeline.submit(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.client.flush(timeout_millis / 1000)


class Client:
    def __init__(
        self,
        config: Config,
        provider: TracerProvider | None,
        meter_provider: metrics.MeterProvider | None = None,
        sender: Sender | None = None,
        policies: PolicySet | None = None,
        experiments: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.config = config
        self.resource: dict[str, Any] = {
            wire.SERVICE_NAME: config.service_name,
            wire.TELEMETRY_SDK_NAME: wire.SDK_NAME,
        }
        if config.project:
            self.resource[wire.PROJECT] = config.project
        self.models: dict[str, ModelRef] = {}
        # The root-span attributes that name those models, ready for every request to copy.
        self.model_attributes: dict[str, str] = {}
        # Experiments given here are the ones that run; else the service bundle's, if used.
        self.experiments = Experiments()
        if experiments is not None:
            self.use_experiments(experiments)
        self.gates = (
            Gates(policies)
            if policies is not None
            else _gates(config, None if experiments is not None else self.experiments)
        )
        self._sender = sender
        self._inherited: Pipeline | None = None
        self.pipeline: Pipeline | None = Pipeline(config, self.resource, sender)
        # The shadow-run worker, made by the first `collectors.shadow()` (collectors/_shadow.py).
        self.shadows: ShadowWorker | None = None
        self.provider = provider or TracerProvider(resource=Resource.create(self.resource))
        self.provider.add_span_processor(_Forward(self))
        self._register_metrics(meter_provider)

    def _register_metrics(self, meter_provider: metrics.MeterProvider | None) -> None:
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(
            wire.SDK_NAME, "0.1.0"
        )
        for name in ("queued", "exported", "spooled", "replayed", "rejected", "dropped"):
            meter.create_observable_counter(
                wire.spans_metric(name),
                callbacks=[self._observe(name)],
                unit="{span}",
                description=f"Spans {name} by the Warden SDK",
            )
        for name in SHADOW_COUNTERS:
            meter.create_observable_counter(
                wire.shadows_metric(name),
                callbacks=[self._observe_shadows(name)],
                unit="{run}",
                description=f"Shadow runs {name} by the Warden SDK",
            )

    def _observe(self, name: str) -> Any:
        def callback(_options: Any) -> list[metrics.Observation]:
            if self.pipeline is None:
                return []
            return [metrics.Observation(getattr(self.pipeline.counters, name))]

        return callback

    def _observe_shadows(self, name: str) -> Any:
        def callback(_options: Any) -> list[metrics.Observation]:
            shadows = self.shadows
            return [metrics.Observation(getattr(shadows.counters, name) if shadows else 0)]

        return callback

    def use_model(self, ref: ModelRef) -> None:
        """Declare the model version that serves a stage in every later request."""
        self.models[ref.role] = ref
        self.model_attributes[wire.model_name(ref.role)] = ref.name
        self.model_attributes[wire.model_version(ref.role)] = ref.version

    def use_experiments(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Make `entries` (as the bundle carries them) the running experiments, from the next
        request on; a malformed entry raises `ConfigurationError` and changes nothing.

        >>> client.use_experiments([{"name": "wm-v2", "stage": "world_model", "salt": "s",
        ...     "arms": [{"name": "control", "model": "models:/wm/1"},
        ...              {"name": "v2", "model": "models:/wm/2"}]}])  # doctest: +SKIP
        """
        try:
            self.experiments.replace(parse(entries))
        except ValueError as exc:
            raise ConfigurationError(f"experiments: {exc}") from exc

    def flush(
        self, timeout: float = 10.0, include_spool: bool = False, shadows: bool = True
    ) -> bool:
        # Queued shadow runs first: what they record goes through the pipeline flushed next.
        deadline = time.monotonic() + timeout
        shadows_done = self.shadows.drain(timeout) if self.shadows and shadows else True
        if not self.pipeline:
            return shadows_done
        left = max(deadline - time.monotonic(), 0.0)
        return self.pipeline.flush(left, include_spool) and shadows_done

    def shutdown(self, timeout: float = 10.0) -> None:
        if self.gates is not None:
            self.gates.stop()
        if self.shadows is not None:
            deadline = time.monotonic() + timeout
            self.shadows.stop(timeout)
            timeout = max(deadline - time.monotonic(), 0.0)
        if self.pipeline is not None:
            self.pipeline.shutdown(timeout)
            self.pipeline = None

    def after_fork(self) -> None:
        # The parent's export thread does not exist here, and its queue belongs to it. The
        # inherited pipeline is kept, unused: closing its SQLite handle in the child is unsafe.
        self._inherited = self.pipeline
        self.pipeline = Pipeline(self.config, self.resource, self._sender)
        # Likewise the parent's shadow runs: the child makes its own worker when it needs one.
        self.shadows = None


def _gates(config: Config, experiments: Experiments | None) -> Gates | None:
    if not config.policies:
        return None
    if config.policies == "service":
        return Gates.from_service(
            config.bundle_url, config.api_key, config.export_timeout, experiments
        )
    return Gates.from_folder(config.policies)


_lock = threading.Lock()
_active: Client | None = None


def active() -> Client | None:
    return _active


def init(
    endpoint: str | None = None,
    api_key: str | None = None,
    project: str | None = None,
    fingerprint_secret: str | bytes | None = None,
    *,
    fingerprint_key_id: str | None = None,
    service_name: str | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    spool_max_bytes: int | None = None,
    queue_size: int | None = None,
    fail_closed: bool | None = None,
    export_timeout: float | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    policies: str | os.PathLike[str] | PolicySet | None = None,
    sender: Sender | None = None,
    shadow_queue: int | None = None,
    experiments: Sequence[Mapping[str, Any]] | None = None,
) -> Client:
    """Start recording to a Warden service. Arguments fall back to `WARDEN_*` variables.

    Builds an OpenTelemetry `TracerProvider` (or attaches to `tracer_provider`, the one the
    application already has) whose spans, like Warden's own records, are exported over
    OTLP/HTTP protobuf through a bounded queue and an on-disk spool. The SDK's counters are
    observable OTel metrics of `meter_provider` (by default the global one). `policies` turns
    on the inline gates: a folder of policy files, `"service"` for the service's bundle, or
    a loaded `PolicySet`. `sender` replaces the HTTP transport (see `collectors.Sender`).
    `shadow_queue` bounds the shadow runs waiting to run (`collectors.shadow`, default 64).
    With `policies="service"` the service's bundle also brings the project's running
    experiments; `experiments` (entries shaped as the bundle's: name, stage, unit, salt, arms,
    shadows) sets them instead, for a process without the service's bundle.

    >>> import collectors
    >>> client = collectors.init(endpoint="http://127.0.0.1:8000", api_key="wdn_...",
    ...                          fingerprint_secret="a long random string")  # doctest: +SKIP
    """
    global _active
    config = resolve(
        endpoint, api_key, project, fingerprint_secret, fingerprint_key_id, service_name,
        spool_dir, spool_max_bytes, queue_size, fail_closed, export_timeout,
        None if isinstance(policies, PolicySet) else policies, shadow_queue,
    )  # fmt: skip
    with _lock:
        if _active is not None:
            _active.shutdown()
        client = Client(
            config, tracer_provider, meter_provider, sender,
            policies if isinstance(policies, PolicySet) else None, experiments,
        )  # fmt: skip
        if tracer_provider is None and not isinstance(trace.get_tracer_provider(), TracerProvider):
            trace.set_tracer_provider(client.provider)
        _active = client
    return client


def shutdown(timeout: float = 10.0) -> None:
    """Flush what is queued (to the service, or to the spool) and stop the export thread."""
    global _active
    with _lock:
        client, _active = _active, None
    if client is not None:
        client.shutdown(timeout)


def flush(timeout: float = 10.0, include_spool: bool = False, shadows: bool = True) -> bool:
    """Wait until what was recorded so far is delivered or spooled; with `include_spool`,
    until the spool is empty too (the service has everything). True if done in time.
    Shadow runs already handed to the shadow worker run first (within the same `timeout`),
    so a process that flushes before it exits loses none of them; `shadows=False` waits for
    the live records only (a server answering a caller must not wait for its shadows).

    >>> collectors.flush(timeout=5)  # doctest: +SKIP
    True
    """
    client = _active
    return client.flush(timeout, include_spool, shadows) if client else True


def stats() -> dict[str, Any]:
    """Counters of what the SDK did with the spans it recorded: queued, exported, spooled,
    replayed, rejected (refused for good by the service), dropped (only if the spool was
    full), plus what waits in the spool now, and under `"shadows"` the shadow runs queued,
    run, failed and dropped (`collectors.shadow`).

    >>> collectors.stats()["dropped"]  # doctest: +SKIP
    0
    """
    client = _active
    if client is None or client.pipeline is None:
        return {}
    pipeline = client.pipeline
    rows, spans = pipeline.spool.pending()
    return {
        **pipeline.counters.as_dict(),
        "spool_pending_batches": rows,
        "spool_pending_spans": spans,
        "spool_corrupt_batches": pipeline.spool.corrupt,
        "shadows": client.shadows.counters.as_dict()
        if client.shadows
        else dict.fromkeys(SHADOW_COUNTERS, 0),
    }


def _after_fork_in_child() -> None:
    if _active is not None:
        _active.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)

