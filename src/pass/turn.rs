//! A watch's turn in a pass: one describe of its instances, then its runs' starts
//! confirmed, their results judged, its stop rules and duties carried out, and its runs
//! reconciled against what EC2 described.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Agent;
use super::notify::Message;
use super::rounds;
use super::runs::Reconciler;
use crate::aws::Clients;
use crate::config::Watch;
use crate::ec2::{Ec2, InstanceState};
use crate::github::Commit;
use crate::launch::{self, Members};
use crate::report::{self, short};
use crate::state::{Duty, Kind, Part, Run, State, Voice, WatchState};
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
    /// It owed Slack a message about its runs or stops.
    pub spoke: bool,
}

impl Agent {
    /// What the stop rules say of the instances of `watch`, reached with `clients`, that
    /// `owners` started; `reported` are those done.
    pub(super) async fn due(
        &self,
        clients: &Clients,
        watch: &Watch,
        owners: &tags::Owners,
        members: &Members,
        reported: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<reap::Judged> {
        let cloudwatch = match &watch.idle_stop {
            Some(_) => Some(clients.cloudwatch()?),
            None => None,
        };
        let judged = reap::due(members, cloudwatch, watch, owners, reported, now);
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
        state.places.insert(watch.target.clone());
        let owners = self.owners().await;
        let launched = launches(watch, state);
        let mut members = launch::members(ec2, watch, &owners, launched).await?;
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
        // Closed runs whose machines' time is still being counted: their commit status
        // gets the cost once the last one ends.
        let counting: Vec<String> = state
            .get(watch)
            .map(|s| s.runs.iter().filter(|r| !r.is_open() && r.counting()))
            .into_iter()
            .flatten()
            .map(|r| r.commit.clone())
            .collect();
        // A bot's thread shows results arriving too; a webhook's channel hears only of
        // starts and stops.
        let threads = self.slack.as_ref().is_some_and(|s| s.threads());

        let mut reconciler = Reconciler::new(self, &owners, ec2, watch, now);
        reconciler.month_spend = state.watches.iter().map(|w| w.month_spend(now)).sum();
        let entry = state.entry(watch);
        // A late reporter is watched while it runs its run's commit.
        entry.duties.retain(|d| match d {
            Duty::Late { instance, commit } => up_for(&members, instance, commit),
            _ => true,
        });
        reconciler.observe(entry, &mut members).await;
        mark_ended(entry, &members);
        let region = clients
            .config
            .region()
            .map_or_else(|| "its region".to_owned(), |r| r.to_string());
        let prices = &self.settings.prices;
        let unpriced = super::spend::unpriced(entry, &members, prices, &region);
        self.quote(&clients, &mut state.quotes, unpriced, now).await;
        let quotes = state.quotes.clone();
        reconciler.quotes = quotes.clone();
        let entry = state.entry(watch);
        super::spend::track(entry, &members, prices, &quotes, &region, now);

        // Verdicts and stops become duties, saved before anything is stopped or posted.
        let mut reported = Vec::new();
        if let Some(spec) = &watch.results {
            let harvest = results::harvest(&mut entry.runs, &members, spec, now);
            // A launched machine that reported everything is done: it is terminated
            // whatever `stop_when_reported` says of the pool.
            let launched = |id: &String| members.launched.contains(id);
            reported = harvest.reported;
            reported.retain(|id| spec.stop_when_reported || launched(id));
            for &i in &harvest.completed {
                let v = match rounds::after(spec, entry, i, now) {
                    rounds::After::Verdict(v) => v,
                    rounds::After::Round(r, line) => {
                        tracing::info!("{watch}: {}: {line}", short(&entry.runs[r].commit));
                        let commit = Some(entry.runs[r].commit.clone());
                        let voice = Voice::Reply;
                        entry.duties.push(Duty::Say {
                            text: line,
                            commit,
                            voice,
                        });
                        continue;
                    }
                    rounds::After::Quiet => continue,
                };
                if spec.stop_when_reported {
                    entry.duties.extend(late(&entry.runs[v], spec, &members));
                }
                let mut verdict = report::verdict(watch, spec, &entry.runs, v, now);
                let unsettled = crate::judgement::judge(spec, &entry.runs, v)
                    .primary()
                    .is_some_and(|j| j.call == crate::stats::Call::Continue);
                if unsettled {
                    // Its rounds ended before the design settled: say why.
                    let newer = entry.runs[v + 1..].iter().any(Run::is_open);
                    verdict.push_str(match newer {
                        true => "\n• no further round: a newer push took the machines",
                        false => "\n• no further round: every repeat it could run was given",
                    });
                }
                entry.runs[v].verdict = report::verdict::record(spec, &entry.runs, v);
                tracing::info!("{watch}: {}", verdict.replace('\n', "; "));
                if self.slack.is_some() {
                    let commit = Some(entry.runs[v].commit.clone());
                    entry.duties.push(Duty::Post {
                        text: verdict,
                        commit,
                    });
                }
            }
        }
        let judged = self
            .due(&clients, watch, &owners, &members, &reported, now)
            .await?;
        errors.extend(judged.errors);
        for d in judged.due {
            if !entry.duties.iter().any(|x| x.stops() == Some(&d.id)) {
                entry.duties.push(stop_duty(d));
            }
        }
        // A launched machine whose job shut it down is terminated, never left stopped.
        for i in ended(&members, watch, &owners) {
            if !entry.duties.iter().any(|x| x.stops() == Some(&i.id)) {
                let ran = i.launch_time.map(|t| (now - t).num_seconds().max(0));
                entry.duties.push(Duty::Stop {
                    instance: i.id.clone(),
                    reason: "its job shut it down, and a launched machine is not kept".into(),
                    runtime: ran.unwrap_or(0) as u64,
                    launched: i.launch_time,
                });
            }
        }
        self.save(state).await?;

        // Stops come before starts, so that a push in the same pass finds its machines
        // stopping and starts them for the new commit.
        let entry = state.entry(watch);
        if entry.duties.iter().any(|d| d.stops().is_some()) {
            self.store.fence().await?;
        }
        let mut told = Vec::new();
        errors.extend(
            self.stop_duties(ec2, watch, entry, &mut members, &mut told)
                .await,
        );
        // Owed with the stops they tell of, whatever the rest of the turn does.
        turn.spoke |= !told.is_empty();
        self.owe(watch, entry, told);

        // Every place this deployment starts machines in is remembered before it does, in
        // its own record (and in the state, above), so orphans are looked for there for
        // good. Without that record nothing is started; the stops above are done.
        match self.remember(&watch.target).await {
            Ok(()) => reconciler.reconcile(entry, &mut members).await?,
            Err(e) => {
                tracing::error!("{watch}: {e:#}; starts nothing");
                errors.push(format!("{e:#}; starts nothing"));
            }
        }
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
            let mut open_before: Vec<&String> = before.iter().map(|(c, _)| c).collect();
            open_before.extend(&counting);
            statuses(watch, entry, &open_before, &self.status_context(watch));
        }

        let mut messages = Vec::new();
        for run in entry.runs.iter().filter(|r| changed_now(r, now)) {
            let old = before.iter().find(|(c, _)| *c == run.commit).map(|b| &b.1);
            let fetched;
            let first = match opened.as_ref().filter(|c| c.sha == run.commit) {
                Some(c) => Some(c),
                // Opened in a pass that never recorded its first turn (a failed save, a
                // crash, EC2 down): its first message is still to be said.
                None if self.slack.is_some() && never_told(run, old) => {
                    fetched = self.commit(watch, &run.commit).await;
                    Some(&fetched)
                }
                None => None,
            };
            let news = reconciler.news(&run.commit);
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
            // The whole message starts the run's thread; once it has one, the thread's
            // parent is updated in place and the news is a reply. Which of the two is
            // decided when Slack takes it.
            let role = Voice::Progress {
                parent: report::run(watch, run, first, &[]),
                news: (!news.is_empty()).then(|| report::news(news)),
            };
            let whole = report::run(watch, run, first, news);
            messages.push(Message::about(&run.commit, role, whole));
        }
        // Owed in the state with the change they tell of, saved by the same save.
        turn.spoke |= !messages.is_empty();
        self.owe(watch, entry, messages);
        Ok(turn)
    }

    /// The commit status context of `watch`'s runs: `pushwake`, or `pushwake/<branch>`
    /// when another watch shares its repository; its check run has the same name.
    pub(super) fn status_context(&self, watch: &Watch) -> String {
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
        // Still up for the start the rule judged (the same launch time), or nothing is owed
        // any more: stopped by someone else, terminated, gone, or started again since.
        let still = |d: &Duty| {
            let Duty::Stop {
                instance, launched, ..
            } = d
            else {
                return true;
            };
            members.get(instance).is_some_and(|i| {
                let up = i.is_up();
                // A launched machine is ended (terminated) even once it stopped.
                let kept = tags::is_launched(i) && i.state == InstanceState::Stopped;
                (up || kept) && launched.is_none_or(|t| i.launch_time == Some(t))
            })
        };
        entry.duties.retain(still);
        let ids: Vec<String> = entry
            .duties
            .iter()
            .filter_map(|d| d.stops().map(str::to_owned))
            .collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let refused = launch::halt(ec2, &self.store, &ids, &members.launched).await;
        let mut errors = Vec::new();
        let mut stopped = Vec::new();
        entry.duties.retain(|d| {
            let Duty::Stop {
                instance,
                reason,
                runtime,
                ..
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
            let ended = members.launched.contains(instance);
            let text = report::stopped(watch, instance, reason, runtime, ended);
            // A reply in the thread of the run it was started for.
            let run = entry.runs.iter().rev().find(|r| {
                r.instances
                    .get(instance.as_str())
                    .is_some_and(|p| p.is_started())
            });
            messages.push(match run {
                Some(r) => Message::about(&r.commit, Voice::Reply, text),
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
        close_starts(ec2, &self.store, watch, &stopped).await;
        errors
    }
}

/// Marks pushwake's starts of `stopped` as over (`stopped-at`, EC2's clock): their tags
/// stay EC2's record of what they ran, and a start by hand from now on is never taken for
/// one of pushwake's. A failure is only logged: it leaves a few minutes' doubt at most.
/// Fenced like any mutation: a deposed leader never marks a new leader's start as over.
pub(super) async fn close_starts(
    ec2: &Ec2,
    fence: &impl launch::Fence,
    watch: &dyn std::fmt::Display,
    stopped: &[String],
) {
    let at = crate::rfc3339(ec2.now());
    if let Err(e) = launch::tag(ec2, fence, stopped, &[(tags::STOPPED_AT, &at)]).await {
        tracing::warn!(
            "{watch}: cannot tag {} with {}: {e}",
            stopped.join(", "),
            tags::STOPPED_AT
        );
    }
}

/// The started instances of `run`, which just closed, that are still up without every
/// result: watched for a late one.
fn late(run: &Run, spec: &crate::config::Results, members: &Members) -> Vec<Duty> {
    run.instances
        .iter()
        .filter_map(|(id, p)| Some((id, p.repeat()?)))
        .filter(|(id, k)| !results::reported_all(run, spec, *k) && up_for(members, id, &run.commit))
        .map(|(id, _)| Duty::Late {
            instance: id.clone(),
            commit: run.commit.clone(),
        })
        .collect()
}

/// Whether instance `id` is up, running `commit`.
fn up_for(members: &Members, id: &str, commit: &str) -> bool {
    members.get(id).is_some_and(|i| {
        matches!(i.state, InstanceState::Pending | InstanceState::Running)
            && i.tags.get(tags::COMMIT).map(String::as_str) == Some(commit)
    })
}

/// The stop a rule asked for, owed until done.
pub(super) fn stop_duty(due: reap::Due) -> Duty {
    Duty::Stop {
        instance: due.id,
        reason: due.why.to_string(),
        runtime: due.runtime.as_secs(),
        launched: due.launched,
    }
}

/// Whether a run may have news: it is open, or closed by this pass (not as superseded or
/// replaced, which the newer run's message tells).
fn changed_now(run: &Run, now: DateTime<Utc>) -> bool {
    run.is_open() || (run.completed_at == Some(now) && run.superseded_by.is_none())
}

/// Whether `run`, which the turn first saw as `seen`, was never told of: it had no part
/// and no thread, and has parts now or closed.
fn never_told(run: &Run, seen: Option<&Seen>) -> bool {
    let empty = seen.is_some_and(|(shape, _)| shape.is_empty());
    empty && run.thread.is_none() && (!run.instances.is_empty() || !run.is_open())
}

/// The launched machines of `watch` that pushwake started and that are stopped (their
/// job shut them down): their repeat is done, and they are to be terminated.
fn ended<'a>(
    members: &'a Members,
    watch: &Watch,
    owners: &tags::Owners,
) -> Vec<&'a crate::ec2::Instance> {
    let stopped = |i: &&crate::ec2::Instance| {
        i.state == InstanceState::Stopped && tags::started_for(i, owners, watch).is_some()
    };
    let launched = members.launched.iter().filter_map(|id| members.get(id));
    launched.filter(stopped).collect()
}

/// Records which launched machines are over: EC2 shows them terminated, or no longer lists
/// them once their run closed. Nothing is left to end of those.
fn mark_ended(entry: &mut WatchState, members: &Members) {
    for run in &mut entry.runs {
        let open = run.is_open();
        for (id, place) in run
            .placed
            .iter_mut()
            .filter(|(_, p)| p.launched && !p.ended)
        {
            place.ended = match members.get(id) {
                Some(i) => matches!(i.state, InstanceState::Terminated),
                None => !open,
            };
        }
    }
}

/// Whether the watch's turn must look for the machines it launched: it launches, or one
/// it launched may still be up.
pub(super) fn launches(watch: &Watch, state: &State) -> bool {
    watch.launch.is_some() || launched_up(watch, state)
}

/// Whether a machine the watch launched may still be up (EC2 has not shown it ended).
fn launched_up(watch: &Watch, state: &State) -> bool {
    state
        .get(watch)
        .is_some_and(|s| s.runs.iter().any(Run::has_launched_up))
}

/// Whether a pass must describe the watch's instances even with no push: for the stop
/// rules, for runs still open, for duties still owed, or for launched machines still to
/// end.
pub(super) fn needs_turn(watch: &Watch, state: &State) -> bool {
    // A machine's span need not be watched for its end: the next look reads the end
    // from EC2's state transition, however late.
    watch.stops()
        || launched_up(watch, state)
        || state.get(watch).is_some_and(|s| {
            s.runs.iter().any(Run::is_open) || s.duties.iter().any(Duty::needs_ec2)
        })
}

/// Owes a commit status for each run open now or at the start of the turn (or counting its
/// machines' time then) whose status changed: the newest replaces one still owed for the
/// same commit.
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
