"""Shared personas (healthchecks-style): in Acme, alice owns, bob operates, carol views;
mallory owns Globex, the outsider. Each has a device."""
import os
from pathlib import Path

import pytest
import pytest_asyncio

from accounts.models import Membership, Organisation, Role

# Agents, servers and workers started by tests import this checkout's agent package (pytest.ini's
# pythonpath does it for this process), not wherever the .venv's editable install points.
AGENT_DIR = str(Path(__file__).resolve().parents[1] / "agent")
os.environ["PYTHONPATH"] = os.pathsep.join([AGENT_DIR, *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture
def acme(db):
    return Organisation.objects.create(name="Acme", slug="acme")


@pytest.fixture
def globex(db):
    return Organisation.objects.create(name="Globex", slug="globex")


def _member(django_user_model, org, username, role):
    user = django_user_model.objects.create_user(username=username, password="password")
    Membership.objects.create(organisation=org, user=user, role=role)
    return user


@pytest.fixture
def alice(django_user_model, acme):
    return _member(django_user_model, acme, "alice", Role.OWNER)


@pytest.fixture
def bob(django_user_model, acme):
    return _member(django_user_model, acme, "bob", Role.OPERATOR)


@pytest.fixture
def carol(django_user_model, acme):
    return _member(django_user_model, acme, "carol", Role.VIEWER)


@pytest.fixture
def mallory(django_user_model, globex):
    return _member(django_user_model, globex, "mallory", Role.OWNER)


@pytest.fixture
def acme_camera(acme):
    from streams.models import Device

    return Device.objects.create(organisation=acme, name="Front door", location="Gate")


@pytest.fixture
def globex_camera(globex):
    from streams.models import Device

    return Device.objects.create(organisation=globex, name="Loading bay")


@pytest.fixture
def personas(alice, bob, carol, mallory, acme_camera, globex_camera):
    return {"owner": alice, "operator": bob, "viewer": carol, "outsider": mallory}


# -- live path (consumer tests) -------------------------------------------------


@pytest.fixture
def device_token(acme_camera):
    """A fresh token of Acme's camera, in clear."""
    return acme_camera.issue_token()[0]


@pytest.fixture
def sessions(personas):
    """A logged-in session cookie for each persona."""
    from tests.live_helpers import session_cookie

    return {role: session_cookie(user) for role, user in personas.items()}


@pytest_asyncio.fixture
async def live_state():
    """Fresh hub, Redis client and channel layer around a consumer test, with a recorder
    process's heartbeat in Redis as in a running deployment (so devices that record are
    not told "no recorder process is running"; tests of that remove it)."""
    import time

    from recordings import sessions
    from streams import broadcast, groups
    from tests.live_helpers import fresh_live_state

    await fresh_live_state()
    key = sessions.recorders_key(groups.prefix())
    await broadcast.redis_client().zadd(key, {"tests:heartbeat": time.time() + 3600})
    yield
    await fresh_live_state()


