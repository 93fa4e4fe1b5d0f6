//! Starting one watch's instances for one trigger.
//!
//! One `DescribeInstances` finds out where each instance stands; one `StartInstances` starts
//! the stopped ones. Running ones are left alone, stopping ones are waited for (bounded)
//! and then started, and terminated or unknown ids are reported without holding up the
//! rest. When EC2 fails a batch because of one instance, the batch is retried one instance
//! at a time so that the good ones still start.

use std::time::Duration;

use crate::config::Watch;
use crate::ec2::{self, Ec2, Instance, State};

/// How long to wait for instances that are still stopping.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub stopping_wait: Duration,
    pub stopping_poll: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stopping_wait: Duration::from_secs(120),
            stopping_poll: Duration::from_secs(5),
        }
    }
}

/// What happened to one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `StartInstances` accepted it.
    Started,
    /// It was already pending or running; nothing was done.
    AlreadyUp(State),
    /// It is terminated or does not exist. Reported, but not worth another attempt.
    Gone(String),
    /// It could not be started this time; the next pass tries again.
    Failed(String),
}

/// The outcome of one trigger, per instance, in the order of the configured ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launch {
    pub instances: Vec<(String, Outcome)>,
}

impl Launch {
    /// True when some instance should be tried again by the next pass: the head must then
    /// stay unhandled.
    pub fn needs_retry(&self) -> bool {
        self.instances
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Failed(_)))
    }

    /// The ids whose outcome matches `pred`.
    pub fn ids(&self, pred: impl Fn(&Outcome) -> bool) -> Vec<&str> {
        self.instances
            .iter()
            .filter(|(_, o)| pred(o))
            .map(|(id, _)| id.as_str())
            .collect()
    }

    fn set(&mut self, id: &str, outcome: Outcome) {
        if let Some(slot) = self.instances.iter_mut().find(|(i, _)| i == id) {
            slot.1 = outcome;
        }
    }
}

/// A watch's instances as EC2 describes them.
#[derive(Debug, Clone, Default)]
pub struct Members {
    /// The configured ids in order, then those selected by tags, by id.
    pub ids: Vec<String>,
    /// What EC2 knows of them; an unknown configured id has no entry.
    pub described: Vec<Instance>,
}

impl Members {
    pub fn get(&self, id: &str) -> Option<&Instance> {
        self.described.iter().find(|i| i.id == id)
    }
}

/// Describes the watch's instances: one call for its ids, one for its tags.
pub async fn members(ec2: &Ec2, watch: &Watch) -> Result<Members, ec2::Error> {
    let mut members = Members {
        ids: watch.instances.clone(),
        described: ec2.describe(&watch.instances).await?,
    };
    if !watch.instance_tags.is_empty() {
        let mut tagged = ec2.describe_tagged(&watch.instance_tags).await?;
        tagged.sort_by(|a, b| a.id.cmp(&b.id));
        for instance in tagged {
            if !members.ids.contains(&instance.id) {
                members.ids.push(instance.id.clone());
                members.described.push(instance);
            }
        }
    }
    Ok(members)
}

/// Tags and starts whatever of the watch's instances is stopped. Fails as a whole only when
/// the instances could not even be described.
pub async fn start(
    ec2: &Ec2,
    watch: &Watch,
    stamp: &[(&str, &str)],
    opts: Options,
) -> Result<Launch, ec2::Error> {
    let members = members(ec2, watch).await?;
    let mut launch = Launch::default();
    let mut to_start = Vec::new();
    let mut stopping = Vec::new();
    for id in &members.ids {
        let outcome = match members.get(id).map(|i| &i.state) {
            None => Outcome::Gone("not found in this account and region".into()),
            Some(State::Stopped) => {
                to_start.push(id.clone());
                Outcome::Started
            }
            Some(State::Stopping) => {
                stopping.push(id.clone());
                Outcome::Failed("still stopping".into())
            }
            Some(s @ (State::Pending | State::Running)) => Outcome::AlreadyUp(s.clone()),
            Some(s @ (State::Terminated | State::ShuttingDown)) => Outcome::Gone(s.to_string()),
            Some(s) => Outcome::Failed(format!("in state {s}")),
        };
        launch.instances.push((id.clone(), outcome));
    }

    let batch = Batch { ec2, stamp };
    batch.start(&to_start, &mut launch).await;
    if !stopping.is_empty() {
        wait_and_start(&batch, stopping, opts, &mut launch).await;
    }
    Ok(launch)
}

/// Waits, bounded, for stopping instances to reach `stopped`, and starts them.
async fn wait_and_start(
    batch: &Batch<'_>,
    mut waiting: Vec<String>,
    opts: Options,
    launch: &mut Launch,
) {
    let ec2 = batch.ec2;
    let deadline = tokio::time::Instant::now() + opts.stopping_wait;
    tracing::info!(
        "waiting up to {}s for {} to finish stopping",
        opts.stopping_wait.as_secs(),
        waiting.join(", ")
    );
    while !waiting.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(opts.stopping_poll).await;
        let now = match ec2.describe(&waiting).await {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!("cannot describe stopping instances: {e}");
                continue;
            }
        };
        let mut ready = Vec::new();
        waiting.retain(
            |id| match now.iter().find(|i| &i.id == id).map(|i| &i.state) {
                Some(State::Stopping) => true,
                Some(State::Stopped) => {
                    ready.push(id.clone());
                    false
                }
                Some(s @ (State::Pending | State::Running)) => {
                    launch.set(id, Outcome::AlreadyUp(s.clone()));
                    false
                }
                Some(s) => {
                    launch.set(id, Outcome::Gone(s.to_string()));
                    false
                }
                None => {
                    launch.set(id, Outcome::Gone("no longer exists".into()));
                    false
                }
            },
        );
        for id in &ready {
            launch.set(id, Outcome::Started);
        }
        batch.start(&ready, launch).await;
    }
    for id in waiting {
        launch.set(
            &id,
            Outcome::Failed(format!(
                "still stopping after {}s; the next pass starts it",
                opts.stopping_wait.as_secs()
            )),
        );
    }
}

/// Tags instances, then starts them.
struct Batch<'a> {
    ec2: &'a Ec2,
    stamp: &'a [(&'a str, &'a str)],
}

impl Batch<'_> {
    /// Tags `ids` and starts them, each in one call. An instance that could not be tagged
    /// is not started: its job would not know its commit, nor pushwake that it started it.
    /// When EC2 refuses the start because of one instance, they are started one by one so
    /// the others are not held up.
    async fn start(&self, ids: &[String], launch: &mut Launch) {
        if ids.is_empty() {
            return;
        }
        if let Err(e) = self.ec2.tag(ids, self.stamp).await {
            for id in ids {
                launch.set(
                    id,
                    Outcome::Failed(format!("not started, cannot tag it: {e}")),
                );
            }
            return;
        }
        let err = match self.ec2.start(ids).await {
            Ok(()) => return,
            Err(e) => e,
        };
        let per_instance = matches!(
            err.kind,
            ec2::Kind::NotFound | ec2::Kind::IncorrectState | ec2::Kind::Capacity
        );
        if !per_instance || ids.len() == 1 {
            for id in ids {
                launch.set(id, outcome_of(&err));
            }
            return;
        }
        tracing::info!("starting one by one after the batch failed: {err}");
        for id in ids {
            let outcome = match self.ec2.start(std::slice::from_ref(id)).await {
                Ok(()) => Outcome::Started,
                Err(e) => outcome_of(&e),
            };
            launch.set(id, outcome);
        }
    }
}

fn outcome_of(err: &ec2::Error) -> Outcome {
    match err.kind {
        ec2::Kind::NotFound => Outcome::Gone(err.to_string()),
        _ => Outcome::Failed(err.to_string()),
    }
}
