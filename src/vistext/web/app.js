/* vistext search page: text search with paging and filters (or the filtered photos listed), exports, image
   understanding by drag-and-drop, tag-set matching. */
"use strict";
(function () {
  const V = window.Vistext;
  const $ = (id) => document.getElementById(id);
  const F = window.VistextFilters;
  // mode "search": the text query's results; "list": every photo passing the filters
  const state = { mode: "search", query: "", offset: 0, k: 24, minScore: null };
  let server = null; // the last /api/status answer: models still loading, caption bank
  const WARMING = "loading models… (the first search waits for them)";

  function showStatus(id, text, isError) {
    const node = $(id);
    node.textContent = text || "";
    delete node.dataset.warming;
    node.classList.toggle("error", Boolean(isError));
  }

  function card(hit, onClick) {
    const img = V.el("img", { alt: V.basename(hit.path), loading: "lazy" });
    V.noUpscale(img);
    if (hit.id !== undefined && hit.id !== null) V.setImage(img, V.thumbUrl(hit.id, 256));
    const parts = [
      img,
      V.el("div", { class: "meta" }, [
        typeof hit.score === "number" ? V.el("span", { class: "score", text: hit.score.toFixed(3) }) : V.el("span"),
        V.el("span", { class: "name", title: V.basename(hit.path), text: V.basename(hit.path) }),
      ]),
    ];
    const when = F.metaLine(hit.meta);
    if (when) parts.push(V.el("div", { class: "taken", text: when }));
    const chips = F.tagChips(hit.tags, (tag) => filters.set("tag", tag));
    if (chips.length) parts.push(V.el("div", { class: "chips" }, chips));
    return V.el("div", { class: "card", "data-id": String(hit.id), title: hit.path, onclick: () => onClick(hit) }, parts);
  }

  function fillGrid(grid, hits) {
    grid.replaceChildren(...hits.map((hit) => card(hit, openViewer)));
  }

  // ---- search, or the filtered photos listed ---------------------------------------------------------------------
  async function runSearch() {
    const listing = state.mode === "list";
    const params = filters.params(new URLSearchParams({ k: state.k, offset: state.offset }));
    if (!listing) params.set("q", state.query);
    if (state.minScore !== null && !listing) params.set("min_score", state.minScore);
    if ($("model").value && !listing) params.set("model", $("model").value);
    const doing = listing ? "listing…" : "searching…";
    showStatus("search-status", server && server.warming && !listing ? doing + " " + WARMING : doing);
    $("search-button").disabled = true;
    try {
      const started = performance.now();
      const answer = await V.getJSON((listing ? "/api/list?" : "/api/search?") + params);
      const items = answer.results || answer.images || [];
      fillGrid($("results"), items);
      const ms = Math.round(performance.now() - started);
      const first = state.offset + 1;
      const what = listing ? (filters.empty ? "photos" : "photos passing the filters") : `“${answer.query}”`;
      const total = listing && typeof answer.total === "number" ? ` of ${answer.total}` : "";
      showStatus("search-status", items.length
        ? `${listing ? "" : "results "}${first}–${state.offset + items.length}${total} ${listing ? what : "for " + what} (${ms} ms)`
        : `no results for ${what}`);
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

  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.query = $("q").value.trim();
    state.mode = "search";
    readPaging();
    if (state.query) runSearch();
    else showStatus("search-status", "type some words to search for", true); // only spaces: nothing to send
  });
  $("list-button").addEventListener("click", () => { state.mode = "list"; readPaging(); runSearch(); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.k); runSearch(); });
  $("next").addEventListener("click", () => { state.offset += state.k; runSearch(); });

  /* New filters: the words in the box now are searched with them (no words: the photos passing them are listed),
     and the map link carries them. */
  function filtersChanged() {
    const query = filters.params().toString();
    $("map-link").href = "/map" + (query ? "?" + query : "");
    state.query = $("q").value.trim();
    state.mode = state.query ? "search" : "list";
    readPaging();
    if (state.mode === "list" && filters.empty && !$("results").children.length) return; // nothing shown, nothing asked
    runSearch();
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
      V.postForm("/api/similar?" + filters.params(new URLSearchParams({ k: 9 })), form()).then((a) => fillGrid($("similar"), a.results))
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

  // ---- viewer: the full image and its neighbours ---------------------------------------------------------------
  async function openViewer(hit) {
    const dialog = $("viewer");
    V.setImage($("viewer-image"), V.imageUrl(hit.id));
    $("viewer-caption").textContent = hit.path;
    $("viewer-similar").replaceChildren();
    if (!dialog.open) dialog.showModal();
    try {
      const params = filters.params(new URLSearchParams({ k: 7 }));
      if ($("model").value) params.set("model", $("model").value);
      const answer = await V.getJSON(`/api/similar/${hit.id}?` + params);
      fillGrid($("viewer-similar"), answer.results.filter((h) => h.id !== hit.id).slice(0, 6));
    } catch (error) {
      $("viewer-caption").textContent = error.message;
    }
  }
  $("viewer-close").addEventListener("click", () => $("viewer").close());

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
    const note = $("search-status");
    if (server.warming) {
      if (!note.textContent || note.dataset.warming) { showStatus("search-status", WARMING); note.dataset.warming = "1"; }
      setTimeout(pollStatus, 1000);
    } else if (note.dataset.warming) {
      delete note.dataset.warming;
      if (note.textContent === WARMING) showStatus("search-status", "models loaded: ready to search");
    }
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
})();
