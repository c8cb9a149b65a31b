"""A small latent dynamics model of what a booking leads to, and its training loop.

The rollout is hour by hour from the booking's start: `encoder` maps the state (intent and
calendar context) to a latent once, then `transition` advances it `horizon` times, each time
fed the action's embedding plus a learned embedding of the step. Per-step heads predict a
conflict at that hour; the final latent predicts the booking's conflict probability,
utilisation and cost.

Instrumentation hooks modules by name: `model.encoder` runs once per rollout and
`model.transition` once per step, each over the whole batch of candidates.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from .sim import (
    ACTION_COLUMNS,
    ROLLOUT_STEPS,
    STATE_COLUMNS,
    STEP_TARGETS,
    Action,
    Calendar,
    Intent,
    action_features,
    state_features,
)

# Costs are tens to hundreds of units: the head predicts cost / COST_SCALE.
COST_SCALE = 100.0


@dataclass(frozen=True)
class WorldModelConfig:
    """Shape of the network; stored with the weights so a registered model can be rebuilt."""

    state_dim: int = len(STATE_COLUMNS)
    action_dim: int = len(ACTION_COLUMNS)
    latent_dim: int = 32
    hidden_dim: int = 64
    horizon: int = ROLLOUT_STEPS

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Prediction:
    """What the world model predicts for one candidate, as plain numbers."""

    conflict_probability: float
    utilisation: float
    cost: float

    def to_dict(self) -> dict[str, float]:
        return {
            "conflict_probability": round(self.conflict_probability, 6),
            "utilisation": round(self.utilisation, 6),
            "cost": round(self.cost, 4),
        }


@dataclass
class Rollout:
    """The model's output for a batch of B candidates over H steps."""

    conflict_logit: torch.Tensor  # (B,)
    utilisation: torch.Tensor  # (B,)
    cost: torch.Tensor  # (B,), in cost units
    step_conflict_logits: torch.Tensor  # (B, H)
    latents: torch.Tensor  # (B, H + 1, latent_dim): the encoder's, then each step's

    @property
    def conflict_probability(self) -> torch.Tensor:
        return torch.sigmoid(self.conflict_logit)

    def predictions(self) -> list[Prediction]:
        """One `Prediction` per candidate, crossing from tensors to Python once."""
        rows = torch.stack([self.conflict_probability, self.utilisation, self.cost], dim=1)
        return [Prediction(*map(float, row)) for row in rows.detach().tolist()]


def rollout_inputs(
    intent: Intent, actions: list[Action], calendar: Calendar
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (state, action) batch for `actions`: one row per candidate, in order.

    >>> from examples.booking.sim import Calendar, Intent, sample_actions
    >>> import numpy as np
    >>> calendar, intent = Calendar.generate(seed=0), Intent(6, 1, 15, 2)
    >>> state, action = rollout_inputs(intent, [Action(6, 1, 15, 2)], calendar)
    >>> tuple(state.shape), tuple(action.shape)
    ((1, 20), (1, 14))
    """
    state = np.stack([state_features(intent, a, calendar) for a in actions])
    action = np.stack([action_features(intent, a, calendar) for a in actions])
    return torch.from_numpy(state), torch.from_numpy(action)


class Transition(nn.Module):
    """One step of the latent dynamics: (latent, step input) -> next latent."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.cell = nn.GRUCell(latent_dim, latent_dim)

    def forward(self, latent: torch.Tensor, step_input: torch.Tensor) -> torch.Tensor:
        next_latent: torch.Tensor = self.cell(step_input, latent)
        return next_latent


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Linear(hidden, outputs))


class WorldModel(nn.Module):
    """Latent dynamics over `config.horizon` steps, batched over candidate actions.

    >>> config = WorldModelConfig()
    >>> state, action = torch.zeros(16, config.state_dim), torch.zeros(16, config.action_dim)
    >>> out = WorldModel(config)(state, action)
    >>> tuple(out.latents.shape)
    (16, 9, 32)
    """

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.config = config
        latent = config.latent_dim
        self.encoder = nn.Sequential(_mlp(config.state_dim, config.hidden_dim, latent), nn.Tanh())
        self.action_encoder = _mlp(config.action_dim, config.hidden_dim, latent)
        self.step_embedding = nn.Embedding(config.horizon, latent)
        self.transition = Transition(latent)
        self.step_head = nn.Linear(latent, 1)
        self.conflict_head = nn.Linear(latent, 1)
        self.utilisation_head = nn.Linear(latent, 1)
        self.cost_head = nn.Linear(latent, 1)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> Rollout:
        latent = self.encoder(state)
        embedded = self.action_encoder(action)
        latents = [latent]
        for step in range(self.config.horizon):
            latent = self.transition(latent, embedded + self.step_embedding.weight[step])
            latents.append(latent)
        stacked = torch.stack(latents, dim=1)
        final = stacked[:, -1]
        return Rollout(
            conflict_logit=self.conflict_head(final).squeeze(-1),
            utilisation=self.utilisation_head(final).squeeze(-1),
            cost=self.cost_head(final).squeeze(-1) * COST_SCALE,
            step_conflict_logits=self.step_head(stacked[:, 1:]).squeeze(-1),
            latents=stacked,
        )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; with the data settings they make the registry's cache key."""

    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 3e-3
    validation_fraction: float = 0.1
    seed: int = 0
    # Matrices of 256 x 64 are too small for intra-op parallelism to pay: on 2 cores one
    # thread trains faster (about 5 s against 10 s here) and never fights other processes.
    threads: int = 1

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass
class TrainResult:
    """The trained model and what the training measured (losses are the summed objective)."""

    model: WorldModel
    initial_val_loss: float
    val_loss: float
    train_losses: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Tensors:
    state: torch.Tensor
    action: torch.Tensor
    conflict: torch.Tensor
    utilisation: torch.Tensor
    cost: torch.Tensor
    steps: torch.Tensor

    def take(self, index: torch.Tensor) -> _Tensors:
        return _Tensors(*(getattr(self, f.name)[index] for f in fields(self)))

    def __len__(self) -> int:
        return int(self.state.shape[0])


def _tensors(df: pd.DataFrame) -> _Tensors:
    def column(names: list[str] | str) -> torch.Tensor:
        return torch.from_numpy(df[names].to_numpy(dtype=np.float32))

    return _Tensors(
        state=column(list(STATE_COLUMNS)),
        action=column(list(ACTION_COLUMNS)),
        conflict=column("conflict"),
        utilisation=column("utilisation"),
        cost=column("cost"),
        steps=column(list(STEP_TARGETS)),
    )


def _loss(out: Rollout, batch: _Tensors) -> torch.Tensor:
    return (
        F.binary_cross_entropy_with_logits(out.conflict_logit, batch.conflict)
        + F.mse_loss(out.utilisation, batch.utilisation)
        + F.mse_loss(out.cost / COST_SCALE, batch.cost / COST_SCALE)
        + 0.5 * F.binary_cross_entropy_with_logits(out.step_conflict_logits, batch.steps)
    )


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_world_model(
    df: pd.DataFrame,
    model_config: WorldModelConfig | None = None,
    train_config: TrainConfig | None = None,
) -> TrainResult:
    """Train a world model on a `sim.generate_dataset` frame; same inputs give the same weights.

    >>> from examples.booking.sim import generate_dataset
    >>> result = train_world_model(generate_dataset(500), train_config=TrainConfig(epochs=1))
    >>> result.val_loss < result.initial_val_loss
    True
    """
    model_config = model_config or WorldModelConfig()
    train_config = train_config or TrainConfig()
    started = time.perf_counter()
    data = _tensors(df)
    generator = torch.Generator().manual_seed(train_config.seed)
    order = torch.randperm(len(data), generator=generator)
    n_val = max(1, int(len(data) * train_config.validation_fraction))
    val, train = data.take(order[:n_val]), data.take(order[n_val:])
    with _threads(train_config.threads), torch.random.fork_rng():
        torch.manual_seed(train_config.seed)
        model = WorldModel(model_config)
        optimiser = torch.optim.Adam(model.parameters(), lr=train_config.learning_rate)
        initial = _evaluate(model, val)["loss"]
        losses = []
        for _ in range(train_config.epochs):
            model.train()
            total, batches = 0.0, 0
            for index in torch.randperm(len(train), generator=generator).split(
                train_config.batch_size
            ):
                batch = train.take(index)
                loss = _loss(model(batch.state, batch.action), batch)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total, batches = total + loss.item(), batches + 1
            losses.append(total / max(batches, 1))
        metrics = _evaluate(model, val)
    model.eval()
    return TrainResult(
        model=model,
        initial_val_loss=initial,
        val_loss=metrics["loss"],
        train_losses=losses,
        metrics={f"val_{k}": v for k, v in metrics.items()},
        seconds=time.perf_counter() - started,
    )


def _evaluate(model: WorldModel, data: _Tensors) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        out = model(data.state, data.action)
        probability = out.conflict_probability
        return {
            "loss": float(_loss(out, data)),
            "conflict_auc": roc_auc(data.conflict.numpy(), probability.numpy()),
            "conflict_accuracy": float(
                ((probability > 0.5).float() == data.conflict).float().mean()
            ),
            "utilisation_mae": float((out.utilisation - data.utilisation).abs().mean()),
            "cost_mae": float((out.cost - data.cost).abs().mean()),
        }


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U); 0.5 when only one class is present.

    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    from scipy.stats import rankdata

    positives = labels > 0.5
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
