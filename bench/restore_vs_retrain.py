"""Time to restore a model from the run-cache against retraining it, both in a fresh clone.

`python -m bench.restore_vs_retrain [REF]` (default HEAD; its dvc.lock must be pushed with `make run`).
"""

from __future__ import annotations

import sys

from bench.timing import timed


def main() -> None:
    ref = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
    restore = timed(sys.executable, "-m", "mlcore.ops.replay", ref)
    retrain = timed(sys.executable, "-m", "mlcore.ops.replay", ref, "--retrain")
    print(f"restore from run-cache : {restore:7.1f} s")
    print(f"retrain from pinned data: {retrain:7.1f} s   ({retrain / restore:.1f}x slower)")


if __name__ == "__main__":
    main()
