/* vistext map: every indexed image as a point on a canvas, coloured by topic (or, through map-select.js, by
   folder or tag). Served at /map, and inlined with its data by `vistext map --out map.html`
   (window.VISTEXT_MAP_DATA), so it must work without a server too.
   One canvas, points batched by colour, and a grid index for hover: 10k points stay smooth. Points the filters
   leave out are drawn faint and cannot be hovered; a box or lasso selection is outlined. */
"use strict";
(function () {
  const V = window.Vistext;
  const OFFLINE = window.VISTEXT_MAP_DATA || null;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#393b79", "#e7969c", "#637939", "#7b4173", "#3182bd", "#f0027f", "#666666"];
  const NO_TOPIC = "#9a9a9a";
  const FILTERED_OUT = "#e3e3e3";
  const CELLS = 64;
  const $ = (id) => document.getElementById(id);
  const canvas = $("map");
  const ctx = canvas.getContext("2d");
  const view = { scale: 1, tx: 0, ty: 0 };
  let data = null; let n = 0; let xs; let ys; let cells; let groups; let hidden = new Set();
  let selected = -1; let neighbours = []; let hover = -1; let frame = 0;
  // colour classes: each point's class index, and each class's label and colour (topics unless recoloured)
  let classOf; let classes = []; let shown = null; let picked = new Set();
  let outline = null; // the box or lasso being drawn, in screen pixels
  let region = null; // the last one drawn, in map coordinates (it pans and zooms with the points)
  const indexOfId = new Map();
  const listeners = { ready: [], select: [] };

  function color(topic) { return topic < 0 ? NO_TOPIC : PALETTE[topic % PALETTE.length]; }
  function visible(i) { return !hidden.has(classOf[i]) && (!shown || shown[i]); }
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
    for (let i = 0; i < n; i++) {
      indexOfId.set(p.id[i], i);
      const key = Math.min(CELLS - 1, Math.floor(xs[i] * CELLS)) * CELLS + Math.min(CELLS - 1, Math.floor(ys[i] * CELLS));
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(i);
    }
    colourByTopic();
    resize();
    describe(answer.topics.length ? "topic" : "");
    document.body.dataset.mapReady = "1";
    for (const listener of listeners.ready) listener(answer);
  }

  /* The status line: how many points, the layout, what colours them. */
  function describe(colouring) {
    const method = data.method === "tsne" ? "t-SNE" : data.method.toUpperCase();
    status(`${n} images · ${method}${colouring ? " · coloured by " + colouring : ""}`);
  }

  // ---- colours ---------------------------------------------------------------------------------------------
  function colourByTopic() {
    const topics = data.topics.map((t) => ({ key: t.id, label: t.label || t.words.join(", ") || `topic ${t.id}`, color: color(t.id) }));
    const known = new Map(topics.map((t, k) => [t.key, k]));
    const none = { key: -1, label: "no topic", color: NO_TOPIC };
    recolour(data.points.topic.map((t) => known.get(t) ?? -1), topics, none);
  }

  /* Colour point i by classList[keys[i]] (an index; -1 for `other`), then redraw the points and the legend. */
  function recolour(keys, classList, other) {
    classes = classList.slice();
    if (keys.some((k) => k < 0)) classes.push(other);
    classOf = Int32Array.from(keys, (k) => (k < 0 ? classes.length - 1 : k));
    groups = new Map();
    for (let i = 0; i < n; i++) {
      if (!groups.has(classOf[i])) groups.set(classOf[i], []);
      groups.get(classOf[i]).push(i);
    }
    hidden = new Set();
    legend();
    redraw();
  }

  // ---- drawing -------------------------------------------------------------------------------------------
  function side() { return Math.min(canvas.clientWidth, canvas.clientHeight); }
  function toScreen(i) {
    const s = side() * view.scale;
    return [xs[i] * s + view.tx, ys[i] * s + view.ty];
  }
  function dataToScreen(x, y) {
    const s = side() * view.scale;
    return [x * s + view.tx, y * s + view.ty];
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
    if (shown) { // filtered out: faint, underneath
      ctx.fillStyle = FILTERED_OUT;
      ctx.beginPath();
      for (let i = 0; i < n; i++) {
        if (shown[i]) continue;
        const [px, py] = toScreen(i);
        ctx.rect(px - r * 0.7, py - r * 0.7, 1.4 * r, 1.4 * r);
      }
      ctx.fill();
    }
    // the last region drawn lies under the points; with a selection, the points outside it fade
    if (region && !outline) drawOutline({ kind: region.kind, points: region.points.map(([x, y]) => dataToScreen(x, y)) });
    for (const inside of picked.size ? [false, true] : [null]) {
      ctx.globalAlpha = inside === false ? 0.3 : 1;
      for (const [key, members] of groups) {
        if (hidden.has(key)) continue;
        ctx.fillStyle = classes[key].color;
        ctx.beginPath();
        for (const i of members) {
          if ((shown && !shown[i]) || (inside !== null && picked.has(i) !== inside)) continue;
          const [px, py] = toScreen(i);
          ctx.rect(px - r, py - r, 2 * r, 2 * r);
        }
        ctx.fill();
      }
    }
    ctx.globalAlpha = 1;
    if (picked.size) {
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "#111";
      ctx.beginPath();
      for (const i of picked) {
        const [px, py] = toScreen(i);
        ctx.rect(px - r - 1.5, py - r - 1.5, 2 * r + 3, 2 * r + 3);
      }
      ctx.stroke();
    }
    if (outline) drawOutline(outline);
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
          if (!visible(i)) continue;
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
    const rows = classes.map((c, key) => {
      const count = groups.has(key) ? groups.get(key).length : 0;
      const row = V.el("div", { title: "click to show or hide", "data-key": String(c.key) }, [
        V.el("i", { style: `background:${c.color}` }), V.el("span", { class: "label", text: c.label }),
        V.el("span", { class: "count", text: String(count) }),
      ]);
      row.addEventListener("click", () => {
        if (hidden.has(key)) hidden.delete(key); else hidden.add(key);
        row.classList.toggle("off", hidden.has(key));
        redraw();
      });
      return row;
    });
    if (!classes.length || (classes.length === 1 && classes[0].key === -1)) {
      rows.push(V.el("p", { class: "status", text: "no topics for this collection" }));
    }
    $("legend").replaceChildren(...rows);
  }

  // ---- box and lasso selection -------------------------------------------------------------------------------
  function drawOutline(shape) {
    ctx.save();
    ctx.setLineDash([5, 4]);
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = "#2563eb";
    ctx.fillStyle = "rgba(37, 99, 235, 0.08)";
    ctx.beginPath();
    if (shape.kind === "box") {
      const [a, b] = [shape.points[0], shape.points[shape.points.length - 1]];
      ctx.rect(Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(b[0] - a[0]), Math.abs(b[1] - a[1]));
    } else {
      shape.points.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath();
    }
    ctx.fill();
    ctx.stroke();
    ctx.restore();
  }

  /* Even-odd ray casting: whether screen point (x, y) lies inside the polygon. */
  function insidePolygon(x, y, polygon) {
    let inside = false;
    for (let a = 0, b = polygon.length - 1; a < polygon.length; b = a++) {
      const [xa, ya] = polygon[a]; const [xb, yb] = polygon[b];
      if ((ya > y) !== (yb > y) && x < ((xb - xa) * (y - ya)) / (yb - ya) + xa) inside = !inside;
    }
    return inside;
  }

  /* The visible points inside the finished outline become the selection (its listeners get their ids). */
  function finishOutline() {
    const shape = outline;
    outline = null;
    const found = new Set();
    if (shape.kind === "box") {
      const [a, b] = [shape.points[0], shape.points[shape.points.length - 1]];
      const [x0, x1] = [Math.min(a[0], b[0]), Math.max(a[0], b[0])]; const [y0, y1] = [Math.min(a[1], b[1]), Math.max(a[1], b[1])];
      for (let i = 0; i < n; i++) {
        const [px, py] = toScreen(i);
        if (visible(i) && px >= x0 && px <= x1 && py >= y0 && py <= y1) found.add(i);
      }
    } else if (shape.points.length > 2) {
      for (let i = 0; i < n; i++) {
        const [px, py] = toScreen(i);
        if (visible(i) && insidePolygon(px, py, shape.points)) found.add(i);
      }
    }
    pick([...found].map((i) => data.points.id[i]));
    if (found.size) region = { kind: shape.kind, points: shape.points.map(([x, y]) => toData(x, y)) };
  }

  function pick(ids) {
    region = null;
    picked = new Set(ids.map((id) => indexOfId.get(id)).filter((i) => i !== undefined));
    redraw();
    const chosen = [...picked].map((i) => data.points.id[i]);
    for (const listener of listeners.select) listener(chosen);
  }

  // ---- interaction: drag pans; in box or lasso mode (or with shift: box, alt: lasso) a drag selects ---------------
  let drag = null;
  let mode = "pan";
  canvas.addEventListener("mousedown", (e) => {
    const kind = e.shiftKey ? "box" : e.altKey ? "lasso" : mode;
    drag = { x: e.offsetX, y: e.offsetY, tx: view.tx, ty: view.ty, moved: false, kind };
    if (kind !== "pan") outline = { kind, points: [[e.offsetX, e.offsetY]] };
  });
  window.addEventListener("mouseup", () => {
    if (drag && outline) {
      if (drag.moved) finishOutline();
      outline = null;
      redraw();
    }
    setTimeout(() => { drag = null; }, 0);
  });
  canvas.addEventListener("mousemove", (e) => {
    if (!data) return;
    if (drag && (e.buttons & 1)) {
      const dx = e.offsetX - drag.x; const dy = e.offsetY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      if (outline) outline.points.push([e.offsetX, e.offsetY]);
      else { view.tx = drag.tx + dx; view.ty = drag.ty + dy; }
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

  // a handle for map-select.js, scripts and tests: select by image id, find where a point is drawn, recolour,
  // show only some points, select a region
  window.vistextMap = {
    PALETTE,
    OTHER: NO_TOPIC,
    offline: () => OFFLINE,
    data: () => data,
    count: () => n,
    select: (id) => { const i = indexOfId.get(id); if (i !== undefined) select(i); },
    screenOf: (id) => { const i = indexOfId.get(id); return i === undefined ? null : toScreen(i); },
    thumb: setThumb,
    onReady: (listener) => { listeners.ready.push(listener); if (data) listener(data); },
    onSelect: (listener) => listeners.select.push(listener),
    colourByTopic: () => { colourByTopic(); describe(data.topics.length ? "topic" : ""); },
    describe,
    recolour,
    /* only these ids are drawn in colour, hovered and selectable (null: all); returns how many are shown */
    show: (ids) => {
      if (ids === null) { shown = null; } else {
        shown = new Uint8Array(n);
        for (const id of ids) { const i = indexOfId.get(id); if (i !== undefined) shown[i] = 1; }
      }
      redraw();
      return shown ? shown.reduce((a, b) => a + b, 0) : n;
    },
    pick,
    setMode: (next) => { mode = next; canvas.dataset.mode = next; },
    mode: () => mode,
  };
  load().then(prepare).catch((error) => { status("cannot load the map: " + error.message); });
})();
