// Status: every network of the node and its state (live), the hubs and Soulseek servers
// it is logged in to (added and removed here), transfer counts, shares.

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
    this.addNet = h(
      "select",
      { id: "session-network", "data-testid": "session-network" },
      h("option", { value: "nmdc" }, "Direct Connect hub"),
      h("option", { value: "slsk" }, "Soulseek server"),
    );
    this.addAddress = h("input", { id: "session-address", "data-testid": "session-address", placeholder: "dchub://host:411 or host:port", required: true, autocomplete: "off" });
    this.addLabel = h("input", { id: "session-label", "data-testid": "session-label", placeholder: "optional", pattern: "[A-Za-z0-9._\\-]{1,64}", autocomplete: "off" });
    this.addNick = h("input", { id: "session-nick", "data-testid": "session-nick", placeholder: "default: this node's nick", autocomplete: "off" });
    this.addPassword = h("input", { id: "session-password", "data-testid": "session-password", type: "password", placeholder: "optional", autocomplete: "new-password" });
    this.addForm = h(
      "form",
      { class: "inline-form", "data-testid": "session-add", onsubmit: (e) => this.addSession(e) },
      h("label", { for: "session-network" }, "Add a"),
      this.addNet,
      h("label", { for: "session-address" }, "Address"),
      this.addAddress,
      h("label", { for: "session-label" }, "Label"),
      this.addLabel,
      h("label", { for: "session-nick" }, "Nick"),
      this.addNick,
      h("label", { for: "session-password" }, "Password"),
      this.addPassword,
      h("button", { type: "submit", "data-testid": "session-add-button" }, "Log in"),
    );
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
              h("tr", {}, h("th", { scope: "col" }, "Network"), h("th", { scope: "col" }, "Role"), h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, "Address"), h("th", { scope: "col" }, "Detail"), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions"))),
            ),
            this.netBody,
          ),
          this.addForm,
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
      // A removed session says so once, then is gone.
      if (ev.network.session && ev.network.state === "disabled") this.networks.delete(ev.network.name);
      else this.networks.set(ev.network.name, ev.network);
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
          h(
            "td",
            {},
            n.session
              ? h(
                  "button",
                  {
                    type: "button",
                    class: "small",
                    "data-testid": "session-remove",
                    "aria-label": `Log out of ${networkName(n.name)} and remove it`,
                    onclick: (e) => this.removeSession(n, e.currentTarget),
                  },
                  "Remove",
                )
              : null,
          ),
        ),
      );
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No network is configured.")));
    fill(this.netBody, rows);
    const online = [...this.networks.values()].filter((n) => n.role === "client" && n.state === "online").length;
    this.ctx.title.offline = this.networks.size > 0 && !online;
    this.ctx.updateTitle();
  }
}

StatusView.prototype.addSession = async function (e) {
  e.preventDefault();
  const body = { network: this.addNet.value, address: this.addAddress.value.trim() };
  if (this.addLabel.value.trim()) body.label = this.addLabel.value.trim();
  if (this.addNick.value.trim()) body.nick = this.addNick.value.trim();
  if (this.addPassword.value) body.password = this.addPassword.value;
  const button = this.addForm.querySelector("button");
  button.disabled = true;
  try {
    const n = await this.ctx.api("POST", "/api/networks", body);
    this.networks.set(n.name, n);
    this.renderNetworks();
    this.addAddress.value = "";
    this.addLabel.value = "";
    this.addPassword.value = "";
    this.ctx.toast(`Logging in to ${n.address}`);
  } catch (err) {
    this.ctx.toast(`Cannot add it: ${err.message}`, "error");
  } finally {
    button.disabled = false;
  }
};

StatusView.prototype.removeSession = async function (n, button) {
  button.disabled = true;
  try {
    await this.ctx.api("DELETE", `/api/networks/${encodeURIComponent(n.name)}`);
    this.networks.delete(n.name);
    this.renderNetworks();
    this.ctx.toast(`Logged out of ${n.address}`);
  } catch (err) {
    button.disabled = false;
    this.ctx.toast(`Cannot remove it: ${err.message}`, "error");
  }
};

function fact(label, value, testid) {
  return [h("dt", {}, label), h("dd", { "data-testid": testid || null }, value)];
}
