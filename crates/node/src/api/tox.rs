//! `/api/tox…`: the node's Tox ID, friends and friend requests (docs/api.md "Tox").

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
