"""Bad input to the playback API is a 4xx with a JSON error, never a 500 (issue 9, item 9):
out-of-range times, export bodies that are not an object of two ISO strings, and Range
headers with digits that are not ASCII."""
import json

import pytest

from recordings.models import ClipExport
from tests.test_recording_api import RANGE, recorded

pytestmark = pytest.mark.django_db

# Times Python parses but cannot compute with, or that fall outside what can be recorded.
OUT_OF_RANGE = [
    {"end": "0001-01-01T00:00:00"},
    {"start": "0001-01-01T00:00:00", "end": "0001-01-01T00:30:00"},
    {"end": "0001-01-01T00:00:00+14:00"},
    {"start": "9999-12-31T23:00:00", "end": "9999-12-31T23:59:59.999999-14:00"},
    {"end": "9999-12-31T23:59:59"},
]


def assert_json_error(response, status=400):
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert isinstance(error, str) and error
    return error


@pytest.mark.parametrize("params", OUT_OF_RANGE)
def test_the_segment_list_answers_400_for_a_time_out_of_range(client, personas, acme_camera, params):
    client.force_login(personas["viewer"])
    assert_json_error(client.get(f"/api/devices/{acme_camera.id}/segments/", params))


@pytest.mark.parametrize("params", OUT_OF_RANGE)
def test_the_playlist_answers_400_for_a_time_out_of_range(client, personas, acme_camera, params):
    client.force_login(personas["viewer"])
    assert_json_error(client.get(f"/api/devices/{acme_camera.id}/playlist.m3u8", params))


def test_a_malformed_time_says_what_is_wrong_in_json(client, personas, acme_camera):
    client.force_login(personas["viewer"])
    error = assert_json_error(client.get(f"/api/devices/{acme_camera.id}/segments/", {"start": "yesterday"}))
    assert "ISO 8601" in error


@pytest.mark.parametrize("raw", [
    '{"start":1,"end":2}',
    '{"start":"2025-11-21T04:40:01Z","end":2}',
    '{"start":["2025-11-21T04:40:01Z"],"end":"2025-11-21T04:40:07Z"}',
    "NaN",
    '{"start":NaN,"end":"2025-11-21T04:40:07Z"}',
    '{"start":"2025-11-21T04:40:01Z","end":"2025-11-21T04:40:07Z","x":Infinity}',
    "[" * 100_000 + "]" * 100_000,
    '{"a":' * 50_000 + "1" + "}" * 50_000,
    "[]",
    '"2025-11-21T04:40:01Z"',
    "7",
    "null",
    '{"start":"0001-01-01T00:00:00","end":"0001-01-01T00:10:00"}',
    '{"end":"0001-01-01T00:00:00"}',
    "{not json",
    b"\xff\xfe",
])
def test_a_bad_export_body_is_a_400_and_creates_nothing(client, personas, acme_camera, raw):
    client.force_login(personas["operator"])
    response = client.post(f"/api/devices/{acme_camera.id}/exports/", raw, content_type="application/json")
    assert_json_error(response)
    assert not ClipExport.objects.exists()


def test_a_good_export_body_is_still_accepted(client, personas, acme_camera):
    client.force_login(personas["operator"])
    response = client.post(f"/api/devices/{acme_camera.id}/exports/",
                           json.dumps({"start": "2025-11-21T04:40:01Z", "end": "2025-11-21T04:40:07Z"}),
                           content_type="application/json")
    assert response.status_code == 202 and ClipExport.objects.count() == 1


# Range values Python's int() or str.isdigit() accept but RFC 9110 does not (DIGIT is ASCII 0-9).
NON_ASCII_RANGES = ["bytes=\u00b2-", "bytes=-\u00b2", "bytes=0-\u00b9", "bytes=\uff11\uff10-\uff12\uff10",
                    "bytes=\u0661-"]


@pytest.fixture
def archived(acme_camera):
    return recorded(acme_camera, count=1, frames=5)[0]


def whole_body(response):
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.parametrize("header", NON_ASCII_RANGES)
@pytest.mark.parametrize("name", ["video.mp4", "poster.jpg"])
def test_a_range_with_non_ascii_digits_is_ignored_and_the_whole_file_served(client, personas, archived, name,
                                                                           header):
    client.force_login(personas["viewer"])
    url = f"/media/segments/{archived.id}/{name}"
    whole = whole_body(client.get(url))
    response = client.get(url, HTTP_RANGE=header)
    assert response.status_code == 200 and "Content-Range" not in response
    assert whole_body(response) == whole


@pytest.mark.parametrize("header", NON_ASCII_RANGES)
def test_an_export_download_with_non_ascii_range_digits_is_served_whole(client, personas, acme_camera, archived,
                                                                       header):
    export = ClipExport.objects.create(device=acme_camera, start=archived.start, end=archived.end, state="done",
                                       storage_key=archived.storage_key, checksum=archived.checksum,
                                       bytes=archived.bytes)
    client.force_login(personas["operator"])
    response = client.get(f"/api/exports/{export.id}/download", HTTP_RANGE=header)
    assert response.status_code == 200 and len(whole_body(response)) == archived.bytes


def test_ascii_ranges_still_work_beside_them(client, personas, archived):
    client.force_login(personas["viewer"])
    response = client.get(f"/media/segments/{archived.id}/video.mp4", HTTP_RANGE="bytes=2-5")
    assert response.status_code == 206 and response["Content-Range"] == f"bytes 2-5/{archived.bytes}"


def test_the_outsider_still_gets_404_before_any_parsing(client, personas, acme_camera):
    client.force_login(personas["outsider"])
    assert client.get(f"/api/devices/{acme_camera.id}/segments/", {"end": "0001-01-01T00:00:00"}).status_code == 404
    assert client.post(f"/api/devices/{acme_camera.id}/exports/", "NaN",
                       content_type="application/json").status_code == 404
    assert client.get(f"/api/devices/{acme_camera.id}/segments/", RANGE).status_code == 404


# -- the pure parser ------------------------------------------------------------------
def test_times_are_returned_in_utc_and_naive_ones_are_taken_as_utc():
    from datetime import datetime, timezone

    from recordings.params import parse_time

    assert parse_time("2026-11-21T06:00:00+02:00", "start") == datetime(2026, 11, 21, 4, tzinfo=timezone.utc)
    assert parse_time("2026-11-21T06:00:00", "start") == datetime(2026, 11, 21, 6, tzinfo=timezone.utc)
    assert parse_time("2026-11-21T06:00:00 02:00", "start").hour == 4  # an unencoded '+'
    assert parse_time(None, "start") is None and parse_time("", "start") is None


@pytest.mark.parametrize("raw", ["1969-12-31T23:59:59Z", "3000-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00",
                                 "9999-12-31T23:59:59-14:00", 1, 1.5, True, [], {}])
def test_times_outside_the_recordable_era_or_not_strings_are_bad_input(raw):
    from recordings.params import BadInput, parse_time

    with pytest.raises(BadInput):
        parse_time(raw, "end")
