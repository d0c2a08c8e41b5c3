"""Tune families: melodies that share much of their material stay in one split.

Two harmonisations of one chorale tune differ by a passing note or a cadence; hashing the whole
line puts them in different splits and lets the test split measure memory, not generalisation.
Here a window's *pattern* is its tokens with every pitch taken relative to the window's first
pitch (so it is the same in every transposition), two melodies are linked when more than
``LINK_SHARE`` of the smaller one's patterns occur in the other, and the linked groups (tune
families) are dealt to the splits as wholes.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

from glsr_live.tokens import HOLD

LINK_SHARE = 0.3  # the measurement: about 240 Bach families, 9-13 % residual overlap
COMMON_PATTERN = 50  # a pattern in more melodies than this is a stock figure, not kinship
_WEIGHTS = np.random.default_rng(20171001).integers(1, 2**62, size=512, dtype=np.uint64) | 1


def window_patterns(tokens: np.ndarray) -> np.ndarray:
    """(N, L) canonical tokens -> (N,) uint64 transposition-invariant pattern codes.

    Pitches become offsets from the row's first pitch (+ 256, so they never meet REST/HOLD);
    the code is a fixed random linear hash of the row (wrapping uint64 arithmetic).
    """
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    is_pitch = tokens > HOLD
    first = np.take_along_axis(tokens, is_pitch.argmax(axis=1)[:, None], axis=1)  # (N, 1)
    relative = np.where(is_pitch, tokens - first + 256, tokens)  # REST 0, HOLD 1 stay
    weights = _WEIGHTS[: tokens.shape[1]]
    with np.errstate(over="ignore"):
        return (relative.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


class UnionFind:
    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def shared_pattern_counts(pattern_sets: list[np.ndarray]) -> dict[tuple[int, int], int]:
    """(i, j) with i < j -> how many distinct patterns melodies i and j share.

    An inverted index from pattern to melodies; stock figures (in more than COMMON_PATTERN
    melodies) are left out, so the cost stays near linear for large folk collections.
    """
    owners: dict[int, list[int]] = defaultdict(list)
    for index, patterns in enumerate(pattern_sets):
        for pattern in patterns.tolist():
            owners[pattern].append(index)
    shared: dict[tuple[int, int], int] = defaultdict(int)
    for melodies in owners.values():
        if len(melodies) < 2 or len(melodies) > COMMON_PATTERN:
            continue
        for position, a in enumerate(melodies):
            for b in melodies[position + 1:]:
                shared[a, b] += 1
    return shared


def tune_families(pattern_sets: list[np.ndarray], link_share: float = LINK_SHARE) -> list[int]:
    """(melodies,) family id of each melody (the smallest index in its family)."""
    groups = UnionFind(len(pattern_sets))
    for (a, b), count in shared_pattern_counts(pattern_sets).items():
        smaller = min(len(pattern_sets[a]), len(pattern_sets[b]))
        if smaller and count / smaller > link_share:
            groups.union(a, b)
    roots = [groups.find(i) for i in range(len(pattern_sets))]
    first_member: dict[int, int] = {}
    for index, root in enumerate(roots):
        first_member.setdefault(root, index)
    return [first_member[root] for root in roots]


def family_order_key(names: list[str]) -> str:
    """A stable pseudo-random rank for a family, from its members' names."""
    return hashlib.sha1("\n".join(sorted(names)).encode()).hexdigest()


def assign_families(families: list[int], names: list[str], weights: list[int],
                    split: tuple[float, float]) -> list[str]:
    """Deal whole families to train/val/test in a stable shuffled order until each split holds
    its cumulative share of ``weights`` (windows), so the fractions hold by data, not by tunes."""
    members: dict[int, list[int]] = defaultdict(list)
    for index, family in enumerate(families):
        members[family].append(index)
    order = sorted(members, key=lambda f: family_order_key([names[i] for i in members[f]]))
    total = max(1, sum(weights))
    assigned = [""] * len(families)
    done = 0
    for family in order:
        size = sum(weights[i] for i in members[family])
        centre = (done + size / 2) / total  # a family goes where its middle falls
        label = "train" if centre < split[0] else "val" if centre < split[1] else "test"
        for index in members[family]:
            assigned[index] = label
        done += size
    return assigned


def overlap_share(windows: np.ndarray, reference: np.ndarray) -> float:
    """Share of ``windows`` (N, L) whose pattern also occurs among ``reference`` patterns."""
    if len(windows) == 0:
        return 0.0
    return float(np.isin(window_patterns(windows), reference).mean())
