//! The admin API of test networks: partitions on demand.
//!
//! Served only when the node's config says `[testnet] admin_api = true`
//! (`phalanx-testnet init` and `up` write it); otherwise every `/admin/...`
//! path answers 404 `not_found`, as an unknown route would.
//!
//! - `POST /admin/partition` with `{"groups": [[member, ...], ...]}`, each
//!   member a validator's index in genesis (a number, or a string of
//!   digits) or its public key (64 hex digits). Validators named in no
//!   group form one more group. The node finds its own group and blocks
//!   every other genesis validator through [`crate::net::Gossip::set_blocked`]:
//!   their traffic is dropped both ways and their connections refused. A
//!   partition replaces the previous one. Sent to every node, it splits the
//!   network along the groups (a node only cuts its own links, so all nodes
//!   must be told). Answers with the node's group and the keys it blocks.
//! - `POST /admin/heal` (no body) unblocks everyone; blocked configured
//!   peers are redialed at once.
//!
//! On a chain whose genesis lists no validators (proof of work), the
//! members must be keys: the nodes named are the ones split.
//!
//! A bad request (an unknown index or key, a validator in two groups, no
//! group) is a 400 `bad_partition` naming what was wrong.

use super::Api;
use super::error::{ApiError, ApiJson};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{any, post};
use phalanx_crypto::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Most members named in one partition request.
pub const MAX_PARTITION_MEMBERS: usize = 1_024;

/// The admin routes if `enabled`; otherwise a 404 for every `/admin/` path
/// that says why.
pub(super) fn routes(enabled: bool) -> Router<Api> {
    if enabled {
        Router::new()
            .route("/admin/partition", post(partition))
            .route("/admin/heal", post(heal))
    } else {
        Router::new().route("/admin/{*rest}", any(disabled))
    }
}

async fn disabled() -> ApiError {
    ApiError::not_found("no such route (the admin API is off: [testnet] admin_api = false)")
}

/// A member of a group: an index in genesis or a public key.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Member {
    Index(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionRequest {
    groups: Vec<Vec<Member>>,
}

/// The answer to both routes.
#[derive(Debug, Serialize)]
pub struct PartitionView {
    /// The validators this node still talks to, itself included (every
    /// validator after a heal).
    pub group: Vec<PublicKey>,
    /// The peers it now blocks.
    pub blocked: Vec<PublicKey>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("bad_partition", message)
}

async fn partition(
    State(api): State<Api>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<PartitionView>, ApiError> {
    let request: PartitionRequest = serde_json::from_value(body).map_err(|e| {
        bad(format!(
            "the body must be {{\"groups\": [[member, ...], ...]}}: {e}"
        ))
    })?;
    let validators = universe(
        &request.groups,
        api.node
            .genesis
            .validators
            .iter()
            .map(|v| v.public_key)
            .collect(),
    );
    let groups = resolve(&request.groups, &validators)?;
    let me = api.node.net.local_key();
    let named: BTreeSet<PublicKey> = groups.iter().flatten().copied().collect();
    let mine: BTreeSet<PublicKey> = match groups.iter().find(|g| g.contains(&me)) {
        Some(group) => group.clone(),
        // Validators named nowhere form one more group.
        None => validators
            .iter()
            .filter(|k| !named.contains(k))
            .copied()
            .collect(),
    };
    let blocked: Vec<PublicKey> = validators
        .iter()
        .filter(|k| **k != me && !mine.contains(k))
        .copied()
        .collect();
    tracing::warn!(
        blocked = blocked.len(),
        "admin: partitioned; dropping all traffic with {} peers",
        blocked.len()
    );
    api.node.net.set_blocked(blocked.clone());
    Ok(Json(PartitionView {
        group: validators
            .iter()
            .filter(|k| mine.contains(k) || **k == me)
            .copied()
            .collect(),
        blocked,
    }))
}

async fn heal(State(api): State<Api>) -> Json<PartitionView> {
    tracing::warn!("admin: healed; no peer is blocked");
    api.node.net.set_blocked(Vec::new());
    Json(PartitionView {
        group: api
            .node
            .genesis
            .validators
            .iter()
            .map(|v| v.public_key)
            .collect(),
        blocked: Vec::new(),
    })
}

/// The nodes a partition splits: the genesis validators, or on a chain
/// without any (proof of work: genesis lists no miners) the nodes the
/// request names by key (an index then names nothing).
fn universe(groups: &[Vec<Member>], validators: Vec<PublicKey>) -> Vec<PublicKey> {
    if !validators.is_empty() {
        return validators;
    }
    let named: BTreeSet<PublicKey> = groups
        .iter()
        .flatten()
        .filter_map(|m| match m {
            Member::Text(text) => text.parse().ok(),
            Member::Index(_) => None,
        })
        .collect();
    named.into_iter().collect()
}

/// The groups as sets of validator keys; every member must be a validator
/// and appear once.
fn resolve(
    groups: &[Vec<Member>],
    validators: &[PublicKey],
) -> Result<Vec<BTreeSet<PublicKey>>, ApiError> {
    if groups.is_empty() {
        return Err(bad("name at least one group"));
    }
    let members: usize = groups.iter().map(Vec::len).sum();
    if members > MAX_PARTITION_MEMBERS {
        return Err(bad(format!(
            "{members} members named; at most {MAX_PARTITION_MEMBERS}"
        )));
    }
    let mut seen = BTreeSet::new();
    let mut resolved = Vec::with_capacity(groups.len());
    for group in groups {
        let mut keys = BTreeSet::new();
        for member in group {
            let key = resolve_member(member, validators)?;
            if !seen.insert(key) {
                return Err(bad(format!("validator {key} is in more than one group")));
            }
            keys.insert(key);
        }
        resolved.push(keys);
    }
    Ok(resolved)
}

fn resolve_member(member: &Member, validators: &[PublicKey]) -> Result<PublicKey, ApiError> {
    let by_index = |index: u64| {
        usize::try_from(index)
            .ok()
            .and_then(|i| validators.get(i))
            .copied()
            .ok_or_else(|| {
                bad(format!(
                    "validator {index} does not exist (genesis has {})",
                    validators.len()
                ))
            })
    };
    match member {
        Member::Index(index) => by_index(*index),
        Member::Text(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            by_index(
                text.parse()
                    .map_err(|_| bad(format!("{text:?} is too large")))?,
            )
        }
        Member::Text(text) => {
            let short: String = text.chars().take(80).collect();
            let key: PublicKey = text
                .parse()
                .map_err(|e| bad(format!("{short:?} is neither an index nor a key: {e}")))?;
            if validators.contains(&key) {
                Ok(key)
            } else {
                Err(bad(format!("{key} is not a validator of this chain")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u8) -> Vec<PublicKey> {
        (0..n)
            .map(|i| phalanx_crypto::Keypair::from_seed(&[i + 1; 32]).public())
            .collect()
    }

    #[test]
    fn members_are_indices_or_keys() {
        let v = keys(4);
        let groups = vec![
            vec![Member::Index(0), Member::Text("1".into())],
            vec![Member::Text(v[2].to_string())],
        ];
        let resolved = resolve(&groups, &v).unwrap();
        assert_eq!(resolved[0], BTreeSet::from([v[0], v[1]]));
        assert_eq!(resolved[1], BTreeSet::from([v[2]]));
    }

    #[test]
    fn a_chain_without_validators_splits_the_nodes_named_by_key() {
        let k = keys(4);
        let groups = vec![
            vec![
                Member::Text(k[0].to_string()),
                Member::Text(k[1].to_string()),
            ],
            vec![
                Member::Text(k[2].to_string()),
                Member::Text(k[3].to_string()),
            ],
        ];
        let nodes = universe(&groups, Vec::new());
        assert_eq!(nodes.len(), 4);
        let resolved = resolve(&groups, &nodes).unwrap();
        assert_eq!(resolved[1], BTreeSet::from([k[2], k[3]]));
        // Indices name nothing there; with validators, the universe is theirs.
        let by_index = vec![vec![Member::Index(0)]];
        let e = resolve(&by_index, &universe(&by_index, Vec::new())).unwrap_err();
        assert!(
            e.message.contains("does not exist (genesis has 0)"),
            "{}",
            e.message
        );
        assert_eq!(universe(&groups, k[..2].to_vec()), k[..2].to_vec());
    }

    #[test]
    fn bad_groups_are_named() {
        let v = keys(4);
        let err = |groups: Vec<Vec<Member>>| resolve(&groups, &v).unwrap_err();
        let e = err(vec![vec![Member::Index(7)]]);
        assert_eq!(e.code, "bad_partition");
        assert!(
            e.message.contains("validator 7 does not exist"),
            "{}",
            e.message
        );
        let e = err(vec![vec![Member::Index(1)], vec![Member::Text("1".into())]]);
        assert!(e.message.contains("more than one group"), "{}", e.message);
        let e = err(vec![vec![Member::Text("zz".into())]]);
        assert!(
            e.message.contains("neither an index nor a key"),
            "{}",
            e.message
        );
        let stranger = keys(5)[4];
        let e = err(vec![vec![Member::Text(stranger.to_string())]]);
        assert!(e.message.contains("not a validator"), "{}", e.message);
        assert!(err(Vec::new()).message.contains("at least one group"));
    }
}
