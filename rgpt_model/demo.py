"""Where the built-in demo model lives.

The trained demo model goes into the package folder ``rgpt_model/demo_model/``. Until it is
there, :func:`default_model_path` builds a tiny random model into a cache directory
(``$RGPT_CACHE_DIR/tiny_model``, default ``~/.cache/rgpt_ros/tiny_model``) and warns: the
pipeline then runs end to end, but its answers are random.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo_model"
# The previous demo model (issues 4-19): it names shapes from the mask's outline, not from the
# pixels (issue 20). Kept as the warm start of the current one (configs/demo_v2.yaml pins it by
# sha256), as the reference of the golden-answer test and as the control that shows the
# outline shortcut.
DEMO_MODEL_V1_DIR = DEMO_MODEL_DIR.parent / "demo_model_v1"


def cache_dir() -> Path:
    """RGPT cache directory (env RGPT_CACHE_DIR, default ~/.cache/rgpt_ros)."""
    env = os.environ.get("RGPT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rgpt_ros"


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def default_model_path() -> Path:
    """The demo model directory, or a cached tiny random model when no demo model exists."""
    if _is_model_dir(DEMO_MODEL_DIR):
        return DEMO_MODEL_DIR
    tiny = cache_dir() / "tiny_model"
    logger.warning(
        "no trained demo model in %s; using a tiny RANDOM model at %s (answers are meaningless)",
        DEMO_MODEL_DIR,
        tiny,
    )
    if not (_is_model_dir(tiny) and (tiny / "tokenizer.json").is_file()):
        from .tiny import make_tiny_model

        make_tiny_model(tiny)
    return tiny
