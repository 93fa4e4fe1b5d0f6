//! A watch's turn in a pass: one describe of its instances, then its runs' starts
//! confirmed, their results judged, its stop rules and duties carried out, and its runs
//! reconciled against what EC2 described.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Agent;
use super::notify::{Message, Role};
use super::runs::Reconciler;
use crate::aws::Clients;
use crate::config::Watch;
use crate::ec2::{Ec2, InstanceState};
use crate::github::Commit;
use crate::launch::{self, Members};
use crate::report::{self, short};
use crate::state::{Duty, Kind, Part, Run, State, WatchState};
use crate::{reap, results, tags};

/// An open run as a turn first saw it: its shape, and how many values it had.
type Seen = (Vec<(String, Kind)>, usize);

/// What a watch's turn did.
#[derive(Debug, Default)]
pub(super) struct Turn {
    /// The new head was recorded as handled.
    pub recorded: bool,
    /// Some instance could not be started, confirmed, judged or stopped this pass.
    pub failed: bool,
    /// What makes the watch failing this pass, reported once per streak.
    pub error: Option<String>,
    /// What to tell Slack, once the pass is done.
    pub messages: Vec<Message>,
}

impl Agent {
    /// What the stop rules say of the instances of `watch`, reached with `clients`;
    /// `reported` are those done.
    pub(super) async fn due(
        &self,
        clients: &Clients,
        watch: &Watch,
        members: &Members,
        reported: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<reap::Judged> {
        let cloudwatch = match &watch.idle_stop {
            Some(_) => Some(clients.cloudwatch()?),
            None => None,
        };
        let judged = reap::due(members, cloudwatch, watch, &self.owner, reported, now);
        Ok(judged.await)
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
        let clients = self.clients(&watch.target).await?;
        let ec2 = &clients.ec2;
        let mut members = launch::members(ec2, watch, &self.owner).await?;
        // How long a machine ran is EC2's business: its launch time against its clock.
        let now = ec2.now();
        let mut turn = Turn::default();
        let mut errors = Vec::new();
        // Each open run's shape and how many values it has, to tell what changed.
        let before: Vec<(String, Seen)> = state
            .get(watch)
            .map(|s| s.runs.iter().filter(|r| r.is_open()))
            .into_iter()
            .flatten()
            .map(|r| (r.commit.clone(), (r.shape(), r.reported())))
            .collect();
        // A bot's thread shows results arriving too; a webhook's channel hears only of
        // starts and stops.
        let threads = self.slack.as_ref().is_some_and(|s| s.threads());

        let mut reconciler = Reconciler::new(self, ec2, watch, now);
        let entry = state.entry(watch);
        reconciler.observe(entry, &mut members).await;

        // Verdicts and stops become duties, saved before anything is stopped or posted.
        let mut reported = Vec::new();
        if let Some(spec) = &watch.results {
            let harvest = results::harvest(&mut entry.runs, &members, spec, now);
            if spec.stop_when_reported {
                reported = harvest.reported;
            }
            for &i in &harvest.completed {
                let verdict = report::verdict(watch, spec, &entry.runs, i);
                tracing::info!("{watch}: {}", verdict.replace('\n', "; "));
                if self.slack.is_some() {
                    let commit = Some(entry.runs[i].commit.clone());
                    entry.duties.push(Duty::Post {
                        text: verdict,
                        commit,
                    });
                }
            }
        }
        let judged = self.due(&clients, watch, &members, &reported, now).await?;
        errors.extend(judged.errors);
        for d in judged.due {
            if !entry.duties.iter().any(|x| x.stops() == Some(&d.id)) {
                entry.duties.push(Duty::Stop {
                    instance: d.id,
                    reason: d.why.to_string(),
                    runtime: d.runtime.as_secs(),
                });
            }
        }
        self.store.save(state).await?;

        // Stops come before starts, so that a push in the same pass finds its machines
        // stopping and starts them for the new commit.
        let entry = state.entry(watch);
        if entry.duties.iter().any(|d| d.stops().is_some()) {
            self.store.fence().await?;
        }
        errors.extend(
            self.stop_duties(ec2, watch, entry, &mut members, &mut turn.messages)
                .await,
        );

        reconciler.reconcile(entry, &mut members).await?;
        turn.failed = reconciler.failed || !errors.is_empty();
        if !errors.is_empty() {
            turn.error = Some(errors.join("; "));
        }

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

        if self.settings.github.commit_status {
            let open_before: Vec<&String> = before.iter().map(|(c, _)| c).collect();
            statuses(watch, entry, &open_before, &self.status_context(watch));
        }

        for run in entry.runs.iter().filter(|r| changed_now(r, now)) {
            let first = opened.as_ref().filter(|c| c.sha == run.commit);
            let news = reconciler.news(&run.commit);
            let old = before.iter().find(|(c, _)| *c == run.commit).map(|b| &b.1);
            let same = old.is_some_and(|(shape, reported)| {
                *shape == run.shape() && (!threads || *reported == run.reported())
            });
            if first.is_none() && news.is_empty() && same {
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
            let whole = report::run(watch, run, first, news);
            // The first message of a run is its thread's parent; later ones update it in
            // place, their news a reply.
            let role = match &run.thread {
                None => Role::Progress {
                    parent: whole.clone(),
                    news: None,
                },
                Some(_) => Role::Progress {
                    parent: report::run(watch, run, first, &[]),
                    news: (!news.is_empty()).then(|| report::news(news)),
                },
            };
            turn.messages
                .push(Message::about(watch, &run.commit, role, whole));
        }
        Ok(turn)
    }

    /// The commit status context of `watch`'s runs: `pushwake`, or `pushwake/<branch>`
    /// when another watch shares its repository.
    fn status_context(&self, watch: &Watch) -> String {
        let shared = self
            .settings
            .watches
            .iter()
            .any(|w| w.repo == watch.repo && w.branch != watch.branch);
        match shared {
            true => format!("pushwake/{}", watch.branch),
            false => "pushwake".to_owned(),
        }
    }

    /// Carries out the watch's stop duties: stops the instances still up, forgets that
    /// pushwake started them, and marks them stopping in `members`. A duty is done once its
    /// instance is stopped, or found not running; each stop is told in `messages`. Returns
    /// what EC2 refused, one line per instance; those duties stay for the next pass.
    pub(super) async fn stop_duties(
        &self,
        ec2: &Ec2,
        watch: &Watch,
        entry: &mut WatchState,
        members: &mut Members,
        messages: &mut Vec<Message>,
    ) -> Vec<String> {
        let up = |id: &str| {
            members
                .get(id)
                .is_some_and(|i| matches!(i.state, InstanceState::Pending | InstanceState::Running))
        };
        // Stopped by someone else, terminated, or gone: nothing is owed any more.
        entry.duties.retain(|d| d.stops().is_none_or(up));
        let ids: Vec<String> = entry
            .duties
            .iter()
            .filter_map(|d| d.stops().map(str::to_owned))
            .collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let refused = launch::stop(ec2, &self.store, &ids).await;
        let mut errors = Vec::new();
        let mut stopped = Vec::new();
        entry.duties.retain(|d| {
            let Duty::Stop {
                instance,
                reason,
                runtime,
            } = d
            else {
                return true;
            };
            if let Some((_, e)) = refused.iter().find(|(id, _)| id == instance) {
                tracing::error!("{watch}: cannot stop {instance} ({reason}): {e}");
                errors.push(format!("cannot stop {instance} ({reason}): {e}"));
                return true;
            }
            let runtime = Duration::from_secs(*runtime);
            tracing::info!(
                "{watch}: stopped {instance} after {}: {reason}",
                humantime::format_duration(runtime)
            );
            let text = report::stopped(watch, instance, reason, runtime);
            // A reply in the thread of the run it was started for.
            let run = entry.runs.iter().rev().find(|r| {
                r.instances
                    .get(instance.as_str())
                    .is_some_and(|p| p.is_started())
            });
            messages.push(match run {
                Some(r) => Message::about(watch, &r.commit, Role::Reply, text),
                None => Message::plain(text),
            });
            stopped.push(instance.clone());
            false
        });
        for i in members
            .described
            .iter_mut()
            .filter(|i| stopped.contains(&i.id))
        {
            i.state = InstanceState::Stopping;
        }
        // Forget them: a later start by hand must not look like one of ours.
        let started_at = [tags::STARTED_AT.to_owned()];
        if let Err(e) = launch::untag(ec2, &self.store, &stopped, &started_at).await {
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
/// rules, for runs still open, or for duties still owed.
pub(super) fn needs_turn(watch: &Watch, state: &State) -> bool {
    watch.stops()
        || state.get(watch).is_some_and(|s| {
            s.runs.iter().any(Run::is_open) || s.duties.iter().any(|d| d.stops().is_some())
        })
}

/// Owes a commit status for each run open now or at the start of the turn whose status
/// changed: the newest replaces one still owed for the same commit.
fn statuses(watch: &Watch, entry: &mut WatchState, open_before: &[&String], context: &str) {
    for i in 0..entry.runs.len() {
        let run = &entry.runs[i];
        if !run.is_open() && !open_before.contains(&&run.commit) {
            continue;
        }
        let status = report::commit_status(watch, &entry.runs, i, context);
        let said = format!("{}: {}", status.state, status.description);
        if entry.runs[i].status.as_deref() == Some(said.as_str()) {
            continue;
        }
        let commit = entry.runs[i].commit.clone();
        entry.runs[i].status = Some(said);
        entry
            .duties
            .retain(|d| !matches!(d, Duty::Status { commit: c, .. } if *c == commit));
        entry.duties.push(Duty::Status { commit, status });
    }
}
