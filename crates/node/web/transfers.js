// Transfers: the download queue with live progress, speed and state, and the controls
// pause, resume, cancel and retry.

import { h, fill, bytes, rate, duration, ago, networkName } from "./util.js";

const FILTERS = {
  all: () => true,
  active: (t) => ["queued", "running", "paused"].includes(t.state),
  done: (t) => t.state === "done",
  failed: (t) => t.state === "failed" || t.state === "cancelled",
};

const ACTIONS = {
  pause: (t) => t.state === "queued" || t.state === "running",
  resume: (t) => t.state === "paused",
  cancel: (t) => t.state !== "done" && t.state !== "cancelled",
  retry: (t) => t.state === "failed" || t.state === "cancelled",
};

const LABEL = { pause: "Pause", resume: "Resume", cancel: "Cancel", retry: "Retry" };

/**
 * A block map ("#" verified, ">" being fetched, "." missing, one per block) squeezed into
 * at most `width` characters: "#" all verified, ">" some being fetched, "." none held,
 * "+" partly held (as omnipeer_node::segments::condense does for the CLI).
 */
function condense(map, width) {
  if (map.length <= width) return map;
  let out = "";
  for (let i = 0; i < width; i++) {
    const a = Math.floor((i * map.length) / width);
    const run = map.slice(a, Math.max(a + 1, Math.floor(((i + 1) * map.length) / width)));
    if (/^#+$/.test(run)) out += "#";
    else if (run.includes(">")) out += ">";
    else if (/^\.+$/.test(run)) out += ".";
    else out += "+";
  }
  return out;
}

export class TransfersView {
  constructor(el, ctx) {
    this.el = el;
    this.ctx = ctx;
    this.transfers = new Map(); // id → transfer
    this.rows = new Map(); // id → {tr, parts}
    this.filter = "all";

    this.filterBar = h(
      "div",
      { class: "segmented", role: "group", "aria-label": "Show transfers" },
      Object.keys(FILTERS).map((f) =>
        h(
          "button",
          {
            type: "button",
            "aria-pressed": f === this.filter ? "true" : "false",
            "data-filter": f,
            "data-testid": `transfers-filter-${f}`,
            onclick: () => this.setFilter(f),
          },
          f,
        ),
      ),
    );
    this.totals = h("p", { class: "summary", "data-testid": "transfers-summary", "aria-live": "polite" });
    // Folder downloads (GET /api/transfers/groups): progress over each folder's files.
    this.groups = new Map(); // group id → group as the node last sent it
    this.groupList = h("ul", { class: "groups", "data-testid": "transfer-groups", "aria-label": "Folder downloads" });
    this.body = h("tbody", { "data-testid": "transfers" });
    this.empty = h("p", { class: "empty", "data-testid": "transfers-empty" }, "No transfers. Search for something and press Download.");
    fill(
      el,
      h("h2", {}, "Transfers"),
      h(
        "div",
        { class: "toolbar" },
        this.filterBar,
        this.totals,
        h("button", { type: "button", class: "small", "data-testid": "transfers-clear", onclick: (e) => this.clearFinished(e.currentTarget) }, "Clear finished"),
      ),
      this.groupList,
      h(
        "table",
        { class: "grid transfers", "aria-label": "Transfers" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col" }, "File"),
            h("th", { scope: "col" }, "From"),
            h("th", { scope: "col", class: "progress-col" }, "Progress"),
            h("th", { scope: "col", class: "num" }, "Speed"),
            h("th", { scope: "col", class: "num" }, "Time left"),
            h("th", { scope: "col" }, "State"),
            h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
          ),
        ),
        this.body,
      ),
      this.empty,
    );
    // Waiting times ("retry in 4s") count down.
    setInterval(() => {
      for (const t of this.transfers.values()) if (t.state === "queued" && t.next_attempt) this.update(t);
    }, 1000);
  }

  setFilter(f) {
    this.filter = f;
    for (const b of this.filterBar.children) b.setAttribute("aria-pressed", b.dataset.filter === f ? "true" : "false");
    this.renderAll();
  }

  async load() {
    const list = await this.ctx.api("GET", "/api/transfers");
    this.transfers = new Map(list.map((t) => [t.id, t]));
    this.renderAll();
    await this.loadGroups();
  }

  async loadGroups() {
    const groups = await this.ctx.api("GET", "/api/transfers/groups");
    this.groups = new Map(groups.map((g) => [g.id, g]));
    this.renderGroups();
  }

  /** Each folder download's progress, from its files as this view knows them. */
  renderGroups() {
    const items = [...this.groups.values()].sort((a, b) => b.id - a.id).map((g) => {
      const files = [...this.transfers.values()].filter((t) => t.group === g.id);
      const size = files.reduce((a, t) => a + t.size, 0) || g.size;
      const got = files.reduce((a, t) => a + (t.state === "done" ? t.size : t.bytes), 0);
      const done = files.filter((t) => t.state === "done").length;
      const failed = files.filter((t) => t.state === "failed").length;
      const frac = size > 0 ? Math.min(1, got / size) : done === files.length ? 1 : 0;
      const state = done === files.length && files.length ? "done" : failed ? `${failed} failed` : "active";
      return h(
        "li",
        { "data-testid": "transfer-group", "data-group": g.id, "data-name": g.name, "data-state": state === "done" ? "done" : "active" },
        h("span", { class: "name" }, `${g.name}\\`),
        " ",
        h("span", { class: "meta" }, `${g.user} · ${networkName(g.network)} · ${done} of ${files.length || g.files} files · ${bytes(got)} of ${bytes(size)}`),
        " ",
        h("progress", { max: 1, value: frac, "aria-label": `Progress of folder ${g.name}` }),
        " ",
        h("span", { class: "pct", "data-testid": "transfer-group-percent" }, `${Math.floor(frac * 100)}%`),
        " ",
        h("span", { class: "path mono", title: "Where its files land" }, g.local_dir),
        " ",
        h("span", { class: "state" }, state),
      );
    });
    fill(this.groupList, items);
    this.groupList.hidden = !items.length;
  }

  onEvent(ev) {
    if (ev.type === "transfer" && ev.transfer.group && !this.groups.has(ev.transfer.group)) this.loadGroups().catch(() => {});
    if (ev.type === "transfer") this.upsert(ev.transfer);
    else if (ev.type === "transfers_removed") this.removed(ev.ids);
    else if (ev.type === "progress") {
      const t = this.transfers.get(ev.id);
      if (!t) return;
      t.bytes = ev.bytes;
      t.size = ev.size;
      t.rate = ev.rate;
      if (t.state === "queued") t.state = "running";
      this.update(t);
    } else if (ev.type === "segments") {
      // A segmented download: its sources and block map (GET /api/transfers/{id}/segments).
      const t = this.transfers.get(ev.id);
      if (!t) return;
      t.segments = ev.segments;
      if (ev.segments.note) t.note = ev.segments.note;
      this.update(t);
    }
  }

  /**
   * A transfer as a POST answered it. While the event stream is open its events are
   * newer (they can even arrive before the answer: queued, running, done, then the
   * answer saying queued), so the answer only adds what is not known yet.
   */
  answered(t) {
    if (!this.transfers.has(t.id) || !this.ctx.stream.isOpen()) this.upsert(t);
  }

  upsert(t) {
    const before = this.transfers.get(t.id);
    if (before && before.state !== t.state) {
      if (t.state === "done") this.ctx.toast(`Downloaded ${t.name}`);
      else if (t.state === "failed") this.ctx.toast(`${t.name} failed: ${t.error}`, "error");
    }
    const had = !!before;
    this.transfers.set(t.id, t);
    if (had && this.rows.has(t.id) && FILTERS[this.filter](t)) this.update(t);
    else this.renderAll();
  }

  renderAll() {
    const list = [...this.transfers.values()].sort((a, b) => b.id - a.id);
    const shown = list.filter(FILTERS[this.filter]);
    this.rows = new Map();
    fill(
      this.body,
      shown.map((t) => {
        const r = this.makeRow(t);
        this.rows.set(t.id, r);
        this.fillRow(r, t);
        return r.tr;
      }),
    );
    this.empty.hidden = list.length > 0;
    this.summarize();
    this.renderGroups();
  }

  update(t) {
    const r = this.rows.get(t.id);
    if (r) this.fillRow(r, t);
    this.summarize();
    if (t.group) this.scheduleGroups();
  }

  /** Progress of many files at once: redraw the folders at most once a frame. */
  scheduleGroups() {
    if (this.groupsPending) return;
    this.groupsPending = true;
    requestAnimationFrame(() => {
      this.groupsPending = false;
      this.renderGroups();
    });
  }

  summarize() {
    const list = [...this.transfers.values()];
    const running = list.filter((t) => t.state === "running");
    const speed = running.reduce((a, t) => a + (t.rate || 0), 0);
    const active = list.filter(FILTERS.active).length;
    this.totals.textContent =
      `${list.length} transfer${list.length === 1 ? "" : "s"}, ${running.length} running` + (speed ? `, ${rate(speed)} in total` : "");
    this.ctx.setBadge("transfers-badge", active);
  }

  makeRow(t) {
    const p = {};
    p.name = h("span", { class: "name", "data-testid": "transfer-name" });
    p.local = h("span", { class: "path mono" });
    p.from = h("td", { "data-testid": "transfer-from" });
    p.bar = h("progress", { max: 1, value: 0, "data-testid": "transfer-progress", "aria-label": `Progress of ${t.name}` });
    p.pct = h("span", { class: "pct", "data-testid": "transfer-percent" });
    p.amount = h("span", { class: "amount", "data-testid": "transfer-bytes" });
    p.speed = h("td", { class: "num", "data-testid": "transfer-speed" });
    p.eta = h("td", { class: "num", "data-testid": "transfer-eta" });
    p.state = h("span", { class: "state", "data-testid": "transfer-state" });
    p.note = h("span", { class: "note", "data-testid": "transfer-note" });
    p.blocks = h("div", { class: "blockmap mono", "data-testid": "transfer-blocks", hidden: true });
    p.sources = h("ul", { class: "segment-sources", "data-testid": "transfer-sources", hidden: true });
    p.actions = h("td", { class: "actions" });
    const tr = h(
      "tr",
      { "data-testid": "transfer-row", "data-id": t.id },
      h("td", { class: "file" }, p.name, p.local),
      p.from,
      h("td", { class: "progress-col" }, p.bar, h("span", { class: "progress-text" }, p.pct, " ", p.amount), p.blocks, p.sources),
      p.speed,
      p.eta,
      h("td", {}, p.state, p.note),
      p.actions,
    );
    return { tr, p, actionsKey: "" };
  }

  fillRow(r, t) {
    const { tr, p } = r;
    tr.dataset.name = t.name;
    tr.dataset.state = t.state;
    p.name.textContent = t.name;
    p.name.title = t.remote_path;
    p.local.textContent = t.state === "done" ? t.local_path : "";
    p.from.textContent = `${t.source} · ${networkName(t.network)}`;
    p.from.title = t.hub;
    const frac = t.size > 0 ? Math.min(1, t.bytes / t.size) : t.state === "done" ? 1 : 0;
    p.bar.value = frac;
    p.bar.dataset.state = t.state;
    p.pct.textContent = `${Math.floor(frac * 100)}%`;
    p.amount.textContent = `${bytes(t.bytes)} of ${bytes(t.size)}`;
    const running = t.state === "running";
    p.speed.textContent = running ? rate(t.rate) : "";
    p.eta.textContent = running && t.rate > 0 ? duration((t.size - t.bytes) / t.rate) : "";
    p.state.textContent = t.state;
    p.state.className = `state s-${t.state}`;
    let note = "";
    if (t.state === "queued" && t.next_attempt) note = `retry ${ago(t.next_attempt)}`;
    // A running attempt is not the last one: its error is not shown.
    if (t.error && t.state !== "done" && t.state !== "running") note = note ? `${note}: ${t.error}` : t.error;
    if (t.retries) note += `${note ? " · " : ""}${t.retries} retr${t.retries === 1 ? "y" : "ies"}`;
    // What happened to a segmented download's sources (a liar dropped, one given up).
    if (t.note) note += `${note ? " · " : ""}${t.note}`;
    p.note.textContent = note;
    const seg = running ? t.segments : null;
    p.blocks.hidden = p.sources.hidden = !seg;
    if (seg) {
      p.blocks.textContent = condense(seg.blocks, 64);
      p.blocks.title = `${seg.blocks.length} blocks of ${bytes(seg.block_size)}: # verified, > being fetched, . missing`;
      p.from.textContent = `${seg.sources.filter((x) => x.state === "downloading").length} of ${seg.sources.length} sources`;
      fill(
        p.sources,
        seg.sources.map((x) =>
          h(
            "li",
            { "data-testid": "transfer-source", "data-state": x.state },
            `${x.user} · ${networkName(x.network)}: ${x.state}, ${bytes(x.bytes)}`,
            x.speed ? `, ${rate(x.speed)}` : "",
          ),
        ),
      );
    }
    p.note.title = t.error || "";
    // Rebuild the buttons only when the set of allowed actions changes (keeps focus).
    const allowed = Object.keys(ACTIONS).filter((a) => ACTIONS[a](t));
    const key = allowed.join(",");
    if (key !== r.actionsKey) {
      r.actionsKey = key;
      fill(
        p.actions,
        allowed.map((a) =>
          h(
            "button",
            {
              type: "button",
              class: `small act-${a}`,
              "data-testid": `transfer-${a}`,
              "aria-label": `${LABEL[a]} ${t.name}`,
              onclick: (e) => this.act(t.id, a, e.currentTarget),
            },
            LABEL[a],
          ),
        ),
        h(
          "button",
          {
            type: "button",
            class: "small act-remove",
            "data-testid": "transfer-remove",
            "aria-label": `Remove ${t.name} from the list`,
            title: "Remove from the list (a finished file stays on disk)",
            onclick: (e) => this.remove(t.id, e.currentTarget),
          },
          "Remove",
        ),
      );
    }
  }

  async clearFinished(btn) {
    btn.disabled = true;
    try {
      const r = await this.ctx.api("POST", "/api/transfers/clear");
      this.removed(r.removed);
    } catch (err) {
      this.ctx.toast(`Clear failed: ${err.message}`, "error");
    } finally {
      btn.disabled = false;
    }
  }

  async remove(id, btn) {
    btn.disabled = true;
    try {
      await this.ctx.api("DELETE", `/api/transfers/${id}`);
      this.removed([id]);
    } catch (err) {
      this.ctx.toast(`Remove failed: ${err.message}`, "error");
      btn.disabled = false;
    }
  }

  /** Transfers gone from the list. */
  removed(ids) {
    let any = false;
    for (const id of ids) any = this.transfers.delete(id) || any;
    if (any) this.renderAll();
  }

  async act(id, action, btn) {
    btn.disabled = true;
    try {
      const t = await this.ctx.api("POST", `/api/transfers/${id}/${action}`);
      this.answered(t);
    } catch (err) {
      this.ctx.toast(`${LABEL[action]} failed: ${err.message}`, "error");
      btn.disabled = false;
    }
  }
}
