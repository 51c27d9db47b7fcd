//! Task execution routes and logs.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gofer_api::attach::{self, Frame};
use gofer_api::error::ApiError;
use gofer_api::models::TaskExecution;
use gofer_api::requests::{AttachRequest, ExecRequest, ExecResponse, ListTaskExecutionsResponse, LogsQuery};

use super::extract::{ApiJson, ApiPath, ApiQuery, ApiResult, AttachUpgrade};
use super::{AppState, Caller};

/// Lists the task executions of a run, by task id.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/tasks", tag = "Tasks",
    extensions(("x-gofer-access" = json!("task_executions:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("run_id" = u64, Path)),
    responses((status = 200, body = ListTaskExecutionsResponse), (status = 404, body = ApiError))
)]
pub async fn list(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, run_id)): ApiPath<(String, String, u64)>,
) -> ApiResult<Json<ListTaskExecutionsResponse>> {
    let task_executions = state.gofer.list_task_executions(&namespace_id, &pipeline_id, run_id).await?;
    Ok(Json(ListTaskExecutionsResponse { task_executions }))
}

/// Gets one task execution.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/tasks/{task_id}", tag = "Tasks",
    extensions(("x-gofer-access" = json!("task_executions:read"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("run_id" = u64, Path), ("task_id" = String, Path)),
    responses((status = 200, body = TaskExecution), (status = 404, body = ApiError))
)]
pub async fn get(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, run_id, task_id)): ApiPath<(String, String, u64, String)>,
) -> ApiResult<Json<TaskExecution>> {
    Ok(Json(state.gofer.get_task_execution(&namespace_id, &pipeline_id, run_id, &task_id).await?))
}

/// Cancels one task: stops its container (or cancels it before it starts). The rest of the run goes on as the
/// DAG says: children needing `Any` still run.
#[utoipa::path(
    post, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/tasks/{task_id}/cancel", tag = "Tasks",
    extensions(("x-gofer-access" = json!("task_executions:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("run_id" = u64, Path), ("task_id" = String, Path)),
    responses(
        (status = 202, body = TaskExecution, description = "Cancellation started"),
        (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "The task or its run is already finished")
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, run_id, task_id)): ApiPath<(String, String, u64, String)>,
) -> ApiResult<(StatusCode, Json<TaskExecution>)> {
    let task = state.gofer.cancel_task(&namespace_id, &pipeline_id, run_id, &task_id).await?;
    Ok((StatusCode::ACCEPTED, Json(task)))
}

/// A task's stdout and stderr as raw bytes, exactly as the container wrote them. With `follow=true` the response
/// stays open and streams new output until the task completes.
#[utoipa::path(
    get, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/tasks/{task_id}/logs", tag = "Tasks",
    extensions(("x-gofer-access" = json!("task_executions:read"))),
    params(
        ("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("run_id" = u64, Path), ("task_id" = String, Path),
        LogsQuery
    ),
    responses(
        (status = 200, content_type = "application/octet-stream", description = "The log bytes"),
        (status = 404, body = ApiError)
    )
)]
pub async fn logs(
    State(state): State<AppState>,
    ApiPath((namespace_id, pipeline_id, run_id, task_id)): ApiPath<(String, String, u64, String)>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> ApiResult<Response> {
    let stream =
        state.gofer.task_logs(&namespace_id, &pipeline_id, run_id, &task_id, query.attempt, query.follow).await?;
    Ok(state.streamed("application/octet-stream", stream, query.follow))
}

/// Runs a command in the task's running container and answers with its output and exit code (for debugging; told
/// as a `task_exec_started` event). The output is bounded to 1 MiB.
#[utoipa::path(
    post, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/tasks/{task_id}/exec", tag = "Tasks",
    extensions(("x-gofer-access" = json!("runs:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("run_id" = u64, Path), ("task_id" = String, Path)),
    request_body = ExecRequest,
    responses(
        (status = 200, body = ExecResponse, description = "The command ran; its exit code may be non-zero"),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "The task is not running")
    )
)]
pub async fn exec(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    ApiPath((namespace_id, pipeline_id, run_id, task_id)): ApiPath<(String, String, u64, String)>,
    ApiJson(request): ApiJson<ExecRequest>,
) -> ApiResult<Json<ExecResponse>> {
    let by = gofer_core::Gofer::initiator_of(caller.0.as_ref());
    let answer = state.gofer.exec_in_task(&namespace_id, &pipeline_id, run_id, &task_id, request.command, &by).await?;
    Ok(Json(answer))
}

/// Starts a command in the task's running container and switches the connection to an interactive session with it
/// (`Upgrade: gofer-attach`; the framing is `gofer_api::attach`): input, terminal size and end of input go in,
/// output and then the exit code come out. Told as a `task_exec_started` event. `gofer task attach` speaks it.
#[utoipa::path(
    post, path = "/api/namespaces/{namespace_id}/pipelines/{pipeline_id}/runs/{run_id}/tasks/{task_id}/attach", tag = "Tasks",
    extensions(("x-gofer-access" = json!("runs:write"))),
    params(("namespace_id" = String, Path), ("pipeline_id" = String, Path), ("run_id" = u64, Path), ("task_id" = String, Path)),
    request_body = AttachRequest,
    responses(
        (status = 101, description = "Switched to the gofer-attach framing"),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "The task is not running")
    )
)]
pub async fn attach(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    ApiPath((namespace_id, pipeline_id, run_id, task_id)): ApiPath<(String, String, u64, String)>,
    AttachUpgrade(upgrade): AttachUpgrade,
    ApiJson(request): ApiJson<AttachRequest>,
) -> ApiResult<Response> {
    let by = gofer_core::Gofer::initiator_of(caller.0.as_ref());
    let session = state.gofer.attach_to_task(&namespace_id, &pipeline_id, run_id, &task_id, request, &by).await?;
    // The session lives on the upgraded connection, past this response; it ends with the command, the client, or
    // the server's stop.
    tokio::spawn(bridge(upgrade, session, state.shutdown.clone()));
    Ok((StatusCode::SWITCHING_PROTOCOLS, [(header::CONNECTION, "Upgrade"), (header::UPGRADE, attach::UPGRADE)])
        .into_response())
}

/// Carries frames between the upgraded connection and the command until the command exits.
async fn bridge(
    upgrade: hyper::upgrade::OnUpgrade,
    session: gofer_core::Session,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let Ok(upgraded) = upgrade.await else { return };
    let (mut reader, mut writer) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
    let gofer_core::Session { controls, mut output, mut input } = session;
    let resizer = controls.clone();
    let incoming = tokio::spawn(async move {
        let mut buffer = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let read = match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buffer.extend_from_slice(&chunk[..read]);
            loop {
                match Frame::decode(&mut buffer) {
                    Ok(Some(Frame::Input(bytes))) => {
                        if input.write_all(&bytes).await.is_err() {
                            return;
                        }
                        let _ = input.flush().await;
                    }
                    Ok(Some(Frame::Resize { columns, rows })) => {
                        let _ = resizer.resize(columns, rows).await;
                    }
                    Ok(Some(Frame::EndOfInput)) => {
                        let _ = input.shutdown().await;
                    }
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) => break,
                }
            }
        }
        let _ = input.shutdown().await;
    });
    let outgoing = async {
        while let Some(chunk) = output.next().await {
            let Ok(chunk) = chunk else { break };
            if writer.write_all(&Frame::Output(chunk.to_vec()).encode()).await.is_err() {
                return;
            }
        }
        let code = controls.exit_code().await.unwrap_or(-1);
        let _ = writer.write_all(&Frame::Exit(code).encode()).await;
        let _ = writer.shutdown().await;
    };
    tokio::select! {
        () = outgoing => {}
        () = shutdown.cancelled() => {}
    }
    incoming.abort();
}
