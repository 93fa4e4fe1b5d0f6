//! Keeping each run's machine time and the watch's spend (SPEC §12): a span opens when a
//! look finds a machine up for its run, and closes, booked into the month it ended, when
//! a look finds it down (at the time EC2's state transition gives) or gone.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::Prices;
use crate::cost::{self, Span};
use crate::ec2::Instance;
use crate::launch::Members;
use crate::state::WatchState;
use crate::{tags, whole_seconds};

impl super::Agent {
    /// Asks AWS the prices of `unpriced` not known in `quotes` or known too long: the
    /// price list on demand, the spot price history in a zone. One call per type and
    /// place, kept a day (spot: an hour), so a trigger of N machines asks once. A price
    /// AWS has not is kept as none (the span says so); a failed call is logged, and asked
    /// again in an hour.
    pub(super) async fn quote(
        &self,
        clients: &crate::aws::Clients,
        quotes: &mut BTreeMap<String, cost::Quote>,
        unpriced: Vec<(String, bool, String, String)>,
        now: DateTime<Utc>,
    ) {
        quotes.retain(|k, q| now - q.at < cost::quote_for(k.starts_with("spot/")));
        for (key, spot, kind, place) in unpriced {
            if quotes.contains_key(&key) {
                continue;
            }
            let usd = match spot {
                true => clients
                    .ec2
                    .spot_price(&kind, &place)
                    .await
                    .map_err(|e| e.to_string()),
                false => {
                    let pricing = self.aws.pricing().await;
                    pricing
                        .on_demand(&kind, &place)
                        .await
                        .map_err(|e| e.to_string())
                }
            };
            match usd {
                Ok(usd) => {
                    let quote = cost::Quote {
                        usd,
                        at: now,
                        failed: None,
                    };
                    quotes.insert(key, quote);
                }
                // Not asked again for an hour: a missing permission would cost a call a
                // pass. The reason goes with the price: the cost says why it is unknown.
                Err(e) => {
                    tracing::debug!("cannot price {kind} in {place}: {e}");
                    let at = now - cost::quote_for(false) + cost::quote_for(true);
                    let failed = Some(e);
                    quotes.insert(
                        key,
                        cost::Quote {
                            usd: None,
                            at,
                            failed,
                        },
                    );
                }
            }
        }
    }
}

/// The prices a new span of `entry` would need asked of AWS: (key, spot, type, region or
/// zone), those `prices` (the user's) do not name.
pub(super) fn unpriced(
    entry: &WatchState,
    members: &Members,
    prices: &Prices,
    region: &str,
) -> Vec<(String, bool, String, String)> {
    let mut out: Vec<(String, bool, String, String)> = Vec::new();
    for run in &entry.runs {
        for (id, part) in &run.instances {
            let Some(i) = members.get(id).filter(|i| i.is_up() && part.is_started()) else {
                continue;
            };
            let Some(kind) = i
                .instance_type
                .clone()
                .filter(|k| !prices.hourly.contains_key(k))
            else {
                continue;
            };
            let place = match (i.spot, &i.zone) {
                (true, Some(zone)) => zone.clone(),
                _ => region.to_owned(),
            };
            let key = cost::quote_key(i.spot, &kind, &place);
            if !out.iter().any(|(k, ..)| *k == key) {
                out.push((key, i.spot, kind, place));
            }
        }
    }
    out
}

/// Opens and closes the spans of `entry`'s runs from what `members` describe, at `now`
/// (EC2's clock), pricing new ones with `prices` (the user's) where they name the type,
/// else with the `quotes` asked of AWS.
pub(super) fn track(
    entry: &mut WatchState,
    members: &Members,
    prices: &Prices,
    quotes: &BTreeMap<String, cost::Quote>,
    region: &str,
    now: DateTime<Utc>,
) {
    // Every start already counted by some run of the watch.
    let mut opened: std::collections::BTreeSet<(String, DateTime<Utc>)> = entry
        .runs
        .iter()
        .flat_map(|r| &r.spans)
        .map(|s| (s.instance.clone(), s.from))
        .collect();
    for run in &mut entry.runs {
        for span in run.spans.iter_mut().filter(|s| s.to.is_none()) {
            let ended = match members.get(&span.instance) {
                // Down, or started again since (for another run): the span is over.
                Some(i) if !i.is_up() => {
                    Some(i.ended_at.filter(|t| *t >= span.from).unwrap_or(now))
                }
                // Started again since: it ended by then at the latest.
                Some(i) if i.launch_time.map(whole_seconds) != Some(span.from) => {
                    Some(i.launch_time.map_or(now, |t| whole_seconds(t).min(now)))
                }
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
            let Some(i) = members.get(id).filter(|i| i.is_up() && part.is_started()) else {
                continue;
            };
            let (Some(from), true) = (
                i.launch_time.map(whole_seconds),
                i.tags.get(tags::COMMIT) == Some(&run.commit),
            ) else {
                continue;
            };
            // One start is one span, whichever run of the commit counts it.
            if !opened.insert((id.clone(), from)) {
                continue;
            }
            run.spans.push(priced(i, from, prices, quotes, region));
        }
    }
}

/// A new span of `i` from `from`, at the user's price for its type when there is one,
/// else at the price AWS gave (on demand in the region, spot in its zone).
fn priced(
    i: &Instance,
    from: DateTime<Utc>,
    prices: &Prices,
    quotes: &BTreeMap<String, cost::Quote>,
    region: &str,
) -> Span {
    let kind = i.instance_type.clone();
    let place = match (i.spot, &i.zone) {
        (true, Some(zone)) => zone.clone(),
        _ => region.to_owned(),
    };
    let quote = kind
        .as_ref()
        .and_then(|k| quotes.get(&cost::quote_key(i.spot, k, &place)));
    let price = kind
        .as_ref()
        .and_then(|k| prices.hourly.get(k).copied())
        .or(quote.and_then(|q| q.usd));
    let unpriced = price.is_none().then(|| {
        let market = if i.spot { "spot " } else { "" };
        let what = kind.as_deref().unwrap_or("an unknown type");
        match quote.and_then(|q| q.failed.as_deref()) {
            Some(e) => format!("cannot ask the {market}price of {what} in {place}: {e}"),
            None => format!("no {market}price for {what} in {place}"),
        }
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
