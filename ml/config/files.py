"""Where Loopline's YAML files are found, and how they are read and versioned.

Every configuration file (``loopline.yml``, ``model.yml``, ``policy.yml``, and the
simulator's ``sim.yml``) follows one rule: the home's own copy,
``$LOOPLINE_HOME/config/<name>``, when it exists, else the repository's
``config/<name>``. An explicit path always wins. Each file is versioned by one
content hash: the first 16 hex characters of the sha256 of its bytes, stamped on
what the file configures (``config_hash``, ``policy_version``).
"""

from __future__ import annotations

import copy
import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = Path("config")
HOME_ENV = "LOOPLINE_HOME"
DEFAULT_HOME = Path(".loopline")


def home_dir(home: Path | str | None = None) -> Path:
    """The Loopline home: ``home`` if given, else ``$LOOPLINE_HOME``, else
    ``./.loopline``, resolved."""
    chosen = home if home is not None else os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


def config_path(name: str, home: Path | str | None = None) -> Path:
    """The file ``name`` (for example ``policy.yml``) by the one rule: the home's
    own ``config/<name>`` when it exists, else the repository's."""
    own = home_dir(home) / CONFIG_DIR / name
    return own if own.is_file() else REPO_ROOT / CONFIG_DIR / name


def content_hash(raw: bytes) -> str:
    """The version of a configuration file: sha256 of its bytes, 16 hex chars."""
    return hashlib.sha256(raw).hexdigest()[:16]


def read_yaml(path: Path) -> tuple[dict[str, Any], str]:
    """The mapping in a YAML file (empty when the file is empty) and its hash.

    The file is read every time; parsing is done once per distinct content (every
    step of a night loads the same configuration, and PyYAML parses in Python),
    and each caller gets its own copy of the mapping."""
    raw = path.read_bytes()
    data = _parse_yaml(raw)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return copy.deepcopy(data), content_hash(raw)


@lru_cache(maxsize=32)
def _parse_yaml(raw: bytes) -> Any:
    """The YAML document in ``raw`` (``{}`` when empty); cached by content."""
    return yaml.safe_load(raw) or {}
