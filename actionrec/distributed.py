"""Several processes, one job: the rank and world of a torchrun launch, balanced shards, a barrier, threads per rank.

`torchrun --nproc-per-node N -m actionrec ...` sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE; a plain run is
rank 0 of 1. Work lists are split by duration, not count (:func:`balanced_shards`), every rank writes to the shared
cache or output folder (each file atomically), and rank 0 alone writes what is written once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch

from .errors import ActionrecError


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a (torchrun) job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def ranks_from_env(env: dict[str, str] | None = None) -> Ranks:
    """The torchrun variables of `env` (default os.environ), checked; absent: a single process."""
    env = os.environ if env is None else env
    try:
        ranks = Ranks(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)),
                      int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))))
    except ValueError:
        raise ActionrecError("RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be integers (set by torchrun)") from None
    if not (0 <= ranks.rank < ranks.world and 0 <= ranks.local_rank < ranks.local_world):
        raise ActionrecError(f"rank {ranks.rank} of {ranks.world} (local {ranks.local_rank} of {ranks.local_world}) is "
                             "not a valid torchrun placement")
    return ranks


def threads_per_rank(ranks: Ranks, cores: int | None = None) -> int:
    """The cores of this machine shared by its local ranks (two ranks on 2 cores get one thread each)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(ranks.local_world, 1))


def init(ranks: Ranks, device: torch.device | None = None, timeout_s: float = 1800.0) -> None:
    """Join the process group (gloo on CPU, NCCL on CUDA) when distributed, and size this rank's threads."""
    torch.set_num_threads(threads_per_rank(ranks))
    if not ranks.distributed or torch.distributed.is_initialized():
        return
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend, timeout=timedelta(seconds=timeout_s))


def barrier(ranks: Ranks) -> None:
    """Wait until every rank gets here (nothing to wait for in a single process)."""
    if ranks.distributed and torch.distributed.is_initialized():
        torch.distributed.barrier()


def balanced_shards(items: Sequence, weight: Callable[[object], float], world: int) -> list[list]:
    """Split `items` over `world` ranks so that their total weights differ by at most the heaviest item: the heaviest
    item goes first to the lightest rank (longest processing time first). Deterministic; each shard keeps the
    items' original order."""
    weights = [max(0.0, float(weight(item))) for item in items]
    order = sorted(range(len(items)), key=lambda i: (-weights[i], i))
    loads, owner = [0.0] * world, [0] * len(items)
    for i in order:
        rank = min(range(world), key=lambda r: (loads[r], r))
        owner[i] = rank
        loads[rank] += weights[i]
    return [[items[i] for i in range(len(items)) if owner[i] == r] for r in range(world)]
