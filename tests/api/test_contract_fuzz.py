"""The API contract, fuzzed: schemathesis generates requests from the app's OpenAPI document
(valid and invalid ones, every phase the pytest integration runs: examples, coverage, fuzzing)
and sends them to the live app, served by uvicorn over the real store, Triton and Redis; every
default check must pass on every case. A second, short run with an API key configured checks
that what a caller without the key gets (401) is documented on every /api route. On every error
answer of both runs, the message is in plain words: no regular expression, no type or exception
name, no traceback."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from litestar import Litestar
from schemathesis.hooks import HookContext
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orchestrator.api.app import create_app
from orchestrator.api.indicators import DEFAULT_INDICATORS, OPTIONS, checked_request
from orchestrator.dates import parse_moment
from orchestrator.devstack.process import free_ports
from orchestrator.devstack.triton import TritonServer
from orchestrator.errors import BadParameterError
from orchestrator.settings import ApiSettings, DatabaseSettings
from tests.api.conftest import api_settings
from tests.conftest import TrainedRepository

# Hypothesis examples per operation for the fuzzing phase (positive and negative); the coverage
# and examples phases add their own deterministic cases.
MAX_EXAMPLES = 100
DOCUMENT = create_app().openapi_schema.to_schema()
schema = schemathesis.openapi.from_dict(DOCUMENT)
API_KEY = "contract-fuzz-key"
CASES: Counter[str] = Counter()  # cases run per operation


@schema.hook
def filter_case(context: HookContext, case: schemathesis.Case[Any]) -> bool:
    """Valid requests also obey the rules JSON Schema cannot state (they are in the parameters'
    descriptions): /api/history's `end` after `start` when both are given; /api/indicators'
    inline values are in range, macd's fast below its slow, the names belong to the asked
    scale; /api/signals' `tp_price` / `sl_price` lie on the trade's side of the newest close
    (which the document cannot know), and replace `tp` / `sl` rather than join them."""
    operation, meta = context.operation, case.meta
    if operation is None or meta is None or not meta.generation.mode.is_positive:
        return True
    query = case.query or {}
    if operation.path == "/api/signals/{symbol}":
        return query.get("tp_price") is None and query.get("sl_price") is None
    if operation.path == "/api/indicators/{symbol}":
        return _acceptable_indicators(query)
    if operation.path != "/api/history/{symbol}":
        return True
    start, end = query.get("start"), query.get("end")
    if start is None or end is None:
        return True
    return parse_moment("end", str(end), end=True) > parse_moment("start", str(start))


def _acceptable_indicators(query: dict[str, Any]) -> bool:
    options = {name: None if query.get(name) is None else str(query[name]) for name in OPTIONS}
    try:
        checked_request(
            str(query.get("indicators", DEFAULT_INDICATORS)),
            str(query.get("scale", "price")),
            options,
        )
    except BadParameterError:
        return False
    return True


@contextmanager
def served_in_thread(app: Litestar, start_timeout_s: float = 60.0) -> Iterator[str]:
    """The app under uvicorn in a thread of its own: schemathesis calls it synchronously."""
    (port,) = free_ports(1)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="contract-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn stopped before it started")
        if time.monotonic() > deadline:
            raise TimeoutError(f"uvicorn did not start within {start_timeout_s} s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def live_api(
    loaded: TrainedRepository,
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    redis_flushed: str,
) -> Iterator[str]:
    """No API key (auth is checked in test_security.py); a rate limit fuzzing cannot reach; an
    admin key the fuzzer never sends, so it cannot switch the suite's served models (the admin
    routes answer it 401; tests/api/test_model_switch.py moves models)."""
    api = ApiSettings(rate_limit_per_minute=1_000_000, admin_api_key="never-sent")
    with served_in_thread(
        create_app(api_settings(db_settings, model_server, redis_flushed, api=api))
    ) as base_url:
        yield base_url


@pytest.fixture
def live_api_with_key(
    db_settings: DatabaseSettings, model_server: TritonServer, redis_flushed: str
) -> Iterator[str]:
    """An API key configured, and requests that never present it."""
    api = ApiSettings(internal_api_key=API_KEY, rate_limit_per_minute=1_000_000)
    with served_in_thread(
        create_app(api_settings(db_settings, model_server, redis_flushed, api=api))
    ) as base_url:
        yield base_url


def test_the_fuzzed_document_is_the_served_one(live_api: str) -> None:
    served = httpx.get(f"{live_api}/schema/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == DOCUMENT


FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        # One served app and one loaded store per operation, shared by its cases on purpose.
        HealthCheck.function_scoped_fixture,
    ],
)


def _fuzz(case: schemathesis.Case[Any], base_url: str) -> None:
    CASES[case.operation.label] += 1
    assert_plain_words(case, case.call_and_validate(base_url=base_url))


# What no answer may show: a regular expression, msgspec's wording ("Expected `str` ..."), a type
# or exception class name, a traceback.
NOT_PLAIN = re.compile(
    r"regex|Expected `|`(?:int|str|float|bool|object|array|null)`|Traceback \(|File \"|"
    r"\b[A-Z]\w*(?:Error|Exception)\b|NoneType|<class "
)


def assert_plain_words(case: schemathesis.Case[Any], response: Any) -> None:
    """Every error answer, whatever the fuzzer sent, reads as plain words; the check ignores what
    the request itself carried (an answer may quote the value it refuses)."""
    if response.status_code < 400 or not response.content:
        return
    sent = " ".join(str(part) for part in (case.path_parameters, case.query, case.body))
    found = {match.group(0) for match in NOT_PLAIN.finditer(response.text)}
    assert not {text for text in found if text not in sent}, (response.status_code, response.text)


@pytest.fixture(scope="module", autouse=True)
def cases_report(pytestconfig: pytest.Config) -> Iterator[None]:
    """How many cases each operation ran, in the terminal summary (the docs quote it)."""
    yield
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not CASES:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\nschemathesis: {sum(CASES.values())} cases")
        for label, count in sorted(CASES.items()):
            reporter.write_line(f"  {count:5d}  {label}")


@schema.parametrize()
@FUZZ_SETTINGS
def test_the_api_keeps_its_contract(case: schemathesis.Case[Any], live_api: str) -> None:
    _fuzz(case, live_api)


@schema.include(path_regex="^/api/").parametrize()
@settings(FUZZ_SETTINGS, max_examples=5)
def test_with_a_key_every_api_route_documents_its_401(
    case: schemathesis.Case[Any], live_api_with_key: str
) -> None:
    """What a deployment with a key answers a caller without one is documented: the status, its
    media type and body. (Acceptance, methods and `Allow` are the unkeyed run's checks: routing
    answers 405 and OPTIONS before authentication, so they do not change with a key.)"""
    CASES[f"{case.operation.label} (key configured, none sent)"] += 1
    response = case.call(base_url=live_api_with_key)
    assert_plain_words(case, response)
    if response.request.method == case.operation.method.upper():
        assert response.status_code == 401, response.text
    case.validate_response(
        response,
        checks=[
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            response_headers_conformance,
        ],
    )
