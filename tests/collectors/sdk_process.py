"""A user's process for the fault tests: records requests `start..stop` with the SDK.

    python -m tests.collectors.sdk_process ENDPOINT KEY SPOOL_DIR START STOP [--flush]

Each request has a stable request id (`r-<n>`), runs in fail-closed mode (its record is on
disk before the request returns), and prints its number once done, so a test can kill the
process at any point and start another that carries on from the last number printed.
"""

from __future__ import annotations

import sys
import time

import collectors


def main() -> None:
    endpoint, key, spool, start, stop = sys.argv[1:6]
    collectors.init(
        endpoint=endpoint,
        api_key=key,
        fingerprint_secret="fault-test",
        spool_dir=spool,
        fail_closed=True,
    )
    for n in range(int(start), int(stop)):
        with collectors.request({"n": n}, request_id=f"r-{n}") as req:
            with collectors.llm_call(system="offline", request_model="parser"):
                pass
            collectors.decision([{"action": "a", "score": 1.0}], "a")
            req.set_outcome("booked")
        print(n, flush=True)
        time.sleep(0.002)
    if "--flush" in sys.argv:
        ok = collectors.flush(120, include_spool=True)
        print("flushed" if ok else "not flushed", flush=True)
    collectors.shutdown()


if __name__ == "__main__":
    main()
