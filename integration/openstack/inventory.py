#!/usr/bin/env python3
"""What the OpenStack test cloud holds for a flotilla deployment, as JSON (servers with its tag,
floating IPs with its description, its security group, its key pair). Used by the tests to prove
that `down` leaves nothing behind and that failed runs create nothing.

    inventory.py DEPLOYMENT          what the deployment holds
    inventory.py tags DEPLOYMENT KEY one label's value on each of its resources
    inventory.py hand-made           create resources without flotilla's marks (for gc tests)
    inventory.py exists [--delete] ID...  which of these still exist (and delete them)
    inventory.py purge DEPLOYMENT    delete what the deployment holds (a test's clean-up)"""
import json
import sys
import time
import urllib.parse
import urllib.request

KS = "http://127.0.0.1:15000/v3"


def call(method, url, token=None, body=None, extra=None):
    h = {"Content-Type": "application/json", "OpenStack-API-Version": "compute 2.53"}
    if token:
        h["X-Auth-Token"] = token
    h.update(extra or {})
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None, method=method, headers=h)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers, json.loads(r.read() or b"{}")


def connect():
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "demo", "domain": {"id": "default"}, "password": "secret"}}},
                     "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}}
    h, data = call("POST", KS + "/auth/tokens", body=auth)
    tok = h["X-Subject-Token"]
    cat = {s["type"]: next(e["url"] for e in s["endpoints"] if e["interface"] == "public") for s in data["token"]["catalog"]}
    return tok, cat["compute"], cat["network"].rstrip("/") + "/v2.0"


def inventory(dep):
    tok, nova, neutron = connect()
    servers = [s["name"] for s in call("GET", nova + "/servers?tags=" + urllib.parse.quote(f"flotilla:{dep}"), tok)[1]["servers"]]
    fips = [f["floating_ip_address"] for f in call("GET", neutron + "/floatingips", tok)[1]["floatingips"] if f.get("description", "").startswith(f"flotilla:{dep}:")]
    sgs = [g["name"] for g in call("GET", neutron + "/security-groups?name=" + urllib.parse.quote(f"flotilla-{dep}"), tok)[1]["security_groups"]]
    kps = [k["keypair"]["name"] for k in call("GET", nova + "/os-keypairs", tok)[1]["keypairs"] if k["keypair"]["name"] == f"flotilla-{dep}"]
    print(json.dumps({"servers": servers, "floating_ips": fips, "security_groups": sgs, "key_pairs": kps}))


def tags(dep, key):
    """One label's value on the deployment's servers (metadata), security groups and floating
    IPs (Neutron tags `key=value`)."""
    tok, nova, neutron = connect()
    out = {}
    for s in call("GET", nova + "/servers/detail?tags=" + urllib.parse.quote(f"flotilla:{dep}"), tok)[1]["servers"]:
        out[s["id"]] = s["metadata"].get(key)
    tag = lambda r: next((t.split("=", 1)[1] for t in r.get("tags", []) if t.startswith(key + "=")), None)
    for g in call("GET", neutron + "/security-groups?name=" + urllib.parse.quote(f"flotilla-{dep}"), tok)[1]["security_groups"]:
        out[g["id"]] = tag(g)
    for f in call("GET", neutron + "/floatingips", tok)[1]["floatingips"]:
        if f.get("description", "").startswith(f"flotilla:{dep}:"):
            out[f["id"]] = tag(f)
    print(json.dumps(out))


def hand_made():
    """Resources gc must never touch: a security group and a floating IP without flotilla's
    tags or descriptions, and a key pair under a flotilla-style name holding someone else's key."""
    tok, nova, neutron = connect()
    sg = call("POST", neutron + "/security-groups", tok, {"security_group": {"name": "hand-made-gc", "description": "made by hand"}})[1]["security_group"]["id"]
    ext = call("GET", neutron + "/networks?name=public", tok)[1]["networks"][0]["id"]
    fip = call("POST", neutron + "/floatingips", tok, {"floatingip": {"floating_network_id": ext, "description": "office vpn"}})[1]["floatingip"]["id"]
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop"
    call("POST", nova + "/os-keypairs", tok, {"keypair": {"name": "flotilla-gc-os-hand", "public_key": key}})
    print(json.dumps([sg, fip, "flotilla-gc-os-hand"]))


def exists(ids):
    """Which of the given security group / floating IP ids and key pair names exist; the rest
    are deleted (used to clean up after `hand_made`) when `--delete` comes first."""
    tok, nova, neutron = connect()
    delete = ids[:1] == ["--delete"]
    ids = ids[1:] if delete else ids
    found = {g["id"]: ("security-groups", g["id"]) for g in call("GET", neutron + "/security-groups", tok)[1]["security_groups"]}
    found.update({f["id"]: ("floatingips", f["id"]) for f in call("GET", neutron + "/floatingips", tok)[1]["floatingips"]})
    kps = {k["keypair"]["name"] for k in call("GET", nova + "/os-keypairs", tok)[1]["keypairs"]}
    alive = [i for i in ids if i in found or i in kps]
    if delete:
        for i in alive:
            if i in kps:
                call("DELETE", nova + "/os-keypairs/" + urllib.parse.quote(i), tok)
            else:
                call("DELETE", f"{neutron}/{found[i][0]}/{i}", tok)
    print(json.dumps(alive))


def purge(dep):
    """Deletes what a deployment holds, behind flotilla's back (a test's own clean-up)."""
    tok, nova, neutron = connect()
    for s in call("GET", nova + "/servers?tags=" + urllib.parse.quote(f"flotilla:{dep}"), tok)[1]["servers"]:
        call("DELETE", f"{nova}/servers/{s['id']}", tok)
    for _ in range(120):
        if not call("GET", nova + "/servers?tags=" + urllib.parse.quote(f"flotilla:{dep}"), tok)[1]["servers"]:
            break
        time.sleep(1)
    for f in call("GET", neutron + "/floatingips", tok)[1]["floatingips"]:
        if f.get("description", "").startswith(f"flotilla:{dep}:"):
            call("DELETE", f"{neutron}/floatingips/{f['id']}", tok)
    for g in call("GET", neutron + "/security-groups?name=" + urllib.parse.quote(f"flotilla-{dep}"), tok)[1]["security_groups"]:
        call("DELETE", f"{neutron}/security-groups/{g['id']}", tok)
    for k in call("GET", nova + "/os-keypairs", tok)[1]["keypairs"]:
        if k["keypair"]["name"] == f"flotilla-{dep}":
            call("DELETE", nova + "/os-keypairs/" + urllib.parse.quote(k["keypair"]["name"]), tok)
    inventory(dep)


def main():
    if sys.argv[1] == "purge":
        purge(sys.argv[2])
    elif sys.argv[1] == "tags":
        tags(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "hand-made":
        hand_made()
    elif sys.argv[1] == "exists":
        exists(sys.argv[2:])
    else:
        inventory(sys.argv[1])


if __name__ == "__main__":
    main()
