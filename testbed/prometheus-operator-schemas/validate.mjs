// Validates Prometheus Operator objects against the Operator's CRD schemas (PodMonitor, PrometheusRule,
// ServiceMonitor: types, required fields, patterns such as durations; unknown fields pass, as the API server's
// pruning lets them). Reads a JSON array of Kubernetes objects on stdin; prints `passed <kind>/<name>` for each
// one of these kinds and `skipped <kind>/<name>` for the rest; exits 1 when any object fails.
// Run by tests/it/packaging.rs; node_modules are installed by testbed/monitoring-tools.sh.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.CLBSYNC_SCHEMAS_NODE_MODULES;
if (!modules) {
  console.error("validate.mjs: set CLBSYNC_SCHEMAS_NODE_MODULES (testbed/monitoring-tools.sh installs them)");
  process.exit(2);
}
const v1 = await import(
  pathToFileURL(join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js")).href
);
const kinds = { PodMonitor: v1.PodMonitor, PrometheusRule: v1.PrometheusRule, ServiceMonitor: v1.ServiceMonitor };

let failed = 0;
for (const object of JSON.parse(readFileSync(0, "utf8"))) {
  const name = `${object.kind}/${object.metadata?.name}`;
  const Model = object.apiVersion === "monitoring.coreos.com/v1" ? kinds[object.kind] : undefined;
  if (!Model) {
    console.log(`skipped ${name}`);
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`passed ${name}`);
  } catch (error) {
    failed += 1;
    console.log(`FAILED ${name}: ${error.message}`);
  }
}
process.exit(failed ? 1 : 0);
