//! Tending a watch's running instances on every pass: gathering the results of open runs,
//! and stopping what the stop rules say is done.

use std::time::Duration;

use aws_config::SdkConfig;

use super::Agent;
use crate::cloudwatch::CloudWatch;
use crate::config::Watch;
use crate::launch::{self, Members};
use crate::state::State;
use crate::{reap, report, results, tags};

impl Agent {
    fn cloudwatch(&self, config: &SdkConfig) -> anyhow::Result<&CloudWatch> {
        if let Some(cw) = self.cloudwatch.get() {
            return Ok(cw);
        }
        let cw = CloudWatch::new(config, self.options.retry)?;
        Ok(self.cloudwatch.get_or_init(|| cw))
    }

    /// The instances of `watch` the stop rules say to stop; `reported` are those done.
    pub(super) async fn due(
        &self,
        watch: &Watch,
        members: &Members,
        reported: &[String],
    ) -> anyhow::Result<Vec<reap::Due>> {
        let cloudwatch = match &watch.idle_stop {
            Some(_) => Some(self.cloudwatch(self.aws().await)?),
            None => None,
        };
        reap::due(members, cloudwatch, watch, reported, chrono::Utc::now()).await
    }

    /// Gathers the results of the watch's open runs, stops what the rules say is done, and
    /// posts a verdict for each run that completed.
    pub(super) async fn tend(&self, state: &mut State, watch: &Watch) -> anyhow::Result<()> {
        let ec2 = self.ec2().await;
        let members = launch::members(ec2, watch).await?;
        let mut verdicts = Vec::new();
        let mut reported = Vec::new();
        if let Some(results) = &watch.results {
            let runs = &mut state.entry(watch).runs;
            let harvest = results::harvest(runs, &members, results, chrono::Utc::now());
            if results.stop_when_reported {
                reported = harvest.reported;
            }
            for &i in &harvest.completed {
                verdicts.push(results::verdict(watch, results, runs, i));
            }
            // Values and completions are recorded before anything is stopped or posted.
            self.store.save(state)?;
        }
        let due = self.due(watch, &members, &reported).await?;
        if !due.is_empty() {
            let ids: Vec<String> = due.iter().map(|d| d.id.clone()).collect();
            ec2.stop(&ids).await?;
            // Forget them: a later start by hand must not look like one of ours.
            ec2.untag(&ids, &[tags::STARTED_AT.to_owned()]).await?;
            for d in &due {
                tracing::info!(
                    "{watch}: stopped {} after {}: {}",
                    d.id,
                    humantime::format_duration(round(d.runtime)),
                    d.reason
                );
                self.post(&report::stopped(watch, &d.id, &d.reason, round(d.runtime)))
                    .await;
            }
        }
        for verdict in verdicts {
            tracing::info!("{watch}: {}", verdict.replace('\n', "; "));
            self.post(&verdict).await;
        }
        Ok(())
    }
}

/// Whether a pass must describe the watch's instances even with no push: for the stop
/// rules, or to gather the results of runs still open.
pub(super) fn needs_tending(watch: &Watch, state: &State) -> bool {
    let open_runs = || {
        state
            .get(watch)
            .is_some_and(|s| s.runs.iter().any(|r| r.completed_at.is_none()))
    };
    watch.stops() || (watch.results.is_some() && open_runs())
}

/// Whole seconds: a runtime to the nanosecond is noise in a message.
fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}
