/* vistext viewer: one photo at full size with its neighbours, in a modal dialog. The arrow keys (and the
   previous / next buttons) move through the photos of the grid it was opened from; Esc closes it and the focus
   goes back to that photo's tile. */
"use strict";
(function () {
  const V = window.Vistext;
  const $ = (id) => document.getElementById(id);

  /* A viewer over the dialog #viewer. similarOf(hit) answers the neighbours to show (a promise of hits);
     showNeighbours(grid, hits) draws them. */
  class Viewer {
    constructor(similarOf, showNeighbours) {
      this.similarOf = similarOf;
      this.showNeighbours = showNeighbours;
      this.hits = [];
      this.index = 0;
      this.grid = null;
      const dialog = $("viewer");
      $("viewer-close").addEventListener("click", () => dialog.close());
      $("viewer-prev").addEventListener("click", () => this.step(-1));
      $("viewer-next").addEventListener("click", () => this.step(1));
      document.addEventListener("keydown", (event) => { // wherever the focus is (a button gone disabled: the body)
        if (!dialog.open) return;
        if (event.key === "ArrowRight") { event.preventDefault(); this.step(1); }
        if (event.key === "ArrowLeft") { event.preventDefault(); this.step(-1); }
      });
      dialog.addEventListener("close", () => this.returnFocus());
    }

    /* Show `hit`, one of `hits` (the photos of `grid`, in order). */
    open(hit, hits, grid) {
      this.hits = hits && hits.length ? hits : [hit];
      this.grid = grid || null;
      this.index = Math.max(0, this.hits.findIndex((h) => h.id === hit.id));
      const shown = this.show(); // first: the buttons it disables are not the ones the dialog focuses
      const dialog = $("viewer");
      if (!dialog.open) dialog.showModal();
      return shown;
    }

    step(by) {
      const next = this.index + by;
      if (next < 0 || next >= this.hits.length) return;
      this.index = next;
      this.show();
    }

    async show() {
      const hit = this.hits[this.index];
      V.setImage($("viewer-image"), V.imageUrl(hit.id));
      $("viewer-image").alt = V.basename(hit.path);
      $("viewer-caption").textContent = hit.path;
      $("viewer-position").textContent = this.hits.length > 1 ? `${this.index + 1} of ${this.hits.length}` : "";
      $("viewer-prev").disabled = this.index === 0;
      $("viewer-next").disabled = this.index === this.hits.length - 1;
      $("viewer").dataset.id = String(hit.id);
      $("viewer-similar").replaceChildren();
      try {
        const neighbours = await this.similarOf(hit);
        if (this.hits[this.index] === hit) this.showNeighbours($("viewer-similar"), neighbours);
      } catch (error) {
        $("viewer-caption").textContent = error.message;
      }
    }

    returnFocus() {
      const hit = this.hits[this.index];
      const tile = this.grid && hit ? this.grid.querySelector(`.card[data-id="${hit.id}"]`) : null;
      if (tile) tile.focus();
    }
  }

  window.VistextViewer = Viewer;
})();
