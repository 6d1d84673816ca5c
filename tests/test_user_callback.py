"""A user's callback from the top-level ``callbacks/`` folder plugs in through the config alone."""

import subprocess
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]


def test_example_callback_plugs_in_from_the_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mbrl_lightning", "fit", "--config", str(ROOT / "configs/tiny/obstacles.yaml"),
         "--trainer.callbacks+=callbacks.model_error.MultiStepError", "--trainer.callbacks.horizon=4",
         "--trainer.logger.init_args.save_dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = EventAccumulator(str(tmp_path / "tiny_obstacles" / "version_0"), size_guidance={"scalars": 0})
    events.Reload()
    k1 = [e.value for e in events.Scalars("model/error_k1")]
    k4 = [e.value for e in events.Scalars("model/error_k4")]
    assert len(k1) == 2 and len(k4) == 2  # one value per iteration
    assert all(0 <= a < b for a, b in zip(k1, k4, strict=True))  # open-loop error grows with k
