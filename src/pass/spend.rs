//! Keeping each run's machine time and the watch's spend (SPEC §12): a span opens when a
//! look finds a machine up for its run, and closes, booked into the month it ended, when
//! a look finds it down (at the time EC2's state transition gives) or gone.

use chrono::{DateTime, Utc};

use crate::config::Prices;
use crate::cost::{self, Span};
use crate::ec2::{Instance, InstanceState};
use crate::launch::Members;
use crate::state::WatchState;
use crate::tags;

/// Opens and closes the spans of `entry`'s runs from what `members` describe, at `now`
/// (EC2's clock), pricing new ones with `prices` (the user's) where they name the type.
pub(super) fn track(
    entry: &mut WatchState,
    members: &Members,
    prices: &Prices,
    region: &str,
    now: DateTime<Utc>,
) {
    for run in &mut entry.runs {
        for span in run.spans.iter_mut().filter(|s| s.to.is_none()) {
            let ended = match members.get(&span.instance) {
                // Down, or started again since (for another run): the span is over.
                Some(i) if !up(i) => Some(i.ended_at.filter(|t| *t >= span.from).unwrap_or(now)),
                Some(i) if i.launch_time.map(whole_seconds) != Some(span.from) => Some(now),
                Some(_) => None,
                // No longer listed (terminated an hour ago, or left the watch).
                None => Some(now),
            };
            if let Some(to) = ended {
                span.to = Some(to);
                cost::book(&mut entry.spend, span);
            }
        }
        for (id, part) in &run.instances {
            let Some(i) = members.get(id).filter(|i| up(i) && part.is_started()) else {
                continue;
            };
            let (Some(from), true) = (
                i.launch_time.map(whole_seconds),
                i.tags.get(tags::COMMIT) == Some(&run.commit),
            ) else {
                continue;
            };
            if run
                .spans
                .iter()
                .any(|s| s.instance == *id && s.from == from)
            {
                continue;
            }
            run.spans.push(priced(i, from, prices, region));
        }
    }
}

/// A new span of `i` from `from`, at the user's price for its type when there is one.
fn priced(i: &Instance, from: DateTime<Utc>, prices: &Prices, region: &str) -> Span {
    let kind = i.instance_type.clone();
    let price = kind.as_ref().and_then(|k| prices.0.get(k)).copied();
    let unpriced = price.is_none().then(|| {
        format!(
            "no price for {} in {region}",
            kind.as_deref().unwrap_or("an unknown type")
        )
    });
    Span {
        instance: i.id.clone(),
        from,
        to: None,
        instance_type: kind,
        price,
        unpriced,
    }
}

fn up(i: &Instance) -> bool {
    matches!(i.state, InstanceState::Pending | InstanceState::Running)
}

/// A time as the plan keeps launch times: whole seconds.
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}
