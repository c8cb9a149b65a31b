"""Language-model calls and retrieved documents, read from spans that follow OpenTelemetry's
GenAI conventions (docs/conventions.md, "Language-model stage" and "Retrieval").

Pure, like `normalise`: a span row in, typed rows out. Prompts and completions are read in
every form the field sends them: the current `gen_ai.input.messages` / `gen_ai.output.messages`
(on the span or on a `gen_ai.client.inference.operation.details` event), the earlier
per-message events (`gen_ai.user.message`, `gen_ai.choice`, ...), the earlier span-event form
(`gen_ai.content.prompt`), and OpenLLMetry's flattened `gen_ai.prompt.<i>.content`.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from collectors import conventions as wire

# The stage role a language-model call stands for (`warden.model.llm.*`).
LLM_ROLE = "llm"
# Operations that call a model but are not the language-model stage of a request.
NOT_STAGE = frozenset(
    {wire.RETRIEVAL_OPERATION, "embeddings", "execute_tool", "create_agent", "invoke_agent"}
)
# Kept per message and per call, so one chatty call cannot grow a row without bound.
MAX_CONTENT = 16_000
MAX_MESSAGES = 64
MAX_DOCUMENTS = 256
# Column widths of `request_models` and `model_versions`.
NAME_WIDTH, VERSION_WIDTH = 256, 64

_ROLE_OF_EVENT = {
    wire.GEN_AI_SYSTEM_MESSAGE_EVENT: "system",
    wire.GEN_AI_USER_MESSAGE_EVENT: "user",
    wire.GEN_AI_ASSISTANT_MESSAGE_EVENT: "assistant",
    wire.GEN_AI_TOOL_MESSAGE_EVENT: "tool",
}


def llm_call(span: dict[str, Any]) -> dict[str, Any] | None:
    """The `llm_calls` row of a span naming a model (`cost` is priced by the store), else None."""
    attrs: dict[str, Any] = span["attributes"]
    request_model = _text(attrs.get(wire.GEN_AI_REQUEST_MODEL), NAME_WIDTH)
    response_model = _text(attrs.get(wire.GEN_AI_RESPONSE_MODEL), NAME_WIDTH)
    operation = _text(attrs.get(wire.GEN_AI_OPERATION_NAME), 64)
    if not (request_model or response_model) or operation == wire.RETRIEVAL_OPERATION:
        return None
    inputs, outputs = messages(attrs, span["events"])
    reasons = [str(r)[:64] for r in _list(attrs.get(wire.GEN_AI_RESPONSE_FINISH_REASONS))]
    if not reasons:
        reasons = [m["finish_reason"] for m in outputs if m.get("finish_reason")]
    provider = attrs.get(wire.GEN_AI_PROVIDER_NAME) or attrs.get(wire.GEN_AI_SYSTEM)
    return {
        "trace_id": span["trace_id"],
        "span_id": span["span_id"],
        "operation": operation,
        "provider": _text(provider, 128),
        "request_model": request_model,
        "response_model": response_model,
        "stage": operation not in NOT_STAGE,
        "input_tokens": _tokens(attrs, wire.GEN_AI_USAGE_INPUT_TOKENS,
                                wire.GEN_AI_USAGE_PROMPT_TOKENS),
        "output_tokens": _tokens(attrs, wire.GEN_AI_USAGE_OUTPUT_TOKENS,
                                 wire.GEN_AI_USAGE_COMPLETION_TOKENS),
        "cost": None,
        "finish_reasons": reasons,
        "input_messages": inputs[:MAX_MESSAGES],
        "output_messages": outputs[:MAX_MESSAGES],
        "start_time_unix_nano": span["start_time_unix_nano"],
        "end_time_unix_nano": span["end_time_unix_nano"],
    }  # fmt: skip


def stage_model(call: dict[str, Any]) -> tuple[str, str]:
    """The (name, version) a call gives its request's language-model stage: the model asked
    for, in the version that answered (either one when only one is known)."""
    name = call["request_model"] or call["response_model"]
    version = call["response_model"] or call["request_model"]
    return str(name)[:NAME_WIDTH], str(version)[:VERSION_WIDTH]


def messages(
    attrs: dict[str, Any], events: list[tuple[str, int, dict[str, Any]]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The prompt and the completion of a call as `[{"role", "content", "finish_reason"?}]`."""
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    _current_form(attrs, inputs, outputs)
    for name, _, event in events:
        if name == wire.GEN_AI_OPERATION_DETAILS_EVENT:
            _current_form(event, inputs, outputs)
        elif name in _ROLE_OF_EVENT:
            role = _text(event.get("role"), 32) or _ROLE_OF_EVENT[name]
            inputs.append(_message(role, event.get("content")))
        elif name == wire.GEN_AI_CHOICE_EVENT:
            message = _json(event.get("message"))
            if isinstance(message, dict):
                found = _from_dict(message, "assistant")
            else:
                found = _message("assistant", event.get("content"))
            found["finish_reason"] = _text(event.get("finish_reason"), 64)
            outputs.append(found)
        elif name == wire.GEN_AI_PROMPT_EVENT:
            inputs.extend(_any_messages(event.get(wire.GEN_AI_PROMPT), "user"))
        elif name == wire.GEN_AI_COMPLETION_EVENT:
            outputs.extend(_any_messages(event.get(wire.GEN_AI_COMPLETION), "assistant"))
    if not inputs and not outputs:
        inputs = _flattened(attrs, wire.GEN_AI_PROMPT + ".", "user")
        outputs = _flattened(attrs, wire.GEN_AI_COMPLETION + ".", "assistant")
    return inputs, outputs


def retrievals(span: dict[str, Any]) -> list[dict[str, Any]]:
    """One `retrievals` row per document a retrieval span returned, in rank order."""
    attrs: dict[str, Any] = span["attributes"]
    documents = _list(attrs.get(wire.GEN_AI_RETRIEVAL_DOCUMENTS))
    retriever = (
        attrs.get(wire.GEN_AI_OPERATION_NAME) == wire.RETRIEVAL_OPERATION
        or attrs.get(wire.OPENINFERENCE_SPAN_KIND) == "RETRIEVER"
    )
    if not documents and retriever:
        documents = _openinference_documents(attrs)
    source = _text(attrs.get(wire.GEN_AI_DATA_SOURCE_ID), 256)
    rows: list[dict[str, Any]] = []
    for doc in documents[:MAX_DOCUMENTS]:
        doc = _json(doc)
        if not isinstance(doc, dict):
            continue
        meta = _json(doc.get("metadata"))
        meta = meta if isinstance(meta, dict) else {}
        digest = _text(doc.get("digest") or meta.get("digest"), 256)
        document_id = _text(doc.get("id") or meta.get("id"), 512) or digest
        if not document_id:
            continue
        rows.append(
            {
                "trace_id": span["trace_id"],
                "span_id": span["span_id"],
                "seq": len(rows),
                "data_source": source,
                "document_id": document_id,
                "document_version": _text(doc.get("version") or meta.get("version"), 128),
                "document_digest": digest,
                "score": _number(doc.get("score")),
                "time_unix_nano": span["end_time_unix_nano"],
            }
        )
    return rows


def _current_form(
    attrs: dict[str, Any], inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]
) -> None:
    """`gen_ai.system_instructions`, `gen_ai.input.messages`, `gen_ai.output.messages`."""
    system = _list(attrs.get(wire.GEN_AI_SYSTEM_INSTRUCTIONS))
    if system:
        inputs.append(_message("system", system))
    inputs.extend(_any_messages(attrs.get(wire.GEN_AI_INPUT_MESSAGES), "user"))
    outputs.extend(_any_messages(attrs.get(wire.GEN_AI_OUTPUT_MESSAGES), "assistant"))


def _any_messages(value: Any, role: str) -> list[dict[str, Any]]:
    """A list of messages (JSON or structured), or plain text as one message of `role`."""
    if value is None:
        return []
    decoded = _json(value)
    if isinstance(decoded, dict):
        decoded = [decoded]
    if not isinstance(decoded, list):
        return [_message(role, decoded)]
    return [
        _from_dict(m, role) if isinstance(m, dict) else _message(role, m)
        for m in decoded[:MAX_MESSAGES]
    ]


def _from_dict(message: dict[str, Any], role: str) -> dict[str, Any]:
    content = message.get("parts", message.get("content", message.get("text")))
    found = _message(_text(message.get("role"), 32) or role, content)
    if message.get("finish_reason"):
        found["finish_reason"] = _text(message["finish_reason"], 64)
    return found


def _message(role: str, content: Any) -> dict[str, Any]:
    return {"role": role, "content": _content(_parts(content))[:MAX_CONTENT]}


def _parts(content: Any) -> Any:
    """A content sent as JSON parts, decoded; text (JSON-looking or not) stays as it is."""
    decoded = _json(content) if isinstance(content, str) and content[:1] == "[" else content
    return decoded if isinstance(decoded, list) else content


def _content(value: Any) -> str:
    """Text of a message's content: a string, or its parts (`text` parts as they are, any
    other part, such as a tool call, as a short JSON)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(_content(part) for part in value)
    if isinstance(value, dict):
        for key in ("content", "text"):
            if isinstance(value.get(key), str) and value.get("type", "text") == "text":
                return str(value[key])
        return orjson.dumps(value, default=str).decode()
    return str(value)


def _flattened(attrs: dict[str, Any], prefix: str, role: str) -> list[dict[str, Any]]:
    """OpenLLMetry's `gen_ai.prompt.<i>.<field>` attributes as messages, by index."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, field = key[len(prefix) :].partition(".")
        if index.isdigit() and field in ("role", "content", "finish_reason"):
            found.setdefault(int(index), {})[field] = value
    return [
        {
            "role": _text(parts.get("role"), 32) or role,
            "content": _content(_parts(parts.get("content")))[:MAX_CONTENT],
            **(
                {"finish_reason": str(parts["finish_reason"])[:64]}
                if parts.get("finish_reason")
                else {}
            ),
        }
        for _, parts in sorted(found.items())[:MAX_MESSAGES]
    ]


def _openinference_documents(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """`retrieval.documents.<i>.document.<field>` attributes as documents, by index."""
    prefix = wire.OPENINFERENCE_DOCUMENTS_PREFIX
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[len(prefix) :].partition(".")
        field = rest.removeprefix("document.")
        if index.isdigit() and field in ("id", "score", "metadata"):
            found.setdefault(int(index), {})[field] = value
    return [doc for _, doc in sorted(found.items())]


def _json(value: Any) -> Any:
    """A JSON text decoded (an attribute may carry a structure as JSON); anything else as is."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _list(value: Any) -> list[Any]:
    decoded = _json(value)
    if decoded is None or decoded == "":
        return []
    return decoded if isinstance(decoded, list) else [decoded]


def _text(value: Any, width: int) -> str | None:
    if value is None or value == "":
        return None
    return str(value)[:width]


def _tokens(attrs: dict[str, Any], name: str, older: str) -> int | None:
    value = attrs.get(name, attrs.get(older))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or not 0 <= value < 2**62:
        return None
    return int(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
