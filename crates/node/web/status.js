// Status: every network of the node and its state (live), transfer counts, shares.

import { h, fill, bytes, networkName } from "./util.js";

const STATE_TEXT = { online: "online", offline: "offline", starting: "starting", disabled: "disabled" };

export class StatusView {
  constructor(el, ctx) {
    this.el = el;
    this.ctx = ctx;
    this.data = null;
    this.networks = new Map();
    this.timer = null;

    this.nodeBox = h("dl", { class: "facts", "data-testid": "node-facts" });
    this.netBody = h("tbody", { "data-testid": "networks" });
    this.countsBox = h("dl", { class: "facts counts", "data-testid": "transfer-counts" });
    this.sharesBox = h("dl", { class: "facts", "data-testid": "share-summary" });
    fill(
      el,
      h("h2", {}, "Status"),
      h(
        "div",
        { class: "cards" },
        h(
          "section",
          { class: "card wide", "aria-labelledby": "net-title" },
          h("h3", { id: "net-title" }, "Networks"),
          h(
            "table",
            { class: "grid", "aria-labelledby": "net-title" },
            h(
              "thead",
              {},
              h("tr", {}, h("th", { scope: "col" }, "Network"), h("th", { scope: "col" }, "Role"), h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, "Address"), h("th", { scope: "col" }, "Detail")),
            ),
            this.netBody,
          ),
        ),
        h("section", { class: "card", "aria-labelledby": "node-title" }, h("h3", { id: "node-title" }, "This node"), this.nodeBox),
        h(
          "section",
          { class: "card", "aria-labelledby": "counts-title" },
          h("h3", { id: "counts-title" }, h("a", { href: "#transfers" }, "Transfers")),
          this.countsBox,
        ),
        h("section", { class: "card", "aria-labelledby": "shares-title" }, h("h3", { id: "shares-title" }, h("a", { href: "#shares" }, "Shares")), this.sharesBox),
      ),
    );
  }

  async load() {
    const st = await this.ctx.api("GET", "/api/status");
    this.data = st;
    this.networks = new Map(st.networks.map((n) => [n.name, n]));
    this.render();
  }

  /** Re-read the counts a little after things change, not on every event. */
  soon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load().catch(() => {}), 800);
  }

  onEvent(ev) {
    if (ev.type === "network") {
      this.networks.set(ev.network.name, ev.network);
      this.renderNetworks();
    } else if (ev.type === "transfer" || ev.type === "shares") {
      this.soon();
    }
  }

  render() {
    const st = this.data;
    this.renderNetworks();
    fill(
      this.nodeBox,
      fact("Nick", st.nick, "node-nick"),
      fact("Version", st.version),
      fact("Data folder", st.data_dir),
      fact("API", st.api),
    );
    fill(this.countsBox, Object.entries(st.transfers).map(([k, v]) => fact(k, String(v), `count-${k}`)));
    fill(
      this.sharesBox,
      fact("Folders", st.shares.folders.join(", ") || "none"),
      fact("Files", String(st.shares.files), "share-files-count"),
      fact("Size", bytes(st.shares.bytes)),
    );
  }

  renderNetworks() {
    const rows = [...this.networks.values()]
      .sort((a, b) => (a.role === b.role ? a.name.localeCompare(b.name) : a.role === "client" ? -1 : 1))
      .map((n) =>
        h(
          "tr",
          { "data-testid": "network-row", "data-network": n.name, "data-state": n.state },
          h("th", { scope: "row" }, networkName(n.name)),
          h("td", {}, n.role),
          h("td", {}, h("span", { class: `state s-${n.state}`, "data-testid": "network-state" }, STATE_TEXT[n.state] || n.state)),
          h("td", { class: "mono" }, n.address),
          h("td", { class: "detail" }, n.detail),
        ),
      );
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No network is configured.")));
    fill(this.netBody, rows);
    const online = [...this.networks.values()].filter((n) => n.role === "client" && n.state === "online").length;
    this.ctx.title.offline = this.networks.size > 0 && !online;
    this.ctx.updateTitle();
  }
}

function fact(label, value, testid) {
  return [h("dt", {}, label), h("dd", { "data-testid": testid || null }, value)];
}
