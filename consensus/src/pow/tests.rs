//! Proof of work against a real ledger: a store and speculative states
//! from the chain crate, with the effects carried out as the node and the
//! simulator carry them out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::test_seed;
use phalanx_chain::genesis::GenesisAccount;
use phalanx_chain::speculative::Speculative;
use phalanx_chain::{
    Account, Address, ChainId, MemStore, Nonce, Rules, StateView, Store, Transaction,
};
use phalanx_crypto::Keypair;

const EASY: CompactTarget = CompactTarget(0x207fffff);
const T0: u64 = 1_767_225_600_000;
const NOW: u64 = T0 + 1_000_000_000;

fn keys() -> Vec<Keypair> {
    (0..4).map(|i| Keypair::from_seed(&[40 + i; 32])).collect()
}

fn genesis(confirmations: u64) -> Genesis {
    Genesis {
        chain_id: ChainId::new("pow-test").unwrap(),
        consensus: ConsensusKind::Pow,
        genesis_time_ms: T0,
        validators: vec![],
        pow: Some(PowParams {
            initial_target: EASY,
            target_limit: EASY,
            block_interval_ms: 1_000,
            retarget_window: 1,
            confirmations,
            block_reward: Amount(50),
            max_future_drift_ms: 10_000,
        }),
        accounts: keys()
            .iter()
            .map(|k| GenesisAccount {
                address: k.public().into(),
                balance: Amount(1_000_000),
            })
            .collect(),
    }
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Searches the nonce until the header meets its target.
fn seal(mut block: Block) -> Block {
    let target = block.header().pow_seal().unwrap().target.target().unwrap();
    loop {
        if pow::meets(&block.header().pow_hash(), &target) {
            return block;
        }
        if let Justification::ProofOfWork(s) = &mut block.header_mut().justification {
            s.nonce += 1;
        }
    }
}

/// A store, speculative states and a pool: the ledger a protocol sees.
struct TestLedger {
    store: MemStore,
    speculative: Speculative,
    pool: Vec<Transaction>,
}

impl TestLedger {
    fn new(genesis: &Genesis) -> TestLedger {
        let store = MemStore::new();
        store.init_genesis(genesis).unwrap();
        TestLedger {
            store,
            speculative: Speculative::new(Rules::of(genesis), 4_096),
            pool: Vec::new(),
        }
    }

    fn head(&self) -> Block {
        let head = self.store.head().unwrap().unwrap();
        self.store.block(&head.hash).unwrap().unwrap()
    }

    fn accounts(&self) -> Vec<(Address, Account)> {
        keys()
            .iter()
            .map(|k| {
                let a: Address = k.public().into();
                (a, self.store.account(&a).unwrap())
            })
            .chain([MINER_A, MINER_B].map(|a| (a, self.store.account(&a).unwrap())))
            .collect()
    }
}

impl Ledger for TestLedger {
    fn build_block(
        &mut self,
        parent: &Block,
        proposer: Address,
        timestamp_ms: u64,
        justification: Justification,
    ) -> Result<Block, LedgerError> {
        let pool = self.pool.clone();
        Ok(self.speculative.build(
            &self.store,
            parent,
            proposer,
            timestamp_ms,
            justification,
            |_| pool,
        )?)
    }

    fn validate_block(&mut self, parent: &Block, block: &Block) -> Result<(), LedgerError> {
        Ok(self.speculative.validate(&self.store, parent, block)?)
    }

    fn observe_block(&mut self, block: &Block) {
        self.speculative.observe(&self.store, block);
    }

    fn committed_block(&self, hash: &Hash) -> Option<Block> {
        self.store.block(hash).ok().flatten()
    }

    fn finalized_height(&self) -> Option<Height> {
        self.store.finalized_height().ok().flatten()
    }
}

const MINER_A: Address = Address([0xaa; 32]);
const MINER_B: Address = Address([0xbb; 32]);

/// A node: the protocol and its ledger, with effects carried out.
struct Node {
    pow: Pow,
    ledger: TestLedger,
    context: PowContext,
    sent: Vec<Outgoing>,
    replies: Vec<Outgoing>,
    work: Option<WorkRequest>,
    reverts: Vec<u64>,
}

impl Node {
    fn new(genesis: &Genesis, miner: Option<Address>) -> Node {
        let ledger = TestLedger::new(genesis);
        Node::start(genesis, ledger, miner)
    }

    fn start(genesis: &Genesis, ledger: TestLedger, miner: Option<Address>) -> Node {
        let context = Pow::context(genesis, None).unwrap();
        let setup = Setup {
            key: Keypair::from_seed(&[9; 32]),
            tuning: Tuning {
                miner,
                ..Tuning::default()
            },
        };
        let pow = Pow::new(&context, setup, ledger.head()).unwrap();
        let mut node = Node {
            pow,
            ledger,
            context,
            sent: vec![],
            replies: vec![],
            work: None,
            reverts: vec![],
        };
        let recovered = node.ledger.store.safety_data(Pow::SAFETY_KEY).unwrap();
        node.input(Input::Start { recovered });
        node
    }

    fn input(&mut self, input: Input<Message, Timer>) {
        let effects = self.pow.handle(input, NOW, &mut self.ledger).unwrap();
        for effect in effects {
            match effect {
                Effect::Extend { block, finalized } => {
                    assert!(!finalized);
                    let f = self.ledger.store.finalized_height().unwrap().unwrap();
                    self.ledger
                        .speculative
                        .commit(&self.ledger.store, &block, f)
                        .unwrap();
                }
                Effect::Revert { ancestor } => {
                    let removed = self.ledger.store.revert_to(&ancestor).unwrap();
                    self.reverts.push(removed.len() as u64);
                }
                Effect::Finalize(h) => {
                    let f = self.ledger.store.finalized_height().unwrap().unwrap();
                    if h > f {
                        self.ledger.store.set_finalized_height(h).unwrap();
                        self.ledger.speculative.prune(h);
                    }
                }
                Effect::Persist(bytes) => {
                    self.ledger
                        .store
                        .put_safety_data(Pow::SAFETY_KEY, &bytes)
                        .unwrap();
                }
                Effect::Broadcast(m) => self.sent.push(m),
                Effect::Reply(m) => self.replies.push(m),
                Effect::RequestWork(w) => self.work = Some(w),
                Effect::Send { .. } | Effect::Evidence(_) => panic!("unexpected {effect:?}"),
                Effect::ArmTimer { .. } | Effect::CancelTimer(_) => {}
            }
        }
    }

    /// Delivers `block` as gossip, through `verify` as a peer's bytes.
    fn receive(&mut self, block: &Block) {
        let message =
            Pow::verify(&self.context, None, Channel::Consensus, &block.encode()).unwrap();
        self.input(Input::Message(message));
    }

    fn best(&self) -> Hash {
        self.pow.best().unwrap().0
    }
}

/// Delivers `block`, which must make `node` stop with
/// `Fault::FinalityViolated` for a branch forking at `fork` below its final
/// block at `final_height`.
fn assert_finality_violated(node: &mut Node, block: &Block, final_height: Height, fork: Height) {
    let message = Pow::verify(&node.context, None, Channel::Consensus, &block.encode()).unwrap();
    let fault = node
        .pow
        .handle(Input::Message(message), NOW, &mut node.ledger)
        .unwrap_err();
    match fault {
        Fault::FinalityViolated {
            final_height: at,
            fork_height,
            branch_tip,
        } => {
            assert_eq!(at, final_height);
            assert_eq!(fork_height, fork);
            assert_eq!(branch_tip, block.hash());
        }
        other => panic!("{other}"),
    }
}

/// Builds blocks on any parent, with transfers that apply on that branch.
struct Forge {
    ledger: TestLedger,
    blocks: Vec<Block>,
    rng: Rng,
}

impl Forge {
    fn new(genesis: &Genesis, seed: u64) -> Forge {
        let ledger = TestLedger::new(genesis);
        let blocks = vec![ledger.head()];
        Forge {
            ledger,
            blocks,
            rng: Rng(seed),
        }
    }

    /// A sealed block on `parent` mined by `miner`, with up to two
    /// transfers valid on its branch.
    fn child(&mut self, parent: &Block, miner: Address) -> Block {
        let chain = self.ledger.speculative.chain_id().clone();
        let keys = keys();
        let n_txs = self.rng.below(3);
        let picks: Vec<(usize, usize, u64)> = (0..n_txs)
            .map(|_| {
                (
                    self.rng.below(4),
                    self.rng.below(4),
                    1 + self.rng.below(100) as u64,
                )
            })
            .collect();
        let ts = parent.header().timestamp_ms + 1 + self.rng.below(2_000) as u64;
        let seal_fields = PowSeal {
            target: EASY,
            reward: Amount(50),
            nonce: self.rng.next() >> 1,
        };
        let block = self
            .ledger
            .speculative
            .build(
                &self.ledger.store,
                parent,
                miner,
                ts,
                Justification::ProofOfWork(seal_fields),
                |view: &dyn StateView| {
                    let mut nonces: HashMap<usize, u64> = HashMap::new();
                    picks
                        .iter()
                        .map(|(from, to, amount)| {
                            let key = &keys[*from];
                            let addr: Address = key.public().into();
                            let nonce = *nonces
                                .entry(*from)
                                .or_insert_with(|| view.account(&addr).unwrap().nonce.0);
                            nonces.insert(*from, nonce + 1);
                            Transaction::sign(
                                key,
                                chain.clone(),
                                keys[*to].public().into(),
                                Amount(*amount),
                                Amount(1),
                                Nonce(nonce),
                            )
                        })
                        .collect()
                },
            )
            .unwrap();
        let sealed = seal(block);
        // The sealed block (another nonce) has the same state.
        self.ledger
            .speculative
            .validate(&self.ledger.store, parent, &sealed)
            .unwrap();
        self.blocks.push(sealed.clone());
        sealed
    }

    /// A random tree of `n` blocks above genesis.
    fn random_tree(&mut self, n: usize) -> Vec<Block> {
        for _ in 0..n {
            // Favour recent blocks, so branches grow long.
            let len = self.blocks.len();
            let back = self.rng.below(len.min(4));
            let parent = self.blocks[len - 1 - back].clone();
            let miner = if self.rng.below(2) == 0 {
                MINER_A
            } else {
                MINER_B
            };
            self.child(&parent, miner);
        }
        self.blocks[1..].to_vec()
    }

    fn chain(&mut self, parent: &Block, n: usize, miner: Address) -> Vec<Block> {
        let mut out = Vec::new();
        let mut tip = parent.clone();
        for _ in 0..n {
            tip = self.child(&tip, miner);
            out.push(tip.clone());
        }
        out
    }
}

fn shuffled<T: Clone>(items: &[T], rng: &mut Rng) -> Vec<T> {
    let mut v = items.to_vec();
    for i in (1..v.len()).rev() {
        let j = rng.below(i + 1);
        v.swap(i, j);
    }
    v
}

/// The state after applying the chain ending at `tip` to a fresh store.
fn replay(genesis: &Genesis, all: &[Block], tip: Hash) -> Vec<(Address, Account)> {
    let by_hash: HashMap<Hash, &Block> = all.iter().map(|b| (b.hash(), b)).collect();
    let mut path = Vec::new();
    let mut cursor = tip;
    while let Some(b) = by_hash.get(&cursor) {
        path.push((*b).clone());
        cursor = b.header().parent;
    }
    path.reverse();
    let mut ledger = TestLedger::new(genesis);
    for b in &path {
        ledger
            .speculative
            .commit(&ledger.store, b, phalanx_chain::Height(0))
            .unwrap();
    }
    ledger.accounts()
}

#[test]
fn fork_choice_and_state_do_not_depend_on_arrival_order() {
    let seed = test_seed::seed();
    let mut rng = Rng(seed);
    for round in 0..6 {
        // confirmations high enough that nothing is final: every branch
        // stays eligible.
        let g = genesis(1_000);
        let mut forge = Forge::new(&g, rng.next());
        let blocks = forge.random_tree(24);
        let mut tips = Vec::new();
        let mut states = Vec::new();
        for _ in 0..4 {
            let mut node = Node::new(&g, None);
            // Any order at all: children before parents go through the
            // orphan pool and are answered from `blocks`.
            for block in shuffled(&blocks, &mut rng) {
                node.receive(&block);
                while let Some(reply) = node.replies.pop() {
                    let _ = reply; // parents arrive later in the shuffle
                }
            }
            assert_eq!(node.ledger.store.head().unwrap().unwrap().hash, node.best());
            tips.push(node.best());
            states.push(node.ledger.accounts());
        }
        assert!(
            tips.windows(2).all(|w| w[0] == w[1]),
            "round {round}: {tips:?}"
        );
        assert!(states.windows(2).all(|w| w[0] == w[1]), "round {round}");
        // And the state is exactly that of the best chain applied alone.
        assert_eq!(states[0], replay(&g, &blocks, tips[0]), "round {round}");
    }
}

#[test]
fn a_heavier_branch_reorganizes_and_the_state_is_the_branchs_alone() {
    let g = genesis(100);
    let mut forge = Forge::new(&g, 7);
    let genesis_block = forge.blocks[0].clone();
    let a = forge.chain(&genesis_block, 3, MINER_A);
    let b = forge.chain(&a[0], 4, MINER_B);
    let mut node = Node::new(&g, None);
    for block in &a {
        node.receive(block);
    }
    assert_eq!(node.best(), a[2].hash());
    for block in &b {
        node.receive(block);
    }
    assert_eq!(node.best(), b[3].hash());
    assert_eq!(node.reverts, vec![2], "two blocks of A were rolled back");
    let all: Vec<Block> = a.iter().chain(&b).cloned().collect();
    assert_eq!(node.ledger.accounts(), replay(&g, &all, b[3].hash()));
    // The miner of B's blocks holds five rewards (one on A's first block
    // went to A's miner) plus fees.
    let miner_b = node.ledger.store.account(&MINER_B).unwrap().balance;
    assert!(miner_b >= Amount(200), "{miner_b:?}");
}

#[test]
fn blocks_with_k_confirmations_are_final_and_branches_below_are_ignored() {
    let g = genesis(3);
    let mut forge = Forge::new(&g, 11);
    let genesis_block = forge.blocks[0].clone();
    let main = forge.chain(&genesis_block, 5, MINER_A);
    let mut node = Node::new(&g, None);
    for block in &main {
        node.receive(block);
    }
    // Tip at 5, three confirmations: 3 is final.
    assert_eq!(
        node.ledger.store.finalized_height().unwrap(),
        Some(Height(3))
    );
    // A branch from block 1 forks below the final block: never followed,
    // and counted...
    let rival = forge.chain(&main[0], 5, MINER_B);
    // It arrives as a catch-up answer would bring it: from the genesis
    // block's child up, our own final blocks 1 first. Those are ours, not
    // a branch: the fork is at 1, not at the genesis block.
    node.receive(&main[0]);
    for block in &rival[..4] {
        node.receive(block);
    }
    assert_eq!(node.best(), main[4].hash());
    assert_eq!(node.pow.forks_below_final(), 4);
    // ...until it has more work than the chain: the confirmations did not
    // hold, and the node stops rather than pretend they did.
    assert_finality_violated(&mut node, &rival[4], Height(3), Height(1));
    let mut node = Node::new(&g, None);
    for block in &main {
        node.receive(block);
    }
    // A branch from block 3 (final) is followed when heavier.
    let above = forge.chain(&main[2], 4, MINER_B);
    for block in &above {
        node.receive(block);
    }
    assert_eq!(node.best(), above[3].hash());
    assert_eq!(node.reverts, vec![2]);
}

/// A branch this node already knew when the chain beside it became final
/// (a tie at the finality depth) is remembered as a conflict: if it keeps
/// growing past the chain's work, the node halts instead of dropping its
/// blocks as old ones.
#[test]
fn a_branch_cut_off_by_finality_is_still_weighed_as_it_grows() {
    let g = genesis(3);
    let mut forge = Forge::new(&g, 12);
    let genesis_block = forge.blocks[0].clone();
    let main = forge.chain(&genesis_block, 5, MINER_A);
    let rival = forge.chain(&main[0], 6, MINER_B);
    let mut node = Node::new(&g, None);
    node.receive(&main[0]);
    node.receive(&main[1]);
    node.receive(&rival[0]);
    for block in &main[2..] {
        node.receive(block);
    }
    assert_eq!(node.best(), main[4].hash());
    assert_eq!(
        node.ledger.store.finalized_height().unwrap(),
        Some(Height(3))
    );
    for block in &rival[1..4] {
        node.receive(block);
    }
    assert_eq!(node.best(), main[4].hash());
    assert_finality_violated(&mut node, &rival[4], Height(3), Height(1));
}

#[test]
fn an_orphan_asks_its_sender_for_the_parent_and_joins_when_it_arrives() {
    let g = genesis(100);
    let mut forge = Forge::new(&g, 3);
    let genesis_block = forge.blocks[0].clone();
    let chain = forge.chain(&genesis_block, 3, MINER_A);
    let mut node = Node::new(&g, None);
    node.receive(&chain[2]);
    let reply = node.replies.pop().expect("a request for the parent");
    assert_eq!(reply.channel, Channel::Sync);
    match Pow::verify(&node.context, None, Channel::Sync, &reply.bytes).unwrap() {
        Message::Sync(SyncMessage::Request { hash }) => assert_eq!(hash, chain[1].hash()),
        other => panic!("{other:?}"),
    }
    // A peer answers with the parent and its ancestors, newest first.
    let mut peer = Node::new(&g, None);
    for block in &chain {
        peer.receive(block);
    }
    let request = Pow::verify(&peer.context, None, Channel::Sync, &reply.bytes).unwrap();
    peer.input(Input::Message(request));
    let answer = peer.replies.pop().expect("an answer");
    let answer = Pow::verify(&node.context, None, Channel::Sync, &answer.bytes).unwrap();
    node.input(Input::Message(answer));
    assert_eq!(node.best(), chain[2].hash());
}

#[test]
fn bad_work_target_timestamp_and_reward_are_refused_by_name() {
    let g = genesis(100);
    let mut forge = Forge::new(&g, 5);
    let genesis_block = forge.blocks[0].clone();
    let good = forge.child(&genesis_block, MINER_A);
    let node = Node::new(&g, None);
    let verify = |b: &Block| Pow::verify(&node.context, None, Channel::Consensus, &b.encode());

    // Work: a nonce whose hash is above the (easy) target.
    let mut bad_work = good.clone();
    let target = EASY.target().unwrap();
    while pow::meets(&bad_work.header().pow_hash(), &target) {
        if let Justification::ProofOfWork(s) = &mut bad_work.header_mut().justification {
            s.nonce += 1;
        }
    }
    assert!(matches!(
        verify(&bad_work),
        Err(Rejection::Seal {
            error: SealError::Work(PowError::InsufficientWork { .. }),
            ..
        })
    ));

    // Reward: more than the genesis allows.
    let mut greedy = good.clone();
    if let Justification::ProofOfWork(s) = &mut greedy.header_mut().justification {
        s.reward = Amount(51);
    }
    let greedy = seal(greedy);
    assert!(matches!(
        verify(&greedy),
        Err(Rejection::Seal {
            error: SealError::RewardTooHigh { .. },
            ..
        })
    ));

    // Target: harder than the chain's schedule says (a harder target is
    // still a valid compact form, and the hash may well meet it).
    let mut node = node;
    let mut wrong_target = good.clone();
    if let Justification::ProofOfWork(s) = &mut wrong_target.header_mut().justification {
        s.target = CompactTarget(0x2000ffff);
    }
    let wrong_target = seal(wrong_target);
    assert!(matches!(
        node.pow.check_block(&wrong_target, NOW, &mut node.ledger),
        Err(BlockRejection::Pow(PowError::WrongTarget { .. }))
    ));

    // Timestamps: not after the median of the ancestors, and too far
    // ahead of the clock.
    let mut early = good.clone();
    early.header_mut().timestamp_ms = T0;
    let early = seal(early);
    assert!(matches!(
        node.pow.check_block(&early, NOW, &mut node.ledger),
        Err(BlockRejection::Pow(
            PowError::TimestampNotAfterMedian { .. }
        ))
    ));
    assert!(matches!(
        node.pow.check_block(&good, T0 - 20_000, &mut node.ledger),
        Err(BlockRejection::Pow(PowError::TimestampTooFarAhead { .. }))
    ));

    // None of them made it in; the good block does.
    for bad in [&bad_work, &greedy, &wrong_target, &early] {
        if let Ok(m) = Pow::verify(&node.context, None, Channel::Consensus, &bad.encode()) {
            node.input(Input::Message(m));
        }
    }
    assert_eq!(node.best(), genesis_block.hash());
    // Invalid blocks get a verdict; none was dropped unchecked.
    assert_eq!(node.pow.status().unchecked_drops, 0);
    // Ahead of this node's clock: dropped for now, without a verdict, and
    // counted.
    let message = Pow::verify(&node.context, None, Channel::Consensus, &good.encode()).unwrap();
    node.pow
        .handle(Input::Message(message), T0 - 20_000, &mut node.ledger)
        .unwrap();
    assert_eq!(node.best(), genesis_block.hash());
    assert_eq!(node.pow.status().unchecked_drops, 1);
    node.receive(&good);
    assert_eq!(node.best(), good.hash());
}

#[test]
fn a_miner_asks_for_work_on_the_best_tip_and_publishes_what_it_mines() {
    let g = genesis(2);
    let mut node = Node::new(&g, Some(MINER_A));
    for round in 0..4 {
        let work = node.work.take().expect("work requested");
        assert_eq!(work.parent, node.best(), "round {round}");
        let mined = seal(*work.template);
        node.input(Input::Mined(Box::new(mined.clone())));
        assert_eq!(node.best(), mined.hash());
        let sent = node.sent.pop().expect("the block is broadcast");
        assert_eq!(sent.origin, Origin::Authored);
        assert_eq!(sent.bytes, mined.encode());
    }
    assert_eq!(
        node.ledger.store.account(&MINER_A).unwrap().balance,
        Amount(200)
    );
    assert_eq!(
        node.ledger.store.finalized_height().unwrap(),
        Some(Height(3))
    );
}

#[test]
fn a_restarted_node_rebuilds_its_tree_and_keeps_following_the_heaviest_branch() {
    let g = genesis(4);
    let mut forge = Forge::new(&g, 21);
    let genesis_block = forge.blocks[0].clone();
    let main = forge.chain(&genesis_block, 6, MINER_A);
    let mut node = Node::new(&g, None);
    for block in &main {
        node.receive(block);
    }
    let (best, height, work) = node.pow.best().unwrap();
    // Restart on the same store.
    let Node { ledger, .. } = node;
    let mut again = Node::start(&g, ledger, None);
    assert_eq!(again.pow.best().unwrap(), (best, height, work));
    // A heavier branch forking above the final block (3) but below the
    // head reorganizes the restarted node.
    let rival = forge.chain(&main[3], 4, MINER_B);
    for block in &rival {
        again.receive(block);
    }
    assert_eq!(again.best(), rival[3].hash());
    let all: Vec<Block> = main.iter().chain(&rival).cloned().collect();
    assert_eq!(again.ledger.accounts(), replay(&g, &all, rival[3].hash()));
}

#[test]
fn a_restart_never_roots_the_tree_below_what_the_store_holds_final() {
    let g = genesis(4);
    let mut forge = Forge::new(&g, 23);
    let genesis_block = forge.blocks[0].clone();
    let main = forge.chain(&genesis_block, 6, MINER_A);
    let mut node = Node::new(&g, None);
    for block in &main {
        node.receive(block);
    }
    // Block sync (or anything else) made the store final up to its head.
    node.ledger.store.set_finalized_height(Height(6)).unwrap();
    let Node { ledger, .. } = node;
    let mut again = Node::start(&g, ledger, None);
    // A heavier branch from block 4 (final here) is a conflict, not a
    // reorganization below the final height.
    let rival = forge.chain(&main[3], 3, MINER_B);
    for block in &rival[..2] {
        again.receive(block);
    }
    assert_eq!(again.best(), main[5].hash());
    assert_eq!(again.reverts, Vec::<u64>::new());
    let message =
        Pow::verify(&again.context, None, Channel::Consensus, &rival[2].encode()).unwrap();
    let fault = again
        .pow
        .handle(Input::Message(message), NOW, &mut again.ledger)
        .unwrap_err();
    assert!(matches!(fault, Fault::FinalityViolated { .. }), "{fault}");
}
