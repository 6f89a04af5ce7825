#!/usr/bin/env python3
"""Data plane of flotilla's OpenStack test cloud.

Every ACTIVE nova server with a fixed IP in 10.199.1.0/24 gets a real host: a node container
(sshd only, like a fresh VM) on the test bed's dockerd at exactly that address, with the server's
key pair in root's authorized_keys, as cloud-init would write it. Deleted servers lose their host.
Talks only to loopback (keystone, nova) and the local Docker engine.
"""
import argparse
import json
import subprocess
import sys
import time
import urllib.request

NET = "flotilla-os-dp"
SUBNET = "10.199.1.0/24"
PREFIX = "10.199.1."


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


def http(method, url, token=None, body=None, headers=None):
    h = {"Content-Type": "application/json", "OpenStack-API-Version": "compute 2.53"}
    if token:
        h["X-Auth-Token"] = token
    h.update(headers or {})
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, method=method, headers=h)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers, json.loads(r.read() or b"{}")


def admin_session(keystone, password):
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": password}}},
                     "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    headers, data = http("POST", keystone + "/auth/tokens", body=body)
    nova = next(e["url"] for s in data["token"]["catalog"] if s["type"] == "compute" for e in s["endpoints"] if e["interface"] == "public")
    return headers["X-Subject-Token"], nova


def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--keystone", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--interval", type=float, default=0.5)
    a = p.parse_args()
    if docker("network", "inspect", NET, check=False).returncode != 0:
        docker("network", "create", "--subnet", SUBNET, "--gateway", PREFIX + "1", "--label", "io.flotilla.test=os-dataplane", NET)
    log(f"data plane: keystone {a.keystone}, network {NET} ({SUBNET}), image {a.image}")
    token, nova, token_at = None, None, 0
    keys = {}
    while True:
        try:
            if token is None or time.time() - token_at > 3000:
                token, nova = admin_session(a.keystone, a.password)
                token_at = time.time()
            _, data = http("GET", nova + "/servers/detail?all_tenants=1", token)
            active = {}
            for s in data.get("servers", []):
                if s.get("status") != "ACTIVE":
                    continue
                ips = [addr["addr"] for net in (s.get("addresses") or {}).values() for addr in net
                       if addr.get("OS-EXT-IPS:type", "fixed") == "fixed" and addr["addr"].startswith(PREFIX)]
                if ips:
                    active[s["id"]] = (s, ips[0])
            hosts = {n.removeprefix("osdp-"): n for n in docker("ps", "-a", "--filter", "label=io.flotilla.os-dataplane", "--format", "{{.Names}}").stdout.split()}
            for sid, name in hosts.items():
                if sid not in active:
                    docker("rm", "-f", "-v", name, check=False)
                    docker("volume", "rm", "-f", f"{name}-docker", check=False)
                    log(f"removed host {name} (server gone)")
            for sid, (s, ip) in active.items():
                if sid in hosts:
                    continue
                kn = s.get("key_name")
                ck = (kn, s.get("user_id"))
                if kn and ck not in keys:
                    try:
                        _, kp = http("GET", f"{nova}/os-keypairs/{kn}?user_id={s['user_id']}", token)
                        keys[ck] = kp["keypair"]["public_key"]
                    except Exception as e:  # keypair deleted already
                        log(f"no key pair {kn}: {e}")
                        keys[ck] = ""
                name = f"osdp-{sid}"
                r = docker("run", "-d", "--name", name, "--hostname", s["name"][:60], "--init", "--network", NET, "--ip", ip,
                           "--label", "io.flotilla.os-dataplane=1",
                           "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
                           "--security-opt", "apparmor=unconfined", "--device-cgroup-rule", "a *:* rwm",
                           "-v", f"{name}-docker:/var/lib/docker", "-e", f"SSH_AUTHORIZED_KEYS={keys.get(ck, '')}",
                           a.image, check=False)
                if r.returncode == 0:
                    log(f"started host {name} ({s['name']}) at {ip}")
                else:
                    docker("rm", "-f", "-v", name, check=False)
                    log(f"could not start host for {s['name']} yet: {r.stderr.strip()}")
        except Exception as e:  # cloud restarting (reset), docker busy: next round
            log(f"data plane round failed: {e}")
            token = None
        time.sleep(a.interval)


if __name__ == "__main__":
    main()
