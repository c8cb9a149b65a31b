"""The lineage graph of the Models page: dataset → training run → model version → traffic,
laid out in four columns for an SVG."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.registry.read_models import SeenVersion, VersionTraffic

WIDTH, HEIGHT, GAP_X, GAP_Y, TOP = 230, 46, 70, 16, 30
COLUMNS = ("dataset", "run", "version", "traffic")
TITLES = ("training data", "training run", "model version", "traffic")


@dataclass
class Node:
    key: str
    kind: str
    label: str
    sub: str
    href: str | None = None
    x: int = 0
    y: int = 0


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[int, int, int, int]] = field(default_factory=list)
    width: int = len(COLUMNS) * WIDTH + (len(COLUMNS) - 1) * GAP_X
    height: int = TOP
    titles: list[tuple[int, str]] = field(default_factory=list)


def _short(text: str, length: int = 30) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def build(
    versions: list[SeenVersion], traffic: dict[tuple[str, str], VersionTraffic]
) -> Graph:
    """`versions` with their lineage snapshots; `traffic` per (name, version)."""
    columns: dict[str, list[Node]] = {kind: [] for kind in COLUMNS}
    index: dict[str, Node] = {}
    links: list[tuple[str, str]] = []

    def node(kind: str, key: str, label: str, sub: str, href: str | None = None) -> str:
        full = f"{kind}:{key}"
        if full not in index:
            index[full] = Node(full, kind, _short(label), _short(sub, 36), href)
            columns[kind].append(index[full])
        return full

    for v in versions:
        snapshot = v.lineage
        version = node("version", f"{v.name}@{v.version}", f"{v.name} v{v.version}",
                       f"{v.role or ''} · {v.status}", f"#{v.name}-{v.version}")  # fmt: skip
        seen = traffic.get((v.name, v.version), VersionTraffic())
        aliases = " ".join(f"@{a}" for a in v.aliases)
        served = node("traffic", f"{v.name}@{v.version}", f"{seen.requests:,} requests",
                      f"deny {100 * seen.deny_rate:.1f}% {aliases}")  # fmt: skip
        links.append((version, served))
        run = snapshot.get("run") or {}
        if run.get("id"):
            metrics = ", ".join(f"{k}={m:.3g}" for k, m in sorted(run.get("metrics", {}).items())
                                if isinstance(m, int | float))  # fmt: skip
            run_key = node("run", run["id"], f"run {run['id'][:12]}", metrics or "no metrics")
            links.append((run_key, version))
            for d in snapshot.get("datasets") or []:
                data = node("dataset", str(d.get("digest") or d.get("name")),
                            str(d.get("name") or "dataset"),
                            f"{d.get('digest', '')} {d.get('context', '')}")  # fmt: skip
                links.append((data, run_key))
    # Versions and their traffic row by row; a run beside its first version, a dataset
    # beside its first run (or the next free row of its column).
    rows: dict[str, int] = {}
    for i, n in enumerate(columns["version"]):
        rows[n.key] = i
    for n in columns["traffic"]:
        rows[n.key] = rows["version:" + n.key.split(":", 1)[1]]
    for kind in ("run", "dataset"):
        taken: set[int] = set()
        for n in columns[kind]:
            targets = [rows[b] for a, b in links if a == n.key and b in rows]
            row = min(targets) if targets else 0
            while row in taken:
                row += 1
            taken.add(row)
            rows[n.key] = row
    graph = Graph()
    graph.height = TOP + (max(rows.values(), default=0) + 1) * (HEIGHT + GAP_Y)
    for col, kind in enumerate(COLUMNS):
        x = col * (WIDTH + GAP_X)
        graph.titles.append((x, TITLES[col]))
        for n in columns[kind]:
            n.x, n.y = x, TOP + rows[n.key] * (HEIGHT + GAP_Y)
            graph.nodes.append(n)
    for a, b in dict.fromkeys(links):
        left, right = index[a], index[b]
        graph.edges.append((left.x + WIDTH, left.y + HEIGHT // 2, right.x, right.y + HEIGHT // 2))
    return graph
