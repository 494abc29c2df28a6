//! Property tests over every message type: encode → frame → decode gives the message back,
//! and no decoder panics on arbitrary or mutilated bytes.
//!
//! Each strategy list is checked to cover every code its decoder knows, so a message type
//! added to the crate without a strategy here fails `*_strategies_cover_every_code`.

use omnipeer_slsk::server::{
    ObfuscatedPort, PossibleParent, PrivateRoomInfo, Recommendation, RoomEntry, RoomList, RoomUser, WatchedUser,
    REQUEST_CODES, RESPONSE_CODES,
};
use omnipeer_slsk::shares::FileAttribute;
use omnipeer_slsk::{distributed, peer, zlib};
use omnipeer_slsk::{
    DistributedMessage, FrameKind, FrameReader, PeerInit, PeerMessage, SearchResponse, ServerRequest, ServerResponse,
    SharedDirectory, SharedFile, SharedFileList, TransferDirection, TransferReply, UserInfo, UserStats, UserStatus,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union, ValueTree};
use proptest::test_runner::TestRunner;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

fn s() -> BoxedStrategy<String> {
    prop_oneof![".{0,12}", "[a-zA-Z0-9 _@\\\\.-]{0,12}"].boxed()
}

fn strs() -> BoxedStrategy<Vec<String>> {
    vec(s(), 0..4).boxed()
}

fn ip() -> BoxedStrategy<Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from).boxed()
}

fn status() -> BoxedStrategy<UserStatus> {
    any::<u32>().prop_map(UserStatus::from).boxed()
}

fn stats() -> BoxedStrategy<UserStats> {
    any::<[u32; 5]>()
        .prop_map(|[a, b, c, d, e]| UserStats { avg_speed: a, upload_num: b, unknown: c, files: d, dirs: e })
        .boxed()
}

fn room_user() -> BoxedStrategy<RoomUser> {
    (s(), status(), stats(), any::<u32>(), s())
        .prop_map(|(name, status, stats, slots_full, country)| RoomUser { name, status, stats, slots_full, country })
        .boxed()
}

fn room_entries() -> BoxedStrategy<Vec<RoomEntry>> {
    vec((s(), any::<u32>()).prop_map(|(name, users)| RoomEntry { name, users }), 0..4).boxed()
}

fn recommendations() -> BoxedStrategy<Vec<Recommendation>> {
    vec((s(), any::<i32>()).prop_map(|(item, score)| Recommendation { item, score }), 0..4).boxed()
}

fn str_u32s() -> BoxedStrategy<Vec<(String, u32)>> {
    vec((s(), any::<u32>()), 0..4).boxed()
}

fn shared_file() -> BoxedStrategy<SharedFile> {
    (
        s(),
        0u64..(1 << 56),
        s(),
        vec((any::<u32>(), any::<u32>()).prop_map(|(code, value)| FileAttribute { code, value }), 0..4),
    )
        .prop_map(|(filename, size, extension, attributes)| SharedFile { filename, size, extension, attributes })
        .boxed()
}

fn files() -> BoxedStrategy<Vec<SharedFile>> {
    vec(shared_file(), 0..4).boxed()
}

fn dirs() -> BoxedStrategy<Vec<SharedDirectory>> {
    vec((s(), files()).prop_map(|(path, files)| SharedDirectory { path, files }), 0..3).boxed()
}

macro_rules! user_variant {
    ($enum:ident :: $v:ident) => {
        s().prop_map(|user| $enum::$v { user }).boxed()
    };
}

macro_rules! room_variant {
    ($enum:ident :: $v:ident) => {
        s().prop_map(|room| $enum::$v { room }).boxed()
    };
}

macro_rules! room_user_variant {
    ($enum:ident :: $v:ident) => {
        (s(), s()).prop_map(|(room, user)| $enum::$v { room, user }).boxed()
    };
}

macro_rules! item_variant {
    ($enum:ident :: $v:ident) => {
        s().prop_map(|item| $enum::$v { item }).boxed()
    };
}

fn request_strategies() -> Vec<BoxedStrategy<ServerRequest>> {
    use ServerRequest as R;
    vec![
        (s(), s(), any::<u32>(), s(), any::<u32>())
            .prop_map(|(username, password, major, hash, minor)| R::Login { username, password, major, hash, minor })
            .boxed(),
        (s(), s(), any::<u32>(), any::<u32>()).prop_map(|(u, p, major, minor)| R::login(&u, &p, major, minor)).boxed(),
        (any::<u32>(), proptest::option::of((any::<u32>(), any::<u32>())))
            .prop_map(|(port, o)| R::SetWaitPort {
                port,
                obfuscation: o.map(|(obf_type, port)| ObfuscatedPort { obf_type, port }),
            })
            .boxed(),
        user_variant!(R::GetPeerAddress),
        user_variant!(R::WatchUser),
        user_variant!(R::UnwatchUser),
        user_variant!(R::GetUserStatus),
        user_variant!(R::IgnoreUser),
        user_variant!(R::UnignoreUser),
        (s(), s()).prop_map(|(room, message)| R::SayChatroom { room, message }).boxed(),
        (s(), any::<bool>()).prop_map(|(room, private)| R::JoinRoom { room, private }).boxed(),
        room_variant!(R::LeaveRoom),
        (any::<u32>(), s(), prop_oneof![Just("P".to_string()), Just("F".into()), Just("D".into()), s()])
            .prop_map(|(token, user, conn_type)| R::ConnectToPeer { token, user, conn_type })
            .boxed(),
        (s(), s()).prop_map(|(user, message)| R::MessageUser { user, message }).boxed(),
        any::<u32>().prop_map(|id| R::MessageAcked { id }).boxed(),
        (any::<u32>(), any::<u32>(), s())
            .prop_map(|(token, room_id, query)| R::FileSearchRoom { token, room_id, query })
            .boxed(),
        (any::<u32>(), s()).prop_map(|(token, query)| R::FileSearch { token, query }).boxed(),
        status().prop_map(|status| R::SetStatus { status }).boxed(),
        Just(R::ServerPing).boxed(),
        (s(), any::<u32>()).prop_map(|(user, token)| R::SendConnectToken { user, token }).boxed(),
        (s(), any::<u32>()).prop_map(|(user, speed)| R::SendDownloadSpeed { user, speed }).boxed(),
        (any::<u32>(), any::<u32>()).prop_map(|(dirs, files)| R::SharedFoldersFiles { dirs, files }).boxed(),
        user_variant!(R::GetUserStats),
        any::<u32>().prop_map(|full| R::UploadSlotsFull { full }).boxed(),
        (s(), any::<u32>(), s()).prop_map(|(user, token, query)| R::UserSearch { user, token, query }).boxed(),
        item_variant!(R::SimilarRecommendations),
        item_variant!(R::AddThingILike),
        item_variant!(R::RemoveThingILike),
        Just(R::Recommendations).boxed(),
        Just(R::MyRecommendations).boxed(),
        Just(R::GlobalRecommendations).boxed(),
        user_variant!(R::UserInterests),
        (s(), strs()).prop_map(|(command, args)| R::AdminCommand { command, args }).boxed(),
        (s(), any::<u32>()).prop_map(|(user, token)| R::PlaceInLineRequest { user, token }).boxed(),
        (s(), any::<u32>(), any::<u32>())
            .prop_map(|(user, token, place)| R::PlaceInLineResponse { user, token, place })
            .boxed(),
        Just(R::RoomList).boxed(),
        (any::<u32>(), s(), s(), any::<u64>(), any::<u32>(), any::<u8>())
            .prop_map(|(token, name, path, size, checksum, unknown)| R::ExactFileSearch {
                token,
                name,
                path,
                size,
                checksum,
                unknown,
            })
            .boxed(),
        Just(R::GlobalUserList).boxed(),
        (s(), any::<u32>(), any::<u32>(), s())
            .prop_map(|(user, token, code, message)| R::TunneledMessage { user, token, code, message })
            .boxed(),
        any::<bool>().prop_map(|no_parent| R::HaveNoParent { no_parent }).boxed(),
        ip().prop_map(|ip| R::ParentIp { ip }).boxed(),
        Just(R::CheckPrivileges).boxed(),
        any::<bool>().prop_map(|accept| R::AcceptChildren { accept }).boxed(),
        (any::<u32>(), s()).prop_map(|(token, query)| R::WishlistSearch { token, query }).boxed(),
        Just(R::SimilarUsers).boxed(),
        item_variant!(R::ItemRecommendations),
        item_variant!(R::ItemSimilarUsers),
        (s(), s()).prop_map(|(room, ticker)| R::RoomTickerSet { room, ticker }).boxed(),
        item_variant!(R::AddThingIHate),
        item_variant!(R::RemoveThingIHate),
        (s(), any::<u32>(), s()).prop_map(|(room, token, query)| R::RoomSearch { room, token, query }).boxed(),
        any::<u32>().prop_map(|speed| R::SendUploadSpeed { speed }).boxed(),
        user_variant!(R::UserPrivileged),
        (s(), any::<u32>()).prop_map(|(user, days)| R::GivePrivileges { user, days }).boxed(),
        (any::<u32>(), s()).prop_map(|(token, user)| R::NotifyPrivileges { token, user }).boxed(),
        any::<u32>().prop_map(|token| R::AckNotifyPrivileges { token }).boxed(),
        any::<u32>().prop_map(|level| R::BranchLevel { level }).boxed(),
        s().prop_map(|root| R::BranchRoot { root }).boxed(),
        any::<u32>().prop_map(|depth| R::ChildDepth { depth }).boxed(),
        room_user_variant!(R::AddRoomMember),
        room_user_variant!(R::RemoveRoomMember),
        room_variant!(R::CancelRoomMembership),
        room_variant!(R::CancelRoomOwnership),
        room_variant!(R::RoomSomething),
        any::<bool>().prop_map(|enabled| R::EnableRoomInvitations { enabled }).boxed(),
        s().prop_map(|password| R::ChangePassword { password }).boxed(),
        room_user_variant!(R::AddRoomOperator),
        room_user_variant!(R::RemoveRoomOperator),
        (strs(), s()).prop_map(|(users, message)| R::MessageUsers { users, message }).boxed(),
        Just(R::JoinGlobalRoom).boxed(),
        Just(R::LeaveGlobalRoom).boxed(),
        s().prop_map(|query| R::RelatedSearch { query }).boxed(),
        (any::<u32>(), s()).prop_map(|(token, user)| R::CantConnectToPeer { token, user }).boxed(),
        (any::<u32>().prop_filter("unknown code", |c| !REQUEST_CODES.contains(c)), vec(any::<u8>(), 0..20))
            .prop_map(|(code, body)| R::Unknown { code, body })
            .boxed(),
    ]
}

fn response_strategies() -> Vec<BoxedStrategy<ServerResponse>> {
    use ServerResponse as R;
    vec![
        (s(), ip(), s(), any::<bool>())
            .prop_map(|(greet, own_ip, password_hash, supporter)| R::LoginSuccess {
                greet,
                own_ip,
                password_hash,
                supporter,
            })
            .boxed(),
        (s(), proptest::option::of(s())).prop_map(|(reason, detail)| R::LoginFailure { reason, detail }).boxed(),
        (s(), ip(), any::<u32>(), any::<u32>(), any::<u16>())
            .prop_map(|(user, ip, port, obf_type, obf_port)| R::GetPeerAddress { user, ip, port, obf_type, obf_port })
            .boxed(),
        (s(), any::<bool>(), proptest::option::of((status(), stats(), proptest::option::of(s()))))
            .prop_map(|(user, exists, d)| R::WatchUser {
                user,
                exists,
                details: d.map(|(status, stats, country)| WatchedUser { status, stats, country }),
            })
            .boxed(),
        (s(), status(), any::<bool>())
            .prop_map(|(user, status, privileged)| R::GetUserStatus { user, status, privileged })
            .boxed(),
        user_variant!(R::IgnoreUser),
        user_variant!(R::UnignoreUser),
        (s(), s(), s()).prop_map(|(room, user, message)| R::SayChatroom { room, user, message }).boxed(),
        (s(), vec(room_user(), 0..4), proptest::option::of((s(), strs())))
            .prop_map(|(room, users, p)| R::JoinRoom {
                room,
                users,
                private: p.map(|(owner, operators)| PrivateRoomInfo { owner, operators }),
            })
            .boxed(),
        room_variant!(R::LeaveRoom),
        (s(), room_user()).prop_map(|(room, user)| R::UserJoinedRoom { room, user }).boxed(),
        room_user_variant!(R::UserLeftRoom),
        (s(), s(), ip(), any::<u32>(), any::<u32>(), any::<bool>(), any::<u32>(), any::<u32>())
            .prop_map(|(user, conn_type, ip, port, token, privileged, obf_type, obf_port)| R::ConnectToPeer {
                user,
                conn_type,
                ip,
                port,
                token,
                privileged,
                obf_type,
                obf_port,
            })
            .boxed(),
        (any::<u32>(), any::<u32>(), s(), s(), any::<bool>())
            .prop_map(|(id, timestamp, user, message, new_message)| R::MessageUser {
                id,
                timestamp,
                user,
                message,
                new_message,
            })
            .boxed(),
        (s(), any::<u32>(), s()).prop_map(|(user, token, query)| R::FileSearch { user, token, query }).boxed(),
        Just(R::ServerPing).boxed(),
        (s(), any::<u32>()).prop_map(|(user, token)| R::SendConnectToken { user, token }).boxed(),
        (s(), stats()).prop_map(|(user, stats)| R::GetUserStats { user, stats }).boxed(),
        (s(), any::<u32>()).prop_map(|(user, full)| R::UploadSlotsFull { user, full }).boxed(),
        Just(R::Relogged).boxed(),
        (s(), strs()).prop_map(|(item, similar)| R::SimilarRecommendations { item, similar }).boxed(),
        (recommendations(), recommendations())
            .prop_map(|(recommendations, unrecommendations)| R::Recommendations { recommendations, unrecommendations })
            .boxed(),
        strs().prop_map(|items| R::MyRecommendations { items }).boxed(),
        (recommendations(), recommendations())
            .prop_map(|(recommendations, unrecommendations)| R::GlobalRecommendations {
                recommendations,
                unrecommendations,
            })
            .boxed(),
        (s(), strs(), strs()).prop_map(|(user, liked, hated)| R::UserInterests { user, liked, hated }).boxed(),
        (s(), any::<u32>()).prop_map(|(user, token)| R::PlaceInLineRequest { user, token }).boxed(),
        (s(), any::<u32>(), any::<u32>())
            .prop_map(|(user, token, place)| R::PlaceInLineResponse { user, token, place })
            .boxed(),
        room_variant!(R::RoomAdded),
        room_variant!(R::RoomRemoved),
        (room_entries(), room_entries(), room_entries(), strs())
            .prop_map(|(public, owned_private, other_private, operated_private)| {
                R::RoomList(RoomList { public, owned_private, other_private, operated_private })
            })
            .boxed(),
        (s(), any::<u32>(), s(), s(), any::<u64>(), any::<u32>())
            .prop_map(|(user, token, name, path, size, checksum)| R::ExactFileSearch {
                user,
                token,
                name,
                path,
                size,
                checksum,
            })
            .boxed(),
        s().prop_map(|message| R::AdminMessage { message }).boxed(),
        vec(room_user(), 0..4).prop_map(|users| R::GlobalUserList { users }).boxed(),
        (s(), any::<u32>(), any::<u32>(), ip(), any::<u32>(), s())
            .prop_map(|(user, code, token, ip, port, message)| R::TunneledMessage {
                user,
                code,
                token,
                ip,
                port,
                message,
            })
            .boxed(),
        strs().prop_map(|users| R::PrivilegedUsers { users }).boxed(),
        any::<u32>().prop_map(|speed| R::ParentMinSpeed { speed }).boxed(),
        any::<u32>().prop_map(|ratio| R::ParentSpeedRatio { ratio }).boxed(),
        any::<u32>().prop_map(|seconds| R::ParentInactivityTimeout { seconds }).boxed(),
        any::<u32>().prop_map(|seconds| R::SearchInactivityTimeout { seconds }).boxed(),
        any::<u32>().prop_map(|count| R::MinParentsInCache { count }).boxed(),
        any::<u32>().prop_map(|seconds| R::DistribPingInterval { seconds }).boxed(),
        user_variant!(R::AddToPrivileged),
        any::<u32>().prop_map(|seconds_left| R::CheckPrivileges { seconds_left }).boxed(),
        (any::<u8>(), vec(any::<u8>(), 0..20)).prop_map(|(code, body)| R::EmbeddedMessage { code, body }).boxed(),
        distributed_strategy().prop_map(|d| R::embedded(&d)).boxed(),
        vec((s(), ip(), any::<u32>()).prop_map(|(user, ip, port)| PossibleParent { user, ip, port }), 0..4)
            .prop_map(|parents| R::PossibleParents { parents })
            .boxed(),
        any::<u32>().prop_map(|seconds| R::WishlistInterval { seconds }).boxed(),
        str_u32s().prop_map(|users| R::SimilarUsers { users }).boxed(),
        (s(), recommendations())
            .prop_map(|(item, recommendations)| R::ItemRecommendations { item, recommendations })
            .boxed(),
        (s(), strs()).prop_map(|(item, users)| R::ItemSimilarUsers { item, users }).boxed(),
        (s(), vec((s(), s()), 0..4)).prop_map(|(room, tickers)| R::RoomTickers { room, tickers }).boxed(),
        (s(), s(), s()).prop_map(|(room, user, ticker)| R::RoomTickerAdd { room, user, ticker }).boxed(),
        room_user_variant!(R::RoomTickerRemove),
        (s(), any::<bool>()).prop_map(|(user, privileged)| R::UserPrivileged { user, privileged }).boxed(),
        (any::<u32>(), s()).prop_map(|(token, user)| R::NotifyPrivileges { token, user }).boxed(),
        any::<u32>().prop_map(|token| R::AckNotifyPrivileges { token }).boxed(),
        Just(R::ResetDistributed).boxed(),
        (s(), strs()).prop_map(|(room, members)| R::RoomMembers { room, members }).boxed(),
        room_user_variant!(R::AddRoomMember),
        room_user_variant!(R::RemoveRoomMember),
        room_variant!(R::RoomSomething),
        room_variant!(R::RoomMembershipGranted),
        room_variant!(R::RoomMembershipRevoked),
        any::<bool>().prop_map(|enabled| R::EnableRoomInvitations { enabled }).boxed(),
        s().prop_map(|password| R::ChangePassword { password }).boxed(),
        room_user_variant!(R::AddRoomOperator),
        room_user_variant!(R::RemoveRoomOperator),
        room_variant!(R::RoomOperatorshipGranted),
        room_variant!(R::RoomOperatorshipRevoked),
        (s(), strs()).prop_map(|(room, operators)| R::RoomOperators { room, operators }).boxed(),
        (s(), s(), s()).prop_map(|(room, user, message)| R::GlobalRoomMessage { room, user, message }).boxed(),
        (s(), str_u32s()).prop_map(|(query, terms)| R::RelatedSearch { query, terms }).boxed(),
        strs().prop_map(|phrases| R::ExcludedSearchPhrases { phrases }).boxed(),
        any::<u32>().prop_map(|token| R::CantConnectToPeer { token }).boxed(),
        room_variant!(R::CantCreateRoom),
        (any::<u32>().prop_filter("unknown code", |c| !RESPONSE_CODES.contains(c)), vec(any::<u8>(), 0..20))
            .prop_map(|(code, body)| R::Unknown { code, body })
            .boxed(),
    ]
}

fn peer_init_strategy() -> BoxedStrategy<PeerInit> {
    prop_oneof![
        any::<u32>().prop_map(|token| PeerInit::PierceFireWall { token }),
        (s(), s(), any::<u32>()).prop_map(|(user, conn_type, token)| PeerInit::PeerInit { user, conn_type, token }),
    ]
    .boxed()
}

fn peer_strategies() -> Vec<BoxedStrategy<PeerMessage>> {
    use PeerMessage as M;
    vec![
        Just(M::SharedFileListRequest).boxed(),
        (dirs(), proptest::option::of((any::<u32>(), proptest::option::of(dirs()))))
            .prop_map(|(dirs, tail)| {
                M::SharedFileListResponse(SharedFileList {
                    dirs,
                    unknown: tail.as_ref().map(|t| t.0),
                    private_dirs: tail.and_then(|t| t.1),
                })
            })
            .boxed(),
        (any::<u32>(), s()).prop_map(|(token, query)| M::FileSearchRequest { token, query }).boxed(),
        (
            s(),
            any::<u32>(),
            files(),
            any::<bool>(),
            any::<u32>(),
            any::<u32>(),
            proptest::option::of((any::<u32>(), proptest::option::of(files()))),
        )
            .prop_map(|(user, token, files, slot_free, avg_speed, queue_len, tail)| {
                M::FileSearchResponse(SearchResponse {
                    user,
                    token,
                    files,
                    slot_free,
                    avg_speed,
                    queue_len,
                    unknown: tail.as_ref().map(|t| t.0),
                    private_files: tail.and_then(|t| t.1),
                })
            })
            .boxed(),
        Just(M::UserInfoRequest).boxed(),
        (
            s(),
            proptest::option::of(vec(any::<u8>(), 0..40)),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(description, picture, total_uploads, queue_size, slots_free, upload_permitted)| {
                M::UserInfoResponse(UserInfo {
                    description,
                    picture,
                    total_uploads,
                    queue_size,
                    slots_free,
                    upload_permitted,
                })
            })
            .boxed(),
        (any::<u32>(), any::<u32>(), s(), s())
            .prop_map(|(id, timestamp, user, message)| M::PrivateMessage { id, timestamp, user, message })
            .boxed(),
        (any::<u32>(), s()).prop_map(|(token, folder)| M::FolderContentsRequest { token, folder }).boxed(),
        (any::<u32>(), s(), dirs())
            .prop_map(|(token, folder, dirs)| M::FolderContentsResponse { token, folder, dirs })
            .boxed(),
        (any::<bool>(), any::<u32>(), s(), any::<u64>())
            .prop_map(|(up, token, filename, size)| M::TransferRequest {
                direction: if up { TransferDirection::Upload } else { TransferDirection::Download },
                token,
                filename,
                size: up.then_some(size),
            })
            .boxed(),
        (
            any::<u32>(),
            prop_oneof![
                proptest::option::of(any::<u64>()).prop_map(|size| TransferReply::Allowed { size }),
                s().prop_map(|reason| TransferReply::Denied { reason }),
            ],
        )
            .prop_map(|(token, reply)| M::TransferResponse { token, reply })
            .boxed(),
        s().prop_map(|filename| M::UploadPlacehold { filename }).boxed(),
        s().prop_map(|filename| M::QueueUpload { filename }).boxed(),
        (s(), any::<u32>()).prop_map(|(filename, place)| M::PlaceInQueueResponse { filename, place }).boxed(),
        s().prop_map(|filename| M::UploadFailed { filename }).boxed(),
        (s(), s()).prop_map(|(filename, reason)| M::UploadDenied { filename, reason }).boxed(),
        s().prop_map(|filename| M::PlaceInQueueRequest { filename }).boxed(),
        Just(M::UploadQueueNotification).boxed(),
        (any::<u32>().prop_filter("unknown code", |c| !peer::CODES.contains(c)), vec(any::<u8>(), 0..20))
            .prop_map(|(code, body)| M::Unknown { code, body })
            .boxed(),
    ]
}

fn distributed_strategies() -> Vec<BoxedStrategy<DistributedMessage>> {
    use DistributedMessage as D;
    vec![
        Just(D::Ping).boxed(),
        (s(), any::<u32>(), s()).prop_map(|(user, token, query)| D::Search { user, token, query }).boxed(),
        any::<i32>().prop_map(|level| D::BranchLevel { level }).boxed(),
        s().prop_map(|root| D::BranchRoot { root }).boxed(),
        any::<u32>().prop_map(|depth| D::ChildDepth { depth }).boxed(),
        (any::<u8>(), vec(any::<u8>(), 0..20))
            // An embedded Ping (code 0) has no body: `00 00 00 x` is SoulseekQt's u32 outer
            // code, and any other body after a 0 is refused (see the type's docs).
            .prop_filter("an embedded Ping carries no body", |(code, body)| *code != 0 || body.is_empty())
            .prop_map(|(code, body)| D::EmbeddedMessage { code, body })
            .boxed(),
        (any::<u8>().prop_filter("unknown code", |c| !distributed::CODES.contains(c)), vec(any::<u8>(), 0..20))
            .prop_map(|(code, body)| D::Unknown { code, body })
            .boxed(),
    ]
}

fn distributed_strategy() -> BoxedStrategy<DistributedMessage> {
    Union::new(distributed_strategies()).boxed()
}

/// The set of codes the strategies produce, sampling each one a few times.
fn codes_of<T>(strategies: Vec<BoxedStrategy<T>>, code: impl Fn(&T) -> u32) -> BTreeSet<u32>
where
    T: std::fmt::Debug,
{
    let mut runner = TestRunner::deterministic();
    strategies.into_iter().map(|st| code(&st.new_tree(&mut runner).unwrap().current())).collect()
}

fn known(codes: &[u32]) -> BTreeSet<u32> {
    codes.iter().copied().collect()
}

#[test]
fn request_strategies_cover_every_code() {
    let mut got = codes_of(request_strategies(), ServerRequest::code);
    got.retain(|c| REQUEST_CODES.contains(c));
    assert_eq!(got, known(REQUEST_CODES));
}

#[test]
fn response_strategies_cover_every_code() {
    let mut got = codes_of(response_strategies(), ServerResponse::code);
    got.retain(|c| RESPONSE_CODES.contains(c));
    assert_eq!(got, known(RESPONSE_CODES));
}

#[test]
fn peer_strategies_cover_every_code() {
    let mut got = codes_of(peer_strategies(), PeerMessage::code);
    got.retain(|c| peer::CODES.contains(c));
    assert_eq!(got, known(peer::CODES));
}

#[test]
fn distributed_strategies_cover_every_code() {
    let mut got = codes_of(distributed_strategies(), |d| d.code() as u32);
    got.retain(|c| distributed::CODES.contains(&(*c as u8)));
    let want: BTreeSet<u32> = distributed::CODES.iter().map(|&c| c as u32).collect();
    assert_eq!(got, want);
}

/// Frame the encoding, read it back through a FrameReader one byte at a time.
fn reframe(kind: FrameKind, bytes: &[u8]) -> omnipeer_slsk::Frame {
    let mut r = FrameReader::new(kind);
    let mut out = None;
    for b in bytes {
        assert!(out.is_none(), "frame ended before its last byte");
        r.push(&[*b]);
        out = r.next_frame().unwrap();
    }
    assert_eq!(r.buffered(), 0);
    out.expect("one complete frame")
}

/// Truncate and flip bytes of a valid body.
fn mutilate(mut body: Vec<u8>, cut: usize, flips: &[(usize, u8)]) -> Vec<u8> {
    if !body.is_empty() {
        for (at, x) in flips {
            let n = body.len();
            body[at % n] ^= x;
        }
        body.truncate(cut % (body.len() + 1));
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn server_requests_round_trip(m in Union::new(request_strategies())) {
        let frame = reframe(FrameKind::Server, &m.encode());
        prop_assert_eq!(frame.code, m.code());
        prop_assert_eq!(ServerRequest::from_frame(&frame).unwrap(), m);
    }

    #[test]
    fn server_responses_round_trip(m in Union::new(response_strategies())) {
        let frame = reframe(FrameKind::Server, &m.encode());
        prop_assert_eq!(frame.code, m.code());
        prop_assert_eq!(ServerResponse::from_frame(&frame).unwrap(), m);
    }

    #[test]
    fn peer_inits_round_trip(m in peer_init_strategy()) {
        let frame = reframe(FrameKind::PeerInit, &m.encode());
        prop_assert_eq!(PeerInit::from_frame(&frame).unwrap(), m);
    }

    #[test]
    fn peer_messages_round_trip(m in Union::new(peer_strategies())) {
        let frame = reframe(FrameKind::Peer, &m.encode());
        prop_assert_eq!(frame.code, m.code());
        prop_assert_eq!(PeerMessage::from_frame(&frame).unwrap(), m);
    }

    #[test]
    fn distributed_messages_round_trip(m in distributed_strategy()) {
        let frame = reframe(FrameKind::Distributed, &m.encode());
        prop_assert_eq!(frame.code, m.code() as u32);
        prop_assert_eq!(DistributedMessage::from_frame(&frame).unwrap(), m.clone());
        // And inside a server EmbeddedMessage(93).
        let ServerResponse::EmbeddedMessage { code, body } = ServerResponse::embedded(&m) else {
            unreachable!()
        };
        prop_assert_eq!(DistributedMessage::unembed(code, &body).unwrap(), m);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(
        pick in any::<prop::sample::Index>(),
        code in any::<u32>(),
        body in vec(any::<u8>(), 0..200),
    ) {
        let known_req = REQUEST_CODES[pick.index(REQUEST_CODES.len())];
        let known_resp = RESPONSE_CODES[pick.index(RESPONSE_CODES.len())];
        let known_peer = peer::CODES[pick.index(peer::CODES.len())];
        let known_dist = distributed::CODES[pick.index(distributed::CODES.len())];
        for c in [known_req, code] {
            let _ = ServerRequest::decode(c, &body);
        }
        for c in [known_resp, code] {
            let _ = ServerResponse::decode(c, &body);
        }
        for c in [known_peer, code] {
            let _ = PeerMessage::decode(c, &body);
        }
        // Compressed codes get valid zlib around the arbitrary bytes too.
        for c in [5, 9, 37] {
            let _ = PeerMessage::decode(c, &zlib::deflate(&body));
        }
        for c in [known_dist, code as u8] {
            let _ = DistributedMessage::decode(c, &body);
        }
        for c in [0u8, 1, code as u8] {
            let _ = PeerInit::decode(c, &body);
        }
    }

    #[test]
    fn never_panics_on_mutilated_messages(
        req in Union::new(request_strategies()),
        resp in Union::new(response_strategies()),
        pm in Union::new(peer_strategies()),
        dm in distributed_strategy(),
        pi in peer_init_strategy(),
        cut in any::<usize>(),
        flips in vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let _ = ServerRequest::decode(req.code(), &mutilate(req.encode_body(), cut, &flips));
        let _ = ServerResponse::decode(resp.code(), &mutilate(resp.encode_body(), cut, &flips));
        let _ = PeerMessage::decode(pm.code(), &mutilate(pm.encode_body(), cut, &flips));
        if pm.is_compressed() {
            let plain = mutilate(pm.encode_plain_body(), cut, &flips);
            let _ = PeerMessage::decode(pm.code(), &zlib::deflate(&plain));
        }
        let _ = DistributedMessage::decode(dm.code(), &mutilate(dm.encode_body(), cut, &flips));
        let _ = PeerInit::decode(pi.code(), &mutilate(pi.encode_body(), cut, &flips));
    }

    #[test]
    fn truncated_bodies_are_errors_or_shorter_messages(m in Union::new(response_strategies()), cut in any::<usize>()) {
        // Cutting a body never yields the same message. The one exception: JoinRoom's
        // trailing operator count, whose absence reads as an empty operator list.
        prop_assume!(!matches!(m, ServerResponse::JoinRoom { .. }));
        let body = m.encode_body();
        let n = cut % (body.len() + 1);
        if n < body.len() {
            if let Ok(d) = ServerResponse::decode(m.code(), &body[..n]) {
                prop_assert_ne!(d, m);
            }
        }
    }
}

#[test]
fn codes_outside_the_lists_decode_as_unknown() {
    for code in 0..=2000u32 {
        let body = [1u8, 2, 3];
        if !REQUEST_CODES.contains(&code) {
            assert_eq!(
                ServerRequest::decode(code, &body).unwrap(),
                ServerRequest::Unknown { code, body: body.to_vec() },
                "request code {code}"
            );
        }
        if !RESPONSE_CODES.contains(&code) {
            assert_eq!(
                ServerResponse::decode(code, &body).unwrap(),
                ServerResponse::Unknown { code, body: body.to_vec() },
                "response code {code}"
            );
        }
        if !peer::CODES.contains(&code) {
            assert_eq!(
                PeerMessage::decode(code, &body).unwrap(),
                PeerMessage::Unknown { code, body: body.to_vec() },
                "peer code {code}"
            );
        }
    }
    for code in 0..=255u8 {
        if !distributed::CODES.contains(&code) {
            assert_eq!(
                DistributedMessage::decode(code, &[9]).unwrap(),
                DistributedMessage::Unknown { code, body: vec![9] }
            );
        }
        if code > 1 {
            assert!(PeerInit::decode(code, &[0; 8]).is_err());
        }
    }
}
