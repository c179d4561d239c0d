"""The wall socket (/ws/wall/<org>/), the browser publisher (/ws/publish/<id>/) and GET /api/devices/,
as owner, operator, viewer, outsider and anonymous."""
import pytest
from channels.db import database_sync_to_async
from django.test import Client

from accounts.models import DeviceGrant, Membership
from streams import broadcast, groups
from sightline_agent.protocol import Close
from tests.live_helpers import (
    HELLO,
    browser_socket,
    connect_device,
    expect_close,
    jpeg_frame,
    receive_binary,
    receive_json_of_type,
    receive_nothing_but_pings,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


@pytest.fixture
def token(device_token):
    return device_token


# -- wall ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("role", ["owner", "operator", "viewer"])
async def test_members_get_the_device_list_then_presence_events(sessions, acme, acme_camera, token, role):
    wall = browser_socket(f"/ws/wall/{acme.pk}/", sessions[role])
    assert (await wall.connect())[0]
    listing = await receive_json_of_type(wall, "devices")
    assert listing["devices"] == [{"id": str(acme_camera.pk), "name": "Front door", "online": False,
                                   "last_seen": None, "location": "Gate", "expected_media": "jpeg"}]
    device, _ = await connect_device(token)
    event = await receive_json_of_type(wall, "presence")
    assert event["device_id"] == str(acme_camera.pk) and event["online"] is True
    await device.disconnect()
    assert (await receive_json_of_type(wall, "presence"))["online"] is False
    await wall.disconnect()


@pytest.mark.asyncio
async def test_a_device_added_after_the_wall_opened_appears_on_it(sessions, acme, acme_camera):
    from streams.models import Device

    wall = browser_socket(f"/ws/wall/{acme.pk}/", sessions["viewer"])
    assert (await wall.connect())[0]
    assert len((await receive_json_of_type(wall, "devices"))["devices"]) == 1
    added = await database_sync_to_async(Device.objects.create)(organisation=acme, name="New camera")
    new_token = await database_sync_to_async(lambda: added.issue_token()[0])()
    device, _ = await connect_device(new_token)
    listing = await receive_json_of_type(wall, "devices")
    assert {d["name"] for d in listing["devices"]} == {"Front door", "New camera"}
    event = await receive_json_of_type(wall, "presence")
    assert event["device_id"] == str(added.pk) and event["online"] is True
    await device.disconnect()
    await wall.disconnect()


@pytest.mark.asyncio
async def test_a_restricted_member_is_not_told_of_devices_outside_their_grants(sessions, acme, acme_camera, token):
    from accounts.models import DeviceGrant, Membership
    from streams.models import Device

    def restrict():
        membership = Membership.objects.get(user__username="carol", organisation=acme)
        membership.restricted_to_grants = True
        membership.save()
        other = Device.objects.create(organisation=acme, name="Granted")
        DeviceGrant.objects.create(membership=membership, device=other)

    await database_sync_to_async(restrict)()
    wall = browser_socket(f"/ws/wall/{acme.pk}/", sessions["viewer"])
    assert (await wall.connect())[0]
    assert [d["name"] for d in (await receive_json_of_type(wall, "devices"))["devices"]] == ["Granted"]
    device, _ = await connect_device(token)  # Front door: not granted
    await receive_nothing_but_pings(wall, 0.5)
    await device.disconnect()
    await wall.disconnect()


@pytest.mark.asyncio
async def test_the_wall_gets_stream_stats(sessions, acme, acme_camera, token):
    wall = browser_socket(f"/ws/wall/{acme.pk}/", sessions["viewer"])
    assert (await wall.connect())[0]
    device, _ = await connect_device(token)
    await device.send_to(bytes_data=jpeg_frame(1))
    stats = await receive_json_of_type(wall, "stats", timeout=10)
    assert stats["device_id"] == str(acme_camera.pk) and "fps" in stats and "bitrate_bps" in stats
    await device.disconnect()
    await wall.disconnect()


@pytest.mark.asyncio
async def test_the_outsider_cannot_open_another_organisations_wall_and_hears_nothing(sessions, acme, acme_camera, token):
    wall = browser_socket(f"/ws/wall/{acme.pk}/", sessions["outsider"])
    assert (await wall.connect())[0]
    await expect_close(wall, Close.NOT_FOUND)
    device, _ = await connect_device(token)
    assert await wall.receive_nothing(timeout=0.3)
    await device.disconnect()


@pytest.mark.asyncio
async def test_the_outsiders_own_wall_hears_nothing_of_acme(sessions, globex, acme_camera, token):
    wall = browser_socket(f"/ws/wall/{globex.pk}/", sessions["outsider"])
    assert (await wall.connect())[0]
    await receive_json_of_type(wall, "devices")
    device, _ = await connect_device(token)
    await device.send_to(bytes_data=jpeg_frame(1))
    await receive_nothing_but_pings(wall, timeout=0.5)
    await device.disconnect()
    await wall.disconnect()


@pytest.mark.asyncio
async def test_an_anonymous_wall_is_refused_with_4401(acme):
    wall = browser_socket(f"/ws/wall/{acme.pk}/")
    assert (await wall.connect())[0]
    await expect_close(wall, Close.NOT_AUTHENTICATED)


@pytest.mark.asyncio
async def test_a_wall_from_a_foreign_origin_is_refused_with_4403(sessions, acme):
    wall = browser_socket(f"/ws/wall/{acme.pk}/", sessions["owner"], origin=b"https://evil.example")
    assert (await wall.connect())[0]
    await expect_close(wall, Close.FORBIDDEN)


# -- browser publisher -----------------------------------------------------------------------------


async def publish(device, sessionid, **kwargs):
    socket = browser_socket(f"/ws/publish/{device.pk}/", sessionid, **kwargs)
    assert (await socket.connect())[0]
    return socket


@pytest.mark.asyncio
@pytest.mark.parametrize("role", ["owner", "operator"])
async def test_owners_and_operators_may_publish_from_the_browser_as_the_device(sessions, acme_camera, role):
    socket = await publish(acme_camera, sessions[role])
    await socket.send_json_to(HELLO)
    welcome = await receive_json_of_type(socket, "welcome")
    assert welcome["device_id"] == str(acme_camera.pk)
    assert await broadcast.redis_client().exists(groups.presence_key(acme_camera.pk))
    await socket.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("role, code", [("viewer", Close.FORBIDDEN), ("outsider", Close.NOT_FOUND)])
async def test_viewers_and_outsiders_may_not_publish(sessions, acme_camera, role, code):
    socket = await publish(acme_camera, sessions[role])
    await expect_close(socket, code)


@pytest.mark.asyncio
async def test_publishing_as_a_disabled_device_is_refused_with_4003(sessions, acme_camera):
    from streams.models import Device

    await database_sync_to_async(Device.objects.filter(pk=acme_camera.pk).update)(enabled=False)
    await expect_close(await publish(acme_camera, sessions["operator"]), Close.DEVICE_DISABLED)


@pytest.mark.asyncio
async def test_an_anonymous_publisher_is_refused_with_4401(acme_camera):
    await expect_close(await publish(acme_camera, None), Close.NOT_AUTHENTICATED)


@pytest.mark.asyncio
async def test_a_publisher_from_a_foreign_origin_is_refused_with_4403(sessions, acme_camera):
    await expect_close(await publish(acme_camera, sessions["owner"], origin=b"http://evil.example"), Close.FORBIDDEN)


@pytest.mark.asyncio
async def test_publishing_to_a_connected_device_is_refused_with_4014_and_the_camera_keeps_streaming(
        sessions, acme_camera, token):
    camera, _ = await connect_device(token)
    viewer = browser_socket(f"/ws/view/{acme_camera.pk}/", sessions["viewer"])
    assert (await viewer.connect())[0]
    await receive_json_of_type(viewer, "welcome")
    await wait_for(lambda: str(acme_camera.pk) in broadcast.get_hub().feeds)

    error = await expect_close(await publish(acme_camera, sessions["operator"]), Close.DEVICE_BUSY)
    assert "connected" in error["message"] and "takeover" in error["message"]
    # The camera was not replaced: no 4012, and its frames still reach the viewer.
    await receive_nothing_but_pings(camera)
    frame = jpeg_frame(1, b"\xff\xd8still the camera\xff\xd9")
    await camera.send_to(bytes_data=frame)
    assert await receive_binary(viewer) == frame
    await viewer.disconnect()
    await camera.disconnect()


@pytest.mark.asyncio
async def test_a_confirmed_takeover_replaces_the_camera_with_4012_and_logs_the_user(
        sessions, bob, acme_camera, token, caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="streams.consumers.device")
    camera, _ = await connect_device(token)
    browser = browser_socket(f"/ws/publish/{acme_camera.pk}/?takeover=1", sessions["operator"])
    assert (await browser.connect())[0]
    await browser.send_json_to(HELLO)
    await receive_json_of_type(browser, "welcome")
    await expect_close(camera, Close.REPLACED)
    taken = [r.getMessage() for r in caplog.records if "taken over" in r.getMessage()]
    assert taken == [f"device {acme_camera.pk} taken over from the browser by user bob (id {bob.pk})"], taken
    await camera.disconnect()
    await browser.disconnect()


@pytest.mark.asyncio
async def test_publishing_to_an_offline_device_needs_no_takeover_and_logs_none(sessions, acme_camera, caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="streams.consumers.device")
    socket = await publish(acme_camera, sessions["owner"])
    await socket.send_json_to(HELLO)
    await receive_json_of_type(socket, "welcome")
    assert "taken over" not in caplog.text
    await socket.disconnect()


def test_only_an_explicit_takeover_flag_counts_as_confirmed():
    from streams.consumers.device import busy_refusal, takeover_confirmed

    assert takeover_confirmed(b"takeover=1") and takeover_confirmed(b"a=b&takeover=true")
    assert not takeover_confirmed(b"") and not takeover_confirmed(b"takeover=0") and not takeover_confirmed(b"takeover")
    assert busy_refusal(online=True, confirmed=False)[0] == Close.DEVICE_BUSY == 4014
    assert busy_refusal(online=True, confirmed=True) is None and busy_refusal(online=False, confirmed=False) is None


# -- GET /api/devices/ --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "operator", "viewer"])
def test_the_device_api_lists_the_organisations_devices(personas, acme_camera, globex_camera, role):
    client = Client()
    client.force_login(personas[role])
    response = client.get("/api/devices/")
    assert response.status_code == 200
    assert response.json() == {"devices": [{"id": str(acme_camera.pk), "name": "Front door", "online": False,
                                            "last_seen": None, "location": "Gate", "expected_media": "jpeg"}]}


def test_the_device_api_shows_the_outsider_only_their_own(personas, acme, globex_camera):
    client = Client()
    client.force_login(personas["outsider"])
    assert [d["id"] for d in client.get("/api/devices/").json()["devices"]] == [str(globex_camera.pk)]
    assert client.get(f"/api/devices/?organisation={acme.pk}").status_code == 404
    assert client.get("/api/devices/?organisation=bogus").status_code == 404


def test_the_device_api_refuses_anonymous_users():
    assert Client().get("/api/devices/").status_code == 401


def test_a_restricted_member_sees_only_granted_devices(personas, acme, acme_camera):
    from streams.models import Device

    carol = personas["viewer"]
    back = Device.objects.create(organisation=acme, name="Back yard")
    membership = Membership.objects.get(user=carol, organisation=acme)
    membership.restricted_to_grants = True
    membership.save()
    DeviceGrant.objects.create(membership=membership, device=back)
    client = Client()
    client.force_login(carol)
    assert [d["name"] for d in client.get("/api/devices/").json()["devices"]] == ["Back yard"]


@pytest.mark.asyncio
async def test_the_device_api_reports_a_connected_device_online(personas, acme_camera, token):
    from asgiref.sync import sync_to_async

    device, _ = await connect_device(token)

    def fetch():
        client = Client()
        client.force_login(personas["owner"])
        return client.get("/api/devices/").json()["devices"][0]

    listed = await sync_to_async(fetch)()
    assert listed["online"] is True and listed["last_seen"]
    await device.disconnect()


def test_metrics_are_served_to_local_scrapers_and_not_to_strangers(client):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200 and b"sightline_ingest_frames_total" in response.content
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403


def test_metrics_are_refused_to_organisation_owners_from_elsewhere_and_served_to_superusers(personas, django_user_model):
    # Owners are staff (for the admin), but the metrics' labels name every organisation's devices.
    mallory = personas["outsider"]
    mallory.is_staff = True
    mallory.save()
    owner = Client()
    owner.force_login(mallory)
    assert owner.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("root", password="x"))
    assert admin.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200
