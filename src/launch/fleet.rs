//! Launching from the watch's template: the repeats the pool could not place, in as few
//! EC2 Fleet calls as there are markets to try (SPEC §10).
//!
//! One instant fleet is asked for the whole batch, offered every placement
//! ([`placement::overrides`]) in one call; EC2 picks where it has room and names what it
//! refused (an `errorSet`), which is remembered so the next call skips it. With
//! `spot-then-on-demand`, what spot could not place is asked on demand in the same pass.
//! Machines are tagged at launch (`TagSpecifications`): the commit, the owner, the start,
//! the template; each machine's repeat, which differs per machine, right after, a few
//! calls at once. A machine whose repeat tag failed is still the run's: the next look
//! gives it the lowest free repeat and tags it then.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Fence, fenced, tag_repeats};
use crate::config::Launch;
use crate::ec2::{self, Ec2, FleetRequest, Market};
use crate::placement::{self, Place, Refused, Wanted};

/// One machine launched, and the repeat it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Launched {
    pub id: String,
    pub repeat: u32,
    pub place: Place,
}

/// What a launch did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub launched: Vec<Launched>,
    /// Placements EC2 refused for capacity.
    pub refused: Vec<Refusal>,
    /// Repeats nothing was launched for: they wait for the next pass.
    pub waiting: Vec<u32>,
    /// A call that failed whole (a bad template, a permission, the fence), in words.
    pub failed: Vec<String>,
    /// The instance type the run now has, when it had none.
    pub instance_type: Option<String>,
}

/// A placement EC2 refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Its name in the state's cache ([`placement::key`]).
    pub key: String,
    /// Where: the subnet's zone, else the subnet.
    pub zone: String,
    pub instance_type: Option<String>,
    pub market: Market,
    pub why: String,
}

/// Launches `wanted` from `spec`'s template: each market in turn gets what it may take
/// and is still unplaced, offered every placement not refused (`refused`, and what this
/// launch learns). `stamp` tags every machine at launch; `token` makes each call
/// idempotent, so a retried call whose answer was lost launches nothing twice.
#[allow(clippy::too_many_arguments)]
pub async fn launch(
    ec2: &Ec2,
    fence: &impl Fence,
    spec: &Launch,
    wanted: &[Wanted],
    run_type: Option<&str>,
    refused: &[Refused],
    zones: &BTreeMap<String, String>,
    stamp: &[(String, String)],
    token: &str,
    now: DateTime<Utc>,
) -> Report {
    let mut report = Report::default();
    let mut refused = refused.to_vec();
    let mut todo: Vec<Wanted> = wanted.to_vec();
    let mut run_type = run_type.map(str::to_owned);
    let markets: Vec<Market> = [Market::Spot, Market::OnDemand]
        .into_iter()
        .filter(|m| {
            todo.iter()
                .any(|w| placement::markets(spec.market, w.retry).contains(m))
        })
        .collect();
    for market in markets {
        let batch = placement::for_market(&todo, spec, market);
        if batch.is_empty() {
            continue;
        }
        let overrides = placement::overrides(spec, run_type.as_deref(), market, &refused, now);
        if overrides.is_empty() {
            continue;
        }
        let ec2 = match fenced(fence, ec2).await {
            Ok(ec2) => ec2,
            Err(why) => {
                report.failed.push(format!("not asked of EC2: {why}"));
                break;
            }
        };
        let request = FleetRequest {
            template: spec.template.clone(),
            version: spec.version.clone(),
            overrides,
            market,
            count: batch.len() as u32,
            single_type: !spec.mix_types,
            tags: stamp.to_vec(),
            client_token: None,
        };
        let request = FleetRequest {
            client_token: Some(client_token(token, &request)),
            ..request
        };
        let outcome = match ec2.create_fleet(&request).await {
            Ok(o) => o,
            Err(e) => {
                report.failed.push(e.to_string());
                continue;
            }
        };
        for r in &outcome.refused {
            let Some(subnet) = r.subnet.clone() else {
                continue;
            };
            if r.kind != ec2::Kind::Capacity {
                report.failed.push(format!("{}: {}", r.code, r.message));
                continue;
            }
            // Remembered as it was offered: EC2 may name the template's type where the
            // placement offered none, and the cache is read by what is offered.
            let offered = request.overrides.iter().find(|o| {
                o.subnet == subnet
                    && (o.instance_type.is_none() || o.instance_type == r.instance_type)
            });
            let instance_type = offered.and_then(|o| o.instance_type.as_deref());
            let key = placement::key(instance_type, &subnet, market);
            let why = format!("{}: {}", r.code, r.message);
            placement::refuse(&mut refused, key.clone(), why.clone(), now);
            report.refused.push(Refusal {
                key,
                zone: placement::zone_of(zones, &subnet).to_owned(),
                instance_type: r.instance_type.clone(),
                market,
                why,
            });
        }
        let mut placed = Vec::new();
        for (w, machine) in batch.iter().zip(&outcome.launched) {
            if run_type.is_none() && !spec.mix_types {
                run_type = machine.instance_type.clone();
                report.instance_type = run_type.clone();
            }
            placed.push(w.repeat);
            report.launched.push(Launched {
                id: machine.id.clone(),
                repeat: w.repeat,
                place: Place {
                    launched: true,
                    instance_type: machine.instance_type.clone(),
                    zone: machine
                        .subnet
                        .as_deref()
                        .map(|s| placement::zone_of(zones, s).to_owned()),
                    market: Some(machine.market),
                    ended: false,
                },
            });
        }
        todo.retain(|w| !placed.contains(&w.repeat));
    }
    report.waiting = todo.iter().map(|w| w.repeat).collect();
    number(ec2, fence, &mut report).await;
    report
}

/// Tags each launched machine with its repeat. One that cannot be is left to the next
/// look, which numbers it (the launch itself stands: it is tagged with its commit).
async fn number(ec2: &Ec2, fence: &impl Fence, report: &mut Report) {
    let ids: Vec<String> = report.launched.iter().map(|l| l.id.clone()).collect();
    let repeats: BTreeMap<String, u32> = report
        .launched
        .iter()
        .map(|l| (l.id.clone(), l.repeat))
        .collect();
    let (_, refused) = tag_repeats(ec2, fence, ids, &repeats).await;
    for (id, outcome) in refused {
        tracing::warn!("cannot tag the repeat of {id}, launched: {outcome:?}; the next look will");
    }
}

/// EC2's idempotency token for one fleet call (at most 64 ASCII characters), from `base`
/// (the run, and how many fleet calls it made before) and the request but its time: the
/// same call asked again, by a retry or by the next pass after a crash lost its answer
/// (when EC2 does not list the machines yet), gets EC2's first answer instead of more
/// machines; another request gets a token of its own (EC2 refuses a token reused with
/// other parameters).
fn client_token(base: &str, request: &FleetRequest) -> String {
    let timeless: Vec<&(String, String)> = request
        .tags
        .iter()
        .filter(|(k, _)| k != crate::tags::STARTED_AT)
        .collect();
    let what = (
        &request.template,
        &request.version,
        &request.overrides,
        request.market,
    );
    let key = format!(
        "{base}/{what:?}/{}/{}/{timeless:?}",
        request.count, request.single_type
    );
    format!("pushwake-{:016x}", crate::fnv1a(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(market: Market, count: u32, at: &str) -> FleetRequest {
        FleetRequest {
            template: "lt-0123456789abcdef0".into(),
            version: None,
            overrides: vec![],
            market,
            count,
            single_type: true,
            tags: vec![
                ("pushwake:commit".into(), "c1".into()),
                (crate::tags::STARTED_AT.into(), at.into()),
            ],
            client_token: None,
        }
    }

    #[test]
    fn a_token_is_the_same_for_the_same_call_at_any_time_and_new_for_another() {
        let t = "2026-12-01T10:00:00Z";
        let a = client_token("owner/c1/0", &request(Market::Spot, 2, t));
        assert!(a.len() <= 64 && a.is_ascii());
        let later = request(Market::Spot, 2, "2026-12-01T10:01:00Z");
        assert_eq!(
            a,
            client_token("owner/c1/0", &later),
            "asked again after a crash"
        );
        assert_ne!(
            a,
            client_token("owner/c1/0", &request(Market::OnDemand, 2, t))
        );
        assert_ne!(a, client_token("owner/c1/0", &request(Market::Spot, 1, t)));
        assert_ne!(a, client_token("owner/c1/1", &request(Market::Spot, 2, t)));
    }
}
