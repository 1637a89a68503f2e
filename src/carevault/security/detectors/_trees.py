"""A fast single-row path for fitted scikit-learn tree ensembles.

scikit-learn scores a batch of rows quickly (Cython, tree by tree) but a single row costs 1.5-3 ms
through its validation and per-tree dispatch, far over the request-path budget. Here every tree
of a fitted forest is packed into flat numpy arrays (node ids global across trees) and one row
walks all trees at once, one level per step: ``max_depth`` vectorised steps instead of
``n_trees * depth`` Python ones. Leaves point to themselves, so extra steps are no-ops.

The result equals scikit-learn's own (the tests check it): rows are compared in float32, as the
Cython trees do, and features are mapped through each tree's feature subset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

_LEAF = -1  # scikit-learn's TREE_LEAF


@dataclass(frozen=True)
class PackedForest:
    roots: NDArray[np.intp]  # (n_trees,) node id of each tree's root
    feature: NDArray[np.intp]  # (n_nodes,) feature index into the full row (0 at leaves)
    threshold: NDArray[np.float64]  # (n_nodes,) go left when x[feature] <= threshold
    left: NDArray[np.intp]  # (n_nodes,) left child (the node itself at leaves)
    right: NDArray[np.intp]  # (n_nodes,) right child (the node itself at leaves)
    value: NDArray[np.float64]  # (n_nodes,) what a leaf contributes (0 at inner nodes)
    depth: int  # the deepest leaf: this many steps reach every leaf

    def leaf_values(self, row: NDArray[np.float64]) -> NDArray[np.float64]:
        """The value of the leaf ``row`` reaches in every tree, shape (n_trees,)."""
        x = row.astype(np.float32).astype(np.float64)
        node = self.roots
        feature, threshold, left, right = self.feature, self.threshold, self.left, self.right
        for _ in range(self.depth):
            node = np.where(x[feature[node]] <= threshold[node], left[node], right[node])
        result: NDArray[np.float64] = self.value[node]
        return result


def pack_trees(
    trees: Sequence[Any],
    leaf_values: Sequence[NDArray[np.float64]],
    features: Sequence[NDArray[np.intp]] | None = None,
) -> PackedForest:
    """Pack fitted ``sklearn.tree`` estimators; ``leaf_values[i]`` gives tree i's per-node value
    (only leaves are read); ``features[i]`` maps tree i's feature ids to row columns."""
    roots, feats, thresholds, lefts, rights, values = [], [], [], [], [], []
    offset = 0
    depth = 0
    for i, estimator in enumerate(trees):
        tree = estimator.tree_
        n = int(tree.node_count)
        ids = np.arange(n, dtype=np.intp)
        is_leaf = tree.children_left == _LEAF
        local_feature = np.where(is_leaf, 0, tree.feature).astype(np.intp)
        if features is not None:
            local_feature = np.asarray(features[i], dtype=np.intp)[local_feature]
        roots.append(offset)
        feats.append(local_feature)
        thresholds.append(np.where(is_leaf, np.inf, tree.threshold).astype(np.float64))
        lefts.append(np.where(is_leaf, ids, tree.children_left).astype(np.intp) + offset)
        rights.append(np.where(is_leaf, ids, tree.children_right).astype(np.intp) + offset)
        values.append(np.where(is_leaf, np.asarray(leaf_values[i], dtype=np.float64), 0.0))
        depth = max(depth, int(tree.max_depth))
        offset += n
    return PackedForest(
        roots=np.asarray(roots, dtype=np.intp),
        feature=np.concatenate(feats),
        threshold=np.concatenate(thresholds),
        left=np.concatenate(lefts),
        right=np.concatenate(rights),
        value=np.concatenate(values),
        depth=depth,
    )
