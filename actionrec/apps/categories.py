"""Groups of classes: report time per *sport* instead of per fine class.

A group is a name and some of a model's class names. Groups come from a small file (``name: label, label`` lines,
``#`` comments; or a JSON object ``{"name": ["label", ...]}``) or from repeated ``--group NAME=label,label`` options,
and are checked against the model's classes: an unknown label is refused in one line with the closest class names.
A class belongs to at most one group. :meth:`Groups.sum` turns per-window class probabilities (N, K) into group
probabilities (N, G) by summing each group's classes, *before* smoothing, so a group is found even where no single
member is confident. Classes in no group are summed into a last column, ``OTHER``, so every row still sums to 1 and
"none of these groups" stays a probability like any other (timeline thresholds and `none` work as for classes).

``group_by="category"`` is the published grouping of Kinetics-400 into 38 parents (Kay et al. 2017, package data
``assets/kinetics400_categories.txt``, whose header cites it). There, as in the paper, 56 classes belong to several
parents (e.g. "golf putting": golf and ball sports); such a class counts 1/m towards each of its m parents, so rows
still sum to 1. 14 classes (the gym exercises: "squat", "yoga", ...) are in no parent and go to ``OTHER``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ActionrecError

OTHER = "other"  # the column of the classes in no group
CATEGORY = "category"  # group_by value naming the published Kinetics-400 parent categories
CATEGORIES_ASSET = "kinetics400_categories.txt"


@dataclass(frozen=True)
class Groups:
    """Named groups of a model's classes. `names` lists the groups then OTHER (when some class is in none);
    `matrix` (K, len(names)) holds 1 where class k counts towards column g."""

    names: tuple[str, ...]
    classes: tuple[str, ...]
    matrix: np.ndarray
    source: str  # where they were defined, for messages and results

    def sum(self, probs: np.ndarray) -> np.ndarray:
        """Per-window class probabilities (N, K) in the model's class order -> group probabilities (N, G)."""
        probs = np.asarray(probs)
        if probs.ndim != 2 or probs.shape[1] != len(self.classes):
            raise ActionrecError(f"groups from {self.source}: expected probabilities (windows, {len(self.classes)}), "
                                 f"got shape {probs.shape}; group the probabilities of the model the groups were made for")
        return probs @ self.matrix.astype(probs.dtype, copy=False)

    def members(self, name: str) -> tuple[str, ...]:
        """The classes summed into column `name`."""
        column = self.names.index(name)
        return tuple(c for c, row in zip(self.classes, self.matrix) if row[column])

    def to_dict(self) -> dict[str, list[str]]:
        return {name: list(self.members(name)) for name in self.names}

    def apply(self, result):
        """A copy of a result whose `probs` (..., K) follow its class names in `categories` (WindowProbs: per window)
        or `labels` (Prediction: per video), with the probabilities summed per group and the group names in their
        place: what timeline, archive, predict and the page call before smoothing or ranking."""
        field = "categories" if hasattr(result, "categories") else "labels"
        if tuple(getattr(result, field)) != self.classes:
            raise ActionrecError(f"groups from {self.source} were made for other classes than {result.model}'s; "
                                 "load the groups for the model that made the result")
        probs = np.asarray(result.probs)
        summed = self.sum(probs.reshape(-1, probs.shape[-1])).reshape(*probs.shape[:-1], len(self.names))
        return dataclasses.replace(result, **{field: self.names, "probs": summed})


def parse_groups_text(text: str, source: str) -> dict[str, list[str]]:
    """``name: label, label`` lines (``#`` starts a comment; a group may continue over several lines of its own
    name) -> {name: labels}; a malformed line is refused in one line naming it."""
    groups: dict[str, list[str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, labels = line.partition(":")
        if not sep or not name.strip():
            raise ActionrecError(f"{source}:{number}: expected `group name: label, label, ...`, got {raw.strip()!r}")
        groups.setdefault(name.strip(), []).extend(_split_labels(labels))
    return groups


def _split_labels(text: str) -> list[str]:
    return [label.strip() for label in text.split(",") if label.strip()]


def read_groups_file(path: str | os.PathLike) -> dict[str, list[str]]:
    """A groups file: JSON (``.json``: {name: [labels]}) or ``name: label, label`` lines."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ActionrecError(f"{path}: cannot read the groups file ({err}); give a readable text or JSON file") from None
    if path.suffix.lower() != ".json":
        return parse_groups_text(text, str(path))
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ActionrecError(f"{path}: not valid JSON ({err}); write {{\"group\": [\"label\", ...]}}") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in data.values()):
        raise ActionrecError(f"{path}: expected a JSON object of lists of class names, {{\"group\": [\"label\", ...]}}")
    return {str(name): list(labels) for name, labels in data.items()}


def parse_group_options(options: Sequence[str]) -> dict[str, list[str]]:
    """Repeated ``NAME=label,label`` options -> {name: labels} (a name given twice collects both lists)."""
    groups: dict[str, list[str]] = {}
    for option in options:
        name, sep, labels = option.partition("=")
        if not sep or not name.strip() or not _split_labels(labels):
            raise ActionrecError(f"--group {option!r}: expected NAME=label,label (e.g. --group \"ball sports=playing "
                                 "basketball,playing volleyball\")")
        groups.setdefault(name.strip(), []).extend(_split_labels(labels))
    return groups


def make_groups(definition: Mapping[str, Sequence[str]], classes: Sequence[str], source: str,
                shared: bool = False) -> Groups:
    """Check `definition` ({name: labels}) against the model's `classes` and build its Groups (see the module doc).
    A class listed in several groups is refused, unless `shared`: then it counts equally towards each of them."""
    classes = tuple(classes)
    if not definition:
        raise ActionrecError(f"{source}: defines no group; write at least one `name: label, label` line")
    index = {c: i for i, c in enumerate(classes)}
    owners: dict[str, list[str]] = {}
    for name, labels in definition.items():
        if name == OTHER:
            raise ActionrecError(f"{source}: {OTHER!r} is the column of the classes in no group; give the group another name")
        if not labels:
            raise ActionrecError(f"{source}: group {name!r} has no class; list at least one")
        for label in labels:
            if label not in index:
                raise ActionrecError(f"{source}: group {name!r}: {label!r} is not one of the model's {len(classes)} "
                                     f"classes{_did_you_mean(label, classes)}")
            groups = owners.setdefault(label, [])
            if groups and name not in groups and not shared:
                raise ActionrecError(f"{source}: {label!r} is in groups {groups[0]!r} and {name!r}; a class counts "
                                     "towards one group only: keep it in one")
            if name not in groups:
                groups.append(name)
    names = tuple(definition) + ((OTHER,) if len(owners) < len(classes) else ())
    matrix = np.zeros((len(classes), len(names)), dtype=np.float32)
    for label, i in index.items():
        for name in owners.get(label, [OTHER]):
            matrix[i, names.index(name)] = 1.0 / len(owners.get(label, [OTHER]))
    return Groups(names, classes, matrix, source)


def kinetics400_categories(classes: Sequence[str]) -> Groups:
    """The published parent categories of Kinetics-400 (see the module doc) for a model with those 400 classes."""
    from importlib import resources

    from ..models.info import kinetics400_labels

    if tuple(classes) != kinetics400_labels():
        raise ActionrecError(f"--group-by {CATEGORY}: the published categories group the 400 Kinetics-400 classes; this "
                             f"model has {len(classes)} other classes: give a groups file or --group NAME=label,label")
    text = resources.files("actionrec").joinpath(f"assets/{CATEGORIES_ASSET}").read_text(encoding="utf-8")
    return make_groups(parse_groups_text(text, CATEGORIES_ASSET), classes, f"Kinetics-400 categories ({CATEGORIES_ASSET})",
                       shared=True)


def _did_you_mean(label: str, classes: Sequence[str]) -> str:
    close = difflib.get_close_matches(label, classes, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else " (see the model's class list)"


def load_groups(classes: Sequence[str], group_by: str | os.PathLike | None = None,
                group_options: Sequence[str] = ()) -> Groups | None:
    """The Groups a command asks for: `group_by` (CATEGORY: the published Kinetics-400 categories, alone; else a
    groups file) and/or ``--group NAME=label,label`` options (they add to the file's groups), checked against
    `classes`; None when neither is given."""
    if group_by is not None and os.fspath(group_by) == CATEGORY:
        if group_options:
            raise ActionrecError(f"--group-by {CATEGORY} is the published grouping: use it alone, or write your own "
                                 "groups with a groups file and --group")
        return kinetics400_categories(classes)
    definition: dict[str, list[str]] = {}
    sources = []
    if group_by is not None:
        definition.update(read_groups_file(group_by))
        sources.append(os.fspath(group_by))
    for name, labels in parse_group_options(group_options).items():
        definition.setdefault(name, []).extend(labels)
    if group_options:
        sources.append("--group")
    return make_groups(definition, classes, " + ".join(sources)) if sources else None
