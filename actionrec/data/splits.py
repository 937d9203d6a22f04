"""Honest splits: whole groups to train / val / test, stratified by class, seeded (:func:`make_splits`)."""

from __future__ import annotations

import hashlib
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

from ..errors import ActionrecError
from .samples import SPLIT_NAMES, Sample, names_list
from .segments import MAX_CLIPS_PER_SEGMENT, SECONDS_PER_CLIP, segment_clips

__all__ = ["Splits", "make_splits", "MIN_SEGMENTS_TO_HOLD_OUT"]

MIN_SEGMENTS_TO_HOLD_OUT = 3  # a class labelled by fewer segments (groups) keeps them all for training


@dataclass(frozen=True)
class Splits:
    """Train / val / test samples, the class order, and how they were chosen."""

    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    classes: list[str]  # sorted label names; the model's output order
    policy: str  # one sentence: how test and val were chosen
    dropped_classes: tuple[str, ...] = ()  # classes left out by :meth:`without` (no readable training clip)

    def counts(self) -> dict[str, dict[str, int]]:
        """{label: {"train": n, "val": n, "test": n}} for every class."""
        out = {c: {k: 0 for k in SPLIT_NAMES} for c in self.classes}
        for name in SPLIT_NAMES:
            for s in getattr(self, name):
                out[s.label][name] += 1
        return out

    def summary(self) -> str:
        """A small table of the counts, then the policy."""
        width = max([len(c) for c in self.classes] + [5])
        lines = [f"{'class':<{width}}  {'train':>6} {'val':>6} {'test':>6}"]
        counts = self.counts()
        for c in self.classes:
            n = counts[c]
            lines.append(f"{c:<{width}}  {n['train']:>6} {n['val']:>6} {n['test']:>6}")
        lines.append(f"{'total':<{width}}  {len(self.train):>6} {len(self.val):>6} {len(self.test):>6}")
        lines.append(self.policy)
        return "\n".join(lines)

    def without(self, paths: Iterable[str | os.PathLike]) -> "Splits":
        """These splits less the samples at ``paths`` (e.g. videos that could not be read).

        A class left with no training sample is dropped with all its samples (a model cannot learn
        a class it never saw), named in ``dropped_classes`` and in the policy; the counts and the
        summary no longer include what was left out.  Fewer than 2 classes left is an error.
        """
        gone = {os.path.abspath(os.fspath(p)) for p in paths}
        kept = {k: [s for s in getattr(self, k) if os.path.abspath(s.path) not in gone] for k in SPLIT_NAMES}
        removed = sum(len(getattr(self, k)) - len(kept[k]) for k in SPLIT_NAMES)
        if not removed:
            return self
        trained = {s.label for s in kept["train"]}
        dropped = [c for c in self.classes if c not in trained]
        classes = [c for c in self.classes if c in trained]
        if len(classes) < 2:
            raise ActionrecError(
                f"fewer than 2 classes have readable training videos ({names_list(dropped)} have none):"
                " replace or re-encode the unreadable videos, or add videos of other classes"
            )
        kept = {k: [s for s in v if s.label in trained] for k, v in kept.items()}
        policy = self.policy + f"; {removed} unreadable clip(s) left out"
        if dropped:
            policy += f", and with them class(es) {names_list(dropped)} (no readable training clip)"
        return replace(
            self, **kept, classes=classes, policy=policy, dropped_classes=self.dropped_classes + tuple(dropped)
        )


def make_splits(
    samples: Sequence[Sample],
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Splits:
    """Split samples into train / val / test by whole groups, stratified by class, seeded.

    * Test: samples whose source fixes ``split='test'`` (official UCF101 split, a manifest's
      split column, a test folder) are the test set of their class.  A class with no such
      sample gets a held-out ``test_fraction`` of its clips, chosen among its unfixed groups.
    * Val: ``val_fraction`` of each class's remaining (training) clips, unless its source fixes
      val samples.  Fixed 'train' samples are not put in test but may be chosen for val.
    * Groups are assigned whole: clips of a group without a fixed split follow the group's
      fixed split (if any), and a group whose fixed splits disagree is an error.  Per class
      the groups are shuffled with a generator seeded by (seed, class) and taken while that
      brings the count closer to the target, so each class gets close to the fraction;
      then at least one group is taken if the class still has one to spare.
    * Every class keeps at least one training group; a class that needs a held-out test but
      has a single group is an error, and val is skipped (and said so in the policy) for a
      class with one training group.
    * Deterministic for a seed whatever the order of ``samples``.
    """
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            raise ActionrecError(f"{name} must be at least 0 and below 1, not {frac!r}")
    items, by_segment = _segment_groups(_unique(samples))
    plan = _Plan(items, seed)
    few = _too_few(plan, items)
    want_val = {c for c in plan.classes if val_fraction > 0 and c not in plan.fixed_classes("val") and c not in few}
    need_test = [c for c in plan.classes
                 if test_fraction > 0 and c not in plan.fixed_classes("test") and c not in few]
    plan.check_can_hold_out(need_test)

    # Held-out test for classes whose source does not fix one, then val from each class's training side.
    free_groups = {g for g in plan.members if plan.fixed[g] is None}
    reserve_test = {c: 2 if c in want_val and plan.side[c] >= 3 else 1 for c in plan.classes}
    for c in need_test:
        plan.pick("test", c, test_fraction * plan.n_class[c], free_groups, reserve_test)
    open_val = {g for g in plan.members if g not in plan.assign}
    rest = {c: sum(plan.counts[g][c] for g in plan.by_class[c] if g in open_val) for c in plan.classes}
    for c in sorted(want_val):
        plan.pick("val", c, val_fraction * rest[c], open_val, {})

    parts = plan.parts()
    policy = _policy(parts, plan, need_test, want_val, val_fraction, test_fraction, seed)
    policy = _segment_policy(policy, items, by_segment, few)
    # Train and val segments become the clips they yield; a test segment is scored whole, like a video.
    parts["train"], parts["val"] = segment_clips(parts["train"]), segment_clips(parts["val"])
    return Splits(parts["train"], parts["val"], parts["test"], plan.classes, policy)


def _segment_groups(items: list[Sample]) -> tuple[list[Sample], bool]:
    """One source (every sample in one group) labelled by segments: each segment becomes its own group, so test and
    val are drawn by whole segments (their clips are made after the split, so they never straddle it)."""
    if len({s.group for s in items}) > 1 or not any(s.start is not None for s in items):
        return items, False
    return [replace(s, group=s.path) for s in items], True


def _too_few(plan: "_Plan", items: list[Sample]) -> set[str]:
    """Classes labelled by segments that have too few groups to hold any out (all of theirs train)."""
    ranged = {s.label for s in items if s.start is not None}
    return {c for c in plan.classes if c in ranged and len(plan.by_class[c]) < MIN_SEGMENTS_TO_HOLD_OUT}


def _segment_policy(policy: str, items: list[Sample], by_segment: bool, few: set[str]) -> str:
    """The split policy, with how segments were drawn and cut into clips."""
    if not any(s.start is not None for s in items):
        return policy
    bits = []
    if by_segment:
        bits.append("one source video: test and val drawn by whole segments (each segment is a group)")
    if few:
        bits.append(f"too few groups (segments or source videos; under {MIN_SEGMENTS_TO_HOLD_OUT}) to hold any out"
                    f" for {names_list(few)}: all of theirs train")
    bits.append(f"train and val segments cut into one clip per {SECONDS_PER_CLIP:g} s (at most"
                f" {MAX_CLIPS_PER_SEGMENT} per segment), test segments scored whole")
    return f"{policy}; {'; '.join(bits)}"


def _unique(samples: Sequence[Sample]) -> list[Sample]:
    """Samples sorted by path with exact repeats dropped, so the listing order cannot matter."""
    uniq: dict[str, Sample] = {}
    for s in sorted(samples, key=lambda x: (x.path, x.label, x.group, x.split or "")):
        prev = uniq.get(s.path)
        if prev is not None and (prev.label != s.label or prev.group != s.group or prev.split != s.split):
            raise ActionrecError(f"{s.path} appears twice with different labels, groups or splits: keep one")
        uniq.setdefault(s.path, s)
    items = list(uniq.values())
    if not items:
        raise ActionrecError("no videos to split: add class folders with videos")
    return items


def _rng(seed: int, *parts: str) -> random.Random:
    """A generator that depends only on the seed and the names (not on other classes)."""
    h = hashlib.sha256("\x00".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


class _Plan:
    """The groups of a sample list and their assignment to splits, built up phase by phase."""

    def __init__(self, items: list[Sample], seed: int):
        self.seed = seed
        self.classes = sorted({s.label for s in items})
        if len(self.classes) < 2:
            raise ActionrecError(
                f"only one class ('{self.classes[0]}', in {os.path.dirname(items[0].path)}) to split:"
                " transfer learning needs at least 2 classes: add a folder of another class's videos"
            )
        self.members: dict[str, list[Sample]] = defaultdict(list)
        for s in items:
            self.members[s.group].append(s)
        self.fixed = {g: _fixed_split(g, ms) for g, ms in self.members.items()}
        self.counts = {g: Counter(m.label for m in ms) for g, ms in self.members.items()}
        self.by_class: dict[str, list[str]] = defaultdict(list)
        for g in sorted(self.members):
            for c in self.counts[g]:
                self.by_class[c].append(g)
        self.n_class = Counter(s.label for s in items)
        self.folder = {c: os.path.dirname(next(s.path for s in items if s.label == c)) for c in self.classes}
        # 'train'-fixed and free groups are still open for val; only free groups are open for test.
        self.assign: dict[str, str] = {g: f for g, f in self.fixed.items() if f in ("test", "val")}
        # side[c]: how many of c's groups are still on the training side (not val/test).
        self.side = {c: sum(1 for g in self.by_class[c] if g not in self.assign) for c in self.classes}
        for c in self.classes:
            if self.side[c] == 0:
                raise ActionrecError(
                    f"class '{c}' ({self.folder[c]}) has no training clips: all {self.n_class[c]} are fixed to"
                    " val/test by its source; give it training videos"
                )

    def fixed_classes(self, phase: str) -> set[str]:
        """Classes whose source fixes some of their samples to ``phase``."""
        return {c for c in self.classes if any(self.fixed[g] == phase for g in self.by_class[c])}

    def check_can_hold_out(self, need_test: list[str]) -> None:
        """Each class that needs a held-out test must have 2 groups on its training side."""
        for c in need_test:
            has_free = any(self.fixed[g] is None for g in self.by_class[c] if g not in self.assign)
            if has_free and self.side[c] < 2:
                k = sum(self.counts[g][c] for g in self.by_class[c] if g not in self.assign)
                raise ActionrecError(
                    f"class '{c}' ({self.folder[c]}) has only 1 group of clips for training ({k} clip(s))"
                    " but needs at least 2 groups (3 to also get a validation clip) to hold out a test set: add"
                    f" videos of '{c}' from other recordings (clips named <source>_c<NN> or"
                    " v_<Class>_g<NN>_c<NN> count as one group per source)"
                )

    def _allowed(self, g: str, reserve: dict[str, int]) -> bool:
        # Taking g must leave each of its classes enough groups on the training side.
        return all(self.side[d] - 1 >= reserve.get(d, 1) for d in self.counts[g])

    def _take(self, g: str, phase: str) -> None:
        self.assign[g] = phase
        for d in self.counts[g]:
            self.side[d] -= 1

    def pick(self, phase: str, c: str, target: float, open_groups: set[str], reserve: dict[str, int]) -> None:
        """Assign open groups holding class c to ``phase`` until c's count is close to ``target``."""
        cands = [g for g in self.by_class[c] if g in open_groups and g not in self.assign]
        _rng(self.seed, phase, c).shuffle(cands)
        cur = sum(self.counts[g][c] for g in self.by_class[c] if self.assign.get(g) == phase)
        for g in cands:
            n = self.counts[g][c]
            if cur + n / 2 < target and self._allowed(g, reserve):
                self._take(g, phase)
                cur += n
        if cur == 0:
            spare = [g for g in cands if g not in self.assign and self._allowed(g, reserve)]
            if spare:  # at least one group when the class can spare it; the smallest one
                self._take(min(spare, key=lambda x: self.counts[x][c]), phase)

    def parts(self) -> dict[str, list[Sample]]:
        """{split: samples sorted by (label, path)}; unassigned groups train."""
        parts: dict[str, list[Sample]] = {k: [] for k in SPLIT_NAMES}
        for g, ms in self.members.items():
            parts[self.assign.get(g, "train")].extend(ms)
        for k in parts:
            parts[k].sort(key=lambda x: (x.label, x.path))
        return parts


def _fixed_split(group: str, members: list[Sample]) -> str | None:
    """The split a group's source fixes (None if none); two different ones is an error."""
    got = sorted({m.split for m in members if m.split})
    if len(got) > 1:
        a = next(m for m in members if m.split == got[0])
        b = next(m for m in members if m.split == got[1])
        raise ActionrecError(
            f"group '{group}' has {a.path} in {a.split} and {b.path} in {b.split}: clips cut"
            " from one source must share a split; fix the split of one"
        )
    return got[0] if got else None


def _pct(f: float) -> str:
    return f"{f * 100:g} %"


def _origins(samples: list[Sample], phase: str) -> list[str]:
    """Where the fixed ``phase`` samples came from (e.g. 'official UCF101 split 1')."""
    return sorted({s.origin or "the source's split" for s in samples if s.split == phase})


def _policy(
    parts: dict[str, list[Sample]], plan: _Plan, need_test: list[str], want_val: set[str],
    val_fraction: float, test_fraction: float, seed: int,
) -> str:
    """One sentence saying how test and val were chosen."""
    has = {c: {k for k in SPLIT_NAMES if any(s.label == c for s in parts[k])} for c in plan.classes}
    fixed_origins = _origins(parts["test"], "test")
    test_bits = [" and ".join(fixed_origins)] if fixed_origins else []
    heldout = [c for c in need_test if "test" in has[c]]
    if heldout:
        bit = f"a seeded {_pct(test_fraction)} of whole groups held out per class"
        test_bits.append(bit + (f" for {names_list(heldout)}" if fixed_origins else ""))
    no_test = [c for c in plan.classes if "test" not in has[c]]
    if not test_bits:
        test_bits.append("none" + (" (test_fraction=0)" if test_fraction == 0 else ""))
    elif no_test:
        test_bits.append(f"no test clips for {names_list(no_test)}")
    val_bits = [f"{_pct(val_fraction)} of train, stratified by class"] if want_val else []
    val_origins = _origins(parts["val"], "val")
    if val_origins:
        val_bits.append(" and ".join(val_origins) + (f" for {names_list(plan.fixed_classes('val'))}" if want_val else ""))
    if not val_bits:
        val_bits.append("none (val_fraction=0)")
    no_val = [c for c in want_val if "val" not in has[c]]
    if no_val:
        val_bits.append(f"no val clips for {names_list(no_val)} (only one training group)")
    return (
        f"test: {', '.join(test_bits)}; val: {', '.join(val_bits)}; whole groups (clips cut from"
        f" one source) never straddle train/val/test; seed {seed}"
    )
