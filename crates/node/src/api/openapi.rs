//! The OpenAPI 3.0 document, built by hand with serde_json: the routes are few and the
//! schemas mirror `app::model`, so a generator crate's derive machinery would add more
//! than it saves. `ROUTES` is what the router serves; a test checks both agree.

use serde_json::{json, Value};

/// Every route: (method, path in OpenAPI form, summary).
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/api/status", "The node at a glance"),
    ("get", "/api/networks", "Every network role and its state"),
    ("post", "/api/networks", "Log in to one more hub or Soulseek server (kept for later starts)"),
    ("delete", "/api/networks/{name}", "Log out of a hub or Soulseek server session and forget it"),
    ("post", "/api/searches", "Start a search on every connected network"),
    ("get", "/api/searches", "The searches of this run"),
    ("get", "/api/searches/{id}", "One search with its merged results"),
    ("get", "/api/wishlist", "The saved searches"),
    ("post", "/api/wishlist", "Save a search (it runs now and then on each network's interval)"),
    ("delete", "/api/wishlist/{id}", "Forget a saved search"),
    ("post", "/api/wishlist/{id}/run", "Run a saved search now"),
    ("post", "/api/wishlist/{id}/seen", "Mark a saved search's matches as seen"),
    ("get", "/api/transfers", "The download queue, newest first"),
    ("post", "/api/transfers", "Queue a download of a search result, or of a file or whole folder of a user's share"),
    ("get", "/api/transfers/groups", "Folder downloads with their progress over their files, newest first"),
    (
        "get",
        "/api/browse",
        "A user's share (or one folder of it) as a tree with sizes and counts, or a search within it",
    ),
    ("get", "/api/transfers/{id}", "One transfer"),
    ("delete", "/api/transfers/{id}", "Remove a transfer from the list (stopping it and deleting its partial file)"),
    ("post", "/api/transfers/clear", "Remove every finished (done or cancelled) transfer from the list"),
    ("post", "/api/transfers/{id}/pause", "Pause a queued or running transfer"),
    ("post", "/api/transfers/{id}/resume", "Queue a paused transfer again"),
    ("post", "/api/transfers/{id}/cancel", "Cancel a transfer and delete its partial file"),
    ("post", "/api/transfers/{id}/retry", "Queue a failed or cancelled transfer again"),
    ("get", "/api/transfers/{id}/segments", "A running segmented download: its sources and block map"),
    ("get", "/api/chats", "Every chat"),
    ("get", "/api/users", "Who is in a hub's main chat or a Soulseek room"),
    ("get", "/api/contacts", "The users marked as buddies or ignored"),
    ("put", "/api/contacts", "Mark a user as a buddy or ignored, or unmark them"),
    ("get", "/api/chats/messages", "A chat's messages"),
    ("post", "/api/chats/messages", "Say something in a chat"),
    ("get", "/api/shares", "Share folders and totals"),
    ("get", "/api/shares/files", "A page of the share index"),
    ("post", "/api/shares/rescan", "Rescan the shares now"),
    ("get", "/api/events", "WebSocket stream of events (JSON text frames)"),
    ("get", "/api/openapi.json", "This document"),
    ("get", "/api/tox", "Our Tox ID, Tox friends and pending friend requests"),
    ("post", "/api/tox/friends", "Send a friend request to a Tox ID (the friend is added)"),
    ("delete", "/api/tox/friends/{pk}", "Remove a Tox friend"),
    ("post", "/api/tox/friends/{pk}/files", "Send a file (inside a shared folder or the downloads folder) to an online Tox friend; it shows as an upload"),
    ("post", "/api/tox/requests/{pk}/accept", "Accept a pending friend request"),
    ("delete", "/api/tox/requests/{pk}", "Decline a pending friend request"),
    ("post", "/api/tox/profile/export", "The Tox profile as a standard Tox save (qTox/toxic), optionally passphrase-encrypted"),
    ("post", "/api/tox/profile/import", "Import a Tox save (plain or encrypted) as the node's Tox identity; the Tox client stops until the node restarts"),
    ("get", "/api/tox/conferences", "Tox conferences (group chats) we are in, and invites from friends"),
    ("post", "/api/tox/conferences", "Create a Tox conference (we are alone in it until friends join)"),
    ("delete", "/api/tox/conferences/{id}", "Leave a Tox conference"),
    ("post", "/api/tox/conferences/{id}/invite", "Invite an online Tox friend into a conference"),
    ("post", "/api/tox/conference-invites/{id}/accept", "Accept a friend's invite into a Tox conference"),
    ("get", "/api/tox/groups", "Tox NGC groups we are in, and invites from friends"),
    ("post", "/api/tox/groups", "Found a Tox NGC group (we are alone in it until friends join)"),
    ("delete", "/api/tox/groups/{id}", "Leave a Tox NGC group"),
    ("post", "/api/tox/groups/{id}/invite", "Invite an online Tox friend into an NGC group"),
    ("post", "/api/tox/group-invites/{id}/accept", "Accept a friend's invite into a Tox NGC group"),
    ("get", "/api/uploads", "Uploads: running and queued (in queue order), then finished"),
    ("post", "/api/uploads/{id}/cancel", "Cancel an upload that waits or runs"),
    ("get", "/api/settings", "The settings that can change while the node runs"),
    ("put", "/api/settings", "Change settings: nick, description, share folders, downloads and incomplete folders, listen addresses, passwords, transfer limits (all or nothing; null resets one to the configuration file's value)"),
];

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn ok(schema: Value) -> Value {
    json!({"description": "OK", "content": {"application/json": {"schema": schema}}})
}

fn body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn operation(method: &str, path: &str, summary: &str) -> Value {
    let err = json!({"description": "Error", "content": {"application/json": {"schema": r("Error")}}});
    let mut op = json!({"summary": summary, "responses": {
        "default": err,
        "401": {"description": "Bearer token missing or wrong"},
        "421": {"description": "The Host header names no address of this API ([api].hosts; docs/api.md)"},
    }});
    if method != "get" || path == "/api/events" {
        op["responses"]["403"] =
            json!({"description": "From another site: Origin / Sec-Fetch-Site not this API's own (docs/api.md)"});
    }
    let id_param = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "integer"}});
    let q = |name: &str, ty: &str, required: bool| json!({"name": name, "in": "query", "required": required, "schema": {"type": ty}});
    let (params, req, resp): (Vec<Value>, Option<Value>, Value) = match (method, path) {
        ("get", "/api/status") => (vec![], None, ok(r("Status"))),
        ("get", "/api/networks") => (vec![], None, ok(json!({"type": "array", "items": r("Network")}))),
        ("post", "/api/networks") => (
            vec![],
            Some(body(json!({"type": "object", "required": ["network", "address"], "properties": {
                "network": {"type": "string", "enum": ["nmdc", "slsk"]},
                "address": {"type": "string", "description": "dchub://host:port or host:port"},
                "label": {"type": "string", "description": "1-64 of A-Z a-z 0-9 . _ - (chat ids NETWORK@LABEL:...)"},
                "nick": {"type": "string"}, "password": {"type": "string"}}}))),
            json!({"description": "Logging in", "content": {"application/json": {"schema": r("Network")}}}),
        ),
        ("delete", "/api/networks/{name}") => (
            vec![json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}})],
            None,
            json!({"description": "Logged out and forgotten"}),
        ),
        ("post", "/api/searches") => (
            vec![],
            Some(body(json!({"type": "object", "required": ["query"], "properties": {"query": {"type": "string"}}}))),
            json!({"description": "Started", "content": {"application/json": {"schema": r("Search")}}}),
        ),
        ("get", "/api/searches") => (vec![], None, ok(json!({"type": "array", "items": r("SearchSummary")}))),
        ("get", "/api/searches/{id}") => (
            vec![
                id_param("id"),
                q("min_size", "integer", false),
                q("max_size", "integer", false),
                q("ext", "string", false),
                q("min_bitrate", "integer", false),
                q("free_slot", "boolean", false),
                q("network", "string", false),
            ],
            None,
            ok(r("Search")),
        ),
        ("get", "/api/wishlist") => (vec![], None, ok(json!({"type": "array", "items": r("WishlistItem")}))),
        ("post", "/api/wishlist") => (
            vec![],
            Some(body(json!({"type": "object", "required": ["query"], "properties": {
                "query": {"type": "string"}, "filters": r("Filters"), "auto_download": {"type": "boolean"}}}))),
            json!({"description": "Saved", "content": {"application/json": {"schema": r("WishlistItem")}}}),
        ),
        ("delete", "/api/wishlist/{id}") => (vec![id_param("id")], None, json!({"description": "Forgotten"})),
        ("post", p) if p.starts_with("/api/wishlist/{id}/") => (vec![id_param("id")], None, ok(r("WishlistItem"))),
        ("get", "/api/transfers") => (vec![], None, ok(json!({"type": "array", "items": r("Transfer")}))),
        ("post", "/api/transfers") => (
            vec![],
            Some(body(
                json!({"type": "object", "description": "Either result (a search result), or network, user and path (a file or folder of a user's share)", "properties": {
                "result": {"type": "integer", "description": "A search result id"},
                "source": {"type": "integer", "description": "Index into the result's sources"},
                "network": {"type": "string", "enum": ["nmdc", "slsk"], "description": "With result: take the first source on this network; with user and path: the network"},
                "session": {"type": "string", "description": "With user and path: the session label (default: the configured one)"},
                "user": {"type": "string"}, "path": {"type": "string", "description": "A file or folder in the user's share (\\ or / separated)"},
                "folder": {"type": "boolean", "description": "Insist on a folder (true) or a file (false)"},
                "destination": {"type": "string", "description": "Destination template for this download ({user}, {folder}, {network}, {session}), inside the downloads folder"},
                "dry_run": {"type": "boolean", "description": "Only plan: which files, where, which are already on disk (200)"}}}),
            )),
            json!({"description": "Queued: a Transfer for a search result, a Planned for a user and path", "content": {"application/json": {"schema": {"oneOf": [r("Transfer"), r("Planned")]}}}}),
        ),
        ("get", "/api/transfers/groups") => (vec![], None, ok(json!({"type": "array", "items": r("Group")}))),
        ("get", "/api/browse") => (
            vec![
                json!({"name": "network", "in": "query", "required": true, "schema": {"type": "string", "enum": ["nmdc", "slsk"]}}),
                q("session", "string", false),
                q("user", "string", true),
                q("path", "string", false),
                q("q", "string", false),
                q("depth", "integer", false),
                q("refresh", "boolean", false),
            ],
            None,
            ok(r("Browse")),
        ),
        ("get", "/api/transfers/{id}") => (vec![id_param("id")], None, ok(r("Transfer"))),
        ("delete", "/api/transfers/{id}") => (vec![id_param("id")], None, json!({"description": "Removed"})),
        ("post", "/api/transfers/clear") => (
            vec![],
            None,
            ok(json!({"type": "object", "properties": {"removed": {"type": "array", "items": {"type": "integer"}}}})),
        ),
        ("get", "/api/transfers/{id}/segments") => (vec![id_param("id")], None, ok(r("Segments"))),
        ("post", p) if p.starts_with("/api/transfers/{id}/") => (vec![id_param("id")], None, ok(r("Transfer"))),
        ("get", "/api/chats") => (vec![], None, ok(json!({"type": "array", "items": r("Chat")}))),
        ("post", "/api/uploads/{id}/cancel") => (vec![id_param("id")], None, json!({"description": "Cancelling"})),
        ("get", "/api/users") => {
            (vec![q("chat", "string", true)], None, ok(json!({"type": "array", "items": r("User")})))
        }
        ("get", "/api/contacts") => (vec![], None, ok(json!({"type": "array", "items": r("Contact")}))),
        ("put", "/api/contacts") => (
            vec![],
            Some(body(json!({"type": "object", "required": ["network", "name", "relation"], "properties": {
                "network": {"type": "string", "enum": ["nmdc", "slsk"]}, "name": {"type": "string"},
                "relation": {"type": "string", "enum": ["buddy", "ignored", "banned"], "nullable": true}}}))),
            ok(json!({"type": "array", "items": r("Contact")})),
        ),
        ("get", "/api/chats/messages") => (
            vec![q("chat", "string", true), q("after", "integer", false), q("limit", "integer", false)],
            None,
            ok(json!({"type": "array", "items": r("ChatMessage")})),
        ),
        ("post", "/api/chats/messages") => (
            vec![],
            Some(body(json!({"type": "object", "required": ["chat", "text"], "properties": {
                "chat": {"type": "string"}, "text": {"type": "string"}}}))),
            json!({"description": "Sent", "content": {"application/json": {"schema": r("ChatMessage")}}}),
        ),
        ("get", "/api/shares") => (vec![], None, ok(r("Shares"))),
        ("get", "/api/shares/files") => (
            vec![q("offset", "integer", false), q("limit", "integer", false)],
            None,
            ok(json!({"type": "array", "items": r("SharedFile")})),
        ),
        ("post", "/api/shares/rescan") => (vec![], None, json!({"description": "Rescan started"})),
        ("get", "/api/events") => (
            vec![q("token", "string", false)],
            None,
            json!({"description": "Switching Protocols: a WebSocket whose text frames are Event objects",
                   "content": {"application/json": {"schema": r("Event")}}}),
        ),
        ("get", "/api/openapi.json") => (vec![], None, ok(json!({"type": "object"}))),
        ("get", "/api/tox") => (vec![], None, ok(r("ToxStatus"))),
        ("post", "/api/tox/friends") => (
            vec![],
            Some(body(json!({"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string", "description": "Tox ID, 76 hex digits"},
                "message": {"type": "string", "description": "Friend request message (at most 1016 bytes)"}}}))),
            json!({"description": "Requested", "content": {"application/json": {"schema": r("ToxFriend")}}}),
        ),
        ("delete", "/api/tox/friends/{pk}") => (vec![pk_param()], None, ok(r("ToxFriend"))),
        ("post", "/api/tox/friends/{pk}/files") => (
            vec![pk_param()],
            Some(body(json!({"type": "object", "required": ["path"], "properties": {
                "path": {"type": "string", "description": "Absolute path of a file inside a shared folder or the downloads folder"}}}))),
            json!({"description": "Offered", "content": {"application/json": {"schema": r("Upload")}}}),
        ),
        ("post", "/api/tox/requests/{pk}/accept") => (vec![pk_param()], None, ok(r("ToxFriend"))),
        ("delete", "/api/tox/requests/{pk}") => (vec![pk_param()], None, ok(r("ToxRequest"))),
        ("post", "/api/tox/profile/export") => (
            vec![],
            Some(body(json!({"type": "object", "properties": {
                "passphrase": {"type": "string", "description": "Encrypt the save with it (toxencryptsave); empty or absent: plain"}}}))),
            ok(json!({"type": "object", "required": ["data", "id", "encrypted"], "properties": {
                "data": {"type": "string", "description": "The save file, base64"},
                "id": {"type": "string", "description": "Its Tox ID"},
                "encrypted": {"type": "boolean"}}})),
        ),
        ("post", "/api/tox/profile/import") => (
            vec![],
            Some(body(json!({"type": "object", "required": ["data"], "properties": {
                "data": {"type": "string", "description": "The save file (qTox's/toxic's NAME.tox), base64; at most 4 MiB of base64"},
                "passphrase": {"type": "string", "description": "Its passphrase, when encrypted"}}}))),
            ok(json!({"type": "object", "required": ["id", "friends", "restart"], "properties": {
                "id": {"type": "string", "description": "The imported Tox ID (the node's from its next start)"},
                "friends": {"type": "integer"},
                "restart": {"type": "boolean", "description": "Always true: the Tox client stopped; restart the node"}}})),
        ),
        ("get", "/api/tox/conferences") => (
            vec![],
            None,
            ok(json!({"type": "object", "properties": {
                "conferences": {"type": "array", "items": r("ToxConference")},
                "invites": {"type": "array", "items": r("ToxConferenceInvite")}}})),
        ),
        ("post", "/api/tox/conferences") => (
            vec![],
            Some(body(json!({"type": "object", "properties": {
                "title": {"type": "string", "description": "Its title (at most 128 bytes); absent: none"}}}))),
            json!({"description": "Created", "content": {"application/json": {"schema": r("ToxConference")}}}),
        ),
        ("delete", "/api/tox/conferences/{id}") => (vec![conference_param()], None, ok(r("ToxConference"))),
        ("post", "/api/tox/conferences/{id}/invite") => {
            (vec![conference_param()], Some(invite_body()), ok(r("ToxConference")))
        }
        ("post", "/api/tox/conference-invites/{id}/accept") => (vec![invite_param()], None, ok(r("ToxConference"))),
        ("get", "/api/tox/groups") => (
            vec![],
            None,
            ok(json!({"type": "object", "properties": {
                "groups": {"type": "array", "items": r("ToxGroup")},
                "invites": {"type": "array", "items": r("ToxGroupInvite")}}})),
        ),
        ("post", "/api/tox/groups") => (
            vec![],
            Some(body(json!({"type": "object", "properties": {
                "name": {"type": "string", "description": "Its name (at most 48 bytes); absent: \"omnipeer group\""}}}))),
            json!({"description": "Created", "content": {"application/json": {"schema": r("ToxGroup")}}}),
        ),
        ("delete", "/api/tox/groups/{id}") => (vec![group_param()], None, ok(r("ToxGroup"))),
        ("post", "/api/tox/groups/{id}/invite") => (vec![group_param()], Some(invite_body()), ok(r("ToxGroup"))),
        ("post", "/api/tox/group-invites/{id}/accept") => (vec![invite_param()], None, ok(r("ToxGroup"))),
        ("get", "/api/uploads") => (vec![], None, ok(json!({"type": "array", "items": r("Upload")}))),
        ("get", "/api/settings") => (vec![], None, ok(json!({"type": "array", "items": r("Setting")}))),
        ("put", "/api/settings") => (
            vec![],
            Some(body(
                json!({"type": "object", "description": "Setting name → new value (a number, a string, or a list of folders for share_folders), or null for the configuration file's value. All or nothing: a 400 {error, key} names the first setting refused.",
                "additionalProperties": {"nullable": true, "oneOf": [{"type": "integer"}, {"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}),
            )),
            ok(json!({"type": "array", "items": r("Setting")})),
        ),
        _ => (vec![], None, ok(json!({}))),
    };
    let code = if path == "/api/events" {
        "101"
    } else if method == "post"
        && matches!(
            path,
            "/api/searches"
                | "/api/transfers"
                | "/api/chats/messages"
                | "/api/tox/friends"
                | "/api/tox/friends/{pk}/files"
                | "/api/tox/conferences"
                | "/api/tox/groups"
        )
    {
        "201"
    } else if path == "/api/shares/rescan" {
        "202"
    } else {
        "200"
    };
    op["responses"][code] = resp;
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some(b) = req {
        op["requestBody"] = b;
    }
    op
}

/// The body of a conference or group invite: whom to invite.
fn invite_body() -> Value {
    body(json!({"type": "object", "required": ["friend"], "properties": {
        "friend": {"type": "string", "description": "The friend's long-term public key, 64 hex digits"}}}))
}

/// A conference or group invite's number in the path.
fn invite_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": "The invite's number", "schema": {"type": "integer"}})
}

fn conference_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": "Conference id, 64 hex digits",
           "schema": {"type": "string", "pattern": "^[0-9A-Fa-f]{64}$"}})
}

fn group_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": "NGC group chat id, 64 hex digits",
           "schema": {"type": "string", "pattern": "^[0-9A-Fa-f]{64}$"}})
}

fn pk_param() -> Value {
    json!({"name": "pk", "in": "path", "required": true, "description": "Long-term public key, 64 hex digits",
           "schema": {"type": "string", "pattern": "^[0-9A-Fa-f]{64}$"}})
}

fn schemas() -> Value {
    let s = |t: &str| json!({"type": t});
    let ns = |t: &str| json!({"type": t, "nullable": true});
    let mut more = json!({
        "BrowseFile": {"type": "object", "properties": {
            "name": s("string"), "path": s("string"), "size": s("integer"), "tth": s("string"),
            "bitrate": s("integer"), "duration": s("integer"), "vbr": s("boolean"), "sample_rate": s("integer"), "bit_depth": s("integer")}},
        "BrowseFolder": {"type": "object", "properties": {
            "name": s("string"), "path": s("string"), "size": s("integer"), "files": s("integer"),
            "folders": {"type": "array", "items": r("BrowseFolder")}, "entries": {"type": "array", "items": r("BrowseFile")},
            "more": {"type": "boolean", "description": "Contents left out (depth): ask for this path"}}},
        "Browse": {"type": "object", "properties": {
            "network": s("string"), "session": s("string"), "user": s("string"), "fetched": s("integer"), "path": s("string"),
            "folder": r("BrowseFolder"),
            "hits": {"type": "array", "items": {"type": "object", "properties": {
                "kind": {"type": "string", "enum": ["file", "folder"]}, "path": s("string"), "size": s("integer"), "files": s("integer")}}}}},
        "Planned": {"type": "object", "properties": {
            "group": ns("integer"), "folder": s("boolean"), "name": s("string"), "destination": s("string"),
            "files": s("integer"), "size": s("integer"),
            "existing": {"type": "array", "items": s("string"), "description": "Files already on disk at those paths (the new ones get names of their own)"},
            "transfers": {"type": "array", "items": r("Transfer")}}},
        "Segments": {"type": "object", "properties": {
            "block_size": s("integer"),
            "blocks": {"type": "string", "description": "One character per block: # verified, > being fetched, . missing"},
            "sources": {"type": "array", "items": {"type": "object", "properties": {
                "network": {"type": "string", "enum": ["nmdc", "slsk"]}, "user": s("string"),
                "state": {"type": "string", "enum": ["idle", "downloading", "waiting", "dropped", "gone"]},
                "bytes": s("integer"), "speed": s("integer")}}},
            "note": s("string")}},
        "Group": {"type": "object", "properties": {
            "id": s("integer"), "network": s("string"), "user": s("string"), "path": s("string"), "name": s("string"),
            "local_dir": s("string"), "created": s("integer"), "files": s("integer"), "done": s("integer"),
            "failed": s("integer"), "active": s("integer"), "size": s("integer"), "bytes": s("integer"),
            "state": {"type": "string", "enum": ["active", "done", "failed", "cancelled"]}}},
    });
    let mut all = json!({
        "Error": {"type": "object", "properties": {"error": s("string")}},
        "Network": {"type": "object", "properties": {
            "name": s("string"), "role": s("string"),
            "state": {"type": "string", "enum": ["starting", "online", "offline", "disabled"]},
            "address": s("string"), "detail": s("string"),
            "session": {"type": "object", "properties": {
                "network": {"type": "string", "enum": ["nmdc", "slsk"]}, "label": s("string"), "added": s("boolean")}}}},
        "Status": {"type": "object", "properties": {
            "nick": s("string"), "version": s("string"), "data_dir": s("string"), "api": s("string"),
            "networks": {"type": "array", "items": r("Network")},
            "transfers": {"type": "object", "additionalProperties": s("integer")},
            "shares": {"type": "object", "properties": {"folders": {"type": "array", "items": s("string")}, "files": s("integer"), "bytes": s("integer")}}}},
        "Source": {"type": "object", "properties": {
            "network": {"type": "string", "enum": ["nmdc", "slsk"]}, "session": s("string"),
            "user": s("string"), "path": s("string"), "free_slots": s("integer")}},
        "SearchResult": {"type": "object", "properties": {
            "id": s("integer"), "search": s("integer"), "name": s("string"), "size": s("integer"), "tth": ns("string"),
            "sources": {"type": "array", "items": r("Source")}}},
        "Search": {"type": "object", "properties": {
            "id": s("integer"), "query": s("string"), "started": s("integer"),
            "results": {"type": "array", "items": r("SearchResult")}}},
        "SearchSummary": {"type": "object", "properties": {
            "id": s("integer"), "query": s("string"), "started": s("integer"), "ends": s("integer"),
            "state": s("string"), "sent_to": {"type": "array", "items": s("string")},
            "result_count": s("integer"), "source_count": s("integer")}},
        "Transfer": {"type": "object", "properties": {
            "id": s("integer"), "network": s("string"), "source": s("string"), "hub": s("string"),
            "remote_path": s("string"), "tth": ns("string"), "name": s("string"), "size": s("integer"),
            "local_path": s("string"),
            "state": {"type": "string", "enum": ["queued", "running", "paused", "done", "failed", "cancelled"]},
            "bytes": s("integer"), "retries": s("integer"), "next_attempt": s("integer"), "error": s("string"),
            "created": s("integer"), "updated": s("integer"), "rate": s("integer"),
            "note": {"type": "string", "description": "What happened to the sources of a segmented download (one dropped for bad data, one given up)"},
            "group": {"type": "integer", "nullable": true, "description": "The folder download it is part of"}}},
        "ChatMessage": {"type": "object", "properties": {
            "id": s("integer"), "chat": s("string"), "nick": s("string"), "text": s("string"), "own": s("boolean"), "ts": s("integer"),
            "delivered": {"type": "boolean", "description": "Own lines on Tox only: the friend's read receipt arrived"}}},
        "Chat": {"type": "object", "properties": {
            "id": s("string"), "network": s("string"), "kind": {"type": "string", "enum": ["hub", "room", "pm", "friend", "conference", "group", "chat"]},
            "name": s("string"), "last": {"allOf": [r("ChatMessage")], "nullable": true},
            "online": {"type": "boolean", "description": "Tox friends only"}}},
        "ToxFriend": {"type": "object", "properties": {
            "pk": s("string"), "chat": s("string"), "nickname": s("string"), "online": s("boolean"),
            "progress": {"type": "string", "enum": ["AwaitingDHTKey", "AcquiringIPAddress", "AcquiringCookie", "AwaitingHandshake", "AwaitingSessionPacket", "Connected"]},
            "request_sent": s("boolean"), "added": s("integer")}},
        "ToxRequest": {"type": "object", "properties": {"pk": s("string"), "message": s("string"), "received": s("integer")}},
        "ToxStatus": {"type": "object", "properties": {
            "id": s("string"), "online": s("boolean"), "address": s("string"), "auto_accept": s("boolean"),
            "friends": {"type": "array", "items": r("ToxFriend")}, "requests": {"type": "array", "items": r("ToxRequest")}}},
        "Shares": {"type": "object", "properties": {
            "folders": {"type": "array", "items": s("string")}, "files": s("integer"), "bytes": s("integer"), "hashed": s("integer")}},
        "SharedFile": {"type": "object", "properties": {"path": s("string"), "size": s("integer"), "tth": ns("string")}},
        "Setting": {"type": "object", "properties": {
            "key": s("string"),
            "section": {"type": "string", "enum": ["identity", "shares", "folders", "network", "passwords", "transfers"]},
            "type": {"type": "string", "enum": ["number", "nick", "text", "folders", "folder", "address", "password", "read_only"]},
            "value": {"description": "In force: a number, a string or a list of folders; null for a password", "nullable": true},
            "config": {"description": "The configuration file's value; null for a password", "nullable": true},
            "overridden": s("boolean"), "set": {"type": "boolean", "description": "A password: whether one is in force (its value is never shown)"},
            "min": s("integer"), "max": s("integer"),
            "restart_needed": {"type": "boolean", "description": "The value shown is in force only after a restart"},
            "file_key": s("string"), "about": s("string")}},
        "Upload": {"type": "object", "properties": {
            "id": s("integer"), "network": {"type": "string", "enum": ["nmdc", "slsk", "dcc"]}, "user": s("string"),
            "file": s("string"), "size": s("integer"), "start": s("integer"), "bytes": s("integer"),
            "state": {"type": "string", "enum": ["queued", "starting", "running", "done", "failed"]},
            "position": s("integer"), "rate": s("integer"), "error": s("string"), "updated": s("integer")}},
        "Event": {"type": "object", "required": ["type"], "description":
            "Tagged by type: network {network}, search_result {search, result (with only its new source), source_count}, transfer {transfer}, progress {id, bytes, size, rate}, chat {message}, shares {files, bytes}, resync {missed}, chat_delivered {chat, id}, tox_friend {friend, removed}, tox_request {request, pending}, tox_conference {conference, removed}, tox_conference_invite {invite, pending}, tox_group {group, removed}, tox_group_invite {invite, pending}, chat_open {chat, open}, upload {upload}",
            "properties": {
                "type": {"type": "string", "enum": ["network", "search_result", "transfer", "progress", "chat", "shares", "resync", "chat_delivered", "tox_friend", "tox_request", "tox_conference", "tox_conference_invite", "tox_group", "tox_group_invite", "chat_open", "upload"]},
                "chat": s("string"), "friend": r("ToxFriend"), "removed": s("boolean"), "request": r("ToxRequest"), "pending": s("boolean"),
                "network": r("Network"), "search": s("integer"), "result": r("SearchResult"), "source_count": s("integer"), "transfer": r("Transfer"),
                "id": s("integer"), "bytes": s("integer"), "size": s("integer"), "rate": s("integer"),
                "message": r("ChatMessage"), "files": s("integer"), "missed": s("integer"), "upload": r("Upload")}},
    });
    if let (Some(all), Some(more)) = (all.as_object_mut(), more.as_object_mut()) {
        all.append(more);
    }
    all["User"] = json!({"type": "object", "properties": {
            "nick": s("string"), "network": {"type": "string", "enum": ["nmdc", "slsk"]},
            "share_size": s("integer"), "files": s("integer"), "folders": s("integer"), "description": s("string"),
            "client": s("string"), "slots": s("integer"), "slots_full": s("boolean"), "speed": s("integer"),
            "country": s("string"), "op": s("boolean"), "away": s("boolean"),
            "relation": {"type": "string", "enum": ["buddy", "ignored", "banned"]}}});
    all["ToxConference"] = json!({"type": "object", "properties": {
            "id": s("string"), "chat": s("string"), "title": s("string"), "connected": s("boolean"),
            "peers": {"type": "array", "items": {"type": "object", "properties": {
                "name": s("string"), "pk": s("string"), "ours": s("boolean")}}}}});
    all["ToxConferenceInvite"] = json!({"type": "object", "properties": {
            "invite": s("integer"), "friend": s("string"), "conference": s("string")}});
    all["Event"]["properties"]["conference"] = r("ToxConference");
    all["ToxGroup"] = json!({"type": "object", "properties": {
            "id": s("string"), "chat": s("string"), "name": s("string"), "connected": s("boolean"),
            "peers": {"type": "array", "items": {"type": "object", "properties": {
                "name": s("string"), "pk": s("string"), "ours": s("boolean")}}}}});
    all["ToxGroupInvite"] = json!({"type": "object", "properties": {
            "invite": s("integer"), "friend": s("string"), "group": s("string"), "name": s("string")}});
    all["Event"]["properties"]["group"] = r("ToxGroup");
    all["Event"]["properties"]["invite"] = json!({"oneOf": [r("ToxConferenceInvite"), r("ToxGroupInvite")]});
    all["Filters"] = json!({"type": "object", "properties": {
            "min_size": {"type": "integer"}, "max_size": {"type": "integer"}, "ext": {"type": "string"},
            "min_bitrate": {"type": "integer"}, "free_slot": {"type": "boolean"},
            "network": {"type": "string", "enum": ["nmdc", "slsk"]}}});
    all["WishlistItem"] = json!({"type": "object", "properties": {
            "id": {"type": "integer"}, "query": {"type": "string"}, "filters": r("Filters"),
            "auto_download": {"type": "boolean"}, "created": {"type": "integer"},
            "last_run": {"type": "integer", "nullable": true}, "last_search": {"type": "integer", "nullable": true},
            "new_matches": {"type": "integer"}}});
    all["Contact"] = json!({"type": "object", "properties": {
            "network": {"type": "string", "enum": ["nmdc", "slsk"]}, "name": s("string"),
            "relation": {"type": "string", "enum": ["buddy", "ignored", "banned"]}}});
    all
}

/// The document.
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = operation(method, path, summary);
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "omnipeer node API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "See docs/api.md. A bearer token is required whenever the API listens beyond loopback."},
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
        "paths": paths,
    })
}
