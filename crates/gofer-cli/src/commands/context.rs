//! `gofer context`: which server, namespace and token this client uses.

use crate::client::Client;
use crate::output::{self, Format, View};

pub(super) async fn command(client: &Client, settings: &crate::Settings, format: Format) -> anyhow::Result<()> {
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
    output::render(&View::Fields(fields))
}
