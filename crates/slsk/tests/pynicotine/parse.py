"""Parse tests/fixtures/omnipeer_frames.txt (frames encoded by omnipeer-slsk) with the
pynicotine 3.3.11 parsers and check every field pynicotine reads.

    python3 tests/pynicotine/parse.py tests/fixtures/omnipeer_frames.txt

Exits non-zero on the first mismatch; prints "N passed, 0 failed" when all match.
"""

import struct
import sys

from pynicotine import slskmessages as m

FN = "@@music\\Album\\Track 01.mp3"
STATS = lambda b: dict(avgspeed=b + 1, uploadnum=b + 2, unknown=b + 3, files=b + 4, dirs=b + 5)
MP3 = lambda name: (1, name, 3000001, None, {0: 320, 1: 181, 2: 1})


def users(u):
    return [dict(username=x.username, status=x.status, avgspeed=x.avgspeed, uploadnum=x.uploadnum,
                 unknown=x.unknown, files=x.files, dirs=x.dirs, slotsfull=x.slotsfull, country=x.country)
            for x in u]


def roomuser(name, status, base, country):
    d = dict(username=name, status=status, slotsfull=1, country=country)
    d.update(STATS(base))
    return d


EXPECT = {
    "LoginSuccess": (m.Login, dict(success=True, banner="greet1", ip_address="10.1.2.3", is_supporter=True)),
    "LoginFailure": (m.Login, dict(success=False, reason="INVALIDUSERNAME")),
    "GetPeerAddress": (m.GetPeerAddress, dict(user="user3", ip_address="192.168.3.4", port=2234, unknown=1,
                                              obfuscated_port=2235)),
    "WatchUserMissing": (m.WatchUser, dict(user="user5a", userexists=False, contains_stats=False)),
    "WatchUserOffline": (m.WatchUser, dict(user="user5b", userexists=True, contains_stats=True, status=0,
                                           country=None, **STATS(50))),
    "WatchUserOnline": (m.WatchUser, dict(user="user5c", userexists=True, status=2, country="DE", **STATS(500))),
    "GetUserStatus": (m.GetUserStatus, dict(user="user7", status=1, privileged=True)),
    "IgnoreUser": (m.IgnoreUser, dict(user="user11")),
    "UnignoreUser": (m.UnignoreUser, dict(user="user12")),
    "SayChatroom": (m.SayChatroom, dict(room="room13", user="user13", message="msg13")),
    "JoinRoom": (m.JoinRoom, dict(room="room14", private=False, owner=None, operators=[],
                                  users=[roomuser("user14a", 2, 140, "FR"), roomuser("user14b", 1, 1400, "JP")])),
    "JoinRoomPrivate": (m.JoinRoom, dict(room="room14p", private=True, owner="owner14", operators=["op14a", "op14b"],
                                         users=[roomuser("user14c", 2, 14000, "")])),
    "LeaveRoom": (m.LeaveRoom, dict(room="room15")),
    "UserJoinedRoom": (m.UserJoinedRoom, dict(room="room16", userdata=roomuser("user16", 2, 160, "BR"))),
    "UserLeftRoom": (m.UserLeftRoom, dict(room="room17", username="user17")),
    "ConnectToPeer": (m.ConnectToPeer, dict(user="user18", conn_type="F", ip_address="127.0.0.1", port=41000,
                                            token=18, privileged=True, unknown=1, obfuscated_port=41001)),
    "MessageUser": (m.MessageUser, dict(message_id=22, timestamp=1700000022, user="user22", message="msg22 é",
                                        is_new_message=False)),
    "FileSearch": (m.FileSearch, dict(search_username="user26", token=26, searchterm="query26")),
    "ServerPing": (m.ServerPing, dict()),
    "SendConnectToken": (m.SendConnectToken, dict(user="user33", token=33)),
    "GetUserStats": (m.GetUserStats, dict(user="user36", **STATS(360))),
    "QueuedDownloads": (m.QueuedDownloads, dict(user="user40", slotsfull=1)),
    "Relogged": (m.Relogged, dict()),
    "SimilarRecommendations": (m.SimilarRecommendations, dict(recommendation="item50",
                                                              similar_recommendations=["sim50a", "sim50b"])),
    "Recommendations": (m.Recommendations, dict(recommendations=[("rec54", 54)],
                                                unrecommendations=[("unrec54", -54)])),
    "MyRecommendations": (m.MyRecommendations, dict(my_recommendations=["my55a", "my55b"])),
    "GlobalRecommendations": (m.GlobalRecommendations, dict(recommendations=[("rec56", 56)],
                                                            unrecommendations=[("unrec56", -56)])),
    "UserInterests": (m.UserInterests, dict(user="user57", likes=["like57"], hates=["hate57a", "hate57b"])),
    "PlaceInLineResponse": (m.PlaceInLineResponse, dict(user="user60", token=60, place=600)),
    "RoomAdded": (m.RoomAdded, dict(room="room62")),
    "RoomRemoved": (m.RoomRemoved, dict(room="room63")),
    "RoomList": (m.RoomList, dict(rooms=[["pub64a", 641], ["pub64b", 642]], ownedprivaterooms=[["own64", 643]],
                                  otherprivaterooms=[["other64", 644]], operatedprivaterooms=["op64"])),
    "ExactFileSearch": (m.ExactFileSearch, dict(user="user65", token=65, file="file65", folder="folder65",
                                                size=1 << 33, checksum=65000)),
    "AdminMessage": (m.AdminMessage, dict(msg="admin66")),
    "GlobalUserList": (m.GlobalUserList, dict(users=[roomuser("user67", 2, 670, "IT")])),
    "TunneledMessage": (m.TunneledMessage, dict(user="user68", code=680, token=68, addr=("1.2.3.68", 6800),
                                                msg="msg68")),
    "PrivilegedUsers": (m.PrivilegedUsers, dict(users=["priv69a", "priv69b"])),
    "ParentMinSpeed": (m.ParentMinSpeed, dict(speed=83)),
    "ParentSpeedRatio": (m.ParentSpeedRatio, dict(ratio=84)),
    "ParentInactivityTimeout": (m.ParentInactivityTimeout, dict(seconds=86)),
    "SearchInactivityTimeout": (m.SearchInactivityTimeout, dict(seconds=87)),
    "MinParentsInCache": (m.MinParentsInCache, dict(num=88)),
    "DistribPingInterval": (m.DistribPingInterval, dict(seconds=90)),
    "AddToPrivileged": (m.AddToPrivileged, dict(user="user91")),
    "CheckPrivileges": (m.CheckPrivileges, dict(seconds=92)),
    "EmbeddedMessage": (m.EmbeddedMessage, dict(distrib_code=3)),
    "PossibleParents": (m.PossibleParents, dict(list={"parent102a": ("10.0.1.2", 1021),
                                                      "parent102b": ("127.0.0.1", 1022)})),
    "WishlistInterval": (m.WishlistInterval, dict(seconds=720)),
    "SimilarUsers": (m.SimilarUsers, dict()),
    "ItemRecommendations": (m.ItemRecommendations, dict(thing="item111", recommendations=[("rec111", 111)],
                                                        unrecommendations=[])),
    "ItemSimilarUsers": (m.ItemSimilarUsers, dict(thing="item112")),
    "RoomTickerState": (m.RoomTickerState, dict(room="room113", msgs=[("user113a", "tick113a"),
                                                                      ("user113b", "tick113b")])),
    "RoomTickerAdd": (m.RoomTickerAdd, dict(room="room114", user="user114", msg="tick114")),
    "RoomTickerRemove": (m.RoomTickerRemove, dict(room="room115", user="user115")),
    "UserPrivileged": (m.UserPrivileged, dict(user="user122", privileged=True)),
    "NotifyPrivileges": (m.NotifyPrivileges, dict(token=124, user="user124")),
    "AckNotifyPrivileges": (m.AckNotifyPrivileges, dict(token=125)),
    "ResetDistributed": (m.ResetDistributed, dict()),
    "PrivateRoomUsers": (m.PrivateRoomUsers, dict(room="room133", users=["mem133a", "mem133b"])),
    "PrivateRoomAddUser": (m.PrivateRoomAddUser, dict(room="room134", user="user134")),
    "PrivateRoomRemoveUser": (m.PrivateRoomRemoveUser, dict(room="room135", user="user135")),
    "PrivateRoomSomething": (m.PrivateRoomSomething, dict(room="room138")),
    "PrivateRoomAdded": (m.PrivateRoomAdded, dict(room="room139")),
    "PrivateRoomRemoved": (m.PrivateRoomRemoved, dict(room="room140")),
    "PrivateRoomToggle": (m.PrivateRoomToggle, dict(enabled=True)),
    "ChangePassword": (m.ChangePassword, dict(password="pass142")),
    "PrivateRoomAddOperator": (m.PrivateRoomAddOperator, dict(room="room143", user="user143")),
    "PrivateRoomRemoveOperator": (m.PrivateRoomRemoveOperator, dict(room="room144", user="user144")),
    "PrivateRoomOperatorAdded": (m.PrivateRoomOperatorAdded, dict(room="room145")),
    "PrivateRoomOperatorRemoved": (m.PrivateRoomOperatorRemoved, dict(room="room146")),
    "PrivateRoomOperators": (m.PrivateRoomOperators, dict(room="room148", operators=["op148"])),
    "GlobalRoomMessage": (m.GlobalRoomMessage, dict(room="room152", user="user152", message="msg152")),
    "RelatedSearch": (m.RelatedSearch, dict(query="query153", terms=[("term153", 153)])),
    "ExcludedSearchPhrases": (m.ExcludedSearchPhrases, dict(phrases=["phrase160a", "phrase160b"])),
    "CantConnectToPeer": (m.CantConnectToPeer, dict(token=1001)),
    "CantCreateRoom": (m.CantCreateRoom, dict(room="room1003")),

    "SharedFileListResponse": (m.SharedFileListResponse, dict(
        list=[("@@music\\A", [MP3("a1.mp3"), (1, "a2.txt", 52, None, {})]), ("@@music\\B", [])],
        unknown=0, privatelist=[("@@buddies\\C", [(1, "c.ogg", 53, None, {})])])),
    "FileSearchResponse": (m.FileSearchResponse, dict(
        token=9, list=[(1, FN, 5000000009, None, {0: 128, 1: 15}), (1, "@@music\\Album\\cover.jpg", 99, None, {})],
        freeulslots=False, ulspeed=90, inqueue=900, unknown=0,
        privatelist=[(1, "@@buddies\\p.flac", 999, None, {})])),
    "UserInfoResponse": (m.UserInfoResponse, dict(descr="descr16", has_pic=True, pic=b"\x89PNG\r\n", totalupl=160,
                                                  queuesize=161, slotsavail=True, uploadallowed=1)),
    "FolderContentsResponse": (m.FolderContentsResponse, dict(
        token=37, dir="@@music\\Album",
        list={"@@music\\Album": [MP3("t1.mp3"), (1, "t2.mp3", 372, None, {})]})),
    "TransferRequest": (m.TransferRequest, dict(direction=1, token=40, file=FN, filesize=254415)),
    "TransferRequestDownload": (m.TransferRequest, dict(direction=0, token=41, file=FN, filesize=None)),
    "TransferResponseAllowed": (m.TransferResponse, dict(token=410, allowed=True, reason=None, filesize=None)),
    "TransferResponseDenied": (m.TransferResponse, dict(token=412, allowed=False, reason="Queued")),
    "QueueUpload": (m.QueueUpload, dict(file=FN)),
    "PlaceInQueueResponse": (m.PlaceInQueueResponse, dict(filename=FN, place=44)),
    "UploadFailed": (m.UploadFailed, dict(file=FN)),
    "UploadDenied": (m.UploadDenied, dict(file=FN, reason="File not shared.")),
    "PlaceInQueueRequest": (m.PlaceInQueueRequest, dict(file=FN)),
    "FolderContentsRequest": (m.FolderContentsRequest, dict(token=36, dir="@@music\\Album")),

    "PierceFireWall": (m.PierceFireWall, dict(token=77)),
    "PeerInit": (m.PeerInit, dict(target_user="user1", conn_type="F")),

    "DistribSearch": (m.DistribSearch, dict(unknown=49, search_username="user3", token=3, searchterm="query3")),
    "DistribBranchLevel": (m.DistribBranchLevel, dict(level=4)),
    "DistribBranchRoot": (m.DistribBranchRoot, dict(root_username="root5")),
    "DistribChildDepth": (m.DistribChildDepth, dict(value=7)),
    "DistribEmbeddedMessage": (m.DistribEmbeddedMessage, dict(distrib_code=3)),
}

# Extra checks on parsed values that need more than attribute equality.
EXTRA = {
    "SimilarUsers": lambda o: [(u.username, u.rating) for u in o.users] == [("sim110b", 1102), ("sim110a", 1101)],
    "ItemSimilarUsers": lambda o: [u.username for u in o.users] == ["user112"],
    "EmbeddedMessage": lambda o: parse_dist(3, o.distrib_message) == ("user93", 93, "query93"),
    "DistribEmbeddedMessage": lambda o: parse_dist(3, o.distrib_message) == ("user93", 930, "query930"),
}


def parse_dist(code, body):
    d = m.DistribSearch()
    d.parse_network_message(memoryview(bytes(body)))
    assert d.unknown == 49
    return (d.search_username, d.token, d.searchterm)


def norm(v):
    if isinstance(v, list) and v and isinstance(v[0], m.UserData):
        return users(v)
    if isinstance(v, m.UserData):
        return users([v])[0]
    if isinstance(v, memoryview):
        return bytes(v)
    return v


def main(path):
    passed = 0
    seen = set()
    for line in open(path, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        kind, label, hexs = line.split()
        frame = bytes.fromhex(hexs)
        length, = struct.unpack_from("<I", frame)
        assert length + 4 == len(frame), (label, "length field")
        cls, want = EXPECT[label]
        if kind in ("S", "P"):
            code, = struct.unpack_from("<I", frame, 4)
            body = frame[8:]
        else:
            code = frame[4]
            body = frame[5:]
        codes = {"S": m.SERVER_MESSAGE_CODES, "P": m.PEER_MESSAGE_CODES, "I": m.PEER_INIT_MESSAGE_CODES,
                 "D": m.DISTRIBUTED_MESSAGE_CODES}[kind]
        assert codes[cls] == code, (label, "code", code, codes[cls])
        obj = cls()
        if cls is m.FileSearchResponse:
            obj.allowed_responses = {9}
        if cls is m.FolderContentsResponse:
            obj.username = ""
            obj.allowed_responses = {"@@music\\Album"}
        obj.parse_network_message(memoryview(body))
        for attr, value in want.items():
            got = norm(getattr(obj, attr))
            if got != value:
                print(f"FAIL {label}.{attr}: pynicotine read {got!r}, expected {value!r}")
                print(f"0 passed, 1 failed")
                sys.exit(1)
        if label in EXTRA and not EXTRA[label](obj):
            print(f"FAIL {label}: extra check")
            sys.exit(1)
        seen.add(label)
        passed += 1
    missing = set(EXPECT) - seen
    assert not missing, ("labels without a frame", missing)
    print(f"{passed} passed, 0 failed")


main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/omnipeer_frames.txt")
