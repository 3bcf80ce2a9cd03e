//! What Linux says about a process and the machine, from `/proc`: a node's
//! CPU time (`/proc/<pid>/stat`), peak resident memory (`VmHWM` in
//! `/proc/<pid>/status`) and bytes it had written to storage
//! (`write_bytes` in `/proc/<pid>/io`); the machine's cores, CPU model,
//! memory and load. Parsers are pure functions of the files' text; a file
//! that cannot be read or parsed gives `None`, never a panic.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Largest `/proc` file read.
const MAX_PROC_BYTES: u64 = 1024 * 1024;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcSample {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: Option<u64>,
    /// Peak resident set size, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Bytes the process caused to be written to storage.
    pub write_bytes: Option<u64>,
}

fn read(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_PROC_BYTES).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Reads `/proc/<pid>/{stat,status,io}`.
pub fn sample(pid: u32) -> ProcSample {
    let dir = format!("/proc/{pid}");
    let dir = Path::new(&dir);
    ProcSample {
        cpu_ticks: read(&dir.join("stat")).as_deref().and_then(cpu_ticks),
        peak_rss_bytes: read(&dir.join("status"))
            .as_deref()
            .and_then(peak_rss_bytes),
        write_bytes: read(&dir.join("io")).as_deref().and_then(write_bytes),
    }
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The
/// command name (field 2) is in parentheses and may hold spaces and
/// parentheses itself: fields are counted after its last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // rest: " S ppid ..." — field 3 is the first after the name.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// A `Key:   N kB` line of `/proc/<pid>/status` or `/proc/meminfo`, in
/// bytes.
fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?.trim();
        let kb: u64 = value.strip_suffix("kB")?.trim().parse().ok()?;
        kb.checked_mul(1024)
    })
}

/// `VmHWM` of `/proc/<pid>/status`, bytes.
pub fn peak_rss_bytes(status: &str) -> Option<u64> {
    kb_field(status, "VmHWM")
}

/// `write_bytes` of `/proc/<pid>/io`.
pub fn write_bytes(io: &str) -> Option<u64> {
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:")?.trim().parse().ok())
}

/// Clock ticks per second, the unit of [`ProcSample::cpu_ticks`].
pub fn clock_ticks_per_second() -> u64 {
    use nix::unistd::{SysconfVar, sysconf};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        // The value every Linux architecture but a few historical ones uses.
        _ => 100,
    }
}

/// The machine a run was on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// `MemTotal` of `/proc/meminfo`.
    pub memory_bytes: Option<u64>,
    /// `/proc/loadavg`'s 1-minute load when the run started (other work
    /// on the machine shows here).
    pub load_average_at_start: Option<f64>,
    /// The kernel (`/proc/sys/kernel/osrelease`).
    pub kernel: Option<String>,
}

impl Machine {
    pub fn this() -> Machine {
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: read(Path::new("/proc/cpuinfo"))
                .as_deref()
                .and_then(cpu_model),
            memory_bytes: read(Path::new("/proc/meminfo"))
                .as_deref()
                .and_then(|t| kb_field(t, "MemTotal")),
            load_average_at_start: load_average(),
            kernel: read(Path::new("/proc/sys/kernel/osrelease")).map(|t| t.trim().to_owned()),
        }
    }
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    read(Path::new("/proc/loadavg"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The first `model name` of `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_user_plus_system_time() {
        let stat = "4242 (phalanx-node) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 \
                    9 0 123456 1000000 5000 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(325));
        // A name with spaces and parentheses.
        let odd = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 1 1 1 1";
        assert_eq!(cpu_ticks(odd), Some(15));
        assert_eq!(cpu_ticks("7 (x) R 1"), None);
        assert_eq!(cpu_ticks(""), None);
    }

    #[test]
    fn status_io_cpuinfo_and_meminfo_fields() {
        let status =
            "Name:\tphalanx-node\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(peak_rss_bytes(status), Some(51_200 * 1024));
        assert_eq!(peak_rss_bytes("VmHWM: lots"), None);
        let io = "rchar: 100\nwchar: 200\nsyscr: 1\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(write_bytes(io), Some(8_192));
        assert_eq!(write_bytes("cancelled_write_bytes: 5\n"), None);
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(
            kb_field("MemTotal:       8000000 kB\n", "MemTotal"),
            Some(8_192_000_000)
        );
    }

    #[test]
    fn this_process_can_be_read() {
        let s = sample(std::process::id());
        if cfg!(target_os = "linux") {
            assert!(s.cpu_ticks.is_some());
            assert!(s.peak_rss_bytes.unwrap_or(0) > 0);
        }
        assert!(clock_ticks_per_second() > 0);
        assert!(Machine::this().cores >= 1);
        assert_eq!(sample(u32::MAX), ProcSample::default());
    }
}
