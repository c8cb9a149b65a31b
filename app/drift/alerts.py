"""Drift alerts: a JSON POST to the project's webhook, retried with a growing pause.

A webhook that stays down does not fail the drift job: the report is stored and the failure
logged; the alert is said to be undelivered in the job's result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger("warden.drift")


def post_alert(
    url: str,
    payload: dict[str, Any],
    attempts: int = 4,
    first_pause: float = 0.5,
    timeout: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """POST `payload` as JSON; retried on a connection error, a timeout, 429 or a 5xx.

    A 4xx other than 429 is the receiver refusing this payload: not retried. Returns whether
    the receiver took it (a 2xx).
    """
    pause = first_pause
    for attempt in range(1, attempts + 1):
        try:
            answer = httpx.post(url, json=payload, timeout=timeout)
        except httpx.HTTPError as exc:
            log.warning("drift alert to %s failed (attempt %d): %s", url, attempt, exc)
        else:
            if answer.is_success:
                return True
            log.warning(
                "drift alert to %s answered %d (attempt %d)", url, answer.status_code, attempt
            )
            if answer.status_code < 500 and answer.status_code != 429:
                return False
        if attempt < attempts:
            sleep(pause)
            pause *= 2
    return False
