//! Where a repeat goes: a pure decision (SPEC §10). The pool comes first (the plan gives
//! its stopped machines their repeats); what it cannot place is launched from the watch's
//! template, into its subnets and instance types, skipping the placements EC2 refused
//! moments ago, as Karpenter's cache of unavailable offerings does.
//!
//! A placement is an instance type × a subnet (one zone) × a market. EC2 Fleet chooses
//! among the placements it is offered; this module decides which to offer, in which
//! market, and remembers what EC2 said there was no room for.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{self, Launch};
use crate::ec2::{Market, Override};

/// How long a placement EC2 refused for capacity is not offered again (Karpenter keeps
/// its unavailable offerings three minutes).
pub const REFUSED_FOR: Duration = Duration::minutes(3);

/// Where one machine of a run runs, for `status` and the Slack thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    /// Launched from the template (else a machine of the pool).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub launched: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// How it is bought: `spot` or `on-demand`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market: Option<Market>,
    /// A launched machine EC2 shows terminated (or lists no more): nothing is left to end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended: bool,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.launched { "launched" } else { "pool" })?;
        for part in [&self.instance_type, &self.zone].into_iter().flatten() {
            write!(f, ", {part}")?;
        }
        if let Some(m) = self.market {
            write!(f, ", {m}")?;
        }
        Ok(())
    }
}

/// What EC2 refused for capacity, and until when it is not asked again: a pool machine
/// (its id) or a placement of the template ([`key`]). Kept in the state, so `--once` from
/// cron and every agent of a shared state skip it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub what: String,
    pub until: DateTime<Utc>,
    /// EC2's words, for `status` and the Slack thread.
    pub why: String,
}

/// The name of a placement in [`Refused`]: `type/subnet/market` (`*` for the template's
/// own type).
pub fn key(instance_type: Option<&str>, subnet: &str, market: Market) -> String {
    format!("{}/{subnet}/{market}", instance_type.unwrap_or("*"))
}

/// Whether `what` was refused and is still not to be asked.
pub fn is_refused<'a>(
    refused: &'a [Refused],
    what: &str,
    now: DateTime<Utc>,
) -> Option<&'a Refused> {
    refused.iter().find(|r| r.what == what && r.until > now)
}

/// Remembers that EC2 refused `what` at `now`, dropping what has expired.
pub fn refuse(refused: &mut Vec<Refused>, what: String, why: String, now: DateTime<Utc>) {
    refused.retain(|r| r.until > now && r.what != what);
    refused.push(Refused {
        what,
        until: now + REFUSED_FOR,
        why,
    });
}

/// The markets to try, in order, for a repeat: `retry` when its machine was taken away
/// before (with `spot-then-on-demand` a retry goes on demand at once).
pub fn markets(market: config::Market, retry: bool) -> &'static [Market] {
    match (market, retry) {
        (config::Market::OnDemand, _) | (config::Market::SpotThenOnDemand, true) => {
            &[Market::OnDemand]
        }
        (config::Market::Spot, _) => &[Market::Spot],
        (config::Market::SpotThenOnDemand, false) => &[Market::Spot, Market::OnDemand],
    }
}

/// The placements to offer EC2 Fleet in `market`: the template's instance types (or the
/// run's type, once it has one and types are not mixed) × its subnets, without those
/// refused moments ago.
pub fn overrides(
    launch: &Launch,
    run_type: Option<&str>,
    market: Market,
    refused: &[Refused],
    now: DateTime<Utc>,
) -> Vec<Override> {
    let types: Vec<Option<&str>> = match (run_type, launch.mix_types) {
        (Some(t), false) => vec![Some(t)],
        _ if launch.instance_types.is_empty() => vec![None],
        _ => launch
            .instance_types
            .iter()
            .map(|t| Some(t.as_str()))
            .collect(),
    };
    let mut out = Vec::new();
    for t in types {
        for subnet in &launch.subnets {
            if is_refused(refused, &key(t, subnet, market), now).is_none() {
                out.push(Override {
                    instance_type: t.map(str::to_owned),
                    subnet: subnet.clone(),
                });
            }
        }
    }
    out
}

/// One repeat the pool could not place, to launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub repeat: u32,
    /// Its machine was taken away before: it is a retry.
    pub retry: bool,
}

/// The repeats of `wanted` to ask for in `market` (the rest wait for a later market, or
/// the next pass), in order.
pub fn for_market(wanted: &[Wanted], launch: &Launch, market: Market) -> Vec<Wanted> {
    wanted
        .iter()
        .filter(|w| markets(launch.market, w.retry).contains(&market))
        .copied()
        .collect()
}

/// The zone of each subnet, where known; a subnet without one is named by its id.
pub fn zone_of<'a>(zones: &'a BTreeMap<String, String>, subnet: &'a str) -> &'a str {
    zones.get(subnet).map_or(subnet, String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(types: &[&str], market: config::Market) -> Launch {
        Launch {
            template: "lt-0123456789abcdef0".into(),
            version: None,
            subnets: vec!["subnet-aaaaaaaa".into(), "subnet-bbbbbbbb".into()],
            instance_types: types.iter().map(|t| t.to_string()).collect(),
            market,
            max_retries: 2,
            max_machines: None,
            mix_types: false,
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }

    fn subnets(o: &[Override]) -> Vec<(Option<&str>, &str)> {
        o.iter()
            .map(|o| (o.instance_type.as_deref(), o.subnet.as_str()))
            .collect()
    }

    #[test]
    fn every_type_in_every_subnet_is_offered() {
        let l = launch(&["g5.xlarge", "g6.xlarge"], config::Market::OnDemand);
        let o = overrides(&l, None, Market::OnDemand, &[], now());
        assert_eq!(
            subnets(&o),
            [
                (Some("g5.xlarge"), "subnet-aaaaaaaa"),
                (Some("g5.xlarge"), "subnet-bbbbbbbb"),
                (Some("g6.xlarge"), "subnet-aaaaaaaa"),
                (Some("g6.xlarge"), "subnet-bbbbbbbb"),
            ]
        );
        let own = overrides(
            &launch(&[], config::Market::OnDemand),
            None,
            Market::Spot,
            &[],
            now(),
        );
        assert_eq!(
            subnets(&own),
            [(None, "subnet-aaaaaaaa"), (None, "subnet-bbbbbbbb")]
        );
    }

    #[test]
    fn a_run_keeps_its_type_unless_types_mix() {
        let mut l = launch(&["g5.xlarge", "g6.xlarge"], config::Market::OnDemand);
        let o = overrides(&l, Some("g6.xlarge"), Market::OnDemand, &[], now());
        assert!(
            o.iter()
                .all(|o| o.instance_type.as_deref() == Some("g6.xlarge"))
        );
        assert_eq!(o.len(), 2);
        l.mix_types = true;
        assert_eq!(
            overrides(&l, Some("g6.xlarge"), Market::OnDemand, &[], now()).len(),
            4
        );
    }

    #[test]
    fn a_refused_placement_is_skipped_for_a_few_minutes_in_its_market_only() {
        let l = launch(&["g5.xlarge"], config::Market::SpotThenOnDemand);
        let mut refused = Vec::new();
        let what = key(Some("g5.xlarge"), "subnet-aaaaaaaa", Market::Spot);
        refuse(&mut refused, what, "no capacity".into(), now());
        let spot = overrides(&l, None, Market::Spot, &refused, now());
        assert_eq!(subnets(&spot), [(Some("g5.xlarge"), "subnet-bbbbbbbb")]);
        let on_demand = overrides(&l, None, Market::OnDemand, &refused, now());
        assert_eq!(on_demand.len(), 2, "on demand is another placement");
        let later = now() + REFUSED_FOR;
        assert_eq!(overrides(&l, None, Market::Spot, &refused, later).len(), 2);
    }

    #[test]
    fn refusing_again_replaces_and_expired_ones_are_dropped() {
        let mut refused = Vec::new();
        refuse(&mut refused, "i-1".into(), "a".into(), now());
        refuse(
            &mut refused,
            "i-2".into(),
            "b".into(),
            now() + Duration::minutes(1),
        );
        refuse(
            &mut refused,
            "i-1".into(),
            "c".into(),
            now() + Duration::minutes(2),
        );
        assert_eq!(refused.len(), 2);
        refuse(
            &mut refused,
            "i-3".into(),
            "d".into(),
            now() + Duration::minutes(4),
        );
        let left: Vec<&str> = refused.iter().map(|r| r.what.as_str()).collect();
        assert_eq!(left, ["i-1", "i-3"], "i-2's three minutes are over");
        assert!(is_refused(&refused, "i-1", now() + Duration::minutes(4)).is_some());
    }

    #[test]
    fn retries_go_on_demand_with_spot_then_on_demand() {
        use config::Market as M;
        assert_eq!(
            markets(M::SpotThenOnDemand, false),
            [Market::Spot, Market::OnDemand]
        );
        assert_eq!(markets(M::SpotThenOnDemand, true), [Market::OnDemand]);
        assert_eq!(markets(M::Spot, true), [Market::Spot]);
        assert_eq!(markets(M::OnDemand, false), [Market::OnDemand]);
        let l = launch(&[], M::SpotThenOnDemand);
        let wanted = [
            Wanted {
                repeat: 1,
                retry: false,
            },
            Wanted {
                repeat: 2,
                retry: true,
            },
        ];
        assert_eq!(for_market(&wanted, &l, Market::Spot), [wanted[0]]);
        assert_eq!(for_market(&wanted, &l, Market::OnDemand), wanted);
    }
}
