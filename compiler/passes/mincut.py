"""Minimum s-t cut (Edmonds-Karp max flow) for layout assignment."""

from __future__ import annotations

from collections import deque

__all__ = ["INFINITE", "min_cut"]

INFINITE = 1 << 40


def min_cut(count: int, edges: list[tuple[int, int, int]], source: int,
            sink: int) -> tuple[int, set[int]]:
    """Cut value and source side of a minimum ``source``-``sink`` cut of the directed graph
    on nodes ``0..count-1`` with ``(u, v, capacity)`` edges."""
    adjacency: list[list[int]] = [[] for _ in range(count)]
    head, residual = [], []
    for u, v, capacity in edges:
        adjacency[u].append(len(head))
        head.append(v)
        residual.append(capacity)
        adjacency[v].append(len(head))
        head.append(u)
        residual.append(0)
    total = 0
    while True:
        via = [-1] * count  # edge index used to reach each node
        via[source] = -2
        queue = deque([source])
        while queue and via[sink] == -1:
            u = queue.popleft()
            for e in adjacency[u]:
                if residual[e] > 0 and via[head[e]] == -1:
                    via[head[e]] = e
                    queue.append(head[e])
        if via[sink] == -1:
            return total, {u for u in range(count) if via[u] != -1}
        path, v = [], sink
        while v != source:
            path.append(via[v])
            v = head[via[v] ^ 1]
        push = min(residual[e] for e in path)
        for e in path:
            residual[e] -= push
            residual[e ^ 1] += push
        total += push
