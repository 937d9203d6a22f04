"""The one inference engine: ordering, batching across jobs, errors in turn, bounded memory, live dropping, stopping;
every command goes through it; no other module runs the network or starts its own decode thread or queue."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from actionrec.engine import Engine, engine_for
from actionrec.errors import ActionrecError

PACKAGE = Path(__file__).resolve().parents[1] / "actionrec"


class Doubler(nn.Module):
    """A network whose 'probabilities' are twice the mean of each clip, so outputs name their inputs."""

    def __init__(self):
        super().__init__()
        from actionrec.models.i3d import I3D_KINETICS400
        from actionrec.models.info import ModelInfo

        self.info = ModelInfo(name="doubler", spec=I3D_KINETICS400, categories=("a",), weights_sha256="",
                              predict_frames=16, identity="")
        self.w = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(len(x))
        return x.mean(dim=(1, 2, 3, 4))[:, None] * 2

    def forward_until(self, x, endpoint):
        return x.mean(dim=(1, 2, 3, 4))[:, None] * 3


def clip(value: float) -> torch.Tensor:
    return torch.full((1, 1, 1, 1), float(value))


def test_results_per_job_in_order_batched_across_jobs_with_errors_in_turn():
    model = Doubler()
    engine = Engine(model)
    clips = {"a": [1, 2, 3], "b": [4], "bad": None, "c": [5, 6]}

    def decode(job):
        if clips[job] is None:
            raise ActionrecError(f"{job}: unreadable")
        for i, v in enumerate(clips[job]):
            yield i, clip(v)

    errors, progress = [], []
    out = list(engine.map(list(clips), decode, output="logits", batch_size=4, on_error=lambda j, m: errors.append((j, m)),
                          progress=progress.append))
    assert [r.job for r in out] == ["a", "b", "c"]
    assert [r.metas for r in out] == [[0, 1, 2], [0], [0, 1]]
    assert [r.outputs[:, 0].tolist() for r in out] == [[2, 4, 6], [8], [10, 12]]
    assert errors == [("bad", "bad: unreadable")]
    assert model.batches == [4, 2]  # clips of several jobs share a batch
    assert sum(progress) == 4 and engine.clips_run == 6
    features = list(engine.map(["a"], decode, output="Mixed_4f"))
    assert features[0].outputs[:, 0].tolist() == [3, 6, 9]


def test_an_error_without_handler_is_raised_and_the_producer_ends():
    engine = Engine(Doubler())

    def decode(job):
        yield 0, clip(1)
        raise ActionrecError("broken mid-way")

    with pytest.raises(ActionrecError, match="broken mid-way"):
        list(engine.map(["x"], decode))
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name == "actionrec-decode"]


def test_memory_is_bounded_by_the_queue_not_the_number_of_clips():
    engine = Engine(Doubler())
    alive = {"most": 0}
    made = []

    def decode(job):
        for i in range(200):
            made.append(i)
            alive["most"] = max(alive["most"], len(made) - engine.clips_run)
            yield i, clip(i)

    out = list(engine.map(["long"], decode, batch_size=4, per_clip=True))
    assert len(out) == 200 and [r.meta for r in out] == list(range(200))
    assert alive["most"] <= 4 * 3 + 1  # at most the queue (2 batches) and one batch ahead of the network


def test_live_source_drops_the_oldest_and_stale_clips_and_stop_ends_it():
    model = Doubler()
    slow_forward = model.forward

    def slow(x):
        time.sleep(0.05)
        return slow_forward(x)

    model.forward = slow
    engine = Engine(model)
    stop = threading.Event()
    dropped = []

    def camera(job):
        for i in range(100):
            time.sleep(0.005)  # 200 clips/s, the network takes 20/s
            yield i, clip(i)

    got = []
    for r in engine.map(["cam"], camera, batch_size=1, per_clip=True, live=True, ahead=3, on_drop=dropped.append):
        got.append(r.meta)
    assert got == sorted(got) and len(got) + sum(dropped) == 100 and sum(dropped) > 50
    assert got[-1] == 99  # the newest is never dropped

    def endless(job):
        i = 0
        while True:
            yield i, clip(i)
            i += 1

    seen = 0
    for r in engine.map(["cam"], endless, batch_size=1, per_clip=True, live=True, stop=stop):
        seen += 1
        if seen == 5:
            stop.set()
    assert seen >= 5
    time.sleep(0.2)
    assert not [t for t in threading.enumerate() if t.name == "actionrec-decode"]


def test_stale_clips_are_dropped_before_the_forward():
    engine = Engine(Doubler())

    def source(job):
        for i in range(20):
            yield i, clip(i)

    got = [r.meta for r in engine.map(["s"], source, batch_size=1, per_clip=True, live=True, ahead=50,
                                       stale=lambda meta: meta % 2 == 1)]
    assert all(m % 2 == 0 for m in got[:-1])


def test_engine_for_shares_one_engine_per_model_and_one_fast_copy(i3d_kinetics):
    engine = engine_for(i3d_kinetics)
    assert engine_for(i3d_kinetics) is engine and engine_for(engine) is engine
    assert engine.net is engine.net and engine.net is not i3d_kinetics  # the fast path is a copy, made once
    assert engine_for(Doubler()).net.__class__ is Doubler  # an unknown network runs as it is


# ------------------------------------------------------------------------------------------ every command uses it


@pytest.fixture
def spy(monkeypatch):
    """Records the `output` of every forward the engine runs."""
    calls = []
    forward = Engine.forward

    def recording(self, x, output="probs"):
        calls.append((self.info.name, output, len(x)))
        return forward(self, x, output)

    monkeypatch.setattr(Engine, "forward", recording)
    return calls


def test_predict_timeline_watch_and_features_go_through_the_engine(spy, tmp_path):
    from test_timeline import ColourModel, colour_frames, write_av_video

    from actionrec.apps.predict import predict_iter
    from actionrec.apps.watch import AlertRule, WatchOptions, watch
    from actionrec.apps.windows import window_probabilities
    from actionrec.training.features import FeatureCache, Sampling, read_entry

    video = write_av_video(tmp_path / "v.mp4", colour_frames([("Red", 2.0), ("Green", 2.0)]))
    model = ColourModel()
    assert list(predict_iter([video], model))[0].top(1)[0][0] in ("Red", "Green")
    assert spy and spy[-1][:2] == ("colour-model", "probs")
    n = len(spy)
    wp = window_probabilities(video, model, stride=0.5, cache=False)
    assert len(spy) > n and sum(c[2] for c in spy[n:]) == len(wp.starts)
    n = len(spy)
    stats = watch(str(video), model, [AlertRule("Red", 0.8)], WatchOptions(stride=0.5))
    assert sum(c[2] for c in spy[n:]) == stats.windows + 1 and stats.windows > 0  # + the warm-up clip, before the stream
    n = len(spy)
    doubler = Doubler()
    cache = FeatureCache(doubler, "Mixed_4f", Sampling(frames=8), root=tmp_path / "features")
    entries = cache.extract([str(video)])
    assert spy[n:] == [("doubler", "Mixed_4f", 1)] and read_entry(entries[(str(video), 0)]).shape == (1,)


# ------------------------------------------------------------------------------------------ the source says so


def _calls(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            names.append(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


def test_no_module_outside_the_engine_runs_the_network_or_starts_a_decode_thread():
    allowed_threads = {"apps/watch.py": 1}  # the webhook sender (posts alerts; no decoding, no network forward)
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ("engine.py", "pipeline.py"):  # the engine and its pipeline (which the compiled network shares)
            continue
        calls = _calls(ast.parse(path.read_text()))
        if rel.startswith("models/"):  # the networks themselves and the fast path's construction
            calls = [c for c in calls if c not in ("forward_until", "inference_mode")]
        for name in ("inference_mode", "forward_until", "optimize_for_inference", "Queue", "ThreadPoolExecutor"):
            if name in calls:
                offenders.append(f"{rel}: {name}")
        if calls.count("Thread") > allowed_threads.get(rel, 0):
            offenders.append(f"{rel}: Thread")
    assert not offenders, offenders
