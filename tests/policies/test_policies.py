"""Policies: the file format, evaluation with CEL, the built-in set and its tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import (
    BUILTIN,
    Effect,
    PolicyLoadError,
    PolicySet,
    parse,
    run_tests,
    strongest,
)

GOOD = """
id: risk-cap
version: "2"
description: cap the predicted risk
phase: post_decision
params: {max: 0.3}
when: predicted.conflict_probability > params.max
effect: deny
message: "risk {{ predicted.conflict_probability }} over {{ params.max }} for {{ decision.chosen }}"
"""


def test_every_builtin_policy_passes_its_tests_with_allow_and_other_cases() -> None:
    results = run_tests(BUILTIN)
    failed = [f"{r.source} / {r.name}: {r.detail}" for r in results if not r.passed]
    assert failed == []
    policies = PolicySet.load_dir(BUILTIN)
    for policy in policies.policies:
        outcomes = {r.detail for r in results if r.policy_id == policy.id}
        assert "allow" in outcomes, f"{policy.id} has no allow case"
        assert outcomes - {"allow"}, f"{policy.id} has no case where it fires"


def test_a_policy_fires_with_a_message_naming_the_values() -> None:
    (policy,) = parse(GOOD, "risk.yaml")
    gates = PolicySet([policy])
    (verdict,) = gates.evaluate("post_decision", {"predicted": {"conflict_probability": 0.5},
                                                  "decision": {"chosen": "room-1"}})  # fmt: skip
    assert (verdict.effect, verdict.fired) == (Effect.DENY, True)
    assert verdict.message == "risk 0.5 over 0.3 for room-1"
    assert (verdict.policy_id, verdict.version, verdict.hash) == ("risk-cap", "2", policy.hash)
    (quiet,) = gates.evaluate("post_decision", {"predicted": {"conflict_probability": 0.1}})
    assert (quiet.effect, quiet.fired, quiet.message) == (Effect.ALLOW, False, "")


@pytest.mark.parametrize(
    ("context", "reason"),
    [
        ({}, "Key not found"),
        ({"predicted": {"conflict_probability": "high"}}, "No matching overloads"),
    ],
)
def test_an_expression_that_fails_at_evaluation_is_a_deny(context: dict, reason: str) -> None:
    gates = PolicySet(parse(GOOD.replace("effect: deny", "effect: warn")))
    (verdict,) = gates.evaluate("post_decision", context)
    assert verdict.effect is Effect.DENY and verdict.error
    assert reason in verdict.message and "could not be evaluated" in verdict.message


def test_a_when_that_is_not_a_bool_is_a_deny() -> None:
    gates = PolicySet(parse(GOOD.replace("when: predicted.conflict_probability > params.max",
                                         "when: predicted.conflict_probability")))  # fmt: skip
    (verdict,) = gates.evaluate("post_decision", {"predicted": {"conflict_probability": 0.5}})
    assert verdict.effect is Effect.DENY and "not a bool" in verdict.message


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (GOOD.replace("phase: post_decision", "phase: post-decision"), 5, "unknown phase"),
        (GOOD.replace("effect: deny", "effect: rollback"), 8, "cannot be used in phase"),
        (GOOD + "colour: red\n", 10, "unknown field 'colour'"),
        (
            GOOD.replace("when: predicted.conflict_probability > params.max", "when: predicted. >"),
            2,
            "invalid CEL",
        ),
        (
            GOOD.replace("when: predicted.conflict_probability > params.max", "when: verdict == 1"),
            2,
            "undeclared reference to 'verdict'",
        ),
        (GOOD.replace('version: "2"\n', ""), 2, "missing required field 'version'"),
        (GOOD.replace("params: {max: 0.3}", "params: [0.3]"), 6, "params must be a mapping"),
        ("id: x\n  bad: [\n", 2, "invalid YAML"),
        (GOOD.replace("id: risk-cap", "id: Risk Cap"), 2, "id: use lowercase"),
        (GOOD + "match: {teams: [a]}\n", 10, "unknown match field 'teams'"),
    ],
)
def test_invalid_files_are_refused_with_file_line_and_reason(
    text: str, line: int, reason: str
) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        PolicySet(parse(text, "policies/risk.yaml"))
    assert caught.value.source == "policies/risk.yaml"
    assert caught.value.line == line
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"policies/risk.yaml:{line}: ")


def test_a_pre_request_policy_cannot_read_the_decision() -> None:
    text = GOOD.replace("phase: post_decision", "phase: pre_request")
    with pytest.raises(PolicyLoadError, match="undeclared reference to 'predicted"):
        PolicySet(parse(text))


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    with pytest.raises(PolicyLoadError, match="also used at"):
        PolicySet.load_dir(tmp_path)


def test_the_content_hash_follows_the_content_not_the_layout() -> None:
    (a,) = parse(GOOD)
    (b,) = parse("# a comment\n" + GOOD.replace("params: {max: 0.3}", "params:\n  max: 0.3"))
    (c,) = parse(GOOD.replace("max: 0.3", "max: 0.4"))
    assert a.hash == b.hash
    assert a.hash != c.hash
    assert len(a.hash) == 64


def test_match_limits_a_policy_to_projects_models_and_roles() -> None:
    scoped = GOOD + "match: {projects: [booking], models: [booking-world-model]}\n"
    gates = PolicySet(parse(scoped))
    risky = {
        "predicted": {"conflict_probability": 0.9},
        "decision": {"chosen": "x"},
        "models": {"world_model": {"name": "booking-world-model", "version": "3"}},
    }
    assert gates.evaluate("post_decision", {**risky, "project": "booking"})[0].fired
    assert gates.evaluate("post_decision", {**risky, "project": "other"}) == []
    other_model = {**risky, "project": "booking", "models": {"world_model": {"name": "m"}}}
    assert gates.evaluate("post_decision", other_model) == []


def test_the_strongest_verdict_decides() -> None:
    gates = PolicySet.load_dir(BUILTIN)
    context = {
        "decision": {"chosen": "room-03@2026-11-24T15:00/2h", "confidence": 0.2},
        "predicted": {"conflict_probability": 0.9},
    }
    verdicts = gates.evaluate("post_decision", context)
    assert {v.policy_id for v in verdicts} == {
        "planner-confidence-floor",
        "action-allowlist",
        "risk-cap",
    }
    decisive = strongest(verdicts)
    assert decisive is not None and decisive.policy_id == "risk-cap"
    assert (
        strongest(
            gates.evaluate("post_decision", {**context, "predicted": {"conflict_probability": 0.0}})
        ).effect
        is Effect.REQUIRE_REVIEW
    )  # type: ignore[union-attr]


def test_a_bundle_round_trips(tmp_path: Path) -> None:
    gates = PolicySet.load_dir(BUILTIN)
    again = PolicySet.from_bundle(gates.to_bundle())
    assert again.hash == gates.hash
    assert [p.hash for p in again.policies] == [p.hash for p in gates.policies]


def test_only_the_fields_read_are_passed_yet_every_use_still_sees_them() -> None:
    base = GOOD.replace("id: risk-cap", "id: {id}")
    texts = [
        base.replace("{id}", "reads-candidates").replace(
            "when: predicted.conflict_probability > params.max",
            "when: decision.candidates.exists(c, c.score > 0.9)",
        ),
        base.replace("{id}", "reads-keys").replace(
            "when: predicted.conflict_probability > params.max",
            "when: \"'rationale' in decision\"",
        ),
    ]
    gates = PolicySet([p for text in texts for p in parse(text)])
    context = {
        "decision": {"chosen": "a", "rationale": "why", "candidates": [{"score": 0.95}]},
        "predicted": {"conflict_probability": 0.1},
    }
    fired = {v.policy_id for v in gates.evaluate("post_decision", context) if v.fired}
    assert fired == {"reads-candidates", "reads-keys"}
