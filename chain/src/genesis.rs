//! The genesis file.
//!
//! ```toml
//! chain_id = "phalanx-local"
//! consensus = "hotstuff"          # "pbft", "hotstuff" or "pow"
//! genesis_time_ms = 1767225600000
//!
//! [[validators]]                  # BFT kinds only, in index order
//! public_key = "<64 hex>"
//! address = "/ip4/127.0.0.1/tcp/26600"
//!
//! [pow]                           # "pow" only
//! initial_target = "1f00ffff"     # compact form (nBits), see `pow`
//! target_limit = "207fffff"       # the easiest target a retarget may reach
//! block_interval_ms = 5000        # what the retarget aims at
//! retarget_window = 30            # blocks it averages over
//! confirmations = 6               # final at this many blocks on top
//! block_reward = 50               # new coins per block, plus its fees
//! max_future_drift_ms = 15000     # how far ahead of a node's clock a block may be
//!
//! [[accounts]]
//! address = "<64 hex>"
//! balance = 1000000000
//! ```
//!
//! The genesis hash is `BLAKE3("PHALANX/GENESIS/v1" ‖ postcard(genesis))`,
//! with accounts sorted by address (their order in the file does not
//! matter; the validators' does, it gives their indices). It becomes the
//! parent hash of block 0, so every block hash on a chain depends on it and
//! two nodes started from different genesis files disagree from block 0 on.

use crate::MAX_VALIDATORS;
use crate::block::{Block, BlockHeader, Justification};
use crate::merkle;
use crate::pow::{CompactTarget, Retarget, TargetError};
use crate::state::{Account, StateAccumulator};
use crate::types::{Address, Amount, Height, Nonce};
use phalanx_crypto::{ChainId, Hash, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// A genesis file longer than this is refused unread.
pub const GENESIS_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// How the chain orders blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsensusKind {
    Pbft,
    Hotstuff,
    Pow,
}

impl ConsensusKind {
    /// Every kind, in the order command lines list them.
    pub const ALL: [ConsensusKind; 3] = [
        ConsensusKind::Pbft,
        ConsensusKind::Hotstuff,
        ConsensusKind::Pow,
    ];

    pub fn is_bft(self) -> bool {
        matches!(self, ConsensusKind::Pbft | ConsensusKind::Hotstuff)
    }

    /// Its name in genesis files and on command lines.
    pub fn name(self) -> &'static str {
        match self {
            ConsensusKind::Pbft => "pbft",
            ConsensusKind::Hotstuff => "hotstuff",
            ConsensusKind::Pow => "pow",
        }
    }
}

impl fmt::Display for ConsensusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no [`ConsensusKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown consensus {given:?}; expected one of {}", kind_names())]
pub struct UnknownConsensus {
    pub given: String,
}

fn kind_names() -> String {
    ConsensusKind::ALL.map(ConsensusKind::name).join(", ")
}

impl FromStr for ConsensusKind {
    type Err = UnknownConsensus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConsensusKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownConsensus {
                given: s.to_owned(),
            })
    }
}

/// A validator of a BFT chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub public_key: PublicKey,
    /// Where its node listens, as a libp2p multiaddr.
    pub address: String,
}

/// Proof-of-work parameters (see the module docs for the file format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowParams {
    /// The target of block 1 (block 0, the genesis block, counts as having
    /// it in the first retarget windows).
    pub initial_target: CompactTarget,
    /// The easiest target allowed; `initial_target` may not be easier.
    pub target_limit: CompactTarget,
    /// The block interval the retarget aims at.
    pub block_interval_ms: u64,
    /// Blocks the retarget averages over (1: the target never changes).
    pub retarget_window: u32,
    /// Blocks on top of a block before it counts as final.
    pub confirmations: u64,
    /// New coins a block's miner may claim, besides the block's fees.
    pub block_reward: Amount,
    /// How far ahead of a node's clock a block's timestamp may be.
    pub max_future_drift_ms: u64,
}

/// The most blocks a retarget may average over.
pub const MAX_RETARGET_WINDOW: u32 = 2_016;
/// The most confirmations a chain may ask for (undo data is kept for
/// every block not yet final).
pub const MAX_CONFIRMATIONS: u64 = 1_000;

impl PowParams {
    /// The retarget these parameters define.
    pub fn retarget(&self) -> Result<Retarget, TargetError> {
        Ok(Retarget {
            interval_ms: self.block_interval_ms,
            window: self.retarget_window as usize,
            limit: self.target_limit.target()?,
        })
    }
}

/// An initial balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub address: Address,
    pub balance: Amount,
}

/// A parsed, checked genesis file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: ChainId,
    pub consensus: ConsensusKind,
    #[serde(default)]
    pub genesis_time_ms: u64,
    #[serde(default)]
    pub validators: Vec<GenesisValidator>,
    #[serde(default)]
    pub pow: Option<PowParams>,
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
}

/// Why a genesis file was refused.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: larger than {GENESIS_MAX_BYTES} bytes, not a genesis file")]
    TooLarge { path: String },
    #[error("genesis is not valid TOML for Phalanx: {0}")]
    Parse(String),
    #[error("consensus {consensus} needs at least one validator in [[validators]]")]
    NoValidators { consensus: ConsensusKind },
    #[error("{count} validators, the limit is {MAX_VALIDATORS}")]
    TooManyValidators { count: usize },
    #[error("validator {index} has the same public key as validator {first}")]
    DuplicateValidator { index: usize, first: usize },
    #[error(
        "validator {index}'s public key is not a usable signing key (not a curve point, or of small order: anyone could sign for it)"
    )]
    WeakValidatorKey { index: usize },
    #[error("validator {index} has an empty or overlong network address")]
    BadValidatorAddress { index: usize },
    #[error("consensus pow takes no [[validators]] (miners are permissionless)")]
    ValidatorsWithPow,
    #[error("consensus pow needs a [pow] section")]
    MissingPow,
    #[error("consensus {consensus} takes no [pow] section")]
    PowWithoutPow { consensus: ConsensusKind },
    #[error("[pow] {field} must be {rule}")]
    BadPow {
        field: &'static str,
        rule: &'static str,
    },
    #[error("[pow] {field}: {error}")]
    BadTarget {
        field: &'static str,
        error: TargetError,
    },
    #[error("account {address} is listed twice")]
    DuplicateAccount { address: Address },
    #[error("initial balances add up to more than {max}", max = u64::MAX)]
    SupplyOverflow,
}

impl Genesis {
    /// Reads and checks a genesis file.
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        use std::io::Read;
        let shown = || path.display().to_string();
        let io = |source| GenesisError::Io {
            path: shown(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(GENESIS_MAX_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > GENESIS_MAX_BYTES {
            return Err(GenesisError::TooLarge { path: shown() });
        }
        Genesis::from_toml(&text)
    }

    /// Parses and checks genesis TOML.
    pub fn from_toml(text: &str) -> Result<Genesis, GenesisError> {
        let genesis: Genesis =
            toml::from_str(text).map_err(|e| GenesisError::Parse(e.to_string()))?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// The genesis as TOML, in the format [`Genesis::from_toml`] reads.
    pub fn to_toml(&self) -> Result<String, GenesisError> {
        toml::to_string_pretty(self).map_err(|e| GenesisError::Parse(e.to_string()))
    }

    /// Checks the rules of the module docs.
    pub fn validate(&self) -> Result<(), GenesisError> {
        self.validate_validators()?;
        self.validate_pow()?;
        let mut seen = BTreeSet::new();
        for account in &self.accounts {
            if !seen.insert(account.address) {
                return Err(GenesisError::DuplicateAccount {
                    address: account.address,
                });
            }
        }
        self.accounts
            .iter()
            .try_fold(Amount::ZERO, |sum, a| sum.checked_add(a.balance))
            .ok_or(GenesisError::SupplyOverflow)?;
        Ok(())
    }

    fn validate_validators(&self) -> Result<(), GenesisError> {
        if !self.consensus.is_bft() {
            return if self.validators.is_empty() {
                Ok(())
            } else {
                Err(GenesisError::ValidatorsWithPow)
            };
        }
        if self.validators.is_empty() {
            return Err(GenesisError::NoValidators {
                consensus: self.consensus,
            });
        }
        if self.validators.len() > MAX_VALIDATORS {
            return Err(GenesisError::TooManyValidators {
                count: self.validators.len(),
            });
        }
        let mut first_index = BTreeMap::new();
        for (index, v) in self.validators.iter().enumerate() {
            if let Some(&first) = first_index.get(&v.public_key) {
                return Err(GenesisError::DuplicateValidator { index, first });
            }
            first_index.insert(v.public_key, index);
            // Under ZIP 215 a small-order key verifies signatures nobody
            // made; a validator with one could be impersonated by anyone.
            if v.public_key.prepare().map_or(true, |k| k.is_small_order()) {
                return Err(GenesisError::WeakValidatorKey { index });
            }
            if v.address.is_empty() || v.address.len() > 256 {
                return Err(GenesisError::BadValidatorAddress { index });
            }
        }
        Ok(())
    }

    fn validate_pow(&self) -> Result<(), GenesisError> {
        match (&self.pow, self.consensus) {
            (None, ConsensusKind::Pow) => Err(GenesisError::MissingPow),
            (Some(_), kind) if kind.is_bft() => {
                Err(GenesisError::PowWithoutPow { consensus: kind })
            }
            (Some(p), _) => {
                let target = |field, bits: CompactTarget| {
                    bits.target()
                        .map_err(|error| GenesisError::BadTarget { field, error })
                };
                let initial = target("initial_target", p.initial_target)?;
                let limit = target("target_limit", p.target_limit)?;
                let bad = |field, rule| Err(GenesisError::BadPow { field, rule });
                if initial > limit {
                    return bad("initial_target", "at most target_limit");
                }
                if p.block_interval_ms == 0 {
                    return bad("block_interval_ms", "positive");
                }
                if p.retarget_window == 0 || p.retarget_window > MAX_RETARGET_WINDOW {
                    return bad("retarget_window", "between 1 and 2016");
                }
                if p.confirmations == 0 || p.confirmations > MAX_CONFIRMATIONS {
                    return bad("confirmations", "between 1 and 1000");
                }
                Ok(())
            }
            (None, _) => Ok(()),
        }
    }

    /// The genesis hash (see the module docs).
    pub fn hash(&self) -> Hash {
        let mut canonical = self.clone();
        canonical.accounts.sort_by_key(|a| a.address);
        Hash::digest_parts(&[b"PHALANX/GENESIS/v1", &crate::encoding::encode(&canonical)])
    }

    /// The initial accounts (nonce 0).
    pub fn initial_accounts(&self) -> BTreeMap<Address, Account> {
        self.accounts
            .iter()
            .filter(|a| a.balance != Amount::ZERO)
            .map(|a| {
                (
                    a.address,
                    Account {
                        balance: a.balance,
                        nonce: Nonce(0),
                    },
                )
            })
            .collect()
    }

    /// Block 0: no transactions, the initial state's root, the genesis hash
    /// as its parent.
    pub fn block(&self) -> Block {
        let accounts = self.initial_accounts();
        let header = BlockHeader {
            height: Height::GENESIS,
            parent: self.hash(),
            tx_root: merkle::root(&[]),
            state_root: StateAccumulator::from_accounts(&accounts).root(),
            timestamp_ms: self.genesis_time_ms,
            proposer: Address::default(),
            justification: Justification::Genesis,
        };
        Block::new(header, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POW_PARAMS: &str = "initial_target = \"1f00ffff\"\ntarget_limit = \"207fffff\"\n\
        block_interval_ms = 2000\nretarget_window = 30\nconfirmations = 6\nblock_reward = 50\n\
        max_future_drift_ms = 15000\n";

    fn key(i: u8) -> String {
        phalanx_crypto::Keypair::from_seed(&[i; 32])
            .public()
            .to_string()
    }

    fn bft_toml() -> String {
        format!(
            r#"
chain_id = "phalanx-test"
consensus = "hotstuff"
genesis_time_ms = 1767225600000

[[validators]]
public_key = "{}"
address = "/ip4/127.0.0.1/tcp/26600"

[[validators]]
public_key = "{}"
address = "/ip4/127.0.0.1/tcp/26601"

[[accounts]]
address = "{}"
balance = 1000

[[accounts]]
address = "{}"
balance = 5
"#,
            key(1),
            key(2),
            key(3),
            key(4)
        )
    }

    #[test]
    fn parses_hashes_and_round_trips() {
        let g = Genesis::from_toml(&bft_toml()).unwrap();
        assert_eq!(g.consensus, ConsensusKind::Hotstuff);
        assert_eq!(g.validators.len(), 2);
        let again = Genesis::from_toml(&g.to_toml().unwrap()).unwrap();
        assert_eq!(again.hash(), g.hash());
        assert_eq!(g.block().header().parent, g.hash());
        assert_eq!(g.block().header().height, Height(0));
    }

    #[test]
    fn account_order_does_not_matter_but_everything_else_does() {
        let g = Genesis::from_toml(&bft_toml()).unwrap();
        let mut reordered = g.clone();
        reordered.accounts.reverse();
        assert_eq!(reordered.hash(), g.hash());
        let mut other_chain = g.clone();
        other_chain.chain_id = ChainId::new("other").unwrap();
        let mut validators_swapped = g.clone();
        validators_swapped.validators.reverse();
        let mut richer = g.clone();
        richer.accounts[0].balance = Amount(1001);
        let mut later = g.clone();
        later.genesis_time_ms += 1;
        for changed in [other_chain, validators_swapped, richer, later] {
            assert_ne!(changed.hash(), g.hash());
            assert_ne!(changed.block().hash(), g.block().hash());
        }
    }

    #[test]
    fn bad_files_are_refused_with_named_errors() {
        let base = bft_toml();
        let cases: Vec<(String, &str)> = vec![
            (base.replace("hotstuff", "raft"), "unknown variant"),
            (
                base.replace("chain_id = \"phalanx-test\"", "chain_id = \"\""),
                "empty",
            ),
            (
                base.replace("genesis_time_ms", "genesis_time"),
                "unknown field",
            ),
            (base.replace(&key(2), &key(1)), "same public key"),
            (base.replace(&key(4), &key(3)), "listed twice"),
            (
                base.replace("balance = 5", &format!("balance = {}", u64::MAX)),
                "add up to more",
            ),
            (base.replace("hotstuff", "pow"), "no [[validators]]"),
            (base.replace(&key(1), "zz"), "hex"),
            (base.clone() + "\n[pow]\n" + POW_PARAMS, "no [pow]"),
            // Small-order keys (the identity, a point of order 4), which
            // ZIP 215 lets anyone sign for, and a point off the curve.
            (
                base.replace(&key(2), &format!("01{}", "00".repeat(31))),
                "small order",
            ),
            (base.replace(&key(2), &"00".repeat(32)), "small order"),
            (
                base.replace(&key(2), &format!("02{}", "00".repeat(31))),
                "not a curve point",
            ),
        ];
        for (text, expected) in cases {
            let err = Genesis::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
        let pow_without_params = "chain_id = \"p\"\nconsensus = \"pow\"\n";
        assert!(matches!(
            Genesis::from_toml(pow_without_params),
            Err(GenesisError::MissingPow)
        ));
        let no_validators = "chain_id = \"p\"\nconsensus = \"pbft\"\n";
        assert!(matches!(
            Genesis::from_toml(no_validators),
            Err(GenesisError::NoValidators { .. })
        ));
    }

    #[test]
    fn load_reads_a_file_and_names_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("genesis.toml");
        std::fs::write(&path, bft_toml()).unwrap();
        assert_eq!(
            Genesis::load(&path).unwrap(),
            Genesis::from_toml(&bft_toml()).unwrap()
        );
        let missing = dir.path().join("nope.toml");
        let err = Genesis::load(&missing).unwrap_err().to_string();
        assert!(err.contains("nope.toml"), "{err}");
    }

    #[test]
    fn pow_genesis_is_accepted() {
        let text = format!(
            "chain_id = \"p\"\nconsensus = \"pow\"\n[pow]\n{POW_PARAMS}[[accounts]]\naddress = \"{}\"\nbalance = 9\n",
            key(5)
        );
        let g = Genesis::from_toml(&text).unwrap();
        assert_eq!(g.pow.as_ref().map(|p| p.confirmations), Some(6));
        assert_eq!(g.initial_accounts().len(), 1);
        assert_eq!(Genesis::from_toml(&g.to_toml().unwrap()).unwrap(), g);
    }

    #[test]
    fn bad_pow_parameters_are_refused_with_the_field_named() {
        let base = format!("chain_id = \"p\"\nconsensus = \"pow\"\n[pow]\n{POW_PARAMS}");
        let cases = [
            (
                "\"1f00ffff\"",
                "\"00000000\"",
                "initial_target: compact target 00000000 is zero",
            ),
            (
                "\"1f00ffff\"",
                "\"1f80ffff\"",
                "initial_target: compact target 1f80ffff is negative",
            ),
            (
                "\"1f00ffff\"",
                "\"1f0000ff\"",
                "initial_target: compact target 1f0000ff is not canonical",
            ),
            (
                "\"207fffff\"",
                "\"1e00ffff\"",
                "initial_target must be at most target_limit",
            ),
            ("\"207fffff\"", "\"22ffff\"", "not 8 hex digits"),
            (
                "block_interval_ms = 2000",
                "block_interval_ms = 0",
                "block_interval_ms must be positive",
            ),
            (
                "retarget_window = 30",
                "retarget_window = 0",
                "retarget_window must be between",
            ),
            (
                "retarget_window = 30",
                "retarget_window = 2017",
                "retarget_window must be between",
            ),
            (
                "confirmations = 6",
                "confirmations = 0",
                "confirmations must be between",
            ),
            ("block_reward = 50", "block_reward = -1", "not valid TOML"),
            (
                "max_future_drift_ms = 15000\n",
                "",
                "missing field `max_future_drift_ms`",
            ),
        ];
        for (from, to, expected) in cases {
            let text = base.replacen(from, to, 1);
            assert_ne!(text, base, "{from} not in the base text");
            let err = Genesis::from_toml(&text).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{to}: expected {expected:?} in {err:?}"
            );
        }
    }

    #[test]
    fn consensus_kinds_parse_by_the_names_they_print() {
        for kind in ConsensusKind::ALL {
            assert_eq!(kind.to_string().parse::<ConsensusKind>(), Ok(kind));
            let toml = format!("\"{kind}\"");
            let via_serde: ConsensusKind = toml::from_str(&format!("k = {toml}"))
                .map(|t: std::collections::BTreeMap<String, ConsensusKind>| t["k"])
                .unwrap();
            assert_eq!(via_serde, kind);
        }
        let err = "tendermint"
            .parse::<ConsensusKind>()
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "unknown consensus \"tendermint\"; expected one of pbft, hotstuff, pow"
        );
    }
}
