"""World-model latent states: PyTorch forward hooks, summarised in one batch per request.

The one module of the SDK that imports torch: `collectors.watch()` loads it on first use, so
a process that watches no torch module never imports torch.

A hook only keeps a reference to the (detached) output of a watched layer. When the request
ends, all captures of a layer are stacked and summarised with torch ops under `no_grad`
(mean, std, min, max, L2 norm, and a fixed seeded random projection), and the whole request's
summaries cross to Python in a single `.tolist()`: one device-to-host copy per request, however
many steps the rollout had.
"""

from __future__ import annotations

import random
import time
import zlib
from collections import defaultdict
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from collectors import conventions as wire
from collectors._record import RequestRecord, SampledTensor
from collectors._scope import current_record


class Watch:
    """Handle of `collectors.watch()`: `remove()` (or leaving a `with` block) unhooks.

    >>> with collectors.watch(world_model, layers=["encoder", "transition"]) as watch:
    ...     plan = planner.plan(intent)  # doctest: +SKIP
    """

    def __init__(
        self,
        module: nn.Module,
        layers: list[str],
        every: int,
        dim: int,
        tensor_sample_rate: float,
        seed: int,
    ) -> None:
        if every < 1 or dim < 1 or not 0.0 <= tensor_sample_rate <= 1.0:
            raise ValueError("watch() needs every >= 1, dim >= 1 and 0 <= tensor_sample_rate <= 1")
        self.every = every
        self.dim = dim
        self.tensor_sample_rate = tensor_sample_rate
        self.seed = seed
        self._projections: dict[tuple[str, int], torch.Tensor] = {}
        self._handles: list[RemovableHandle] = []
        try:
            for name in layers:
                target = module.get_submodule(name)
                self._handles.append(target.register_forward_hook(self._hook(name)))
        except AttributeError as exc:
            self.remove()
            raise ValueError(f"watch(): {exc}") from exc

    def _hook(self, layer: str) -> Any:
        key = f"{id(self)}:{layer}"

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            record = current_record()
            if record is None:
                return
            step = record.steps.get(key, 0)
            record.steps[key] = step + 1
            if step % self.every:
                return
            tensor = output[0] if isinstance(output, tuple | list) else output
            if isinstance(tensor, torch.Tensor):
                record.captures.append((layer, step, (self, tensor.detach(), time.time_ns())))

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def projection(self, layer: str, width: int, device: torch.device) -> torch.Tensor:
        """The fixed random projection of a layer: the same in every process for a seed."""
        matrix = self._projections.get((layer, width))
        if matrix is None:
            generator = torch.Generator().manual_seed(
                zlib.crc32(f"{self.seed}:{layer}:{width}".encode())
            )
            matrix = torch.randn(width, self.dim, generator=generator) / self.dim**0.5
            self._projections[(layer, width)] = matrix
        return matrix.to(device)


def summarise(record: RequestRecord) -> None:
    """Turn a record's captures into one `world_model.rollout` span with a state event per
    (step, layer); the sampled full tensors go to `record.tensors`, for the export thread."""
    if not record.captures:
        return
    groups: dict[tuple[int, str, tuple[int, ...]], list[tuple[int, torch.Tensor, int]]] = (
        defaultdict(list)
    )
    watches: dict[int, Watch] = {}
    for layer, step, (watch, tensor, when) in record.captures:
        watches[id(watch)] = watch
        groups[(id(watch), layer, tuple(tensor.shape))].append((step, tensor, when))
    record.captures = []

    blocks: list[torch.Tensor] = []
    index: list[tuple[Watch, str, int, int, torch.Tensor | None]] = []
    with torch.no_grad():
        for (watch_id, layer, shape), items in groups.items():
            watch = watches[watch_id]
            stacked = torch.stack([t for _, t, _ in items]).float()
            flat = stacked.reshape(len(items), -1)
            width = shape[-1] if shape else 1
            features = stacked.reshape(len(items), -1, width).mean(dim=1)
            low, high = torch.aminmax(flat, dim=1)
            stats = torch.stack(
                [flat.mean(dim=1), flat.std(dim=1, correction=0), low, high, flat.norm(dim=1)],
                dim=1,
            )
            projected = features @ watch.projection(layer, width, features.device)
            blocks.append(torch.cat([stats, projected], dim=1))
            for step, tensor, when in items:
                sampled = watch.tensor_sample_rate and random.random() < watch.tensor_sample_rate
                index.append((watch, layer, step, when, tensor.clone() if sampled else None))
        # Rows of different projection widths cannot share one tensor; usually there is one.
        widths = {b.shape[1] for b in blocks}
        rows: list[list[float]] = []
        if len(widths) == 1:
            rows = torch.cat(blocks).cpu().tolist()
        else:
            for block in blocks:
                rows += block.cpu().tolist()

    span = record.child(wire.ROLLOUT_SPAN)
    span.start_ns = min(when for _, _, _, when, _ in index)
    span.end_ns = max(when for _, _, _, when, _ in index)
    tensors: list[SampledTensor] = []
    for (_, layer, step, when, tensor), row in zip(index, rows, strict=True):
        attrs: dict[str, Any] = {
            wire.STATE_STEP: step,
            wire.STATE_LAYER: layer,
            wire.STATE_SUMMARY: row[:5],
            wire.STATE_PROJECTION: row[5:],
        }
        if tensor is not None:
            tensors.append(SampledTensor(attrs, tensor))
        span.events.append((wire.STATE_EVENT, when, attrs))
    if tensors:
        record.tensors = tuple(tensors)
