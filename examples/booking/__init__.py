"""The booking assistant: a reference hybrid stack (language model -> world model -> planner).

A request in plain text ("a room for 6 people tomorrow 3-5pm, with a projector") becomes an
`Intent` (`intent`), candidate bookings are rolled out in a PyTorch latent dynamics model
(`world_model`), and a model-predictive planner books, counter-proposes or asks (`planner`).
`stack.BookingAssistant` wires the three; `registry` trains the world model on the simulator
(`sim`) and keeps it in MLflow. Everything runs offline from seeds.

`registry` is not imported here: it imports MLflow, which the other modules do not need.

    >>> from examples.booking import BookingAssistant, WorldModel, WorldModelConfig
    >>> assistant = BookingAssistant(WorldModel(WorldModelConfig()), "booking-world-model", "1")
    >>> assistant.handle("a room tomorrow").kind
    'clarify'
"""

from .errors import BookingError, IntentParseError, RegistryError
from .intent import IntentParser, OfflineParser, OpenAICompatibleParser, TokenUsage
from .phrasings import GeneratedRequest, generate_requests
from .planner import Candidate, Decision, Planner, PlannerWeights
from .sim import Action, Calendar, Intent, Room, generate_dataset
from .stack import Answer, BookingAssistant
from .world_model import (
    Prediction,
    Rollout,
    TrainConfig,
    WorldModel,
    WorldModelConfig,
    train_world_model,
)

__all__ = [
    "Action",
    "Answer",
    "BookingAssistant",
    "BookingError",
    "Calendar",
    "Candidate",
    "Decision",
    "GeneratedRequest",
    "Intent",
    "IntentParseError",
    "IntentParser",
    "OfflineParser",
    "OpenAICompatibleParser",
    "Planner",
    "PlannerWeights",
    "Prediction",
    "RegistryError",
    "Rollout",
    "Room",
    "TokenUsage",
    "TrainConfig",
    "WorldModel",
    "WorldModelConfig",
    "generate_dataset",
    "generate_requests",
    "train_world_model",
]
