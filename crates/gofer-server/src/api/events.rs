//! The event stream.

use axum::extract::State;
use axum::response::Response;
use futures::StreamExt;
use gofer_api::error::ApiError;
use gofer_api::requests::EventsQuery;
use gofer_storage::EventFilter;

use super::AppState;
use super::extract::{ApiQuery, ApiResult};

/// Events as newline-delimited JSON, oldest first: the stored history after `after`, then, with `follow=true`,
/// new events as they happen. Filter by `namespace`, `pipeline` and `run`; `tail` starts near the newest instead.
#[utoipa::path(
    get, path = "/api/events", tag = "Events", params(EventsQuery),
    extensions(("x-gofer-access" = json!("events:read"))),
    responses(
        (status = 200, content_type = "application/x-ndjson", description = "One `Event` JSON object per line"),
        (status = 400, body = ApiError)
    )
)]
pub async fn list(State(state): State<AppState>, ApiQuery(query): ApiQuery<EventsQuery>) -> ApiResult<Response> {
    let mut after = query.after.unwrap_or(0);
    if let Some(tail) = query.tail {
        after = after.max(state.gofer.latest_event_id().await?.saturating_sub(tail));
    }
    let filter = EventFilter { after, namespace_id: query.namespace, pipeline_id: query.pipeline, run_id: query.run };
    let events = state.gofer.events(filter, query.follow)?;
    let lines = events.map(|event| match event {
        Ok(event) => {
            let mut line = serde_json::to_vec(&event).unwrap_or_default();
            line.push(b'\n');
            Ok(bytes::Bytes::from(line))
        }
        Err(e) => Err(std::io::Error::other(e.to_string())),
    });
    Ok(state.streamed("application/x-ndjson", lines, query.follow))
}
