"""Answer booking requests from the command line with the registered champion world model.

    python -m examples.booking "a room for 6 people tomorrow 3-5pm, with a projector"
    python -m examples.booking --generated 20 --shift 0.5

The first run trains and registers the world model (`registry.register_world_model`, cached by
its training spec); later runs reuse it. Each answer is printed as one JSON line.
"""

from __future__ import annotations

import argparse
import json

from .phrasings import generate_requests
from .registry import DEFAULT_TRACKING_URI, load_world_model, register_world_model
from .sim import Calendar
from .stack import BookingAssistant


def main(argv: list[str] | None = None) -> int:
    """Run the assistant on the given texts, or on `--generated N` seeded requests."""
    parser = argparse.ArgumentParser(prog="python -m examples.booking", description=__doc__)
    parser.add_argument("texts", nargs="*", help="requests in plain text")
    parser.add_argument("--generated", type=int, default=0, help="answer N generated requests")
    parser.add_argument("--shift", type=float, default=0.0, help="shift of generated requests")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated requests")
    parser.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI)
    args = parser.parse_args(argv)
    texts = list(args.texts) + [
        r.text for r in generate_requests(args.generated, seed=args.seed, shift=args.shift)
    ]
    if not texts:
        parser.error("give at least one request, or --generated N")
    registered = register_world_model(tracking_uri=args.tracking_uri)
    loaded = load_world_model(args.tracking_uri, registered.model_uri)
    assistant = BookingAssistant(
        loaded.model, loaded.name, loaded.version, calendar=Calendar.generate(seed=args.seed)
    )
    for text in texts:
        answer = assistant.handle(text)
        line = {
            "request": text,
            "kind": answer.kind,
            "message": answer.message,
            "models": assistant.stage_models(),
            "decision": answer.decision.to_record(),
        }
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
