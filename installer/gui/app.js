// The installer page: lists the GIMPs found, runs install/uninstall jobs and shows their progress
// and result per profile. It talks to installer/gui_api.py through pywebview's js_api in the
// window, or through POST /api/<method> on the local server (gui_server.py) in a browser.
"use strict";

const KEY = new URLSearchParams(location.search).get("key");
const POLL_MS = 200;
let busy = false;

function api(name, ...args) {
  if (window.pywebview && window.pywebview.api) {
    return window.pywebview.api[name](...args);
  }
  return fetch("/api/" + name, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-Tinct-Key": KEY || ""},
    body: JSON.stringify({args: args}),
  }).then(async (r) => {
    const body = await r.json().catch(() => ({error: r.statusText}));
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  });
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function $(id) { return document.getElementById(id); }

function tinctState(p) {
  if (!p.variant) return "cannot install";
  if (!p.installed) return "not installed";
  if (p.installed.indexOf("an ") === 0) return "older version (will upgrade)";
  return p.installed + " installed";
}

function renderProfiles(state) {
  $("loading").hidden = true;
  const table = $("profiles");
  const body = table.querySelector("tbody");
  body.textContent = "";
  if (state.no_gimp) {
    $("no-gimp").textContent = state.no_gimp;
    $("no-gimp").hidden = false;
    table.hidden = true;
  } else {
    $("no-gimp").hidden = true;
    table.hidden = false;
  }
  for (const p of state.profiles) {
    const row = el("tr", null, p.variant ? "" : "unsupported");
    row.dataset.path = p.path;
    const box = el("input");
    box.type = "checkbox";
    box.checked = !!p.checked;
    box.disabled = !p.variant;
    box.setAttribute("aria-label", p.label);
    box.addEventListener("change", updateButtons);
    const boxCell = el("td");
    boxCell.appendChild(box);
    row.appendChild(boxCell);
    row.appendChild(el("td", p.label));
    row.appendChild(el("td", p.path, "path"));
    const stateCell = el("td", tinctState(p), "state");
    if (!p.variant) stateCell.appendChild(el("div", p.reason, "reason"));
    row.appendChild(stateCell);
    body.appendChild(row);
  }
  $("device").textContent = state.device_text;
  $("engine-python").textContent = state.engine_python;
  updateButtons();
}

function selectedPaths() {
  return Array.from(document.querySelectorAll("#profiles tbody tr"))
    .filter((row) => row.querySelector("input").checked)
    .map((row) => row.dataset.path);
}

function updateButtons() {
  const none = selectedPaths().length === 0;
  $("install").disabled = busy || none;
  $("uninstall").disabled = busy || none;
}

function renderReport(report) {
  $("results-box").hidden = false;
  const list = $("results");
  list.textContent = "";
  for (const r of report.results || []) {
    const item = el("li", r.profile.label + ": " + r.message, r.status);
    item.dataset.status = r.status;
    item.dataset.path = r.profile.path;
    list.appendChild(item);
  }
  $("engine-result").textContent = report.engine ? report.engine.message : "";
  const notes = $("notes");
  notes.textContent = "";
  for (const note of report.notes || []) notes.appendChild(el("li", note, "note"));
  const overrides = report.overrides || [];
  $("overrides").hidden = overrides.length === 0;
  $("override-commands").textContent = overrides.join("\n");
  $("error").hidden = !report.error;
  $("error").textContent = report.error || "";
}

async function run(action) {
  const paths = selectedPaths();
  busy = true;
  updateButtons();
  $("progress-box").hidden = false;
  $("results-box").hidden = true;
  $("progress").value = 0;
  $("progress-text").textContent = action === "install" ? "Installing…" : "Removing…";
  try {
    const started = await api("start", action, paths);
    if (started.error) throw new Error(started.error);
    for (;;) {
      const job = await api("poll", started.job);
      $("progress").value = Math.round(job.fraction * 100);
      $("progress-text").textContent = job.message;
      if (job.done) {
        renderReport(job.report);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } catch (err) {
    renderReport({results: [], error: String(err.message || err)});
  }
  busy = false;
  document.body.dataset.jobs = String(Number(document.body.dataset.jobs || 0) + 1);
  await refresh();
}

async function refresh() {
  try {
    const state = await api("state");
    renderProfiles(state);
    if (state.device === null) setTimeout(refreshDevice, 500);
  } catch (err) {
    $("loading").textContent = "The installer is not answering: " + (err.message || err);
  }
}

async function refreshDevice() {
  const state = await api("state");
  $("device").textContent = state.device_text;
  if (state.device === null) setTimeout(refreshDevice, 500);
}

function init() {
  $("install").addEventListener("click", () => run("install"));
  $("uninstall").addEventListener("click", () => run("uninstall"));
  refresh();
}

if (KEY) {
  document.addEventListener("DOMContentLoaded", init);
} else if (window.pywebview && window.pywebview.api) {
  init();  // pywebview was faster than this script
} else {
  window.addEventListener("pywebviewready", init);
}
