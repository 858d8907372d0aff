"""Exact k-nearest-neighbour distances, block by block, on any torch device.

The search runs over blocks of query rows against blocks of reference rows, so memory is
``query_block x reference_block`` distances whatever the number of rows. Candidates are ranked
by the squared distance ``|q|^2 + |r|^2 - 2 q.r`` in float32 (one matrix product per pair of
blocks, the cost floor of a brute-force search); the ``2k`` best candidates are then measured
again exactly, in float64 from their difference vectors, and the ``k`` nearest returned, so the
distances carry no cancellation error and a near-tie at the ``k``-th neighbour is decided in
float64. Only when more than ``k`` extra rows lie within float32 rounding of the ``k``-th can
the result differ from an exact float64 search, by that rounding.
"""

from __future__ import annotations

import torch

__all__ = ["REFERENCE_BLOCK", "knn_distances"]

#: Reference rows per block: with a query block of ``B`` rows the search holds ``B x 8192``
#: float32 distances (32 MB at ``B = 1024``) besides the ``B x k`` kept.
REFERENCE_BLOCK = 8192


def knn_distances(
    queries: torch.Tensor,
    reference: torch.Tensor,
    k: int,
    *,
    query_block: int = 1024,
    reference_block: int = REFERENCE_BLOCK,
    exclude_self: torch.Tensor | None = None,
) -> torch.Tensor:
    """Euclidean distances from each query row to its ``k`` nearest reference rows, ascending.

    Parameters
    ----------
    queries : Tensor of shape (n_queries, n_features), float64
    reference : Tensor of shape (n_reference, n_features), float64, on the same device
    k : int
        Neighbours per query, at most ``n_reference`` (``n_reference - 1`` with ``exclude_self``).
    query_block, reference_block : int
        Rows per block of each side.
    exclude_self : Tensor of int64, shape (n_queries,), or None
        For each query, the index of a reference row it may not take as a neighbour (itself,
        for leave-one-out distances of the reference rows); -1 for none.

    Returns
    -------
    Tensor of shape (n_queries, k), float64
    """
    n_ref = reference.shape[0]
    if not 1 <= k <= n_ref - (exclude_self is not None):
        raise ValueError(f"k={k} neighbours asked of {n_ref} reference rows")
    # Twice k candidates are kept by their float32 distances and measured exactly, so that a
    # neighbour within float32 rounding of the k-th is not lost to the rounding of one block
    # shape or CPU kernel rather than another.
    m = min(2 * k, n_ref - (exclude_self is not None))
    ref32 = reference.to(torch.float32)
    ref_sq = ref32.square().sum(1)
    out = torch.empty(queries.shape[0], k, dtype=torch.float64, device=queries.device)
    for q0 in range(0, queries.shape[0], query_block):
        q = queries[q0 : q0 + query_block]
        q32 = q.to(torch.float32)
        best = best_idx = None
        for r0 in range(0, n_ref, reference_block):
            r = slice(r0, r0 + reference_block)
            # |q - r|^2 - |q|^2 = |r|^2 - 2 q.r: |q|^2 is the same for every candidate of a row,
            # so it is left out of the ranking (the kept ones are measured exactly below).
            d2 = torch.addmm(ref_sq[r].unsqueeze(0), q32, ref32[r].T, alpha=-2.0)
            if exclude_self is not None:
                own = exclude_self[q0 : q0 + query_block] - r0
                rows = torch.nonzero((own >= 0) & (own < d2.shape[1])).squeeze(1)
                d2[rows, own[rows]] = float("inf")
            # The block's own m nearest, merged with the m kept so far.
            values, pos = torch.topk(d2, min(m, d2.shape[1]), dim=1, largest=False)
            pos += r0
            if best is not None:
                values, pos = torch.cat([best, values], 1), torch.cat([best_idx, pos], 1)
                values, keep = torch.topk(values, min(m, values.shape[1]), dim=1, largest=False)
                pos = torch.gather(pos, 1, keep)
            best, best_idx = values, pos
        # The kept neighbours measured exactly: float64 differences, no |q|^2 + |r|^2 - 2 q.r.
        # One candidate at a time, so that this holds query_block x n_features, not m times it.
        exact = torch.stack([(q - reference[i]).norm(dim=1) for i in best_idx.T], 1)
        out[q0 : q0 + query_block] = exact.sort(dim=1).values[:, :k]
    return out
