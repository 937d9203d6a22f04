"""The few-shot heads (training/fewshot.py): a linear head from a few examples per class, its setting chosen by
cross-validation over whole groups, refusals in one line; and one check on real I3D features of real UCF101 clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from actionrec.errors import ActionrecError
from actionrec.training import fewshot
from actionrec.training.fewshot import choose_head, fit_head, group_folds, load_into

SUBSET = Path(__file__).resolve().parents[2] / "shared" / "ucf101_subset"
D, K = 64, 3


def clusters(per_class: int, clips: int = 3, spread: float = 1.0, seed: int = 0, offset: float = 4.0):
    """Gaussian clusters around K class means (all shifted by `offset`, as pooled ReLU features are), `clips` rows per
    group (a video), `per_class` groups per class; and 60 test rows per class."""
    rng = np.random.default_rng(seed)
    means = offset + rng.normal(size=(K, D))
    y = np.repeat(np.arange(K), per_class * clips)
    groups = np.repeat(np.arange(K * per_class), clips)
    video = means[y] + spread * rng.normal(size=(len(y), D))  # each group its own centre, its clips close to it
    x = video + 0.3 * spread * rng.normal(size=(len(y), D))
    test_y = np.repeat(np.arange(K), 60)
    test_x = means[test_y] + spread * rng.normal(size=(len(test_y), D))
    return x, y, groups, test_x, test_y


@pytest.mark.parametrize("head", fewshot.HEADS)
@pytest.mark.parametrize("per_class", [1, 2, 5])
def test_separable_clusters_are_classified(head, per_class):
    x, y, g, tx, ty = clusters(per_class)
    fit = fit_head(x, y, g, K, head=head)
    assert fit.head == head and fit.weight.shape == (K, D) and fit.bias.shape == (K,)
    assert (fit.logits(tx).argmax(1) == ty).mean() >= 0.95
    assert (fit.logits(x).argmax(1) == y).all()


def test_the_head_is_the_runs_linear_layer():
    x, y, g, tx, _ = clusters(3)
    for head in fewshot.HEADS:
        fit = fit_head(x, y, g, K, head=head)
        linear = torch.nn.Linear(D, K)
        load_into(linear, fit)
        with torch.no_grad():
            out = linear(torch.from_numpy(tx).float()).numpy()
        np.testing.assert_allclose(out, fit.logits(tx), rtol=1e-4, atol=1e-3)


def test_deterministic_and_independent_of_row_order():
    x, y, g, tx, _ = clusters(3, seed=5)
    a, b = fit_head(x, y, g, K, head="logistic"), fit_head(x, y, g, K, head="logistic")
    np.testing.assert_array_equal(a.weight, b.weight)
    assert a.setting == b.setting and a.cv_loss == b.cv_loss
    order = np.random.default_rng(1).permutation(len(y))
    c = fit_head(x[order], y[order], g[order], K, head="logistic")
    assert c.setting == a.setting
    np.testing.assert_allclose(c.logits(tx), a.logits(tx), atol=1e-3)


def test_penalty_grows_with_label_noise():
    """Clean clusters: a weak penalty fits best out of fold; labels unrelated to the features: the strongest one."""
    x, y, g, _, _ = clusters(6, spread=0.5)
    clean = fit_head(x, y, g, K, head="logistic")
    noisy_y = np.random.default_rng(3).integers(0, K, size=len(set(g.tolist())))[g]  # one random label per group
    noisy = fit_head(x, noisy_y, g, K, head="logistic")
    assert clean.setting <= fewshot.PENALTIES[2] < noisy.setting == max(fewshot.PENALTIES)
    assert clean.cv_loss < noisy.cv_loss


def test_settings_are_chosen_by_cross_validation_only_when_folds_exist():
    x, y, g, _, _ = clusters(1)
    one = fit_head(x, y, g, K, head="prototype")  # one video per class: nothing to hold out
    assert one.setting == fewshot.DEFAULT_TEMPERATURE and one.oof_probs is None and np.isnan(one.cv_loss)
    assert one.chosen_by.startswith("default")
    x, y, g, _, _ = clusters(2)
    two = fit_head(x, y, g, K, head="prototype")
    assert "6 groups in 6 folds" in two.chosen_by and two.setting in fewshot.TEMPERATURES
    assert two.oof_probs.shape == (len(y), K)
    np.testing.assert_allclose(two.oof_probs.sum(1), 1.0, atol=1e-9)
    assert two.describe()["temperature"] == two.setting
    fixed = fit_head(x, y, g, K, setting=0.5)
    assert fixed.setting == 0.5 and fixed.chosen_by == "the caller"


def test_folds_hold_out_whole_groups_and_every_class_keeps_a_row():
    x, y, g, _, _ = clusters(5)
    folds = group_folds(y, g)
    assert len(folds) == min(15, fewshot.MAX_FOLDS)
    held = np.zeros(len(y), int)
    for mask in folds:
        held += mask
        for group in set(g.tolist()):
            assert mask[g == group].all() or not mask[g == group].any()  # a group is held out whole
        assert set(y[~mask].tolist()) == set(range(K))
    assert (held == 1).all()  # every row out of fold exactly once
    y1, g1 = np.array([0, 0, 1, 1, 1]), np.array(["a", "a", "b", "c", "c"])
    assert [m.tolist() for m in group_folds(y1, g1)] == [[False, False, True, False, False],
                                                         [False, False, False, True, True]]  # never class 0's only group


def test_choose_head_follows_the_measured_threshold():
    assert all(choose_head(n) == "logistic" for n in (1, 2, 3, 5, fewshot.FEWSHOT_UP_TO))
    assert choose_head(fewshot.FEWSHOT_UP_TO + 1) == choose_head(100) == fewshot.SOFTMAX
    assert fewshot.training_views() == [0, "u0of2", "u1of2", "0m"]  # central, the test views' two, central mirrored
    x, y, g, _, _ = clusters(3)
    assert fewshot.fewest_examples(y, g, K) == 3
    assert fewshot.fewest_examples(y[3:], g[3:], K) == 2
    fit = fit_head(x, y, g, K)
    assert fit.head == "logistic"
    line = fewshot.reason(fit, 3, 3)
    assert "logistic head: 3 video(s) or source(s) per class" in line and "penalty" in line and "\n" not in line


def with_background(seed: int = 0, videos: int = 3):
    """Rows of K classes and a ``none`` class (index K) from `videos` source videos, each with every class and a
    background of one kind (as bench_label's videos have archery or arm wrestling between the actions): 3 clips per
    video and class, grouped by video; 20 new videos of each class for testing, and 60 rows of a background of
    another kind. Every row is 10 long (the open-set none is a level of cosine for rows of one length; the real
    features' lengths vary, see fewshot._fit_open_set)."""
    rng = np.random.default_rng(seed)
    kinds = 1.0 + rng.normal(size=(K + 2, D))  # the classes, the labelled background, an unseen background

    def rows(kind: int, n: int) -> np.ndarray:  # n videos of a kind: each its own centre, 3 clips near it
        centres = kinds[kind] + 0.5 * rng.normal(size=(n, D))
        out = np.repeat(centres, 3, axis=0) + 0.3 * rng.normal(size=(3 * n, D))
        return 10 * out / np.linalg.norm(out, axis=1, keepdims=True)

    x = np.concatenate([rows(k, videos) for k in range(K + 1)])
    y = np.repeat(np.arange(K + 1), 3 * videos)
    g = np.tile(np.repeat(np.arange(videos), 3), K + 1)
    tx, ty = np.concatenate([rows(k, 20) for k in range(K)]), np.repeat(np.arange(K), 60)
    return x, y, g, tx, ty, rows(K + 1, 20)


def test_an_open_set_none_is_a_constant_logit_calibrated_out_of_fold():
    x, y, g, tx, ty, unseen = with_background()
    fit = fit_head(x, y, g, K + 1, background=K)
    assert fit.head == fewshot.OPEN_SET_HEAD and "open-set none" in fit.chosen_by
    assert not fit.weight[K].any() and fit.bias[K] == pytest.approx(fit.none_logit, rel=1e-6) and fit.none_logit > 0
    assert not fit.bias[:K].any() and fit.describe()["none"] == {"open_set": True, "logit": round(fit.none_logit, 4)}
    linear = torch.nn.Linear(D, K + 1)  # still the run's ordinary linear layer
    load_into(linear, fit)
    with torch.no_grad():
        np.testing.assert_allclose(linear(torch.from_numpy(tx).float()).numpy(), fit.logits(tx), rtol=1e-4, atol=1e-3)
    # out of fold: every row scored by a head that never saw its video; the none column's mean is the none share
    assert fit.oof_probs.shape == (len(y), K + 1)
    np.testing.assert_allclose(fit.oof_probs.sum(1), 1.0, atol=1e-9)
    assert fit.oof_probs[:, K].mean() == pytest.approx((y == K).mean(), abs=1e-6)
    assert (fit.logits(tx).argmax(1) == ty).mean() >= 0.9  # the classes are still the classes
    assert (fit.logits(unseen).argmax(1) == K).mean() >= 0.9  # a background no video had is none
    fixed = fit_head(x, y, g, K + 1, background=K, setting=8.0)  # a given temperature: the constant still calibrated
    assert fixed.setting == 8.0 and fixed.chosen_by.startswith("the caller, with an open-set none")
    assert fixed.oof_probs[:, K].mean() == pytest.approx((y == K).mean(), abs=1e-6)


def test_none_as_a_class_calls_an_unseen_background_something_else():
    """What the open-set none is for: fitted as a class, none learns the labelled backgrounds, and one unlike them
    goes to whichever class is nearest."""
    x, y, g, _, _, unseen = with_background()
    closed = fit_head(x, y, g, K + 1, head="prototype")
    assert closed.none_logit is None and not closed.bias.any()
    assert (closed.logits(unseen).argmax(1) == K).mean() < 0.5


def test_without_folds_none_stays_a_class_and_without_none_nothing_changes():
    x, y, g, _, _, _ = with_background(videos=1)
    one = fit_head(x, y, g, K + 1, background=K)  # one video: no fold to calibrate the none logit on
    assert one.head == "logistic" and one.none_logit is None and not one.bias.any() and one.oof_probs is None
    x, y, g, _, _ = clusters(2)
    default, logistic = fit_head(x, y, g, K), fit_head(x, y, g, K, head="logistic")
    assert default.head == "logistic" and np.array_equal(default.weight, logistic.weight) and "none" not in default.describe()


def test_refusals_are_one_line():
    x, y, g, _, _ = clusters(2)
    keep = y != 1
    with pytest.raises(ActionrecError, match="Lipstick has no training example") as err:
        fit_head(x[keep], y[keep], g[keep], K, class_names=["Eye", "Lipstick", "Baby"])
    assert "\n" not in str(err.value)
    with pytest.raises(ActionrecError, match="class 1 has no training example"):
        fit_head(x[keep], y[keep], g[keep], K)
    with pytest.raises(ActionrecError, match="unknown few-shot head"):
        fit_head(x, y, g, K, head="svm")
    with pytest.raises(ActionrecError, match="one row each"):
        fit_head(x, y[:-1], g, K)


def _central_features(model, videos: list[Path]) -> np.ndarray:
    from actionrec.data.sampling import central_clip
    from actionrec.data.transforms import preprocess
    from actionrec.data.video import probe, read_clips

    spec = model.info.spec
    clips = []
    for video in videos:
        info = probe(str(video))
        span = central_clip(info.num_frames, info.fps, n=16, target_fps=spec.fps)
        clip = next(iter(read_clips(str(video), [span], short_side=spec.resize)))
        clips.append(preprocess(clip.frames, spec))
    with torch.no_grad():
        return model.forward_features(torch.stack(clips)).float().numpy()


def test_two_real_videos_per_class_classify_real_test_videos(i3d_kinetics):
    """Real I3D features of real UCF101 clips: 2 training videos per class (distinct groups), 2 test videos per class
    from other groups, all classified by both heads."""
    if not SUBSET.is_dir():
        pytest.skip(f"{SUBSET} is absent: this test needs the project's shared/ folder beside the checkout")
    classes = ["ApplyEyeMakeup", "BabyCrawling", "ApplyLipstick"]
    pick = lambda c, gs: [next(iter(sorted(SUBSET.rglob(f"v_{c}_g{g:02d}_c*.avi")))) for g in gs]
    train = [v for c in classes for v in pick(c, (8, 15))]
    test = [v for c in classes for v in pick(c, (1, 3))]
    feats = _central_features(i3d_kinetics, train + test)
    y, ty = np.repeat(np.arange(3), 2), np.repeat(np.arange(3), 2)
    for head in fewshot.HEADS:
        fit = fit_head(feats[: len(train)], y, np.arange(len(train)), 3, head=head)
        assert (fit.logits(feats[len(train):]).argmax(1) == ty).all(), head
