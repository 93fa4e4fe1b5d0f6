//! A watch's turn in a pass: one describe of its instances, then the results of its runs,
//! its stop rules, and its runs reconciled against what EC2 described.

use std::time::Duration;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};

use super::Agent;
use super::runs::Reconciled;
use crate::cloudwatch::CloudWatch;
use crate::config::Watch;
use crate::ec2::{Ec2, State as Ec2State};
use crate::github::Commit;
use crate::launch::{self, Members};
use crate::report::{self, short};
use crate::state::{Kind, Part, Run, State};
use crate::{reap, results, tags};

/// What a watch's turn did.
#[derive(Debug, Default)]
pub(super) struct Turn {
    /// The new head was recorded as handled.
    pub recorded: bool,
    /// Some instance could not be started, confirmed or stopped this pass.
    pub failed: bool,
    /// What makes the watch failing this pass, reported once per streak.
    pub error: Option<String>,
    /// What to tell Slack, once the pass is done.
    pub messages: Vec<String>,
}

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
        reap::due(members, cloudwatch, watch, reported, Utc::now()).await
    }

    /// The watch's turn. `head` is a new head to record once its run is under way, and
    /// `opened` the details of its commit when its run opened in this pass.
    pub(super) async fn turn(
        &self,
        state: &mut State,
        watch: &Watch,
        head: Option<(String, Option<String>)>,
        opened: Option<Commit>,
    ) -> anyhow::Result<Turn> {
        let ec2 = self.ec2().await;
        let mut members = launch::members(ec2, watch).await?;
        let now = Utc::now();
        let mut turn = Turn::default();
        let before: Vec<(String, Vec<(String, Kind)>)> = state
            .get(watch)
            .map(|s| s.runs.iter().filter(|r| r.is_open()))
            .into_iter()
            .flatten()
            .map(|r| (r.commit.clone(), r.shape()))
            .collect();

        let mut reconciled = Reconciled::default();
        let entry = state.entry(watch);
        self.observe(ec2, watch, entry, &mut members, now, &mut reconciled)
            .await;
        let mut verdicts = Vec::new();
        let mut reported = Vec::new();
        if let Some(results) = &watch.results {
            let runs = &mut state.entry(watch).runs;
            let harvest = results::harvest(runs, &members, results, now);
            if results.stop_when_reported {
                reported = harvest.reported;
            }
            for &i in &harvest.completed {
                verdicts.push(results::verdict(watch, results, runs, i));
            }
            // Values and completions are recorded before anything is stopped or posted.
            self.store.save(state)?;
        }

        // Stops come before starts, so that a push in the same pass finds its machines
        // stopping and starts them for the new commit.
        let due = self.due(watch, &members, &reported).await?;
        let refused = self
            .stop_due(ec2, watch, &due, &mut members, &mut turn)
            .await;
        if !refused.is_empty() {
            turn.failed = true;
            turn.error = Some(refused.join("; "));
        }

        let entry = state.entry(watch);
        self.reconcile(ec2, watch, entry, &mut members, now, &mut reconciled)
            .await;
        turn.failed |= reconciled.failed;

        // The head is handled once every instance its run can use started or waits for it.
        if let Some((sha, etag)) = head {
            let failing = entry.runs.iter().any(|r| {
                r.commit == sha
                    && r.instances
                        .values()
                        .any(|p| matches!(p, Part::Failed { .. }))
            });
            if !failing {
                entry.record(sha, etag);
                turn.recorded = true;
            }
        }

        for run in entry.runs.iter().filter(|r| changed_now(r, now)) {
            let first = opened.as_ref().filter(|c| c.sha == run.commit);
            let news = reconciled.news(&run.commit);
            let old = before.iter().find(|(c, _)| *c == run.commit).map(|b| &b.1);
            if first.is_none() && news.is_empty() && old == Some(&run.shape()) {
                continue;
            }
            let parts = report::parts(run).replace('\n', "; ");
            match first {
                Some(c) => tracing::info!(
                    "{watch}: new head {} \"{}\": {parts}",
                    short(&c.sha),
                    c.title
                ),
                None => tracing::info!("{watch}: run of {}: {parts}", short(&run.commit)),
            }
            turn.messages.push(report::run(watch, run, first, news));
        }
        for verdict in verdicts {
            tracing::info!("{watch}: {}", verdict.replace('\n', "; "));
            turn.messages.push(verdict);
        }
        Ok(turn)
    }

    /// Stops the instances due, forgets that pushwake started them, and marks them stopping
    /// in `members`. Returns what EC2 refused, one line per instance.
    async fn stop_due(
        &self,
        ec2: &Ec2,
        watch: &Watch,
        due: &[reap::Due],
        members: &mut Members,
        turn: &mut Turn,
    ) -> Vec<String> {
        if due.is_empty() {
            return Vec::new();
        }
        let ids: Vec<String> = due.iter().map(|d| d.id.clone()).collect();
        let refused = launch::stop(ec2, &ids).await;
        let mut errors = Vec::new();
        let mut stopped = Vec::new();
        for d in due {
            if let Some((_, e)) = refused.iter().find(|(id, _)| *id == d.id) {
                tracing::error!("{watch}: cannot stop {} ({}): {e}", d.id, d.reason);
                errors.push(format!("cannot stop {} ({}): {e}", d.id, d.reason));
                continue;
            }
            let runtime = round(d.runtime);
            tracing::info!(
                "{watch}: stopped {} after {}: {}",
                d.id,
                humantime::format_duration(runtime),
                d.reason
            );
            turn.messages
                .push(report::stopped(watch, &d.id, &d.reason, runtime));
            if let Some(i) = members.described.iter_mut().find(|i| i.id == d.id) {
                i.state = Ec2State::Stopping;
            }
            stopped.push(d.id.clone());
        }
        // Forget them: a later start by hand must not look like one of ours.
        if let Err(e) = ec2.untag(&stopped, &[tags::STARTED_AT.to_owned()]).await {
            tracing::warn!("{watch}: cannot remove {}: {e}", tags::STARTED_AT);
        }
        errors
    }
}

/// Whether a run may have news: it is open, or closed by this pass (not as superseded or
/// replaced, which the newer run's message tells).
fn changed_now(run: &Run, now: DateTime<Utc>) -> bool {
    run.is_open() || (run.completed_at == Some(now) && run.superseded_by.is_none())
}

/// Whether a pass must describe the watch's instances even with no push: for the stop
/// rules, or for runs still open.
pub(super) fn needs_turn(watch: &Watch, state: &State) -> bool {
    watch.stops()
        || state
            .get(watch)
            .is_some_and(|s| s.runs.iter().any(Run::is_open))
}

/// Whole seconds: a runtime to the nanosecond is noise in a message.
fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}
