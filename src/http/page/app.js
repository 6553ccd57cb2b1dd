// The live page: polls the JSON API every 2 s and draws each run and GPU as SVG.
// No libraries, no network beyond this daemon.
"use strict";

const POLL_MS = 2000;
const runState = new Map(); // run -> {records, series: {key: data}, log: bool}

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
};
const SVG = "http://www.w3.org/2000/svg";
const svgEl = (tag, attrs = {}) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};

function fmt(v, unit = "") {
  if (v === null || v === undefined) return "–";
  if (typeof v === "string") return v; // NaN, +Inf, -Inf
  const a = Math.abs(v);
  let s;
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) s = v.toExponential(2);
  else if (Number.isInteger(v)) s = String(v);
  else s = v.toPrecision(4).replace(/\.?0+$/, "");
  return unit ? `${s} ${unit}` : s;
}

function ago(secs) {
  if (secs === null || secs === undefined) return "never";
  if (secs < 90) return `${Math.round(secs)} s ago`;
  if (secs < 5400) return `${Math.round(secs / 60)} min ago`;
  if (secs < 172800) return `${(secs / 3600).toFixed(1)} h ago`;
  return `${Math.round(secs / 86400)} d ago`;
}

function duration(secs) {
  if (secs === null || secs === undefined || !isFinite(secs)) return "–";
  const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60), s = Math.round(secs % 60);
  return h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
}

// Draws series [{name, points: [[x,y]], nonfinite: [[x, "NaN"]]}] into an SVG.
// `xr`/`yr` fix the axis ranges (the GPU charts: the last hour, 0–100 %).
function drawChart(svg, series, { log = false, unit = "", xunit = "step", xr = null, yr = null } = {}) {
  const W = 320, H = 150, L = 54, R = 8, T = 14, B = 24;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]).concat(series.flatMap((s) => s.nonfinite.map((p) => p[0])));
  const ys = all.map((p) => p[1]).filter((y) => !log || y > 0);
  if (!xs.length) {
    svg.append(Object.assign(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }), { textContent: "no data yet" }));
    return;
  }
  let [x0, x1] = xr || [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  let [y0, y1] = yr || (ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1]);
  const ty = (y) => (log ? Math.log10(y) : y);
  let ly0 = ty(y0), ly1 = ty(y1);
  if (ly0 === ly1) { ly0 -= 0.5; ly1 += 0.5; }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (ty(y) - ly0) / (ly1 - ly0)) * (H - T - B);
  svg.append(svgEl("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  svg.append(svgEl("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  for (let i = 0; i <= 3; i++) {
    const v = ly0 + ((ly1 - ly0) * i) / 3;
    const y = T + (1 - i / 3) * (H - T - B);
    const t = svgEl("text", { x: L - 4, y: y + 3, "text-anchor": "end" });
    t.textContent = fmt(log ? 10 ** v : v);
    svg.append(t);
  }
  for (let i = 0; i <= 2; i++) {
    const v = x0 + ((x1 - x0) * i) / 2;
    const t = svgEl("text", { x: sx(v), y: H - B + 12, "text-anchor": i === 0 ? "start" : i === 2 ? "end" : "middle" });
    t.textContent = fmt(Math.round(v));
    svg.append(t);
  }
  const xl = svgEl("text", { x: W - R, y: H - 2, "text-anchor": "end" });
  xl.textContent = xunit;
  svg.append(xl);
  if (unit) {
    const ul = svgEl("text", { x: 2, y: 10 });
    ul.textContent = unit;
    svg.append(ul);
  }
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => !log || p[1] > 0);
    if (pts.length) {
      const d = pts.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
      svg.append(svgEl("path", { class: `line s${i} series-${s.name}`, d, "data-points": pts.length }));
      if (pts.length === 1) {
        svg.append(svgEl("circle", { class: `line s${i}`, cx: sx(pts[0][0]), cy: sy(pts[0][1]), r: 2 }));
      }
    }
    for (const [x, v] of s.nonfinite) {
      const m = svgEl("line", { class: `nonfinite nonfinite-${s.name}`, x1: sx(x), x2: sx(x), y1: T, y2: H - B });
      const title = svgEl("title");
      title.textContent = `${s.name} ${v} at step ${x}`;
      m.append(title);
      svg.append(m);
    }
  });
  if (series.some((s) => s.nonfinite.length)) {
    const t = svgEl("text", { class: "nonfinite-label", x: W - R, y: 10, "text-anchor": "end" });
    t.textContent = "NaN/Inf";
    svg.append(t);
  }
}

const CHARTS = [
  { id: "loss", keys: ["loss", "eval_loss"], title: "loss / eval loss", wide: true, logToggle: true },
  { id: "lr", keys: ["learning_rate"], title: "learning rate" },
  { id: "grad", keys: ["grad_norm"], title: "grad norm" },
  { id: "speed", keys: ["steps_per_second", "samples_per_second", "tokens_per_second"], title: "throughput", unit: "per s" },
];

function runCard(run) {
  const card = el("article", { class: "card run-card", "data-run": run.run });
  card.append(el("h3", {}, run.run));
  card.append(el("div", { class: "badges" }));
  card.append(el("div", { class: "progress" }, el("div", { style: "width:0%" })));
  card.append(el("div", { class: "stats" }));
  card.append(el("div", { class: "last-error", hidden: "" }));
  const charts = el("div", { class: "charts" });
  for (const c of CHARTS) {
    const box = el("div", { class: `chart${c.wide ? " wide" : ""}`, "data-chart": c.id });
    const title = el("div", { class: "title" }, el("span", { class: "legend" }));
    if (c.logToggle) {
      const cb = el("input", { type: "checkbox", class: "log-toggle" });
      cb.addEventListener("change", () => { runState.get(run.run).log = cb.checked; redraw(run.run); });
      title.append(el("label", { class: "toggle" }, cb, " log scale"));
    }
    box.append(title, svgEl("svg", { class: `chart-${c.id}`, role: "img", "aria-label": c.title }));
    charts.append(box);
  }
  charts.append(el("div", { class: "others charts wide chart" }));
  card.append(charts);
  return card;
}

function stat(label, value) {
  return el("div", { class: "stat" }, el("b", {}, label), value);
}

function updateCard(card, run, now) {
  const badges = $(".badges", card);
  badges.replaceChildren(el("span", { class: `badge state-${run.state}` }, run.state));
  if (run.paused) {
    const p = run.paused;
    badges.append(el("span", { class: "badge badge-paused", title: `${p.action}: ${p.pids.length} process(es) stopped ${ago(now - p.since)}; kill -CONT or resolve the alert to continue` }, `paused by ${p.alert}`));
  }
  if (run.nonfinite_total > 0) {
    badges.append(el("span", { class: "badge badge-nan", title: JSON.stringify(run.nonfinite) }, `NaN/Inf ×${run.nonfinite_total}`));
  }
  badges.append(el("span", { class: "badge muted" }, run.format));
  const pct = run.max_steps ? Math.min(100, (100 * (run.step || 0)) / run.max_steps) : 0;
  $(".progress > div", card).style.width = `${pct}%`;
  const age = run.last_record !== null ? now - run.last_record : null;
  $(".stats", card).replaceChildren(
    stat("step", `${fmt(run.step)}${run.max_steps ? " / " + fmt(run.max_steps) : ""}`),
    stat("epoch", fmt(run.epoch)),
    stat("loss", fmt(run.loss)),
    stat("eval loss", fmt(run.eval_loss)),
    stat("learning rate", fmt(run.learning_rate)),
    stat("grad norm", fmt(run.grad_norm)),
    stat("throughput", run.steps_per_second !== null ? fmt(run.steps_per_second, "steps/s") : fmt(run.samples_per_second, "samples/s")),
    stat("ETA", duration(run.eta_seconds)),
    stat("last record", ago(age)),
  );
  // the cause of the latest crash: kind, step and rank, and the log line
  const err = $(".last-error", card);
  const e = run.last_error;
  err.hidden = !e;
  if (e) {
    const where = `${e.step !== null ? ` at step ${fmt(e.step)}` : ""}${e.rank !== null ? ` (rank ${e.rank})` : ""}`;
    err.replaceChildren(el("b", {}, `${e.event}${where}: `), e.message);
    err.title = `${e.message}\nread ${ago(now - e.time)}`;
  }
}

async function fetchJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

async function refreshSeries(run) {
  const st = runState.get(run.run);
  const keys = new Set(run.history_keys);
  await Promise.all([...keys].map(async (key) => {
    const q = `/api/v1/runs/${encodeURIComponent(run.run)}/series?key=${encodeURIComponent(key)}`;
    st.series[key] = await fetchJSON(q);
  }));
}

function redraw(name) {
  const st = runState.get(name);
  const card = document.querySelector(`.run-card[data-run="${CSS.escape(name)}"]`);
  if (!st || !card) return;
  const used = new Set();
  for (const c of CHARTS) {
    const series = c.keys.filter((k) => st.series[k]).map((k) => ({ name: k, points: st.series[k].points, nonfinite: st.series[k].nonfinite }));
    c.keys.forEach((k) => used.add(k));
    const box = $(`[data-chart="${c.id}"]`, card);
    $(".legend", box).replaceChildren(...(series.length ? series : [{ name: c.title }]).map((s, i) => el("span", { class: `k${i}` }, s.name)));
    drawChart($("svg", box), series, { log: c.id === "loss" && st.log, unit: c.unit || "" });
  }
  const others = $(".others", card);
  const keys = Object.keys(st.series).filter((k) => !used.has(k)).sort();
  for (const k of keys) {
    let box = others.querySelector(`[data-key="${CSS.escape(k)}"]`);
    if (!box) {
      box = el("div", { class: "chart", "data-key": k }, el("div", { class: "title" }, k), svgEl("svg", { class: "chart-other" }));
      others.append(box);
    }
    drawChart($("svg", box), [{ name: "v", points: st.series[k].points, nonfinite: st.series[k].nonfinite }]);
  }
}

async function refreshRuns() {
  const data = await fetchJSON("/api/v1/runs");
  const root = $("#runs");
  $("#no-runs").hidden = data.runs.length > 0;
  const seen = new Set();
  for (const run of data.runs) {
    seen.add(run.run);
    let card = root.querySelector(`.run-card[data-run="${CSS.escape(run.run)}"]`);
    if (!card) {
      card = runCard(run);
      root.append(card);
      runState.set(run.run, { records: -1, series: {}, log: false });
    }
    updateCard(card, run, data.now);
    const st = runState.get(run.run);
    if (st.records !== run.records) {
      await refreshSeries(run);
      st.records = run.records;
      redraw(run.run);
    }
  }
  for (const card of [...root.children]) {
    if (!seen.has(card.dataset.run)) { runState.delete(card.dataset.run); card.remove(); }
  }
}

function gpuCard(g) {
  const card = el("article", { class: `card gpu-card${g.up ? "" : " gpu-down"}`, "data-gpu": g.gpu });
  card.append(el("h3", {}, `GPU ${g.gpu} · ${g.name || ""}`));
  const util = g.utilization_ratio;
  const mem = g.memory_total_bytes ? g.memory_used_bytes / g.memory_total_bytes : null;
  const bar = (label, ratio, text) => [
    el("div", { class: "title muted" }, `${label}: ${text}`),
    el("div", { class: `bar${ratio !== null && ratio > 0.95 ? " hot" : ""}` }, el("div", { style: `width:${ratio === null ? 0 : Math.round(ratio * 100)}%` })),
  ];
  card.append(...bar("utilization", util, util === null ? "–" : `${Math.round(util * 100)} %`));
  card.append(...bar("memory", mem, mem === null ? "–" : `${fmt(g.memory_used_bytes / 2 ** 30)} / ${fmt(g.memory_total_bytes / 2 ** 30)} GiB`));
  card.append(el("div", { class: "stats" },
    stat("temperature", fmt(g.temperature_celsius, "°C")),
    stat("power", fmt(g.power_watts, "W")),
    stat("state", g.up ? "up" : "lost")));
  const svg = svgEl("svg", { class: "chart-gpu" });
  card.append(el("div", { class: "title muted" }, "last hour: utilization and memory (%)"), svg);
  const hist = g.history || [];
  drawChart(svg, [
    { name: "util", points: hist.map((h) => [h[0], h[1] * 100]).filter((p) => p[1] !== null && isFinite(p[1])), nonfinite: [] },
    { name: "mem", points: hist.map((h) => [h[0], h[2] * 100]).filter((p) => p[1] !== null && isFinite(p[1])), nonfinite: [] },
  ], { xunit: "minutes", unit: "%", xr: [-60, 0], yr: [0, 100] });
  return card;
}

async function refreshGpus() {
  const data = await fetchJSON("/api/v1/gpus");
  $("#gpus-section").hidden = !data.gpus.length;
  $("#gpus").replaceChildren(...data.gpus.map(gpuCard));
}

let busy = false;
async function tick() {
  if (busy) return;
  busy = true;
  try {
    await Promise.all([refreshRuns(), refreshGpus()]);
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("#updated").dataset.updates = String(Number($("#updated").dataset.updates || 0) + 1);
  } catch (e) {
    $("#updated").textContent = `update failed: ${e.message}`;
  } finally {
    busy = false;
  }
}

tick();
setInterval(tick, POLL_MS);
