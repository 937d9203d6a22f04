"""torchrun: feature extraction shared by the ranks (each clip once, one shared cache), DDP training that matches one
process, two "nodes" on one machine, a rank killed with kill -9 and the job restarted by torchrun; and the helpers
around them (devices, autocast, the sampler, the shared progress count).

The end-to-end tests launch real jobs (``sys.executable -m torch.distributed.run``, loopback only) on the demo set
(36 clips of 24 frames) plus one unreadable file, with dropout 0 and a batch of 4 that the world of 2 divides: DDP
then takes the same clips per step as one process (see training/phases.py), so the results agree to rounding. The
tolerance held: the same test accuracy within one clip, the test loss within 1e-3.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from actionrec import distributed
from actionrec.cli import main
from actionrec.data.demo import write_demo_dataset
from actionrec.data.video import probe
from actionrec.distributed import Ranks, SharedCount
from actionrec.errors import ActionrecError
from actionrec.training.phases import Mixed, TrainingOrder, autocast_dtype
from actionrec.training.trainer import TrainConfig

TIMEOUT = 300  # seconds for one job: a hung job fails its test instead of hanging CI
CLIPS = 36  # the demo set: 4 classes x 9 clips
ENTRIES = CLIPS + 12  # cache entries: the 12 test videos are scored from two views each (--test-views 2, the default)
BAD = "Bouncing_s99_c01.mp4"  # the unreadable file, listed in a CSV manifest beside the demo set
TRAIN = ["--finetune-epochs", "2", "--dropout", "0", "--batch-size", "4", "--head-fit", "softmax",  # SGD under DDP
         "--precision", "float"]  # one set of features: an int8 run adds float entries for its validation check


# ----------------------------------------------------------------------------------------------- jobs


@pytest.fixture(scope="module")
def data(tmp_path_factory, i3d_kinetics) -> list[str]:
    """The demo set and a manifest adding one file that is not a video (the weights are fetched for the workers)."""
    base = tmp_path_factory.mktemp("dist-data")
    demo = write_demo_dataset(base / "demo", clips_per_class=9, frames=24)
    extra = base / "extra"
    extra.mkdir()
    (extra / BAD).write_bytes(os.urandom(4096))
    # in a training group of the demo set, so that once it is skipped the splits are the demo set's (12 per split)
    (extra / "extra.csv").write_text(f"path,label,group\n{BAD},Bouncing,Bouncing/bouncing_s03\n")
    return [str(demo), str(extra / "extra.csv")]


def torchrun(*launch: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "actionrec"]


def train_args(data: list[str], out: Path, cache: Path, *extra: str) -> list[str]:
    return ["train", *data, "--out", str(out), "--cache", str(cache), *TRAIN, *extra]


def ended(proc: subprocess.Popen) -> str:
    """The job's stderr once it ended (killed, and the test failed, after TIMEOUT)."""
    try:
        return proc.communicate(timeout=TIMEOUT)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the agent and its workers (launched in a session of their own)
        pytest.fail(f"job still running after {TIMEOUT} s:\n{proc.communicate()[1][-3000:]}")


def finished(proc: subprocess.Popen) -> str:
    """The job's stderr once it ended, checked for a zero exit status."""
    err = ended(proc)
    assert proc.returncode == 0, err[-3000:]
    return err


def launch(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def entries(cache: Path) -> list[Path]:
    """The feature entries in the cache (not the temporary files of a killed writer)."""
    return [p for p in cache.glob("*/*/*.npz") if not p.name.startswith(".")]


def metrics_of(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def assert_same_result(got: dict, expected: dict) -> None:
    """The test accuracy within one clip, the test loss within 1e-3, the same epochs."""
    clips = sum(map(sum, expected["confusion_matrix"]))
    assert abs(got["test_accuracy"] - expected["test_accuracy"]) <= 1 / clips + 1e-9, (got["test_accuracy"], expected["test_accuracy"])
    assert abs(got["test_loss"] - expected["test_loss"]) <= 1e-3, (got["test_loss"], expected["test_loss"])
    assert len(got["history"]) == len(expected["history"]) and got["best_epoch"] == expected["best_epoch"]


def assert_shared_work(metrics: dict, cache: Path, data: list[str]) -> None:
    """Two ranks, each clip extracted exactly once over both (one entry each), shards balanced by duration (their
    totals differ by at most the longest video), the bad file skipped once, the progress counts removed."""
    ranks = metrics["distributed"]["ranks"]
    assert metrics["distributed"]["world"] == 2 and [r["rank"] for r in ranks] == [0, 1]
    assert all(r["backbone_clips"] > 0 for r in ranks) and sum(r["videos"] for r in ranks) == CLIPS + 1
    assert metrics["feature_cache"]["backbone_clips"] == ENTRIES == len(entries(cache))
    longest = max(probe(p).duration for p in Path(data[0]).glob("*/*.mp4"))
    assert abs(ranks[0]["duration"] - ranks[1]["duration"]) <= longest + 1e-6
    assert [Path(s["video"]).name for s in metrics["skipped"]] == [BAD]
    assert not list((cache / ".progress").glob("*"))


@pytest.fixture(scope="module")
def two_ranks(data, tmp_path_factory) -> tuple[dict, Path, str]:
    """One `torchrun --standalone --nproc-per-node 2` training: (its metrics, its cache, its stderr)."""
    base = tmp_path_factory.mktemp("two-ranks")
    out, cache = base / "run", base / "cache"
    err = finished(launch(torchrun("--standalone", "--nproc-per-node", "2") + train_args(data, out, cache), base))
    return metrics_of(out), cache, err
def test_two_ranks_extract_each_clip_once_and_match_one_process(two_ranks, data, tmp_path):
    metrics, cache, err = two_ranks
    assert_shared_work(metrics, cache, data)
    assert metrics["distributed"]["threads_per_rank"] == distributed.threads_per_rank(Ranks(0, 2, 0, 2))
    assert err.count("head epoch 1:") == 1 and err.count("skipped:") == 1  # rank 0 alone speaks
    out = tmp_path / "one"
    assert main(train_args(data, out, cache, "--quiet")) == 0  # one process, on the entries both ranks wrote
    single = metrics_of(out)
    assert single["feature_cache"]["backbone_clips"] == 0 and single["distributed"]["world"] == 1
    assert_same_result(metrics, single)


def test_a_refusal_by_rank_0_ends_every_rank(data, two_ranks):
    """Rank 0 refuses to write over the finished run (no --force): every rank stops with that line, none waits."""
    metrics, cache, _ = two_ranks
    out = Path(metrics["run"])
    before = (out / "metrics.json").stat().st_mtime_ns
    job = launch(torchrun("--standalone", "--nproc-per-node", "2") + train_args(data, out, cache, "--quiet"), out.parent)
    err = ended(job)
    assert job.returncode != 0 and err.count("holds a finished run; pass --force") == 2, err[-3000:]
    assert (out / "metrics.json").stat().st_mtime_ns == before


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(data: list[str], out: Path, caches: tuple[Path, Path], folder: Path) -> list[subprocess.Popen]:
    """Two torchrun launches of one rank each, meeting at a c10d rendezvous on a free loopback port."""
    port = free_port()
    return [launch(torchrun("--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node), "--rdzv-backend", "c10d",
                            "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-nodes")
                   + train_args(data, out, caches[node], "--quiet"), folder) for node in (0, 1)]


def test_two_nodes_on_one_machine(data, two_ranks, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    errs = [finished(node) for node in two_nodes(data, out, (cache, cache), tmp_path)]
    metrics = metrics_of(out)
    assert_shared_work(metrics, cache, data)
    assert metrics["distributed"]["threads_per_rank"] == distributed.threads_per_rank(Ranks())  # one rank per "machine"
    assert sum(err.count("skipped:") for err in errs) == 1
    assert_same_result(metrics, two_ranks[0])


def test_a_cache_the_machines_do_not_share_is_said_in_one_line(data, two_ranks, tmp_path):
    """Each "machine" with its own --cache (one already full): the rank that cannot see the other's entries says so."""
    nodes = two_nodes(data, tmp_path / "run", (two_ranks[1], tmp_path / "own-cache"), tmp_path)
    errs = [ended(node) for node in nodes]
    assert any(node.returncode != 0 for node in nodes)
    assert "entries written by other ranks are not in" in "".join(errs) and "every machine shares" in "".join(errs)


def worker_pid(agent: int, rank: int) -> int | None:
    """The pid of the torchrun worker of `rank` started by the agent `agent` (read from /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            env = (stat.parent / "environ").read_bytes().split(b"\0") if ppid == agent else []
        except (OSError, ValueError, IndexError):
            continue
        if f"RANK={rank}".encode() in env:
            return int(stat.parent.name)
    return None


def test_rank_killed_mid_extraction_is_restarted_and_resumes_from_the_cache(data, two_ranks, tmp_path):
    """kill -9 of rank 1 once the first entries are written: torchrun restarts the group, which computes only what is
    missing (no entry is written twice: each keeps its inode), and the run is the one of an uninterrupted job."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    job = launch(torchrun("--standalone", "--nproc-per-node", "2", "--max-restarts", "1") + train_args(data, out, cache, "--quiet"),
                 tmp_path)
    inodes: dict[str, set[int]] = defaultdict(set)
    written_before_kill, deadline = None, time.monotonic() + TIMEOUT
    while job.poll() is None and time.monotonic() < deadline:
        for entry in entries(cache):
            try:
                inodes[entry.name].add(entry.stat().st_ino)
            except FileNotFoundError:
                continue
        if written_before_kill is None and len(inodes) >= 2:
            pid = worker_pid(job.pid, rank=1)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                written_before_kill = len(inodes)
        time.sleep(0.05)
    err = finished(job)
    assert written_before_kill is not None and written_before_kill < ENTRIES, "rank 1 was killed during extraction"
    assert len(inodes) == ENTRIES and all(len(seen) == 1 for seen in inodes.values()), "an entry was written twice"
    metrics = metrics_of(out)
    assert 0 < metrics["feature_cache"]["backbone_clips"] <= ENTRIES - written_before_kill  # the restarted attempt's
    assert err.count("skipped:") == 1 and [Path(s["video"]).name for s in metrics["skipped"]] == [BAD]
    assert_same_result(metrics, two_ranks[0])


# ----------------------------------------------------------------------------------------------- helpers (fast)


def test_device_resolution(monkeypatch):
    one, second_of_two = Ranks(), Ranks(1, 2, 1, 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.resolve_device("auto", second_of_two) == torch.device("cpu")
    assert distributed.resolve_device("cpu", one) == torch.device("cpu")
    with pytest.raises(ActionrecError, match="no CUDA GPU"):
        distributed.resolve_device("cuda", one)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.resolve_device("auto", one) == torch.device("cuda", 0)
    assert distributed.resolve_device("cuda", second_of_two) == torch.device("cuda", 1)  # its LOCAL_RANK's GPU
    assert distributed.resolve_device("cuda:1", one) == torch.device("cuda", 1)
    assert distributed.resolve_device("cpu", one) == torch.device("cpu")
    with pytest.raises(ActionrecError, match="share one GPU"):
        distributed.resolve_device("cuda:0", second_of_two)
    with pytest.raises(ActionrecError, match="needs GPU 2, but this machine has 2"):
        distributed.resolve_device("cuda:2", one)
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", ""):
        with pytest.raises(ActionrecError, match="--device"):
            TrainConfig(device=bad)


def test_train_refuses_a_missing_gpu_before_any_work(tmp_path, monkeypatch):
    from actionrec.data.datasets import load_dataset, make_splits
    from actionrec.training.trainer import train

    for label in ("A", "B"):
        for i in range(5):
            (tmp_path / "data" / label).mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / label / f"{label}_s{i}_c01.mp4").write_bytes(b"never read")
    splits = make_splits(load_dataset(str(tmp_path / "data")), 0.2, 0.2, 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ActionrecError, match="--device cuda: no CUDA GPU"):
        train(splits, tmp_path / "out", TrainConfig(device="cuda"), cache_root=tmp_path / "cache")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_autocast_on_cuda_only_bf16_where_supported(monkeypatch):
    assert autocast_dtype(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert autocast_dtype(torch.device("cuda", 0)) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert autocast_dtype(torch.device("cuda", 0)) == torch.float16
    cpu = Mixed(torch.device("cpu"), enabled=True)  # the CPU trains in fp32: a plain step
    assert cpu.dtype is None and cpu.scaler is None
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    with cpu.autocast():
        loss = (weight * torch.tensor([1.0, 2.0])).sum()
    cpu.backward(loss)
    cpu.step(optimizer)
    assert weight.tolist() == [0.5, 0.0]


@pytest.mark.parametrize("n", [11, 12])
def test_ranks_take_the_clips_of_one_process_step_by_step(n):
    """With a batch the world divides, step k of 2 ranks together takes the clips of step k of one process; the
    sampler pads an odd count with one repeated clip; each epoch is another permutation."""
    one = TrainingOrder(n, 4, seed=3)
    two = [TrainingOrder(n, 4, seed=3, ranks=Ranks(r, 2, r, 2)) for r in range(2)]
    assert two[0].steps == two[1].steps == one.steps == -(-n // 4)
    epochs = []
    for epoch in range(3):
        single, split = one.epoch(epoch), [order.epoch(epoch) for order in two]
        padding = [single[0][0]] if n % 2 else []  # the permutation's first clip, once more, in the last step
        for k, batch in enumerate(single):
            assert sorted(split[0][k] + split[1][k]) == sorted(batch + (padding if k == len(single) - 1 else []))
        epochs.append([i for batch in single for i in batch])
    assert sorted(epochs[0]) == list(range(n)) and epochs[0] != epochs[1] != epochs[2]


def test_one_progress_count_for_all_ranks(tmp_path):
    """Rank 1 writes its count to the shared folder; rank 0 adds it to its own for the one bar; files removed."""
    totals: list[int] = []
    first = SharedCount(tmp_path, "job", Ranks(0, 2, 0, 2), totals.append, interval=0.0)
    second = SharedCount(tmp_path, "job", Ranks(1, 2, 1, 2), lambda n: pytest.fail("only rank 0 shows"), interval=0.0)
    second.add(3)
    first.add(1)
    assert totals[-1] == 4
    second.add(2)
    first.add(1)
    assert totals[-1] == 7
    second.add(1)
    second.flush()  # done: rank 0 reads it while it waits for the others
    first.refresh()
    assert totals[-1] == 8
    second.finish(9)
    first.finish(9)
    assert totals[-1] == 9 and not list(tmp_path.iterdir())


def test_collectives_alone_are_the_value_itself():
    one = Ranks()
    assert distributed.all_gather({"a": 1}, one) == [{"a": 1}]
    assert distributed.from_main(5, one) == 5 and distributed.all_sum([1.0, 2.0], one) == [1.0, 2.0]
    assert distributed.my_shard(["a", "b"], len, one) == ["a", "b"]
    with pytest.raises(ActionrecError, match="refused"):
        distributed.main_decides(one, lambda: (_ for _ in ()).throw(ActionrecError("refused")))
