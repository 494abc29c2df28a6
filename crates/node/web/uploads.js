// Uploads: what this node sends to others on every network, with the queue (place of each
// waiting peer) and live progress. Read-only: peers start and end their uploads.

import { h, fill, bytes, rate, duration, networkName } from "./util.js";

// Upload networks: NMDC and Soulseek clients, and gets from the DCC server.
function net(n) {
  return n === "dcc" ? "DCC" : networkName(n);
}

export class UploadsView {
  constructor(el, ctx) {
    this.el = el;
    this.ctx = ctx;
    this.uploads = new Map(); // id → upload
    this.rows = new Map(); // id → {tr, p}
    this.totals = h("p", { class: "summary", "data-testid": "uploads-summary", "aria-live": "polite" });
    this.body = h("tbody", { "data-testid": "uploads" });
    this.empty = h("p", { class: "empty", "data-testid": "uploads-empty" }, "Nobody is downloading from this node.");
    fill(
      el,
      h("h2", {}, "Uploads"),
      h("div", { class: "toolbar" }, this.totals),
      h(
        "table",
        { class: "grid uploads", "aria-label": "Uploads" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col" }, "File"),
            h("th", { scope: "col" }, "To"),
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
  }

  async load() {
    const list = await this.ctx.api("GET", "/api/uploads");
    this.uploads = new Map(list.map((u) => [u.id, u]));
    this.renderAll();
  }

  onEvent(ev) {
    if (ev.type !== "upload") return;
    const u = ev.upload;
    const before = this.uploads.get(u.id);
    this.uploads.set(u.id, u);
    if (before && this.rows.has(u.id) && before.state === u.state) this.update(u);
    else this.renderAll();
  }

  // Active ones first (running, starting, then the queue in order), then finished, newest first.
  order() {
    const rank = { running: 0, starting: 1, queued: 2 };
    return [...this.uploads.values()].sort((a, b) => {
      const ra = rank[a.state] ?? 3;
      const rb = rank[b.state] ?? 3;
      if (ra !== rb) return ra - rb;
      if (a.state === "queued") return a.position - b.position;
      return b.updated - a.updated || b.id - a.id;
    });
  }

  renderAll() {
    const list = this.order();
    this.rows = new Map();
    fill(
      this.body,
      list.map((u) => {
        const r = this.makeRow(u);
        this.rows.set(u.id, r);
        this.fillRow(r, u);
        return r.tr;
      }),
    );
    this.empty.hidden = list.length > 0;
    this.summarize();
  }

  update(u) {
    const r = this.rows.get(u.id);
    if (r) this.fillRow(r, u);
    this.summarize();
  }

  summarize() {
    const list = [...this.uploads.values()];
    const running = list.filter((u) => u.state === "running");
    const queued = list.filter((u) => u.state === "queued").length;
    const speed = running.reduce((a, u) => a + (u.rate || 0), 0);
    this.totals.textContent =
      `${running.length} running, ${queued} queued` + (speed ? `, ${rate(speed)} in total` : "");
    this.ctx.setBadge("uploads-badge", running.length + queued);
  }

  makeRow(u) {
    const p = {};
    p.name = h("span", { class: "name", "data-testid": "upload-name" });
    p.to = h("td", { "data-testid": "upload-to" });
    p.bar = h("progress", { max: 1, value: 0, "data-testid": "upload-progress", "aria-label": `Progress of ${u.file}` });
    p.pct = h("span", { class: "pct", "data-testid": "upload-percent" });
    p.amount = h("span", { class: "amount", "data-testid": "upload-bytes" });
    p.speed = h("td", { class: "num", "data-testid": "upload-speed" });
    p.eta = h("td", { class: "num", "data-testid": "upload-eta" });
    p.state = h("span", { class: "state", "data-testid": "upload-state" });
    p.note = h("span", { class: "note", "data-testid": "upload-note" });
    p.actions = h("td", { class: "actions" });
    const tr = h(
      "tr",
      { "data-testid": "upload-row", "data-id": u.id },
      h("td", { class: "file" }, p.name),
      p.to,
      h("td", { class: "progress-col" }, p.bar, h("span", { class: "progress-text" }, p.pct, " ", p.amount)),
      p.speed,
      p.eta,
      h("td", {}, p.state, p.note),
      p.actions,
    );
    return { tr, p };
  }

  fillRow(r, u) {
    const { tr, p } = r;
    tr.dataset.state = u.state;
    tr.dataset.user = u.user;
    const name = u.file.split(/[\\/]/).pop();
    tr.dataset.name = name;
    p.name.textContent = name;
    p.name.title = u.file;
    p.to.textContent = `${u.user} · ${net(u.network)}`;
    // Progress over the whole file: a resume starts at `start`.
    const held = u.start + u.bytes;
    const frac = u.size > 0 ? Math.min(1, held / u.size) : u.state === "done" ? 1 : 0;
    p.bar.value = frac;
    p.bar.dataset.state = u.state;
    p.pct.textContent = `${Math.floor(frac * 100)}%`;
    p.amount.textContent = `${bytes(held)} of ${bytes(u.size)}`;
    const running = u.state === "running";
    p.speed.textContent = running ? rate(u.rate) : "";
    p.eta.textContent = running && u.rate > 0 ? duration((u.size - held) / u.rate) : "";
    p.state.textContent = u.state === "queued" ? `queued #${u.position}` : u.state;
    p.state.className = `state s-${u.state}`;
    let note = "";
    if (u.state === "starting") note = "a slot is held for the peer";
    if (u.state === "stopped") note = "stopped by the peer";
    if (u.start > 0) note = `resumed at ${bytes(u.start)}`;
    if (u.error) note = u.error;
    p.note.textContent = note;
    p.note.title = u.error || "";
    const active = ["queued", "starting", "running"].includes(u.state);
    const key = `${active}`;
    if (r.actionsKey !== key) {
      r.actionsKey = key;
      fill(
        p.actions,
        active
          ? h("button", { type: "button", class: "small", "data-testid": "upload-cancel", "aria-label": `Cancel the upload of ${u.file} to ${u.user}`, onclick: (e) => this.cancel(u, e.currentTarget) }, "Cancel")
          : null,
        ["nmdc", "slsk"].includes(u.network.split("@")[0])
          ? h("button", { type: "button", class: "small", "data-testid": "upload-ban", "aria-label": `Ban ${u.user} from uploads`, onclick: (e) => this.ban(u, e.currentTarget) }, "Ban user")
          : null,
      );
    }
  }

  async cancel(u, btn) {
    btn.disabled = true;
    try {
      await this.ctx.api("POST", `/api/uploads/${u.id}/cancel`);
    } catch (err) {
      btn.disabled = false;
      this.ctx.toast(`Cancel failed: ${err.message}`, "error");
    }
  }

  async ban(u, btn) {
    btn.disabled = true;
    try {
      await this.ctx.api("PUT", "/api/contacts", { network: u.network.split("@")[0], name: u.user, relation: "banned" });
      this.ctx.toast(`${u.user} is banned from uploads`);
    } catch (err) {
      btn.disabled = false;
      this.ctx.toast(`Ban failed: ${err.message}`, "error");
    }
  }
}
