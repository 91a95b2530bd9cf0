/**
 * The dashboard page: one self-contained HTML document (no external scripts, fonts or styles, so it
 * works offline and behind any proxy). It listens to `dashboard/events` (feed.ts) and draws:
 *  - tiles: running and waiting requests, KV usage, tokens/s, time to first token and end-to-end
 *    latency over the last minute, prefix-cache hit rate, preemptions, finished requests;
 *  - the KV pool as a block map on a canvas, one cell per block (several per cell only when the
 *    pool is too large to show every block), coloured by state, with the count of each;
 *  - tokens/s, latency and queues over the last five minutes.
 *
 * Every number shown also sits in a `data-value` attribute, raw, and the map's geometry in the
 * canvas's data attributes, so a test can read what a person sees.
 *
 * The script is plain browser JavaScript in a String.raw literal: it uses no backticks and no
 * dollar-brace, which would end or interpolate the literal.
 */
export const DASHBOARD_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pagewise dashboard</title>
<style>
  :root {
    --bg: #0f1218; --panel: #181c25; --line: #262c38; --text: #e7e9ee; --muted: #8d95a5;
    --free: #2b313d; --cached: #4a78c2; --used: #36c07e; --shared: #f0a73a;
    --prompt: #6fa8ff; --gen: #36c07e; --ttft: #f0a73a; --e2e: #d56cf0; --running: #36c07e; --waiting: #f06a5a; --kv: #4a78c2;
  }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
  header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 18px; padding: 12px 20px; border-bottom: 1px solid var(--line); }
  header h1 { margin: 0; font-size: 17px; }
  header .muted { color: var(--muted); }
  #status { margin-left: auto; color: var(--muted); }
  #status::before { content: ""; display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 6px; background: var(--waiting); }
  #status.live::before { background: var(--used); }
  main { padding: 16px 20px; display: grid; gap: 16px; }
  .tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; }
  .tile { background: var(--panel); border-radius: 8px; padding: 10px 12px; }
  .tile .l { color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .05em; }
  .tile .v { font-size: 26px; font-weight: 600; font-variant-numeric: tabular-nums; white-space: nowrap; }
  .tile .s { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
  .panel { background: var(--panel); border-radius: 8px; padding: 12px 14px; }
  .panel .head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 18px; margin-bottom: 10px; }
  .panel h2 { margin: 0; font-size: 14px; font-weight: 600; }
  .legend { display: flex; flex-wrap: wrap; gap: 4px 14px; color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
  .legend .sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
  .legend b { color: var(--text); font-weight: 600; }
  canvas { display: block; width: 100%; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 16px; }
  .charts canvas { height: 170px; }
</style>
</head>
<body>
<header>
  <h1>Pagewise</h1>
  <span id="model" class="muted"></span>
  <span id="pool" class="muted"></span>
  <span id="status">connecting</span>
</header>
<main>
  <div class="tiles">
    <div class="tile"><div class="l">Running</div><div class="v" id="running">–</div><div class="s">requests in the batch</div></div>
    <div class="tile"><div class="l">Waiting</div><div class="v" id="waiting">–</div><div class="s">requests queued</div></div>
    <div class="tile"><div class="l">KV cache</div><div class="v" id="kv-usage">–</div><div class="s"><span id="blocks-used">–</span> / <span id="blocks-total">–</span> blocks</div></div>
    <div class="tile"><div class="l">Generated tok/s</div><div class="v" id="gen-tps">–</div><div class="s"><span id="gen-total">–</span> tokens in all</div></div>
    <div class="tile"><div class="l">Prompt tok/s</div><div class="v" id="prompt-tps">–</div><div class="s"><span id="prompt-total">–</span> tokens in all</div></div>
    <div class="tile"><div class="l">Time to first token</div><div class="v" id="ttft">–</div><div class="s">mean, last minute</div></div>
    <div class="tile"><div class="l">Request latency</div><div class="v" id="e2e">–</div><div class="s">mean, last minute</div></div>
    <div class="tile"><div class="l">Prefix cache hits</div><div class="v" id="prefix-rate">–</div><div class="s"><span id="prefix-hits">–</span> of <span id="prefix-queries">–</span> prompt tokens</div></div>
    <div class="tile"><div class="l">Preemptions</div><div class="v" id="preemptions">–</div><div class="s">since start</div></div>
    <div class="tile"><div class="l">Finished</div><div class="v" id="finished">–</div><div class="s">requests since start</div></div>
  </div>
  <section class="panel">
    <div class="head"><h2>KV cache blocks</h2><div class="legend" id="legend"></div><span class="legend" id="map-scale"></span></div>
    <canvas id="map"></canvas>
  </section>
  <div class="charts">
    <section class="panel"><div class="head"><h2>Tokens per second</h2><div class="legend" id="lg-tps"></div></div><canvas id="c-tps"></canvas></section>
    <section class="panel"><div class="head"><h2>Latency, ms</h2><div class="legend" id="lg-lat"></div></div><canvas id="c-lat"></canvas></section>
    <section class="panel"><div class="head"><h2>Requests and KV usage</h2><div class="legend" id="lg-req"></div></div><canvas id="c-req"></canvas></section>
  </div>
</main>
<script>
"use strict";
(function () {
  var WINDOW_S = 300;          // the charts' span: the server keeps this much history
  var LATENCY_BIN_S = 5;       // latency means per 5 s: per-second means of a few requests are noise
  var css = getComputedStyle(document.documentElement);
  var color = function (name) { return css.getPropertyValue("--" + name).trim(); };
  var fmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var fmt1 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

  var init = null, states = null, points = [], last = null;
  var $ = function (id) { return document.getElementById(id); };

  function setValue(id, raw, text) {
    var el = $(id);
    el.dataset.value = raw === null ? "" : String(raw);
    el.textContent = raw === null ? "–" : text;
  }
  function ms(v) { return v === null ? "–" : v < 1000 ? fmt.format(v) + " ms" : fmt1.format(v / 1000) + " s"; }
  function legend(el, items) {
    el.textContent = "";
    items.forEach(function (it) {
      var span = document.createElement("span");
      var sw = document.createElement("span");
      sw.className = "sw";
      sw.style.background = color(it.color);
      if (it.key) sw.dataset.state = it.key;
      span.appendChild(sw);
      span.appendChild(document.createTextNode(it.label + (it.count === undefined ? "" : " ")));
      if (it.count !== undefined) {
        var b = document.createElement("b");
        b.id = "count-" + it.key;
        b.dataset.value = String(it.count);
        b.textContent = fmt.format(it.count);
        span.appendChild(b);
      }
      el.appendChild(span);
    });
  }

  // ---- the block map ----
  var map = $("map"), mapGeom = null;
  function unpack(b64, n) {
    var bin = atob(b64), out = new Uint8Array(n);
    for (var i = 0; i < n; i++) out[i] = (bin.charCodeAt(i >> 2) >> ((i & 3) * 2)) & 3;
    return out;
  }
  // The map takes at most 360 CSS pixels, and at most 40% of the window's height, so the numbers
  // and charts stay in view: larger pools get smaller cells, then several blocks a cell.
  function layoutMap() {
    var n = init.numBlocks, w = Math.max(100, map.clientWidth), cell, cols, rows, per = 1;
    var maxHeight = Math.max(24, Math.min(360, Math.floor(window.innerHeight * 0.4)));
    for (cell = 16; cell > 2; cell--) {
      cols = Math.floor(w / cell);
      if (Math.ceil(n / cols) * cell <= maxHeight) break;
    }
    cols = Math.floor(w / cell);
    rows = Math.ceil(n / cols);
    if (rows * cell > maxHeight) {
      rows = Math.floor(maxHeight / cell);
      per = Math.ceil(n / (rows * cols));
      rows = Math.ceil(Math.ceil(n / per) / cols);
    }
    var dpr = window.devicePixelRatio || 1;
    map.style.height = rows * cell + "px";
    map.width = Math.round(w * dpr);
    map.height = Math.round(rows * cell * dpr);
    mapGeom = { cell: cell, cols: cols, per: per, cells: Math.ceil(n / per), dpr: dpr, gap: cell >= 6 ? 1 : 0 };
    map.dataset.cell = String(cell);
    map.dataset.cols = String(cols);
    map.dataset.per = String(per);
    map.dataset.dpr = String(dpr);
    $("map-scale").textContent = per > 1 ? "one cell = " + per + " blocks (its most common state)" : "one cell = one block of " + init.blockSize + " tokens";
  }
  function drawMap() {
    if (!states || !mapGeom) return;
    var g = mapGeom, ctx = map.getContext("2d"), fills = init.states.map(color);
    ctx.setTransform(g.dpr, 0, 0, g.dpr, 0, 0);
    ctx.clearRect(0, 0, map.width, map.height);
    var counts = [0, 0, 0, 0];
    for (var c = 0; c < g.cells; c++) {
      var s;
      if (g.per === 1) s = states[c];
      else {
        counts[0] = counts[1] = counts[2] = counts[3] = 0;
        for (var b = c * g.per, e = Math.min(states.length, b + g.per); b < e; b++) counts[states[b]]++;
        s = 0;
        for (var k = 1; k < 4; k++) if (counts[k] >= counts[s]) s = k;
      }
      ctx.fillStyle = fills[s];
      ctx.fillRect((c % g.cols) * g.cell, Math.floor(c / g.cols) * g.cell, g.cell - g.gap, g.cell - g.gap);
    }
    map.dataset.drawn = String(Number(map.dataset.drawn || 0) + 1);
  }
  map.addEventListener("mousemove", function (ev) {
    if (!mapGeom || !states) return;
    var r = map.getBoundingClientRect(), g = mapGeom;
    var c = Math.floor((ev.clientY - r.top) / g.cell) * g.cols + Math.floor((ev.clientX - r.left) / g.cell);
    if (c < 0 || c >= g.cells) { map.title = ""; return; }
    map.title = g.per === 1 ? "block " + c + ": " + init.states[states[c]] : "blocks " + c * g.per + "–" + (Math.min(states.length, (c + 1) * g.per) - 1);
  });

  // ---- charts ----
  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }
  // series: [{ color, values (null = no data), area, max (fixed scale), sparse (bins: join the
  // points across the empty seconds between them, and mark each) }]; x spans the window.
  function chart(canvas, series, unitFmt) {
    var dpr = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    var left = 48, right = 8, top = 8, bottom = 20, pw = w - left - right, ph = h - top - bottom;
    var max = 0;
    series.forEach(function (s) { if (!s.max) s.values.forEach(function (v) { if (v !== null && v > max) max = v; }); });
    max = niceMax(max);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = color("muted");
    ctx.strokeStyle = color("line");
    ctx.lineWidth = 1;
    for (var i = 0; i <= 2; i++) {
      var y = top + ph - (ph * i) / 2;
      ctx.beginPath(); ctx.moveTo(left, y + 0.5); ctx.lineTo(left + pw, y + 0.5); ctx.stroke();
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      ctx.fillText(unitFmt((max * i) / 2), left - 6, y);
    }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (var m = 0; m <= 5; m++) ctx.fillText(m === 5 ? "now" : "-" + (5 - m) + " min", left + (pw * m) / 5, top + ph + 5);
    series.forEach(function (s) {
      var n = s.values.length, step = pw / Math.max(1, n - 1), scale = s.max || max;
      var xy = function (j) { return [left + j * step, top + ph - (ph * Math.min(s.values[j], scale)) / scale]; };
      ctx.strokeStyle = color(s.color);
      ctx.fillStyle = color(s.color);
      ctx.lineWidth = 1.5;
      if (s.area) {
        var first = s.values.findIndex(function (v) { return v !== null; });
        if (first < 0) return;
        ctx.globalAlpha = 0.45;
        ctx.beginPath(); ctx.moveTo(xy(first)[0], top + ph);
        for (var j = first; j < n; j++) if (s.values[j] !== null) { var p = xy(j); ctx.lineTo(p[0], p[1]); }
        ctx.lineTo(left + pw, top + ph); ctx.closePath(); ctx.fill();
        ctx.globalAlpha = 1;
        return;
      }
      ctx.beginPath();
      var pen = false;
      for (var k = 0; k < n; k++) {
        if (s.values[k] === null) { if (!s.sparse) pen = false; continue; }
        var q = xy(k);
        if (pen) ctx.lineTo(q[0], q[1]); else ctx.moveTo(q[0], q[1]);
        pen = true;
      }
      ctx.stroke();
      if (s.sparse) for (var d = 0; d < n; d++) if (s.values[d] !== null) { var r = xy(d); ctx.fillRect(r[0] - 1.5, r[1] - 1.5, 3, 3); }
    });
  }

  // The window as one slot per second ending at the newest point; missing seconds are null.
  function windowed(pick) {
    var out = new Array(WINDOW_S).fill(null);
    if (points.length === 0) return out;
    var end = points[points.length - 1].t;
    points.forEach(function (p) { var i = WINDOW_S - 1 - (end - p.t); if (i >= 0) out[i] = pick(p); });
    return out;
  }
  function binnedMean(sumOf, countOf) {
    var out = new Array(WINDOW_S).fill(null), sums = windowed(sumOf), counts = windowed(countOf);
    for (var b = 0; b < WINDOW_S; b += LATENCY_BIN_S) {
      var s = 0, c = 0;
      for (var i = b; i < b + LATENCY_BIN_S; i++) if (counts[i]) { s += sums[i]; c += counts[i]; }
      if (c > 0) out[Math.min(WINDOW_S - 1, b + LATENCY_BIN_S - 1)] = s / c;
    }
    return out;
  }
  function drawCharts() {
    chart($("c-tps"), [
      { color: "prompt", values: windowed(function (p) { return p.prompt; }) },
      { color: "gen", values: windowed(function (p) { return p.gen; }) },
    ], function (v) { return fmt.format(v); });
    chart($("c-lat"), [
      { color: "e2e", values: binnedMean(function (p) { return p.e2eMs; }, function (p) { return p.done; }), sparse: true },
      { color: "ttft", values: binnedMean(function (p) { return p.ttftMs; }, function (p) { return p.ttftN; }), sparse: true },
    ], function (v) { return fmt.format(v); });
    chart($("c-req"), [
      { color: "kv", values: windowed(function (p) { return p.kv; }), area: true, max: 1 },
      { color: "waiting", values: windowed(function (p) { return p.waiting; }) },
      { color: "running", values: windowed(function (p) { return p.running; }) },
    ], function (v) { return fmt1.format(v); });
  }

  // ---- numbers ----
  function recent(seconds, f) {
    var s = 0;
    for (var i = Math.max(0, points.length - seconds); i < points.length; i++) s += f(points[i]);
    return s;
  }
  function drawNumbers() {
    var st = last && last.stats;
    setValue("running", st ? st.running : null, st ? fmt.format(st.running) : "");
    setValue("waiting", st ? st.waiting : null, st ? fmt.format(st.waiting) : "");
    setValue("kv-usage", st ? st.kvUsage : null, st ? fmt1.format(st.kvUsage * 100) + "%" : "");
    setValue("blocks-used", st ? st.blocksUsed : null, st ? fmt.format(st.blocksUsed) : "");
    setValue("blocks-total", init.numBlocks, fmt.format(init.numBlocks));
    setValue("gen-total", st ? st.generationTokensTotal : null, st ? fmt.format(st.generationTokensTotal) : "");
    setValue("prompt-total", st ? st.promptTokensTotal : null, st ? fmt.format(st.promptTokensTotal) : "");
    setValue("preemptions", st ? st.numPreemptionsTotal : null, st ? fmt.format(st.numPreemptionsTotal) : "");
    setValue("prefix-hits", st ? st.prefixCacheHits : null, st ? fmt.format(st.prefixCacheHits) : "");
    setValue("prefix-queries", st ? st.prefixCacheQueries : null, st ? fmt.format(st.prefixCacheQueries) : "");
    var rate = st && st.prefixCacheQueries > 0 ? st.prefixCacheHits / st.prefixCacheQueries : null;
    setValue("prefix-rate", rate, rate === null ? "" : fmt1.format(rate * 100) + "%");
    setValue("finished", last ? last.finished : null, last ? fmt.format(last.finished) : "");
    // Rates over the last 10 complete seconds, latencies over the last minute.
    var span = Math.min(10, points.length);
    var gen = span > 0 ? recent(span, function (p) { return p.gen; }) / span : null;
    var prompt = span > 0 ? recent(span, function (p) { return p.prompt; }) / span : null;
    setValue("gen-tps", gen, gen === null ? "" : fmt.format(gen));
    setValue("prompt-tps", prompt, prompt === null ? "" : fmt.format(prompt));
    var tn = recent(60, function (p) { return p.ttftN; }), en = recent(60, function (p) { return p.done; });
    var ttft = tn > 0 ? recent(60, function (p) { return p.ttftMs; }) / tn : null;
    var e2e = en > 0 ? recent(60, function (p) { return p.e2eMs; }) / en : null;
    setValue("ttft", ttft, ms(ttft));
    setValue("e2e", e2e, ms(e2e));
    if (last && last.counts) {
      legend($("legend"), init.states.map(function (k) { return { key: k, color: k, label: k, count: last.counts[k] }; }));
    }
  }

  // ---- the feed ----
  var status = $("status");
  var events = new EventSource("dashboard/events");
  events.addEventListener("init", function (ev) {
    init = JSON.parse(ev.data);
    points = init.history;
    states = null;
    last = null;
    $("model").textContent = init.model;
    $("pool").textContent = fmt.format(init.numBlocks) + " KV blocks × " + init.blockSize + " tokens";
    legend($("lg-tps"), [{ color: "gen", label: "generated" }, { color: "prompt", label: "prompt" }]);
    legend($("lg-lat"), [{ color: "ttft", label: "time to first token" }, { color: "e2e", label: "end to end" }]);
    legend($("lg-req"), [{ color: "running", label: "running" }, { color: "waiting", label: "waiting" }, { color: "kv", label: "KV usage (0–100%)" }]);
    legend($("legend"), init.states.map(function (k) { return { key: k, color: k, label: k }; }));
    layoutMap();
    drawCharts();
    status.className = "live";
    status.textContent = "live";
  });
  events.addEventListener("frame", function (ev) {
    if (!init) return;
    var f = JSON.parse(ev.data);
    last = f;
    if (f.blocks !== undefined) states = unpack(f.blocks, init.numBlocks);
    if (f.points.length > 0) {
      points = points.concat(f.points);
      if (points.length > WINDOW_S) points = points.slice(points.length - WINDOW_S);
      drawCharts();
    }
    drawNumbers();
    if (f.blocks !== undefined) drawMap();
    document.body.dataset.frames = String(Number(document.body.dataset.frames || 0) + 1);
  });
  events.onerror = function () {
    status.className = "";
    status.textContent = events.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting";
  };
  window.addEventListener("resize", function () {
    if (!init) return;
    layoutMap();
    drawMap();
    drawCharts();
  });
})();
</script>
</body>
</html>
`;
