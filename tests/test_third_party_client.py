"""What a client written from docs/protocol.md alone needs (issue 9, item 14): the organisation
ids it may use (GET /api/organisations/) and, in the viewer's welcome, the limits it must
accept and respect."""
import pytest

from accounts.models import Membership, Role
from sightline_agent import protocol
from streams import broadcast
from tests.live_helpers import browser_socket, connect_device, receive_binary, receive_json_of_type, wait_for


@pytest.mark.django_db
def test_a_member_learns_the_ids_names_and_roles_of_their_organisations_only(client, personas, acme, globex):
    Membership.objects.create(organisation=globex, user=personas["viewer"], role=Role.VIEWER)
    client.force_login(personas["viewer"])
    listed = client.get("/api/organisations/").json()["organisations"]
    assert listed == [
        {"id": str(acme.pk), "name": "Acme", "slug": "acme", "role": "viewer", "current": True},
        {"id": str(globex.pk), "name": "Globex", "slug": "globex", "role": "viewer", "current": False},
    ]
    client.force_login(personas["outsider"])
    assert [o["id"] for o in client.get("/api/organisations/").json()["organisations"]] == [str(globex.pk)]


@pytest.mark.django_db
def test_the_organisation_list_needs_a_session(client):
    response = client.get("/api/organisations/")
    assert response.status_code == 401 and response.json() == {"error": "not authenticated"}
    assert client.post("/api/organisations/").status_code == 405


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_state")
async def test_the_viewer_welcome_states_the_limits_and_the_largest_frame_fits_them(
        settings, sessions, acme_camera, device_token):
    settings.SIGHTLINE = {**settings.SIGHTLINE, "MAX_FRAME_BYTES": 4096, "MAX_MESSAGE_BYTES": 1024}
    viewer = browser_socket(f"/ws/view/{acme_camera.pk}/", sessions["viewer"])
    assert (await viewer.connect())[0]
    welcome = await receive_json_of_type(viewer, "welcome")
    limits = welcome["limits"]
    assert limits == {"max_frame_bytes": 4096, "max_binary_message_bytes": 4096 + 24, "max_text_bytes": 65536,
                      "max_messages_per_second": 20, "burst_seconds": 2.0,
                      "heartbeat_seconds": settings.SIGHTLINE["HEARTBEAT_SECONDS"],
                      "dead_after_seconds": settings.SIGHTLINE["DEAD_AFTER_SECONDS"],
                      "command_timeout_seconds": settings.SIGHTLINE["COMMAND_TIMEOUT_SECONDS"],
                      "max_pending_commands": 8}
    await wait_for(lambda: str(acme_camera.pk) in broadcast.get_hub().feeds)
    device, device_welcome = await connect_device(device_token)
    largest = bytes(range(256)) * 16  # exactly max_frame_bytes, sent in five chunks of max_message_bytes
    for part in protocol.encode_frame(protocol.KIND_JPEG, largest, 1, 1_763_700_000_000_000, keyframe=True,
                                      max_message_bytes=device_welcome["limits"]["max_message_bytes"]):
        await device.send_to(bytes_data=part)
    message = await receive_binary(viewer)
    assert len(message) == limits["max_binary_message_bytes"] and message[24:] == largest
    await device.disconnect()
    await viewer.disconnect()
