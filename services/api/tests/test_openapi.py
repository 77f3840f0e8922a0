"""The OpenAPI document: every operation described, every body and answer with examples that the
pydantic models and the JSON schemas accept, every error answer with an example that the api sends.

The document is walked, not listed: a new endpoint or schema is held to the same rules.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from tonerwatch_api.app import create_app
from tonerwatch_api.db.tx import create_user, ensure_admin, ensure_default_site, in_tx, upgrade
from tonerwatch_api.deps import CONFLICT, ERRORS
from tonerwatch_api.routes import alert_settings
from tonerwatch_api.schemas.common import VALIDATION_ERROR_EXAMPLE, ErrorOut, SiteIn, SiteOut
from tonerwatch_api.settings import Settings
from tonerwatch_shared.bus import Bus
from tonerwatch_shared.storage import make_engine

ADMIN_PW = "correct horse battery staple"
VIEWER_PW = "viewer password 1234"
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
REF = re.compile(r"^#/components/schemas/(.+)$")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'tw.db'}")
    upgrade(eng)
    ensure_default_site(eng, "default")
    ensure_admin(eng, ADMIN_PW)
    in_tx(eng, lambda s: create_user(s, "viewer", VIEWER_PW, "viewer"))
    yield eng
    eng.dispose()


@pytest.fixture
async def client(engine: Engine, bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(session_secret="test-secret", admin_password=ADMIN_PW, cookie_secure=False)
    app = create_app(engine, bus, settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tw.test"
    ) as c:
        yield c


@pytest.fixture
async def doc(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    spec: dict[str, Any] = r.json()
    return spec


# --- walking the document ------------------------------------------------------------------------


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ("METHOD /path", operation) for every operation in doc."""
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", op


def refs(node: Any) -> set[str]:
    """Return the component schema names node refers to, at any depth."""
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and (m := REF.match(ref)):
            found.add(m.group(1))
        for value in node.values():
            found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def reachable(doc: dict[str, Any]) -> set[str]:
    """Return the component schemas a request body or a 2xx answer uses, directly or nested."""
    schemas = doc["components"]["schemas"]
    todo: set[str] = set()
    for _, op in operations(doc):
        todo |= refs(op.get("requestBody", {}))
        for code, answer in op["responses"].items():
            if code.startswith("2"):
                todo |= refs(answer)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo |= refs(schemas[name]) - seen
    return seen


def model_classes() -> dict[str, list[type[BaseModel]]]:
    """Return TonerWatch's pydantic models (loaded by create_app) by class name."""
    out: dict[str, list[type[BaseModel]]] = {}
    todo: list[type[BaseModel]] = [BaseModel]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("tonerwatch") and cls not in out.get(cls.__name__, []):
            out.setdefault(cls.__name__, []).append(cls)
    return out


def model_of(name: str) -> type[BaseModel]:
    """Return the one model a component schema documents (FastAPI names them after the class)."""
    base = re.sub(r"-(Input|Output)$", "", name)
    found = model_classes().get(base, [])
    assert len(found) == 1, f"component {name}: models {found} (expected exactly one)"
    return found[0]


def strict(components: dict[str, Any]) -> dict[str, Any]:
    """Return components in which objects allow only their documented properties.

    Answers do not forbid extra fields, so without this an example with a misspelt or stale field
    would still validate.
    """
    out = copy.deepcopy(components)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    return out


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """Return a validator of schema whose $refs resolve inside doc's (strict) components."""
    root = {**schema, "components": strict(doc["components"])}
    return jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def media_examples(media: dict[str, Any]) -> list[Any]:
    """Return the examples of a media type object (example, or examples' values)."""
    out = [media["example"]] if "example" in media else []
    out += [e["value"] for e in media.get("examples", {}).values() if "value" in e]
    return out


def schema_examples(doc: dict[str, Any], schema: dict[str, Any]) -> list[Any]:
    """Return the examples schema has, or that the components it is made of (arrays too) have."""
    if schema.get("examples"):
        return list(schema["examples"])
    if (ref := REF.match(schema.get("$ref", ""))) is not None:
        return list(doc["components"]["schemas"][ref.group(1)].get("examples", []))
    if schema.get("type") == "array":
        return [[e] for e in schema_examples(doc, schema.get("items", {}))]
    return []


# --- the rules -----------------------------------------------------------------------------------


async def test_document_builds_and_covers_the_api(doc: dict[str, Any]) -> None:
    ops = dict(operations(doc))
    assert len(ops) >= 30
    assert {"POST /api/v1/printers", "GET /api/v1/export/printers.csv"} <= set(ops)
    # FastAPI's default 422 shapes are never sent: the document must show the api's own.
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert "ErrorOut" in doc["components"]["schemas"]


async def test_every_operation_is_described_and_answers_2xx(doc: dict[str, Any]) -> None:
    problems = []
    for name, op in operations(doc):
        if not op.get("summary") or not op.get("description"):
            problems.append(f"{name}: no summary or description")
        if not any(code.startswith("2") for code in op["responses"]):
            problems.append(f"{name}: no 2xx answer")
        for param in op.get("parameters", []):
            if not param.get("description"):
                problems.append(f"{name}: parameter {param['name']} has no description")
    assert not problems, "\n".join(problems)


async def test_every_answer_and_body_says_what_it_is_with_an_example(doc: dict[str, Any]) -> None:
    problems = []
    for name, op in operations(doc):
        bodies = [("request body", op.get("requestBody", {}))]
        bodies += [(code, a) for code, a in op["responses"].items() if code[0] in "2345"]
        for what, part in bodies:
            for media_type, media in part.get("content", {}).items():
                schema = media.get("schema")
                if not schema:
                    problems.append(f"{name} {what} {media_type}: no schema")
                elif not media_examples(media) and not schema_examples(doc, schema):
                    problems.append(f"{name} {what} {media_type}: no example")
    assert not problems, "\n".join(problems)


async def test_schemas_of_bodies_and_answers_have_examples(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    # Objects need examples; an enum's values are its own examples.
    lacking = sorted(
        name
        for name in reachable(doc)
        if "properties" in schemas[name] and not schemas[name].get("examples")
    )
    assert not lacking, f"schemas without examples: {lacking}"


async def test_every_schema_example_validates_against_its_model_and_its_schema(
    doc: dict[str, Any],
) -> None:
    checked = 0
    for name, schema in doc["components"]["schemas"].items():
        if not schema.get("examples"):
            continue
        model = model_of(name)
        check = validator(doc, {"$ref": f"#/components/schemas/{name}"})
        for i, example in enumerate(schema["examples"]):
            errors = [e.message for e in check.iter_errors(example)]
            assert not errors, f"{name} example {i} against the JSON schema: {errors}"
            # As it would arrive on the wire.
            model.model_validate_json(json.dumps(example))
            checked += 1
    assert checked >= 40


async def test_every_media_type_example_validates(doc: dict[str, Any]) -> None:
    for name, op in operations(doc):
        answers = [("request body", op.get("requestBody", {})), *op["responses"].items()]
        for what, part in answers:
            for media_type, media in part.get("content", {}).items():
                if not media_type.endswith("json"):
                    assert all(isinstance(e, str) for e in media_examples(media)), name
                    continue
                check = validator(doc, media.get("schema", {}))
                for example in media_examples(media):
                    errors = [e.message for e in check.iter_errors(example)]
                    assert not errors, f"{name} {what}: {errors}"
                    if ref := REF.match(media.get("schema", {}).get("$ref", "")):
                        model_of(ref.group(1)).model_validate_json(json.dumps(example))


async def test_every_error_answer_has_an_example_error_body(doc: dict[str, Any]) -> None:
    problems = []
    error_schema = {"$ref": "#/components/schemas/ErrorOut"}
    for name, op in operations(doc):
        for code, answer in op["responses"].items():
            if not code.startswith("4"):
                continue
            media = answer.get("content", {}).get("application/json", {})
            examples = media_examples(media)
            if media.get("schema") != error_schema or not examples:
                problems.append(f"{name} {code}: no ErrorOut schema with an example")
            for example in examples:
                ErrorOut.model_validate(example)
                if example["status"] != int(code):
                    problems.append(f"{name} {code}: example says status {example['status']}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("errors", [ERRORS, CONFLICT, alert_settings.ERRORS])
def test_errors_tables_carry_error_bodies(errors: dict[int | str, dict[str, Any]]) -> None:
    for code, answer in errors.items():
        assert answer["model"] is ErrorOut and answer["description"]
        example = answer["content"]["application/json"]["example"]
        assert ErrorOut.model_validate(example).status == int(code)


# --- the examples tell the truth -----------------------------------------------------------------


def documented_error(doc: dict[str, Any], operation: str, code: int) -> Any:
    method, path = operation.split(" ", 1)
    answer = doc["paths"][path][method.lower()]["responses"][str(code)]
    return answer["content"]["application/json"]["example"]


async def token(client: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    r = await client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_error_examples_are_what_the_api_answers(
    client: httpx.AsyncClient, doc: dict[str, Any]
) -> None:
    anon = await client.get("/api/v1/me")
    assert anon.status_code == 401
    assert anon.json() == documented_error(doc, "GET /api/v1/me", 401)

    admin = await token(client, "admin", ADMIN_PW)
    viewer = await token(client, "viewer", VIEWER_PW)
    printer = "/api/v1/printers/{printer_id}"
    missing = await client.get(printer.format(printer_id="p-3f2a9c01de"), headers=admin)
    assert missing.status_code == 404
    assert missing.json() == documented_error(doc, f"GET {printer}", 404)

    # Invalid input is refused before anything is stored (no printer, no event, no probe).
    bad_port = await client.post(
        "/api/v1/printers", headers=admin, json={"address": "192.0.2.31", "port": 65536}
    )
    assert bad_port.status_code == 422
    assert bad_port.json() == VALIDATION_ERROR_EXAMPLE
    assert bad_port.json() == documented_error(doc, "POST /api/v1/printers", 422)

    not_allowed = await client.post(
        "/api/v1/printers", headers=viewer, json={"address": "192.0.2.31"}
    )
    assert not_allowed.status_code == 403
    assert not_allowed.json() == documented_error(doc, "POST /api/v1/printers", 403)

    # The documented site, created from its own example, then created again.
    site_example = doc["components"]["schemas"]["SiteIn"]["examples"][0]
    SiteIn.model_validate(site_example)
    created = await client.post("/api/v1/sites", headers=admin, json=site_example)
    assert created.status_code == 201, created.text
    SiteOut.model_validate(created.json())
    again = await client.post("/api/v1/sites", headers=admin, json=site_example)
    assert again.status_code == 409
    assert again.json() == documented_error(doc, "POST /api/v1/sites", 409)


async def test_login_example_is_the_form_the_token_endpoint_takes(
    client: httpx.AsyncClient, doc: dict[str, Any]
) -> None:
    form = doc["paths"]["/api/v1/auth/token"]["post"]["requestBody"]["content"]
    assert list(form) == ["application/x-www-form-urlencoded"]
    example = dict(doc["components"]["schemas"]["TokenForm"]["examples"][0])
    wrong = await client.post("/api/v1/auth/token", data=example)  # no such user here
    assert wrong.status_code == 401
    assert wrong.json() == documented_error(doc, "POST /api/v1/auth/token", 401)
    example.update(username="admin", password=ADMIN_PW, grant_type="password")
    ok = await client.post("/api/v1/auth/token", data=example)
    assert ok.status_code == 200 and ok.json()["token_type"] == "bearer"
