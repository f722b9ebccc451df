// Dashboard: camera status and counts from the truckcount HTTP API (same origin).
"use strict";

const $ = (id) => document.getElementById(id);

function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("truckcount-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("truckcount-token");
}

async function api(path) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  const res = await fetch(path, { headers });
  if (res.status === 401) {
    $("auth").hidden = false;
    throw new Error("this server needs a token");
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(typeof body.detail === "string" ? body.detail : `HTTP ${res.status}`);
  }
  return res.json();
}

function showError(err) {
  $("error").textContent = String(err.message || err);
  $("error").hidden = false;
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
}

function renderCameras(cameras) {
  const body = $("cameras").tBodies[0];
  body.replaceChildren();
  for (const c of cameras) {
    const row = body.insertRow();
    cell(row, c.camera_id);
    cell(row, c.state, "state-" + c.state);
    cell(row, c.last_frame_at ? c.last_frame_at.replace("T", " ").slice(0, 19) : "never");
    cell(row, c.fps === null ? "" : c.fps, "num");
    cell(row, c.reconnects === null ? "" : c.reconnects, "num");
    cell(row, c.runs, "num");
    cell(row, c.last_run_status || "");
    cell(row, `${Math.round(c.coverage_today_s)} s (${(c.coverage_today_share * 100).toFixed(1)}%)`, "num");
  }
  const select = $("camera");
  const chosen = select.value;
  select.replaceChildren(...cameras.map((c) => new Option(c.camera_id, c.camera_id)));
  if (chosen) select.value = chosen;
}

async function loadCounts() {
  const camera = $("camera").value;
  if (!camera) {
    $("summary").textContent = "no cameras yet";
    return;
  }
  const q = new URLSearchParams({ camera, granularity: $("granularity").value, class: $("vehicle").value });
  if ($("from").value) q.set("from", $("from").value);
  if ($("to").value) q.set("to", $("to").value);
  const buckets = await api("/counts?" + q);
  if (!buckets.length) {
    $("chart").replaceChildren();
    $("summary").textContent = `${camera}: no analysed video in this range`;
    return;
  }
  const r = drawCounts($("chart"), buckets, $("granularity").value);
  const first = buckets[0].start.slice(0, 10), last = buckets[buckets.length - 1].start.slice(0, 10);
  const hours = r.covered / 3600;
  const analysed = hours < 1 ? `${Math.round(r.covered)} s` : `${hours.toFixed(1)} h`;
  $("summary").textContent = `${camera}, ${first} to ${last}: ${r.total} ${$("vehicle").value} crossings ` +
    `in ${analysed} of analysed video; ${r.gaps} of ${r.buckets} buckets without any`;
}

async function refresh() {
  $("error").hidden = true;
  try {
    const health = await fetch("/health").then((r) => r.json());
    $("health").textContent = `${health.status}, database ${health.database}`;
    renderCameras((await api("/cameras")).cameras);
    await loadCounts();
    document.body.dataset.loaded = "true";
  } catch (err) {
    showError(err);
  }
}

$("controls").addEventListener("submit", (e) => { e.preventDefault(); loadCounts().catch(showError); });
$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("truckcount-token", $("token").value);
  $("auth").hidden = true;
  refresh();
});
refresh();
setInterval(() => api("/cameras").then((d) => renderCameras(d.cameras)).catch(() => {}), 30000);
