"""The wall socket reads an organisation id in any spelling a UUID has (upper-case, urn:uuid:,
braces, no hyphens) and then hears that organisation's events; anything else, or another
organisation's id in any spelling, is 4404 (issue 9, item 9)."""
import pytest

from sightline_agent.protocol import Close
from tests.live_helpers import (
    browser_socket,
    connect_device,
    expect_close,
    receive_json_of_type,
    receive_nothing_but_pings,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_state")]

SPELLINGS = {
    "upper-case": lambda pk: str(pk).upper(),
    "urn": lambda pk: f"urn:uuid:{pk}",
    "braces": lambda pk: f"{{{pk}}}",
    "no hyphens": lambda pk: pk.hex,
}


@pytest.mark.asyncio
@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_a_wall_opened_with_another_spelling_of_the_id_receives_presence_events(
        sessions, acme, acme_camera, device_token, spelling):
    wall = browser_socket(f"/ws/wall/{SPELLINGS[spelling](acme.pk)}/", sessions["viewer"])
    assert (await wall.connect())[0]
    assert [d["id"] for d in (await receive_json_of_type(wall, "devices"))["devices"]] == [str(acme_camera.pk)]
    device, _ = await connect_device(device_token)
    event = await receive_json_of_type(wall, "presence")
    assert event["device_id"] == str(acme_camera.pk) and event["online"] is True
    await device.disconnect()
    await wall.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_another_organisations_id_in_any_spelling_is_4404_and_hears_nothing(
        sessions, acme, acme_camera, device_token, spelling):
    outsider = browser_socket(f"/ws/wall/{SPELLINGS[spelling](acme.pk)}/", sessions["outsider"])
    assert (await outsider.connect())[0]
    await expect_close(outsider, Close.NOT_FOUND)
    device, _ = await connect_device(device_token)
    await receive_nothing_but_pings(outsider, timeout=0.3)
    await device.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("raw", ["urn:uuid:not-a-uuid", "{}", "org.acme", "ÄÖ", "0" * 33])
async def test_an_id_that_is_no_uuid_is_4404(sessions, raw):
    wall = browser_socket(f"/ws/wall/{raw}/", sessions["owner"])
    assert (await wall.connect())[0]
    await expect_close(wall, Close.NOT_FOUND)


def test_every_spelling_becomes_the_canonical_id_groups_are_named_with(acme):
    from streams.consumers.wall import canonical_organisation_id

    for spell in SPELLINGS.values():
        assert canonical_organisation_id(spell(acme.pk)) == str(acme.pk)
    assert canonical_organisation_id("nonsense") is None
