//! One function per subcommand. Each checks its input before touching the
//! network, prints its result through [`Out`], and returns a
//! [`WalletError`] for `main` to print and turn into an exit status.

mod chain;
mod keys;
mod transfer;
mod watch;

use crate::cli::{Cli, Command};
use crate::error::WalletError;
use crate::output::Out;
use crate::rpc::Node;
use crate::wallet::Wallet;
use std::path::PathBuf;

/// What every command may need, built on demand (a `keygen` never opens
/// a connection, a `status` never reads the wallet).
#[derive(Debug)]
pub struct Context {
    pub out: Out,
    rpc: String,
    wallet_dir: Option<PathBuf>,
}

impl Context {
    pub fn wallet(&self) -> Result<Wallet, WalletError> {
        Wallet::new(self.wallet_dir.clone())
    }

    pub fn node(&self) -> Result<Node, WalletError> {
        Node::new(&self.rpc)
    }
}

/// Runs the command `cli` names.
pub async fn run(cli: Cli) -> Result<(), WalletError> {
    let ctx = Context {
        out: Out { json: cli.json },
        rpc: cli.rpc,
        wallet_dir: cli.wallet_dir,
    };
    match cli.command {
        Command::Keygen(args) => keys::keygen(&ctx, &args),
        Command::List => keys::list(&ctx),
        Command::Address { name } => keys::address(&ctx, &name),
        Command::Import(args) => keys::import(&ctx, &args),
        Command::Balance { account } => chain::balance(&ctx, &account).await,
        Command::Transfer(args) => transfer::transfer(&ctx, &args).await,
        Command::Tx { hash } => chain::tx(&ctx, &hash).await,
        Command::Block { height } => chain::block(&ctx, &height).await,
        Command::Status => chain::status(&ctx).await,
        Command::Watch { count } => watch::watch(&ctx, count).await,
        Command::Completions { shell } => keys::completions(shell),
    }
}
