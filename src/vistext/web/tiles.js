/* vistext photo tiles: one card per photo (thumbnail, score, readable file name, date, tags, text found in it),
   copies folded into the tile of the first of them (the API marks a copy with `copy_of`), weak matches dimmed,
   and month headings for the timeline. Cards are focusable: Enter opens the photo. */
"use strict";
(function () {
  const V = window.Vistext;
  const F = window.VistextFilters;
  const TAIL = 8; // characters kept after the ellipsis: the end of the name and its extension

  /* The file name, cut in the middle when it does not fit ("IMG_2024…0042.jpg"), never mid-word at the end;
     the whole name in its title. */
  function nameLabel(path) {
    const name = V.basename(path);
    const cut = Math.max(0, name.length - TAIL);
    return V.el("span", { class: "name", title: name }, [
      V.el("span", { class: "head", text: name.slice(0, cut) }),
      V.el("span", { class: "tail", text: name.slice(cut) }),
    ]);
  }

  /* A card for one hit or listed photo. options: onOpen(hit), onTag(tag), strong (the score of a likely match,
     or null: scores are not calibrated). */
  function card(hit, options) {
    const img = V.el("img", { alt: V.basename(hit.path), loading: "lazy" });
    V.noUpscale(img);
    if (hit.id !== undefined && hit.id !== null) V.setImage(img, V.thumbUrl(hit.id, 256));
    const weak = typeof hit.score === "number" && typeof options.strong === "number" && hit.score < options.strong;
    const score = typeof hit.score === "number"
      ? V.el("span", { class: "score", text: hit.score.toFixed(3) + (weak ? " · weak match" : "") })
      : null;
    const parts = [V.el("div", { class: "frame" }, [img]), V.el("div", { class: "meta" }, [score, nameLabel(hit.path)].filter(Boolean))];
    const when = F.metaLine(hit.meta) || (hit.date ? String(hit.date).slice(0, 10) + " · file date" : "");
    if (when) parts.push(V.el("div", { class: "taken", text: when }));
    if (typeof hit.text === "string" && hit.text.trim()) {
      parts.push(V.el("div", { class: "found-text", title: hit.text, text: "text: " + hit.text.trim() }));
    }
    const chips = F.tagChips(hit.tags, options.onTag);
    if (chips.length) parts.push(V.el("div", { class: "chips" }, chips));
    const node = V.el("div", {
      class: "card" + (weak ? " weak" : ""), tabindex: "0", "data-id": String(hit.id), title: hit.path,
      onclick: () => options.onOpen(hit),
      onkeydown: (event) => { if (event.key === "Enter" && event.target === node) { event.preventDefault(); options.onOpen(hit); } },
    }, parts);
    return node;
  }

  /* Add a copy to the tile of the photo it copies: a badge with the count, the copies' names in its title. */
  function foldInto(tile, copy) {
    const copies = (tile.copies = tile.copies || []);
    copies.push(copy);
    let badge = tile.querySelector(".copies");
    if (!badge) {
      badge = V.el("span", { class: "copies" });
      tile.querySelector(".frame").append(badge);
    }
    badge.textContent = `${copies.length + 1} copies`;
    badge.title = "copies of this photo (folded): " + copies.map((c) => V.basename(c.path)).join(", ");
    tile.dataset.copies = String(copies.length);
  }

  /* Append cards for `hits` to `grid`, folding each copy into the tile of the photo it copies (when that tile is
     in this grid); `beforeCard(hit)` may return a node to put before a card (a month heading). Returns the hits
     shown as tiles, in order. */
  function addTiles(grid, hits, options, beforeCard) {
    const shown = [];
    for (const hit of hits) {
      const original = hit.copy_of !== undefined ? grid.querySelector(`.card[data-id="${hit.copy_of}"]`) : null;
      if (original) { foldInto(original, hit); continue; }
      const heading = beforeCard ? beforeCard(hit) : null;
      if (heading) grid.append(heading);
      grid.append(card(hit, options));
      shown.push(hit);
    }
    return shown;
  }

  /* "2024-03" and "March 2024" for a listed photo's date (UTC, as the API gives it), or null. */
  function monthOf(hit) {
    if (!hit.date) return null;
    const date = new Date(hit.date);
    if (Number.isNaN(date.getTime())) return null;
    const label = date.toLocaleDateString("en", { month: "long", year: "numeric", timeZone: "UTC" });
    return { key: String(hit.date).slice(0, 7), label };
  }

  function monthHeading(month) {
    return V.el("h3", { class: "month", "data-month": month.key, text: month.label });
  }

  window.VistextTiles = { card, addTiles, monthOf, monthHeading, nameLabel };
})();
