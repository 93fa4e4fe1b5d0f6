//! The dry run: everything up to the decisions, then what would be done, printed.

use std::collections::HashMap;

use super::{Agent, Opening};
use crate::config::Watch;
use crate::ec2::Action;
use crate::launch;
use crate::plan::{self, Step};
use crate::report::{self, short};
use crate::results;
use crate::state::State;

impl Agent {
    /// Prints what a pass would do with `state` and the new `heads` (by watch index). The
    /// state is a copy: nothing is saved.
    pub(super) async fn dry_run(
        &self,
        mut state: State,
        heads: &HashMap<usize, (String, Option<String>)>,
    ) {
        let watches = &self.settings.watches;
        for (&i, (sha, _)) in heads {
            let watch = &watches[i];
            if let Opening::Nothing = self.open(&mut state, watch, sha).await {
                println!(
                    "{watch}: new head {}: would record it and start nothing",
                    short(sha)
                );
            }
        }
        for watch in watches {
            if super::needs_turn(watch, &state) {
                self.dry_turn(&mut state, watch).await;
            }
        }
    }

    async fn dry_turn(&self, state: &mut State, watch: &Watch) {
        let clients = match self.clients(&watch.target).await {
            Ok(c) => c,
            Err(e) => return println!("{watch}: {e:#}"),
        };
        let ec2 = &clients.ec2;
        let owners = match self.deployment().await {
            Ok(d) => d.owners(),
            Err(e) => return println!("{watch}: {e:#}"),
        };
        let launches = super::launches(watch, state);
        let members = match launch::members(ec2, watch, owners, launches).await {
            Ok(m) => m,
            Err(e) => return println!("{watch}: cannot describe instances: {e}"),
        };
        let now = chrono::Utc::now();
        let entry = state.entry(watch);
        let mut reported = Vec::new();
        if let Some(spec) = &watch.results {
            let harvest = results::harvest(&mut entry.runs, &members, spec, now);
            for &i in &harvest.completed {
                let verdict = report::verdict(watch, spec, &entry.runs, i, now);
                println!("{watch}: would post\n{verdict}");
            }
            if spec.stop_when_reported {
                reported = harvest.reported;
            }
        }
        match self
            .due(&clients, watch, owners, &members, &reported, ec2.now())
            .await
        {
            Ok(judged) => {
                for d in judged.due {
                    println!("{watch}: would stop {} ({})", d.id, d.why);
                }
                for e in judged.errors {
                    println!("{watch}: {e}");
                }
            }
            Err(e) => println!("{watch}: cannot check the stop rules: {e:#}"),
        }
        let starter = crate::state::starter(&entry.runs);
        let open: Vec<_> = entry
            .runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_open())
            .collect();
        let mut to_start = Vec::new();
        for &(n, run) in &open {
            println!(
                "{watch}: run of {} \"{}\"; dry run, nothing changed",
                short(&run.commit),
                run.title
            );
            let cx = plan::Context {
                watch,
                newest: Some(n) == starter,
                now,
                owners,
                refused: &entry.refused,
            };
            let mut run = run.clone();
            plan::fix_repeats(&mut run, watch, members.ids.len());
            let plan = plan::plan(&run, &members, cx);
            for (id, step) in plan.steps {
                if step.starts() {
                    to_start.push(id.clone());
                }
                println!("  {id}: {}", describe(&step, &run.commit));
            }
            if let (Some(l), false) = (&watch.launch, plan.launch.is_empty()) {
                let repeats: Vec<String> =
                    plan.launch.iter().map(|w| w.repeat.to_string()).collect();
                println!(
                    "  would launch repeats {} from {} ({})",
                    repeats.join(", "),
                    l.template,
                    l.market
                );
            }
        }
        // EC2's DryRun flag says whether the real thing would be allowed.
        if !to_start.is_empty() {
            for action in [Action::CreateTags, Action::StartInstances] {
                if let Err(e) = ec2.permitted(action, &to_start).await {
                    println!("  but: {e}");
                }
            }
        }
        if self.slack.is_some() && !open.is_empty() {
            println!("  would post to Slack about what changed");
        }
    }
}

/// A step, in the words of the dry run.
fn describe(step: &Step, commit: &str) -> String {
    let tag = format!("{}={commit}", crate::tags::COMMIT);
    let what = match step {
        Step::Start { .. } => format!("would tag it {tag} and start it"),
        Step::StartWhenStopped { .. } => {
            format!("would wait for it to stop, tag it {tag} and start it")
        }
        Step::Supersede { commit: old, .. } => {
            format!(
                "would stop it (running `{}`), tag it {tag} and start it",
                short(old)
            )
        }
        Step::Confirm { at, .. } => format!("started for it at {at}"),
        Step::Set(part) => format!("{part}"),
    };
    match step.start_repeat() {
        Some(k) => format!("{what}, as repeat {k} ({}={k})", crate::tags::REPEAT),
        None => what,
    }
}
