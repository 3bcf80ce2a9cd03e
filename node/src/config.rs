//! `config.toml`: every value has a default (documented in docs/CONFIG.md),
//! an unknown key or a bad value stops start-up with an error naming it.
//!
//! A node's home directory holds `config.toml`, `genesis.toml`, the node's
//! key file and its data directory.

use crate::miner::MAX_MINER_THREADS;
use phalanx_chain::{Address, ConsensusKind, Genesis};
use phalanx_consensus::{Byzantine, Tuning};
use phalanx_crypto::PublicKey;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The config file's name in a home directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The genesis file's name in a home directory.
pub const GENESIS_FILE: &str = "genesis.toml";
/// Largest config or genesis file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

/// The whole file. Sections may be left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    pub p2p: P2pSection,
    pub api: ApiSection,
    pub mempool: MempoolSection,
    pub consensus: ConsensusSection,
    pub sync: SyncSection,
    pub mining: MiningSection,
    pub testnet: TestnetSection,
}

/// The most threads `mempool.verify_threads` may ask for.
const MAX_VERIFY_THREADS: usize = 1_024;

/// The largest sled page cache `node.cache_mb` may ask for (64 GiB).
const MAX_CACHE_MB: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// The node's key file, relative to the home directory.
    pub key_file: PathBuf,
    /// The sled database directory, relative to the home directory.
    pub data_dir: PathBuf,
    /// sled's page cache, in MiB.
    pub cache_mb: u64,
    /// Index committed transactions by hash, for `GET /txs/{hash}` and a
    /// wallet waiting for finality. Off, a commit does about a sixth of
    /// the store's work.
    pub tx_index: bool,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            key_file: PathBuf::from("node_key.json"),
            data_dir: PathBuf::from("data"),
            cache_mb: phalanx_chain::store::DEFAULT_CACHE_BYTES >> 20,
            tx_index: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2pSection {
    /// libp2p listen address. Empty: the address genesis gives this
    /// validator.
    pub listen: String,
    /// Extra peers to dial besides the genesis validators, each
    /// `<public key hex>@<multiaddr>`.
    pub peers: Vec<String>,
    /// Inbound messages queued for the node, at most.
    pub inbound_queue: usize,
    /// Outbound messages queued for the network, at most.
    pub outbound_queue: usize,
    /// Largest network message, in bytes.
    pub max_message_bytes: usize,
    /// Invalid messages from one peer within `ban_window_secs` before it
    /// is disconnected and refused.
    pub ban_threshold: u32,
    pub ban_window_secs: u64,
    pub ban_secs: u64,
    /// Redial back-off bounds.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
}

impl Default for P2pSection {
    fn default() -> Self {
        P2pSection {
            listen: String::new(),
            peers: Vec::new(),
            inbound_queue: 8_192,
            outbound_queue: 8_192,
            max_message_bytes: crate::net::MAX_NETWORK_MESSAGE_BYTES,
            ban_threshold: 20,
            ban_window_secs: 60,
            ban_secs: 60,
            reconnect_min_ms: 250,
            reconnect_max_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// HTTP listen address (loopback by default).
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout_ms: u64,
    pub max_event_subscribers: usize,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8645)),
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 10_000,
            max_event_subscribers: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolSection {
    pub max_txs: usize,
    pub max_bytes: usize,
    /// How far above an account's next nonce a transaction may be.
    pub max_nonce_gap: u64,
    /// Threads that batches of signatures are split over (admission,
    /// gossip, block validation); 0: every core the process may use.
    pub verify_threads: usize,
}

impl Default for MempoolSection {
    fn default() -> Self {
        MempoolSection {
            max_txs: 20_000,
            max_bytes: 32 * 1024 * 1024,
            max_nonce_gap: 64,
            verify_threads: 0,
        }
    }
}

/// `consensus.timeout_factor`, at most.
pub const MAX_TIMEOUT_FACTOR: u64 = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusSection {
    /// Transactions per block, at most.
    pub batch_size: usize,
    /// How long a leader waits for a full batch before proposing what it
    /// has.
    pub max_batch_delay_ms: u64,
    /// How long a leader with no transaction at all waits before proposing
    /// an empty block (an idle chain makes about one block per this delay);
    /// a transaction arriving cuts the wait to `max_batch_delay_ms` (counted
    /// from when the leader began to wait). At or below
    /// `max_batch_delay_ms`: no difference.
    pub empty_block_delay_ms: u64,
    /// A view's first timeout, at least; it doubles per failed view up to
    /// the max.
    pub base_timeout_ms: u64,
    /// The first timeout is also at least this many times the second-longest of
    /// the last 16 gaps between progress events (QCs, executed blocks), so
    /// that it grows while rounds are slow (0: the base alone).
    pub timeout_factor: u64,
    pub max_timeout_ms: u64,
    /// Relay every new valid consensus message once.
    pub forward: bool,
    /// Test networks only: misbehave on purpose, with one of the genesis
    /// protocol's behaviours (HotStuff: `silent`, `equivocate`,
    /// `double-vote`, `invalid-signature`, `stale-qc`; PBFT also
    /// `skip-height`, `reorder`, `withhold` instead of `stale-qc`).
    pub byzantine: Option<String>,
    /// PBFT: a checkpoint every this many heights.
    pub checkpoint_interval: u64,
    /// PBFT: heights accepted above the last stable checkpoint (the high
    /// watermark is the low one plus this); at least
    /// `checkpoint_interval`, or no checkpoint could ever become stable.
    pub watermark_window: u64,
    /// PBFT: heights a primary keeps in flight (proposed, not yet
    /// committed), at most.
    pub max_in_flight: u64,
}

impl Default for ConsensusSection {
    fn default() -> Self {
        ConsensusSection {
            batch_size: 1_000,
            max_batch_delay_ms: 250,
            empty_block_delay_ms: 1_000,
            base_timeout_ms: 500,
            timeout_factor: phalanx_consensus::view_timeout::DEFAULT_TIMEOUT_FACTOR,
            max_timeout_ms: 30_000,
            forward: true,
            byzantine: None,
            checkpoint_interval: 16,
            watermark_window: 32,
            max_in_flight: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSection {
    /// Blocks asked for per sync request.
    pub batch_blocks: u32,
    /// A sync request without an answer after this long goes to another
    /// peer.
    pub request_timeout_ms: u64,
    /// How often a node asks a peer for its height while not syncing.
    pub status_interval_ms: u64,
}

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            batch_blocks: 64,
            request_timeout_ms: 3_000,
            status_interval_ms: 2_000,
        }
    }
}

/// Proof-of-work chains only: this node's miner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MiningSection {
    /// Mine blocks. Only a proof-of-work chain can be mined: enabled on
    /// another chain, start-up stops.
    pub enabled: bool,
    /// The address mined blocks pay (64 hex digits). Unset: the node
    /// key's address.
    pub address: Option<String>,
    /// Hashing threads.
    pub threads: usize,
    /// Hashes per second for all threads together, at most (0:
    /// unlimited); at least `threads` when set, one a thread.
    pub hashrate_limit: u64,
}

/// The default [`MiningSection::hashrate_limit`]: a small share of one
/// core, so an enabled miner on a laptop testnet leaves room for the rest.
pub const DEFAULT_HASHRATE_LIMIT: u64 = 50_000;

impl Default for MiningSection {
    fn default() -> Self {
        MiningSection {
            enabled: false,
            address: None,
            threads: 1,
            hashrate_limit: DEFAULT_HASHRATE_LIMIT,
        }
    }
}

/// What the node mines with: `[mining]` resolved for a chain and a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mining {
    /// The address mined blocks pay.
    pub address: Address,
    pub threads: usize,
    /// Hashes per second, at most (0: unlimited).
    pub hashrate_limit: u64,
}

/// Test networks only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestnetSection {
    /// Serve `POST /admin/partition` and `POST /admin/heal`, which cut
    /// this node off from chosen peers (`phalanx-testnet partition`).
    /// Off, they answer 404 like any unknown route.
    pub admin_api: bool,
}

impl Config {
    /// Reads `config.toml` from `home` (all defaults if it is absent).
    pub fn load(home: &Path) -> Result<Config, ConfigError> {
        let path = home.join(CONFIG_FILE);
        if !path.exists() {
            return Ok(Config::default());
        }
        let text = read_bounded(&path)?;
        Config::parse(&path, &text)
    }

    /// Parses and checks config text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let positive: [(&'static str, u64); 15] = [
            ("node.cache_mb", self.node.cache_mb),
            ("p2p.inbound_queue", self.p2p.inbound_queue as u64),
            ("p2p.outbound_queue", self.p2p.outbound_queue as u64),
            ("p2p.max_message_bytes", self.p2p.max_message_bytes as u64),
            ("api.max_body_bytes", self.api.max_body_bytes as u64),
            ("api.request_timeout_ms", self.api.request_timeout_ms),
            ("mempool.max_txs", self.mempool.max_txs as u64),
            ("mempool.max_bytes", self.mempool.max_bytes as u64),
            ("consensus.batch_size", self.consensus.batch_size as u64),
            ("consensus.base_timeout_ms", self.consensus.base_timeout_ms),
            (
                "consensus.checkpoint_interval",
                self.consensus.checkpoint_interval,
            ),
            (
                "consensus.watermark_window",
                self.consensus.watermark_window,
            ),
            ("consensus.max_in_flight", self.consensus.max_in_flight),
            ("sync.batch_blocks", u64::from(self.sync.batch_blocks)),
            ("sync.request_timeout_ms", self.sync.request_timeout_ms),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, "must be above 0".into()));
            }
        }
        if self.node.cache_mb > MAX_CACHE_MB {
            return Err(invalid("node.cache_mb", format!("at most {MAX_CACHE_MB}")));
        }
        if self.mempool.verify_threads > MAX_VERIFY_THREADS {
            return Err(invalid(
                "mempool.verify_threads",
                format!("at most {MAX_VERIFY_THREADS} (0: every core)"),
            ));
        }
        if self.consensus.batch_size > phalanx_chain::MAX_BLOCK_TXS {
            return Err(invalid(
                "consensus.batch_size",
                format!("at most {} (a block's limit)", phalanx_chain::MAX_BLOCK_TXS),
            ));
        }
        if self.consensus.timeout_factor > MAX_TIMEOUT_FACTOR {
            return Err(invalid(
                "consensus.timeout_factor",
                format!("at most {MAX_TIMEOUT_FACTOR} (0: the base timeout alone)"),
            ));
        }
        if self.consensus.max_timeout_ms < self.consensus.base_timeout_ms {
            return Err(invalid(
                "consensus.max_timeout_ms",
                "must be at least consensus.base_timeout_ms".into(),
            ));
        }
        // The empty-block delay has no such bound: an idle replica's view
        // timer waits it out once more (`phalanx_consensus::view_timeout`).
        if self.consensus.max_batch_delay_ms.saturating_mul(2) > self.consensus.base_timeout_ms {
            return Err(invalid(
                "consensus.max_batch_delay_ms",
                "must be at most half of consensus.base_timeout_ms".into(),
            ));
        }
        if self.consensus.watermark_window < self.consensus.checkpoint_interval {
            return Err(invalid(
                "consensus.watermark_window",
                "must be at least consensus.checkpoint_interval".into(),
            ));
        }
        if self.sync.batch_blocks > crate::sync::MAX_SYNC_BATCH {
            return Err(invalid(
                "sync.batch_blocks",
                format!("at most {}", crate::sync::MAX_SYNC_BATCH),
            ));
        }
        if self.p2p.reconnect_max_ms < self.p2p.reconnect_min_ms {
            return Err(invalid(
                "p2p.reconnect_max_ms",
                "must be at least p2p.reconnect_min_ms".into(),
            ));
        }
        self.byzantine()
            .map_err(|message| invalid("consensus.byzantine", message))?;
        self.check_mining(path)?;
        for peer in &self.p2p.peers {
            parse_peer(peer).map_err(|message| invalid("p2p.peers", message))?;
        }
        Ok(())
    }

    fn check_mining(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let m = &self.mining;
        if !(1..=MAX_MINER_THREADS).contains(&m.threads) {
            return Err(invalid(
                "mining.threads",
                format!("must be from 1 to {MAX_MINER_THREADS}"),
            ));
        }
        if m.hashrate_limit != 0 && m.hashrate_limit < m.threads as u64 {
            return Err(invalid(
                "mining.hashrate_limit",
                format!(
                    "{} hashes per second cannot be shared by {} threads: use 0 (unlimited) \
                     or at least mining.threads",
                    m.hashrate_limit, m.threads
                ),
            ));
        }
        self.mining_address()
            .map_err(|message| invalid("mining.address", message))?;
        Ok(())
    }

    /// The configured mining address, if one is set.
    fn mining_address(&self) -> Result<Option<Address>, String> {
        self.mining
            .address
            .as_deref()
            .map(|text| text.parse::<Address>().map_err(|e| e.to_string()))
            .transpose()
    }

    /// What this node mines with on a chain of `consensus`, keyed
    /// `node_key`: `None` unless `[mining] enabled`; an error if mining is
    /// enabled on a chain that is not mined.
    pub fn mining(
        &self,
        consensus: ConsensusKind,
        node_key: &PublicKey,
    ) -> Result<Option<Mining>, String> {
        if !self.mining.enabled {
            return Ok(None);
        }
        if consensus != ConsensusKind::Pow {
            return Err(format!(
                "mining.enabled: the genesis says consensus = \"{consensus}\", which is not \
                 mined; only a \"pow\" chain is"
            ));
        }
        let address = self
            .mining_address()
            .map_err(|message| format!("mining.address: {message}"))?
            .unwrap_or_else(|| Address::from(*node_key));
        Ok(Some(Mining {
            address,
            threads: self.mining.threads,
            hashrate_limit: self.mining.hashrate_limit,
        }))
    }

    /// How the protocol is tuned on a chain of `consensus` for the node
    /// keyed `node_key`: [`Config::tuning`], with the miner's address
    /// when `[mining]` is enabled.
    pub fn tuning_for(
        &self,
        consensus: ConsensusKind,
        node_key: &PublicKey,
    ) -> Result<Tuning, String> {
        let mut tuning = self.tuning()?;
        tuning.miner = self.mining(consensus, node_key)?.map(|m| m.address);
        Ok(tuning)
    }

    /// The configured Byzantine behaviour, if any.
    pub fn byzantine(&self) -> Result<Option<Byzantine>, String> {
        self.consensus
            .byzantine
            .as_deref()
            .map(|name| name.parse::<Byzantine>())
            .transpose()
    }

    pub fn base_timeout(&self) -> Duration {
        Duration::from_millis(self.consensus.base_timeout_ms)
    }

    /// How the protocol is tuned: `[consensus]`, with the Byzantine
    /// behaviour parsed (no miner: see [`Config::tuning_for`]).
    pub fn tuning(&self) -> Result<Tuning, String> {
        let c = &self.consensus;
        Ok(Tuning {
            base_timeout_ms: c.base_timeout_ms,
            timeout_factor: c.timeout_factor,
            max_timeout_ms: c.max_timeout_ms,
            forward: c.forward,
            byzantine: self.byzantine()?,
            max_batch_delay_ms: c.max_batch_delay_ms,
            empty_block_delay_ms: c.empty_block_delay_ms,
            checkpoint_interval: c.checkpoint_interval,
            watermark_window: c.watermark_window,
            max_in_flight: c.max_in_flight,
            unsafe_view_change: false,
            miner: None,
            first_seen_ties: false,
        })
    }
}

/// Splits `<public key hex>@<multiaddr>`.
pub fn parse_peer(text: &str) -> Result<(phalanx_crypto::PublicKey, String), String> {
    let (key, addr) = text
        .split_once('@')
        .ok_or_else(|| format!("{text:?} is not <public key hex>@<multiaddr>"))?;
    let key = key
        .parse::<phalanx_crypto::PublicKey>()
        .map_err(|e| format!("{key:?}: {e}"))?;
    if !addr.starts_with('/') {
        return Err(format!("{addr:?} is not a multiaddr"));
    }
    Ok((key, addr.to_owned()))
}

/// Reads `genesis.toml` from `home`.
pub fn load_genesis(home: &Path) -> Result<Genesis, ConfigError> {
    let path = home.join(GENESIS_FILE);
    let text = read_bounded(&path)?;
    Genesis::from_toml(&text).map_err(|e| ConfigError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })
}

fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let read = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
        });
    }
    std::fs::read_to_string(path).map_err(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("config.toml"), text)
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn the_documented_defaults_parse_back() {
        let text = toml::to_string(&Config::default()).unwrap();
        assert_eq!(parse(&text).unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("[consensus]\nbatch_sise = 10\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch_sise"), "{err}");
        let err = parse("[consensu]\n").unwrap_err().to_string();
        assert!(err.contains("consensu"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse("[consensus]\nbatch_size = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("consensus.batch_size"), "{err}");
        let err = parse("[consensus]\nbyzantine = \"sneaky\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("consensus.byzantine"), "{err}");
        let err = parse("[api]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
        let err = parse("[p2p]\npeers = [\"abc\"]\n").unwrap_err().to_string();
        assert!(err.contains("p2p.peers"), "{err}");
        let err = parse("[consensus]\nmax_batch_delay_ms = 5000\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_batch_delay_ms"), "{err}");
        let err = parse("[consensus]\ntimeout_factor = 101\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("consensus.timeout_factor"), "{err}");
        // An idle replica's view timer waits the empty-block delay out once
        // more, so it may be longer than the base timeout.
        let slow = parse("[consensus]\nempty_block_delay_ms = 5000\n").unwrap();
        assert_eq!(slow.consensus.empty_block_delay_ms, 5_000);
        for text in ["[node]\ncache_mb = 0\n", "[node]\ncache_mb = 65537\n"] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains("node.cache_mb"), "{err}");
        }
        assert_eq!(parse("[node]\ncache_mb = 64\n").unwrap().node.cache_mb, 64);
        let err = parse("[mempool]\nverify_threads = 1025\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mempool.verify_threads"), "{err}");
        let threads = parse("[mempool]\nverify_threads = 1\n").unwrap();
        assert_eq!(threads.mempool.verify_threads, 1);
        let err = parse("[consensus]\nmax_in_flight = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("consensus.max_in_flight"), "{err}");
        let err = parse("[consensus]\ncheckpoint_interval = 40\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("consensus.watermark_window"), "{err}");
    }

    #[test]
    fn mining_settings_are_checked_and_named() {
        for (text, key) in [
            ("[mining]\nthreads = 0\n", "mining.threads"),
            ("[mining]\nthreads = 257\n", "mining.threads"),
            (
                "[mining]\nthreads = 4\nhashrate_limit = 3\n",
                "mining.hashrate_limit",
            ),
            ("[mining]\naddress = \"xyz\"\n", "mining.address"),
            ("[mining]\naddress = \"00\"\n", "mining.address"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?}: {err}");
        }
        let err = parse("[mining]\nenable = true\n").unwrap_err().to_string();
        assert!(err.contains("enable"), "{err}");
        let ok = parse("[mining]\nthreads = 4\nhashrate_limit = 0\n").unwrap();
        assert_eq!(ok.mining.hashrate_limit, 0);
        let defaults = Config::default().mining;
        assert_eq!(
            (defaults.enabled, defaults.address, defaults.threads),
            (false, None, 1)
        );
        assert_eq!(defaults.hashrate_limit, DEFAULT_HASHRATE_LIMIT);
    }

    #[test]
    fn the_miner_pays_the_configured_address_or_the_node_key() {
        let node_key = phalanx_crypto::Keypair::from_seed(&[9; 32]).public();
        let other = Address([7; 32]);
        let off = parse("").unwrap();
        assert_eq!(off.mining(ConsensusKind::Pow, &node_key), Ok(None));
        assert_eq!(
            off.tuning_for(ConsensusKind::Pow, &node_key).unwrap().miner,
            None
        );

        let on = parse("[mining]\nenabled = true\nthreads = 2\nhashrate_limit = 10\n").unwrap();
        assert_eq!(
            on.mining(ConsensusKind::Pow, &node_key),
            Ok(Some(Mining {
                address: Address::from(node_key),
                threads: 2,
                hashrate_limit: 10,
            }))
        );
        let paid = parse(&format!(
            "[mining]\nenabled = true\naddress = \"{other}\"\n"
        ))
        .unwrap();
        let tuning = paid.tuning_for(ConsensusKind::Pow, &node_key).unwrap();
        assert_eq!(tuning.miner, Some(other));
        assert_eq!(
            Tuning {
                miner: None,
                ..tuning
            },
            paid.tuning().unwrap()
        );

        for kind in [ConsensusKind::Hotstuff, ConsensusKind::Pbft] {
            let err = on.mining(kind, &node_key).unwrap_err();
            assert!(err.starts_with("mining.enabled:"), "{err}");
            assert!(err.contains(&kind.to_string()), "{err}");
            assert!(on.tuning_for(kind, &node_key).is_err());
        }
    }

    #[test]
    fn the_tuning_carries_every_consensus_setting() {
        let config = parse(
            "[consensus]\nbase_timeout_ms = 3000\ntimeout_factor = 6\nmax_timeout_ms = 9000\n\
             forward = false\n\
             byzantine = \"stale-qc\"\nmax_batch_delay_ms = 10\nempty_block_delay_ms = 20\n\
             checkpoint_interval = 8\nwatermark_window = 24\nmax_in_flight = 2\n",
        )
        .unwrap();
        assert_eq!(
            config.tuning().unwrap(),
            Tuning {
                base_timeout_ms: 3_000,
                timeout_factor: 6,
                max_timeout_ms: 9_000,
                forward: false,
                byzantine: Some(Byzantine::StaleQc),
                max_batch_delay_ms: 10,
                empty_block_delay_ms: 20,
                checkpoint_interval: 8,
                watermark_window: 24,
                max_in_flight: 2,
                unsafe_view_change: false,
                miner: None,
                first_seen_ties: false,
            }
        );
        let defaults = Config::default().tuning().unwrap();
        assert_eq!(
            (
                defaults.checkpoint_interval,
                defaults.watermark_window,
                defaults.max_in_flight
            ),
            (16, 32, 4)
        );
    }
}
