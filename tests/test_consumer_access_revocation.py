"""Revoking a person reaches their open sockets (4013 ACCESS_REVOKED): a membership deleted,
a role lowered, a grant removed, a user deactivated, a password changed, a session logged
out. Sockets the change does not affect -- another user's, or an access that did not
shrink -- stay open."""
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import DeviceGrant, Membership, Role
from streams import broadcast
from sightline_agent.protocol import Close
from tests.live_helpers import (
    HELLO,
    browser_socket,
    expect_close,
    receive_json_of_type,
    receive_nothing_but_pings,
    wait_for,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]


async def open_socket(path: str, sessionid: str, first: str):
    socket = browser_socket(path, sessionid)
    assert (await socket.connect())[0]
    await receive_json_of_type(socket, first)
    return socket


async def open_viewer(device, sessionid):
    viewer = await open_socket(f"/ws/view/{device.pk}/", sessionid, "welcome")
    await wait_for(lambda: str(device.pk) in broadcast.get_hub().feeds)
    return viewer


async def open_wall(organisation, sessionid):
    return await open_socket(f"/ws/wall/{organisation.pk}/", sessionid, "devices")


async def open_publisher(device, sessionid):
    publisher = browser_socket(f"/ws/publish/{device.pk}/", sessionid)
    assert (await publisher.connect())[0]
    await publisher.send_json_to(HELLO)
    await receive_json_of_type(publisher, "welcome")
    return publisher


async def still_open(socket) -> None:
    """Nothing but pings arrived, and the socket still answers."""
    await receive_nothing_but_pings(socket, 0.3)
    await socket.send_json_to({"type": "ping", "id": 7, "ts": 1})
    assert (await receive_json_of_type(socket, "pong"))["id"] == 7


def change_membership(username: str, organisation, **fields) -> None:
    membership = Membership.objects.get(user__username=username, organisation=organisation)
    for name, value in fields.items():
        setattr(membership, name, value)
    membership.save()


async def test_deleting_a_membership_closes_that_members_viewer_and_wall_and_no_one_elses(
    sessions, acme, acme_camera
):
    viewer = await open_viewer(acme_camera, sessions["viewer"])
    wall = await open_wall(acme, sessions["viewer"])
    others_viewer = await open_viewer(acme_camera, sessions["owner"])
    others_wall = await open_wall(acme, sessions["operator"])

    await database_sync_to_async(Membership.objects.filter(user__username="carol").delete)()

    error = await expect_close(viewer, Close.ACCESS_REVOKED)
    assert "access changed" in error["message"]
    await expect_close(wall, Close.ACCESS_REVOKED)
    await still_open(others_viewer)
    await still_open(others_wall)
    await others_viewer.disconnect()
    await others_wall.disconnect()


async def test_lowering_an_operator_to_viewer_closes_their_publisher_and_controlling_viewer_but_not_their_wall(
    sessions, acme, acme_camera
):
    publisher = await open_publisher(acme_camera, sessions["operator"])
    viewer = await open_viewer(acme_camera, sessions["operator"])
    wall = await open_wall(acme, sessions["operator"])
    owners_viewer = await open_viewer(acme_camera, sessions["owner"])

    await database_sync_to_async(change_membership)("bob", acme, role=Role.VIEWER)

    await expect_close(publisher, Close.ACCESS_REVOKED)
    await expect_close(viewer, Close.ACCESS_REVOKED)  # its welcome said can_control: now stale
    await still_open(wall)
    await still_open(owners_viewer)
    # Reconnecting gets what is left: watching without control.
    again = browser_socket(f"/ws/view/{acme_camera.pk}/", sessions["operator"])
    assert (await again.connect())[0]
    welcome = await receive_json_of_type(again, "welcome")
    assert welcome["role"] == "viewer" and welcome["can_control"] is False
    for socket in (again, wall, owners_viewer):
        await socket.disconnect()


async def test_a_role_change_that_takes_nothing_away_leaves_the_sockets_open(sessions, acme, acme_camera):
    viewer = await open_viewer(acme_camera, sessions["viewer"])
    wall = await open_wall(acme, sessions["viewer"])

    await database_sync_to_async(change_membership)("carol", acme, role=Role.OPERATOR)

    await still_open(viewer)
    await still_open(wall)
    await viewer.disconnect()
    await wall.disconnect()


async def test_removing_a_grant_closes_the_viewer_of_that_device_and_updates_the_wall(sessions, acme, acme_camera):
    from streams.models import Device

    def restrict():
        membership = Membership.objects.get(user__username="carol", organisation=acme)
        membership.restricted_to_grants = True
        membership.save()
        other = Device.objects.create(organisation=acme, name="Still granted")
        DeviceGrant.objects.create(membership=membership, device=acme_camera)
        DeviceGrant.objects.create(membership=membership, device=other)
        return other

    other = await database_sync_to_async(restrict)()
    viewer = await open_viewer(acme_camera, sessions["viewer"])
    other_viewer = await open_viewer(other, sessions["viewer"])
    wall = await open_wall(acme, sessions["viewer"])

    await database_sync_to_async(DeviceGrant.objects.filter(device=acme_camera).delete)()

    await expect_close(viewer, Close.ACCESS_REVOKED)
    listing = await receive_json_of_type(wall, "devices")
    assert [d["name"] for d in listing["devices"]] == ["Still granted"]
    await still_open(wall)
    await still_open(other_viewer)
    await wall.disconnect()
    await other_viewer.disconnect()


async def test_deactivating_a_user_closes_their_sockets_and_no_one_elses(sessions, acme, acme_camera):
    viewer = await open_viewer(acme_camera, sessions["viewer"])
    wall = await open_wall(acme, sessions["viewer"])
    others_viewer = await open_viewer(acme_camera, sessions["operator"])

    def deactivate():
        carol = get_user_model().objects.get(username="carol")
        carol.is_active = False
        carol.save()

    await database_sync_to_async(deactivate)()

    error = await expect_close(viewer, Close.ACCESS_REVOKED)
    assert "log in again" in error["message"]
    await expect_close(wall, Close.ACCESS_REVOKED)
    await still_open(others_viewer)
    await others_viewer.disconnect()


async def test_changing_a_password_closes_the_sockets_of_sessions_made_with_the_old_one(sessions, acme, acme_camera):
    viewer = await open_viewer(acme_camera, sessions["viewer"])
    publisher = await open_publisher(acme_camera, sessions["operator"])

    def change_password():
        carol = get_user_model().objects.get(username="carol")
        carol.set_password("a new and better password")
        carol.save()

    await database_sync_to_async(change_password)()

    await expect_close(viewer, Close.ACCESS_REVOKED)
    await still_open(publisher)
    await publisher.disconnect()


async def test_logging_out_closes_that_sessions_sockets_only(personas, acme, acme_camera):
    def two_sessions():
        clients = [Client(), Client()]
        for client in clients:
            client.force_login(personas["viewer"])
        return clients

    leaving, staying = await database_sync_to_async(two_sessions)()
    leaving_viewer = await open_viewer(acme_camera, leaving.cookies["sessionid"].value)
    staying_viewer = await open_viewer(acme_camera, staying.cookies["sessionid"].value)

    await database_sync_to_async(leaving.post)("/logout/")

    error = await expect_close(leaving_viewer, Close.ACCESS_REVOKED)
    assert "logged out" in error["message"]
    await still_open(staying_viewer)
    await staying_viewer.disconnect()


async def test_a_change_rolled_back_closes_nothing(sessions, acme, acme_camera):
    from django.db import transaction

    viewer = await open_viewer(acme_camera, sessions["viewer"])

    def delete_then_roll_back():
        try:
            with transaction.atomic():
                Membership.objects.filter(user__username="carol").delete()
                raise RuntimeError("roll back")
        except RuntimeError:
            pass

    await database_sync_to_async(delete_then_roll_back)()
    await still_open(viewer)
    await viewer.disconnect()
