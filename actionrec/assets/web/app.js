// actionrec's page: uploads and jobs, a short clip's top 5, a long video's timeline (relabelled in the page by
// relabel.js), flagging and censoring, runs. Plain JavaScript over the REST API under /api; nothing from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const UPLOADS_AT_ONCE = 3;
const POLL_MS = 800;
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#3b8bc2"];
const NONE_COLOUR = "#c9c9c9";

const state = {
  jobs: new Map(), mine: new Map(), opened: new Set(), shown: null, windows: null, flags: [], uploads: [], uploading: 0,
  pickerPath: "", info: null, pollTimer: null, classes: [], categories: null,
};

// ---------------------------------------------------------------------------------------------- helpers

async function api(path, options = {}) {
  const response = await fetch("/api" + path, options);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("application/json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

const post = (path, data) => api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function say(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

function clock(seconds) {
  const s = Math.max(0, seconds), m = Math.floor(s / 60), h = Math.floor(m / 60);
  const rest = (s - m * 60).toFixed(1).padStart(4, "0");
  return h ? `${h}:${String(m % 60).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

function colourOf(label) {
  if (!state.windows || label === state.windows.none) return NONE_COLOUR;
  const i = state.windows.labels.indexOf(label);
  return i < 0 ? "#777" : PALETTE[i % PALETTE.length];
}

function bars(list, items) {
  list.replaceChildren(...items.map(({ label, prob }) => el("li", { class: "bar-row" },
    el("span", { class: "label", text: label }),
    el("span", { class: "bar" }, el("span", { class: "fill", style: `width:${(prob * 100).toFixed(1)}%` })),
    el("span", { class: "value", text: prob.toFixed(3) }))));
}

// ---------------------------------------------------------------------------------------------- uploads and jobs

function chosenLabels() {
  const names = $("labels").value.split(",").map((s) => s.trim()).filter(Boolean);
  return names.length ? names : null;
}

function groupBy() {
  return $("group-by-field").hidden ? null : $("group-by").value || null;
}

function jobOptions() {
  return { model: $("model").value || null, labels: chosenLabels(), mode: $("mode").value, group_by: groupBy() };
}

function addFiles(files) {
  say("");
  for (const file of files) state.uploads.push(file);
  pumpUploads();
}

function pumpUploads() {
  while (state.uploading < UPLOADS_AT_ONCE && state.uploads.length) {
    state.uploading += 1;
    upload(state.uploads.shift()).finally(() => { state.uploading -= 1; pumpUploads(); });
  }
}

function upload(file) {
  const row = el("li", { class: "job uploading" }, el("span", { class: "name", text: file.name }),
    el("progress", { max: "1", value: "0" }), el("span", { class: "status", text: "uploading" }));
  $("jobs").prepend(row);
  $("no-jobs").hidden = true;
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/uploads?filename=" + encodeURIComponent(file.name));
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) row.querySelector("progress").value = e.loaded / e.total; };
    xhr.onload = async () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = { error: xhr.statusText }; }
      row.remove();
      if (xhr.status !== 200) {
        const error = body.error || "the upload failed";
        say(error.startsWith(file.name) ? error : `${file.name}: ${error}`);
      } else {
        try { await createJob({ upload: body.upload }); } catch (err) { say(err.message); }
      }
      resolve();
    };
    xhr.onerror = () => { row.remove(); say(`${file.name}: the upload failed (is the server still running?)`); resolve(); };
    xhr.send(file);
  });
}

async function createJob(source) {
  const job = await post("/jobs", { ...source, ...jobOptions() });
  state.mine.set(job.id, Date.now());
  state.jobs.set(job.id, job);
  renderJobs();
  schedulePoll();
  return job;
}

// A job made in this page opens once, when it is first seen done, after a minute or at once (a cached result),
// unless the person opened another job by hand after making it.
function openMine(job) {
  if (job.status !== "done" || !state.mine.has(job.id) || state.opened.has(job.id)) return;
  state.opened.add(job.id);
  if (!state.shown || state.shown.auto || state.mine.get(job.id) >= state.shown.at) openJob(job.id, true);
}

async function refreshJobs() {
  const { jobs } = await api("/jobs");
  const before = new Map(state.jobs);
  state.jobs = new Map(jobs.map((j) => [j.id, j]));
  renderJobs();
  for (const job of jobs) {
    const old = before.get(job.id);
    openMine(job);
    if (job.status === "done" && old && old.status !== "done" && state.shown && job.parent === state.shown.id) showCensored(job);
  }
  return jobs.some((j) => j.status === "queued" || j.status === "running");
}

function schedulePoll() {
  if (state.pollTimer) return;
  state.pollTimer = setTimeout(async () => {
    state.pollTimer = null;
    let active = true;
    try { active = await refreshJobs(); } catch (err) { say(err.message); }
    if (active || state.uploading) schedulePoll();
  }, POLL_MS);
}

function renderJobs() {
  const list = $("jobs");
  const uploading = Array.from(list.querySelectorAll(".uploading"));
  const rows = Array.from(state.jobs.values()).map(jobRow);
  list.replaceChildren(...uploading, ...rows);
  $("no-jobs").hidden = rows.length + uploading.length > 0;
}

function jobRow(job) {
  const active = job.status === "queued" || job.status === "running";
  const text = job.status === "failed" || job.status === "interrupted" ? `${job.status}: ${job.error}` :
    active ? `${job.status}${job.message ? ": " + job.message : ""}` : job.status;
  const row = el("li", { class: `job ${job.status}`, dataset: { id: job.id } },
    el("span", { class: "name", text: job.name }),
    el("span", { class: "model", text: job.kind === "train" ? "training" : job.model }),
    el("progress", { max: "1", value: String(job.status === "done" ? 1 : job.progress) }),
    el("span", { class: "status", text }));
  if (active) row.append(el("button", { class: "cancel", text: "Cancel", onclick: () => cancelJob(job.id) }));
  if (job.status === "done") row.append(el("button", { class: "open", text: "Open", onclick: () => openJob(job.id, false) }));
  if (!active) row.append(el("button", { class: "remove", text: "Remove", onclick: () => removeJob(job.id) }));
  if (job.kind === "train" && job.log.length) row.append(el("pre", { class: "log", text: job.log.slice(-6).join("\n") }));
  return row;
}

async function cancelJob(id) {
  try { await post(`/jobs/${id}/cancel`, {}); await refreshJobs(); } catch (err) { say(err.message); }
}

async function removeJob(id) {
  try {
    await api(`/jobs/${id}`, { method: "DELETE" });
    if (state.shown && state.shown.id === id) { $("result").hidden = true; state.shown = null; }
    await refreshJobs();
  } catch (err) { say(err.message); }
}

// ---------------------------------------------------------------------------------------------- results

async function openJob(id, auto) {
  const job = await api(`/jobs/${id}`);
  state.shown = { id, auto, job, at: Date.now() };
  $("result").hidden = false;
  $("result-title").textContent = job.name;
  const by = job.params && job.params.group_by ? ", by Kinetics-400 category" : job.params && job.params.groups ? ", by group" : "";
  $("result-note").textContent = job.kind === "analyse" ? `${job.model}${by}` : "";
  for (const v of ["clip-view", "timeline-view", "other-view"]) $(v).hidden = true;
  if (job.view === "clip") {
    $("clip-view").hidden = false;
    bars($("top5"), job.result.top);
  } else if (job.view === "timeline") {
    await showTimeline(job);
  } else {
    showOther(job);
  }
}

function showOther(job) {
  const view = $("other-view");
  view.hidden = false;
  const parts = [];
  if (job.view === "censor") {
    parts.push(el("p", { text: `${job.result.censored} of ${job.result.frames} frames censored.` }));
    parts.push(el("a", { href: `/api/jobs/${job.id}/video`, download: "", text: "Download the censored copy" }));
  } else if (job.view === "train" || job.view === "review") {
    if (job.result.summary) parts.push(el("pre", { text: job.result.summary }));
    if (job.kind === "train") parts.push(el("a", { href: `/api/runs/${encodeURIComponent(job.name)}/report`, target: "_blank", text: "Open its report" }));
    if (job.view === "review") parts.push(el("p", { class: "note", text: `Its timelines and suggestions are in the Label tab (dataset ${job.params.dataset}).` }));
  }
  view.replaceChildren(...parts);
}

async function showTimeline(job) {
  $("timeline-view").hidden = false;
  state.windows = await api(`/jobs/${job.id}/windows`);
  state.flags = [];
  const player = $("player");
  $("player-note").hidden = true;
  player.onerror = () => { $("player-note").hidden = false; };
  player.src = `/api/jobs/${job.id}/video`;
  const thresholds = Object.values(state.windows.thresholds);
  const slider = $("threshold");
  slider.min = state.windows.slider[0];
  slider.max = state.windows.slider[1];
  slider.value = thresholds.length ? thresholds.reduce((a, b) => a + b, 0) / thresholds.length : 0.5;
  slider.dataset.moved = "";
  bars($("top5-long"), job.top);
  $("axis-end").textContent = clock(state.windows.duration);
  renderFlagLabels();
  relabelPage(state.windows.thresholds);
}

function currentThreshold() {
  return $("threshold").dataset.moved ? Number($("threshold").value) : null;
}

// Decide the timeline in the page at the given per-class thresholds and draw it (no request).
function relabelPage(thresholds) {
  const w = state.windows;
  const { segments, totals } = Relabel.timeline(w, thresholds);
  const t = currentThreshold();
  $("threshold-value").textContent = t === null ? "as analysed" : t.toFixed(2);
  drawTimeline(segments, w.duration);
  drawChart(totals, w.duration);
  drawSegments(segments);
  for (const a of document.querySelectorAll(".downloads a")) {
    a.href = `/api/jobs/${state.shown.id}/download/${a.dataset.kind}` + (t === null ? "" : `?threshold=${t}`);
  }
}

function seek(seconds) {
  const player = $("player");
  player.currentTime = seconds;
}

function drawTimeline(segments, duration) {
  $("timeline").replaceChildren(...segments.map((s) => el("div", {
    class: "segment", title: `${s.label} ${clock(s.start)}-${clock(s.end)} (${s.confidence.toFixed(2)})`,
    style: `left:${(s.start / duration) * 100}%;width:${((s.end - s.start) / duration) * 100}%;background:${colourOf(s.label)}`,
    dataset: { start: s.start.toFixed(3), end: s.end.toFixed(3), label: s.label },
    onclick: () => seek(s.start),
  }, el("span", { text: s.label })))); 
  drawFlags(duration);
}

function drawChart(totals, duration) {
  const rows = Object.entries(totals).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
  $("chart").replaceChildren(...rows.map(([label, seconds]) => el("div", { class: "bar-row" },
    el("span", { class: "label", text: label }),
    el("span", { class: "bar" }, el("span", { class: "fill", style: `width:${(seconds / duration) * 100}%;background:${colourOf(label)}` })),
    el("span", { class: "value", text: `${clock(seconds)} (${((seconds / duration) * 100).toFixed(1)}%)` }))));
}

function drawSegments(segments) {
  const id = state.shown.id;
  const labelled = segments.filter((s) => s.label !== state.windows.none);
  $("thumbs").replaceChildren(...labelled.map((s) => el("figure", { class: "thumb", onclick: () => seek(s.start) },
    el("img", { src: `/api/jobs/${id}/thumbnail?t=${((s.start + s.end) / 2).toFixed(2)}`, alt: s.label, loading: "lazy" }),
    el("figcaption", { text: `${clock(s.start)} ${s.label}` }))));
  $("segments").tBodies[0].replaceChildren(...segments.map((s) => el("tr", { class: "segment-row", onclick: () => seek(s.start) },
    el("td", { text: clock(s.start) }), el("td", { text: clock(s.end) }),
    el("td", { class: "segment-label", text: s.label }), el("td", { text: s.confidence.toFixed(2) }))));
}

// ---------------------------------------------------------------------------------------------- flag and censor

function renderFlagLabels() {
  $("flag-note").textContent = "";
  $("flag-labels").replaceChildren(...state.windows.labels.map((l) => el("label", { class: "check" },
    el("input", { type: "checkbox", value: l }), l)));
}

function flagChoice() {
  const labels = Array.from($("flag-labels").querySelectorAll("input:checked")).map((i) => i.value);
  if (!labels.length) throw new Error("choose one or more actions to flag");
  return { labels, threshold: currentThreshold() };
}

function drawFlags(duration) {
  $("flag-bar").replaceChildren(...state.flags.map((r) => el("div", {
    class: "flag", title: `${r.labels.join(", ")} ${clock(r.start)}-${clock(r.end)}`,
    style: `left:${(r.start / duration) * 100}%;width:${((r.end - r.start) / duration) * 100}%`,
    onclick: () => seek(r.start),
  })));
}

async function showFlags() {
  try {
    const { ranges } = await post(`/jobs/${state.shown.id}/flag`, flagChoice());
    state.flags = ranges;
    drawFlags(state.windows.duration);
    const total = ranges.reduce((t, r) => t + r.end - r.start, 0);
    $("flag-note").textContent = `${ranges.length} ${ranges.length === 1 ? "range" : "ranges"}, ${clock(total)} in all`;
  } catch (err) { say(err.message); }
}

async function censor() {
  try {
    const job = await post(`/jobs/${state.shown.id}/censor`, { ...flagChoice(), style: $("censor-style").value });
    state.jobs.set(job.id, job);
    renderJobs();
    schedulePoll();
    $("flag-note").textContent = "censoring: the copy appears here when it is ready";
  } catch (err) { say(err.message); }
}

function showCensored(job) {
  $("flag-note").replaceChildren(el("a", { href: `/api/jobs/${job.id}/video`, download: "", text: "Download the censored copy" }));
}

// ---------------------------------------------------------------------------------------------- data folder picker

async function browse(path) {
  try {
    const { entries } = await api("/files?path=" + encodeURIComponent(path));
    state.pickerPath = path;
    $("picker").hidden = false;
    $("picker-path").textContent = "/" + path;
    $("picker-list").replaceChildren(...entries.map((e) => el("li", { class: e.kind },
      el("button", {
        text: e.kind === "dir" ? e.name + "/" : e.name,
        onclick: () => (e.kind === "dir" ? browse(e.path) : createJob({ path: e.path }).catch((err) => say(err.message))),
      }))));
  } catch (err) { say(err.message); }
}

// ---------------------------------------------------------------------------------------------- runs

async function loadRuns() {
  try {
    const { runs } = await api("/runs");
    $("no-runs").hidden = runs.length > 0;
    $("run-table").tBodies[0].replaceChildren(...runs.map((r) => el("tr", {},
      el("td", { text: r.name }), el("td", { text: (r.classes || []).join(", ") }),
      el("td", { text: r.test_accuracy == null ? "" : r.test_accuracy.toFixed(3) }),
      el("td", { text: r.macro_f1 == null ? "" : r.macro_f1.toFixed(3) }),
      el("td", {}, r.report ? el("a", { href: `/api/runs/${encodeURIComponent(r.name)}/report`, target: "_blank", text: "report" }) : ""))));
    for (const id of ["compare-a", "compare-b"]) $(id).replaceChildren(...runs.map((r) => el("option", { text: r.name })));
    if (runs.length > 1) $("compare-b").selectedIndex = 1;
  } catch (err) { say(err.message); }
}

async function compare() {
  try {
    const query = ["compare-a", "compare-b"].map((id) => "runs=" + encodeURIComponent($(id).value)).join("&");
    $("compare-table").textContent = (await api("/compare?" + query)).table;
  } catch (err) { say(err.message); }
}

async function startTraining() {
  try {
    const classes = $("train-classes").value.split(",").map((s) => s.trim()).filter(Boolean);
    const job = await post("/train", {
      data: $("train-data").value, name: $("train-name").value, classes: classes.length ? classes : null,
      epochs: Number($("train-epochs").value), finetune_epochs: Number($("train-finetune").value),
    });
    state.jobs.set(job.id, job);
    showTab("videos");
    renderJobs();
    schedulePoll();
  } catch (err) { say(err.message); }
}

// ---------------------------------------------------------------------------------------------- set-up

function showTab(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
  for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== name;
  if (name === "runs") loadRuns();
}

async function loadClasses() {
  try {
    const { classes, categories } = await api(`/models/${encodeURIComponent($("model").value)}/classes`);
    Object.assign(state, { classes, categories });
    $("group-by-field").hidden = !categories;  // the published categories group Kinetics-400's classes only
    listLabels();
  } catch (err) { say(err.message); }
}

// The names the Classes field may take: the model's classes, or its categories when the results are grouped.
function listLabels() {
  const names = groupBy() ? state.categories : state.classes;
  $("label-list").replaceChildren(...names.map((c) => el("option", { value: c })));
}

function wire() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); addFiles(e.dataTransfer.files); });
  $("file-input").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  $("model").addEventListener("change", loadClasses);
  $("group-by").addEventListener("change", listLabels);
  $("threshold").addEventListener("input", () => {
    $("threshold").dataset.moved = "1";
    const t = Number($("threshold").value);
    relabelPage(Object.fromEntries(state.windows.labels.map((l) => [l, t])));
  });
  $("flag-show").addEventListener("click", showFlags);
  $("censor").addEventListener("click", censor);
  $("browse").addEventListener("click", () => browse(""));
  $("picker-up").addEventListener("click", () => browse(state.pickerPath.split("/").slice(0, -1).join("/")));
  $("picker-close").addEventListener("click", () => { $("picker").hidden = true; });
  $("compare").addEventListener("click", compare);
  $("train").addEventListener("click", startTraining);
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
}

async function start() {
  wire();
  try {
    state.info = await api("/info");
    $("train-epochs").value = state.info.train_defaults.epochs;
    $("train-finetune").value = state.info.train_defaults.finetune_epochs;
    $("browse").hidden = !state.info.data_root;
    $("train").disabled = !state.info.data_root;
    if (!state.info.data_root) $("train-note").textContent = "Training needs the server started with --data-root (the folder of datasets).";
    const { models } = await api("/models");
    $("model").replaceChildren(...models.map((m) => el("option", { value: m.name, text: m.label })));
    loadClasses();
    if (await refreshJobs()) schedulePoll();
  } catch (err) { say(err.message); }
}

document.addEventListener("DOMContentLoaded", start);
