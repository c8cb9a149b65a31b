"""Every name Warden puts on the wire: the span, event, attribute and metric names of its OTLP.

docs/conventions.md is the page people read; this module is the same list for code. The SDK
writes with these constants, the service's ingest reads with them, and the benchmarks and
test helpers build traffic with them. tests/collectors/test_conventions.py holds the module
and the page to each other in both directions: a name on one and not on the other fails it.

A placeholder such as `<role>` on the page is a `{role}` field here, with a function that
fills it in. The module imports nothing, so the service reads it without loading the SDK.

>>> from collectors import conventions as wire
>>> wire.model_version("world_model")
'warden.model.world_model.version'
>>> wire.llm_span("chat", "intent-parser")
'chat intent-parser'
"""

from __future__ import annotations

# -- Resource and instrumentation scope ------------------------------------------------------

SERVICE_NAME = "service.name"
TELEMETRY_SDK_NAME = "telemetry.sdk.name"
PROJECT = "warden.project"
# The SDK's name: its instrumentation scope, its `telemetry.sdk.name`, its meter.
SDK_NAME = "warden.collectors"

# -- Span and event names --------------------------------------------------------------------

REQUEST_SPAN = "request"
LLM_SPAN = "{operation} {model}"
ROLLOUT_SPAN = "world_model.rollout"
DECISION_SPAN = "planner.decide"
STATE_EVENT = "world_model.state"
POLICY_EVENT = "policy.evaluation"

# -- Requests: the root span -----------------------------------------------------------------

REQUEST_FINGERPRINT = "warden.request.fingerprint"
REQUEST_FINGERPRINT_KEY_ID = "warden.request.fingerprint_key_id"
REQUEST_SUBJECT = "warden.request.subject"
REQUEST_OUTCOME = "warden.request.outcome"
REQUEST_ID = "warden.request.id"
REQUEST_INPUT = "warden.request.input"
INPUT_FEATURES = "warden.input.features"
REVIEW_REQUIRED = "warden.review.required"
REVIEW_POLICY = "warden.review.policy"
POLICY_DENIED_BY = "warden.policy.denied_by"

# -- Model versions --------------------------------------------------------------------------

MODEL_PREFIX = "warden.model."
MODEL_NAME = MODEL_PREFIX + "{role}.name"
MODEL_VERSION = MODEL_PREFIX + "{role}.version"

# -- Language-model stage: the OpenTelemetry GenAI conventions -------------------------------

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
# Prompt and completion, as the current conventions carry them (JSON messages with `parts`).
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
GEN_AI_OPERATION_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
# ... and as earlier versions and instrumentations (OpenLLMetry) carry them.
GEN_AI_SYSTEM_MESSAGE_EVENT = "gen_ai.system.message"
GEN_AI_USER_MESSAGE_EVENT = "gen_ai.user.message"
GEN_AI_ASSISTANT_MESSAGE_EVENT = "gen_ai.assistant.message"
GEN_AI_TOOL_MESSAGE_EVENT = "gen_ai.tool.message"
GEN_AI_CHOICE_EVENT = "gen_ai.choice"
GEN_AI_PROMPT_EVENT = "gen_ai.content.prompt"
GEN_AI_COMPLETION_EVENT = "gen_ai.content.completion"
GEN_AI_PROMPT = "gen_ai.prompt"
GEN_AI_COMPLETION = "gen_ai.completion"
GEN_AI_PROMPT_FIELD = GEN_AI_PROMPT + ".{index}.{field}"
GEN_AI_COMPLETION_FIELD = GEN_AI_COMPLETION + ".{index}.{field}"
GEN_AI_USAGE_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"

# -- Retrieval (RAG): the OpenTelemetry GenAI retrieval span, and OpenInference's ------------

RETRIEVAL_OPERATION = "retrieval"
GEN_AI_DATA_SOURCE_ID = "gen_ai.data_source.id"
GEN_AI_RETRIEVAL_DOCUMENTS = "gen_ai.retrieval.documents"
GEN_AI_RETRIEVAL_QUERY_TEXT = "gen_ai.retrieval.query.text"
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
OPENINFERENCE_DOCUMENTS_PREFIX = "retrieval.documents."
OPENINFERENCE_DOCUMENT = OPENINFERENCE_DOCUMENTS_PREFIX + "{index}.document.{field}"

# -- World-model latent states (attributes of a `world_model.state` event) -------------------

STATE_STEP = "world_model.step"
STATE_LAYER = "world_model.layer"
STATE_SUMMARY = "world_model.state.summary"
STATE_PROJECTION = "world_model.state.projection"
STATE_TENSOR_SHA256 = "world_model.state.tensor_sha256"

# -- Planner decisions -----------------------------------------------------------------------

PLANNER_CANDIDATES = "planner.candidates"
PLANNER_CHOSEN = "planner.chosen"
PLANNER_CONFIDENCE = "planner.confidence"
PLANNER_CONSTRAINTS = "planner.constraints"
PLANNER_RATIONALE = "planner.rationale"

# -- Policy evaluations (attributes of a `policy.evaluation` event) --------------------------

POLICY_ID = "policy.id"
POLICY_VERSION = "policy.version"
POLICY_HASH = "policy.hash"
POLICY_PHASE = "policy.phase"
POLICY_OUTCOME = "policy.outcome"
POLICY_MESSAGE = "policy.message"

# -- Experiments: the arm a request was assigned (root-span attributes) ----------------------

EXPERIMENT_PREFIX = "warden.experiment."
EXPERIMENT_NAME = EXPERIMENT_PREFIX + "{stage}.name"
EXPERIMENT_ARM = EXPERIMENT_PREFIX + "{stage}.arm"

# -- Shadow runs: a root span of its own trace, linked to the live request -------------------

SHADOW_SPAN = "warden.shadow"
SHADOW_REQUEST = "warden.shadow.request"
SHADOW_EXPERIMENT = "warden.shadow.experiment"
SHADOW_ARM = "warden.shadow.arm"

# -- Scores: feedback on a request, a root span of its own trace -----------------------------

SCORE_SPAN = "warden.score"
SCORE_REQUEST = "warden.score.request"
SCORE_NAME = "warden.score.name"
SCORE_VALUE = "warden.score.value"
SCORE_SOURCE = "warden.score.source"
SCORE_AUTHOR = "warden.score.author"
SCORE_COMMENT = "warden.score.comment"
SCORE_CORRECTION = "warden.score.correction"

# -- The SDK's own metrics -------------------------------------------------------------------

SPANS_METRIC = SDK_NAME + ".spans.{counter}"
SHADOWS_METRIC = SDK_NAME + ".shadows.{counter}"


def model_name(role: str) -> str:
    """`warden.model.<role>.name`: the registered model serving a stage.

    >>> model_name("planner")
    'warden.model.planner.name'
    """
    return f"{MODEL_PREFIX}{role}.name"


def model_version(role: str) -> str:
    """`warden.model.<role>.version`: the version of that model.

    >>> model_version("planner")
    'warden.model.planner.version'
    """
    return f"{MODEL_PREFIX}{role}.version"


def experiment_name(stage: str) -> str:
    """`warden.experiment.<stage>.name`: the experiment that assigned this request's stage.

    >>> experiment_name("world_model")
    'warden.experiment.world_model.name'
    """
    return f"{EXPERIMENT_PREFIX}{stage}.name"


def experiment_arm(stage: str) -> str:
    """`warden.experiment.<stage>.arm`: the arm that served the stage.

    >>> experiment_arm("world_model")
    'warden.experiment.world_model.arm'
    """
    return f"{EXPERIMENT_PREFIX}{stage}.arm"


def llm_span(operation: str, model: str) -> str:
    """The name of a language-model span, as the GenAI conventions spell it.

    >>> llm_span("chat", "gpt-4o-mini")
    'chat gpt-4o-mini'
    """
    return f"{operation} {model}"


def spans_metric(counter: str) -> str:
    """The name of one of the SDK's span counters (`queued`, `exported`, `dropped`, ...).

    >>> spans_metric("dropped")
    'warden.collectors.spans.dropped'
    """
    return f"{SDK_NAME}.spans.{counter}"


def shadows_metric(counter: str) -> str:
    """The name of one of the SDK's shadow-run counters (`queued`, `run`, `dropped`, ...).

    >>> shadows_metric("dropped")
    'warden.collectors.shadows.dropped'
    """
    return f"{SDK_NAME}.shadows.{counter}"
