//! Starting one watch's instances for one trigger.
//!
//! One `DescribeInstances` finds out where each instance stands; one `StartInstances` starts
//! the stopped ones. Running ones are left alone, stopping ones are waited for (bounded)
//! and then started, and terminated or unknown ids are reported without holding up the
//! rest. When EC2 fails a batch because of one instance, the batch is retried one instance
//! at a time so that the good ones still start.

use std::collections::HashMap;
use std::time::Duration;

use crate::ec2::{self, Ec2, State};

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

/// Starts whatever of `ids` is stopped. Fails as a whole only when the instances could not
/// even be described.
pub async fn start(ec2: &Ec2, ids: &[String], opts: Options) -> Result<Launch, ec2::Error> {
    let described = ec2.describe(ids).await?;
    let states: HashMap<&str, &State> = described
        .iter()
        .map(|i| (i.id.as_str(), &i.state))
        .collect();

    let mut launch = Launch::default();
    let mut to_start = Vec::new();
    let mut stopping = Vec::new();
    for id in ids {
        let outcome = match states.get(id.as_str()) {
            None => Outcome::Gone("not found in this account and region".into()),
            Some(State::Stopped) => {
                to_start.push(id.clone());
                Outcome::Started
            }
            Some(State::Stopping) => {
                stopping.push(id.clone());
                Outcome::Failed("still stopping".into())
            }
            Some(s @ (State::Pending | State::Running)) => Outcome::AlreadyUp((*s).clone()),
            Some(s @ (State::Terminated | State::ShuttingDown)) => Outcome::Gone(s.to_string()),
            Some(s) => Outcome::Failed(format!("in state {s}")),
        };
        launch.instances.push((id.clone(), outcome));
    }

    start_batch(ec2, &to_start, &mut launch).await;
    if !stopping.is_empty() {
        wait_and_start(ec2, stopping, opts, &mut launch).await;
    }
    Ok(launch)
}

/// Waits, bounded, for stopping instances to reach `stopped`, and starts them.
async fn wait_and_start(ec2: &Ec2, mut waiting: Vec<String>, opts: Options, launch: &mut Launch) {
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
        start_batch(ec2, &ready, launch).await;
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

/// Starts `ids` in one call; when EC2 refuses the batch because of one of them, starts them
/// one by one so the others are not held up.
async fn start_batch(ec2: &Ec2, ids: &[String], launch: &mut Launch) {
    let err = match ec2.start(ids).await {
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
        let outcome = match ec2.start(std::slice::from_ref(id)).await {
            Ok(()) => Outcome::Started,
            Err(e) => outcome_of(&e),
        };
        launch.set(id, outcome);
    }
}

fn outcome_of(err: &ec2::Error) -> Outcome {
    match err.kind {
        ec2::Kind::NotFound => Outcome::Gone(err.to_string()),
        _ => Outcome::Failed(err.to_string()),
    }
}
