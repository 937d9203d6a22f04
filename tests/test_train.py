"""End to end on small real video files: train -> run dir -> evaluate -> predict -> compare; the cache; bad data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from actionrec.cli import main

pytestmark = pytest.mark.usefixtures("i3d_kinetics")  # the real pretrained backbone, fetched once


@pytest.fixture(scope="module")
def run(demo_run) -> Path:
    return demo_run[0]


@pytest.fixture(scope="module")
def demo_data(demo_run) -> Path:
    return demo_run[1]


@pytest.fixture(scope="module")
def cache_dir(demo_run) -> Path:
    return demo_run[2]


def test_run_directory_holds_model_metrics_plots_and_report(run):
    for name in ("model.safetensors", "config.json", "metrics.json", "curves.png", "confusion.png", "report.html"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    classes = metrics["classes"]
    assert classes == ["Bouncing", "Sliding", "Spinning", "Zooming"]
    phases = [row["phase"] for row in metrics["history"]]
    assert phases[0] == "head" and phases[-1] == "finetune" and phases.count("finetune") <= 2
    for row in metrics["history"]:
        assert {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "phase"} <= set(row)
    assert set(metrics["per_class"]) == set(classes)
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (4, 4) and cm.sum() == sum(c["test"] for c in metrics["splits"]["counts"].values())
    assert {"features", "head", "finetune", "evaluate"} <= set(metrics["timing"])
    # Held out whole groups: well above chance (25 %) with frozen I3D features and a softmax head.
    assert metrics["test_accuracy"] >= 0.6, metrics["test_accuracy"]
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2


def test_the_run_records_the_engine_that_computed_its_features(run, i3d_kinetics):
    from actionrec.models.backends import resolve_precision

    config = json.loads((run / "config.json").read_text())
    assert config["engine"]["backend"] in ("openvino", "torch")
    # what auto picks for its pretrained backbone on this CPU (int8 where assets/precision.json says so, else float)
    precision = resolve_precision("auto", info=i3d_kinetics.info, backend=config["engine"]["backend"])
    assert config["engine"]["precision"] == precision
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["engine"]["precision"] == config["engine"]["precision"] and "cpu_flags" in metrics["engine"]
    check = metrics["int8_check"]  # an int8 run scored its validation videos at the float precision too
    if precision == "int8":
        assert check["checked"] and check["videos"] == metrics["splits"]["clips"]["val"] > 0
        assert check["float_precision"] in ("fp32", "bf16") and 0 <= check["top1_agreement"] <= 1
        assert all(0 <= check[k] <= 1 for k in ("int8_val_accuracy", "float_val_accuracy"))
        assert "beside the float result" in (run / "report.html").read_text()
    else:
        assert check is None


def test_test_videos_are_scored_from_two_views_and_every_miss_is_in_the_gallery(run):
    metrics = json.loads((run / "metrics.json").read_text())
    preds, classes = metrics["test_predictions"], metrics["classes"]
    assert metrics["test_views"] == 2 and len(preds) == np.sum(metrics["confusion_matrix"])
    assert metrics["splits"]["clips"]["test"] == 2 * len(preds)  # two cached clips per test video
    wrong = [p for p in preds if classes[int(np.argmax(p["probs"]))] != p["label"]]
    assert len(preds) - len(wrong) == round(metrics["test_accuracy"] * len(preds))
    page = (run / "report.html").read_text()
    assert "Misclassified test videos" in page
    assert page.count("data:image/jpeg;base64,") == len(wrong)  # one strip of frames per miss
    for p in wrong:
        assert os.path.basename(p["video"]) in page


def test_second_run_reuses_the_cache_and_is_reproducible(run, demo_data, cache_dir, tmp_path):
    out = tmp_path / "second"
    args = ["train", str(demo_data), "--out", str(out), "--cache", str(cache_dir), "--finetune-epochs", "2",
            "--head-fit", "softmax", "--quiet"]
    assert main(args) == 0
    first = json.loads((run / "metrics.json").read_text())
    second = json.loads((out / "metrics.json").read_text())
    assert second["feature_cache"]["backbone_clips"] == 0  # the backbone was not called again
    assert first["feature_cache"]["backbone_clips"] > 0
    assert second["history"] == first["history"]
    assert second["test_accuracy"] == first["test_accuracy"] and second["confusion_matrix"] == first["confusion_matrix"]


def test_evaluate_predict_and_compare_a_trained_run(run, demo_data, cache_dir, capsys):
    assert main(["evaluate", str(run), str(demo_data), "--cache", str(cache_dir), "--json", "--quiet"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    run_metrics = json.loads((run / "metrics.json").read_text())
    tested = sum(c["test"] for c in run_metrics["splits"]["counts"].values())
    assert metrics["videos"] == 36 and metrics["test_views"] == 2 and metrics["test_accuracy"] >= 0.6
    # the test videos' two views came from the run's cache (the session's cache is shared: other modules' runs may
    # have cached more of the demo set's views, never fewer)
    assert metrics["backbone_clips"] <= 2 * (36 - tested)
    assert main(["evaluate", str(run), str(demo_data), "--cache", str(cache_dir), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["backbone_clips"] == 0  # now every view is cached
    assert main(["evaluate", str(run), str(demo_data), "--cache", str(cache_dir), "--json", "--quiet", "--test-views", "1"]) == 0
    central = json.loads(capsys.readouterr().out)
    assert central["test_views"] == 1 and central["backbone_clips"] <= 36 - 24  # the training videos' central clips are cached

    video = sorted((demo_data / "Spinning").glob("*.mp4"))[0]
    assert main(["predict", str(video), "--run", str(run), "--json", "--top", "4"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["model"] == str(run) and line["video"] == str(video)
    assert sorted(t["label"] for t in line["top"]) == ["Bouncing", "Sliding", "Spinning", "Zooming"]
    assert abs(sum(t["prob"] for t in line["top"]) - 1.0) < 1e-4

    assert main(["compare", str(run), str(run)]) == 0
    table = capsys.readouterr().out
    assert "Spinning" in table and "test accuracy" in table.lower()


def test_evaluate_predict_and_the_test_phase_give_one_set_of_numbers(run, demo_data, cache_dir):
    """One precision per run: `evaluate RUN` (cached activations at the cut, the trained layers in fp32), `predict
    --run RUN` (the engine: the frozen part at its precision, the trained layers as in training) and the run's own
    test phase give the same probabilities for the same video and views."""
    from actionrec import load_model, predict
    from actionrec.data.datasets import load_dataset
    from actionrec.training.evaluate import evaluate_run

    model = load_model(run)
    config = json.loads((run / "config.json").read_text())
    assert model.engine.precision == config["engine"]["precision"] and model.info.cut == "MaxPool3d_5a_2x2"
    tested = {p["video"]: p["probs"] for p in json.loads((run / "metrics.json").read_text())["test_predictions"]}
    samples = [s for s in load_dataset(str(demo_data)) if s.path in tested][:4]
    assert len(samples) == 4
    for views in (2, 1):
        evaluated = evaluate_run(run, samples, cache_root=cache_dir, progress=False, test_views=views)["predictions"]
        predicted = predict([s.path for s in samples], model=model, test_views=views)
        assert [e["video"] for e in evaluated] == [p.video for p in predicted] == [s.path for s in samples]
        for e, p in zip(evaluated, predicted):
            np.testing.assert_allclose(p.probs, e["probs"], atol=2e-5)
            if views == 2:  # the run's own test views: the numbers its test phase wrote (rounded to 5 decimals)
                np.testing.assert_allclose(p.probs, tested[p.video], atol=2e-5)


def test_killed_extraction_leaves_no_corrupt_entry_and_resumes(demo_data, tmp_path, i3d_kinetics):
    """SIGKILL a real extraction mid-way: every entry on disk is whole, and a rerun computes only the rest."""
    from actionrec.training.features import FeatureCache, Sampling, read_entry

    videos = sorted(str(p) for p in demo_data.glob("*/*.mp4"))[:10]
    cache_root = tmp_path / "cache"
    script = (
        "import sys; from actionrec import load_model; from actionrec.training.features import FeatureCache, Sampling;"
        f"c = FeatureCache(load_model('i3d-kinetics400'), 'MaxPool3d_5a_2x2', Sampling(), root={str(cache_root)!r});"
        f"c.extract({videos!r}, batch_size=1)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy())
    deadline = time.time() + 300
    while time.time() < deadline and len(list(cache_root.rglob("*.npz"))) < 2:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    done = list(cache_root.rglob("*.npz"))
    assert 2 <= len(done) < len(videos)
    for entry in done:
        assert read_entry(entry).shape == (832, 2, 7, 7)
    cache = FeatureCache(i3d_kinetics, "MaxPool3d_5a_2x2", Sampling(), root=cache_root)
    entries = cache.extract(videos)
    assert len(entries) == len(videos)
    assert cache.backbone_calls == len(videos) - len(done)


def test_unreadable_video_is_skipped_and_reported(run, demo_data, cache_dir, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    for cls in ("Bouncing", "Sliding"):
        shutil.copytree(demo_data / cls, data / cls)
    (data / "Sliding" / "Sliding_s99_c01.mp4").write_bytes(b"\0" * 4096)
    out = tmp_path / "run"
    assert main(["train", str(data), "--out", str(out), "--cache", str(cache_dir), "--finetune-epochs", "0", "--epochs", "3",
                 "--head-fit", "softmax", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["video"] for s in metrics["skipped"]] == [str(data / "Sliding" / "Sliding_s99_c01.mp4")]
    assert metrics["head_test_accuracy"] is None and all(r["phase"] == "head" for r in metrics["history"])
    # --quiet hides progress, never a skipped file: one line of its own, naming it
    err = capsys.readouterr().err.splitlines()
    assert err == [line for line in err if line.startswith("skipped: ")] and len(err) == 1
    assert str(data / "Sliding" / "Sliding_s99_c01.mp4") in err[0]
    # the split counts are of the clips trained and tested on: the unreadable one is not among them
    counts = metrics["splits"]["counts"]
    clips = metrics["splits"]["clips"]  # cached clips: two views per test video
    assert sum(counts["Sliding"].values()) == 9 and clips["train"] + clips["val"] + clips["test"] // 2 == 18
    assert sum(sum(c.values()) for c in counts.values()) == 18

    # evaluate --quiet says the skipped file too (and exits 1 for it)
    assert main(["evaluate", str(run), str(data), "--classes", "Bouncing,Sliding", "--cache", str(cache_dir), "--quiet"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("skipped: ") and "Sliding_s99_c01.mp4" in err[0]


def test_a_class_without_a_readable_clip_is_left_out_with_one_warning(demo_data, cache_dir, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    for cls in ("Bouncing", "Sliding"):
        shutil.copytree(demo_data / cls, data / cls)
    (data / "Broken").mkdir()
    for i in range(3):
        (data / "Broken" / f"Broken_s{i}_c01.mp4").write_bytes(os.urandom(2048))
    out = tmp_path / "run"
    assert main(["train", str(data), "--out", str(out), "--cache", str(cache_dir), "--finetune-epochs", "0", "--epochs", "2", "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert sum(line.startswith("skipped: ") for line in err) == 3
    assert [line for line in err if not line.startswith("skipped: ")] == ["warning: class Broken left out: none of its training clips could be read"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["Bouncing", "Sliding"] and set(metrics["splits"]["counts"]) == {"Bouncing", "Sliding"}
    assert json.loads((out / "config.json").read_text())["classes"] == ["Bouncing", "Sliding"]
    assert "Broken" in metrics["splits"]["policy"]


def test_single_class_and_empty_class_get_one_line(tmp_path, capsys):
    (tmp_path / "one" / "Only").mkdir(parents=True)
    (tmp_path / "one" / "Only" / "a_c01.mp4").write_bytes(b"x")
    assert main(["train", str(tmp_path / "one"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "class" in err[0]
    (tmp_path / "one" / "Empty").mkdir()
    assert main(["train", str(tmp_path / "one"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Empty" in err[0]


def test_lr_auto_shows_its_range_test_and_fine_tuning_never_ends_worse_on_validation(demo_data, cache_dir, tmp_path):
    out = tmp_path / "auto"
    # a fine-tuning rate far too high: its epochs lose to the head's state on the validation loss, which is kept
    args = ["train", str(demo_data), "--out", str(out), "--cache", str(cache_dir), "--lr", "auto", "--epochs", "5",
            "--finetune-epochs", "2", "--finetune-lr", "50", "--head-fit", "softmax", "--quiet"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    r = metrics["lr_range"]
    assert r["chosen"] > 0 and len(r["lrs"]) == len(r["losses"]) >= 5 and r["lrs"][0] <= r["chosen"] <= r["lrs"][-1]
    assert metrics["config"]["lr"] == "auto"
    assert metrics["history"][0]["lr"] <= r["chosen"] * 1.0001  # the head trained at the chosen rate (cosine from it)
    page = (out / "report.html").read_text()
    assert "Learning rate (range test)" in page and page.count("data:image/png;base64,") == 3
    assert "finetune" not in metrics["best_epoch"]  # no epoch beat the state it started from, which is kept
    assert json.loads((out / "config.json").read_text())["trained_modules"] == ["head"]  # Mixed_5b/5c as pretrained
    assert metrics["test_accuracy"] == metrics["head_test_accuracy"]


def test_predict_with_a_run_averages_its_test_views(run, demo_data):
    import actionrec

    video = sorted((demo_data / "Spinning").glob("*.mp4"))[0]
    (two,) = actionrec.predict(video, model=str(run))
    (one,) = actionrec.predict(video, model=str(run), test_views=1)
    assert (two.views, one.views, two.frames) == (2, 1, 16)
    assert not np.allclose(two.probs, one.probs)


def test_a_temporal_head_run_trains_loads_and_predicts(demo_data, cache_dir, tmp_path):
    import actionrec
    from actionrec.apps.windows import window_probabilities
    from actionrec.errors import ActionrecError

    out = tmp_path / "temporal"
    args = ["train", str(demo_data), "--out", str(out), "--cache", str(cache_dir), "--head", "temporal",
            "--epochs", "5", "--finetune-epochs", "0", "--quiet"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert metrics["head"] == "temporal" and config["frames"] == 64 and config["temporal_head"]["kind"] == "conv"
    assert config["trained_modules"] == ["head", "temporal_head"]
    phases = [row["phase"] for row in metrics["history"]]
    assert phases[:5] == ["head"] * 5 and set(phases[5:]) == {"temporal"} and len(phases) > 5
    assert 0 <= metrics["linear_test_accuracy"] <= 1 and metrics["test_accuracy"] >= 0.5
    assert "linear head on the same clips" in (out / "report.html").read_text()

    model = actionrec.load_model(out, fast=False)  # rebuilt with its temporal head, loaded strictly
    assert model.temporal_head is not None and model.info.predict_frames == 64
    by_video = {p["video"]: p for p in metrics["test_predictions"]}
    video = sorted(by_video)[0]
    (pred,) = actionrec.predict(video, model=model)
    assert pred.frames == 64 and pred.views == 2
    np.testing.assert_allclose(pred.probs, by_video[video]["probs"], atol=0.02)  # the run's own test, through the engine
    with pytest.raises(ActionrecError, match="per-step logits need"):
        window_probabilities(video, model, per_step=True, cache=False)
    # OpenVINO traces the temporal head for its number of steps: clips of other lengths get graphs of their own
    from actionrec.engine import Engine

    engine = Engine(model, precision="fp32")
    for frames in (64, 32):
        x = torch.rand(1, 3, frames, 224, 224) * 2 - 1
        with torch.no_grad():
            np.testing.assert_allclose(engine.forward(x, "logits"), model(x), atol=1e-3)
    if os.environ.get("ACTIONREC_BACKEND", "auto") == "auto":
        assert engine.backend == "openvino"  # it ran there (a failure would have fallen back to PyTorch)


def test_a_video_scored_from_several_clips_gets_the_mean_of_their_probabilities():
    from actionrec.training.phases import video_log_probs

    torch.manual_seed(0)
    log_probs = (torch.randn(7, 4) * 30).log_softmax(-1)  # confident clips: probabilities down to ~1e-40
    owners = torch.tensor([0, 0, 0, 1, 2, 2, 3])
    mean = torch.stack([log_probs[owners == v].double().exp().mean(0) for v in range(4)])
    got = video_log_probs(log_probs, owners, 4)
    assert torch.allclose(got.double().exp(), mean, atol=1e-7) and torch.isfinite(got).all()
    assert torch.equal(got[1], log_probs[3])  # one clip: its own


# ----------------------------------------------------------------------------------------------- few examples


@pytest.fixture(scope="module")
def fewshot_run(demo_data, cache_dir, tmp_path_factory) -> Path:
    """`actionrec train` with its defaults on the demo set: 2 sources per class for training, so the few-shot head."""
    out = tmp_path_factory.mktemp("fewshot") / "run"
    assert main(["train", str(demo_data), "--out", str(out), "--cache", str(cache_dir), "--quiet"]) == 0
    return out


def test_a_none_class_is_open_set_in_the_saved_linear_head(demo_data, cache_dir, tmp_path):
    """A class named none (a fully labelled video's background; here a folder of it) makes the few-shot head's none
    open-set: the prototype head for the classes and none a constant logit, all in the run's ordinary linear head."""
    from actionrec.models.runs import load_run

    data = tmp_path / "data"
    data.mkdir()
    for name, source in (("Bouncing", "Bouncing"), ("Sliding", "Sliding"), ("Spinning", "Spinning"), ("none", "Zooming")):
        (data / name).symlink_to(demo_data / source, target_is_directory=True)
    out = tmp_path / "run"
    assert main(["train", str(data), "--out", str(out), "--cache", str(cache_dir), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    fit = metrics["head_fit"]
    assert metrics["classes"] == ["Bouncing", "Sliding", "Spinning", "none"]
    assert fit["head"] == "prototype" and fit["none"]["open_set"] and "open-set none" in fit["chosen_by"]
    assert "with an open-set none" in fit["reason"]
    head = load_run(out).head  # what the engine, predict, the timeline and export load
    assert not head.weight[3].any() and head.bias[3].item() == pytest.approx(fit["none"]["logit"], abs=1e-3)
    assert not head.bias[:3].any() and head.weight[:3].abs().sum() > 0
    probs = np.array(metrics["val_probs"])  # out of fold, the none column included: the timeline calibrates on them
    assert probs.shape[1] == 4 and sorted(set(metrics["val_labels"])) == [0, 1, 2, 3]
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)


def test_few_sources_per_class_train_the_few_shot_head_without_validation(fewshot_run):
    metrics = json.loads((fewshot_run / "metrics.json").read_text())
    fit, splits = metrics["head_fit"], metrics["splits"]
    assert fit["head"] == "logistic" and fit["penalty"] > 0 and "cross-validation over 8 groups" in fit["chosen_by"]
    assert "2 video(s) or source(s) per class (<= 10), 4 clip(s) per video" in fit["reason"]
    assert "few-shot head (2 group(s) in the smallest class): no validation hold-out" in splits["policy"]
    trained = sum(c["train"] for c in splits["counts"].values())
    assert all(c["val"] == 0 for c in splits["counts"].values()) and trained == 24  # validation moved into training
    assert splits["clips"] == {"train": 4 * trained, "val": 0, "test": 2 * 12}  # four clips per training video
    assert metrics["history"] == [] and metrics["best_epoch"] == {} and "finetune" not in metrics["timing"]
    assert metrics["head_test_accuracy"] is None and metrics["test_accuracy"] >= 0.6
    # the timeline calibrates on probabilities no fold trained on: each training video's, from the fold holding it out
    probs, labels = np.array(metrics["val_probs"]), metrics["val_labels"]
    assert probs.shape == (trained, 4) and len(labels) == trained and sorted(set(labels)) == [0, 1, 2, 3]
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)
    config = json.loads((fewshot_run / "config.json").read_text())
    assert config["train_config"]["head_fit"] == "logistic" and config["train_config"]["finetune_epochs"] == 0
    assert config["train_config"]["train_views"] == [0, "u0of2", "u1of2", "0m"] and config["trained_modules"] == ["head"]
    assert config["train_config"]["crop"] == config["preprocessing"]["crop"] == 256  # fewshot.crop_for("i3d")
    from actionrec.models.runs import load_run

    assert load_run(fewshot_run).info.spec.crop == 256  # what predict and the timeline of the run feed it


def test_the_few_shot_run_predicts_its_own_test_numbers_and_reports_why(fewshot_run, run, demo_data, capsys):
    import actionrec

    metrics = json.loads((fewshot_run / "metrics.json").read_text())
    tested = metrics["test_predictions"][:3]
    predicted = actionrec.predict([p["video"] for p in tested], model=str(fewshot_run))
    for p, t in zip(predicted, tested):
        np.testing.assert_allclose(p.probs, t["probs"], atol=2e-5)  # an ordinary linear head: the engine runs it
    page = (fewshot_run / "report.html").read_text()
    assert "<h2>Head</h2>" in page and "logistic head: 2 video(s) or source(s) per class" in page
    assert "No epochs" in page and page.count("data:image/png;base64,") == 1  # no curves: no epochs
    assert main(["compare", str(run), str(fewshot_run)]) == 0
    table = capsys.readouterr().out
    line = next(row for row in table.splitlines() if row.startswith("head fit  "))
    assert line.split()[2:] == ["softmax", "logistic"]
    assert "softmax head: --head-fit softmax" in table and "penalty" in table


def test_the_forced_softmax_run_keeps_validation_and_says_why(run):
    metrics = json.loads((run / "metrics.json").read_text())  # demo_run: --head-fit softmax on 2 sources per class
    assert metrics["head_fit"] == {"head": "softmax", "reason": "softmax head: --head-fit softmax (2 group(s) in the "
                                   "smallest class), SGD with validation"}
    assert all(c["val"] > 0 for c in metrics["splits"]["counts"].values()) and "few-shot" not in metrics["splits"]["policy"]
    assert json.loads((run / "config.json").read_text())["train_config"]["train_views"] == [0]


def test_head_fit_flag_and_its_choice():
    from dataclasses import replace

    from actionrec.data.samples import Sample
    from actionrec.data.splits import Splits
    from actionrec.errors import ActionrecError
    from actionrec.training.config import TrainConfig
    from actionrec.training.fewshot import FEWSHOT_UP_TO
    from actionrec.training.trainer import HeadChoice, choose_head_fit

    def splits(groups: int) -> Splits:
        train = [Sample(f"/v/{c}{g}.mp4", c, f"{c}{g}") for c in "ab" for g in range(groups)]
        return Splits(train[1:], train[:1], [], ["a", "b"], "policy")

    few, many = splits(3), splits(FEWSHOT_UP_TO + 1)
    moved, cfg, choice = choose_head_fit(few, TrainConfig())
    assert (choice.fit, choice.fewest, choice.forced, cfg.head_fit, cfg.finetune_epochs) == ("logistic", 3, False, "logistic", 0)
    assert moved.val == [] and sorted(s.path for s in moved.train) == sorted(s.path for s in few.train + few.val)
    assert moved.policy.startswith("policy; few-shot head (3 group(s) in the smallest class)")
    assert cfg.crop == 256 and choose_head_fit(few, TrainConfig(crop=224))[1].crop == 224  # the few-shot crop; --crop wins
    assert choose_head_fit(few, TrainConfig(backbone="c3d"))[1].crop is None  # C3D keeps its 112
    segments = Splits(few.train + [Sample("/v/long.mp4#t=3,9", "a", "long")], few.val, [], ["a", "b"], "policy")
    assert choose_head_fit(segments, TrainConfig())[1].crop is None  # a segment of a long video: the weights' 224
    same, cfg, choice = choose_head_fit(many, TrainConfig())
    assert same is many and (cfg.head_fit, cfg.finetune_epochs, choice.forced, cfg.crop) == ("softmax", 5, False, None)
    assert "(> 10)" in choice.reason(cfg.resolved())
    assert choose_head_fit(many, TrainConfig(head_fit="logistic"))[2] == HeadChoice("logistic", FEWSHOT_UP_TO + 1, True)
    assert choose_head_fit(few, TrainConfig(head_fit="softmax"))[0] is few
    assert choose_head_fit(few, TrainConfig(head="temporal"))[1].head_fit == "softmax"  # trains on validation
    with pytest.raises(ActionrecError, match="--head-fit bayes: choose one of: auto, logistic, softmax"):
        TrainConfig(head_fit="bayes")
    with pytest.raises(ActionrecError, match="with --head temporal use --head-fit auto or softmax"):
        replace(TrainConfig(), head="temporal", head_fit="logistic")


def test_crop_refusals_are_one_line():
    from actionrec.errors import ActionrecError
    from actionrec.models.pretrained import get_spec, with_crop
    from actionrec.training.config import TrainConfig

    spec = get_spec("i3d-kinetics400")
    assert with_crop(spec, None) is spec and with_crop(spec, 256).crop == 256 and with_crop(spec, 256).resize == 256
    with pytest.raises(ActionrecError, match="--crop 300: i3d-kinetics400 resizes frames to a short side of 256 pixels; "
                                             "pass --crop 256 or less"):
        with_crop(spec, 300)
    with pytest.raises(ActionrecError, match="--crop 128: C3D takes crops of exactly 112 pixels"):
        TrainConfig(backbone="c3d", crop=128)
    with pytest.raises(ActionrecError, match="--crop must be a whole number >= 32"):
        TrainConfig(crop=8)


def test_a_crop_the_weights_cannot_take_is_one_line_not_missing_weights(demo_data, tmp_path, capsys):
    assert main(["train", str(demo_data), "--crop", "300", "--out", str(tmp_path / "run")]) == 2
    out = capsys.readouterr()
    lines = (out.out + out.err).strip().splitlines()
    assert lines[-1] == ("actionrec: error: --crop 300: i3d-kinetics400 resizes frames to a short side of 256 pixels; "
                         "pass --crop 256 or less")
    assert not any("warning" in line for line in lines), lines  # not taken for missing weights, no random initialisation


def test_head_fit_flag_refusal_is_one_line(capsys):
    assert main(["train", "nowhere", "--head", "temporal", "--head-fit", "logistic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--head-fit logistic" in err[0]


def test_ranks_weigh_a_range_by_its_length_per_clip(demo_data, tmp_path):
    from actionrec.data.video import probe
    from actionrec.training.trainer import _duration

    video = str(sorted((demo_data / "Spinning").glob("*.mp4"))[0])
    assert _duration(video) == pytest.approx(probe(video).duration) and _duration(video) > 0
    assert _duration(f"{video}#t=2,6") == pytest.approx(4.0)
    assert _duration(f"{video}#t=2,6&clip=1of4") == pytest.approx(1.0)
    assert _duration(str(tmp_path / "missing.mp4")) == 0.0


def test_the_gallery_strip_of_a_segment_shows_frames_from_inside_its_range(tmp_path):
    from PIL import Image

    from actionrec.training.gallery import STRIP_FRAMES, THUMB_HEIGHT, thumbnail_strip
    from videos import coded_frames, decode_index, write_video

    video = write_video(tmp_path / "long.mp4", coded_frames(250, height=48, width=64), 25.0)  # frame t shows t
    for address, (low, high) in ((f"{video}#t=4,6", (100, 150)), (f"{video}#t=4,6&clip=1of2", (125, 150)),
                                 (str(video), (0, 250))):
        strip = np.asarray(Image.open(__import__("io").BytesIO(thumbnail_strip(address))).convert("RGB"))
        assert strip.shape[0] == THUMB_HEIGHT
        shown = [decode_index(part) for part in np.array_split(strip, STRIP_FRAMES, axis=1)]
        assert all(low <= t < high for t in shown), (address, shown)
        assert shown == sorted(shown) and shown[-1] - shown[0] >= (high - low) // 2
