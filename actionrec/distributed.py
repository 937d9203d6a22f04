"""Several processes, one job: the rank and world of a torchrun launch, the device of each rank, the process group,
balanced shards, collectives that are no-ops in a single process, threads per rank, one progress count for all ranks.

`torchrun --nproc-per-node N -m actionrec ...` sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE; a plain run is
rank 0 of 1. Work lists are split by duration, not count (:func:`balanced_shards`, :func:`my_shard`), every rank writes
to the shared cache or output folder (each file atomically), and rank 0 alone writes what is written once. Every
helper here works unchanged in a single process (world 1), so callers have one code path.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch

from .errors import ActionrecError

T = TypeVar("T")
DEVICES = "auto|cpu|cuda[:N]"  # what --device takes
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


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


SINGLE = Ranks()  # a plain run: rank 0 of 1


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


def check_device(name: str) -> str:
    """`name` if it is one of auto, cpu, cuda, cuda:N (one ActionrecError line otherwise)."""
    if not isinstance(name, str) or not _DEVICE.fullmatch(name):
        raise ActionrecError(f"--device {name}: choose one of {DEVICES} (auto: CUDA when available)")
    return name


def resolve_device(name: str, ranks: Ranks) -> torch.device:
    """The device of this rank: "auto" is CUDA when available, else the CPU; under torchrun each rank takes the GPU
    of its LOCAL_RANK ("cuda:N" names one GPU, so it is refused when several local ranks would share it)."""
    check_device(name)
    available = torch.cuda.is_available()
    if name == "cpu" or (name == "auto" and not available):
        return torch.device("cpu")
    if not available:
        raise ActionrecError(f"--device {name}: no CUDA GPU is usable here (torch.cuda.is_available() is False: no GPU, "
                             "no driver, or a CPU-only PyTorch); use --device cpu or auto")
    count = torch.cuda.device_count()
    if ":" in name:
        index = int(name.split(":")[1])
        if ranks.local_world > 1:
            raise ActionrecError(f"--device {name}: {ranks.local_world} ranks on this machine would share one GPU; pass "
                                 "--device cuda (each rank takes the GPU of its LOCAL_RANK)")
    else:
        index = ranks.local_rank
    if index >= count:
        raise ActionrecError(f"--device {name}: rank {ranks.rank} needs GPU {index}, but this machine has {count}; "
                             "start at most one rank per GPU (torchrun --nproc-per-node)")
    return torch.device("cuda", index)


def _attempt_store(ranks: Ranks, timeout: timedelta) -> torch.distributed.Store | None:
    """A store of this attempt alone, under a torchrun whose agent shares its store with the workers
    (TORCHELASTIC_USE_AGENT_STORE=True, the default since PyTorch 2.5); None otherwise (init_process_group's own).

    The agent's store outlives the workers, so after `--max-restarts` has restarted them it still holds the addresses
    the killed workers published, and gloo may connect to a dead one and wait for the whole timeout (PyTorch issue
    #135712; setting TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for torchrun avoids it too). So rank 0 serves a new
    TCPStore on a free port and writes its address to the agent's store; the others connect to the address found
    there, and an address left by a dead attempt refuses the connection, so they read it again until it is this
    attempt's."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    from torch.distributed import TCPStore

    host, key = os.environ["MASTER_ADDR"], "actionrec/attempt_store"
    agent = TCPStore(host, int(os.environ["MASTER_PORT"]), is_master=False, timeout=timeout)
    if ranks.is_main:
        store = TCPStore(host, 0, ranks.world, is_master=True, timeout=timeout, wait_for_workers=False)
        agent.set(key, f"{host}:{store.port}")
        return store
    deadline = time.monotonic() + timeout.total_seconds()
    while True:
        agent.wait([key])
        address, port = agent.get(key).decode().rsplit(":", 1)
        try:
            socket.create_connection((address, int(port)), timeout=5).close()  # a dead attempt's refuses at once
            return TCPStore(address, int(port), ranks.world, is_master=False, timeout=timedelta(seconds=5))
        except (OSError, RuntimeError):  # not this attempt's yet: read the address again
            if time.monotonic() > deadline:
                raise ActionrecError(f"rank {ranks.rank}: rank 0 published no process group store within "
                                     f"{timeout.total_seconds():.0f} s; check that every rank runs") from None
            time.sleep(0.2)


def init(ranks: Ranks, device: torch.device | None = None, timeout_s: float = 1800.0) -> bool:
    """Join the process group (gloo on CPU, NCCL on CUDA) when distributed, and size this rank's threads (cores / local
    ranks; torchrun itself sets OMP_NUM_THREADS=1); whether the group was made here (an existing one is used as it
    is). A single process keeps PyTorch's own thread count."""
    if device is not None and device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL uses the current device of each rank
    if not ranks.distributed:
        return False
    torch.set_num_threads(threads_per_rank(ranks))
    if torch.distributed.is_initialized():
        return False
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    timeout = timedelta(seconds=timeout_s)
    store = _attempt_store(ranks, timeout)
    if store is None:
        torch.distributed.init_process_group(backend, timeout=timeout)
    else:
        torch.distributed.init_process_group(backend, store=store, rank=ranks.rank, world_size=ranks.world, timeout=timeout)
    return True


@contextmanager
def process_group(ranks: Ranks, device: torch.device | None = None) -> Iterator[None]:
    """The process group for the duration of the block (see :func:`init`), torn down at its end if made here."""
    made = init(ranks, device)
    try:
        yield
    finally:
        if made and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def barrier(ranks: Ranks, while_waiting: Callable[[], None] | None = None, interval: float = 1.0) -> None:
    """Wait until every rank gets here (nothing to wait for in a single process); `while_waiting()` is called every
    `interval` seconds meanwhile (e.g. to redraw a progress bar from the other ranks' counts)."""
    if not (ranks.distributed and torch.distributed.is_initialized()):
        return
    if while_waiting is None:
        torch.distributed.barrier()
        return
    work = torch.distributed.barrier(async_op=True)
    while not work.is_completed():
        while_waiting()
        time.sleep(interval)
    work.wait()


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


# ------------------------------------------------------------------------------------------ collectives (no-ops alone)


def all_gather(value: T, ranks: Ranks) -> list[T]:
    """Every rank's `value` (any picklable object), in rank order, on every rank."""
    if not ranks.distributed:
        return [value]
    out: list = [None] * ranks.world
    torch.distributed.all_gather_object(out, value)
    return out


def from_main(value: T, ranks: Ranks) -> T:
    """Rank 0's `value` on every rank (what the others pass is ignored)."""
    if not ranks.distributed:
        return value
    box = [value if ranks.is_main else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values: Sequence[float], ranks: Ranks) -> list[float]:
    """The element-wise sum of `values` over the ranks (float64), on every rank."""
    total = torch.tensor(list(values), dtype=torch.float64)
    if ranks.distributed:
        if torch.distributed.get_backend() == "nccl":
            total = total.cuda()
        torch.distributed.all_reduce(total)
    return total.cpu().tolist()


def main_decides(ranks: Ranks, action: Callable[[], T]) -> T:
    """Run `action` on rank 0 only; its result on every rank, or its ActionrecError raised on every rank (so that no
    rank waits forever for one that gave up)."""
    result, error = None, None
    if ranks.is_main:
        try:
            result = action()
        except ActionrecError as err:
            error = str(err)
    result, error = from_main((result, error), ranks)
    if error is not None:
        raise ActionrecError(error)
    return result


def shared_weights(items: Sequence[T], weight: Callable[[T], float], ranks: Ranks) -> list[float]:
    """`weight` of every item (e.g. a duration read from each container), computed once over all ranks (each weighs
    every world-th item) and shared, so every rank holds the same list."""
    mine = {i: float(weight(items[i])) for i in range(ranks.rank, len(items), ranks.world)}
    weights: dict[int, float] = {}
    for part in all_gather(mine, ranks):
        weights.update(part)
    return [weights[i] for i in range(len(items))]


def my_shard(items: Sequence[T], weight: Callable[[T], float], ranks: Ranks) -> list[T]:
    """This rank's share of `items` by :func:`balanced_shards`, the weights computed once (:func:`shared_weights`)."""
    if not ranks.distributed:
        return list(items)
    weights = shared_weights(items, weight, ranks)
    return [items[i] for i in balanced_shards(range(len(items)), weights.__getitem__, ranks.world)[ranks.rank]]


# ------------------------------------------------------------------------------------------ one progress count


class SharedCount:
    """Items done by all ranks of a job, for one progress bar on rank 0 (not N interleaved bars).

    Each other rank writes its own count to a small file `folder/<job>.<rank>` (a folder every rank can write: the
    shared cache) at most once per `interval` seconds, and once more when it is done (:meth:`flush`); rank 0 adds
    its own count to the others' files, read at most once per `interval` (:meth:`refresh`, also while it waits for
    the others at the barrier). No collective is involved, so ranks that go at different speeds never wait for each
    other; the files hold one number each and are removed by :meth:`finish`. `on_total(n)` hears of every new total
    on rank 0. A rank killed and restarted writes the same file again (stale counts are overwritten).
    """

    def __init__(self, folder: Path, job: str, ranks: Ranks, on_total: Callable[[int], None], interval: float = 1.0):
        self.folder, self.job, self.ranks, self.on_total, self.interval = Path(folder), job, ranks, on_total, interval
        self.done = 0
        self._last_io = 0.0
        self._others: dict[int, int] = {}

    def _file(self, rank: int) -> Path:
        return self.folder / f"{self.job}.{rank}"

    def add(self, n: int = 1) -> None:
        """`n` more items done by this rank."""
        self.done += n
        if not self.ranks.distributed:
            self.on_total(self.done)
            return
        now = time.monotonic()
        due = now - self._last_io >= self.interval
        if due:
            self._last_io = now
        if self.ranks.is_main and due:
            self.refresh()
        elif self.ranks.is_main:
            self.on_total(self.done + sum(self._others.values()))
        elif due:
            self._write()

    def flush(self) -> None:
        """This rank's count, written now (a rank that is done, before it waits for the others)."""
        if self.ranks.distributed and not self.ranks.is_main:
            self._write()

    def refresh(self) -> None:
        """Rank 0: the others' counts read again and the total reported (while it waits for them)."""
        if self.ranks.distributed and self.ranks.is_main:
            self._others = {r: self._read(r) for r in range(1, self.ranks.world)}
            self.on_total(self.done + sum(self._others.values()))

    def _write(self) -> None:
        from .files import write_text

        try:
            write_text(self._file(self.ranks.rank), json.dumps({"done": self.done}))
        except OSError:
            pass  # the count is for show: a folder that refuses it costs the bar, never the job

    def _read(self, rank: int) -> int:
        try:
            return int(json.loads(self._file(rank).read_text())["done"])
        except (OSError, ValueError, KeyError, TypeError):
            return self._others.get(rank, 0)

    def finish(self, total: int) -> None:
        """Every rank is done (after a barrier): rank 0's bar shows `total`; each rank removes its own file."""
        if self.ranks.is_main:
            self.on_total(total)
        self._file(self.ranks.rank).unlink(missing_ok=True)
