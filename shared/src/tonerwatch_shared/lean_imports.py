"""Keep libraries from importing what TonerWatch processes never use (issue 15: memory).

- nats-py imports aiohttp whenever it is installed (it is, through pyipp), only for its
  websocket transport; TonerWatch connects with nats:// and tls:// only. Importing nats with
  aiohttp hidden leaves that transport off; aiohttp stays importable for whoever needs it (the
  IPP client, on its first IPP request).
- httpx imports its command-line interface (click, rich, pygments) whenever they are installed.
- uvicorn's package `__init__` imports its command line (click) and through it the reloader and
  the worker supervisor (watchfiles, multiprocessing): ~1.6 MB that the api, which serves through
  uvicorn.Config and uvicorn.Server, never runs. The package is registered without running its
  `__init__`: `uvicorn.Config` and `uvicorn.Server` come from their own modules, and anything else
  (`uvicorn.run`, `uvicorn.main`, `__version__`) runs the real `__init__` on first use.
- FastAPI imports pydantic.v1 (~1.5 MB) only to refuse pydantic v1 models, which TonerWatch has
  none of; with pydantic.v1 unimportable its checks answer "not a v1 model" (they catch the
  ImportError, as for a pydantic without v1).

- pydantic builds a model's validator and serializer (core schema, then Rust structures) when the
  class is defined: ~250 models in `up`, most of them never used in a given run (the OpenAPI
  document's, the hub's, the portal's, every api route's request and response shapes). Models
  defined after skip_unused_imports() build them at first use instead (pydantic's `defer_build`,
  as their default): the same validators, built later, and none for what a run never touches.

Call skip_unused_imports() before anything imports nats, httpx, uvicorn, FastAPI or defines a
pydantic model: `tonerwatch` (the command) does it first thing. Measured in bench/E2E.md.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from typing import Any


def skip_unused_imports() -> None:
    """Import nats without aiohttp, make httpx, uvicorn and FastAPI skip what they never run, and pydantic build models at first use; idempotent."""
    if "nats.aio.transport" not in sys.modules and "aiohttp" not in sys.modules:
        sys.modules["aiohttp"] = None  # type: ignore[assignment]  # an ImportError for nats
        try:
            import nats.aio.transport  # noqa: F401
        finally:
            del sys.modules["aiohttp"]
    if "httpx" not in sys.modules:
        # httpx falls back to a stub `main` when its _main cannot be imported.
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    if "fastapi" not in sys.modules:
        sys.modules.setdefault("pydantic.v1", None)  # type: ignore[arg-type]
    if "uvicorn" not in sys.modules:
        _register_uvicorn_lazily()
    from pydantic import BaseModel
    from pydantic.warnings import UnsupportedFieldAttributeWarning

    # Every model defined from now on inherits it (pydantic merges the bases' model_config).
    BaseModel.model_config["defer_build"] = True
    # FastAPI silences this one while it makes a route's adapters (Annotated[T, Body(alias=...)]);
    # built at their first request, they are built past its filter.
    warnings.filterwarnings("ignore", category=UnsupportedFieldAttributeWarning)


def _register_uvicorn_lazily() -> None:
    """Put uvicorn's package in sys.modules without running its __init__ (and its command line)."""
    spec = importlib.util.find_spec("uvicorn")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    ran = False

    def __getattr__(name: str) -> Any:  # a module's __getattr__ (PEP 562)
        nonlocal ran
        if name == "Config":
            from uvicorn.config import Config

            return Config
        if name == "Server":
            from uvicorn.server import Server

            return Server
        if not ran:
            # Once: the real __init__ sets run, main, Config, Server, __version__ (should it
            # fail, as an import would, the next use runs it again and fails the same way).
            loader.exec_module(package)
            ran = True
            if name in package.__dict__:
                return package.__dict__[name]
        raise AttributeError(f"module 'uvicorn' has no attribute {name!r}")

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules["uvicorn"] = package


__all__ = ["skip_unused_imports"]
