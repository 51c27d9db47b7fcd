//! What goes when a run ends: logs and run objects beyond the pipeline's retention, and the run tokens that
//! went with those objects.
use gofer_api::models::Run;

use crate::tokens;

use super::{Inner, error_chain};

impl Inner {
    /// The highest run id of `run`'s pipeline whose logs or objects may go when the last `keep` runs are kept:
    /// never a run still in flight, nor anything after one. None when nothing may go.
    pub(super) async fn retention_cutoff(&self, run: &Run, keep: u64) -> Option<u64> {
        if keep == 0 || run.run_id <= keep {
            return None;
        }
        let mut cutoff = run.run_id - keep;
        match self.storage.list_unfinished_runs().await {
            Ok(unfinished) => {
                for other in unfinished {
                    if other.namespace_id == run.namespace_id && other.pipeline_id == run.pipeline_id {
                        cutoff = cutoff.min(other.run_id.saturating_sub(1));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not apply retention");
                return None;
            }
        }
        (cutoff > 0).then_some(cutoff)
    }

    /// Removes the logs and run objects of runs beyond the pipeline's retention.
    pub(super) async fn expire_logs(&self, run: &Run) {
        if let Some(cutoff) = self.retention_cutoff(run, self.options.log_retention_runs).await {
            match self.storage.expire_logs(&run.namespace_id, &run.pipeline_id, cutoff).await {
                Ok(runs) => {
                    for run_id in runs {
                        if let Err(e) = self.logs.remove_run(&run.namespace_id, &run.pipeline_id, run_id).await {
                            tracing::warn!(run = run_id, error = %e, "could not remove expired logs");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not apply log retention"),
            }
        }
        if let Some(cutoff) = self.retention_cutoff(run, self.objects.limits().run_objects_runs).await {
            match self.objects.expire_runs(&run.namespace_id, &run.pipeline_id, cutoff).await {
                Ok(_) => self.revoke_run_tokens(run, cutoff).await,
                Err(e) => tracing::warn!(error = %error_chain(&e), "could not remove expired run objects"),
            }
        }
    }

    /// Deletes the task tokens of the pipeline's runs up to `cutoff`: they go with the objects they were for.
    pub(super) async fn revoke_run_tokens(&self, run: &Run, cutoff: u64) {
        let prefix = tokens::run_token_prefix(&run.namespace_id, &run.pipeline_id);
        let holders = match self.storage.token_users(&prefix).await {
            Ok(holders) => holders,
            Err(e) => return tracing::warn!(error = %e, "could not list run tokens"),
        };
        for user in holders {
            let expired =
                user.strip_prefix(&prefix).and_then(|id| id.parse::<u64>().ok()).is_some_and(|id| id <= cutoff);
            if expired && let Err(e) = self.storage.delete_tokens_of_user(&user).await {
                tracing::warn!(error = %e, "could not revoke a run's tokens");
            }
        }
    }
}
