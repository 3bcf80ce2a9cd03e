//! `phalanx-testnet`: see `phalanx-testnet --help`.

use std::process::ExitCode;

/// mimalloc, as `phalanx-node` uses: the simulator and the load generator
/// allocate on every message (docs/BENCH.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    phalanx_testnet::cli::main()
}
