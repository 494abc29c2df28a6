// Browse: a user's whole share as a tree (GET /api/browse), folder sizes and file counts,
// a search within it, and a Download button on every folder (the whole folder, as one
// group) and file. Folders open one level at a time (depth=1), so a share of 100,000
// files opens as fast as its top level: the node keeps the browse and answers each
// folder from memory.

import { h, fill, bytes, duration, networkName } from "./util.js";

export class BrowseView {
  constructor(el, ctx) {
    this.el = el;
    this.ctx = ctx;
    this.current = null; // {network, session, user}

    this.session = h("select", { id: "browse-session", "data-testid": "browse-session", required: true });
    this.user = h("input", {
      id: "browse-user",
      type: "text",
      placeholder: "nick or user name",
      autocomplete: "off",
      required: true,
      "data-testid": "browse-user",
    });
    this.form = h(
      "form",
      { class: "searchbar", "data-testid": "browse-form", onsubmit: (e) => this.submit(e) },
      h("label", { for: "browse-session" }, "Browse on"),
      this.session,
      h("label", { for: "browse-user" }, "User"),
      this.user,
      h("button", { type: "submit", class: "primary", "data-testid": "browse-submit" }, "Browse"),
      h("button", { type: "button", "data-testid": "browse-refresh", onclick: () => this.reload(true) }, "Ask again"),
    );
    this.filter = h("input", {
      id: "browse-filter",
      type: "search",
      placeholder: "find in this share",
      "data-testid": "browse-filter",
      oninput: () => this.scheduleFind(),
    });
    this.destination = h("input", {
      id: "browse-destination",
      type: "text",
      placeholder: "[transfers].destination",
      title: "Where downloads land inside the downloads folder: {folder}, {user}, {network}, {session}",
      "data-testid": "browse-destination",
    });
    this.summary = h("p", { class: "summary", role: "status", "aria-live": "polite", "data-testid": "browse-summary" });
    this.note = h("p", { class: "note warn", role: "alert", "data-testid": "browse-note", hidden: true });
    this.hits = h("ul", { class: "browse-hits", "data-testid": "browse-hits", hidden: true });
    this.tree = h("ul", { class: "tree", role: "tree", "aria-label": "Shared folders", "data-testid": "browse-tree" });
    fill(
      el,
      h("h2", {}, "Browse"),
      this.form,
      h(
        "div",
        { class: "toolbar" },
        h("label", { for: "browse-filter" }, "Find"),
        this.filter,
        h("label", { for: "browse-destination" }, "Save to"),
        this.destination,
      ),
      this.summary,
      this.note,
      this.hits,
      this.tree,
    );
    this.summary.textContent = "Pick a hub or server and a user: their whole share appears here as folders.";
  }

  /** The hub and server sessions that are online, as <option>s. */
  fillSessions() {
    const nets = [...(this.ctx.views.status.networks?.values() || [])].filter((n) => n.session && n.role === "client");
    const keep = this.session.value;
    fill(
      this.session,
      nets.map((n) => {
        const v = `${n.session.network}|${n.session.label}`;
        return h("option", { value: v, selected: v === keep }, `${networkName(n.session.network, n.session.label)}${n.state === "online" ? "" : ` (${n.state})`}`);
      }),
    );
  }

  async load() {
    this.fillSessions();
  }

  shown(mayFocus) {
    this.fillSessions();
    if (mayFocus && !this.current) this.user.focus();
  }

  onEvent(ev) {
    if (ev.type === "network") this.fillSessions();
  }

  /** Open the view on `user` of a session (from a search result, a user list, a chat). */
  open(network, session, user) {
    this.fillSessions();
    this.session.value = `${network}|${session || ""}`;
    this.user.value = user;
    this.ctx.go("browse");
    this.start(network, session || "", user, false);
  }

  submit(e) {
    e.preventDefault();
    const [network, session] = this.session.value.split("|");
    const user = this.user.value.trim();
    if (!network || !user) return;
    this.start(network, session || "", user, false);
  }

  reload(refresh) {
    if (this.current) this.start(this.current.network, this.current.session, this.current.user, refresh);
  }

  query(extra) {
    const c = this.current;
    const q = new URLSearchParams({ network: c.network, session: c.session, user: c.user, ...extra });
    return `/api/browse?${q}`;
  }

  async start(network, session, user, refresh) {
    this.current = { network, session, user };
    this.filter.value = "";
    this.hits.hidden = true;
    this.note.hidden = true;
    fill(this.tree);
    this.summary.textContent = `Asking ${user} for the file list…`;
    const started = performance.now();
    try {
      const v = await this.ctx.api("GET", this.query({ depth: 1, ...(refresh ? { refresh: "true" } : {}) }));
      if (this.current?.user !== user) return;
      const f = v.folder;
      const secs = ((performance.now() - started) / 1000).toFixed(1);
      this.summary.textContent = `${v.user} on ${networkName(v.network, v.session)}: ${f.files} files, ${bytes(f.size)} (in ${secs}s)`;
      fill(this.tree, this.children(f));
    } catch (err) {
      this.summary.textContent = `Cannot browse ${user}: ${err.message}`;
      this.ctx.toast(`Cannot browse ${user}: ${err.message}`, "error");
    }
  }

  /** A folder's subfolders and files as tree items. */
  children(f) {
    return [...(f.folders || []).map((d) => this.folderItem(d)), ...(f.entries || []).map((e) => this.fileItem(e))];
  }

  folderItem(d) {
    const list = h("ul", { role: "group" });
    let loaded = !d.more;
    if (loaded) fill(list, this.children(d));
    const details = h(
      "details",
      {
        ontoggle: async () => {
          if (!details.open || loaded) return;
          loaded = true;
          fill(list, h("li", { class: "empty" }, "loading…"));
          try {
            const v = await this.ctx.api("GET", this.query({ path: d.path, depth: 1 }));
            fill(list, this.children(v.folder));
          } catch (err) {
            loaded = false;
            fill(list, h("li", { class: "error" }, err.message));
          }
        },
      },
      h(
        "summary",
        {},
        h("span", { class: "name" }, d.name),
        " ",
        h("span", { class: "meta", "data-testid": "browse-folder-meta" }, `${bytes(d.size)} · ${d.files} file${d.files === 1 ? "" : "s"}`),
        " ",
        this.downloadButton(d.path, true, d.name),
      ),
      list,
    );
    return h("li", { role: "treeitem", class: "folder", "data-testid": "browse-folder", "data-path": d.path, "data-name": d.name }, details);
  }

  fileItem(e) {
    const attrs = [
      e.bitrate ? `${e.bitrate} kbps${e.vbr ? " VBR" : ""}` : "",
      e.duration ? duration(e.duration) : "",
      e.sample_rate ? `${(e.sample_rate / 1000).toFixed(1)} kHz` : "",
    ].filter(Boolean);
    return h(
      "li",
      { role: "treeitem", class: "file", "data-testid": "browse-file", "data-path": e.path, "data-name": e.name, title: e.tth ? `TTH ${e.tth}` : null },
      h("span", { class: "name" }, e.name),
      " ",
      h("span", { class: "meta" }, [bytes(e.size), ...attrs].join(" · ")),
      " ",
      this.downloadButton(e.path, false, e.name),
    );
  }

  downloadButton(path, folder, name) {
    return h(
      "button",
      {
        type: "button",
        class: "small",
        "data-testid": folder ? "browse-download-folder" : "browse-download-file",
        "aria-label": `Download ${folder ? "folder" : ""} ${name}`,
        onclick: (e) => {
          // Inside <summary>: a click must not fold the folder.
          e.preventDefault();
          e.stopPropagation();
          this.download(path, folder, name, e.currentTarget);
        },
      },
      "Download",
    );
  }

  /** A file or folder of the user browsed, into the destination box's place. */
  download(path, folder, name, btn) {
    const c = this.current;
    const body = { network: c.network, session: c.session, user: c.user, path, folder };
    const dest = this.destination.value.trim();
    if (dest) body.destination = dest;
    return queuePath(this.ctx, body, name, btn, this.note);
  }

  scheduleFind() {
    clearTimeout(this.findTimer);
    this.findTimer = setTimeout(() => this.find(), 250);
  }

  async find() {
    const words = this.filter.value.trim();
    if (!this.current || !words) {
      this.hits.hidden = true;
      this.tree.hidden = false;
      return;
    }
    try {
      const v = await this.ctx.api("GET", this.query({ q: words }));
      if (this.filter.value.trim() !== words) return;
      fill(
        this.hits,
        v.hits.length ? v.hits.map((x) => {
          const name = x.path.split("\\").pop();
          return h(
            "li",
            { "data-testid": "browse-hit", "data-path": x.path, class: x.kind },
            h("span", { class: "name" }, x.kind === "folder" ? `${name}\\` : name),
            " ",
            h("span", { class: "path mono" }, x.path),
            " ",
            h("span", { class: "meta" }, x.kind === "folder" ? `${bytes(x.size)} · ${x.files} files` : bytes(x.size)),
            " ",
            this.downloadButton(x.path, x.kind === "folder", name),
          );
        }) : h("li", { class: "empty" }, "Nothing by that name in this share."),
      );
      this.hits.hidden = false;
      this.tree.hidden = true;
    } catch (err) {
      this.ctx.toast(`Find failed: ${err.message}`, "error");
    }
  }
}

/** Queue a file or a folder of a user's share (`body` as POST /api/transfers takes it):
 * planned first (dry run), files already on disk a warning to confirm, then queued.
 * The warning also goes to `note` when there is one. Used by the Browse view and by a
 * search result's "Download folder". */
export async function queuePath(ctx, body, name, btn, note = null) {
  btn.disabled = true;
  try {
    const plan = await ctx.api("POST", "/api/transfers", { ...body, dry_run: true });
    if (plan.existing.length) {
      const n = plan.existing.length;
      const say = `${n} file${n === 1 ? "" : "s"} of ${name} already on disk under ${plan.destination} (${plan.existing.slice(0, 3).join(", ")}${n > 3 ? ", …" : ""}); new copies get names of their own.`;
      if (note) {
        note.textContent = say;
        note.hidden = false;
      }
      if (!window.confirm(`${say}\n\nDownload ${name} anyway?`)) {
        btn.disabled = false;
        return;
      }
    } else if (note) {
      note.hidden = true;
    }
    const p = await ctx.api("POST", "/api/transfers", body);
    for (const t of p.transfers) ctx.views.transfers.answered(t);
    if (p.group) ctx.views.transfers.loadGroups?.();
    ctx.toast(p.folder ? `Queued folder ${p.name}: ${p.files} files, ${bytes(p.size)} into ${p.destination}` : `Queued ${p.name} from ${body.user}`);
    btn.textContent = "Queued";
  } catch (err) {
    btn.disabled = false;
    ctx.toast(`Cannot download ${name}: ${err.message}`, "error");
  }
}
