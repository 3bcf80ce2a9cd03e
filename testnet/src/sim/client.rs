//! The simulated client and the chain it runs on: a genesis with the
//! committee and a few funded accounts, and signed transfers among them.

use super::rng::Rng;
use phalanx_chain::genesis::{GenesisAccount, GenesisValidator, PowParams};
use phalanx_chain::pow::CompactTarget;
use phalanx_chain::{Address, Amount, ChainId, ConsensusKind, Genesis, Nonce, Transaction};
use phalanx_crypto::{Hash, Keypair};

/// Funded accounts the client moves money between.
pub const CLIENT_ACCOUNTS: usize = 4;
/// Each one's initial balance.
pub const INITIAL_BALANCE: u64 = 1_000_000_000;
/// The simulated chain's id.
pub const CHAIN_ID: &str = "phalanx-sim";
/// The proof-of-work target of simulations (the easiest there is).
pub const SIM_TARGET: CompactTarget = CompactTarget(0x207fffff);

/// The address miner `index` is paid at.
pub fn miner_address(index: usize) -> Address {
    validator_key(index).public().into()
}

fn key(kind: &str, index: usize) -> Keypair {
    let seed = Hash::digest_parts(&[b"PHALANX/SIM/", kind.as_bytes(), &index.to_le_bytes()]);
    Keypair::from_seed(seed.as_bytes())
}

/// Validator `index`'s key (the same in every run).
pub fn validator_key(index: usize) -> Keypair {
    key("validator", index)
}

/// A `consensus` genesis for `validators` validators and the client's
/// accounts; block 0's timestamp is virtual time 0.
pub fn genesis(consensus: ConsensusKind, validators: usize) -> Result<Genesis, String> {
    genesis_with(consensus, validators, 2_000, 6)
}

/// [`genesis`], for proof of work with this block interval and these
/// confirmations.
pub fn genesis_with(
    consensus: ConsensusKind,
    validators: usize,
    block_interval_ms: u64,
    confirmations: u64,
) -> Result<Genesis, String> {
    let chain_id = ChainId::new(CHAIN_ID).map_err(|e| e.to_string())?;
    let pow = consensus == ConsensusKind::Pow;
    let genesis = Genesis {
        chain_id,
        consensus,
        genesis_time_ms: 0,
        validators: (0..validators)
            .filter(|_| !pow)
            .map(|i| GenesisValidator {
                public_key: validator_key(i).public(),
                address: format!("/memory/{i}"),
            })
            .collect(),
        pow: pow.then_some(PowParams {
            // The easiest target, never retargeted: the simulator draws
            // when each miner finds a block from its own random process
            // (its share of one block per interval), and sealing one takes
            // two hashes on average.
            initial_target: SIM_TARGET,
            target_limit: SIM_TARGET,
            block_interval_ms,
            retarget_window: 1,
            confirmations,
            block_reward: Amount(50),
            max_future_drift_ms: 15_000,
        }),
        accounts: (0..CLIENT_ACCOUNTS)
            .map(|i| GenesisAccount {
                address: key("client", i).public().into(),
                balance: Amount(INITIAL_BALANCE),
            })
            .collect(),
    };
    genesis.validate().map_err(|e| e.to_string())?;
    Ok(genesis)
}

/// Signs transfers among the funded accounts, each sender's nonces in order.
#[derive(Debug)]
pub struct Client {
    chain_id: ChainId,
    keys: Vec<Keypair>,
    nonces: Vec<Nonce>,
    rng: Rng,
}

impl Client {
    pub fn new(chain_id: ChainId, seed: u64) -> Client {
        Client {
            chain_id,
            keys: (0..CLIENT_ACCOUNTS).map(|i| key("client", i)).collect(),
            nonces: vec![Nonce(0); CLIENT_ACCOUNTS],
            rng: Rng::stream(seed, "client"),
        }
    }

    /// The next transfer: a random sender pays a random other account.
    pub fn next_transfer(&mut self) -> Option<Transaction> {
        let n = self.keys.len();
        let from = self.rng.index(n);
        let to = (from + 1 + self.rng.index(n.saturating_sub(1).max(1))) % n;
        let amount = Amount(self.rng.range_inclusive(1, 1_000));
        let nonce = *self.nonces.get(from)?;
        let sender = self.keys.get(from)?;
        let recipient: Address = self.keys.get(to)?.public().into();
        let tx = Transaction::sign(
            sender,
            self.chain_id.clone(),
            recipient,
            amount,
            Amount(1),
            nonce,
        );
        if let Some(slot) = self.nonces.get_mut(from) {
            *slot = nonce.next()?;
        }
        Some(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_is_valid_and_transfers_verify_in_nonce_order() {
        let g = genesis(ConsensusKind::Hotstuff, 4).unwrap();
        assert_eq!(g.validators.len(), 4);
        let mut client = Client::new(g.chain_id.clone(), 9);
        let mut last: std::collections::BTreeMap<Address, u64> = Default::default();
        for _ in 0..50 {
            let tx = client.next_transfer().unwrap();
            tx.verify_signature().unwrap();
            assert_ne!(tx.from, tx.to);
            let expected = last.get(&tx.from).map_or(0, |n| n + 1);
            assert_eq!(tx.nonce, Nonce(expected));
            last.insert(tx.from, tx.nonce.0);
        }
    }
}
