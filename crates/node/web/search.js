// Search: one query over every connected network; merged results arrive live, each
// with its sources and a download button.

import { h, fill, bytes, dirname, networkName } from "./util.js";

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
    this.summary = h("p", { class: "summary", role: "status", "aria-live": "polite", "data-testid": "search-summary" });
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
          h("th", { scope: "col", class: "num" }, "Free slots"),
          h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
        ),
      ),
      this.body,
    );
    fill(
      el,
      h("h2", {}, "Search"),
      this.form,
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
      this.summary,
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
    if (this.currentId) await this.fetch(this.currentId);
    else if (list.length) await this.fetch(list[list.length - 1].id).then(() => (this.currentId = list[list.length - 1].id));
    this.renderHistory();
    this.render();
  }

  async fetch(id) {
    const s = await this.ctx.api("GET", `/api/searches/${id}`);
    const have = this.entry(id);
    have.query = s.query;
    have.started = s.started;
    for (const r of s.results) have.results.set(r.id, r);
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
      have.query = s.query;
      have.started = s.started;
      // The node sends a search to every client network online now.
      have.networks = [...(this.ctx.views.status.networks?.values() || [])]
        .filter((n) => n.role === "client" && n.state === "online")
        .map((n) => networkName(n.name))
        .sort();
      for (const r of s.results || []) have.results.set(r.id, r);
      this.currentId = s.id;
      this.filter.value = "";
      this.renderHistory();
      this.render();
    } catch (err) {
      this.ctx.toast(`Search failed: ${err.message}`, "error");
    } finally {
      btn.disabled = false;
    }
  }

  show(id) {
    this.currentId = id;
    const s = this.searches.get(id);
    // Results of searches started elsewhere (the CLI) are fetched on first look.
    if (s && !s.results.size) this.fetch(id).then(() => this.render(), () => {});
    this.render();
  }

  onEvent(ev) {
    if (ev.type !== "search_result") return;
    this.entry(ev.search).results.set(ev.result.id, ev.result);
    if (ev.search === this.currentId) this.scheduleRender();
    else if (!this.searches.get(ev.search).query) this.renderHistory();
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
    const slots = (r) => r.sources.reduce((a, s) => a + s.free_slots, 0);
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
      this.summary.textContent = "Type a query and press Enter: it goes to every network the node is connected to.";
      fill(this.body);
      this.table.hidden = true;
      return;
    }
    this.table.hidden = false;
    const words = this.filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const all = [...s.results.values()];
    const shown = this.sorted(
      all.filter((r) => {
        const hay = `${r.name} ${r.sources.map((x) => `${x.user} ${x.path}`).join(" ")}`.toLowerCase();
        return words.every((w) => hay.includes(w));
      }),
    );
    const users = new Set(all.flatMap((r) => r.sources.map((x) => x.user)));
    this.summary.textContent =
      `“${s.query}”: ${all.length} file${all.length === 1 ? "" : "s"} from ${users.size} user${users.size === 1 ? "" : "s"}` +
      (shown.length !== all.length ? ` (${shown.length} shown)` : "") +
      (all.length ? "" : " — results appear here as they arrive") +
      (s.networks?.length ? ` · sent to ${s.networks.join(" and ")}` : "");
    fill(this.body, shown.map((r) => this.row(r)));
  }

  row(r) {
    const first = r.sources[0] || { path: r.name };
    const slots = r.sources.reduce((a, x) => a + x.free_slots, 0);
    const queued = this.queued.has(r.id);
    const nets = [...new Set(r.sources.map((x) => x.network))];
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
            "ul",
            {},
            r.sources.map((x, i) =>
              h(
                "li",
                { "data-testid": "result-source" },
                h("span", { class: `net n-${x.network}` }, networkName(x.network, x.session)),
                " ",
                h("strong", {}, x.user),
                ` · ${x.free_slots} free slot${x.free_slots === 1 ? "" : "s"} `,
                h("span", { class: "path mono" }, x.path),
                " ",
                h(
                  "button",
                  { type: "button", class: "small", "aria-label": `Download ${r.name} from ${x.user} on ${networkName(x.network)}`, onclick: (e) => this.download(r, i, e.currentTarget) },
                  "Download from here",
                ),
                " ",
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
      h("td", { class: "num" }, String(slots)),
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

  async download(r, source, btn) {
    btn.disabled = true;
    try {
      const body = { result: r.id };
      if (source !== undefined) body.source = source;
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
