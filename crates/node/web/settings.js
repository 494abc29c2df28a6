// Settings: the transfer settings that change while the node runs (PUT /api/settings,
// kept by the node over its TOML file), facts about the node, the API token kept in this
// browser, and this page's own preferences.

import { h, fill } from "./util.js";
import { getToken } from "./api.js";

const THEME_KEY = "omnipeer.theme";

function applyTheme(t) {
  document.documentElement.dataset.theme = t;
}

try {
  applyTheme(localStorage.getItem(THEME_KEY) || "auto");
} catch {
  applyTheme("auto");
}

export class SettingsView {
  constructor(el, ctx) {
    this.el = el;
    this.ctx = ctx;
    this.nodeFacts = h("dl", { class: "facts", "data-testid": "settings-node" });
    this.apiFacts = h("dl", { class: "facts", "data-testid": "settings-api" });

    this.tokenInput = h("input", { id: "settings-token", type: "password", autocomplete: "off", "data-testid": "settings-token" });
    this.tokenState = h("p", { class: "summary", "data-testid": "settings-token-state" });
    const tokenForm = h(
      "form",
      {
        class: "stack",
        onsubmit: (e) => {
          e.preventDefault();
          const t = this.tokenInput.value.trim();
          this.tokenInput.value = "";
          this.ctx.tokenChanged(t);
          this.renderToken();
          this.ctx.toast(t ? "Token saved in this browser." : "Token forgotten.");
        },
      },
      h("label", { for: "settings-token" }, "API token (kept in this browser; empty to forget it)"),
      this.tokenInput,
      h("div", {}, h("button", { type: "submit" }, "Save token")),
      this.tokenState,
    );

    this.theme = h(
      "select",
      {
        id: "settings-theme",
        "data-testid": "settings-theme",
        onchange: () => {
          applyTheme(this.theme.value);
          try {
            localStorage.setItem(THEME_KEY, this.theme.value);
          } catch {
            // not kept
          }
        },
      },
      ["auto", "light", "dark"].map((t) => h("option", { value: t, selected: document.documentElement.dataset.theme === t }, t)),
    );

    const notifyOn = (() => {
      try {
        return localStorage.getItem(ctx.notifyKey) === "on";
      } catch {
        return false;
      }
    })();
    this.notifyBox = h("input", {
      id: "settings-notify",
      type: "checkbox",
      checked: notifyOn,
      "data-testid": "settings-notify",
      onchange: () => this.setNotify(this.notifyBox.checked),
    });
    this.notifyNote = h("p", { class: "summary", "data-testid": "settings-notify-note" });

    this.transferRows = h("div", { class: "stack", "data-testid": "settings-transfers" });
    const transferForm = h(
      "form",
      { class: "stack", onsubmit: (e) => (e.preventDefault(), this.saveTransfers()) },
      this.transferRows,
      h("div", {}, h("button", { type: "submit", "data-testid": "settings-save" }, "Save")),
    );

    fill(
      el,
      h("h2", {}, "Settings"),
      h(
        "div",
        { class: "cards" },
        h(
          "section",
          { class: "card", "aria-labelledby": "set-node" },
          h("h3", { id: "set-node" }, "Node"),
          this.nodeFacts,
          h(
            "p",
            { class: "summary" },
            "Everything else comes from the node's configuration file (",
            h("code", {}, "omnipeer config default"),
            " prints every key); change it there and restart the node.",
          ),
        ),
        h(
          "section",
          { class: "card", "aria-labelledby": "set-transfers" },
          h("h3", { id: "set-transfers" }, "Transfers"),
          h("p", { class: "summary" }, "In force at once and kept by the node across restarts, over its configuration file. Reset goes back to the file's value."),
          transferForm,
        ),
        h("section", { class: "card", "aria-labelledby": "set-api" }, h("h3", { id: "set-api" }, "API"), this.apiFacts, tokenForm),
        h(
          "section",
          { class: "card", "aria-labelledby": "set-page" },
          h("h3", { id: "set-page" }, "This page"),
          h("div", { class: "stack" }, h("label", { for: "settings-theme" }, "Colours"), this.theme),
          h(
            "div",
            { class: "stack" },
            h("label", { class: "check" }, this.notifyBox, " Desktop notifications for private messages and finished or failed downloads, while this page is in the background"),
            this.notifyNote,
          ),
        ),
      ),
    );
  }

  renderTransfers(list) {
    this.settings = list;
    fill(
      this.transferRows,
      list.map((s) =>
        h(
          "div",
          { class: "setting" },
          h("label", { for: `setting-${s.key}` }, s.about),
          h("input", {
            id: `setting-${s.key}`,
            type: "number",
            min: s.min,
            max: s.max,
            step: 1,
            required: true,
            value: String(s.value),
            "data-testid": `setting-${s.key}`,
            "data-key": s.key,
          }),
          h(
            "span",
            { class: "summary" },
            s.overridden ? `set here (file: ${s.config}) ` : "from the file ",
            s.overridden
              ? h("button", { type: "button", "data-testid": `setting-reset-${s.key}`, onclick: () => this.putSettings({ [s.key]: null }) }, "Reset")
              : null,
          ),
        ),
      ),
    );
  }

  async saveTransfers() {
    const change = {};
    for (const input of this.transferRows.querySelectorAll("input[data-key]")) {
      const s = this.settings.find((x) => x.key === input.dataset.key);
      const v = Number(input.value);
      if (s && v !== s.value) change[s.key] = v;
    }
    if (!Object.keys(change).length) return this.ctx.toast("Nothing changed.");
    await this.putSettings(change);
  }

  async putSettings(change) {
    try {
      this.renderTransfers(await this.ctx.api("PUT", "/api/settings", change));
      this.ctx.toast("Settings saved.");
    } catch (err) {
      this.ctx.toast(`Not saved: ${err.message}`, "error");
    }
  }

  async load() {
    this.ctx
      .api("GET", "/api/settings")
      .then((list) => this.renderTransfers(list))
      .catch((err) => fill(this.transferRows, h("p", { class: "summary" }, `Cannot read the settings: ${err.message}`)));
    const [st, doc] = await Promise.all([this.ctx.api("GET", "/api/status"), this.ctx.api("GET", "/api/openapi.json").catch(() => null)]);
    const fact = (k, v, id) => [h("dt", {}, k), h("dd", { "data-testid": id || null, class: "mono" }, v)];
    fill(
      this.nodeFacts,
      fact("Nick", st.nick, "settings-nick"),
      fact("Version", st.version),
      fact("Data folder", st.data_dir),
      fact("Share folders", st.shares.folders.join(", ") || "none"),
    );
    const routes = doc?.paths ? Object.keys(doc.paths).length : null;
    fill(
      this.apiFacts,
      fact("Listening on", st.api),
      fact("Description", h("a", { href: "/api/openapi.json" }, routes === null ? "OpenAPI document" : `OpenAPI document (${routes} routes)`)),
    );
    this.renderToken();
  }

  async setNotify(on) {
    if (on && typeof Notification !== "undefined" && Notification.permission !== "granted") {
      const p = await Notification.requestPermission().catch(() => "denied");
      if (p !== "granted") {
        on = false;
        this.notifyBox.checked = false;
        this.notifyNote.textContent = "The browser did not allow notifications for this page.";
      }
    }
    if (on && typeof Notification === "undefined") {
      on = false;
      this.notifyBox.checked = false;
      this.notifyNote.textContent = "This browser has no desktop notifications.";
    }
    if (on) this.notifyNote.textContent = "";
    try {
      localStorage.setItem(this.ctx.notifyKey, on ? "on" : "off");
    } catch {
      // not kept
    }
  }

  renderToken() {
    this.tokenState.textContent = getToken()
      ? "A token is kept in this browser and sent with every request."
      : "No token kept: this node has not asked for one.";
  }
}
