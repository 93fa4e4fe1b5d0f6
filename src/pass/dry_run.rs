//! The dry run: everything up to the decision, then what would be done, printed.

use super::Agent;
use crate::config::Watch;
use crate::ec2::Action;
use crate::launch;
use crate::report::short;
use crate::state::State;
use crate::{results, tags};

impl Agent {
    pub(super) async fn dry_run_stops(&self, state: &State, watch: &Watch) {
        let members = match launch::members(self.ec2().await, watch).await {
            Ok(m) => m,
            Err(e) => return println!("{watch}: cannot describe instances: {e}"),
        };
        // A harvest on a copy: the dry run changes no state.
        let mut reported = Vec::new();
        if let (Some(results), Some(ws)) = (&watch.results, state.get(watch)) {
            let mut runs = ws.runs.clone();
            let harvest = results::harvest(&mut runs, &members, results, chrono::Utc::now());
            for &i in &harvest.completed {
                println!(
                    "{watch}: would post\n{}",
                    results::verdict(watch, results, &runs, i)
                );
            }
            if results.stop_when_reported {
                reported = harvest.reported;
            }
        }
        match self.due(watch, &members, &reported).await {
            Ok(due) => {
                for d in due {
                    println!("{watch}: would stop {} ({})", d.id, d.reason);
                }
            }
            Err(e) => println!("{watch}: cannot check the stop rules: {e:#}"),
        }
    }

    pub(super) async fn dry_run(&self, watch: &Watch, sha: &str, base: Option<&str>) {
        let commit = self.commit(watch, sha).await;
        println!(
            "{watch}: new head {} \"{}\"; dry run, nothing changed",
            short(sha),
            commit.title
        );
        if let Some(why) = self.filtered(watch, &commit, base).await {
            return println!("  would record it and start nothing: {why}");
        }
        let ec2 = self.ec2().await;
        let members = match launch::members(ec2, watch).await {
            Ok(m) => m,
            Err(e) => return println!("  cannot describe instances: {e}"),
        };
        let mut to_start = Vec::new();
        for id in &members.ids {
            match members.get(id) {
                Some(i) if i.state == crate::ec2::State::Stopped => {
                    println!("  would tag {id} with {}={sha} and start it", tags::COMMIT);
                    to_start.push(id.clone());
                }
                Some(i) => println!("  would leave {id} alone ({})", i.state),
                None => println!("  {id} not found"),
            }
        }
        // EC2's DryRun flag says whether the real thing would be allowed.
        for action in [Action::CreateTags, Action::StartInstances] {
            if let (false, Err(e)) = (to_start.is_empty(), ec2.permitted(action, &to_start).await) {
                println!("  but: {e}");
            }
        }
        if self.slack.is_some() {
            println!("  would post to Slack about {}", short(sha));
        }
    }
}
