"""Shared plumbing for the Soulseek peer drivers (aioslsk_peer.py, nicotine_peer.py).

Protocol (one JSON object per line):

* stdin  -> driver: commands ``{"cmd": "search", "query": "..."}`` etc. (see README.md)
* driver -> stdout: events ``{"event": "logged_in", "t": 1.23, ...}``

Only this module writes to the real stdout. Anything else the client libraries print
(fd 1 or ``sys.stdout``) is redirected to stderr, so a stray print can never corrupt the
event stream. Diagnostics go to stderr.
"""

import hashlib
import json
import os
import sys
import threading
import time

_T0 = time.monotonic()
_LOCK = threading.Lock()
_OUT = None


def take_stdout():
    """Keeps the real stdout for events only; fd 1 and sys.stdout then point at stderr."""
    global _OUT
    if _OUT is not None:
        return
    fd = os.dup(1)
    os.dup2(2, 1)
    _OUT = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
    sys.stdout = sys.stderr


def emit(event, **fields):
    """Writes one event line (thread-safe). ``t`` = seconds since the driver started."""
    obj = {"event": event, "t": round(time.monotonic() - _T0, 3)}
    obj.update(fields)
    line = json.dumps(obj, ensure_ascii=False, default=str)
    with _LOCK:
        out = _OUT if _OUT is not None else sys.stdout
        try:
            out.write(line + "\n")
            out.flush()
        except (BrokenPipeError, ValueError):
            pass


def log(msg):
    """A diagnostic line on stderr."""
    try:
        sys.stderr.write(f"[{time.monotonic() - _T0:8.3f}] {msg}\n")
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_args(argv, prog):
    """``SERVER_HOST:PORT USER PASSWORD LISTEN_PORT SHARE_DIR DOWNLOAD_DIR [DATA_DIR]``."""
    if len(argv) not in (6, 7):
        sys.stderr.write(
            f"usage: {prog} HOST:PORT USER PASSWORD LISTEN_PORT SHARE_DIR DOWNLOAD_DIR [DATA_DIR]\n")
        sys.exit(2)
    host, _, port = argv[0].rpartition(":")
    return {
        "host": host or "127.0.0.1",
        "port": int(port),
        "user": argv[1],
        "password": argv[2],
        "listen_port": int(argv[3]),
        "share_dir": os.path.abspath(argv[4]),
        "download_dir": os.path.abspath(argv[5]),
        "data_dir": os.path.abspath(argv[6]) if len(argv) == 7 else None,
    }


def stdin_reader(on_command, on_eof):
    """Reads JSON command lines on a daemon thread; calls ``on_command(dict)`` for each
    (from that thread) and ``on_eof()`` when stdin closes. Malformed lines give an
    ``error`` event."""

    def run():
        for raw in sys.stdin:
            raw = raw.strip()
            if not raw:
                continue
            try:
                cmd = json.loads(raw)
                if not isinstance(cmd, dict) or not isinstance(cmd.get("cmd"), str):
                    raise ValueError("expected an object with a string field 'cmd'")
            except ValueError as e:
                emit("error", message=f"bad command line: {e}", line=raw[:200])
                continue
            on_command(cmd)
        on_eof()

    t = threading.Thread(target=run, name="stdin-commands", daemon=True)
    t.start()
    return t


REQUIRED = {
    "search": ("query",),
    "download": ("user", "path"),
    "browse": ("user",),
    "join_room": ("room",),
    "say_room": ("room", "text"),
    "private_message": ("user", "text"),
    "quit": (),
}


def check_command(cmd):
    """None when ``cmd`` is a known command with its fields, else an error message."""
    name = cmd.get("cmd")
    if name not in REQUIRED:
        return f"unknown command {name!r}"
    missing = [f for f in REQUIRED[name] if not isinstance(cmd.get(f), str)]
    if missing:
        return f"command {name!r} needs string field(s) {', '.join(missing)}"
    return None
