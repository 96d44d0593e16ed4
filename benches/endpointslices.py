#!/usr/bin/env python3
"""What a `service:` pass reads (issue 29): the pods a Service selects vs its EndpointSlices, on the test API server.

For N pods behind one Service (shaped like the fleet benchmark's seeded pods: probe, resources, env, a volume,
status set), it creates the pods, and the EndpointSlices the EndpointSlice controller would write for them (the test
server runs no controller-manager: at most 100 endpoints per slice, each with its address, `ready`, `targetRef` and
node, the port resolved), then reads both as clbsync would: paged lists of 500, from the watch cache
(`resourceVersion=0` on the first page). Prints requests and response bytes per pass.

    CLBSYNC_TEST_KUBECONFIG=/path/to/kube-testbed/kubeconfig benches/endpointslices.py 100 1000

Talks to the kubeconfig's server (the test API server, loopback) only; deletes its namespace at the end.
"""

import base64
import json
import os
import ssl
import sys
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import yaml

CONFIG = yaml.safe_load(open(os.environ["CLBSYNC_TEST_KUBECONFIG"]))
CLUSTER = CONFIG["clusters"][0]["cluster"]
SERVER = CLUSTER["server"]
assert SERVER.startswith("https://127.0.0.1:"), f"not the loopback test server: {SERVER}"
TOKEN = next(u["user"]["token"] for u in CONFIG["users"] if "token" in u["user"])
CA = tempfile.NamedTemporaryFile(suffix=".pem", delete=False)
CA.write(base64.b64decode(CLUSTER["certificate-authority-data"]))
CA.close()
TLS = ssl.create_default_context(cafile=CA.name)


def call(method, path, body=None, content_type="application/json"):
    """One request; returns (status, response bytes)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(SERVER + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, context=TLS, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def pod(name, ip):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5", "team": "shop"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"},
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [{
                "name": "app",
                "image": "registry.example/web:1.2.3",
                "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
                "env": [{"name": f"SETTING_{i}", "value": f"value-{i}-of-a-typical-length"} for i in range(6)],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "1", "memory": "512Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/web"}],
            }],
            "volumes": [{"name": "config", "emptyDir": {}}],
        },
    }


def status(ip):
    t = "2025-01-01T00:00:00Z"
    return {"status": {
        "phase": "Running",
        "conditions": [{"type": c, "status": "True", "lastTransitionTime": t}
                       for c in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
        "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.168.0.10", "qosClass": "Burstable", "startTime": t,
        "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0, "started": True,
                               "image": "registry.example/web:1.2.3",
                               "imageID": "registry.example/web@sha256:0123456789abcdef",
                               "containerID": "containerd://0123456789abcdef0123456789abcdef",
                               "state": {"running": {"startedAt": t}}}],
    }}


def create_pod(ns, k):
    name, ip = f"web-{k:05d}", f"10.{k // 65536 % 256}.{k // 256 % 256}.{k % 256}"
    s, body = call("POST", f"/api/v1/namespaces/{ns}/pods", pod(name, ip))
    assert s == 201, body
    uid = json.loads(body)["metadata"]["uid"]
    s, body = call("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status", status(ip),
                   "application/merge-patch+json")
    assert s == 200, body
    return name, ip, uid


def slice_of(ns, i, endpoints):
    """An EndpointSlice as the controller writes it (discovery.k8s.io/v1beta1, as 1.20 serves it)."""
    return {
        "apiVersion": "discovery.k8s.io/v1beta1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"web-{i:05d}", "labels": {
            "kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
                       "targetRef": {"kind": "Pod", "namespace": ns, "name": name, "uid": uid},
                       "topology": {"kubernetes.io/hostname": "node-1"}} for name, ip, uid in endpoints],
    }


def paged(path):
    """A paged list as clbsync makes it: (requests, bytes)."""
    requests, size, token = 0, 0, None
    while True:
        query = f"limit=500&continue={token}" if token else "limit=500&resourceVersion=0"
        s, body = call("GET", f"{path}&{query}")
        assert s == 200, body
        requests, size = requests + 1, size + len(body)
        token = json.loads(body)["metadata"].get("continue")
        if not token:
            return requests, size


def measure(n):
    ns = f"bench-eps-{n}-{os.getpid()}"
    s, body = call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    assert s == 201, body
    try:
        with ThreadPoolExecutor(8) as pool:
            made = list(pool.map(lambda k: create_pod(ns, k), range(n)))
        for i in range(0, n, 100):
            s, body = call("POST", f"/apis/discovery.k8s.io/v1beta1/namespaces/{ns}/endpointslices",
                           slice_of(ns, i // 100, made[i:i + 100]))
            assert s == 201, body
        pods = paged(f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb")
        slices = paged(f"/apis/discovery.k8s.io/v1beta1/namespaces/{ns}/endpointslices"
                       "?labelSelector=kubernetes.io%2Fservice-name%3Dweb")
        print(f"{n} pods: pod list {pods[0]} request(s), {pods[1]:,} bytes ({pods[1] // n:,} per pod); "
              f"EndpointSlices {slices[0]} request(s), {slices[1]:,} bytes ({slices[1] // n:,} per endpoint)")
    finally:
        call("DELETE", f"/api/v1/namespaces/{ns}")


for n in map(int, sys.argv[1:] or ["100", "1000"]):
    measure(n)
