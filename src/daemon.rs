//! The long-running loop: a pass every `interval` (jittered), until told to stop.
//!
//! Signals are turned into [`Control`] messages by the binary, so the loop itself can be
//! driven by tests. Under systemd (`Type=notify`) it reports READY=1 once the config is
//! loaded, RELOADING=1 around a reload, STOPPING=1 on the way out, and pings the watchdog
//! from the loop itself, so a loop that hangs stops pinging and is restarted.

use std::future::Future;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::mpsc;
use tokio::time::{Interval, MissedTickBehavior};

use crate::config::Settings;
use crate::pass::{Agent, PassOptions, PassReport};
use crate::retry;

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
    let mut watchdog = Watchdog::from_env();
    tracing::info!(
        "watching {} branch(es), every {}",
        agent.settings().watches.len(),
        humantime::format_duration(agent.settings().interval)
    );
    notify(&[NotifyState::Ready]);

    loop {
        match during(agent.pass(), &mut control, &mut watchdog).await {
            Some(Control::Stop) => break,
            Some(Control::Reload) => agent = reload(agent, options),
            None => {}
        }
        let sleep = tokio::time::sleep(jitter(agent.settings().interval));
        tokio::pin!(sleep);
        let stop = loop {
            tokio::select! {
                () = &mut sleep => break false,
                () = watchdog.tick() => watchdog.ping(),
                msg = control.recv() => match msg {
                    Some(Control::Reload) => agent = reload(agent, options),
                    Some(Control::Stop) | None => break true,
                },
            }
        };
        if stop {
            break;
        }
    }
    tracing::info!("stopping");
    notify(&[NotifyState::Stopping]);
    Ok(())
}

/// Drives one pass to its end, pinging the watchdog while the pass makes progress: every
/// network call has a deadline, so a pass whose calls stop ending (see
/// [`retry::progress`]) is stuck, systemd stops hearing from it, and restarts the service.
/// A reload asked for meanwhile waits for the pass; a stop gives it [`STOP_GRACE`] to
/// finish. Returns what was asked.
async fn during(
    pass: impl Future<Output = anyhow::Result<PassReport>>,
    control: &mut mpsc::Receiver<Control>,
    watchdog: &mut Watchdog,
) -> Option<Control> {
    tokio::pin!(pass);
    let mut asked = None;
    let mut seen = retry::progress();
    let mut quiet_ticks = 0;
    loop {
        tokio::select! {
            result = &mut pass => {
                log_pass(result);
                return asked;
            }
            () = watchdog.tick() => {
                // One quiet tick is a call still within its deadline; two in a row, with
                // ticks at half the watchdog's timeout, would outlast any deadline.
                let now = retry::progress();
                quiet_ticks = if now == seen { quiet_ticks + 1 } else { 0 };
                seen = now;
                if quiet_ticks < 2 {
                    watchdog.ping();
                } else {
                    tracing::error!("the pass has made no progress for two watchdog intervals");
                }
            }
            msg = control.recv(), if asked.is_none() => match msg {
                Some(Control::Reload) => asked = Some(Control::Reload),
                Some(Control::Stop) | None => {
                    tracing::info!("stopping: letting the pass in progress finish");
                    notify(&[NotifyState::Stopping]);
                    match tokio::time::timeout(STOP_GRACE, &mut pass).await {
                        Ok(result) => log_pass(result),
                        Err(_) => tracing::warn!("pass abandoned after {STOP_GRACE:?}"),
                    }
                    return Some(Control::Stop);
                }
            },
        }
    }
}

/// Builds an agent from the config file as it is now; on any error the old one is kept.
fn reload(old: Agent, options: PassOptions) -> Agent {
    notify(&[NotifyState::Reloading]);
    let path = old.settings().path.clone();
    let fresh = Settings::load(&path)
        .map_err(anyhow::Error::new)
        .and_then(|settings| Agent::new(settings, options));
    let agent = match fresh {
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
    };
    notify(&[NotifyState::Ready]);
    agent
}

fn log_pass(result: anyhow::Result<PassReport>) {
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

/// Tells systemd how we are; a no-op outside systemd (no `$NOTIFY_SOCKET`).
fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// systemd's watchdog: pinged at half its timeout, when `WatchdogSec=` is set.
struct Watchdog {
    interval: Option<Interval>,
}

impl Watchdog {
    fn from_env() -> Watchdog {
        let mut usec = 0;
        let interval = sd_notify::watchdog_enabled(false, &mut usec).then(|| {
            let mut i = tokio::time::interval(
                Duration::from_micros(usec / 2).max(Duration::from_millis(10)),
            );
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
        Watchdog { interval }
    }

    async fn tick(&mut self) {
        match &mut self.interval {
            Some(i) => {
                i.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    fn ping(&self) {
        notify(&[NotifyState::Watchdog]);
    }
}

/// The interval, give or take up to 10%, so that many agents do not poll in step.
fn jitter(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * fastrand::f64())
}
