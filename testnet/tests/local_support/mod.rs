//! What the tests of real networks share: one network at a time, the
//! node and wallet binaries built next to `phalanx-testnet`, free loopback
//! ports, and the command itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use assert_cmd::Command;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, Once};

/// One network at a time: the machine has two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds `phalanx-node` (where `up` looks for it: next to
/// `phalanx-testnet`) and `phalanx-wallet`: `cargo test -p phalanx-testnet`
/// alone builds neither. Returns the directory that holds them.
///
/// The build asks for every test of the workspace, as `cargo test
/// --workspace` does, so that dependencies resolve to the same features:
/// inside the README's test command it then builds nothing. Asking for the
/// two binaries alone would build libp2p, rustls and others a second time
/// with other features (CI ran out of disk doing so). It also runs
/// without the variables cargo sets for a test process
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...): build scripts that read one
/// of them (ring's does) would see it changed and rebuild, with everything
/// above them.
pub fn binaries_built() -> PathBuf {
    static BUILD: Once = Once::new();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_phalanx-testnet"));
    let profile_dir = exe.parent().unwrap().to_owned();
    BUILD.call_once(|| {
        let target_dir = profile_dir.parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build
            .args(["build", "--workspace", "--bins", "--tests"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(set_for_tests) {
                build.env_remove(name);
            }
        }
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(
            status.success(),
            "building phalanx-node and phalanx-wallet failed"
        );
    });
    for binary in ["phalanx-node", "phalanx-wallet"] {
        assert!(profile_dir.join(binary).is_file(), "{binary} not built");
    }
    profile_dir
}

/// Whether cargo sets the variable `name` for the test process it runs
/// (as opposed to the user's own settings, such as `CARGO_HOME` or
/// `CARGO_INCREMENTAL`).
fn set_for_tests(name: &str) -> bool {
    const EXACT: [&str; 7] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    EXACT.contains(&name) || name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_BIN_")
}

/// A base port P with P .. P + 2n free right now, below the ephemeral
/// range.
pub fn free_base(nodes: usize) -> u16 {
    phalanx_node::home::free_loopback_base(u16::try_from(2 * nodes).unwrap()).unwrap()
}

pub fn testnet() -> Command {
    Command::cargo_bin("phalanx-testnet").unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
