// The logstar operator console: plain JavaScript, no framework. It watches
// one session through the console's server-sent events (/api/events, one
// Watch call of logstard each), draws the latest frame with what was found,
// the window grid, the fronts and a timeline, and sends the operator's
// picks (/api/choose → UpdateSession). Coordinates in results are frame
// pixels (x = column, y = row, origin at the centre of the top-left pixel);
// the preview is the frame scaled by preview_scale.
"use strict";

// The overlays' colours (engine/image/overlay.cc): atoms green, amorphous
// atoms magenta, region outlines yellow; sublattices and cache states come
// from the engine through /api/palette.
const ATOM = "rgb(60,220,60)", AMORPHOUS = "rgb(255,60,255)", OUTLINE = "rgb(255,230,0)";
const ROI = "rgb(0,220,255)";
const HISTORY = 300;  // timeline points kept
const SVG = "http://www.w3.org/2000/svg";

const state = {
  session: "", palette: null, source: null, frames: 0, skipped: 0,
  history: [], pending: null, last: null,
};

const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function svg(tag, attrs, parent) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function setStatus(text, error) {
  const s = $("status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

// ---- sessions

async function refreshSessions() {
  try {
    const list = (await api("/api/sessions")).sessions || [];
    const select = $("session");
    const ids = list.map((s) => s.session_id);
    if (state.session && !ids.includes(state.session)) ids.unshift(state.session);
    if (select.options.length !== ids.length || ids.some((id, i) => select.options[i].value !== id)) {
      select.replaceChildren(...ids.map((id) => new Option(id, id)));
    }
    if (!state.session && ids.length > 0) watch(ids[0]);
    select.value = state.session;
  } catch (e) {
    setStatus("daemon: " + e.message, true);
  }
}

async function refreshSession() {
  if (!state.session) return;
  try {
    showPicks(await api("/api/session?id=" + encodeURIComponent(state.session)));
  } catch (e) { /* the session may not exist yet */ }
}

// ---- watching

function watch(id) {
  if (state.source) state.source.close();
  state.session = id;
  state.history = [];
  state.frames = 0;
  state.skipped = 0;
  state.pending = null;
  const url = new URL(location.href);
  url.searchParams.set("session", id);
  history.replaceState(null, "", url);
  setStatus("attaching to " + id + "…");
  const source = new EventSource("/api/events?session=" + encodeURIComponent(id));
  state.source = source;
  source.addEventListener("watching", () => setStatus("watching " + id));
  source.addEventListener("result", (e) => onResult(JSON.parse(e.data)));
  source.addEventListener("ended", (e) => {
    // The watch ended (no such session yet, the daemon stopped): try again.
    source.close();
    setStatus(JSON.parse(e.data).error, true);
    setTimeout(() => { if (state.source === source) watch(id); }, 1000);
  });
  refreshSession();
}

function onResult(event) {
  const r = event.result;
  state.frames += 1;
  state.skipped += Number(event.skipped);
  state.last = r;
  notePickEffect(r);
  record(r);
  const draw = (image) => {
    drawFrame(r, image, event.preview_scale || 1);
    drawGrid(r);
    drawFronts(r);
    drawTimeline();
    showCounters(r.counters);
    document.body.dataset.frames = state.frames;
  };
  $("sequence").textContent = r.sequence + (state.skipped ? ` (skipped ${state.skipped})` : "");
  if (event.png) {
    const image = new Image();
    image.onload = () => draw(image);
    image.src = "data:image/png;base64," + event.png;
  } else {
    draw(null);
  }
}

// ---- the frame and what was found on it

function drawFrame(r, image, scale) {
  const canvas = $("frame");
  const w = image ? image.width : Math.round(r.width * scale);
  const h = image ? image.height : Math.round(r.height * scale);
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  if (image) ctx.drawImage(image, 0, 0); else ctx.fillRect(0, 0, w, h);
  // Frame pixel centres → canvas: (x + 0.5) · scale.
  const px = (v) => (v + 0.5) * scale;
  ctx.lineWidth = 1;
  for (const g of r.amorphous_regions || []) {
    ctx.strokeStyle = OUTLINE;
    ctx.beginPath();
    (g.contour_x || []).forEach((x, i) => {
      const y = g.contour_y[i];
      if (i === 0) ctx.moveTo(px(x), px(y)); else ctx.lineTo(px(x), px(y));
    });
    ctx.closePath();
    ctx.stroke();
  }
  const sublattices = (state.palette && state.palette.sublattices) || [];
  for (const a of r.atoms || []) {
    ctx.strokeStyle = a.amorphous ? AMORPHOUS
                    : a.sublattice > 0 ? sublattices[(a.sublattice - 1) % sublattices.length] || ATOM
                    : ATOM;
    ctx.beginPath();
    ctx.arc(px(a.x), px(a.y), Math.max(1.5, a.sigma * Math.SQRT2 * scale), 0, 2 * Math.PI);
    ctx.stroke();
  }
  // Ranked regions of interest: dashed boxes with their rank.
  ctx.setLineDash([4, 3]);
  ctx.strokeStyle = ROI;
  ctx.fillStyle = ROI;
  ctx.font = "12px sans-serif";
  (r.regions_of_interest || []).slice(0, 5).forEach((roi, i) => {
    const b = roi.box || {};
    ctx.strokeRect(b.col0 * scale, b.row0 * scale, b.cols * scale, b.rows * scale);
    ctx.fillText(String(i + 1), b.col0 * scale + 3, b.row0 * scale + 13);
  });
  ctx.setLineDash([]);
  drawScaleBar(ctx, r, scale, w, h);
  canvas.dataset.atoms = (r.atoms || []).length;
  canvas.dataset.sequence = r.sequence;
  canvas.dataset.regions = (r.amorphous_regions || []).length;
  const names = ((r.prior_used && r.prior_used.prior && r.prior_used.prior.sublattices) || [])
                    .map((s, i) => swatch(sublattices[i % sublattices.length]) + (s.name || "sublattice " + (i + 1)));
  $("frame-legend").innerHTML = `${(r.atoms || []).length} atoms ` +
      (names.length ? names.join("") : swatch(ATOM) + "atom") + swatch(AMORPHOUS) + "amorphous" +
      swatch(OUTLINE) + "amorphous region" + swatch(ROI) + "region of interest (ranked)";
}

function swatch(colour) {
  return `<span class="swatch" style="background:${colour}"></span>`;
}

// A bar of the longest 1, 2 or 5 × 10^k Å that fits a quarter of the width
// (as the overlays' scale bar).
function drawScaleBar(ctx, r, scale, w, h) {
  const used = r.prior_used || {};
  const size = used.prior && used.prior.pixel_size_angstrom;
  if (!size || used.pixel_units) return;
  const maxAngstrom = (w / 4) / scale * size;
  const decade = Math.pow(10, Math.floor(Math.log10(maxAngstrom)));
  const length = [5, 2, 1].map((m) => m * decade).find((l) => l <= maxAngstrom);
  const bar = length / size * scale;
  ctx.fillStyle = "#fff";
  ctx.fillRect(10, h - 14, bar, 4);
  ctx.font = "12px sans-serif";
  ctx.fillText(length >= 10 ? `${length / 10} nm` : `${length} Å`, 10, h - 20);
  $("frame").dataset.scaleBarAngstrom = length;
}

// ---- windows

function stateName(s) {
  return { CACHE_STATE_HIT: "hit", CACHE_STATE_MISS: "tuned", CACHE_STATE_RETUNED: "re-tuned" }[s] || s;
}

function drawGrid(r) {
  const grid = $("grid");
  grid.setAttribute("viewBox", `0 0 ${r.width} ${r.height}`);
  grid.replaceChildren();
  const colours = (state.palette && state.palette.windows) || {};
  for (const w of r.windows || []) {
    const c = w.core || w.tile;
    const rect = svg("rect", {
      x: c.col0, y: c.row0, width: c.cols, height: c.rows,
      fill: colours[w.cache_state] || "#888", "data-window": w.index, "data-state": w.cache_state,
    }, grid);
    const p = w.parameters || {};
    svg("title", {}, rect).textContent =
        `window ${w.index}: ${stateName(w.cache_state)}\n` +
        `min_sigma ${fmt(p.min_sigma)} px, max_sigma ${fmt(p.max_sigma)} px, num_sigma ${p.num_sigma}\n` +
        `threshold ${fmt(p.threshold)}, overlap ${fmt(p.overlap)}\n` +
        `QC ${fmt(w.rewards && w.rewards.qc)}, ER ${fmt(w.rewards && w.rewards.er)}, ${w.num_atoms} atoms\n` +
        `front point ${w.chosen} of ${(w.front || []).length}`;
  }
  $("grid-legend").innerHTML = ["CACHE_STATE_HIT", "CACHE_STATE_MISS", "CACHE_STATE_RETUNED"]
      .map((s) => swatch(colours[s] || "#888") + stateName(s)).join("");
}

function fmt(v) {
  if (v === undefined || v === null) return "–";
  return Math.abs(v) >= 100 ? v.toFixed(0) : Number(v).toPrecision(3);
}

// ---- fronts

function drawFronts(r) {
  const box = $("fronts");
  box.replaceChildren();
  const W = 150, H = 120, M = 22;
  for (const w of r.windows || []) {
    const front = w.front || [];
    const lattice = w.objectives === "OBJECTIVE_PAIR_LATTICE";
    const xs = front.map((p) => lattice ? p.misses : p.qc);
    const ys = front.map((p) => lattice ? p.spurious : p.er);
    const span = (v) => { const lo = Math.min(...v), hi = Math.max(...v); return [lo, hi > lo ? hi - lo : 1]; };
    const [x0, dx] = span(xs), [y0, dy] = span(ys);
    const plot = svg("svg", { class: "front", width: W, height: H, "data-window": w.index }, box);
    svg("line", { x1: M, y1: H - M, x2: W - 6, y2: H - M }, plot);
    svg("line", { x1: M, y1: 6, x2: M, y2: H - M }, plot);
    svg("text", { x: M, y: H - 6 }, plot).textContent = lattice ? "misses →" : "QC →";
    svg("text", { x: 2, y: 12 }, plot).textContent = lattice ? "spur." : "ER";
    svg("text", { x: W - 40, y: 12 }, plot).textContent = "w" + w.index;
    front.forEach((p, i) => {
      const cx = M + 6 + (xs[i] - x0) / dx * (W - M - 18);
      const cy = H - M - 6 - (ys[i] - y0) / dy * (H - M - 18);
      const pending = state.pending && state.pending.window === w.index && state.pending.index === i;
      const dot = svg("circle", {
        cx, cy, r: i === w.chosen ? 5 : 4,
        class: i === w.chosen ? "chosen" : pending ? "pending" : "",
        "data-window": w.index, "data-index": i,
      }, plot);
      svg("title", {}, dot).textContent =
          `point ${i}: ${lattice ? "misses" : "QC"} ${fmt(xs[i])}, ${lattice ? "spurious" : "ER"} ${fmt(ys[i])}\n` +
          `threshold ${fmt(p.parameters.threshold)}, sigma ${fmt(p.parameters.min_sigma)}–${fmt(p.parameters.max_sigma)} px`;
      dot.addEventListener("click", () => choose(w.index, i));
    });
  }
}

async function choose(window, index) {
  $("pick-status").textContent = `sending window ${window}, point ${index}…`;
  try {
    const body = new URLSearchParams({ session: state.session, window, front_index: index });
    const info = await api("/api/choose", { method: "POST", body });
    const point = state.last.windows[window].front[index];
    // Counted in the daemon's frames (a page may skip some): from the
    // session's frames analysed when the daemon took the pick (its answer's
    // counters; the page's last result may be older than that).
    const counters = info.counters || state.last.counters;
    state.pending = { window, index, threshold: point.parameters.threshold,
                      analysed: Number(counters.frames_analysed) };
    document.body.dataset.pickApplied = "";
    $("pick-status").textContent = `window ${window} → point ${index}: waiting for the next frame`;
    showPicks(info);
    if (state.last) drawFronts(state.last);
  } catch (e) {
    $("pick-status").textContent = "pick refused: " + e.message;
  }
}

// Click-to-effect, in frames: the first result whose window runs the
// picked point.
function notePickEffect(r) {
  const p = state.pending;
  if (!p) return;
  const w = (r.windows || [])[p.window];
  // The same point index on a re-tuned front is another point: the
  // parameters tell.
  if (w && w.chosen === p.index && w.parameters.threshold === p.threshold) {
    const frames = Number(r.counters.frames_analysed) - p.analysed;
    $("pick-status").textContent =
        `window ${p.window} → point ${p.index}: in use in frame ${r.sequence}, ` +
        `${frames} frame${frames > 1 ? "s" : ""} after the click`;
    document.body.dataset.pickApplied = r.sequence;
    document.body.dataset.pickFrames = frames;
    state.pending = null;
  }
}

function showPicks(info) {
  const picks = info.picks || [];
  $("picks").replaceChildren(...picks.slice(-8).map((p) => {
    const li = document.createElement("li");
    li.textContent = `window ${p.window} → point ${p.front_index} after frame ${p.frames_analysed}` +
                     ` (${new Date(p.time).toLocaleTimeString()})`;
    return li;
  }));
  $("picks").dataset.count = picks.length;
}

// ---- timeline and counters

function record(r) {
  const area = (r.amorphous_regions || []).reduce((s, g) => s + g.area_px2, 0);
  state.history.push({
    sequence: Number(r.sequence),
    count: (r.atoms || []).length,
    qc: r.rewards ? r.rewards.qc : 0,
    er: r.rewards ? r.rewards.er : 0,
    amorphous: r.width && r.height ? area / (r.width * r.height) : 0,
    latency: r.latency ? r.latency.total_ms : 0,
  });
  if (state.history.length > HISTORY) state.history.shift();
}

const CHARTS = [
  { title: "atoms", series: [["count", "#6c6"]] },
  { title: "rewards (QC, ER)", series: [["qc", "#fd4"], ["er", "#f66"]] },
  { title: "amorphous share", series: [["amorphous", "#f6f"]] },
  { title: "latency, ms", series: [["latency", "#6cf"]] },
];

function drawTimeline() {
  const box = $("timeline");
  box.replaceChildren();
  const W = 260, H = 90, M = 4;
  const h = state.history;
  for (const chart of CHARTS) {
    const plot = svg("svg", { class: "chart", width: W, height: H }, box);
    const values = h.flatMap((p) => chart.series.map(([k]) => p[k]));
    const lo = Math.min(0, ...values), hi = Math.max(...values, lo + 1e-9);
    for (const [key, colour] of chart.series) {
      const points = h.map((p, i) =>
          `${M + i / Math.max(1, h.length - 1) * (W - 2 * M)},${H - M - (p[key] - lo) / (hi - lo) * (H - 24)}`);
      svg("polyline", { points: points.join(" "), stroke: colour, "data-key": key }, plot);
    }
    const last = h[h.length - 1] || {};
    svg("text", { x: M, y: 12 }, plot).textContent =
        `${chart.title}: ${chart.series.map(([k]) => fmt(last[k])).join(", ")} (max ${fmt(hi)})`;
  }
  box.dataset.points = h.length;
}

function showCounters(c) {
  c = c || {};
  const rows = [
    ["frames received", c.frames_received], ["frames analysed", c.frames_analysed],
    ["dropped", c.frames_dropped], ["failed", c.frames_failed],
    ["windows hit", c.cache_hits], ["tuned", c.cache_misses], ["re-tuned", c.cache_retunes],
    ["amorphous hit / tuned / re-tuned",
     `${c.amorphous_hits || 0} / ${c.amorphous_misses || 0} / ${c.amorphous_retunes || 0}`],
    ["results skipped by this page", state.skipped],
  ];
  $("counters").replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${k}</td><td>${v === undefined ? 0 : v}</td>`;
    return tr;
  }));
}

// ---- start

async function start() {
  try {
    state.palette = await api("/api/palette");
  } catch (e) {
    setStatus(e.message, true);
  }
  $("session").addEventListener("change", (e) => watch(e.target.value));
  const wanted = new URL(location.href).searchParams.get("session");
  if (wanted) watch(wanted);
  await refreshSessions();
  setInterval(refreshSessions, 2000);
  setInterval(refreshSession, 2000);
}

start();
