"""Optional integrations with other frameworks, installed as extras.

Nothing here is imported by ``import recgym``; each submodule imports its framework when it is
itself imported and, if the framework is missing, raises an ``ImportError`` naming the extra:

* :mod:`recgym.integrations.rllib`: every recgym env registered with RLlib, PPO config factory.
* :mod:`recgym.integrations.ray_tune`: run a list of trials as Ray Tune trials (local or cluster).

Both need ``pip install "recgym[ray]"``. Docs: ``docs/ray.md``.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def import_optional(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` telling the user to install ``recgym[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{module} is not installed; this recgym integration needs it: pip install \"recgym[{extra}]\""
        ) from error
