//! Where the state is kept: a file in the state directory, or, with `state_url`, an object
//! in S3 that several agents share, one of them leading.
//!
//! The backend is a choice made once from the settings, not a trait: the two differ in
//! one place each (load, save, who leads), and the pass reads the same either way.
//!
//! The fencing of the shared state: right before a batch of starts or stops the leader
//! renews its lease conditionally on the ETag it last wrote it with ([`Store::fence`]), so
//! an agent that lost the lease stops before the call; each EC2 mutation then runs only
//! with time left under the lease, renewing it when too little is, and is cut to end
//! before it (the `Fence` of `launch`); and every write of the state is conditional on the
//! ETag read (or on there being none), so a deposed agent never overwrites what the leader
//! recorded, and after a lost race the state is read afresh. A state object deleted under
//! the leader is written again from the state it holds; a 412 to a write of our own that
//! had gone through is no race (see `s3`).

use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::aws::Aws;
use crate::config::{Settings, Shared};
use crate::launch::Fence;
use crate::lease::{self, Holder, Standing};
use crate::s3::{self, Expect, S3};
use crate::state::{self, Dir, State};

const STATE_OBJECT: &str = "state.json";
const LEASE_OBJECT: &str = "lease.json";

/// The state's home.
#[derive(Debug)]
pub struct Store {
    dir: Dir,
    me: String,
    shared: Option<SharedState>,
}

impl Store {
    /// The store of `settings`; `me` names this agent in the lease.
    pub fn new(settings: &Settings, aws: Arc<Aws>, me: String) -> Store {
        Store {
            dir: Dir::new(&settings.state_dir, settings.first_run),
            shared: settings.shared.clone().map(|config| SharedState {
                config,
                aws,
                me: me.clone(),
                first_run: settings.first_run,
                clients: OnceCell::new(),
                cache: Mutex::new(None),
            }),
            me,
        }
    }

    /// This agent, as the lease names it.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The state directory: the pass lock, the notice markers, and the state file unless
    /// the state is shared.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Renews or takes the lease; a local state always leads.
    pub async fn lead(&self) -> anyhow::Result<Standing> {
        match &self.shared {
            None => Ok(Standing::Leads {
                generation: 0,
                fresh: false,
            }),
            Some(shared) => shared.lead().await,
        }
    }

    pub async fn load(&self) -> anyhow::Result<State> {
        match &self.shared {
            None => self.dir.load(),
            Some(shared) => shared.load().await,
        }
    }

    /// Writes the state, unless it is what was last read or written.
    pub async fn save(&self, state: &State) -> anyhow::Result<()> {
        match &self.shared {
            None => self.dir.save(state),
            Some(shared) => shared.save(state).await,
        }
    }

    /// Makes sure this agent still leads, right before it changes anything on EC2: the
    /// lease is renewed, conditionally on the ETag this agent last wrote it with. An agent
    /// that was paused past its lease, or whose pass outlasted it, finds the lease taken
    /// (412) and stops before the call; its view of the state is dropped. A local state
    /// always leads.
    pub async fn fence(&self) -> anyhow::Result<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        match shared.lead().await? {
            Standing::Leads { fresh: false, .. } => Ok(()),
            Standing::Leads { fresh: true, .. } => anyhow::bail!(
                "the lease lapsed during this pass; it stops before acting, and the next \
                 pass reads the shared state afresh"
            ),
            Standing::StandsBy(leader) => anyhow::bail!(
                "{} leads the shared state now; this pass stops before acting",
                leader.holder
            ),
        }
    }

    /// When an EC2 call made now must have ended under the lease, if enough of it is left
    /// for one; `None` for a local state, which has no deadline.
    fn call_end(&self, shared: &SharedState) -> Option<Instant> {
        shared.clients.get()?.1.call_end()
    }

    /// The lease as it is now; `None` for a local state or no lease yet.
    pub async fn leader(&self) -> anyhow::Result<Option<lease::Seen>> {
        match &self.shared {
            None => Ok(None),
            Some(shared) => Ok(shared.clients().await.1.read().await?),
        }
    }
}

/// Each EC2 mutation of a leader is fenced by its lease's deadline: made only with half
/// the TTL, and at least [`lease::CALL_MIN`], left (renewing the lease first otherwise,
/// conditionally as in [`Store::fence`]), and cut to end [`lease::CALL_MARGIN`] before the
/// lease does.
impl Fence for Store {
    async fn hold(&self) -> anyhow::Result<Option<Instant>> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        if let Some(end) = self.call_end(shared) {
            return Ok(Some(end));
        }
        self.fence().await?;
        match self.call_end(shared) {
            Some(end) => Ok(Some(end)),
            None => anyhow::bail!(
                "renewing the lease took too long to leave an EC2 call its time; this pass \
                 stops before acting"
            ),
        }
    }
}

/// The state as the commands that only read it see it (`status`, `results`), and with a
/// shared state, its lease.
#[derive(Debug)]
pub struct Snapshot {
    pub state: State,
    pub leader: Option<lease::Seen>,
}

/// Reads the state once, from the state directory or from S3, and writes nothing.
pub fn read(settings: &Settings) -> anyhow::Result<Snapshot> {
    let Some(shared) = &settings.shared else {
        let state = Dir::new(&settings.state_dir, settings.first_run).load()?;
        return Ok(Snapshot {
            state,
            leader: None,
        });
    };
    let aws = Arc::new(Aws::new(&settings.aws, crate::retry::Policy::default()));
    let store = Store::new(settings, aws, String::new());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let leader = store
            .leader()
            .await
            .with_context(|| format!("cannot read the lease of {}", shared.url))?;
        Ok(Snapshot {
            state: store.load().await?,
            leader,
        })
    })
}

/// The state as this agent last read or wrote it: a leader that keeps the lease needs not
/// read it again, and an unchanged state is not written.
#[derive(Debug, Clone)]
struct Cached {
    /// `None`: there was no state object.
    etag: Option<String>,
    state: State,
}

/// Whether `now` differs from `before` in nothing but when each watch was last polled:
/// a pass that only polled writes nothing, so an unchanged pass on the leader costs one
/// request, the lease's renewal (which tells when the leader last passed).
fn unchanged(before: &State, now: &State) -> bool {
    let quiet = |s: &State| {
        let mut s = s.clone();
        for w in &mut s.watches {
            w.last_checked = None;
            w.last_polled = None;
        }
        s
    };
    quiet(before) == quiet(now)
}

#[derive(Debug)]
struct SharedState {
    config: Shared,
    aws: Arc<Aws>,
    me: String,
    first_run: crate::config::FirstRun,
    clients: OnceCell<(S3, Holder)>,
    cache: Mutex<Option<Cached>>,
}

impl SharedState {
    async fn clients(&self) -> &(S3, Holder) {
        self.clients
            .get_or_init(|| async {
                let s3 = S3::new(self.aws.base().await, &self.config.url, self.aws.policy());
                let lease = Holder::new(
                    s3.clone(),
                    self.config.url.key(LEASE_OBJECT),
                    self.me.clone(),
                    self.config.lease_ttl,
                );
                (s3, lease)
            })
            .await
    }

    fn key(&self) -> String {
        self.config.url.key(STATE_OBJECT)
    }

    fn place(&self) -> String {
        format!(
            "shared state s3://{}/{}",
            self.config.url.bucket,
            self.key()
        )
    }

    async fn lead(&self) -> anyhow::Result<Standing> {
        let standing = self.clients().await.1.hold().await?;
        if !matches!(standing, Standing::Leads { fresh: false, .. }) {
            // Another agent may have written the state since this one last saw it.
            self.forget();
        }
        Ok(standing)
    }

    fn forget(&self) {
        *self.cache.lock().expect("cache poisoned") = None;
    }

    async fn load(&self) -> anyhow::Result<State> {
        if let Some(c) = &*self.cache.lock().expect("cache poisoned") {
            return Ok(c.state.clone());
        }
        let cached = match self.clients().await.0.get(&self.key()).await? {
            Some(o) => Cached {
                state: state::parse(&o.bytes).with_context(|| {
                    state::corrupt(&self.place(), "delete the object", self.first_run)
                })?,
                etag: Some(o.version.etag),
            },
            None => Cached {
                etag: None,
                state: state::empty(),
            },
        };
        let state = cached.state.clone();
        *self.cache.lock().expect("cache poisoned") = Some(cached);
        Ok(state)
    }

    async fn save(&self, state: &State) -> anyhow::Result<()> {
        let etag = match &*self.cache.lock().expect("cache poisoned") {
            Some(c) if unchanged(&c.state, state) => return Ok(()),
            Some(c) => c.etag.clone(),
            // Dropped when the lease was lost during the pass: nothing to be conditional on,
            // so nothing is written.
            None => anyhow::bail!(
                "cannot write the {}: this agent lost the lease during the pass; nothing was \
                 written",
                self.place()
            ),
        };
        let expect = match etag {
            Some(e) => Expect::Etag(e),
            None => Expect::Absent,
        };
        let (s3, lease) = self.clients().await;
        match s3.put(&self.key(), &state::to_bytes(state), &expect).await {
            Ok(etag) => {
                *self.cache.lock().expect("cache poisoned") = Some(Cached {
                    etag: Some(etag),
                    state: state.clone(),
                });
                Ok(())
            }
            // Deleted under this leader (by hand, a lifecycle rule): written again, from the
            // state it holds, if it still leads.
            Err(e) if e.kind == s3::Kind::Missing => self.recreate(state, e).await,
            Err(e) if e.kind == s3::Kind::Changed => {
                self.forget();
                lease.forget();
                Err(e).with_context(|| {
                    format!(
                        "another agent changed the {} since this one read it; this pass stops \
                         before acting, and the next reads what the other agent wrote",
                        self.place()
                    )
                })
            }
            Err(e) => Err(e).with_context(|| format!("cannot write the {}", self.place())),
        }
    }
}

impl SharedState {
    /// Writes `state` again after its object was found deleted (`deleted`), with
    /// `If-None-Match: *`, once the lease is renewed: a deposed agent writes nothing, and
    /// an agent that created it first wins.
    async fn recreate(&self, state: &State, deleted: s3::Error) -> anyhow::Result<()> {
        tracing::warn!("the {} was deleted; writing it again", self.place());
        self.forget();
        let standing = self.clients().await.1.hold().await?;
        if !matches!(standing, Standing::Leads { fresh: false, .. }) {
            return Err(deleted).with_context(|| {
                format!(
                    "cannot write the {} again: this agent lost the lease; nothing was written",
                    self.place()
                )
            });
        }
        let (s3, lease) = self.clients().await;
        match s3
            .put(&self.key(), &state::to_bytes(state), &Expect::Absent)
            .await
        {
            Ok(etag) => {
                *self.cache.lock().expect("cache poisoned") = Some(Cached {
                    etag: Some(etag),
                    state: state.clone(),
                });
                Ok(())
            }
            Err(e) => {
                lease.forget();
                Err(e).with_context(|| format!("cannot write the {} again", self.place()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Watch;

    #[test]
    fn a_pass_that_only_polled_changes_nothing_worth_writing() {
        let watch = Watch::example("main", &["i-0123456789abcdef0"]);
        let mut state = state::empty();
        state.entry(&watch).record("a".repeat(40), None);
        let before = state.clone();

        state.entry(&watch).last_checked = Some(chrono::Utc::now());
        state.entry(&watch).last_polled = Some(chrono::Utc::now());
        assert!(
            unchanged(&before, &state),
            "a new last_checked and last_polled alone"
        );

        state.entry(&watch).record("b".repeat(40), None);
        assert!(!unchanged(&before, &state), "a new head");
        assert!(!unchanged(&state::empty(), &state), "no state before");
    }
}
