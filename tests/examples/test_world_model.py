from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import torch

from examples.booking.sim import (
    ACTION_COLUMNS,
    STATE_COLUMNS,
    Calendar,
    Intent,
    generate_dataset,
    sample_actions,
)
from examples.booking.world_model import (
    TrainConfig,
    TrainResult,
    WorldModel,
    WorldModelConfig,
    roc_auc,
    rollout_inputs,
    train_world_model,
)


def test_hooks_see_one_encoder_call_and_one_transition_call_per_step() -> None:
    model = WorldModel(WorldModelConfig(horizon=8))
    calls: Counter[str] = Counter()
    shapes: list[tuple[int, ...]] = []

    def record(name: str) -> Callable[[torch.nn.Module, object, torch.Tensor], None]:
        def hook(module: torch.nn.Module, args: object, output: torch.Tensor) -> None:
            calls[name] += 1
            shapes.append(tuple(output.shape))

        return hook

    handles = [
        model.encoder.register_forward_hook(record("encoder")),
        model.transition.register_forward_hook(record("transition")),
    ]
    calendar, intent = Calendar.generate(seed=0), Intent(6, 1, 15, 2)
    actions = sample_actions(intent, calendar, 16, np.random.default_rng(0))
    state, action = rollout_inputs(intent, actions, calendar)
    with torch.no_grad():
        out = model(state, action)
    for handle in handles:
        handle.remove()
    assert calls == {"encoder": 1, "transition": 8}
    # Batched over candidates: every captured state has the 16 candidates as its batch dim.
    assert set(shapes) == {(16, 32)}
    assert out.latents.shape == (16, 9, 32)
    assert out.step_conflict_logits.shape == (16, 8)
    assert torch.all((out.conflict_probability > 0) & (out.conflict_probability < 1))


def test_training_reduces_the_loss_and_is_deterministic() -> None:
    df = generate_dataset(2000, seed=2)
    first = train_world_model(df, train_config=TrainConfig(epochs=1))
    assert first.val_loss < 0.8 * first.initial_val_loss
    assert len(first.train_losses) == 1
    again = train_world_model(df, train_config=TrainConfig(epochs=1))
    for a, b in zip(
        first.model.state_dict().values(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    other = train_world_model(df, train_config=TrainConfig(epochs=1, seed=1))
    assert not torch.equal(
        first.model.state_dict()["transition.cell.weight_hh"],
        other.model.state_dict()["transition.cell.weight_hh"],
    )


def test_trained_model_predicts_conflicts_on_fresh_data(trained: TrainResult) -> None:
    fresh = generate_dataset(1000, seed=99)
    state = torch.from_numpy(fresh[list(STATE_COLUMNS)].to_numpy(np.float32))
    action = torch.from_numpy(fresh[list(ACTION_COLUMNS)].to_numpy(np.float32))
    with torch.no_grad():
        out = trained.model(state, action)
    assert roc_auc(fresh["conflict"].to_numpy(), out.conflict_probability.numpy()) > 0.85
    assert float((out.utilisation - torch.tensor(fresh["utilisation"].values)).abs().mean()) < 0.3
    assert trained.metrics["val_conflict_auc"] > 0.85


def test_roc_auc() -> None:
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(np.array([1, 1]), np.array([0.1, 0.2])) == 0.5
