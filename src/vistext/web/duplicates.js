/* vistext search page, duplicates section: groups of copies (the one to keep first) and of similar shots
   (nothing suggested to keep) from /api/duplicates, each a row of thumbnails. */
"use strict";
(function () {
  const V = window.Vistext;
  const $ = (id) => document.getElementById(id);

  function status(text, isError) {
    $("dup-status").textContent = text;
    $("dup-status").classList.toggle("error", Boolean(isError));
  }

  function member(image, keep) {
    const img = V.el("img", { alt: V.basename(image.path), loading: "lazy" });
    V.noUpscale(img);
    V.setImage(img, V.thumbUrl(image.id, 256));
    return V.el("div", { class: "card" + (keep ? " keep" : ""), "data-id": String(image.id), title: image.path,
      onclick: () => window.open(V.imageUrl(image.id), "_blank", "noopener") }, [
      img,
      V.el("div", { class: "meta" }, [
        V.el("span", { class: "score", text: keep ? "keep" : image.score.toFixed(3) }),
        V.el("span", { class: "name", title: V.basename(image.path), text: V.basename(image.path) }),
      ]),
    ]);
  }

  function group(found, k) {
    const label = found.kind === "copies" ? "copies" : "similar shots";
    return V.el("div", { class: "dup-group", "data-kind": found.kind }, [
      V.el("h3", { text: `${k + 1}. ${label} · ${found.images.length} photos` }),
      V.el("div", { class: "grid" }, found.images.map((image) => member(image, found.keep === image.id))),
    ]);
  }

  async function find() {
    const threshold = $("dup-threshold").value;
    const params = new URLSearchParams();
    if (threshold !== "") params.set("threshold", threshold);
    status("looking for duplicates…");
    $("dup-button").disabled = true;
    try {
      const answer = await V.getJSON("/api/duplicates?" + params);
      $("dup-groups").replaceChildren(...answer.groups.map(group));
      const copies = answer.groups.filter((g) => g.kind === "copies").length;
      status(answer.groups.length
        ? `${answer.groups.length} groups (${copies} of copies, ${answer.groups.length - copies} of similar shots) at similarity ${answer.threshold}`
        : `no duplicates at similarity ${answer.threshold}`);
    } catch (error) {
      $("dup-groups").replaceChildren();
      status(error.message, true);
    } finally {
      $("dup-button").disabled = false;
    }
  }

  $("duplicates-form").addEventListener("submit", (event) => { event.preventDefault(); find(); });
})();
