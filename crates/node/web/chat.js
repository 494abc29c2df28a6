// Chat: the hub's main chat, Soulseek rooms, private messages, Tox friends and DCC chats; live
// lines from the event stream and a send box.

import { h, fill, clock, bytes, networkName } from "./util.js";

/** How often the user list of an open hub or room chat is read again (ms). */
const USERS_EVERY = 5000;

/** Pages of 1000 lines read to catch a chat up before showing only its newest lines. */
const CATCH_UP_PAGES = 20;
const KIND_NAME = { hub: "hub chat", room: "room", pm: "private", friend: "friend", conference: "conference", group: "group", chat: "DCC chat" };

function parseId(id) {
  // NETWORK[@SESSION]:KIND[:NAME]; SESSION labels a hub or server other than the
  // [nmdc_client] / [slsk_client] one.
  const [head, kind, ...rest] = id.split(":");
  const [network, session] = head.split("@");
  return { id, network, session: session || "", kind, name: rest.join(":") };
}

function title(c) {
  if (c.kind === "hub") return "Hub main chat";
  if (c.kind === "room") return `#${c.name}`;
  // A Tox friend whose nickname we do not know yet: its key, shortened.
  if (c.kind === "friend" && /^[0-9A-Fa-f]{64}$/.test(c.name)) return `${c.name.slice(0, 8)}…${c.name.slice(-4)}`;
  return c.name;
}

export class ChatView {
  constructor(el, ctx) {
    this.el = el;
    this.ctx = ctx;
    this.chats = new Map(); // id → chat info
    this.messages = new Map(); // id → array of messages, oldest first (only chats opened)
    this.unread = new Map(); // id → count
    this.pending = new Map(); // id → [{text, el}] sent hub/room lines not yet echoed
    this.current = null;

    this.list = h("ul", { class: "chatlist", "data-testid": "chat-list", "aria-label": "Conversations" });
    this.newKind = h(
      "select",
      { id: "chat-new-kind", "data-testid": "chat-new-kind" },
      h("option", { value: "slsk:pm" }, "Soulseek private message"),
      h("option", { value: "nmdc:pm" }, "NMDC private message"),
      h("option", { value: "slsk:room" }, "Soulseek room"),
    );
    this.newName = h("input", { id: "chat-new-name", required: true, autocomplete: "off", "data-testid": "chat-new-name", placeholder: "user or room" });
    const newForm = h(
      "form",
      { class: "chat-new", "data-testid": "chat-new", onsubmit: (e) => this.openNew(e) },
      h("h3", {}, "New conversation"),
      h("label", { for: "chat-new-kind" }, "Kind"),
      this.newKind,
      h("label", { for: "chat-new-name" }, "With (user) or room name"),
      this.newName,
      h("button", { type: "submit" }, "Open"),
    );
    this.header = h("h3", { id: "chat-title", "data-testid": "chat-title" }, "No conversation");
    this.log = h("ol", {
      class: "chatlog",
      role: "log",
      "aria-live": "polite",
      "aria-labelledby": "chat-title",
      "data-testid": "chat-log",
      tabindex: 0,
    });
    this.input = h("input", {
      id: "chat-input",
      autocomplete: "off",
      maxlength: 2000,
      disabled: true,
      "data-testid": "chat-input",
      placeholder: "Say something…",
    });
    this.sendBtn = h("button", { type: "submit", class: "primary", disabled: true, "data-testid": "chat-send" }, "Send");
    this.sendForm = h(
      "form",
      { class: "chat-send", onsubmit: (e) => this.send(e) },
      h("label", { for: "chat-input", class: "sr-only" }, "Message"),
      this.input,
      this.sendBtn,
    );
    this.usersTitle = h("h3", { id: "chat-users-title" }, "Users");
    this.usersFilter = h("input", { type: "search", "data-testid": "chat-users-filter", placeholder: "Filter", "aria-label": "Filter users", oninput: () => this.renderUsers() });
    this.usersList = h("ul", { class: "userlist", "data-testid": "chat-users", "aria-labelledby": "chat-users-title" });
    this.usersPane = h("aside", { class: "chat-users", "aria-labelledby": "chat-users-title", hidden: true }, this.usersTitle, this.usersFilter, this.usersList);
    this.users = [];
    this.usersTimer = null;
    fill(
      el,
      h("h2", { class: "sr-only" }, "Chat"),
      h(
        "div",
        { class: "chat" },
        h("aside", { class: "chat-side", "aria-label": "Conversations" }, h("h3", {}, "Conversations"), this.list, newForm),
        h("section", { class: "chat-main", "aria-labelledby": "chat-title" }, this.header, this.log, this.sendForm),
        this.usersPane,
      ),
    );
  }

  shown(mayFocus) {
    if (this.current) this.markRead(this.current);
    if (!this.current && this.chats.size) this.open(this.defaultChat());
    if (mayFocus && this.current) this.input.focus();
  }

  defaultChat() {
    if (this.chats.has("nmdc:hub")) return "nmdc:hub";
    return [...this.chats.keys()][0];
  }

  async load() {
    const list = await this.ctx.api("GET", "/api/chats");
    for (const c of list) this.chats.set(c.id, c);
    this.renderList();
    if (this.current) await this.fetchMessages(this.current);
    else if (this.ctx.current() === "chat" && this.chats.size) this.open(this.defaultChat());
  }

  async fetchMessages(id) {
    const q = `/api/chats/messages?chat=${encodeURIComponent(id)}`;
    const have0 = this.messages.get(id) || [];
    let msgs = null;
    if (have0.length) {
      // Catch up from the last line shown (after a resync or a reconnect), a page at a
      // time; after CATCH_UP_PAGES pages, start again from the newest lines.
      let after = have0[have0.length - 1].id;
      let got = [];
      for (let i = 0; i < CATCH_UP_PAGES; i++) {
        const page = await this.ctx.api("GET", `${q}&after=${after}&limit=1000`);
        got = got.concat(page);
        if (page.length < 1000) {
          msgs = got;
          break;
        }
        after = page[page.length - 1].id;
      }
      if (msgs === null) this.messages.set(id, []);
    }
    if (msgs === null) msgs = await this.ctx.api("GET", `${q}&limit=500`);
    // Lines that arrived by event while the request ran are kept.
    const have = this.messages.get(id) || [];
    const byId = new Map(msgs.map((m) => [m.id, m]));
    for (const m of have) if (!byId.has(m.id)) byId.set(m.id, m);
    this.messages.set(id, [...byId.values()].sort((a, b) => a.id - b.id));
    if (id === this.current) this.renderLog();
  }

  async open(id) {
    if (!id) return;
    if (!this.chats.has(id)) {
      const p = parseId(id);
      this.chats.set(id, { ...p, last: null });
    }
    this.current = id;
    this.markRead(id);
    const c = this.chats.get(id);
    this.header.textContent = `${title(c)} · ${networkName(c.network, c.session)} ${KIND_NAME[c.kind] || c.kind}`;
    this.input.disabled = false;
    this.sendBtn.disabled = false;
    this.input.setAttribute("aria-label", `Message to ${title(c)}`);
    this.renderList();
    this.renderLog();
    this.loadUsers();
    try {
      await this.fetchMessages(id);
    } catch (err) {
      this.ctx.toast(`Cannot read ${title(c)}: ${err.message}`, "error");
    }
  }

  /** The user list of the open chat, when it is a hub's main chat or a room; read again every USERS_EVERY while shown. */
  async loadUsers() {
    clearTimeout(this.usersTimer);
    const c = this.current && this.chats.get(this.current);
    const listed = c && (c.kind === "hub" || c.kind === "room" || c.kind === "conference" || c.kind === "group");
    this.usersPane.hidden = !listed;
    this.el.querySelector(".chat").classList.toggle("with-users", !!listed);
    if (!listed) return;
    const id = this.current;
    try {
      const users = await this.ctx.api("GET", `/api/users?chat=${encodeURIComponent(id)}`);
      if (this.current !== id) return;
      this.users = users;
      this.renderUsers();
    } catch (err) {
      if (this.current === id) {
        this.users = [];
        fill(this.usersList, h("li", { class: "empty" }, err.message));
      }
    }
    if (this.current === id) this.usersTimer = setTimeout(() => this.ctx.current() === "chat" && this.loadUsers(), USERS_EVERY);
  }

  renderUsers() {
    const c = this.chats.get(this.current);
    if (!c) return;
    const f = this.usersFilter.value.trim().toLowerCase();
    const shown = this.users.filter((u) => !f || u.nick.toLowerCase().includes(f) || (u.description || "").toLowerCase().includes(f));
    this.usersTitle.textContent = `Users (${this.users.length})`;
    const prefix = c.session ? `${c.network}@${c.session}` : c.network;
    fill(
      this.usersList,
      shown.slice(0, 500).map((u) => {
        const shared = u.share_size !== undefined ? bytes(u.share_size) : u.files !== undefined ? `${u.files} files` : "";
        const marks = [u.op ? "op" : null, u.away ? "away" : null, u.relation || null].filter(Boolean);
        return h(
          "li",
          { "data-testid": "chat-user", "data-nick": u.nick, class: u.relation ? `rel-${u.relation}` : null },
          h("span", { class: "nick" }, u.nick),
          marks.length ? h("span", { class: "marks" }, ` ${marks.join(" · ")}`) : null,
          h("span", { class: "shared" }, shared),
          u.description ? h("span", { class: "desc", title: u.description }, u.description) : null,
          // Conference peers (Tox): no private message, browse or marks.
          c.network === "tox" ? null : h(
            "span",
            { class: "user-actions" },
            h("button", { type: "button", class: "small", "data-testid": "user-pm", "aria-label": `Private message to ${u.nick}`, onclick: () => this.open(`${prefix}:pm:${u.nick}`).then(() => this.input.focus()) }, "Message"),
            this.ctx.browseUser
              ? h("button", { type: "button", class: "small", "data-testid": "user-browse", "aria-label": `Browse the files of ${u.nick}`, onclick: () => this.ctx.browseUser(c.network, c.session || "", u.nick) }, "Browse")
              : null,
            h(
              "button",
              { type: "button", class: "small", "data-testid": "user-buddy", "aria-pressed": u.relation === "buddy" ? "true" : "false", onclick: () => this.mark(u, u.relation === "buddy" ? null : "buddy") },
              u.relation === "buddy" ? "Unbuddy" : "Buddy",
            ),
            h(
              "button",
              { type: "button", class: "small", "data-testid": "user-ignore", "aria-pressed": u.relation === "ignored" ? "true" : "false", onclick: () => this.mark(u, u.relation === "ignored" ? null : "ignored") },
              u.relation === "ignored" ? "Unignore" : "Ignore",
            ),
          ),
        );
      }),
      shown.length > 500 ? h("li", { class: "empty" }, `${shown.length - 500} more: filter to find them`) : null,
    );
  }

  async mark(u, relation) {
    try {
      await this.ctx.api("PUT", "/api/contacts", { network: u.network, name: u.nick, relation });
      u.relation = relation || undefined;
      this.renderUsers();
      this.ctx.toast(relation ? `${u.nick} is ${relation === "buddy" ? "a buddy" : "ignored"} now` : `${u.nick} is no longer marked`);
    } catch (err) {
      this.ctx.toast(`Cannot mark ${u.nick}: ${err.message}`, "error");
    }
  }

  openNew(e) {
    e.preventDefault();
    const name = this.newName.value.trim();
    if (!name) return;
    this.newName.value = "";
    this.open(`${this.newKind.value}:${name}`).then(() => this.input.focus());
  }

  markRead(id) {
    if (this.ctx.current() !== "chat") return;
    this.unread.delete(id);
    this.updateBadge();
    this.renderList();
  }

  updateBadge() {
    let n = 0;
    for (const v of this.unread.values()) n += v;
    this.ctx.setBadge("chat-badge", n);
    this.ctx.title.unread = n;
    this.ctx.updateTitle();
  }

  onEvent(ev) {
    if (ev.type === "tox_friend" || ev.type === "chat_delivered") return this.onToxEvent(ev);
    if (ev.type === "tox_conference" || ev.type === "tox_group") {
      // A conference or NGC group joined, created, renamed or left: the list shows its title and state.
      clearTimeout(this.reloadTimer);
      this.reloadTimer = setTimeout(() => this.load().catch(() => {}), 500);
      return;
    }
    if (ev.type === "network" && ev.network.role === "client" && ev.network.state === "online") {
      // A hub or server session (re)connected: its main chat and rooms are listed now.
      clearTimeout(this.reloadTimer);
      this.reloadTimer = setTimeout(() => this.load().catch(() => {}), 500);
      return;
    }
    if (ev.type === "chat_open") {
      // A DCC chat opened or closed: listed (even before its first line) with its state.
      const c = this.chats.get(ev.chat) || { ...parseId(ev.chat), last: null };
      c.online = ev.open;
      this.chats.set(ev.chat, c);
      this.renderList();
      return;
    }
    if (ev.type !== "chat") return;
    const m = ev.message;
    let c = this.chats.get(m.chat);
    if (!c) {
      c = { ...parseId(m.chat), last: null };
      this.chats.set(m.chat, c);
    }
    const msgs = this.messages.get(m.chat);
    if (msgs && msgs.some((x) => x.id === m.id)) return; // seen (the answer to a send, then its event)
    c.last = m;
    if (msgs) msgs.push(m);
    if (m.own) this.settlePending(m);
    const visible = m.chat === this.current && this.ctx.current() === "chat" && !document.hidden;
    if (!visible && !m.own) this.unread.set(m.chat, (this.unread.get(m.chat) || 0) + 1);
    this.updateBadge();
    this.renderList();
    if (m.chat === this.current && msgs) this.appendLine(m);
  }

  /** A hub/room line we sent came back from the hub: drop its "sending" placeholder. */
  settlePending(m) {
    const list = this.pending.get(m.chat);
    if (!list) return;
    const i = list.findIndex((p) => p.text === m.text);
    if (i >= 0) {
      list[i].el.remove();
      list.splice(i, 1);
    }
  }

  async send(e) {
    e.preventDefault();
    const text = this.input.value.trim();
    const id = this.current;
    if (!text || !id) return;
    this.input.value = "";
    try {
      const m = await this.ctx.api("POST", "/api/chats/messages", { chat: id, text });
      if (m.id === 0) {
        // Stored when the hub/server echoes it: show it as sending until then, unless
        // the echo came first.
        const echoed = (this.messages.get(id) || []).some((x) => x.own && x.text === text && x.ts >= m.ts - 2);
        if (!echoed) {
          const el = this.line({ ...m, pending: true });
          if (!this.pending.has(id)) this.pending.set(id, []);
          this.pending.get(id).push({ text, el });
          // No echo after a while: say so (the line may not have reached anyone).
          setTimeout(() => {
            if (el.isConnected || (this.pending.get(id) || []).some((p) => p.el === el)) {
              const note = el.querySelector(".note");
              if (note) note.textContent = " (no echo from the server yet)";
            }
          }, 15000);
          if (id === this.current) this.log.append(el), this.scroll(true);
        }
      } else {
        this.onEvent({ type: "chat", message: m });
      }
    } catch (err) {
      this.input.value = text;
      this.ctx.toast(`Not sent: ${err.message}`, "error");
    }
  }

  /** Tox: a friend's name/online state changed, or an own line was delivered. */
  onToxEvent(ev) {
    if (ev.type === "tox_friend") {
      const f = ev.friend;
      const c = this.chats.get(f.chat) || { ...parseId(f.chat), last: null };
      c.name = f.nickname || f.pk;
      c.online = ev.removed ? false : f.online;
      this.chats.set(f.chat, c);
      this.renderList();
      if (f.chat === this.current) this.header.textContent = `${title(c)} · Tox friend${c.online ? " (online)" : " (offline)"}`;
      return;
    }
    const m = (this.messages.get(ev.chat) || []).find((x) => x.id === ev.id);
    if (!m) return;
    m.delivered = true;
    const el = ev.chat === this.current ? this.log.querySelector(`[data-id="${ev.id}"]`) : null;
    if (el) el.replaceWith(this.line(m));
  }

  renderList() {
    const order = { hub: 0, room: 1, pm: 2, friend: 3, conference: 4, group: 4, chat: 5 };
    const items = [...this.chats.values()]
      .sort((a, b) => order[a.kind] - order[b.kind] || a.network.localeCompare(b.network) || a.name.localeCompare(b.name))
      .map((c) => {
        const n = this.unread.get(c.id) || 0;
        return h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: "chat-item",
              "data-testid": "chat-item",
              "data-chat": c.id,
              "aria-current": c.id === this.current ? "true" : null,
              onclick: () => this.open(c.id).then(() => this.input.focus()),
            },
            h("span", { class: `net n-${c.network}` }, networkName(c.network, c.session)),
            " ",
            typeof c.online === "boolean"
              ? h("span", { class: `dot ${c.online ? "on" : "off"}`, role: "img", "data-testid": "chat-online", "aria-label": c.online ? "online" : "offline" })
              : null,
            h("span", { class: "chat-name" }, title(c)),
            n ? h("span", { class: "badge", "aria-label": `${n} unread` }, String(n)) : null,
            c.last ? h("span", { class: "last" }, `${c.last.nick}: ${c.last.text}`) : null,
          ),
        );
      });
    if (!items.length) items.push(h("li", { class: "empty" }, "No conversations yet."));
    fill(this.list, items);
  }

  line(m) {
    return h(
      "li",
      {
        class: `line${m.own ? " own" : ""}${m.pending ? " pending" : ""}`,
        "data-testid": "chat-line",
        "data-own": m.own ? "true" : "false",
        "data-id": m.id,
      },
      h("time", { datetime: new Date(m.ts * 1000).toISOString() }, clock(m.ts)),
      h("span", { class: "nick", "data-testid": "chat-nick" }, m.nick),
      h("span", { class: "text", "data-testid": "chat-text" }, m.text),
      m.pending ? h("span", { class: "note" }, " (sending…)") : null,
      m.own && m.delivered === true ? h("span", { class: "delivered", "data-testid": "chat-delivered", title: "Delivered", "aria-label": "delivered" }, " ✓") : null,
      m.own && m.delivered === false ? h("span", { class: "note", "data-testid": "chat-undelivered" }, " (not delivered yet)") : null,
    );
  }

  renderLog() {
    const msgs = this.messages.get(this.current) || [];
    const pend = (this.pending.get(this.current) || []).map((p) => p.el);
    fill(this.log, msgs.map((m) => this.line(m)), pend);
    if (!msgs.length && !pend.length) this.log.append(h("li", { class: "empty" }, "No lines yet."));
    this.scroll(true);
  }

  appendLine(m) {
    const stick = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    this.log.querySelector(".empty")?.remove();
    const first = this.log.querySelector(".pending");
    const el = this.line(m);
    if (first) this.log.insertBefore(el, first);
    else this.log.append(el);
    this.scroll(stick);
  }

  scroll(force) {
    if (force) this.log.scrollTop = this.log.scrollHeight;
  }
}
