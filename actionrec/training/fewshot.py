"""Heads for a few labelled videos per class: a prototype head and logistic regression with a tuned penalty.

Both fit in well under a second on the pooled features of the frozen backbone and end as the run's ordinary linear head
(``logits = features @ weight.T``, bias 0), so saving a run, the engine, predict, the timeline and export are
unchanged. Both are fitted on the training rows scaled to unit length, ``u = x / |x|``, and have no bias, so the
class a clip gets does not depend on its feature's length: the saved weight is the fitted one divided by the mean
length of the training rows, which gives every clip the class of the unit-row head exactly, and its probabilities
as if its length were that mean (pooled I3D features of the real UCF101 clips: 90 % of lengths within
0.74-1.30 times the mean; the probabilities are sharper for longer features, the class is the same). Measured on real
footage (bench/bench_fewshot.py, split 1), unit rows beat rows centred on the mean of the class means and scaled
(prototype head at 2 videos per class: 90.7 against 82.7 %): a centre from 1-3 videos per class is too noisy.

* ``prototype``: cosine to each class's mean direction, times a softmax temperature ``t``: weight row c is
  ``t * m_c / |m_c|`` with ``m_c`` the mean of class c's unit rows.
* ``logistic``: multinomial logistic regression on the unit rows, no bias, mean log-loss plus ``lam / 2 * |W|^2``,
  by Newton's method from zero in the span of the training rows (convex: the same data gives the same head).

With a ``none`` class (the background of fully labelled videos), ``none`` is open-set when there are folds to
calibrate it (:func:`_fit_open_set`): a zero weight row and a constant logit ``b``, so a clip far from every class is
``none`` whatever it looks like, instead of ``none`` learning the few backgrounds labelled (with 2 source videos not
one ``none`` clip was called ``none`` out of fold). Its class head is :data:`OPEN_SET_HEAD`, whose logits are
cosines (bounded, so "far from every class" is a level); measured on stitched real videos (bench/bench_openset.py).

No rows are held out for validation: with 2 videos per class, 20 % is no validation set. The temperature and the
penalty are chosen by cross-validation over whole groups (a training video's clips, a source's segments: never split
between folds), leave-one-group-out up to :data:`MAX_FOLDS` groups, else :data:`MAX_FOLDS` folds of whole groups; the
minimum mean out-of-fold log-loss wins. With one group per class there is no fold to learn from and the defaults
hold. The out-of-fold probabilities of every row are returned: they are what validation probabilities are for
(e.g. calibrating the timeline's thresholds), on data no fold trained on.

Which head for how many examples (:func:`choose_head`) was measured by ``bench/bench_fewshot.py`` on real UCF101
footage (README, "Few examples per class").
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..defaults import FEWSHOT_UP_TO
from ..errors import ActionrecError
from .features import View, mirrored, test_views

HEADS = ("prototype", "logistic")
MAX_FOLDS = 10  # leave-one-group-out up to this many groups, else this many folds of whole groups
TEMPERATURES = (4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)  # prototype: softmax temperatures tried by cross-validation
PENALTIES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # logistic: L2 penalties tried by cross-validation
FEWSHOT_CROP = 256  # pixels: I3D's crop for the few-shot head (crop_for)
DEFAULT_TEMPERATURE = 32.0  # without folds (one group per class)
DEFAULT_PENALTY = 1e-2  # without folds
SOFTMAX = "softmax"  # choose_head's answer above that: the trainer's SGD head with its 20 % validation
OPEN_SET_HEAD = "prototype"  # the class head beside an open-set none (bench/bench_openset.py's rule, README)


@dataclass(frozen=True)
class HeadFit:
    """A fitted linear head: ``logits = features @ weight.T + bias`` on the raw pooled features (bias: zeros)."""

    head: str  # "prototype" or "logistic"
    weight: np.ndarray  # (K, D) float32
    bias: np.ndarray  # (K,) float32
    setting: float  # the temperature (prototype) or the L2 penalty (logistic) used
    chosen_by: str  # "cross-validation over N groups in F folds", or "default (one group per class)"
    oof_probs: np.ndarray | None = field(default=None, repr=False)  # (N, K) out-of-fold probabilities, per row
    cv_loss: float = math.nan  # the mean out-of-fold log-loss of the chosen setting
    none_logit: float | None = None  # open-set none (_fit_open_set): its constant logit (its bias); else None

    def logits(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, np.float32) @ self.weight.T + self.bias

    def describe(self) -> dict:
        """What metrics.json / config.json record of the head (no arrays)."""
        name = "temperature" if self.head == "prototype" else "penalty"
        out = {"head": self.head, name: self.setting, "chosen_by": self.chosen_by,
               "cv_log_loss": None if math.isnan(self.cv_loss) else round(self.cv_loss, 4)}
        if self.none_logit is not None:
            out["none"] = {"open_set": True, "logit": round(self.none_logit, 4)}
        return out


def choose_head(examples_per_class: int) -> str:
    """The head for the fewest training videos (groups) of any class: logistic regression up to
    :data:`FEWSHOT_UP_TO`, the trainer's softmax head above. Measured (bench/bench_fewshot.py, real UCF101, 15-30
    draws each, before the mirrored clip of :func:`training_views` was added): logistic on 3 clips per video scored
    88.6 / 91.9 / 94.3 / 96.4 / 97.4 % at 1 / 2 / 3 / 5 / 10 videos per class against 83.1 / 79.5 / 91.1 / 94.9 / 97.1 % for the softmax head with 20 % validation, and at least the
    prototype head's at every size; at 10 the two tie, and on the whole training set the softmax head is the one
    measured (98.1 %)."""
    return "logistic" if examples_per_class <= FEWSHOT_UP_TO else SOFTMAX


def crop_for(backbone: str, segments: bool) -> int | None:
    """The crop the few-shot head's clips are seen at: :data:`FEWSHOT_CROP` for I3D trained on whole videos; the
    weights' own (224) when any training sample is a segment of a longer video, and for C3D (its fc6 takes 112).

    Whole videos (bench/bench_fewshot_input.py, real UCF101, 60 draws per size over splits 1-3, the same draws, the 4
    clips of :func:`training_views`): the whole 256-pixel height of the resized frame instead of its 224 centre scored
    +2.5 / +1.5 / +1.0 / +0.3 / +0.8 points at 1 / 2 / 3 / 5 / 10 videos per class, no split worse at any size, for
    1.3x the backbone's work per clip. Segments of stitched real videos (bench/bench_openset.py's rule, a model of
    each training video labelling the other): 224 was the better in both settings, 11.6 s against 12.4 s with the
    background labelled and 18.2 s against 19.4 s without (README: few examples per class)."""
    return FEWSHOT_CROP if backbone == "i3d" and not segments else None


def training_views() -> list[View]:
    """The clips of each training video for the few-shot head: the central one, the two of the default test views
    (centred at 1/4 and 3/4 of the video, already cached for test videos), and the central one mirrored left-right
    (features.mirrored). Measured: the three spread clips +4.4 points at 1 video per class, +1.1 at 2, +0.4 at 3 over
    the central clip alone; the mirrored one, chosen by a rule on split 1's draws (bench_fewshot.py variants, 20
    draws per size), +0.7 / +0.7 / +0.2 / +0.2 / +0.1 at 1 / 2 / 3 / 5 / 10 there, -0.4 to +0.5 on splits 2-3
    (README). A segment's clip is trained from itself alone (the trainer keeps the integer views of a range's
    clip): the mirror image was not measured there."""
    return [0, *test_views(2), mirrored(0)]


def reason(fit: HeadFit, examples_per_class: int, clips_per_video: int, forced: bool = False) -> str:
    """One line for the report: which head, for how many examples, how its setting was chosen, and why (`forced`:
    the user asked for it, ``--head-fit``, whatever the number of examples)."""
    setting = f"temperature {fit.setting:g}" if fit.head == "prototype" else f"penalty {fit.setting:g}"
    why = "--head-fit logistic" if forced else f"<= {FEWSHOT_UP_TO}"
    measured = ("with an open-set none it gave the time per class of stitched real videos closest to the truth, by a "
                "rule on the training videos alone (README: from labelled segments to a timeline)"
                if fit.none_logit is not None else "on real UCF101 it beat the softmax head with 20 % validation at "
                "1-5 videos per class and tied at 10 (README: few examples per class)")
    return (f"{fit.head} head: {examples_per_class} video(s) or source(s) per class ({why}), {clips_per_video} "
            f"clip(s) per video, no validation hold-out, {setting} by {fit.chosen_by}; {measured}")


def check_examples(labels: np.ndarray, n_classes: int, names: list[str] | None = None) -> None:
    """One ActionrecError line when a class has no training example."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=n_classes)
    if len(counts) > n_classes:
        raise ActionrecError(f"label {len(counts) - 1} is out of range for {n_classes} classes")
    empty = [i for i in range(n_classes) if counts[i] == 0]
    if empty:
        name = names[empty[0]] if names else f"class {empty[0]}"
        raise ActionrecError(f"{name} has no training example: label at least one video of it, or leave the class out")


def fewest_examples(labels: np.ndarray, groups: np.ndarray, n_classes: int) -> int:
    """The fewest distinct groups (videos, sources) of any class."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    return min(len(set(groups[labels == c].tolist())) for c in range(n_classes))


# ---------------------------------------------------------------------------------------------- the heads


def _unit(x: np.ndarray) -> tuple[np.ndarray, float]:
    """The rows scaled to unit length, and their mean length (the saved weight is divided by it)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms, float(norms.mean())


def _prototype(x: np.ndarray, y: np.ndarray, n_classes: int, temperature: float) -> np.ndarray:
    u, length = _unit(x)
    means = np.stack([u[y == c].mean(0) for c in range(n_classes)])
    return temperature * _unit(means)[0] / length


def _logistic(x: np.ndarray, y: np.ndarray, n_classes: int, penalty: float) -> np.ndarray:
    """Newton's method with backtracking in the span of the training rows (exact for an L2 penalty: at most N
    coordinates instead of D), in float64 torch on one thread (see :func:`fit_head`): milliseconds a fit."""
    u, length = _unit(x)
    z = torch.from_numpy(u)
    eigval, eigvec = torch.linalg.eigh(z @ z.T)  # the row span from the N x N Gram matrix (cheaper than an SVD)
    keep = eigval > eigval.max() * 1e-12
    sing, vec = eigval[keep].sqrt(), eigvec[:, keep]
    basis = (vec / sing).T @ z  # (r, D): orthonormal rows spanning the training rows
    a = vec * sing  # (N, r): the rows' coordinates in that basis
    target = torch.from_numpy(y)
    onehot = torch.eye(n_classes, dtype=z.dtype)[target]
    theta = torch.zeros(a.shape[1], n_classes, dtype=z.dtype)

    def objective(t: torch.Tensor) -> float:
        logits = a @ t
        return float((logits.logsumexp(1) - logits[torch.arange(len(y)), target]).mean() + 0.5 * penalty * (t**2).sum())

    value = objective(theta)
    for _ in range(100):
        p = (a @ theta).softmax(1)
        grad = a.T @ (p - onehot) / len(y) + penalty * theta
        if grad.abs().max() < 1e-9:
            break
        step = torch.linalg.solve(_hessian(a, p, penalty), grad.T.reshape(-1)).reshape(n_classes, -1).T
        size, decrease = 1.0, float((grad * step).sum())
        while size > 1e-10 and objective(theta - size * step) > value - 0.25 * size * decrease:
            size /= 2
        theta -= size * step
        value = objective(theta)
    return (theta.T @ basis).numpy() / length


def _hessian(a: torch.Tensor, p: torch.Tensor, penalty: float) -> torch.Tensor:
    """The Hessian of the mean multinomial log-loss plus the penalty over the parameters in (class, coordinate)
    order: block (k, l) is a.T diag(p_k (delta_kl - p_l)) a / N."""
    k_, m = p.shape[1], a.shape[1]
    h = torch.zeros(k_, m, k_, m, dtype=a.dtype)
    for k in range(k_):
        for l in range(k_):
            w = p[:, k] * (float(k == l) - p[:, l]) / len(p)
            h[k, :, l, :] = (a * w[:, None]).T @ a
        h[k, :, k, :] += penalty * torch.eye(m, dtype=a.dtype)
    return h.reshape(k_ * m, k_ * m)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread for the fits, then as it was: tiny matrices gain nothing from threads, and on a busy
    machine their synchronisation made a fit 10-100x slower (measured on 2 loaded cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


FITTERS = {"prototype": _prototype, "logistic": _logistic}


# ----------------------------------------------------------------------------------------- cross-validation


def group_folds(labels: np.ndarray, groups: np.ndarray, max_folds: int = MAX_FOLDS) -> list[np.ndarray]:
    """Held-out row masks: one per group up to `max_folds` groups, else `max_folds` folds of whole groups dealt
    round-robin in (class, group) order so that each fold holds every class. A fold that would leave a class with no
    training row is dropped (a class of one group)."""
    labels, groups = np.asarray(labels), np.asarray(groups).astype(str)
    order = sorted({(int(labels[groups == g][0]), g) for g in set(groups.tolist())})
    n_folds = min(len(order), max_folds)
    fold_of = {g: i % n_folds for i, (_, g) in enumerate(order)}
    row_fold = np.array([fold_of[g] for g in groups])
    classes = set(labels.tolist())
    return [row_fold == f for f in range(n_folds) if set(labels[row_fold != f].tolist()) == classes]


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _out_of_fold(fitter, x: np.ndarray, y: np.ndarray, n_classes: int, setting: float,
                 folds: list[np.ndarray]) -> np.ndarray:
    """Probabilities of every held-out row from the head fitted without its fold (NaN where no fold held it)."""
    probs = np.full((len(y), n_classes), np.nan)
    for held in folds:
        probs[held] = _softmax(x[held] @ fitter(x[~held], y[~held], n_classes, setting).T)
    return probs


def _log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    seen = ~np.isnan(probs[:, 0])
    return float(-np.log(np.clip(probs[seen, y[seen]], 1e-12, None)).mean())


def fit_head(features: np.ndarray, labels: np.ndarray, groups, n_classes: int, head: str | None = None,
             class_names: list[str] | None = None, setting: float | None = None,
             background: int | None = None) -> HeadFit:
    """A few-shot linear head on pooled `features` (N, D) with `labels` (N,) in 0..n_classes-1; `groups` (N,) names
    the video or source of each row (rows of one group are held out together). `head`: "logistic" or "prototype";
    None: the measured choice (logistic; :data:`OPEN_SET_HEAD` with an open-set ``none``). `setting`: the temperature
    or penalty, fixed (default: chosen by cross-validation). `background`: the index of the ``none`` class; when
    there are folds to calibrate it, its logit is open-set (:func:`_fit_open_set`), else ``none`` is a class like
    the others. Deterministic: the same data gives the same head."""
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.int64)
    groups = np.asarray(groups)
    if x.ndim != 2 or len(x) != len(y) or len(groups) != len(y):
        raise ActionrecError(f"features {x.shape}, labels {y.shape} and groups {groups.shape} must have one row each")
    check_examples(y, n_classes, class_names)
    open_set = background is not None and bool(group_folds(y, groups))
    name = head or (OPEN_SET_HEAD if open_set else "logistic")
    if name not in FITTERS:
        raise ActionrecError(f"unknown few-shot head {name!r}; choose one of: {', '.join(HEADS)}")
    with _one_thread():
        if open_set:
            return _fit_open_set(FITTERS[name], name, x, y, groups, n_classes, setting, int(background))
        return _fit(FITTERS[name], name, x, y, groups, n_classes, setting)


def _fit(fitter, name: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int,
         fixed: float | None) -> HeadFit:
    grid, default = (TEMPERATURES, DEFAULT_TEMPERATURE) if name == "prototype" else (PENALTIES, DEFAULT_PENALTY)
    folds = group_folds(y, groups)
    setting, oof, loss, chosen_by = default, None, math.nan, "default (one group per class: no fold to learn from)"
    if fixed is not None:
        setting, chosen_by = fixed, "the caller"
    elif folds:
        trials = [(s, _out_of_fold(fitter, x, y, n_classes, s, folds)) for s in grid]
        losses = [_log_loss(p, y) for _, p in trials]
        best = int(np.argmin(losses))
        setting, oof, loss = trials[best][0], trials[best][1], losses[best]
        chosen_by = f"cross-validation over {len(set(groups.tolist()))} groups in {len(folds)} folds"
    w = fitter(x, y, n_classes, setting).astype(np.float32)
    return HeadFit(name, w, np.zeros(n_classes, np.float32), float(setting), chosen_by, oof, loss)


def _fit_open_set(fitter, name: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_classes: int,
                  fixed: float | None, background: int) -> HeadFit:
    """The head with an open-set ``none`` (class `background`): the other classes' head is fitted on their rows
    alone; ``none``'s weight row is zero and its bias a constant ``b``, so a clip is ``none`` when every class logit
    is well under ``b`` (far from every class), whatever it looks like. Out of fold (each fold's class head fitted
    on the other groups' class rows), ``b`` is where the rows' mean ``none`` probability equals their share of
    ``none`` rows (:func:`_none_bias`: the b of least out-of-fold log-loss), so it is calibrated on background and
    clips of videos the class head never saw; the setting is the one of least out-of-fold log-loss over every row,
    ``none`` included (the temperature sets how sharply ``none`` takes over). The class logits are the unit-row
    head's times the clip's length over the training rows' mean and ``b`` is not, so a longer clip needs a lower
    cosine to be a class: measured against a length-free ``none`` (bench/bench_openset.py, README), this one won."""
    order = np.array([c for c in range(n_classes) if c != background])
    known = y != background
    folds = group_folds(y, groups)
    grid = (fixed,) if fixed is not None else TEMPERATURES if name == "prototype" else PENALTIES
    trials = [_open_set_oof(fitter, x, y, order, background, s, folds) for s in grid]
    losses = [_log_loss(oof, y) for oof, _ in trials]
    best = int(np.argmin(losses))
    setting, (oof, bias) = float(grid[best]), trials[best]
    weight = np.zeros((n_classes, x.shape[1]), np.float32)
    weight[order] = fitter(x[known], np.searchsorted(order, y[known]), n_classes - 1, setting)
    offsets = np.zeros(n_classes, np.float32)
    offsets[background] = bias
    how = ("the caller" if fixed is not None
           else f"cross-validation over {len(set(groups.tolist()))} groups in {len(folds)} folds")
    return HeadFit(name, weight, offsets, setting, f"{how}, with an open-set none (constant logit {bias:.3g}, "
                   "calibrated out of fold)", oof, losses[best], none_logit=bias)


def _open_set_oof(fitter, x: np.ndarray, y: np.ndarray, order: np.ndarray, background: int, setting: float,
                  folds: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """The out-of-fold probabilities of every row (NaN where no fold held it) with the open-set ``none``, and its
    constant logit."""
    logits = np.full((len(y), len(order) + 1), np.nan)
    for held in folds:
        train = ~held & (y != background)
        w = fitter(x[train], np.searchsorted(order, y[train]), len(order), setting)
        logits[np.ix_(held, order)] = x[held] @ w.T
        logits[held, background] = 0.0
    seen = ~np.isnan(logits[:, 0])
    bias = _none_bias(np.delete(logits[seen], background, axis=1), float((y[seen] == background).mean()))
    logits[:, background] = bias
    probs = np.full_like(logits, np.nan)
    probs[seen] = _softmax(logits[seen])
    return probs, bias


def _none_bias(others: np.ndarray, share: float) -> float:
    """The constant ``none`` logit beside the logits `others` at which the mean softmax probability of ``none`` is
    `share` (bisection: the mean grows with the constant)."""
    lo, hi = float(others.min() - 50), float(others.max() + 50)
    share = min(max(share, 1e-6), 1 - 1e-6)
    for _ in range(100):
        mid = (lo + hi) / 2
        p = _softmax(np.concatenate([others, np.full((len(others), 1), mid)], axis=1))[:, -1]
        lo, hi = (mid, hi) if p.mean() < share else (lo, mid)
    return (lo + hi) / 2


def load_into(linear: torch.nn.Linear, fit: HeadFit) -> None:
    """Set an nn.Linear (the model's `head`) to the fitted weight and bias."""
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(fit.weight))
        linear.bias.copy_(torch.from_numpy(fit.bias))
