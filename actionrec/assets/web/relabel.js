// The timeline decided in the page from the per-window probabilities (GET /api/jobs/{id}/windows), without the
// network: the same steps as actionrec/apps/timeline.py build_timeline (running median, per-window decision, runs,
// short runs given to their neighbours, cuts interpolated where the deciding score crosses halfway).
"use strict";

const Relabel = (() => {
  function lowerBound(xs, v) { let lo = 0, hi = xs.length; while (lo < hi) { const m = (lo + hi) >> 1; if (xs[m] < v) lo = m + 1; else hi = m; } return lo; }
  function upperBound(xs, v) { let lo = 0, hi = xs.length; while (lo < hi) { const m = (lo + hi) >> 1; if (xs[m] <= v) lo = m + 1; else hi = m; } return lo; }

  function median(values) {
    const s = values.slice().sort((a, b) => a - b), n = s.length;
    return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  }

  // smooth_probs: centred running median over the windows whose centres lie within seconds / 2.
  function smooth(probs, x, seconds) {
    if (seconds <= 0 || probs.length < 2) return probs.map((r) => r.slice());
    const half = seconds / 2 + 1e-9;
    return probs.map((row, k) => {
      const lo = lowerBound(x, x[k] - half), hi = upperBound(x, x[k] + half);
      if (hi - lo < 3) return row.slice();
      return row.map((_, j) => median(probs.slice(lo, hi).map((r) => r[j])));
    });
  }

  // _decide: the highest score among the classes at their threshold, -1 (none) when no class reaches it.
  function decide(s, thr) {
    return s.map((row) => {
      let best = -1, value = -Infinity;
      row.forEach((v, j) => { if (v >= thr[j] && v > value) { best = j; value = v; } });
      return best;
    });
  }

  function runs(decided) {
    const out = [];
    decided.forEach((label, k) => {
      if (out.length && out[out.length - 1][0] === label) out[out.length - 1][1].push(k);
      else out.push([label, [k]]);
    });
    return out;
  }

  // _absorb_short: runs shorter than minSegment go to their neighbours, shortest first.
  function absorbShort(input, x, duration, minSegment) {
    let rs = input.map(([l, ks]) => [l, ks.slice()]);
    const length = (ks) => {
      const lo = ks[0] === 0 ? 0 : (x[ks[0] - 1] + x[ks[0]]) / 2;
      const hi = ks[ks.length - 1] === x.length - 1 ? duration : (x[ks[ks.length - 1]] + x[ks[ks.length - 1] + 1]) / 2;
      return hi - lo;
    };
    while (rs.length > 1) {
      const lengths = rs.map((r) => length(r[1]));
      let i = 0;
      lengths.forEach((v, j) => { if (v < lengths[i]) i = j; });
      if (lengths[i] >= minSegment) break;
      const ks = rs[i][1];
      if (i > 0 && i < rs.length - 1) {
        const half = lengths[i - 1] <= lengths[i + 1] ? Math.floor((ks.length + 1) / 2) : Math.floor(ks.length / 2);
        rs[i - 1][1] = rs[i - 1][1].concat(ks.slice(0, half));
        rs[i + 1][1] = ks.slice(half).concat(rs[i + 1][1]);
      } else if (i > 0) {
        rs[i - 1][1] = rs[i - 1][1].concat(ks);
      } else {
        rs[i + 1][1] = ks.concat(rs[i + 1][1]);
      }
      rs.splice(i, 1);
      const merged = [rs[0]];
      for (const r of rs.slice(1)) {
        if (r[0] === merged[merged.length - 1][0]) merged[merged.length - 1][1] = merged[merged.length - 1][1].concat(r[1]);
        else merged.push(r);
      }
      rs = merged;
    }
    return rs;
  }

  function crossPoint(x0, x1, f0, f1) {
    if (f0 === f1) return (x0 + x1) / 2;
    const v = x0 + (x1 - x0) * f0 / (f0 - f1);
    return Math.min(Math.max(v, Math.min(x0, x1)), Math.max(x0, x1));
  }

  function scoreDiff(k, a, b, s, thr) {
    if (a >= 0 && b >= 0) return s[k][a] - s[k][b];
    if (a >= 0) return s[k][a] - thr[a];
    return thr[b] - s[k][b];
  }

  // _boundary: where label a (windows left) gives way to label b (windows right), from the raw scores.
  function boundary(left, right, a, b, x, s, thr) {
    const ends = left.slice(-3), starts = right.slice(0, 3), g = new Map();
    for (const k of ends.concat(starts)) g.set(k, scoreDiff(k, a, b, s, thr));
    const ga = median(ends.map((k) => g.get(k))), gb = median(starts.map((k) => g.get(k)));
    const level = ga > gb ? (ga + gb) / 2 : 0;
    const ks = Array.from(g.keys()).sort((p, q) => p - q);
    const last = left[left.length - 1];
    let pick = null;
    for (let n = 0; n + 1 < ks.length; n++) {
      const i = ks[n], j = ks[n + 1];
      if (j === i + 1 && g.get(i) - level >= 0 && 0 > g.get(j) - level) {
        if (pick === null || Math.abs(i - last) < Math.abs(pick[0] - last)) pick = [i, j];
      }
    }
    if (pick === null) return (x[last] + x[right[0]]) / 2;
    return crossPoint(x[pick[0]], x[pick[1]], g.get(pick[0]) - level, g.get(pick[1]) - level);
  }

  // build_timeline: segments {start, end, label, confidence} and totals {label: seconds} at `thresholds` {label: t}.
  function timeline(w, thresholds) {
    const labels = w.labels, x = w.starts.map((s, k) => (s + w.ends[k]) / 2);
    const thr = labels.map((l) => thresholds[l]);
    const smoothed = smooth(w.probs, x, w.smooth);
    const final = absorbShort(runs(decide(smoothed, thr)), x, w.duration, w.min_segment);
    const segments = [];
    let start = 0;
    final.forEach(([idx, windows], i) => {
      let end = w.duration;
      if (i + 1 < final.length) {
        end = boundary(windows, final[i + 1][1], idx, final[i + 1][0], x, w.probs, thr);
        end = Math.min(Math.max(end, start), w.duration);
      }
      let confidence;
      if (idx >= 0) confidence = windows.reduce((t, k) => t + smoothed[k][idx], 0) / windows.length;
      else confidence = labels.length ? windows.reduce((t, k) => t + 1 - Math.max(...smoothed[k]), 0) / windows.length : 1;
      if (end - start > 1e-9 || !segments.length) segments.push({ start, end, label: idx >= 0 ? labels[idx] : w.none, confidence });
      start = end;
    });
    const totals = {};
    labels.forEach((l) => { totals[l] = 0; });
    totals[w.none] = 0;
    segments.forEach((s) => { totals[s.label] += s.end - s.start; });
    return { segments, totals };
  }

  return { timeline, median, smooth };
})();
