/* vistext map, the panel's tools: colour points by topic, folder or tag (with a legend); select a region with a
   box or a lasso and see, and export, the photos in it; filter the points (served map only). Works on the
   standalone map too, from the data inlined there (folders from the files' paths; no tags, no filters). */
"use strict";
(function () {
  const V = window.Vistext;
  const M = window.vistextMap;
  const $ = (id) => document.getElementById(id);
  const SHOWN = 60; // thumbnails drawn for a selection; the export has them all
  const COLUMNS = ["id", "path", "folder", "tags", "taken", "camera", "latitude", "longitude"];
  let attrs = null; // id -> {id, path, folder, tags, taken, camera, latitude, longitude}
  let chosen = [];
  let bar = null;

  // ---- what is known of each point: path, folder, tags, metadata ---------------------------------------------
  function offlineAttributes(data) {
    const files = (M.offline() && M.offline().files) || {};
    const paths = {};
    data.points.id.forEach((id, k) => {
      const url = files[id];
      paths[id] = url ? decodeURIComponent(new URL(url).pathname) : data.points.name[k];
    });
    const dirs = Object.values(paths).map((p) => p.split("/").slice(0, -1));
    let common = dirs.length ? dirs[0] : [];
    for (const d of dirs) { let k = 0; while (k < common.length && common[k] === d[k]) k++; common = common.slice(0, k); }
    const columns = { id: [], path: [], folder: [] };
    for (const id of data.points.id) {
      columns.id.push(id);
      columns.path.push(paths[id]);
      columns.folder.push(paths[id].split("/").slice(common.length, -1).join("/") || ".");
    }
    return columns;
  }

  function index(columns) {
    attrs = new Map();
    columns.id.forEach((id, k) => {
      const row = {};
      for (const name of COLUMNS) if (columns[name]) row[name] = columns[name][k];
      attrs.set(id, row);
    });
  }

  // ---- colour by -----------------------------------------------------------------------------------------------
  function colourBy(what) {
    const data = M.data();
    if (what === "topic" || !attrs) { M.colourByTopic(); return; }
    const valueOf = (id) => {
      const row = attrs.get(id) || {};
      if (what === "folder") return row.folder ?? null;
      return row.tags && row.tags.length ? row.tags[0] : null; // the image's best tag
    };
    const counts = new Map();
    for (const id of data.points.id) { const v = valueOf(id); if (v !== null) counts.set(v, (counts.get(v) || 0) + 1); }
    // the biggest groups get their own colour; the rest share grey
    const ranked = [...counts.entries()].sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])));
    const own = ranked.slice(0, M.PALETTE.length - 1).map(([value]) => value);
    const classOfValue = new Map(own.map((v, k) => [v, k]));
    const classes = own.map((v, k) => ({ key: v, label: v === "." ? "(top folder)" : String(v), color: M.PALETTE[k] }));
    const keys = data.points.id.map((id) => classOfValue.get(valueOf(id)) ?? -1);
    const other = { key: "", label: what === "tag" ? "other or no tag" : "other folders", color: M.OTHER };
    M.recolour(keys, classes, other);
    M.describe(what === "tag" ? "best tag" : what);
  }

  // ---- the selected region -------------------------------------------------------------------------------------
  function showSelection(ids) {
    chosen = ids;
    const box = $("region");
    box.hidden = !ids.length;
    $("region-count").textContent = `${ids.length} photo${ids.length === 1 ? "" : "s"} selected`;
    const cards = ids.slice(0, SHOWN).map((id) => {
      const row = (attrs && attrs.get(id)) || {};
      const img = V.el("img", { alt: V.basename(row.path || String(id)), loading: "lazy" });
      V.noUpscale(img);
      M.thumb(img, id, 128);
      return V.el("div", { class: "card", "data-id": String(id), title: row.path || String(id), onclick: () => M.select(id) }, [img]);
    });
    if (ids.length > SHOWN) cards.push(V.el("p", { class: "status", text: `and ${ids.length - SHOWN} more (all in the export)` }));
    $("region-grid").replaceChildren(...cards);
  }

  function rows() {
    return chosen.map((id) => {
      const row = Object.assign({ id }, (attrs && attrs.get(id)) || {});
      return Object.fromEntries(COLUMNS.filter((c) => c in row).map((c) => [c, row[c]]));
    });
  }

  function csvCell(value) {
    const text = Array.isArray(value) ? value.join(";") : value === null || value === undefined ? "" : String(value);
    return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  }

  function exportSelection(format) {
    const list = rows();
    const columns = COLUMNS.filter((c) => list.some((row) => c in row));
    const text = format === "csv"
      ? [columns.join(","), ...list.map((row) => columns.map((c) => csvCell(row[c])).join(","))].join("\r\n") + "\r\n"
      : list.map((row) => JSON.stringify(row)).join("\n") + "\n";
    window.VistextFilters.download(`vistext-selection.${format}`, text, format === "csv" ? "text/csv" : "application/x-ndjson");
  }

  // ---- filters (served map): only the photos passing them are drawn in colour and can be selected ------------------
  async function filter(values) {
    const status = $("map-filter-status");
    if (!Object.keys(values).length) { M.show(null); status.textContent = ""; return; }
    status.textContent = "filtering…";
    try {
      const answer = await V.getJSON("/api/map/attributes?" + bar.params());
      const count = M.show(answer.id);
      status.textContent = `${count} of ${M.count()} photos pass the filters`;
      M.pick(chosen.filter((id) => answer.id.includes(id)));
    } catch (error) {
      status.textContent = error.message;
    }
  }

  // ---- wiring --------------------------------------------------------------------------------------------------
  function setMode(mode) {
    M.setMode(mode);
    for (const button of document.querySelectorAll("#map-mode button")) {
      button.classList.toggle("on", button.dataset.mode === mode);
    }
  }

  for (const button of document.querySelectorAll("#map-mode button")) {
    button.addEventListener("click", () => setMode(button.dataset.mode));
  }
  $("colour-by").addEventListener("change", () => {
    const what = $("colour-by").value;
    colourBy(what);
    $("legend-title").textContent = { topic: "Topics", folder: "Folders", tag: "Tags (each photo's best)" }[what];
  });
  $("region-csv").addEventListener("click", () => exportSelection("csv"));
  $("region-jsonl").addEventListener("click", () => exportSelection("jsonl"));
  $("region-clear").addEventListener("click", () => M.pick([]));
  M.onSelect(showSelection);
  setMode("pan");

  M.onReady(async (data) => {
    const offline = Boolean(M.offline());
    $("map-filters-panel").hidden = offline;
    try {
      index(offline ? offlineAttributes(data) : await V.getJSON("/api/map/attributes"));
    } catch (error) {
      $("map-filter-status").textContent = "no folders or tags: " + error.message;
    }
    const hasTags = attrs && [...attrs.values()].some((row) => row.tags && row.tags.length);
    $("colour-by").querySelector("option[value=tag]").disabled = !hasTags;
    document.body.dataset.attributesReady = "1";
    if (offline) return;
    bar = new window.VistextFilters.FilterBar($("map-filters"), $("map-filter-summary"), filter);
    bar.load().catch((error) => { $("map-filter-status").textContent = error.message; });
    const fromUrl = new URLSearchParams(window.location.search); // the search page links here with its filters
    let given = false;
    for (const name of window.VistextFilters.NAMES) {
      if (fromUrl.get(name)) { bar.preset(name, fromUrl.get(name)); given = true; }
    }
    if (given) bar.apply();
  });
})();
