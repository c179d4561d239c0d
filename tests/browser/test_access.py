"""The outsider's direct URLs to another organisation's device, segment and playlist are 404
(and its sockets close with 4404), exactly like ids that do not exist."""
from datetime import timedelta

import pytest
from django.utils import timezone

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_an_outsiders_direct_urls_get_404(personas, acme_camera, portal):
    from recordings.models import Segment

    now = timezone.now()
    segment = Segment.objects.create(device=acme_camera, start=now - timedelta(seconds=10), end=now,
                                     codec="jpeg", state="ready", frames=100)
    browser = portal()
    page = browser.login("mallory")
    window = f"start={(now - timedelta(hours=1)).isoformat()}&end={now.isoformat()}".replace("+", "%2B")
    urls = [
        f"/devices/{acme_camera.pk}/",
        f"/devices/{acme_camera.pk}/recordings/",
        f"/api/devices/{acme_camera.pk}/segments/?{window}",
        f"/api/devices/{acme_camera.pk}/playlist.m3u8?{window}",
        f"/media/segments/{segment.pk}/video.mp4",
        f"/media/segments/{segment.pk}/poster.jpg",
        f"/media/segments/{segment.pk}/strip.jpg",
    ]
    statuses = {url: page.request.get(url).status for url in urls}
    assert set(statuses.values()) == {404}, statuses
    close_codes = page.evaluate("""(paths) => Promise.all(paths.map((path) => new Promise((resolve) => {
        const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`);
        ws.onclose = (event) => resolve(event.code);
    })))""", [f"/ws/view/{acme_camera.pk}/", f"/ws/wall/{acme_camera.organisation_id}/",
          f"/ws/publish/{acme_camera.pk}/"])
    assert close_codes == [4404, 4404, 4404], close_codes
    response = page.goto(f"/devices/{acme_camera.pk}/")
    assert response.status == 404
    assert "Not found" in page.inner_text("h1")
    # The same URLs work for a member, so the 404s above are about tenancy, not typos.
    member = portal().login("carol")
    assert member.request.get(f"/devices/{acme_camera.pk}/").status == 200
    assert member.request.get(f"/api/devices/{acme_camera.pk}/segments/?{window}").status == 200
