//! `phalanx-testnet init`, and the network creation `up` shares with it:
//! keys, a genesis with funded accounts, one config per node with the
//! admin API on (`[testnet] admin_api = true`), and Byzantine behaviours
//! written into the chosen nodes' configs.

use super::net::{self, DEFAULT_BASE_PORT, DEFAULT_DIR, MAX_ACCOUNTS, MAX_VALIDATORS, Network};
use crate::cli::Consensus;
use crate::sim::scenario::ByzantineSpec;
use anyhow::{Context, anyhow, ensure};
use phalanx_node::config::{CONFIG_FILE, Config};
use phalanx_node::home::{LocalNetSpec, write_local_net};
use std::io::Write;
use std::path::Path;

/// Every funded account's balance.
pub const ACCOUNT_BALANCE: u64 = 1_000_000_000;

/// `phalanx-testnet init`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// The protocol (only hotstuff runs in nodes so far).
    #[arg(long, value_enum, default_value = "hotstuff")]
    pub consensus: Consensus,
    /// Where to write node0/, node1/, ... and accounts/.
    #[arg(long, visible_alias = "dir", default_value = DEFAULT_DIR)]
    pub out: std::path::PathBuf,
    /// Node i listens for peers on BASE + 2i and serves HTTP on BASE + 2i + 1.
    #[arg(long, default_value_t = DEFAULT_BASE_PORT)]
    pub base_port: u16,
    /// Funded accounts (accounts/0.json is the faucet).
    #[arg(long, default_value_t = 8)]
    pub accounts: usize,
    /// The chain id.
    #[arg(long, default_value = "phalanx-local")]
    pub chain_id: String,
    /// INDEX[,INDEX...]:BEHAVIOUR: sets consensus.byzantine in those
    /// nodes' config.toml (silent, equivocate, double-vote,
    /// invalid-signature, stale-qc; repeatable).
    #[arg(long, value_name = "SPEC")]
    pub byzantine: Vec<ByzantineSpec>,
    /// Short timeouts and batch delay (for tests).
    #[arg(long, hide = true)]
    pub quick: bool,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NetSpec {
    pub validators: usize,
    pub consensus: Consensus,
    pub base_port: u16,
    pub accounts: usize,
    pub chain_id: String,
    pub quick: bool,
}

/// The config every node of a local network starts from.
pub fn node_config(quick: bool) -> Config {
    let mut config = Config::default();
    config.testnet.admin_api = true;
    if quick {
        config.consensus.base_timeout_ms = 1_000;
        config.consensus.max_timeout_ms = 4_000;
        config.consensus.max_batch_delay_ms = 100;
        config.sync.status_interval_ms = 500;
        config.p2p.reconnect_max_ms = 2_000;
    }
    config
}

/// Node i's peer-to-peer and HTTP ports.
pub fn ports(base_port: u16, validators: usize) -> anyhow::Result<(Vec<u16>, Vec<u16>)> {
    let port = |offset: usize| -> anyhow::Result<u16> {
        u16::try_from(usize::from(base_port) + offset).map_err(|_| {
            anyhow!("--base-port {base_port} leaves no room for {validators} nodes' ports")
        })
    };
    let mut p2p = Vec::with_capacity(validators);
    let mut api = Vec::with_capacity(validators);
    for i in 0..validators {
        p2p.push(port(2 * i)?);
        api.push(port(2 * i + 1)?);
    }
    Ok((p2p, api))
}

/// Writes a new network to `dir` (which must not hold one).
pub fn create(dir: &Path, spec: &NetSpec) -> anyhow::Result<()> {
    ensure!(
        spec.consensus == Consensus::Hotstuff,
        "only hotstuff runs in nodes so far"
    );
    ensure!(
        (1..=MAX_VALIDATORS).contains(&spec.validators),
        "--validators must be between 1 and {MAX_VALIDATORS}"
    );
    ensure!(
        (1..=MAX_ACCOUNTS).contains(&spec.accounts),
        "--accounts must be between 1 and {MAX_ACCOUNTS}"
    );
    ensure!(
        !net::exists(dir),
        "{} already holds a network (remove it first, or use `up --fresh`)",
        dir.display()
    );
    let (p2p_ports, api_ports) = ports(spec.base_port, spec.validators)?;
    write_local_net(
        dir,
        &LocalNetSpec {
            chain_id: phalanx_chain::ChainId::new(&spec.chain_id)?,
            validators: spec.validators,
            host: "127.0.0.1".into(),
            p2p_ports,
            api_ports,
            accounts: spec.accounts,
            balance: ACCOUNT_BALANCE,
            config: node_config(spec.quick),
        },
    )?;
    Ok(())
}

/// Sets `consensus.byzantine` in the config of every node the specs name.
pub fn apply_byzantine(
    dir: &Path,
    validators: usize,
    specs: &[ByzantineSpec],
) -> anyhow::Result<()> {
    for spec in specs {
        for index in &spec.replicas {
            let i = usize::from(index.0);
            ensure!(
                i < validators,
                "--byzantine {i}:{}: node {i} does not exist (the network has {validators})",
                spec.behaviour.name()
            );
            let home = dir.join(format!("node{i}"));
            let mut config = Config::load(&home)?;
            config.consensus.byzantine = Some(spec.behaviour.name().to_owned());
            let path = home.join(CONFIG_FILE);
            std::fs::write(&path, toml::to_string(&config)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// The network's nodes, one line each (`init`'s output).
pub fn print_nodes(net: &Network, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<5} {:<22} {:<28} {:<24} home",
        "node", "role", "p2p", "http"
    )?;
    for node in &net.nodes {
        writeln!(
            out,
            "{:<5} {:<22} {:<28} {:<24} {}",
            node.index,
            node.role(),
            node.p2p,
            node.rpc(),
            node.home.display()
        )?;
    }
    Ok(())
}

/// Runs `init`.
pub fn init(args: &InitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    create(
        &args.out,
        &NetSpec {
            validators: args.validators,
            consensus: args.consensus,
            base_port: args.base_port,
            accounts: args.accounts,
            chain_id: args.chain_id.clone(),
            quick: args.quick,
        },
    )?;
    apply_byzantine(&args.out, args.validators, &args.byzantine)?;
    let net = Network::open(&args.out)?;
    writeln!(
        out,
        "wrote a {}-validator network to {}",
        net.nodes.len(),
        net.dir.display()
    )?;
    print_nodes(&net, out)?;
    writeln!(
        out,
        "faucet key: {} (address {})",
        net.faucet().display(),
        net::address_of(&net.faucet())?
    )?;
    writeln!(
        out,
        "start it with: phalanx-testnet up --dir {}",
        args.out.display()
    )?;
    Ok(())
}
