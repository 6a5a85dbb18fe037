"""One process or many: the same training code under `torchrun` runs DistributedDataParallel."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device: str = "auto") -> Dist:
    """Join the process group if launched by torchrun (gloo on CPU, nccl on CUDA)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA GPU")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(device=torch.device(device, 0) if device == "cuda" else torch.device("cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Dist(rank, world, torch.device("cuda", local) if device == "cuda" else torch.device("cpu"))


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def mean_across(d: Dist, values: torch.Tensor) -> torch.Tensor:
    """The mean of `values` over ranks (so that every rank takes the same decisions from it)."""
    if d.enabled:
        values = values.clone()
        dist.all_reduce(values)
        values /= d.world
    return values


def broadcast_flag(d: Dist, flag: bool) -> bool:
    """Rank 0's `flag` on every rank (a collective: all ranks call it)."""
    if not d.enabled:
        return flag
    value = [flag]
    dist.broadcast_object_list(value, src=0)
    return bool(value[0])


def gather_states(d: Dist, state: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Every rank's RNG `state`, in rank order (a collective: all ranks call it)."""
    if not d.enabled:
        return [state]
    gathered: list[dict[str, torch.Tensor] | None] = [None] * d.world
    dist.all_gather_object(gathered, state)
    return gathered  # type: ignore[return-value]


def broadcast_buffers(d: Dist, module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm statistics)."""
    if d.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, 0)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
