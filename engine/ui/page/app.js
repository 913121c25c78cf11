// The colorization window: the photo with its color points, a live preview from the engine,
// suggestions, a reference, saturation, before/after, undo/redo and Save. It talks to
// engine/ui/server.py under the page's own keyed address (relative URLs carry the key).
// The points live here: an engine that restarts loses nothing, they are sent again.
"use strict";

const $ = (id) => document.getElementById(id);
const HIT_PX = 12;            // how near (screen pixels) a click must be to pick a point
const DRAG_PX = 4;            // a press that moves more than this pans instead of placing
const COALESCE_MS = 800;      // repeated edits of one kind (a drag, the slider) are one undo step
const HEALTH_MS = 500;
const NOTICE_MS = 5000;       // how long the page says that the engine was restarted

let info = null;              // the server's state: sizes, name, paths
let edit = {points: [], saturation: 1, reference: 0};
let selected = -1;
const undoStack = [], redoStack = [];
let lastEdit = {kind: null, at: 0};
let view = {scale: 1, x: 0, y: 0};
let photo = null;             // the photo the page shows under the colors
let havePreview = false, before = false;
let engineOk = false;
let outagesSeen = null, noticeUntil = 0;
// Generations grow across pages too (a reloaded page must not look older than the one before it).
let generation = Date.now(), inFlight = false, dirty = false, editedAt = 0;
let suggestToken = 0;
const referenceThumbs = {};

// ---- the server ----

async function call(name, body, raw) {
  const r = await fetch("api/" + name, {method: "POST", body: raw ? body : JSON.stringify(body || {})});
  if (r.ok) return r;
  const answer = await r.json().catch(() => ({error: r.statusText}));
  const err = new Error(answer.error || r.statusText);
  err.status = r.status;
  throw err;
}

function wire(points) {
  return points.map((p) => ({x: p.x, y: p.y, rgb: p.rgb}));
}

// ---- edits, undo, redo ----

function snapshot() {
  return JSON.stringify(edit);
}

function change(kind, apply) {
  const now = Date.now();
  const coalesce = kind !== "discrete" && kind === lastEdit.kind && now - lastEdit.at < COALESCE_MS;
  if (!coalesce) {
    undoStack.push(snapshot());
    redoStack.length = 0;
  }
  lastEdit = {kind: kind, at: now};
  apply();
  edited();
}

function edited() {
  if (selected >= edit.points.length) selected = edit.points.length - 1;
  $("undo").disabled = undoStack.length === 0;
  $("redo").disabled = redoStack.length === 0;
  $("saturation").value = Math.round(edit.saturation * 100);
  $("saturation-value").textContent = Math.round(edit.saturation * 100) + "%";
  showReference();
  showPoint();
  requestPreview();
  draw();
}

function undo() {
  if (!undoStack.length) return;
  redoStack.push(snapshot());
  edit = JSON.parse(undoStack.pop());
  lastEdit = {kind: null, at: 0};
  edited();
}

function redo() {
  if (!redoStack.length) return;
  undoStack.push(snapshot());
  edit = JSON.parse(redoStack.pop());
  lastEdit = {kind: null, at: 0};
  edited();
}

// ---- the live preview: one request at a time, the newest edit wins ----

function requestPreview() {
  dirty = true;
  editedAt = performance.now();
  pump();
}

async function pump() {
  if (inFlight || !dirty || !engineOk || !info) return;
  dirty = false;
  inFlight = true;
  const gen = ++generation;
  const started = editedAt;
  try {
    const r = await call("preview", {points: wire(edit.points), saturation: edit.saturation,
                                     reference: edit.reference, generation: gen});
    const rgb = new Uint8Array(await r.arrayBuffer());
    showPreview(rgb);
    $("stage").dataset.preview = String(gen);
    setStatus(edit.points.length + " point" + (edit.points.length === 1 ? "" : "s") + " · preview in " +
              Math.round(performance.now() - started) + " ms");
  } catch (err) {
    if (err.status === 503 || err.status === undefined) {
      dirty = true;
      engineDown(err.status === 503 ? "The engine stopped; starting it again… (your points are kept)"
                                    : "The window's server does not answer (" + err.message + ")");
    } else if (err.status !== 409) {
      setStatus("Preview failed: " + err.message, true);
    }
  } finally {
    inFlight = false;
    pump();
  }
}

function showPreview(rgb) {
  const canvas = $("preview");
  const w = info.preview_width, h = info.preview_height;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let i = 0, j = 0; i < w * h; i++, j += 3) {
    img.data[4 * i] = rgb[j];
    img.data[4 * i + 1] = rgb[j + 1];
    img.data[4 * i + 2] = rgb[j + 2];
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  havePreview = true;
  draw();
}

// ---- the engine's health ----

function engineDown(message) {
  engineOk = false;
  showBanner(message);
}

function showBanner(message) {
  const banner = $("engine-banner");
  banner.textContent = message;
  banner.hidden = false;
}

async function watchEngine() {
  try {
    const r = await fetch("api/health");
    const health = await r.json();
    if (health.ok) {
      // A restart quicker than our polling still counts: the engine says how often it went away.
      const restarted = outagesSeen !== null && health.outages > outagesSeen;
      outagesSeen = health.outages;
      if (restarted) {
        showBanner("The engine stopped and was started again; your points are kept.");
        noticeUntil = Date.now() + NOTICE_MS;
      }
      if (!engineOk || restarted) {
        engineOk = true;
        dirty = true;
        pump();
        if (selected >= 0 && !$("suggestions").querySelector(".swatch")) suggest();
      }
      if (Date.now() >= noticeUntil) $("engine-banner").hidden = true;
    } else {
      engineDown(health.message);
    }
  } catch (err) {
    engineDown("The window's server does not answer; is `tinct ui` still running?");
  }
  setTimeout(watchEngine, HEALTH_MS);
}

// ---- drawing: the photo, its colors (canvas "color" blending keeps the photo's detail), points ----

function draw() {
  const canvas = $("view");
  const rect = canvas.getBoundingClientRect();
  if (canvas.width !== Math.round(rect.width) || canvas.height !== Math.round(rect.height)) {
    canvas.width = Math.round(rect.width);
    canvas.height = Math.round(rect.height);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!photo || !info) return;
  ctx.setTransform(view.scale, 0, 0, view.scale, view.x, view.y);
  ctx.imageSmoothingEnabled = view.scale < 2;
  ctx.drawImage(photo, 0, 0, info.width, info.height);
  if (havePreview && !before) {
    ctx.imageSmoothingEnabled = true;
    ctx.globalCompositeOperation = "color";
    ctx.drawImage($("preview"), 0, 0, info.width, info.height);
    ctx.globalCompositeOperation = "source-over";
  }
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  if (before) return;
  edit.points.forEach((p, i) => {
    const s = toScreen(p.x + 0.5, p.y + 0.5);
    const r = i === selected ? 9 : 6;
    ctx.beginPath();
    ctx.arc(s.x, s.y, r, 0, 2 * Math.PI);
    ctx.fillStyle = rgbText(p.rgb);
    ctx.fill();
    ctx.lineWidth = 3;
    ctx.strokeStyle = "#000";
    ctx.stroke();
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = "#fff";
    ctx.stroke();
  });
}

function rgbText(rgb) {
  return "rgb(" + rgb[0] + "," + rgb[1] + "," + rgb[2] + ")";
}

function hex(rgb) {
  return "#" + rgb.map((v) => v.toString(16).padStart(2, "0")).join("");
}

function toScreen(x, y) {
  return {x: x * view.scale + view.x, y: y * view.scale + view.y};
}

function toPhoto(sx, sy) {
  return {x: (sx - view.x) / view.scale, y: (sy - view.y) / view.scale};
}

function fit() {
  if (!info) return;
  const rect = $("view").getBoundingClientRect();
  view.scale = Math.min(rect.width / info.width, rect.height / info.height) * 0.96;
  view.x = (rect.width - info.width * view.scale) / 2;
  view.y = (rect.height - info.height * view.scale) / 2;
  draw();
}

function zoom(factor, sx, sy) {
  const rect = $("view").getBoundingClientRect();
  if (sx === undefined) { sx = rect.width / 2; sy = rect.height / 2; }
  const scale = Math.min(32, Math.max(0.02, view.scale * factor));
  view.x = sx - (sx - view.x) * scale / view.scale;
  view.y = sy - (sy - view.y) * scale / view.scale;
  view.scale = scale;
  draw();
}

// ---- points ----

function pointAt(sx, sy) {
  let best = -1, bestD = HIT_PX;
  edit.points.forEach((p, i) => {
    const s = toScreen(p.x + 0.5, p.y + 0.5);
    const d = Math.hypot(s.x - sx, s.y - sy);
    if (d <= bestD) { best = i; bestD = d; }
  });
  return best;
}

function inside(p) {
  return p.x >= 0 && p.y >= 0 && p.x < info.width && p.y < info.height;
}

function select(i) {
  selected = i;
  showPoint();
  draw();
  suggest();
}

function showPoint() {
  const has = selected >= 0 && selected < edit.points.length;
  $("point-box").hidden = !has;
  $("no-point").hidden = has;
  if (has) $("color").value = hex(edit.points[selected].rgb);
}

function setColor(rgb, kind) {
  if (selected < 0) return;
  change(kind, () => { edit.points[selected].rgb = rgb.slice(); });
}

function deleteSelected() {
  if (selected < 0) return;
  const i = selected;
  change("discrete", () => { edit.points.splice(i, 1); });
  select(-1);
}

async function suggest() {
  const box = $("suggestions");
  const token = ++suggestToken;
  box.textContent = "";
  if (selected < 0 || !engineOk) return;
  const p = edit.points[selected];
  const others = edit.points.filter((_, i) => i !== selected);
  box.appendChild(hint("Asking the network…"));
  try {
    const r = await call("suggest", {x: p.x, y: p.y, points: wire(others), reference: edit.reference, count: 8});
    const colors = (await r.json()).colors;
    if (token !== suggestToken) return;
    box.textContent = "";
    for (const c of colors) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "swatch";
      b.style.background = rgbText(c.rgb);
      b.title = hex(c.rgb) + ", " + (100 * c.probability).toFixed(1) + "% likely";
      b.textContent = Math.round(100 * c.probability) + "%";
      b.addEventListener("click", () => setColor(c.rgb, "discrete"));
      box.appendChild(b);
    }
  } catch (err) {
    if (token !== suggestToken) return;
    box.textContent = "";
    box.appendChild(hint("No suggestions: " + err.message));
  }
}

function hint(text) {
  const p = document.createElement("p");
  p.className = "hint";
  p.textContent = text;
  return p;
}

// ---- the pointer on the photo ----

let press = null;

function onPointerDown(ev) {
  const canvas = $("view");
  canvas.focus();
  const rect = canvas.getBoundingClientRect();
  const sx = ev.clientX - rect.left, sy = ev.clientY - rect.top;
  const hit = pointAt(sx, sy);
  if (ev.button === 2) {
    if (hit >= 0) { selected = hit; deleteSelected(); }
    return;
  }
  if (ev.button !== 0 && ev.button !== 1) return;
  canvas.setPointerCapture(ev.pointerId);
  press = {sx: sx, sy: sy, vx: view.x, vy: view.y, point: ev.button === 0 ? hit : -1, moved: false};
  if (press.point >= 0) select(press.point);
}

function onPointerMove(ev) {
  if (!press) return;
  const rect = $("view").getBoundingClientRect();
  const sx = ev.clientX - rect.left, sy = ev.clientY - rect.top;
  if (!press.moved && Math.hypot(sx - press.sx, sy - press.sy) < DRAG_PX) return;
  press.moved = true;
  if (press.point >= 0) {
    const q = toPhoto(sx, sy);
    const x = Math.min(info.width - 1, Math.max(0, Math.floor(q.x)));
    const y = Math.min(info.height - 1, Math.max(0, Math.floor(q.y)));
    const i = press.point;
    change("drag" + i, () => { edit.points[i].x = x; edit.points[i].y = y; });
  } else {
    view.x = press.vx + sx - press.sx;
    view.y = press.vy + sy - press.sy;
    draw();
  }
}

function onPointerUp(ev) {
  if (!press) return;
  const p = press;
  press = null;
  if (p.point >= 0) {
    if (p.moved) suggest();
    return;
  }
  if (p.moved || ev.button !== 0) return;
  const q = toPhoto(p.sx, p.sy);
  const at = {x: Math.floor(q.x), y: Math.floor(q.y)};
  if (!inside(at)) { select(-1); return; }
  const rgb = hexToRgb($("color").value);
  change("discrete", () => { edit.points.push({x: at.x, y: at.y, rgb: rgb}); });
  select(edit.points.length - 1);
}

function hexToRgb(text) {
  return [1, 3, 5].map((i) => parseInt(text.substr(i, 2), 16));
}

// ---- reference ----

async function useReferenceFile(file) {
  if (!file) return;
  setStatus("Reading the reference…");
  try {
    const r = await call("reference", file, true);
    const number = (await r.json()).reference;
    referenceThumbs[number] = URL.createObjectURL(file);
    change("discrete", () => { edit.reference = number; });
    setStatus("Reference: " + file.name);
  } catch (err) {
    setStatus("Reference refused: " + err.message, true);
  }
}

function showReference() {
  const thumb = $("reference-thumb");
  const url = edit.reference ? referenceThumbs[edit.reference] : null;
  thumb.hidden = !url;
  if (url) thumb.src = url;
  const none = $("reference-none");
  none.textContent = edit.reference ? "Reference from the command line" : "No reference";
  none.hidden = !!url;
  $("reference-clear").disabled = !edit.reference;
}

// ---- save ----

async function save() {
  setStatus("Saving at full resolution…");
  $("save").disabled = true;
  try {
    const r = await call("save", {points: wire(edit.points), saturation: edit.saturation, reference: edit.reference});
    const saved = await r.json();
    setStatus("Saved " + saved.photo + " and " + saved.hints);
    document.body.dataset.saved = saved.photo;
  } catch (err) {
    setStatus("Save failed: " + err.message, true);
  } finally {
    $("save").disabled = false;
  }
}

// Opened by GIMP's Interactive…: Apply hands the points back (GIMP colorizes with them), Cancel
// leaves the image as it was; either closes the window.
async function finish(apply) {
  try {
    if (apply) {
      await call("apply", {points: wire(edit.points), saturation: edit.saturation, reference: edit.reference});
    } else {
      await call("cancel", {});
    }
    document.body.dataset.finished = apply ? "applied" : "cancelled";
    setStatus(apply ? "Applied: GIMP places the points and the colors." : "Cancelled: the image is unchanged.");
  } catch (err) {
    setStatus((apply ? "Apply" : "Cancel") + " failed: " + err.message, true);
  }
}

function setStatus(text, bad) {
  const s = $("status");
  s.textContent = text;
  s.className = bad ? "error" : "";
}

// ---- keys ----

function onKeyDown(ev) {
  if (ev.target.tagName === "INPUT" && ev.target.type !== "range") return;
  const ctrl = ev.ctrlKey || ev.metaKey;
  const key = ev.key.toLowerCase();
  if (ctrl && key === "z" && !ev.shiftKey) { undo(); }
  else if (ctrl && (key === "y" || (key === "z" && ev.shiftKey))) { redo(); }
  else if (ctrl && key === "s") { if (info.apply) finish(true); else save(); }
  else if (ctrl) { return; }
  else if (key === "delete" || key === "backspace") { deleteSelected(); }
  else if (key === "b") { setBefore(true); }
  else if (key === "0") { fit(); }
  else if (key === "+" || key === "=") { zoom(1.25); }
  else if (key === "-") { zoom(0.8); }
  else if (key === "escape") { select(-1); }
  else { return; }
  ev.preventDefault();
}

function setBefore(on) {
  before = on;
  $("before").setAttribute("aria-pressed", on ? "true" : "false");
  draw();
}

// ---- start ----

async function start() {
  const r = await fetch("api/state");
  info = await r.json();
  document.title = "Tinct — " + info.name;
  $("name").textContent = info.name;
  edit = {points: info.points, saturation: 1, reference: info.reference};
  const canvas = $("preview");
  canvas.width = info.preview_width;
  canvas.height = info.preview_height;
  photo = new Image();
  photo.onload = () => { $("loading").hidden = true; fit(); };
  photo.src = "api/photo";

  const view = $("view");
  view.addEventListener("pointerdown", onPointerDown);
  view.addEventListener("pointermove", onPointerMove);
  view.addEventListener("pointerup", onPointerUp);
  view.addEventListener("contextmenu", (ev) => ev.preventDefault());
  view.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const rect = view.getBoundingClientRect();
    zoom(ev.deltaY < 0 ? 1.15 : 1 / 1.15, ev.clientX - rect.left, ev.clientY - rect.top);
  }, {passive: false});
  window.addEventListener("resize", draw);
  window.addEventListener("keydown", onKeyDown);
  window.addEventListener("keyup", (ev) => { if (ev.key.toLowerCase() === "b") setBefore(false); });
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("before").addEventListener("click", () => setBefore(!before));
  $("fit").addEventListener("click", fit);
  $("save").addEventListener("click", save);
  $("save").hidden = !!info.apply;
  $("apply").hidden = $("cancel").hidden = !info.apply;
  $("apply").addEventListener("click", () => finish(true));
  $("cancel").addEventListener("click", () => finish(false));
  $("delete").addEventListener("click", deleteSelected);
  $("color").addEventListener("input", () => setColor(hexToRgb($("color").value), "color"));
  $("saturation").addEventListener("input", () => {
    const v = Number($("saturation").value) / 100;
    change("saturation", () => { edit.saturation = v; });
  });
  $("reference-file").addEventListener("change", () => useReferenceFile($("reference-file").files[0]));
  $("reference-clear").addEventListener("click", () => change("discrete", () => { edit.reference = 0; }));
  const drop = $("drop");
  window.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  window.addEventListener("dragleave", () => drop.classList.remove("over"));
  window.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    useReferenceFile(ev.dataTransfer.files[0]);
  });
  edited();
  watchEngine();
}

start();
