//! The node's HTTP API (axum): JSON routes, the WebSocket event stream, the OpenAPI
//! document and the embedded web UI. docs/api.md describes every route and event.

mod guard;
mod listener;
mod openapi;
mod tox;

use crate::app::model::Event;
use crate::app::net::{Network, TransferAction};
use crate::app::search::Filters;
use crate::app::{Node, NodeError};
use anyhow::Context;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

pub use guard::HostPolicy;
pub use listener::{Limits, HEADER_TIMEOUT, MAX_CONNECTIONS};
pub use openapi::{openapi, ROUTES};

static WEB: include_dir::Dir<'static> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/web");

/// Longest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
struct Api {
    node: Arc<Node>,
    token: Option<Arc<str>>,
    addr: SocketAddr,
    hosts: Arc<HostPolicy>,
}

/// A failed request: status and one-line message, sent as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The one place where the node's errors become HTTP statuses (crate::app::error).
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let status = match NodeError::of(&e) {
            Some(NodeError::NotFound(_)) => StatusCode::NOT_FOUND,
            Some(NodeError::Conflict(_)) => StatusCode::CONFLICT,
            Some(NodeError::Invalid(_)) => StatusCode::BAD_REQUEST,
            Some(NodeError::NotConnected(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Some(NodeError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Some(NodeError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            None => StatusCode::BAD_REQUEST,
        };
        ApiError(status, format!("{e:#}"))
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        ApiError::from(anyhow::Error::new(e))
    }
}

fn not_found(what: String) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, what)
}

type ApiResult<T> = Result<T, ApiError>;

/// The token in force for an API on `listen`: the configured one, else (off loopback) one
/// generated once into `<data_dir>/api-token`, else none.
pub fn token_for(node: &Node, listen: SocketAddr, configured: &str) -> anyhow::Result<Option<String>> {
    if !configured.is_empty() {
        return Ok(Some(configured.to_owned()));
    }
    if listen.ip().is_loopback() {
        return Ok(None);
    }
    let path = node.data_dir.join("api-token");
    let t = crate::app::secret_file(&path)?;
    crate::app::say!("api: listening beyond loopback, bearer token required (in {})", path.display());
    Ok(Some(t))
}

/// Bind the API; returns its address and the task serving it until the node shuts down.
/// `[api].hosts`, `header_timeout_secs` and `max_connections` come from the node's config.
pub async fn serve(
    node: Arc<Node>,
    listen: SocketAddr,
    configured_token: &str,
) -> anyhow::Result<(SocketAddr, impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static)> {
    let cfg = &node.cfg.api;
    if cfg.header_timeout_secs == 0 {
        anyhow::bail!("[api].header_timeout_secs must be at least 1");
    }
    if cfg.max_connections == 0 {
        anyhow::bail!("[api].max_connections must be at least 1");
    }
    let limits =
        Limits { header_timeout: Duration::from_secs(cfg.header_timeout_secs), max_connections: cfg.max_connections };
    let token = token_for(&node, listen, configured_token)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} for the API (set [api].listen)"))?;
    let addr = listener.local_addr()?;
    let hosts = HostPolicy::new(addr, &cfg.hosts)?;
    let shutdown = node.shutdown.clone();
    let app = router(node, token.map(Arc::from), addr, hosts);
    Ok((addr, listener::run(listener, app, limits, shutdown)))
}

fn router(node: Arc<Node>, token: Option<Arc<str>>, addr: SocketAddr, hosts: HostPolicy) -> Router {
    let state = Api { node, token, addr, hosts: Arc::new(hosts) };
    let api = Router::new()
        .route("/api/status", get(status))
        .route("/api/networks", get(networks).post(network_add))
        .route("/api/networks/{name}", axum::routing::delete(network_remove))
        .route("/api/searches", post(search_start).get(search_list))
        .route("/api/searches/{id}", get(search_get))
        .route("/api/wishlist", get(wishlist_list).post(wishlist_add))
        .route("/api/wishlist/{id}", axum::routing::delete(wishlist_remove))
        .route("/api/wishlist/{id}/run", post(wishlist_run))
        .route("/api/wishlist/{id}/seen", post(wishlist_seen))
        .route("/api/transfers", get(transfer_list).post(transfer_add))
        .route("/api/transfers/groups", get(transfer_groups))
        .route("/api/browse", get(browse))
        .route("/api/transfers/{id}", get(transfer_get).delete(transfer_remove))
        .route("/api/transfers/clear", post(transfers_clear))
        .route("/api/transfers/{id}/{action}", post(transfer_action))
        .route("/api/transfers/{id}/segments", get(transfer_segments))
        .route("/api/chats", get(chat_list))
        .route("/api/users", get(user_list))
        .route("/api/contacts", get(contact_list).put(contact_set))
        .route("/api/chats/messages", get(chat_messages).post(chat_send))
        .route("/api/shares", get(shares))
        .route("/api/shares/files", get(share_files))
        .route("/api/shares/rescan", post(share_rescan))
        .route("/api/events", get(events))
        .route("/api/tox", get(tox::status))
        .route("/api/tox/friends", post(tox::add_friend))
        .route("/api/tox/friends/{pk}", axum::routing::delete(tox::remove_friend))
        .route("/api/tox/friends/{pk}/files", post(tox::send_file))
        .route("/api/tox/requests/{pk}", axum::routing::delete(tox::decline))
        .route("/api/tox/requests/{pk}/accept", post(tox::accept))
        .route("/api/tox/profile/export", post(tox::export_profile))
        .route(
            "/api/tox/profile/import",
            post(tox::import_profile).layer(axum::extract::DefaultBodyLimit::max(tox::MAX_IMPORT_BODY)),
        )
        .route("/api/tox/conferences", get(tox::conferences).post(tox::conference_new))
        .route("/api/tox/conferences/{id}", axum::routing::delete(tox::conference_leave))
        .route("/api/tox/conferences/{id}/invite", post(tox::conference_invite))
        .route("/api/tox/conference-invites/{id}/accept", post(tox::conference_accept))
        .route("/api/tox/groups", get(tox::groups).post(tox::group_new))
        .route("/api/tox/groups/{id}", axum::routing::delete(tox::group_leave))
        .route("/api/tox/groups/{id}/invite", post(tox::group_invite))
        .route("/api/tox/group-invites/{id}/accept", post(tox::group_accept))
        .route("/api/uploads", get(upload_list))
        .route("/api/uploads/{id}/cancel", post(upload_cancel))
        .route("/api/settings", get(settings_get).put(settings_put))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/api/openapi.json", get(|| async { Json(openapi()) }))
        .merge(api)
        .route("/", get(web_index))
        .route("/{*path}", get(web_file))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(read_body))
        .layer(middleware::from_fn(json_errors))
        // Outermost: a refused request reaches nothing else, static files included.
        .layer(middleware::from_fn_with_state(state.clone(), browser_guard))
        .with_state(state)
}

/// The Host check on every request, and the Origin check on every one that changes state
/// or opens a WebSocket (`guard`; docs/api.md "Who may call the API").
async fn browser_guard(State(api): State<Api>, req: Request, next: Next) -> Response {
    if let Err(why) = api.hosts.check_host(req.headers(), req.uri()) {
        return ApiError(StatusCode::MISDIRECTED_REQUEST, why).into_response();
    }
    if guard::changes_state(req.method()) || guard::is_upgrade(req.headers()) {
        if let Err(why) = api.hosts.check_origin(req.headers()) {
            return ApiError(StatusCode::FORBIDDEN, why).into_response();
        }
    }
    next.run(req).await
}

/// Reads the whole request body before the handler runs. A handler that ignores the body
/// (the transfer actions, accept/decline) would otherwise leave it unread, and hyper then
/// closes the keep-alive connection after the answer: the client's next request on it
/// fails with "peer disconnected".
async fn read_body(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => next.run(Request::from_parts(parts, axum::body::Body::from(b))).await,
        Err(_) => ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than {MAX_BODY} bytes"))
            .into_response(),
    }
}

/// Every failure as `{"error": ...}`: axum's own rejections (bad JSON, a missing query
/// field, a wrong method) are plain text; wrap them.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), MAX_BODY).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    let text = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { text };
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY { StatusCode::BAD_REQUEST } else { status };
    ApiError(status, text).into_response()
}

/// Constant-time comparison (the token must not leak through timing).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(api): State<Api>, req: Request, next: Next) -> Response {
    let Some(want) = &api.token else { return next.run(req).await };
    let header_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let query_token =
        req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")).map(|t| t.to_owned()));
    let ok = header_token.is_some_and(|t| same(t.as_bytes(), want.as_bytes()))
        || query_token.is_some_and(|t| same(t.as_bytes(), want.as_bytes()));
    if ok {
        next.run(req).await
    } else {
        ApiError(StatusCode::UNAUTHORIZED, "a bearer token is required (Authorization: Bearer ...)".into())
            .into_response()
    }
}

async fn status(State(api): State<Api>) -> ApiResult<Json<Value>> {
    let n = &api.node;
    let counts = n.transfer_counts()?;
    let (files, bytes, _) = n.share_totals();
    Ok(Json(json!({
        "nick": n.nick(),
        "version": env!("CARGO_PKG_VERSION"),
        "data_dir": n.data_dir.display().to_string(),
        "api": api.addr.to_string(),
        "networks": n.networks(),
        "transfers": counts,
        "shares": {
            "folders": n.share_folders().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "files": files,
            "bytes": bytes,
            // The first scan of the share folders: "scanning" (with what it found so
            // far), then "ready".
            "state": n.share_scan.state(),
            "scanned": { "files": n.share_scan.ctl.files(), "folders": n.share_scan.ctl.dirs() },
        },
    })))
}

async fn networks(State(api): State<Api>) -> Json<Value> {
    Json(json!(api.node.networks()))
}

/// A hub or Soulseek server to log in to from now on.
#[derive(Deserialize)]
struct SessionBody {
    network: Network,
    /// `dchub://host:port` or `host:port`.
    address: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    nick: String,
    #[serde(default)]
    password: String,
}

async fn network_add(State(api): State<Api>, Json(b): Json<SessionBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    let spec =
        crate::app::sessions::SessionSpec::parse(b.network, &b.address, b.label.as_deref(), &b.nick, &b.password)
            .map_err(|e| NodeError::Invalid(format!("{e:#}")))?;
    Ok((StatusCode::CREATED, Json(json!(api.node.add_session(spec)?))))
}

async fn network_remove(State(api): State<Api>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    api.node.remove_session(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct SearchBody {
    query: String,
}

fn search_json(s: &crate::app::search::Search, with_results: bool, filters: &Filters) -> Value {
    search_page_json(s, with_results, filters, &Page { offset: None, limit: None })
}

fn search_page_json(s: &crate::app::search::Search, with_results: bool, filters: &Filters, page: &Page) -> Value {
    let finished = s.finished(crate::app::db::now());
    let mut v = json!({
        "id": s.id,
        "query": s.query,
        "started": s.started,
        "ends": s.started + crate::app::search::SEARCH_LIFETIME.as_secs() as i64,
        "state": if finished { "finished" } else { "running" },
        "sent_to": s.sent_to,
        "result_count": s.result_count,
        "source_count": s.source_count,
    });
    if with_results {
        let results: Vec<_> = s
            .results
            .iter()
            .filter_map(|r| filters.apply(r))
            .skip(page.offset.unwrap_or(0))
            .take(page.limit.unwrap_or(usize::MAX))
            .collect();
        v["results"] = json!(results);
    }
    v
}

async fn search_start(State(api): State<Api>, Json(b): Json<SearchBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    let s = api.node.search(&b.query).await?;
    Ok((StatusCode::CREATED, Json(search_json(&s, true, &Filters::default()))))
}

async fn search_list(State(api): State<Api>) -> Json<Value> {
    Json(Value::Array(api.node.search_list().iter().map(|s| search_json(s, false, &Filters::default())).collect()))
}

async fn search_get(
    State(api): State<Api>,
    Path(id): Path<u64>,
    Query(filters): Query<Filters>,
    Query(page): Query<Page>,
) -> ApiResult<Json<Value>> {
    Ok(Json(search_page_json(&api.node.search_get(id)?, true, &filters, &page)))
}

#[derive(Deserialize)]
struct WishlistBody {
    query: String,
    #[serde(default)]
    filters: Filters,
    #[serde(default)]
    auto_download: bool,
}

async fn wishlist_list(State(api): State<Api>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.wishlist()?)))
}

async fn wishlist_add(State(api): State<Api>, Json(b): Json<WishlistBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    Ok((StatusCode::CREATED, Json(json!(api.node.wishlist_add(&b.query, b.filters, b.auto_download)?))))
}

async fn wishlist_remove(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    api.node.wishlist_remove(id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn wishlist_run(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.wishlist_run_now(id).await?)))
}

async fn wishlist_seen(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.wishlist_seen(id)?)))
}

async fn transfer_list(State(api): State<Api>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.transfers()?)))
}

/// Uploads: running and queued (queue order), then finished, newest first.
async fn settings_get(State(api): State<Api>) -> Json<Value> {
    Json(json!(api.node.settings()))
}

/// A refused change is a 400 naming the setting: `{"error": "share_folders: /x does not
/// exist", "key": "share_folders"}`.
async fn settings_put(State(api): State<Api>, Json(change): Json<serde_json::Map<String, Value>>) -> Response {
    let node = api.node.clone();
    // Folder checks and moves touch the disk: off the async workers.
    match tokio::task::spawn_blocking(move || node.change_settings(&change)).await {
        Ok(Ok(list)) => Json(json!(list)).into_response(),
        Ok(Err(e)) => match e.downcast_ref::<crate::app::settings::BadSetting>() {
            Some(bad) => {
                (StatusCode::BAD_REQUEST, Json(json!({"error": format!("{e:#}"), "key": bad.0}))).into_response()
            }
            None => ApiError::from(e).into_response(),
        },
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}")).into_response(),
    }
}

async fn upload_cancel(State(api): State<Api>, Path(id): Path<u64>) -> ApiResult<StatusCode> {
    if !api.node.uploads.cancel(id) {
        return Err(NodeError::NotFound(format!("no upload {id} waiting or running")).into());
    }
    Ok(StatusCode::ACCEPTED)
}

async fn upload_list(State(api): State<Api>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.upload_list())))
}

/// A search result's source (`result`), or a file or folder of a user's share (`user`
/// and `path`, with `network`: docs/api.md).
#[derive(Deserialize)]
struct TransferBody {
    result: Option<u64>,
    source: Option<usize>,
    network: Option<Network>,
    #[serde(default)]
    session: String,
    user: Option<String>,
    path: Option<String>,
    folder: Option<bool>,
    destination: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn transfer_add(State(api): State<Api>, Json(b): Json<TransferBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    if let (Some(user), Some(path)) = (b.user, b.path) {
        let network = b.network.ok_or_else(|| NodeError::Invalid("which network? (network: nmdc or slsk)".into()))?;
        let req = crate::app::browse::PathDownload {
            network,
            session: b.session,
            user,
            path,
            folder: b.folder,
            destination: b.destination,
            dry_run: b.dry_run,
        };
        let planned = api.node.download_path(&req).await?;
        let code = if req.dry_run { StatusCode::OK } else { StatusCode::CREATED };
        return Ok((code, Json(json!(planned))));
    }
    let result =
        b.result.ok_or_else(|| NodeError::Invalid("give a search result (result) or a user and a path".into()))?;
    if b.dry_run {
        let (name, destination, existing) = api.node.result_on_disk(result)?;
        return Ok((
            StatusCode::OK,
            Json(json!({"name": name, "destination": destination, "files": 1, "existing": existing})),
        ));
    }
    let t = api.node.download_result(result, b.source, b.network)?;
    Ok((StatusCode::CREATED, Json(json!(t))))
}

async fn transfer_segments(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let view = api
        .node
        .transfer_segments(id)
        .ok_or_else(|| NodeError::NotFound(format!("transfer {id} is not a running segmented download")))?;
    Ok(Json(json!(view)))
}

async fn transfer_groups(State(api): State<Api>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.transfer_groups()?)))
}

#[derive(Deserialize)]
struct BrowseQuery {
    network: Network,
    #[serde(default)]
    session: String,
    user: String,
    #[serde(default)]
    path: String,
    /// Search within the browse (words in names) instead of listing.
    #[serde(default)]
    q: String,
    /// Levels of subfolders to include (default: all).
    depth: Option<usize>,
    /// Ask the user again even when a recent browse is cached.
    #[serde(default)]
    refresh: bool,
}

/// A user's share, or one folder of it, as a tree with sizes and counts
/// (`crate::app::browse`).
async fn browse(State(api): State<Api>, Query(q): Query<BrowseQuery>) -> ApiResult<Json<Value>> {
    let tree = api.node.browse(q.network, &q.session, &q.user, q.refresh).await?;
    let folder = tree
        .root
        .find(&q.path)
        .ok_or_else(|| NodeError::NotFound(format!("{} has no folder {:?}", tree.user, q.path)))?;
    let mut v = json!({
        "network": tree.network,
        "session": tree.session,
        "user": tree.user,
        "fetched": tree.fetched,
        "path": folder.path,
    });
    if q.q.trim().is_empty() {
        v["folder"] = json!(match q.depth {
            Some(d) => folder.pruned(d),
            None => folder.clone(),
        });
    } else {
        v["hits"] = json!(folder.search(&q.q));
    }
    Ok(Json(v))
}

async fn transfer_get(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let t = api.node.transfer(id)?.ok_or_else(|| not_found(format!("no transfer {id}")))?;
    Ok(Json(json!(t)))
}

async fn transfer_remove(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    api.node.transfer_remove(id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn transfers_clear(State(api): State<Api>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"removed": api.node.transfers_clear_finished()?})))
}

async fn transfer_action(State(api): State<Api>, Path((id, action)): Path<(i64, String)>) -> ApiResult<Json<Value>> {
    let action: TransferAction = action
        .parse()
        .map_err(|_| NodeError::NotFound(format!("no action {action} (pause, resume, cancel, retry)")))?;
    Ok(Json(json!(api.node.transfer_action(id, action)?)))
}

#[derive(Deserialize)]
struct UsersQuery {
    chat: String,
}

async fn user_list(State(api): State<Api>, Query(q): Query<UsersQuery>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.users(&q.chat).await?)))
}

async fn contact_list(State(api): State<Api>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.marked_users()?)))
}

#[derive(Deserialize)]
struct ContactBody {
    network: Network,
    name: String,
    /// `buddy`, `ignored`, or null to unmark.
    relation: Option<crate::app::net::Relation>,
}

async fn contact_set(State(api): State<Api>, Json(b): Json<ContactBody>) -> ApiResult<Json<Value>> {
    api.node.set_relation(b.network, &b.name, b.relation)?;
    Ok(Json(json!(api.node.marked_users()?)))
}

async fn chat_list(State(api): State<Api>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.chats()?)))
}

#[derive(Deserialize)]
struct ChatQuery {
    chat: String,
    after: Option<i64>,
    limit: Option<usize>,
}

async fn chat_messages(State(api): State<Api>, Query(q): Query<ChatQuery>) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    Ok(Json(json!(api.node.chat_messages(&q.chat, q.after, limit)?)))
}

#[derive(Deserialize)]
struct ChatBody {
    chat: String,
    text: String,
}

async fn chat_send(State(api): State<Api>, Json(b): Json<ChatBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    let m = api.node.send_chat(&b.chat, &b.text).await?;
    Ok((StatusCode::CREATED, Json(json!(m))))
}

async fn shares(State(api): State<Api>) -> Json<Value> {
    let n = &api.node;
    let (files, bytes, hashed) = n.share_totals();
    Json(json!({
        "folders": n.share_folders().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "files": files,
        "bytes": bytes,
        "hashed": hashed,
    }))
}

/// A slice of rows (`?offset=&limit=`): the shared files, or a search's results (a search
/// of tens of thousands of sources is read a page at a time, not in one body of megabytes).
#[derive(Deserialize)]
struct Page {
    offset: Option<usize>,
    limit: Option<usize>,
}

async fn share_files(State(api): State<Api>, Query(p): Query<Page>) -> ApiResult<Json<Value>> {
    let rows = api.node.shared_files(p.offset.unwrap_or(0), p.limit.unwrap_or(500).clamp(1, 5000))?;
    Ok(Json(Value::Array(
        rows.into_iter().map(|(path, size, tth)| json!({"path": path, "size": size, "tth": tth})).collect(),
    )))
}

async fn share_rescan(State(api): State<Api>) -> (StatusCode, Json<Value>) {
    api.node.request_rescan();
    (StatusCode::ACCEPTED, Json(json!({"rescanning": true})))
}

async fn events(
    State(api): State<Api>,
    Extension(slot): Extension<listener::ConnSlot>,
    ws: WebSocketUpgrade,
) -> Response {
    let rx = api.node.subscribe();
    let shutdown = api.node.shutdown.clone();
    ws.on_upgrade(move |socket| async move {
        // The socket keeps its place under [api].max_connections while it is open.
        let _slot = slot;
        pump_events(socket, rx, shutdown).await
    })
}

async fn pump_events(
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<Event>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            ev = rx.recv() => {
                let ev = match ev {
                    Ok(ev) => ev,
                    // Behind by more than EVENT_BUFFER: say so, and the client re-reads.
                    Err(broadcast::error::RecvError::Lagged(n)) => Event::Resync { missed: n },
                    Err(_) => return,
                };
                let Ok(text) = serde_json::to_string(&ev) else { continue };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn web_index() -> Response {
    match WEB.get_file("index.html") {
        Some(f) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], f.contents()).into_response(),
        None => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><title>omnipeer</title><p>omnipeer node. The API is under \
             <a href=\"/api/status\">/api</a>; its description is \
             <a href=\"/api/openapi.json\">/api/openapi.json</a>.",
        )
            .into_response(),
    }
}

async fn web_file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let _ = headers;
    if path.starts_with("api/") || path.split('/').any(|c| c == ".." || c.is_empty()) {
        return not_found(format!("no route /{path}")).into_response();
    }
    match WEB.get_file(&path) {
        Some(f) => ([(header::CONTENT_TYPE, content_type(&path))], f.contents()).into_response(),
        None => not_found(format!("no route /{path}")).into_response(),
    }
}
