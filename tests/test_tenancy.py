"""The tenant-scoped lookup, as every persona."""
import uuid

import pytest

from accounts import tenancy
from accounts.models import DeviceGrant, Membership
from accounts.permissions import role_allows
from recordings.models import Segment


def test_role_rules_are_what_the_docs_say():
    assert role_allows("owner", "manage") and role_allows("owner", "control")
    assert role_allows("operator", "control") and role_allows("operator", "export")
    assert not role_allows("operator", "manage")
    assert role_allows("viewer", "view") and not role_allows("viewer", "control")
    assert not role_allows("viewer", "export")
    assert not role_allows(None, "view")
    with pytest.raises(ValueError):
        role_allows("owner", "fly")


def test_members_see_their_organisations_devices(personas, acme_camera):
    for persona in ("owner", "operator", "viewer"):
        assert list(tenancy.devices_for(personas[persona])) == [acme_camera]


def test_the_outsider_never_sees_another_organisations_device(personas, acme_camera, globex_camera):
    mallory = personas["outsider"]
    assert list(tenancy.devices_for(mallory)) == [globex_camera]
    with pytest.raises(tenancy.NotFound):
        tenancy.get_device_for(mallory, acme_camera.pk)


def test_a_viewer_cannot_get_a_device_for_control(personas, acme_camera):
    with pytest.raises(tenancy.NotFound):
        tenancy.get_device_for(personas["viewer"], acme_camera.pk, "control")
    assert tenancy.get_device_for(personas["operator"], acme_camera.pk, "control") == acme_camera


def test_malformed_and_unknown_ids_are_not_found(personas):
    for bad in ("not-a-uuid", uuid.uuid4(), None, "' OR 1=1 --"):
        with pytest.raises(tenancy.NotFound):
            tenancy.get_device_for(personas["owner"], bad)


def test_anonymous_sees_nothing(personas, acme_camera):
    from django.contrib.auth.models import AnonymousUser

    assert not tenancy.devices_for(AnonymousUser()).exists()
    assert not tenancy.devices_for(None).exists()


def test_segments_follow_their_device(personas, acme_camera, globex_camera):
    from django.utils import timezone

    ours = Segment.objects.create(device=acme_camera, start=timezone.now(), codec="jpeg")
    theirs = Segment.objects.create(device=globex_camera, start=timezone.now(), codec="jpeg")
    assert list(tenancy.segments_for(personas["viewer"])) == [ours]
    assert list(tenancy.segments_for(personas["outsider"])) == [theirs]
    with pytest.raises(tenancy.NotFound):
        tenancy.get_segment_for(personas["outsider"], ours.pk)


def test_grants_narrow_a_restricted_member(personas, acme, acme_camera):
    from streams.models import Device

    back = Device.objects.create(organisation=acme, name="Back yard")
    membership = Membership.objects.get(user=personas["viewer"], organisation=acme)
    membership.restricted_to_grants = True
    membership.save()
    assert not tenancy.devices_for(personas["viewer"]).exists()
    DeviceGrant.objects.create(membership=membership, device=back)
    assert list(tenancy.devices_for(personas["viewer"])) == [back]
    with pytest.raises(tenancy.NotFound):
        tenancy.get_device_for(personas["viewer"], acme_camera.pk)
