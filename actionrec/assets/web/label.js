// The Label tab: label segments of your own videos, train a model on them, review its timeline and suggestions.
// Every change is one request to /api/datasets (the server applies it to labels.csv as it is now, so two tabs never
// lose each other's segments); the page re-reads the dataset after each. Uses app.js's helpers ($, api, el, say,
// clock, PALETTE, NONE_COLOUR).
"use strict";

const label = {
  dataset: null, data: null, video: null, marks: { start: null, end: null }, selected: null, undo: [], review: null,
  suggestion: null, correcting: null, trainJob: null, drag: null,
};

const send = (method, path, data) => api(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
const dsPath = (rest = "") => `/datasets/${encodeURIComponent(label.dataset)}${rest}`;
const sameSegment = (a, b) => a.video === b.video && a.label === b.label && a.start === b.start && a.end === b.end;
const segmentKey = (s) => `${s.video}|${s.label}|${s.start}|${s.end}`;
const segmentText = (s) => `${s.label} ${clock(s.start)}-${clock(s.end)}`;

function labelColour(name) {
  if (name === "none") return NONE_COLOUR;
  const known = (label.data ? label.data.labels : []).concat(label.review ? label.review.labels || [] : []);
  const names = Array.from(new Set(known)).filter((n) => n !== "none").sort();
  const i = names.indexOf(name);
  return i < 0 ? "#777" : PALETTE[i % PALETTE.length];
}

function duration() {
  const player = $("lb-player");
  if (Number.isFinite(player.duration) && player.duration > 0) return player.duration;
  const reviewed = label.review && label.review.videos.find((v) => v.video === label.video);
  return reviewed ? reviewed.duration : 0;  // a file this browser cannot play: the review knows its length
}

// ---------------------------------------------------------------------------------------------- datasets and videos

async function loadDatasets(choose) {
  const { datasets } = await api("/datasets");
  const select = $("lb-dataset");
  select.replaceChildren(el("option", { value: "", text: datasets.length ? "choose a dataset" : "no dataset yet" }),
    ...datasets.map((d) => el("option", { value: d.name, text: `${d.name} (${d.segments} segments)` })));
  const name = choose || label.dataset;
  if (name && datasets.some((d) => d.name === name)) { select.value = name; await openDataset(name); }
}

async function createDataset() {
  try {
    const name = $("lb-new").value.trim();
    await post("/datasets", { name });
    $("lb-new").value = "";
    await loadDatasets(name);
  } catch (err) { say(err.message); }
}

async function openDataset(name) {
  label.dataset = name || null;
  label.undo = [];
  $("lb-sources").hidden = $("lb-train-panel").hidden = !name;
  if (!name) { $("lb-editor").hidden = true; return; }
  await refreshDataset();
  try { showReview(await api(dsPath("/review"))); } catch (err) { showReview(null); }
  if (label.data.videos.length) openVideo(label.video && label.data.videos.includes(label.video) ? label.video : label.data.videos[0]);
}

async function refreshDataset() {
  label.data = await api(dsPath());
  const option = $("lb-dataset").selectedOptions[0];
  if (option && option.value === label.dataset) option.textContent = `${label.dataset} (${label.data.segments.length} segments)`;
  const videos = $("lb-video");
  videos.replaceChildren(...label.data.videos.map((v) => el("option", { value: v, text: v })));
  if (label.video) videos.value = label.video;
  $("lb-labels").replaceChildren(...label.data.labels.map((l) => el("option", { value: l })));
  drawRounds(label.data.rounds);
  drawLabels();
}

function openVideo(video) {
  label.video = video;
  label.selected = null;
  label.marks = { start: null, end: null };
  $("lb-video").value = video;
  $("lb-editor").hidden = false;
  const player = $("lb-player");
  player.src = "/api" + dsPath(`/video?path=${encodeURIComponent(video)}`);
  drawLabels();
}

async function addVideo(source) {
  if (!label.dataset) { say("choose or create a dataset first: its videos and labels are kept in its folder"); return; }
  try {
    const { video } = await post(dsPath("/videos"), source);
    await refreshDataset();
    openVideo(video);
  } catch (err) { say(err.message); }
}

function uploadVideo(file) {
  if (!label.dataset) { say("choose or create a dataset first: its videos and labels are kept in its folder"); return; }
  say(`uploading ${file.name} ...`, "info");
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/uploads?filename=" + encodeURIComponent(file.name));
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (err) { body = { error: xhr.statusText }; }
    if (xhr.status !== 200) { say(body.error || "the upload failed"); return; }
    say("");
    addVideo({ upload: body.upload });
  };
  xhr.onerror = () => say(`${file.name}: the upload failed (is the server still running?)`);
  xhr.send(file);
}

// ---------------------------------------------------------------------------------------------- segments

function videoSegments() {
  return label.data ? label.data.segments.filter((s) => s.video === label.video) : [];
}

// One edit: the request, then the dataset re-read; its inverse (what it removed and added) kept for undo.
async function edit(request, undoable = true) {
  const before = videoSegments();
  try {
    const result = await request();
    await refreshDataset();
    if (undoable) {
      const after = videoSegments(), had = new Set(before.map(segmentKey)), has = new Set(after.map(segmentKey));
      label.undo.push({ removed: before.filter((s) => !has.has(segmentKey(s))), added: after.filter((s) => !had.has(segmentKey(s))) });
    }
    $("lb-undo").disabled = !label.undo.length;
    say("");
    return result;
  } catch (err) {
    say(err.message);
    await refreshDataset().catch(() => {});
    return null;
  }
}

const removeQuery = (s) => "?" + new URLSearchParams({ video: s.video, label: s.label, start: s.start, end: s.end });

async function addSegment() {
  const name = $("lb-label").value.trim();
  let { start, end } = label.marks;
  if (start === null) start = 0;
  if (end === null) end = $("lb-player").currentTime;
  if (!name) { say("type the segment's label first"); $("lb-label").focus(); return; }
  if (end < start) [start, end] = [end, start];
  const overwrite = label.correcting !== null;
  const made = await edit(() => post(dsPath("/segments"), { video: label.video, label: name, start, end, overwrite }));
  if (made) {
    label.marks = { start: null, end: null };
    label.correcting = null;
    label.selected = made;
    $("lb-label").placeholder = "e.g. serve";
    $("lb-label").blur();  // the keys mark the next range
    drawLabels();
  }
}

async function deleteSelected() {
  const s = label.selected;
  if (!s) return;
  label.selected = null;
  await edit(() => api(dsPath("/segments") + removeQuery(s), { method: "DELETE" }));
}

async function moveSegment(old, start, end) {
  const made = await edit(() => send("PUT", dsPath("/segments"), { old, new: { ...old, start, end } }));
  if (made) { label.selected = made; drawLabels(); }
}

async function undo() {
  const step = label.undo.pop();
  if (!step) return;
  await edit(async () => {
    for (const s of step.added) await api(dsPath("/segments") + removeQuery(s), { method: "DELETE" });
    for (const s of step.removed) await post(dsPath("/segments"), s);
  }, false);
}

async function markFully() {
  await edit(() => send("PUT", dsPath("/fully-labelled"), { video: label.video, fully: $("lb-fully").checked }), false);
}

function mark(which) {
  label.marks[which] = Number($("lb-player").currentTime.toFixed(2));
  drawLabels();
}

// ---------------------------------------------------------------------------------------------- drawing

function place(node, start, end, total) {
  node.style.left = `${(start / total) * 100}%`;
  node.style.width = `${((end - start) / total) * 100}%`;
  return node;
}

function drawLabels() {
  const total = duration() || Math.max(1, ...videoSegments().map((s) => s.end));
  const segments = videoSegments();
  const nodes = segments.map((s) => {
    const node = el("div", { class: "segment" + (label.selected && sameSegment(s, label.selected) ? " selected" : ""),
      title: segmentText(s), dataset: { label: s.label, start: String(s.start), end: String(s.end) },
      style: `background:${labelColour(s.label)}` }, el("span", { text: s.label }),
    el("div", { class: "edge left", dataset: { edge: "start" } }), el("div", { class: "edge right", dataset: { edge: "end" } }));
    node.addEventListener("pointerdown", (e) => startDrag(e, s, node, total));
    return place(node, s.start, s.end, total);
  });
  const { start, end } = label.marks;
  if (start !== null || end !== null) {
    const a = start ?? 0, b = end ?? $("lb-player").currentTime;
    nodes.push(place(el("div", { class: "marked" }), Math.min(a, b), Math.max(a, b), total));
  }
  nodes.push(el("div", { class: "playhead", id: "lb-playhead" }));
  $("lb-strip").replaceChildren(...nodes);
  movePlayhead();
  $("lb-range").textContent = start === null && end === null ? "no range marked" :
    `${start === null ? "…" : clock(start)} – ${end === null ? "…" : clock(end)}`;
  $("lb-axis-end").textContent = clock(total);
  $("lb-delete").disabled = !label.selected;
  $("lb-fully").checked = !!(label.data && label.data.fully_labelled.includes(label.video));
  const byTime = segments.slice().sort((a, b) => a.start - b.start);
  $("lb-segments").tBodies[0].replaceChildren(...byTime.map((s) => el("tr", { class: "segment-row", onclick: () => select(s) },
    el("td", { text: clock(s.start) }), el("td", { text: clock(s.end) }), el("td", { class: "segment-label", text: s.label }),
    el("td", {}, el("button", { text: "Delete", onclick: (e) => { e.stopPropagation(); label.selected = s; deleteSelected(); } })))));
  drawModel(total);
}

function movePlayhead() {
  const head = $("lb-playhead"), total = duration();
  if (head && total) head.style.left = `${($("lb-player").currentTime / total) * 100}%`;
}

function select(s) {
  label.selected = s;
  $("lb-player").currentTime = s.start;
  drawLabels();
}

// Dragging a segment's edge moves it on the strip; letting go saves the move (one replace). A press without a move
// selects the segment and seeks to it.
function startDrag(e, s, node, total) {
  const edge = e.target.dataset.edge;
  const strip = $("lb-strip").getBoundingClientRect();
  label.drag = { s, edge, moved: false, start: s.start, end: s.end };
  node.setPointerCapture(e.pointerId);
  const move = (ev) => {
    if (!edge) return;
    const t = Math.min(total, Math.max(0, ((ev.clientX - strip.left) / strip.width) * total));
    const d = label.drag;
    d.moved = true;
    if (edge === "start") d.start = Math.min(t, d.end - 0.1); else d.end = Math.max(t, d.start + 0.1);
    place(node, d.start, d.end, total);
  };
  const up = () => {
    node.removeEventListener("pointermove", move);
    node.removeEventListener("pointerup", up);
    const d = label.drag;
    label.drag = null;
    if (d.moved) moveSegment(d.s, Number(d.start.toFixed(2)), Number(d.end.toFixed(2)));
    else select(d.s);
  };
  node.addEventListener("pointermove", move);
  node.addEventListener("pointerup", up);
}

// ---------------------------------------------------------------------------------------------- train and review

async function train() {
  try {
    const job = await post(dsPath("/train"), { epochs: Number($("lb-epochs").value), finetune_epochs: Number($("lb-finetune").value) });
    label.trainJob = job.id;
    $("lb-train").disabled = true;
    $("lb-progress").hidden = false;
    pollTraining();
  } catch (err) { say(err.message); }
}

async function pollTraining() {
  let job;
  try { job = await api(`/jobs/${label.trainJob}`); } catch (err) { say(err.message); return; }
  $("lb-progress").value = job.progress;
  $("lb-status").textContent = job.status === "running" ? job.message : job.status;
  if (job.status === "queued" || job.status === "running") { setTimeout(pollTraining, POLL_MS); return; }
  $("lb-train").disabled = false;
  $("lb-progress").hidden = true;
  if (job.status !== "done") { say(`training ${job.name} ${job.status}: ${job.error}`); return; }
  $("lb-status").textContent = `round ${job.result.round.round} done: ${job.result.run}`;
  await refreshDataset();
  showReview(job.result.review);
}

function drawRounds(rounds) {
  const pct = (v) => (typeof v === "number" ? `${(v * 100).toFixed(1)} %` : "–");
  $("lb-rounds").hidden = !rounds.length;
  $("lb-rounds").tBodies[0].replaceChildren(...rounds.map((r) => el("tr", {}, el("td", { text: String(r.round) }),
    el("td", { text: r.run }), el("td", { text: String(r.segments) }), el("td", { text: pct(r.val_accuracy) }),
    el("td", { text: pct(r.test_accuracy) }),
    el("td", { class: "note", title: r.split_policy || "", text: (r.split_policy || "").split("; ").slice(0, 2).join("; ") }))));
}

function showReview(review) {
  label.review = review && review.review ? review.review : review;
  if (label.review) label.review.labels = Array.from(new Set(label.review.videos.flatMap((v) => v.labels || [])));
  const suggestions = label.review ? label.review.suggestions : [];
  $("lb-no-suggestions").hidden = !!label.review;
  if (label.review && !suggestions.length) $("lb-no-suggestions").textContent = "No suggestions: the model agrees with every label.";
  $("lb-suggestions").replaceChildren(...suggestions.map((s, i) => el("li", {
    class: "suggestion", dataset: { index: String(i), kind: s.kind, label: s.label }, onclick: () => chooseSuggestion(i) },
  el("span", { class: "what", text: `${s.video} ${clock(s.start)}-${clock(s.end)}: ${s.label}` + (s.current ? ` (labelled ${s.current})` : "") }),
  el("span", { class: "kind", text: `${s.kind}, ${s.confidence.toFixed(2)}` }),
  el("button", { class: "accept", text: "Accept [A]", onclick: (e) => { e.stopPropagation(); chooseSuggestion(i); acceptSuggestion(); } }),
  el("button", { class: "correct", text: "Correct [C]", onclick: (e) => { e.stopPropagation(); chooseSuggestion(i); correctSuggestion(); } }))));
  drawLabels();
}

function drawModel(total) {
  const timeline = label.review && label.review.videos.find((v) => v.video === label.video);
  $("lb-model-strip").hidden = $("lb-model-name").hidden = !timeline;
  if (!timeline) return;
  $("lb-model-name").textContent = `model ${label.review.run}`;
  $("lb-model-strip").replaceChildren(...timeline.segments.map((s) => place(el("div", {
    class: "segment", title: `${segmentText(s)} (${s.confidence.toFixed(2)})`, style: `background:${labelColour(s.label)}`,
    dataset: { label: s.label, start: String(s.start), end: String(s.end) }, onclick: () => { $("lb-player").currentTime = s.start; },
  }, el("span", { text: s.label })), s.start, s.end, total || timeline.duration)));
}

function chooseSuggestion(i) {
  const s = label.review.suggestions[i];
  label.suggestion = s;
  for (const li of $("lb-suggestions").children) li.classList.toggle("selected", Number(li.dataset.index) === i);
  if (s.video !== label.video) openVideo(s.video);
  const player = $("lb-player");
  const seekTo = () => { player.currentTime = s.start; };
  if (player.readyState >= 1) seekTo(); else player.addEventListener("loadedmetadata", seekTo, { once: true });
}

async function acceptSuggestion() {
  const s = label.suggestion;
  if (!s) return;
  await edit(() => post(dsPath("/segments"), { video: s.video, label: s.label, start: s.start, end: s.end, overwrite: true }));
}

function correctSuggestion() {
  const s = label.suggestion;
  if (!s) return;
  label.correcting = s;
  label.marks = { start: s.start, end: s.end };
  $("lb-label").value = "";
  $("lb-label").placeholder = `the right label for ${clock(s.start)}-${clock(s.end)}`;
  drawLabels();
  $("lb-label").focus();
}

// ---------------------------------------------------------------------------------------------- keys and set-up

function onKey(e) {
  if ($("label").hidden || !label.video) return;
  const typing = e.target.matches("input, select, textarea");
  if (e.key === "Enter" && (!typing || e.target.id === "lb-label")) { e.preventDefault(); addSegment(); return; }
  if (typing) return;
  const key = e.key.toLowerCase();
  if ((e.ctrlKey || e.metaKey) && key === "z") { e.preventDefault(); undo(); }
  else if (e.ctrlKey || e.metaKey || e.altKey) return;
  else if (key === "i" || key === "[") mark("start");
  else if (key === "o" || key === "]") mark("end");
  else if (key === "delete" || key === "backspace") deleteSelected();
  else if (key === "a") acceptSuggestion();
  else if (key === "c") correctSuggestion();
  else return;
  e.preventDefault();
}

function wireLabel() {
  $("lb-create").addEventListener("click", createDataset);
  $("lb-dataset").addEventListener("change", () => openDataset($("lb-dataset").value).catch((err) => say(err.message)));
  $("lb-video").addEventListener("change", () => openVideo($("lb-video").value));
  $("lb-file").addEventListener("change", (e) => { if (e.target.files[0]) uploadVideo(e.target.files[0]); e.target.value = ""; });
  $("lb-pick-add").addEventListener("click", () => addVideo({ path: $("lb-pick").value.trim() }));
  $("lb-start").addEventListener("click", () => mark("start"));
  $("lb-end").addEventListener("click", () => mark("end"));
  $("lb-add").addEventListener("click", addSegment);
  $("lb-delete").addEventListener("click", deleteSelected);
  $("lb-undo").addEventListener("click", undo);
  $("lb-fully").addEventListener("change", markFully);
  $("lb-train").addEventListener("click", train);
  const player = $("lb-player");
  player.addEventListener("loadedmetadata", drawLabels);
  player.addEventListener("error", () => say(`${label.video}: this browser cannot play this file; convert it to mp4 or webm `
    + "to label it here (training and the review still read it)"));
  player.addEventListener("timeupdate", movePlayhead);
  document.addEventListener("keydown", onKey);
  $("tab-label").addEventListener("click", async () => {
    try {
      const info = state.info || await api("/info");
      if (!info.data_root) {
        $("lb-note").textContent = "Labelling needs the server started with --data-root (the folder that holds the datasets).";
        $("lb-create").disabled = true;
        return;
      }
      $("lb-epochs").value = $("lb-epochs").value || info.train_defaults.epochs;
      $("lb-finetune").value = $("lb-finetune").value || info.train_defaults.finetune_epochs;
      await loadDatasets();
    } catch (err) { say(err.message); }
  });
}

document.addEventListener("DOMContentLoaded", wireLabel);
