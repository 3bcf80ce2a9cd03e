#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Checks the test vectors of docs/PROTOCOL.md against the implementation.
//!
//! The vectors are parsed out of the markdown (section 11.1 describes the
//! format: ```` ```vector ```` blocks of `key: value` lines, ```` ```hexdump ````
//! blocks annotating one value, and ```` ```toml ```` genesis files headed
//! `# vector: <name>`), every value is recomputed with the library, and every
//! key of every vector must be checked, so the document and the code cannot
//! drift apart. A second test changes each value of the document in turn and
//! requires the check to fail.

use phalanx_chain::block::{MAX_BLOCK_BYTES, MAX_HEADER_BYTES};
use phalanx_chain::encoding::DecodeError;
use phalanx_chain::genesis::{GenesisAccount, GenesisValidator, PowParams};
use phalanx_chain::pow::{self, CompactTarget, Retarget, TargetError, WindowBlock};
use phalanx_chain::state::ACCUMULATOR_BYTES;
use phalanx_chain::tx::MAX_TX_BYTES;
use phalanx_chain::{
    Account, Address, Amount, BftCertificate, Block, BlockError, BlockHeader, ConsensusKind,
    ExecutionError, Genesis, Height, Justification, MAX_BLOCK_TXS, MAX_VALIDATORS, Nonce, PowSeal,
    Rules, StateAccumulator, Transaction, ValidatorIndex, ValidatorSignature, encoding,
    execute_block, merkle,
};
use phalanx_crypto::{
    BatchEntry, CHAIN_ID_MAX_LEN, ChainId, Domain, Hash, Keypair, PublicKey, Signature,
    SigningBytes, sha256d, verify_batch,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::str::FromStr;

const DOC: &str = include_str!("../../docs/PROTOCOL.md");

/// The vectors the document must contain.
const REQUIRED: [&str; 32] = [
    "tx-1",
    "tx-2",
    "tx-3",
    "domains",
    "domain-1",
    "merkle-0",
    "merkle-1",
    "merkle-2",
    "state-0",
    "state-1",
    "state-2",
    "genesis-1",
    "genesis-2",
    "block-1",
    "block-pow",
    "targets",
    "retarget-1",
    "limits",
    "sig-1",
    "sig-2",
    "sig-3",
    "sig-4",
    "sig-5",
    "sig-6",
    "sig-7",
    "sig-8",
    "sig-9",
    "sig-10",
    "sig-11",
    "sig-12",
    "sig-13",
    "sig-14",
];

type Check<T = ()> = Result<T, String>;

fn ensure(condition: bool, message: impl FnOnce() -> String) -> Check {
    if condition { Ok(()) } else { Err(message()) }
}

fn hex_of(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn unhex(context: &str, text: &str) -> Check<Vec<u8>> {
    ensure(
        text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        || format!("{context}: {text:?} is not lowercase hex"),
    )?;
    hex::decode(text).map_err(|e| format!("{context}: {e}"))
}

/// `bytes` with its first value, a one-byte varint, written overlong: `0c`
/// becomes `8c 00` (section 5), which decoders must refuse.
fn overlong_first_varint(context: &str, bytes: &[u8]) -> Check<Vec<u8>> {
    let (&first, rest) = bytes
        .split_first()
        .ok_or_else(|| format!("{context}: empty"))?;
    ensure(first < 0x80, || {
        format!("{context}: does not start with a one-byte varint")
    })?;
    Ok([&[first | 0x80, 0x00], rest].concat())
}

/// `decoded`, the result of decoding an overlong form, must be the
/// non-canonical error.
fn expect_non_canonical<T: std::fmt::Debug>(
    context: &str,
    decoded: Result<T, DecodeError>,
) -> Check {
    ensure(matches!(decoded, Err(DecodeError::NonCanonical)), || {
        format!("{context}: an overlong varint was not refused as non-canonical: {decoded:?}")
    })
}

/// One ```` ```vector ```` block. Every key read is recorded, so a key the
/// checks never look at is reported instead of silently passing.
struct Vector {
    name: String,
    fields: BTreeMap<String, String>,
    used: RefCell<BTreeSet<String>>,
}

impl Vector {
    fn get(&self, key: &str) -> Check<&str> {
        self.used.borrow_mut().insert(key.to_owned());
        self.fields
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("{}: missing key {key:?}", self.name))
    }

    fn has(&self, key: &str) -> bool {
        self.fields.contains_key(key)
    }

    fn parse<T: FromStr>(&self, key: &str) -> Check<T>
    where
        T::Err: Display,
    {
        let text = self.get(key)?;
        text.parse()
            .map_err(|e| format!("{}: {key}: cannot parse {text:?}: {e}", self.name))
    }

    fn bytes(&self, key: &str) -> Check<Vec<u8>> {
        unhex(&format!("{}: {key}", self.name), self.get(key)?)
    }

    fn hash(&self, key: &str) -> Check<Hash> {
        self.parse(key)
    }

    /// The document's value for `key` must be `actual`, as text.
    fn expect(&self, key: &str, actual: impl Display) -> Check {
        let documented = self.get(key)?;
        let computed = actual.to_string();
        ensure(documented == computed, || {
            format!(
                "{}: {key}: the document says\n  {documented}\nbut the implementation gives\n  {computed}",
                self.name
            )
        })
    }

    /// The indices `i` of keys `<prefix>.<i>` or `<prefix>.<i>.<field>`,
    /// which must be 0, 1, 2, ... without gaps.
    fn indices(&self, prefix: &str) -> Check<Vec<usize>> {
        let mut found = BTreeSet::new();
        for key in self.fields.keys() {
            if let Some(rest) = key.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) {
                let index = rest.split('.').next().unwrap_or_default();
                found.insert(
                    index
                        .parse::<usize>()
                        .map_err(|_| format!("{}: bad index in key {key:?}", self.name))?,
                );
            }
        }
        let expected: BTreeSet<usize> = (0..found.len()).collect();
        ensure(found == expected, || {
            format!(
                "{}: {prefix}.N keys must be numbered 0, 1, 2, ... without gaps",
                self.name
            )
        })?;
        Ok(found.into_iter().collect())
    }

    fn unused(&self) -> Vec<String> {
        let used = self.used.borrow();
        self.fields
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect()
    }
}

struct HexDump {
    vector: String,
    key: String,
    hex: String,
}

struct Doc {
    vectors: BTreeMap<String, Vector>,
    hexdumps: Vec<HexDump>,
    tomls: Vec<(String, String)>,
}

/// Splits the document into its vector, hexdump and genesis TOML blocks.
fn parse_doc(text: &str) -> Check<Doc> {
    let mut doc = Doc {
        vectors: BTreeMap::new(),
        hexdumps: Vec::new(),
        tomls: Vec::new(),
    };
    let mut lines = text.lines().enumerate();
    while let Some((start, line)) = lines.next() {
        let kind = match line.trim_end() {
            "```vector" => "vector",
            "```hexdump" => "hexdump",
            "```toml" => "toml",
            _ => continue,
        };
        let mut body = Vec::new();
        loop {
            let (_, l) = lines
                .next()
                .ok_or_else(|| format!("line {}: unterminated ```{kind} block", start + 1))?;
            if l.trim_end() == "```" {
                break;
            }
            body.push(l);
        }
        let at = || format!("```{kind} block at line {}", start + 1);
        match kind {
            "vector" => {
                let mut fields = BTreeMap::new();
                for l in body.iter().filter(|l| !l.trim().is_empty()) {
                    let (key, value) = l
                        .split_once(": ")
                        .ok_or_else(|| format!("{}: line {l:?} is not `key: value`", at()))?;
                    let previous = fields.insert(key.to_owned(), value.trim_end().to_owned());
                    ensure(previous.is_none(), || {
                        format!("{}: key {key:?} twice", at())
                    })?;
                }
                let name = fields
                    .get("vector")
                    .cloned()
                    .ok_or_else(|| format!("{}: no `vector: <name>` line", at()))?;
                ensure(
                    body.first().is_some_and(|l| l.starts_with("vector: ")),
                    || format!("{}: the first line must be `vector: <name>`", at()),
                )?;
                let vector = Vector {
                    name: name.clone(),
                    fields,
                    used: RefCell::new(BTreeSet::from(["vector".to_owned()])),
                };
                ensure(doc.vectors.insert(name.clone(), vector).is_none(), || {
                    format!("vector {name:?} is defined twice")
                })?;
            }
            "hexdump" => {
                let target = body
                    .first()
                    .and_then(|l| l.strip_prefix("of: "))
                    .ok_or_else(|| {
                        format!("{}: the first line must be `of: <vector> <key>`", at())
                    })?;
                let (vector, key) = target
                    .split_once(' ')
                    .ok_or_else(|| format!("{}: `of:` needs a vector and a key", at()))?;
                let mut hex = String::new();
                for l in &body[1..] {
                    let token = l.split_whitespace().next().unwrap_or_default();
                    unhex(&at(), token)?;
                    hex.push_str(token);
                }
                doc.hexdumps.push(HexDump {
                    vector: vector.to_owned(),
                    key: key.to_owned(),
                    hex,
                });
            }
            _ => {
                if let Some(name) = body.first().and_then(|l| l.strip_prefix("# vector: ")) {
                    doc.tomls
                        .push((name.trim_end().to_owned(), body.join("\n")));
                }
            }
        }
    }
    Ok(doc)
}

fn check_tx(v: &Vector) -> Check<Transaction> {
    let seed: [u8; 32] = v
        .bytes("seed")?
        .try_into()
        .map_err(|_| format!("{}: seed must be 32 bytes", v.name))?;
    let keypair = Keypair::from_seed(&seed);
    v.expect("public_key", keypair.public())?;
    v.expect("from", keypair.public())?;
    let tx = Transaction::sign(
        &keypair,
        v.parse("chain_id")?,
        v.parse("to")?,
        Amount(v.parse("amount")?),
        Amount(v.parse("fee")?),
        Nonce(v.parse("nonce")?),
    );
    v.expect("signing_bytes", hex_of(tx.signing_bytes().as_bytes()))?;
    v.expect("signature", tx.signature)?;
    v.expect("tx_hash", tx.hash())?;
    // The documented formula, independently of Transaction::hash.
    let mut preimage = v.bytes("signing_bytes")?;
    preimage.extend_from_slice(&v.bytes("signature")?);
    ensure(Hash::digest(&preimage) == v.hash("tx_hash")?, || {
        format!(
            "{}: tx_hash is not BLAKE3(signing_bytes ‖ signature)",
            v.name
        )
    })?;
    tx.verify_signature()
        .map_err(|e| format!("{}: {e}", v.name))?;
    v.expect("postcard", hex_of(&encoding::encode(&tx)))?;
    let decoded: Transaction = encoding::decode(&v.bytes("postcard")?, MAX_TX_BYTES)
        .map_err(|e| format!("{}: postcard: {e}", v.name))?;
    ensure(decoded == tx, || {
        format!("{}: postcard decodes to another transaction", v.name)
    })?;
    let context = format!("{}: postcard", v.name);
    let overlong = overlong_first_varint(&context, &v.bytes("postcard")?)?;
    expect_non_canonical(
        &context,
        encoding::decode::<Transaction>(&overlong, MAX_TX_BYTES),
    )?;
    v.expect(
        "json",
        serde_json::to_string(&tx).map_err(|e| e.to_string())?,
    )?;
    let parsed: Transaction =
        serde_json::from_str(v.get("json")?).map_err(|e| format!("{}: json: {e}", v.name))?;
    ensure(parsed == tx, || {
        format!("{}: json parses to another transaction", v.name)
    })?;
    Ok(tx)
}

fn check_domains(v: &Vector) -> Check {
    for domain in Domain::ALL {
        v.expect(&format!("{domain:?}"), domain.tag())?;
    }
    Ok(())
}

fn check_domain_layout(v: &Vector) -> Check {
    let kind = v.get("kind")?;
    let domain = Domain::ALL
        .into_iter()
        .find(|d| d.kind() == kind)
        .ok_or_else(|| format!("{}: unknown kind {kind:?}", v.name))?;
    let chain: ChainId = v.parse("chain_id")?;
    let bytes = domain.begin(&chain).bytes(&v.bytes("payload")?).finish();
    v.expect("signing_bytes", hex_of(bytes.as_bytes()))
}

fn check_merkle(v: &Vector) -> Check<Vec<Hash>> {
    let leaves = v
        .indices("leaf")?
        .into_iter()
        .map(|i| v.hash(&format!("leaf.{i}")))
        .collect::<Check<Vec<Hash>>>()?;
    let root = merkle::root(&leaves);
    v.expect("root", root)?;
    for i in 0..leaves.len() {
        let key = format!("proof.{i}");
        let path = v
            .get(&key)?
            .split(' ')
            .map(|h| {
                h.parse::<Hash>()
                    .map_err(|e| format!("{}: {key}: {e}", v.name))
            })
            .collect::<Check<Vec<Hash>>>()?;
        let proof = merkle::prove(&leaves, i).ok_or("proof out of range")?;
        ensure(proof.path == path, || {
            format!(
                "{}: {key} differs from the implementation's audit path",
                v.name
            )
        })?;
        ensure(proof.verify(&leaves[i], &root), || {
            format!("{}: {key} does not verify", v.name)
        })?;
    }
    ensure(v.indices("proof")?.len() == leaves.len(), || {
        format!("{}: one proof per leaf", v.name)
    })?;
    Ok(leaves)
}

/// Returns the accounts of the vector that enter the state.
fn check_state(v: &Vector) -> Check<BTreeMap<Address, Account>> {
    let mut accounts = Vec::new();
    for i in v.indices("account")? {
        let address: Address = v.parse(&format!("account.{i}.address"))?;
        let account = Account {
            balance: Amount(v.parse(&format!("account.{i}.balance"))?),
            nonce: Nonce(v.parse(&format!("account.{i}.nonce"))?),
        };
        let mut leaf = b"PHALANX/ACCOUNT/v1".to_vec();
        leaf.extend_from_slice(address.as_bytes());
        leaf.extend_from_slice(&account.balance.0.to_le_bytes());
        leaf.extend_from_slice(&account.nonce.0.to_le_bytes());
        v.expect(&format!("account.{i}.leaf"), hex_of(&leaf))?;
        let mut prefix = [0u8; 32];
        let mut hasher = blake3::Hasher::new();
        hasher.update(&leaf);
        hasher.finalize_xof().fill(&mut prefix);
        v.expect(&format!("account.{i}.element_prefix"), hex_of(&prefix))?;
        accounts.push((address, account));
    }
    let accumulator = StateAccumulator::from_accounts(accounts.iter().map(|(a, b)| (a, b)));
    if !accounts.is_empty() {
        v.expect("accumulator_prefix", hex_of(&accumulator.to_bytes()[..32]))?;
    }
    v.expect("state_root", accumulator.root())?;
    Ok(accounts
        .into_iter()
        .filter(|(_, a)| !a.is_empty())
        .collect())
}

fn check_genesis(v: &Vector) -> Check<Genesis> {
    let consensus: ConsensusKind =
        serde_json::from_value(serde_json::Value::String(v.get("consensus")?.to_owned()))
            .map_err(|e| format!("{}: consensus: {e}", v.name))?;
    let validators = v
        .indices("validator")?
        .into_iter()
        .map(|i| {
            Ok(GenesisValidator {
                public_key: v.parse(&format!("validator.{i}.public_key"))?,
                address: v.get(&format!("validator.{i}.address"))?.to_owned(),
            })
        })
        .collect::<Check<Vec<_>>>()?;
    let pow = if v.fields.keys().any(|k| k.starts_with("pow.")) {
        Some(PowParams {
            initial_target: v.parse("pow.initial_target")?,
            target_limit: v.parse("pow.target_limit")?,
            block_interval_ms: v.parse("pow.block_interval_ms")?,
            retarget_window: v.parse("pow.retarget_window")?,
            confirmations: v.parse("pow.confirmations")?,
            block_reward: Amount(v.parse("pow.block_reward")?),
            max_future_drift_ms: v.parse("pow.max_future_drift_ms")?,
        })
    } else {
        None
    };
    let accounts = v
        .indices("account")?
        .into_iter()
        .map(|i| {
            Ok(GenesisAccount {
                address: v.parse(&format!("account.{i}.address"))?,
                balance: Amount(v.parse(&format!("account.{i}.balance"))?),
            })
        })
        .collect::<Check<Vec<_>>>()?;
    let genesis = Genesis {
        chain_id: v.parse("chain_id")?,
        consensus,
        genesis_time_ms: v.parse("genesis_time_ms")?,
        validators,
        pow,
        accounts,
    };
    genesis.validate().map_err(|e| format!("{}: {e}", v.name))?;
    let mut sorted = genesis.clone();
    sorted.accounts.sort_by_key(|a| a.address);
    v.expect("encoded", hex_of(&encoding::encode(&sorted)))?;
    v.expect("genesis_hash", genesis.hash())?;
    // The documented formula, independently of Genesis::hash.
    let preimage = [b"PHALANX/GENESIS/v1".to_vec(), v.bytes("encoded")?].concat();
    ensure(Hash::digest(&preimage) == v.hash("genesis_hash")?, || {
        format!(
            "{}: genesis_hash is not BLAKE3(\"PHALANX/GENESIS/v1\" ‖ encoded)",
            v.name
        )
    })?;
    let block0 = genesis.block();
    let header = block0.header();
    v.expect("block0.state_root", header.state_root)?;
    v.expect("block0.encoded_header", hex_of(&header.encode()))?;
    v.expect("block0.hash", block0.hash())?;
    // Block 0 as section 8.3 describes it.
    let initial = genesis.initial_accounts();
    ensure(
        header.height == Height(0)
            && header.parent == genesis.hash()
            && header.tx_root == Hash::digest(b"")
            && header.state_root == StateAccumulator::from_accounts(&initial).root()
            && header.timestamp_ms == genesis.genesis_time_ms
            && header.proposer == Address([0; 32])
            && header.justification == Justification::Genesis
            && block0.transactions.is_empty()
            && initial
                .values()
                .all(|a| a.nonce == Nonce(0) && a.balance != Amount(0)),
        || format!("{}: block 0 is not as documented", v.name),
    )?;
    Ok(genesis)
}

fn check_block(
    v: &Vector,
    genesis: &BTreeMap<String, Genesis>,
    txs: &BTreeMap<String, Transaction>,
    states: &BTreeMap<String, BTreeMap<Address, Account>>,
) -> Check {
    let genesis_name = v.get("genesis")?;
    let genesis = genesis
        .get(genesis_name)
        .ok_or_else(|| format!("{}: no genesis vector {genesis_name:?}", v.name))?;
    let transactions = match v.get("transactions")? {
        "none" => Vec::new(),
        names => names
            .split(' ')
            .map(|n| {
                txs.get(n)
                    .cloned()
                    .ok_or_else(|| format!("{}: no transaction vector {n:?}", v.name))
            })
            .collect::<Check<Vec<_>>>()?,
    };
    let justification = match v.get("justification")? {
        "genesis" => Justification::Genesis,
        "bft" => Justification::Bft {
            view: v.parse("bft.view")?,
            parent_cert: BftCertificate {
                view: v.parse("bft.parent_cert.view")?,
                block: v.hash("bft.parent_cert.block")?,
                signatures: v
                    .indices("bft.parent_cert.signature")?
                    .into_iter()
                    .map(|i| {
                        Ok(ValidatorSignature {
                            validator: ValidatorIndex(
                                v.parse(&format!("bft.parent_cert.signature.{i}.validator"))?,
                            ),
                            signature: v
                                .parse(&format!("bft.parent_cert.signature.{i}.signature"))?,
                        })
                    })
                    .collect::<Check<Vec<_>>>()?,
            },
        },
        "pow" => Justification::ProofOfWork(PowSeal {
            target: v.parse("pow.target")?,
            reward: Amount(v.parse("pow.reward")?),
            nonce: v.parse("pow.nonce")?,
        }),
        other => return Err(format!("{}: unknown justification {other:?}", v.name)),
    };
    let header = BlockHeader {
        height: Height(v.parse("height")?),
        parent: v.hash("parent")?,
        tx_root: v.hash("tx_root")?,
        state_root: v.hash("state_root")?,
        timestamp_ms: v.parse("timestamp_ms")?,
        proposer: v.parse("proposer")?,
        justification,
    };
    v.expect("encoded_header", hex_of(&header.encode()))?;
    v.expect("block_hash", header.hash())?;
    let decoded = BlockHeader::decode(&v.bytes("encoded_header")?)
        .map_err(|e| format!("{}: encoded_header: {e}", v.name))?;
    ensure(decoded == header, || {
        format!("{}: encoded_header decodes to another header", v.name)
    })?;
    let context = format!("{}: encoded_header", v.name);
    let overlong = overlong_first_varint(&context, &v.bytes("encoded_header")?)?;
    expect_non_canonical(&context, BlockHeader::decode(&overlong))?;
    ensure(
        Hash::digest(&v.bytes("encoded_header")?) == v.hash("block_hash")?,
        || format!("{}: block_hash is not BLAKE3(encoded_header)", v.name),
    )?;
    if let Justification::ProofOfWork(seal) = &header.justification {
        check_pow(v, genesis, &header, seal)?;
    }
    let block = Block::new(header, transactions);
    v.expect("encoded_block", hex_of(&block.encode()))?;
    let decoded = Block::decode(&v.bytes("encoded_block")?)
        .map_err(|e| format!("{}: encoded_block: {e}", v.name))?;
    ensure(decoded == block, || {
        format!("{}: encoded_block decodes to another block", v.name)
    })?;
    let context = format!("{}: encoded_block", v.name);
    let overlong = overlong_first_varint(&context, &v.bytes("encoded_block")?)?;
    expect_non_canonical(&context, Block::decode(&overlong))?;
    // Execute it on top of block 0 under its genesis' rules: this checks
    // the parent link, height, timestamp, tx_root, the reward and
    // state_root.
    let block0 = genesis.block();
    let accounts = genesis.initial_accounts();
    let accumulator = StateAccumulator::from_accounts(&accounts);
    let rules = Rules::of(genesis);
    let execute =
        |block: &Block| execute_block(&rules, block0.header(), &accounts, &accumulator, block);
    let changes = execute(&block).map_err(|e| format!("{}: {e}", v.name))?;
    if let Justification::ProofOfWork(seal) = &block.header().justification {
        // One coin more than the genesis allows makes the block invalid.
        let mut greedy = block.clone();
        let claimed = Amount(rules.block_reward.0 + 1);
        greedy.header_mut().justification = Justification::ProofOfWork(PowSeal {
            reward: claimed,
            ..seal.clone()
        });
        let refused = execute(&greedy);
        ensure(
            matches!(
                refused,
                Err(ExecutionError::Invalid(BlockError::RewardTooHigh { claimed: c, allowed }))
                    if c == claimed && allowed == rules.block_reward
            ),
            || format!("{}: a reward above block_reward gave {refused:?}", v.name),
        )?;
    }
    if v.has("state_after") {
        let name = v.get("state_after")?;
        let expected = states
            .get(name)
            .ok_or_else(|| format!("{}: no state vector {name:?}", v.name))?;
        let mut after = accounts.clone();
        after.extend(changes.accounts);
        after.retain(|_, a| !a.is_empty());
        ensure(&after == expected, || {
            format!(
                "{}: the state after the block is not {name}: {after:?}",
                v.name
            )
        })?;
    }
    Ok(())
}

/// `target` as 32 big-endian bytes, in hex.
fn target_hex(target: &num_bigint::BigUint) -> String {
    let bytes = target.to_bytes_be();
    let mut padded = vec![0u8; 32usize.saturating_sub(bytes.len())];
    padded.extend_from_slice(&bytes);
    hex_of(&padded)
}

/// Section 7.5 for a proof-of-work block on top of block 0: the pow hash
/// (SHA-256d of the header) meets the seal's target, which is the one the
/// retarget gives block 1, and the timestamp rules hold.
fn check_pow(v: &Vector, genesis: &Genesis, header: &BlockHeader, seal: &PowSeal) -> Check {
    let params = genesis
        .pow
        .as_ref()
        .ok_or_else(|| format!("{}: a proof-of-work block on a BFT chain", v.name))?;
    let digest = header.pow_hash();
    v.expect("pow_hash", hex_of(&digest))?;
    ensure(sha256d(&v.bytes("encoded_header")?) == digest, || {
        format!("{}: pow_hash is not SHA-256d(encoded_header)", v.name)
    })?;
    let target = seal
        .target
        .target()
        .map_err(|e| format!("{}: pow.target: {e}", v.name))?;
    v.expect("pow_target", target_hex(&target))?;
    pow::check_work(&digest, seal.target).map_err(|e| format!("{}: {e}", v.name))?;
    // The encoding ends with the nonce, after a prefix a miner encodes once.
    let mut mined = header.mining_prefix().ok_or("no mining prefix")?;
    encoding::push_varint(&mut mined, seal.nonce);
    ensure(mined == header.encode(), || {
        format!("{}: the header does not end with its nonce", v.name)
    })?;
    let block0 = genesis.block().into_parts().0;
    ensure(header.height == Height(1), || {
        format!("{}: the checks assume block 1", v.name)
    })?;
    let retarget = params.retarget().map_err(|e| format!("{}: {e}", v.name))?;
    let window = [WindowBlock {
        timestamp_ms: block0.timestamp_ms,
        target: params.initial_target,
    }];
    let expected = retarget
        .next(&window)
        .map_err(|e| format!("{}: {e}", v.name))?;
    ensure(seal.target == expected, || {
        format!(
            "{}: pow.target is {}, the retarget gives block 1 {expected}",
            v.name, seal.target
        )
    })?;
    // A node whose clock reads the block's own timestamp accepts it.
    pow::check_timestamp(
        &[block0.timestamp_ms],
        header.timestamp_ms,
        header.timestamp_ms,
        params.max_future_drift_ms,
    )
    .map_err(|e| format!("{}: {e}", v.name))
}

/// The `targets` vector: each compact form and what it decodes to.
fn check_targets(v: &Vector) -> Check {
    let mut forms = 0;
    for key in v.fields.keys().filter(|k| *k != "vector") {
        unhex(&format!("{}: key {key}", v.name), key)?;
        let bits: CompactTarget = key
            .parse()
            .map_err(|e| format!("{}: key {key}: {e}", v.name))?;
        let decoded = match bits.target() {
            Ok(target) => target_hex(&target),
            Err(TargetError::Zero(_)) => "refused: zero".to_owned(),
            Err(TargetError::Negative(_)) => "refused: negative".to_owned(),
            Err(TargetError::Overflow(_)) => "refused: overflow".to_owned(),
            Err(TargetError::NotCanonical { canonical, .. }) => {
                format!("refused: not canonical, {canonical}")
            }
            Err(e @ TargetError::Syntax(_)) => return Err(format!("{}: {e}", v.name)),
        };
        v.expect(key, decoded)?;
        forms += 1;
    }
    ensure(forms > 0, || format!("{}: no targets", v.name))?;
    // Bitcoin's genesis block, the module doc's vector, must be among them.
    v.expect(
        "1d00ffff",
        "00000000ffff0000000000000000000000000000000000000000000000000000",
    )
}

/// A `retarget-N` vector: a chain of blocks from block 0, each with the
/// target the retarget gives after the blocks before it.
fn check_retarget(v: &Vector) -> Check {
    let limit: CompactTarget = v.parse("target_limit")?;
    let retarget = Retarget {
        interval_ms: v.parse("block_interval_ms")?,
        window: v.parse("retarget_window")?,
        limit: limit
            .target()
            .map_err(|e| format!("{}: target_limit: {e}", v.name))?,
    };
    let mut chain: Vec<WindowBlock> = Vec::new();
    for i in v.indices("block")? {
        let timestamp_ms = v.parse(&format!("block.{i}.timestamp_ms"))?;
        let key = format!("block.{i}.target");
        let target: CompactTarget = if chain.is_empty() {
            let initial: CompactTarget = v.parse(&key)?;
            initial
                .target()
                .map_err(|e| format!("{}: {key}: {e}", v.name))?;
            initial
        } else {
            let next = retarget
                .next(&chain)
                .map_err(|e| format!("{}: {e}", v.name))?;
            v.expect(&key, next)?;
            next
        };
        chain.push(WindowBlock {
            timestamp_ms,
            target,
        });
    }
    ensure(chain.len() > retarget.window, || {
        format!("{}: the chain should outgrow the window", v.name)
    })?;
    let next = retarget
        .next(&chain)
        .map_err(|e| format!("{}: {e}", v.name))?;
    v.expect("next_target", next)
}

/// `bytes` as signing bytes, rebuilt through the [`Domain`] API from the
/// header they carry (section 3): the only way to make signing bytes.
fn signing_bytes_of(context: &str, bytes: &[u8]) -> Check<SigningBytes> {
    for domain in Domain::ALL {
        let Some(rest) = bytes.strip_prefix(domain.tag().as_bytes()) else {
            continue;
        };
        let (&len, rest) = rest
            .split_first()
            .ok_or_else(|| format!("{context}: no chain id length"))?;
        let (chain_id, payload) = rest
            .split_at_checked(usize::from(len))
            .ok_or_else(|| format!("{context}: chain id cut short"))?;
        let chain_id = std::str::from_utf8(chain_id).map_err(|e| format!("{context}: {e}"))?;
        let chain = ChainId::new(chain_id).map_err(|e| format!("{context}: {e}"))?;
        let rebuilt = domain.begin(&chain).bytes(payload).finish();
        ensure(rebuilt.as_bytes() == bytes, || {
            format!("{context}: not the layout of section 3")
        })?;
        return Ok(rebuilt);
    }
    Err(format!("{context}: no signing domain's header"))
}

/// k = SHA-512(R_bytes ‖ A_bytes ‖ M) mod ℓ as 32 bytes little endian
/// (section 2.1, rule 3), computed here from the document's formula.
fn zip215_k(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> String {
    use num_bigint::BigUint;
    use sha2::{Digest, Sha512};
    let ell: BigUint =
        "7237005577332262213973186563042994240857116359379907606001950938285454250989"
            .parse()
            .unwrap();
    let digest = Sha512::new()
        .chain_update(&signature[..32])
        .chain_update(key)
        .chain_update(message)
        .finalize();
    let mut k = (BigUint::from_bytes_le(&digest) % ell).to_bytes_le();
    k.resize(32, 0);
    hex_of(&k)
}

/// A signature vector (section 11.9): its `k`, and its verdict by single
/// verification (with and without a prepared key) and in a batch of one.
fn check_sig(v: &Vector) -> Check<(PublicKey, SigningBytes, Signature, bool)> {
    let key: PublicKey = v.parse("public_key")?;
    let message = signing_bytes_of(&format!("{}: message", v.name), &v.bytes("message")?)?;
    let signature: Signature = v.parse("signature")?;
    v.expect(
        "k",
        zip215_k(key.as_bytes(), message.as_bytes(), signature.as_bytes()),
    )?;
    let valid = key.verify(&message, &signature).is_ok();
    let prepared = key
        .prepare()
        .is_ok_and(|prepared| prepared.verify(&message, &signature).is_ok());
    let alone = verify_batch(&[BatchEntry {
        message: &message,
        key: &key,
        signature: &signature,
    }])
    .is_empty();
    ensure(prepared == valid && alone == valid, || {
        format!(
            "{}: single {valid}, prepared key {prepared}, batch of one {alone}",
            v.name
        )
    })?;
    v.expect("verdict", if valid { "valid" } else { "invalid" })?;
    Ok((key, message, signature, valid))
}

/// All signature vectors in one batch: it must name exactly the invalid.
fn check_sig_batch(sigs: &[(PublicKey, SigningBytes, Signature, bool)]) -> Check {
    let entries: Vec<BatchEntry<'_>> = sigs
        .iter()
        .map(|(key, message, signature, _)| BatchEntry {
            message,
            key,
            signature,
        })
        .collect();
    let invalid: Vec<usize> = (0..sigs.len()).filter(|&i| !sigs[i].3).collect();
    let named = verify_batch(&entries);
    ensure(named == invalid, || {
        format!("one batch of the signature vectors names {named:?}, not {invalid:?}")
    })
}

fn check_limits(v: &Vector) -> Check {
    v.expect("CHAIN_ID_MAX_LEN", CHAIN_ID_MAX_LEN)?;
    v.expect("MAX_TX_BYTES", MAX_TX_BYTES)?;
    v.expect("MAX_BLOCK_TXS", MAX_BLOCK_TXS)?;
    v.expect("MAX_VALIDATORS", MAX_VALIDATORS)?;
    v.expect("MAX_HEADER_BYTES", MAX_HEADER_BYTES)?;
    v.expect("MAX_BLOCK_BYTES", MAX_BLOCK_BYTES)?;
    v.expect("ACCUMULATOR_BYTES", ACCUMULATOR_BYTES)
}

/// Checks every vector, hex dump and genesis TOML block of `text`.
fn check_all(text: &str) -> Check {
    let doc = parse_doc(text)?;
    for name in REQUIRED {
        ensure(doc.vectors.contains_key(name), || {
            format!("vector {name:?} is missing")
        })?;
    }
    let vectors = || doc.vectors.values();
    let mut txs = BTreeMap::new();
    let mut genesis = BTreeMap::new();
    let mut states = BTreeMap::new();
    let mut sigs = Vec::new();
    let kind = |v: &Vector| v.name.split('-').next().unwrap_or_default().to_owned();
    // Transactions, genesis files and states first: the others refer to them.
    let referenced = |v: &&Vector| matches!(kind(v).as_str(), "tx" | "genesis" | "state");
    let (first, rest): (Vec<&Vector>, Vec<&Vector>) = vectors().partition(referenced);
    for v in first.into_iter().chain(rest) {
        match kind(v).as_str() {
            "tx" => {
                txs.insert(v.name.clone(), check_tx(v)?);
            }
            "genesis" => {
                genesis.insert(v.name.clone(), check_genesis(v)?);
            }
            "state" => {
                states.insert(v.name.clone(), check_state(v)?);
            }
            "merkle" => {
                let leaves = check_merkle(v)?;
                if v.name == "merkle-1" {
                    let hashes: Vec<Hash> = ["tx-1", "tx-2", "tx-3"]
                        .iter()
                        .map(|n| txs.get(*n).map(Transaction::hash))
                        .collect::<Option<_>>()
                        .ok_or("merkle-1 needs tx-1, tx-2 and tx-3")?;
                    ensure(leaves == hashes, || {
                        "merkle-1: leaves are not tx-1..3's hashes".into()
                    })?;
                }
                if v.name == "merkle-2" {
                    let expected: Vec<Hash> =
                        (0u64..7).map(|i| Hash::digest(&i.to_le_bytes())).collect();
                    ensure(leaves == expected, || {
                        "merkle-2: leaves are not BLAKE3(i LE)".into()
                    })?;
                }
            }
            "domains" => check_domains(v)?,
            "domain" => check_domain_layout(v)?,
            "limits" => check_limits(v)?,
            "targets" => check_targets(v)?,
            "retarget" => check_retarget(v)?,
            "sig" => sigs.push(check_sig(v)?),
            "block" => {}
            _ => return Err(format!("vector {:?} has no checker", v.name)),
        }
    }
    check_sig_batch(&sigs)?;
    // Blocks last: they refer to genesis, transaction and state vectors.
    for v in vectors().filter(|v| v.name.starts_with("block-")) {
        check_block(v, &genesis, &txs, &states)?;
    }
    for dump in &doc.hexdumps {
        let value = doc
            .vectors
            .get(&dump.vector)
            .and_then(|v| v.fields.get(&dump.key))
            .ok_or_else(|| format!("hexdump of unknown value {} {}", dump.vector, dump.key))?;
        ensure(*value == dump.hex, || {
            format!(
                "the hexdump of {} {} does not add up to the value",
                dump.vector, dump.key
            )
        })?;
    }
    for name in genesis.keys() {
        let count = doc.tomls.iter().filter(|(n, _)| n == name).count();
        ensure(count == 1, || {
            format!("{name}: expected one TOML block, found {count}")
        })?;
    }
    for (name, text) in &doc.tomls {
        let expected = genesis
            .get(name)
            .ok_or_else(|| format!("TOML block for unknown genesis vector {name:?}"))?;
        let parsed = Genesis::from_toml(text).map_err(|e| format!("{name} TOML: {e}"))?;
        ensure(parsed == *expected, || {
            format!("{name}: the TOML block is another genesis")
        })?;
    }
    for v in vectors() {
        let unused = v.unused();
        ensure(unused.is_empty(), || {
            format!("{}: keys not checked: {unused:?}", v.name)
        })?;
    }
    Ok(())
}

#[test]
fn the_documented_vectors_match_the_implementation() {
    if let Err(e) = check_all(DOC) {
        panic!("docs/PROTOCOL.md disagrees with the code:\n{e}");
    }
}

/// Changes `c` into a different character of the same kind.
fn mutate(c: u8) -> u8 {
    match c {
        b'9' => b'0',
        b'f' => b'e',
        b'z' => b'y',
        b'Z' => b'Y',
        _ => c + 1,
    }
}

/// The position (line, byte) of one character in each value of each vector,
/// hexdump and genesis TOML block: the last letter or digit of the value.
fn mutation_sites(text: &str) -> Vec<(usize, usize)> {
    let last_alnum = |line: &str, from: usize| {
        line.get(from..)?
            .bytes()
            .rposition(|b| b.is_ascii_alphanumeric())
            .map(|i| i + from)
    };
    let mut sites = Vec::new();
    let mut block: Option<&str> = None;
    let mut first = false;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        match block {
            None => {
                block = match trimmed {
                    "```vector" => Some("vector"),
                    "```hexdump" => Some("hexdump"),
                    "```toml" => Some("toml"),
                    _ => None,
                };
                first = true;
                continue;
            }
            Some(_) if trimmed == "```" => block = None,
            // Only TOML blocks headed `# vector: <name>` are checked.
            Some("toml") if first && !line.starts_with("# vector: ") => block = Some("other"),
            Some(kind) => {
                let value_start = match kind {
                    "vector" => line.find(": ").map(|i| i + 2),
                    "hexdump" if first => Some(4),
                    "hexdump" => {
                        let end = line.find(' ').unwrap_or(line.len());
                        sites.push((n, end - 1));
                        None
                    }
                    "toml" if first => Some(10),
                    "toml" => line.find(" = ").map(|i| i + 3),
                    _ => None,
                };
                if let Some(site) = value_start.and_then(|start| last_alnum(line, start)) {
                    sites.push((n, site));
                }
            }
        }
        first = false;
    }
    sites
}

#[test]
fn changing_any_documented_value_is_detected() {
    let lines: Vec<&str> = DOC.lines().collect();
    let sites = mutation_sites(DOC);
    assert!(sites.len() > 250, "only {} values found", sites.len());
    // The unchanged lines pass, so each failure below is the change's.
    check_all(&lines.join("\n")).unwrap();
    for (n, at) in sites {
        let mut line = lines[n].as_bytes().to_vec();
        line[at] = mutate(line[at]);
        let changed = String::from_utf8(line).unwrap();
        let mut mutated = lines.clone();
        mutated[n] = &changed;
        assert!(
            check_all(&mutated.join("\n")).is_err(),
            "changing line {} to {changed:?} went unnoticed",
            n + 1
        );
    }
}

#[test]
fn a_toml_genesis_block_is_required_for_each_genesis_vector() {
    // Dropping the TOML heading of genesis-1 must be noticed too.
    let without = DOC.replacen("# vector: genesis-1\n", "", 1);
    assert_ne!(without, DOC);
    assert!(check_all(&without).is_err());
}
