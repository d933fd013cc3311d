// Dashboard of the delivery-report processor. Plain JavaScript, no build step, no
// third-party code: every figure is read from the /v1 API with the bearer token the
// user typed, kept in sessionStorage for this tab only.
"use strict";

const TOKEN_KEY = "dlr-api-token";
const REFRESH_MS = 15000;
const PAGE_SIZE = 25;
const STATUS_COLOURS = {
  delivered: "#2e9d5b", undelivered: "#c83c3c", expired: "#e07b39", rejected: "#8e3bb5",
  failed: "#a3243a", deleted: "#7a6a58", enroute: "#5b8def", accepted: "#9db8f0",
  unknown: "#b8bec9",
};
const STATUSES = Object.keys(STATUS_COLOURS);
const RANGES = {
  "24h": { hours: 24, bucket: "hour" },
  "7d": { hours: 24 * 7, bucket: "hour" },
  "30d": { hours: 24 * 30, bucket: "day" },
};

const state = { cursor: null, filter: {}, selected: null, timer: null };
const $ = (id) => document.getElementById(id);

class Unauthorised extends Error {}

async function api(path, params) {
  const query = new URLSearchParams(params || {});
  const response = await fetch(path + (query.toString() ? "?" + query : ""), {
    headers: { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) },
    cache: "no-store",
  });
  if (response.status === 401 || response.status === 403) {
    const body = await response.json().catch(() => ({}));
    throw new Unauthorised((body.error && body.error.message) || "not authorised");
  }
  const body = await response.json();
  if (!response.ok) {
    const error = body.error || {};
    const fields = (error.fields || []).map((f) => f.field + " " + f.reason).join("; ");
    throw new Error(fields || error.message || "HTTP " + response.status);
  }
  return body;
}

function text(tag, content, className) {
  const node = document.createElement(tag);
  node.textContent = content;
  if (className) node.className = className;
  return node;
}

function statusBadge(status) {
  const badge = text("span", status, "status");
  badge.style.background = STATUS_COLOURS[status] || "#888";
  return badge;
}

function formatTime(iso) {
  return iso.replace("T", " ").replace(/(\.\d+)?Z$/, "");
}

// ---- session ------------------------------------------------------------------

function showLogin(message) {
  clearInterval(state.timer);
  sessionStorage.removeItem(TOKEN_KEY);
  $("session").hidden = true;
  $("dashboard-view").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message || "";
}

async function startDashboard() {
  await refreshAll();
  $("login-view").hidden = true;
  $("session").hidden = false;
  $("dashboard-view").hidden = false;
  clearInterval(state.timer);
  state.timer = setInterval(() => refreshAll(true).catch(handleFailure), REFRESH_MS);
}

function handleFailure(error) {
  if (error instanceof Unauthorised) {
    showLogin(error.message);
  } else {
    $("table-error").textContent = error.message;
  }
}

// ---- stats and chart ------------------------------------------------------------

async function refreshStats() {
  const range = RANGES[$("range").value];
  const to = new Date();
  const from = new Date(to.getTime() - range.hours * 3600 * 1000);
  const stats = await api("/v1/stats", {
    from: from.toISOString(), to: to.toISOString(), bucket: range.bucket,
  });

  const totals = stats.totals;
  $("total-messages").textContent = totals.total.toLocaleString("en");
  $("total-delivered").textContent = totals.delivered.toLocaleString("en");
  $("total-failed").textContent = (totals.final - totals.delivered).toLocaleString("en");
  $("total-pending").textContent = (totals.total - totals.final).toLocaleString("en");
  $("delivery-rate").textContent = totals.delivery_rate === null
    ? "n/a" : (totals.delivery_rate * 100).toFixed(1) + " %";
  $("chart-bucket").textContent = "(per " + stats.bucket + ", UTC)";
  drawChart(stats.buckets, stats.bucket);
}

function svg(tag, attributes) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

// A stacked bar per bucket, one colour per status, drawn in a 1000 x 220 viewBox.
function drawChart(buckets, bucket) {
  const width = 1000, height = 220, left = 48, bottom = 22, top = 8;
  const plotHeight = height - bottom - top;
  const max = Math.max(1, ...buckets.map((b) => b.total));
  const slot = (width - left) / Math.max(1, buckets.length);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none",
    role: "img", "aria-label": "messages by status over time" });

  for (const fraction of [0, 0.5, 1]) {
    const y = top + plotHeight * (1 - fraction);
    chart.appendChild(svg("line", { x1: left, x2: width, y1: y, y2: y, class: "axis" }));
    const label = svg("text", { x: left - 6, y: y + 3, "text-anchor": "end" });
    label.textContent = Math.round(max * fraction).toLocaleString("en");
    chart.appendChild(label);
  }

  const labelEvery = Math.ceil(buckets.length / 8);
  buckets.forEach((b, i) => {
    let y = top + plotHeight;
    for (const status of STATUSES) {
      const count = b.by_status[status] || 0;
      if (!count) continue;
      const h = (count / max) * plotHeight;
      y -= h;
      const bar = svg("rect", { x: left + i * slot + slot * 0.1, y: y, width: slot * 0.8,
        height: h, fill: STATUS_COLOURS[status] });
      const tip = svg("title", {});
      tip.textContent = `${formatTime(b.start)} ${status}: ${count}`;
      bar.appendChild(tip);
      chart.appendChild(bar);
    }
    if (i % labelEvery === 0) {
      const label = svg("text", { x: left + i * slot + slot / 2, y: height - 6,
        "text-anchor": "middle" });
      label.textContent = bucket === "hour" ? b.start.slice(11, 16) : b.start.slice(5, 10);
      chart.appendChild(label);
    }
  });

  $("chart").replaceChildren(chart);
  const present = STATUSES.filter((s) => buckets.some((b) => b.by_status[s]));
  $("legend").replaceChildren(...present.map((status) => {
    const item = text("span", status);
    const swatch = text("span", "", "swatch");
    swatch.style.background = STATUS_COLOURS[status];
    item.prepend(swatch);
    return item;
  }));
}

// ---- table and history --------------------------------------------------------------

function listParams() {
  const params = { limit: PAGE_SIZE, mask: $("mask").checked };
  for (const [key, value] of Object.entries(state.filter)) if (value) params[key] = value;
  return params;
}

async function loadMessages(append) {
  $("table-error").textContent = "";
  const params = listParams();
  if (append && state.cursor) params.cursor = state.cursor;
  const page = await api("/v1/messages", params);

  const rows = page.messages.map((m) => {
    const row = document.createElement("tr");
    row.dataset.msgid = m.msg_id;
    row.append(text("td", m.msg_id), text("td", m.recipient), text("td", m.sender));
    const status = document.createElement("td");
    status.append(statusBadge(m.status));
    row.append(status, text("td", formatTime(m.status_at)));
    if (m.msg_id === state.selected) row.classList.add("selected");
    row.addEventListener("click", () => showHistory(m.msg_id).catch(handleFailure));
    return row;
  });
  const body = $("messages").tBodies[0];
  if (append) body.append(...rows); else body.replaceChildren(...rows);
  if (!append && rows.length === 0) {
    const empty = document.createElement("tr");
    const cell = text("td", "No message matches.", "muted");
    cell.colSpan = 5;
    empty.append(cell);
    body.append(empty);
  }
  state.cursor = page.next_cursor;
  $("more").hidden = !page.next_cursor;
}

async function showHistory(msgId) {
  const found = await api("/v1/messages/" + encodeURIComponent(msgId),
    { mask: $("mask").checked });
  state.selected = msgId;
  for (const row of $("messages").tBodies[0].rows) {
    row.classList.toggle("selected", row.dataset.msgid === msgId);
  }

  const m = found.message;
  const summary = [["Message", m.msg_id], ["Recipient", m.recipient], ["Sender", m.sender],
    ["Status", m.status], ["Since", formatTime(m.status_at)],
    ["Error code", m.error_code || "-"]];
  $("history-summary").replaceChildren(...summary.flatMap(([k, v]) => [text("dt", k),
    text("dd", v)]));
  $("history-list").replaceChildren(...found.history.map((t) => {
    const item = document.createElement("li");
    item.append(statusBadge(t.status), text("span", " " + formatTime(t.status_at) +
      " (gateway said " + t.status_raw + (t.error_code ? ", error " + t.error_code : "") +
      ")" + (t.applied ? "" : ", superseded")));
    return item;
  }));
  $("history-empty").hidden = true;
  $("history").hidden = false;
}

async function refreshAll(background) {
  await refreshStats();
  if (!background || !state.cursorUsed) await loadMessages(false);
  if (background && state.selected) await showHistory(state.selected);
  $("updated").textContent = "updated " + new Date().toLocaleTimeString("en-GB");
}

// ---- wiring -------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  for (const status of STATUSES) {
    const option = text("option", status);
    option.value = status;
    $("search-status").append(option);
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    startDashboard().catch((e) => showLogin(e instanceof Unauthorised
      ? "That token was not accepted: " + e.message : e.message));
  });
  $("logout").addEventListener("click", () => showLogin(""));
  $("range").addEventListener("change", () => refreshStats().catch(handleFailure));
  $("mask").addEventListener("change", () => refreshAll().catch(handleFailure));
  $("more").addEventListener("click", () => {
    state.cursorUsed = true;
    loadMessages(true).catch(handleFailure);
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const msgId = $("search-msgid").value.trim();
    if (msgId) {
      showHistory(msgId).catch((e) => handleFailure(
        e instanceof Unauthorised ? e : new Error("message " + msgId + ": " + e.message)));
      return;
    }
    state.filter = { recipient: $("search-recipient").value.trim(),
      sender: $("search-sender").value.trim(), status: $("search-status").value };
    state.cursorUsed = false;
    loadMessages(false).catch(handleFailure);
  });
  $("search-clear").addEventListener("click", () => {
    $("search-form").reset();
    state.filter = {};
    state.cursorUsed = false;
    loadMessages(false).catch(handleFailure);
  });

  if (sessionStorage.getItem(TOKEN_KEY)) {
    startDashboard().catch((e) => showLogin(e instanceof Unauthorised ? "" : e.message));
  } else {
    showLogin("");
  }
});
