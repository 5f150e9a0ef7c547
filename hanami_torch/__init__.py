"""hanami_torch: growing, sparse, online-learning hexagon-brick networks for PyTorch.

Public API::

    from hanami_torch import HanamiCluster, Template, TemplateError, save, load
"""

from ._version import __version__
from .template import Template, TemplateError

__all__ = [
    "HanamiCluster", "Template", "TemplateError", "CheckpointError", "save", "load", "save_optimizer",
    "load_optimizer", "__version__",
]


def __getattr__(name: str):
    # The C++ extension is imported on first use, so that templates can be parsed (and a missing
    # build reported with instructions) without it.
    if name == "HanamiCluster":
        from .cluster import HanamiCluster

        return HanamiCluster
    if name in ("save", "load", "save_optimizer", "load_optimizer", "CheckpointError"):
        from . import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'hanami_torch' has no attribute {name!r}")
