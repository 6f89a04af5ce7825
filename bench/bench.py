#!/usr/bin/env python3
"""flotilla's benchmarks (issue 10): prints tables and writes them into docs/performance.md.

Run through `bench/run`, which installs the peers, starts the test bed and the apt cache, and
builds flotilla. Sections (all by default):

  build   cold `cargo build --release` and an incremental rebuild after a change in src/
  fanout  Docker install over SSH on 10 fresh hosts: flotilla vs ansible-core vs pyinfra vs a
          plain parallel ssh loop (the floor); first run and no-op re-run; controller CPU
  scale   `flotilla up` of 3, 10 and 30 Docker-provider nodes (Docker preinstalled in the image)
  state   `status`/`plan` on a synthetic 1,000-node deployment; `validate` of shipped blueprints

Every wait is bounded; every host, network and process it starts is removed by name or PID.
These are measurements, not tests: nothing here asserts a goal, the tables say met / not met.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "peers"
DOCS = ROOT / "docs" / "performance.md"
BEGIN = "<!-- bench/run: begin (generated; edit bench/bench.py instead) -->"
END = "<!-- bench/run: end -->"

FANOUT_NET = "flotilla-bench-fanout"
FANOUT_SUBNET = "10.198.250.0/24"
FANOUT_GW = "10.198.250.1"
SCALE_SUBNET = "10.198.251.0/24"
ACNG_PORT = 3142
HOST_IMAGE = "flotilla-bench/host:r4"
BAKED_IMAGE = "flotilla-bench/docker-node:r4"
CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} bench: {msg}", file=sys.stderr, flush=True)


def sh(cmd, check=True, timeout=900, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    return r


def docker(*args, check=True, timeout=900):
    return sh(["docker", *args], check=check, timeout=timeout)


# --- measuring one command -------------------------------------------------------------------


class Measured:
    def __init__(self, wall, cpu_tree, cpu_own, maxrss_kb, rc, out, err):
        self.wall, self.cpu_tree, self.cpu_own = wall, cpu_tree, cpu_own
        self.maxrss_kb, self.rc, self.out, self.err = maxrss_kb, rc, out, err


def _own_cpu(pid):
    """utime + stime of the process itself (all threads, no children), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def measure(cmd, env=None, cwd=None, timeout=1800):
    """Runs cmd in its own cpuacct cgroup. cpu_tree counts every process it started (daemonised
    ssh masters included); cpu_own samples the main process every 20 ms (its own CPU, without
    children); maxrss is the largest process of the tree that was waited for."""
    cg = CPUACCT / f"flotilla-bench-{uuid.uuid4().hex[:8]}"
    cg.mkdir()
    out_f = tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    try:
        start = time.monotonic()
        p = subprocess.Popen(
            ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(cg), *cmd],
            env=env, cwd=cwd, stdout=out_f, stderr=err_f,
        )
        own = [0.0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                v = _own_cpu(p.pid)
                if v is not None:
                    own[0] = v
                done.wait(0.02)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        deadline = start + timeout
        status = None
        while status is None:
            pid, st, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                status, rusage = st, ru
                break
            if time.monotonic() > deadline:
                os.kill(p.pid, signal.SIGKILL)
            time.sleep(0.01)
        wall = time.monotonic() - start
        done.set()
        t.join()
        p.returncode = os.waitstatus_to_exitcode(status)
        # Whatever the command left behind (ansible's ControlPersist masters) ends here, by PID.
        for _ in range(50):
            pids = [int(x) for x in (cg / "cgroup.procs").read_text().split()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGTERM if _ < 25 else signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        cpu_tree = int((cg / "cpuacct.usage").read_text()) / 1e9
        out_f.seek(0)
        err_f.seek(0)
        return Measured(wall, cpu_tree, own[0], rusage.ru_maxrss, p.returncode,
                        out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace"))
    finally:
        out_f.close()
        err_f.close()
        try:
            cg.rmdir()
        except OSError:
            pass


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    return (max(xs) - min(xs)) if xs else float("nan")


def fmt_s(x):
    return f"{x:.1f} s" if x >= 10 else f"{x:.2f} s"


# --- the apt cache -----------------------------------------------------------------------------


class AptCache:
    """apt-cacher-ng on the host end of the fan-out network (and loopback). Online it fills from
    deb.debian.org; offline (`Offlinemode`) it serves only what it holds and never revalidates:
    with ten hosts asking for the same InRelease at once, apt-cacher-ng 3.7 online failed to
    store it ("Failure to move file ... out of the way") and stalled a client for minutes."""

    def __init__(self, work):
        self.dir = work / "acng"
        self.proc = None

    def start(self, offline):
        self.stop()
        for sub in ("cache", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        conf = self.dir / "conf"
        if not conf.exists():
            shutil.copytree("/etc/apt-cacher-ng", conf)
            # Debian's default backend (ftp.debian.org) is not what the hosts' sources name.
            (conf / "backends_debian").write_text("http://deb.debian.org/debian/\n")
        args = ["/usr/sbin/apt-cacher-ng", "-c", str(conf), "ForeGround=1", f"Port={ACNG_PORT}",
                f"BindAddress={FANOUT_GW} 127.0.0.1", f"CacheDir={self.dir / 'cache'}",
                f"LogDir={self.dir / 'log'}", f"PidFile={self.dir / 'pid'}", f"SocketPath={self.dir / 'socket'}"]
        if offline:
            args.append("Offlinemode=1")
        out = open(self.dir / "stdout.log", "a")
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        import socket
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", ACNG_PORT), timeout=0.5).close()
                log(f"apt-cacher-ng (pid {self.proc.pid}, {'offline' if offline else 'online'}) on {FANOUT_GW}:{ACNG_PORT}")
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"apt-cacher-ng did not start; see {self.dir / 'stdout.log'}")

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None


# --- hosts -----------------------------------------------------------------------------------


EXAMPLES = Path("/nonexistent")  # set in main(): the release examples folder


def node_image():
    r = sh([str(EXAMPLES / "node_image")], timeout=900)
    return r.stdout.strip()


def bake(base, tag, script):
    """An image from `base` with `script` run in it (once; kept by tag)."""
    if docker("image", "inspect", tag, check=False).returncode == 0:
        return
    log(f"baking {tag}")
    name = "flotilla-bench-bake"
    docker("rm", "-f", name, check=False)
    docker("run", "-d", "--name", name, "--network", FANOUT_NET, base, "sleep", "infinity")
    try:
        docker("exec", name, "sh", "-c", script, timeout=900)
        docker("commit", "-c", 'CMD ["/usr/local/sbin/node-init"]', name, tag)
    finally:
        docker("rm", "-f", name, check=False)


# Timeouts and retries: apt-cacher-ng sometimes stalls one of several concurrent first requests
# for the same index file (seen: "Failure to move file ... InRelease"), and apt would wait on it
# for minutes. Every tool's hosts get the same settings.
APT_PROXY = (f'printf \'Acquire::http::Proxy "http://{FANOUT_GW}:{ACNG_PORT}";\\n'
             'Acquire::http::Timeout "15";\\nAcquire::Retries "3";\\n\' > /etc/apt/apt.conf.d/01bench-proxy')
# Fresh hosts have no package lists, and nothing may say they are recent: ansible's
# cache_valid_time and pyinfra's cache_time read the update stamp, else the lists' mtime.
CLEAN = ("apt-get clean; rm -rf /var/lib/apt/lists/* /var/lib/apt/periodic/* /var/cache/apt/*.bin "
         "/etc/ssh/ssh_host_* /root/.ssh/authorized_keys; touch -d @0 /var/lib/apt/lists")


def ensure_images():
    base = node_image()
    # Every tool gets the same host: flotilla's node image, the apt cache configured (as an
    # operator's image would have it), and Python with python3-apt, which ansible needs.
    bake(base, HOST_IMAGE, f"set -e; {APT_PROXY}; export DEBIAN_FRONTEND=noninteractive; "
         "apt-get update -q; apt-get install -y -q --no-install-recommends python3-minimal python3-apt; "
         + CLEAN)
    bake(base, BAKED_IMAGE, f"set -e; {APT_PROXY}; export DEBIAN_FRONTEND=noninteractive; "
         "apt-get update -q; apt-get install -y -q --no-install-recommends docker.io iptables ca-certificates; "
         + CLEAN)


def host_ips(n):
    return [f"10.198.250.{11 + i}" for i in range(n)]


def start_hosts(n, pubkey):
    names = [f"flotilla-bench-host-{i + 1}" for i in range(n)]
    remove_hosts(n)
    procs = []
    for name, ip in zip(names, host_ips(n)):
        procs.append(subprocess.Popen(
            ["docker", "run", "-d", "--name", name, "--hostname", name, "--init",
             "--label", "io.flotilla.bench=fanout",
             "--network", FANOUT_NET, "--ip", ip,
             "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
             "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
             "--device-cgroup-rule", "a *:* rwm",
             "-v", f"{name}-docker:/var/lib/docker",
             "-e", f"SSH_AUTHORIZED_KEYS={pubkey}", HOST_IMAGE],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"docker run: {err.decode()}")
    return names


def wait_ssh(ips, key):
    deadline = time.monotonic() + 90
    pending = list(ips)
    while pending and time.monotonic() < deadline:
        still = []
        for ip in pending:
            r = subprocess.run(
                ["ssh", "-q", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                 "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3", f"root@{ip}", "true"],
                capture_output=True, timeout=30)
            if r.returncode != 0:
                still.append(ip)
        pending = still
        if pending:
            time.sleep(0.5)
    if pending:
        raise RuntimeError(f"hosts not reachable over SSH within 90 s: {pending}")


def docker_answers(names):
    bad = []
    for n in names:
        r = docker("exec", n, "docker", "version", "--format", "{{.Server.Version}}", check=False)
        if r.returncode != 0 or not r.stdout.strip():
            bad.append(n)
    return bad


def remove_hosts(n):
    names = [f"flotilla-bench-host-{i + 1}" for i in range(n)]
    docker("rm", "-f", "-v", *names, check=False)
    docker("volume", "rm", "-f", *[f"{x}-docker" for x in names], check=False)


# --- sections --------------------------------------------------------------------------------


def tool_command(tool, ips, key, work, flotilla):
    env = dict(os.environ)
    if tool == "flotilla":
        home = work / "flotilla-home"
        shutil.rmtree(home, ignore_errors=True)
        bp = work / "fanout.yaml"
        hosts = ", ".join(f'"root@{ip}"' for ip in ips)
        bp.write_text(
            "name: bench-fanout\nprovider:\n  kind: static\n"
            f"ssh:\n  user: root\n  private_key: {key}\n  parallelism: {len(ips)}\n"
            "docker:\n  method: distro\ncluster:\n  kind: none\n"
            f"groups:\n  hosts:\n    role: worker\n    hosts: [{hosts}]\n")
        return [flotilla, "--home", str(home), "up", str(bp), "--yes", "-q"], env, None
    if tool == "ansible":
        inv = work / "hosts.ini"
        inv.write_text("[all]\n" + "".join(
            f"{ip} ansible_user=root ansible_ssh_private_key_file={key}\n" for ip in ips))
        env["ANSIBLE_CONFIG"] = str(PEERS / "ansible.cfg")
        return ["ansible-playbook", "-i", str(inv), str(PEERS / "playbook.yml")], env, None
    if tool == "pyinfra":
        inv = work / "inventory.py"
        inv.write_text("hosts = [" + ", ".join(
            f'("{ip}", {{"ssh_user": "root", "ssh_key": "{key}", "ssh_strict_host_key_checking": "no", '
            f'"ssh_known_hosts_file": "/dev/null"}})' for ip in ips) + "]\n")
        return ["pyinfra", "-y", "--parallel", str(len(ips)), str(inv), str(PEERS / "deploy.py")], env, None
    if tool == "ssh":
        return ["bash", str(PEERS / "ssh-loop.sh"), key, *ips], env, None
    raise ValueError(tool)


def section_fanout(args, flotilla, work, cache):
    key = str(work / "id_ed25519")
    if not Path(key).exists():
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    pub = Path(key + ".pub").read_text().strip()
    ips = host_ips(args.hosts)
    tools = ["flotilla", "ansible", "pyinfra", "ssh"]
    results = {t: {"first": [], "rerun": [], "cpu_first": [], "cpu_rerun": []} for t in tools}
    # Fill the apt cache (not timed) with one install, then serve it offline, so every timed
    # run reads indexes and packages from it.
    cache.start(offline=False)
    log("warming the apt cache with one install")
    names = start_hosts(1, pub)
    try:
        wait_ssh(ips[:1], key)
        cmd, env, _ = tool_command("ssh", ips[:1], key, work, flotilla)
        m = measure(cmd, env=env)
        if m.rc != 0:
            raise RuntimeError(f"warm-up install failed: {m.err[-2000:]}")
    finally:
        remove_hosts(1)
    cache.start(offline=True)
    for run in range(args.runs):
        # The order rotates each round, so no tool always runs after the same churn on the
        # engine (with a multiple of 4 runs, every tool takes every position equally often).
        for tool in tools[run % len(tools):] + tools[:run % len(tools)]:
            log(f"fan-out run {run + 1}/{args.runs}: {tool} on {len(ips)} fresh hosts")
            names = start_hosts(len(ips), pub)
            try:
                wait_ssh(ips, key)
                cmd, env, _ = tool_command(tool, ips, key, work, flotilla)
                first = measure(cmd, env=env, cwd=str(work))
                if first.rc != 0:
                    raise RuntimeError(f"{tool} first run exited {first.rc}: {(first.out + first.err)[-3000:]}")
                bad = docker_answers(names)
                if bad:
                    raise RuntimeError(f"{tool}: Docker does not answer on {bad}")
                rerun = measure(cmd, env=env, cwd=str(work))
                if rerun.rc != 0:
                    raise RuntimeError(f"{tool} re-run exited {rerun.rc}: {(rerun.out + rerun.err)[-3000:]}")
                r = results[tool]
                r["first"].append(first.wall)
                r["rerun"].append(rerun.wall)
                r["cpu_first"].append(first.cpu_tree)
                r["cpu_rerun"].append(rerun.cpu_tree)
                log(f"  {tool}: first {first.wall:.1f} s (controller CPU {first.cpu_tree:.1f} s), "
                    f"re-run {rerun.wall:.2f} s (CPU {rerun.cpu_tree:.2f} s)")
            finally:
                remove_hosts(len(ips))
    return results


def fanout_table(res, hosts, runs):
    floor_first = med(res["ssh"]["first"])
    floor_rerun = med(res["ssh"]["rerun"])
    rows = ["| tool | first run: median (spread) | × floor | no-op re-run: median (spread) | × floor "
            "| controller CPU, first run | controller CPU, re-run |",
            "|---|---|---|---|---|---|---|"]
    names = {"flotilla": "flotilla `up` (static hosts, `cluster: none`)", "ansible": "ansible-core playbook",
             "pyinfra": "pyinfra deploy", "ssh": "plain parallel `ssh` (the floor)"}
    for t in ["flotilla", "ansible", "pyinfra", "ssh"]:
        r = res[t]
        rows.append(
            f"| {names[t]} | {fmt_s(med(r['first']))} ({fmt_s(spread(r['first']))}) | "
            f"{med(r['first']) / floor_first:.2f}× | {fmt_s(med(r['rerun']))} ({fmt_s(spread(r['rerun']))}) | "
            f"{med(r['rerun']) / floor_rerun:.2f}× | {fmt_s(med(r['cpu_first']))} | {fmt_s(med(r['cpu_rerun']))} |")
    f = res["flotilla"]
    goals = [
        ("first run ≤ 1.05× the floor", med(f["first"]) / floor_first, 1.05),
        ("no-op re-run ≤ 1.0× the floor", med(f["rerun"]) / floor_rerun, 1.0),
        ("controller CPU (first run) ≤ pyinfra's", med(f["cpu_first"]) / med(res["pyinfra"]["cpu_first"]), 1.0),
    ]
    lines = [f"{hosts} fresh hosts per run, {runs} runs per tool (tools interleaved run by run, their order "
             "rotated each round).", "", *rows, "",
             "| goal | measured | met |", "|---|---|---|"]
    for name, ratio, limit in goals:
        lines.append(f"| {name} | {ratio:.2f}× | {'yes' if ratio <= limit else f'no (+{(ratio / limit - 1) * 100:.0f}%)'} |")
    return "\n".join(lines)


def section_scale(args, flotilla, work):
    key = str(work / "id_ed25519")
    if not Path(key).exists():
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    results = {}
    for n in args.sizes:
        results[n] = []
        for run in range(args.runs):
            home = work / f"scale-home-{n}"
            shutil.rmtree(home, ignore_errors=True)
            bp = work / f"scale-{n}.yaml"
            bp.write_text(
                f"name: bench-scale-{n}\nprovider:\n  kind: docker\n  image: {BAKED_IMAGE}\n"
                f"  subnet: {SCALE_SUBNET}\n  network: flotilla-bench-scale\n"
                f"ssh:\n  user: root\n  private_key: {key}\n  parallelism: 32\n"
                "docker:\n  method: preinstalled\ncluster:\n  kind: swarm\n  swarm:\n"
                "    default_addr_pool: 10.198.192.0/18\n    default_addr_pool_mask_length: 24\n"
                f"groups:\n  managers:\n    role: manager\n    count: 1\n  workers:\n    role: worker\n"
                f"    count: {n - 1}\n")
            log(f"scale: up of {n} nodes, run {run + 1}/{args.runs}")
            m = measure([flotilla, "--home", str(home), "up", str(bp), "--yes", "-q", "-o", "json"], timeout=1800)
            ok = m.rc == 0
            members = None
            if ok:
                st = sh([flotilla, "--home", str(home), "status", f"bench-scale-{n}", "-o", "json"], check=False)
                try:
                    nodes = json.loads(st.stdout)["nodes"]
                    members = sum(1 for x in nodes if x["cluster"] == "ready/active")
                except (ValueError, KeyError):
                    members = None
            down = sh([flotilla, "--home", str(home), "down", f"bench-scale-{n}", "--yes", "-q"], check=False, timeout=900)
            if not ok:
                raise RuntimeError(f"up of {n} nodes exited {m.rc}: {m.err[-3000:]}")
            if down.returncode != 0:
                raise RuntimeError(f"down of {n} nodes: {down.stderr[-2000:]}")
            if members != n:
                raise RuntimeError(f"up of {n} nodes: {members} ready swarm members")
            results[n].append(m)
            log(f"  {n} nodes: {m.wall:.1f} s, flotilla CPU {m.cpu_own:.2f} s, peak RSS {m.maxrss_kb / 1024:.0f} MiB")
    return results


def scale_table(res, runs):
    sizes = sorted(res)
    base = med([m.wall for m in res[sizes[0]]])
    rows = ["| nodes | `up` wall: median (spread) | × 3-node | flotilla CPU (own process) | CPU incl. its ssh "
            "| peak RSS | flotilla's share of wall time |", "|---|---|---|---|---|---|---|"]
    for n in sizes:
        ms = res[n]
        wall = med([m.wall for m in ms])
        own = med([m.cpu_own for m in ms])
        rows.append(f"| {n} | {fmt_s(wall)} ({fmt_s(spread([m.wall for m in ms]))}) | {wall / base:.2f}× | "
                    f"{fmt_s(own)} | {fmt_s(med([m.cpu_tree for m in ms]))} | "
                    f"{max(m.maxrss_kb for m in ms) / 1024:.0f} MiB | {own / wall * 100:.1f}% |")
    big = sizes[-1]
    ratio = med([m.wall for m in res[big]]) / base
    worst_share = max(med([m.cpu_own for m in res[n]]) / med([m.wall for m in res[n]]) for n in sizes)
    return "\n".join([f"{runs} runs per size.", "", *rows, "", "| goal | measured | met |", "|---|---|---|",
                      f"| {big} nodes ≤ 1.5× the {sizes[0]}-node time | {ratio:.2f}× | "
                      f"{'yes' if ratio <= 1.5 else f'no (+{(ratio / 1.5 - 1) * 100:.0f}%)'} |",
                      f"| flotilla's own share of `up` wall time ≤ 5% | {worst_share * 100:.1f}% (worst size) | "
                      f"{'yes' if worst_share <= 0.05 else 'no'} |", "", scale_reading(res)])


def scale_reading(res):
    """What the figures say about where the time goes (the same reading every run)."""
    sizes = sorted(res)
    small, big = sizes[0], sizes[-1]
    per_node = (med([m.wall for m in res[big]]) - med([m.wall for m in res[small]])) / (big - small)
    own_big = med([m.cpu_own for m in res[big]])
    return (f"Each added node costs about {per_node:.1f} s of wall time, while flotilla's own CPU at {big} nodes "
            f"is {fmt_s(own_big)}: the nodes themselves are the work. Each node is a container whose dockerd "
            "starts when flotilla asks (`preinstalled` still starts it), and on a machine with "
            f"{os.cpu_count()} cores those dockerds and the swarm joins run at most {os.cpu_count()} at a time, "
            "however many flotilla starts at once (`ssh.parallelism`, 32 by default). The 1.5× goal needs "
            "the nodes to be separate machines, as they are on a cloud.")


def section_state(args, flotilla, work):
    home = work / "big-home"
    shutil.rmtree(home, ignore_errors=True)
    key = str(work / "id_ed25519")
    if not Path(key).exists():
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    port = 5097
    sh([str(EXAMPLES / "synthetic_fleet"), str(home), str(work / "big"), "1000",
        f"http://127.0.0.1:{port}", key])
    calls = work / "replay-calls.log"
    calls.write_text("")
    replay = subprocess.Popen([sys.executable, str(ROOT / "bench" / "replay_ec2.py"), str(port),
                               str(work / "big" / "describe-instances.xml"), "--log", str(calls)])
    env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1")
    try:
        time.sleep(0.5)
        cases = {
            "status big --no-probe -o json": [flotilla, "--home", str(home), "status", "big", "--no-probe", "-o", "json"],
            "plan big.yaml --no-probe -o json": [flotilla, "--home", str(home), "plan", str(work / "big" / "big.yaml"),
                                                 "--no-probe", "-o", "json"],
            "list -o json": [flotilla, "--home", str(home), "list", "-o", "json"],
        }
        out = {}
        for name, cmd in cases.items():
            ms = [measure(cmd, env=env) for _ in range(args.repeat)]
            bad = [m for m in ms if m.rc != 0]
            if bad:
                raise RuntimeError(f"{name} exited {bad[0].rc}: {bad[0].err[-2000:]}")
            out[name] = ms
        for bp in sorted((ROOT / "blueprints").glob("*.yaml")):
            ms = [measure([flotilla, "validate", str(bp)], env=env) for _ in range(args.repeat)]
            if any(m.rc != 0 for m in ms):
                raise RuntimeError(f"validate {bp.name}: {ms[0].err[-2000:]}")
            out[f"validate blueprints/{bp.name}"] = ms
        out["_calls"] = calls.read_text().split()
        return out
    finally:
        replay.terminate()
        replay.wait(timeout=10)


def state_table(res, repeat):
    calls = res.pop("_calls")
    rows = ["| command | median wall | max wall | peak RSS | goal | met |", "|---|---|---|---|---|---|"]
    for name, ms in res.items():
        wall = med([m.wall for m in ms])
        rss = max(m.maxrss_kb for m in ms) / 1024
        if name.startswith("validate"):
            goal, ok = "< 50 ms", wall < 0.05
        else:
            goal, ok = "< 100 ms, < 50 MB", wall < 0.1 and rss < 50
        rows.append(f"| `flotilla {name}` | {wall * 1000:.0f} ms | {max(m.wall for m in ms) * 1000:.0f} ms | "
                    f"{rss:.1f} MiB | {goal} | {'yes' if ok else 'no'} |")
    per = {}
    for c in calls:
        per[c] = per.get(c, 0) + 1
    return "\n".join([f"{repeat} runs per command; the EC2 API replayed on loopback "
                      f"({', '.join(f'{k} ×{v}' for k, v in sorted(per.items()))} in all).", "", *rows])


def snapshot(work):
    """The committed tree (HEAD), exported to a folder of its own: what is measured and run is
    what was committed, whatever happens in the working tree meanwhile."""
    src = work / "src-snapshot"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    return src


def section_build(args, src):
    target = Path(args.build_target)
    shutil.rmtree(target, ignore_errors=True)
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    log("cold cargo build --release (minutes)")
    cold = measure(["cargo", "build", "--release", "--locked"], env=env, cwd=str(src), timeout=5400)
    if cold.rc != 0:
        raise RuntimeError(f"cold build: {cold.err[-3000:]}")
    # An incremental change in src/: a new comment line in one module, removed afterwards.
    victim = src / "src" / "engine" / "status.rs"
    original = victim.read_text()
    try:
        victim.write_text(original + "\n// bench: incremental change\n")
        inc = measure(["cargo", "build", "--release", "--locked", "-v"], env=env, cwd=str(src), timeout=3600)
    finally:
        victim.write_text(original)
    if inc.rc != 0:
        raise RuntimeError(f"incremental build: {inc.err[-3000:]}")
    rebuilt = sorted(set(re.findall(r"Compiling (\S+) v", inc.err)))
    return {"cold": cold, "inc": inc, "rebuilt": rebuilt}


def build_table(res):
    cold, inc = res["cold"], res["inc"]
    ec2 = "flotilla-provider-ec2" in res["rebuilt"]
    return "\n".join([
        "| build | wall | CPU (all rustc) | peak RSS (largest process) |", "|---|---|---|---|",
        f"| cold `cargo build --release` | {cold.wall / 60:.1f} min | {cold.cpu_tree / 60:.1f} min | {cold.maxrss_kb / 1024 / 1024:.2f} GiB |",
        f"| incremental (a line in `src/engine/status.rs`) | {fmt_s(inc.wall)} | {fmt_s(inc.cpu_tree)} | {inc.maxrss_kb / 1024 / 1024:.2f} GiB |",
        "",
        f"Recompiled by the incremental build: {', '.join(res['rebuilt']) or 'nothing'} — the EC2 crate "
        f"{'**was rebuilt** (goal missed)' if ec2 else 'was not rebuilt (goal met)'}.",
    ])


# --- the document ----------------------------------------------------------------------------


def write_docs(sections, header):
    """Puts the sections between the markers; a section not re-run this time keeps its table
    from the last run (each carries the date of the run that made it)."""
    text = DOCS.read_text() if DOCS.exists() else "# Performance figures\n"
    kept = {}
    if BEGIN in text and END in text:
        old = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
        for part in re.split(r"(?m)^(?=## )", old):
            if part.startswith("## "):
                kept[part.split("\n", 1)[0]] = part.rstrip() + "\n"
    for sec in sections:
        kept[sec.split("\n", 1)[0]] = sec.rstrip() + "\n\n" + header + "\n"
    order = ["## Build cost", "## SSH fan-out", "## Scale of a bring-up", "## Large state"]
    body = sorted(kept.items(), key=lambda kv: next((i for i, o in enumerate(order) if kv[0].startswith(o)), 99))
    block = "\n".join([BEGIN, "", *[v for _, v in body], END])
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        first_break = text.index("\n") + 1
        text = text[:first_break] + "\n" + block + "\n" + text[first_break:]
    DOCS.write_text(text)


def machine_header():
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    load = os.getloadavg()[0]
    return (f"Recorded {time.strftime('%Y-%m-%d')} by `bench/run` on this development machine: "
            f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB RAM, load average {load:.1f} when it started. "
            "Debian 12 host; nodes are containers on a private dockerd (see integration/README.md).")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sections", default="build,fanout,scale,state")
    ap.add_argument("--work", default="/var/tmp/flotilla-bench")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--sizes", default="3,10,30")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--build-target", default="/var/tmp/flotilla-bench-build")
    ap.add_argument("--no-docs", action="store_true", help="print the tables only")
    args = ap.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    header = machine_header()
    wanted = args.sections.split(",")
    sections = []
    src = snapshot(work)
    log(f"measuring the committed tree (HEAD {sh(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD']).stdout.strip()}) in {src}")
    if "build" in wanted:
        t = build_table(section_build(args, src))
        sections.append("## Build cost\n\n" + t + "\n")
        print(t, flush=True)
    # The binaries measured below: release builds in the same target folder (after the build
    # measurement, so they do not warm it).
    global EXAMPLES
    target = Path(args.build_target)
    sh(["cargo", "build", "--release", "--locked", "--bin", "flotilla", "--example", "node_image",
        "--example", "synthetic_fleet"], env=dict(os.environ, CARGO_TARGET_DIR=str(target)),
       cwd=str(src), timeout=5400)
    flotilla = str(target / "release" / "flotilla")
    EXAMPLES = target / "release" / "examples"
    cache = AptCache(work)
    try:
        if "fanout" in wanted or "scale" in wanted:
            cache.start(offline=False)
            ensure_images()
        if "fanout" in wanted:
            fan = section_fanout(args, flotilla, work, cache)
    finally:
        cache.stop()
    if "fanout" in wanted:
        t = fanout_table(fan, args.hosts, args.runs)
        sections.append(
            "## SSH fan-out: Docker install on fresh hosts, flotilla vs peers\n\n"
            "Each host is a fresh container from flotilla's node image (Debian 12 minbase + sshd, plus "
            "python3-apt for ansible) with its own root filesystem, so every install really runs apt and "
            "dpkg. Indexes and packages come from a local apt-cacher-ng, filled by one untimed install and "
            "then serving offline, so the download does not dominate. Every tool runs the same steps (`bench/peers/`): `apt-get update`, "
            "`apt-get install --no-install-recommends docker.io iptables ca-certificates`, start dockerd, "
            "wait for `docker version`. Controller CPU is everything the tool ran on this machine "
            "(its ssh processes included), from a cpuacct cgroup.\n\n" + t + "\n")
        print(t, flush=True)
    if "scale" in wanted:
        t = scale_table(section_scale(args, flotilla, work), args.runs)
        sections.append(
            "## Scale of a bring-up on the docker provider\n\n"
            "`flotilla up` of a Swarm (1 manager + N−1 workers) on node containers whose image has Docker "
            "preinstalled (`docker.method: preinstalled`), so the figure is flotilla's orchestration: "
            "container create, SSH, Docker start, swarm init and joins. Every run ends with all N nodes "
            "`ready/active` in the swarm (checked), then `down`. \"Flotilla's share\" is the CPU time of the "
            "flotilla process itself over the wall time: an upper bound on the time spent in flotilla rather "
            "than waiting on the engine or SSH.\n\n" + t + "\n")
        print(t, flush=True)
    if "state" in wanted:
        t = state_table(section_state(args, flotilla, work), args.repeat)
        sections.append(
            "## Large state\n\n"
            "A synthetic 1,000-node EC2 Swarm deployment (`examples/synthetic_fleet.rs`: the state a "
            "converged `up` leaves, and the recorded DescribeInstances answer for its 1,000 instances, "
            "replayed on loopback by `bench/replay_ec2.py`). `--no-probe` leaves out the SSH probes of "
            "every node (with them, `status` costs one SSH round trip per node, 32 at a time).\n\n" + t + "\n")
        print(t, flush=True)
    if not args.no_docs:
        write_docs(sections, header)
        log(f"wrote {DOCS}")


if __name__ == "__main__":
    main()
