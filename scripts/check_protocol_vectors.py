#!/usr/bin/env python3
"""Independent check of the test vectors in docs/PROTOCOL.md.

This is a second implementation of the formats that document describes,
written from the document alone: it shares no code with the Rust crates and
never runs them. It parses the vectors (section 11.1 of the document) and
recomputes public keys, signing bytes, Ed25519 signatures, transaction
hashes, the JSON and binary forms, merkle roots and inclusion proofs, state
roots, genesis hashes, block 0, block headers, blocks and their hashes,
compact targets, the retarget, the proof-of-work hash against its target,
and the effect of executing the example blocks (block reward included).
Signatures are judged by its own ZIP 215 verifier (section 2.1), written
here in integer arithmetic on edwards25519; `cryptography` only signs.

Usage:
    pip install cryptography blake3
    python3 scripts/check_protocol_vectors.py [path/to/PROTOCOL.md]

Prints what it checked; exits 1 if any value disagrees, 2 if it cannot run.
"""

import hashlib
import json
import re
import struct
import sys
from pathlib import Path

try:
    import blake3
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
    from cryptography.exceptions import InvalidSignature
except ImportError as missing:
    print(f"missing dependency ({missing}); run: pip install cryptography blake3")
    sys.exit(2)

try:
    import tomllib  # Python 3.11+
except ImportError:  # pragma: no cover
    tomllib = None

U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1

# Section 3: the signing kinds, keyed by the names the `domains` vector uses.
KINDS = {
    "Transaction": "TX",
    "HotStuffProposal": "HS-PROPOSAL",
    "HotStuffVote": "HS-VOTE",
    "HotStuffTimeout": "HS-TIMEOUT",
    "PbftPrePrepare": "PBFT-PRE-PREPARE",
    "PbftPrepare": "PBFT-PREPARE",
    "PbftCommit": "PBFT-COMMIT",
    "PbftViewChange": "PBFT-VIEW-CHANGE",
    "PbftNewView": "PBFT-NEW-VIEW",
    "PbftCheckpoint": "PBFT-CHECKPOINT",
}
CONSENSUS = {"pbft": 0, "hotstuff": 1, "pow": 2}
# Section 8.2: the [pow] parameters in encoding order; the targets are
# compact (written as 8 hex digits), the others integers.
POW_FIELDS = [
    "initial_target", "target_limit", "block_interval_ms", "retarget_window",
    "confirmations", "block_reward", "max_future_drift_ms",
]
POW_TARGETS = {"initial_target", "target_limit"}
# The vectors the document must contain.
REQUIRED = [
    "tx-1", "tx-2", "tx-3", "domains", "domain-1", "merkle-0", "merkle-1", "merkle-2",
    "state-0", "state-1", "state-2", "genesis-1", "genesis-2", "block-1", "block-pow",
    "targets", "retarget-1", "limits",
] + [f"sig-{i}" for i in range(1, 15)]
# Section 7.5: timestamps the median-time-past rule looks back over.
MEDIAN_TIME_SPAN = 11
# Section 8.1: bounds on the [pow] parameters.
MAX_RETARGET_WINDOW = 2016
MAX_CONFIRMATIONS = 1000


class Mismatch(Exception):
    pass


# ---------------------------------------------------------------- primitives


def b3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def b3_xof(data: bytes, length: int) -> bytes:
    return blake3.blake3(data).digest(length=length)


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def u64_le(n: int) -> bytes:
    return n.to_bytes(8, "little")


def varint(n: int) -> bytes:
    """Unsigned LEB128, shortest form (section 5)."""
    if n < 0:
        raise ValueError("negative varint")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def option(value, encode) -> bytes:
    """Section 5: 00 for none, 01 followed by the value."""
    return b"\x00" if value is None else b"\x01" + encode(value)


def chain_id_bytes(chain_id: str) -> bytes:
    """Section 2.3: 1 to 32 bytes of 0x21..=0x7e."""
    raw = chain_id.encode("utf-8")
    if not 1 <= len(raw) <= 32 or any(not 0x21 <= b <= 0x7E for b in raw):
        raise Mismatch(f"invalid chain id {chain_id!r}")
    return raw


def fixed_hex(text: str, size: int) -> bytes:
    """Lowercase hex of exactly `size` bytes (addresses, hashes, signatures)."""
    if not re.fullmatch(f"[0-9a-f]{{{2 * size}}}", text):
        raise Mismatch(f"{text!r} is not {2 * size} lowercase hex characters")
    return bytes.fromhex(text)


def address(text: str) -> bytes:
    return fixed_hex(text, 32)


def u64(text: str) -> int:
    if not re.fullmatch(r"0|[1-9][0-9]*", text) or int(text) > U64_MAX:
        raise Mismatch(f"{text!r} is not a u64")
    return int(text)


def u32(text: str) -> int:
    value = u64(text)
    if value > U32_MAX:
        raise Mismatch(f"{text!r} is not a u32")
    return value


# ----------------------------------------------------------- proof of work


class Refused(Mismatch):
    """A compact target that stands for no valid target (section 7.5)."""


def compact(text: str) -> int:
    """A compact target as written in vectors, JSON and TOML: 8 hex digits."""
    if not re.fullmatch(r"[0-9a-f]{8}", text):
        raise Mismatch(f"{text!r} is not a compact target (8 lowercase hex digits)")
    return int(text, 16)


def to_compact(target: int) -> int:
    """Section 7.5: the canonical compact form, rounding down to 3 bytes."""
    size = (target.bit_length() + 7) // 8
    if size <= 3:
        mantissa = target << (8 * (3 - size))
    else:
        mantissa = target >> (8 * (size - 3))
    if mantissa & 0x800000:
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa


def from_compact(bits: int) -> int:
    """Section 7.5: the target a compact form stands for; Refused if none."""
    size, mantissa = bits >> 24, bits & 0x7FFFFF
    if mantissa == 0:
        raise Refused("zero")
    if bits & 0x800000:
        raise Refused("negative")
    if size <= 3:
        target = mantissa >> (8 * (3 - size))
    else:
        target = mantissa << (8 * (size - 3))
    if target == 0:
        raise Refused("zero")
    if target >= 1 << 256:
        raise Refused("overflow")
    canonical = to_compact(target)
    if canonical != bits:
        raise Refused(f"not canonical, {canonical:08x}")
    return target


def retarget(window: list, interval_ms: int, size: int, limit: int) -> int:
    """Section 7.5: the compact target of the block after `window`, a list of
    (timestamp_ms, compact target), oldest first, ending at the parent."""
    window = window[-size:]
    if len(window) < max(size, 2):
        return window[-1][1]
    n = len(window)
    expected = (n - 1) * interval_ms
    span = max(window[-1][0] - window[0][0], 0)
    span = min(max(span, max(expected // 4, 1)), expected * 4)
    total = sum(from_compact(bits) for _, bits in window)
    return to_compact(max(min(total * span // (n * expected), limit), 1))


def median_time_past(timestamps: list) -> int:
    """Section 7.5: the median of the last 11 timestamps (all, if fewer)."""
    last = sorted(timestamps[-MEDIAN_TIME_SPAN:])
    return last[len(last) // 2]


# -------------------------------------------------------------- transactions


def signing_bytes(kind: str, chain_id: str, payload: bytes) -> bytes:
    """Section 3: "PHALANX/" ‖ KIND ‖ "/v1" ‖ len(chain_id) ‖ chain_id ‖ payload."""
    cid = chain_id_bytes(chain_id)
    return b"PHALANX/" + kind.encode() + b"/v1" + bytes([len(cid)]) + cid + payload


def tx_signing_bytes(tx: dict) -> bytes:
    """Section 4.2."""
    payload = (
        tx["from"] + tx["to"] + u64_le(tx["amount"]) + u64_le(tx["fee"]) + u64_le(tx["nonce"])
    )
    return signing_bytes("TX", tx["chain_id"], payload)


def tx_hash(tx: dict) -> bytes:
    """Section 4.4."""
    return b3(tx_signing_bytes(tx) + tx["signature"])


def tx_postcard(tx: dict) -> bytes:
    """Section 4.6."""
    cid = chain_id_bytes(tx["chain_id"])
    return (
        varint(len(cid))
        + cid
        + tx["from"]
        + tx["to"]
        + varint(tx["amount"])
        + varint(tx["fee"])
        + varint(tx["nonce"])
        + tx["signature"]
    )


def tx_json(tx: dict) -> str:
    """Section 4.5, in the reference field order without whitespace."""
    obj = {
        "chain_id": tx["chain_id"],
        "from": tx["from"].hex(),
        "to": tx["to"].hex(),
        "amount": tx["amount"],
        "fee": tx["fee"],
        "nonce": tx["nonce"],
        "signature": tx["signature"].hex(),
    }
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def tx_from_json(text: str) -> dict:
    """Parses the JSON form with the rules of section 4.5."""

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise Mismatch("duplicate JSON field")
        return dict(pairs)

    obj = json.loads(text, object_pairs_hook=no_duplicates)
    expected = {"chain_id", "from", "to", "amount", "fee", "nonce", "signature"}
    if set(obj) != expected:
        raise Mismatch(f"JSON fields {sorted(obj)} are not {sorted(expected)}")
    for key in ("amount", "fee", "nonce"):
        value = obj[key]
        if type(value) is not int or not 0 <= value <= U64_MAX:
            raise Mismatch(f"JSON {key} {value!r} is not an integer u64")
    return {
        "chain_id": obj["chain_id"],
        "from": address(obj["from"]),
        "to": address(obj["to"]),
        "amount": obj["amount"],
        "fee": obj["fee"],
        "nonce": obj["nonce"],
        "signature": fixed_hex(obj["signature"], 64),
    }


def openssl_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """OpenSSL's Ed25519 verification: agrees with section 2.1 on honest
    signatures only (it refuses some signatures ZIP 215 accepts)."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


# ------------------------------------------------------- ZIP 215 (section 2.1)
#
# Points of edwards25519 (-x^2 + y^2 = 1 + d x^2 y^2 over GF(p)) in extended
# coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, x*y = T/Z.

P = 2**255 - 19
ELL = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
NEUTRAL = (0, 1, 1, 0)


def point_add(p1: tuple, p2: tuple) -> tuple:
    """The unified addition law for a = -1 (add-2008-hwcd-3)."""
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * t1 * t2 * D % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_neg(p1: tuple) -> tuple:
    x, y, z, t = p1
    return (-x % P, y, z, -t % P)


def point_mul(n: int, p1: tuple) -> tuple:
    """[n]p1 for an integer n >= 0, by double-and-add."""
    q = NEUTRAL
    while n:
        if n & 1:
            q = point_add(q, p1)
        p1 = point_add(p1, p1)
        n >>= 1
    return q


def is_neutral(p1: tuple) -> bool:
    x, y, z, _ = p1
    return x % P == 0 and (y - z) % P == 0


def decode_point(encoding: bytes):
    """Rule 1: y from the low 255 bits taken mod p (so y + p means y), x
    from x^2 = (y^2 - 1) / (d y^2 + 1) with the sign bit choosing its parity
    unless x = 0 (negative zero is accepted). None if not a point."""
    n = int.from_bytes(encoding, "little")
    sign, y = n >> 255, (n & (2**255 - 1)) % P
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x2 = u * pow(v, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = -x % P
    return (x, y, 1, x * y % P)


BASE = decode_point((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))


def zip215_k(public_key: bytes, message: bytes, signature: bytes) -> int:
    """Rule 3: SHA-512(R_bytes || A_bytes || M) mod l, on the bytes as given."""
    return int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(),
                          "little") % ELL


def zip215_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Section 2.1, rules 1 to 4."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a, r = decode_point(public_key), decode_point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= ELL:
        return False
    k = zip215_k(public_key, message, signature)
    defect = point_add(point_add(point_mul(s, BASE), point_neg(r)), point_neg(point_mul(k, a)))
    return is_neutral(point_mul(8, defect))


# -------------------------------------------------------------------- merkle


def split_point(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def leaf_hash(leaf: bytes) -> bytes:
    return b3(b"\x00" + leaf)


def node_hash(left: bytes, right: bytes) -> bytes:
    return b3(b"\x01" + left + right)


def mth(leaves: list) -> bytes:
    """Section 6."""
    if not leaves:
        return b3(b"")
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = split_point(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def audit_path(m: int, leaves: list) -> list:
    """Section 6.1, RFC 9162 2.1.3.1."""
    if len(leaves) <= 1:
        return []
    k = split_point(len(leaves))
    if m < k:
        return audit_path(m, leaves[:k]) + [mth(leaves[k:])]
    return audit_path(m - k, leaves[k:]) + [mth(leaves[:k])]


def verify_inclusion(leaf: bytes, m: int, n: int, path: list, root: bytes) -> bool:
    """Section 6.1, RFC 9162 2.1.3.2."""
    if m >= n:
        return False
    fn, sn, r = m, n - 1, leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# --------------------------------------------------------------------- state


def account_leaf(addr: bytes, balance: int, nonce: int) -> bytes:
    """Section 9, step 1."""
    return b"PHALANX/ACCOUNT/v1" + addr + u64_le(balance) + u64_le(nonce)


def accumulator(accounts: dict) -> list:
    """Section 9, steps 2 and 3: lane-wise sum mod 2^16 of the elements."""
    lanes = [0] * 1024
    for addr, (balance, nonce) in accounts.items():
        if balance == 0 and nonce == 0:
            continue
        element = struct.unpack("<1024H", b3_xof(account_leaf(addr, balance, nonce), 2048))
        lanes = [(a + b) & 0xFFFF for a, b in zip(lanes, element)]
    return lanes


def lanes_bytes(lanes: list) -> bytes:
    return struct.pack("<1024H", *lanes)


def state_root(accounts: dict) -> bytes:
    """Section 9, step 4."""
    return b3(b"PHALANX/STATE/v1" + lanes_bytes(accumulator(accounts)))


# ------------------------------------------------------------ headers, blocks


def encode_header(h: dict) -> bytes:
    """Section 7.1."""
    out = (
        varint(h["height"])
        + h["parent"]
        + h["tx_root"]
        + h["state_root"]
        + varint(h["timestamp_ms"])
        + h["proposer"]
    )
    j = h["justification"]
    if j[0] == "genesis":
        out += varint(0)
    elif j[0] == "bft":
        # The block's own view, then the certificate over its parent.
        _, view, cert_view, block, signatures = j
        out += varint(1) + varint(view) + varint(cert_view) + block + varint(len(signatures))
        for validator, signature in signatures:
            if not 0 <= validator <= 0xFFFF:
                raise Mismatch("validator index is a u16")
            out += varint(validator) + signature
    elif j[0] == "pow":
        # Nonce last (section 7.1): miners vary only the trailing varint.
        _, bits, reward, nonce = j
        if not 0 <= bits <= U32_MAX:
            raise Mismatch("a compact target is a u32")
        out += varint(2) + varint(bits) + varint(reward) + varint(nonce)
    else:
        raise Mismatch(f"unknown justification {j[0]!r}")
    return out


def encode_genesis(g: dict) -> bytes:
    """Section 8.2 (accounts sorted by address; pow is a plain Option)."""
    cid = chain_id_bytes(g["chain_id"])
    out = varint(len(cid)) + cid + varint(CONSENSUS[g["consensus"]]) + varint(g["genesis_time_ms"])
    out += varint(len(g["validators"]))
    for public_key, net_address in g["validators"]:
        raw = net_address.encode("utf-8")
        out += public_key + varint(len(raw)) + raw
    out += option(g["pow"], lambda p: b"".join(varint(p[field]) for field in POW_FIELDS))
    accounts = sorted(g["accounts"])
    out += varint(len(accounts))
    for addr, balance in accounts:
        out += addr + varint(balance)
    return out


def genesis_hash(g: dict) -> bytes:
    return b3(b"PHALANX/GENESIS/v1" + encode_genesis(g))


def genesis_state(g: dict) -> dict:
    return {addr: (balance, 0) for addr, balance in g["accounts"] if balance != 0}


def block0_header(g: dict) -> dict:
    """Section 8.3."""
    return {
        "height": 0,
        "parent": genesis_hash(g),
        "tx_root": b3(b""),
        "state_root": state_root(genesis_state(g)),
        "timestamp_ms": g["genesis_time_ms"],
        "proposer": bytes(32),
        "justification": ("genesis",),
    }


def apply_reward(state: dict, g: dict, header: dict) -> None:
    """Section 7.5: after its transactions, a proof-of-work block credits its
    miner (the proposer) the reward it claims, at most block_reward."""
    j = header["justification"]
    if j[0] != "pow":
        return
    reward = j[2]
    if g["pow"] is None or reward > g["pow"]["block_reward"]:
        raise Mismatch(f"reward {reward} above the chain's block_reward")
    if reward == 0:
        return
    balance, nonce = state.get(header["proposer"], (0, 0))
    if balance + reward > U64_MAX:
        raise Mismatch("reward overflows the miner's balance")
    state[header["proposer"]] = (balance + reward, nonce)


def apply_tx(state: dict, chain_id: str, proposer: bytes, tx: dict) -> None:
    """Section 4.7. Raises Mismatch if the transaction does not apply."""
    if tx["chain_id"] != chain_id:
        raise Mismatch("transaction for another chain")
    if not zip215_verify(tx["from"], tx_signing_bytes(tx), tx["signature"]):
        raise Mismatch("bad signature")
    balance, nonce = state.get(tx["from"], (0, 0))
    if tx["nonce"] != nonce or nonce == U64_MAX:
        raise Mismatch("wrong nonce")
    cost = tx["amount"] + tx["fee"]
    if cost > U64_MAX or balance < cost:
        raise Mismatch("cost overflows or exceeds the balance")
    new = dict(state)
    new[tx["from"]] = (balance - cost, nonce + 1)
    for who, amount in ((tx["to"], tx["amount"]), (proposer, tx["fee"])):
        b, n = new.get(who, (0, 0))
        if b + amount > U64_MAX:
            raise Mismatch("balance overflow")
        new[who] = (b + amount, n)
    state.clear()
    state.update(new)


# -------------------------------------------------------------------- parsing


class Vector:
    def __init__(self, name: str, fields: dict):
        self.name, self.fields, self.used = name, fields, {"vector"}

    def __getitem__(self, key: str) -> str:
        self.used.add(key)
        if key not in self.fields:
            raise Mismatch(f"{self.name}: missing key {key!r}")
        return self.fields[key]

    def __contains__(self, key: str) -> bool:
        return key in self.fields

    def hex(self, key: str) -> bytes:
        value = self[key]
        if not re.fullmatch(r"(?:[0-9a-f]{2})*", value):
            raise Mismatch(f"{self.name}: {key} is not lowercase hex")
        return bytes.fromhex(value)

    def u64(self, key: str) -> int:
        return u64(self[key])

    def indices(self, prefix: str) -> list:
        found = set()
        for key in self.fields:
            if key.startswith(prefix + "."):
                found.add(int(key[len(prefix) + 1 :].split(".")[0]))
        if found != set(range(len(found))):
            raise Mismatch(f"{self.name}: {prefix}.N keys have gaps")
        return sorted(found)


def parse_doc(text: str):
    vectors, hexdumps, tomls = {}, [], []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = lines[i].rstrip()
        i += 1
        if fence not in ("```vector", "```hexdump", "```toml"):
            continue
        body = []
        while lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        if fence == "```vector":
            fields = {}
            for line in body:
                if not line.strip():
                    continue
                key, sep, value = line.partition(": ")
                if not sep or key in fields:
                    raise Mismatch(f"bad or repeated line in vector block: {line!r}")
                fields[key] = value.rstrip()
            name = fields.get("vector")
            if not body[0].startswith("vector: ") or name in vectors:
                raise Mismatch(f"bad vector block {name!r}")
            vectors[name] = Vector(name, fields)
        elif fence == "```hexdump":
            vector, key = body[0].removeprefix("of: ").split(" ")
            tokens = [line.split()[0] for line in body[1:]]
            hexdumps.append((vector, key, "".join(tokens)))
        elif body and body[0].startswith("# vector: "):
            tomls.append((body[0].removeprefix("# vector: ").strip(), "\n".join(body)))
    return vectors, hexdumps, tomls


# ------------------------------------------------------------------- checking


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = []
        self.checked = {}

    def eq(self, vector: Vector, key: str, computed) -> None:
        documented = vector[key]
        if isinstance(computed, (bytes, bytearray)):
            computed = computed.hex()
        computed = str(computed)
        self.record(vector.name, key, documented == computed,
                    f"document: {documented}\n    computed: {computed}")

    def check(self, name: str, what: str, ok: bool, detail: str = "") -> None:
        self.record(name, what, ok, detail)

    def record(self, name: str, what: str, ok: bool, detail: str) -> None:
        self.checked.setdefault(name, []).append(what)
        if ok:
            self.passed += 1
        else:
            self.failed.append(f"{name}: {what}\n    {detail}".rstrip())

    def guarded(self, name: str, what: str, fn) -> None:
        try:
            fn()
        except (Mismatch, KeyError, ValueError) as e:
            self.record(name, what, False, str(e))


def check_tx(c: Checker, v: Vector) -> dict:
    key = Ed25519PrivateKey.from_private_bytes(v.hex("seed"))
    public = key.public_key().public_bytes_raw()
    c.eq(v, "public_key", public)
    c.eq(v, "from", public)
    tx = {
        "chain_id": v["chain_id"],
        "from": public,
        "to": address(v["to"]),
        "amount": v.u64("amount"),
        "fee": v.u64("fee"),
        "nonce": v.u64("nonce"),
    }
    message = tx_signing_bytes(tx)
    c.eq(v, "signing_bytes", message)
    tx["signature"] = key.sign(message)
    c.eq(v, "signature", tx["signature"])
    c.check(v.name, "signature verifies (OpenSSL)",
            openssl_verify(public, message, tx["signature"]))
    c.check(v.name, "signature verifies (ZIP 215)",
            zip215_verify(public, message, tx["signature"]))
    tampered = tx["signature"][:32] + bytes([tx["signature"][32] ^ 1]) + tx["signature"][33:]
    c.check(v.name, "a tampered signature is refused (ZIP 215)",
            not zip215_verify(public, message, tampered))
    c.eq(v, "tx_hash", tx_hash(tx))
    c.eq(v, "postcard", tx_postcard(tx))
    c.eq(v, "json", tx_json(tx))
    c.check(v.name, "json parses back", tx_from_json(v["json"]) == tx)
    return tx


def check_sig(c: Checker, v: Vector) -> None:
    """Section 11.9: k and the verdict of the ZIP 215 rules."""
    public_key = fixed_hex(v["public_key"], 32)
    message = v.hex("message")
    signature = fixed_hex(v["signature"], 64)
    c.eq(v, "k", zip215_k(public_key, message, signature).to_bytes(32, "little"))
    c.eq(v, "verdict", "valid" if zip215_verify(public_key, message, signature) else "invalid")


def encode_point(p1: tuple) -> bytes:
    """The canonical encoding: y below p, the sign bit the low bit of x."""
    x, y, z, _ = p1
    inverse = pow(z, P - 2, P)
    x, y = x * inverse % P, y * inverse % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def check_zip215_arithmetic(c: Checker) -> None:
    """The verifier's own ground: B has order l, and exactly 14 encodings
    decode to the 8 points of small order (section 2.1): the 8 canonical
    ones, and 6 found among the sign-flipped canonical ones and y + p."""
    c.check("zip215", "the base point has order l",
            not is_neutral(BASE) and is_neutral(point_mul(ELL, BASE)))
    # [l]Q is the small-order component of Q: find one of order 8.
    for y in range(2, 100):
        q = decode_point(y.to_bytes(32, "little"))
        if q is not None and not is_neutral(point_mul(4 * ELL, q)):
            t8 = point_mul(ELL, q)
            break
    else:
        raise Mismatch("no point with a component of order 8 among y < 100")
    canonical = {encode_point(point_mul(i, t8)) for i in range(8)}
    candidates = {bytes(e[:31]) + bytes([e[31] ^ 0x80]) for e in canonical}
    candidates |= {(P + y | sign << 255).to_bytes(32, "little")
                   for y in range(19) for sign in (0, 1)}
    small = canonical | {e for e in candidates
                         if (pt := decode_point(e)) is not None
                         and is_neutral(point_mul(8, pt))}
    c.check("zip215", "8 points of small order", len(canonical) == 8)
    c.check("zip215", "14 encodings of small-order points", len(small) == 14,
            f"found {len(small)}")


def check_domains(c: Checker, v: Vector) -> None:
    for name, kind in KINDS.items():
        c.eq(v, name, f"PHALANX/{kind}/v1")


def check_domain_layout(c: Checker, v: Vector) -> None:
    if v["kind"] not in KINDS.values():
        raise Mismatch(f"unknown kind {v['kind']!r}")
    c.eq(v, "signing_bytes", signing_bytes(v["kind"], v["chain_id"], v.hex("payload")))


def check_merkle(c: Checker, v: Vector) -> list:
    leaves = [fixed_hex(v[f"leaf.{i}"], 32) for i in v.indices("leaf")]
    root = mth(leaves)
    c.eq(v, "root", root)
    for m in range(len(leaves)):
        path = [fixed_hex(h, 32) for h in v[f"proof.{m}"].split(" ")]
        c.check(v.name, f"proof.{m} is the audit path", path == audit_path(m, leaves))
        c.check(v.name, f"proof.{m} verifies",
                verify_inclusion(leaves[m], m, len(leaves), path, root))
        if len(leaves) > 1:
            other = (m + 1) % len(leaves)
            c.check(v.name, f"proof.{m} fails for leaf {other}",
                    not verify_inclusion(leaves[other], m, len(leaves), path, root))
    c.check(v.name, "one proof per leaf", len(v.indices("proof")) == len(leaves))
    return leaves


def check_state(c: Checker, v: Vector) -> dict:
    accounts = {}
    for i in v.indices("account"):
        addr = address(v[f"account.{i}.address"])
        balance, nonce = v.u64(f"account.{i}.balance"), v.u64(f"account.{i}.nonce")
        leaf = account_leaf(addr, balance, nonce)
        c.eq(v, f"account.{i}.leaf", leaf)
        c.eq(v, f"account.{i}.element_prefix", b3_xof(leaf, 2048)[:32])
        accounts[addr] = (balance, nonce)
    if accounts:
        c.eq(v, "accumulator_prefix", lanes_bytes(accumulator(accounts))[:32])
    c.eq(v, "state_root", state_root(accounts))
    return {a: s for a, s in accounts.items() if s != (0, 0)}


def pow_params_valid(p: dict) -> bool:
    """Section 8.1: the checks of the [pow] table."""
    try:
        initial, limit = from_compact(p["initial_target"]), from_compact(p["target_limit"])
    except Refused:
        return False
    return (
        initial <= limit
        and p["block_interval_ms"] > 0
        and 1 <= p["retarget_window"] <= MAX_RETARGET_WINDOW
        and 1 <= p["confirmations"] <= MAX_CONFIRMATIONS
    )


def check_genesis(c: Checker, v: Vector) -> dict:
    if v["consensus"] not in CONSENSUS:
        raise Mismatch(f"unknown consensus {v['consensus']!r}")
    pow_keys = [k for k in v.fields if k.startswith("pow.")]
    g = {
        "chain_id": v["chain_id"],
        "consensus": v["consensus"],
        "genesis_time_ms": v.u64("genesis_time_ms"),
        "validators": [
            (fixed_hex(v[f"validator.{i}.public_key"], 32), v[f"validator.{i}.address"])
            for i in v.indices("validator")
        ],
        "pow": {
            field: compact(v[f"pow.{field}"]) if field in POW_TARGETS
            else u32(v[f"pow.{field}"]) if field == "retarget_window"
            else v.u64(f"pow.{field}")
            for field in POW_FIELDS
        } if pow_keys else None,
        "accounts": [
            (address(v[f"account.{i}.address"]), v.u64(f"account.{i}.balance"))
            for i in v.indices("account")
        ],
    }
    c.check(v.name, "pow present iff consensus is pow",
            (g["pow"] is not None) == (g["consensus"] == "pow"))
    if g["pow"] is not None:
        c.check(v.name, "pow parameters follow section 8.1", pow_params_valid(g["pow"]))
    c.eq(v, "encoded", encode_genesis(g))
    c.eq(v, "genesis_hash", genesis_hash(g))
    header = block0_header(g)
    c.eq(v, "block0.state_root", header["state_root"])
    c.eq(v, "block0.encoded_header", encode_header(header))
    c.eq(v, "block0.hash", b3(encode_header(header)))
    return g


def check_block(c: Checker, v: Vector, genesis: dict, txs: dict, states: dict) -> None:
    g = genesis[v["genesis"]]
    names = [] if v["transactions"] == "none" else v["transactions"].split(" ")
    transactions = [txs[n] for n in names]
    kind = v["justification"]
    if kind == "genesis":
        justification = ("genesis",)
    elif kind == "bft":
        signatures = [
            (int(v[f"bft.parent_cert.signature.{i}.validator"]),
             fixed_hex(v[f"bft.parent_cert.signature.{i}.signature"], 64))
            for i in v.indices("bft.parent_cert.signature")
        ]
        justification = ("bft", v.u64("bft.view"), v.u64("bft.parent_cert.view"),
                         fixed_hex(v["bft.parent_cert.block"], 32), signatures)
    elif kind == "pow":
        justification = ("pow", compact(v["pow.target"]), v.u64("pow.reward"), v.u64("pow.nonce"))
    else:
        raise Mismatch(f"unknown justification {kind!r}")
    header = {
        "height": v.u64("height"),
        "parent": fixed_hex(v["parent"], 32),
        "tx_root": fixed_hex(v["tx_root"], 32),
        "state_root": fixed_hex(v["state_root"], 32),
        "timestamp_ms": v.u64("timestamp_ms"),
        "proposer": address(v["proposer"]),
        "justification": justification,
    }
    encoded = encode_header(header)
    c.eq(v, "encoded_header", encoded)
    c.eq(v, "block_hash", b3(encoded))
    block = encoded + varint(len(transactions)) + b"".join(tx_postcard(t) for t in transactions)
    c.eq(v, "encoded_block", block)
    parent = block0_header(g)
    if kind == "pow":
        check_pow(c, v, g, header, parent)
    # Section 7.4 against block 0 of its genesis, and section 4.7.
    c.check(v.name, "parent is block 0's hash", header["parent"] == b3(encode_header(parent)))
    c.check(v.name, "height is 1", header["height"] == parent["height"] + 1)
    c.check(v.name, "timestamp not before parent's",
            header["timestamp_ms"] >= parent["timestamp_ms"])
    c.check(v.name, "tx_root is the merkle root of the transactions",
            header["tx_root"] == mth([tx_hash(t) for t in transactions]))
    state = genesis_state(g)
    for t in transactions:
        apply_tx(state, g["chain_id"], header["proposer"], t)
    apply_reward(state, g, header)
    state = {a: s for a, s in state.items() if s != (0, 0)}
    c.check(v.name, "state_root is the root after execution",
            header["state_root"] == state_root(state))
    if "state_after" in v:
        c.check(v.name, f"the state after execution is {v['state_after']}",
                state == states[v["state_after"]])


def check_pow(c: Checker, v: Vector, g: dict, header: dict, parent: dict) -> None:
    """Section 7.5 for a proof-of-work block on top of block 0."""
    _, bits, reward, _ = header["justification"]
    p = g["pow"]
    if p is None:
        raise Mismatch("a proof-of-work block on a chain without [pow]")
    digest = sha256d(encode_header(header))
    c.eq(v, "pow_hash", digest)
    target = from_compact(bits)
    c.eq(v, "pow_target", target.to_bytes(32, "big"))
    c.check(v.name, "pow_hash (big endian) is at most the target",
            int.from_bytes(digest, "big") <= target)
    window = [(parent["timestamp_ms"], p["initial_target"])]
    c.check(v.name, "the target is the one the retarget gives",
            bits == retarget(window, p["block_interval_ms"], p["retarget_window"],
                             from_compact(p["target_limit"])))
    c.check(v.name, "timestamp after the median of its ancestors'",
            header["timestamp_ms"] > median_time_past([parent["timestamp_ms"]]))
    c.check(v.name, "reward at most block_reward", reward <= p["block_reward"])


def check_targets(c: Checker, v: Vector) -> None:
    """Each key a compact form, each value its target or why it is refused."""
    for key in v.fields:
        if key == "vector":
            continue
        try:
            shown = from_compact(compact(key)).to_bytes(32, "big").hex()
        except Refused as why:
            shown = f"refused: {why}"
        c.eq(v, key, shown)
    c.eq(v, "1d00ffff", "00000000ffff" + "00" * 26)


def check_retarget(c: Checker, v: Vector) -> None:
    """A chain from block 0, each later target the retarget's."""
    interval, size = v.u64("block_interval_ms"), u32(v["retarget_window"])
    limit = from_compact(compact(v["target_limit"]))
    chain = []
    for i in v.indices("block"):
        timestamp = v.u64(f"block.{i}.timestamp_ms")
        if chain:
            bits = retarget(chain, interval, size, limit)
            c.eq(v, f"block.{i}.target", f"{bits:08x}")
        else:
            bits = compact(v[f"block.{i}.target"])
            from_compact(bits)
        chain.append((timestamp, bits))
    c.check(v.name, "the chain outgrows the window", len(chain) > size)
    c.eq(v, "next_target", f"{retarget(chain, interval, size, limit):08x}")


def check_limits(c: Checker, v: Vector) -> None:
    max_tx = 1 + 32 + 64 + 3 * 10 + 64
    max_header = 10 + 32 * 4 + 10 + 10 + 16 + 256 * (3 + 64) + 64
    for key, value in {
        "CHAIN_ID_MAX_LEN": 32,
        "MAX_TX_BYTES": max_tx,
        "MAX_BLOCK_TXS": 10000,
        "MAX_VALIDATORS": 256,
        "MAX_HEADER_BYTES": max_header,
        "MAX_BLOCK_BYTES": max_header + 5 + 10000 * max_tx,
        "ACCUMULATOR_BYTES": 2048,
    }.items():
        c.eq(v, key, value)


def check_toml(c: Checker, name: str, text: str, g: dict) -> None:
    t = tomllib.loads(text)
    parsed = {
        "chain_id": t["chain_id"],
        "consensus": t["consensus"],
        "genesis_time_ms": t.get("genesis_time_ms", 0),
        "validators": [(bytes.fromhex(x["public_key"]), x["address"])
                       for x in t.get("validators", [])],
        "pow": {
            field: compact(t["pow"][field]) if field in POW_TARGETS else t["pow"][field]
            for field in POW_FIELDS
        } if "pow" in t else None,
        "accounts": [(bytes.fromhex(a["address"]), a["balance"]) for a in t.get("accounts", [])],
    }
    c.check(name, "TOML genesis file has the same fields", parsed == g)
    if "pow" in t:
        c.check(name, "[pow] has exactly the section 8.1 fields", sorted(t["pow"]) == sorted(POW_FIELDS))


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else (
        Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md")
    vectors, hexdumps, tomls = parse_doc(path.read_text(encoding="utf-8"))
    c = Checker()
    txs, genesis, states = {}, {}, {}
    for name in REQUIRED:
        c.check(name, "vector present", name in vectors)
    check_zip215_arithmetic(c)

    def run(v: Vector, fn) -> None:
        c.guarded(v.name, "checks ran", fn)

    order = sorted(vectors.values(), key=lambda v: (
        0 if v.name.startswith(("tx-", "genesis-", "state-")) else
        2 if v.name.startswith("block-") else 1, v.name))
    for v in order:
        prefix = v.name.split("-")[0]
        if prefix == "tx":
            run(v, lambda v=v: txs.__setitem__(v.name, check_tx(c, v)))
        elif prefix == "genesis":
            run(v, lambda v=v: genesis.__setitem__(v.name, check_genesis(c, v)))
        elif prefix == "state":
            run(v, lambda v=v: states.__setitem__(v.name, check_state(c, v)))
        elif prefix == "merkle":
            def merkle(v=v):
                leaves = check_merkle(c, v)
                if v.name == "merkle-1":
                    c.check(v.name, "leaves are the hashes of tx-1, tx-2, tx-3",
                            leaves == [tx_hash(txs[n]) for n in ("tx-1", "tx-2", "tx-3")])
                if v.name == "merkle-2":
                    c.check(v.name, "leaves are BLAKE3(i as u64 LE)",
                            leaves == [b3(u64_le(i)) for i in range(7)])
            run(v, merkle)
        elif prefix == "domains":
            run(v, lambda v=v: check_domains(c, v))
        elif prefix == "domain":
            run(v, lambda v=v: check_domain_layout(c, v))
        elif prefix == "block":
            run(v, lambda v=v: check_block(c, v, genesis, txs, states))
        elif prefix == "limits":
            run(v, lambda v=v: check_limits(c, v))
        elif prefix == "targets":
            run(v, lambda v=v: check_targets(c, v))
        elif prefix == "retarget":
            run(v, lambda v=v: check_retarget(c, v))
        elif prefix == "sig":
            run(v, lambda v=v: check_sig(c, v))
        else:
            c.check(v.name, "has a checker", False, "unknown vector kind")

    for vector, key, hexstr in hexdumps:
        ok = vector in vectors and vectors[vector].fields.get(key) == hexstr
        c.check("hexdump", f"{vector} {key} adds up", ok)
    for name in genesis:
        count = sum(1 for n, _ in tomls if n == name)
        c.check(name, "one TOML genesis file", count == 1, f"found {count}")
    for name, text in tomls:
        if tomllib is None:
            print(f"skip  {name}: TOML block (needs Python 3.11+ for tomllib)")
        elif name in genesis:
            c.guarded(name, "TOML genesis file", lambda n=name, t=text: check_toml(c, n, t, genesis[n]))
        else:
            c.check(name, "TOML block names a genesis vector", False)
    for v in vectors.values():
        unused = sorted(set(v.fields) - v.used)
        c.check(v.name, "every key checked", not unused, f"unchecked keys: {unused}")

    for name, what in c.checked.items():
        print(f"{name}: {', '.join(what)}")
    print()
    if c.failed:
        for failure in c.failed:
            print(f"MISMATCH {failure}")
        print(f"\n{len(c.failed)} of {c.passed + len(c.failed)} checks FAILED")
        return 1
    print(f"all {c.passed} checks passed ({len(vectors)} vectors, {len(hexdumps)} hex dumps, "
          f"{len(tomls)} genesis files) in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
