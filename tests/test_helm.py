"""The Helm chart in ``helm/oneroster-proxy`` (README "Operations"), rendered by Helm itself.

``helm-python-sdk`` binds Helm's official Go SDK (v4) through ctypes, so ``Chart.render`` is
``helm template`` with no cluster and no helm binary. Each rendered object is checked against
the Kubernetes JSON schemas of ``kubernetes-validate`` (strict: unknown fields fail), and the
rendered ``config.toml`` is validated by the proxy's own config validator, so the chart cannot
produce a config the proxy refuses.
"""

from __future__ import annotations

import json
import os
import platform
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy import config as config_mod

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "oneroster-proxy"
KUBE_VERSION = "1.30.0"
# Custom resources the Kubernetes schemas do not know; checked by hand below.
CUSTOM_KINDS = {"ServiceMonitor"}

SECRETS = {
    "ORP_ADMIN_TOKEN": "admin-token-0123456789abcdef",
    "ACME_CLIENT_SECRET": "acme-secret-0123456789abcdef-0123456",
    "ORP_JWT_KEY": "jwt-key-0123456789abcdef0123456789abcdef",
    "SPRINGFIELD_KEY": "key-1",
    "SPRINGFIELD_SECRET": "secret-1",
    "REDIS_PASSWORD": "pw-0123456789",
}

DISTRICTS_AND_CONNECTIONS: dict[str, Any] = {
    "server": {
        "public_url": "https://proxy.example",
        "jwt_keys": ["${ORP_JWT_KEY}"],
        "max_line": 8190,
        "upstream_timeout": "20s",
    },
    "admin": {"tokenFrom": "ORP_ADMIN_TOKEN"},
    "vendors": {"acme": {"client_secret": "${ACME_CLIENT_SECRET}", "rate_limit": "1200/m"}},
    "districts": {
        "springfield": {
            "base_url": "https://springfield.example/campus/api/oneroster/v1p2/acme",
            "auth": "oauth1",
            "max_connections": 5,
            "vendor_authorization": False,
            "versions": ["1.1", "1.2"],
            # docs/configuration.md "SIS courtesy": lists of inline tables
            "timezone": "America/Chicago",
            "windows": [{"days": "mon-fri", "from": "07:00", "to": "16:00", "max_connections": 1}],
            "pauses": [{"from": "2027-06-20", "to": "2027-08-01", "reason": "summer rollover"}],
        }
    },
    "connections": {
        "app-7": {
            "vendor": "acme",
            "district": "springfield",
            "key": "${SPRINGFIELD_KEY}",
            "secret": "${SPRINGFIELD_SECRET}",
            "scopes": ["roster-core.readonly"],
            "expires": "2030-06-30",
            "enabled": True,
        }
    },
}

# name -> (values, what the rendered store url must be)
COMBOS: dict[str, tuple[dict[str, Any], str]] = {
    "defaults": ({}, "redis://orp-oneroster-proxy-redis:6379/0"),
    "bundled-redis-everything-on": (
        {
            "config": DISTRICTS_AND_CONNECTIONS,
            "secrets": SECRETS,
            "workers": 2,
            "redis": {"persistence": {"enabled": True, "size": "2Gi"}},
            "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "grafanaDashboard": {"enabled": True},
            "podAnnotations": {"example.com/team": "rostering"},
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "oneroster-proxy"}},
                }
            ],
        },
        "redis://orp-oneroster-proxy-redis:6379/0",
    ),
    "external-redis-existing-secret": (
        {
            "config": DISTRICTS_AND_CONNECTIONS,
            "existingSecret": "orp-credentials",
            "redis": {"enabled": False},
            "store": {"url": "rediss://:${REDIS_PASSWORD}@redis.example:6380/2"},
            "service": {"type": "LoadBalancer", "port": 443},
            "podDisruptionBudget": {"enabled": False},
            "adminService": {"enabled": False},
            "serviceAccount": {"create": False, "name": "orp"},
        },
        "rediss://:${REDIS_PASSWORD}@redis.example:6380/2",
    ),
    "external-sentinel": (
        {
            "config": DISTRICTS_AND_CONNECTIONS,
            "secrets": SECRETS,
            "store": {
                "sentinel": {
                    "hosts": [f"redis-node-{i}.redis-headless:26379" for i in range(3)],
                    "service": "orp",
                    "db": 1,
                    "passwordFrom": "REDIS_PASSWORD",
                }
            },
        },
        "redis+sentinel://:${REDIS_PASSWORD}@redis-node-0.redis-headless:26379,"
        "redis-node-1.redis-headless:26379,redis-node-2.redis-headless:26379/orp/1",
    ),
    "single-pod-sqlite": (
        {
            "replicaCount": 1,
            "redis": {"enabled": False},
            "podDisruptionBudget": {"enabled": False},
            "fullnameOverride": "gateway",
        },
        "sqlite:///var/lib/oneroster-proxy/store.db",
    ),
}


def _helm() -> Any:
    try:
        import helm_python
    except ImportError:
        message = "helm-python-sdk is not installed (it is in the test extra on x86_64 Linux)"
        if os.environ.get("CI") and platform.machine() == "x86_64":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return helm_python


def render(values: dict[str, Any], name: str = "orp") -> dict[str, str]:
    helm = _helm()
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=name, namespace="rostering")  # type: ignore[no-any-return]


def objects(rendered: dict[str, str]) -> Iterator[dict[str, Any]]:
    for path, text in sorted(rendered.items()):
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                yield doc


def by_kind(rendered: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for obj in objects(rendered):
        kinds.setdefault(obj["kind"], []).append(obj)
    return kinds


def proxy_deployment(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (deployment,) = [
        d
        for d in kinds["Deployment"]
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    ]
    return deployment


def rendered_config(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (cm,) = [c for c in kinds["ConfigMap"] if "config.toml" in c.get("data", {})]
    return tomllib.loads(cm["data"]["config.toml"])


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_every_object_is_valid_kubernetes(combo: str) -> None:
    import kubernetes_validate

    values, _ = COMBOS[combo]
    found = list(objects(render(values)))
    assert found
    for obj in found:
        assert obj.get("apiVersion") and obj.get("kind"), obj
        assert obj["metadata"]["name"], obj
        assert len(obj["metadata"]["name"]) <= 63
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "orp"
        if obj["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_rendered_config_is_one_the_proxy_accepts(combo: str) -> None:
    values, store_url = COMBOS[combo]
    kinds = by_kind(render(values))
    raw = rendered_config(kinds)
    env = dict(SECRETS)
    config = config_mod.validate(raw, env)  # raises ConfigError listing any problem
    assert config.store.url == store_url.replace("${REDIS_PASSWORD}", SECRETS["REDIS_PASSWORD"])
    assert raw["store"]["url"] == store_url  # secrets stay ${NAME} in the ConfigMap
    # Listeners on every interface, on the ports the container declares and probes use.
    container = proxy_deployment(kinds)["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config.server.listen == config_mod.Listen("0.0.0.0", ports["gateway"])
    assert config.admin.listen == config_mod.Listen("0.0.0.0", ports["admin"])
    if values.get("config", {}).get("admin", {}).get("tokenFrom"):
        assert config.admin.token == SECRETS["ORP_ADMIN_TOKEN"]
    else:
        assert config.admin.token is None
    if "connections" in values.get("config", {}):
        springfield = config.districts["springfield"]
        assert springfield.timezone == "America/Chicago"
        assert [w.max_connections for w in springfield.windows] == [1]
        assert [p.reason for p in springfield.pauses] == ["summer rollover"]
        assert set(config.connections) == {"app-7"}
        assert config.connections["app-7"].key == SECRETS["SPRINGFIELD_KEY"]
    for secret in SECRETS.values():
        for cm in kinds["ConfigMap"]:
            assert secret not in json.dumps(cm), "a secret leaked into a ConfigMap"


def test_deployment_probes_security_and_mounts() -> None:
    values, _ = COMBOS["bundled-redis-everything-on"]
    kinds = by_kind(render(values))
    deployment = proxy_deployment(kinds)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == [
        "serve",
        "--config",
        "/etc/oneroster-proxy/config.toml",
        "--workers",
        "2",
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/oneroster-proxy"]["readOnly"] is True
    assert "/tmp" in mounts  # worker sockets and metrics files with a read-only root
    assert container["envFrom"] == [{"secretRef": {"name": "orp-oneroster-proxy"}}]
    assert container["resources"]["requests"]["cpu"]
    # Drain must fit in the grace period, or SIGKILL cuts long streams.
    drain = config_mod.parse_duration(rendered_config(kinds)["server"].get("drain_timeout", "30s"))
    assert pod["terminationGracePeriodSeconds"] > drain
    # Autoscaling owns the replica count; the HPA scales this Deployment.
    assert "replicas" not in deployment["spec"]
    (hpa,) = kinds["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (secret,) = kinds["Secret"]
    assert set(secret["data"]) == set(SECRETS)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/config" in annotations and "checksum/secret" in annotations


def test_services_pdb_service_monitor_and_redis_select_the_right_pods() -> None:
    values, _ = COMBOS["bundled-redis-everything-on"]
    kinds = by_kind(render(values))
    deployments = {d["metadata"]["name"]: d for d in kinds["Deployment"]}
    assert set(deployments) == {"orp-oneroster-proxy", "orp-oneroster-proxy-redis"}
    pod_labels = {
        name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()
    }

    def selects(selector: dict[str, str], name: str) -> bool:
        return all(pod_labels[name].get(k) == v for k, v in selector.items())

    services = {s["metadata"]["name"]: s for s in kinds["Service"]}
    gateway = services["orp-oneroster-proxy"]
    assert selects(gateway["spec"]["selector"], "orp-oneroster-proxy")
    assert not selects(gateway["spec"]["selector"], "orp-oneroster-proxy-redis")
    assert gateway["spec"]["ports"][0]["targetPort"] == "gateway"
    admin = services["orp-oneroster-proxy-admin"]
    assert admin["spec"]["type"] == "ClusterIP"
    assert admin["spec"]["ports"][0]["targetPort"] == "admin"
    redis = services["orp-oneroster-proxy-redis"]
    assert selects(redis["spec"]["selector"], "orp-oneroster-proxy-redis")
    assert not selects(redis["spec"]["selector"], "orp-oneroster-proxy")
    redis_pod = deployments["orp-oneroster-proxy-redis"]["spec"]["template"]["spec"]
    assert redis_pod["containers"][0]["image"] == "redis:7-alpine"
    claim = redis_pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == "orp-oneroster-proxy-redis"
    (pdb,) = kinds["PodDisruptionBudget"]
    assert selects(pdb["spec"]["selector"]["matchLabels"], "orp-oneroster-proxy")
    assert not selects(pdb["spec"]["selector"]["matchLabels"], "orp-oneroster-proxy-redis")
    (monitor,) = kinds["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert all(
        admin["metadata"]["labels"].get(k) == v
        for k, v in monitor["spec"]["selector"]["matchLabels"].items()
    )
    assert not all(
        gateway["metadata"]["labels"].get(k) == v
        for k, v in monitor["spec"]["selector"]["matchLabels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "admin"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_external_store_renders_no_redis_and_uses_the_existing_secret() -> None:
    values, _ = COMBOS["external-redis-existing-secret"]
    kinds = by_kind(render(values))
    assert "Secret" not in kinds and "PersistentVolumeClaim" not in kinds
    assert "PodDisruptionBudget" not in kinds and "ServiceAccount" not in kinds
    assert [d["metadata"]["name"] for d in kinds["Deployment"]] == ["orp-oneroster-proxy"]
    assert [s["metadata"]["name"] for s in kinds["Service"]] == ["orp-oneroster-proxy"]
    pod = proxy_deployment(kinds)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "orp"
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "orp-credentials"}}]


def test_grafana_dashboard_configmap() -> None:
    shipped = REPO / "config" / "grafana-dashboard.json"
    copy = CHART / "dashboards" / "grafana-dashboard.json"
    if shipped.exists():
        # Helm can only read files inside the chart: it carries a copy, kept identical.
        assert copy.exists() and copy.read_bytes() == shipped.read_bytes(), (
            "cp config/grafana-dashboard.json helm/oneroster-proxy/dashboards/"
        )
    kinds = by_kind(render({"grafanaDashboard": {"enabled": True}}))
    dashboards = [c for c in kinds["ConfigMap"] if c["metadata"]["name"].endswith("-dashboard")]
    if not copy.exists():
        assert dashboards == []  # guarded: no empty ConfigMap without the file
        return
    (dashboard,) = dashboards
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["oneroster-proxy.json"]) == json.loads(copy.read_text())
    off = by_kind(render({}))
    assert not [c for c in off["ConfigMap"] if c["metadata"]["name"].endswith("-dashboard")]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": {"enabled": False}}, "sqlite store"),
        (
            {"redis": {"enabled": False}, "replicaCount": 1, "autoscaling": {"enabled": True}},
            "sqlite store",
        ),
        ({"config": {"admin": {"tokenFrom": "ORP_ADMIN_TOKEN"}}}, "no Secret is configured"),
        (
            {"config": {"admin": {"tokenFrom": "ORP_ADMIN_TOKEN"}}, "secrets": {"OTHER": "x"}},
            "secrets has no key ORP_ADMIN_TOKEN",
        ),
        (
            {"serviceMonitor": {"enabled": True}, "adminService": {"enabled": False}},
            "needs adminService.enabled",
        ),
        ({"replicaCount": 1}, "node drain"),
        (
            {"autoscaling": {"enabled": True, "minReplicas": 1}, "replicaCount": 3},
            "node drain",
        ),
        (
            {"store": {"url": "redis://r:6379/0", "sentinel": {"hosts": ["s:26379"]}}},
            "two stores",
        ),
        (
            {"store": {"sentinel": {"hosts": ["s:26379"], "passwordFrom": "REDIS_PASSWORD"}}},
            "no Secret is configured",
        ),
    ],
)
def test_unworkable_values_fail_with_a_reason(values: dict[str, Any], message: str) -> None:
    helm = _helm()
    with pytest.raises(helm.HelmError, match=message):
        render(values)


@pytest.mark.parametrize(
    "values",
    [
        {"workers": 0},
        {"replicas": 3},  # a typo of replicaCount
        {"config": {"server": {"drain_timeout": "soon"}}},
        {"config": {"server": {"listen": "0.0.0.0:1"}}},  # the chart owns the listeners
        {"secrets": {"not-an-env-name": "x"}},
        {"store": {"url": "postgres://db/x"}},
        {"store": {"sentinel": {"hosts": ["no-port"]}}},
        {"store": {"sentinel": {"hosts": ["s:26379"], "passwordFrom": "not an env name"}}},
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any]) -> None:
    helm = _helm()
    with pytest.raises(helm.HelmError, match="schema"):
        render(values)


def test_values_yaml_matches_its_schema_and_holds_no_secrets() -> None:
    import jsonschema

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(values)
    assert values["secrets"] == {} and values["existingSecret"] == ""

    def leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from leaves(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from leaves(value, f"{path}[{i}]")
        else:
            yield path, node

    sensitive = ("secret", "password", "token", "key", "jwt")
    for path, value in leaves(values):
        name = path.rsplit(".", 1)[-1].lower()
        if any(word in name for word in sensitive) and isinstance(value, str) and value:
            # Only references to the Secret's keys, never a value.
            assert value.startswith("${") or name == "tokenfrom", (path, value)


def test_helm_lint_is_clean() -> None:
    helm = _helm()
    for values in [{}, COMBOS["bundled-redis-everything-on"][0]]:
        result = helm.lint(str(CHART), values)
        assert result["errors"] == [], result
        # severity: 1 info, 2 warning, 3 error (Helm's support.Severity)
        assert [m for m in result["messages"] if m["severity"] > 1] == [], result


def test_notes_name_the_store_without_its_password() -> None:
    values, _ = COMBOS["external-redis-existing-secret"]
    notes = render(values)["oneroster-proxy/templates/NOTES.txt"]
    assert "rediss://***@redis.example:6380/2" in notes
    assert "REDIS_PASSWORD" not in notes
    assert "tokens issue VENDOR" in notes


def test_sentinel_store_deploys_no_redis_and_probes_outlast_a_failover() -> None:
    values, url = COMBOS["external-sentinel"]
    kinds = by_kind(render(values))
    assert [d["metadata"]["name"] for d in kinds["Deployment"]] == ["orp-oneroster-proxy"]
    assert "orp-oneroster-proxy-redis" not in {s["metadata"]["name"] for s in kinds["Service"]}
    assert rendered_config(kinds)["store"]["url"] == url
    notes = render(values)["oneroster-proxy/templates/NOTES.txt"]
    assert "redis+sentinel://***@redis-node-0" in notes and SECRETS["REDIS_PASSWORD"] not in notes
    # /readyz follows the store, but one failover (docs/configuration.md: followed within 10 s) must
    # not take every pod out of the Service at once: they all share the store.
    probe = proxy_deployment(kinds)["spec"]["template"]["spec"]["containers"][0]
    readiness = probe["readinessProbe"]
    assert readiness["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert readiness["periodSeconds"] * readiness["failureThreshold"] > 10


def test_the_disruption_budget_keeps_a_replica_through_a_node_drain() -> None:
    for values in ({}, COMBOS["bundled-redis-everything-on"][0], COMBOS["external-sentinel"][0]):
        kinds = by_kind(render(values))
        (pdb,) = kinds["PodDisruptionBudget"]
        deployment = proxy_deployment(kinds)
        replicas = deployment["spec"].get("replicas")
        if replicas is None:  # autoscaling: the HPA's floor
            (hpa,) = kinds["HorizontalPodAutoscaler"]
            replicas = hpa["spec"]["minReplicas"]
        spec = pdb["spec"]
        if "maxUnavailable" in spec:
            assert replicas - int(spec["maxUnavailable"]) >= 1
        else:
            assert int(spec["minAvailable"]) >= 1
        selector = spec["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in selector.items())
