// Wishlist: saved searches the node runs again on the interval each network allows
// (docs/api.md "Wishlist"), their new matches marked live (`wishlist_match` events), and
// optional auto-download through the item's filters. Also the filter bar the Search view
// shares: size range, extensions, lowest bitrate, free slot only, network.

import { h, fill, bytes, ago, clock, networkName } from "./util.js";

/** How often the list is read again while it is on screen (the node runs items by itself). */
const REFRESH_MS = 5000;
/** New matches named under an item (the newest; the count says how many in all). */
const MATCHES_NAMED = 10;

/** "500k", "10M", "1.5GiB", "300000" → bytes (binary units, as sizes are shown); null if not a size. */
export function parseSize(s) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(String(s));
  if (!m) return null;
  const mult = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2].toLowerCase()];
  const v = Math.round(Number(m[1]) * mult);
  return Number.isSafeInteger(v) ? v : null;
}

/** Bytes as typed in a size field: 1048576 → "1M", 1500 → "1500" ("" for none). */
function sizeText(n) {
  if (n === undefined || n === null) return "";
  for (const [unit, m] of [["T", 2 ** 40], ["G", 2 ** 30], ["M", 2 ** 20], ["k", 2 ** 10]]) {
    if (n >= m && n % m === 0) return `${n / m}${unit}`;
  }
  return String(n);
}

/** A Filters object as the API's query string ("" or "?ext=flac&free_slot=true"). */
export function filtersQuery(f) {
  const q = new URLSearchParams();
  for (const k of ["min_size", "max_size", "ext", "min_bitrate", "free_slot", "network"]) {
    if (f[k] !== undefined && f[k] !== null && f[k] !== "" && f[k] !== false) q.set(k, String(f[k]));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** Whether a Filters object narrows anything. */
export function hasFilters(f) {
  return filtersQuery(f || {}) !== "";
}

/** A Filters object in words: "flac · ≥ 1.00 MiB · Soulseek only" ("none"). */
export function filtersText(f) {
  const out = [];
  if (f.ext) out.push(f.ext.split(",").map((e) => e.trim()).filter(Boolean).join(", "));
  if (f.min_size != null) out.push(`≥ ${bytes(f.min_size)}`);
  if (f.max_size != null) out.push(`≤ ${bytes(f.max_size)}`);
  if (f.min_bitrate != null) out.push(`≥ ${f.min_bitrate} kbps`);
  if (f.free_slot) out.push("free slot");
  if (f.network) out.push(`${networkName(f.network)} only`);
  return out.length ? out.join(" · ") : "none";
}

/**
 * The filter fields (ids and test ids `${prefix}-min-size`, `-max-size`, `-ext`,
 * `-min-bitrate`, `-free-slot`, `-network`). `onChange(filters)` is called (debounced)
 * when a field changes to a valid value.
 */
export class FilterBar {
  constructor(prefix, onChange = () => {}) {
    this.onChange = onChange;
    this.timer = null;
    const field = (name, label, input) => {
      input.id = `${prefix}-${name}`;
      input.setAttribute("data-testid", `${prefix}-${name}`);
      return h("span", { class: "field" }, h("label", { for: input.id }, label), input);
    };
    const changed = () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        const f = this.value();
        if (f) this.onChange(f);
      }, 250);
    };
    const size = (placeholder) =>
      h("input", { type: "text", inputmode: "decimal", size: 7, placeholder, autocomplete: "off", oninput: changed, title: "Bytes, or with a unit: 500k, 10M, 1.5G" });
    this.minSize = size("e.g. 2M");
    this.maxSize = size("e.g. 1G");
    this.ext = h("input", { type: "text", size: 10, placeholder: "mp3,flac", autocomplete: "off", oninput: changed, title: "File extensions, any of (comma-separated)" });
    this.minBitrate = h("input", { type: "number", min: 0, step: 1, placeholder: "kbps", class: "narrow", oninput: changed, title: "Only Soulseek sources give a bitrate; others do not pass" });
    this.freeSlot = h("input", { type: "checkbox", onchange: changed });
    this.network = h(
      "select",
      { onchange: changed },
      h("option", { value: "" }, "any"),
      h("option", { value: "nmdc" }, networkName("nmdc")),
      h("option", { value: "slsk" }, networkName("slsk")),
    );
    this.el = h(
      "div",
      { class: "filterbar", role: "group", "aria-label": "Filters" },
      field("min-size", "Size from", this.minSize),
      field("max-size", "to", this.maxSize),
      field("ext", "Extensions", this.ext),
      field("min-bitrate", "Bitrate ≥", this.minBitrate),
      h("span", { class: "field" }, this.freeSlot, h("label", { for: `${prefix}-free-slot` }, "free slot only")),
      field("network", "Network", this.network),
    );
    this.freeSlot.id = `${prefix}-free-slot`;
    this.freeSlot.setAttribute("data-testid", `${prefix}-free-slot`);
  }

  /** The Filters object, or null while a field holds something that is not a value. */
  value() {
    const f = {};
    let ok = true;
    for (const [input, key] of [
      [this.minSize, "min_size"],
      [this.maxSize, "max_size"],
    ]) {
      const t = input.value.trim();
      const v = t ? parseSize(t) : undefined;
      input.setCustomValidity(v === null ? "A size: bytes, or 500k, 10M, 1.5G" : "");
      if (v === null) ok = false;
      else if (v !== undefined) f[key] = v;
    }
    const ext = this.ext.value.split(",").map((e) => e.trim().replace(/^\./, "")).filter(Boolean).join(",");
    if (ext) f.ext = ext;
    const br = this.minBitrate.value.trim();
    if (br) {
      const n = Number(br);
      const good = Number.isInteger(n) && n >= 0 && n < 2 ** 32;
      this.minBitrate.setCustomValidity(good ? "" : "kbps, a whole number");
      if (good) f.min_bitrate = n;
      else ok = false;
    } else this.minBitrate.setCustomValidity("");
    if (this.freeSlot.checked) f.free_slot = true;
    if (this.network.value) f.network = this.network.value;
    return ok ? f : null;
  }

  /** Show `f` in the fields (no change callback). */
  set(f = {}) {
    this.minSize.value = sizeText(f.min_size);
    this.maxSize.value = sizeText(f.max_size);
    this.ext.value = f.ext || "";
    this.minBitrate.value = f.min_bitrate != null ? String(f.min_bitrate) : "";
    this.freeSlot.checked = !!f.free_slot;
    this.network.value = f.network || "";
    this.value();
  }

  clear() {
    this.set({});
    this.onChange({});
  }
}

export class WishlistView {
  constructor(el, ctx) {
    this.el = el;
    this.ctx = ctx;
    this.items = new Map(); // id → item as the node last sent it
    this.matches = new Map(); // id → names of new matches seen live on this page
    this.lastJson = "";
    this.refreshTimer = null;
    this.toasts = new Map(); // item id → matches waiting to be toasted together

    this.query = h("input", { id: "wishlist-query", type: "text", required: true, placeholder: "artist album", autocomplete: "off", "data-testid": "wishlist-query" });
    this.bar = new FilterBar("wishlist");
    this.auto = h("input", { id: "wishlist-auto-download", type: "checkbox", "data-testid": "wishlist-auto-download" });
    this.form = h(
      "form",
      { class: "wishlist-form", "data-testid": "wishlist-form", onsubmit: (e) => this.submit(e) },
      h("div", { class: "searchbar" }, h("label", { for: "wishlist-query" }, "Search for"), this.query),
      this.bar.el,
      h(
        "div",
        { class: "toolbar" },
        h("span", { class: "field" }, this.auto, h("label", { for: "wishlist-auto-download" }, "download new matches that pass the filters")),
        h("button", { type: "submit", class: "primary", "data-testid": "wishlist-add" }, "Add to wishlist"),
      ),
    );
    this.summary = h("p", { class: "summary", role: "status", "aria-live": "polite", "data-testid": "wishlist-summary" });
    this.body = h("tbody", { "data-testid": "wishlist-items" });
    this.table = h(
      "table",
      { class: "grid wishlist", "aria-label": "Wishlist" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Search"),
          h("th", { scope: "col" }, "Filters"),
          h("th", { scope: "col" }, "Auto-download"),
          h("th", { scope: "col" }, "Last run"),
          h("th", { scope: "col", class: "num" }, "New matches"),
          h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
        ),
      ),
      this.body,
    );
    fill(
      el,
      h("h2", {}, "Wishlist"),
      h(
        "p",
        { class: "detail" },
        "Saved searches: the node runs each one again on the interval every network allows (Soulseek's server says how often; " +
          "10 minutes on hubs) and marks the files it had not found before. With auto-download it fetches them too.",
      ),
      this.form,
      this.summary,
      this.table,
    );
    // The node runs items by itself and says nothing until a match comes: re-read now
    // and then while the list is on screen (only redrawn when something changed).
    setInterval(() => {
      if (!this.el.hidden && !document.hidden) this.load().catch(() => {});
    }, REFRESH_MS);
  }

  shown(mayFocus) {
    this.load().catch((e) => this.ctx.toast(e.message, "error"));
    if (mayFocus && !this.items.size) this.query.focus();
  }

  async load() {
    const list = await this.ctx.api("GET", "/api/wishlist");
    this.items = new Map(list.map((i) => [i.id, i]));
    for (const id of [...this.matches.keys()]) if (!this.items.has(id)) this.matches.delete(id);
    this.render();
  }

  /** Save a search (from this form or the Search view); resolves to the item. */
  async add(query, filters, autoDownload) {
    const it = await this.ctx.api("POST", "/api/wishlist", { query, filters, auto_download: autoDownload });
    this.items.set(it.id, it);
    this.render();
    this.ctx.toast(`Saved “${it.query}” to the wishlist; it runs now and then on each network's interval`);
    // Its first run follows at once: show when it went out.
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.load().catch(() => {}), 1500);
    return it;
  }

  async submit(e) {
    e.preventDefault();
    const query = this.query.value.trim();
    const filters = this.bar.value();
    if (!query) return;
    if (!filters) {
      this.ctx.toast("A filter holds something that is not a value (sizes: 500k, 10M, 1.5G)", "error");
      return;
    }
    const btn = this.form.querySelector('button[type="submit"]');
    btn.disabled = true;
    try {
      await this.add(query, filters, this.auto.checked);
      this.query.value = "";
      this.bar.set({});
      this.auto.checked = false;
    } catch (err) {
      this.ctx.toast(`Cannot save it: ${err.message}`, "error");
    } finally {
      btn.disabled = false;
    }
  }

  async act(it, what, btn) {
    btn.disabled = true;
    try {
      if (what === "remove") {
        if (!confirm(`Remove the saved search “${it.query}”?`)) return;
        await this.ctx.api("DELETE", `/api/wishlist/${it.id}`);
        this.items.delete(it.id);
        this.matches.delete(it.id);
      } else {
        const fresh = await this.ctx.api("POST", `/api/wishlist/${it.id}/${what}`);
        this.items.set(fresh.id, fresh);
        if (what === "seen") this.matches.delete(it.id);
        if (what === "run") this.ctx.toast(`“${it.query}” sent again as a search`);
      }
      this.render();
    } catch (err) {
      this.ctx.toast(`${what === "run" ? "Cannot run" : what === "seen" ? "Cannot mark" : "Cannot remove"} “${it.query}”: ${err.message}`, "error");
    } finally {
      btn.disabled = false;
    }
  }

  onEvent(ev) {
    if (ev.type !== "wishlist_match") return;
    const it = this.items.get(ev.item);
    const names = this.matches.get(ev.item) || [];
    if (!names.includes(ev.result.name)) names.push(ev.result.name);
    // The newest few are named; the count says how many.
    this.matches.set(ev.item, names.slice(-MATCHES_NAMED));
    if (it) it.new_matches += 1;
    this.render();
    // One toast per item for a burst of matches (a popular search brings hundreds).
    const t = this.toasts.get(ev.item) || { names: [], timer: null };
    t.names.push(ev.result.name);
    if (!t.timer) {
      t.timer = setTimeout(() => {
        this.toasts.delete(ev.item);
        const q = this.items.get(ev.item)?.query;
        const what = t.names.length === 1 ? `found ${t.names[0]}` : `${t.names.length} new matches`;
        this.ctx.toast(`Wishlist${q ? ` “${q}”` : ""}: ${what}`);
      }, 1000);
    }
    this.toasts.set(ev.item, t);
    // The node's own count is the truth (and an item saved elsewhere gets listed).
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.load().catch(() => {}), 1000);
  }

  render() {
    const items = [...this.items.values()].sort((a, b) => a.id - b.id);
    const fresh = items.reduce((n, i) => n + (i.new_matches || 0), 0);
    this.ctx.setBadge("wishlist-badge", fresh);
    const json = JSON.stringify([items, [...this.matches]]);
    if (json === this.lastJson) {
      // Only the "ago" texts move.
      for (const tr of this.body.querySelectorAll("[data-last-run]")) tr.textContent = ago(Number(tr.dataset.lastRun));
      return;
    }
    this.lastJson = json;
    this.summary.textContent = items.length
      ? `${items.length} saved search${items.length === 1 ? "" : "es"}${fresh ? ` · ${fresh} new match${fresh === 1 ? "" : "es"}` : ""}`
      : "Nothing saved yet: add a search here, or save one from the Search view with its filters.";
    this.table.hidden = !items.length;
    fill(this.body, items.map((it) => this.row(it)));
  }

  row(it) {
    const names = this.matches.get(it.id) || [];
    const n = it.new_matches || 0;
    return h(
      "tr",
      { "data-testid": "wishlist-item", "data-id": it.id, "data-query": it.query, class: n ? "has-new" : null },
      h(
        "td",
        { class: "file" },
        h("span", { class: "name" }, it.query),
        names.length
          ? h(
              "ul",
              { class: "matches", "aria-label": "New matches" },
              names.map((m) => h("li", { "data-testid": "wishlist-match" }, m)),
            )
          : null,
      ),
      h("td", { "data-testid": "wishlist-filters" }, filtersText(it.filters || {})),
      h("td", { "data-testid": "wishlist-auto" }, it.auto_download ? "yes" : "no"),
      it.last_run
        ? h("td", { "data-testid": "wishlist-last-run", "data-last-run": it.last_run, title: clock(it.last_run) }, ago(it.last_run))
        : h("td", { "data-testid": "wishlist-last-run" }, "not yet"),
      h("td", { class: `num new-count${n ? " fresh" : ""}`, "data-testid": "wishlist-new" }, String(n)),
      h(
        "td",
        { class: "actions" },
        it.last_search
          ? h(
              "button",
              {
                type: "button",
                class: "small",
                "data-testid": "wishlist-results",
                "aria-label": `Show the results of “${it.query}”`,
                onclick: () => this.ctx.views.search.openSearch(it.last_search, it.filters || {}),
              },
              "Results",
            )
          : null,
        h("button", { type: "button", class: "small", "data-testid": "wishlist-run", "aria-label": `Run “${it.query}” now`, onclick: (e) => this.act(it, "run", e.currentTarget) }, "Run now"),
        h(
          "button",
          { type: "button", class: "small", "data-testid": "wishlist-seen", disabled: !n, "aria-label": `Mark the matches of “${it.query}” seen`, onclick: (e) => this.act(it, "seen", e.currentTarget) },
          "Mark seen",
        ),
        h("button", { type: "button", class: "small", "data-testid": "wishlist-remove", "aria-label": `Remove “${it.query}”`, onclick: (e) => this.act(it, "remove", e.currentTarget) }, "Remove"),
      ),
    );
  }
}
