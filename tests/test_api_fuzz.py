"""Schema-driven fuzzing: requests generated from the OpenAPI schema never get a 5xx answer.

Schemathesis reads ``/openapi.json`` of the app under test and sends valid and invalid
parameter combinations to every operation; any server error fails the test. The app serves a
real SQLite database with a camera, a run, crossings and coverage.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from truckcount.api import ApiSettings, create_app
from truckcount.config import AppConfig, CameraConfig
from truckcount.storage import (
    add_coverage,
    add_crossings,
    begin_run,
    ensure_camera,
    finish_run,
    open_database,
)
from truckcount.types import Crossing, Direction, RunInfo, VehicleClass

pytestmark = pytest.mark.slow  # hundreds of generated requests

T0 = datetime(2024, 3, 30, 22, 0, tzinfo=UTC)  # the night Berlin moves its clocks forward
EXAMPLES = 60


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The OpenAPI schema of an app over a database with a day of data for camera ``cam1``."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/counts.db"
    engine = open_database(url)
    ensure_camera(engine, "cam1", "Europe/Berlin")
    begin_run(engine, RunInfo("r1", "cam1", "a.mp4", "m1", "cfg", T0))
    add_crossings(
        engine,
        [
            Crossing("cam1", "l1", i, VehicleClass.TRUCK, Direction.OUT, "out", t, 0.8, "m1", "r1")
            for i, t in enumerate(T0 + timedelta(minutes=7 * k) for k in range(40))
        ],
    )
    add_coverage(engine, "r1", T0, T0 + timedelta(hours=6), frames_analysed=100)
    finish_run(
        engine,
        "r1",
        status="complete",
        frames_analysed=100,
        media_start=T0,
        media_end=T0 + timedelta(hours=6),
    )
    cfg = AppConfig(cameras=(CameraConfig(id="cam1", timezone="Europe/Berlin"),))
    app = create_app(ApiSettings(url, cfg), engine)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


CASES = [
    ("GET /counts", GenerationMode.POSITIVE),
    ("GET /counts", GenerationMode.NEGATIVE),
    ("GET /cameras", GenerationMode.POSITIVE),
    ("GET /health", GenerationMode.POSITIVE),
    ("GET /metrics", GenerationMode.POSITIVE),
    ("GET /jobs", GenerationMode.POSITIVE),
]


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_no_request_gets_a_server_error(api_schema: Any, label: str, mode: GenerationMode) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is missing from the schema"
    seen: list[int] = []

    @given(operation.as_strategy(generation_mode=mode), st.booleans())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: Any, known_camera: bool) -> None:
        if known_camera and isinstance(case.query, dict) and "camera" in case.query:
            case.query["camera"] = "cam1"  # reach the bucket code, not only the 404
        response = case.call()
        seen.append(response.status_code)
        not_a_server_error_check(case, response)

    fuzz()
    assert seen, "no request was sent"
    if label == "GET /counts" and mode is GenerationMode.POSITIVE:
        assert 200 in seen, "the fuzzing never reached a successful query"


def not_a_server_error_check(case: Any, response: Any) -> None:
    """Fail with the request that got a 5xx, so it can be replayed."""
    assert response.status_code < 500, (
        f"{case.method} {case.path} query={case.query} -> {response.status_code}: "
        f"{response.text[:300]}"
    )
