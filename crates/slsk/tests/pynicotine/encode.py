"""Encode sample messages with pynicotine 3.3.11 (the real Nicotine+ encoders).

Writes tests/fixtures/pynicotine_frames.txt: one `<kind> <label> <hex frame>` per line,
kind S (server, u32 code), P (peer, u32 code), I (peer-init, u8 code), D (distributed,
u8 code). Every field gets a distinct value so that a field read in the wrong order shows.
tests/pynicotine.rs decodes each line into the value it expects and re-encodes it.

Run with a Python that has pynicotine (nicotine-plus==3.3.11 installed with --no-deps):
    python3 tests/pynicotine/encode.py > tests/fixtures/pynicotine_frames.txt
"""

import struct
import zlib

from pynicotine import slskmessages as m

FN = "@@music\\Album\\Track 01.mp3"


def body(msg):
    return bytes(msg.make_network_message())


def emit(kind, label, msg):
    b = body(msg)
    if kind == "S":
        head = struct.pack("<II", len(b) + 4, m.SERVER_MESSAGE_CODES[type(msg)])
    elif kind == "P":
        head = struct.pack("<II", len(b) + 4, m.PEER_MESSAGE_CODES[type(msg)])
    elif kind == "I":
        head = struct.pack("<IB", len(b) + 1, m.PEER_INIT_MESSAGE_CODES[type(msg)])
    else:
        head = struct.pack("<IB", len(b) + 1, m.DISTRIBUTED_MESSAGE_CODES[type(msg)])
    print(kind, label, (head + b).hex())


S = [
    ("Login", m.Login("user1", "pass2", 160, 3)),
    ("SetWaitPort", m.SetWaitPort(2234)),
    ("GetPeerAddress", m.GetPeerAddress("peer4")),
    ("WatchUser", m.WatchUser("watch5")),
    ("UnwatchUser", m.UnwatchUser("unwatch6")),
    ("GetUserStatus", m.GetUserStatus("status7")),
    ("IgnoreUser", m.IgnoreUser("ignore11")),
    ("UnignoreUser", m.UnignoreUser("unignore12")),
    ("SayChatroom", m.SayChatroom("room13", "msg13")),
    ("JoinRoom", m.JoinRoom("room14")),
    ("JoinRoomPrivate", m.JoinRoom("room14p", private=True)),
    ("LeaveRoom", m.LeaveRoom("room15")),
    ("ConnectToPeer", m.ConnectToPeer(18, "user18", "F")),
    ("MessageUser", m.MessageUser("user22", "msg22")),
    ("MessageAcked", m.MessageAcked(23)),
    ("FileSearchRoom", m.FileSearchRoom(25, 250, "query25")),
    ("FileSearch", m.FileSearch(26, "query26 -excl *artial")),
    ("SetStatus", m.SetStatus(1)),
    ("ServerPing", m.ServerPing()),
    ("SendConnectToken", m.SendConnectToken("user33", 33)),
    ("SendDownloadSpeed", m.SendDownloadSpeed("user34", 34)),
    ("SharedFoldersFiles", m.SharedFoldersFiles(35, 350)),
    ("GetUserStats", m.GetUserStats("user36")),
    ("UserSearch", m.UserSearch("user42", 42, "query42")),
    ("SimilarRecommendations", m.SimilarRecommendations("item50")),
    ("AddThingILike", m.AddThingILike("item51")),
    ("RemoveThingILike", m.RemoveThingILike("item52")),
    ("Recommendations", m.Recommendations()),
    ("MyRecommendations", m.MyRecommendations()),
    ("GlobalRecommendations", m.GlobalRecommendations()),
    ("UserInterests", m.UserInterests("user57")),
    ("AdminCommand", m.AdminCommand("cmd58", ["arg1", "arg2"])),
    ("PlaceInLineResponse", m.PlaceInLineResponse("user60", 60, 600)),
    ("RoomList", m.RoomList()),
    ("ExactFileSearch", m.ExactFileSearch(65, "file65", "folder65", 6500, 65000, 6)),
    ("GlobalUserList", m.GlobalUserList()),
    ("TunneledMessage", m.TunneledMessage("user68", 68, 680, "msg68")),
    ("HaveNoParent", m.HaveNoParent(True)),
    ("CheckPrivileges", m.CheckPrivileges()),
    ("AcceptChildren", m.AcceptChildren(True)),
    ("WishlistSearch", m.WishlistSearch(103, "wish103")),
    ("SimilarUsers", m.SimilarUsers()),
    ("ItemRecommendations", m.ItemRecommendations("item111")),
    ("ItemSimilarUsers", m.ItemSimilarUsers("item112")),
    ("RoomTickerSet", m.RoomTickerSet("room116", "ticker116")),
    ("AddThingIHate", m.AddThingIHate("item117")),
    ("RemoveThingIHate", m.RemoveThingIHate("item118")),
    ("RoomSearch", m.RoomSearch("room120", 120, "query120")),
    ("SendUploadSpeed", m.SendUploadSpeed(121)),
    ("UserPrivileged", m.UserPrivileged("user122")),
    ("GivePrivileges", m.GivePrivileges("user123", 123)),
    ("NotifyPrivileges", m.NotifyPrivileges(124, "user124")),
    ("AckNotifyPrivileges", m.AckNotifyPrivileges(125)),
    ("BranchLevel", m.BranchLevel(126)),
    ("BranchRoot", m.BranchRoot("root127")),
    ("ChildDepth", m.ChildDepth(129)),
    ("PrivateRoomAddUser", m.PrivateRoomAddUser("room134", "user134")),
    ("PrivateRoomRemoveUser", m.PrivateRoomRemoveUser("room135", "user135")),
    ("PrivateRoomCancelMembership", m.PrivateRoomCancelMembership("room136")),
    ("PrivateRoomDisown", m.PrivateRoomDisown("room137")),
    ("PrivateRoomSomething", m.PrivateRoomSomething("room138")),
    ("PrivateRoomToggle", m.PrivateRoomToggle(False)),
    ("ChangePassword", m.ChangePassword("pass142")),
    ("PrivateRoomAddOperator", m.PrivateRoomAddOperator("room143", "user143")),
    ("PrivateRoomRemoveOperator", m.PrivateRoomRemoveOperator("room144", "user144")),
    ("MessageUsers", m.MessageUsers(["user149a", "user149b"], "msg149")),
    ("JoinGlobalRoom", m.JoinGlobalRoom()),
    ("LeaveGlobalRoom", m.LeaveGlobalRoom()),
    ("RelatedSearch", m.RelatedSearch("query153")),
    ("CantConnectToPeer", m.CantConnectToPeer(1001, "user1001")),
]

shares_folder = bytearray()
shares_folder += struct.pack("<I", 1)
shares_folder += m.FileListMessage.pack_file_info(("Track 01.mp3", 3000001, (320, 1, None, None), 181))
folder = m.FolderContentsResponse(directory="@@music\\Album", token=37, shares=shares_folder)

share_list = m.SharedFileListResponse(public_shares={"@@music\\Album": bytes(shares_folder)}, permission_level="public")

P = [
    ("SharedFileListRequest", m.SharedFileListRequest()),
    ("FileSearchRequest", m.FileSearchRequest(8, "query8")),
    ("FileSearchResponse", m.FileSearchResponse(
        search_username="user9", token=9,
        shares=[(FN, 3000001, (320, 1, None, None), 181), ("@@music\\B\\x.flac", 40000002, (None, None, 44100, 16), 200)],
        freeulslots=True, ulspeed=90, inqueue=900)),
    ("FileSearchResponsePrivate", m.FileSearchResponse(
        search_username="user9p", token=99, shares=[], freeulslots=False, ulspeed=91, inqueue=901,
        private_shares=[(FN, 5, None, None)])),
    ("UserInfoRequest", m.UserInfoRequest()),
    ("UserInfoResponse", m.UserInfoResponse("descr16", b"\x89PNG", 160, 161, True, 2)),
    ("UserInfoResponseNoPic", m.UserInfoResponse("descr16b", None, 162, 163, False, 1)),
    ("PMessageUser", m.PMessageUser("user22", "msg22")),
    ("FolderContentsRequest", m.FolderContentsRequest("@@music\\Album", 36)),
    ("FolderContentsResponse", folder),
    ("TransferRequestUpload", m.TransferRequest(1, 40, FN, 4000)),
    ("TransferRequestDownload", m.TransferRequest(0, 41, FN)),
    ("TransferResponseAllowed", m.TransferResponse(allowed=True, token=410)),
    ("TransferResponseAllowedSize", m.TransferResponse(allowed=True, token=411, filesize=4110)),
    ("TransferResponseDenied", m.TransferResponse(allowed=False, token=412, reason="File not shared.")),
    ("PlaceholdUpload", m.PlaceholdUpload(FN)),
    ("QueueUpload", m.QueueUpload(FN)),
    ("PlaceInQueueResponse", m.PlaceInQueueResponse(FN, 44)),
    ("UploadFailed", m.UploadFailed(FN)),
    ("UploadDenied", m.UploadDenied(FN, "Too many megabytes")),
    ("PlaceInQueueRequest", m.PlaceInQueueRequest(FN)),
    ("UploadQueueNotification", m.UploadQueueNotification()),
]

I = [
    ("PierceFireWall", m.PierceFireWall(token=77)),
    ("PeerInit", m.PeerInit(init_user="user1", conn_type="D")),
]

D = [
    ("DistribPing", m.DistribPing()),
    ("DistribSearch", m.DistribSearch(49, "user3", 3, "query3")),
    ("DistribBranchLevel", m.DistribBranchLevel(-4)),
    ("DistribBranchRoot", m.DistribBranchRoot("root5")),
    ("DistribChildDepth", m.DistribChildDepth(7)),
]

print("# pynicotine 3.3.11 encodings; regenerate with tests/pynicotine/encode.py")
for label, msg in S:
    emit("S", label, msg)
for label, msg in P:
    emit("P", label, msg)
# SharedFileListResponse needs the shares database for its permission check; build its
# body exactly as its make_network_message does: shares list, u32 unknown(0), zlib.
sl = bytearray()
sl += share_list._make_shares_list([share_list.public_shares])
sl += struct.pack("<I", 0)
b = zlib.compress(sl)
print("P", "SharedFileListResponse", (struct.pack("<II", len(b) + 4, 5) + b).hex())
for label, msg in I:
    emit("I", label, msg)
for label, msg in D:
    emit("D", label, msg)
