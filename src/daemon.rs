//! The long-running loop: a pass every `interval` (jittered), until told to stop.
//!
//! Signals are turned into [`Control`] messages by the binary, so the loop itself can be
//! driven by tests with paused time.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::Settings;
use crate::pass::{Agent, PassOptions};

/// How long a pass in progress may take to finish after a stop is asked for. Past that it
/// is abandoned: state files are replaced atomically, so nothing is left half-written, and
/// instances started but not yet recorded are found running by the next pass's describe.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What the operator asks of a running daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// SIGHUP: read the config again and use it from the next pass on.
    Reload,
    /// SIGTERM or SIGINT: stop.
    Stop,
}

/// Runs passes until a [`Control::Stop`] arrives or the channel closes.
pub async fn run(
    settings: Settings,
    options: PassOptions,
    mut control: mpsc::Receiver<Control>,
) -> anyhow::Result<()> {
    let mut agent = Agent::new(settings, options)?;
    tracing::info!(
        "watching {} branch(es), every {}",
        agent.settings().watches.len(),
        humantime::format_duration(agent.settings().interval)
    );
    loop {
        let asked = {
            let pass = agent.pass();
            tokio::pin!(pass);
            tokio::select! {
                result = &mut pass => {
                    log_pass(result);
                    None
                }
                msg = control.recv() => match msg {
                    Some(Control::Reload) => {
                        // A reload waits for the pass in progress; it applies from the next.
                        log_pass(pass.await);
                        Some(Control::Reload)
                    }
                    Some(Control::Stop) | None => {
                        tracing::info!("stopping: letting the pass in progress finish");
                        match tokio::time::timeout(STOP_GRACE, pass).await {
                            Ok(result) => log_pass(result),
                            Err(_) => tracing::warn!("pass abandoned after {STOP_GRACE:?}"),
                        }
                        Some(Control::Stop)
                    }
                },
            }
        };
        match asked {
            Some(Control::Stop) => return Ok(()),
            Some(Control::Reload) => agent = reload(agent, options),
            None => {}
        }

        let sleep = tokio::time::sleep(jitter(agent.settings().interval));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                msg = control.recv() => match msg {
                    Some(Control::Reload) => agent = reload(agent, options),
                    Some(Control::Stop) | None => {
                        tracing::info!("stopping");
                        return Ok(());
                    }
                },
            }
        }
    }
}

/// Builds an agent from the config file as it is now; on any error the old one is kept.
fn reload(old: Agent, options: PassOptions) -> Agent {
    let path = old.settings().path.clone();
    let fresh = Settings::load(&path)
        .map_err(anyhow::Error::new)
        .and_then(|settings| Agent::new(settings, options));
    match fresh {
        Ok(agent) => {
            tracing::info!(
                "reloaded {}: watching {} branch(es)",
                path.display(),
                agent.settings().watches.len()
            );
            agent
        }
        Err(e) => {
            tracing::error!("reload failed, keeping the running config: {e:#}");
            old
        }
    }
}

fn log_pass(result: anyhow::Result<crate::pass::PassReport>) {
    match result {
        Ok(r) if r.failed > 0 => {
            tracing::warn!("pass done: {} of {} watch(es) failed", r.failed, r.watches)
        }
        Ok(r) => tracing::debug!(
            "pass done: {} watch(es), {} triggered",
            r.watches,
            r.triggered
        ),
        Err(e) => tracing::error!("pass failed: {e:#}"),
    }
}

/// The interval, give or take up to 10%, so that many agents do not poll in step.
fn jitter(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * fastrand::f64())
}
