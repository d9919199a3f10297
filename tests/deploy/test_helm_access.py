"""The chart's access control and TLS: the keys Secret and the TLS Secret (or a cert-manager Certificate)
mounted as whole folders, the settings pointing at them, probes over HTTPS or exec (`catdog probe`) under mutual
TLS, the ServiceMonitor scraping with a `metrics` key over HTTPS, and the combinations refused. Rendered with
Helm's own engine and validated strictly on every supported Kubernetes."""

from __future__ import annotations

import copy
from typing import Any

import helm_python
import pytest

from tests.deploy.helm_support import (
    CRD_KINDS,
    KUBE_VERSIONS,
    container,
    env_config,
    kube_validate,
    notes,
    one,
    render,
)

SECURED: dict[str, Any] = {
    "auth": {"keysSecret": "catdog-keys"},
    "tls": {"enabled": True, "certManager": {"enabled": True, "issuerRef": {"name": "internal-ca"}}},
    "metrics": {
        "serviceMonitor": {
            "enabled": True,
            "authorization": {"secretName": "prometheus-catdog-key", "key": "key"},
            "tlsConfig": {"ca": {"secret": {"name": "rel-catdog-tls", "key": "ca.crt"}}, "serverName": "rel-catdog"},
        }
    },
}


def secured(**changes: Any) -> dict[str, Any]:
    values = copy.deepcopy(SECURED)
    for section, extra in changes.items():
        values[section] = {**values.get(section, {}), **extra}
    return values


def volumes(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}


def test_default_has_no_keys_no_tls_and_plain_probes() -> None:
    docs = render()
    env = env_config(docs)
    assert not any(k.startswith(("CATDOG_API_KEYS", "CATDOG_TLS")) for k in env)
    assert not {"api-keys", "tls"} & set(volumes(docs))  # tmp and the model cache only
    assert "scheme" not in container(docs)["readinessProbe"]["httpGet"]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_keys_and_tls_secrets_render_and_validate(kube_version: str) -> None:
    docs = render(SECURED, kube_version)
    env = env_config(docs)
    assert env["CATDOG_API_KEYS_FILE"] == "/etc/catdog/keys/keys.json"
    assert env["CATDOG_API_KEYS_RELOAD_S"] == "2"
    assert env["CATDOG_TLS_CERT_FILE"] == "/etc/catdog/tls/tls.crt"
    assert env["CATDOG_TLS_KEY_FILE"] == "/etc/catdog/tls/tls.key"
    assert "CATDOG_TLS_CLIENT_CA_FILE" not in env
    found = volumes(docs)
    assert found["api-keys"]["secret"]["secretName"] == "catdog-keys"
    assert found["tls"]["secret"]["secretName"] == "rel-catdog-tls"
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    for name, path in (("api-keys", "/etc/catdog/keys"), ("tls", "/etc/catdog/tls")):
        assert mounts[name]["mountPath"] == path and mounts[name]["readOnly"] is True
        assert "subPath" not in mounts[name]  # a subPath mount never sees the Secret change
    c = container(docs)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["scheme"] == "HTTPS", probe
    certificate = one(docs, "Certificate")
    assert certificate["spec"]["secretName"] == "rel-catdog-tls"
    assert "client auth" in certificate["spec"]["usages"] and "server auth" in certificate["spec"]["usages"]
    assert "rel-catdog.catdog.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"] == {
        "name": "internal-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    endpoint = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "prometheus-catdog-key", "key": "key"},
    }
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["serverName"] == "rel-catdog"
    test_pod = one(docs, "Pod")
    assert "https://" in " ".join(test_pod["spec"]["containers"][0]["command"])
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in CRD_KINDS:
            kube_validate(doc, kube_version)


def test_mutual_tls_probes_by_exec_and_drops_the_test_pod() -> None:
    docs = render(secured(tls={"clientAuth": True}))
    assert env_config(docs)["CATDOG_TLS_CLIENT_CA_FILE"] == "/etc/catdog/tls/ca.crt"
    c = container(docs)
    assert c["startupProbe"]["exec"]["command"] == ["catdog", "probe", "/readyz"]
    assert c["livenessProbe"]["exec"]["command"] == ["catdog", "probe", "/livez"]
    assert c["readinessProbe"]["exec"]["command"] == ["catdog", "probe", "/readyz"]
    assert not [d for d in docs if d["kind"] == "Pod"]


def test_an_existing_tls_secret_without_cert_manager() -> None:
    docs = render({"tls": {"enabled": True, "secretName": "my-tls"}})
    assert volumes(docs)["tls"]["secret"]["secretName"] == "my-tls"
    assert not [d for d in docs if d["kind"] == "Certificate"]
    assert "TLS on both ports from Secret my-tls" in notes({"tls": {"enabled": True, "secretName": "my-tls"}})


def test_service_monitor_without_tls_config_skips_verification() -> None:
    values = secured()
    del values["metrics"]["serviceMonitor"]["tlsConfig"]
    endpoint = one(render(values), "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tls": {"enabled": True}, "grpc": {"probes": True}}, "gRPC probe has no TLS"),
        (
            {"auth": {"keysSecret": "k"}, "metrics": {"serviceMonitor": {"enabled": True}}},
            "needs a key with the metrics scope",
        ),
        ({"tls": {"enabled": True, "certManager": {"enabled": True}}}, "issuerRef.name"),
    ],
)
def test_inconsistent_values_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=message):
        render(values)


def test_schema_refuses_unknown_access_keys() -> None:
    with pytest.raises(helm_python.HelmError, match="additional properties"):
        render({"auth": {"keys": "x"}})
