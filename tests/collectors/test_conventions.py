"""docs/conventions.md and `collectors.conventions` name the same things, and code uses the module.

The page is what people read and the module is what code imports; these tests hold them to
each other in both directions (a name on one and not on the other fails), and walk the code
for string literals that spell a wire name the module owns.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from collectors import conventions as wire

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "conventions.md"
# Names in Warden's namespaces, and the OpenTelemetry names the service reads or the SDK sets.
WIRE_LOOKING = re.compile(r"^(warden|world_model|planner|policy|gen_ai)\.\S+$")
OTEL_NAMES = frozenset({"service.name", "telemetry.sdk.name"})


def _tables(text: str) -> list[list[list[str]]]:
    """The body rows of the page's Markdown tables, as lists of cells."""
    tables: list[list[list[str]]] = []
    rows: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            rows.append(line)
            continue
        if rows:
            assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", rows[1]), f"not a table: {rows[:2]}"
            tables.append([[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]])
            rows = []
    return tables


def _pattern(name: str) -> str:
    """The page writes a placeholder as `<role>`, the module as `{role}`."""
    return re.sub(r"<(\w+)>", r"{\1}", name)


def documented() -> set[str]:
    """Every name in the first column of the page's tables (each cell is one backticked name)."""
    names = set()
    for table in _tables(PAGE.read_text()):
        for row in table:
            match = re.fullmatch(r"`([^`]+)`", row[0])
            assert match, f"docs/conventions.md: a table row must start with one `name`: {row}"
            names.add(_pattern(match[1]))
    return names


def constants() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(wire).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str)
    }


def test_every_documented_name_is_a_constant() -> None:
    values = {v for k, v in constants().items() if not k.endswith("_PREFIX")}
    missing = sorted(documented() - values)
    assert not missing, f"documented in docs/conventions.md, missing in conventions.py: {missing}"


def test_every_constant_is_documented() -> None:
    names = documented()
    undocumented = []
    for constant, value in constants().items():
        if constant.endswith("_PREFIX"):
            # A prefix is documented by the patterns that start with it.
            if not any(name.startswith(value) and "{" in name for name in names):
                undocumented.append(constant)
        elif value not in names:
            undocumented.append(constant)
    assert not undocumented, f"in conventions.py, not in docs/conventions.md: {undocumented}"


def test_wire_names_mentioned_anywhere_on_the_page_are_in_its_tables() -> None:
    mentioned = {
        _pattern(token)
        for token in re.findall(r"`([^`\n]+)`", PAGE.read_text())
        if WIRE_LOOKING.match(token) or token in OTEL_NAMES
    }
    assert mentioned, "the page mentions no names at all: is the pattern right?"
    assert not sorted(mentioned - documented())


def test_the_functions_fill_the_documented_patterns() -> None:
    assert wire.model_name("llm") == wire.MODEL_NAME.format(role="llm")
    assert wire.model_version("llm") == wire.MODEL_VERSION.format(role="llm")
    assert wire.llm_span("chat", "m") == wire.LLM_SPAN.format(operation="chat", model="m")
    assert wire.spans_metric("dropped") == wire.SPANS_METRIC.format(counter="dropped")
    assert wire.MODEL_NAME.startswith(wire.MODEL_PREFIX)


def test_the_page_parser_reads_placeholders_and_refuses_stray_rows(tmp_path: Path) -> None:
    assert _pattern("warden.model.<role>.name") == wire.MODEL_NAME
    assert "warden.model.{role}.version" in documented()
    with pytest.raises(AssertionError, match="not a table"):
        _tables("| a | b |\n| `x` | y |\n")


# Literals that spell a wire name but mean something else there.
_OTHER_MEANINGS = {
    ("mlflow_results.py", wire.PROJECT),  # an MLflow run tag of the same name
    ("test_docs.py", wire.POLICY_EVENT),  # an audit-ledger event kind in docs/audit.md's vectors
    ("test_chain.py", wire.POLICY_EVENT),  # the same kind, in the ledger's chain tests
}


def _logger_names(tree: ast.AST) -> set[int]:
    """ids of the string nodes that name a logger (the SDK's logger shares its name)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "getLogger":
                ids.update(id(a) for a in node.args)
            ids.update(id(k.value) for k in node.keywords if k.arg == "logger")
    return ids


def test_code_imports_the_names_instead_of_spelling_them() -> None:
    owned = {v for v in constants().values() if "." in v and "{" not in v} - OTEL_NAMES
    found = []
    for folder in ("app", "collectors", "policies", "examples", "bench", "tests", "migrations"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == Path(wire.__file__).resolve():
                continue
            tree = ast.parse(path.read_text(), str(path))
            loggers = _logger_names(tree)
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and node.value in owned
                    and id(node) not in loggers
                    and (path.name, node.value) not in _OTHER_MEANINGS
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "use collectors.conventions instead:\n" + "\n".join(found)


def test_importing_the_module_loads_nothing_else() -> None:
    """The service imports it on its ingest path: it must not drag the SDK in."""
    script = "import sys; import collectors.conventions; print('\\n'.join(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    ours = {m for m in loaded if m.split(".")[0] in ("collectors", "policies")}
    assert ours == {
        "collectors", "collectors.conventions", "collectors.errors", "collectors.fingerprint",
    }  # fmt: skip
    heavy = [m for m in loaded if m.split(".")[0] in ("opentelemetry", "google", "torch", "yaml")]
    assert not heavy
