"""The service's background jobs: one `PeriodicWorker` base, and who leads each job.

A worker runs its job's `tick()` every `interval` seconds in a thread of its own, but only
while its process leads the job. For the jobs that keep the database (signing heads, drift,
lineage, rollups) the lead is held in the database (app/store/leadership.py: an advisory
lock on PostgreSQL, a lock file beside a SQLite file), so exactly one process of the whole
deployment runs each — however many machines, replicas and worker processes share it — and
when the leader dies another takes over at its next round. The lead is checked again right
before every round, and a round never runs without it.

Which processes start the workers is their role (`WARDEN_ROLE`, `warden serve --role`,
app/main.py): `worker` and `all` start every job, `api` none; the lead decides the rest, so a
second worker process is a standby that takes the jobs over when the first dies.

Rounds are at most once per `interval`: the first comes one interval after `start()`. A
round that raises is logged and counted; the worker goes on with the next. `stop()` is the
same for every worker: it sets the stop flag, wakes the thread, joins it (with a timeout: a
round in progress is not interrupted) and gives the lead up.

Metrics (app/metrics.py): `warden_daemon_leader{daemon}` is 1 in the process that leads,
`warden_daemon_ticks_total{daemon}` counts the rounds run there. The log says when a process
takes the lead of a job and when it loses it.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import Protocol

from app.metrics import Metrics

log = logging.getLogger("warden.daemons")


class Leadership(Protocol):
    """Who runs a job: implementations in app/store/leadership.py."""

    def hold(self) -> bool:
        """Take the lead, or confirm it is still held; False while another leads (or the
        lead cannot be confirmed: the database is away)."""
        ...

    def release(self) -> None:
        """Give the lead up, if held."""
        ...


class PeriodicWorker(ABC):
    """A job run every `interval` seconds by the process that leads it.

    Subclasses give `tick()`; `became_leader()` may prepare what ticks need. Example:

    >>> class Sweeper(PeriodicWorker):
    ...     def tick(self) -> None:
    ...         sweep(engine)
    >>> worker = Sweeper("sweeper", 30.0, leadership.for_engine(engine, "sweeper"), metrics)
    >>> worker.start()
    >>> worker.stop()
    """

    def __init__(
        self, name: str, interval: float, leadership: Leadership, metrics: Metrics | None = None
    ) -> None:
        self.name = name
        self.interval = interval
        self.leadership = leadership
        self.metrics = metrics
        self.leading = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def tick(self) -> None:
        """One round of the job; runs only while this process leads it."""

    def became_leader(self) -> None:  # noqa: B027 (a hook: overriding it is optional)
        """Called in the worker's thread when this process takes the lead."""

    @property
    def stopping(self) -> bool:
        """True once `stop()` was asked: a long round may end early."""
        return self._stopping.is_set()

    @property
    def running(self) -> bool:
        """True from `start()` until the thread has ended."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"the {self.name} worker was started already")
        if self.metrics is not None:
            self.metrics.daemon_leader.labels(self.name).set(0)
            self.metrics.daemon_ticks.labels(self.name)
            self.metrics.daemon_failures.labels(self.name)
        self._thread = threading.Thread(target=self._run, name=f"warden-{self.name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the next round now rather than at the end of the interval."""
        self._wake.set()

    def stop(self, join: bool = True, timeout: float = 10.0) -> None:
        """Ask the worker to stop, and (with `join`) wait up to `timeout` seconds for it."""
        self._stopping.set()
        self._wake.set()
        if join:
            self.join(timeout)

    def join(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._lead()  # at once, so a follower and the metrics know who leads
            while not self._sleep():
                if self._lead():
                    self._round()
        finally:
            self._give_up()

    def _sleep(self) -> bool:
        """Wait for the interval (or a wake-up); True when the worker should stop."""
        self._wake.wait(self.interval)
        self._wake.clear()
        return self._stopping.is_set()

    def _lead(self) -> bool:
        try:
            leading = self.leadership.hold()
        except Exception:
            log.exception("could not take or check the lead of %s", self.name)
            leading = False
        if leading != self.leading:
            self.leading = leading
            if self.metrics is not None:
                self.metrics.daemon_leader.labels(self.name).set(int(leading))
            if leading:
                log.info("this process leads %s now", self.name)
                try:
                    self.became_leader()
                except Exception:
                    log.exception("preparing %s failed; its rounds will try again", self.name)
            else:
                log.warning("this process lost the lead of %s", self.name)
        return leading

    def _round(self) -> None:
        if self.metrics is not None:
            self.metrics.daemon_ticks.labels(self.name).inc()
        try:
            self.tick()
        except Exception:
            if self.metrics is not None:
                self.metrics.daemon_failures.labels(self.name).inc()
            log.exception("%s failed; trying again in %gs", self.name, self.interval)

    def _give_up(self) -> None:
        try:
            self.leadership.release()
        except Exception:
            log.exception("could not give up the lead of %s", self.name)
        if self.leading:
            self.leading = False
            log.info("this process gave up the lead of %s", self.name)
        if self.metrics is not None:
            self.metrics.daemon_leader.labels(self.name).set(0)
