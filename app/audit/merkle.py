"""RFC 6962 (Certificate Transparency) Merkle tree hashing, proofs and their verification.

Every function here works on leaf *hashes*, never on leaf data: hash the data once with
`leaf_hash` and keep the 32-byte result. The tree over n leaf hashes is RFC 6962's:

    MTH({})      = SHA-256()
    MTH({d0})    = leaf hash of d0
    MTH(D[n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   k = largest power of 2 < n

Making proofs needs the roots of many subtrees. `inclusion_proof` and `consistency_proof` take
a plain list and recompute what they need (O(n) a call); `MerkleTree` keeps every level of the
perfect, aligned subtrees, so a proof for any tree size up to the one built costs O(log² n)
hashes at most. `MerkleAccumulator` keeps only the O(log n) roots a growing log needs to know
its current root.

The `verify_*` functions follow RFC 9162 §2.1.3.2 and §2.1.4.2 literally, and answer False —
never raise — for anything malformed: wrong types, hashes that are not 32 bytes, impossible
sizes or indexes, proofs of the wrong length.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of one leaf.

    >>> leaf_hash(b"").hex()[:16]
    '6e340b9cffb37a98'
    """
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """The root of the tree over `leaves` (leaf hashes), level by level.

    Pairing neighbours from the left and carrying an odd last node up unchanged builds exactly
    RFC 6962's tree, with n - 1 node hashes and no recursion.

    >>> root([]) == EMPTY_ROOT
    True
    >>> root([leaf_hash(b"a")]) == leaf_hash(b"a")
    True
    """
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    sha256 = _sha256
    prefix = _NODE_PREFIX
    while len(level) > 1:
        pairs = len(level) - 1
        upper = [sha256(prefix + level[i] + level[i + 1]).digest() for i in range(0, pairs, 2)]
        if len(level) % 2:
            upper.append(level[-1])
        level = upper
    return level[0]


def _largest_power_of_two_below(n: int) -> int:
    """k of RFC 6962 §2.1: the largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


# A function giving MTH(D[start:end]) for the subtrees the proof walks need.
_Subtree = Callable[[int, int], bytes]


def _inclusion_path(index: int, size: int, subtree: _Subtree) -> list[bytes]:
    """PATH(index, D[size]) of RFC 6962 §2.1.1, walked from the top instead of recursed."""
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index < start + k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start += k
    path.reverse()  # RFC 6962 lists the sibling nearest the leaf first
    return path


def _consistency_path(old_size: int, new_size: int, subtree: _Subtree) -> list[bytes]:
    """PROOF(old_size, D[new_size]) of RFC 6962 §2.1.2, walked from the top."""
    path: list[bytes] = []
    start, end = 0, new_size
    m = old_size  # the old tree's size, relative to start
    whole_old_tree = True  # the b flag of SUBPROOF
    while m != end - start:
        k = _largest_power_of_two_below(end - start)
        if m <= k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start += k
            m -= k
            whole_old_tree = False
    if not whole_old_tree:
        path.append(subtree(start, end))
    path.reverse()
    return path


def _check_proof_request(index: int, size: int, available: int) -> None:
    if not 0 <= index < size <= available:
        raise ValueError(
            f"no inclusion proof for leaf {index} in a tree of {size}: "
            f"the index must be below the size, and the size at most {available}"
        )


def _check_consistency_request(old_size: int, new_size: int, available: int) -> None:
    if not 0 <= old_size <= new_size <= available:
        raise ValueError(
            f"no consistency proof from size {old_size} to {new_size}: "
            f"need 0 <= old size <= new size <= {available}"
        )


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """The audit path of leaf `index` in the tree over `leaves[:size]` (RFC 6962 §2.1.1).

    Recomputes the subtree roots it needs, O(size) hashes; build a `MerkleTree` to answer
    many proofs over a large log.

    >>> leaves = [leaf_hash(bytes([i])) for i in range(5)]
    >>> proof = inclusion_proof(leaves, 2, 5)
    >>> verify_inclusion(leaves[2], 2, 5, proof, root(leaves))
    True
    """
    _check_proof_request(index, size, len(leaves))
    return _inclusion_path(index, size, lambda start, end: root(leaves[start:end]))


def consistency_proof(leaves: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """The proof that the tree of `old_size` is a prefix of the tree of `new_size` (§2.1.2).

    Empty when the sizes are equal, and when `old_size` is 0: every tree extends the empty
    tree, and there is nothing to prove.

    >>> leaves = [leaf_hash(bytes([i])) for i in range(7)]
    >>> proof = consistency_proof(leaves, 3, 7)
    >>> verify_consistency(3, 7, root(leaves[:3]), root(leaves), proof)
    True
    """
    _check_consistency_request(old_size, new_size, len(leaves))
    if old_size == 0:
        return []
    return _consistency_path(old_size, new_size, lambda start, end: root(leaves[start:end]))


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _hashes(proof: object) -> list[bytes] | None:
    """The proof as a list when every element is a 32-byte hash, else None."""
    if isinstance(proof, bytes | str) or not isinstance(proof, Iterable):
        return None
    try:
        path = list(proof)
    except Exception:  # a broken iterable is a malformed proof, not our crash
        return None
    return path if all(_is_hash(p) for p in path) else None


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """True when `proof` shows leaf hash `leaf` at `index` in the tree of `size` with `root_hash`.

    RFC 9162 §2.1.3.2. A proof means something only against a (size, root) pair the log
    signed: the verifier checks the path, not that such a tree exists.

    >>> a, b = leaf_hash(b"a"), leaf_hash(b"b")
    >>> verify_inclusion(b, 1, 2, [a], node_hash(a, b))
    True
    >>> verify_inclusion(b, 0, 2, [a], node_hash(a, b))
    False
    """
    path = _hashes(proof)
    if path is None or not (_is_hash(leaf) and _is_hash(root_hash)):
        return False
    if not (_is_count(index) and _is_count(size)) or index >= size:
        return False
    fn, sn = index, size - 1
    r = leaf
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
    return sn == 0 and r == root_hash


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True when `proof` shows the tree (old_size, old_root) is a prefix of (new_size, new_root).

    RFC 9162 §2.1.4.2, plus the two cases it leaves to the caller:

    - equal sizes: the proof must be empty and the roots equal (and, for size 0, be
      `EMPTY_ROOT`);
    - old size 0: the proof must be empty and `old_root` must be `EMPTY_ROOT`; any new tree
      extends the empty one, so `new_root` cannot be checked here.

    >>> leaves = [leaf_hash(bytes([i])) for i in range(4)]
    >>> r2, r4 = root(leaves[:2]), root(leaves)
    >>> verify_consistency(2, 4, r2, r4, consistency_proof(leaves, 2, 4))
    True
    >>> verify_consistency(2, 4, r4, r2, consistency_proof(leaves, 2, 4))
    False
    """
    path = _hashes(proof)
    if path is None or not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    if not (_is_count(old_size) and _is_count(new_size)) or old_size > new_size:
        return False
    if old_size == new_size:
        return not path and old_root == new_root and (old_size > 0 or old_root == EMPTY_ROOT)
    if old_size == 0:
        return not path and old_root == EMPTY_ROOT
    if not path:
        return False
    if old_size & (old_size - 1) == 0:  # the old tree is a perfect subtree: its root is implied
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def _fold(perfect_roots: Sequence[bytes]) -> bytes:
    """The root of consecutive perfect subtrees of decreasing size, folded from the right."""
    result = perfect_roots[-1]
    for left in reversed(perfect_roots[:-1]):
        result = node_hash(left, result)
    return result


class MerkleAccumulator:
    """The root of an append-only log, kept in O(log n) memory.

    It holds one root per set bit of the size: the perfect subtrees the log splits into,
    largest first (the "compact range" [0, size)). `state()` and `restore()` persist it, so a
    service can carry on after a restart without rereading the log.

    >>> acc = MerkleAccumulator()
    >>> for i in range(5):
    ...     acc.append(leaf_hash(bytes([i])))
    >>> acc.size, acc.root() == root([leaf_hash(bytes([i])) for i in range(5)])
    (5, True)
    """

    def __init__(self) -> None:
        self._size = 0
        self._roots: list[bytes] = []

    @classmethod
    def restore(cls, size: int, roots: Sequence[bytes]) -> MerkleAccumulator:
        """An accumulator continuing from `state()`: one root per set bit of `size`."""
        if not _is_count(size) or len(roots) != size.bit_count():
            raise ValueError(
                f"a log of {size} leaves has {max(size, 0).bit_count()} subtree roots, "
                f"not {len(roots)}: pass what state() returned"
            )
        if not all(_is_hash(r) for r in roots):
            raise ValueError(f"subtree roots must be {HASH_SIZE}-byte hashes")
        acc = cls()
        acc._size = size
        acc._roots = list(roots)
        return acc

    @property
    def size(self) -> int:
        return self._size

    def state(self) -> tuple[int, list[bytes]]:
        """(size, subtree roots largest first): what `restore` takes."""
        return self._size, list(self._roots)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash. Amortised O(1) node hashes, O(log n) at worst."""
        if not _is_hash(leaf):
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes; hash the data with leaf_hash()")
        node = leaf
        size = self._size
        while size & 1:  # each trailing 1 bit is a subtree of the new one's size to merge with
            node = node_hash(self._roots.pop(), node)
            size >>= 1
        self._roots.append(node)
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        return _fold(self._roots) if self._roots else EMPTY_ROOT


class MerkleTree:
    """A tree over leaf hashes that keeps every level, for roots and proofs at any size.

    `levels[h][i]` is the root of the perfect subtree over leaves [i·2^h, (i+1)·2^h); only
    complete subtrees are stored. The root of any aligned range splits into at most log n of
    them, so `root(size)` costs O(log n) hashes and a proof O(log² n), for every size up to the
    one built. Memory: about two hashes per leaf.

    >>> leaves = [leaf_hash(bytes([i])) for i in range(6)]
    >>> tree = MerkleTree(leaves)
    >>> tree.root(4) == root(leaves[:4])
    True
    >>> tree.inclusion_proof(1, 5) == inclusion_proof(leaves, 1, 5)
    True
    """

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        base = self.levels[0]
        for leaf in leaves:
            if not _is_hash(leaf):
                raise ValueError(
                    f"a leaf hash is {HASH_SIZE} bytes; hash the data with leaf_hash()"
                )
            base.append(leaf)
        sha256 = _sha256
        prefix = _NODE_PREFIX
        level = base
        while len(level) > 1:
            level = [
                sha256(prefix + level[i] + level[i + 1]).digest()
                for i in range(0, len(level) - 1, 2)
            ]
            self.levels.append(level)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash, completing the subtrees it closes."""
        if not _is_hash(leaf):
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes; hash the data with leaf_hash()")
        self.levels[0].append(leaf)
        height = 0
        while len(self.levels[height]) % 2 == 0:
            below = self.levels[height]
            if height + 1 == len(self.levels):
                self.levels.append([])
            self.levels[height + 1].append(node_hash(below[-2], below[-1]))
            height += 1

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range that starts on a multiple of its largest part."""
        parts: list[bytes] = []
        position = start
        remaining = end - start
        while remaining:
            height = remaining.bit_length() - 1
            parts.append(self.levels[height][position >> height])
            position += 1 << height
            remaining -= 1 << height
        return _fold(parts)

    def root(self, size: int | None = None) -> bytes:
        """The root of the tree over the first `size` leaves (all of them by default)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"no tree of size {size}: {self.size} leaves were added")
        return self._subtree(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        _check_proof_request(index, size, self.size)
        return _inclusion_path(index, size, self._subtree)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        new_size = self.size if new_size is None else new_size
        _check_consistency_request(old_size, new_size, self.size)
        if old_size == 0:
            return []
        return _consistency_path(old_size, new_size, self._subtree)
