"""RFC 6962 Merkle trees: known answers, agreement with the RFC's recursive definitions, and
rejection of every corrupted proof."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence

import pytest

from app.audit import merkle
from app.audit.merkle import (
    EMPTY_ROOT,
    MerkleAccumulator,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

# The Certificate Transparency reference vectors (certificate-transparency merkle_tree_test,
# as carried on by transparency-dev/merkle proof/verify_test.go).
CT_DATA = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
CT_LEAVES = [leaf_hash(d) for d in CT_DATA]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (0-based leaf index, tree size, audit path)
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (old size, new size, consistency proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

MAX_SIZE = 70
LEAVES = [leaf_hash(random.Random(7).randbytes(8) + bytes([i])) for i in range(MAX_SIZE + 1)]
TREE = MerkleTree(LEAVES)
ROOTS = [root(LEAVES[:n]) for n in range(MAX_SIZE + 2)]
SOME_HASH = hashlib.sha256(b"some other hash").digest()


# The RFC 6962 §2.1 definitions, transcribed recursively, as an independent reference.
def ref_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = 1 << ((len(d) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1 << ((len(d) - 1).bit_length() - 1)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def test_hashing_primitives_carry_the_rfc_prefixes() -> None:
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )


def test_roots_match_the_certificate_transparency_vectors() -> None:
    tree = MerkleTree()
    acc = MerkleAccumulator()
    assert tree.root().hex() == acc.root().hex() == CT_ROOTS[0]
    for n in range(1, len(CT_LEAVES) + 1):
        tree.append(CT_LEAVES[n - 1])
        acc.append(CT_LEAVES[n - 1])
        assert root(CT_LEAVES[:n]).hex() == CT_ROOTS[n], n
        assert tree.root().hex() == acc.root().hex() == CT_ROOTS[n], n
    built = MerkleTree(CT_LEAVES)
    assert [built.root(n).hex() for n in range(9)] == CT_ROOTS


@pytest.mark.parametrize(("index", "size", "expected"), CT_INCLUSION)
def test_inclusion_proofs_match_the_vectors(index: int, size: int, expected: list[str]) -> None:
    proof = inclusion_proof(CT_LEAVES, index, size)
    assert [p.hex() for p in proof] == expected
    assert MerkleTree(CT_LEAVES).inclusion_proof(index, size) == proof
    vector_root = bytes.fromhex(CT_ROOTS[size])
    assert verify_inclusion(CT_LEAVES[index], index, size, proof, vector_root)


@pytest.mark.parametrize(("old", "new", "expected"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_vectors(old: int, new: int, expected: list[str]) -> None:
    proof = consistency_proof(CT_LEAVES, old, new)
    assert [p.hex() for p in proof] == expected
    assert MerkleTree(CT_LEAVES).consistency_proof(old, new) == proof
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, proof)


def test_everything_agrees_with_the_recursive_definitions_for_every_small_size() -> None:
    acc = MerkleAccumulator()
    appended = MerkleTree()
    for n in range(1, MAX_SIZE + 1):
        d = LEAVES[:n]
        acc.append(LEAVES[n - 1])
        appended.append(LEAVES[n - 1])
        assert root(d) == ref_mth(d) == acc.root() == appended.root() == TREE.root(n), n
        for i in range(n):
            expected = ref_path(i, d)
            assert inclusion_proof(LEAVES, i, n) == expected, (i, n)
            assert TREE.inclusion_proof(i, n) == expected, (i, n)
        for m in range(1, n + 1):
            expected = ref_subproof(m, d, True)
            assert consistency_proof(LEAVES, m, n) == expected, (m, n)
            assert TREE.consistency_proof(m, n) == expected, (m, n)
    assert appended.levels == MerkleTree(LEAVES[:MAX_SIZE]).levels


def test_the_accumulator_resumes_from_its_saved_state() -> None:
    acc = MerkleAccumulator()
    acc.extend(LEAVES[:45])
    size, roots = acc.state()
    assert (size, len(roots)) == (45, 4)  # 45 = 32 + 8 + 4 + 1
    resumed = MerkleAccumulator.restore(size, roots)
    resumed.extend(LEAVES[45:60])
    assert resumed.size == 60 and resumed.root() == ROOTS[60]
    with pytest.raises(ValueError, match="subtree roots"):
        MerkleAccumulator.restore(45, roots[:3])
    with pytest.raises(ValueError, match="32-byte"):
        MerkleAccumulator.restore(1, [b"short"])
    with pytest.raises(ValueError, match="leaf_hash"):
        acc.append(b"not a hash")


def test_asking_for_a_proof_the_tree_cannot_give_is_an_error() -> None:
    for bad_index, bad_size in [(5, 5), (-1, 5), (0, 0), (0, MAX_SIZE + 2)]:
        with pytest.raises(ValueError):
            inclusion_proof(LEAVES, bad_index, bad_size)
        with pytest.raises(ValueError):
            TREE.inclusion_proof(bad_index, bad_size)
    for old, new in [(5, 4), (-1, 3), (3, MAX_SIZE + 2)]:
        with pytest.raises(ValueError):
            consistency_proof(LEAVES, old, new)
        with pytest.raises(ValueError):
            TREE.consistency_proof(old, new)
    with pytest.raises(ValueError):
        TREE.root(MAX_SIZE + 2)
    with pytest.raises(ValueError, match="leaf_hash"):
        MerkleTree([b"raw data, not a hash"])
    assert consistency_proof(LEAVES, 0, 9) == [] == TREE.consistency_proof(0, 9)
    assert consistency_proof(LEAVES, 9, 9) == []


def flip(data: bytes, byte: int, bit: int) -> bytes:
    changed = bytearray(data)
    changed[byte] ^= 1 << bit
    return bytes(changed)


def bit_flipped(proof: list[bytes], rng: random.Random, every_byte: bool) -> Iterator[list[bytes]]:
    """The proof with one bit flipped: in every byte of every element, or one per element."""
    for i, element in enumerate(proof):
        positions = range(len(element)) if every_byte else [rng.randrange(len(element))]
        for byte in positions:
            yield [*proof[:i], flip(element, byte, rng.randrange(8)), *proof[i + 1 :]]


def structurally_altered(proof: list[bytes], extra: bytes) -> Iterator[list[bytes]]:
    """The proof with an element dropped, or one added, anywhere."""
    for i in range(len(proof)):
        yield proof[:i] + proof[i + 1 :]
    for i in range(len(proof) + 1):
        yield [*proof[:i], extra, *proof[i:]]
        if proof:
            yield [*proof[:i], proof[min(i, len(proof) - 1)], *proof[i:]]
    yield [*proof, b""]
    yield [b"", *proof]


def test_every_corrupted_inclusion_proof_is_rejected() -> None:
    rng = random.Random(6962)
    checked = 0
    for n in range(1, MAX_SIZE + 1):
        r = ROOTS[n]
        wrong_args: list[tuple[bytes, int, int, list[bytes], bytes]]
        for i in range(n):
            leaf = LEAVES[i]
            proof = TREE.inclusion_proof(i, n)
            assert verify_inclusion(leaf, i, n, proof, r), (i, n)

            wrong_args = [
                (leaf, i - 1, n, proof, r),
                (leaf, i + 1, n, proof, r),
                (leaf, i, n - 1, proof, ROOTS[n - 1]),
                (leaf, i, n + 1, proof, ROOTS[n + 1]),
                (leaf, i, n, proof, ROOTS[n - 1]),
                (leaf, i, n, proof, SOME_HASH),
                (leaf, i, n, proof, EMPTY_ROOT),
                (LEAVES[i ^ 1], i, n, proof, r),
                (SOME_HASH, i, n, proof, r),
            ]
            if n > 1:  # in a tree of one, the leaf hash is the root
                wrong_args.append((r, i, n, proof, leaf))
            for args in wrong_args:
                assert not verify_inclusion(*args), (i, n, args[1:3])
            for bad in structurally_altered(proof, SOME_HASH):
                assert not verify_inclusion(leaf, i, n, bad, r), (i, n, len(bad))
            for bad in bit_flipped(proof, rng, every_byte=n <= 8):
                assert not verify_inclusion(leaf, i, n, bad, r), (i, n)
                checked += 1
    assert checked > 15_000


def test_every_corrupted_consistency_proof_is_rejected() -> None:
    rng = random.Random(9162)
    checked = 0
    for n in range(2, MAX_SIZE + 1):
        for m in range(1, n):
            old, new = ROOTS[m], ROOTS[n]
            proof = TREE.consistency_proof(m, n)
            assert verify_consistency(m, n, old, new, proof), (m, n)

            wrong_args = [
                (m - 1, n, old, new, proof),
                (m + 1, n, old, new, proof),
                (m - 1, n, ROOTS[m - 1], new, proof),
                (m + 1, n, ROOTS[m + 1], new, proof),
                (m, n - 1, old, ROOTS[n - 1], proof),
                (m, n + 1, old, ROOTS[n + 1], proof),
                (n, m, new, old, proof),  # sizes and roots swapped
                (n, m, old, new, proof),  # sizes swapped
                (m, n, new, old, proof),  # roots swapped
                (m, n, SOME_HASH, new, proof),
                (m, n, old, SOME_HASH, proof),
                (m, n, old, old, proof),
                (m, n, new, new, proof),
                (m, n, old, new, []),
                (m, n, ROOTS[m - 1], ROOTS[n - 1], proof),
            ]
            for args in wrong_args:
                assert not verify_consistency(*args), (m, n, args[:2])
            for bad in structurally_altered(proof, SOME_HASH):
                assert not verify_consistency(m, n, old, new, bad), (m, n, len(bad))
            for bad in structurally_altered(proof, old):
                assert not verify_consistency(m, n, old, new, bad), (m, n, len(bad))
            for bad in bit_flipped(proof, rng, every_byte=n <= 8):
                assert not verify_consistency(m, n, old, new, bad), (m, n)
                checked += 1
    assert checked > 10_000


def test_a_proof_binds_no_size_which_is_why_heads_are_signed() -> None:
    # The audit path of leaf 0 in a tree of 3, [l1, l2], is also the shape of a path in a tree
    # of 4 whose last two leaves hash to l2. The verifier checks the path against the root it
    # is given; only a signed head says which size goes with that root.
    proof = TREE.inclusion_proof(0, 3)
    assert verify_inclusion(LEAVES[0], 0, 4, proof, ROOTS[3])
    assert not verify_inclusion(LEAVES[0], 0, 4, proof, ROOTS[4])
    # Whenever a proof verifies at a size it was not made for, the paths have the same shape.
    for n in range(2, MAX_SIZE + 1):
        for i in range(n):
            proof = TREE.inclusion_proof(i, n)
            for other in (n - 1, n + 1):
                if i < other and verify_inclusion(LEAVES[i], i, other, proof, ROOTS[n]):
                    assert len(ref_path(i, LEAVES[:other])) == len(proof), (i, n, other)


def test_edge_sizes_follow_the_documented_rules() -> None:
    l0 = LEAVES[0]
    # A tree of one leaf: the root is the leaf hash and the path is empty.
    assert verify_inclusion(l0, 0, 1, [], l0)
    assert not verify_inclusion(l0, 0, 1, [l0], l0)
    assert not verify_inclusion(l0, 0, 0, [], l0)
    assert not verify_inclusion(l0, 1, 1, [], l0)
    # Equal sizes: empty proof, equal roots; size 0 only with the empty root.
    assert verify_consistency(5, 5, ROOTS[5], ROOTS[5], [])
    assert not verify_consistency(5, 5, ROOTS[5], ROOTS[4], [])
    assert not verify_consistency(5, 5, ROOTS[5], ROOTS[5], [ROOTS[5]])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 0, SOME_HASH, SOME_HASH, [])
    # From the empty tree: only the empty proof, only from the empty root.
    assert verify_consistency(0, 7, EMPTY_ROOT, ROOTS[7], [])
    assert not verify_consistency(0, 7, EMPTY_ROOT, ROOTS[7], [EMPTY_ROOT])
    assert not verify_consistency(0, 7, ROOTS[3], ROOTS[7], [])
    assert not verify_consistency(7, 0, ROOTS[7], EMPTY_ROOT, [])


def test_malformed_input_is_rejected_without_raising() -> None:
    proof = TREE.inclusion_proof(3, 9)
    leaf, r = LEAVES[3], ROOTS[9]
    garbage: list[object] = [None, 3, "x" * 32, b"", b"x" * 31, b"x" * 33, bytearray(32), [b"x"]]
    for thing in garbage:
        assert not verify_inclusion(thing, 3, 9, proof, r)  # type: ignore[arg-type]
        assert not verify_inclusion(leaf, 3, 9, proof, thing)  # type: ignore[arg-type]
        assert not verify_inclusion(leaf, 3, 9, [*proof[:-1], thing], r)  # type: ignore[list-item]
        assert not verify_consistency(4, 9, thing, r, proof)  # type: ignore[arg-type]
    for bad_proof in [None, 5, b"".join(proof), "abc", iter([1, 2])]:
        assert not verify_inclusion(leaf, 3, 9, bad_proof, r)  # type: ignore[arg-type]
        assert not verify_consistency(4, 9, ROOTS[4], r, bad_proof)  # type: ignore[arg-type]
    for index, size in [(-1, 9), (3, -9), (True, 9), (3.0, 9), ("3", 9), (3, 2**70), (2**70, 9)]:
        assert not verify_inclusion(leaf, index, size, proof, r)  # type: ignore[arg-type]
        assert not verify_consistency(index, size, ROOTS[4], r, proof)  # type: ignore[arg-type]
    assert merkle.verify_inclusion(leaf, 3, 9, tuple(proof), r)  # any sequence will do
