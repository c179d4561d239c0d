"""manage.py create_organisation and seed_demo, and the probes the two set-up commands use."""
import io
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from accounts.models import Membership, Organisation, Role
from streams.models import AuthResult, Device, authenticate_token

ROOT = Path(__file__).resolve().parent.parent


def _run(*args, **env):
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **env)
    return out.getvalue()


# -- create_organisation ------------------------------------------------------------------
@pytest.mark.django_db
def test_create_organisation_makes_a_new_owner_with_a_printed_random_password():
    out = _run("create_organisation", "Acme Security", "--owner", "alice", "--email", "a@example.com", "--no-input")
    org = Organisation.objects.get(slug="acme-security")
    alice = get_user_model().objects.get(username="alice")
    assert Membership.objects.get(organisation=org, user=alice).role == Role.OWNER
    assert alice.is_staff and not alice.is_superuser and alice.email == "a@example.com"
    password = out.split("Password for alice: ")[1].split()[0]
    assert alice.check_password(password) and len(password) >= 12


@pytest.mark.django_db
def test_create_organisation_reuses_an_existing_login_without_touching_its_password(django_user_model):
    bob = django_user_model.objects.create_user("bob", password="bob-password")
    out = _run("create_organisation", "Bob's shop", "--owner", "bob", "--slug", "bobs")
    bob.refresh_from_db()
    assert bob.check_password("bob-password") and bob.is_staff
    assert "Password for" not in out and "existing login" in out
    assert Organisation.objects.get(slug="bobs").memberships.get().user == bob


@pytest.mark.django_db
def test_create_organisation_refuses_a_duplicate_slug_and_a_weak_password(acme):
    with pytest.raises(CommandError, match="already exists"):
        _run("create_organisation", "Acme", "--owner", "x")
    with pytest.raises(CommandError, match="Password rejected"):
        _run("create_organisation", "Initech", "--owner", "peter", "--password", "short")
    assert not get_user_model().objects.filter(username="peter").exists()


# -- seed_demo ------------------------------------------------------------------------------
@pytest.fixture
def token_dir(tmp_path):
    return tmp_path / "demo"


def _tokens(token_dir):
    return {path.name: path.read_text() for path in sorted(token_dir.iterdir())}


@pytest.mark.django_db
def test_seed_demo_creates_the_demo_organisation_logins_and_devices(token_dir, monkeypatch):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    out = _run("seed_demo", "--token-dir", str(token_dir))
    demo = Organisation.objects.get(slug="demo")
    roles = {m.user.username: m.role for m in demo.memberships.select_related("user")}
    assert roles == {"owner": Role.OWNER, "operator": Role.OPERATOR, "viewer": Role.VIEWER}
    users = {u.username: u for u in get_user_model().objects.all()}
    assert all(users[name].check_password("sightline-demo") for name in roles)
    assert users["owner"].is_staff and not users["viewer"].is_staff
    assert "owner / sightline-demo" in out
    assert sorted(Device.objects.filter(organisation=demo).values_list("name", "expected_media")) == [
        ("Lobby camera", "jpeg"),
        ("Yard camera", "h264"),
    ]


@pytest.mark.django_db
def test_seed_demo_writes_valid_private_token_files_and_rotates_them_on_each_run(token_dir):
    _run("seed_demo", "--token-dir", str(token_dir))
    first = _tokens(token_dir)
    assert sorted(first) == ["lobby-camera.token", "yard-camera.token"]
    for name, token in first.items():
        assert stat.S_IMODE((token_dir / name).stat().st_mode) == 0o600
        assert authenticate_token(token)[0] == AuthResult.OK
    _run("seed_demo", "--token-dir", str(token_dir))
    second = _tokens(token_dir)
    assert set(first.values()).isdisjoint(second.values())
    # The previous token keeps working, so a running camera is not cut off by a re-seed.
    assert {authenticate_token(token)[0] for token in [*first.values(), *second.values()]} == {AuthResult.OK}
    _run("seed_demo", "--token-dir", str(token_dir))
    assert {authenticate_token(token)[0] for token in first.values()} == {AuthResult.REVOKED}
    assert Organisation.objects.filter(slug="demo").count() == 1 and Device.objects.count() == 2
    assert Membership.objects.count() == 3


@pytest.mark.django_db
def test_seed_demo_uses_demo_password_from_the_environment(token_dir, monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "another-demo-password")
    out = _run("seed_demo", "--token-dir", str(token_dir))
    assert get_user_model().objects.get(username="viewer").check_password("another-demo-password")
    assert "viewer / another-demo-password" in out


@pytest.mark.django_db
def test_seed_demo_never_takes_over_a_real_login(token_dir, acme, django_user_model):
    real = django_user_model.objects.create_user("operator", password="real-password")
    Membership.objects.create(organisation=acme, user=real, role=Role.OWNER)
    with pytest.raises(CommandError, match="outside the demo"):
        _run("seed_demo", "--token-dir", str(token_dir))
    real.refresh_from_db()
    assert real.check_password("real-password")
    assert not Organisation.objects.filter(slug="demo").exists()


# -- probes used by scripts/run and scripts/test ---------------------------------------------
def _probe(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts/lib/probe.py"), *args], capture_output=True, text=True, timeout=30
    )


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_redis_probe_says_no_for_a_closed_port():
    assert _probe("redis", f"redis://127.0.0.1:{_closed_port()}/0").returncode == 1


def test_the_postgres_probe_says_no_for_a_closed_port():
    assert _probe("postgres", f"postgres://postgres@127.0.0.1:{_closed_port()}/postgres").returncode == 1


def test_the_port_probe_tells_a_taken_port_from_a_free_one():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        assert _probe("port-free", "127.0.0.1", str(taken)).returncode == 1
    free = _probe("free-port")
    assert free.returncode == 0 and _probe("port-free", "127.0.0.1", free.stdout.strip()).returncode == 0


def test_the_set_up_scripts_are_valid_bash_and_ci_calls_the_test_command():
    for script in ("scripts/run", "scripts/test", "scripts/lib/common.sh", ".ci/run"):
        assert subprocess.run(["bash", "-n", str(ROOT / script)]).returncode == 0, script
    readme = (ROOT / "README.md").read_text()
    test_command = readme.split("## The two commands", 1)[1].split("```bash\n")[2].split("\n")[0]
    assert test_command == "bash scripts/test"
    assert test_command in (ROOT / ".ci/run").read_text().splitlines()  # CI runs the README's command itself


@pytest.mark.integration
def test_the_run_command_brings_up_a_portal_whose_demo_login_works(tmp_path):
    """`bash scripts/run --check`: install check, migrate, seed, server, recorder, worker, beat,
    cameras; then it logs in to the admin, waits for a recording of each camera to be archived
    and stops everything."""
    import os
    import signal

    # Not this test run's database, settings or Redis names: a new installation that
    # generates its own namespace (so no other installation's worker on this Redis can take its tasks).
    env = {key: value for key, value in os.environ.items() if key not in {
        "DATABASE_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "SIGHTLINE_NAMESPACE", "SIGHTLINE_TEST_RUN",
        "CHANNEL_PREFIX", "CACHE_PREFIX", "CELERY_QUEUE"}}
    env.update(SIGHTLINE_VAR_DIR=str(tmp_path / "var"), PORT=str(_closed_port()), SIGHTLINE_APT="0", CI="true")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    process = subprocess.Popen(
        ["bash", str(ROOT / "scripts/run"), "--check"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, output[-4000:]
    assert "smoke: logged in to the admin as owner" in output
    assert "smoke: recorded, transcoded and archived: Lobby camera, Yard camera" in output
    assert "everything answered" in output and "stopped" in output
    namespace = (tmp_path / "var/namespace").read_text().strip()
    assert f"Redis namespace: {namespace}" in output and namespace.startswith("sl-")
    # The tokens, and the WAV the yard camera plays talk-back into.
    assert sorted(path.name for path in (tmp_path / "var/demo").iterdir()) == [
        "lobby-camera.token", "yard-camera.token", "yard-talkback.wav"]
    assert {path.name for path in (tmp_path / "var/log").glob("*.log")} >= {"beat.log", "web.log", "worker.log", "recorder.log"}
