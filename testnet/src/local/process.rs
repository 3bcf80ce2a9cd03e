//! Node processes: finding the `phalanx-node` binary, starting a node with
//! its output in `node<i>/node.log`, telling whether a pid is still that
//! node, signalling it, stopping it cleanly, and the tail of its log.
//!
//! Every node runs in a process group of its own, so a Ctrl-C in the
//! terminal reaches only `phalanx-testnet`, which then stops the nodes
//! in order (SIGTERM, a grace period, SIGKILL), and a detached network
//! does not die with the shell that started it.
//!
//! A pid is signalled only after [`probe`] confirms, on Linux through
//! `/proc/<pid>/cmdline`, that it is a `phalanx-node` running that node's
//! home directory: pids are reused, and a stale state file must never make
//! us signal an unrelated process. Where `/proc` is missing, a process that
//! exists is taken to be the node.

use super::net::NodeInfo;
use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use std::borrow::BorrowMut;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The node binary's name.
pub const NODE_BINARY: &str = "phalanx-node";
/// How long a node has to stop after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often stopping processes are polled.
const POLL: Duration = Duration::from_millis(50);
/// The most of a log read to find its last lines.
const TAIL_BYTES: u64 = 256 * 1024;

/// `phalanx-node` next to this executable, else on `PATH`.
pub fn node_binary() -> anyhow::Result<PathBuf> {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(NODE_BINARY)));
    if let Some(path) = sibling.filter(|p| p.is_file()) {
        return Ok(path);
    }
    if let Some(path) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(NODE_BINARY))
        .find(|p| p.is_file())
    {
        return Ok(path);
    }
    bail!(
        "cannot find {NODE_BINARY} next to this phalanx-testnet or on PATH: \
         build it with cargo build --release -p phalanx-node"
    )
}

/// Starts node `node` with `binary`; its stdout and stderr go to its log
/// file (appended to, after a line that marks the start).
pub fn spawn(binary: &Path, node: &NodeInfo) -> anyhow::Result<Child> {
    let log_path = node.log();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    writeln!(
        log,
        "=== phalanx-testnet: starting node {} at {} ms since the epoch ===",
        node.index,
        super::state::now_ms()
    )?;
    let err = log.try_clone()?;
    let mut command = Command::new(binary);
    command
        .arg("--home")
        .arg(&node.home)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0);
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    // The node's allocator (mimalloc) returns freed memory to the system
    // at once rather than after 10 ms: at 20,000 tx/s offered, peak RSS
    // per node 316-327 MiB instead of 360-389, at the same CPU
    // (docs/BENCH.md, "Allocator"). The caller's own setting wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        command.env("MIMALLOC_PURGE_DELAY", "0");
    }
    // A log file, not a terminal: no colour codes.
    command.env("NO_COLOR", "1");
    command
        .spawn()
        .with_context(|| format!("starting {} for node {}", binary.display(), node.index))
}

/// What a pid is, as far as node `home` is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The node, running.
    Running,
    /// The node, stopped by SIGSTOP (`pause`).
    Paused,
    /// No such process, a zombie, or another program.
    Gone,
}

/// Whether `pid` is the node of `home`, and in what state.
pub fn probe(pid: u32, home: &Path) -> Probe {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if !Path::new("/proc/self").exists() {
        return match signal::kill(to_pid(pid), None) {
            Ok(()) => Probe::Running,
            Err(_) => Probe::Gone,
        };
    }
    let Some(state) = state_of(pid) else {
        return Probe::Gone;
    };
    let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    if !is_node_of(&cmdline, home) {
        return Probe::Gone;
    }
    match state {
        'Z' | 'X' => Probe::Gone,
        'T' => Probe::Paused,
        _ => Probe::Running,
    }
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `T` for stopped,
/// `Z` for a zombie...), upper-cased; `None` if there is no such process.
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the state follows the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .map(|c| c.to_ascii_uppercase())
}

/// True if a NUL-separated command line runs `phalanx-node --home <home>`.
fn is_node_of(cmdline: &[u8], home: &Path) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let home = home.as_os_str().as_encoded_bytes();
    let named = args
        .first()
        .is_some_and(|a| a.ends_with(NODE_BINARY.as_bytes()));
    named && args.windows(2).any(|w| w == [b"--home".as_slice(), home])
}

/// True if `pid` is a `phalanx-testnet` process (a foreground `up`).
pub fn is_supervisor(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return signal::kill(to_pid(pid), None).is_ok();
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let zombie = matches!(state_of(pid), Some('Z' | 'X') | None);
    let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    !zombie && first.ends_with(b"phalanx-testnet")
}

fn to_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// Sends `sig` to `pid` (which the caller has probed).
pub fn send(pid: u32, sig: Signal) -> anyhow::Result<()> {
    signal::kill(to_pid(pid), sig).map_err(|e| anyhow!("sending {sig} to pid {pid}: {e}"))
}

/// A node process being stopped or watched: its pid and, when this
/// process started it, its [`Child`] (to reap it and read its exit status).
#[derive(Debug)]
pub struct NodeProc {
    pub index: usize,
    pub pid: u32,
    pub home: PathBuf,
    pub child: Option<Child>,
}

impl NodeProc {
    /// Its state; reaps it if it is our child and has exited.
    pub fn probe(&mut self) -> Probe {
        // Our own child is trusted by its pid: right after the fork its
        // command line is still ours, not the node's.
        if let Some(child) = &mut self.child {
            return match child.try_wait() {
                Ok(None) if state_of(self.pid) == Some('T') => Probe::Paused,
                Ok(None) => Probe::Running,
                _ => Probe::Gone,
            };
        }
        probe(self.pid, &self.home)
    }

    /// True once it has exited: reaped, a zombie, or no such pid. Unlike
    /// [`probe`](Self::probe), this does not go by the command line, which
    /// the kernel empties part way through an exit, before the process has
    /// closed its files (and so before sled's lock on its store is free).
    pub fn exited(&mut self) -> bool {
        if let Some(child) = &mut self.child {
            return !matches!(child.try_wait(), Ok(None));
        }
        if !Path::new("/proc/self").exists() {
            return signal::kill(to_pid(self.pid), None).is_err();
        }
        matches!(state_of(self.pid), None | Some('Z' | 'X'))
    }

    /// How it ended, if it is our child and has exited.
    pub fn exit_status(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        Some(match status.code() {
            Some(code) => format!("exited with code {code}"),
            None => {
                use std::os::unix::process::ExitStatusExt;
                match status.signal() {
                    Some(sig) => format!(
                        "killed by signal {}",
                        Signal::try_from(sig).map_or_else(|_| sig.to_string(), |s| s.to_string())
                    ),
                    None => "ended".into(),
                }
            }
        })
    }
}

/// Stops every process in `procs`: SIGTERM (and SIGCONT, so a paused node
/// can act on it), up to `grace` for all to exit, then SIGKILL for the
/// rest. Returns the indices of the nodes that needed SIGKILL.
pub fn stop_all(procs: &mut [NodeProc], grace: Duration) -> Vec<usize> {
    // Only what is a node now: a stale pid that another program has
    // taken since is left alone.
    let mut live: Vec<&mut NodeProc> = procs
        .iter_mut()
        .filter_map(|p| (p.probe() != Probe::Gone).then_some(p))
        .collect();
    for p in &live {
        let _ = send(p.pid, Signal::SIGTERM);
        let _ = send(p.pid, Signal::SIGCONT);
    }
    wait_gone(&mut live, grace);
    let mut killed = Vec::new();
    for p in &mut live {
        if !p.exited() {
            let _ = send(p.pid, Signal::SIGKILL);
            killed.push(p.index);
        }
    }
    wait_gone(&mut live, Duration::from_secs(5));
    killed
}

/// Waits up to `limit` until every process has exited; true if they have.
/// The pids must have been probed as nodes before they were signalled.
pub fn wait_gone<P: BorrowMut<NodeProc>>(procs: &mut [P], limit: Duration) -> bool {
    poll_until(limit, || procs.iter_mut().all(|p| p.borrow_mut().exited()))
}

/// Waits up to `limit` until `pid`, the node of `home`, probes as
/// `want`; true if it does.
pub fn wait_probe(pid: u32, home: &Path, want: Probe, limit: Duration) -> bool {
    poll_until(limit, || probe(pid, home) == want)
}

/// Polls `done` every [`POLL`] for up to `limit`; true once it holds.
fn poll_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// The pids of `phalanx-node` processes running `home`, found through
/// `/proc` (empty where there is none): the safety net for nodes a lost
/// state file no longer names.
pub fn find_nodes_of(home: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| probe(*pid, home) != Probe::Gone)
        .collect()
}

/// The last `lines` lines of `path` (reading at most its last 256 KiB).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return format!("({} cannot be read)", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(TAIL_BYTES);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.take(TAIL_BYTES).read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all.get(from..).unwrap_or_default().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_name_their_node() {
        let home = Path::new("/tmp/net/node1");
        let line = b"/x/phalanx-node\0--home\0/tmp/net/node1\0";
        assert!(is_node_of(line, home));
        assert!(!is_node_of(line, Path::new("/tmp/net/node10")));
        assert!(!is_node_of(b"/bin/sleep\0--home\0/tmp/net/node1\0", home));
        assert!(!is_node_of(b"", home));
    }

    #[test]
    fn our_own_pid_is_not_a_node() {
        assert_eq!(
            probe(std::process::id(), Path::new("/nowhere")),
            Probe::Gone
        );
        assert!(is_supervisor(std::process::id()) == cfg!(not(target_os = "linux")));
    }

    #[test]
    fn a_signalled_process_counts_as_gone_once_it_has_exited() {
        // Not our child as far as `NodeProc` knows, as with a detached node.
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let mut procs = [NodeProc {
            index: 0,
            pid: child.id(),
            home: PathBuf::from("/nowhere"),
            child: None,
        }];
        assert!(!procs[0].exited());
        assert!(!wait_gone(&mut procs, Duration::ZERO));
        send(child.id(), Signal::SIGKILL).unwrap();
        assert!(wait_gone(&mut procs, Duration::from_secs(10)));
        assert!(matches!(state_of(child.id()), Some('Z') | None));
        child.wait().unwrap();
    }

    #[test]
    fn tails_are_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        assert_eq!(tail(&path, 2), "line 98\nline 99");
        assert!(tail(&dir.path().join("missing"), 2).contains("cannot be read"));
    }
}
