"""`actionrec evaluate`: a trained run on labelled videos, each scored from its test views, the way its test phase
scored (the frozen part's activations through the engine into the feature cache, the trained layers in fp32)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from ..checks import whole
from ..console import Skipped, progress_bar, stderr_line
from ..data.samples import Sample
from ..engine import engine_for
from ..errors import ActionrecError
from ..models.runs import load_run
from .features import FeatureCache, Sampling, test_views as test_views_of
from .metrics import per_class_metrics
from .phases import entries_of, scores


def evaluate_run(run_dir: str | os.PathLike, samples: Sequence[Sample], cache_root: str | os.PathLike | None = None,
                 progress: bool = True, warn: Callable[[str], None] = stderr_line, test_views: int | None = None,
                 precision: str = "auto", backend: str = "auto") -> dict:
    """Loss, accuracy, per-class metrics and confusion matrix of a trained run on labelled `samples`, each video scored
    from `test_views` clips spread over it (default: the run's own, as its test phase did)."""
    model = load_run(run_dir)
    run = model.info.run
    count = model.info.test_views if test_views is None else whole(test_views, "--test-views", 1)
    views = test_views_of(count)
    classes = list(model.info.categories)
    unknown = sorted({s.label for s in samples} - set(classes))
    if unknown:
        raise ActionrecError(f"{run_dir}: was not trained on {', '.join(unknown)}; it knows {', '.join(classes)} (pass --classes to select)")
    cut = run["cut_endpoint"]
    engine = engine_for(model, precision=precision, backend=backend)  # the frozen part's (`predict --run` runs the same)
    cache = FeatureCache(engine, cut, Sampling(frames=run["frames"], seed=run["train_config"]["seed"]), root=cache_root, say=warn)
    skipped = Skipped(warn)
    t0 = time.perf_counter()
    bar = progress_bar("features", "video", progress, total=len(samples))
    entries = cache.extract([s.path for s in samples], views=views, on_error=skipped, progress=bar.update)
    bar.close()
    data = entries_of(samples, entries, classes, views)
    loss, acc, probs = scores(model, cut, data)
    per_class, confusion = per_class_metrics(data.video_labels.numpy(), probs.argmax(1), classes)
    scored = [s for s in samples if any((s.path, view) in entries for view in views)]  # the videos of `data`, in order
    predictions = [{"video": s.path, "label": s.label, "probs": p.tolist()} for s, p in zip(scored, probs)]
    return {"run": str(run_dir), "classes": classes, "videos": data.videos, "test_views": count, "test_loss": loss,
            "test_accuracy": acc, "per_class": per_class, "confusion_matrix": confusion, "predictions": predictions,
            "skipped": skipped.files, "timing": {"total": time.perf_counter() - t0}, "backbone_clips": cache.backbone_calls}
