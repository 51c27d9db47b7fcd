//! What each client command does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use gofer_api::config;
use gofer_api::config::RegistryAuth;
use gofer_api::models::{PipelineState, Run, TaskExecution, TaskState};
use gofer_api::permissions::{Grant, Role, Token};
use gofer_api::requests::{CreateTokenRequest, InstallExtensionRequest, PutSecretRequest};

use crate::client::{Client, ObjectTarget};
use crate::output::{self, Format, ago, took};
use crate::{
    Command, DeployArgs, EventCommand, ExtensionCommand, GlobalArgs, GlobalSecretCommand, NamespaceCommand,
    PipelineCommand, PipelineObjectCommand, PipelineSecretCommand, RoleCommand, RunCommand, RunObjectCommand,
    SecretCommand, SystemCommand, TaskCommand, TokenCommand,
};

/// Runs a client command.
pub async fn run(global: &GlobalArgs, command: Command) -> anyhow::Result<()> {
    let settings = global.resolve()?;
    let ca_cert = match &settings.ca_cert {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("could not read the CA certificate {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let client = Client::new(&settings.api_url, &settings.namespace, settings.token.as_deref(), ca_cert.as_deref())?;
    let format = settings.output;
    match command {
        Command::Up(args) => deploy(&client, format, &args).await,
        Command::Pipeline(command) => pipeline(&client, format, command).await,
        Command::Run(command) => run_command(&client, format, command).await,
        Command::Task(command) => task(&client, format, command).await,
        Command::System(command) => system(&client, format, command).await,
        Command::Secret(command) => secret(&client, format, command).await,
        Command::Token(command) => token(&client, format, command).await,
        Command::Context => context(&client, &settings, format).await,
        Command::Role(command) => role(&client, format, command).await,
        Command::Namespace(command) => namespace(&client, format, command).await,
        Command::Extension(command) => extension(&client, format, command).await,
        Command::Event(EventCommand::List { after, follow }) => {
            let mut events = Box::pin(client.events(None, after, follow).await?);
            let mut out = std::io::stdout().lock();
            while let Some(event) = events.next().await {
                serde_json::to_writer(&mut out, &event?)?;
                writeln!(out)?;
                out.flush()?;
            }
            Ok(())
        }
    }
}

async fn extension(client: &Client, format: Format, command: ExtensionCommand) -> anyhow::Result<()> {
    let shown = match command {
        ExtensionCommand::List => {
            let list = client.list_extensions().await?;
            if format == Format::Json {
                return output::json(&list.extensions);
            }
            let rows: Vec<Vec<String>> = list
                .extensions
                .iter()
                .map(|e| {
                    vec![
                        e.id.clone(),
                        e.kind.to_string(),
                        if e.enabled { "enabled" } else { "disabled" }.into(),
                        e.state.to_string(),
                        e.image.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            return output::table(&["ID", "KIND", "SWITCH", "STATE", "IMAGE"], &rows);
        }
        ExtensionCommand::Get { id } => client.get_extension(&id).await?,
        ExtensionCommand::Enable { id } => client.set_extension_enabled(&id, true).await?,
        ExtensionCommand::Disable { id } => client.set_extension_enabled(&id, false).await?,
        ExtensionCommand::Install { id, image, settings, registry_auth } => {
            let registry_auth = match registry_auth {
                None => None,
                Some(text) => {
                    let (user, pass) = text.split_once(':').ok_or_else(|| {
                        anyhow::anyhow!("--registry-auth must be USER:PASSWORD, e.g. --registry-auth robot:s3cret")
                    })?;
                    Some(RegistryAuth { user: user.into(), pass: pass.into() })
                }
            };
            let request =
                InstallExtensionRequest { id, image, settings: settings.into_iter().collect(), registry_auth };
            client.install_extension(&request).await?
        }
        ExtensionCommand::Uninstall { id } => {
            client.uninstall_extension(&id).await?;
            if format != Format::Json {
                eprintln!("Extension '{id}' uninstalled.");
            }
            return Ok(());
        }
        ExtensionCommand::Logs { id, follow } => {
            let mut stream = client.extension_logs(&id, follow).await?;
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk?)?;
                out.flush()?;
            }
            return Ok(());
        }
        ExtensionCommand::Debug { id } => {
            let debug = client.debug_extension(&id).await?;
            return match format {
                Format::Json => output::json(&debug),
                Format::Table => {
                    println!("{}", debug.info.trim_end());
                    Ok(())
                }
            };
        }
    };
    match format {
        Format::Json => output::json(&shown),
        Format::Table => {
            let mut fields = vec![
                ("extension", shown.id.clone()),
                ("kind", shown.kind.to_string()),
                ("switch", if shown.enabled { "enabled" } else { "disabled" }.to_string()),
                ("state", shown.state.to_string()),
                ("about", shown.documentation.clone()),
            ];
            if let Some(image) = &shown.image {
                fields.insert(2, ("image", image.clone()));
            }
            if shown.restarts > 0 {
                fields.push(("restarts", shown.restarts.to_string()));
            }
            if let Some(problem) = &shown.problem {
                fields.push(("last problem", problem.clone()));
            }
            for param in &shown.config_params {
                let required = if param.required { "required" } else { "optional" };
                fields.push(("install setting", format!("{} ({required}): {}", param.key, param.documentation)));
            }
            for param in &shown.subscription_params {
                let required = if param.required { "required" } else { "optional" };
                fields.push(("setting", format!("{} ({required}): {}", param.key, param.documentation)));
            }
            output::fields(&fields)
        }
    }
}

fn token_fields(token: &Token) -> Vec<(&'static str, String)> {
    vec![
        ("token", token.id.clone()),
        ("user", token.user.clone()),
        ("roles", token.roles.join(", ")),
        ("created", ago(token.created)),
        ("expires", if token.expires == 0 { "never".into() } else { ago(token.expires) }),
        ("state", if token.disabled { "disabled" } else { "enabled" }.into()),
    ]
}

async fn token(client: &Client, format: Format, command: TokenCommand) -> anyhow::Result<()> {
    let shown = match command {
        TokenCommand::Bootstrap | TokenCommand::Create { .. } => {
            let created = match command {
                TokenCommand::Create { user, roles, expires_in, metadata } => {
                    let metadata = metadata.into_iter().collect();
                    let request = CreateTokenRequest { user, roles, expires_in_seconds: expires_in, metadata };
                    client.create_token(&request).await?
                }
                _ => client.bootstrap_token().await?,
            };
            eprintln!("Keep the secret now: Gofer keeps only its hash and cannot show it again.");
            return match format {
                Format::Json => output::json(&created),
                Format::Table => {
                    let mut fields = token_fields(&created.token);
                    fields.push(("secret", created.secret));
                    output::fields(&fields)
                }
            };
        }
        TokenCommand::List => {
            let list = client.list_tokens().await?;
            if format == Format::Json {
                return output::json(&list.tokens);
            }
            let rows: Vec<Vec<String>> = list
                .tokens
                .iter()
                .map(|t| {
                    let state = if t.disabled { "disabled" } else { "enabled" };
                    vec![t.id.clone(), t.user.clone(), t.roles.join(","), state.into(), ago(t.created)]
                })
                .collect();
            return output::table(&["ID", "USER", "ROLES", "STATE", "CREATED"], &rows);
        }
        TokenCommand::Get { id } => client.get_token(&id).await?,
        TokenCommand::Enable { id } => client.set_token_disabled(&id, false).await?,
        TokenCommand::Disable { id } => client.set_token_disabled(&id, true).await?,
        TokenCommand::Delete { id } => {
            client.delete_token(&id).await?;
            eprintln!("Token '{id}' deleted.");
            return Ok(());
        }
        TokenCommand::Whoami => client.whoami().await?,
    };
    match format {
        Format::Json => output::json(&shown),
        Format::Table => output::fields(&token_fields(&shown)),
    }
}

/// One grant from the role flags: names as the API spells them.
fn grant_from_flags(
    resources: Vec<String>,
    actions: Vec<String>,
    namespaces: Vec<String>,
    pipelines: Vec<String>,
) -> anyhow::Result<Grant> {
    let or_any = |v: Vec<String>| if v.is_empty() { vec!["*".to_string()] } else { v };
    let grant = serde_json::json!({
        "resources": resources,
        "actions": actions,
        "namespaces": or_any(namespaces),
        "pipelines": or_any(pipelines),
    });
    serde_json::from_value(grant).map_err(|e| {
        anyhow::anyhow!(
            "{e}: resources are namespaces, pipelines, configs, runs, task_executions, events, extensions, \
                         subscriptions, secrets, objects, tokens, roles, system; actions are read, write, delete"
        )
    })
}

async fn role(client: &Client, format: Format, command: RoleCommand) -> anyhow::Result<()> {
    let shown = match command {
        RoleCommand::List => {
            let list = client.list_roles().await?;
            if format == Format::Json {
                return output::json(&list.roles);
            }
            let rows: Vec<Vec<String>> = list
                .roles
                .iter()
                .map(|r| {
                    vec![r.id.clone(), if r.system_role { "built in" } else { "custom" }.into(), r.description.clone()]
                })
                .collect();
            return output::table(&["ID", "KIND", "DESCRIPTION"], &rows);
        }
        RoleCommand::Get { id } => client.get_role(&id).await?,
        RoleCommand::Create { id, description, resources, actions, namespaces, pipelines, grants_file } => {
            let grants: Vec<Grant> = match grants_file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("could not read {}: {e}", path.display()))?;
                    serde_json::from_str(&text)
                        .map_err(|e| anyhow::anyhow!("{}: not a list of grants: {e}", path.display()))?
                }
                None => vec![grant_from_flags(resources, actions, namespaces, pipelines)?],
            };
            client.create_role(&Role { id, description, grants, system_role: false }).await?
        }
        RoleCommand::Delete { id } => {
            client.delete_role(&id).await?;
            eprintln!("Role '{id}' deleted.");
            return Ok(());
        }
    };
    match format {
        Format::Json => output::json(&shown),
        Format::Table => {
            let mut fields = vec![("role", shown.id.clone()), ("about", shown.description.clone())];
            for grant in &shown.grants {
                let resources = if grant.resources.is_empty() {
                    "everything".to_string()
                } else {
                    grant
                        .resources
                        .iter()
                        .map(|r| serde_json::to_value(r).unwrap_or_default().as_str().unwrap_or_default().to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let actions: Vec<String> = grant
                    .actions
                    .iter()
                    .map(|a| serde_json::to_value(a).unwrap_or_default().as_str().unwrap_or_default().to_string())
                    .collect();
                fields.push((
                    "grant",
                    format!(
                        "{} on {resources} in namespaces {} pipelines {}",
                        actions.join(","),
                        grant.namespaces.join(","),
                        grant.pipelines.join(",")
                    ),
                ));
            }
            output::fields(&fields)
        }
    }
}

/// Which server, namespace and token this client uses.
async fn context(client: &Client, settings: &crate::Settings, format: Format) -> anyhow::Result<()> {
    let who = match &settings.token {
        Some(_) => Some(client.whoami().await?),
        None => None,
    };
    let system = client.get_system().await.ok();
    if format == Format::Json {
        return output::json(&serde_json::json!({
            "api_url": client.base(),
            "namespace": settings.namespace,
            "token": who,
            "maintenance": system.map(|s| s.maintenance),
        }));
    }
    let mut fields = vec![("server", client.base().to_string()), ("namespace", settings.namespace.clone())];
    match who {
        Some(token) => {
            fields.push(("user", token.user));
            fields.push(("roles", token.roles.join(", ")));
            fields.push(("token", token.id));
        }
        None => fields.push(("token", "none (only development mode lets requests without one in)".into())),
    }
    if let Some(system) = system {
        fields.push(("maintenance", if system.maintenance { "on" } else { "off" }.into()));
    }
    output::fields(&fields)
}

/// A request body streamed from a file, or from stdin for `-` or `@-`.
async fn upload_body(file: &str) -> anyhow::Result<reqwest::Body> {
    if file == "-" || file == "@-" {
        return Ok(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(tokio::io::stdin())));
    }
    let opened = tokio::fs::File::open(file).await.map_err(|e| anyhow::anyhow!("could not open {file}: {e}"))?;
    Ok(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(opened)))
}

/// Writes a download to a file or to stdout, as it arrives.
async fn download(
    mut stream: impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    output_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin> = match &output_file {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .map_err(|e| anyhow::anyhow!("could not write {}: {e}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?).await?;
    }
    out.flush().await?;
    Ok(())
}

async fn objects_command(
    client: &Client,
    format: Format,
    target: ObjectTarget<'_>,
    action: ObjectAction,
) -> anyhow::Result<()> {
    match action {
        ObjectAction::Put { key, file } => {
            let info = client.put_object(target, &key, upload_body(&file).await?).await?;
            match format {
                Format::Json => output::json(&info),
                Format::Table => output::fields(&[("key", info.key), ("size", info.size.to_string())]),
            }
        }
        ObjectAction::Get { key, output_file } => download(client.get_object(target, &key).await?, output_file).await,
        ObjectAction::List => {
            let list = client.list_objects(target).await?;
            if format == Format::Json {
                return output::json(&list.objects);
            }
            let rows: Vec<Vec<String>> =
                list.objects.iter().map(|o| vec![o.key.clone(), o.size.to_string(), ago(o.modified)]).collect();
            output::table(&["KEY", "SIZE", "MODIFIED"], &rows)
        }
        ObjectAction::Delete { key } => {
            client.delete_object(target, &key).await?;
            eprintln!("Object '{key}' deleted.");
            Ok(())
        }
    }
}

/// What to do with an object, whoever's it is.
enum ObjectAction {
    Put { key: String, file: String },
    Get { key: String, output_file: Option<std::path::PathBuf> },
    List,
    Delete { key: String },
}

async fn pipeline_object(client: &Client, format: Format, command: PipelineObjectCommand) -> anyhow::Result<()> {
    use PipelineObjectCommand as C;
    let (pipeline, action) = match command {
        C::Put { pipeline, key, file } => (pipeline, ObjectAction::Put { key, file }),
        C::Get { pipeline, key, output_file } => (pipeline, ObjectAction::Get { key, output_file }),
        C::List { pipeline } => (pipeline, ObjectAction::List),
        C::Delete { pipeline, key } => (pipeline, ObjectAction::Delete { key }),
    };
    objects_command(client, format, ObjectTarget::Pipeline(&pipeline), action).await
}

async fn run_object(client: &Client, format: Format, command: RunObjectCommand) -> anyhow::Result<()> {
    use RunObjectCommand as C;
    let (pipeline, run, action) = match command {
        C::Put { pipeline, run, key, file } => (pipeline, run, ObjectAction::Put { key, file }),
        C::Get { pipeline, run, key, output_file } => (pipeline, run, ObjectAction::Get { key, output_file }),
        C::List { pipeline, run } => (pipeline, run, ObjectAction::List),
        C::Delete { pipeline, run, key } => (pipeline, run, ObjectAction::Delete { key }),
    };
    objects_command(client, format, ObjectTarget::Run(&pipeline, run), action).await
}

/// A secret's value from the command line, or from stdin when it is `@-` (one trailing newline dropped).
fn secret_value(value: String) -> anyhow::Result<String> {
    if value != "@-" {
        return Ok(value);
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|e| anyhow::anyhow!("could not read the secret from stdin (it must be UTF-8 text): {e}"))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

async fn secret(client: &Client, format: Format, command: SecretCommand) -> anyhow::Result<()> {
    use GlobalSecretCommand as G;
    use PipelineSecretCommand as P;
    let request = |value: String, namespaces: Vec<String>| -> anyhow::Result<PutSecretRequest> {
        Ok(PutSecretRequest { value: secret_value(value)?, namespaces })
    };
    let (pipeline, shown) = match command {
        SecretCommand::Pipeline(P::Put { pipeline, key, value }) => {
            let secret = client.put_secret(Some(&pipeline), &key, &request(value, Vec::new())?).await?;
            (Some(pipeline), secret)
        }
        SecretCommand::Pipeline(P::Get { pipeline, key, include_secret }) => {
            let secret = client.get_secret(Some(&pipeline), &key, include_secret).await?;
            (Some(pipeline), secret)
        }
        SecretCommand::Pipeline(P::Delete { pipeline, key }) => {
            client.delete_secret(Some(&pipeline), &key).await?;
            eprintln!("Secret '{key}' of pipeline '{pipeline}' deleted.");
            return Ok(());
        }
        SecretCommand::Global(G::Put { key, value, namespaces }) => {
            (None, client.put_secret(None, &key, &request(value, namespaces)?).await?)
        }
        SecretCommand::Global(G::Get { key, include_secret }) => {
            (None, client.get_secret(None, &key, include_secret).await?)
        }
        SecretCommand::Global(G::Delete { key }) => {
            client.delete_secret(None, &key).await?;
            eprintln!("Global secret '{key}' deleted.");
            return Ok(());
        }
        SecretCommand::Pipeline(P::List { pipeline }) => return secret_list(client, format, Some(&pipeline)).await,
        SecretCommand::Global(G::List) => return secret_list(client, format, None).await,
    };
    match format {
        Format::Json => output::json(&shown),
        Format::Table => {
            let mut fields = vec![("key", shown.key.clone())];
            if let Some(pipeline) = pipeline {
                fields.push(("pipeline", pipeline));
            }
            if !shown.namespaces.is_empty() {
                fields.push(("namespaces", shown.namespaces.join(", ")));
            }
            fields.push(("created", ago(shown.created)));
            fields.push(("modified", ago(shown.modified)));
            if let Some(value) = &shown.value {
                fields.push(("value", value.clone()));
            }
            output::fields(&fields)
        }
    }
}

async fn secret_list(client: &Client, format: Format, pipeline: Option<&str>) -> anyhow::Result<()> {
    let list = client.list_secrets(pipeline).await?;
    if format == Format::Json {
        return output::json(&list.secrets);
    }
    let rows: Vec<Vec<String>> = list
        .secrets
        .iter()
        .map(|s| vec![s.key.clone(), s.namespaces.join(", "), ago(s.created), ago(s.modified)])
        .collect();
    output::table(&["KEY", "NAMESPACES", "CREATED", "MODIFIED"], &rows)
}

async fn namespace(client: &Client, format: Format, command: NamespaceCommand) -> anyhow::Result<()> {
    let shown = match command {
        NamespaceCommand::List => {
            let list = client.list_namespaces().await?;
            if format == Format::Json {
                return output::json(&list.namespaces);
            }
            let rows: Vec<Vec<String>> = list
                .namespaces
                .iter()
                .map(|n| vec![n.id.clone(), n.name.clone(), n.description.clone(), ago(n.created)])
                .collect();
            return output::table(&["ID", "NAME", "DESCRIPTION", "CREATED"], &rows);
        }
        NamespaceCommand::Get { id } => client.get_namespace(&id).await?,
        NamespaceCommand::Create { id, name, description } => {
            let created =
                client.create_namespace(&gofer_api::requests::CreateNamespaceRequest { id, name, description }).await?;
            eprintln!("created namespace '{}'; use it with --namespace {}", created.id, created.id);
            created
        }
        NamespaceCommand::Update { id, name, description } => {
            client.update_namespace(&id, &gofer_api::requests::UpdateNamespaceRequest { name, description }).await?
        }
        NamespaceCommand::Delete { id } => {
            client.delete_namespace(&id).await?;
            eprintln!("Namespace '{id}' deleted, with everything in it.");
            return Ok(());
        }
    };
    match format {
        Format::Json => output::json(&shown),
        Format::Table => output::fields(&[
            ("namespace", shown.id.clone()),
            ("name", shown.name.clone()),
            ("description", shown.description.clone()),
            ("created", ago(shown.created)),
        ]),
    }
}

async fn system(client: &Client, format: Format, command: SystemCommand) -> anyhow::Result<()> {
    let settings = match command {
        SystemCommand::Get => client.get_system().await?,
        SystemCommand::Maintenance { mode } => {
            let settings = client.set_maintenance(mode == "on").await?;
            eprintln!(
                "maintenance mode is {}",
                if settings.maintenance { "on: new runs are refused" } else { "off: new runs are taken" }
            );
            settings
        }
    };
    match format {
        Format::Json => output::json(&settings),
        Format::Table => output::fields(&[("maintenance", settings.maintenance.to_string())]),
    }
}

/// Prints a run's events in order, with the time since the first one.
async fn timeline(client: &Client, pipeline: &str, run: u64, format: Format) -> anyhow::Result<()> {
    let mut events = Box::pin(client.events(Some((pipeline, run)), 0, false).await?);
    let mut all = Vec::new();
    while let Some(event) = events.next().await {
        all.push(event?);
    }
    if format == Format::Json {
        return output::json(&all);
    }
    let start = all.first().map_or(0, |e| e.emitted);
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|event| {
            let offset = format!("+{}ms", event.emitted.saturating_sub(start));
            let (subject, what) = describe_event(&event.kind);
            vec![offset, subject, what]
        })
        .collect();
    output::table(&["AT", "SUBJECT", "CHANGE"], &rows)
}

fn describe_event(kind: &gofer_api::models::EventKind) -> (String, String) {
    use gofer_api::models::EventKind as K;
    let why = |r: &Option<gofer_api::models::StatusReason>| {
        r.as_ref().map_or(String::new(), |r| format!(" ({}: {})", r.reason, r.description))
    };
    match kind {
        K::RunQueued { .. } => ("run".into(), "queued".into()),
        K::RunStarted { .. } => ("run".into(), "started".into()),
        K::RunCancelRequested { task_id, .. } => match task_id {
            Some(task) => (format!("task {task}"), "cancel requested".into()),
            None => ("run".into(), "cancel requested".into()),
        },
        K::RunCompleted { status, status_reason, .. } => {
            ("run".into(), format!("complete: {status}{}", why(status_reason)))
        }
        K::TaskChanged { task_id, attempt, state, status, status_reason, exit_code, .. } => {
            let attempt = if *attempt > 1 { format!(" attempt {attempt}") } else { String::new() };
            let change = match state {
                TaskState::Complete => {
                    let exit = exit_code.map_or(String::new(), |c| format!(", exit {c}"));
                    format!("complete: {status}{exit}{}", why(status_reason))
                }
                other => other.to_string(),
            };
            (format!("task {task_id}{attempt}"), change)
        }
        other => ("-".into(), serde_json::to_string(other).unwrap_or_default()),
    }
}

/// Builds and runs the pipeline program, returning the config it printed.
async fn build_config(dir: &Path) -> anyhow::Result<config::Pipeline> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} has no Cargo.toml; `deploy` expects a Cargo project whose program builds the pipeline and calls \
             .finish()",
            dir.display()
        );
    }
    eprintln!("building and running the pipeline program in {} ...", dir.display());
    let out = tokio::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["run", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .context("could not run cargo; is the Rust toolchain installed and on PATH?")?
        .wait_with_output()
        .await
        .context("the pipeline program did not finish")?;
    if !out.status.success() {
        bail!("the pipeline program failed ({}); see its output above", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or_default();
    if json.is_empty() {
        bail!("the pipeline program printed no config on stdout; does it end with `.finish()`?");
    }
    serde_json::from_str(json).context("the pipeline program printed something that is not a pipeline config")
}

fn describe_changes(old: &config::Pipeline, new: &config::Pipeline) -> Vec<String> {
    let old_tasks: HashMap<&str, &config::Task> = old.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    let new_ids: HashSet<&str> = new.tasks.iter().map(|t| t.id.as_str()).collect();
    let mut changes = Vec::new();
    for task in &new.tasks {
        match old_tasks.get(task.id.as_str()) {
            None => changes.push(format!("+ task {} ({})", task.id, task.image)),
            Some(before) if *before != task => changes.push(format!("~ task {}", task.id)),
            Some(_) => {}
        }
    }
    for task in &old.tasks {
        if !new_ids.contains(task.id.as_str()) {
            changes.push(format!("- task {}", task.id));
        }
    }
    if old.name != new.name || old.description != new.description || old.parallelism != new.parallelism {
        changes.push("~ pipeline settings".into());
    }
    changes
}

async fn deploy(client: &Client, format: Format, args: &DeployArgs) -> anyhow::Result<()> {
    let config = build_config(&args.dir).await?;
    let pipeline_id = config.id.clone();
    let live = match client.get_pipeline(&pipeline_id).await {
        Ok(p) => match p.live_version {
            Some(v) => Some(client.get_config(&pipeline_id, v).await?),
            None => None,
        },
        Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => None,
        Err(e) => return Err(e.into()),
    };
    let registered = client.register_config(config.clone()).await?;
    let version = registered.config.version;
    if registered.created {
        eprintln!("registered pipeline '{pipeline_id}' version {version}");
    } else {
        eprintln!("pipeline '{pipeline_id}' is unchanged: identical to version {version}");
    }
    match &live {
        Some(live) if live.version != version => {
            let changes = describe_changes(&live.config, &config);
            eprintln!("changes against live version {}:", live.version);
            for change in &changes {
                eprintln!("  {change}");
            }
        }
        None => eprintln!("first version of '{pipeline_id}': {} task(s)", config.tasks.len()),
        Some(_) => {}
    }
    let result = if args.no_deploy {
        eprintln!("not deployed (--no-deploy); deploy later through the API");
        registered.config
    } else if live.as_ref().is_some_and(|l| l.version == version) {
        eprintln!("version {version} is already live");
        registered.config
    } else {
        let deployed = client.deploy_config(&pipeline_id, version).await?;
        eprintln!("version {version} is live; start a run with `gofer run start {pipeline_id}`");
        deployed
    };
    match format {
        Format::Json => output::json(&result),
        Format::Table => output::fields(&[
            ("pipeline", result.pipeline_id.clone()),
            ("version", result.version.to_string()),
            ("state", result.state.to_string()),
        ]),
    }
}

async fn pipeline(client: &Client, format: Format, command: PipelineCommand) -> anyhow::Result<()> {
    let shown = match command {
        PipelineCommand::List => {
            let list = client.list_pipelines().await?;
            if format == Format::Json {
                return output::json(&list.pipelines);
            }
            let rows: Vec<Vec<String>> = list
                .pipelines
                .iter()
                .map(|p| {
                    vec![
                        p.pipeline_id.clone(),
                        p.name.clone(),
                        p.state.to_string(),
                        p.live_version.map_or("-".into(), |v| v.to_string()),
                        ago(p.created),
                    ]
                })
                .collect();
            return output::table(&["ID", "NAME", "STATE", "LIVE VERSION", "CREATED"], &rows);
        }
        PipelineCommand::Get { pipeline } => client.get_pipeline(&pipeline).await?,
        PipelineCommand::Enable { pipeline } => client.set_pipeline_state(&pipeline, PipelineState::Active).await?,
        PipelineCommand::Disable { pipeline } => client.set_pipeline_state(&pipeline, PipelineState::Disabled).await?,
        PipelineCommand::Delete { pipeline } => {
            client.delete_pipeline(&pipeline).await?;
            eprintln!("deleted pipeline '{pipeline}'");
            return Ok(());
        }
        PipelineCommand::Deploy(args) => return deploy(client, format, &args).await,
        PipelineCommand::Subscribe { pipeline, extension, label, settings } => {
            let request = gofer_api::requests::SubscribeRequest {
                extension_id: extension,
                label,
                settings: settings.into_iter().collect(),
            };
            let subscription = client.subscribe(&pipeline, &request).await?;
            eprintln!(
                "subscribed '{pipeline}' to extension '{}' as '{}'",
                subscription.extension_id, subscription.label
            );
            return match format {
                Format::Json => output::json(&subscription),
                Format::Table => output::table(&SUBSCRIPTION_HEADER, &subscription_rows(&[subscription])),
            };
        }
        PipelineCommand::Unsubscribe { pipeline, extension, label } => {
            client.unsubscribe(&pipeline, &extension, &label).await?;
            eprintln!("unsubscribed '{pipeline}' from extension '{extension}' ('{label}')");
            return Ok(());
        }
        PipelineCommand::Object(command) => return pipeline_object(client, format, command).await,
        PipelineCommand::Subscriptions { pipeline } => {
            let list = client.list_subscriptions(&pipeline).await?;
            return match format {
                Format::Json => output::json(&list.subscriptions),
                Format::Table => output::table(&SUBSCRIPTION_HEADER, &subscription_rows(&list.subscriptions)),
            };
        }
    };
    match format {
        Format::Json => output::json(&shown),
        Format::Table => output::fields(&[
            ("pipeline", shown.pipeline_id.clone()),
            ("name", shown.name.clone()),
            ("description", shown.description.clone().unwrap_or_default()),
            ("state", shown.state.to_string()),
            ("live version", shown.live_version.map_or("none".into(), |v| v.to_string())),
            ("latest version", shown.latest_version.to_string()),
            ("created", ago(shown.created)),
        ]),
    }
}

const SUBSCRIPTION_HEADER: [&str; 5] = ["EXTENSION", "LABEL", "SETTINGS", "STATE", "LAST FIRED"];

fn subscription_rows(subscriptions: &[gofer_api::models::Subscription]) -> Vec<Vec<String>> {
    subscriptions
        .iter()
        .map(|s| {
            let settings: Vec<String> = s.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
            vec![
                s.extension_id.clone(),
                s.label.clone(),
                settings.join(" "),
                if s.enabled { "enabled" } else { "disabled" }.into(),
                ago(s.last_fired),
            ]
        })
        .collect()
}

fn run_fields(run: &Run) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("pipeline", run.pipeline_id.clone()),
        ("run", run.run_id.to_string()),
        ("version", run.version.to_string()),
        ("state", run.state.to_string()),
        ("status", run.status.to_string()),
        ("started", ago(run.started)),
        ("took", took(run.started, run.ended)),
    ];
    if let Some(reason) = &run.status_reason {
        fields.push(("reason", format!("{}: {}", reason.reason, reason.description)));
    }
    fields
}

fn task_rows(tasks: &[TaskExecution]) -> Vec<Vec<String>> {
    tasks
        .iter()
        .map(|t| {
            vec![
                t.task_id.clone(),
                t.state.to_string(),
                t.status.to_string(),
                t.exit_code.map_or("-".into(), |c| c.to_string()),
                took(t.started, t.ended),
                t.status_reason.as_ref().map_or(String::new(), |r| format!("{}: {}", r.reason, r.description)),
            ]
        })
        .collect()
}

const TASK_HEADER: [&str; 6] = ["TASK", "STATE", "STATUS", "EXIT", "TOOK", "REASON"];

async fn run_command(client: &Client, format: Format, command: RunCommand) -> anyhow::Result<()> {
    match command {
        RunCommand::Start { pipeline, variables } => {
            let run = client.start_run(&pipeline, variables.into_iter().collect::<BTreeMap<_, _>>()).await?;
            match format {
                Format::Json => output::json(&run),
                Format::Table => {
                    output::fields(&run_fields(&run))?;
                    eprintln!("follow it with `gofer run get {pipeline} {} --follow`", run.run_id);
                    Ok(())
                }
            }
        }
        RunCommand::List { pipeline, limit, offset } => {
            let list = client.list_runs(&pipeline, limit, offset).await?;
            if format == Format::Json {
                return output::json(&list.runs);
            }
            let rows: Vec<Vec<String>> = list
                .runs
                .iter()
                .map(|r| {
                    vec![
                        r.run_id.to_string(),
                        r.state.to_string(),
                        r.status.to_string(),
                        ago(r.created),
                        took(r.started, r.ended),
                        r.version.to_string(),
                    ]
                })
                .collect();
            output::table(&["RUN", "STATE", "STATUS", "CREATED", "TOOK", "VERSION"], &rows)?;
            if let Some(next) = list.next_offset {
                eprintln!("more runs: --offset {next}");
            }
            Ok(())
        }
        RunCommand::Get { pipeline, run, follow, timeline: true } => {
            if follow {
                follow_run(client, &pipeline, run, Format::Json).await?;
            }
            timeline(client, &pipeline, run, format).await
        }
        RunCommand::Get { pipeline, run, follow, timeline: false } => {
            if follow {
                follow_run(client, &pipeline, run, format).await?;
            }
            let shown = client.get_run(&pipeline, run).await?;
            let tasks = client.list_tasks(&pipeline, run).await?.task_executions;
            match format {
                Format::Json => output::json(&shown),
                Format::Table => {
                    output::fields(&run_fields(&shown))?;
                    println!();
                    output::table(&TASK_HEADER, &task_rows(&tasks))
                }
            }
        }
        RunCommand::Object(command) => run_object(client, format, command).await,
        RunCommand::Cancel { pipeline, run } => {
            let cancelled = client.cancel_run(&pipeline, run).await?;
            eprintln!("cancelling run {run} of '{pipeline}'");
            match format {
                Format::Json => output::json(&cancelled),
                Format::Table => output::fields(&run_fields(&cancelled)),
            }
        }
    }
}

/// Prints each task's state changes and its log lines, prefixed with the task id, until the run completes.
async fn follow_run(client: &Client, pipeline: &str, run: u64, format: Format) -> anyhow::Result<()> {
    let mut seen: HashMap<String, (TaskState, String)> = HashMap::new();
    let mut followers = tokio::task::JoinSet::new();
    let mut following: HashSet<String> = HashSet::new();
    let show = format == Format::Table;
    loop {
        let current = client.get_run(pipeline, run).await?;
        let tasks = client.list_tasks(pipeline, run).await?.task_executions;
        for task in &tasks {
            let state = (task.state, task.status.to_string());
            if seen.get(&task.task_id) != Some(&state) {
                if show {
                    let detail = if task.state == TaskState::Complete {
                        let exit = task.exit_code.map_or(String::new(), |c| format!(" (exit {c})"));
                        format!("{}{exit}", task.status)
                    } else {
                        task.state.to_string()
                    };
                    eprintln!("[{}] {detail}", task.task_id);
                }
                seen.insert(task.task_id.clone(), state);
            }
            let started = matches!(task.state, TaskState::Running | TaskState::Complete) && task.started > 0;
            if show && started && following.insert(task.task_id.clone()) {
                let (client, pipeline, id) = (client.clone(), pipeline.to_string(), task.task_id.clone());
                followers.spawn(async move { print_prefixed_logs(&client, &pipeline, run, &id).await });
            }
        }
        if current.is_complete() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while let Some(result) = followers.join_next().await {
        if let Ok(Err(e)) = result {
            eprintln!("warning: could not follow a task's logs: {e}");
        }
    }
    Ok(())
}

async fn print_prefixed_logs(client: &Client, pipeline: &str, run: u64, task: &str) -> anyhow::Result<()> {
    let mut stream = client.task_logs(pipeline, run, task, None, true).await?;
    let mut pending: Vec<u8> = Vec::new();
    let emit = |line: &[u8]| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{task} | {}", String::from_utf8_lossy(line).trim_end_matches('\r'));
    };
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            emit(&pending[..pos]);
            pending.drain(..=pos);
        }
    }
    if !pending.is_empty() {
        emit(&pending);
    }
    Ok(())
}

async fn task(client: &Client, format: Format, command: TaskCommand) -> anyhow::Result<()> {
    match command {
        TaskCommand::List { pipeline, run } => {
            let tasks = client.list_tasks(&pipeline, run).await?.task_executions;
            match format {
                Format::Json => output::json(&tasks),
                Format::Table => output::table(&TASK_HEADER, &task_rows(&tasks)),
            }
        }
        TaskCommand::Get { pipeline, run, task } => {
            let t = client.get_task(&pipeline, run, &task).await?;
            if format == Format::Json {
                return output::json(&t);
            }
            let mut fields = vec![
                ("task", t.task_id.clone()),
                ("image", t.task.image.clone()),
                ("image digest", t.image_digest.clone().unwrap_or_else(|| "-".into())),
                ("state", t.state.to_string()),
                ("status", t.status.to_string()),
                ("exit code", t.exit_code.map_or("-".into(), |c| c.to_string())),
                ("started", ago(t.started)),
                ("took", took(t.started, t.ended)),
            ];
            if let Some(reason) = &t.status_reason {
                fields.push(("reason", format!("{}: {}", reason.reason, reason.description)));
            }
            for (parent, needs) in &t.task.depends_on {
                fields.push(("depends on", format!("{parent} ({needs:?})")));
            }
            for variable in &t.variables {
                fields.push(("variable", format!("{}={} ({})", variable.key, variable.value, variable.source)));
            }
            output::fields(&fields)
        }
        TaskCommand::Cancel { pipeline, run, task } => {
            let cancelled = client.cancel_task(&pipeline, run, &task).await?;
            eprintln!("cancelling task '{task}' of run {run}");
            match format {
                Format::Json => output::json(&cancelled),
                Format::Table => output::table(&TASK_HEADER, &task_rows(&[cancelled])),
            }
        }
        TaskCommand::Logs { pipeline, run, task, follow, attempt } => {
            let mut stream = client.task_logs(&pipeline, run, &task, attempt, follow).await?;
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk?)?;
                out.flush()?;
            }
            Ok(())
        }
    }
}
