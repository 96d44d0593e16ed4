#!/usr/bin/env python3
"""Conformance of clb-emulator's STS and CVM metadata endpoints with Tencent Cloud's official Python SDK.

Run by clb-emulator/tests/sdk.rs against an emulator whose STS trusts the test kube-apiserver, e.g.:

    .venv/bin/python clb-emulator/tests/sdk/credentials.py --endpoint http://127.0.0.1:PORT \
        --token-file TOKEN --wrong-audience-token-file TOKEN2 --provider-id P --role-arn R --cvm-role ROLE

The SDK's own credential classes obtain the credentials (OIDCRoleArnCredential with its endpoint
overridden, DefaultTkeOIDCRoleArnProvider from the TKE_* environment, CVMRoleCredential with its
metadata URL pointed at the emulator) and a ClbClient signs DescribeLoadBalancers with them. Exits
non-zero on the first failure.
"""

import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request
import warnings

warnings.simplefilter("error")

from tencentcloud.clb.v20180317 import clb_client, models  # noqa: E402
from tencentcloud.common import credential  # noqa: E402
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException  # noqa: E402
from tencentcloud.common.profile.client_profile import ClientProfile  # noqa: E402
from tencentcloud.common.profile.http_profile import HttpProfile  # noqa: E402

REGION = "ap-guangzhou"
CHECKS = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    CHECKS.append(what)


class Emu:
    def __init__(self, endpoint):
        self.base = endpoint.rstrip("/")
        self.host = urllib.parse.urlparse(endpoint).netloc

    def clb(self, cred):
        profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=self.host, reqTimeout=10))
        return clb_client.ClbClient(cred, REGION, profile)

    def describe(self, cred):
        req = models.DescribeLoadBalancersRequest()
        req.from_json_string("{}")
        return json.loads(self.clb(cred).DescribeLoadBalancers(req).to_json_string())

    def admin(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        req = urllib.request.Request(self.base + "/_emulator/" + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def last_clb_call(self):
        return [c for c in self.admin("GET", "calls")["records"] if c["service"] == "clb"][-1]


def describe_signed_with(emu, cred, what):
    """DescribeLoadBalancers succeeds, signed with the temporary SecretId the SDK credential holds."""
    secret_id, _, token = cred.get_credential_info()
    check(secret_id and secret_id.startswith("AKID") and token, f"{what}: the SDK obtained a temporary credential")
    r = emu.describe(cred)
    check(r["TotalCount"] >= 1, f"{what}: DescribeLoadBalancers accepted")
    call = emu.last_clb_call()
    check(call["code"] == "Success" and call["secret_id"] == secret_id and call["temporary"],
          f"{what}: the emulator saw the call signed with the temporary credential and its token")
    return secret_id


def oidc(emu, args, token, session="conformance"):
    return credential.OIDCRoleArnCredential(REGION, args.provider_id, token, args.role_arn, session, 3600,
                                            endpoint=emu.base)


def sts_calls(emu):
    return [c for c in emu.admin("GET", "calls")["records"] if c["service"] == "sts"]


def read(path):
    with open(path) as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser()
    for a in ("endpoint", "token-file", "wrong-audience-token-file", "provider-id", "role-arn", "cvm-role"):
        ap.add_argument("--" + a, required=True)
    args = ap.parse_args()
    emu = Emu(args.endpoint)
    token = read(args.token_file)

    # OIDCRoleArnCredential with the endpoint overridden: the SDK builds the URL from it and sends it,
    # scheme included, as Host; the request is unsigned (Authorization: SKIP).
    cred = oidc(emu, args, token)
    describe_signed_with(emu, cred, "OIDCRoleArnCredential")
    (call,) = sts_calls(emu)
    check(call["action"] == "AssumeRoleWithWebIdentity" and call["code"] == "Success", "one STS call")
    check(call["params"]["DurationSeconds"] == 3600 and call["params"]["RoleSessionName"] == "conformance",
          "STS got the SDK's parameters")
    check(call["params"]["WebIdentityToken"].startswith("sha256:"), "STS logs a fingerprint, not the token")

    # DefaultTkeOIDCRoleArnProvider: region, provider, role and token file from the TKE_* environment.
    os.environ.update({"TKE_REGION": REGION, "TKE_PROVIDER_ID": args.provider_id, "TKE_ROLE_ARN": args.role_arn,
                       "TKE_WEB_IDENTITY_TOKEN_FILE": args.token_file})
    tke = credential.DefaultTkeOIDCRoleArnProvider().get_credentials()
    tke.endpoint = emu.base
    describe_signed_with(emu, tke, "DefaultTkeOIDCRoleArnProvider")
    check(sts_calls(emu)[-1]["params"]["RoleSessionName"].startswith("tencentcloud-python-sdk-"),
          "the TKE provider names its session like the SDK")

    # A token for another audience is refused with the documented STS code.
    wrong = oidc(emu, args, read(args.wrong_audience_token_file))
    try:
        wrong.get_credential_info()
        raise AssertionError("a token for the wrong audience was accepted")
    except TencentCloudSDKException as e:
        check(e.get_code() == "InvalidParameter.WebIdentityTokenError", f"wrong audience: {e.get_code()}")
        check("audience" in e.get_message() and e.get_request_id(), "wrong audience: message and RequestId")

    # Expiry: credentials living 1.5 s. A fixed Credential built from them fails with
    # AuthFailure.TokenFailure once they expired; the SDK's OIDC credential refreshes by itself.
    emu.admin("PUT", "sts", dict(emu.admin("GET", "sts"), lifetime_ms=1500))
    short = oidc(emu, args, token, "short")
    fixed = credential.Credential(*short.get_credential_info())
    emu.describe(fixed)
    for what, bad in (("no token", credential.Credential(fixed.secret_id, fixed.secret_key)),
                      ("wrong token", credential.Credential(fixed.secret_id, fixed.secret_key, "x" + fixed.token))):
        try:
            emu.describe(bad)
            raise AssertionError(f"{what}: accepted")
        except TencentCloudSDKException as e:
            check(e.get_code() == "AuthFailure.TokenFailure", f"{what}: {e.get_code()}")
    time.sleep(2.1)
    try:
        emu.describe(fixed)
        raise AssertionError("expired credentials were accepted")
    except TencentCloudSDKException as e:
        check(e.get_code() == "AuthFailure.TokenFailure", f"expired: {e.get_code()}")
    # The SDK refreshes when ExpiredTime - DurationSeconds/10 has passed: with credentials living less
    # than that, on every use. So only "a new temporary credential" can be checked here.
    emu.describe(short)
    call = emu.last_clb_call()
    check(call["code"] == "Success" and call["temporary"] and call["secret_id"] != fixed.secret_id,
          "after expiry the SDK's OIDC credential refreshed to a new credential")

    # CVMRoleCredential with the metadata URL pointed at the emulator (class attributes in the SDK).
    cvm = credential.CVMRoleCredential()
    cvm._metadata_endpoint = emu.base + "/latest/meta-data/"
    cvm._role_endpoint = cvm._metadata_endpoint + "cam/security-credentials/"
    check(cvm.get_role_name() == args.cvm_role, "CVMRoleCredential reads the role name")
    describe_signed_with(emu, cvm, "CVMRoleCredential")
    named = credential.CVMRoleCredential(args.cvm_role)
    named._role_endpoint = cvm._role_endpoint
    check(named.get_credential_info()[0] == cvm.get_credential_info()[0], "the same role credential for both")

    print(f"{len(CHECKS)} checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        print(f"FAILED after {len(CHECKS)} checks: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
