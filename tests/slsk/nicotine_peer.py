#!/usr/bin/env python3
"""Drives a REAL Nicotine+ 3.3.11 client headless, for omnipeer's Soulseek interop tests.

    python nicotine_peer.py HOST:PORT USER PASSWORD LISTEN_PORT SHARE_DIR DOWNLOAD_DIR [DATA_DIR]

Commands on stdin and events on stdout are JSON lines; see README.md in this folder.
Run it with the venv python that scripts/install-slsk-peers.sh prints.

This runs Nicotine+'s own core (``pynicotine.core``: network thread, shares, search,
transfers, chat) in this process, exactly as ``nicotine --headless`` does, minus the
components that would touch the terminal or the outside world (cli, signal handler,
port mapper, update checker). Config and data live in DATA_DIR (default: a fresh temp
dir), never in ~/.config/nicotine.

Environment: OMNIPEER_SLSK_DEBUG=1 adds Nicotine+'s "message" and "connection" log
levels (every protocol message in/out) to stderr.
"""

import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (check_command, emit, log, parse_args, sha256_file,  # noqa: E402
                    stdin_reader, take_stdout)

NICOTINE_VERSION = "3.3.11"


def write_config(path, a, data_dir):
    """A minimal Nicotine+ config (values are Python literals; the rest default)."""
    incomplete = os.path.join(data_dir, "incomplete")
    text = f"""[server]
server = {(a["host"], a["port"])!r}
login = {a["user"]}
passw = {a["password"]}
upnp = False
auto_connect_startup = False
portrange = ({a["listen_port"]}, {a["listen_port"]})
autojoin = []

[transfers]
downloaddir = {a["download_dir"]}
incompletedir = {incomplete}
uploaddir = {os.path.join(data_dir, "received")}
shared = {[("Share", a["share_dir"])]!r}
rescanonstartup = True
autoclear_downloads = False
autoclear_uploads = False

[searches]
min_search_chars = 1

[privatechat]
store = False

[logging]
debug_file_output = False
transfers = False
privatechat = False
chatrooms = False
"""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def safe(cb):
    """Nicotine+ quits the whole client when an event callback raises: report instead."""
    def wrapper(*args, **kwargs):
        try:
            cb(*args, **kwargs)
        except Exception as e:
            import traceback
            traceback.print_exc()
            emit("error", cmd=f"callback {cb.__name__}", message=f"{type(e).__name__}: {e}")
    wrapper.__name__ = cb.__name__
    return wrapper


class Driver:
    def __init__(self, args):
        self.args = args
        self.core = None
        self.events = None
        self.sizes = {}  # (user, path) -> (size, attrs) seen in search results
        self.search_tokens = {}  # token -> query
        self.progress_sent = {}
        self.logged_in = False
        self.quitting = False

    # -- events from Nicotine+ (all on the main thread) -----------------------------------

    def on_log(self, _timestamp_format, msg, _title, _level):
        log(f"nicotine: {msg}")

    def on_login(self, msg):
        if msg.success:
            if not self.logged_in:
                self.logged_in = True
                emit("logged_in", user=self.args["user"], ip=msg.ip_address,
                     greeting=msg.banner)
        else:
            emit("login_failed", reason=str(msg.reason))

    def on_shares_ready(self, successful):
        dbs = self.core.shares.share_dbs
        emit("shares_scanned", ok=bool(successful), dirs=len(dbs.get("public_streams", {})),
             files=len(dbs.get("public_files", {})))

    def on_search_response(self, msg):
        query = self.search_tokens.get(msg.token)
        if query is None:
            return  # not one of our searches (Nicotine+ drops these too)
        for private, lst in ((False, msg.list or []), (True, msg.privatelist or [])):
            for _code, path, size, ext, attrs, *_rest in lst:
                self.sizes[(msg.username, path)] = (size, attrs)
                emit("search_result", query=query, token=msg.token, user=msg.username, path=path,
                     size=size, free_slot=bool(msg.freeulslots), queue=msg.inqueue,
                     speed=msg.ulspeed, extension=ext, locked=private)

    def on_message_user(self, msg, queued_message=False):
        if msg.message_id is None:
            return  # our own outgoing message, echoed locally by Nicotine+
        if msg.user is None:
            # GOTCHA: Nicotine+ holds an incoming private message until it has the
            # sender's address (it sends GetPeerAddress first), blanks msg.user, and
            # re-emits it later with queued_message=True.
            return
        emit("private_message", user=msg.user, text=msg.message, id=msg.message_id,
             timestamp=msg.timestamp, new=bool(msg.is_new_message))

    def on_say_chat_room(self, msg):
        emit("room_message", room=msg.room, user=msg.user, text=msg.message)

    def on_join_room(self, msg):
        emit("room_joined", room=msg.room,
             users=[getattr(u, "username", u) for u in (msg.users or [])])

    def on_user_joined_room(self, msg):
        emit("user_joined_room", room=msg.room, user=msg.userdata.username)

    def on_shared_file_list(self, msg):
        def dirs(lst):
            out = []
            for folder, files in (lst or []):
                out.append({"name": folder,
                            "files": [{"name": f[1], "size": f[2]} for f in files]})
            return out
        emit("browse_result", user=msg.username, dirs=dirs(msg.list),
             locked_dirs=dirs(msg.privatelist))

    def _progress(self, direction, transfer):
        key = (direction, transfer.username, transfer.virtual_path)
        done = transfer.current_byte_offset or 0
        state = str(transfer.status)
        if self.progress_sent.get(key) == (done, state):
            return
        self.progress_sent[key] = (done, state)
        if state in ("Finished",):
            return  # reported by the finished hooks (with the real path)
        # Anything but these (Cancelled, Filtered, Connection closed/timeout, Local file
        # error, Download folder error, or an UploadDenied reason such as "File not
        # shared.") is reported as a failure.
        failed = state not in ("Queued", "Getting status", "Transferring", "Paused",
                               "User logged off")
        emit("transfer_failed" if failed else "transfer_progress", direction=direction,
             user=transfer.username, path=transfer.virtual_path, size=transfer.size,
             bytes=done, state=state, **({"reason": state} if failed else {}))

    def on_update_download(self, transfer, *_args):
        self._progress("download", transfer)

    def on_update_upload(self, transfer, *_args):
        self._progress("upload", transfer)

    def download_finished(self, user, virtual_path, real_path):
        emit("transfer_complete", direction="download", user=user, path=virtual_path,
             local_path=real_path, size=os.path.getsize(real_path), bytes=os.path.getsize(real_path),
             sha256=sha256_file(real_path))

    def upload_finished(self, user, virtual_path, real_path):
        size = os.path.getsize(real_path) if os.path.exists(real_path) else None
        emit("transfer_complete", direction="upload", user=user, path=virtual_path,
             size=size, bytes=size)

    def on_quit(self):
        self.quitting = True

    # -- commands (run on the main thread) ------------------------------------------------

    def run_command(self, cmd):
        name = cmd["cmd"]
        err = check_command(cmd)
        if err:
            emit("error", cmd=name, message=err)
            return
        core = self.core
        try:
            if name == "quit":
                self.quit()
            elif name == "search":
                before = set(core.search.searches)
                core.search.do_search(cmd["query"], "global")
                new = [t for t in core.search.searches if t not in before]
                if not new:
                    emit("error", cmd=name, message="Nicotine+ did not start a search "
                         "(not logged in, or the query was filtered)")
                    return
                for token in new:
                    self.search_tokens[token] = cmd["query"]
                    emit("search_sent", query=cmd["query"], token=token)
            elif name == "download":
                size, attrs = self.sizes.get((cmd["user"], cmd["path"]), (0, None))
                if isinstance(cmd.get("size"), int):
                    size = cmd["size"]
                core.downloads.enqueue_download(cmd["user"], cmd["path"], size=size,
                                                file_attributes=attrs)
                emit("transfer_queued", direction="download", user=cmd["user"], path=cmd["path"])
            elif name == "browse":
                core.userbrowse.browse_user(cmd["user"], new_request=True, switch_page=False)
            elif name == "join_room":
                core.chatrooms.show_room(cmd["room"], switch_page=False)
            elif name == "say_room":
                if cmd["room"] not in core.chatrooms.joined_rooms:
                    emit("error", cmd=name, message=f"not in room {cmd['room']!r}")
                    return
                core.chatrooms.send_message(cmd["room"], cmd["text"])
            elif name == "private_message":
                core.privatechat.show_user(cmd["user"], switch_page=False)
                core.privatechat.send_message(cmd["user"], cmd["text"])
        except Exception as e:
            emit("error", cmd=name, message=f"{type(e).__name__}: {e}")

    def quit(self):
        if self.quitting:
            return
        self.quitting = True
        emit("quitting")
        self.core.quit()
        # Watchdog: Nicotine+ normally winds down in well under a second.
        threading.Timer(5.0, lambda: os._exit(0)).start()

    # -- main ---------------------------------------------------------------------------------

    def main(self):
        a = self.args
        data_dir = a["data_dir"] or tempfile.mkdtemp(prefix="nicotine-peer-")
        os.makedirs(data_dir, exist_ok=True)
        os.makedirs(a["download_dir"], exist_ok=True)
        # Keep Nicotine+ away from the real home's config/data (read at import time).
        os.environ["XDG_CONFIG_HOME"] = os.path.join(data_dir, "xdg-config")
        os.environ["XDG_DATA_HOME"] = os.path.join(data_dir, "xdg-data")
        config_path = os.path.join(data_dir, "config")
        write_config(config_path, a, data_dir)

        import pynicotine  # noqa: F401  (installs the _() translation builtin)
        from pynicotine.config import config
        from pynicotine.core import core
        from pynicotine.events import events
        from pynicotine.logfacility import log as nlog
        from pynicotine.pluginsystem import PluginHandler

        config.set_config_file(config_path)
        config.set_data_folder(os.path.join(data_dir, "data"))
        core.cli_listen_port = a["listen_port"]
        # GOTCHA: without a bind address Nicotine+ binds its listen socket (and outgoing
        # sockets) to the "primary" IP it finds with a UDP connect to 10.255.255.255 — e.g.
        # 192.0.2.2, not 127.0.0.1 — so peers dialling 127.0.0.1:port are refused. This is
        # what `nicotine -b 127.0.0.1` sets.
        core.cli_interface_address = os.environ.get("OMNIPEER_SLSK_BIND", "127.0.0.1")
        # Everything `nicotine --headless` enables, except: cli (terminal prompt/log),
        # signal_handler (we own SIGTERM), error_handler (would re-raise in threads),
        # portmapper (UPnP/NAT-PMP), update_checker (network).
        core.init_components(enabled_components={
            "network_thread", "shares", "users", "notifications", "network_filter",
            "now_playing", "statistics", "search", "downloads", "uploads", "interests",
            "userbrowse", "userinfo", "buddies", "chatrooms", "privatechat", "pluginhandler",
        }, isolated_mode=True)
        self.core, self.events = core, events

        if os.environ.get("OMNIPEER_SLSK_DEBUG"):
            for level in ("message", "connection", "transfer", "search", "download", "upload"):
                nlog.add_log_level(level, is_permanent=False)
        else:
            for level in ("download", "upload"):
                nlog.add_log_level(level, is_permanent=False)

        # Finished-transfer hooks: Nicotine+ calls these on its plugin handler.
        drv = self
        orig_dl = PluginHandler.download_finished_notification
        orig_ul = PluginHandler.upload_finished_notification

        def dl_hook(handler, user, virtual_path, real_path):
            orig_dl(handler, user, virtual_path, real_path)
            drv.download_finished(user, virtual_path, real_path)

        def ul_hook(handler, user, virtual_path, real_path):
            orig_ul(handler, user, virtual_path, real_path)
            drv.upload_finished(user, virtual_path, real_path)

        PluginHandler.download_finished_notification = dl_hook
        PluginHandler.upload_finished_notification = ul_hook

        for name, cb in (
            ("log-message", self.on_log),
            ("server-login", self.on_login),
            ("shares-ready", self.on_shares_ready),
            ("file-search-response", self.on_search_response),
            ("message-user", self.on_message_user),
            ("say-chat-room", self.on_say_chat_room),
            ("join-room", self.on_join_room),
            ("user-joined-room", self.on_user_joined_room),
            ("shared-file-list-response", self.on_shared_file_list),
            ("update-download", self.on_update_download),
            ("update-upload", self.on_update_upload),
            ("quit", self.on_quit),
        ):
            events.connect(name, safe(cb))

        emit("started", client="nicotine", version=NICOTINE_VERSION, user=a["user"],
             listen_port=a["listen_port"], data_dir=data_dir)
        core.start()
        core.connect()
        stdin_reader(lambda cmd: events.invoke_main_thread(self.run_command, cmd),
                     lambda: events.invoke_main_thread(self.quit))

        # Nicotine+'s headless main loop polls 10x/s; poll faster so the tests stay quick.
        while events.process_thread_events():
            time.sleep(0.02)
        try:
            config.write_configuration()
        except Exception:
            pass
        return 0


def main():
    take_stdout()
    args = parse_args(sys.argv[1:], "nicotine_peer.py")
    try:
        rc = Driver(args).main()
    except Exception as e:
        import traceback
        traceback.print_exc()
        emit("error", cmd="main", message=f"{type(e).__name__}: {e}")
        rc = 1
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":  # also keeps the share scanner's spawned process from re-running us
    main()
