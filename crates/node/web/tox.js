// Tox: this node's Tox ID (with a copy button), adding a friend by Tox ID, pending friend
// requests (accept/decline) and the friends with their online state. Their chats are in
// the Chat tab as tox:friend:<key>. The profile card exports the identity as a standard
// Tox save (qTox/toxic load it) and imports one (POST /api/tox/profile/export, /import).
// The conferences card creates group chats (c-toxcore 0.2.18's conferences), invites online
// friends, accepts friends' invites and leaves; their chats are tox:conference:<id>. The
// groups card does the same for NGC groups (c-toxcore >= 0.2.19, current qTox); their chats
// are tox:group:<chat id>, and they are not kept across a restart of the node.

import { h, fill, ago } from "./util.js";

const short = (pk) => `${pk.slice(0, 8)}…${pk.slice(-4)}`;

/** The two group-chat cards of the Tox tab, conferences and NGC groups, work alike; each
 * has its API paths, words, name field and test ids (`tox-${key}-…`; tests/web/tox_harness.mjs). */
const KINDS = {
  conf: {
    api: "/api/tox/conferences",
    invites: "/api/tox/conference-invites",
    items: "conferences",
    field: "title",
    word: "conference",
    Word: "Conference",
    item: "tox-conference",
    none: "No conferences.",
    inviteText: (inv) => [" invites you into a conference ", h("code", { class: "summary", title: inv.conference }, short(inv.conference))],
  },
  group: {
    api: "/api/tox/groups",
    invites: "/api/tox/group-invites",
    items: "groups",
    field: "name",
    word: "group",
    Word: "Group",
    item: "tox-group",
    none: "No groups.",
    inviteText: (inv) => [" invites you into the group ", h("strong", { title: inv.group }, inv.name || short(inv.group))],
  },
};

export class ToxView {
  constructor(el, ctx) {
    this.el = el;
    this.ctx = ctx;
    this.status = null; // GET /api/tox
    this.disabled = false;

    this.idEl = h("code", { class: "toxid", "data-testid": "tox-id" }, "…");
    this.copyBtn = h("button", { type: "button", class: "small", "data-testid": "tox-copy", onclick: () => this.copy() }, "Copy");
    this.state = h("span", { class: "summary", "data-testid": "tox-state", role: "status", "aria-live": "polite" });
    this.addId = h("input", {
      id: "tox-add-id",
      required: true,
      autocomplete: "off",
      spellcheck: "false",
      pattern: "[0-9A-Fa-f]{76}",
      title: "76 hexadecimal digits",
      placeholder: "76 hex digits",
      "data-testid": "tox-add-id",
    });
    this.addMsg = h("input", { id: "tox-add-message", autocomplete: "off", maxlength: 1016, placeholder: "Hi, it's me", "data-testid": "tox-add-message" });
    this.addForm = h(
      "form",
      { class: "tox-add", "data-testid": "tox-add", onsubmit: (e) => this.add(e) },
      h("label", { for: "tox-add-id" }, "Tox ID"),
      this.addId,
      h("label", { for: "tox-add-message" }, "Message"),
      this.addMsg,
      h("button", { type: "submit", class: "primary", "data-testid": "tox-add-submit" }, "Send friend request"),
    );
    this.requests = h("ul", { class: "tox-list", "data-testid": "tox-requests", "aria-label": "Friend requests" });
    this.friends = h("ul", { class: "tox-list", "data-testid": "tox-friends", "aria-label": "Tox friends" });
    this.exportPass = h("input", { id: "tox-export-pass", type: "password", autocomplete: "new-password", placeholder: "optional", "data-testid": "tox-export-pass" });
    this.exportForm = h(
      "form",
      { class: "tox-add", "data-testid": "tox-export", onsubmit: (e) => this.exportProfile(e) },
      h("label", { for: "tox-export-pass" }, "Passphrase"),
      this.exportPass,
      h("button", { type: "submit", "data-testid": "tox-export-submit" }, "Export .tox"),
    );
    this.importFile = h("input", { id: "tox-import-file", type: "file", required: true, accept: ".tox,application/octet-stream", "data-testid": "tox-import-file" });
    this.importPass = h("input", { id: "tox-import-pass", type: "password", autocomplete: "off", placeholder: "if encrypted", "data-testid": "tox-import-pass" });
    this.importForm = h(
      "form",
      { class: "tox-add", "data-testid": "tox-import", onsubmit: (e) => this.importProfile(e) },
      h("label", { for: "tox-import-file" }, "Save file"),
      this.importFile,
      h("label", { for: "tox-import-pass" }, "Passphrase"),
      this.importPass,
      h("button", { type: "submit", "data-testid": "tox-import-submit" }, "Import"),
    );
    this.chats = { conf: null, group: null }; // GET /api/tox/conferences, /api/tox/groups
    this.timers = {};
    this.confTitle = h("input", { id: "tox-conf-title", autocomplete: "off", maxlength: 128, placeholder: "optional", "data-testid": "tox-conf-title" });
    this.confForm = h(
      "form",
      { class: "tox-add", "data-testid": "tox-conf-new", onsubmit: (e) => this.create("conf", e) },
      h("label", { for: "tox-conf-title" }, "Title"),
      this.confTitle,
      h("button", { type: "submit", "data-testid": "tox-conf-create" }, "Create conference"),
    );
    this.confInvites = h("ul", { class: "tox-list", "data-testid": "tox-conf-invites", "aria-label": "Conference invites" });
    this.confList = h("ul", { class: "tox-list", "data-testid": "tox-conferences", "aria-label": "Conferences" });
    this.groupName = h("input", { id: "tox-group-name", autocomplete: "off", maxlength: 48, placeholder: "omnipeer group", "data-testid": "tox-group-name" });
    this.groupForm = h(
      "form",
      { class: "tox-add", "data-testid": "tox-group-new", onsubmit: (e) => this.create("group", e) },
      h("label", { for: "tox-group-name" }, "Name"),
      this.groupName,
      h("button", { type: "submit", "data-testid": "tox-group-create" }, "Create group"),
    );
    this.groupInvites = h("ul", { class: "tox-list", "data-testid": "tox-group-invites", "aria-label": "Group invites" });
    this.groupList = h("ul", { class: "tox-list", "data-testid": "tox-groups", "aria-label": "Groups" });
    // Per card: its name input, its invites list and its list.
    this.cards = { conf: [this.confTitle, this.confInvites, this.confList], group: [this.groupName, this.groupInvites, this.groupList] };
    fill(
      el,
      h("h2", {}, "Tox"),
      h(
        "div",
        { class: "cards" },
        h(
          "section",
          { class: "card wide", "aria-labelledby": "tox-id-title" },
          h("h3", { id: "tox-id-title" }, "Your Tox ID"),
          h("p", { class: "summary" }, "Give it to a friend: they add it in qTox, toxic or another omnipeer."),
          h("div", { class: "toolbar" }, this.idEl, this.copyBtn),
          this.state,
        ),
        h("section", { class: "card", "aria-labelledby": "tox-add-title" }, h("h3", { id: "tox-add-title" }, "Add a friend"), this.addForm),
        h("section", { class: "card", "aria-labelledby": "tox-req-title" }, h("h3", { id: "tox-req-title" }, "Friend requests"), this.requests),
        h("section", { class: "card wide", "aria-labelledby": "tox-friends-title" }, h("h3", { id: "tox-friends-title" }, "Friends"), this.friends),
        h(
          "section",
          { class: "card wide", "aria-labelledby": "tox-conf-heading" },
          h("h3", { id: "tox-conf-heading" }, "Conferences"),
          h("p", { class: "summary" }, "Group chats with friends (and their friends). Lines go to whoever is in the conference at that moment."),
          this.confForm,
          this.confInvites,
          this.confList,
        ),
        h(
          "section",
          { class: "card wide", "aria-labelledby": "tox-group-heading" },
          h("h3", { id: "tox-group-heading" }, "Groups"),
          h("p", { class: "summary" }, "NGC group chats (current qTox and toxic). Lines go to whoever is in the group at that moment; groups are not kept when the node restarts."),
          this.groupForm,
          this.groupInvites,
          this.groupList,
        ),
        h(
          "section",
          { class: "card", "aria-labelledby": "tox-profile-title" },
          h("h3", { id: "tox-profile-title" }, "Profile"),
          h("p", { class: "summary" }, "Export this identity and its friends for qTox or toxic, or import their profile (NAME.tox)."),
          this.exportForm,
          this.importForm,
        ),
      ),
    );
  }

  async load() {
    try {
      this.status = await this.ctx.api("GET", "/api/tox");
      this.disabled = false;
    } catch (err) {
      if (err.status !== 503) throw err;
      this.disabled = true;
      this.status = null;
    }
    if (!this.disabled) await Promise.all([this.loadChats("conf"), this.loadChats("group")]);
    this.render();
  }

  onEvent(ev) {
    if (!this.status) return;
    if (ev.type === "tox_friend") {
      const list = this.status.friends;
      const i = list.findIndex((f) => f.pk === ev.friend.pk);
      if (ev.removed) {
        if (i >= 0) list.splice(i, 1);
      } else if (i >= 0) list[i] = ev.friend;
      else list.push(ev.friend);
      this.render();
    } else if (ev.type === "tox_request") {
      const list = this.status.requests;
      const i = list.findIndex((r) => r.pk === ev.request.pk);
      if (i >= 0) list.splice(i, 1);
      if (ev.pending) list.push(ev.request);
      this.render();
      this.updateBadge();
    } else if (ev.type === "tox_conference" || ev.type === "tox_conference_invite") {
      this.reloadSoon("conf");
    } else if (ev.type === "tox_group" || ev.type === "tox_group_invite") {
      this.reloadSoon("group");
    } else if (ev.type === "network" && ev.network.name === "tox_client") {
      this.status.online = ev.network.state === "online";
      this.render();
    }
  }

  updateBadge() {
    const n = this.status ? this.status.requests.length : 0;
    this.ctx.setBadge("tox-badge", n);
  }

  async copy() {
    const id = this.status?.id;
    if (!id) return;
    try {
      await navigator.clipboard.writeText(id);
      this.ctx.toast("Tox ID copied");
    } catch {
      // No clipboard access (plain http off localhost): select it for Ctrl-C.
      const r = document.createRange();
      r.selectNodeContents(this.idEl);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(r);
      this.ctx.toast("Press Ctrl-C to copy the selected Tox ID");
    }
  }

  async add(e) {
    e.preventDefault();
    const id = this.addId.value.trim();
    if (!id) return;
    try {
      const f = await this.ctx.api("POST", "/api/tox/friends", { id, message: this.addMsg.value.trim() });
      this.addId.value = "";
      this.addMsg.value = "";
      this.onEvent({ type: "tox_friend", friend: f, removed: false });
      this.ctx.toast(f.online ? "Added" : "Friend request sent; they show up online once they accept");
    } catch (err) {
      this.ctx.toast(`Not added: ${err.message}`, "error");
    }
  }

  async exportProfile(e) {
    e.preventDefault();
    try {
      const r = await this.ctx.api("POST", "/api/tox/profile/export", { passphrase: this.exportPass.value });
      const bin = atob(r.data);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      const a = h("a", { href: URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" })), download: "omnipeer.tox" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      this.exportPass.value = "";
      this.ctx.toast(r.encrypted ? "Encrypted profile exported" : "Profile exported (not encrypted)");
    } catch (err) {
      this.ctx.toast(`Not exported: ${err.message}`, "error");
    }
  }

  async importProfile(e) {
    e.preventDefault();
    const file = this.importFile.files[0];
    if (!file) return;
    if (!confirm("Replace this node's Tox identity and friends with the imported profile? The current one is kept as tox.profile.bak; the Tox client stops until the node restarts.")) return;
    try {
      const bytes = new Uint8Array(await file.arrayBuffer());
      let bin = "";
      for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      const r = await this.ctx.api("POST", "/api/tox/profile/import", { data: btoa(bin), passphrase: this.importPass.value });
      this.importFile.value = "";
      this.importPass.value = "";
      this.ctx.toast(`Imported ${r.id.slice(0, 8)}… with ${r.friends} friends: restart the node to go online as it`);
    } catch (err) {
      this.ctx.toast(`Not imported: ${err.message}`, "error");
    }
  }

  async answer(pk, accept) {
    try {
      if (accept) {
        const f = await this.ctx.api("POST", `/api/tox/requests/${pk}/accept`);
        this.onEvent({ type: "tox_friend", friend: f, removed: false });
      } else {
        await this.ctx.api("DELETE", `/api/tox/requests/${pk}`);
      }
      this.onEvent({ type: "tox_request", request: { pk }, pending: false });
    } catch (err) {
      this.ctx.toast(err.message, "error");
    }
  }

  async remove(f) {
    const name = f.nickname || short(f.pk);
    if (!confirm(`Remove ${name} from your Tox friends? The chat history stays.`)) return;
    try {
      await this.ctx.api("DELETE", `/api/tox/friends/${f.pk}`);
      this.onEvent({ type: "tox_friend", friend: f, removed: true });
    } catch (err) {
      this.ctx.toast(err.message, "error");
    }
  }

  // A file inside a shared folder or the downloads folder, offered to an online friend;
  // it then shows in the Transfers tab's uploads.
  async sendFile(f) {
    const name = f.nickname || short(f.pk);
    const path = prompt(`Send a file to ${name}: its full path (inside a shared folder or the downloads folder)`);
    if (!path || !path.trim()) return;
    try {
      const u = await this.ctx.api("POST", `/api/tox/friends/${f.pk}/files`, { path: path.trim() });
      this.ctx.toast(`Offered ${u.file} to ${name}: it shows under uploads in Transfers`);
    } catch (err) {
      this.ctx.toast(`Cannot send to ${name}: ${err.message}`, "error");
    }
  }

  chat(f) {
    this.ctx.go("chat");
    this.ctx.views.chat.open(f.chat);
  }

  render() {
    if (this.disabled || !this.status) {
      this.idEl.textContent = this.disabled ? "The Tox client is disabled ([tox].enabled = false)." : "…";
      this.copyBtn.disabled = true;
      fill(this.requests);
      fill(this.friends);
      return;
    }
    const s = this.status;
    this.idEl.textContent = s.id;
    this.copyBtn.disabled = false;
    this.state.textContent = s.online
      ? `Online: friends can find you. Listening on ${s.address}.`
      : `Not announced yet (looking for other Tox nodes). Listening on ${s.address}.`;
    this.state.dataset.online = s.online ? "true" : "false";
    const reqs = s.requests.map((r) =>
      h(
        "li",
        { "data-testid": "tox-request", "data-pk": r.pk },
        h("code", { title: r.pk }, short(r.pk)),
        " ",
        h("span", { class: "summary" }, ago(r.received)),
        h("blockquote", {}, r.message),
        h(
          "div",
          { class: "toolbar" },
          h("button", { type: "button", class: "small primary", "data-testid": "tox-accept", onclick: () => this.answer(r.pk, true) }, "Accept"),
          h("button", { type: "button", class: "small", "data-testid": "tox-decline", onclick: () => this.answer(r.pk, false) }, "Decline"),
        ),
      ),
    );
    fill(this.requests, reqs.length ? reqs : h("li", { class: "empty" }, "No pending requests."));
    const friends = [...s.friends]
      .sort((a, b) => Number(b.online) - Number(a.online) || (a.nickname || a.pk).localeCompare(b.nickname || b.pk))
      .map((f) =>
        h(
          "li",
          { "data-testid": "tox-friend", "data-pk": f.pk, "data-online": f.online ? "true" : "false" },
          h("span", { class: `dot ${f.online ? "on" : "off"}`, role: "img", "aria-label": f.online ? "online" : "offline" }),
          " ",
          h("strong", {}, f.nickname || short(f.pk)),
          " ",
          f.nickname ? h("code", { class: "summary", title: f.pk }, short(f.pk)) : null,
          " ",
          h(
            "span",
            { class: "summary" },
            f.online ? "online" : f.request_sent ? "friend request sent, waiting for them" : `offline (${f.progress})`,
          ),
          h(
            "div",
            { class: "toolbar" },
            h("button", { type: "button", class: "small", "data-testid": "tox-chat", onclick: () => this.chat(f) }, "Chat"),
            h(
              "button",
              { type: "button", class: "small", "data-testid": "tox-send-file", disabled: !f.online, title: f.online ? "" : "The friend is offline", onclick: () => this.sendFile(f) },
              "Send file",
            ),
            h("button", { type: "button", class: "small", "data-testid": "tox-remove", onclick: () => this.remove(f) }, "Remove"),
          ),
        ),
      );
    fill(this.friends, friends.length ? friends : h("li", { class: "empty" }, "No Tox friends yet: send a request, or give your Tox ID to someone."));
    this.renderChats("conf");
    this.renderChats("group");
    this.updateBadge();
  }

  /** Card `k`'s chats and invites, again. */
  async loadChats(k) {
    try {
      this.chats[k] = await this.ctx.api("GET", KINDS[k].api);
    } catch {
      this.chats[k] = null;
    }
  }

  /** A burst of events reloads card `k` once. */
  reloadSoon(k) {
    clearTimeout(this.timers[k]);
    this.timers[k] = setTimeout(() => this.loadChats(k).then(() => this.renderChats(k)), 300);
  }

  friendName(pk) {
    const f = this.status?.friends.find((x) => x.pk === pk);
    return (f && f.nickname) || short(pk);
  }

  async create(k, e) {
    e.preventDefault();
    const kind = KINDS[k];
    const input = this.cards[k][0];
    try {
      const c = await this.ctx.api("POST", kind.api, { [kind.field]: input.value.trim() });
      input.value = "";
      await this.loadChats(k);
      this.renderChats(k);
      this.ctx.toast(`${kind.Word} ${c[kind.field] || c.id.slice(0, 8)} created: invite friends into it`);
    } catch (err) {
      this.ctx.toast(`Not created: ${err.message}`, "error");
    }
  }

  async inviteInto(k, c, select) {
    const pk = select.value;
    if (!pk) return;
    try {
      await this.ctx.api("POST", `${KINDS[k].api}/${c.id}/invite`, { friend: pk });
      this.ctx.toast(`Invited ${this.friendName(pk)}`);
    } catch (err) {
      this.ctx.toast(`Not invited: ${err.message}`, "error");
    }
  }

  async acceptInvite(k, inv) {
    try {
      const c = await this.ctx.api("POST", `${KINDS[k].invites}/${inv.invite}/accept`);
      await this.loadChats(k);
      this.renderChats(k);
      this.ctx.go("chat");
      this.ctx.views.chat.open(c.chat);
    } catch (err) {
      this.ctx.toast(`Not joined: ${err.message}`, "error");
    }
  }

  async leave(k, c) {
    const kind = KINDS[k];
    if (!confirm(`Leave the ${kind.word} ${c[kind.field] || c.id.slice(0, 8)}? Its chat history stays.`)) return;
    try {
      await this.ctx.api("DELETE", `${kind.api}/${c.id}`);
      await this.loadChats(k);
      this.renderChats(k);
    } catch (err) {
      this.ctx.toast(err.message, "error");
    }
  }

  renderChats(k) {
    const kind = KINDS[k];
    const [, inviteList, list] = this.cards[k];
    const all = this.chats[k];
    if (!all || !this.status) {
      fill(inviteList);
      fill(list);
      return;
    }
    const invites = all.invites.map((inv) =>
      h(
        "li",
        { "data-testid": `tox-${k}-invite`, "data-invite": String(inv.invite) },
        this.friendName(inv.friend),
        ...kind.inviteText(inv),
        h("div", { class: "toolbar" }, h("button", { type: "button", class: "small primary", "data-testid": `tox-${k}-accept`, onclick: () => this.acceptInvite(k, inv) }, "Join")),
      ),
    );
    fill(inviteList, ...invites);
    const online = this.status.friends.filter((f) => f.online);
    const items = all[kind.items].map((c) => {
      const others = c.peers.filter((p) => !p.ours);
      const select = h(
        "select",
        { "aria-label": "Friend to invite", "data-testid": `tox-${k}-friend` },
        h("option", { value: "" }, online.length ? "Invite a friend…" : "No friend online"),
        ...online.map((f) => h("option", { value: f.pk }, f.nickname || short(f.pk))),
      );
      return h(
        "li",
        { "data-testid": kind.item, "data-id": c.id },
        h("strong", {}, c[kind.field] || `${kind.word} ${short(c.id)}`),
        " ",
        h("span", { class: "summary" }, others.length ? `with ${others.map((p) => p.name || short(p.pk)).join(", ")}` : c.connected ? "nobody else yet" : "joining…"),
        h(
          "div",
          { class: "toolbar" },
          h("button", { type: "button", class: "small", "data-testid": `tox-${k}-chat`, onclick: () => this.chat(c) }, "Chat"),
          select,
          h("button", { type: "button", class: "small", "data-testid": `tox-${k}-invite-btn`, onclick: () => this.inviteInto(k, c, select) }, "Invite"),
          h("button", { type: "button", class: "small", "data-testid": `tox-${k}-leave`, onclick: () => this.leave(k, c) }, "Leave"),
        ),
      );
    });
    fill(list, items.length ? items : h("li", { class: "empty" }, kind.none));
  }
}
