#!/usr/bin/env python3
"""EC2 test cloud for flotilla's integration tests.

The control plane is moto_server (real EC2 API semantics, on loopback). This tool adds:

  proxy      a loopback HTTP proxy in front of moto that counts API calls by Action and can answer
             `503 RequestLimitExceeded` for the next N calls of an action (moto has no fault injection).
             Control: GET /_flotilla/counts, POST /_flotilla/reset, POST /_flotilla/throttle?action=A&count=N
  dataplane  watches moto and, for every running instance, starts a real host (a node container
             running sshd) at exactly the instance's private IP, with the instance's key pair in
             root's authorized_keys, as cloud-init would; removes it when the instance is gone.
  seed       resets moto and creates the test VPC/subnet (10.199.0.0/24) and a registered AMI;
             prints {"vpc", "subnet", "ami"} as JSON.
  inventory  prints what moto holds for a deployment tag: live instances, security groups, key pairs.
  throttle / counts / reset-counts   talk to the proxy's control endpoints.

Only loopback and the test's own 10.199.0.0/24 hosts receive traffic.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TAG = "io.flotilla.deployment"


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- proxy
class ProxyState:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.throttle = {}  # action -> remaining throttled calls


def make_handler(upstream, state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reply(self, code, body, ctype="application/json", extra=None):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _control(self):
            u = urllib.parse.urlparse(self.path)
            q = dict(urllib.parse.parse_qsl(u.query))
            with state.lock:
                if u.path == "/_flotilla/counts":
                    return self._reply(200, json.dumps(state.counts))
                if u.path == "/_flotilla/reset":
                    state.counts.clear()
                    state.throttle.clear()
                    return self._reply(200, "{}")
                if u.path == "/_flotilla/throttle":
                    state.throttle[q["action"]] = int(q.get("count", "1"))
                    return self._reply(200, json.dumps(state.throttle))
            return self._reply(404, "{}")

        def _forward(self, method):
            if self.path.startswith("/_flotilla/"):
                return self._control()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            params = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
            params.update(dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query)))
            action = params.get("Action", "?")
            with state.lock:
                state.counts[action] = state.counts.get(action, 0) + 1
                left = state.throttle.get(action, 0)
                if left > 0:
                    state.throttle[action] = left - 1
            if left > 0:
                xml = ('<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>'
                       '<Message>Request limit exceeded (injected by the flotilla test proxy).</Message></Error></Errors>'
                       '<RequestID>flotilla-test</RequestID></Response>')
                return self._reply(503, xml, "text/xml")
            req = urllib.request.Request(upstream + self.path, data=body if method == "POST" else None, method=method)
            for k, v in self.headers.items():
                if k.lower() not in ("host", "content-length", "connection"):
                    req.add_header(k, v)
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return self._reply(r.status, r.read(), r.headers.get("Content-Type", "text/xml"))
            except urllib.error.HTTPError as e:
                return self._reply(e.code, e.read(), e.headers.get("Content-Type", "text/xml"))

        def do_POST(self):
            self._forward("POST")

        def do_GET(self):
            self._forward("GET")

    return Handler


def cmd_proxy(a):
    host, port = a.listen.rsplit(":", 1)
    srv = ThreadingHTTPServer((host, int(port)), make_handler(a.upstream.rstrip("/"), ProxyState()))
    log(f"proxy {a.listen} -> {a.upstream}")
    srv.serve_forever()


# ---------------------------------------------------------------- moto client
def ec2(endpoint):
    import boto3
    return boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def cmd_seed(a):
    urllib.request.urlopen(urllib.request.Request(a.moto + "/moto-api/reset", data=b"", method="POST"), timeout=30).read()
    c = ec2(a.moto)
    vpc = c.create_vpc(CidrBlock="10.199.0.0/16")["Vpc"]["VpcId"]
    c.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": "flotilla-test"}])
    sub = c.create_subnet(VpcId=vpc, CidrBlock="10.199.0.0/24")["Subnet"]["SubnetId"]
    c.create_tags(Resources=[sub], Tags=[{"Key": "Name", "Value": "flotilla-test"}])
    # Any image will do for moto; the data plane runs flotilla's Debian node image behind it.
    base = c.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    inst = c.run_instances(ImageId=base, InstanceType="t3.micro", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ami = c.create_image(InstanceId=inst, Name="flotilla-debian-12-test")["ImageId"]
    c.terminate_instances(InstanceIds=[inst])
    print(json.dumps({"vpc": vpc, "subnet": sub, "ami": ami}))


def cmd_terminate(a):
    """Out-of-band termination (an instance dying under the deployment)."""
    ec2(a.moto).terminate_instances(InstanceIds=[a.instance])


def cmd_inventory(a):
    c = ec2(a.moto)
    f = [{"Name": f"tag:{TAG}", "Values": [a.deployment]}]
    live = []
    for r in c.describe_instances(Filters=f + [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped", "shutting-down"]}])["Reservations"]:
        live += [i["InstanceId"] for i in r["Instances"]]
    sgs = [g["GroupId"] for g in c.describe_security_groups(Filters=f)["SecurityGroups"]]
    kps = [k["KeyName"] for k in c.describe_key_pairs(Filters=f)["KeyPairs"]]
    print(json.dumps({"instances": live, "security_groups": sgs, "key_pairs": kps}))


def cmd_tags(a):
    """One tag's value on every instance, security group and key pair of a deployment."""
    c = ec2(a.moto)
    f = [{"Name": f"tag:{TAG}", "Values": [a.deployment]}]
    val = lambda tags: next((t["Value"] for t in tags or [] if t["Key"] == a.key), None)
    out = {}
    for r in c.describe_instances(Filters=f + [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])["Reservations"]:
        out.update({i["InstanceId"]: val(i.get("Tags")) for i in r["Instances"]})
    out.update({g["GroupId"]: val(g.get("Tags")) for g in c.describe_security_groups(Filters=f)["SecurityGroups"]})
    out.update({k["KeyName"]: val(k.get("Tags")) for k in c.describe_key_pairs(Filters=f)["KeyPairs"]})
    print(json.dumps(out))


def cmd_hand_made(a):
    """Resources gc must never touch: an instance, a security group and a key pair without
    flotilla's tags, and an instance with only a deployment tag (no `managed`). In the default
    VPC (not the data plane's subnet), so no host is started for them."""
    c = ec2(a.moto)
    base = c.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    bare = c.run_instances(ImageId=base, InstanceType="t3.micro", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    half = c.run_instances(ImageId=base, InstanceType="t3.micro", MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": TAG, "Value": a.deployment}]}])["Instances"][0]["InstanceId"]
    sg = c.create_security_group(GroupName=f"hand-made-{a.deployment}", Description="made by hand")["GroupId"]
    c.create_key_pair(KeyName=f"hand-made-{a.deployment}")
    print(json.dumps({"instances": [bare, half], "security_group": sg, "key_pair": f"hand-made-{a.deployment}"}))


def cmd_exists(a):
    """Which of the given instance / security group ids and key names still exist (alive)."""
    c = ec2(a.moto)
    alive = set()
    for r in c.describe_instances()["Reservations"]:
        alive |= {i["InstanceId"] for i in r["Instances"] if i["State"]["Name"] != "terminated"}
    alive |= {g["GroupId"] for g in c.describe_security_groups()["SecurityGroups"]}
    alive |= {k["KeyName"] for k in c.describe_key_pairs()["KeyPairs"]}
    print(json.dumps([x for x in a.ids if x in alive]))


# ---------------------------------------------------------------- data plane
def docker(*args, check=True):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def cmd_dataplane(a):
    c = ec2(a.moto)
    if docker("network", "inspect", a.network, check=False).returncode != 0:
        docker("network", "create", "--subnet", a.subnet, "--label", "io.flotilla.test=ec2-dataplane", a.network)
    log(f"data plane: moto {a.moto}, network {a.network} ({a.subnet}), image {a.image}")
    keys = {}
    while True:
        try:
            running = {}
            for r in c.describe_instances()["Reservations"]:
                for i in r["Instances"]:
                    if i["State"]["Name"] in ("pending", "running") and i.get("PrivateIpAddress", "").startswith(a.prefix):
                        running[i["InstanceId"]] = i
            hosts = {}
            out = docker("ps", "-a", "--filter", "label=io.flotilla.ec2-dataplane", "--format", "{{.Names}}").stdout.split()
            for name in out:
                hosts[name.removeprefix("ec2dp-")] = name
            for iid, name in hosts.items():
                if iid not in running:
                    docker("rm", "-f", "-v", name, check=False)
                    docker("volume", "rm", "-f", f"{name}-docker", check=False)
                    log(f"removed host {name} (instance gone)")
            for iid, i in running.items():
                if iid in hosts:
                    continue
                kn = i.get("KeyName")
                if kn and kn not in keys:
                    kp = c.describe_key_pairs(KeyNames=[kn], IncludePublicKey=True)["KeyPairs"]
                    keys[kn] = kp[0]["PublicKey"] if kp else ""
                name = f"ec2dp-{iid}"
                r = docker("run", "-d", "--name", name, "--hostname", iid, "--init", "--network", a.network,
                           "--ip", i["PrivateIpAddress"], "--label", "io.flotilla.ec2-dataplane=1",
                           "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
                           "--security-opt", "apparmor=unconfined", "--device-cgroup-rule", "a *:* rwm",
                           "-v", f"{name}-docker:/var/lib/docker", "-e", f"SSH_AUTHORIZED_KEYS={keys.get(kn, '')}",
                           a.image, check=False)
                if r.returncode == 0:
                    log(f"started host {name} at {i['PrivateIpAddress']}")
                else:
                    docker("rm", "-f", "-v", name, check=False)
                    log(f"could not start host for {iid} yet: {r.stderr.strip()}")
        except Exception as e:  # moto restarting, docker busy: try again next round
            log(f"data plane round failed: {e}")
        time.sleep(a.interval)


# ---------------------------------------------------------------- proxy control
def control(a, path):
    with urllib.request.urlopen(urllib.request.Request(a.proxy + path, data=b"", method="POST" if "counts" not in path else "GET"), timeout=10) as r:
        print(r.read().decode())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("proxy"); s.add_argument("--listen", default="127.0.0.1:5056"); s.add_argument("--upstream", default="http://127.0.0.1:5055")
    s = sub.add_parser("dataplane"); s.add_argument("--moto", default="http://127.0.0.1:5055"); s.add_argument("--network", default="flotilla-ec2-dp")
    s.add_argument("--subnet", default="10.199.0.0/24"); s.add_argument("--prefix", default="10.199.0."); s.add_argument("--image", required=True)
    s.add_argument("--interval", type=float, default=0.5)
    s = sub.add_parser("seed"); s.add_argument("--moto", default="http://127.0.0.1:5055")
    s = sub.add_parser("inventory"); s.add_argument("--moto", default="http://127.0.0.1:5055"); s.add_argument("deployment")
    s = sub.add_parser("terminate"); s.add_argument("--moto", default="http://127.0.0.1:5055"); s.add_argument("instance")
    s = sub.add_parser("tags"); s.add_argument("--moto", default="http://127.0.0.1:5055"); s.add_argument("deployment"); s.add_argument("key")
    s = sub.add_parser("hand-made"); s.add_argument("--moto", default="http://127.0.0.1:5055"); s.add_argument("deployment")
    s = sub.add_parser("exists"); s.add_argument("--moto", default="http://127.0.0.1:5055"); s.add_argument("ids", nargs="*")
    for name in ("counts", "reset-counts", "throttle"):
        s = sub.add_parser(name); s.add_argument("--proxy", default="http://127.0.0.1:5056")
        if name == "throttle":
            s.add_argument("action"); s.add_argument("count", type=int)
    a = p.parse_args()
    if a.cmd == "proxy": cmd_proxy(a)
    elif a.cmd == "dataplane": cmd_dataplane(a)
    elif a.cmd == "seed": cmd_seed(a)
    elif a.cmd == "inventory": cmd_inventory(a)
    elif a.cmd == "terminate": cmd_terminate(a)
    elif a.cmd == "tags": cmd_tags(a)
    elif a.cmd == "hand-made": cmd_hand_made(a)
    elif a.cmd == "exists": cmd_exists(a)
    elif a.cmd == "counts": control(a, "/_flotilla/counts")
    elif a.cmd == "reset-counts": control(a, "/_flotilla/reset")
    elif a.cmd == "throttle": control(a, f"/_flotilla/throttle?action={a.action}&count={a.count}")


if __name__ == "__main__":
    main()
