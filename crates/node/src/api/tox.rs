//! `/api/tox…`: the node's Tox ID, friends and friend requests, its profile as a Tox save
//! (docs/api.md "Tox").

use super::{Api, ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

fn err(e: anyhow::Error) -> ApiError {
    ApiError::from(e)
}

pub(super) async fn status(State(api): State<Api>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.tox_status().map_err(err)?)))
}

#[derive(Deserialize)]
pub(super) struct AddBody {
    id: String,
    #[serde(default)]
    message: String,
}

pub(super) async fn add_friend(State(api): State<Api>, Json(b): Json<AddBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    let f = api.node.tox_add_friend(&b.id, &b.message).await.map_err(err)?;
    Ok((StatusCode::CREATED, Json(json!(f))))
}

pub(super) async fn remove_friend(State(api): State<Api>, Path(pk): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.tox_remove_friend(&pk).await.map_err(err)?)))
}

pub(super) async fn accept(State(api): State<Api>, Path(pk): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.tox_accept(&pk).await.map_err(err)?)))
}

pub(super) async fn decline(State(api): State<Api>, Path(pk): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.tox_decline(&pk).map_err(err)?)))
}

#[derive(Deserialize)]
pub(super) struct ExportBody {
    #[serde(default)]
    passphrase: Option<String>,
}

/// `POST /api/tox/profile/export`: `{data: base64 of the save, id, encrypted}`.
pub(super) async fn export_profile(State(api): State<Api>, Json(b): Json<ExportBody>) -> ApiResult<Json<Value>> {
    let bytes = api.node.tox_export(b.passphrase.as_deref()).await.map_err(err)?;
    let id = api.node.tox_status().map_err(err)?.id;
    let encrypted = omnipeer_tox::savedata::is_encrypted(&bytes);
    Ok(Json(json!({"data": data_encoding::BASE64.encode(&bytes), "id": id, "encrypted": encrypted})))
}

/// Longest `POST /api/tox/profile/import` body: a save of about 3 MiB in base64 (c-toxcore
/// stores ~2.2 KB per friend, so over a thousand friends); other routes keep `MAX_BODY`.
pub const MAX_IMPORT_BODY: usize = 4 << 20;

#[derive(Deserialize)]
pub(super) struct ImportBody {
    /// The save file, base64.
    data: String,
    #[serde(default)]
    passphrase: Option<String>,
}

/// `POST /api/tox/profile/import`.
pub(super) async fn import_profile(State(api): State<Api>, Json(b): Json<ImportBody>) -> ApiResult<Json<Value>> {
    let bytes = data_encoding::BASE64
        .decode(b.data.trim().as_bytes())
        .map_err(|e| err(crate::app::NodeError::Invalid(format!("data is not base64: {e}")).into()))?;
    Ok(Json(json!(api.node.tox_import(&bytes, b.passphrase.as_deref()).await.map_err(err)?)))
}

#[derive(Deserialize)]
pub(super) struct SendFileBody {
    /// An absolute path inside a shared folder or the downloads folder.
    path: String,
}

/// `POST /api/tox/friends/{pk}/files`: offer a local file to an online friend; 201 with
/// the upload (`GET /api/uploads`).
pub(super) async fn send_file(
    State(api): State<Api>,
    Path(pk): Path<String>,
    Json(b): Json<SendFileBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let u = api.node.tox_send_file(&pk, &b.path).await.map_err(err)?;
    Ok((StatusCode::CREATED, Json(json!(u))))
}

/// `GET /api/tox/conferences`: `{conferences: [ToxConference], invites: [ToxConferenceInvite]}`.
pub(super) async fn conferences(State(api): State<Api>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.tox_conferences().map_err(err)?)))
}

#[derive(Deserialize)]
pub(super) struct ConferenceNewBody {
    #[serde(default)]
    title: Option<String>,
}

/// `POST /api/tox/conferences`: 201 with the new conference (us alone in it).
pub(super) async fn conference_new(
    State(api): State<Api>,
    Json(b): Json<ConferenceNewBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let c = api.node.tox_conference_new(b.title.as_deref()).await.map_err(err)?;
    Ok((StatusCode::CREATED, Json(json!(c))))
}

#[derive(Deserialize)]
pub(super) struct ConferenceInviteBody {
    /// The friend's long-term public key (64 hex).
    friend: String,
}

/// `POST /api/tox/conferences/{id}/invite`.
pub(super) async fn conference_invite(
    State(api): State<Api>,
    Path(id): Path<String>,
    Json(b): Json<ConferenceInviteBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.tox_conference_invite(&id, &b.friend).await.map_err(err)?)))
}

/// `POST /api/tox/conference-invites/{id}/accept`.
pub(super) async fn conference_accept(State(api): State<Api>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.tox_conference_accept(&id).await.map_err(err)?)))
}

/// `DELETE /api/tox/conferences/{id}`.
pub(super) async fn conference_leave(State(api): State<Api>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.tox_conference_leave(&id).await.map_err(err)?)))
}

/// `GET /api/tox/groups`: `{groups: [ToxGroup], invites: [ToxGroupInvite]}`.
pub(super) async fn groups(State(api): State<Api>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.tox_groups().map_err(err)?)))
}

#[derive(Deserialize)]
pub(super) struct GroupNewBody {
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/tox/groups`: 201 with the new NGC group (us alone in it).
pub(super) async fn group_new(
    State(api): State<Api>,
    Json(b): Json<GroupNewBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let g = api.node.tox_group_new(b.name.as_deref()).await.map_err(err)?;
    Ok((StatusCode::CREATED, Json(json!(g))))
}

/// `POST /api/tox/groups/{id}/invite`.
pub(super) async fn group_invite(
    State(api): State<Api>,
    Path(id): Path<String>,
    Json(b): Json<ConferenceInviteBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.tox_group_invite(&id, &b.friend).await.map_err(err)?)))
}

/// `POST /api/tox/group-invites/{id}/accept`.
pub(super) async fn group_accept(State(api): State<Api>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.tox_group_accept(&id).await.map_err(err)?)))
}

/// `DELETE /api/tox/groups/{id}`.
pub(super) async fn group_leave(State(api): State<Api>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(api.node.tox_group_leave(&id).await.map_err(err)?)))
}
