"""One background worker per machine: a non-blocking `flock` on a file in the data folder.

Several `warden serve` worker processes share a data folder; a background job (lineage
resolution, drift scheduling) runs in the one that holds its lock file. The lock dies with
its process, so a killed worker never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


def take(stack: contextlib.ExitStack, path: Path) -> bool:
    """Try to take the lock at `path`, held until `stack` closes; False if another has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    stack.callback(os.close, fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
