//! Benchmarks of ed25519 over transaction-sized signing bytes: signing;
//! single verification under ZIP 215 (this crate, with and without a
//! prepared key) against ed25519-dalek's `verify_strict`, the rule before;
//! and batch verification of 64 and 1024 signatures by distinct keys,
//! this crate's ZIP 215 batch against ed25519-dalek's `verify_batch`
//! (both including the decoding of the keys).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use phalanx_crypto::{
    BatchEntry, ChainId, Domain, Keypair, PublicKey, Signature, SigningBytes, verify_batch,
};
use std::hint::black_box;
use std::time::Duration;

/// The batch sizes measured.
const BATCH_SIZES: [usize; 2] = [64, 1024];

/// A deterministic, distinct seed for key `i`.
fn seed(i: usize) -> [u8; 32] {
    let mut seed = [0x5a; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    seed
}

/// The signing bytes of a transfer transaction, laid out as
/// `Transaction::signing_bytes` does: from, to, amount, fee, nonce.
fn transaction_bytes(chain_id: &ChainId, from: &PublicKey, i: usize) -> SigningBytes {
    let mut to = [0xa5; 32];
    to[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Domain::Transaction
        .begin(chain_id)
        .bytes(from.as_bytes())
        .bytes(&to)
        .u64_le(1_000 + i as u64)
        .u64_le(10)
        .u64_le(i as u64)
        .finish()
}

struct Signed {
    key: PublicKey,
    message: SigningBytes,
    signature: Signature,
}

/// `n` transactions' signing bytes, each signed by its own key.
fn signed(chain_id: &ChainId, n: usize) -> Vec<Signed> {
    (0..n)
        .map(|i| {
            let keypair = Keypair::from_seed(&seed(i));
            let key = keypair.public();
            let message = transaction_bytes(chain_id, &key, i);
            let signature = keypair.sign(&message);
            Signed {
                key,
                message,
                signature,
            }
        })
        .collect()
}

fn single(c: &mut Criterion) {
    let chain_id = ChainId::new("phalanx-bench").unwrap();
    let keypair = Keypair::from_seed(&seed(0));
    let key = keypair.public();
    let message = transaction_bytes(&chain_id, &key, 0);
    let signature = keypair.sign(&message);
    key.verify(&message, &signature).unwrap();

    let mut group = c.benchmark_group("ed25519");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("sign", |b| {
        b.iter(|| black_box(&keypair).sign(black_box(&message)));
    });
    group.bench_function("zip215_verify", |b| {
        b.iter(|| black_box(&key).verify(black_box(&message), black_box(&signature)));
    });
    let prepared = key.prepare().unwrap();
    group.bench_function("zip215_prepared_verify", |b| {
        b.iter(|| black_box(&prepared).verify(black_box(&message), black_box(&signature)));
    });
    let dalek_signature = ed25519_dalek::Signature::from_bytes(signature.as_bytes());
    group.bench_function("dalek_verify_strict", |b| {
        b.iter(|| {
            let key = ed25519_dalek::VerifyingKey::from_bytes(black_box(key.as_bytes())).unwrap();
            key.verify_strict(black_box(message.as_bytes()), black_box(&dalek_signature))
        });
    });
    group.finish();
}

fn batch(c: &mut Criterion) {
    let chain_id = ChainId::new("phalanx-bench").unwrap();
    let max = BATCH_SIZES.iter().copied().max().unwrap_or(0);
    let all = signed(&chain_id, max);

    let mut group = c.benchmark_group("verify_batch");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    for n in BATCH_SIZES {
        let entries: Vec<BatchEntry<'_>> = all[..n]
            .iter()
            .map(|s| BatchEntry {
                message: &s.message,
                key: &s.key,
                signature: &s.signature,
            })
            .collect();
        assert!(
            verify_batch(&entries).is_empty(),
            "the fixture's signatures must all be valid"
        );
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("zip215", n), &entries, |b, entries| {
            b.iter(|| verify_batch(black_box(entries)));
        });
        let messages: Vec<&[u8]> = all[..n].iter().map(|s| s.message.as_bytes()).collect();
        let signatures: Vec<ed25519_dalek::Signature> = all[..n]
            .iter()
            .map(|s| ed25519_dalek::Signature::from_bytes(s.signature.as_bytes()))
            .collect();
        group.bench_with_input(BenchmarkId::new("dalek", n), &all[..n], |b, batch| {
            b.iter(|| {
                let keys: Vec<ed25519_dalek::VerifyingKey> = batch
                    .iter()
                    .map(|s| ed25519_dalek::VerifyingKey::from_bytes(s.key.as_bytes()).unwrap())
                    .collect();
                ed25519_dalek::verify_batch(black_box(&messages), black_box(&signatures), &keys)
                    .unwrap();
            });
        });
    }
    group.finish();
}

criterion_group!(benches, single, batch);
criterion_main!(benches);
