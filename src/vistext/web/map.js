/* vistext map: every indexed image as a point on a canvas, coloured by topic. Served at /map, and inlined with
   its data by `vistext map --out map.html` (window.VISTEXT_MAP_DATA), so it must work without a server too.
   One canvas, points batched by colour, and a grid index for hover: 10k points stay smooth. */
"use strict";
(function () {
  const V = window.Vistext;
  const OFFLINE = window.VISTEXT_MAP_DATA || null;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#393b79", "#e7969c", "#637939", "#7b4173", "#3182bd", "#f0027f", "#666666"];
  const NO_TOPIC = "#9a9a9a";
  const CELLS = 64;
  const $ = (id) => document.getElementById(id);
  const canvas = $("map");
  const ctx = canvas.getContext("2d");
  const view = { scale: 1, tx: 0, ty: 0 };
  let data = null; let n = 0; let xs; let ys; let cells; let groups; let hidden = new Set();
  let selected = -1; let neighbours = []; let hover = -1; let frame = 0;
  const indexOfId = new Map();

  function color(topic) { return topic < 0 ? NO_TOPIC : PALETTE[topic % PALETTE.length]; }
  function status(text) { $("map-status").textContent = text; }

  // ---- loading -------------------------------------------------------------------------------------------
  async function load() {
    if (OFFLINE) return OFFLINE;
    for (let attempt = 0; ; attempt++) {
      const response = await V.request("/api/map");
      if (response.status === 200) return response.json();
      status(`computing the map of the collection… (${attempt * 2} s)`);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  function prepare(answer) {
    data = answer;
    const p = answer.points;
    n = p.id.length;
    xs = Float32Array.from(p.x);
    ys = Float32Array.from(p.y);
    cells = new Map();
    groups = new Map();
    for (let i = 0; i < n; i++) {
      indexOfId.set(p.id[i], i);
      const key = Math.min(CELLS - 1, Math.floor(xs[i] * CELLS)) * CELLS + Math.min(CELLS - 1, Math.floor(ys[i] * CELLS));
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(i);
      const t = p.topic[i];
      if (!groups.has(t)) groups.set(t, []);
      groups.get(t).push(i);
    }
    legend();
    resize();
    const method = answer.method === "tsne" ? "t-SNE" : answer.method.toUpperCase();
    status(`${n} images · ${method}${answer.topics.length ? " · coloured by topic" : ""}`);
    document.body.dataset.mapReady = "1";
  }

  // ---- drawing -------------------------------------------------------------------------------------------
  function side() { return Math.min(canvas.clientWidth, canvas.clientHeight); }
  function toScreen(i) {
    const s = side() * view.scale;
    return [xs[i] * s + view.tx, ys[i] * s + view.ty];
  }
  function toData(px, py) {
    const s = side() * view.scale;
    return [(px - view.tx) / s, (py - view.ty) / s];
  }

  function resetView() {
    view.scale = 1;
    view.tx = (canvas.clientWidth - side()) / 2;
    view.ty = (canvas.clientHeight - side()) / 2;
  }

  function resize() {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(canvas.clientWidth * dpr);
    canvas.height = Math.round(canvas.clientHeight * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    resetView();
    redraw();
  }

  function redraw() { if (!frame) frame = requestAnimationFrame(draw); }

  function draw() {
    frame = 0;
    ctx.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
    if (!data) return;
    const r = Math.max(1.5, Math.min(6, 2.2 * Math.sqrt(view.scale) * (n > 3000 ? 0.8 : 1.4)));
    for (const [topic, members] of groups) {
      if (hidden.has(topic)) continue;
      ctx.fillStyle = color(topic);
      ctx.beginPath();
      for (const i of members) {
        const [px, py] = toScreen(i);
        ctx.rect(px - r, py - r, 2 * r, 2 * r);
      }
      ctx.fill();
    }
    ctx.lineWidth = 2;
    for (const i of neighbours) ring(i, r + 3, "#111");
    if (selected >= 0) ring(selected, r + 5, "#d00");
    if (hover >= 0) ring(hover, r + 3, "#000");
  }

  function ring(i, radius, stroke) {
    const [px, py] = toScreen(i);
    ctx.strokeStyle = stroke;
    ctx.beginPath();
    ctx.arc(px, py, radius, 0, 2 * Math.PI);
    ctx.stroke();
  }

  // ---- finding the point under the mouse ---------------------------------------------------------------------
  function nearest(px, py, maxPixels) {
    const [dx, dy] = toData(px, py);
    const reach = maxPixels / (side() * view.scale);
    const c0 = Math.floor((dx - reach) * CELLS); const c1 = Math.floor((dx + reach) * CELLS);
    const r0 = Math.floor((dy - reach) * CELLS); const r1 = Math.floor((dy + reach) * CELLS);
    let best = -1; let bestDistance = reach * reach;
    for (let c = Math.max(0, c0); c <= Math.min(CELLS - 1, c1); c++) {
      for (let r = Math.max(0, r0); r <= Math.min(CELLS - 1, r1); r++) {
        for (const i of cells.get(c * CELLS + r) || []) {
          if (hidden.has(data.points.topic[i])) continue;
          const d = (xs[i] - dx) ** 2 + (ys[i] - dy) ** 2;
          if (d <= bestDistance) { bestDistance = d; best = i; }
        }
      }
    }
    return best;
  }

  function setThumb(img, id, size) {
    if (OFFLINE) {
      const src = (OFFLINE.thumbs && OFFLINE.thumbs[id]) || (OFFLINE.files && OFFLINE.files[id]) || "";
      img.hidden = !src;
      if (src) img.src = src;
      return;
    }
    V.setImage(img, V.thumbUrl(id, size));
  }

  function topicWords(topic) {
    const found = data.topics.find((t) => t.id === topic);
    return found ? found.label || found.words.slice(0, 4).join(", ") : "";
  }

  function showTooltip(i, px, py) {
    const tip = $("tooltip");
    if (i < 0) { tip.hidden = true; return; }
    const id = data.points.id[i];
    if (tip.dataset.id !== String(id)) {
      tip.dataset.id = String(id);
      setThumb($("tooltip-image"), id, 256);
      const words = topicWords(data.points.topic[i]);
      $("tooltip-text").textContent = data.points.name[i] + (words ? " · " + words : "");
    }
    const wrap = $("map-wrap");
    tip.style.left = Math.min(px + 14, wrap.clientWidth - 160) + "px";
    tip.style.top = Math.min(py + 14, wrap.clientHeight - 190) + "px";
    tip.hidden = false;
  }

  // ---- selection: the image and its neighbours ------------------------------------------------------------------
  async function select(i) {
    selected = i;
    neighbours = [];
    redraw();
    const id = data.points.id[i];
    const big = V.el("img", { class: "full", alt: data.points.name[i] });
    if (OFFLINE) big.src = (OFFLINE.files && OFFLINE.files[id]) || (OFFLINE.thumbs && OFFLINE.thumbs[id]) || "";
    else V.setImage(big, V.imageUrl(id));
    const grid = V.el("div", { class: "grid", id: "neighbours" });
    const words = topicWords(data.points.topic[i]);
    $("selection").replaceChildren(
      big, V.el("p", { text: `${data.points.name[i]} (#${id})${words ? " · topic: " + words : ""}` }),
      V.el("h3", { text: "Neighbours" }), grid);
    let hits;
    try {
      hits = OFFLINE
        ? ((OFFLINE.neighbours && OFFLINE.neighbours[id]) || []).map(([nid, score]) => ({ id: nid, score }))
        : (await V.getJSON(`/api/similar/${id}?k=10`)).results.filter((h) => h.id !== id).slice(0, 9);
    } catch (error) {
      grid.replaceChildren(V.el("p", { class: "status error", text: error.message }));
      return;
    }
    if (selected !== i) return;
    neighbours = hits.map((h) => indexOfId.get(h.id)).filter((j) => j !== undefined);
    grid.replaceChildren(...hits.map((h) => {
      const img = V.el("img", { alt: "", loading: "lazy" });
      V.noUpscale(img);
      setThumb(img, h.id, 128);
      const j = indexOfId.get(h.id);
      return V.el("div", { class: "card", onclick: () => { if (j !== undefined) select(j); } }, [
        img, V.el("div", { class: "meta" }, [V.el("span", { class: "score", text: h.score.toFixed(3) })]),
      ]);
    }));
    redraw();
  }

  function legend() {
    const rows = data.topics.map((t) => {
      const row = V.el("div", { title: "click to show or hide" }, [
        V.el("i", { style: `background:${color(t.id)}` }), V.el("span", { text: t.label || t.words.join(", ") || `topic ${t.id}` }),
      ]);
      row.addEventListener("click", () => {
        if (hidden.has(t.id)) hidden.delete(t.id); else hidden.add(t.id);
        row.classList.toggle("off", hidden.has(t.id));
        redraw();
      });
      return row;
    });
    if (!rows.length) rows.push(V.el("p", { class: "status", text: "no topics for this collection" }));
    $("legend").replaceChildren(...rows);
  }

  // ---- interaction -------------------------------------------------------------------------------------------
  let drag = null;
  canvas.addEventListener("mousedown", (e) => { drag = { x: e.offsetX, y: e.offsetY, tx: view.tx, ty: view.ty, moved: false }; });
  window.addEventListener("mouseup", () => { setTimeout(() => { drag = null; }, 0); });
  canvas.addEventListener("mousemove", (e) => {
    if (!data) return;
    if (drag && (e.buttons & 1)) {
      const dx = e.offsetX - drag.x; const dy = e.offsetY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      view.tx = drag.tx + dx; view.ty = drag.ty + dy;
      $("tooltip").hidden = true;
      redraw();
      return;
    }
    const i = nearest(e.offsetX, e.offsetY, 10);
    if (i !== hover) { hover = i; redraw(); }
    showTooltip(i, e.offsetX, e.offsetY);
  });
  canvas.addEventListener("mouseleave", () => { hover = -1; $("tooltip").hidden = true; redraw(); });
  canvas.addEventListener("click", (e) => {
    if (!data || (drag && drag.moved)) return;
    const i = nearest(e.offsetX, e.offsetY, 12);
    if (i >= 0) select(i);
  });
  canvas.addEventListener("dblclick", () => { resetView(); redraw(); });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const factor = Math.exp(-e.deltaY * 0.0015);
    const next = Math.max(0.5, Math.min(60, view.scale * factor));
    const applied = next / view.scale;
    view.tx = e.offsetX - (e.offsetX - view.tx) * applied;
    view.ty = e.offsetY - (e.offsetY - view.ty) * applied;
    view.scale = next;
    redraw();
  }, { passive: false });
  window.addEventListener("resize", () => { if (data) resize(); });

  // a small handle for scripts and tests: select by image id, find where a point is drawn
  window.vistextMap = {
    count: () => n,
    select: (id) => { const i = indexOfId.get(id); if (i !== undefined) select(i); },
    screenOf: (id) => { const i = indexOfId.get(id); return i === undefined ? null : toScreen(i); },
  };
  load().then(prepare).catch((error) => { status("cannot load the map: " + error.message); });
})();
