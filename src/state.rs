//! The on-disk record of what pushwake last saw and did, and the lock that serialises passes.
//!
//! The state is one small JSON file, `state.json`, in the state directory. It is replaced
//! atomically (temp file, fsync, rename, fsync of the directory), so a crash or a SIGTERM
//! leaves either the old or the new file, never half of one. A file that cannot be parsed
//! is never overwritten: the pass stops and names it, so the operator can look.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Repo, Watch};

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "pass.lock";
const VERSION: u32 = 1;

/// Everything pushwake remembers between passes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub watches: Vec<WatchState>,
}

/// What is known of one watched branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchState {
    pub repo: String,
    pub branch: String,
    /// The last head that was handled: instances started, or recorded as a baseline.
    pub last_sha: Option<String>,
    /// The ETag GitHub sent with `last_sha`. It is only ever stored together with the SHA
    /// it belongs to: an ETag for an unhandled head would turn the retry into a 304.
    pub etag: Option<String>,
    pub last_checked: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The runs started for this watch, oldest first, with their results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<Run>,
}

/// The instances one trigger started for a commit, and what they reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub commit: String,
    pub started_at: DateTime<Utc>,
    pub instances: Vec<String>,
    /// Metric, then instance, then the value it reported.
    #[serde(default)]
    pub values: BTreeMap<String, BTreeMap<String, f64>>,
    /// When the run was judged complete; `None` while results may still come.
    pub completed_at: Option<DateTime<Utc>>,
    /// Complete without every instance reporting every metric.
    #[serde(default)]
    pub partial: bool,
}

impl Run {
    /// The values reported for `metric`, by instance id order.
    pub fn values_of(&self, metric: &str) -> Vec<f64> {
        self.values
            .get(metric)
            .map(|v| v.values().copied().collect())
            .unwrap_or_default()
    }
}

impl WatchState {
    fn new(watch: &Watch) -> WatchState {
        WatchState {
            repo: watch.repo.to_string(),
            branch: watch.branch.clone(),
            last_sha: None,
            etag: None,
            last_checked: None,
            last_error: None,
            runs: Vec::new(),
        }
    }

    /// Records `sha` as handled, with the ETag GitHub sent for it. The only way the two are
    /// written, so an ETag never belongs to an unhandled head.
    pub fn record(&mut self, sha: String, etag: Option<String>) {
        self.last_sha = Some(sha);
        self.etag = etag;
    }

    fn is(&self, repo: &Repo, branch: &str) -> bool {
        self.branch == branch && self.repo == repo.to_string()
    }
}

impl State {
    /// The state of `watch`, if it was ever polled.
    pub fn get(&self, watch: &Watch) -> Option<&WatchState> {
        self.watches
            .iter()
            .find(|w| w.is(&watch.repo, &watch.branch))
    }

    /// The state of `watch`, created empty when it was never polled.
    pub fn entry(&mut self, watch: &Watch) -> &mut WatchState {
        match self
            .watches
            .iter()
            .position(|w| w.is(&watch.repo, &watch.branch))
        {
            Some(i) => &mut self.watches[i],
            None => {
                self.watches.push(WatchState::new(watch));
                self.watches.last_mut().expect("just pushed")
            }
        }
    }
}

/// The state directory: where the state file and the lock live.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Reads the state; a missing file is an empty state. A file that cannot be parsed is
    /// an error that names it, and the file is left as it is.
    pub fn load(&self) -> anyhow::Result<State> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(State {
                    version: VERSION,
                    watches: Vec::new(),
                });
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read state file {}", path.display()));
            }
        };
        let state = parse(&bytes).with_context(|| {
            format!(
                "state file {} is corrupt; it was left as it is: repair it, or move it aside to \
                 start afresh (the next pass then records each head as a baseline)",
                path.display()
            )
        })?;
        Ok(state)
    }

    /// Replaces the state file atomically.
    pub fn save(&self, state: &State) -> anyhow::Result<()> {
        let path = self.path();
        let write = || -> io::Result<()> {
            let mut tmp = tempfile::Builder::new()
                .prefix(".state.")
                .suffix(".tmp")
                .tempfile_in(&self.dir)?;
            let mut json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
            json.push(b'\n');
            tmp.write_all(&json)?;
            tmp.as_file().sync_all()?;
            tmp.persist(&path).map_err(|e| e.error)?;
            // The rename is only durable once the directory entry is.
            File::open(&self.dir)?.sync_all()
        };
        write().with_context(|| format!("cannot write state file {}", path.display()))
    }

    /// Creates the directory if needed and checks that it can be written, so a pass finds
    /// out before it starts anything that it could not record having done so.
    pub fn prepare(&self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create state directory {}", self.dir.display()))?;
        tempfile::tempfile_in(&self.dir)
            .with_context(|| format!("cannot write in state directory {}", self.dir.display()))?;
        Ok(())
    }

    /// Takes the pass lock, waiting for another process's pass to end first. The lock is
    /// released when the returned guard is dropped, or when the process dies.
    pub async fn lock(&self) -> anyhow::Result<PassLock> {
        let path = self.dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => return Ok(PassLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => {
                tracing::info!("another pass holds {}; waiting for it", path.display());
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .context("lock task failed")?
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(PassLock { _file: file })
    }
}

/// Held for the whole of a pass.
#[derive(Debug)]
pub struct PassLock {
    _file: File,
}

/// Parses state file bytes. Never panics, whatever the input.
pub fn parse(bytes: &[u8]) -> anyhow::Result<State> {
    let state: State = serde_json::from_slice(bytes)?;
    if state.version != VERSION {
        bail!(
            "state version {} is not the supported version {VERSION}",
            state.version
        );
    }
    Ok(state)
}
