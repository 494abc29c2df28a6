#!/usr/bin/env python3
"""Drives a REAL aioslsk 1.7.1 client headless, for omnipeer's Soulseek interop tests.

    python aioslsk_peer.py HOST:PORT USER PASSWORD LISTEN_PORT SHARE_DIR DOWNLOAD_DIR [DATA_DIR]

Commands on stdin and events on stdout are JSON lines; see README.md in this folder.
Run it with the venv python that scripts/install-slsk-peers.sh prints.

Environment: OMNIPEER_SLSK_DEBUG=1 logs every protocol message aioslsk sends/receives to
stderr ("send message : ..." / "received message : ...").
"""

import asyncio
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (check_command, emit, log, parse_args, sha256_file,  # noqa: E402
                    stdin_reader, take_stdout)


class Driver:
    def __init__(self, args):
        self.args = args
        self.client = None
        self.loop = None
        self.quit_event = None
        self.searches = {}  # ticket -> query
        self.done_transfers = set()

    # -- set-up ---------------------------------------------------------------------

    def make_client(self):
        from aioslsk.client import SoulSeekClient
        from aioslsk.settings import (CredentialsSettings, ListeningSettings, NetworkLimitSettings,
                                      NetworkSettings, ReconnectSettings, ServerSettings, Settings,
                                      SharedDirectorySettingEntry, SharesSettings, UpnpSettings)
        from aioslsk.shares.model import DirectoryShareMode

        a = self.args
        settings = Settings(
            credentials=CredentialsSettings(username=a["user"], password=a["password"]),
            network=NetworkSettings(
                server=ServerSettings(hostname=a["host"], port=a["port"],
                                      reconnect=ReconnectSettings(auto=False)),
                # obfuscated_port=0: no obfuscated listener (nothing here speaks it)
                listening=ListeningSettings(port=a["listen_port"], obfuscated_port=0),
                upnp=UpnpSettings(enabled=False),
                # Upload limit in KiB/s (aioslsk's token bucket; 0 = none), set by
                # bench/src/node_segments.rs so every source there has the same rate.
                limits=NetworkLimitSettings(
                    upload_speed_kbps=int(os.environ.get("OMNIPEER_SLSK_UPLOAD_KIB", "0")))),
            shares=SharesSettings(
                scan_on_start=False, download=a["download_dir"],
                directories=[SharedDirectorySettingEntry(
                    path=a["share_dir"], share_mode=DirectoryShareMode.EVERYONE)]),
        )
        return SoulSeekClient(settings)

    def register(self):
        from aioslsk.events import (PrivateMessageEvent, RoomJoinedEvent, RoomMessageEvent,
                                    SearchResultEvent, TransferProgressEvent,
                                    UserSharesReplyEvent)
        ev = self.client.events
        # The event bus holds listeners weakly (WeakMethod for bound methods): this Driver
        # object lives for the whole run, so its methods stay registered.
        ev.register(SearchResultEvent, self.on_search_result)
        ev.register(TransferProgressEvent, self.on_transfer_progress)
        ev.register(PrivateMessageEvent, self.on_private_message)
        ev.register(RoomMessageEvent, self.on_room_message)
        ev.register(RoomJoinedEvent, self.on_room_joined)
        ev.register(UserSharesReplyEvent, self.on_shares_reply)

    # -- events from aioslsk ----------------------------------------------------------

    def on_search_result(self, event):
        r = event.result
        query = self.searches.get(r.ticket, event.query.query)
        for item in list(r.shared_items) + list(r.locked_results):
            emit("search_result", query=query, token=r.ticket, user=r.username,
                 path=item.filename, size=item.filesize, free_slot=bool(r.has_free_slots),
                 queue=r.queue_size, speed=r.avg_speed, extension=item.extension,
                 locked=item in r.locked_results)

    def on_transfer_progress(self, event):
        from aioslsk.transfer.model import TransferDirection
        from aioslsk.transfer.state import TransferState
        for transfer, _prev, cur in event.updates:
            direction = "download" if transfer.direction == TransferDirection.DOWNLOAD else "upload"
            state = cur.state.name.lower()
            base = dict(direction=direction, user=transfer.username, path=transfer.remote_path,
                        size=transfer.filesize)
            if cur.state == TransferState.COMPLETE:
                key = (direction, transfer.username, transfer.remote_path)
                if key in self.done_transfers:
                    continue
                self.done_transfers.add(key)
                extra = {}
                if direction == "download" and transfer.local_path:
                    extra = dict(local_path=transfer.local_path,
                                 sha256=sha256_file(transfer.local_path))
                emit("transfer_complete", bytes=cur.bytes_transfered, **base, **extra)
            elif cur.state in (TransferState.FAILED, TransferState.ABORTED):
                emit("transfer_failed", state=state,
                     reason=cur.fail_reason or cur.abort_reason, **base)
            else:
                emit("transfer_progress", state=state, bytes=cur.bytes_transfered, **base)

    def on_private_message(self, event):
        m = event.message
        emit("private_message", user=m.user.name, text=m.message, id=m.id,
             timestamp=m.timestamp, new=bool(m.is_direct))

    def on_room_message(self, event):
        m = event.message
        emit("room_message", room=m.room.name, user=m.user.name, text=m.message)

    def on_room_joined(self, event):
        if event.user is None:
            emit("room_joined", room=event.room.name, users=[u.name for u in event.room.users])
        else:
            emit("user_joined_room", room=event.room.name, user=event.user.name)

    def on_shares_reply(self, event):
        def dirs(ds):
            return [{"name": d.name,
                     "files": [{"name": f.filename, "size": f.filesize} for f in d.files]}
                    for d in ds]
        emit("browse_result", user=event.user.name, dirs=dirs(event.directories),
             locked_dirs=dirs(event.locked_directories))

    # -- commands -----------------------------------------------------------------------

    async def run_command(self, cmd):
        from aioslsk.commands import (JoinRoomCommand, PeerGetSharesCommand,
                                      PrivateMessageCommand, RoomMessageCommand)
        name = cmd["cmd"]
        err = check_command(cmd)
        if err:
            emit("error", cmd=name, message=err)
            return
        try:
            if name == "quit":
                self.quit_event.set()
            elif name == "search":
                req = await self.client.searches.search(cmd["query"])
                self.searches[req.ticket] = cmd["query"]
                emit("search_sent", query=cmd["query"], token=req.ticket)
            elif name == "download":
                t = await self.client.transfers.download(cmd["user"], cmd["path"])
                emit("transfer_queued", direction="download", user=t.username, path=t.remote_path)
            elif name == "browse":
                await self.client.execute(PeerGetSharesCommand(cmd["user"]))
            elif name == "join_room":
                await self.client.execute(JoinRoomCommand(cmd["room"]))
            elif name == "say_room":
                await self.client.execute(RoomMessageCommand(cmd["room"], cmd["text"]))
            elif name == "private_message":
                await self.client.execute(PrivateMessageCommand(cmd["user"], cmd["text"]))
        except Exception as e:  # report, keep running
            emit("error", cmd=name, message=f"{type(e).__name__}: {e}")

    def on_command(self, cmd):
        # called on the stdin thread
        asyncio.run_coroutine_threadsafe(self.run_command(cmd), self.loop)

    def on_eof(self):
        self.loop.call_soon_threadsafe(self.quit_event.set)

    # -- main -----------------------------------------------------------------------------

    async def main(self):
        from aioslsk.exceptions import AuthenticationError
        import aioslsk
        self.loop = asyncio.get_running_loop()
        self.quit_event = asyncio.Event()
        os.makedirs(self.args["download_dir"], exist_ok=True)
        self.client = self.make_client()
        self.register()
        emit("started", client="aioslsk", version=str(getattr(aioslsk, "__version__", "1.7.1")).lstrip("v"),
             user=self.args["user"], listen_port=self.args["listen_port"])
        try:
            await self.client.start()
            await self.client.login()
        except AuthenticationError as e:
            emit("login_failed", reason=e.reason, message=str(e))
            await self.stop()
            return 1
        except Exception as e:
            emit("login_failed", reason="", message=f"{type(e).__name__}: {e}")
            await self.stop()
            return 1
        s = self.client.session
        emit("logged_in", user=self.args["user"], ip=s.ip_address, greeting=s.greeting)
        stdin_reader(self.on_command, self.on_eof)
        try:
            await self.client.shares.scan()
            dirs, files = self.client.shares.get_stats()
            emit("shares_scanned", dirs=dirs, files=files)
        except Exception as e:
            emit("error", cmd="scan", message=f"{type(e).__name__}: {e}")
        await self.quit_event.wait()
        emit("quitting")
        await self.stop()
        return 0

    async def stop(self):
        try:
            await asyncio.wait_for(self.client.stop(), timeout=5)
        except Exception as e:
            log(f"stop: {type(e).__name__}: {e}")


def main():
    take_stdout()
    args = parse_args(sys.argv[1:], "aioslsk_peer.py")
    level = logging.DEBUG if os.environ.get("OMNIPEER_SLSK_DEBUG") else logging.WARNING
    logging.basicConfig(stream=sys.stderr, level=level,
                        format="%(relativeCreated)8.0f %(levelname)s %(name)s: %(message)s")
    try:
        rc = asyncio.run(Driver(args).main())
    except KeyboardInterrupt:
        rc = 130
    sys.stderr.flush()
    os._exit(rc)  # don't wait for executor threads still scanning or writing


if __name__ == "__main__":
    main()
