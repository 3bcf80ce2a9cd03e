//! `phalanx-node --home DIR`: runs a Phalanx node.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: allocation and freeing took about
/// 11 % of a validator's CPU under load (docs/BENCH.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Phalanx ledger node (validator or full node).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The node's home directory: config.toml, genesis.toml, its key file
    /// and its data.
    #[arg(long, env = "PHALANX_HOME")]
    home: PathBuf,
    /// Log format (filter with RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(phalanx_node::node::run_home(&args.home)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
