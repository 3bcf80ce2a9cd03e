//! The state file, `DIR/testnet.json`: which processes run the network.
//!
//! `up` writes it once its nodes are spawned; `kill`, `restart` and the
//! foreground supervisor update a node's pid; `down` removes it. It exists
//! exactly while the network is meant to be running:
//!
//! ```json
//! {
//!   "format": 1,
//!   "node_binary": "/abs/path/phalanx-node",
//!   "supervisor_pid": 4242,
//!   "nodes": [ { "index": 0, "pid": 4243, "started_ms": 1767225600000 }, ... ]
//! }
//! ```
//!
//! `supervisor_pid` is the foreground `up` process (`null` with
//! `--detach`); `down` asks it to stop the nodes itself. A node's `pid` is
//! `null` once it is known to be stopped. A pid alone is not trusted: the
//! commands check that the process is still the node of that home
//! directory before signalling it ([`super::process::probe`]), so a pid the
//! system has reused is never signalled.
//!
//! The file is replaced atomically (written beside it, then renamed).
//! Commands that update it concurrently (two `restart`s at once) may lose
//! one update; the next `status` still tells the truth about processes,
//! and `down` finds node processes by their home directory too.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "testnet.json";
const FORMAT: u32 = 1;
/// Largest state file read.
const MAX_STATE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format: u32,
    /// The `phalanx-node` the nodes run (what `restart` starts again).
    pub node_binary: PathBuf,
    /// The foreground `up` process, if there is one.
    pub supervisor_pid: Option<u32>,
    pub nodes: Vec<NodeProcess>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeProcess {
    pub index: usize,
    pub pid: Option<u32>,
    /// When it was started (ms since the Unix epoch).
    pub started_ms: u64,
}

impl State {
    pub fn new(node_binary: PathBuf, supervisor_pid: Option<u32>, nodes: usize) -> State {
        State {
            format: FORMAT,
            node_binary,
            supervisor_pid,
            nodes: (0..nodes)
                .map(|index| NodeProcess {
                    index,
                    pid: None,
                    started_ms: 0,
                })
                .collect(),
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// The state of `dir`'s network, or `None` if it is not running.
    pub fn load(dir: &Path) -> anyhow::Result<Option<State>> {
        let path = State::path(dir);
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if meta.len() > MAX_STATE_BYTES {
            bail!(
                "{} is larger than {MAX_STATE_BYTES} bytes: not a state file",
                path.display()
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let state: State = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a testnet state file", path.display()))?;
        if state.format != FORMAT {
            bail!(
                "{} has format {}, this phalanx-testnet reads format {FORMAT}",
                path.display(),
                state.format
            );
        }
        Ok(Some(state))
    }

    /// Writes the file atomically.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = State::path(dir);
        let tmp = dir.join(format!(".{STATE_FILE}.{}", std::process::id()));
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Removes the file (the network is down).
    pub fn remove(dir: &Path) -> anyhow::Result<()> {
        match std::fs::remove_file(State::path(dir)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", State::path(dir).display())),
        }
    }

    pub fn pid(&self, index: usize) -> Option<u32> {
        self.nodes
            .iter()
            .find(|n| n.index == index)
            .and_then(|n| n.pid)
    }

    /// Records node `index`'s process (`None`: stopped).
    pub fn set_pid(&mut self, index: usize, pid: Option<u32>) {
        let started_ms = pid.map_or(0, |_| now_ms());
        match self.nodes.iter_mut().find(|n| n.index == index) {
            Some(node) => {
                node.pid = pid;
                node.started_ms = started_ms;
            }
            None => self.nodes.push(NodeProcess {
                index,
                pid,
                started_ms,
            }),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_absent_means_down() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), None);
        let mut state = State::new("/bin/phalanx-node".into(), Some(7), 2);
        state.set_pid(1, Some(99));
        state.save(dir.path()).unwrap();
        let loaded = State::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded, state);
        assert_eq!(loaded.pid(1), Some(99));
        assert_eq!(loaded.pid(0), None);
        State::remove(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(State::path(dir.path()), "{\"x\": 1}").unwrap();
        let err = State::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a testnet state file"), "{err}");
    }
}
