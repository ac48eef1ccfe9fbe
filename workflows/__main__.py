"""`python -m workflows` (`make workflows`): write every manifest of argo/ from dvc.yaml and params.yaml."""

from pathlib import Path

from mlcore.ops.dvc_state import stage_graph
from mlcore.params import load_params
from workflows import retrain
from workflows.pipeline import ClusterConfigError, build_pipeline, build_reproduce, render


def generate(repo_root: Path = Path(".")) -> dict[str, str]:
    """Every manifest of argo/, by file name."""
    stages = stage_graph(repo_root)
    params = load_params(repo_root / "params.yaml")
    return {
        "pipeline.yaml": render(build_pipeline(stages, params)),
        "reproduce.yaml": render(build_reproduce(stages, params.cluster)),
        **retrain.generate(params),
    }


def write(out_dir: Path = Path("argo")) -> list[Path]:
    out_dir.mkdir(exist_ok=True)
    written = []
    for name, text in generate().items():
        (out_dir / name).write_text(text)
        written.append(out_dir / name)
    return written


if __name__ == "__main__":
    try:
        for path in write():
            print(path)
    except ClusterConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
