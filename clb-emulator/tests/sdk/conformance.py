#!/usr/bin/env python3
"""Conformance of clb-emulator against Tencent Cloud's official Python SDK.

Run by clb-emulator/tests/sdk.rs against an emulator seeded with clb-emulator/examples/state.yaml
and a task delay > 0, e.g.:

    .venv/bin/python clb-emulator/tests/sdk/conformance.py --endpoint http://127.0.0.1:PORT \
        --secret-id AKID... --secret-key ... [--token-secret-id ID --token-secret-key KEY --token TOKEN]

Every supported action is called through the SDK's typed client (request models built with
from_json_string, responses parsed by the SDK models). SDK warnings (e.g. "X fileds are useless."
emitted by the models' _deserialize for unknown fields) are turned into errors, so any field the
emulator sends that the SDK does not know fails the run. Exits non-zero on the first failure.
"""

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request
import warnings
from unittest import mock

warnings.simplefilter("error")

from tencentcloud.clb.v20180317 import clb_client, models  # noqa: E402
from tencentcloud.common import abstract_client, credential  # noqa: E402
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException  # noqa: E402
from tencentcloud.common.profile.client_profile import ClientProfile  # noqa: E402
from tencentcloud.common.profile.http_profile import HttpProfile  # noqa: E402

LB = "lb-web00001"
L4 = "lbl-tcp00080"
L7 = "lbl-http8080"
LOC = "loc-api00001"
LOC_TG = "loc-tg000001"

CHECKS = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    CHECKS.append(what)


class Emu:
    def __init__(self, endpoint, secret_id, secret_key, token=None):
        parsed = urllib.parse.urlparse(endpoint)
        self.base = endpoint.rstrip("/")
        # The SDK builds the URL as "<scheme>://<endpoint><path>" and sends Host: <endpoint>;
        # endpoint must be host:port without scheme.
        self.host = parsed.netloc
        self.client = self.make_client(secret_id, secret_key, token)

    def make_client(self, secret_id, secret_key, token=None):
        http = HttpProfile(protocol="http", endpoint=self.host, reqTimeout=10)
        profile = ClientProfile(httpProfile=http)
        return clb_client.ClbClient(credential.Credential(secret_id, secret_key, token), "ap-guangzhou", profile)

    def call(self, action, params, client=None):
        """Typed SDK call: request model from JSON, response parsed by the SDK model."""
        client = client or self.client
        req = getattr(models, action + "Request")()
        req.from_json_string(json.dumps(params))
        resp = getattr(client, action)(req)
        out = json.loads(resp.to_json_string())
        check(isinstance(out.get("RequestId"), str) and len(out["RequestId"]) == 36, f"{action}: RequestId is a UUID")
        return out

    def error(self, action, params, client=None, raw=False):
        """Expects an API error; returns its code."""
        try:
            if raw:
                (client or self.client).call_json(action, params)
            else:
                self.call(action, params, client)
        except TencentCloudSDKException as e:
            check(e.get_request_id(), f"{action}: error carries a RequestId")
            return e.get_code()
        raise AssertionError(f"{action} {params} unexpectedly succeeded")

    def wait(self, task_id, expect_running=False):
        seen_running = False
        for _ in range(400):
            r = self.call("DescribeTaskStatus", {"TaskId": task_id})
            if r["Status"] == 2:
                seen_running = True
                time.sleep(0.025)
                continue
            check(r["LoadBalancerIds"] == [LB], "DescribeTaskStatus: LoadBalancerIds")
            if expect_running:
                check(seen_running, "task was observed running (Status 2) before completion")
            return r
        raise AssertionError(f"task {task_id} never finished")

    def admin(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        req = urllib.request.Request(self.base + "/_emulator/" + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def targets(self, listener_ids=None, filters=None):
        p = {"LoadBalancerId": LB}
        if listener_ids:
            p["ListenerIds"] = listener_ids
        if filters:
            p["Filters"] = filters
        return self.call("DescribeTargets", p)["Listeners"]


def l4_targets(emu):
    (l,) = emu.targets([L4])
    check(l["Rules"] is None, "DescribeTargets: L4 listener has Rules null")
    return {(t["PrivateIpAddresses"][0], t["Port"]): t for t in l["Targets"]}


def l7_targets(emu, loc=LOC):
    (l,) = emu.targets([L7])
    check(l["Targets"] is None, "DescribeTargets: L7 listener has Targets null")
    (rule,) = [r for r in l["Rules"] if r["LocationId"] == loc]
    return {(t["PrivateIpAddresses"][0], t["Port"]): t for t in rule["Targets"]}


def describe(emu):
    r = emu.call("DescribeLoadBalancers", {"LoadBalancerIds": [LB, "lb-classic1", "lb-missing"]})
    check(r["TotalCount"] == 2, "DescribeLoadBalancers: unknown ids are omitted")
    by_id = {lb["LoadBalancerId"]: lb for lb in r["LoadBalancerSet"]}
    check(by_id[LB]["Forward"] == 1 and by_id["lb-classic1"]["Forward"] == 0, "DescribeLoadBalancers: Forward")
    check(by_id[LB]["LoadBalancerVips"] == ["10.0.0.100"], "DescribeLoadBalancers: VIPs")
    r = emu.call("DescribeLoadBalancers", {"Limit": 1, "Offset": 1})
    check(r["TotalCount"] == 2 and len(r["LoadBalancerSet"]) == 1, "DescribeLoadBalancers: paging")

    r = emu.call("DescribeListeners", {"LoadBalancerId": LB})
    check(r["TotalCount"] == 3, "DescribeListeners: 3 listeners")
    ls = {l["ListenerId"]: l for l in r["Listeners"]}
    check(ls[L4]["Protocol"] == "TCP" and ls[L4]["Rules"] is None, "DescribeListeners: TCP has Rules null")
    check([x["LocationId"] for x in ls[L7]["Rules"]] == [LOC, LOC_TG], "DescribeListeners: HTTP rules")
    check(ls[L7]["Rules"][0]["Domain"] == "www.example.com" and ls[L7]["Rules"][0]["Url"] == "/api", "rule domain/url")
    check(ls["lbl-udp00053"]["TargetType"] == "TARGETGROUP", "DescribeListeners: TargetType")
    r = emu.call("DescribeListeners", {"LoadBalancerId": LB, "Protocol": "HTTP", "Port": 8080})
    check([l["ListenerId"] for l in r["Listeners"]] == [L7], "DescribeListeners: Protocol/Port filter")

    l4 = l4_targets(emu)
    eni = l4[("10.0.1.11", 8080)]
    check(eni["Type"] == "ENI" and eni["EniId"].startswith("eni-") and eni["InstanceId"] == eni["EniId"], "ENI backend")
    check(eni["Weight"] == 10 and eni["PublicIpAddresses"] is None, "ENI backend weight/public ips")
    cvm = l4[("172.16.0.5", 30080)]
    check(cvm["Type"] == "CVM" and cvm["InstanceId"] == "ins-node0001" and cvm["Weight"] == 20, "CVM backend")
    check(set(l7_targets(emu)) == {("10.0.1.12", 8080)}, "L7 rule targets")
    ls = emu.targets(filters=[{"Name": "location-id", "Values": [LOC]}])
    check([l["ListenerId"] for l in ls] == [L7] and len(ls[0]["Rules"]) == 1, "DescribeTargets: location-id filter")
    ls = emu.targets([L4], filters=[{"Name": "private-ip-address", "Values": ["172.16.0.5"]}])
    check(len(ls[0]["Targets"]) == 1, "DescribeTargets: private-ip-address filter")
    r = emu.call("DescribeTargets", {"LoadBalancerId": LB, "Protocol": "TCP", "Port": 80})
    check([l["ListenerId"] for l in r["Listeners"]] == [L4], "DescribeTargets: Protocol/Port filter")


def mutate(emu):
    # RegisterTargets, L4, with a running task: LB locked meanwhile.
    r = emu.call("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                     "Targets": [{"EniIp": "10.0.2.1", "Port": 8080},
                                                 {"EniIp": "10.0.2.2", "Port": 8080, "Weight": 0}]})
    task = r["RequestId"]
    check(("10.0.2.1", 8080) not in l4_targets(emu), "change is not visible before the task completes")
    code = emu.error("DeregisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                           "Targets": [{"EniIp": "10.0.1.11", "Port": 8080}]})
    check(code == "FailedOperation.ResourceInOperating", "concurrent mutation on a locked LB")
    check(emu.wait(task, expect_running=True)["Status"] == 0, "RegisterTargets task succeeded")
    l4 = l4_targets(emu)
    check(l4[("10.0.2.1", 8080)]["Weight"] == 10 and l4[("10.0.2.2", 8080)]["Weight"] == 0, "registered with weights")
    check(l4[("10.0.2.1", 8080)]["Type"] == "ENI", "registered target is ENI")

    code = emu.error("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                         "Targets": [{"EniIp": "10.0.2.1", "Port": 8080}]})
    check(code == "InvalidParameterValue.Duplicate", "re-registering a bound target")
    code = emu.error("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                         "Targets": [{"EniIp": "10.0.9.1", "Port": 1}, {"EniIp": "10.0.9.1", "Port": 1}]})
    check(code == "InvalidParameterValue.Duplicate", "duplicate inside one request")

    # RegisterTargets, L7 by Domain+Url.
    r = emu.call("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L7, "Domain": "www.example.com",
                                     "Url": "/api", "Targets": [{"EniIp": "10.0.3.1", "Port": 80, "Weight": 30}]})
    emu.wait(r["RequestId"])
    check(l7_targets(emu)[("10.0.3.1", 80)]["Weight"] == 30, "L7 register by Domain+Url")

    # ModifyTargetWeight (top-level Weight applies to targets without their own).
    r = emu.call("ModifyTargetWeight", {"LoadBalancerId": LB, "ListenerId": L4, "Weight": 55,
                                        "Targets": [{"EniIp": "10.0.2.1", "Port": 8080},
                                                    {"EniIp": "10.0.2.2", "Port": 8080, "Weight": 5}]})
    emu.wait(r["RequestId"])
    l4 = l4_targets(emu)
    check(l4[("10.0.2.1", 8080)]["Weight"] == 55 and l4[("10.0.2.2", 8080)]["Weight"] == 5, "ModifyTargetWeight")

    # BatchModifyTargetWeight over L4 and L7.
    r = emu.call("BatchModifyTargetWeight", {"LoadBalancerId": LB, "ModifyList": [
        {"ListenerId": L4, "Targets": [{"EniIp": "10.0.2.1", "Port": 8080, "Weight": 70}]},
        {"ListenerId": L7, "LocationId": LOC, "Weight": 40, "Targets": [{"EniIp": "10.0.3.1", "Port": 80}]}]})
    emu.wait(r["RequestId"])
    check(l4_targets(emu)[("10.0.2.1", 8080)]["Weight"] == 70, "BatchModifyTargetWeight L4")
    check(l7_targets(emu)[("10.0.3.1", 80)]["Weight"] == 40, "BatchModifyTargetWeight L7 (rule Weight)")

    # BatchRegisterTargets with partial failure: unknown listener and unknown location fail,
    # the other listener's targets are applied.
    r = emu.call("BatchRegisterTargets", {"LoadBalancerId": LB, "Targets": [
        {"ListenerId": L4, "EniIp": "10.0.4.1", "Port": 8080},
        {"ListenerId": "lbl-missing0", "EniIp": "10.0.4.1", "Port": 8080},
        {"ListenerId": L7, "LocationId": "loc-missing0", "EniIp": "10.0.4.1", "Port": 8080}]})
    check(sorted(r["FailListenerIdSet"]) == sorted(["lbl-missing0", L7]), "BatchRegisterTargets: FailListenerIdSet")
    check("lbl-missing0" in r["Message"], "BatchRegisterTargets: Message names the failure")
    emu.wait(r["RequestId"])
    check(("10.0.4.1", 8080) in l4_targets(emu), "BatchRegisterTargets: other listener applied")
    r = emu.call("BatchRegisterTargets", {"LoadBalancerId": LB, "Targets": [
        {"ListenerId": L7, "LocationId": LOC, "EniIp": "10.0.4.2", "Port": 81, "Weight": 15}]})
    check(r["FailListenerIdSet"] == [] and r["Message"] == "", "BatchRegisterTargets: full success")
    emu.wait(r["RequestId"])
    check(l7_targets(emu)[("10.0.4.2", 81)]["Weight"] == 15, "BatchRegisterTargets: L7 applied")

    # BatchDeregisterTargets with partial failure (target not bound on L7).
    r = emu.call("BatchDeregisterTargets", {"LoadBalancerId": LB, "Targets": [
        {"ListenerId": L4, "EniIp": "10.0.4.1", "Port": 8080},
        {"ListenerId": L7, "LocationId": LOC, "EniIp": "10.9.9.9", "Port": 81}]})
    check(r["FailListenerIdSet"] == [L7], "BatchDeregisterTargets: FailListenerIdSet")
    emu.wait(r["RequestId"])
    check(("10.0.4.1", 8080) not in l4_targets(emu), "BatchDeregisterTargets: applied")
    check(("10.0.4.2", 81) in l7_targets(emu), "BatchDeregisterTargets: failed listener unchanged")

    # DeregisterTargets, L7 by LocationId, and L4.
    r = emu.call("DeregisterTargets", {"LoadBalancerId": LB, "ListenerId": L7, "LocationId": LOC,
                                       "Targets": [{"EniIp": "10.0.3.1", "Port": 80}, {"EniIp": "10.0.4.2", "Port": 81}]})
    emu.wait(r["RequestId"])
    check(set(l7_targets(emu)) == {("10.0.1.12", 8080)}, "DeregisterTargets L7")
    r = emu.call("DeregisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                       "Targets": [{"EniIp": "10.0.2.1", "Port": 8080}, {"EniIp": "10.0.2.2", "Port": 8080}]})
    emu.wait(r["RequestId"])
    check(set(l4_targets(emu)) == {("10.0.1.11", 8080), ("172.16.0.5", 30080)}, "DeregisterTargets L4")
    code = emu.error("DeregisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                           "Targets": [{"EniIp": "10.0.2.1", "Port": 8080}]})
    check(code == "InvalidParameter", "deregistering an unbound target")


def tags(emu):
    """Target tags: Target.Tag / BatchTarget.Tag on register, Backend.Tag, the tag filter and
    BatchModifyTargetTag (synchronous, all-or-nothing)."""
    check(l4_targets(emu)[("172.16.0.5", 30080)]["Tag"] == "by-hand", "Backend.Tag from the seed")
    check(l4_targets(emu)[("10.0.1.11", 8080)]["Tag"] == "", "Backend.Tag of an untagged target is empty")
    r = emu.call("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                     "Targets": [{"EniIp": "10.0.8.1", "Port": 80, "Tag": "clbsync:a"}]})
    emu.wait(r["RequestId"])
    check(l4_targets(emu)[("10.0.8.1", 80)]["Tag"] == "clbsync:a", "RegisterTargets: Target.Tag stored")
    r = emu.call("BatchRegisterTargets", {"LoadBalancerId": LB, "Targets": [
        {"ListenerId": L7, "LocationId": LOC, "EniIp": "10.0.8.2", "Port": 80, "Tag": "clbsync:b"}]})
    emu.wait(r["RequestId"])
    check(l7_targets(emu)[("10.0.8.2", 80)]["Tag"] == "clbsync:b", "BatchRegisterTargets: BatchTarget.Tag stored")
    ls = emu.targets(filters=[{"Name": "tag", "Values": ["clbsync:a", "clbsync:b"]}])
    found = {(t["PrivateIpAddresses"][0], t["Tag"]) for l in ls for t in (l["Targets"] or []) +
             [t for r in (l["Rules"] or []) for t in r["Targets"]]}
    check(found == {("10.0.8.1", "clbsync:a"), ("10.0.8.2", "clbsync:b")}, f"DescribeTargets: tag filter ({found})")

    # Synchronous: visible at once, no task behind the RequestId. Target.Tag wins over RsTagRule.Tag.
    r = emu.call("BatchModifyTargetTag", {"LoadBalancerId": LB, "ModifyList": [
        {"ListenerId": L4, "Tag": "clbsync:c", "Targets": [{"EniIp": "10.0.8.1", "Port": 80},
                                                           {"EniIp": "10.0.1.11", "Port": 8080, "Tag": "own"}]},
        {"ListenerId": L7, "LocationId": LOC, "Targets": [{"EniIp": "10.0.8.2", "Port": 80}]}]})
    check(set(r) == {"RequestId"}, "BatchModifyTargetTag: the response holds only RequestId")
    l4 = l4_targets(emu)
    check(l4[("10.0.8.1", 80)]["Tag"] == "clbsync:c" and l4[("10.0.1.11", 8080)]["Tag"] == "own",
          "BatchModifyTargetTag: applied synchronously, Target.Tag over RsTagRule.Tag")
    check(l7_targets(emu)[("10.0.8.2", 80)]["Tag"] == "", "BatchModifyTargetTag: no Tag at all clears it")
    check(emu.error("DescribeTaskStatus", {"TaskId": r["RequestId"]}) == "InvalidParameter",
          "BatchModifyTargetTag: synchronous, its RequestId is no task")
    one = [{"EniIp": "10.0.8.1", "Port": 80, "Tag": "x"}]
    cases = [
        ({"LoadBalancerId": LB, "ModifyList": [{"ListenerId": "lbl-missing0", "Targets": one}]},
         "InvalidParameter.ListenerIdNotFound"),
        ({"LoadBalancerId": LB, "ModifyList": [{"ListenerId": L7, "LocationId": "loc-missing0", "Targets": one}]},
         "InvalidParameter.LocationNotFound"),
        ({"LoadBalancerId": LB, "ModifyList": [{"ListenerId": L7, "Targets": one}]}, "InvalidParameter"),
        ({"LoadBalancerId": LB, "ModifyList": [{"ListenerId": L4, "Targets": one},
                                               {"ListenerId": L4, "Targets": [{"EniIp": "10.9.9.9", "Port": 1}]}]},
         "InvalidParameter"),
        ({"LoadBalancerId": "lb-missing", "ModifyList": [{"ListenerId": L4, "Targets": one}]},
         "InvalidParameter.LBIdNotFound"),
        ({"LoadBalancerId": "lb-classic1", "ModifyList": [{"ListenerId": "lbl-classic80", "Targets": one}]},
         "UnsupportedOperation"),
        ({"LoadBalancerId": LB, "ModifyList": [
            {"ListenerId": L4, "Targets": [{"EniIp": f"10.3.{i // 250}.{i % 250}", "Port": 80} for i in range(501)]}]},
         "InvalidParameterValue.Length"),
    ]
    for params, want in cases:
        got = emu.error("BatchModifyTargetTag", params)
        check(got == want, f"BatchModifyTargetTag -> {want} (got {got})")
    check(l4_targets(emu)[("10.0.8.1", 80)]["Tag"] == "clbsync:c", "BatchModifyTargetTag: all-or-nothing")
    # A running task locks the load balancer for BatchModifyTargetTag too.
    r = emu.call("DeregisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                       "Targets": [{"EniIp": "10.0.8.1", "Port": 80}]})
    check(emu.error("BatchModifyTargetTag", {"LoadBalancerId": LB, "ModifyList": [
        {"ListenerId": L7, "LocationId": LOC, "Targets": [{"EniIp": "10.0.8.2", "Port": 80, "Tag": "y"}]}]})
          == "FailedOperation.ResourceInOperating", "BatchModifyTargetTag on a locked LB")
    emu.wait(r["RequestId"])
    r = emu.call("DeregisterTargets", {"LoadBalancerId": LB, "ListenerId": L7, "LocationId": LOC,
                                       "Targets": [{"EniIp": "10.0.8.2", "Port": 80}]})
    emu.wait(r["RequestId"])


def health(emu):
    r = emu.call("DescribeTargetHealth", {"LoadBalancerIds": [LB]})
    (lb,) = r["LoadBalancers"]
    ls = {l["ListenerId"]: l for l in lb["Listeners"]}
    (rule,) = ls[L4]["Rules"]
    check(rule["Domain"] is None and rule["Url"] is None and rule["LocationId"], "health: L4 pseudo-rule")
    ips = {(t["IP"], t["Port"]): t for t in rule["Targets"]}
    check(ips[("10.0.1.11", 8080)]["HealthStatus"] is True, "health: HealthStatus")
    check(ips[("10.0.1.11", 8080)]["HealthStatusDetail"] == "Alive", "health: HealthStatusDetail")
    check([x["LocationId"] for x in ls[L7]["Rules"]] == [LOC, LOC_TG], "health: L7 rules")
    check(ls[L4]["Protocol"] == "TCP" and ls[L4]["Port"] == 80 and ls[L4]["ListenerName"], "health: listener fields")
    check(ips[("10.0.1.11", 8080)]["HealthStatusDetial"] == "Alive", "health: deprecated HealthStatusDetial too")
    check(ips[("172.16.0.5", 30080)]["TargetId"] == "ins-node0001", "health: TargetId of a CVM")
    r = emu.call("DescribeTargetHealth", {"LoadBalancerIds": [LB], "ListenerIds": [L7], "LocationIds": [LOC]})
    (l,) = r["LoadBalancers"][0]["Listeners"]
    check(l["ListenerId"] == L7 and [x["LocationId"] for x in l["Rules"]] == [LOC], "health: ListenerIds/LocationIds")

    # The health-check state machine, at 1/25 of CLB's timing (interval 200 ms, timeout 80 ms,
    # thresholds 3): a new target detects (not healthy), then is Alive; a pod that stops serving
    # turns Dead. Weight 0 is checked like any weight.
    emu.admin("POST", "settings", {"health_interval_ms": 200, "health_timeout_ms": 80})
    r = emu.call("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                     "Targets": [{"EniIp": "10.0.9.1", "Port": 80, "Weight": 0}]})
    emu.wait(r["RequestId"])

    def status(ip):
        r = emu.call("DescribeTargetHealth", {"LoadBalancerIds": [LB], "ListenerIds": [L4]})
        (rule,) = r["LoadBalancers"][0]["Listeners"][0]["Rules"]
        (t,) = [t for t in rule["Targets"] if t["IP"] == ip]
        return t["HealthStatus"], t["HealthStatusDetail"]

    def until(ip, want):
        seen = []
        for _ in range(200):
            got = status(ip)
            if not seen or seen[-1] != got:
                seen.append(got)
            if got == want:
                return seen
            time.sleep(0.01)
        raise AssertionError(f"{ip} never reached {want}: {seen}")

    check(status("10.0.9.1") == (False, "Unknown"), "health: a newly bound target is detecting")
    until("10.0.9.1", (True, "Alive"))
    emu.admin("POST", "serving", {"ips": {"10.0.9.1": False}})
    check(emu.admin("GET", "serving")["ips"] == {"10.0.9.1": False}, "admin serving flags")
    seen = until("10.0.9.1", (False, "Dead"))
    check(seen[0] == (True, "Alive"), "health: Alive until the unhealthy threshold is reached")
    targets = emu.admin("GET", "health")["targets"]
    check(any(t["ip"] == "10.0.9.1" and t["health"] == "Dead" and not t["serving"] for t in targets), "admin health")
    emu.admin("PUT", "serving", {})
    emu.admin("POST", "settings", {"health_interval_ms": 5000, "health_timeout_ms": 2000})
    r = emu.call("DeregisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                       "Targets": [{"EniIp": "10.0.9.1", "Port": 80}]})
    emu.wait(r["RequestId"])
    check(emu.error("DescribeTargetHealth", {"LoadBalancerIds": [f"lb-{i}" for i in range(31)]})
          == "InvalidParameterValue.Length", "health: at most 30 LoadBalancerIds")
    check(emu.error("DescribeTargetHealth", {"LoadBalancerIds": ["lb-classic1"]}) == "UnsupportedOperation",
          "health: classic LB")
    check(emu.error("DescribeTargetHealth", {"LoadBalancerIds": ["lb-missing"]}) == "InvalidParameter.LBIdNotFound",
          "health: unknown LB")


def errors(emu):
    t = [{"EniIp": "10.0.5.1", "Port": 80}]
    cases = [
        ("RegisterTargets", {"LoadBalancerId": "lb-classic1", "ListenerId": "lbl-classic80", "Targets": t},
         "UnsupportedOperation"),
        ("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": "lbl-udp00053", "Targets": t}, "InvalidParameter"),
        ("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L7, "LocationId": LOC_TG, "Targets": t},
         "InvalidParameter"),
        ("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L7, "Targets": t}, "InvalidParameter"),
        ("RegisterTargets", {"LoadBalancerId": "lb-missing", "ListenerId": L4, "Targets": t},
         "InvalidParameter.LBIdNotFound"),
        ("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": "lbl-missing0", "Targets": t},
         "InvalidParameter.ListenerIdNotFound"),
        ("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L7, "LocationId": "loc-missing0", "Targets": t},
         "InvalidParameter.LocationNotFound"),
        ("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                             "Targets": [{"EniIp": f"10.0.6.{i}", "Port": 80} for i in range(21)]},
         "InvalidParameterValue.Length"),
        ("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L4}, "MissingParameter"),
        ("DescribeTargets", {"LoadBalancerId": LB, "ListenerIds": [f"lbl-{i:08d}" for i in range(21)]},
         "InvalidParameterValue.Length"),
        ("DescribeTargets", {"LoadBalancerId": LB, "Filters": [{"Name": "bogus", "Values": ["x"]}]},
         "InvalidParameterValue.InvalidFilter"),
        ("DescribeListeners", {"LoadBalancerId": "lb-missing"}, "InvalidParameter.LBIdNotFound"),
        ("DescribeTaskStatus", {"TaskId": "00000000-0000-4000-8000-000000000000"}, "InvalidParameter"),
        ("BatchRegisterTargets", {"LoadBalancerId": LB, "Targets": [
            {"ListenerId": L4, "EniIp": f"10.1.{i // 250}.{i % 250}", "Port": 80} for i in range(501)]},
         "InvalidParameterValue.Length"),
        ("BatchModifyTargetWeight", {"LoadBalancerId": LB, "ModifyList": [
            {"ListenerId": L4, "Targets": [{"EniIp": f"10.2.0.{i}", "Port": 80} for i in range(51)]}]},
         "InvalidParameterValue.Length"),
        ("ModifyTargetWeight", {"LoadBalancerId": LB, "ListenerId": L4,
                                "Targets": [{"EniIp": "10.0.1.11", "Port": 8080, "Weight": 101}]},
         "InvalidParameterValue.Range"),
    ]
    for action, params, want in cases:
        got = emu.error(action, params)
        check(got == want, f"{action} {json.dumps(params)[:80]}... -> {want} (got {got})")
    # Untyped calls (bypassing the SDK models) for schema errors.
    raw = [
        ("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L4, "Targets": t, "Bogus": 1}, "UnknownParameter"),
        ("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L4, "Targets": [{"EniIp": "10.0.5.1", "Port": "80"}]},
         "InvalidParameter.FormatError"),
        ("NoSuchAction", {}, "InvalidAction"),
    ]
    for action, params, want in raw:
        got = emu.error(action, params, raw=True)
        check(got == want, f"raw {action} -> {want} (got {got})")


def auth(emu, args):
    bad = emu.make_client(args.secret_id, args.secret_key + "x")
    check(emu.error("DescribeLoadBalancers", {}, client=bad) == "AuthFailure.SignatureFailure", "wrong SecretKey")
    unknown = emu.make_client("AKIDunknown000000000000000000000000", args.secret_key)
    check(emu.error("DescribeLoadBalancers", {}, client=unknown) == "AuthFailure.SecretIdNotFound", "unknown SecretId")
    # Expired timestamp: the SDK stamps X-TC-Timestamp with time.time() in abstract_client.
    real = time.time
    with mock.patch.object(abstract_client.time, "time", lambda: real() - 600):
        check(emu.error("DescribeLoadBalancers", {}) == "AuthFailure.SignatureExpire", "timestamp 10 min old")
    with mock.patch.object(abstract_client.time, "time", lambda: real() + 400):
        check(emu.error("DescribeLoadBalancers", {}) == "AuthFailure.SignatureExpire", "timestamp 400 s ahead")
    if args.token:
        tmp = emu.make_client(args.token_secret_id, args.token_secret_key, args.token)
        emu.call("DescribeLoadBalancers", {}, client=tmp)
        check(True, "temporary credential with the right token")
        wrong = emu.make_client(args.token_secret_id, args.token_secret_key, args.token + "x")
        check(emu.error("DescribeLoadBalancers", {}, client=wrong) == "AuthFailure.TokenFailure", "wrong token")
        none = emu.make_client(args.token_secret_id, args.token_secret_key)
        check(emu.error("DescribeLoadBalancers", {}, client=none) == "AuthFailure.TokenFailure", "missing token")


def faults(emu):
    emu.admin("POST", "faults", {"errors": {"kind": "http502", "max": 1, "actions": ["DescribeListeners"]}})
    try:
        emu.call("DescribeListeners", {"LoadBalancerId": LB})
        raise AssertionError("expected a network error")
    except TencentCloudSDKException as e:
        check(e.get_code() == "ServerNetworkError", f"HTTP 502 -> ServerNetworkError (got {e.get_code()})")
    emu.call("DescribeListeners", {"LoadBalancerId": LB})
    emu.admin("POST", "faults", {"errors": {"kind": "internal_error", "max": 1}})
    check(emu.error("DescribeListeners", {"LoadBalancerId": LB}) == "InternalError", "injected InternalError")
    emu.admin("POST", "faults", {"task_failures": {"max": 1, "message": "backend quota exhausted"}})
    r = emu.call("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                     "Targets": [{"EniIp": "10.0.7.1", "Port": 80}]})
    st = emu.wait(r["RequestId"])
    check(st["Status"] == 1 and st["Message"] == "backend quota exhausted", "failed task: Status 1 + Message")
    check(("10.0.7.1", 80) not in l4_targets(emu), "failed task leaves state unchanged")
    emu.admin("POST", "faults", {"error_after_apply": {"kind": "internal_error", "max": 1,
                                                        "actions": ["RegisterTargets"]}})
    try:
        emu.call("RegisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                     "Targets": [{"EniIp": "10.0.7.2", "Port": 80}]})
        raise AssertionError("expected InternalError")
    except TencentCloudSDKException as e:
        check(e.get_code() == "InternalError", f"executed, then InternalError (got {e.get_code()})")
        emu.wait(e.get_request_id())
    check(("10.0.7.2", 80) in l4_targets(emu), "executed-then-InternalError: the change was applied")
    r = emu.call("DeregisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                       "Targets": [{"EniIp": "10.0.7.2", "Port": 80}]})
    emu.wait(r["RequestId"])
    emu.admin("POST", "faults", {"busy": {"calls": 1}})
    check(emu.error("DeregisterTargets", {"LoadBalancerId": LB, "ListenerId": L4,
                                          "Targets": [{"EniIp": "10.0.1.11", "Port": 8080}]})
          == "FailedOperation.ResourceInOperating", "busy fault")
    emu.admin("POST", "faults", {"rate_limit_per_action": 2})
    codes = []
    for _ in range(4):
        try:
            emu.call("DescribeLoadBalancers", {})
            codes.append("ok")
        except TencentCloudSDKException as e:
            codes.append(e.get_code())
    check(codes.count("RequestLimitExceeded") >= 1, f"rate limit -> RequestLimitExceeded ({codes})")
    emu.admin("POST", "faults", {})
    calls = emu.admin("GET", "calls")
    check(calls["by_action"]["RegisterTargets"] >= 3 and calls["mutating_calls"] >= 10, "admin calls counters")
    check(calls["errors_by_code"].get("HTTP502") == 1, "admin calls: HTTP502 counted")
    check(calls["errors_by_code"].get("InternalErrorAfterApply") == 1, "admin calls: InternalErrorAfterApply counted")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--secret-id", required=True)
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--token-secret-id")
    ap.add_argument("--token-secret-key")
    ap.add_argument("--token")
    args = ap.parse_args()
    emu = Emu(args.endpoint, args.secret_id, args.secret_key)
    for step in (describe, mutate, tags, health, errors, lambda e: auth(e, args), faults):
        step(emu)
    print(f"conformance.py: {len(CHECKS)} checks passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        print(f"conformance.py: FAILED after {len(CHECKS)} checks: {e}", file=sys.stderr)
        sys.exit(1)
