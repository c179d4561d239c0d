"""Several hosts on one machine: Linux network namespaces on one bridge, each running real processes.

A `Lab` owns one private /24 (10.213.<n>.0/24, n chosen per run) and a "switch"
namespace holding a bridge. Each `Host` is another namespace with one veth link
(`eth0`) to that bridge and one address. Nothing is configured outside the
namespaces the lab creates: no address, route or link in the machine's own
namespace, so no traffic can leave them (they have no default route either).

Processes run with `ip netns exec <ns> ...` in their own session, so a host's
processes are killed together by process group; `Lab.close()` kills every
process it started, then any process still inside its namespaces, then deletes
the namespaces. Namespaces named after a pytest process that no longer exists
(an interrupted run) are deleted when the next lab starts.

The test itself talks to the hosts from a client host: `Host.call(fn)` runs fn in
a thread that has entered that host's network namespace (setns affects only the
calling thread), so sockets made there use the namespace's addresses.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

NETNS_DIR = Path("/var/run/netns")
PREFIX = "slmh"  # every namespace of every lab: slmh<pytest pid>-<host>
CLONE_NEWNET = 0x40000000
SUBNET_FIRST = 10
SUBNET_SECOND = 213


class Unavailable(Exception):
    """This machine cannot build hosts (not root, no `ip`, namespaces refused): skip, loudly."""


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=30)


def why_unavailable() -> str | None:
    """None when network namespaces can be made here, else the reason."""
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        made = run("ip", "netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"`ip netns add` failed: {made.stderr.strip()}"
    finally:
        run("ip", "netns", "del", probe, check=False)
    return None


def remove_stale_labs() -> None:
    """Remove what a lab whose pytest process is gone (killed before its finalizer) left: its
    processes and namespaces, then its temporary directory (a tmpfs spool in it unmounted first)."""
    remove_stale_namespaces()
    for directory in Path(tempfile.gettempdir()).glob("sightline-hosts-*-*"):
        pid = directory.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            spool = directory / "spool"
            if spool.is_mount():
                run("umount", "-l", str(spool), check=False)
            shutil.rmtree(directory, ignore_errors=True)


def remove_stale_namespaces() -> None:
    """Delete namespaces left by a lab whose pytest process is gone (killed before its finalizer)."""
    listed = run("ip", "netns", "list", check=False).stdout
    for name in re.findall(rf"^({PREFIX}(\d+)-\S+)", listed, re.MULTILINE):
        ns, pid = name
        if not Path(f"/proc/{pid}").exists():
            kill_namespace_processes(ns)
            run("ip", "netns", "del", ns, check=False)


def kill_namespace_processes(ns: str) -> None:
    pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def enter_namespace(ns: str) -> None:
    """Move the calling thread (only it) into network namespace `ns`."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({ns})")
    finally:
        os.close(fd)


class Child:
    """One process started in a host, in its own session (killed with its children by process group)."""

    def __init__(self, host: "Host", name: str, args: list[str], env: dict, log_path: Path, cwd=None):
        self.host, self.name, self.args, self.log_path = host, name, args, log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(["ip", "netns", "exec", host.ns, *args], env=env, cwd=cwd,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def send_signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 10, sig: int = signal.SIGTERM) -> None:
        """`sig` to the whole group, then SIGKILL if it is still there after `timeout`."""
        self.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        try:  # children of a dead leader (celery's pool, postgres backends) share the group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class Host:
    def __init__(self, lab: "Lab", name: str, octet: int):
        self.lab, self.name = lab, name
        self.ns = f"{PREFIX}{os.getpid()}-{name}"
        self.address = f"{lab.subnet}.{octet}"
        self.port_name = f"v-{name}"[:15]  # the veth end on the bridge, in the switch namespace
        self.children: list[Child] = []

    def create(self) -> None:
        run("ip", "netns", "add", self.ns)
        self.lab.namespaces.append(self.ns)
        run("ip", "-n", self.lab.switch, "link", "add", self.port_name, "type", "veth",
            "peer", "name", "eth0", "netns", self.ns)
        run("ip", "-n", self.lab.switch, "link", "set", self.port_name, "master", "br0", "up")
        run("ip", "-n", self.ns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        run("ip", "-n", self.ns, "link", "set", "eth0", "up")
        run("ip", "-n", self.ns, "link", "set", "lo", "up")

    def start(self, name: str, args: list[str], env: dict | None = None, cwd=None) -> Child:
        child = Child(self, name, [str(a) for a in args], env if env is not None else self.lab.base_env(),
                      self.lab.logs / f"{self.name}-{name}.log", cwd=cwd)
        self.children.append(child)
        self.lab.children.append(child)
        return child

    def exec(self, args: list[str], env: dict | None = None, timeout: float = 60, cwd=None) -> str:
        """Run a command in this host to completion; its output, or an AssertionError with it."""
        done = subprocess.run(["ip", "netns", "exec", self.ns, *map(str, args)], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"{args[:3]} on {self.name} exited {done.returncode}:\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def call(self, fn, *args, timeout: float | None = None, **kwargs):
        """fn(*args, **kwargs) in a thread inside this host's network namespace; its result."""
        result: dict = {}

        def target():
            try:
                enter_namespace(self.ns)
                result["value"] = fn(*args, **kwargs)
            except BaseException as error:  # re-raised in the caller
                result["error"] = error

        thread = threading.Thread(target=target, name=f"in-{self.name}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise AssertionError(f"{getattr(fn, '__name__', fn)} in {self.name} still running after {timeout} s")
        if "error" in result:
            raise result["error"]
        return result.get("value")

    def background(self, fn, *args, **kwargs) -> threading.Thread:
        """fn in a daemon thread inside this host's network namespace (fn reports through its arguments)."""

        def target():
            enter_namespace(self.ns)
            fn(*args, **kwargs)

        thread = threading.Thread(target=target, name=f"bg-{self.name}", daemon=True)
        thread.start()
        return thread

    def link(self, up: bool) -> None:
        """Plug or unplug this host's cable (its veth end on the bridge)."""
        run("ip", "-n", self.lab.switch, "link", "set", self.port_name, "up" if up else "down")


class Lab:
    """The switch, the hosts, their processes and their temporary files; `close()` removes everything."""

    def __init__(self, root: Path | None = None):
        reason = why_unavailable()
        if reason:
            raise Unavailable(reason)
        remove_stale_labs()
        self.subnet = f"{SUBNET_FIRST}.{SUBNET_SECOND}.{self._free_third_octet()}"
        # World-traversable: the PostgreSQL server runs as the postgres user and needs its data dir.
        self.root = Path(tempfile.mkdtemp(prefix=f"sightline-hosts-{os.getpid()}-", dir=root))
        self.root.chmod(0o755)
        self.logs = self.root / "logs"
        self.logs.mkdir()
        self.switch = f"{PREFIX}{os.getpid()}-sw"
        self.namespaces: list[str] = []
        self.children: list[Child] = []
        self.hosts: dict[str, Host] = {}
        self.cleanups: list = []  # callables run by close() before the files go (e.g. unmount a tmpfs)
        run("ip", "netns", "add", self.switch)
        self.namespaces.append(self.switch)
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "br0", "up")

    @staticmethod
    def _free_third_octet() -> int:
        """A /24 of 10.213.0.0/16 that no address on this machine (nor a parallel lab we can see) uses."""
        used = run("ip", "-o", "addr", check=False).stdout
        for ns in re.findall(rf"^({PREFIX}\S+)", run("ip", "netns", "list", check=False).stdout, re.MULTILINE):
            used += run("ip", "-n", ns, "-o", "addr", check=False).stdout
        start = os.getpid() % 200 + 20
        for third in list(range(start, 250)) + list(range(20, start)):
            if f" {SUBNET_FIRST}.{SUBNET_SECOND}.{third}." not in used:
                return third
        raise Unavailable(f"no free /24 in {SUBNET_FIRST}.{SUBNET_SECOND}.0.0/16")

    def add_host(self, name: str, octet: int) -> Host:
        host = Host(self, name, octet)
        host.create()
        self.hosts[name] = host
        return host

    def base_env(self) -> dict:
        """A small, clean environment for processes of the hosts (nothing of pytest's)."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def close(self) -> None:
        for child in self.children:  # all at once, then whatever is left gets SIGKILL
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for child in self.children:
            child.stop(timeout=max(0.1, deadline - time.monotonic()))
        for ns in self.namespaces:
            kill_namespace_processes(ns)
        for ns in reversed(self.namespaces):
            run("ip", "netns", "del", ns, check=False)
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception:  # keep cleaning up; the rest must go too
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as error:  # not up yet
            last_error, value = error, None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error!r})")


def tcp_open(address: str, port: int) -> bool:
    """True if something accepts on address:port (call inside a host)."""
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False
