//! `phalanx-testnet init`, and the network creation `up` shares with it:
//! keys, a genesis with funded accounts, one config per node with the
//! admin API on (`[testnet] admin_api = true`), and Byzantine behaviours
//! written into the chosen nodes' configs. A proof-of-work network's
//! nodes are its miners ([`super::pow`]): `--validators N` makes N of them.

use super::net::{
    self, DEFAULT_BASE_PORT, DEFAULT_DIR, Host, MAX_ACCOUNTS, MAX_VALIDATORS, Network,
};
use super::pow::{PowArgs, PowPlan};
use crate::sim::scenario::ByzantineSpec;
use anyhow::{Context, anyhow, bail, ensure};
use phalanx_chain::ConsensusKind;
use phalanx_consensus::Byzantine;
use phalanx_node::config::{CONFIG_FILE, Config};
use phalanx_node::home::{
    LocalNetSpec, LocalPowSpec, NodeAddrs, write_local_net, write_local_pow_net,
};
use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// Every funded account's balance.
pub const ACCOUNT_BALANCE: u64 = 1_000_000_000;

/// `phalanx-testnet init`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// How many validators, or miners with --consensus pow (default: 4,
    /// or one per `--hosts` entry).
    #[arg(long)]
    pub validators: Option<usize>,
    /// The protocol the nodes run: a BFT committee (hotstuff, pbft) or
    /// proof of work (pow: every node mines).
    #[arg(long, default_value = "hotstuff", value_parser = crate::cli::consensus_kind())]
    pub consensus: ConsensusKind,
    /// Where to write node0/, node1/, ... and accounts/.
    #[arg(long, visible_alias = "dir", default_value = DEFAULT_DIR)]
    pub out: std::path::PathBuf,
    /// Node i listens for peers on BASE + 2i and serves HTTP on BASE + 2i + 1
    /// (with --hosts: the k-th node on a host uses BASE + 2k and BASE + 2k + 1).
    #[arg(long, default_value_t = DEFAULT_BASE_PORT)]
    pub base_port: u16,
    /// One host per validator (IP addresses or DNS names, comma-separated):
    /// node i's home is made to run on host i. Its peers dial it there, and
    /// it listens for peers and HTTP on every interface, with the admin API
    /// off. Copy `node<i>/` to host i and start `phalanx-node --home node<i>`.
    #[arg(long, value_delimiter = ',', value_name = "HOST,...")]
    pub hosts: Vec<Host>,
    /// Funded accounts (accounts/0.json is the faucet).
    #[arg(long, default_value_t = 8)]
    pub accounts: usize,
    /// The chain id.
    #[arg(long, default_value = "phalanx-local")]
    pub chain_id: String,
    /// INDEX[,INDEX...]:BEHAVIOUR: sets consensus.byzantine in those
    /// nodes' config.toml (repeatable). Both protocols have silent,
    /// equivocate, double-vote and invalid-signature; hotstuff also
    /// stale-qc; pbft also skip-height, reorder and withhold.
    #[arg(long, value_name = "SPEC")]
    pub byzantine: Vec<ByzantineSpec>,
    #[command(flatten)]
    pub pow: PowArgs,
    /// Short timeouts and batch delay (for tests).
    #[arg(long, hide = true)]
    pub quick: bool,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NetSpec {
    pub validators: usize,
    pub consensus: ConsensusKind,
    pub base_port: u16,
    /// Empty: every node on 127.0.0.1. Else one host per validator.
    pub hosts: Vec<Host>,
    pub accounts: usize,
    pub chain_id: String,
    pub quick: bool,
    /// Proof of work: the genesis and the miners (`None` for BFT).
    pub pow: Option<PowPlan>,
}

/// The proof-of-work plan for a new network of `consensus` with `nodes`
/// nodes: `None` for BFT, which takes no proof-of-work flag.
pub fn pow_plan(
    consensus: ConsensusKind,
    nodes: usize,
    args: &PowArgs,
) -> anyhow::Result<Option<PowPlan>> {
    if consensus.is_bft() {
        ensure!(
            !args.any(),
            "--hashrate, --block-interval, --confirmations and --total-hashrate are for \
             --consensus pow, not {consensus}"
        );
        return Ok(None);
    }
    args.resolve(nodes).map(Some)
}

/// The config every node of a local network starts from.
pub fn node_config(quick: bool) -> Config {
    let mut config = Config::default();
    config.testnet.admin_api = true;
    if quick {
        config.consensus.base_timeout_ms = 1_000;
        config.consensus.max_timeout_ms = 4_000;
        config.consensus.max_batch_delay_ms = 100;
        config.consensus.empty_block_delay_ms = 300;
        config.sync.status_interval_ms = 500;
        config.p2p.reconnect_max_ms = 2_000;
    }
    config
}

/// Node i's peer-to-peer and HTTP ports.
pub fn ports(base_port: u16, validators: usize) -> anyhow::Result<(Vec<u16>, Vec<u16>)> {
    let mut p2p = Vec::with_capacity(validators);
    let mut api = Vec::with_capacity(validators);
    for i in 0..validators {
        let (p, a) = port_pair(base_port, i)?;
        p2p.push(p);
        api.push(a);
    }
    Ok((p2p, api))
}

/// The i-th pair of ports from `base_port`: BASE + 2i and BASE + 2i + 1.
fn port_pair(base_port: u16, i: usize) -> anyhow::Result<(u16, u16)> {
    let port = |offset: usize| -> anyhow::Result<u16> {
        u16::try_from(usize::from(base_port) + offset).map_err(|_| {
            anyhow!(
                "--base-port {base_port} leaves no room for {} nodes' ports",
                i + 1
            )
        })
    };
    Ok((port(2 * i)?, port(2 * i + 1)?))
}

/// Where each node is reached and what it binds. On loopback (no hosts):
/// node i on BASE + 2i and BASE + 2i + 1. With hosts: the k-th node on a
/// host on BASE + 2k and BASE + 2k + 1, dialed at its host and listening on
/// every interface.
pub fn node_addrs(
    base_port: u16,
    validators: usize,
    hosts: &[Host],
) -> anyhow::Result<Vec<NodeAddrs>> {
    if hosts.is_empty() {
        let (p2p, api) = ports(base_port, validators)?;
        return Ok(p2p
            .into_iter()
            .zip(api)
            .map(|(p, a)| NodeAddrs::loopback(p, a))
            .collect());
    }
    ensure!(
        hosts.len() == validators,
        "--hosts names {} hosts for {validators} validators: give one host per validator",
        hosts.len()
    );
    let mut on_host: HashMap<&Host, usize> = HashMap::new();
    let mut nodes = Vec::with_capacity(validators);
    for host in hosts {
        let k = on_host.entry(host).or_insert(0);
        let (p2p_port, api_port) = port_pair(base_port, *k)?;
        *k += 1;
        let any: IpAddr = match host {
            Host::Ip(IpAddr::V6(_)) => Ipv6Addr::UNSPECIFIED.into(),
            _ => Ipv4Addr::UNSPECIFIED.into(),
        };
        nodes.push(NodeAddrs {
            p2p: host.multiaddr(p2p_port),
            p2p_listen: Host::Ip(any).multiaddr(p2p_port),
            api_listen: SocketAddr::new(any, api_port),
        });
    }
    Ok(nodes)
}

/// Writes a new network to `dir` (which must not hold one).
pub fn create(dir: &Path, spec: &NetSpec) -> anyhow::Result<()> {
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
    let nodes = node_addrs(spec.base_port, spec.validators, &spec.hosts)?;
    let mut config = node_config(spec.quick);
    // The admin API has no authentication: only on loopback.
    config.testnet.admin_api = spec.hosts.is_empty();
    let local = LocalNetSpec {
        chain_id: phalanx_chain::ChainId::new(&spec.chain_id)?,
        consensus: spec.consensus,
        nodes,
        accounts: spec.accounts,
        balance: ACCOUNT_BALANCE,
        config,
    };
    match (&spec.pow, spec.consensus.is_bft()) {
        (None, true) => write_local_net(dir, &local)?,
        (Some(plan), false) => write_local_pow_net(
            dir,
            &local,
            &LocalPowSpec {
                params: plan.params()?,
                hashrate_limits: plan.hashrate_limits(),
            },
        )?,
        (Some(_), true) => bail!("a {} network takes no proof-of-work plan", spec.consensus),
        (None, false) => bail!(
            "--consensus {}: a proof-of-work plan is needed",
            spec.consensus
        ),
    };
    Ok(())
}

/// Refuses specs that name a node the network lacks, or a behaviour its
/// protocol's validators do not have.
pub fn check_byzantine(
    consensus: ConsensusKind,
    validators: usize,
    specs: &[ByzantineSpec],
) -> anyhow::Result<()> {
    let known = Byzantine::of(consensus);
    for spec in specs {
        let behaviour = spec.behaviour;
        ensure!(
            known.contains(&behaviour),
            "--byzantine {behaviour}: {consensus} validators have no such behaviour; they have {}",
            known
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for index in &spec.replicas {
            let i = usize::from(index.0);
            ensure!(
                i < validators,
                "--byzantine {i}:{behaviour}: node {i} does not exist (the network has {validators})"
            );
        }
    }
    Ok(())
}

/// Sets `consensus.byzantine` in the config of every node the specs name.
pub fn apply_byzantine(
    dir: &Path,
    consensus: ConsensusKind,
    validators: usize,
    specs: &[ByzantineSpec],
) -> anyhow::Result<()> {
    check_byzantine(consensus, validators, specs)?;
    for spec in specs {
        for index in &spec.replicas {
            let home = dir.join(format!("node{}", index.0));
            let mut config = Config::load(&home)?;
            config.consensus.byzantine = Some(spec.behaviour.name().to_owned());
            let path = home.join(CONFIG_FILE);
            std::fs::write(&path, toml::to_string(&config)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Sets every node's first view timeout to `ms` (the longest stays at
/// least that), and cuts the batch delay to half of it if it is longer, as
/// the config requires (the empty-block delay needs no cut: an idle view
/// timer waits it out).
pub fn set_base_timeout(dir: &Path, validators: usize, ms: u64) -> anyhow::Result<()> {
    edit_configs(dir, validators, |config| {
        let c = &mut config.consensus;
        c.base_timeout_ms = ms;
        c.max_timeout_ms = c.max_timeout_ms.max(ms);
        c.max_batch_delay_ms = c.max_batch_delay_ms.min(ms / 2);
    })
}

/// Sets every node's signature-check threads (`mempool.verify_threads`;
/// 0: every core).
pub fn set_verify_threads(dir: &Path, nodes: usize, threads: usize) -> anyhow::Result<()> {
    edit_configs(dir, nodes, |config| config.mempool.verify_threads = threads)
}

pub fn set_tx_index(dir: &Path, nodes: usize, keep: bool) -> anyhow::Result<()> {
    edit_configs(dir, nodes, |config| config.node.tx_index = keep)
}

/// Rewrites the configs of nodes `0..nodes` with `edit`, then loads each
/// again to check it as the node will.
fn edit_configs(dir: &Path, nodes: usize, edit: impl Fn(&mut Config)) -> anyhow::Result<()> {
    for index in 0..nodes {
        let home = dir.join(format!("node{index}"));
        let mut config = Config::load(&home)?;
        edit(&mut config);
        let path = home.join(CONFIG_FILE);
        std::fs::write(&path, toml::to_string(&config)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Config::load(&home)?;
    }
    Ok(())
}

/// The network's nodes, one line each (`init`'s output).
pub fn print_nodes(net: &Network, out: &mut dyn Write) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = net
        .nodes
        .iter()
        .map(|node| {
            vec![
                node.index.to_string(),
                node.role(),
                node.p2p.clone(),
                node.rpc(),
                node.home.display().to_string(),
            ]
        })
        .collect();
    super::write_table(out, &["node", "role", "p2p", "http", "home"], &rows)?;
    Ok(())
}

/// A proof-of-work network's genesis in one line: block interval,
/// confirmations, total hash rate and the hashes a block takes.
pub fn print_pow(net: &Network, out: &mut dyn Write) -> anyhow::Result<()> {
    let Some(pow) = &net.pow else {
        return Ok(());
    };
    let total: u64 = net.nodes.iter().filter_map(|n| n.hashrate_limit).sum();
    writeln!(
        out,
        "proof of work: a block every {} s on average ({} hashes at {} H/s in all), final after \
         {} confirmations; initial target {}, limit {}",
        pow.block_interval_ms as f64 / 1_000.0,
        super::pow::short_number(super::pow::hashes_per_block(pow.initial_target)),
        super::pow::short_number(total as f64),
        pow.confirmations,
        pow.initial_target,
        pow.target_limit
    )?;
    Ok(())
}

/// How to send from the faucet with the wallet, ready to paste (`--rpc`
/// added when node 0 is not where the wallet looks by default).
pub fn print_wallet_commands(net: &Network, out: &mut dyn Write) -> anyhow::Result<()> {
    let faucet = net.faucet();
    let to = net
        .account_files()
        .get(1)
        .map(|f| net::address_of(f))
        .transpose()?
        .unwrap_or_else(|| "<address>".into());
    let rpc = net.nodes.first().map(|n| n.rpc()).unwrap_or_default();
    let rpc_flag = if rpc == phalanx_wallet_default_rpc() {
        String::new()
    } else {
        format!(" --rpc {rpc}")
    };
    writeln!(out, "send from the faucet with the wallet:")?;
    writeln!(
        out,
        "  phalanx-wallet import --name faucet {}",
        faucet.display()
    )?;
    writeln!(
        out,
        "  phalanx-wallet{rpc_flag} transfer --from faucet --to {to} --amount 10"
    )?;
    if let Some(pow) = &net.pow {
        writeln!(
            out,
            "  (it waits for {} confirmations: about {} s at a block every {} s)",
            pow.confirmations,
            pow.confirmations * pow.block_interval_ms / 1_000,
            pow.block_interval_ms as f64 / 1_000.0
        )?;
    }
    Ok(())
}

/// The wallet's default `--rpc`: node 0 of a default local network.
fn phalanx_wallet_default_rpc() -> String {
    format!("http://127.0.0.1:{}", DEFAULT_BASE_PORT + 1)
}

/// Runs `init`.
pub fn init(args: &InitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let validators = args.validators.unwrap_or(if args.hosts.is_empty() {
        4
    } else {
        args.hosts.len()
    });
    check_byzantine(args.consensus, validators, &args.byzantine)?;
    create(
        &args.out,
        &NetSpec {
            validators,
            consensus: args.consensus,
            base_port: args.base_port,
            hosts: args.hosts.clone(),
            accounts: args.accounts,
            chain_id: args.chain_id.clone(),
            quick: args.quick,
            pow: pow_plan(args.consensus, validators, &args.pow)?,
        },
    )?;
    apply_byzantine(&args.out, args.consensus, validators, &args.byzantine)?;
    let net = Network::open(&args.out)?;
    writeln!(
        out,
        "wrote a {}-{} {} network to {}",
        net.nodes.len(),
        net.member_noun(),
        net.consensus,
        net.dir.display()
    )?;
    print_nodes(&net, out)?;
    print_pow(&net, out)?;
    writeln!(
        out,
        "faucet key: {} (address {})",
        net.faucet().display(),
        net::address_of(&net.faucet())?
    )?;
    if args.hosts.is_empty() {
        writeln!(
            out,
            "start it with: phalanx-testnet up --dir {}",
            args.out.display()
        )?;
        return Ok(());
    }
    writeln!(out, "to run it:")?;
    writeln!(
        out,
        "  copy node<i>/ to host i and start it there: phalanx-node --home node<i>"
    )?;
    writeln!(
        out,
        "  (node<i>/ holds that validator's secret key; accounts/ stays here)"
    )?;
    let mut ports: Vec<String> = net
        .nodes
        .iter()
        .flat_map(|n| {
            let p2p = net::tcp_of_multiaddr(&n.p2p_listen).map(|(_, p)| p);
            [p2p, Some(n.api.port())]
        })
        .flatten()
        .map(|p| p.to_string())
        .collect();
    ports.sort();
    ports.dedup();
    writeln!(
        out,
        "  nodes listen on every interface: open TCP {} between the hosts (peers) and to \
         wallets (HTTP)",
        ports.join(", ")
    )?;
    writeln!(
        out,
        "  then, from here: phalanx-testnet status --dir {} (and check, load)",
        args.out.display()
    )?;
    print_wallet_commands(&net, out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &str) -> Vec<Host> {
        list.split(',').map(|h| h.parse().unwrap()).collect()
    }

    #[test]
    fn loopback_nodes_take_successive_ports() {
        let nodes = node_addrs(26650, 2, &[]).unwrap();
        assert_eq!(nodes[0], NodeAddrs::loopback(26650, 26651));
        assert_eq!(nodes[1], NodeAddrs::loopback(26652, 26653));
    }

    #[test]
    fn nodes_on_separate_hosts_share_ports_and_listen_everywhere() {
        let nodes = node_addrs(26650, 4, &hosts("10.0.0.1,node2.lan,10.0.0.1,fd00::9")).unwrap();
        let p2p: Vec<&str> = nodes.iter().map(|n| n.p2p.as_str()).collect();
        assert_eq!(
            p2p,
            [
                "/ip4/10.0.0.1/tcp/26650",
                "/dns/node2.lan/tcp/26650",
                // A second node on the same host: the next ports.
                "/ip4/10.0.0.1/tcp/26652",
                "/ip6/fd00::9/tcp/26650",
            ]
        );
        assert_eq!(nodes[0].p2p_listen, "/ip4/0.0.0.0/tcp/26650");
        assert_eq!(nodes[0].api_listen, "0.0.0.0:26651".parse().unwrap());
        assert_eq!(nodes[2].api_listen, "0.0.0.0:26653".parse().unwrap());
        assert_eq!(nodes[3].p2p_listen, "/ip6/::/tcp/26650");
        assert_eq!(nodes[3].api_listen, "[::]:26651".parse().unwrap());
    }

    #[test]
    fn one_host_per_validator() {
        let err = node_addrs(26650, 3, &hosts("a,b")).unwrap_err().to_string();
        assert!(err.contains("2 hosts for 3 validators"), "{err}");
    }

    #[test]
    fn a_hosts_network_reads_back_with_its_hosts_and_no_admin_api() {
        let dir = tempfile::tempdir().unwrap();
        let spec = NetSpec {
            validators: 2,
            consensus: ConsensusKind::Hotstuff,
            base_port: 30000,
            hosts: hosts("10.1.2.3,box.example"),
            accounts: 2,
            chain_id: "hosts-test".into(),
            quick: false,
            pow: None,
        };
        create(dir.path(), &spec).unwrap();
        let net = Network::open(dir.path()).unwrap();
        assert_eq!(net.nodes[0].rpc(), "http://10.1.2.3:30001");
        assert_eq!(net.nodes[1].rpc(), "http://box.example:30001");
        assert_eq!(net.nodes[1].p2p, "/dns/box.example/tcp/30000");
        assert_eq!(net.nodes[1].p2p_listen, "/ip4/0.0.0.0/tcp/30000");
        for i in 0..2 {
            let home = dir.path().join(format!("node{i}"));
            let config = Config::load(&home).unwrap();
            assert!(!config.testnet.admin_api);
            // A node's home holds no funded account's key.
            assert!(!home.join("accounts").exists());
        }
        let err = super::super::up::check_hosts(&net).unwrap_err().to_string();
        assert!(err.contains("node 0 runs on 10.1.2.3"), "{err}");
    }

    #[test]
    fn pbft_networks_are_made() {
        let dir = tempfile::tempdir().unwrap();
        let spec = NetSpec {
            validators: 2,
            consensus: ConsensusKind::Pbft,
            base_port: 30100,
            hosts: Vec::new(),
            accounts: 1,
            chain_id: "pbft-test".into(),
            quick: false,
            pow: None,
        };
        create(dir.path(), &spec).unwrap();
        assert_eq!(
            Network::open(dir.path()).unwrap().consensus,
            ConsensusKind::Pbft
        );
        let err = pow_plan(
            ConsensusKind::Pbft,
            2,
            &PowArgs {
                confirmations: Some(3),
                ..PowArgs::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("are for --consensus pow, not pbft"), "{err}");
    }

    #[test]
    fn a_base_timeout_is_set_with_delays_that_fit_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let spec = NetSpec {
            validators: 2,
            consensus: ConsensusKind::Hotstuff,
            base_port: 30200,
            hosts: Vec::new(),
            accounts: 1,
            chain_id: "timeout-test".into(),
            quick: false,
            pow: None,
        };
        create(dir.path(), &spec).unwrap();
        set_base_timeout(dir.path(), 2, 400).unwrap();
        for index in 0..2 {
            let c = Config::load(&dir.path().join(format!("node{index}")))
                .unwrap()
                .consensus;
            assert_eq!(c.base_timeout_ms, 400);
            assert_eq!(c.max_timeout_ms, Config::default().consensus.max_timeout_ms);
            assert_eq!((c.max_batch_delay_ms, c.empty_block_delay_ms), (200, 1_000));
        }
        // A longer timeout leaves the shorter delays alone.
        set_base_timeout(dir.path(), 2, 60_000).unwrap();
        let c = Config::load(&dir.path().join("node1")).unwrap().consensus;
        assert_eq!((c.base_timeout_ms, c.max_timeout_ms), (60_000, 60_000));
        assert_eq!((c.max_batch_delay_ms, c.empty_block_delay_ms), (200, 1_000));
        set_verify_threads(dir.path(), 2, 1).unwrap();
        let m = Config::load(&dir.path().join("node0")).unwrap().mempool;
        assert_eq!(m.verify_threads, 1);
    }

    #[test]
    fn pow_networks_are_miners_that_dial_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let pow = PowArgs {
            hashrate: vec![(phalanx_chain::ValidatorIndex(2), 40)],
            block_interval: Some(2_000),
            confirmations: Some(4),
            total_hashrate: Some(10_000),
        };
        let spec = NetSpec {
            validators: 3,
            consensus: ConsensusKind::Pow,
            base_port: 30200,
            hosts: Vec::new(),
            accounts: 2,
            chain_id: "pow-test".into(),
            quick: true,
            pow: pow_plan(ConsensusKind::Pow, 3, &pow).unwrap(),
        };
        create(dir.path(), &spec).unwrap();
        let net = Network::open(dir.path()).unwrap();
        assert_eq!(net.consensus, ConsensusKind::Pow);
        let params = net.pow.clone().unwrap();
        assert_eq!(params.confirmations, 4);
        assert_eq!(params.block_interval_ms, 2_000);
        // 10,000 H/s for 2 s: 20,000 hashes a block.
        let per_block = crate::local::pow::hashes_per_block(params.initial_target);
        assert!((19_990.0..20_010.0).contains(&per_block), "{per_block}");
        assert!(params.target_limit > params.initial_target);
        let limits: Vec<Option<u64>> = net.nodes.iter().map(|n| n.hashrate_limit).collect();
        assert_eq!(limits, vec![Some(3_000), Some(3_000), Some(4_000)]);
        for node in &net.nodes {
            assert!(!node.validator);
            assert_eq!(
                node.p2p,
                format!("/ip4/127.0.0.1/tcp/{}", 30200 + 2 * node.index)
            );
            let config = Config::load(&node.home).unwrap();
            assert!(config.mining.enabled);
            assert_eq!(config.mining.threads, 1);
            assert_eq!(config.p2p.listen, node.p2p);
            assert_eq!(config.p2p.peers.len(), 2);
            assert!(config.testnet.admin_api);
            let genesis = phalanx_node::config::load_genesis(&node.home).unwrap();
            assert!(genesis.validators.is_empty());
            assert_eq!(genesis.accounts.len(), 2);
        }
        assert!(net.nodes[0].role().starts_with("miner (3.00k H/s)"));
        let mut out = Vec::new();
        print_pow(&net, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("a block every 2 s on average") && text.contains("after 4 confirmations"),
            "{text}"
        );
    }

    #[test]
    fn byzantine_behaviours_must_be_the_protocols_own() {
        let spec = |text: &str| -> ByzantineSpec { text.parse().unwrap() };
        check_byzantine(ConsensusKind::Hotstuff, 4, &[spec("1:stale-qc")]).unwrap();
        check_byzantine(ConsensusKind::Pbft, 4, &[spec("0,3:withhold")]).unwrap();
        let err = check_byzantine(ConsensusKind::Pbft, 4, &[spec("1:stale-qc")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pbft validators have no such behaviour; they have silent,"),
            "{err}"
        );
        let err = check_byzantine(ConsensusKind::Pbft, 4, &[spec("5:withhold")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("node 5 does not exist"), "{err}");
    }
}
