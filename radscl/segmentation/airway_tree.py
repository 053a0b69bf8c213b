"""Airway tree analysis: centreline, branch graph, generations, calibre, tapering.

:func:`analyse_tree` turns a binary airway lumen into a tree of branches:

1. **Centreline.** The lumen is thinned to a one-voxel skeleton
   (:func:`skimage.morphology.skeletonize`, Lee's method in 3D). Skeleton
   voxels are joined to their 26 neighbours with edges as long as the
   physical distance between them, and the minimum spanning tree of that
   graph is kept (:mod:`scipy.sparse.csgraph`). This removes the diagonal
   short-cuts that a digital curve makes with its face neighbours, and any
   loop where two branches touch, so every voxel is plainly an end point
   (one neighbour), a point along a branch (two) or a branching point (three
   or more).
2. **Branches.** Runs of two-neighbour voxels between branching or end
   points are branches. Short side-branches that end within about a lumen
   radius of their parent (bumps of the lumen surface, not airways) are
   pruned, and branching points joined by a branch shorter than the local
   radius are merged, so that one bifurcation is not counted as two.
3. **Generations.** The tree is rooted at the end point nearest the top of
   the trachea seed. A breadth-first walk gives every branching point its
   depth; a branch's generation is the depth of its proximal end, so the
   trachea is generation 0, the main bronchi generation 1, and so on.
4. **Calibre.** The lumen radius at each centreline voxel is its Euclidean
   distance (with the scan's anisotropic spacing) to the nearest voxel
   outside the lumen, less half an in-plane voxel, since the lumen edge lies
   between the last voxel inside and the first one outside. A branch's
   diameter is twice the median radius along its middle part (the ends,
   within a radius of a branching point, are widened by the junction).
5. **Tapering.** The slope of the diameter against the distance along the
   branch, fitted by least squares on the same middle part, in mm of
   diameter per cm of branch (negative when the branch narrows).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

logger = logging.getLogger(__name__)

#: Branch table columns of :attr:`AirwayTree.branches`.
BRANCH_COLUMNS = (
    "branch",
    "parent",
    "generation",
    "length_mm",
    "lumen_diameter_mm",
    "taper_mm_per_cm",
    "terminal",
    "proximal_z",
    "proximal_y",
    "proximal_x",
    "distal_z",
    "distal_y",
    "distal_x",
)


@dataclasses.dataclass
class AirwayTree:
    """The branches of a segmented airway tree.

    Attributes
    ----------
    centreline : numpy.ndarray
        ``(n, 3)`` voxel indices ``[z, y, x]`` of the centreline on the scan grid.
    centreline_branch : numpy.ndarray
        Branch number of every centreline voxel (-1 for branching points).
    centreline_radius_mm : numpy.ndarray
        Lumen radius at every centreline voxel.
    branches : pandas.DataFrame
        One row per branch with :data:`BRANCH_COLUMNS`: its number, its parent
        (-1 for the trachea), generation, centreline length, lumen diameter,
        tapering (NaN for branches too short to fit a slope), whether it is
        terminal, and the voxel indices of its proximal and distal ends.
    spacing_mm : tuple of float
        ``(z, y, x)``.
    """

    centreline: np.ndarray
    centreline_branch: np.ndarray
    centreline_radius_mm: np.ndarray
    branches: pd.DataFrame
    spacing_mm: tuple[float, float, float]

    @property
    def branch_count(self) -> int:
        """Number of branches below the trachea (generation 1 and beyond)."""
        return int(np.count_nonzero(self.branches["generation"] >= 1))

    @property
    def max_generation(self) -> int:
        """Highest generation reached (0 when only the trachea was traced)."""
        if self.branches.empty:
            return 0
        return int(self.branches["generation"].max())

    def branch_count_by_generation(self) -> dict[int, int]:
        """Number of branches in each generation."""
        counts = self.branches["generation"].value_counts().sort_index()
        return {int(g): int(n) for g, n in counts.items()}

    def lumen_diameter_by_generation_mm(self) -> dict[int, float]:
        """Mean lumen diameter of the branches of each generation."""
        means = self.branches.groupby("generation")["lumen_diameter_mm"].mean()
        return {int(g): float(d) for g, d in means.items()}


def analyse_tree(
    lumen: np.ndarray,
    spacing_mm: tuple[float, float, float],
    seed: np.ndarray,
    *,
    offset: tuple[int, int, int] = (0, 0, 0),
    edge_fractions: tuple[np.ndarray, np.ndarray] | None = None,
) -> AirwayTree | None:
    """Trace the centreline of an airway lumen and measure its branches.

    Parameters
    ----------
    lumen : numpy.ndarray
        ``bool [z, y, x]`` airway lumen.
    spacing_mm : tuple of float
        ``(z, y, x)`` voxel spacing.
    seed : numpy.ndarray
        ``bool``, same shape: the trachea seed; the tree is rooted at the
        centreline end point nearest its top.
    offset : tuple of int
        Index of ``lumen[0, 0, 0]`` on the scan grid, added to the voxel
        indices in the result.
    edge_fractions : tuple of numpy.ndarray, optional
        ``(n, 3)`` indices of voxels on either side of the lumen edge and the
        fraction of lumen each holds; without them every lumen voxel counts
        whole in the calibre.

    Returns
    -------
    AirwayTree or None
        None when the lumen has no centreline (empty or a few voxels).
    """
    from skimage.morphology import skeletonize

    spacing = np.asarray(spacing_mm, float)
    found = ndimage.find_objects(lumen.astype(np.uint8))
    if not found or found[0] is None:
        return None
    box = tuple(
        slice(max(s.start - 1, 0), min(s.stop + 1, n))
        for s, n in zip(found[0], lumen.shape, strict=True)
    )
    corner = np.array([s.start for s in box])
    inside = lumen[box]

    skeleton = skeletonize(inside)
    coords = np.argwhere(skeleton)
    if coords.shape[0] < 3:
        return None
    seed_points = np.argwhere(seed[box] & inside)
    if seed_points.shape[0] == 0:
        seed_points = np.argwhere(seed[box])
    if seed_points.shape[0] == 0:
        return None
    top = seed_points[:, 0].max()
    seed_top = seed_points[seed_points[:, 0] == top].mean(axis=0)

    inscribed = _inscribed_radius(inside, coords, spacing)
    coords, inscribed = _prune(coords, inscribed, spacing, seed_top)
    if coords.shape[0] < 3:
        return None
    weight = inside.astype(np.float32)
    if edge_fractions is not None:
        points, fractions = edge_fractions
        points = points - corner
        within = np.all((points >= 0) & (points < np.array(weight.shape)), axis=1)
        weight[tuple(points[within].T)] = fractions[within]
    tree = _branch_table(coords, inscribed, spacing, seed_top, weight)
    if tree is None:
        return None
    voxel_branch, radius, table = tree

    for column in (
        "proximal_z",
        "proximal_y",
        "proximal_x",
        "distal_z",
        "distal_y",
        "distal_x",
    ):
        axis = "zyx".index(column[-1])
        table[column] = table[column] + corner[axis] + offset[axis]
    return AirwayTree(
        centreline=coords + corner + np.asarray(offset),
        centreline_branch=voxel_branch,
        centreline_radius_mm=radius,
        branches=table,
        spacing_mm=tuple(float(s) for s in spacing),
    )


def _inscribed_radius(
    inside: np.ndarray, coords: np.ndarray, spacing: np.ndarray
) -> np.ndarray:
    """Distance from each centreline voxel to the nearest voxel outside the lumen."""
    outside = ndimage.binary_dilation(inside) & ~inside
    outer = np.argwhere(outside) * spacing
    if outer.shape[0] == 0:
        return np.full(coords.shape[0], float(spacing.max()))
    distance, _ = cKDTree(outer).query(coords * spacing)
    return distance


# --------------------------------------------------------------------------
# Voxel graph


_HALF_NEIGHBOURHOOD = np.array(
    [
        (dz, dy, dx)
        for dz in (-1, 0, 1)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if (dz, dy, dx) > (0, 0, 0)
    ]
)


def _spanning_tree(coords: np.ndarray, spacing: np.ndarray) -> sparse.csr_matrix:
    """Symmetric minimum spanning forest of the 26-neighbour voxel graph."""
    n = coords.shape[0]
    dims = coords.max(axis=0) + 3
    flat = np.ravel_multi_index((coords + 1).T, dims)
    order = np.argsort(flat)
    ordered = flat[order]

    rows, cols, weights = [], [], []
    for step in _HALF_NEIGHBOURHOOD:
        neighbour = np.ravel_multi_index((coords + 1 + step).T, dims)
        position = np.minimum(np.searchsorted(ordered, neighbour), n - 1)
        hit = ordered[position] == neighbour
        rows.append(np.flatnonzero(hit))
        cols.append(order[position[hit]])
        weights.append(np.full(int(hit.sum()), float(np.linalg.norm(step * spacing))))
    graph = sparse.coo_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, n),
    ).tocsr()
    forest = csgraph.minimum_spanning_tree(graph)
    return (forest + forest.T).tocsr()


@dataclasses.dataclass
class _Decomposition:
    """Skeleton split into node clusters (branching/end points) and chains."""

    graph: sparse.csr_matrix
    node_of: np.ndarray  # node cluster of each voxel, -1 for chain voxels
    chain_of: np.ndarray  # chain of each voxel, -1 for node voxels
    n_nodes: int
    n_chains: int
    chain_nodes: list[tuple[int, ...]]  # node clusters touching each chain
    node_degree: np.ndarray  # chains touching each node cluster


def _decompose(coords: np.ndarray, spacing: np.ndarray) -> _Decomposition:
    graph = _spanning_tree(coords, spacing)
    degree = np.diff(graph.indptr)
    is_node = degree != 2

    node_graph = _restrict(graph, is_node)
    _, node_labels = csgraph.connected_components(node_graph, directed=False)
    node_of = _compact(np.where(is_node, node_labels, -1))
    n_nodes = int(node_of.max()) + 1 if is_node.any() else 0

    chain_graph = _restrict(graph, ~is_node)
    _, chain_labels = csgraph.connected_components(chain_graph, directed=False)
    chain_of = _compact(np.where(is_node, -1, chain_labels))
    n_chains = int(chain_of.max()) + 1 if (~is_node).any() else 0

    # Chains touch node clusters through graph edges from chain to node voxels.
    coo = graph.tocoo()
    crossing = (chain_of[coo.row] >= 0) & (node_of[coo.col] >= 0)
    pairs = np.unique(
        np.stack([chain_of[coo.row[crossing]], node_of[coo.col[crossing]]], axis=1),
        axis=0,
    )
    chain_nodes: list[tuple[int, ...]] = [() for _ in range(n_chains)]
    for chain, node in pairs:
        chain_nodes[chain] = (*chain_nodes[chain], int(node))
    node_degree = (
        np.bincount(pairs[:, 1], minlength=n_nodes)
        if pairs.size
        else np.zeros(n_nodes, int)
    )

    # Node clusters adjacent to one another without a chain between them do not
    # occur: adjacent node voxels belong to one cluster.
    return _Decomposition(
        graph, node_of, chain_of, n_nodes, n_chains, chain_nodes, node_degree
    )


def _restrict(graph: sparse.csr_matrix, keep: np.ndarray) -> sparse.csr_matrix:
    """The graph with only the edges between kept voxels."""
    diagonal = sparse.diags(keep.astype(float))
    return (diagonal @ graph @ diagonal).tocsr()


def _compact(labels: np.ndarray) -> np.ndarray:
    """Renumber non-negative labels 0..k-1 in order of first appearance."""
    result = np.full(labels.shape, -1)
    valid = labels >= 0
    if valid.any():
        _, inverse = np.unique(labels[valid], return_inverse=True)
        result[valid] = inverse
    return result


# --------------------------------------------------------------------------
# Pruning


def _prune(
    coords: np.ndarray, radius: np.ndarray, spacing: np.ndarray, seed_top: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the skeleton component of the root and remove short side-branches.

    A terminal branch shorter than the lumen radius at its branching point
    plus two voxels is a bump of the lumen surface: its centreline runs from
    the parent's axis to the surface and barely beyond.
    """
    step = float(spacing.max())
    for _ in range(4):
        decomposition = _decompose(coords, spacing)
        _, component = csgraph.connected_components(decomposition.graph, directed=False)
        root_voxel = _root(coords, decomposition.graph, seed_top, spacing)
        keep = component == component[root_voxel]

        remove = np.zeros(coords.shape[0], bool)
        chain_size = np.bincount(
            decomposition.chain_of[decomposition.chain_of >= 0],
            minlength=decomposition.n_chains,
        )
        for chain, nodes in enumerate(decomposition.chain_nodes):
            if len(nodes) != 2:
                continue
            ends = [n for n in nodes if decomposition.node_degree[n] == 1]
            junctions = [n for n in nodes if decomposition.node_degree[n] >= 3]
            if len(ends) != 1 or len(junctions) != 1:
                continue
            end_voxels = decomposition.node_of == ends[0]
            if end_voxels[root_voxel]:
                continue
            junction_radius = float(radius[decomposition.node_of == junctions[0]].max())
            length = (chain_size[chain] + 1) * _mean_step(spacing)
            if length < junction_radius + 2.0 * step:
                remove |= (decomposition.chain_of == chain) | end_voxels
        # Lone end points hanging directly off a branching point.
        lone = (decomposition.node_of >= 0) & (np.diff(decomposition.graph.indptr) == 1)
        lone &= np.isin(
            decomposition.node_of, np.flatnonzero(decomposition.node_degree == 0)
        )
        lone[root_voxel] = False
        remove |= lone

        keep &= ~remove
        if keep.all():
            break
        coords, radius = coords[keep], radius[keep]
    return coords, radius


def _mean_step(spacing: np.ndarray) -> float:
    return float(np.mean(spacing))


def _root(
    coords: np.ndarray, graph: sparse.csr_matrix, point: np.ndarray, spacing: np.ndarray
) -> int:
    """The centreline end point nearest ``point`` (any voxel if there is none)."""
    candidates = np.flatnonzero(np.diff(graph.indptr) == 1)
    if candidates.size == 0:
        candidates = np.arange(coords.shape[0])
    squared = (((coords[candidates] - point) * spacing) ** 2).sum(axis=1)
    return int(candidates[np.argmin(squared)])


# --------------------------------------------------------------------------
# Branches


def _branch_table(
    coords: np.ndarray,
    inscribed: np.ndarray,
    spacing: np.ndarray,
    seed_top: np.ndarray,
    weight: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame] | None:
    d = _decompose(coords, spacing)
    if d.n_chains == 0:
        return None
    root_voxel = _root(coords, d.graph, seed_top, spacing)
    distance_from_root = csgraph.dijkstra(d.graph, indices=root_voxel)

    # Chains between two branching points shorter than the local radius join
    # their ends into one branching point.
    chain_size = np.bincount(d.chain_of[d.chain_of >= 0], minlength=d.n_chains)
    parent_node = np.arange(d.n_nodes)

    def find(node: int) -> int:
        while parent_node[node] != node:
            parent_node[node] = parent_node[parent_node[node]]
            node = parent_node[node]
        return node

    merged = np.zeros(d.n_chains, bool)
    for chain, nodes in enumerate(d.chain_nodes):
        if len(nodes) == 2 and all(d.node_degree[n] >= 3 for n in nodes):
            length = (chain_size[chain] + 1) * _mean_step(spacing)
            local_radius = float(np.median(inscribed[d.chain_of == chain]))
            if length < local_radius:
                a, b = find(nodes[0]), find(nodes[1])
                parent_node[b] = a
                merged[chain] = True
    node_root = np.array([find(n) for n in range(d.n_nodes)])

    # Branch graph over merged nodes; breadth-first depth from the root.
    chains = [
        c for c in range(d.n_chains) if not merged[c] and len(d.chain_nodes[c]) == 2
    ]
    if not chains or d.node_of[root_voxel] < 0:
        return None
    ends = np.array(
        [
            [node_root[d.chain_nodes[c][0]], node_root[d.chain_nodes[c][1]]]
            for c in chains
        ]
    )
    adjacency = sparse.coo_matrix(
        (np.ones(len(chains)), (ends[:, 0], ends[:, 1])), shape=(d.n_nodes, d.n_nodes)
    )
    adjacency = (adjacency + adjacency.T).tocsr()
    root_node = node_root[d.node_of[root_voxel]]
    order, predecessors = csgraph.breadth_first_order(
        adjacency, root_node, directed=False
    )
    depth = np.full(d.n_nodes, -1)
    depth[root_node] = 0
    for node in order[1:]:
        depth[node] = depth[predecessors[node]] + 1

    # Lumen voxels (weighted by their lumen fraction at the edge) belong to
    # their nearest centreline voxel; the lumen area there is their volume
    # over the centreline length each centreline voxel stands for.
    voxel_mm3 = float(np.prod(spacing))
    points = np.argwhere(weight > 0)
    _, nearest = cKDTree(coords * spacing).query(points * spacing)
    volume_mm3 = (
        np.bincount(nearest, weights=weight[tuple(points.T)], minlength=coords.shape[0])
        * voxel_mm3
    )
    step_mm = np.asarray(d.graph.sum(axis=1)).ravel() / 2.0
    step_mm = np.maximum(step_mm, float(spacing.min()) / 2.0)
    radius = inscribed.copy()

    rows = []
    voxel_branch = np.full(coords.shape[0], -1)
    for branch, (chain, (a, b)) in enumerate(zip(chains, ends, strict=True)):
        if depth[a] < 0 or depth[b] < 0:
            continue
        proximal, distal = (a, b) if depth[a] <= depth[b] else (b, a)
        members = np.flatnonzero(d.chain_of == chain)
        along = distance_from_root[members]
        sort = np.argsort(along)
        members, along = members[sort], along[sort]
        voxel_branch[members] = branch
        radius[members] = _radius_profile(volume_mm3[members], step_mm[members])
        rows.append(
            _measure_branch(
                branch,
                members,
                along,
                int(depth[proximal]),
                inscribed,
                radius,
                volume_mm3,
                step_mm,
                coords,
                spacing,
            )
        )
        rows[-1]["_proximal_node"] = int(proximal)
        rows[-1]["_distal_node"] = int(distal)
    if not rows:
        return None

    table = pd.DataFrame(rows)
    by_distal = dict(zip(table["_distal_node"], table["branch"], strict=True))
    table["parent"] = [by_distal.get(node, -1) for node in table["_proximal_node"]]
    children = table["parent"].value_counts()
    table["terminal"] = ~table["branch"].isin(children.index)
    table = table.drop(columns=["_proximal_node", "_distal_node"])
    table = table.sort_values(["generation", "branch"]).reset_index(drop=True)
    return voxel_branch, radius, table[list(BRANCH_COLUMNS)]


def _radius_profile(
    volume_mm3: np.ndarray, step_mm: np.ndarray, half_window: int = 2
) -> np.ndarray:
    """Lumen radius along a branch from the volume around a sliding window."""
    size = 2 * half_window + 1
    volume = ndimage.uniform_filter1d(volume_mm3.astype(float), size, mode="nearest")
    length = ndimage.uniform_filter1d(step_mm.astype(float), size, mode="nearest")
    return np.sqrt(volume / np.maximum(length, 1e-6) / np.pi)


def _measure_branch(
    branch: int,
    members: np.ndarray,
    along: np.ndarray,
    generation: int,
    inscribed: np.ndarray,
    radius: np.ndarray,
    volume_mm3: np.ndarray,
    step_mm: np.ndarray,
    coords: np.ndarray,
    spacing: np.ndarray,
) -> dict:
    """Length, calibre and tapering of one branch.

    The ends of a branch, within an inscribed radius of a branching point,
    are left out of its calibre: the lumen widens where branches meet.
    """
    r = inscribed[members]
    from_start = along - along[0]
    to_end = along[-1] - along
    middle = (from_start >= r) & (to_end >= r)
    if not middle.any():
        middle = np.ones(members.size, bool)
    area_mm2 = volume_mm3[members[middle]].sum() / step_mm[members[middle]].sum()
    diameter = 2.0 * float(np.sqrt(area_mm2 / np.pi))

    taper = np.nan
    profile = radius[members]
    if middle.sum() >= 5 and np.ptp(along[middle]) >= 2.0 * float(spacing.max()):
        slope = np.polyfit(along[middle], 2.0 * profile[middle], 1)[0]
        taper = float(slope * 10.0)
    proximal, distal = coords[members[0]], coords[members[-1]]
    return {
        "branch": branch,
        "parent": -1,
        "generation": generation,
        "length_mm": float(along[-1] - along[0]) + _mean_step(spacing),
        "lumen_diameter_mm": diameter,
        "taper_mm_per_cm": taper,
        "terminal": False,
        "proximal_z": int(proximal[0]),
        "proximal_y": int(proximal[1]),
        "proximal_x": int(proximal[2]),
        "distal_z": int(distal[0]),
        "distal_y": int(distal[1]),
        "distal_x": int(distal[2]),
    }
