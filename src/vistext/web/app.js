/* vistext search page: the collection newest first (the timeline) until words are typed, then text search
   (best first or newest first, paged), filters, exports, image understanding by drag-and-drop, tag-set matching.
   The words, the sort and the filters are kept in the page's URL. */
"use strict";
(function () {
  const V = window.Vistext;
  const $ = (id) => document.getElementById(id);
  const F = window.VistextFilters;
  const T = window.VistextTiles;
  // mode "browse": the timeline of the photos passing the filters; "search": the text query's results
  const state = { mode: "browse", query: "", offset: 0, k: 24, minScore: null, sort: "relevance" };
  let server = null; // the last /api/status answer: models still loading, caption bank
  const WARMING = "loading models… (the first search waits for them)";

  function showStatus(id, text, isError) {
    const node = $(id);
    node.textContent = text || "";
    node.classList.toggle("error", Boolean(isError));
  }

  const tileOptions = (strong) => ({ strong, onOpen: (hit) => openViewer(hit), onTag: (tag) => filters.set("tag", tag) });

  /* Tiles for `hits` in `grid` (copies folded); the viewer then moves through the tiles of that grid. */
  function fillGrid(grid, hits, strong) {
    grid.replaceChildren();
    grid.hits = T.addTiles(grid, hits, Object.assign(tileOptions(strong), { onOpen: (hit) => openViewer(hit, grid) }));
  }

  /* The words, sort and filters in the address bar, so a reload or a shared link shows the same. */
  function remember() {
    const params = filters.params();
    if (state.mode === "search") params.set("q", state.query);
    if (state.mode === "search" && state.sort !== "relevance") params.set("sort", state.sort);
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
  }

  function showMode() {
    const browsing = state.mode === "browse";
    $("pager").hidden = browsing;
    $("more").hidden = !browsing;
    $("sort-toggle").hidden = browsing;
    for (const button of document.querySelectorAll("#sort-toggle button")) {
      button.classList.toggle("on", button.dataset.sort === state.sort);
      button.setAttribute("aria-pressed", String(button.dataset.sort === state.sort));
    }
  }

  // ---- the timeline: every photo passing the filters, newest first ------------------------------------------
  const timeline = new window.VistextTimeline($("results"), $("more"), {
    params: (params) => filters.params(params),
    pageSize: () => state.k,
    tileOptions: { strong: null, onOpen: (hit) => openViewer(hit, $("results")), onTag: (tag) => filters.set("tag", tag) },
    onPage: (answer, line) => {
      $("results").hits = line.hits;
      const what = filters.empty ? "photos" : "photos passing the filters";
      showStatus("search-status", line.total
        ? `${line.total} ${what}, newest first${line.done ? "" : " (scroll for more)"}`
        : `no ${what}`);
    },
    onError: (error) => showStatus("search-status", error.message, true),
  });

  function browse() {
    state.mode = "browse";
    showMode();
    remember();
    showStatus("search-status", "loading photos…");
    return timeline.start();
  }

  // ---- search: one page of the text query's results -----------------------------------------------------------
  function searchStatus(answer, items, ms) {
    if (!items.length) return `no results for “${answer.query}”`;
    const range = `${state.offset + 1}–${state.offset + items.length}`;
    const order = answer.sort === "date" ? ", newest first" : "";
    const strong = answer.strong_score;
    if (typeof strong === "number" && !items.some((hit) => hit.score >= strong)) {
      return `no strong match for “${answer.query}”; closest: ${range} (${ms} ms)`;
    }
    return `results ${range} for “${answer.query}”${order} (${ms} ms)`;
  }

  async function runSearch() {
    timeline.stop();
    state.mode = "search";
    showMode();
    remember();
    const params = filters.params(new URLSearchParams({ k: state.k, offset: state.offset, q: state.query }));
    if (state.minScore !== null) params.set("min_score", state.minScore);
    if (state.sort !== "relevance") params.set("sort", state.sort);
    if ($("model").value) params.set("model", $("model").value);
    showStatus("search-status", "searching…");
    $("search-button").disabled = true;
    try {
      const started = performance.now();
      const answer = await V.getJSON("/api/search?" + params);
      const items = answer.results || [];
      fillGrid($("results"), items, answer.strong_score);
      showStatus("search-status", searchStatus(answer, items, Math.round(performance.now() - started)));
      $("page-label").textContent = `page ${Math.floor(state.offset / state.k) + 1}`;
      $("prev").disabled = state.offset === 0;
      $("next").disabled = items.length < state.k;
    } catch (error) {
      $("results").replaceChildren();
      showStatus("search-status", error.message, true);
    } finally {
      $("search-button").disabled = false;
    }
  }

  function readPaging() {
    state.k = Math.max(1, Math.min(100, parseInt($("per-page").value, 10) || 24));
    const min = $("min-score").value;
    state.minScore = min === "" ? null : parseFloat(min);
    state.offset = 0;
  }

  /* The words in the box are searched (no words: the timeline). */
  function show() {
    state.query = $("q").value.trim();
    readPaging();
    return state.query ? runSearch() : browse();
  }

  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if ($("q").value.trim()) show();
    else if ($("q").value) showStatus("search-status", "type some words to search for", true); // only spaces
    else browse();
  });
  $("list-button").addEventListener("click", () => { $("q").value = ""; show(); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.k); runSearch(); });
  $("next").addEventListener("click", () => { state.offset += state.k; runSearch(); });
  for (const button of document.querySelectorAll("#sort-toggle button")) {
    button.addEventListener("click", () => { state.sort = button.dataset.sort; state.offset = 0; runSearch(); });
  }

  /* New filters: the words in the box now are searched with them (no words: the timeline), and the map link
     carries them. */
  function filtersChanged() {
    const query = filters.params().toString();
    $("map-link").href = "/map" + (query ? "?" + query : "");
    show();
  }
  const filters = new F.FilterBar($("filters"), $("filter-summary"), filtersChanged);

  /* Every photo passing the filters (all of them, not only this page) through /api/export. */
  async function exportResults(format) {
    const params = filters.params(new URLSearchParams({ format }));
    showStatus("search-status", `exporting ${format.toUpperCase()}…`);
    try {
      const response = await V.request("/api/export?" + params);
      F.download(`vistext-export.${format}`, await response.text(), response.headers.get("content-type") || "text/plain");
      showStatus("search-status", `exported as vistext-export.${format}`);
    } catch (error) {
      showStatus("search-status", error.message, true);
    }
  }
  $("export-csv").addEventListener("click", () => exportResults("csv"));
  $("export-jsonl").addEventListener("click", () => exportResults("jsonl"));

  // ---- one image: tags, captions, similar ---------------------------------------------------------------------
  function scoredList(list, items, label) {
    list.replaceChildren(...items.map((item) => V.el("li", {}, [
      V.el("span", { text: item[label] }),
      V.el("span", { class: "s", text: item.score.toFixed(3) }),
    ])));
  }

  async function understand(file) {
    $("understand").hidden = false;
    $("preview").src = URL.createObjectURL(file);
    showStatus("image-status", `reading ${file.name}…`);
    $("captions-note").textContent = "";
    const form = () => { const f = new FormData(); f.append("file", file, file.name); return f; };
    const tasks = [
      V.postForm("/api/tag?k=5", form()).then((a) => scoredList($("tags"), a.tags, "tag")),
      hasCaptions()
        ? V.postForm("/api/caption?k=3", form()).then((a) => scoredList($("captions"), a.captions, "text"))
          .catch((e) => { $("captions-note").textContent = e.message; $("captions").replaceChildren(); })
        : Promise.resolve(),
      V.postForm("/api/similar?" + filters.params(new URLSearchParams({ k: 9 })), form()).then((a) => fillGrid($("similar"), a.results, null))
        .catch((e) => { $("similar").replaceChildren(V.el("p", { class: "status error", text: e.message })); }),
    ];
    const outcomes = await Promise.allSettled(tasks);
    const failed = outcomes.find((o) => o.status === "rejected");
    showStatus("image-status", failed ? failed.reason.message : `${file.name}: done`, Boolean(failed));
  }

  const drop = $("drop");
  drop.addEventListener("click", () => $("file").click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  $("file").addEventListener("change", () => { if ($("file").files[0]) understand($("file").files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) understand(file);
  });

  // ---- match ----------------------------------------------------------------------------------------------
  $("match-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showStatus("match-status", "matching…");
    try {
      const answer = await V.postForm("/api/match", new FormData($("match-form")));
      const rows = answer.candidates.map((c, i) => V.el("tr", { class: i === answer.best ? "best" : "" }, [
        V.el("td", { text: String(i + 1) }), V.el("td", { text: c.tags.join(", ") }),
        V.el("td", { text: c.score.toFixed(3) }),
      ]));
      $("match-result").querySelector("tbody").replaceChildren(...rows);
      $("match-result").hidden = false;
      showStatus("match-status", `best: ${answer.candidates[answer.best].tags.join(", ")}`);
    } catch (error) {
      showStatus("match-status", error.message, true);
    }
  });

  // ---- viewer: the full image and its neighbours; the arrow keys move through the grid it was opened from -----
  const viewer = new window.VistextViewer(
    async (hit) => {
      const params = filters.params(new URLSearchParams({ k: 7 }));
      if ($("model").value) params.set("model", $("model").value);
      const answer = await V.getJSON(`/api/similar/${hit.id}?` + params);
      return answer.results.filter((h) => h.id !== hit.id).slice(0, 6);
    },
    (grid, hits) => fillGrid(grid, hits, null),
  );
  function openViewer(hit, grid) {
    viewer.open(hit, grid && grid.hits, grid);
  }

  // ---- server status: the collection, models still loading (polled until ready), the caption bank -----------
  function hasCaptions() { return !server || server.captions !== false; }

  async function pollStatus() {
    try {
      server = await V.getJSON("/api/status");
    } catch (error) {
      return;
    }
    $("collection").textContent = server.exists ? `${server.images ?? server.ok ?? ""} images indexed` : "no index yet";
    $("captions-panel").hidden = !hasCaptions(); // no caption bank on this server: no panel, no request
    // the text model loading (a server warming up): said on its own line, beside what the grid shows
    if (server.warming) {
      showStatus("models-status", WARMING);
      setTimeout(pollStatus, 1000);
    } else if ($("models-status").textContent === WARMING) {
      showStatus("models-status", "models loaded: ready to search");
    }
  }

  /* The first screen: what the URL asks for (words, sort, filters), else the timeline of the whole collection. */
  function start() {
    const params = new URLSearchParams(location.search);
    $("q").value = params.get("q") || "";
    state.sort = params.get("sort") === "date" ? "date" : "relevance";
    for (const name of F.NAMES) if (params.get(name)) filters.preset(name, params.get(name));
    filters.apply(); // draws the summary and shows the results (filtersChanged)
  }

  /* The model picker, shown only when the collection has a CLIP-family model's space beside the bundled one. */
  async function loadModels() {
    const models = (await V.getJSON("/api/models")).models;
    if (!models.length) return;
    const options = [V.el("option", { value: "", text: "bundled (default)" })];
    for (const model of models) options.push(V.el("option", { value: model.name, text: `${model.name} (${model.dim}-d)` }));
    $("model").replaceChildren(...options);
    $("model-picker").hidden = false;
  }

  $("token-button").addEventListener("click", V.askToken);
  pollStatus();
  loadModels().catch((error) => showStatus("search-status", "models: " + error.message, true));
  filters.load().catch((error) => showStatus("search-status", "filters: " + error.message, true));
  start();
})();
