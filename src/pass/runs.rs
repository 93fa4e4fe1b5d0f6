//! Reconciling a watch's open runs with what EC2 described: plan each run, carry the plan
//! out, and record where each instance stands.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::Agent;
use crate::config::{OnBusy, Watch};
use crate::ec2::{Ec2, Instance, InstanceState};
use crate::launch::{self, Members, Outcome};
use crate::placement::{self, Place, Wanted};
use crate::plan::{self, Step};
use crate::report;
use crate::state::{Part, Run, WatchState};
use crate::store::Store;
use crate::tags;

/// A watch's open runs through one turn: planned against what EC2 described, carried out
/// with `ec2`, by EC2's clock at the describe. What that did beyond the parts it recorded
/// is gathered as it goes, for the turn's messages.
pub(super) struct Reconciler<'a> {
    ec2: &'a Ec2,
    watch: &'a Watch,
    owners: &'a tags::Owners,
    /// Where the state is kept: fenced before any start or stop.
    store: &'a Store,
    agent: &'a Agent,
    launch: launch::Options,
    now: DateTime<Utc>,
    /// Lines for the message of a run, by commit.
    news: HashMap<String, Vec<String>>,
    /// Some start failed, or a started instance could not be tagged as such.
    pub failed: bool,
    /// Every watch's spend this month, for `[budget] month`.
    pub month_spend: f64,
    /// The prices asked of AWS (the state's), for the estimate of a start.
    pub quotes: BTreeMap<String, crate::cost::Quote>,
}

/// The steps of a plan that need EC2, gathered over a watch's open runs.
#[derive(Debug, Default)]
struct Calls {
    /// Starts to record on the instances, by EC2's launch time: (run, instance, repeat).
    confirm: BTreeMap<DateTime<Utc>, Vec<(usize, String, u32)>>,
    /// The repeat each instance to start is for.
    repeats: BTreeMap<String, u32>,
    ready: Vec<String>,
    stopping: Vec<String>,
    supersede: Vec<String>,
    superseded: BTreeSet<String>,
    /// The newest run's repeats to launch from the template, and its stopped pool
    /// machines left without a repeat.
    launch: Vec<Wanted>,
    room: usize,
    spare: Vec<String>,
    /// Machines up for a repeat they are not tagged with: tagged with it.
    number: BTreeMap<String, u32>,
}

impl<'a> Reconciler<'a> {
    pub fn new(
        agent: &'a Agent,
        owners: &'a tags::Owners,
        ec2: &'a Ec2,
        watch: &'a Watch,
        now: DateTime<Utc>,
    ) -> Self {
        Reconciler {
            ec2,
            watch,
            owners,
            store: &agent.store,
            agent,
            launch: agent.options.launch,
            now,
            news: HashMap::new(),
            failed: false,
            month_spend: 0.0,
            quotes: BTreeMap::new(),
        }
    }

    /// The news lines for the run of `commit`.
    pub fn news(&self, commit: &str) -> &[String] {
        self.news.get(commit).map_or(&[], Vec::as_slice)
    }

    /// Records what EC2's description proves of the open runs (starts confirmed or fallen
    /// back, instances gone or busy), and writes confirmed starts on their instances; starts
    /// and stops nothing. Done before the results are judged, so a run whose starts are
    /// confirmed in this pass can complete in it.
    pub async fn observe(&mut self, entry: &mut WatchState, members: &mut Members) {
        self.apply(entry, members).await;
    }

    /// Plans every open run of the watch against `members`, carries the plans out, and
    /// closes the runs that are done. Only the newest open run starts anything.
    pub async fn reconcile(
        &mut self,
        entry: &mut WatchState,
        members: &mut Members,
    ) -> anyhow::Result<()> {
        let (ec2, watch, now) = (self.ec2, self.watch, self.now);
        let Some((newest, mut calls)) = self.apply(entry, members).await else {
            return Ok(());
        };
        if let Err(over) = self.within_budget(entry, newest, &calls, members) {
            self.refuse(entry, newest, &calls, over);
            close_settled(watch, entry, newest, members, now);
            return Ok(());
        }
        if !(calls.supersede.is_empty() && calls.ready.is_empty() && calls.stopping.is_empty()) {
            self.store.fence().await?;
        }
        let commit = entry.runs[newest].commit.clone();
        if !calls.supersede.is_empty() {
            for (id, e) in launch::stop(ec2, self.store, &calls.supersede).await {
                calls.supersede.retain(|s| *s != id);
                let why = format!("cannot stop it to supersede its older run: {e}");
                entry.runs[newest]
                    .instances
                    .insert(id, Part::Failed { why });
            }
            calls.stopping.append(&mut calls.supersede);
        }
        // With `supersede`, an older run with launched machines up gives way too: launched
        // machines belong to their run, and end with it.
        if watch.on_busy == OnBusy::Supersede {
            // Only runs before it; and a run whose baseline's round this is stays: it is
            // waiting, not older.
            let served = entry.runs[newest].round_for.clone();
            let older = entry.runs[..newest].iter().filter(|r| {
                r.is_open() && r.commit != commit && served.as_ref() != Some(&r.commit)
            });
            let launched: Vec<String> = older
                .filter(|r| r.has_launched_up())
                .map(|r| r.commit.clone())
                .collect();
            calls.superseded.extend(launched);
        }
        if !calls.superseded.is_empty() {
            for run in entry.runs.iter_mut().filter(|r| r.is_open()) {
                if run.commit != commit && calls.superseded.contains(&run.commit) {
                    run.completed_at = Some(now);
                    run.superseded_by = Some(commit.clone());
                    let news = self.news.entry(commit.clone()).or_default();
                    news.push(report::superseded(&run.commit));
                }
            }
            self.end_launched(members, &calls.superseded).await?;
        }

        let stamp = tags::stamp(watch, &commit, &self.owners.current);
        let stamp: Vec<(&str, &str)> = stamp.iter().map(|(k, v)| (&**k, &**v)).collect();
        let (ready, stopping) = (&calls.ready, &calls.stopping);
        let outcomes = launch::start(
            ec2,
            self.store,
            ready,
            stopping,
            &stamp,
            &calls.repeats,
            self.launch,
        );
        let mut handed = self.record(entry, newest, members, &calls.repeats, outcomes.await);
        // A pool machine EC2 had no room for hands its repeat on, in this same pass: to a
        // stopped machine of the pool that has none, then to the template.
        let spare: Vec<String> = calls.spare.iter().take(handed.len()).cloned().collect();
        if !spare.is_empty() {
            let repeats: BTreeMap<String, u32> = spare
                .iter()
                .cloned()
                .zip(handed.drain(..spare.len()))
                .collect();
            let outcomes =
                launch::start(ec2, self.store, &spare, &[], &stamp, &repeats, self.launch);
            let more = self.record(entry, newest, members, &repeats, outcomes.await);
            handed.extend(more);
        }
        let run = &entry.runs[newest];
        let mut wanted = calls.launch;
        // Within what the watch may still launch; the rest waits for the next pass.
        wanted.extend(handed.into_iter().take(calls.room).map(|repeat| Wanted {
            repeat,
            retry: run.losses(repeat) > 0,
        }));
        if !wanted.is_empty() {
            self.launch(entry, newest, &wanted).await?;
        }

        close_settled(watch, entry, newest, members, now);
        self.failed |= entry
            .runs
            .iter()
            .filter(|r| r.is_open())
            .flat_map(|r| r.instances.values())
            .any(|p| matches!(p, Part::Failed { .. }));
        Ok(())
    }

    /// Whether the starts `calls` would make for `entry.runs[newest]` fit the budgets
    /// (SPEC §12): estimated at their machines' prices for the watch's median runtime, else
    /// its `max_runtime`. Decided before any EC2 call.
    fn within_budget(
        &self,
        entry: &WatchState,
        newest: usize,
        calls: &Calls,
        members: &Members,
    ) -> Result<(), crate::cost::OverBudget> {
        let settings = &self.agent.settings;
        let (global, own) = (settings.budget, self.watch.budget);
        if !(global.is_set() || own.is_set()) {
            return Ok(());
        }
        let pool = calls
            .ready
            .iter()
            .chain(&calls.stopping)
            .chain(&calls.supersede);
        let pool_types: Vec<Option<String>> = pool
            .map(|id| members.get(id).and_then(|i| i.instance_type.clone()))
            .collect();
        let run = &entry.runs[newest];
        let launch_type = run.instance_type.clone().or_else(|| {
            let l = self.watch.launch.as_ref()?;
            l.instance_types.first().cloned()
        });
        let launches = std::iter::repeat_n(launch_type, calls.launch.len());
        let machines: Vec<Option<String>> = pool_types.into_iter().chain(launches).collect();
        if machines.is_empty() {
            return Ok(());
        }
        let prices = &settings.prices.hourly;
        let region = self.agent.settings.aws.region.clone().unwrap_or_default();
        let region = self.watch.target.region.clone().unwrap_or(region);
        // The user's price, else the price list's on demand (an estimate: spot is less).
        let asked = |t: &String| {
            let key = crate::cost::quote_key(false, t, &region);
            self.quotes.get(&key)?.usd
        };
        let price: Option<f64> = machines
            .iter()
            .map(|t| {
                t.as_ref()
                    .and_then(|t| prices.get(t).copied().or_else(|| asked(t)))
            })
            .sum();
        let seconds = crate::cost::median_seconds(entry.runs.iter().flat_map(|r| &r.spans))
            .or(self.watch.max_runtime.map(|d| d.as_secs() as i64));
        // The price of one machine on average, times them all.
        let each = price.map(|p| p / machines.len() as f64);
        let estimate = crate::cost::estimate(machines.len(), each, seconds);
        let commit = entry
            .runs
            .iter()
            .filter(|r| r.commit == run.commit)
            .map(|r| crate::cost::Total::of(&r.spans, self.now).cost)
            .sum();
        let spend = crate::cost::Spend {
            month: self.month_spend,
            watch_month: entry.month_spend(self.now),
            commit,
        };
        crate::cost::fits(global, own, spend, estimate)
    }

    /// Starts nothing for `entry.runs[newest]`: what it would have started sits the run
    /// out, and the refusal is said once (a round of top-ups ends the run as it stands).
    fn refuse(
        &mut self,
        entry: &mut WatchState,
        newest: usize,
        calls: &Calls,
        over: crate::cost::OverBudget,
    ) {
        let why = over.to_string();
        let run = &mut entry.runs[newest];
        let pool = calls
            .ready
            .iter()
            .chain(&calls.stopping)
            .chain(&calls.supersede);
        for id in pool {
            let part = Part::Skipped { why: why.clone() };
            run.instances.insert(id.clone(), part);
        }
        if run.over_budget.as_deref() != Some(why.as_str()) {
            tracing::warn!(
                "{}: {} not started: {why}",
                self.watch,
                report::short(&run.commit)
            );
            let news = self.news.entry(run.commit.clone()).or_default();
            news.push(format!("Not started: {why}"));
            run.over_budget = Some(why);
        }
        // What it has is what it gets: a top-up round, or launches, that will not come.
        run.repeats = u32::try_from(run.taken().len()).unwrap_or(u32::MAX);
        // A baseline's round refused ends the rounds of the run it served, with its
        // verdict as it stands.
        if let Some(served) = run.round_for.take() {
            run.completed_at = Some(self.now);
            let waiting = entry
                .runs
                .iter()
                .position(|r| r.is_open() && r.commit == served && r.waits_for.is_some());
            if let Some(c) = waiting {
                entry.runs[c].waits_for = None;
                entry.runs[c].over_budget = entry.runs[newest].over_budget.clone();
                self.post_as_it_stands(entry, c);
            }
            return;
        }
        let topping_up = !run.looks.is_empty();
        if run.taken().is_empty() || topping_up {
            run.completed_at = Some(self.now);
        }
        if topping_up {
            self.post_as_it_stands(entry, newest);
        }
    }

    /// Closes `entry.runs[r]`, whose next round the budget refused, and posts its verdict
    /// as it stands, saying why there is no further round.
    fn post_as_it_stands(&mut self, entry: &mut WatchState, r: usize) {
        entry.runs[r].completed_at = Some(self.now);
        if let Some(spec) = &self.watch.results {
            let mut text = report::verdict(self.watch, spec, &entry.runs, r, self.now);
            text.push_str(&format!(
                "\n• no further round: {}",
                entry.runs[r].over_budget.as_deref().unwrap_or_default()
            ));
            entry.runs[r].verdict = report::verdict::record(spec, &entry.runs, r);
            let commit = Some(entry.runs[r].commit.clone());
            entry.duties.push(crate::state::Duty::Post { text, commit });
        }
    }

    /// Terminates the launched machines still up for the runs of `commits`, which were
    /// superseded: nothing they would report counts any more.
    async fn end_launched(
        &mut self,
        members: &Members,
        commits: &BTreeSet<String>,
    ) -> anyhow::Result<()> {
        let ids: Vec<String> = members
            .launched
            .iter()
            .filter_map(|id| members.get(id))
            .filter(|i| {
                let commit = i.tags.get(tags::COMMIT);
                !matches!(
                    i.state,
                    InstanceState::Terminated | InstanceState::ShuttingDown
                ) && commit.is_some_and(|c| commits.contains(c))
                    && tags::started_for(i, self.owners, self.watch).is_some()
            })
            .map(|i| i.id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        self.store.fence().await?;
        for (id, e) in launch::halt(self.ec2, self.store, &ids, &ids).await {
            tracing::error!(
                "{}: cannot terminate {id} of a superseded run: {e}",
                self.watch
            );
            self.failed = true;
        }
        Ok(())
    }

    /// Records what became of the starts of the newest run's pool machines. Returns the
    /// repeats of those EC2 had no room for, when the watch has a template to hand them to
    /// (the machine is then not asked again for a few minutes); without one, such a
    /// machine is retried next pass, as before.
    fn record(
        &mut self,
        entry: &mut WatchState,
        newest: usize,
        members: &Members,
        repeats: &BTreeMap<String, u32>,
        outcomes: Vec<(String, Outcome)>,
    ) -> Vec<u32> {
        let mut handed = Vec::new();
        for (id, outcome) in outcomes {
            let repeat = repeats.get(&id).copied().unwrap_or(0);
            let part = match outcome {
                Outcome::Started => {
                    if let Some(i) = members.get(&id) {
                        place(&mut entry.runs[newest], i);
                    }
                    Part::Accepted {
                        at: self.now,
                        repeat,
                    }
                }
                Outcome::Up(state) => Part::Waiting {
                    why: format!("started by someone else while it was stopping ({state})"),
                },
                Outcome::Gone(why) => Part::Skipped { why },
                Outcome::NoCapacity(why) if self.watch.launch.is_some() => {
                    placement::refuse(&mut entry.refused, id.clone(), why.clone(), self.now);
                    if repeat > 0 {
                        handed.push(repeat);
                    }
                    // It sits the run out: its repeat has gone elsewhere.
                    Part::Skipped {
                        why: format!(
                            "EC2 has no room for it now ({why}); its repeat went elsewhere"
                        ),
                    }
                }
                Outcome::NoCapacity(why) | Outcome::Failed(why) => Part::Failed { why },
            };
            entry.runs[newest].instances.insert(id, part);
        }
        handed
    }

    /// Launches `wanted` repeats of the newest run from the watch's template, and records
    /// the machines, the placements EC2 refused and the news.
    async fn launch(
        &mut self,
        entry: &mut WatchState,
        newest: usize,
        wanted: &[Wanted],
    ) -> anyhow::Result<()> {
        let Some(spec) = &self.watch.launch else {
            return Ok(());
        };
        self.store.fence().await?;
        let zones = self.agent.zones(self.ec2, &spec.subnets).await;
        let run = &entry.runs[newest];
        let mut stamp = tags::stamp(self.watch, &run.commit, &self.owners.current);
        stamp.retain(|(_, v)| !v.is_empty());
        stamp.push((tags::STARTED_AT.to_owned(), crate::rfc3339(self.ec2.now())));
        stamp.push((tags::LAUNCHED.to_owned(), spec.template.clone()));
        let token = format!("{}/{}/{}", self.owners.current, run.commit, run.fleets);
        let report = launch::fleet::launch(
            self.ec2,
            self.store,
            spec,
            wanted,
            run.instance_type.as_deref(),
            &entry.refused,
            &zones,
            &stamp,
            &token,
            self.now,
        )
        .await;
        for r in &report.refused {
            placement::refuse(&mut entry.refused, r.key.clone(), r.why.clone(), self.now);
        }
        for e in &report.failed {
            tracing::warn!("{}: cannot launch from {}: {e}", self.watch, spec.template);
            self.failed = true;
        }
        let run = &mut entry.runs[newest];
        run.fleets += 1;
        if run.instance_type.is_none() {
            run.instance_type = report.instance_type.clone();
        }
        for l in &report.launched {
            run.placed.insert(l.id.clone(), l.place.clone());
            let part = Part::Accepted {
                at: self.now,
                repeat: l.repeat,
            };
            run.instances.insert(l.id.clone(), part);
        }
        let line = report::launched(
            &report.launched,
            &report.refused,
            &report.waiting,
            &report.failed,
        );
        // News of machines launched is said each time; a launch that placed nothing is said
        // once until its words change (a drought or a bad template would say it every pass).
        let quiet = report.launched.is_empty() && run.launch_note == line;
        if report.launched.is_empty() {
            run.launch_note = line.clone();
        }
        if let (Some(line), false) = (line, quiet) {
            tracing::info!("{}: {line}", self.watch);
            self.news.entry(run.commit.clone()).or_default().push(line);
        }
        Ok(())
    }

    /// Plans every open run of the watch against `members`, records the parts that need no
    /// EC2 call (a start that fell back is news for its run), and writes the confirmed
    /// starts on their instances. Returns the index of the newest open run and the calls
    /// still to make.
    async fn apply(
        &mut self,
        entry: &mut WatchState,
        members: &mut Members,
    ) -> Option<(usize, Calls)> {
        let open: Vec<usize> = (0..entry.runs.len())
            .filter(|&r| entry.runs[r].is_open())
            .collect();
        // The newest open run, or the baseline whose top-up round it waits for.
        let newest = crate::state::starter(&entry.runs)?;
        let mut calls = Calls::default();
        let refused = entry.refused.clone();
        for &r in &open {
            plan::fix_repeats(&mut entry.runs[r], self.watch, members.ids.len());
            let cx = plan::Context {
                watch: self.watch,
                newest: r == newest,
                now: self.now,
                owners: self.owners,
                refused: &refused,
            };
            let plan = plan::plan(&entry.runs[r], members, cx);
            entry.runs[r].done.extend(plan.done);
            if r == newest {
                calls.launch = plan.launch;
                calls.room = plan.room;
                calls.spare = plan.spare;
            }
            for (id, step) in plan.steps {
                let run = &entry.runs[r];
                let part = match step {
                    Step::Set(Part::Lost { repeat, why })
                        if !matches!(run.instances.get(&id), Some(Part::Lost { .. })) =>
                    {
                        let max = self.watch.launch.as_ref().map_or(0, |l| l.max_retries);
                        let n = run.losses(repeat) + 1;
                        let retry = (n <= max as usize).then_some((n, max));
                        let news = self.news.entry(run.commit.clone()).or_default();
                        news.push(report::lost(&id, repeat, &why, retry));
                        entry.runs[r].forget(repeat);
                        Part::Lost { repeat, why }
                    }
                    Step::Set(Part::Failed { why })
                        if matches!(run.instances.get(&id), Some(Part::Accepted { .. })) =>
                    {
                        let news = self.news.entry(run.commit.clone()).or_default();
                        news.push(format!("{id} {why}"));
                        Part::Failed { why }
                    }
                    Step::Set(part) => part,
                    Step::Confirm { at, tag, repeat } => {
                        if tag {
                            let confirm = (r, id.clone(), repeat);
                            calls.confirm.entry(at).or_default().push(confirm);
                        }
                        if let Some(i) = members.get(&id) {
                            if repeat > 0 && tags::repeat(&i.tags) != Some(repeat) {
                                calls.number.insert(id.clone(), repeat);
                            }
                            place(&mut entry.runs[r], i);
                        }
                        Part::Started { at, repeat }
                    }
                    Step::Start { repeat } => {
                        calls.repeats.insert(id.clone(), repeat);
                        calls.ready.push(id);
                        continue;
                    }
                    Step::StartWhenStopped { repeat } => {
                        calls.repeats.insert(id.clone(), repeat);
                        calls.stopping.push(id);
                        continue;
                    }
                    Step::Supersede { commit, repeat } => {
                        calls.repeats.insert(id.clone(), repeat);
                        calls.superseded.insert(commit);
                        calls.supersede.push(id);
                        continue;
                    }
                };
                entry.runs[r].instances.insert(id, part);
            }
        }
        let confirms = std::mem::take(&mut calls.confirm);
        let (ec2, store) = (self.ec2, self.store);
        self.failed |= confirm(ec2, store, self.watch, entry, members, confirms).await;
        let number = std::mem::take(&mut calls.number);
        if !number.is_empty() {
            let ids: Vec<String> = number.keys().cloned().collect();
            let (_, refused) = launch::tag_repeats(ec2, store, ids, &number).await;
            for (id, e) in refused {
                tracing::warn!("{}: cannot tag the repeat of {id}: {e:?}", self.watch);
            }
        }
        Some((newest, calls))
    }
}

/// Records where machine `i` runs the run (the next describe knows its zone, a launch
/// only its subnet), and the run's instance type when it has none yet.
fn place(run: &mut Run, i: &Instance) {
    let place = run.placed.entry(i.id.clone()).or_insert_with(|| Place {
        launched: tags::is_launched(i),
        ..Place::default()
    });
    place.instance_type = i.instance_type.clone().or(place.instance_type.take());
    place.zone = i.zone.clone().or(place.zone.take());
    if place.launched && place.market.is_none() {
        place.market = Some(match i.spot {
            true => crate::ec2::Market::Spot,
            false => crate::ec2::Market::OnDemand,
        });
    }
    if run.instance_type.is_none() {
        run.instance_type = i.instance_type.clone();
    }
}

/// Corrects confirmed starts' `started-at` to EC2's own launch time, so the stop rules
/// measure from the start itself. A start whose tag cannot be written stays unconfirmed,
/// for the next pass. Returns whether one could not.
async fn confirm(
    ec2: &Ec2,
    store: &Store,
    watch: &Watch,
    entry: &mut WatchState,
    members: &mut Members,
    confirm: BTreeMap<DateTime<Utc>, Vec<(usize, String, u32)>>,
) -> bool {
    let mut failed = false;
    for (at, parts) in confirm {
        let ids: Vec<String> = parts.iter().map(|(_, id, _)| id.clone()).collect();
        let time = crate::rfc3339(at);
        if let Err(e) = launch::tag(ec2, store, &ids, &[(tags::STARTED_AT, &time)]).await {
            tracing::warn!("{watch}: cannot tag {}: {e}", ids.join(", "));
            failed = true;
            for (r, id, repeat) in parts {
                entry.runs[r]
                    .instances
                    .insert(id, Part::Accepted { at, repeat });
            }
            continue;
        }
        // The stop rules of this pass read the tags from this description.
        for i in members.described.iter_mut().filter(|i| ids.contains(&i.id)) {
            i.tags.insert(tags::STARTED_AT.to_owned(), time.clone());
        }
    }
    failed
}

/// Closes the open runs that have nothing left to do: an older run that started nothing
/// gives its place to the newest (which lists it as replaced); a run that started nothing,
/// or has no results to wait for, is complete once settled and every repeat was given to
/// one of the `pool`'s machines. Runs with results are closed by the harvest.
fn close_settled(
    watch: &Watch,
    entry: &mut WatchState,
    newest: usize,
    members: &Members,
    now: DateTime<Utc>,
) {
    let pool = members.pool();
    let newest_commit = entry.runs[newest].commit.clone();
    let mut replaced = Vec::new();
    for (r, run) in entry.runs.iter_mut().enumerate() {
        if !run.is_open() || !run.is_settled() || run.gives_repeats(pool, r == newest) {
            continue;
        }
        let started = run.started().next().is_some();
        if r != newest && !started {
            run.completed_at = Some(now);
            run.superseded_by = Some(newest_commit.clone());
            replaced.append(&mut run.replaced);
            replaced.push(run.commit.clone());
        } else if !started || (watch.results.is_none() && !launched_up(run, members)) {
            // Without results to wait for, a run's repeats are done when started, but a
            // launched machine's only once it is down: EC2 may still take it away.
            run.completed_at = Some(now);
        }
    }
    entry.runs[newest].replaced.splice(0..0, replaced);
}

/// Whether a machine launched for `run` is still up, as `members` describe it.
fn launched_up(run: &Run, members: &Members) -> bool {
    run.instances
        .keys()
        .filter(|id| members.launched.contains(id))
        .any(|id| members.get(id).is_some_and(Instance::is_up))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Results;
    use crate::state::Run;

    fn watch() -> Watch {
        Watch::example("main", &[])
    }

    fn entry(runs: Vec<Run>) -> WatchState {
        WatchState {
            runs,
            ..WatchState::new(&watch())
        }
    }

    fn run(commit: &str, parts: &[Part]) -> Run {
        let mut run = Run::open(commit, "", Utc::now());
        for (i, p) in parts.iter().enumerate() {
            run.instances.insert(format!("i-0000000{i}"), p.clone());
        }
        run
    }

    /// A pool of two machines, described as nothing yet.
    fn pool() -> Members {
        Members {
            ids: vec!["i-00000000".into(), "i-00000001".into()],
            ..Members::default()
        }
    }

    fn skipped() -> Part {
        Part::Skipped {
            why: "a newer push took its place".into(),
        }
    }

    #[test]
    fn an_older_run_that_started_nothing_is_replaced_by_the_newest() {
        let now = Utc::now();
        let mut older = run("c2", &[skipped()]);
        older.replaced = vec!["c1".into()];
        let newest = run("c3", &[Part::Waiting { why: "busy".into() }]);
        let mut e = entry(vec![older, newest]);

        close_settled(&watch(), &mut e, 1, &pool(), now);

        assert_eq!(e.runs[0].completed_at, Some(now));
        assert_eq!(e.runs[0].superseded_by.as_deref(), Some("c3"));
        assert_eq!(e.runs[1].replaced, ["c1", "c2"]);
        assert!(e.runs[1].is_open(), "still waiting");
    }

    #[test]
    fn a_settled_run_without_results_completes_and_with_results_waits_for_them() {
        let now = Utc::now();
        let started = Part::Started { at: now, repeat: 0 };
        let mut e = entry(vec![run("c2", std::slice::from_ref(&started))]);
        close_settled(&watch(), &mut e, 0, &pool(), now);
        assert_eq!(e.runs[0].completed_at, Some(now));
        assert_eq!(e.runs[0].superseded_by, None);

        let mut with_results = watch();
        with_results.results = Some(Results::example(&["accuracy"]));
        let mut e = entry(vec![run("c2", &[started])]);
        close_settled(&with_results, &mut e, 0, &pool(), now);
        assert!(e.runs[0].is_open(), "the harvest closes it");
    }

    #[test]
    fn a_run_still_starting_stays_open() {
        let now = Utc::now();
        let mut e = entry(vec![run(
            "c2",
            &[
                Part::Accepted { at: now, repeat: 0 },
                Part::Failed {
                    why: "no capacity".into(),
                },
            ],
        )]);
        close_settled(&watch(), &mut e, 0, &pool(), now);
        assert!(e.runs[0].is_open());
    }

    #[test]
    fn a_run_with_repeats_left_for_its_machines_stays_open_without_results() {
        // Four repeats on a pool of two: the first two ran, the machines serve the rest.
        let now = Utc::now();
        let mut r = Run::open("c2", "", now);
        r.repeats = 4;
        for (i, k) in [(0, 1), (1, 2)] {
            r.instances.insert(
                format!("i-0000000{i}"),
                Part::Started { at: now, repeat: k },
            );
        }
        let mut e = entry(vec![r]);
        close_settled(&watch(), &mut e, 0, &pool(), now);
        assert!(e.runs[0].is_open(), "repeats 3 and 4 are still to run");
        e.runs[0].done.extend([1, 2]);
        for (i, k) in [(0, 3), (1, 4)] {
            e.runs[0].instances.insert(
                format!("i-0000000{i}"),
                Part::Started { at: now, repeat: k },
            );
        }
        close_settled(&watch(), &mut e, 0, &pool(), now);
        assert_eq!(e.runs[0].completed_at, Some(now), "every repeat was given");
    }

    #[test]
    fn a_newest_run_that_started_nothing_closes_without_a_verdict() {
        let now = Utc::now();
        let mut e = entry(vec![run("c2", &[skipped()])]);
        close_settled(&watch(), &mut e, 0, &pool(), now);
        assert_eq!(e.runs[0].completed_at, Some(now));
        assert_eq!(e.runs[0].superseded_by, None);
    }
}
