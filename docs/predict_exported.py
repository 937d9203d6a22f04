import json, sys, cv2, numpy as np, onnxruntime as ort  # python predict_exported.py model.onnx video.mp4
model, video = sys.argv[1:3]
spec = json.load(open(model + ".json")); s, p = spec["sampling"], spec["preprocess"]
cap, frames = cv2.VideoCapture(video), []
while (got := cap.read())[0]: frames.append(got[1])
n, (h, w), side, crop = len(frames), frames[0].shape[:2], p["resize"]["short_side"], p["crop"]["size"]
offsets = np.floor(np.arange(s["frames"]) * (cap.get(cv2.CAP_PROP_FPS) / s["fps"] if s["fps"] else 1) + 1e-6).astype(int)
starts = [min(max(int(np.floor((k + .5) * n / s["views"] - (offsets[-1] + 1) / 2 + 1e-6)), 0), max(n - offsets[-1] - 1, 0)) for k in range(s["views"])]
size = (int(w * side / h + .5), side) if h <= w else (side, int(h * side / w + .5))  # (width, height)
top, left, shrink = round((size[1] - crop) / 2), round((size[0] - crop) / 2), size[0] * size[1] < h * w
frame = lambda f: cv2.cvtColor(cv2.resize(f, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)[top:top + crop, left:left + crop], cv2.COLOR_BGR2RGB)
x = (np.stack([[frame(frames[(st + o) % n]) for o in offsets] for st in starts]) / 255.0 - p["mean"]) / p["std"]
logits = ort.InferenceSession(model).run(None, {spec["input"]["name"]: x.transpose(0, 4, 1, 2, 3).astype(np.float32)})[0]
probs = np.exp(logits - logits.max(1, keepdims=True)); probs = (probs / probs.sum(1, keepdims=True)).mean(0)
print(spec["classes"][int(probs.argmax())], round(float(probs.max()), 3))
