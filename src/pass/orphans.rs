//! Orphans: running instances this deployment started that no watch owns any more (their
//! watch was removed or renamed, or their id or tag selector dropped from it). They are
//! found by their owner tag alone, reported once, and stopped by the top-level
//! `max_runtime`. Another deployment's instances carry another owner and are never seen.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::Agent;
use crate::aws::Clients;
use crate::config::{Target, Watch};
use crate::ec2::{Instance, InstanceState};
use crate::{launch, report, tags};

/// What looking for orphans found.
#[derive(Debug, Default)]
pub(super) struct Orphans {
    pub messages: Vec<String>,
    /// What failed: the describe, or a stop.
    pub errors: Vec<String>,
}

impl Agent {
    /// Looks for orphans in one describe by the owner tag per place, reports each once
    /// (`reported` holds those already reported; `None` when there is no state to remember
    /// them in), and stops those past the top-level `max_runtime`. The places are every
    /// region and account a watch reaches, the default one, `places` (the state's), and
    /// those in the deployment's own record: a watch removed from the config, or a region
    /// no watch names any more, still has its machines looked after.
    pub(super) async fn orphans(
        &self,
        reported: Option<&mut BTreeSet<String>>,
        places: &BTreeSet<Target>,
    ) -> Orphans {
        let mut out = Orphans::default();
        let owners = &self.owners().await;
        let mut targets: BTreeSet<Target> = BTreeSet::from([Target::default()]);
        targets.extend(self.settings.watches.iter().map(|w| w.target.clone()));
        targets.extend(places.iter().cloned());
        if let Ok(deployment) = self.deployment().await {
            targets.extend(deployment.places().await);
        }
        let mut orphans: Vec<(Arc<Clients>, Instance)> = Vec::new();
        for target in &targets {
            let found = match self.clients(target).await {
                Ok(clients) => match clients
                    .ec2
                    .describe_tag_in(tags::OWNER, &owners.all())
                    .await
                {
                    Ok(found) => Ok(found
                        .into_iter()
                        .map(|i| (clients.clone(), i))
                        .collect::<Vec<_>>()),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(format!("{e:#}")),
            };
            match found {
                Ok(found) => orphans.extend(found),
                Err(e) => {
                    out.errors
                        .push(format!("cannot look for orphaned instances: {e}"));
                    return out;
                }
            }
        }
        // A watch may name the default region or account explicitly: one instance, once.
        let mut seen = BTreeSet::new();
        orphans.retain(|(_, i)| seen.insert(i.id.clone()));
        orphans.retain(|(_, i)| {
            i.state == InstanceState::Running
                && tags::started(i, owners).is_some()
                && !self.settings.watches.iter().any(|w| owns(w, i))
        });
        let max = self.settings.max_runtime;
        if let Some(seen) = reported {
            seen.retain(|id| orphans.iter().any(|(_, i)| i.id == *id));
            for (_, i) in &orphans {
                if seen.insert(i.id.clone()) {
                    tracing::warn!("{}: no watch owns it any more", i.id);
                    out.messages.push(report::orphan(i, max));
                }
            }
        }
        let Some(max) = max else {
            return out;
        };
        let mut fenced = false;
        for (clients, i) in orphans {
            let ec2 = &clients.ec2;
            let now = ec2.now();
            let started = tags::started(&i, owners).map_or(now, |s| s.at);
            let runtime = (now - started).to_std().unwrap_or_default();
            if runtime < max {
                continue;
            }
            if !fenced {
                if let Err(e) = self.store.fence().await {
                    out.errors.push(format!("{e:#}"));
                    return out;
                }
                fenced = true;
            }
            let one = std::slice::from_ref(&i.id);
            let launched: &[String] = if tags::is_launched(&i) { one } else { &[] };
            if let Some((_, e)) = launch::halt(ec2, &self.store, one, launched).await.first() {
                tracing::error!("cannot stop orphaned {}: {e}", i.id);
                out.errors
                    .push(format!("cannot stop orphaned {}: {e}", i.id));
                continue;
            }
            tracing::info!("stopped orphaned {}: top-level max_runtime reached", i.id);
            out.messages.push(report::orphan_stopped(&i, runtime, max));
            super::turn::close_starts(ec2, &self.store, &"orphans", one).await;
        }
        out
    }
}

/// Whether `watch` owns the instance: it is tagged for the watch, and the watch lists its
/// id or selects it by its tags.
fn owns(watch: &Watch, i: &Instance) -> bool {
    let selected = !watch.instance_tags.is_empty()
        && watch
            .instance_tags
            .iter()
            .all(|(k, v)| i.tags.get(k) == Some(v));
    // A machine launched for the watch is its own while the watch launches; once it no
    // longer does, the orphan rules end it.
    let launched = tags::is_launched(i) && watch.launch.is_some();
    tags::is_for(i, watch) && (watch.instances.contains(&i.id) || selected || launched)
}
