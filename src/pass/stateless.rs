//! A pass without its state: when the state file cannot be read or written (a full disk,
//! a corrupt file, a root-owned file left by `sudo pushwake --once`), the stop rules still
//! apply, because they need only the instances' tags. Nothing else is done: no poll, no
//! start, no run is touched (when a save failed during a pass, what that pass did before
//! stays done, and is not recorded).

use std::path::PathBuf;

use super::{Agent, PassReport};
use crate::launch;
use crate::report;
use crate::state::WatchState;
use crate::tags;

impl Agent {
    /// Applies `max_runtime` and `idle_stop` to the instances tagged for each watch, and
    /// the top-level `max_runtime` to orphans; says so on Slack once; and returns `error`,
    /// so the pass still fails.
    pub(super) async fn without_state(&self, error: anyhow::Error) -> anyhow::Result<PassReport> {
        tracing::error!("{error:#}; applying the stop rules only");
        let mut messages = Vec::new();
        let stopping: Vec<_> = self.settings.watches.iter().filter(|w| w.stops()).collect();
        // Read once, and only when some watch has a stop rule to apply.
        let owners = match stopping.is_empty() {
            true => tags::Owners::new(String::new()),
            false => self.owners().await,
        };
        for watch in stopping {
            let clients = match self.clients(&watch.target).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("{watch}: {e:#}");
                    continue;
                }
            };
            let ec2 = &clients.ec2;
            let launched = watch.launch.is_some();
            let mut members = match launch::members(ec2, watch, &owners, launched).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!("{watch}: cannot describe instances: {e}");
                    continue;
                }
            };
            let judged = match self
                .due(&clients, watch, &owners, &members, &[], ec2.now())
                .await
            {
                Ok(judged) => judged,
                Err(e) => {
                    tracing::error!("{watch}: cannot apply the stop rules: {e:#}");
                    continue;
                }
            };
            // Duties in a throw-away state: carried out now, or left to the rules again.
            let mut scratch = WatchState::new(watch);
            scratch.duties = judged.due.into_iter().map(super::turn::stop_duty).collect();
            let mut told = Vec::new();
            self.stop_duties(ec2, watch, &mut scratch, &mut members, &mut told)
                .await;
            messages.extend(told.into_iter().map(|m| m.text));
        }
        if self.settings.max_runtime.is_some() {
            // The places come from the deployment's own record, which outlives the state.
            messages.extend(self.orphans(None, &Default::default()).await.messages);
        }
        if self.first_notice() {
            messages.insert(0, report::stateless(&format!("{error:#}")));
        }
        let budget = tokio::time::Instant::now() + super::notify::SLACK_BUDGET;
        self.post_all(messages, budget).await;
        Err(error)
    }

    /// With the shared state out of reach or unusable (S3 down or refusing, the state
    /// corrupt, the local directory unwritable), acts on nothing: another agent may lead,
    /// and nothing this one did could be recorded. Says so on Slack once, and returns
    /// `error`.
    pub(super) async fn without_shared_state(
        &self,
        error: anyhow::Error,
    ) -> anyhow::Result<PassReport> {
        tracing::error!("{error:#}; acting on nothing until the shared state can be used");
        if self.first_notice() {
            let budget = tokio::time::Instant::now() + super::notify::SLACK_BUDGET;
            let text = report::shared_unreachable(&format!("{error:#}"));
            self.post_all(vec![text], budget).await;
        }
        Err(error)
    }

    /// Whether this is the first pass in a row without its state, so Slack hears of it
    /// once. Remembered in a marker file beside the state, or in the temporary directory
    /// when the state directory cannot be written either.
    fn first_notice(&self) -> bool {
        let created = |path: PathBuf| {
            std::fs::File::create_new(&path)
                .map(|_| true)
                .map_err(|e| e.kind() == std::io::ErrorKind::AlreadyExists)
        };
        let [beside, temp] = self.notice_markers();
        match created(beside) {
            Ok(first) => first,
            Err(true) => false,
            Err(false) => created(temp).unwrap_or_else(|exists| !exists),
        }
    }

    /// Forgets the notice, once a pass could use its state again.
    pub(super) fn clear_notice(&self) {
        for marker in self.notice_markers() {
            let _ = std::fs::remove_file(marker);
        }
    }

    fn notice_markers(&self) -> [PathBuf; 2] {
        let name = self
            .here
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>();
        [
            self.settings.state_dir.join(".stateless-notice"),
            std::env::temp_dir().join(format!("pushwake-{name}.stateless-notice")),
        ]
    }
}
