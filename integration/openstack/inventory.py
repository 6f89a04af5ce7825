#!/usr/bin/env python3
"""What the OpenStack test cloud holds for a flotilla deployment, as JSON (servers with its tag,
floating IPs with its description, its security group, its key pair). Used by the tests to prove
that `down` leaves nothing behind and that failed runs create nothing."""
import json
import sys
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


def main():
    dep = sys.argv[1]
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "demo", "domain": {"id": "default"}, "password": "secret"}}},
                     "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}}
    h, data = call("POST", KS + "/auth/tokens", body=auth)
    tok = h["X-Subject-Token"]
    cat = {s["type"]: next(e["url"] for e in s["endpoints"] if e["interface"] == "public") for s in data["token"]["catalog"]}
    nova, neutron = cat["compute"], cat["network"].rstrip("/") + "/v2.0"
    servers = [s["name"] for s in call("GET", nova + "/servers?tags=" + urllib.parse.quote(f"flotilla:{dep}"), tok)[1]["servers"]]
    fips = [f["floating_ip_address"] for f in call("GET", neutron + "/floatingips", tok)[1]["floatingips"] if f.get("description", "").startswith(f"flotilla:{dep}:")]
    sgs = [g["name"] for g in call("GET", neutron + "/security-groups?name=" + urllib.parse.quote(f"flotilla-{dep}"), tok)[1]["security_groups"]]
    kps = [k["keypair"]["name"] for k in call("GET", nova + "/os-keypairs", tok)[1]["keypairs"] if k["keypair"]["name"] == f"flotilla-{dep}"]
    print(json.dumps({"servers": servers, "floating_ips": fips, "security_groups": sgs, "key_pairs": kps}))


if __name__ == "__main__":
    main()
