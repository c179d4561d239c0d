"""Portal pages through the Django test client, as every persona (and the outsider)."""
import json
import re

import pytest
from django.urls import reverse

from accounts.middleware import SESSION_KEY
from accounts.models import DeviceGrant, Membership, Role

pytestmark = pytest.mark.django_db

CONTROL_MARKUP = ('id="controls"', 'id="ctl-brightness"', "command-result")
EXPORT_MARKUP = ('id="export"', "Export MP4")


def page_config(response) -> dict:
    match = re.search(r'<script id="page-config" type="application/json">(.*?)</script>', response.content.decode(), re.S)
    assert match, "page has no page-config"
    return json.loads(match.group(1))


@pytest.fixture
def login(client):
    def as_user(user):
        client.force_login(user)
        return client
    return as_user


def test_pages_redirect_anonymous_visitors_to_login(client, acme_camera):
    for url in (reverse("frontend:wall"), reverse("frontend:device", args=[acme_camera.pk]),
                reverse("frontend:recordings", args=[acme_camera.pk]), reverse("frontend:publish")):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")


def test_login_page_renders_and_logs_in(client, carol):
    response = client.get("/login/")
    assert response.status_code == 200
    assert b'name="username"' in response.content and b'name="password"' in response.content
    response = client.post("/login/", {"username": "carol", "password": "password"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_login_with_a_wrong_password_shows_an_error(client, carol):
    response = client.post("/login/", {"username": "carol", "password": "nope"})
    assert response.status_code == 200
    assert b"did not match" in response.content


def test_logout_is_a_post_and_ends_the_session(login, carol):
    client = login(carol)
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/").status_code == 302


def test_the_wall_shows_a_tile_per_device_of_the_current_organisation(login, personas, acme_camera, globex_camera):
    for persona in ("owner", "operator", "viewer"):
        response = login(personas[persona]).get("/")
        assert response.status_code == 200
        html = response.content.decode()
        assert f'data-device-id="{acme_camera.pk}"' in html
        assert str(globex_camera.pk) not in html
        config = page_config(response)
        assert [d["id"] for d in config["devices"]] == [str(acme_camera.pk)]
        assert config["organisationId"] == str(acme_camera.organisation_id)
        assert config["devicesUrl"] == f"/api/devices/?organisation={acme_camera.organisation_id}"


def test_the_outsiders_wall_shows_only_their_own_devices(login, personas, acme_camera, globex_camera):
    html = login(personas["outsider"]).get("/").content.decode()
    assert str(globex_camera.pk) in html
    assert str(acme_camera.pk) not in html


def test_device_page_renders_for_every_member(login, personas, acme_camera):
    for persona in ("owner", "operator", "viewer"):
        response = login(personas[persona]).get(reverse("frontend:device", args=[acme_camera.pk]))
        assert response.status_code == 200
        assert b'id="live"' in response.content
        assert page_config(response)["device"]["id"] == str(acme_camera.pk)


def test_a_viewer_gets_no_control_or_export_markup(login, carol, acme_camera):
    client = login(carol)
    device = client.get(reverse("frontend:device", args=[acme_camera.pk]))
    recordings = client.get(reverse("frontend:recordings", args=[acme_camera.pk]))
    for markup in CONTROL_MARKUP:
        assert markup not in device.content.decode()
    for markup in EXPORT_MARKUP:
        assert markup not in recordings.content.decode()
    assert page_config(device)["canControl"] is False
    assert page_config(recordings)["canExport"] is False
    assert page_config(recordings)["exportsUrl"] is None
    assert b'href="/publish/"' not in device.content


def test_operators_and_owners_get_controls_and_export(login, personas, acme_camera):
    for persona in ("owner", "operator"):
        client = login(personas[persona])
        device = client.get(reverse("frontend:device", args=[acme_camera.pk])).content.decode()
        recordings = client.get(reverse("frontend:recordings", args=[acme_camera.pk])).content.decode()
        assert all(markup in device for markup in CONTROL_MARKUP)
        assert all(markup in recordings for markup in EXPORT_MARKUP)
        assert 'href="/publish/"' in device


def test_the_outsider_gets_404_for_another_organisations_pages(login, mallory, acme_camera):
    client = login(mallory)
    for name in ("frontend:device", "frontend:recordings"):
        assert client.get(reverse(name, args=[acme_camera.pk])).status_code == 404


def test_an_unknown_device_is_the_same_404(login, mallory):
    client = login(mallory)
    assert client.get("/devices/00000000-0000-0000-0000-000000000000/").status_code == 404


def test_a_restricted_member_sees_only_granted_devices(login, django_user_model, acme, acme_camera):
    from streams.models import Device

    backyard = Device.objects.create(organisation=acme, name="Backyard")
    dave = django_user_model.objects.create_user(username="dave", password="password")
    membership = Membership.objects.create(organisation=acme, user=dave, role=Role.VIEWER, restricted_to_grants=True)
    DeviceGrant.objects.create(membership=membership, device=acme_camera)
    client = login(dave)
    html = client.get("/").content.decode()
    assert str(acme_camera.pk) in html and str(backyard.pk) not in html
    assert client.get(reverse("frontend:device", args=[backyard.pk])).status_code == 404


def test_publish_page_lists_only_devices_the_user_may_control(login, personas, acme_camera, globex_camera):
    response = login(personas["operator"]).get(reverse("frontend:publish"))
    assert [d["id"] for d in page_config(response)["devices"]] == [str(acme_camera.pk)]
    assert b'id="pub-start"' in response.content
    response = login(personas["viewer"]).get(reverse("frontend:publish"))
    assert page_config(response)["devices"] == []
    assert b'id="pub-start"' not in response.content


def test_publish_page_preselects_only_a_controllable_device(login, bob, acme_camera, globex_camera):
    client = login(bob)
    assert page_config(client.get(f"/publish/?device={acme_camera.pk}"))["selected"] == str(acme_camera.pk)
    assert page_config(client.get(f"/publish/?device={globex_camera.pk}"))["selected"] is None


@pytest.fixture
def alice_in_globex_too(alice, globex):
    Membership.objects.create(organisation=globex, user=alice, role=Role.VIEWER)
    return alice


def test_a_member_of_several_organisations_can_switch(login, alice_in_globex_too, acme, globex, acme_camera, globex_camera):
    client = login(alice_in_globex_too)
    html = client.get("/").content.decode()
    assert 'name="organisation"' in html  # the switcher is shown
    assert str(acme_camera.pk) in html  # Acme comes first by name
    response = client.post("/organisation/", {"organisation": str(globex.pk), "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.session[SESSION_KEY] == str(globex.pk)
    html = client.get("/").content.decode()
    assert str(globex_camera.pk) in html and str(acme_camera.pk) not in html
    assert "· viewer" in html  # role shown is the role in the organisation switched to


def test_switching_to_an_organisation_one_is_not_in_is_404(login, carol, globex):
    client = login(carol)
    response = client.post("/organisation/", {"organisation": str(globex.pk)})
    assert response.status_code == 404
    assert SESSION_KEY not in client.session


def test_switching_refuses_an_offsite_next(login, alice_in_globex_too, globex):
    response = login(alice_in_globex_too).post("/organisation/", {"organisation": str(globex.pk), "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_switching_organisation_needs_post(login, alice_in_globex_too, globex):
    assert login(alice_in_globex_too).get("/organisation/").status_code == 405


def test_single_organisation_members_see_no_switcher(login, carol):
    assert b'name="organisation"' not in login(carol).get("/").content


def test_recordings_page_points_at_the_devices_api(login, bob, acme_camera):
    config = page_config(login(bob).get(reverse("frontend:recordings", args=[acme_camera.pk]) + "?date=2026-11-20"))
    assert config["segmentsUrl"] == f"/api/devices/{acme_camera.pk}/segments/"
    assert config["playlistUrl"] == f"/api/devices/{acme_camera.pk}/playlist.m3u8"
    assert config["exportsUrl"] == f"/api/devices/{acme_camera.pk}/exports/"
    assert config["date"] == "2026-11-20"


def test_pages_carry_no_device_tokens(login, bob, acme_camera):
    clear, _ = acme_camera.issue_token()
    client = login(bob)
    for url in ("/", reverse("frontend:device", args=[acme_camera.pk]), reverse("frontend:publish")):
        assert clear not in client.get(url).content.decode()
