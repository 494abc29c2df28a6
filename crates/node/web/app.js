// The omnipeer web UI: tabs, the token dialog, the event stream and the views.

import { api, EventStream, onTokenNeeded, setToken, getToken } from "./api.js";
import { h } from "./util.js";
import { StatusView } from "./status.js";
import { SearchView } from "./search.js";
import { TransfersView } from "./transfers.js";
import { ChatView } from "./chat.js";
import { SharesView } from "./shares.js";
import { SettingsView } from "./settings.js";
import { ToxView } from "./tox.js";
import { UploadsView } from "./uploads.js";
import { BrowseView } from "./browse.js";
import { WishlistView } from "./wishlist.js";

const $ = (id) => document.getElementById(id);

/** A short message at the corner; `kind` "error" stays longer. */
function toast(text, kind = "info") {
  const el = h("div", { class: `toast ${kind}`, "data-testid": "toast", role: kind === "error" ? "alert" : null }, text);
  $("toasts").append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

// ---- token dialog ---------------------------------------------------------------

function askToken() {
  const dlg = $("token-dialog");
  const input = $("token-input");
  const err = $("token-error");
  if (getToken()) {
    err.textContent = "The token kept in this browser was refused.";
    err.hidden = false;
  } else {
    err.hidden = true;
  }
  input.value = "";
  return new Promise((resolve) => {
    dlg.addEventListener(
      "close",
      () => {
        const t = input.value.trim();
        const ok = dlg.returnValue === "ok" && t;
        if (!ok) toast("Without the node's API token nothing can be shown: enter it under Settings.", "error");
        resolve(ok ? t : null);
      },
      { once: true },
    );
    if (!dlg.open) dlg.showModal();
    input.focus();
  });
}
onTokenNeeded(askToken);

// ---- views and tabs -------------------------------------------------------------

// Desktop notifications (opt-in under Settings) while the page is in the background.
const NOTIFY_KEY = "omnipeer.notify";
function notify(title, body) {
  let on = false;
  try {
    on = localStorage.getItem(NOTIFY_KEY) === "on";
  } catch {
    on = false;
  }
  if (!on || !document.hidden || typeof Notification === "undefined" || Notification.permission !== "granted") return;
  try {
    new Notification(title, { body, icon: "icon.svg" });
  } catch {
    // not allowed here
  }
}

function notifyFor(ev) {
  if (ev.type === "chat" && !ev.message.own && (ev.message.chat.includes(":pm:") || ev.message.chat.startsWith("tox:friend:"))) {
    notify(`Message from ${ev.message.nick}`, ev.message.text);
  } else if (ev.type === "transfer" && ev.transfer.state === "done") {
    notify("Download finished", ev.transfer.name);
  } else if (ev.type === "transfer" && ev.transfer.state === "failed") {
    notify("Download failed", `${ev.transfer.name}: ${ev.transfer.error}`);
  } else if (ev.type === "wishlist_match") {
    notify("Wishlist: a new match", ev.result.name);
  }
}

const ctx = {
  api,
  toast,
  notifyKey: NOTIFY_KEY,
  // The window title: unread chat lines and whether every network client is offline.
  title: { unread: 0, offline: false },
  updateTitle() {
    const t = ctx.title;
    document.title = `${t.unread ? `(${t.unread}) ` : ""}omnipeer${t.offline ? " (offline)" : ""}`;
  },
  go: (name) => select(name, true),
  restartEvents: () => stream.restart(),
  setBadge(id, n) {
    const b = $(id);
    b.textContent = n ? String(n) : "";
    b.hidden = !n;
  },
};

const views = {
  status: new StatusView($("view-status"), ctx),
  search: new SearchView($("view-search"), ctx),
  wishlist: new WishlistView($("view-wishlist"), ctx),
  browse: new BrowseView($("view-browse"), ctx),
  transfers: new TransfersView($("view-transfers"), ctx),
  uploads: new UploadsView($("view-uploads"), ctx),
  chat: new ChatView($("view-chat"), ctx),
  tox: new ToxView($("view-tox"), ctx),
  shares: new SharesView($("view-shares"), ctx),
  settings: new SettingsView($("view-settings"), ctx),
};
ctx.views = views;
// Open the Browse view on a user (from a search result's source, a user list, a chat).
ctx.browseUser = (network, session, user) => views.browse.open(network, session, user);

const tabs = [...document.querySelectorAll('[role="tab"]')];
let current = null;

function select(name, focus) {
  if (!views[name]) name = "status";
  for (const t of tabs) {
    const on = t.dataset.view === name;
    t.setAttribute("aria-selected", on ? "true" : "false");
    t.tabIndex = on ? 0 : -1;
    if (on && focus) t.focus();
  }
  for (const [n, v] of Object.entries(views)) v.el.hidden = n !== name;
  if (current !== name) {
    current = name;
    // A tab reached with the arrow keys keeps the focus; a click may move it into the view.
    views[name].shown?.(!focus);
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  }
}
ctx.current = () => current;

for (const t of tabs) {
  t.addEventListener("click", () => select(t.dataset.view, false));
  t.addEventListener("keydown", (e) => {
    const i = tabs.indexOf(t);
    let j = null;
    if (e.key === "ArrowRight") j = (i + 1) % tabs.length;
    else if (e.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
    else if (e.key === "Home") j = 0;
    else if (e.key === "End") j = tabs.length - 1;
    if (j !== null) {
      e.preventDefault();
      select(tabs[j].dataset.view, true);
    }
  });
}
window.addEventListener("hashchange", () => select(location.hash.slice(1), false));

// ---- data -------------------------------------------------------------------------

// Whether the last full read worked (if not, the next stream connect reads again).
let loadedOk = false;
let initialLoad = null;

async function loadAll() {
  const results = await Promise.allSettled(Object.values(views).map((v) => v.load()));
  loadedOk = results.every((r) => r.status === "fulfilled");
  for (const r of results) {
    if (r.status === "rejected" && r.reason?.status !== 401) toast(r.reason.message, "error");
  }
  const st = views.status.data;
  if (st) $("nick").textContent = st.nick;
}

const liveEl = $("events-state");
const stream = new EventStream({
  onEvent(ev) {
    if (ev.type === "resync") {
      // The node sent more than this page read in time and some events were skipped:
      // re-read everything shown (chats catch up from their last line, searches and
      // transfers are read again).
      loadAll();
      return;
    }
    for (const v of Object.values(views)) v.onEvent?.(ev);
    notifyFor(ev);
  },
  onState(state, delay) {
    liveEl.dataset.state = state;
    liveEl.textContent =
      state === "open" ? "live" : state === "connecting" ? "connecting…" : `offline, retrying in ${Math.ceil(delay / 1000)}s`;
    liveEl.title =
      state === "open" ? "Receiving the node's events as they happen" : "The event stream to the node is down; it reconnects by itself";
  },
  onReopen(first) {
    // After a drop anything may have been missed; on the first connect only if the
    // first read failed (the node was not up yet when the page loaded).
    if (!first) loadAll();
    else Promise.resolve(initialLoad).then(() => loadedOk || loadAll());
  },
});
ctx.stream = stream;

// Global shortcut: "/" focuses the search box (when not typing elsewhere).
document.addEventListener("keydown", (e) => {
  if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
  const tag = document.activeElement?.tagName;
  if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
  e.preventDefault();
  select("search", false);
  views.search.focus();
});

ctx.tokenChanged = (t) => {
  setToken(t);
  stream.restart();
  loadAll();
};

select(location.hash.slice(1) || "status", false);
// The first request settles the token (asking for it on 401) before the stream opens.
api("GET", "/api/status")
  .catch(() => null)
  .then(() => {
    initialLoad = loadAll();
    stream.start();
  });
