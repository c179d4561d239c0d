"""The installation namespace: generated once, kept in the var directory, shared by every
process of the installation, and the root of every Redis name (project/namespace.py)."""
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from project import namespace

ROOT = Path(__file__).resolve().parent.parent


def test_the_first_start_generates_a_namespace_and_keeps_it_in_the_var_directory(tmp_path):
    var = tmp_path / "var"  # not there yet: a fresh checkout
    first = namespace.installation_namespace(var, {})
    assert (var / "namespace").read_text().strip() == first
    assert first.startswith("sl-") and len(first) == 13
    assert namespace.installation_namespace(var, {}) == first  # kept, not regenerated
    assert [p.name for p in var.iterdir()] == ["namespace"]  # no temporary file left behind


def test_two_installations_get_different_namespaces(tmp_path):
    assert namespace.installation_namespace(tmp_path / "a", {}) != namespace.installation_namespace(tmp_path / "b", {})


def _create(var_dir: str) -> str:
    return namespace.read_or_create(Path(var_dir))


def test_processes_starting_at_once_all_agree_on_one_namespace(tmp_path):
    with ProcessPoolExecutor(4) as pool:
        seen = set(pool.map(_create, [str(tmp_path)] * 24))
    assert seen == {(tmp_path / "namespace").read_text().strip()}
    assert [p.name for p in tmp_path.iterdir()] == ["namespace"]


def test_an_existing_file_is_never_overwritten(tmp_path):
    (tmp_path / "namespace").write_text("kept-one\n")
    assert namespace.read_or_create(tmp_path) == "kept-one"
    assert (tmp_path / "namespace").read_text() == "kept-one\n"


def test_sightline_namespace_overrides_the_file_and_writes_nothing(tmp_path):
    assert namespace.installation_namespace(tmp_path, {"SIGHTLINE_NAMESPACE": "prod-eu"}) == "prod-eu"
    assert not (tmp_path / "namespace").exists()


@pytest.mark.parametrize("value", ["a:b", "cams*", "x y", "-leading", "a" * 41, "naïve", "[ab]"])
def test_a_bad_namespace_in_the_environment_is_refused_naming_the_variable(tmp_path, value):
    with pytest.raises(ImproperlyConfigured, match="SIGHTLINE_NAMESPACE must be 1-40 characters"):
        namespace.installation_namespace(tmp_path, {"SIGHTLINE_NAMESPACE": value})


def test_a_damaged_namespace_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / "namespace").write_text("")
    with pytest.raises(ImproperlyConfigured, match=r"namespace file .*namespace must be"):
        namespace.installation_namespace(tmp_path, {})


def test_an_unwritable_var_directory_says_to_set_the_namespace(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the var directory should be
    with pytest.raises(ImproperlyConfigured, match="set SIGHTLINE_NAMESPACE"):
        namespace.installation_namespace(blocker / "var", {})


def test_every_redis_name_derives_from_the_namespace(tmp_path):
    names = namespace.redis_names(tmp_path, {"SIGHTLINE_NAMESPACE": "prod-eu"})
    assert names == namespace.RedisNames(namespace="prod-eu", channel_prefix="prod-eu", cache_prefix="prod-eu",
                                         celery_queue="prod-eu", celery_key_prefix="prod-eu:")


def test_explicit_prefixes_and_queue_still_win_but_kombu_keys_stay_in_the_namespace(tmp_path):
    environ = {"SIGHTLINE_NAMESPACE": "prod-eu", "CHANNEL_PREFIX": "old", "CACHE_PREFIX": "oldcache",
               "CELERY_QUEUE": "oldqueue"}
    names = namespace.redis_names(tmp_path, environ)
    assert (names.channel_prefix, names.cache_prefix, names.celery_queue) == ("old", "oldcache", "oldqueue")
    assert names.celery_key_prefix == "prod-eu:"
    # An empty value means the default, as for every setting.
    assert namespace.redis_names(tmp_path, {"SIGHTLINE_NAMESPACE": "n", "CELERY_QUEUE": ""}).celery_queue == "n"


def test_the_settings_route_every_redis_name_through_the_namespace():
    ns = settings.SIGHTLINE_NAMESPACE
    assert ns.startswith("test-")  # this run's own, never a running portal's
    assert settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] == ns
    assert settings.CACHES["default"]["KEY_PREFIX"] == ns
    assert settings.CELERY_TASK_DEFAULT_QUEUE == ns
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] == f"{ns}:"
    assert settings.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS["global_keyprefix"] == f"{ns}:"


def test_celery_prefixes_kombus_shared_keys_and_the_results_with_the_namespace():
    from project.celery import app

    ns = settings.SIGHTLINE_NAMESPACE
    with app.connection_for_write() as connection:
        client = connection.default_channel.client
        assert client.global_keyprefix == f"{ns}:"
    assert app.backend.get_key_for_task("abc") == f"{ns}:celery-task-meta-abc".encode()


def _settings_in_a_child(env: dict) -> str:
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.SIGHTLINE_NAMESPACE, s.CHANNEL_LAYERS['default']['CONFIG']['prefix'], s.CELERY_TASK_DEFAULT_QUEUE)")
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "SECRET_KEY": "x"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


def test_the_test_settings_never_take_the_shells_namespace_or_prefixes(tmp_path):
    portal = {"SIGHTLINE_NAMESPACE": "portal", "CHANNEL_PREFIX": "portal", "CACHE_PREFIX": "portal",
              "CELERY_QUEUE": "portal", "SIGHTLINE_VAR_DIR": str(tmp_path)}
    ns, prefix, queue = _settings_in_a_child({**portal, "DJANGO_SETTINGS_MODULE": "project.settings_test"})
    assert ns.startswith("test-") and prefix == queue == ns


def test_processes_of_one_installation_share_its_generated_namespace(tmp_path):
    env = {"DJANGO_SETTINGS_MODULE": "project.settings", "SIGHTLINE_VAR_DIR": str(tmp_path)}
    first, second = _settings_in_a_child(env), _settings_in_a_child(env)
    assert first == second == [(tmp_path / "namespace").read_text().strip()] * 3
    shown = subprocess.run([sys.executable, "-m", "project.namespace"], cwd=ROOT, capture_output=True, text=True,
                           env={"PATH": os.environ.get("PATH", ""), "SIGHTLINE_VAR_DIR": str(tmp_path), "SECRET_KEY": "x"},
                           timeout=30)
    assert shown.stdout.strip() == first[0]
