"""The DVC stage graph, read through DVC's own API: nothing about stages is restated here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StageNode:
    name: str  # DVC's address: "train", or "trials@3" for an item of a foreach/matrix stage
    upstream: tuple[str, ...]  # the stages whose outputs this one depends on, sorted


def stage_graph(repo_root: Path = Path(".")) -> list[StageNode]:
    """Every stage, upstream before downstream (ties broken by name), with its direct dependencies."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(repo_root)) as repo:
        graph = repo.index.graph  # an edge A -> B means stage A depends on stage B
        order = list(nx.lexicographical_topological_sort(graph.reverse(copy=True), key=lambda s: s.addressing))
        return [StageNode(s.addressing, tuple(sorted(d.addressing for d in graph.successors(s)))) for s in order]
