//! One pass over all watches: poll → open runs → reconcile each watch's runs with EC2 →
//! record → notify.
//!
//! This is the only module that decides the order of side effects. The rules it keeps:
//! - a new head opens a run, saved before any EC2 call, so a push once seen is never lost
//!   and a state directory that cannot be written stops the pass before it starts anything
//!   it could not record;
//! - a head is recorded as handled only when every instance its run can use was started
//!   for it or waits for it; until then each pass retries only what is missing;
//! - an ETag is stored only together with the SHA it belongs to, so an unhandled head is
//!   fetched again, in full, by the next pass;
//! - nothing Slack does changes what happens to instances or state: messages go out last.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use futures_util::{StreamExt, stream};
use tokio::time::Instant;

use crate::aws::{Aws, Clients};
use crate::config::{FirstRun, Repo, Settings, Target, Watch};
use crate::deployment::{Deployment, Home};
use crate::github::{self, Commit, GitHub, Head};
use crate::launch;
use crate::lease::Standing;
use crate::metrics::Outcome;
use crate::report::{self, short};
use crate::retry;
use crate::s3::S3;
use crate::slack::Slack;
use crate::state::{Run, State};
use crate::store::Store;
use crate::tags;
use crate::tags::Owners;

mod dry_run;
mod notify;
mod orphans;
mod rounds;
mod runs;
mod spend;
mod stateless;
mod turn;

use notify::{SLACK_BUDGET, fail, recover};
use turn::{launches, needs_turn};

/// How many GitHub polls a pass keeps in flight; GitHub allows 100 concurrent requests.
const POLL_CONCURRENCY: usize = 32;

/// How long to leave a watch alone after a rate limit that names no reset time. GitHub
/// asks for at least a minute in that case.
const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(60);

/// How long a pass waits for another process's pass to end: about as long as a pass takes
/// when GitHub does not answer (every call has a deadline of a minute).
const LOCK_WAIT: Duration = Duration::from_secs(75);

/// What opening the state found.
enum Opened {
    /// This agent leads (always, with a local state): the pass lock, and the state.
    Leads(Option<crate::state::PassLock>, State),
    /// Another agent leads the shared state.
    StandsBy,
}

/// Options a pass runs with, beyond the config.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassOptions {
    /// Decide, say what would be done, and change nothing.
    pub dry_run: bool,
    pub launch: launch::Options,
    /// The retry policy of every client.
    pub retry: retry::Policy,
}

/// What a pass did, for the exit status and the daemon's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub watches: usize,
    /// Watches whose poll, tending or starts failed this pass.
    pub failed: usize,
    /// New heads recorded as handled: their runs started or queued, or nothing to start.
    pub triggered: usize,
}

/// The clients a pass needs, built once from the settings and kept across passes.
pub struct Agent {
    settings: Settings,
    options: PassOptions,
    store: Store,
    github: GitHub,
    slack: Option<Slack>,
    aws: Arc<Aws>,
    // Watches GitHub asked us to leave alone until a time (a rate limit's reset). Kept in
    // memory only: a `--once` run reports the limit and exits 1 instead.
    paused: Mutex<HashMap<(Repo, String), Instant>>,
    /// This deployment: who owns its machines, where it started them. Read (or made) by
    /// the first pass that needs it.
    deployment: tokio::sync::OnceCell<Deployment>,
    /// This agent's host and state directory, `host:/var/lib/pushwake`: the owner earlier
    /// versions tagged machines with, adopted by a new deployment record.
    here: String,
    /// The zone of each subnet launched into, asked of EC2 once (for what people are told).
    zones: tokio::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl Agent {
    /// The zone of each of `subnets`, as far as EC2 says: asked once per agent, and only
    /// for subnets not known yet. A failure is logged; the subnets are then named by id.
    pub(crate) async fn zones(
        &self,
        ec2: &crate::ec2::Ec2,
        subnets: &[String],
    ) -> std::collections::BTreeMap<String, String> {
        let mut zones = self.zones.lock().await;
        let unknown: Vec<String> = subnets
            .iter()
            .filter(|s| !zones.contains_key(*s))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            match ec2.subnets(&unknown).await {
                Ok(found) => zones.extend(found),
                Err(e) => tracing::warn!("cannot read the zones of the subnets: {e}"),
            }
        }
        zones.clone()
    }

    pub fn new(settings: Settings, options: PassOptions) -> anyhow::Result<Agent> {
        let policy = options.retry;
        let github = GitHub::new(&settings.github, policy)?;
        let slack = match &settings.slack {
            Some(target) => Some(Slack::new(target.clone(), policy)?),
            None => None,
        };
        if let Some(var) = &settings.github.token_unset {
            tracing::warn!(
                "github.token_env names {var}, which is not set; polling without a token \
                 (60 requests an hour, and 304 answers are not free)"
            );
        }
        let state_dir =
            std::path::absolute(&settings.state_dir).unwrap_or_else(|_| settings.state_dir.clone());
        // The deployment, as its instances are tagged: every agent of a shared state is
        // one deployment. And this agent, as the lease names it: its host and state
        // directory, an id kept there, since two machines may share both names, and its
        // process, since two processes may share all three.
        let here = tags::legacy_owner(&hostname(), &state_dir);
        let me = match &settings.shared {
            Some(_) => crate::lease::holder(
                &format!("{here}#{}", agent_id(&state_dir)),
                std::process::id(),
            ),
            None => here.clone(),
        };
        let aws = Arc::new(Aws::new(&settings.aws, policy));
        Ok(Agent {
            deployment: tokio::sync::OnceCell::new(),
            here,
            store: Store::new(&settings, aws.clone(), me),
            settings,
            options,
            github,
            slack,
            aws,
            paused: Mutex::new(HashMap::new()),
            zones: Default::default(),
        })
    }

    fn is_paused(&self, watch: &Watch) -> bool {
        let mut paused = self.paused.lock().expect("pause map poisoned");
        let key = (watch.repo.clone(), watch.branch.clone());
        match paused.get(&key) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                paused.remove(&key);
                false
            }
            None => false,
        }
    }

    fn pause(&self, watch: &Watch, wait: Duration) {
        tracing::warn!(
            "{watch}: not polled for {}s, until GitHub's rate limit resets",
            wait.as_secs()
        );
        let mut paused = self.paused.lock().expect("pause map poisoned");
        paused.insert(
            (watch.repo.clone(), watch.branch.clone()),
            Instant::now() + wait,
        );
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Uses this AWS SDK config (region, credentials, endpoint) instead of one resolved
    /// from `[aws]` and the standard AWS chain.
    pub fn with_sdk_config(self, config: SdkConfig) -> Agent {
        let aws = Arc::new(Aws::with_base(
            &self.settings.aws,
            self.options.retry,
            config,
        ));
        let store = Store::new(&self.settings, aws.clone(), self.store.me().to_owned());
        Agent { aws, store, ..self }
    }

    /// This deployment, its record read or made on first use (see [`crate::deployment`]).
    async fn deployment(&self) -> anyhow::Result<&Deployment> {
        self.deployment
            .get_or_try_init(|| async {
                let name = self.settings.deployment.as_deref();
                let home = match &self.settings.shared {
                    Some(shared) => {
                        let s3 = S3::new(self.aws.base().await, &shared.url, self.aws.policy());
                        let key = shared.url.key(crate::deployment::FILE);
                        Home::S3 { s3, key }
                    }
                    None => Home::Dir(self.settings.state_dir.clone()),
                };
                Deployment::open(name, home, self.legacy_owner(), self.options.dry_run).await
            })
            .await
    }

    /// The owner versions before `deployment` tagged this state's machines with: the
    /// `state_url` of a shared state, else this host and state directory.
    fn legacy_owner(&self) -> String {
        match &self.settings.shared {
            Some(shared) => shared.url.to_string(),
            None => self.here.clone(),
        }
    }

    /// Who this deployment is on EC2. When its record can be neither read nor made (a
    /// corrupt `deployment.json`, a full disk on upgrade), the configured name and the
    /// older owner stand in, so the stop rules still hold; nothing is started then.
    async fn owners(&self) -> Owners {
        match self.deployment().await {
            Ok(d) => d.owners().clone(),
            Err(e) => {
                tracing::error!(
                    "{e:#}; judging ownership by the configured deployment and the older owner"
                );
                let legacy = self.legacy_owner();
                let mut owners =
                    Owners::new(self.settings.deployment.clone().unwrap_or(legacy.clone()));
                owners.adopted.push(legacy);
                owners
            }
        }
    }

    /// Remembers `target` as a place this deployment starts machines in (see
    /// [`Deployment::remember`]).
    async fn remember(&self, target: &Target) -> anyhow::Result<()> {
        self.deployment().await?.remember(target).await
    }

    /// The AWS clients of `target`.
    async fn clients(&self, target: &Target) -> anyhow::Result<Arc<Clients>> {
        self.aws.clients(target).await
    }

    /// Runs one pass. An error means the pass could not run at all (lock, state); failures
    /// of single watches are counted in the report instead.
    pub async fn pass(&self) -> anyhow::Result<PassReport> {
        let watches = &self.settings.watches;
        let (_lock, state) = if self.options.dry_run {
            (None, self.store.load().await?)
        } else {
            match self.open_state().await {
                Ok(Opened::Leads(lock, state)) => (lock, state),
                Ok(Opened::StandsBy) => {
                    self.clear_notice();
                    self.write_metrics(Outcome::StoodBy);
                    return Ok(PassReport {
                        watches: watches.len(),
                        ..PassReport::default()
                    });
                }
                // With a shared state another agent may lead: this one acts on nothing.
                Err(e) if self.store.is_shared() => {
                    return self.failed(self.without_shared_state(e).await);
                }
                Err(e) => return self.failed(self.without_state(e).await),
            }
        };
        match self.pass_with(state).await {
            // A local state that could be read but not written (a full disk): the stop rules
            // still hold, in this same pass.
            Err(e) if e.is::<Unsaved>() && !self.store.is_shared() => {
                self.failed(self.without_state(e).await)
            }
            Err(e) => self.failed(Err(e)),
            done => done,
        }
    }

    /// A pass that could not use its state: the textfile says so, and what it did.
    fn failed(&self, done: anyhow::Result<PassReport>) -> anyhow::Result<PassReport> {
        let failed = done
            .as_ref()
            .map_or(self.settings.watches.len(), |r| r.failed);
        self.write_metrics(Outcome::Failed { failed });
        done
    }

    /// Writes the state; a failure is [`Unsaved`].
    async fn save(&self, state: &State) -> anyhow::Result<()> {
        self.store
            .save(state)
            .await
            .map_err(|e| anyhow::Error::new(Unsaved(e)))
    }

    /// The pass, once its state is open: poll, open runs, turns, orphans, messages.
    async fn pass_with(&self, mut state: State) -> anyhow::Result<PassReport> {
        let watches = &self.settings.watches;
        let polls: Vec<_> = stream::iter(watches)
            .map(|w| {
                let etag = state.get(w).and_then(|s| s.etag.clone());
                async move {
                    if self.is_paused(w) {
                        return None;
                    }
                    let head = self.github.head(&w.repo, &w.branch, etag.as_deref()).await;
                    if let Err(github::Error::RateLimited { retry_after, .. }) = &head {
                        self.pause(w, retry_after.unwrap_or(RATE_LIMIT_PAUSE));
                    }
                    Some(head)
                }
            })
            .buffered(POLL_CONCURRENCY)
            .collect()
            .await;

        let now = chrono::Utc::now();
        // Per watch, by index: its new head; the error that fails it this pass; whether
        // anything of it failed.
        let mut heads: HashMap<usize, (String, Option<String>)> = HashMap::new();
        let mut errors: HashMap<usize, String> = HashMap::new();
        let mut failing = HashSet::new();
        let mut triggered = 0;
        let mut polled = Vec::new();
        for (i, (watch, poll)) in watches.iter().zip(polls).enumerate() {
            let Some(poll) = poll else {
                tracing::debug!("{watch}: skipped until GitHub's rate limit resets");
                continue;
            };
            polled.push(i);
            let entry = state.entry(watch);
            entry.last_checked = Some(now);
            if poll.is_ok() {
                entry.last_polled = Some(now);
            }
            match poll {
                Err(e) => {
                    let e = anyhow::Error::new(e);
                    tracing::error!("{watch}: cannot poll: {e:#}");
                    errors.insert(i, format!("cannot poll: {e:#}"));
                }
                Ok(Head::Unchanged) => tracing::debug!("{watch}: unchanged"),
                Ok(Head::At { sha, etag }) if entry.last_sha.as_ref() == Some(&sha) => {
                    tracing::debug!("{watch}: unchanged at {}", short(&sha));
                    entry.etag = etag;
                }
                Ok(Head::At { sha, etag })
                    if entry.last_sha.is_none()
                        && self.settings.first_run == FirstRun::Baseline =>
                {
                    tracing::info!(
                        "{watch}: first look, recording {} as the baseline; nothing started",
                        short(&sha)
                    );
                    if self.options.dry_run {
                        println!("{watch}: would record {} as the baseline", short(&sha));
                    }
                    entry.record(sha, etag);
                }
                Ok(Head::At { sha, etag }) => {
                    heads.insert(i, (sha, etag));
                }
            }
        }
        if self.options.dry_run {
            self.dry_run(state, &heads).await;
            return Ok(PassReport {
                watches: watches.len(),
                ..PassReport::default()
            });
        }

        // New heads open runs; what they start is decided with the watch's other runs below.
        let mut opened = HashMap::new();
        for (&i, (sha, etag)) in &heads {
            let watch = &watches[i];
            match self.open(&mut state, watch, sha).await {
                Opening::Run(commit) => {
                    opened.insert(i, commit);
                }
                Opening::Open => {}
                Opening::Nothing => {
                    state.entry(watch).record(sha.clone(), etag.clone());
                    triggered += 1;
                }
            }
        }
        // Saved before any EC2 call: a run, once opened, is never lost. An unchanged pass
        // writes its state once, at the end.
        if !heads.is_empty() {
            self.save(&state).await?;
        }

        let mut messages = Vec::new();
        let mut spoke = HashSet::new();
        for (i, watch) in watches.iter().enumerate() {
            let recorded = state.get(watch).and_then(|s| s.last_sha.clone());
            let head = heads
                .remove(&i)
                .filter(|(sha, _)| recorded.as_ref() != Some(sha));
            if head.is_none() && !needs_turn(watch, &state) {
                continue;
            }
            match self.turn(&mut state, watch, head, opened.remove(&i)).await {
                Ok(turn) => {
                    triggered += usize::from(turn.recorded);
                    if turn.failed {
                        failing.insert(i);
                    }
                    if let Some(e) = turn.error {
                        errors.insert(i, e);
                    }
                    if turn.spoke {
                        spoke.insert(i);
                    }
                }
                Err(e) => {
                    tracing::error!("{watch}: cannot tend its runs and instances: {e:#}");
                    errors.insert(i, format!("cannot tend its runs and instances: {e:#}"));
                }
            }
            self.save(&state).await?;
        }

        // A watch is failing while its poll or its turn fails, and works again when both
        // do; a message about its runs says so well enough. Watches failing for the same
        // cause (GitHub down, the token) share one message, and so do recoveries.
        let mut started_failing: BTreeMap<&str, Vec<&Watch>> = BTreeMap::new();
        let mut recovered = Vec::new();
        for i in polled {
            let (watch, entry) = (&watches[i], state.entry(&watches[i]));
            match errors.get(&i) {
                Some(e) if fail(entry, e) => started_failing.entry(e).or_default().push(watch),
                Some(_) => {}
                None if recover(entry) && !spoke.contains(&i) => recovered.push(watch),
                None => {}
            }
        }
        let mut notices: Vec<String> = started_failing
            .iter()
            .map(|(error, watches)| report::failing(watches, error))
            .collect();
        if !recovered.is_empty() {
            notices.push(report::recovered(&recovered));
        }
        // Orphans are looked for on passes that tend machines anyway, and after an edit of
        // the watches (the only way an instance loses its watch); not on a first pass.
        let ownership = self.settings.ownership_fingerprint();
        let edited = state.ownership.as_ref().is_some_and(|o| *o != ownership);
        let mut orphan_errors = 0;
        if edited || self.settings.max_runtime.is_some() || watches.iter().any(Watch::stops) {
            let places = state.places.clone();
            let orphans = self.orphans(Some(&mut state.orphans), &places).await;
            messages.extend(orphans.messages);
            orphan_errors = usize::from(!orphans.errors.is_empty());
            if orphans.errors.is_empty() {
                state.ownership = Some(ownership);
            }
        } else {
            state.ownership = Some(ownership);
        }
        failing.extend(errors.keys().copied());
        self.save(&state).await?;
        self.clear_notice();
        // Slack gets a few seconds in all: a notice it did not take by then is logged, and
        // the runs' messages and verdicts stay owed for the next pass.
        let budget = tokio::time::Instant::now() + SLACK_BUDGET;
        notices.extend(messages);
        self.post_all(notices, budget).await;
        self.post_duties(&mut state, budget).await?;
        let failed = failing.len() + orphan_errors;
        self.write_metrics(Outcome::Led {
            state: &state,
            failed,
        });
        Ok(PassReport {
            watches: watches.len(),
            failed,
            triggered,
        })
    }

    /// Writes the Prometheus textfile, if one is configured, with how the pass ended. A
    /// failure is logged; the pass itself did its work.
    fn write_metrics(&self, outcome: Outcome) {
        let Some(path) = &self.settings.textfile else {
            return;
        };
        let pass = crate::metrics::Pass {
            settings: &self.settings,
            outcome,
            at: chrono::Utc::now(),
        };
        if let Err(e) = crate::metrics::write(path, &crate::metrics::render(&pass)) {
            tracing::warn!("cannot write the metrics to {}: {e}", path.display());
        }
    }

    /// Makes sure the state directory can be written, takes the pass lock, and, unless
    /// another agent leads a shared state, reads the state.
    async fn open_state(&self) -> anyhow::Result<Opened> {
        let dir = self.store.dir();
        dir.prepare()?;
        let lock = dir.lock(LOCK_WAIT).await?;
        match self.store.lead().await? {
            Standing::Leads { generation, fresh } => {
                if fresh && self.store.is_shared() {
                    tracing::info!("leading the shared state (lease generation {generation})");
                }
                Ok(Opened::Leads(Some(lock), self.store.load().await?))
            }
            Standing::StandsBy(crate::lease::Leader {
                holder,
                since,
                lapses,
            }) => {
                let since = since.map(|t| format!(" since {}", crate::rfc3339(t)));
                tracing::info!(
                    "standing by: {holder} leads{}; taking over if its lease is not renewed \
                     by {}",
                    since.unwrap_or_default(),
                    crate::rfc3339(lapses)
                );
                Ok(Opened::StandsBy)
            }
        }
    }

    /// Opens a run for a new head, unless it starts nothing: a skip marker, no watched path
    /// touched, or a commit this watch already ran.
    async fn open(&self, state: &mut State, watch: &Watch, sha: &str) -> Opening {
        let runs = state
            .get(watch)
            .map(|s| s.runs.as_slice())
            .unwrap_or_default();
        if runs.iter().any(|r| r.is_open() && r.commit == sha) {
            return Opening::Open;
        }
        if runs
            .iter()
            .any(|r| r.commit == sha && r.superseded_by.is_none())
        {
            tracing::info!(
                "{watch}: new head {} already ran on this watch; starts nothing",
                short(sha)
            );
            return Opening::Nothing;
        }
        let commit = self.commit(watch, sha).await;
        let base = state.get(watch).and_then(|s| s.last_sha.clone());
        if let Some(why) = self.filtered(watch, &commit, base.as_deref()).await {
            tracing::info!("{watch}: new head {}: starts nothing, {why}", short(sha));
            return Opening::Nothing;
        }
        let mut run = Run::open(sha, &commit.title, chrono::Utc::now());
        // Owed its pull requests from the start, even if it closes in this turn (a start
        // the budget refuses, every machine skipped).
        if self.settings.github.pull_request_comment {
            run.review = Some(crate::state::Review::default());
        }
        state.entry(watch).push_run(run);
        Opening::Run(commit)
    }

    /// Commit details make the message readable but are not needed to start anything: a
    /// failure here is logged and the message shows the bare SHA.
    async fn commit(&self, watch: &Watch, sha: &str) -> Commit {
        match self.github.commit(&watch.repo, sha).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{watch}: cannot fetch details of {}: {e}", short(sha));
                Commit {
                    sha: sha.to_owned(),
                    message: String::new(),
                    title: String::new(),
                    author: String::new(),
                    url: String::new(),
                }
            }
        }
    }

    /// Why a new head starts nothing, if it does not: a skip marker in its message, or no
    /// change to the watched paths. When it cannot tell (no base, a force-push, a list cut
    /// short, GitHub failing), it starts: a needless start costs less than a lost run.
    async fn filtered(&self, watch: &Watch, commit: &Commit, base: Option<&str>) -> Option<String> {
        if let Some(marker) = watch
            .skip_markers
            .iter()
            .find(|m| commit.message.contains(m.as_str()))
        {
            return Some(format!("its message holds {marker:?}"));
        }
        let (paths, base) = (watch.paths.as_ref()?, base?);
        match self.github.compare(&watch.repo, base, &commit.sha).await {
            Ok(c) if !c.is_exact() => {
                tracing::info!(
                    "{watch}: cannot tell which paths {} changed ({}); starting",
                    short(&commit.sha),
                    c.status
                );
                None
            }
            Ok(c) if c.files.iter().any(|f| paths.matches(f)) => None,
            Ok(_) => Some(format!("it touches none of {}", paths.patterns.join(", "))),
            Err(e) => {
                tracing::warn!(
                    "{watch}: cannot compare {} with {}, starting: {e}",
                    short(base),
                    short(&commit.sha)
                );
                None
            }
        }
    }
}

/// This agent's id, kept in its state directory so that a `--once` from cron takes its
/// lease back from its previous run at once (the lease names the process too, see
/// `lease::holder`); a fresh one each run when it cannot be kept.
fn agent_id(state_dir: &std::path::Path) -> String {
    let path = state_dir.join("agent-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return id.trim().to_owned();
    }
    let id = format!("{:016x}", fastrand::u64(..));
    let _ = std::fs::create_dir_all(state_dir).and_then(|_| std::fs::write(&path, &id));
    id
}

/// This machine's name, for the owner tag.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A save of the state that failed during a pass.
#[derive(Debug)]
struct Unsaved(anyhow::Error);

impl std::fmt::Display for Unsaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Unsaved {}

/// What a new head amounts to.
enum Opening {
    /// A run was opened for it; the commit's details are for its first message.
    Run(Commit),
    /// Its run is open already (an earlier pass could not finish starting it).
    Open,
    /// It starts nothing; it is recorded as handled.
    Nothing,
}
