"""What a TonerWatch process keeps out of its imports (issue 15: `up` memory)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

# A process as `tonerwatch up` makes it: the command's package first, every service's module, the
# api's app and its uvicorn server loaded (protocols, lifespan), then uvicorn's own front door.
PROBE = """
import json, pathlib, sys, tempfile
import tonerwatch  # skips the unused imports first, as the command does
from tonerwatch.services import SERVICES, service_module
for name in SERVICES:
    service_module(name)
from tonerwatch_api.app import create_app
from tonerwatch_api.service import _Server, uvicorn_config
from tonerwatch_api.settings import Settings
from tonerwatch_shared.storage import make_engine, sqlite_url
settings = Settings(database_url=sqlite_url(pathlib.Path(tempfile.mkdtemp())))
app = create_app(make_engine(settings.database_url), None, settings)
config = uvicorn_config(app, settings)
config.load()
_Server(config)
import pydantic
from tonerwatch_shared import events as ev
def models(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from models(sub)
ours = {m for m in models(pydantic.BaseModel) if m.__module__.startswith("tonerwatch")}
built_at_start = sum(1 for m in ours if m.__pydantic_complete__)
# A deferred model works at first use: an event read back, the whole OpenAPI document built.
found = ev.PrinterFound(
    source="probe", site_id="s", address="127.0.0.1", identity={"vendor": "HP"}
)
assert ev.parse_event(found.to_bytes()) == found
paths = len(app.openapi()["paths"])
loaded = sorted(
    m for m in ("aiohttp", "click", "multiprocessing", "pydantic.v1", "watchfiles")
    if sys.modules.get(m) is not None
)
import gc
import uvicorn
print(json.dumps({
    "gc_threshold": gc.get_threshold(),
    "loaded": loaded,
    "routes": len(app.routes),
    "models": len(ours),
    "built_at_start": built_at_start,
    "paths": paths,
    "version": uvicorn.__version__,
    "run": callable(uvicorn.run),
    "click_after_run": "click" in sys.modules,
}))
"""


def _run_probe(script: str, cwd: Path) -> dict[str, Any]:
    """Return what a fresh interpreter running script printed last, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_up_s_process_loads_no_command_line_reloader_or_pydantic_v1_builds_models_at_first_use_and_collects_young_objects_less_often(
    tmp_path: Path,
) -> None:
    seen = _run_probe(PROBE, tmp_path)
    assert seen["loaded"] == []
    # Young collections less often than CPython's 700 allocations (the api's batches: E2E.md).
    assert seen["gc_threshold"] == [10_000, 10, 10]
    assert seen["routes"] > 30  # the whole api was built with FastAPI's pydantic.v1 checks off
    # pydantic models build at first use: most of them are never used by a given run.
    assert seen["models"] > 150
    assert seen["built_at_start"] < seen["models"] // 4
    assert seen["paths"] > 30
    # Whoever asks uvicorn for more than Config and Server gets the real package, once.
    assert seen["version"].count(".") == 2
    assert seen["run"] is True
    assert seen["click_after_run"] is True


# Every TonerWatch model built now, strictly: built at first use in the processes, a model a run
# never validates would otherwise show a schema error (or a Field attribute with no effect, a
# warning the processes ignore for FastAPI's adapters) only in service.
STRICT_BUILD = """
import json, sys, warnings
import tonerwatch  # skips the unused imports first, as the command does
from tonerwatch.services import SERVICES, service_module
for name in SERVICES:
    service_module(name)
import tonerwatch.cli
import pydantic
from pydantic.warnings import UnsupportedFieldAttributeWarning
def models(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from models(sub)
ours = sorted(
    {m for m in models(pydantic.BaseModel) if m.__module__.startswith("tonerwatch")},
    key=lambda m: (m.__module__, m.__qualname__),
)
warnings.simplefilter("error", UnsupportedFieldAttributeWarning)
failed = []
for model in ours:
    try:
        model.model_rebuild(force=True, raise_errors=True)
    except Exception as exc:
        failed.append(f"{model.__module__}.{model.__qualname__}: {exc!r}"[:300])
print(json.dumps({"models": len(ours), "failed": failed}))
"""


def test_every_tonerwatch_model_builds_strictly_though_the_processes_build_them_at_first_use(
    tmp_path: Path,
) -> None:
    seen = _run_probe(STRICT_BUILD, tmp_path)
    assert seen["models"] > 150
    assert seen["failed"] == []
