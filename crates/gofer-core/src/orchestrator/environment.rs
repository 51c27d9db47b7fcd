//! A task's environment: Gofer's variables, the config's and the run's, with references to secrets and objects
//! read right before the container starts, a masker for the secret values, and the run token.

use std::collections::BTreeMap;

use gofer_api::config::Task;
use gofer_api::epoch_millis;
use gofer_api::models::{Run, TaskExecution, Variable, VariableSource};
use gofer_api::permissions::Token;
use gofer_scheduler::RegistryAuth;

use crate::error::Result;
use crate::mask::Masker;
use crate::objects::ObjectScope;
use crate::secrets::{self, Reference, Unavailable};
use crate::tokens;

use super::{Inner, error_chain};

/// The largest object a variable can carry (Linux refuses longer environment strings).
const MAX_OBJECT_VARIABLE: usize = 128 * 1024 - 1;

/// A task's stored values, read right before its container starts.
pub(super) struct Resolved {
    pub(super) env: Vec<(String, String)>,
    /// Replaces the secret values among them in the task's output.
    pub(super) masker: Masker,
    pub(super) registry_auth: Option<RegistryAuth>,
}

impl Inner {
    /// The container's environment with references to stored values replaced by the values, right before the
    /// container starts, and a masker for the secret values among them. A reference that cannot be resolved is the
    /// task's failed precondition; the message names the variable and the key, never a value.
    /// With `starting`, a task that asked for it gets `GOFER_TOKEN`, a new token for this attempt (masked too).
    pub(super) async fn resolve_variables(
        &self,
        execution: &TaskExecution,
        starting: bool,
    ) -> Result<Resolved, String> {
        let (ns, pipeline) = (&execution.namespace_id, &execution.pipeline_id);
        let mut env = Vec::with_capacity(execution.variables.len());
        let mut secret_values = Vec::new();
        for variable in &execution.variables {
            let name = &variable.key;
            let Some(reference) = Reference::parse(&variable.value) else {
                env.push((name.clone(), variable.value.clone()));
                continue;
            };
            if let Reference::PipelineObject(key) | Reference::RunObject(key) = reference {
                let scope = match reference {
                    Reference::RunObject(_) => ObjectScope::Run {
                        namespace_id: ns.clone(),
                        pipeline_id: pipeline.clone(),
                        run_id: execution.run_id,
                    },
                    _ => ObjectScope::Pipeline { namespace_id: ns.clone(), pipeline_id: pipeline.clone() },
                };
                env.push((name.clone(), self.object_variable(name, &scope, key).await?));
                continue;
            }
            let value = self.secret_value(execution, &format!("variable {name}"), reference).await?;
            secret_values.push(value.clone().into_bytes());
            env.push((name.clone(), value));
        }
        let registry_auth = match &execution.task.registry_auth {
            None => None,
            Some(auth) => {
                let what = "registry_auth.pass";
                let pass = match (secrets::sealed_registry_key(&auth.pass), Reference::parse(&auth.pass)) {
                    (Some(key), _) => match self.secrets.for_pipeline(ns, pipeline, &key).await {
                        Ok(Ok(pass)) => pass,
                        Ok(Err(_)) => return Err(format!("{what}: the sealed password of this config is gone")),
                        Err(e) => return Err(format!("{what}: could not read the password: {}", error_chain(&e))),
                    },
                    (None, Some(reference)) => self.secret_value(execution, what, reference).await?,
                    (None, None) => auth.pass.clone(),
                };
                Some(RegistryAuth { user: auth.user.clone(), pass })
            }
        };
        if starting && execution.task.inject_api_token {
            let token = self.run_token(execution).await?;
            secret_values.push(token.clone().into_bytes());
            env.retain(|(name, _)| name != "GOFER_TOKEN");
            env.push(("GOFER_TOKEN".into(), token));
        }
        Ok(Resolved { env, masker: Masker::new(secret_values), registry_auth })
    }

    /// The value of a secret `reference` in `what` (a variable, the registry password) of a task; the message says
    /// what is missing or forbidden and how to fix it.
    pub(super) async fn secret_value(
        &self,
        execution: &TaskExecution,
        what: &str,
        reference: Reference<'_>,
    ) -> Result<String, String> {
        let (ns, pipeline) = (&execution.namespace_id, &execution.pipeline_id);
        let secrets = &self.secrets;
        let found = match reference {
            Reference::PipelineSecret(key) => secrets.for_pipeline(ns, pipeline, key).await.map(|found| {
                found.map_err(|_| {
                    format!(
                        "{what}: pipeline secret '{key}' does not exist; add it with `gofer secret pipeline put \
                         {pipeline} {key} <value>`"
                    )
                })
            }),
            Reference::GlobalSecret(key) => secrets.for_namespace(ns, key).await.map(|found| {
                found.map_err(|why| match why {
                    Unavailable::Missing => format!(
                        "{what}: global secret '{key}' does not exist; add it with `gofer secret global put {key} \
                         <value> --namespaces <patterns>`"
                    ),
                    Unavailable::NotAllowed => format!(
                        "{what}: global secret '{key}' may not be used in namespace '{ns}' (none of its namespace \
                         patterns matches)"
                    ),
                })
            }),
            Reference::PipelineObject(key) | Reference::RunObject(key) => {
                return Err(format!("{what}: object '{key}' is not a secret"));
            }
        };
        match found {
            Ok(found) => found,
            Err(e) => Err(format!("{what}: could not read the secret: {}", error_chain(&e))),
        }
    }

    /// A token for one task attempt of a run: its secret goes only into the container; storage keeps the hash.
    /// All tokens of a run are deleted when the run's objects expire.
    pub(super) async fn run_token(&self, execution: &TaskExecution) -> Result<String, String> {
        let secret = tokens::new_secret()?;
        let user = tokens::run_token_user(&execution.namespace_id, &execution.pipeline_id, execution.run_id);
        let token = Token {
            id: format!("{user}/{}/{}", execution.task_id, execution.attempt),
            hash: tokens::token_hash(&secret),
            user,
            roles: vec![tokens::RUN_TOKEN_ROLE.into()],
            created: epoch_millis(),
            // Revoked when the run ends; in any case no run outlives the longest timeout, nor does its token.
            expires: epoch_millis().saturating_add(self.options.max_timeout.as_millis() as u64),
            disabled: false,
            metadata: Default::default(),
        };
        self.storage.put_token(&token).await.map_err(|e| format!("could not make the task's GOFER_TOKEN: {e}"))?;
        Ok(secret)
    }

    /// An object's bytes as a variable's value (UTF-8 text, small enough for an environment variable).
    pub(super) async fn object_variable(&self, name: &str, scope: &ObjectScope, key: &str) -> Result<String, String> {
        match self.objects.read_small(scope, key, MAX_OBJECT_VARIABLE).await {
            Ok(Some(bytes)) => String::from_utf8(bytes.to_vec()).map_err(|_| {
                format!("variable {name}: object '{key}' of {scope} is not UTF-8 text, which a variable must be")
            }),
            Ok(None) => Err(format!("variable {name}: object '{key}' of {scope} does not exist")),
            Err(e) => Err(format!("variable {name}: {}", error_chain(&e))),
        }
    }
}

/// The environment of a task's container: Gofer's own variables, overridden by the task's config variables,
/// overridden by the run's variables.
pub fn task_variables(run: &Run, task: &Task, api_base_url: &str) -> Vec<Variable> {
    let system = [
        ("GOFER_NAMESPACE_ID", run.namespace_id.clone()),
        ("GOFER_PIPELINE_ID", run.pipeline_id.clone()),
        ("GOFER_PIPELINE_VERSION", run.version.to_string()),
        ("GOFER_RUN_ID", run.run_id.to_string()),
        ("GOFER_TASK_ID", task.id.clone()),
        ("GOFER_TASK_IMAGE", task.image.clone()),
        ("GOFER_API_BASE_URL", api_base_url.to_string()),
    ];
    let mut merged: BTreeMap<String, Variable> = BTreeMap::new();
    let layers = system
        .into_iter()
        .map(|(k, v)| (k.to_string(), v, VariableSource::System))
        .chain(task.variables.iter().map(|(k, v)| (k.clone(), v.clone(), VariableSource::PipelineConfig)))
        .chain(run.variables.iter().map(|v| (v.key.clone(), v.value.clone(), v.source)));
    for (key, value, source) in layers {
        merged.insert(key.clone(), Variable { key, value, source });
    }
    merged.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use gofer_api::config::Task;
    use gofer_api::models::{Initiator, Run, RunState, RunStatus, Variable, VariableSource};

    use super::task_variables;

    #[test]
    fn variables_layer_system_then_config_then_run() {
        let run = Run {
            namespace_id: "ns".into(),
            pipeline_id: "p".into(),
            run_id: 4,
            version: 1,
            state: RunState::Pending,
            status: RunStatus::Unknown,
            status_reason: None,
            created: 0,
            started: 0,
            ended: 0,
            initiator: Initiator { kind: "user".into(), name: "u".into() },
            variables: vec![Variable { key: "B".into(), value: "run".into(), source: VariableSource::RunOptions }],
            routing: None,
        };
        let task = Task::new("t", "img").variables([("A", "config"), ("B", "config"), ("GOFER_RUN_ID", "override")]);
        let vars: BTreeMap<String, (String, VariableSource)> =
            task_variables(&run, &task, "http://gofer").into_iter().map(|v| (v.key, (v.value, v.source))).collect();
        assert_eq!(vars["GOFER_NAMESPACE_ID"], ("ns".into(), VariableSource::System));
        assert_eq!(vars["GOFER_TASK_IMAGE"], ("img".into(), VariableSource::System));
        assert_eq!(vars["GOFER_API_BASE_URL"], ("http://gofer".into(), VariableSource::System));
        assert_eq!(vars["GOFER_RUN_ID"], ("override".into(), VariableSource::PipelineConfig));
        assert_eq!(vars["A"], ("config".into(), VariableSource::PipelineConfig));
        assert_eq!(vars["B"], ("run".into(), VariableSource::RunOptions));
    }
}
