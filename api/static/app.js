// WSM dashboard: reads /api/websocket/live (Server-Sent Events over fetch, so that the token
// goes in the Authorization header and never in a URL), draws the table and sparklines, and
// drives the REST API. No framework, no chart library: canvas by hand.
"use strict";

const TOKEN_KEY = "wsm.token";
const HISTORY = 300; // samples kept per connection for the charts
const series = new Map(); // connection id -> [[t, rate, p50, p99], ...]
let controller = null;
let exchanges = [];
let lastConnections = [];

const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem(TOKEN_KEY);

function showLogin(message) {
  if (controller) controller.abort();
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setFeed("not connected", "");
}

function setFeed(text, cls) {
  const feed = $("feed");
  feed.textContent = text;
  feed.className = "feed " + cls;
}

async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: { "Authorization": "Bearer " + token(), "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = resp.headers.get("content-type")?.includes("json") ? await resp.json() : null;
  if (resp.status === 401) showLogin(data?.error?.message || "the token was refused");
  if (!resp.ok) throw new Error(data?.error?.message || resp.statusText);
  return data;
}

function say(text) { $("message").textContent = text || ""; }

async function act(method, path, body) {
  try { say(""); return await api(method, path, body); } catch (e) { say(e.message); }
  return null;
}

// -- the live feed ---------------------------------------------------------------------------

async function follow() {
  let delay = 1000;
  for (;;) {
    if (!token()) return;
    controller = new AbortController();
    try {
      const resp = await fetch("/api/websocket/live", {
        headers: { "Authorization": "Bearer " + token(), "Accept": "text/event-stream" },
        signal: controller.signal,
      });
      if (resp.status === 401) {
        const data = await resp.json().catch(() => null);
        showLogin(data?.error?.message || "the token was refused");
        return;
      }
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      setFeed("live", "ok");
      delay = 1000;
      await readEvents(resp.body.getReader());
      throw new Error("feed ended");
    } catch (e) {
      if (controller.signal.aborted) return;
      setFeed("reconnecting… (" + e.message + ")", "bad");
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

async function readEvents(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message", data = "";
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (event === "snapshot") render(JSON.parse(data));
      else if (event === "expired") { showLogin("the token expired"); return; }
      else if (event === "forbidden") { showLogin("this address is not on the allow-list"); return; }
    }
  }
}

// -- rendering ------------------------------------------------------------------------------

const fmt = {
  n: (v) => v == null ? "–" : v >= 1e6 ? (v / 1e6).toFixed(1) + "M" : v >= 1e4 ? (v / 1e3).toFixed(1) + "k" : (Math.round(v * 10) / 10).toString(),
  us: (v) => v == null ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " ms" : v.toFixed(0) + " µs",
  age: (v) => v == null ? "–" : v < 60 ? v.toFixed(1) + " s" : (v / 60).toFixed(1) + " min",
  up: (v) => { if (v == null) return "–"; const s = Math.floor(v); const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60); return h ? `${h}h${m}m` : m ? `${m}m${s % 60}s` : `${s}s`; },
};

function render(snap) {
  const t = snap.totals;
  $("t-conns").textContent = t.connections;
  $("t-live").textContent = t.live;
  $("t-rate").textContent = fmt.n(t.messages_per_s);
  $("t-bytes").textContent = fmt.n(t.bytes_per_s);
  $("t-p50").textContent = fmt.us(t.latency_p50_us);
  $("t-p99").textContent = fmt.us(t.latency_p99_us);
  $("t-errors").textContent = t.errors;
  $("t-gaps").textContent = t.gaps;
  $("t-reconnects").textContent = t.reconnects;
  const seen = new Set();
  for (const c of snap.connections) {
    seen.add(c.id);
    let s = series.get(c.id);
    if (c.history) { s = c.history.slice(-HISTORY); series.set(c.id, s); }
    else if (c.sample) {
      if (!s) { s = []; series.set(c.id, s); }
      if (!s.length || s[s.length - 1][0] !== c.sample[0]) s.push(c.sample);
      if (s.length > HISTORY) s.splice(0, s.length - HISTORY);
    }
  }
  for (const id of [...series.keys()]) if (!seen.has(id)) series.delete(id);
  const rows = $("rows");
  const keep = new Map([...rows.children].map((tr) => [tr.dataset.id, tr]));
  for (const c of snap.connections) {
    let tr = keep.get(c.id);
    if (!tr) tr = newRow(c);
    keep.delete(c.id);
    updateRow(tr, c);
    rows.appendChild(tr); // keeps the snapshot's order
  }
  for (const tr of keep.values()) tr.remove();
  if (JSON.stringify(snap.connections.map((c) => [c.id, c.name])) !== JSON.stringify(lastConnections)) {
    lastConnections = snap.connections.map((c) => [c.id, c.name]);
    fillConnectionSelect(snap.connections);
  }
}

function cell(tr, i) { return tr.children[i]; }

function newRow(c) {
  const tr = document.createElement("tr");
  tr.dataset.id = c.id;
  tr.dataset.testid = "connection";
  tr.setAttribute("data-testid", "connection-" + c.name);
  for (let i = 0; i < 16; i++) tr.appendChild(document.createElement("td"));
  cell(tr, 12).appendChild(canvas("rate"));
  cell(tr, 13).appendChild(canvas("latency"));
  cell(tr, 14).className = "subs";
  const actions = cell(tr, 15);
  actions.className = "actions";
  for (const [label, action] of [["Disconnect", "disconnect"], ["Connect", "connect"], ["Reconnect", "reconnect"], ["Remove", "remove"]]) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.dataset.action = action;
    b.setAttribute("data-testid", action);
    b.addEventListener("click", () => onAction(tr.dataset.id, action));
    actions.appendChild(b);
  }
  return tr;
}

function canvas(kind) {
  const cv = document.createElement("canvas");
  cv.width = 120; cv.height = 28;
  cv.dataset.kind = kind;
  cv.setAttribute("aria-label", kind + " over the last minutes");
  return cv;
}

function updateRow(tr, c) {
  const vals = [c.exchange, c.name, null, fmt.up(c.uptime_s), fmt.n(c.messages_per_s),
    fmt.n(c.bytes_per_s), fmt.us(c.latency_p50_us), fmt.us(c.latency_p99_us), c.errors, c.gaps,
    c.reconnects, fmt.age(c.last_message_age_s)];
  vals.forEach((v, i) => { if (v !== null) cell(tr, i).textContent = v; });
  const state = cell(tr, 2);
  state.innerHTML = "";
  const badge = document.createElement("span");
  badge.className = "state " + c.state;
  badge.textContent = c.state;
  badge.setAttribute("data-testid", "state");
  if (c.last_error) badge.title = c.last_error;
  state.appendChild(badge);
  tr.querySelector('[data-action="disconnect"]').hidden = c.desired_state !== "connected";
  tr.querySelector('[data-action="reconnect"]').hidden = c.desired_state !== "connected";
  tr.querySelector('[data-action="connect"]').hidden = c.desired_state === "connected";
  const s = series.get(c.id) || [];
  spark(cell(tr, 12).firstChild, s.map((x) => x[1]), null, "#4aa3ff");
  spark(cell(tr, 13).firstChild, s.map((x) => x[2]), s.map((x) => x[3]), "#2fbf71");
  const subs = cell(tr, 14);
  const key = JSON.stringify(c.subscriptions);
  if (subs.dataset.key !== key) {
    subs.dataset.key = key;
    subs.innerHTML = "";
    for (const sub of c.subscriptions) {
      const span = document.createElement("span");
      span.className = sub.status;
      span.textContent = sub.channel + " " + sub.symbols.join(",");
      span.title = sub.status;
      const x = document.createElement("button");
      x.type = "button"; x.textContent = "×"; x.title = "unsubscribe";
      x.setAttribute("data-testid", "unsubscribe");
      x.addEventListener("click", () => act("DELETE", "/api/websocket/subscriptions/" + sub.id));
      span.appendChild(x);
      subs.appendChild(span);
    }
  }
}

function spark(cv, values, upper, colour) {
  const ctx = cv.getContext("2d");
  const w = cv.width, h = cv.height;
  ctx.clearRect(0, 0, w, h);
  const all = values.concat(upper || []).filter((v) => v != null && isFinite(v));
  if (all.length < 2) return;
  const max = Math.max(...all) || 1;
  const line = (vals, style, width) => {
    ctx.beginPath();
    ctx.strokeStyle = style; ctx.lineWidth = width;
    let started = false;
    vals.forEach((v, i) => {
      if (v == null) { started = false; return; }
      const x = (i / (vals.length - 1)) * (w - 2) + 1;
      const y = h - 2 - (v / max) * (h - 4);
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    });
    ctx.stroke();
  };
  if (upper) line(upper, "#8795a5", 1);
  line(values, colour, 1.5);
}

// -- controls --------------------------------------------------------------------------------

async function onAction(id, action) {
  if (action === "remove") {
    if (!confirm("Delete this connection and its subscriptions?")) return;
    await act("DELETE", "/api/websocket/connections/" + id);
  } else {
    await act("POST", `/api/websocket/connections/${id}/${action}`);
  }
}

function fillConnectionSelect(conns) {
  const sel = $("sub-connection");
  const chosen = sel.value;
  sel.innerHTML = "";
  for (const c of conns) sel.add(new Option(`${c.name} (${c.exchange})`, c.id));
  if (chosen) sel.value = chosen;
  fillChannels();
}

function fillChannels() {
  const c = lastConnections.find(([id]) => id === $("sub-connection").value);
  const row = document.querySelector(`tr[data-id="${c ? c[0] : ""}"]`);
  const exchange = row ? cell(row, 0).textContent : exchanges[0]?.name;
  const ex = exchanges.find((e) => e.name === exchange);
  const sel = $("sub-channel");
  const chosen = sel.value;
  sel.innerHTML = "";
  for (const ch of ex ? ex.channels : []) sel.add(new Option(ch, ch));
  if (chosen) sel.value = chosen;
}

async function loadExchanges() {
  const data = await act("GET", "/api/websocket/exchanges");
  if (!data) return;
  exchanges = data.items;
  const sel = $("new-exchange");
  sel.innerHTML = "";
  for (const e of exchanges) sel.add(new Option(e.name, e.name));
}

async function loadNetworks() {
  const data = await act("GET", "/api/websocket/ip-whitelist?limit=1000");
  if (!data) return;
  const list = $("networks");
  list.innerHTML = "";
  for (const n of data.items) {
    const li = document.createElement("li");
    li.setAttribute("data-testid", "network");
    li.textContent = n.cidr + (n.label ? " — " + n.label : "") + " ";
    const x = document.createElement("button");
    x.type = "button"; x.textContent = "×"; x.title = "remove";
    x.setAttribute("data-testid", "remove-network");
    x.addEventListener("click", async () => {
      if (await act("DELETE", "/api/websocket/ip-whitelist/" + n.id)) loadNetworks();
    });
    li.appendChild(x);
    list.appendChild(li);
  }
}

function start() {
  $("login").hidden = true;
  $("main").hidden = false;
  loadExchanges();
  loadNetworks();
  follow();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showLogin(""); });
  $("add-connection").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const made = await act("POST", "/api/websocket/connections",
      { exchange: $("new-exchange").value, name: $("new-name").value.trim() });
    if (made) $("new-name").value = "";
  });
  $("add-network").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const made = await act("POST", "/api/websocket/ip-whitelist",
      { cidr: $("new-cidr").value.trim(), label: $("new-label").value.trim() });
    if (made) { $("new-cidr").value = ""; $("new-label").value = ""; loadNetworks(); }
  });
  $("sub-connection").addEventListener("change", fillChannels);
  $("add-subscription").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const symbols = $("sub-symbols").value.split(/[\s,]+/).filter(Boolean);
    const made = await act("POST", "/api/websocket/subscriptions",
      { connection_id: $("sub-connection").value, channel: $("sub-channel").value, symbols });
    if (made) $("sub-symbols").value = "";
  });
  if (token()) start(); else showLogin("");
});
