#!/usr/bin/env python3
"""Compute TC3-HMAC-SHA256 test vectors with the official Tencent Cloud Python SDK.

Nothing here re-implements the signature: every value comes out of the SDK's own
code paths (AbstractClient._build_req_inter / _get_tc3_signature and Sign.sign_tc3).
The script only pins the clock and observes the intermediate values by wrapping
the modules the SDK calls (time, hashlib, json, hmac, Sign).

Setup (scratch venv, not part of the project):
    python3 -m venv .venv-tc3
    .venv-tc3/bin/pip install tencentcloud-sdk-python-common==3.1.195 \
        tencentcloud-sdk-python-clb==3.1.194
Run:
    .venv-tc3/bin/python tc3-vectors.py > tc3-vectors.json

In the repository: tests/fixtures/tc3-vectors.json is its output with the project venv
(testbed/python-sdk.sh pins those SDK versions); clb-emulator/tests/sdk.rs runs it again and compares.
"""
import hashlib as _real_hashlib
import hmac as _real_hmac
import json as _real_json
import sys
import time as _real_time

from importlib import metadata

from tencentcloud.common import abstract_client as ac
from tencentcloud.common import credential
from tencentcloud.common import sign as sign_mod
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.clb.v20180317 import clb_client, models

SECRET_ID = "AKIDEXAMPLEclbsync0000000000000000"
SECRET_KEY = "clbsyncSecretKeyEXAMPLE0000000000"
TOKEN = "clbsync-session-token-EXAMPLE-0123456789"


class Recorder:
    """Collects what the SDK feeds into hashlib.sha256, hmac.new and Sign.sign_tc3."""

    def __init__(self):
        self.reset(0)

    def reset(self, ts):
        self.ts = ts
        self.sha_inputs = []
        self.hmacs = []
        self.sign_args = None


REC = Recorder()


class _TimeProxy:
    def __getattr__(self, name):
        return getattr(_real_time, name)

    @staticmethod
    def time():
        return REC.ts


class _HashlibProxy:
    def __getattr__(self, name):
        return getattr(_real_hashlib, name)

    @staticmethod
    def sha256(data=b""):
        REC.sha_inputs.append(bytes(data))
        return _real_hashlib.sha256(data)


class _HmacProxy:
    def __getattr__(self, name):
        return getattr(_real_hmac, name)

    @staticmethod
    def new(key, msg=None, digestmod=None):
        h = _real_hmac.new(key, msg, digestmod)
        REC.hmacs.append((key, msg, h))
        return h


class _CompactJson:
    """Stand-in for the json module so the SDK serialises without spaces (serde_json style)."""

    def __getattr__(self, name):
        return getattr(_real_json, name)

    @staticmethod
    def dumps(obj, **kw):
        kw.setdefault("separators", (",", ":"))
        return _real_json.dumps(obj, **kw)


_orig_sign_tc3 = sign_mod.Sign.sign_tc3


class _SignProxy:
    @staticmethod
    def sign_tc3(secret_key, date, service, str2sign):
        REC.sign_args = (date, service, str2sign)
        return _orig_sign_tc3(secret_key, date, service, str2sign)

    def __getattr__(self, name):
        return getattr(sign_mod.Sign, name)


ac.time = _TimeProxy()
ac.hashlib = _HashlibProxy()
ac.Sign = _SignProxy()
sign_mod.hmac = _HmacProxy()


def _key_chain():
    # Sign.sign_tc3 makes four hmac.new calls: date, service, "tc3_request", string-to-sign.
    h = REC.hmacs
    assert len(h) == 4, len(h)
    return {
        "secret_date_hex": h[0][2].hexdigest(),
        "secret_service_hex": h[1][2].hexdigest(),
        "secret_signing_hex": h[2][2].hexdigest(),
    }


def sdk_vector(name, description, action, request_model, ts, region, token=None,
               endpoint=None, compact_json=False):
    cred = credential.Credential(SECRET_ID, SECRET_KEY, token)
    http_profile = HttpProfile(endpoint=endpoint) if endpoint else HttpProfile()
    profile = ClientProfile(httpProfile=http_profile)  # TC3-HMAC-SHA256, POST, language zh-CN
    client = clb_client.ClbClient(cred, region, profile)
    params = request_model._serialize()

    ac.json = _CompactJson() if compact_json else _real_json
    REC.reset(ts)
    req = RequestInternal(client._get_endpoint(), profile.httpProfile.reqMethod,
                          client._requestPath, header={})
    client._build_req_inter(action, params, req)
    ac.json = _real_json

    payload = req.data
    # sha256 calls in order: payload, canonical request
    assert REC.sha_inputs[0] == payload.encode("utf-8")
    canonical_request = REC.sha_inputs[1].decode("utf-8")
    date, service, string_to_sign = REC.sign_args
    authorization = req.header["Authorization"]
    signature = authorization.rsplit("Signature=", 1)[1]
    return {
        "name": name,
        "description": description,
        "source": "tencentcloud-sdk-python-common %s / -clb %s: AbstractClient._build_req_inter" % (
            metadata.version("tencentcloud-sdk-python-common"), metadata.version("tencentcloud-sdk-python-clb")),
        "inputs": {
            "secret_id": SECRET_ID,
            "secret_key": SECRET_KEY,
            "token": token,
            "service": service,
            "host": req.header["Host"],
            "region": region,
            "action": req.header["X-TC-Action"],
            "version": req.header["X-TC-Version"],
            "timestamp": ts,
            "method": req.method,
            "canonical_uri": req.uri,
            "canonical_query_string": "",
            "content_type": req.header["Content-Type"],
            "payload": payload,
        },
        "expected": {
            "date": date,
            "credential_scope": "%s/%s/tc3_request" % (date, service),
            "signed_headers": "content-type;host",
            "hashed_payload": _real_hashlib.sha256(payload.encode("utf-8")).hexdigest(),
            "canonical_request": canonical_request,
            "hashed_canonical_request": string_to_sign.split("\n")[3],
            "string_to_sign": string_to_sign,
            **_key_chain(),
            "signature": signature,
            "authorization": authorization,
            "headers": dict(req.header),
        },
    }


def doc_example_vector():
    """Tencent's published signature-v3 example (cvm DescribeInstances), signed by the SDK's
    _get_tc3_signature with the doc's unmasked example key. The SDK itself always sends
    'application/json'; the doc uses 'application/json; charset=utf-8', so the request
    object is built by hand and only the signing step is the SDK's."""
    secret_id = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"
    secret_key = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
    ts = 1551113065
    payload = '{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Host": "cvm.tencentcloudapi.com",
        "X-TC-Action": "DescribeInstances",
        "X-TC-Timestamp": str(ts),
        "X-TC-Version": "2017-03-12",
        "X-TC-Region": "ap-guangzhou",
    }
    client = clb_client.ClbClient(credential.Credential(secret_id, secret_key), "ap-guangzhou")
    REC.reset(ts)
    req = RequestInternal("cvm.tencentcloudapi.com", "POST", "/", header=dict(headers), data=payload)
    date = "2019-02-25"
    signature = client._get_tc3_signature({}, req, date, "cvm", secret_key)
    _, service, string_to_sign = REC.sign_args
    authorization = ("TC3-HMAC-SHA256 Credential=%s/%s/%s/tc3_request, "
                     "SignedHeaders=content-type;host, Signature=%s" % (secret_id, date, service, signature))
    return {
        "name": "tencent-doc-cvm-describeinstances",
        "description": "Public Tencent Cloud 'signature v3' doc example; published signature is "
                       "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168",
        "source": "tencentcloud-sdk-python-common AbstractClient._get_tc3_signature (request built by hand)",
        "inputs": {
            "secret_id": secret_id,
            "secret_key": secret_key,
            "token": None,
            "service": "cvm",
            "host": headers["Host"],
            "region": headers["X-TC-Region"],
            "action": headers["X-TC-Action"],
            "version": headers["X-TC-Version"],
            "timestamp": ts,
            "method": "POST",
            "canonical_uri": "/",
            "canonical_query_string": "",
            "content_type": headers["Content-Type"],
            "payload": payload,
        },
        "expected": {
            "date": date,
            "credential_scope": "%s/%s/tc3_request" % (date, service),
            "signed_headers": "content-type;host",
            "hashed_payload": _real_hashlib.sha256(payload.encode("utf-8")).hexdigest(),
            "canonical_request": REC.sha_inputs[1].decode("utf-8"),
            "hashed_canonical_request": string_to_sign.split("\n")[3],
            "string_to_sign": string_to_sign,
            **_key_chain(),
            "signature": signature,
            "authorization": authorization,
            "headers": dict(headers, Authorization=authorization),
        },
    }


def model(cls, obj):
    m = cls()
    m.from_json_string(_real_json.dumps(obj))
    return m


def main():
    describe_targets = model(models.DescribeTargetsRequest, {
        "LoadBalancerId": "lb-12345678",
        "ListenerIds": ["lbl-12345678"],
    })
    register_l4 = model(models.RegisterTargetsRequest, {
        "LoadBalancerId": "lb-12345678",
        "ListenerId": "lbl-12345678",
        "Targets": [
            {"EniIp": "10.0.0.11", "Port": 8080, "Weight": 10},
            {"EniIp": "10.0.0.12", "Port": 8080, "Weight": 10},
        ],
    })
    register_l7 = model(models.RegisterTargetsRequest, {
        "LoadBalancerId": "lb-12345678",
        "ListenerId": "lbl-87654321",
        "LocationId": "loc-12345678",
        "Targets": [{"EniIp": "172.16.0.5", "Port": 80, "Weight": 50}],
    })
    task_status = model(models.DescribeTaskStatusRequest, {
        "TaskId": "55c85074-3e7f-4c6d-864f-673660d4f8de",
    })

    vectors = [
        sdk_vector("clb-describetargets-1551113065",
                   "DescribeTargets, SDK default JSON (', ' and ': ' separators), no token",
                   "DescribeTargets", describe_targets, 1551113065, "ap-guangzhou"),
        sdk_vector("clb-registertargets-l4-1700000000",
                   "RegisterTargets on a TCP listener with two EniIp targets, no token",
                   "RegisterTargets", register_l4, 1700000000, "ap-shanghai"),
        sdk_vector("clb-describetargets-token-1700000000",
                   "DescribeTargets with a session token (X-TC-Token is sent but not signed)",
                   "DescribeTargets", describe_targets, 1700000000, "ap-guangzhou", token=TOKEN),
        sdk_vector("clb-registertargets-l7-token-1551113065",
                   "RegisterTargets on a layer-7 rule addressed by LocationId, with session token",
                   "RegisterTargets", register_l7, 1551113065, "ap-guangzhou", token=TOKEN),
        sdk_vector("clb-registertargets-l4-compact-1700000000",
                   "Same request as clb-registertargets-l4-1700000000 but compact JSON body "
                   "(no spaces, as serde_json::to_string emits): signature changes with the bytes",
                   "RegisterTargets", register_l4, 1700000000, "ap-shanghai", compact_json=True),
        sdk_vector("clb-describetaskstatus-regional-host-1700000000",
                   "DescribeTaskStatus sent to the regional host clb.ap-guangzhou.tencentcloudapi.com "
                   "(host is signed; service in scope stays 'clb')",
                   "DescribeTaskStatus", task_status, 1700000000, "ap-guangzhou",
                   endpoint="clb.ap-guangzhou.tencentcloudapi.com"),
        doc_example_vector(),
    ]
    _real_json.dump(vectors, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
