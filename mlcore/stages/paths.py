"""Where each stage reads and writes; dvc.yaml declares the same paths as deps and outs."""

from pathlib import Path

RAW_DIR = Path("data/raw")
INFLOW_DIR = Path("data/inflow")
PREPARED_DIR = Path("data/prepared")
MODEL_PATH = Path("models/model.keras")
CALIBRATOR_PATH = Path("models/calibrator.json")
PROVENANCE_PATH = Path("models/provenance.json")
CHAMPION_DIR = Path("models/champion")  # the model in prod when the run started, to compare the new one with
CHAMPION_RECORD = CHAMPION_DIR / "champion.json"
CHAMPION_MODEL = CHAMPION_DIR / "model.keras"
CHAMPION_CALIBRATOR = CHAMPION_DIR / "calibrator.json"
RELEASE_DIR = Path("release")
TUNING_DIR = Path("tuning")
PLAN_PATH = TUNING_DIR / "plan.json"
BEST_PATH = TUNING_DIR / "best.json"
TRAIN_LIVE_DIR = Path("dvclive/train")
METRICS_DIR = Path("metrics")
EVALUATE_PATH = METRICS_DIR / "evaluate.json"
ROBUSTNESS_PATH = METRICS_DIR / "robustness.json"
COMPARE_PATH = METRICS_DIR / "compare.json"
PLOTS_DIR = Path("plots")
# Not DVC outputs: checkpoints exist only while a training is unfinished, and TensorBoard event files
# carry wall-clock times, which would make dvc.lock differ on every run.
CHECKPOINT_DIR = Path(".cache/checkpoints/train")
TENSORBOARD_DIR = Path("logs/tensorboard/train")


def rung_dir(rung: int) -> Path:
    return TUNING_DIR / f"rung{rung}"


def trial_result_path(rung: int, slot: int) -> Path:
    return rung_dir(rung) / f"slot{slot}.json"
