"""The feature cache on tiny real videos with a stand-in network (fast): whole-content keys, checksummed entries that
are computed again when damaged, and `actionrec cache` (sizes, pruning by age and by use)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from actionrec.cli import main
from actionrec.training.features import FeatureCache, Sampling, content_key, read_entry
from videos import coded_frames, write_frames_folder, write_video

ENDPOINT = "Mixed_4f"


class MeanColour(nn.Module):
    """Stand-in backbone: the activation at any endpoint is the clip's mean colour per channel (B, 3)."""

    def __init__(self):
        super().__init__()
        from actionrec.models.i3d import I3D_KINETICS400
        from actionrec.models.info import ModelInfo

        spec = dataclasses.replace(I3D_KINETICS400, name="mean-colour", resize=32, crop=32, sha256="")
        self.info = ModelInfo(name="mean-colour", spec=spec, categories=("a", "b"), weights_sha256="mean-colour-1",
                              predict_frames=8, identity="mean-colour-1")
        self.w = nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x), 2)

    def forward_until(self, x: torch.Tensor, endpoint: str) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("videos")
    return [str(write_video(folder / f"v{i}.mp4", coded_frames(12, first=40 * i), fps=25.0)) for i in range(3)]


def cache_for(root: Path, said: list[str] | None = None) -> FeatureCache:
    return FeatureCache(MeanColour(), ENDPOINT, Sampling(frames=8), root=root, say=(said.append if said is not None else print))


# ----------------------------------------------------------------------------------------------- content keys


def test_content_key_is_the_whole_content_not_the_name_time_or_ends(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()  # 3 MiB: more than the ends a cheap key would read
    a = tmp_path / "a.bin"
    a.write_bytes(data)
    b = tmp_path / "copy" / "b.bin"
    b.parent.mkdir()
    b.write_bytes(data)
    os.utime(b, (time.time() - 86400, time.time() - 86400))  # a copied dataset: other name, other times
    assert content_key(str(a)) == content_key(str(b))
    middle = bytearray(data)
    middle[len(data) // 2] ^= 1  # damaged in the middle, same size, same ends
    b.write_bytes(bytes(middle))
    os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    assert content_key(str(a)) != content_key(str(b))


def test_content_key_of_a_folder_of_frames_covers_every_file(tmp_path):
    frames = coded_frames(4)
    one, two = tmp_path / "one", tmp_path / "two"
    write_frames_folder(one, frames)
    write_frames_folder(two, frames)
    assert content_key(str(one)) == content_key(str(two))
    first = sorted(Path(two).iterdir())[1]
    stat = first.stat()
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert content_key(str(one)) != content_key(str(two))


# ----------------------------------------------------------------------------------------------- damaged entries


def test_damaged_entries_are_computed_again_with_one_warning_each(videos, tmp_path):
    root = tmp_path / "features"
    first = cache_for(root)
    entries = first.extract(videos)
    assert first.backbone_calls == 3 and all(p.suffix == ".npz" for p in entries.values())
    original = {v: read_entry(entries[(v, 0)]).copy() for v in videos}

    truncated, garbage, altered = (entries[(v, 0)] for v in videos)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    garbage.write_bytes(os.urandom(garbage.stat().st_size))
    with np.load(altered) as z:  # other values under the recorded checksum, written as a valid file
        recorded = z["sha256"].copy()
    with open(altered, "wb") as f:
        np.savez(f, features=(original[videos[2]] + 1).astype(np.float16), sha256=recorded)

    said: list[str] = []
    again = cache_for(root, said)
    entries = again.extract(videos)
    assert again.backbone_calls == 3
    assert len(said) == 3 and all(line.startswith("warning: feature cache entry") for line in said), said
    for line, video in zip(said, videos):
        assert video in line and "\n" not in line
    for v in videos:
        assert np.array_equal(read_entry(entries[(v, 0)]), original[v])

    quiet: list[str] = []
    third = cache_for(root, quiet)
    third.extract(videos)
    assert third.backbone_calls == 0 and quiet == []


def test_values_overwritten_in_place_are_caught(videos, tmp_path):
    root = tmp_path / "features"
    entries = cache_for(root).extract(videos[:1])
    path = entries[(videos[0], 0)]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40  # one bit inside the stored array, header and size intact
    path.write_bytes(bytes(data))
    said: list[str] = []
    cache = cache_for(root, said)
    cache.extract(videos[:1])
    assert cache.backbone_calls == 1 and len(said) == 1


def test_an_entry_damaged_during_training_stops_it_in_one_line(videos, tmp_path):
    from actionrec.errors import ActionrecError
    from actionrec.training.phases import Activations

    entries = cache_for(tmp_path / "features").extract(videos[:2])
    data = Activations([entries[(v, 0)] for v in videos[:2]], [0, 1])
    entries[(videos[1], 0)].write_bytes(b"garbage")
    with pytest.raises(ActionrecError, match="not readable") as err:
        list(data.batches(2))
    assert "\n" not in str(err.value)


def test_each_entry_is_read_and_checked_once_per_run_within_the_memory_bound(videos, tmp_path, monkeypatch):
    from actionrec.training import phases

    entries = cache_for(tmp_path / "features").extract(videos)
    reads = []
    monkeypatch.setattr(phases, "read_entry", lambda path: reads.append(path) or read_entry(path))
    data = phases.Activations([entries[(v, 0)] for v in videos], [0, 1, 0])
    epochs = [torch.cat([x for x, _ in data.batches(2, order)]) for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0])]
    assert len(reads) == 3  # three epochs, each clip read once
    assert torch.equal(epochs[1], epochs[0][[2, 0, 1]]) and torch.equal(epochs[2], epochs[0][[1, 2, 0]])
    monkeypatch.setattr(phases, "KEEP_BYTES", 0)  # nothing fits: every batch reads from disk again
    data = phases.Activations([entries[(v, 0)] for v in videos], [0, 1, 0])
    reads.clear()
    for _ in range(2):
        list(data.batches(2))
    assert len(reads) == 6


def test_an_unwritable_cache_is_refused_in_one_line(videos, tmp_path):
    from actionrec.errors import ActionrecError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # unwritable whoever runs the tests (root ignores permission bits)
    with pytest.raises(ActionrecError, match="cannot write to the feature cache") as err:
        cache_for(blocker / "features").extract(videos[:1])
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------------- actionrec cache


def fake_run(folder: Path, recipe: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"feature_cache": {"recipe": recipe}}))
    return folder


def test_cache_command_shows_sizes_and_prunes_by_age_and_use(videos, tmp_path, capsys):
    features, timelines = tmp_path / "features", tmp_path / "timelines"
    used = cache_for(features)
    used.extract(videos)
    other = FeatureCache(MeanColour(), ENDPOINT, Sampling(frames=9), root=features, say=print)
    other.extract(videos[:2])
    (timelines / "ab").mkdir(parents=True)
    old, new = timelines / "ab" / "old.npz", timelines / "ab" / "new.npz"
    old.write_bytes(b"x" * 1000)
    new.write_bytes(b"y" * 10)
    (features / "notes.txt").write_text("not the cache's")
    week_ago = time.time() - 8 * 86400
    os.utime(old, (week_ago, week_ago))
    os.utime(used.path(content_key(videos[0]), 0), (week_ago, week_ago))
    roots = ["--features", str(features), "--timelines", str(timelines)]

    assert main(["cache", *roots]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"features: {features}: 5 files") and lines[1].startswith(f"timelines: {timelines}: 2 files")

    assert main(["cache", *roots, "--older-than", "7"]) == 0
    out = capsys.readouterr().out
    assert "features: removed 1 file" in out and "timelines: removed 1 file, 1000 B" in out
    assert not old.exists() and new.exists() and (features / "notes.txt").exists()

    runs = tmp_path / "runs"
    fake_run(runs / "a", used.recipe_key)
    fake_run(runs / "nested" / "b", used.recipe_key)
    assert main(["cache", *roots, "--unused", "--runs", str(runs)]) == 0
    assert "features: removed 2 files" in capsys.readouterr().out
    assert not (features / other.recipe_key).exists() and len(list((features / used.recipe_key).rglob("*.npz"))) == 2
    assert (features / "notes.txt").exists()


def test_cache_unused_without_runs_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["cache", "--features", str(tmp_path / "f"), "--timelines", str(tmp_path / "t"), "--unused",
                 "--runs", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no runs found" in err[0]


def test_cache_command_uses_actionrec_home(home, capsys):
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert f"features: {home / 'features'}: 0 files" in out and f"timelines: {home / 'timelines'}: 0 files" in out


def test_cache_command_shows_and_prunes_compiled_networks_by_last_use(home, capsys):
    from actionrec.models.compiled import IRRunner, card_key, ir_entry, read_card, write_card

    import numpy as np
    import openvino
    import openvino.opset13 as ops

    compiled = home / "compiled"
    old_ir, used_ir = compiled / "ir" / "old", compiled / "ir" / "used"
    x = ops.parameter([-1, 3, 8, 8, 8], np.float32)
    for folder in (old_ir, used_ir):  # a real IR (a ReLU), as the engine saves them
        openvino.save_model(openvino.Model([ops.multiply(ops.relu(x), np.float32(2))], [x]), folder / "model.xml")
    weights = home / "weights" / "w.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"w")
    key = card_key("tiny", "auto", "auto")
    write_card(key, info={"name": "tiny"}, network={"shapes": "exact", "has_step_logits": False}, precision="fp32",
               backend="openvino", config={}, weights=weights, irs={ir_entry("head", "exact", (3, 8, 8, 8)): used_ir / "model.xml"})
    week_ago = time.time() - 8 * 86400
    for path in (*old_ir.iterdir(), *used_ir.iterdir(), compiled / "cards" / f"{key}.json"):
        os.utime(path, (week_ago, week_ago))
    assert read_card(key) is not None  # a read is a use of the card, and compiling an IR a use of the IR
    assert IRRunner({}).run(used_ir / "model.xml", -np.ones((1, 3, 8, 8, 8), np.float32), 0).max() == 0

    assert main(["cache"]) == 0
    assert f"compiled networks: {compiled}: 5 files" in capsys.readouterr().out
    assert main(["cache", "--older-than", "7"]) == 0
    assert "compiled networks: removed 2 files" in capsys.readouterr().out
    assert not old_ir.exists() and (used_ir / "model.bin").exists() and read_card(key) is not None
