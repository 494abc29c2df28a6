// Shares: the folders this node shares, their totals, the file list (paged) and rescan.

import { h, fill, bytes, clock } from "./util.js";

const PAGE = 200;

export class SharesView {
  constructor(el, ctx) {
    this.el = el;
    this.ctx = ctx;
    this.offset = 0;
    this.files = [];
    this.rescanning = false;

    this.facts = h("dl", { class: "facts", "data-testid": "shares-facts" });
    this.rescanBtn = h("button", { type: "button", "data-testid": "shares-rescan", onclick: () => this.rescan() }, "Rescan now");
    this.note = h("p", { class: "summary", role: "status", "aria-live": "polite", "data-testid": "shares-status" });
    this.filter = h("input", { id: "shares-filter", type: "search", placeholder: "filter this page", "data-testid": "shares-filter", oninput: () => this.renderFiles() });
    this.body = h("tbody", { "data-testid": "share-files" });
    this.prev = h("button", { type: "button", class: "small", onclick: () => this.page(-1), "data-testid": "shares-prev" }, "‹ Previous");
    this.next = h("button", { type: "button", class: "small", onclick: () => this.page(1), "data-testid": "shares-next" }, "Next ›");
    this.pageInfo = h("span", { class: "summary" });
    fill(
      el,
      h("h2", {}, "Shares"),
      h("section", { class: "card" }, this.facts, h("div", { class: "toolbar" }, this.rescanBtn, this.note)),
      h("div", { class: "toolbar" }, h("label", { for: "shares-filter" }, "Filter"), this.filter, this.prev, this.pageInfo, this.next),
      h(
        "table",
        { class: "grid", "aria-label": "Shared files" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Path"), h("th", { scope: "col", class: "num" }, "Size"), h("th", { scope: "col" }, "TTH"))),
        this.body,
      ),
    );
  }

  async load() {
    const [s, files] = await Promise.all([
      this.ctx.api("GET", "/api/shares"),
      this.ctx.api("GET", `/api/shares/files?offset=${this.offset}&limit=${PAGE}`),
    ]);
    this.summary = s;
    this.files = files;
    this.render();
  }

  onEvent(ev) {
    if (ev.type !== "shares") return;
    if (this.rescanning) {
      this.rescanning = false;
      this.rescanBtn.disabled = false;
      this.note.textContent = `Rescanned: ${ev.files} file${ev.files === 1 ? "" : "s"}, ${bytes(ev.bytes)}.`;
    }
    this.load().catch(() => {});
  }

  async rescan() {
    this.rescanBtn.disabled = true;
    try {
      await this.ctx.api("POST", "/api/shares/rescan");
      this.rescanning = true;
      this.note.textContent = "Rescanning… (files that did not change are not hashed again)";
    } catch (err) {
      this.rescanBtn.disabled = false;
      this.ctx.toast(`Rescan failed: ${err.message}`, "error");
    }
  }

  page(dir) {
    this.offset = Math.max(0, this.offset + dir * PAGE);
    this.load().catch((err) => this.ctx.toast(err.message, "error"));
  }

  render() {
    const s = this.summary;
    fill(
      this.facts,
      h("dt", {}, "Folders"),
      h("dd", { "data-testid": "shares-folders" }, s.folders.length ? h("ul", {}, s.folders.map((f) => h("li", { class: "mono" }, f))) : "none"),
      h("dt", {}, "Files"),
      h("dd", { "data-testid": "shares-count" }, String(s.files)),
      h("dt", {}, "Size"),
      h("dd", {}, bytes(s.bytes)),
      s.hashed !== undefined ? [h("dt", {}, "Hashed"), h("dd", {}, `${s.hashed} of ${s.files}`)] : null,
      s.scanned ? [h("dt", {}, "Last scan"), h("dd", {}, clock(s.scanned))] : null,
    );
    this.renderFiles();
  }

  renderFiles() {
    const words = this.filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = this.files.filter((f) => words.every((w) => f.path.toLowerCase().includes(w)));
    fill(
      this.body,
      shown.map((f) =>
        h(
          "tr",
          { "data-testid": "share-file" },
          h("td", { class: "mono" }, f.path),
          h("td", { class: "num", title: `${f.size} bytes` }, bytes(f.size)),
          h("td", { class: "mono tth" }, f.tth || ""),
        ),
      ),
    );
    if (!shown.length) this.body.append(h("tr", {}, h("td", { colspan: 3, class: "empty" }, this.files.length ? "Nothing matches." : "Nothing shared yet: put files in a share folder.")));
    const total = this.summary?.files ?? 0;
    this.prev.disabled = this.offset === 0;
    this.next.disabled = this.offset + this.files.length >= total;
    this.pageInfo.textContent = total ? `${this.offset + 1}–${this.offset + this.files.length} of ${total}` : "";
  }
}
