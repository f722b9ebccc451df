"""Configuration: unknown keys, bad values and cross-field rules are errors that name the place."""

from __future__ import annotations

from pathlib import Path

import pytest

from truckcount.config import AppConfig, ConfigError, load_config, parse_config

DEMO = Path(__file__).resolve().parent.parent / "demo" / "km39.yaml"


def _cam(**over: object) -> dict[str, object]:
    cam: dict[str, object] = {"id": "cam1", "timezone": "Asia/Jakarta"}
    cam.update(over)
    return cam


def test_defaults_are_valid() -> None:
    cfg = AppConfig()
    assert cfg.detector.batch_size >= 1 and cfg.cameras == ()


def test_shipped_demo_config_loads_with_paths_resolved() -> None:
    cfg = load_config(DEMO)
    cam = cfg.camera("km39")
    assert cam.timezone == "Asia/Jakarta" and cam.start is not None
    assert cam.source is not None and Path(cam.source).is_absolute()
    assert cfg.storage.url.startswith("sqlite:////")
    assert [ln.directions.in_ for ln in cam.lines] == ["toward_camera"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"detector": {"batch_size": 0}}, "detector.batch_size: Input should be greater than"),
        ({"detector": {"precision": "fp16"}}, "detector.precision: String should match"),
        ({"cameras": [_cam(timezone="Mars/Olympus")]}, "unknown IANA time zone 'Mars/Olympus'"),
        ({"cameras": [_cam(start="2021-11-15T13:17:09")]}, "needs a UTC offset"),
        ({"cameras": [_cam(source="ftp://host/cam.mp4")]}, "unsupported URL scheme 'ftp'"),
        ({"cameras": [_cam(lines=[{"a": [0, 0.5], "b": [0, 0.5]}])]}, "same point"),
        (
            {"cameras": [_cam(lines=[{"a": [0, 1.5], "b": [1, 0.5]}])]},
            r"expected coordinates in \[0, 1\]",
        ),
        ({"tracker": {"low_threshold": 0.6, "high_threshold": 0.5}}, "must not exceed"),
        ({"tracker": {"max_size_change": 0.5}}, r"0 \(off\) or a factor >= 1"),
        ({"cameras": [_cam(), _cam()]}, "camera 'cam1' is configured twice"),
        (
            {"cameras": [_cam(lines=[{"id": "a"}, {"id": "a", "a": [0, 0.1], "b": [1, 0.1]}])]},
            r"camera 'cam1': duplicate line ids \['a'\]",
        ),
        (
            {"cameras": [_cam(lines=[{"directions": {"in": "x", "out": "x"}}])]},
            "camera 'cam1' line 'line': both directions are named 'x'",
        ),
        (
            {"cascade": {"use_presence": True}, "presence": {"weights": None}},
            r"cascade.use_presence needs presence.weights",
        ),
        (
            {"service": {"watch_pattern": "{camera}.mp4"}},
            r"service.watch_pattern: pattern '\{camera\}.mp4' lacks the year \(%Y or %y\), "
            r"month .*, day \(%d\), hour",
        ),
        (
            {"cameras": [_cam(filename_pattern="cam1_%Y%m%d.mp4")]},
            r"filename_pattern: pattern 'cam1_%Y%m%d.mp4' lacks the hour \(%H, or %I with %p\)",
        ),
    ],
)
def test_invalid_configs_are_rejected(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_config(raw)
    assert "Value error" not in str(err.value), "the message is ours, without pydantic's prefix"


@pytest.mark.parametrize(
    "source",
    [
        "rtsp://u:pw@cam.local/s1",
        "HTTPS://cam/mjpeg",
        "srt://cam:9000",
        "file:///v/a.mp4",
        "/dev/video0",
        "recordings/a.mp4",
        "C:/videos/a.mp4",
    ],
)
def test_sources_the_readers_handle_are_accepted(source: str) -> None:
    assert parse_config({"cameras": [_cam(source=source)]}).cameras[0].source == source


@pytest.mark.parametrize(
    "pattern", ["{camera}_%Y%m%d_%H%M%S.mp4", "cam-%y-%b-%d %I%p.mkv", "%Y-%m-%dT%H:%M:%S%z.ts"]
)
def test_patterns_that_date_a_recording_are_accepted(pattern: str) -> None:
    assert parse_config({"service": {"watch_pattern": pattern}}).service.watch_pattern == pattern


def test_unknown_camera_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown camera 'nope' \(configured: cam1\)"):
        parse_config({"cameras": [_cam()]}).camera("nope")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config .*missing\.yaml"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at top level, got list"):
        load_config(listy)


def test_digest_ignores_storage_but_not_lines() -> None:
    a = parse_config({"cameras": [_cam()]})
    b = parse_config({"cameras": [_cam()], "storage": {"url": "sqlite:///other.db"}})
    c = parse_config({"cameras": [_cam(lines=[{"a": [0, 0.3], "b": [1, 0.3]}])]})
    assert a.digest() == b.digest() != c.digest()
