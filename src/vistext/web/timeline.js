/* vistext timeline: the photos passing the filters, newest first (/api/list: date taken, else the file's
   time), under month headings, one page after another as the end of the grid scrolls into view
   (IntersectionObserver on a sentinel below the grid; the API's next_cursor asks for the next page). */
"use strict";
(function () {
  const V = window.Vistext;
  const T = window.VistextTiles;

  /* A timeline drawn into `grid`, loading more when `sentinel` comes into view. options: params() (the
     filters as URLSearchParams), pageSize() (photos asked for at a time), tileOptions (see VistextTiles.card), onPage(answer, shown) after each page,
     onError(error). */
  class Timeline {
    constructor(grid, sentinel, options) {
      this.grid = grid;
      this.sentinel = sentinel;
      this.options = options;
      this.active = false;
      this.hits = [];
      this.observer = new IntersectionObserver((entries) => {
        if (entries.some((entry) => entry.isIntersecting)) this.more();
      }, { rootMargin: "400px 0px" });
      this.observer.observe(sentinel);
    }

    /* Start again from the newest photo (new filters, or back from a search). */
    start() {
      this.active = true;
      this.generation = (this.generation || 0) + 1;
      this.cursor = null;
      this.done = false;
      this.loading = false;
      this.month = null;
      this.hits = [];
      this.total = null;
      this.sentinel.dataset.done = ""; // not the last run's "1" while the first page is on its way
      this.grid.replaceChildren();
      return this.more();
    }

    stop() { this.active = false; }

    async more() {
      if (!this.active || this.loading || this.done) return;
      this.loading = true;
      this.sentinel.dataset.loading = "1";
      const generation = this.generation;
      const params = this.options.params(new URLSearchParams({ k: this.options.pageSize() }));
      if (this.cursor) params.set("cursor", this.cursor);
      try {
        const answer = await V.getJSON("/api/list?" + params);
        if (generation !== this.generation || !this.active) return; // superseded while it was on its way
        const shown = T.addTiles(this.grid, answer.results, this.options.tileOptions, (hit) => this.heading(hit));
        this.hits.push(...shown);
        if (typeof answer.total === "number") this.total = answer.total; // counted with the first page only
        this.cursor = answer.next_cursor;
        this.done = !answer.next_cursor;
        this.options.onPage(answer, this);
      } catch (error) {
        this.done = true;
        this.options.onError(error);
      } finally {
        if (generation === this.generation) {
          this.loading = false;
          delete this.sentinel.dataset.loading;
          this.sentinel.dataset.done = this.done ? "1" : "";
          if (!this.done) this.refill();
        }
      }
    }

    /* A month heading before the first photo of each month. */
    heading(hit) {
      const month = T.monthOf(hit);
      if (!month || month.key === this.month) return null;
      this.month = month.key;
      return T.monthHeading(month);
    }

    /* The observer only fires on a change, and a page can land while the sentinel stays in view (or the
       layout is still settling as its images load): observing it afresh makes the observer report where the
       sentinel is now, so a page that did not fill the screen asks for the next. */
    refill() {
      this.observer.unobserve(this.sentinel);
      this.observer.observe(this.sentinel);
    }
  }

  window.VistextTimeline = Timeline;
})();
