"""Read what DVC knows: the stage graph and the configured S3 remote (dvc.lock itself: mlcore/lockfile.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mlcore.storage.s3 import s3_client, split_url


@dataclass(frozen=True)
class S3Remote:
    name: str
    bucket: str
    prefix: str
    endpoint: str | None
    access_key: str | None
    secret_key: str | None = field(repr=False)

    def object_key(self, md5: str) -> str:
        """Where DVC 3 stores an object: <prefix>/files/md5/<first two hex>/<rest>."""
        return f"{self.prefix}/files/md5/{md5[:2]}/{md5[2:]}".lstrip("/")

    def environment(self) -> dict[str, str]:
        """The variables through which stages and the server reach this remote's bucket (as pods get them)."""
        keys = {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        return {
            "MLCORE_S3_ENDPOINT": self.endpoint or "",
            "MLCORE_S3_BUCKET": self.bucket,
            "MLCORE_S3_PREFIX": self.prefix,
            **{name: value for name, value in keys.items() if value},
        }

    def client(self):
        """A client with the remote's configured keys, else the AWS_* variables' (as DVC does)."""
        keys = (self.access_key, self.secret_key) if self.access_key else None
        return s3_client(self.endpoint, keys)


def default_remote(repo_root: Path = Path(".")) -> S3Remote:
    """The default remote, through DVC's own config API (merges .dvc/config and .dvc/config.local)."""
    from dvc.repo import Repo

    with Repo(str(repo_root)) as repo:
        config = repo.config
        name = config["core"].get("remote")
        if not name:
            raise RuntimeError("no default DVC remote; run `make s3-up` or configure one (see README)")
        remote = config["remote"][name]
    try:
        bucket, prefix = split_url(remote["url"], f"DVC remote '{name}'")
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    return S3Remote(
        name,
        bucket,
        prefix,
        remote.get("endpointurl"),
        remote.get("access_key_id"),
        remote.get("secret_access_key"),
    )


ITEM_REFERENCE = re.compile(r"\$\{item\.([A-Za-z_][A-Za-z0-9_]*)\}")  # a matrix item's value in dvc.yaml


@dataclass(frozen=True)
class StageNode:
    name: str  # DVC's address: "train", or "rung0@3" for an item of a foreach/matrix stage
    upstream: tuple[str, ...]  # the stages whose outputs this one depends on, sorted
    metrics: tuple[str, ...] = ()  # its metrics files
    reports: tuple[str, ...] = ()  # its metrics and plot files (not directories), for a person to look at
    pinned: bool = False  # dvc.yaml `meta: {pinned_input: true}`: its output is an input replays restore
    item: tuple[tuple[str, str], ...] = ()  # a matrix item's values by key, e.g. (("slot", "3"),)
    report_patterns: tuple[str, ...] = ()  # `reports` as dvc.yaml writes them, with ${item.KEY} left in

    @property
    def base(self) -> str:
        """The dvc.yaml stage this is (an item of): 'rung0@3' -> 'rung0'."""
        return self.name.split("@")[0]


def stage_graph(repo_root: Path = Path(".")) -> list[StageNode]:
    """Every stage in the order `dvc repro` runs them (so entries merged in this order give dvc.lock's
    own order), each with its direct dependencies."""
    from dvc.repo import Repo
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro

    with Repo(str(repo_root)) as repo:
        graph = get_active_graph(repo.index.graph)  # an edge A -> B means stage A depends on stage B
        order = plan_repro(graph, collect_stages(repo, [str(Path(repo.root_dir) / "dvc.yaml")]))
        nodes = []
        for stage in order:
            reports = tuple(o.def_path for o in stage.outs if (o.metric or o.plot) and Path(o.def_path).suffix)
            item, written = _matrix_item(stage)
            nodes.append(
                StageNode(
                    stage.name,
                    tuple(sorted(d.name for d in graph.successors(stage))),
                    tuple(o.def_path for o in stage.outs if o.metric),
                    reports,
                    bool((stage.meta or {}).get("pinned_input")),
                    tuple(item.items()),
                    tuple(written.get(path, path) for path in reports),
                )
            )
        return nodes


def _matrix_item(stage) -> tuple[dict[str, str], dict[str, str]]:
    """A matrix item's values, and its output paths as dvc.yaml writes them (with ${item.KEY}) by the paths the
    values turn them into; ({}, {}) for a stage that is no matrix item."""
    if "@" not in stage.name:
        return {}, {}
    base, key = stage.name.split("@", 1)
    definition = stage.dvcfile.resolver.definitions[base]
    values = definition.normalized_iterable[key]
    if not isinstance(values, dict) or not hasattr(definition, "matrix_data"):  # a foreach item: a value, a key
        return {}, {}
    item = {name: str(value) for name, value in values.items()}
    written = [
        entry
        for section in ("outs", "metrics", "plots")
        for spec in definition.template.get(section, [])
        for entry in ([spec] if isinstance(spec, str) else spec)
    ]
    return item, {ITEM_REFERENCE.sub(lambda m: item.get(m.group(1), m.group(0)), path): path for path in written}


def recompute_from(stages: list[StageNode]) -> list[str]:
    """The stages that, with everything downstream of them, are all stages but the pinned inputs."""
    pinned = {node.name for node in stages if node.pinned}
    return [node.name for node in stages if not node.pinned and set(node.upstream) <= pinned]
