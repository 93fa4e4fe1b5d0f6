//! `pushwake status`: what the state file says of each configured watch. The table for
//! people is `report::table`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::aws::Aws;
use crate::config::{Settings, Target};
use crate::lease;
use crate::report;
use crate::state::{Duty, Kind, Part, Run};

/// One watch as `status --json` shows it. The field names are part of the contract.
#[derive(Debug, Serialize)]
pub struct WatchStatus {
    pub repo: String,
    pub branch: String,
    pub last_sha: Option<String>,
    pub last_checked: Option<String>,
    pub last_error: Option<String>,
    pub instances: Vec<String>,
    /// The runs still open, oldest first: each instance's part in it.
    pub open_runs: Vec<RunStatus>,
    /// The newest commit waiting for busy machines, if any.
    pub queued: Option<String>,
    /// What pushwake still owes: stops and verdicts it is retrying.
    pub duties: Vec<Duty>,
    /// With `--live`: each instance's state as EC2 reports it now ("missing" when EC2
    /// does not know it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<BTreeMap<String, String>>,
    /// With a shared state: the agent that leads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<Leader>,
    /// What its machines cost this calendar month (UTC) so far, USD, as priced.
    pub month_spend: f64,
}

/// The agent leading a shared state, as its lease says.
#[derive(Debug, Clone, Serialize)]
pub struct Leader {
    pub holder: Option<String>,
    pub since: Option<String>,
    /// When it last renewed the lease: its last pass.
    pub renewed: String,
    pub generation: Option<u64>,
}

impl Leader {
    fn of(seen: &lease::Seen) -> Leader {
        let lease = seen.lease.as_ref();
        Leader {
            holder: lease.map(|l| l.holder.clone()),
            since: lease.map(|l| crate::rfc3339(l.since)),
            renewed: crate::rfc3339(seen.version.modified),
            generation: lease.map(|l| l.generation),
        }
    }
}

/// An open run as `status` shows it.
#[derive(Debug, Serialize)]
pub struct RunStatus {
    pub commit: String,
    pub title: String,
    pub opened_at: String,
    /// Instance id, then its part: `{"part": "started", "at": ...}`, `{"part": "waiting",
    /// "why": ...}`, and so on.
    pub instances: BTreeMap<String, Part>,
    /// Older commits that waited and never ran: this run took their place.
    pub replaced: Vec<String>,
    /// Where its repeats stand.
    pub repeats: Repeats,
    /// Where each machine runs: `{"launched": true, "instance_type": …, "zone": …,
    /// "market": "spot"}`; the pool's machines without `launched`.
    pub placed: BTreeMap<String, crate::placement::Place>,
    /// The instance type the run's repeats run on (one, unless `launch.mix_types`).
    pub instance_type: Option<String>,
}

/// An open run's repeats: done (its machine went on to another), running (held by a
/// machine started for it, until it goes on), waiting (given to no machine yet).
#[derive(Debug, Serialize)]
pub struct Repeats {
    pub total: u32,
    pub done: u32,
    pub running: u32,
    pub waiting: u32,
}

impl Repeats {
    fn of(run: &Run) -> Repeats {
        // Without a count, one per machine of the pool the run lists.
        let total = match run.repeats {
            0 => u32::try_from(run.instances.len()).unwrap_or(u32::MAX),
            n => n,
        };
        let done = u32::try_from(run.done.len()).unwrap_or(u32::MAX);
        // A repeat marked done whose machine still shows it is counted once, as done.
        let running = run
            .instances
            .values()
            .filter_map(Part::repeat)
            .filter(|k| !run.done.contains(k));
        let running = u32::try_from(running.count()).unwrap_or(u32::MAX);
        Repeats {
            total,
            done,
            running,
            waiting: total.saturating_sub(done + running),
        }
    }
}

impl RunStatus {
    fn of(run: &Run) -> RunStatus {
        RunStatus {
            commit: run.commit.clone(),
            title: run.title.clone(),
            opened_at: crate::rfc3339(run.opened_at),
            instances: run.instances.clone(),
            replaced: run.replaced.clone(),
            repeats: Repeats::of(run),
            placed: run.placed.clone(),
            instance_type: run.instance_type.clone(),
        }
    }
}

/// The status of every configured watch, in config order. Watches never polled have nulls.
pub fn collect(settings: &Settings) -> anyhow::Result<Vec<WatchStatus>> {
    let snapshot = crate::store::read(settings)?;
    let (state, leader) = (snapshot.state, snapshot.leader.as_ref().map(Leader::of));
    Ok(settings
        .watches
        .iter()
        .map(|w| {
            let s = state.get(w);
            let open: Vec<&Run> = s
                .map(|s| s.runs.iter().filter(|r| r.is_open()).collect())
                .unwrap_or_default();
            let queued = open
                .iter()
                .rev()
                .find(|r| r.instances.values().any(|p| p.kind() == Kind::Waiting))
                .map(|r| r.commit.clone());
            // A start that keeps failing shows as the watch's error too.
            let mut failing = open
                .iter()
                .map(|r| report::failures(r))
                .filter(|f| !f.is_empty())
                .map(|f| format!("cannot start {f}"));
            WatchStatus {
                repo: w.repo.to_string(),
                branch: w.branch.clone(),
                last_sha: s.and_then(|s| s.last_sha.clone()),
                last_checked: s.and_then(|s| s.last_checked).map(crate::rfc3339),
                last_error: s.and_then(|s| s.last_error.clone()).or(failing.next_back()),
                instances: w.instances.clone(),
                open_runs: open.into_iter().map(RunStatus::of).collect(),
                queued,
                duties: s.map(|s| s.duties.clone()).unwrap_or_default(),
                live: None,
                leader: leader.clone(),
                month_spend: s.map_or(0.0, |s| s.month_spend(chrono::Utc::now())),
            }
        })
        .collect())
}

/// What a watch's machines cost in one calendar month (UTC), as `pushwake cost` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CostRow {
    pub repo: String,
    pub branch: String,
    /// `YYYY-MM`.
    pub month: String,
    /// USD: what ended that month, and for this month what runs so far.
    pub spend: f64,
    /// Machines still up, counted to now (this month only).
    pub running: usize,
    /// Why some machine time has no price, if any has none.
    pub unknown: Vec<String>,
    /// This month only, with what EC2 says now: the stopped pool machines' volumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standing: Option<crate::cost::Standing>,
}

/// Every watch's spend by month, oldest first, from the state.
pub fn costs(settings: &Settings) -> anyhow::Result<Vec<CostRow>> {
    let state = crate::store::read(settings)?.state;
    let now = chrono::Utc::now();
    let this = crate::cost::month(now);
    let mut rows = Vec::new();
    let none = crate::state::WatchState::default();
    for w in &settings.watches {
        // A watch that never ran still has its month, and its stopped machines' volumes.
        let s = state.get(w).unwrap_or(&none);
        let spans = s.runs.iter().flat_map(|r| &r.spans);
        let total = crate::cost::Total::of(spans.clone(), now);
        let running = spans.filter(|sp| sp.to.is_none()).count();
        let mut months: Vec<String> = s.spend.keys().cloned().collect();
        if !months.contains(&this) {
            months.push(this.clone());
        }
        for month in months {
            let spend = match month == this {
                true => s.month_spend(now),
                false => s.spend[&month],
            };
            rows.push(CostRow {
                repo: w.repo.to_string(),
                branch: w.branch.clone(),
                running: if month == this { running } else { 0 },
                unknown: total.unknown.clone(),
                standing: None,
                month,
                spend,
            });
        }
    }
    Ok(rows)
}

/// Fills in `standing` on this month's rows: the volumes of each watch's stopped pool
/// machines (one describe and one `DescribeVolumes` per watch), priced from `[cost]
/// volume_prices`, else the price list (asked once per volume type and region).
pub async fn add_standing(rows: &mut [CostRow], settings: &Settings) -> anyhow::Result<()> {
    let aws = Aws::new(&settings.aws, crate::retry::Policy::default());
    let this = crate::cost::month(chrono::Utc::now());
    let mut asked: BTreeMap<(String, String), Result<f64, String>> = BTreeMap::new();
    let mut failed = Vec::new();
    for w in &settings.watches {
        let Some(row) = rows
            .iter_mut()
            .find(|r| r.repo == w.repo.to_string() && r.branch == w.branch && r.month == this)
        else {
            continue;
        };
        // One watch EC2 cannot tell of leaves the others' figures standing.
        match standing(&aws, w, settings, &mut asked).await {
            Ok(standing) => row.standing = Some(standing),
            Err(e) => {
                let why = format!("{e:#}");
                row.standing = Some(crate::cost::Standing {
                    unknown: vec![why.clone()],
                    ..Default::default()
                });
                failed.push(format!("{w}: {why}"));
            }
        }
    }
    match failed.is_empty() {
        true => Ok(()),
        false => anyhow::bail!("{}", failed.join("; ")),
    }
}

/// The standing cost of `watch`'s stopped pool machines, pricing each volume type once
/// per region (`asked` keeps the answers across watches).
async fn standing(
    aws: &Aws,
    watch: &crate::config::Watch,
    settings: &Settings,
    asked: &mut BTreeMap<(String, String), Result<f64, String>>,
) -> anyhow::Result<crate::cost::Standing> {
    use crate::ec2::InstanceState;
    let clients = aws.clients(&watch.target).await?;
    let region = clients
        .config
        .region()
        .map(|r| r.to_string())
        .unwrap_or_default();
    let owners = crate::tags::Owners::new(String::new());
    let members = crate::launch::members(&clients.ec2, watch, &owners, false).await?;
    let stopped: Vec<String> = members
        .described
        .iter()
        .filter(|i| i.state == InstanceState::Stopped)
        .map(|i| i.id.clone())
        .collect();
    let volumes = clients.ec2.volumes(&stopped).await?;
    let mut standing = crate::cost::Standing::default();
    for id in &stopped {
        let theirs: Vec<(u32, String)> = volumes
            .iter()
            .filter(|v| v.instance.as_ref() == Some(id))
            .map(|v| (v.size_gib, v.kind.clone()))
            .collect();
        for (_, kind) in &theirs {
            let key = (kind.clone(), region.clone());
            if asked.contains_key(&key) {
                continue;
            }
            let price = match settings.prices.volumes.get(kind) {
                Some(usd) => Ok(*usd),
                None => match aws.pricing().await.storage(kind, &region).await {
                    Ok(Some(usd)) => Ok(usd),
                    Ok(None) => Err(format!("no price for {kind} storage in {region}")),
                    Err(e) => Err(format!("no price for {kind} storage in {region}: {e}")),
                },
            };
            asked.insert(key, price);
        }
        standing.add(theirs.iter().map(|(g, k)| (*g, k.as_str())), |kind| {
            asked[&(kind.to_owned(), region.clone())].clone()
        });
    }
    Ok(standing)
}

/// Running instances this deployment started that no watch owns any more, as the last
/// pass found them.
pub fn orphans(settings: &Settings) -> anyhow::Result<Vec<String>> {
    let state = crate::store::read(settings)?.state;
    Ok(state.orphans.into_iter().collect())
}

/// Fills in `live` from one describe of every configured instance.
pub async fn add_live(rows: &mut [WatchStatus], settings: &Settings) -> anyhow::Result<()> {
    let aws = Aws::new(&settings.aws, crate::retry::Policy::default());
    // One describe per region and account the watches reach.
    let mut targets: Vec<&Target> = Vec::new();
    for w in &settings.watches {
        if !targets.contains(&&w.target) {
            targets.push(&w.target);
        }
    }
    for target in targets {
        let mine: Vec<usize> = (0..rows.len())
            .filter(|&i| settings.watches[i].target == *target)
            .collect();
        let ids: Vec<String> = mine
            .iter()
            .flat_map(|&i| rows[i].instances.iter().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let described = aws.clients(target).await?.ec2.describe(&ids).await?;
        for i in mine {
            let live = rows[i]
                .instances
                .iter()
                .map(|id| {
                    let state = described
                        .iter()
                        .find(|d| &d.id == id)
                        .map_or_else(|| "missing".to_owned(), |d| d.state.to_string());
                    (id.clone(), state)
                })
                .collect();
            rows[i].live = Some(live);
        }
    }
    Ok(())
}
