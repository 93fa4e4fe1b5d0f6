//! What a pass tells Slack, and when: failing streaks once, owed verdicts until taken, and
//! never more than a few seconds of waiting on Slack in all.

use std::time::Duration;

use tokio::time::Instant;

use super::Agent;
use crate::github::CommitStatus;
use crate::report::short;
use crate::state::{Duty, State, WatchState};

/// How long a pass waits on Slack, all its messages together.
pub(super) const SLACK_BUDGET: Duration = Duration::from_secs(5);

impl Agent {
    /// Posts the messages in order, until `budget`; the rest are only logged.
    pub(super) async fn post_all(&self, messages: Vec<String>, budget: Instant) {
        for (n, message) in messages.iter().enumerate() {
            if tokio::time::timeout_at(budget, self.post(message))
                .await
                .is_err()
            {
                tracing::warn!(
                    "Slack took too long; {} message(s) not posted",
                    messages.len() - n
                );
                return;
            }
        }
    }

    /// Posts the messages owed (verdicts); each is done once Slack took it, and kept for
    /// the next pass otherwise.
    pub(super) async fn post_duties(
        &self,
        state: &mut State,
        budget: Instant,
    ) -> anyhow::Result<()> {
        let mut changed = false;
        for entry in &mut state.watches {
            let mut kept = Vec::with_capacity(entry.duties.len());
            for duty in std::mem::take(&mut entry.duties) {
                let posted = match &duty {
                    Duty::Post { text } => {
                        let post = tokio::time::timeout_at(budget, self.post(text));
                        post.await.unwrap_or(false)
                    }
                    Duty::Status { commit, status } => {
                        let set = self.set_status(&entry.repo, commit, status);
                        tokio::time::timeout_at(budget, set).await.unwrap_or(false)
                    }
                    Duty::Stop { .. } => false,
                };
                if posted {
                    changed = true;
                } else {
                    kept.push(duty);
                }
            }
            entry.duties = kept;
        }
        if changed {
            self.store.save(state).await?;
        }
        Ok(())
    }

    /// Sets a commit status on the repository `repo` names; returns whether GitHub took
    /// it (or no watch names the repository any more).
    async fn set_status(&self, repo: &str, commit: &str, status: &CommitStatus) -> bool {
        let Some(watch) = self
            .settings
            .watches
            .iter()
            .find(|w| w.repo.to_string() == repo)
        else {
            return true;
        };
        match self.github.set_status(&watch.repo, commit, status).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot set the commit status of {}: {e}", short(commit));
                false
            }
        }
    }

    /// Posts to Slack, if configured; returns whether the message was delivered (or there
    /// is no Slack to deliver it to).
    pub(super) async fn post(&self, message: &str) -> bool {
        let Some(slack) = &self.slack else {
            return true;
        };
        match slack.post(message).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot post to Slack: {e}");
                false
            }
        }
    }
}

/// Records a failure; returns whether it starts a failing streak, so that a watch that
/// keeps failing is reported once, not every pass.
pub(super) fn fail(entry: &mut WatchState, error: &str) -> bool {
    entry.last_error.replace(error.to_owned()).is_none()
}

/// Clears a failure; returns whether there was one.
pub(super) fn recover(entry: &mut WatchState) -> bool {
    entry.last_error.take().is_some()
}
