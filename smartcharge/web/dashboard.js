// smartcharge dashboard: plain JS, no dependencies, no network beyond this server.
// Initial state from GET /api/site, live updates from the SSE stream GET /api/site/stream
// (event "snapshot", same JSON), both with the API token as a bearer token (see "the API
// token" below). Renders are coalesced to one per animation frame.
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MAX_LOCAL_HISTORY = 5000;
  const state = { snapshot: null, history: [], renderQueued: false, source: null, retryMs: 1000,
                  versions: {}, versionsKey: null };

  // ---------- formatting ----------
  const isNum = (v) => typeof v === "number" && isFinite(v);
  const kw = (w) => (isNum(w) ? (w / 1000).toFixed(1) + " kW" : "—");
  const kwh = (wh) => (isNum(wh) ? (wh / 1000).toFixed(1) + " kWh" : "—");
  const pad2 = (n) => String(n).padStart(2, "0");
  const hhmm = (d) => pad2(d.getUTCHours()) + ":" + pad2(d.getUTCMinutes());
  const parseTime = (s) => (s ? new Date(s) : null);
  function longTime(d) {
    const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    return days[d.getUTCDay()] + " " + d.toISOString().slice(0, 10) + "  " + hhmm(d) + ":" +
      pad2(d.getUTCSeconds()) + " UTC";
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "style") Object.assign(node.style, v);
      else node.setAttribute(k, v);
    }
    for (const c of children || []) node.append(c);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bindingLabel(b) {
    if (!b) return null;
    const wrap = el("span", { class: "binding", title: [b.source, b.id, b.detail].filter(Boolean).join(" · ") });
    wrap.append(el("span", { class: "src " + String(b.source || ""), text: b.source || "?" }));
    wrap.append(document.createTextNode(b.id ? String(b.id) : (b.detail || "")));
    return wrap;
  }

  // ---------- state ----------
  function accept(snapshot) {
    state.snapshot = snapshot;
    if (Array.isArray(snapshot.history) && snapshot.history.length) {
      state.history = snapshot.history.slice();
    }
    // The stream may send only the present; keep our own trail so the chart still moves.
    const last = state.history[state.history.length - 1];
    // The load is a reading at one instant (site_load_at), drawn against the limit then.
    const at = snapshot.site_load_at || snapshot.time;
    const limitThen = "site_load_limit_w" in snapshot ? snapshot.site_load_limit_w
                                                      : snapshot.effective_limit_w;
    if (at && (!last || new Date(at) > new Date(last.time))) {
      state.history.push({ time: at, site_load_w: snapshot.site_load_w,
                           effective_limit_w: limitThen, stale: snapshot.site_load_stale });
      if (state.history.length > MAX_LOCAL_HISTORY) state.history.shift();
    }
    // a station's OCPP version is what it negotiated on its connection: ask again whenever
    // the set of online stations changes
    const key = (snapshot.stations || []).filter((x) => x.online).map((x) => x.station_id).join(",");
    if (key !== state.versionsKey) {
      state.versionsKey = key;
      loadVersions();
    }
    queueRender();
  }

  // GET /api/stations: [{station_id, ocpp_version, ...}]. Optional: without it no versions show.
  async function loadVersions() {
    try {
      const resp = await fetch("/api/stations", { cache: "no-store", headers: authHeaders() });
      if (!resp.ok) return;
      const versions = {};
      for (const x of await resp.json()) {
        if (x && x.ocpp_version) versions[x.station_id] = x.ocpp_version;
      }
      state.versions = versions;
      queueRender();
    } catch (err) {
      console.warn("station versions unavailable", err);
    }
  }

  function versionTag(stationId) {
    const v = state.versions[stationId];
    return v ? el("span", { class: "ocpp-version", title: "OCPP " + v + " (negotiated)", text: v }) : "";
  }

  function queueRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    requestAnimationFrame(() => { state.renderQueued = false; render(); });
  }

  function render() {
    const s = state.snapshot;
    if (!s) return;
    renderHeader(s);
    renderCards(s);
    renderChart(s);
    renderVens(s.vens || []);
    renderDrEvents(s.dr_events || []);
    renderConnectors(s.connectors || []);
    renderSessions(s.sessions || []);
    document.body.dataset.renderedAt = s.time || "";
  }

  // ---------- header and cards ----------
  function renderHeader(s) {
    const t = parseTime(s.time);
    document.getElementById("site-time").textContent = t ? longTime(t) : "—";
    if (s.site_name) document.getElementById("site-name").textContent = s.site_name;
  }

  function renderCards(s) {
    const load = s.site_load_w, limit = s.effective_limit_w;
    document.getElementById("site-load").textContent = kw(load);
    document.getElementById("effective-limit").textContent = isNum(limit) ? kw(limit) : "no";
    // metered, as of the reading's instant; stale meters are counted at their maximum
    const asOf = s.site_load_at ? new Date(s.site_load_at) : null;
    const stale = isNum(s.site_load_stale) && s.site_load_stale > 0
      ? ", " + s.site_load_stale + " stale meter" + (s.site_load_stale > 1 ? "s" : "") + " at max"
      : "";
    document.getElementById("load-as-of").textContent =
      asOf && !isNaN(asOf) ? "metered as of " + hhmm(asOf) + ":" + pad2(asOf.getUTCSeconds()) + " UTC" + stale : "";
    const meter = document.getElementById("load-meter");
    const ratio = isNum(limit) && limit > 0 && isNum(load) ? load / limit : 0;
    meter.style.width = Math.min(100, ratio * 100).toFixed(1) + "%";
    meter.className = "meter-fill" + (ratio > 1.0001 ? " over" : ratio > 0.95 ? " high" : "");

    const b = s.limit_binding;
    const bindingEl = document.getElementById("limit-binding");
    bindingEl.replaceChildren(b ? bindingLabel(b) : document.createTextNode("nothing binds"));
    document.getElementById("limit-binding-detail").textContent = b && b.detail ? b.detail : "";

    const sessions = s.sessions || [];
    document.getElementById("session-count").textContent = String(sessions.length);
    const sum = (key) => sessions.reduce((a, x) => a + (isNum(x[key]) ? x[key] : 0), 0);
    document.getElementById("energy-delivered").textContent = (sum("energy_wh") / 1000).toFixed(1);
    document.getElementById("energy-requested").textContent = kwh(sum("requested_wh"));

    const stations = s.stations || [];
    const online = stations.filter((x) => x.online);
    document.getElementById("stations-online").textContent = online.length + " / " + stations.length;
    const offline = stations.filter((x) => !x.online).map((x) => x.station_id);
    const tally = {};
    for (const v of Object.values(state.versions)) tally[v] = (tally[v] || 0) + 1;
    const mix = Object.keys(tally).sort().map((v) => tally[v] + " × OCPP " + v).join(", ");
    document.getElementById("stations-offline-list").textContent =
      (offline.length ? "offline: " + offline.slice(0, 6).join(", ") + (offline.length > 6 ? "…" : "") : "all online") +
      (mix ? " · " + mix : "");

    const stats = s.stats || {};
    const show = (id, v) => { document.getElementById(id).textContent = isNum(v) ? v.toLocaleString("en") : "—"; };
    show("profiles-sent", stats.profiles_sent);
    show("replans", stats.replans);
    show("violations", stats.violations);
    const vcard = document.getElementById("violations-card");
    vcard.className = "card " + (isNum(stats.violations) ? (stats.violations > 0 ? "bad" : "ok") : "");
  }

  // ---------- chart ----------
  function niceStep(range, targetTicks) {
    const raw = range / Math.max(1, targetTicks);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * mag) return m * mag;
    return 10 * mag;
  }

  function renderChart(s) {
    const box = document.getElementById("chart");
    const width = Math.max(320, box.clientWidth), height = Math.max(180, box.clientHeight);
    const m = { left: 54, right: 14, top: 12, bottom: 26 };
    const plotW = width - m.left - m.right, plotH = height - m.top - m.bottom;
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    const pts = state.history
      .map((p) => ({ t: new Date(p.time).getTime(), load: p.site_load_w, limit: p.effective_limit_w }))
      .filter((p) => isFinite(p.t));

    if (!pts.length) {
      root.append(svg("text", { class: "empty-note", x: width / 2, y: height / 2, "text-anchor": "middle" },
                      "waiting for measurements…"));
      box.replaceChildren(root);
      return;
    }
    let t0 = pts[0].t, t1 = pts[pts.length - 1].t;
    if (t1 - t0 < 60000) t1 = t0 + 60000;
    let vmax = 0;
    for (const p of pts) {
      if (isNum(p.load)) vmax = Math.max(vmax, p.load);
      if (isNum(p.limit)) vmax = Math.max(vmax, p.limit);
    }
    vmax = Math.max(vmax * 1.08, 1000);
    const yStep = niceStep(vmax, 5);
    vmax = Math.ceil(vmax / yStep) * yStep;
    const x = (t) => m.left + ((t - t0) / (t1 - t0)) * plotW;
    const y = (v) => m.top + plotH - (v / vmax) * plotH;

    const grid = svg("g", { class: "axis" });
    for (let v = 0; v <= vmax + 1e-9; v += yStep) {
      grid.append(svg("line", { class: "grid-line", x1: m.left, x2: m.left + plotW, y1: y(v), y2: y(v) }));
      grid.append(svg("text", { x: m.left - 6, y: y(v) + 4, "text-anchor": "end" },
                      (v / 1000).toFixed(yStep < 1000 ? 1 : 0) + " kW"));
    }
    const minute = 60000;
    const tStep = [1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440]
      .map((k) => k * minute).find((st) => (t1 - t0) / st <= Math.max(2, plotW / 90)) || 1440 * minute;
    for (let t = Math.ceil(t0 / tStep) * tStep; t <= t1; t += tStep) {
      grid.append(svg("line", { class: "grid-line", x1: x(t), x2: x(t), y1: m.top, y2: m.top + plotH }));
      const anchor = x(t) > width - m.right - 18 ? "end" : "middle";   // keep the last label inside
      grid.append(svg("text", { x: x(t), y: height - 8, "text-anchor": anchor }, hhmm(new Date(t))));
    }
    root.append(grid);

    // Demand-response windows as shaded bands, so a dip in the limit has its reason next to it.
    for (const ev of s.dr_events || []) {
      const a = Math.max(t0, new Date(ev.start).getTime()), b = Math.min(t1, new Date(ev.end).getTime());
      if (!(b > a)) continue;
      root.append(svg("rect", { class: "dr-band", x: x(a), y: m.top, width: x(b) - x(a), height: plotH }));
      root.append(svg("text", { class: "dr-label", x: x(a) + 4, y: m.top + 12 }, "DR " + (ev.id || "")));
    }

    // Site load: a line and a soft area; gaps where the value is missing (missing is not zero).
    let line = "", area = "", runStart = null, prevX = null;
    const closeArea = () => {
      if (runStart !== null) area += `L${prevX.toFixed(1)},${y(0).toFixed(1)}L${runStart.toFixed(1)},${y(0).toFixed(1)}Z`;
      runStart = null;
    };
    for (const p of pts) {
      if (!isNum(p.load)) { closeArea(); continue; }
      const px = x(p.t).toFixed(1), py = y(p.load).toFixed(1);
      if (runStart === null) { line += `M${px},${py}`; area += `M${px},${py}`; runStart = x(p.t); }
      else { line += `L${px},${py}`; area += `L${px},${py}`; }
      prevX = x(p.t);
    }
    closeArea();
    root.append(svg("path", { class: "load-area", d: area }));
    root.append(svg("path", { class: "load", d: line }));

    // Effective limit: a step line (a limit holds until it changes).
    let lim = "", prev = null;
    for (const p of pts) {
      if (!isNum(p.limit)) { prev = null; continue; }
      const px = x(p.t).toFixed(1), py = y(p.limit).toFixed(1);
      lim += prev === null ? `M${px},${py}` : `L${px},${prev}L${px},${py}`;
      prev = py;
    }
    root.append(svg("path", { class: "limit", d: lim }));
    root.append(svg("line", { class: "grid-line", x1: m.left, x2: m.left + plotW, y1: y(0), y2: y(0) }));

    const cursor = svg("line", { class: "cursor", x1: 0, x2: 0, y1: m.top, y2: m.top + plotH, visibility: "hidden" });
    root.append(cursor);
    const hit = svg("rect", { x: m.left, y: m.top, width: plotW, height: plotH, fill: "transparent" });
    hit.addEventListener("mousemove", (e) => showTooltip(e, root, pts, x, cursor));
    hit.addEventListener("mouseleave", () => { cursor.setAttribute("visibility", "hidden"); hideTooltip(); });
    root.append(hit);
    root.dataset.points = String(pts.length);
    box.replaceChildren(root);
  }

  function showTooltip(e, root, pts, x, cursor) {
    const rect = root.getBoundingClientRect();
    const scale = root.viewBox.baseVal.width / rect.width;
    const mx = (e.clientX - rect.left) * scale;
    let best = pts[0];
    for (const p of pts) if (Math.abs(x(p.t) - mx) < Math.abs(x(best.t) - mx)) best = p;
    cursor.setAttribute("x1", x(best.t)); cursor.setAttribute("x2", x(best.t));
    cursor.setAttribute("visibility", "visible");
    const tip = document.getElementById("tooltip");
    tip.replaceChildren(el("div", { text: hhmm(new Date(best.t)) + " UTC" }),
                        el("div", { text: "load " + kw(best.load) }),
                        el("div", { text: "limit " + (isNum(best.limit) ? kw(best.limit) : "none") }));
    tip.hidden = false;
    tip.style.left = e.clientX + 14 + "px";
    tip.style.top = e.clientY + 10 + "px";
  }
  function hideTooltip() { document.getElementById("tooltip").hidden = true; }

  // ---------- demand response ----------
  // each OpenADR VEN: its program, whether its VTN answers, and when it last did
  function renderVens(vens) {
    const box = document.getElementById("vens");
    box.replaceChildren(...vens.map((v) => {
      const last = parseTime(v.last_poll_ok);
      return el("div", { class: "ven " + (v.state || ""), "data-program": v.program,
                         title: v.last_error || v.vtn_url || "" }, [
        el("span", { class: "ven-name", text: "OpenADR " + v.version + " " + v.program }),
        el("span", { class: "pill " + (v.state || ""), text: v.state || "" }),
        el("span", { class: "ven-poll", text: (last ? "last poll " + hhmm(last) + " UTC" : "never polled")
                                              + (v.subscribed ? " · subscribed" : "") }),
      ]);
    }));
  }

  function renderDrEvents(events) {
    const box = document.getElementById("dr-events");
    if (!events.length) {
      box.replaceChildren(el("p", { class: "empty", text: "No demand-response events." }));
      return;
    }
    const order = { active: 0, scheduled: 1, pending: 1 };
    const sorted = events.slice().sort((a, b) =>
      (order[a.state] ?? 2) - (order[b.state] ?? 2) || String(a.start).localeCompare(String(b.start)));
    box.replaceChildren(...sorted.map((ev) => {
      const st = parseTime(ev.start), en = parseTime(ev.end);
      const what = isNum(ev.limit_w) ? "limit " + kw(ev.limit_w)
        : isNum(ev.reduction_w) ? "reduce by " + kw(ev.reduction_w) : "";
      return el("div", { class: "dr-event " + (ev.state || ""), "data-id": ev.id }, [
        el("div", { class: "dr-title" }, [
          el("span", { text: String(ev.id) }),
          el("span", { class: "pill " + (ev.state || ""), text: ev.state || "" }),
        ]),
        el("div", { class: "dr-meta", text: (st ? hhmm(st) : "?") + "–" + (en ? hhmm(en) : "?") + " UTC · " + what +
          (ev.priority ? " · priority " + ev.priority : "") +
          (ev.held_back_by ? " · held back by " + ev.held_back_by : "") }),
      ]);
    }));
  }

  // ---------- connectors ----------
  function renderConnectors(connectors) {
    const tbody = document.querySelector("#connectors tbody");
    const scale = connectors.reduce((a, c) =>
      Math.max(a, isNum(c.allocated_w) ? c.allocated_w : 0, isNum(c.measured_w) ? c.measured_w : 0, isNum(c.max_w) ? c.max_w : 0), 1);
    const sorted = connectors.slice().sort((a, b) =>
      String(a.station_id).localeCompare(String(b.station_id)) || a.connector_id - b.connector_id);
    tbody.replaceChildren(...sorted.map((c) => {
      const status = c.online === false ? "offline" : (c.status || "Unknown");
      const pct = (w) => (isNum(w) ? Math.min(100, (w / scale) * 100).toFixed(1) + "%" : "0");
      const bar = el("div", { class: "bar" }, [
        el("div", { class: "alloc", style: { width: pct(c.allocated_w) } }),
        el("div", { class: "measured", style: { width: pct(c.measured_w) } }),
      ]);
      const bound = bindingLabel(c.binding);
      return el("tr", { class: c.online === false ? "offline" : "", "data-key": c.station_id + "/" + c.connector_id }, [
        el("td", {}, [c.station_id + " · " + c.connector_id, versionTag(c.station_id)]),
        el("td", {}, [el("span", { class: "status " + status }, [el("span", { class: "dot" }), status]),
                      c.undeclared ? el("span", { class: "uncontrollable", title: "not in the site file: counted under its station and planned at the station's maximum", text: "not in site file" })
                        : c.controllable === false ? el("span", { class: "uncontrollable", title: "this station does not take charging profiles; planned at its maximum", text: "no profiles" }) : ""]),
        el("td", {}, [bar]),
        el("td", { class: "num alloc-w", text: kw(c.allocated_w) }),
        el("td", { class: "num measured-w", text: kw(c.measured_w) }),
        el("td", {}, bound ? [bound] : []),
      ]);
    }));
  }

  // ---------- sessions ----------
  // Who set a session's need and departure: a guess (estimated from past sessions, or the
  // site's default) is marked, so nobody reads it as what the driver asked for.
  const NEED_SOURCES = {
    estimated: ["estimated", "estimated from this driver's (or bay's) past sessions"],
    default: ["site default", "the driver told nothing: the site's default need and stay"],
    ev: ["car", "the car told its needs (ISO 15118)"],
    operator: ["told", "told by the driver or an operator"],
  };
  function guessed(source) { return source === "estimated" || source === "default"; }
  function needSource(source) {
    const known = NEED_SOURCES[source];
    if (!known) return "";
    return el("span", { class: "need-source need-" + source, title: known[1], text: known[0] });
  }

  function renderSessions(sessions) {
    const tbody = document.querySelector("#sessions tbody");
    document.getElementById("sessions-empty").hidden = sessions.length > 0;
    const sorted = sessions.slice().sort((a, b) => String(a.departure).localeCompare(String(b.departure)));
    tbody.replaceChildren(...sorted.map((x) => {
      const frac = isNum(x.requested_wh) && x.requested_wh > 0 && isNum(x.energy_wh)
        ? Math.min(1, x.energy_wh / x.requested_wh) : 0;
      const dep = parseTime(x.departure);
      return el("tr", { "data-session": String(x.session_id) }, [
        el("td", { text: String(x.session_id) }),
        el("td", { text: x.station_id + " · " + x.connector_id }),
        el("td", {}, [
          el("div", { class: "bar", title: kwh(x.energy_wh) + " of " + kwh(x.requested_wh) },
             [el("div", { class: "energy", style: { width: (frac * 100).toFixed(1) + "%" } })]),
          el("span", { class: "bar-label", text: kwh(x.energy_wh) + " / " + kwh(x.requested_wh) }),
          needSource(x.need_source),
        ]),
        el("td", { text: dep ? (guessed(x.need_source) ? "~" : "") + hhmm(dep) : "—" }),
      ]);
    }));
  }

  // ---------- live connection ----------
  function setConn(stateName, label) {
    const node = document.getElementById("conn-state");
    node.dataset.state = stateName;
    node.querySelector(".label").textContent = label;
  }

  // ---------- the API token ----------
  // The API needs a bearer token (a reader's is enough). It comes from the URL fragment
  // (`/#token=...`: a browser never sends the fragment to a server, so it stays out of access
  // logs) or from the form; it is kept in sessionStorage (this tab only) and sent as
  // `Authorization: Bearer`, for the stream too: fetch() can send headers, EventSource cannot,
  // and a token in a query string would land in logs and the history.
  const TOKEN_KEY = "smartcharge.apiToken";
  function takeTokenFromFragment() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const token = params.get("token");
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      history.replaceState(null, "", location.pathname + location.search);   // out of the address bar
    }
  }
  const authHeaders = () => {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? { Authorization: "Bearer " + token } : {};
  };

  class AuthError extends Error {}

  function askForToken(message) {
    setConn("token", "token needed");
    const form = document.getElementById("token-form");
    document.getElementById("token-message").textContent = message;
    form.hidden = false;
    document.getElementById("token-input").focus();
  }

  function setupTokenForm() {
    const form = document.getElementById("token-form");
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const input = document.getElementById("token-input");
      if (!input.value.trim()) return;
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      input.value = "";
      form.hidden = true;
      start();
    });
  }

  async function loadInitial() {
    const resp = await fetch("/api/site", { cache: "no-store", headers: authHeaders() });
    if (resp.status === 401 || resp.status === 403) throw new AuthError(resp.status === 401
      ? "The API needs a token (reader, operator or admin)." : "This token may not read the site.");
    if (resp.ok) accept(await resp.json());
  }

  // Server-sent events over fetch: blocks separated by a blank line, "event:" and "data:" lines.
  async function followStream(signal) {
    const resp = await fetch("/api/site/stream", { cache: "no-store", headers: authHeaders(), signal });
    if (resp.status === 401 || resp.status === 403) throw new AuthError("The token was refused.");
    if (!resp.ok || !resp.body) throw new Error("stream answered " + resp.status);
    state.retryMs = 1000;
    setConn("live", "live");
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message", data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (name === "snapshot" && data.length) {
          try { accept(JSON.parse(data.join("\n"))); } catch (err) { console.warn("bad snapshot", err); }
        }
      }
    }
  }

  let generation = 0;
  async function start() {
    const mine = ++generation;          // a newer start() (a new token) replaces this loop
    if (state.source) state.source.abort();
    while (mine === generation) {
      const controller = new AbortController();
      state.source = controller;
      try {
        await loadInitial();
        await followStream(controller.signal);
      } catch (err) {
        if (err instanceof AuthError) { askForToken(err.message); return; }
        if (err.name !== "AbortError") console.warn("stream failed", err);
      }
      if (mine !== generation) return;
      setConn("reconnecting", "reconnecting…");
      const wait = state.retryMs;
      state.retryMs = Math.min(15000, state.retryMs * 2);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  window.addEventListener("resize", queueRender);
  window.smartchargeDashboard = state;   // for tests and curious operators
  takeTokenFromFragment();
  setupTokenForm();
  start();
})();
