"""The optional multi-user service: ``pip install hanami_torch[service]``, run ``hanami-torch serve``.

Layers, from the wire down: :mod:`.routes` (declarations and thin handlers) and
:mod:`.directio` (WebSocket) on :mod:`.api` (auth, validation, errors); the work in
:class:`~.core.Service` with :mod:`.clusters`, :mod:`.tasks` and :mod:`.datasets`; storage in
:mod:`.store`; request and response shapes in :mod:`.declarations`, from which
:mod:`.openapi` writes the API description.  The core package never imports this one.
"""

from .app import create_app, serve
from .config import Config
from .core import Service

__all__ = ["Config", "Service", "create_app", "serve"]
