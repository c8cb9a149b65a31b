"""`collectors.score()` against a live service: a score travels the requests' export path and
lands as a score, never as a request; a refused one is counted; a call that cannot be right
raises `ConfigurationError` at once."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import collectors
from tests.conftest import LiveService

SECRET = "fingerprint-secret"
ROOT = Path(__file__).resolve().parents[2]


def _init(live: LiveService, tmp_path: Path) -> None:
    collectors.init(
        endpoint=live.url,
        api_key=live.key("shop", "ingest"),
        fingerprint_secret=SECRET,
        spool_dir=tmp_path / "spool",
        service_name="booking-test",
    )


def _request(outcome: str = "booked") -> str:
    with collectors.request({"text": "a room for 6"}, subject="u-1") as req:
        req.set_outcome(outcome)
    assert req.trace_id is not None
    return req.trace_id


def test_an_sdk_score_lands_as_a_score_and_not_as_a_request(
    live: LiveService, tmp_path: Path
) -> None:
    _init(live, tmp_path)
    request_id = _request()
    collectors.score(request_id, "plan_success", True)
    collectors.score(
        request_id, "correction", True, source="human", author="ops-7",
        comment="wrong room", correction={"action": "room-b"},
    )  # fmt: skip
    collectors.score(request_id, "rating", 4)
    assert collectors.flush(10)
    with live.client(live.key("shop", "read")) as client:
        page = client.get("/v1/requests").json()
        assert [item["request_id"] for item in page["items"]] == [request_id]
        scores = client.get(f"/v1/requests/{request_id}/scores").json()["items"]
    by_name = {s["name"]: s for s in scores}
    assert set(by_name) == {"plan_success", "correction", "rating"}
    assert by_name["plan_success"]["value"] is True
    assert (by_name["plan_success"]["source"], by_name["rating"]["value"]) == ("automatic", 4)
    correction = by_name["correction"]
    assert correction["correction"] == {"action": "room-b"}
    assert (correction["author"], correction["comment"]) == ("ops-7", "wrong room")
    assert collectors.stats()["rejected"] == 0


def test_a_score_the_service_refuses_is_counted_not_raised(
    live: LiveService, tmp_path: Path
) -> None:
    with live.client(live.key("shop", "admin")) as admin:
        admin.put(
            "/v1/score-configs/rating",
            json={"data_type": "numeric", "min_value": 1, "max_value": 5},
        ).raise_for_status()
    _init(live, tmp_path)
    request_id = _request()
    collectors.score(request_id, "rating", 7)  # above the config's maximum
    collectors.score("0" * 32, "rating", 3)  # no such request
    assert collectors.flush(10)
    assert collectors.stats()["rejected"] == 2
    with live.client(live.key("shop", "read")) as client:
        assert client.get(f"/v1/requests/{request_id}/scores").json()["items"] == []


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("not-an-id", "rating", 3), {}, "request_id must be"),
        (("a" * 32, "", 3), {}, "name must be"),
        (("a" * 32, "rating", None), {}, "value must be a number"),
        (("a" * 32, "rating", [1, 2]), {}, "value must be a number"),
        (("a" * 32, "rating", math.nan), {}, "must be finite"),
        (("a" * 32, "rating", 3), {"source": "review"}, "source must be one of"),
        (("a" * 32, "rating", 3), {"correction": ["room-b"]}, "correction must be a mapping"),
        (("a" * 32, "rating", 3), {"correction": {"at": object()}}, "correction must be JSON"),
    ],
)
def test_a_call_that_cannot_be_right_raises_configuration_error(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    # Without init() as well: the call itself is wrong, wherever it runs.
    with pytest.raises(collectors.ConfigurationError, match=message):
        collectors.score(*args, **kwargs)


def test_without_init_a_score_is_a_no_op() -> None:
    collectors.score("a" * 32, "rating", 3)


def test_score_is_public_and_imported_on_first_use() -> None:
    script = (
        "import sys, collectors; assert 'collectors._scores' not in sys.modules; "
        "assert 'score' in collectors.__all__; from collectors._scores import score; "
        "assert collectors.score is score"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
