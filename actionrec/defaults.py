"""Defaults, choices and facts that the command line's help and the option checks show, declared once here so that
reading them imports no network library (PyTorch, OpenVINO) and no decoder: `actionrec CMD --help` starts at once
(tests/test_startup.py). The modules that use them import them from here, by name."""

from __future__ import annotations

# how the engine runs the network (models/backends.py)
PRECISIONS = ("auto", "float", "fp32", "bf16", "int8")  # float: bf16 with native bf16, else fp32
BACKENDS = ("auto", "openvino", "torch")
PRECISION_ENV, BACKEND_ENV = "ACTIONREC_PRECISION", "ACTIONREC_BACKEND"  # what "auto" means when set

# the networks (models/)
STEP_FRAMES = 8  # I3D's time stride at Mixed_5c: one step of the per-step features per 8 input frames
DEFAULT_WEIGHTS = {"i3d": "i3d-kinetics400", "c3d": "c3d-sports1m"}  # each architecture's pretrained weights

# training (training/)
FEWSHOT_UP_TO = 10  # videos per class (the fewest of any class) up to which the few-shot head replaces the softmax

# sliding windows, timelines, suggestions and exports (apps/)
DEFAULT_MIN_STRIDE = 0.5  # seconds: the default stride is max(this, window / 2)
FRAMES_PER_BATCH = 128  # default batch: 8 windows of 16 frames, 2 of 64 (the activations' memory stays the same)
DEFAULT_SMOOTH = 1.0  # seconds of windows (centred running median) before deciding
DEFAULT_SUGGESTIONS = 10  # how many suggestions `suggest` gives
EXPORT_FORMATS = ("onnx", "openvino")
