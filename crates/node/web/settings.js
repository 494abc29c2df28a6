// Settings: everything that changes while the node runs (PUT /api/settings, kept by the
// node over its TOML file): nick and description, share folders, downloads and
// incomplete folders, listen addresses, passwords and transfer limits, saved with one
// button, all or nothing (a refused value is shown beside its field). Also facts about
// the node, the API token kept in this browser, and this page's own preferences.

import { h, fill, bytes } from "./util.js";
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

    // One container per section of the node's settings (filled by render()).
    this.sections = {};
    const section = (id, title, note) => {
      this.sections[id] = h("div", { class: "stack", "data-testid": `settings-${id}` });
      return h(
        "section",
        { class: "card settings-section", "aria-labelledby": `set-${id}` },
        h("h3", { id: `set-${id}` }, title),
        note ? h("p", { class: "summary" }, note) : null,
        this.sections[id],
      );
    };
    // The share folders being edited (saved with the rest).
    this.folders = [];
    this.folderInput = h("input", { id: "share-folder-input", type: "text", placeholder: "/full/path/to/a/folder", "data-testid": "share-folder-input" });
    this.folderList = h("ul", { class: "folder-list", "data-testid": "share-folders" });
    this.shareTotals = h("p", { class: "summary", "data-testid": "settings-share-totals", role: "status", "aria-live": "polite" });
    this.sessionList = h("ul", { class: "folder-list", "data-testid": "settings-sessions" });
    this.saveNote = h("p", { class: "summary", role: "status", "aria-live": "polite", "data-testid": "settings-save-note" });
    const shares = section("shares", "Shares", "Folders shared on every network. Each must exist; after Save they are rescanned and served at once.");
    this.sections.shares.append(
      this.folderList,
      h(
        "div",
        { class: "toolbar" },
        h("label", { for: "share-folder-input" }, "Add a folder"),
        this.folderInput,
        h("button", { type: "button", "data-testid": "share-folder-add", onclick: () => this.addFolder() }, "Add"),
        h("button", { type: "button", "data-testid": "settings-rescan", onclick: () => this.rescan() }, "Rescan now"),
      ),
      this.shareTotals,
    );
    const network = section("network", "Network", "Listen addresses of the clients: a change logs that client in again on the new address.");
    network.append(
      h("h4", {}, "Hubs and servers to join"),
      this.sessionList,
      h("p", { class: "summary" }, "Add and remove hubs and Soulseek servers on the ", h("a", { href: "#status" }, "Status"), " page (POST /api/networks)."),
    );
    const form = h(
      "form",
      { class: "settings-form", novalidate: true, onsubmit: (e) => (e.preventDefault(), this.save()) },
      h(
        "div",
        { class: "cards" },
        section("identity", "Identity", "A nick change logs every hub and server session in again with the new nick (a session with a nick of its own keeps it). DCC and Tox take a new nick at the next start."),
        shares,
        section("folders", "Folders", "Downloads queued from now on go to the new folder; a download under way keeps its place."),
        network,
        section("passwords", "Passwords", "Never shown: only whether one is set. Type a new one to change it."),
        section("transfers", "Transfers", "In force at once."),
      ),
      h("div", { class: "toolbar settings-actions" }, h("button", { type: "submit", "data-testid": "settings-save" }, "Save"), this.saveNote),
    );

    fill(
      el,
      h("h2", {}, "Settings"),
      h("p", { class: "summary" }, "Kept by the node across restarts, over its configuration file; Reset goes back to the file's value. Save applies everything at once, or nothing if a value is refused."),
      form,
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
            "Everything not under Settings comes from the node's configuration file (",
            h("code", {}, "omnipeer config default"),
            " prints every key); change it there and restart the node.",
          ),
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

  /** Show the settings `list` (GET or PUT /api/settings) in their sections. */
  render(list) {
    this.settings = list;
    this.errors = {};
    const by = (sec) => list.filter((s) => s.section === sec && s.type !== "folders");
    for (const sec of ["identity", "folders", "passwords", "transfers"]) fill(this.sections[sec], by(sec).map((s) => this.row(s)));
    // Network: the addresses first, then the sessions list kept at the end.
    const network = this.sections.network;
    for (const old of network.querySelectorAll(".setting")) old.remove();
    network.prepend(...by("network").map((s) => this.row(s)));
    const folders = list.find((s) => s.key === "share_folders");
    if (folders) {
      this.folders = [...(folders.value || [])];
      this.folderSetting = folders;
      this.renderFolders();
    }
  }

  /** One setting: label, input, where its value comes from, its error. */
  row(s) {
    const id = `setting-${s.key}`;
    let input;
    if (s.type === "number") {
      input = h("input", { id, type: "number", min: s.min, max: s.max, step: 1, required: true, value: String(s.value) });
    } else if (s.type === "password") {
      input = h("input", { id, type: "password", autocomplete: "new-password", placeholder: s.set ? "(set: type to change)" : "(not set)" });
    } else if (s.type === "read_only") {
      input = h("input", { id, type: "text", readonly: true, value: String(s.value ?? "") });
    } else {
      input = h("input", { id, type: "text", value: String(s.value ?? ""), spellcheck: "false" });
    }
    input.dataset.testid = id;
    input.dataset.key = s.key;
    const err = h("p", { class: "error setting-error", "data-testid": `setting-error-${s.key}`, role: "alert", hidden: true });
    this.errors[s.key] = err;
    let origin;
    if (s.type === "read_only") origin = s.restart_needed ? `${s.file_key} — restart needed` : `${s.file_key} in the configuration file; restart needed to change it`;
    else if (s.type === "password") origin = s.overridden ? "set here " : s.set ? "from the file " : "";
    else if (s.overridden) origin = `set here (file: ${show(s.config)}) `;
    else origin = s.file_key ? "from the file " : "";
    return h(
      "div",
      { class: "setting", "data-setting": s.key },
      h("label", { for: id }, s.about),
      input,
      h(
        "span",
        { class: "summary" },
        origin,
        s.overridden ? h("button", { type: "button", class: "small", "data-testid": `setting-reset-${s.key}`, onclick: () => this.putSettings({ [s.key]: null }) }, "Reset") : null,
      ),
      err,
    );
  }

  renderFolders() {
    const s = this.folderSetting;
    fill(
      this.folderList,
      this.folders.length
        ? this.folders.map((f) =>
            h(
              "li",
              { "data-testid": "share-folder", "data-folder": f },
              h("span", { class: "mono" }, f),
              " ",
              h("button", { type: "button", class: "small", "data-testid": "share-folder-remove", onclick: () => ((this.folders = this.folders.filter((x) => x !== f)), this.renderFolders()) }, "Remove"),
            ),
          )
        : h("li", { class: "summary" }, "No folder shared."),
    );
    const err = h("p", { class: "error setting-error", "data-testid": "setting-error-share_folders", role: "alert", hidden: true });
    this.errors.share_folders = err;
    const changed = JSON.stringify(this.folders) !== JSON.stringify(s?.value || []);
    this.folderList.append(
      h(
        "li",
        { class: "summary" },
        changed ? "Not saved yet. " : s?.overridden ? `Set here (file: ${show(s.config)}) ` : "From the file. ",
        s?.overridden ? h("button", { type: "button", class: "small", "data-testid": "setting-reset-share_folders", onclick: () => this.putSettings({ share_folders: null }) }, "Reset") : null,
      ),
      err,
    );
  }

  addFolder() {
    const f = this.folderInput.value.trim();
    if (!f) return;
    if (!this.folders.includes(f)) this.folders.push(f);
    this.folderInput.value = "";
    this.renderFolders();
  }

  async rescan() {
    try {
      await this.ctx.api("POST", "/api/shares/rescan");
      this.shareTotals.textContent = "Rescanning…";
    } catch (err) {
      this.ctx.toast(`Not rescanned: ${err.message}`, "error");
    }
  }

  /** What the form changes: each field that differs from the value in force. */
  change() {
    const change = {};
    for (const input of this.el.querySelectorAll(".settings-form input[data-key]")) {
      const s = this.settings.find((x) => x.key === input.dataset.key);
      if (!s || s.type === "read_only") continue;
      if (s.type === "password") {
        if (input.value !== "") change[s.key] = input.value;
      } else if (s.type === "number") {
        const v = Number(input.value);
        if (v !== s.value) change[s.key] = input.value.trim() === "" ? input.value : v;
      } else if (input.value !== String(s.value ?? "")) change[s.key] = input.value;
    }
    const pending = this.folderInput.value.trim();
    if (pending && !this.folders.includes(pending)) this.folders.push(pending);
    this.folderInput.value = "";
    if (this.folderSetting && JSON.stringify(this.folders) !== JSON.stringify(this.folderSetting.value || [])) change.share_folders = [...this.folders];
    return change;
  }

  async save() {
    const change = this.change();
    if (!Object.keys(change).length) return this.ctx.toast("Nothing changed.");
    await this.putSettings(change);
  }

  async putSettings(change) {
    for (const e of Object.values(this.errors || {})) e.hidden = true;
    try {
      const list = await this.ctx.api("PUT", "/api/settings", change);
      this.render(list);
      const restart = list.filter((s) => s.restart_needed).map((s) => s.key);
      this.saveNote.textContent = restart.length ? `Saved; restart the node for: ${restart.join(", ")}.` : "Saved and in force.";
      this.ctx.toast("Settings saved.");
      this.loadFacts().catch(() => {});
    } catch (err) {
      // "key: why" names the setting refused: shown beside it; nothing was changed.
      const key = Object.keys(this.errors || {}).find((k) => err.message.startsWith(`${k}: `));
      if (key) {
        const e = this.errors[key];
        e.textContent = err.message.slice(key.length + 2);
        e.hidden = false;
        e.closest(".setting, .settings-section")?.scrollIntoView?.({ block: "nearest" });
      }
      this.saveNote.textContent = "Nothing was changed.";
      this.ctx.toast(`Not saved: ${err.message}`, "error");
    }
  }

  renderSessions(nets) {
    const sessions = (nets || []).filter((n) => n.role === "client" && n.session);
    fill(
      this.sessionList,
      sessions.length
        ? sessions.map((n) =>
            h("li", { "data-testid": "settings-session", "data-network": n.name }, h("span", { class: "mono" }, n.name), ` ${n.address} — ${n.state}${n.detail ? ` (${n.detail})` : ""}`),
          )
        : h("li", { class: "summary" }, "No hub or server session."),
    );
  }

  renderTotals(files, size) {
    this.shareTotals.textContent = `Shared: ${files} file${files === 1 ? "" : "s"}, ${bytes(size)}.`;
  }

  onEvent(ev) {
    if (ev.type === "shares") this.renderTotals(ev.files, ev.bytes);
    if (ev.type === "network" && !this.netTimer) {
      // A burst of state changes (a nick change logs every session in again) reads once.
      this.netTimer = setTimeout(() => {
        this.netTimer = null;
        this.ctx.api("GET", "/api/networks").then((n) => this.renderSessions(n), () => {});
      }, 500);
    }
  }

  async load() {
    this.ctx
      .api("GET", "/api/settings")
      .then((list) => this.render(list))
      .catch((err) => fill(this.sections.identity, h("p", { class: "summary" }, `Cannot read the settings: ${err.message}`)));
    await this.loadFacts();
    this.renderToken();
  }

  async loadFacts() {
    const [st, doc] = await Promise.all([this.ctx.api("GET", "/api/status"), this.ctx.api("GET", "/api/openapi.json").catch(() => null)]);
    this.renderSessions(st.networks);
    this.renderTotals(st.shares.files, st.shares.bytes);
    const top = document.getElementById("nick");
    if (top) top.textContent = st.nick;
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

/** A configuration value as text. */
function show(v) {
  if (Array.isArray(v)) return v.join(", ") || "none";
  if (v === "" || v === null || v === undefined) return "empty";
  return String(v);
}
