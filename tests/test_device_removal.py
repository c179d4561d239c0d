"""Owners remove a device with a clear choice about its recordings: delete them (files and rows,
through the retention deletion code) or archive the device (disabled, off the wall, replayable)."""
import pytest
from django.urls import reverse

from project.celery import app as celery_app
from recordings import archive, removal
from recordings.models import Segment, SegmentState
from streams import control
from streams.models import Device
from tests.test_recording_api import recorded


@pytest.fixture
def login(client):
    def as_(user):
        client.force_login(user)
        return client
    return as_


@pytest.fixture
def eager_tasks():
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def disconnects(monkeypatch):
    calls = []
    monkeypatch.setattr(control, "disconnect_device", lambda device_id, reason, token_id=None: calls.append((device_id, reason)))
    return calls


def _files(segment):
    storage = archive.recordings_storage()
    return [key for key in (segment.storage_key, segment.poster_key, segment.strip_key) if key and storage.exists(key)]


def _remove(client, device, choice, capture):
    with capture(execute=True):
        return client.post(reverse("frontend:device-remove", args=[device.pk]), {"recordings": choice})


def test_removing_with_delete_removes_the_segments_files_rows_and_the_device(
    login, alice, acme_camera, globex_camera, eager_tasks, disconnects, django_capture_on_commit_callbacks
):
    ours = recorded(acme_camera, count=2, frames=5)
    ours[0].held = True  # the owner asked for everything to go
    ours[0].save(update_fields=["held"])
    theirs = recorded(globex_camera, count=1, frames=5)
    assert all(len(_files(s)) == 3 for s in ours)
    client = login(alice)
    page = client.get(reverse("frontend:device-remove", args=[acme_camera.pk])).content.decode()
    assert 'value="delete"' in page and 'value="archive"' in page and ">2</strong> recorded segments" in page
    response = _remove(client, acme_camera, "delete", django_capture_on_commit_callbacks)
    assert response.status_code == 302 and response["Location"] == reverse("frontend:devices")
    assert not Device.objects.filter(pk=acme_camera.pk).exists()
    assert not Segment.objects.filter(device_id=acme_camera.pk).exists()
    assert all(_files(s) == [] for s in ours)
    assert disconnects == [(acme_camera.pk, "disabled")]
    assert len(_files(theirs[0])) == 3 and Device.objects.filter(pk=globex_camera.pk).exists()  # other tenant untouched


def test_removing_with_archive_keeps_recordings_replayable_and_hides_the_device(
    login, alice, carol, acme_camera, disconnects, django_capture_on_commit_callbacks
):
    kept = recorded(acme_camera, count=1, frames=5)[0]
    response = _remove(login(alice), acme_camera, "archive", django_capture_on_commit_callbacks)
    assert response.status_code == 302
    acme_camera.refresh_from_db()
    assert acme_camera.archived_at is not None and not acme_camera.enabled
    assert disconnects == [(acme_camera.pk, "disabled")]
    assert len(_files(kept)) == 3
    viewer = login(carol)
    assert "Front door" not in viewer.get(reverse("frontend:wall")).content.decode()
    assert viewer.get("/api/devices/").json()["devices"] == []
    assert viewer.get(reverse("frontend:recordings", args=[acme_camera.pk])).status_code == 200
    listed = viewer.get(f"/api/devices/{acme_camera.pk}/segments/",
                        {"start": "2025-11-21T04:39:00Z", "end": "2025-11-21T04:41:00Z"}).json()["segments"]
    assert [s["id"] for s in listed] == [str(kept.pk)]
    video = viewer.get(listed[0]["media_url"])
    assert video.status_code == 200 and b"".join(video.streaming_content)[4:8] == b"ftyp"


def test_an_archived_device_can_be_restored(login, alice, acme_camera, disconnects, django_capture_on_commit_callbacks):
    client = login(alice)
    _remove(client, acme_camera, "archive", django_capture_on_commit_callbacks)
    assert 'data-archived="true"' in client.get(reverse("frontend:devices")).content.decode()
    client.post(reverse("frontend:device-restore", args=[acme_camera.pk]))
    acme_camera.refresh_from_db()
    assert acme_camera.enabled and acme_camera.archived_at is None
    assert "Front door" in client.get(reverse("frontend:wall")).content.decode()


def test_no_choice_is_no_removal(login, alice, acme_camera):
    response = login(alice).post(reverse("frontend:device-remove", args=[acme_camera.pk]), {})
    assert response.status_code == 400 and "Choose what happens" in response.content.decode()
    acme_camera.refresh_from_db()
    assert acme_camera.enabled and acme_camera.archived_at is None


def test_segments_still_in_the_pipeline_wait_and_the_device_stays_hidden(acme_camera, disconnects):
    done = recorded(acme_camera, count=1, frames=5)[0]
    busy = Segment.objects.create(device=acme_camera, start=done.start, codec="jpeg", state=SegmentState.RECORDING)
    removal.request_deletion(acme_camera, schedule=lambda device_id: None)
    report = removal.delete_device_recordings(acme_camera.pk)
    assert report == {"deleted": 1, "waiting": 1, "device_deleted": False}
    assert _files(done) == [] and Device.objects.get(pk=acme_camera.pk).archived_at is not None
    Segment.objects.filter(pk=busy.pk).update(state=SegmentState.FAILED)
    assert removal.delete_device_recordings(acme_camera.pk)["device_deleted"] is True
    assert removal.delete_device_recordings(acme_camera.pk)["device_deleted"] is False  # twice is harmless


def test_only_owners_reach_device_removal(login, personas, acme_camera, globex_camera):
    for persona in ("operator", "viewer"):
        client = login(personas[persona])
        assert client.get(reverse("frontend:devices")).status_code == 403
        assert client.post(reverse("frontend:device-remove", args=[acme_camera.pk]), {"recordings": "delete"}).status_code == 403
    outsider = login(personas["outsider"])
    assert "Front door" not in outsider.get(reverse("frontend:devices")).content.decode()
    for name in ("device-remove", "device-restore"):
        assert outsider.post(reverse(f"frontend:{name}", args=[acme_camera.pk]), {"recordings": "delete"}).status_code == 404
    acme_camera.refresh_from_db()
    assert acme_camera.enabled and acme_camera.deletion_requested_at is None
