//! `phalanx-testnet`: see `phalanx-testnet --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    phalanx_testnet::cli::main()
}
