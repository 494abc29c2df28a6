// Search: one query over every connected network; merged results arrive live, each
// with its sources (one row each, with that network's own figures) and a download
// button. The filter bar narrows results through the API (GET /api/searches/{id} with
// filters); the search says while it runs and when it is finished, and "no results"
// plainly; a search with its filters can be saved as a wishlist item.

import { h, fill, bytes, dirname, networkName } from "./util.js";
import { FilterBar, filtersQuery, hasFilters } from "./wishlist.js";
import { queuePath } from "./browse.js";

/** While results arrive, a filtered search is read again at most this often. */
const REFILTER_MS = 500;

/** Seconds → "3:07". */
function mmss(s) {
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/**
 * What one source tells about itself and the file, in its network's own terms (figures
 * of different networks are never added up): NMDC free and total slots; Soulseek free
 * slot, queue and upload speed; bitrate, VBR, duration, sample rate, bit depth when given.
 */
export function sourceFigures(x) {
  const f = [];
  if (x.network === "nmdc") {
    f.push(x.slots != null ? `${x.free_slots} of ${x.slots} slots free` : `${x.free_slots} free slot${x.free_slots === 1 ? "" : "s"}`);
  } else {
    f.push(x.free_slots > 0 ? "free slot" : "no free slot");
    if (x.queue != null) f.push(`queue ${x.queue}`);
    if (x.speed != null) f.push(`${bytes(x.speed)}/s`);
  }
  if (x.bitrate != null) f.push(`${x.bitrate} kbps${x.vbr ? " VBR" : ""}`);
  else if (x.vbr) f.push("VBR");
  if (x.duration != null) f.push(mmss(x.duration));
  if (x.sample_rate != null) f.push(`${Number((x.sample_rate / 1000).toFixed(1))} kHz`);
  if (x.bit_depth != null) f.push(`${x.bit_depth}-bit`);
  return f.join(" · ");
}

/** ["a", "b", "c"] → "a, b and c". */
function andList(xs) {
  return xs.length < 2 ? xs.join("") : `${xs.slice(0, -1).join(", ")} and ${xs[xs.length - 1]}`;
}

export class SearchView {
  constructor(el, ctx) {
    this.el = el;
    this.ctx = ctx;
    // search id → {id, query, started, results: Map(result id → result)}
    this.searches = new Map();
    this.currentId = null;
    this.queued = new Set(); // result ids already queued from this page
    this.open = new Set(); // result ids whose source list is unfolded
    this.sortKey = "sources";
    this.renderPending = false;
    // The filter bar's filters, and the current search's results as the API narrowed
    // them: {id, q, results} (q: the query string they were fetched with).
    this.filters = {};
    this.filtered = null;
    this.filterSeq = 0;
    this.filterTimer = null;
    this.stateTimer = null;

    this.input = h("input", {
      id: "search-input",
      type: "search",
      name: "q",
      placeholder: "artist, title, file name…",
      autocomplete: "off",
      required: true,
      "data-testid": "search-input",
    });
    this.form = h(
      "form",
      { class: "searchbar", role: "search", "data-testid": "search-form", onsubmit: (e) => this.submit(e) },
      h("label", { for: "search-input" }, "Search every network"),
      this.input,
      h("button", { type: "submit", class: "primary", "data-testid": "search-submit" }, "Search"),
    );
    this.history = h("select", { id: "search-history", "data-testid": "search-history", onchange: () => this.show(Number(this.history.value)) });
    this.filter = h("input", {
      id: "search-filter",
      type: "search",
      placeholder: "filter results",
      "data-testid": "search-filter",
      oninput: () => this.render(),
    });
    this.sort = h(
      "select",
      { id: "search-sort", "data-testid": "search-sort", onchange: () => ((this.sortKey = this.sort.value), this.render()) },
      h("option", { value: "sources" }, "most sources"),
      h("option", { value: "name" }, "name"),
      h("option", { value: "size" }, "size"),
      h("option", { value: "slots" }, "free slots"),
    );
    this.bar = new FilterBar("search", (f) => this.setFilters(f));
    this.saveAuto = h("input", { id: "search-save-auto", type: "checkbox", "data-testid": "search-save-auto" });
    this.filterBox = h(
      "div",
      { class: "filters" },
      this.bar.el,
      h(
        "span",
        { class: "field" },
        h("button", { type: "button", class: "small", "data-testid": "search-filters-clear", onclick: () => this.bar.clear() }, "Clear filters"),
      ),
      h(
        "span",
        { class: "field save" },
        h(
          "button",
          {
            type: "button",
            class: "small",
            "data-testid": "search-save-wishlist",
            title: "Save this search with these filters: the node runs it again on each network's interval",
            onclick: (e) => this.saveWishlist(e.currentTarget),
          },
          "Save as wishlist item",
        ),
        this.saveAuto,
        h("label", { for: "search-save-auto" }, "and download new matches"),
      ),
    );
    this.state = h("span", { class: "search-state", "data-testid": "search-state", hidden: true });
    this.summary = h("p", { class: "summary", role: "status", "aria-live": "polite", "data-testid": "search-summary" });
    this.empty = h("p", { class: "empty", "data-testid": "search-empty", hidden: true });
    this.body = h("tbody", { "data-testid": "search-results" });
    this.table = h(
      "table",
      { class: "grid results", "aria-label": "Search results" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "File"),
          h("th", { scope: "col", class: "num" }, "Size"),
          h("th", { scope: "col" }, "Sources"),
          h("th", { scope: "col", class: "num", title: "Free upload slots, per network" }, "Free slots"),
          h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
        ),
      ),
      this.body,
    );
    fill(
      el,
      h("h2", {}, "Search"),
      this.form,
      this.filterBox,
      h(
        "div",
        { class: "toolbar" },
        h("label", { for: "search-history" }, "Searches"),
        this.history,
        h("label", { for: "search-filter" }, "Filter"),
        this.filter,
        h("label", { for: "search-sort" }, "Sort by"),
        this.sort,
      ),
      h("div", { class: "search-status" }, this.state, this.summary),
      this.empty,
      this.table,
    );
  }

  focus() {
    this.input.focus();
  }

  shown(mayFocus) {
    if (mayFocus && !this.currentId) this.input.focus();
  }

  async load() {
    const list = await this.ctx.api("GET", "/api/searches");
    // Searches live as long as the node runs: after a restart the ones shown are gone
    // (and their result ids mean nothing any more).
    const known = new Set(list.map((s) => s.id));
    for (const id of [...this.searches.keys()]) {
      if (!known.has(id)) this.searches.delete(id);
    }
    if (this.currentId !== null && !known.has(this.currentId)) {
      this.currentId = null;
      this.queued.clear();
      this.open.clear();
    }
    for (const s of list) {
      if (!this.searches.has(s.id)) this.searches.set(s.id, { ...s, results: new Map() });
    }
    // Re-read the one shown (results may have arrived while the stream was down).
    if (this.currentId) {
      await this.fetch(this.currentId);
      this.refilter();
    }
    else if (list.length) await this.fetch(list[list.length - 1].id).then(() => (this.currentId = list[list.length - 1].id));
    this.renderHistory();
    this.render();
  }

  async fetch(id) {
    const s = await this.ctx.api("GET", `/api/searches/${id}`);
    const have = this.entry(id);
    this.take(have, s);
    for (const r of s.results) have.results.set(r.id, r);
  }

  /** A search's own fields as the node sent them. */
  take(have, s) {
    have.query = s.query;
    have.started = s.started;
    if (s.ends !== undefined) have.ends = s.ends;
    if (s.state !== undefined) have.state = s.state;
    if (s.sent_to !== undefined) have.sent_to = s.sent_to;
  }

  entry(id) {
    let s = this.searches.get(id);
    if (!s) {
      s = { id, query: "", started: 0, results: new Map() };
      this.searches.set(id, s);
    }
    return s;
  }

  async submit(e) {
    e.preventDefault();
    const query = this.input.value.trim();
    if (!query) return;
    const btn = this.form.querySelector("button");
    btn.disabled = true;
    try {
      const s = await this.ctx.api("POST", "/api/searches", { query });
      const have = this.entry(s.id);
      // `sent_to`: the sessions it went to (hubs and Soulseek servers: Tox cannot search).
      this.take(have, s);
      for (const r of s.results || []) have.results.set(r.id, r);
      this.currentId = s.id;
      this.filter.value = "";
      this.filtered = null;
      this.renderHistory();
      this.refilter();
      this.render();
    } catch (err) {
      this.ctx.toast(`Search failed: ${err.message}`, "error");
    } finally {
      btn.disabled = false;
    }
  }

  show(id) {
    this.currentId = id;
    this.filtered = null;
    // The box says what is shown (and what "Save as wishlist item" saves).
    const known = this.searches.get(id)?.query;
    if (known) this.input.value = known;
    // Read again: results of searches started elsewhere (the CLI, the wishlist), and
    // whether it is finished.
    if (this.searches.has(id))
      this.fetch(id).then(
        () => {
          const q = this.searches.get(id)?.query;
          if (q && this.currentId === id && !known) this.input.value = q;
          this.renderHistory();
          this.render();
        },
        () => {},
      );
    this.refilter();
    this.render();
  }

  /** Show search `id` with `filters` (a wishlist item's "Results"). */
  openSearch(id, filters) {
    this.bar.set(filters);
    this.filters = this.bar.value() || {};
    this.entry(id);
    this.ctx.go("search");
    this.show(id);
    this.renderHistory();
  }

  onEvent(ev) {
    if (ev.type !== "search_result") return;
    // The event carries only the source that is new: add it to what came before.
    const results = this.entry(ev.search).results;
    const had = results.get(ev.result.id);
    if (!had) results.set(ev.result.id, ev.result);
    else {
      const same = (a, b) => a.network === b.network && (a.session || "") === (b.session || "") && a.user === b.user && a.path === b.path;
      for (const src of ev.result.sources) if (!had.sources.some((x) => same(x, src))) had.sources.push(src);
      if (!had.tth && ev.result.tth) had.tth = ev.result.tth;
    }
    if (ev.search === this.currentId) {
      if (hasFilters(this.filters)) this.scheduleRefilter();
      else this.scheduleRender();
    } else if (!this.searches.get(ev.search).query) this.renderHistory();
  }

  setFilters(f) {
    this.filters = f;
    this.filtered = null;
    this.refilter();
    this.render();
  }

  /** The filters are applied by the node: read the current search through them. */
  refilter() {
    clearTimeout(this.filterTimer);
    this.filterTimer = null;
    const id = this.currentId;
    if (id === null || !hasFilters(this.filters)) return;
    const q = filtersQuery(this.filters);
    const seq = ++this.filterSeq;
    this.ctx.api("GET", `/api/searches/${id}${q}`).then(
      (s) => {
        // A slower answer to an older question is not shown.
        if (seq !== this.filterSeq) return;
        this.take(this.entry(id), s);
        this.filtered = { id, q, results: s.results };
        this.render();
      },
      (err) => {
        if (seq === this.filterSeq) this.ctx.toast(`Cannot filter: ${err.message}`, "error");
      },
    );
  }

  /** Results arriving in a burst are filtered again at most every half second. */
  scheduleRefilter() {
    if (this.filterTimer) return;
    this.filterTimer = setTimeout(() => this.refilter(), REFILTER_MS);
  }

  /** A running search finishes at `ends` (the node's clock): read its state then. */
  watchState(s) {
    clearTimeout(this.stateTimer);
    if (!s || s.state !== "running") return;
    const left = s.ends ? s.ends - Date.now() / 1000 : 60;
    const wait = Math.min(Math.max(left + 0.5, 1), 65);
    const id = s.id;
    this.stateTimer = setTimeout(() => {
      if (this.currentId !== id) return;
      this.fetch(id).then(
        () => this.render(),
        () => {},
      );
    }, wait * 1000);
  }

  async saveWishlist(btn) {
    const query = this.input.value.trim() || this.searches.get(this.currentId)?.query || "";
    if (!query) {
      this.ctx.toast("Type what to search for first", "error");
      this.input.focus();
      return;
    }
    const filters = this.bar.value();
    if (!filters) {
      this.ctx.toast("A filter holds something that is not a value (sizes: 500k, 10M, 1.5G)", "error");
      return;
    }
    btn.disabled = true;
    try {
      await this.ctx.views.wishlist.add(query, filters, this.saveAuto.checked);
    } catch (err) {
      this.ctx.toast(`Cannot save it to the wishlist: ${err.message}`, "error");
    } finally {
      btn.disabled = false;
    }
  }

  /** Many results can arrive at once: draw at most once a frame. */
  scheduleRender() {
    if (this.renderPending) return;
    this.renderPending = true;
    requestAnimationFrame(() => {
      this.renderPending = false;
      this.render();
    });
  }

  renderHistory() {
    const opts = [...this.searches.values()]
      .sort((a, b) => b.id - a.id)
      .map((s) => h("option", { value: s.id, selected: s.id === this.currentId }, s.query ? `“${s.query}”` : `search ${s.id}`));
    if (!opts.length) opts.push(h("option", { value: "" }, "none yet"));
    fill(this.history, opts);
  }

  sorted(results) {
    // Sources with a free slot (counted, not their slots added up across networks).
    const slots = (r) => r.sources.filter((s) => s.free_slots > 0).length;
    const by = {
      sources: (a, b) => b.sources.length - a.sources.length || slots(b) - slots(a) || a.name.localeCompare(b.name),
      name: (a, b) => a.name.localeCompare(b.name),
      size: (a, b) => b.size - a.size,
      slots: (a, b) => slots(b) - slots(a),
    }[this.sortKey];
    return results.sort(by);
  }

  render() {
    const s = this.searches.get(this.currentId);
    if (!s) {
      this.summary.textContent = "Type a query and press Enter: it goes to every hub and Soulseek server the node is logged in to.";
      this.state.hidden = true;
      this.empty.hidden = true;
      fill(this.body);
      this.table.hidden = true;
      return;
    }
    this.watchState(s);
    const running = s.state !== "finished";
    this.state.hidden = !s.state;
    this.state.textContent = running ? "searching…" : "finished";
    this.state.dataset.state = running ? "running" : "finished";
    const words = this.filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const all = [...s.results.values()];
    const filtering = hasFilters(this.filters);
    const ready = !filtering || (this.filtered && this.filtered.id === s.id && this.filtered.q === filtersQuery(this.filters));
    const passing = !filtering ? all : ready ? this.filtered.results : [];
    const shown = this.sorted(
      passing.filter((r) => {
        const hay = `${r.name} ${r.sources.map((x) => `${x.user} ${x.path}`).join(" ")}`.toLowerCase();
        return words.every((w) => hay.includes(w));
      }),
    );
    const users = new Set(all.flatMap((r) => r.sources.map((x) => x.user)));
    const sent = (s.sent_to || []).map((n) => networkName(n));
    const where = sent.length ? ` · sent to ${andList(sent)}` : s.sent_to ? " · sent nowhere" : "";
    let what;
    if (all.length) {
      what =
        `${all.length} file${all.length === 1 ? "" : "s"} from ${users.size} user${users.size === 1 ? "" : "s"}` +
        (shown.length !== all.length ? ` (${ready ? shown.length : "…"} shown)` : "");
    } else {
      what = running ? "results appear here as they arrive" : "no results";
    }
    this.summary.textContent = `“${s.query}”: ${what}${where}`;
    if (!shown.length && all.length && ready) {
      this.empty.textContent = `No results pass these filters (${all.length} file${all.length === 1 ? "" : "s"} found in all).`;
      this.empty.hidden = false;
    } else if (!all.length && !running) {
      this.empty.textContent = `No results: nothing${sent.length ? ` on ${andList(sent)}` : ""} matched “${s.query}”.`;
      this.empty.hidden = false;
    } else {
      this.empty.hidden = true;
    }
    this.table.hidden = !shown.length;
    fill(this.body, shown.map((r) => this.row(r)));
  }

  row(r) {
    const first = r.sources[0] || { path: r.name };
    const queued = this.queued.has(r.id);
    const nets = [...new Set(r.sources.map((x) => x.network))];
    // Free slots per network: each network counts its own way (NMDC slots of a user,
    // Soulseek a yes/no per user), so they are never added together.
    const slots = nets.map((n) => {
      const free = r.sources.filter((x) => x.network === n).reduce((a, x) => a + x.free_slots, 0);
      return `${networkName(n)} ${free}`;
    });
    return h(
      "tr",
      { "data-testid": "search-result", "data-id": r.id, "data-name": r.name },
      h(
        "td",
        { class: "file" },
        h("span", { class: "name", "data-testid": "result-name" }, r.name),
        h("span", { class: "path" }, dirname(first.path)),
        r.tth ? h("span", { class: "tth mono", title: "Tiger tree hash" }, `TTH ${r.tth}`) : null,
      ),
      h("td", { class: "num", "data-testid": "result-size", title: `${r.size} bytes` }, bytes(r.size)),
      h(
        "td",
        { class: "sources" },
        nets.map((n) => h("span", { class: `net n-${n}` }, networkName(n))),
        h(
          "details",
          {
            "data-testid": "result-sources",
            open: this.open.has(r.id),
            ontoggle: (e) => (e.currentTarget.open ? this.open.add(r.id) : this.open.delete(r.id)),
          },
          h("summary", {}, `${r.sources.length} source${r.sources.length === 1 ? "" : "s"}: ${[...new Set(r.sources.map((x) => x.user))].join(", ")}`),
          h(
            "table",
            { class: "source-rows", "aria-label": `Sources of ${r.name}` },
            h(
              "tbody",
              {},
              r.sources.map((x, i) =>
                h(
                  "tr",
                  { "data-testid": "result-source", "data-network": x.network, "data-user": x.user },
                  h("td", {}, h("span", { class: `net n-${x.network}` }, networkName(x.network, x.session))),
                  h("td", {}, h("strong", {}, x.user)),
                  h("td", { class: "figures", "data-testid": "source-figures" }, sourceFigures(x)),
                  h("td", { class: "path mono" }, x.path),
                  h(
                    "td",
                    { class: "actions" },
                    h(
                      "button",
                      { type: "button", class: "small", "aria-label": `Download ${r.name} from ${x.user} on ${networkName(x.network)}`, onclick: (e) => this.download(r, i, e.currentTarget) },
                      "Download from here",
                    ),
                    dirname(x.path)
                      ? h(
                          "button",
                          {
                            type: "button",
                            class: "small",
                            "data-testid": "download-folder-button",
                            "aria-label": `Download the folder ${dirname(x.path)} from ${x.user} on ${networkName(x.network, x.session)}`,
                            onclick: (e) => this.downloadFolder(x, e.currentTarget),
                          },
                          "Download folder",
                        )
                      : null,
                    h(
                      "button",
                      {
                        type: "button",
                        class: "small",
                        "data-testid": "browse-user-button",
                        "aria-label": `Browse the files of ${x.user} on ${networkName(x.network, x.session)}`,
                        onclick: () => this.ctx.browseUser(x.network, x.session, x.user),
                      },
                      "Browse user",
                    ),
                  ),
                ),
              ),
            ),
          ),
        ),
      ),
      h("td", { class: "num slots", "data-testid": "result-slots" }, slots.map((t, i) => h("span", { class: "per-net" }, i ? ` · ${t}` : t))),
      h(
        "td",
        { class: "actions" },
        h(
          "button",
          {
            type: "button",
            class: queued ? "" : "primary",
            "data-testid": "download-button",
            disabled: queued,
            "aria-label": `Download ${r.name}`,
            onclick: (e) => this.download(r, undefined, e.currentTarget),
          },
          queued ? "Queued" : "Download",
        ),
      ),
    );
  }

  /**
   * The index in the node's result of source `i` of `r` as shown: a filtered result lists
   * only its passing sources. With filters and no source picked, the node's own rule
   * (NMDC with a TTH, then a free slot) among the passing ones.
   */
  sourceIndex(r, i) {
    const full = this.searches.get(r.search)?.results.get(r.id);
    if (!hasFilters(this.filters) || !full) return i;
    if (i === undefined) {
      const rank = (x) => (x.network === "nmdc" && r.tth ? 2 : 0) + (x.free_slots > 0 ? 1 : 0);
      i = r.sources.reduce((best, x, j) => (rank(x) > rank(r.sources[best]) ? j : best), 0);
    }
    const x = r.sources[i];
    const j = full.sources.findIndex((y) => y.network === x.network && (y.session || "") === (x.session || "") && y.user === x.user && y.path === x.path);
    return j >= 0 ? j : undefined;
  }

  /** The folder a source's file is in, whole (as the Browse view queues one). */
  downloadFolder(x, btn) {
    const path = dirname(x.path);
    const name = path.split(/[\\/]/).pop();
    return queuePath(this.ctx, { network: x.network, session: x.session || "", user: x.user, path, folder: true }, name, btn);
  }

  async download(r, shownSource, btn) {
    btn.disabled = true;
    try {
      const body = { result: r.id };
      const source = this.sourceIndex(r, shownSource);
      if (source !== undefined) body.source = source;
      // A file of that name already in the downloads folder: a warning to confirm first.
      const plan = await this.ctx.api("POST", "/api/transfers", { result: r.id, dry_run: true });
      if (plan.existing.length && !window.confirm(`${r.name} is already on disk (${plan.existing[0]}); a new copy gets a name of its own.\n\nDownload it anyway?`)) {
        btn.disabled = false;
        return;
      }
      const t = await this.ctx.api("POST", "/api/transfers", body);
      this.queued.add(r.id);
      this.ctx.views.transfers.answered(t);
      this.ctx.toast(`Queued ${t.name} from ${t.source} (${networkName(t.network)})`);
      this.render();
    } catch (err) {
      btn.disabled = false;
      this.ctx.toast(`Cannot download ${r.name}: ${err.message}`, "error");
    }
  }
}
