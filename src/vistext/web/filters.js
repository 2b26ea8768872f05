/* vistext filters: one filter bar (date range, camera, place, folder, tag) shared by the search page and the map.
   The same query parameters go to /api/search, /api/similar, /api/list, /api/export and /api/map; the choices
   come from /api/facets and /api/tags; the active ones are summarised as chips with a clear button. */
"use strict";
(function () {
  const V = window.Vistext;
  const NAMES = ["after", "before", "camera", "near", "folder", "tag"];
  const NEAR = /^\s*-?\d+(\.\d+)?\s*,\s*-?\d+(\.\d+)?\s*,\s*\d+(\.\d+)?\s*$/;

  function option(value, text) { return V.el("option", { value, text }); }

  /* A filter bar over the form `form` (inputs named after NAMES), its summary in `summary`; `onChange(filters)`
     runs when filters are applied or cleared. */
  class FilterBar {
    constructor(form, summary, onChange) {
      this.form = form;
      this.summary = summary;
      this.onChange = onChange;
      this.values = {};
      form.addEventListener("submit", (event) => { event.preventDefault(); this.apply(); });
      form.querySelector("[data-clear]").addEventListener("click", () => this.clear());
      this.render();
    }

    field(name) { return this.form.elements.namedItem(name); }

    /* The camera, folder and tag choices of this collection (/api/facets, /api/tags), each with its count. */
    async load() {
      const [facets, tags] = await Promise.all([V.getJSON("/api/facets"), V.getJSON("/api/tags")]);
      this.fill("camera", facets.cameras, "any camera");
      this.fill("folder", facets.folders, "any folder");
      this.fill("tag", tags.tags, "any tag");
      const range = facets.first ? `photos taken from ${facets.first.slice(0, 10)} to ${facets.last.slice(0, 10)}` : "no photo has a date taken";
      for (const name of ["after", "before"]) this.field(name).title = range; // a hint, not a limit
      this.field("near").title = `lat,lon,km: ${facets.has_gps} photos have a GPS position`;
      this.form.dataset.loaded = "1";
    }

    /* A select's choices from {value: photo count}, in the server's order ("." is the collection's top folder). */
    fill(name, counts, anyText) {
      const select = this.field(name);
      const current = select.value;
      const options = [option("", anyText)];
      for (const [value, count] of Object.entries(counts || {})) {
        options.push(option(value, `${value === "." ? "(top folder)" : value} (${count})`));
      }
      select.replaceChildren(...options);
      select.disabled = options.length === 1;
      if ([...select.options].some((o) => o.value === current)) select.value = current;
    }

    read() {
      const values = {};
      for (const name of NAMES) {
        const value = String(this.field(name).value || "").trim();
        if (value) values[name] = value;
      }
      return values;
    }

    /* Check the inputs (one line of error, as the server would say it) and make them the active filters. */
    apply() {
      const values = this.read();
      if (values.near && !NEAR.test(values.near)) {
        this.summary.replaceChildren(V.el("span", { class: "error", text: "near: give lat,lon,km, e.g. 48.85,2.35,10" }));
        return;
      }
      if (values.after && values.before && values.after > values.before) {
        this.summary.replaceChildren(V.el("span", { class: "error", text: "the after date must be earlier than the before date" }));
        return;
      }
      this.values = values;
      this.render();
      this.onChange(this.values);
    }

    /* Put `value` in the `name` field (a choice not loaded yet is added) without applying it. */
    preset(name, value) {
      const field = this.field(name);
      if (field.tagName === "SELECT" && ![...field.options].some((o) => o.value === value)) {
        field.append(option(value, value));
      }
      field.disabled = false;
      field.value = value;
    }

    set(name, value) { this.preset(name, value); this.apply(); }

    remove(name) { this.field(name).value = ""; this.apply(); }

    clear() {
      for (const name of NAMES) this.field(name).value = "";
      this.apply();
    }

    get empty() { return Object.keys(this.values).length === 0; }

    /* The active filters as query parameters, added to `params` (a URLSearchParams) when given. */
    params(params) {
      const out = params || new URLSearchParams();
      for (const [name, value] of Object.entries(this.values)) out.set(name, value);
      return out;
    }

    render() {
      const chips = Object.entries(this.values).map(([name, value]) => V.el("span", { class: "chip active", "data-filter": name }, [
        V.el("span", { text: `${name}: ${value}` }),
        V.el("button", { type: "button", title: `remove the ${name} filter`, text: "×", onclick: () => this.remove(name) }),
      ]));
      this.summary.replaceChildren(
        V.el("span", { class: "muted", text: chips.length ? "active filters:" : "no filters: the whole collection" }),
        ...chips);
      this.form.querySelector("[data-clear]").disabled = !chips.length;
    }
  }

  /* Tag chips for a result item's tags ([{tag, score}]); clicking one calls onTag(tag). */
  function tagChips(tags, onTag, limit) {
    return (tags || []).slice(0, limit || 4).map((t) => V.el("button", {
      type: "button", class: "chip tag", title: `${t.tag} (${Number(t.score).toFixed(2)}): show only photos tagged ${t.tag}`,
      text: t.tag, onclick: (event) => { event.stopPropagation(); onTag(t.tag); },
    }));
  }

  /* "2024-05-01 · Canon EOS 5D" from a result item's meta, or "" */
  function metaLine(meta) {
    if (!meta) return "";
    const taken = meta.taken ? String(meta.taken).slice(0, 10) : "";
    const camera = [meta.camera_make, meta.camera_model].filter(Boolean).join(" ");
    return [taken, camera].filter(Boolean).join(" · ");
  }

  /* Save text as a file (a download the browser shows), e.g. an export. */
  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const link = V.el("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  window.VistextFilters = { FilterBar, tagChips, metaLine, download, NAMES };
})();
