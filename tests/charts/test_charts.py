"""The three charts, rendered by the real Helm engine for several values files:
lint, Kubernetes schemas, and the contracts the plugin relies on."""

from __future__ import annotations

import base64
import json
import re

import helm_python as helm
import pytest
import yaml

from chartkit import (
    CHATS,
    CUSTOM_KINDS,
    NAMESPACE,
    chart_dir,
    lint,
    load_values,
    merge,
    plugin_check,
    render,
    validate_kube,
)

SCENARIOS = {
    "minimal": ["{chat}/minimal.yaml"],
    "token-from-secret": ["{chat}/token-from-secret.yaml"],
    "tbot": ["{chat}/minimal.yaml", "common/tbot.yaml"],
    "metrics": ["{chat}/minimal.yaml", "common/metrics.yaml"],
    "routing-crd": ["{chat}/minimal.yaml", "common/routing-crd.yaml"],
    "identity-mount": ["{chat}/minimal.yaml", "common/identity-mount.yaml"],
    "official": ["{chat}/official.yaml"],
}
# Scenarios of one chat only (review from chat differs per chat).
CHAT_SCENARIOS = {
    "slack": {
        "review-socket": ["slack/minimal.yaml", "slack/review-socket-mode.yaml"],
        "review-http": ["slack/minimal.yaml", "slack/review-http.yaml"],
    },
    "mattermost": {
        "review": ["mattermost/minimal.yaml", "mattermost/review.yaml"],
        "review-ingress": ["mattermost/minimal.yaml", "mattermost/review-ingress.yaml"],
    },
    "discord": {
        "review-gateway": ["discord/minimal.yaml", "discord/review-gateway.yaml"],
        "review-http": ["discord/minimal.yaml", "discord/review-http.yaml"],
    },
}
CASES = [pytest.param(chat, name, id=f"{chat}-{name}") for chat in CHATS for name in SCENARIOS] + [
    pytest.param(chat, name, id=f"{chat}-{name}") for chat, extra in CHAT_SCENARIOS.items() for name in extra
]


def values_for(chat: str, scenario: str) -> dict:
    files = CHAT_SCENARIOS.get(chat, {}).get(scenario) or SCENARIOS[scenario]
    return load_values(*(f.format(chat=chat) for f in files))


def review_on(r) -> bool:
    return bool(r.values.get("review", {}).get("enabled"))


@pytest.fixture(scope="module")
def rendered():
    cache: dict = {}

    def get(chat: str, scenario: str):
        if (chat, scenario) not in cache:
            cache[(chat, scenario)] = render(chat, values_for(chat, scenario))
        return cache[(chat, scenario)]

    return get


# ---------------------------------------------------------------- per case


@pytest.mark.parametrize("chat,scenario", CASES)
def test_lint_is_clean(chat, scenario):
    report = lint(chat, values_for(chat, scenario))
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


@pytest.mark.parametrize("chat,scenario", CASES)
def test_every_manifest_is_valid(chat, scenario, rendered):
    r = rendered(chat, scenario)
    assert r.docs
    for doc in r.docs:
        assert doc["metadata"]["name"], doc
        if doc["kind"] in CUSTOM_KINDS:
            check_custom_resource(doc, r)
        else:
            validate_kube(doc)


def check_custom_resource(doc: dict, r) -> None:
    kind = doc["kind"]
    if kind == "ServiceMonitor":
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        svc = r.one("Service", r.fullname)
        assert doc["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        ports = {p["name"] for p in svc["spec"]["ports"]}
        assert [e["port"] for e in doc["spec"]["endpoints"]] == ["http"] and "http" in ports
        assert doc["spec"]["endpoints"][0]["path"] == "/metrics"
    elif kind == "TeleportBotV1":
        assert doc["apiVersion"] == "resources.teleport.dev/v1"
        assert doc["spec"]["roles"] and all(isinstance(x, str) for x in doc["spec"]["roles"])
    elif kind == "TeleportProvisionToken":
        assert doc["apiVersion"] == "resources.teleport.dev/v2"
        assert doc["spec"]["roles"] == ["Bot"]
        assert doc["spec"]["bot_name"] == r.one("TeleportBotV1")["metadata"]["name"]
        assert doc["spec"]["join_method"]
    else:
        raise AssertionError(f"no check for {kind}")


@pytest.mark.parametrize("chat,scenario", CASES)
def test_rendered_config_is_accepted_by_the_plugin(chat, scenario, rendered, tmp_path):
    r = rendered(chat, scenario)
    result = plugin_check(r.config_text, tmp_path)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n--- config:\n{r.config_text}"
    assert "Configuration is valid" in result.stdout
    assert f"chats: {chat}" in result.stdout
    if chat == "discord" and review_on(r):
        d = r.config["discord"]
        assert d["review"]["enabled"] is True
        assert ("public_key" in d) == bool(r.values["discord"].get("publicKey"))
        assert ("listen_addr" in r.config["http"]) == ("public_key" in d)
    # The chart writes no key the plugin does not know, and review renders
    # are understood as review (the check names the transport).
    assert "unknown key" not in result.stdout, result.stdout
    assert "  ! " not in result.stdout, f"unexpected warnings:\n{result.stdout}"
    if review_on(r):
        assert f"{chat} review: on through" in result.stdout, result.stdout


@pytest.mark.parametrize("chat,scenario", CASES)
def test_config_points_at_what_the_pod_mounts(chat, scenario, rendered):
    r = rendered(chat, scenario)
    cfg = r.config
    pod = r.deployment["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in r.container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    # The configuration file itself, at the path of the command line.
    cmd = r.container["command"]
    assert cmd == ["/usr/local/bin/teleport-plugin", "start", "--config", f"/etc/teleport-{chat}.toml"]
    cfg_mount = mounts[cmd[-1]]
    assert volumes[cfg_mount["name"]]["configMap"]["name"] == r.fullname
    assert cfg_mount["subPath"] in r.one("ConfigMap", r.fullname)["data"]

    # The token: a file, from the Secret the chart made or the one named.
    token = cfg[chat]["token"]
    assert token.startswith(f"/var/lib/teleport/plugins/{chat}/")
    tmount = mounts[token]
    secret_name = volumes[tmount["name"]]["secret"]["secretName"]
    chat_values = r.values[chat]
    if chat_values.get("tokenFromSecret"):
        assert secret_name == chat_values["tokenFromSecret"]
        assert tmount["subPath"] == chat_values.get("tokenSecretPath", f"{chat}Token")
        assert not r.all("Secret")
    else:
        made = r.one("Secret", secret_name)
        assert tmount["subPath"] in made["data"]

    # The identity: through the API, or mounted.
    tp = cfg["teleport"]
    if r.values.get("teleport", {}).get("identityAccess") == "mount":
        assert "identity_secret" not in tp and tp["refresh_identity"] is True
        imount = next(m for p, m in mounts.items() if tp["identity"].startswith(p + "/"))
        assert volumes[imount["name"]]["secret"]["secretName"] == expected_identity_secret(r)
    else:
        assert "identity" not in tp
        assert tp["identity_secret"]["name"] == expected_identity_secret(r)
        assert tp["identity_secret"]["namespace"] == NAMESPACE
        expected_key = "identity" if r.values.get("tbot", {}).get("enabled") else r.values["teleport"].get("identitySecretPath", "auth_id")
        assert tp["identity_secret"]["key"] == expected_key

    # Review from chat: the app token and the secret that signs the clicks
    # are files from Secrets too, and the listener's certificate a mounted
    # directory.
    review = cfg.get("review", {}) if chat == "slack" else cfg[chat].get("review", {})
    secret_key, secret_value = {"slack": ("signing_secret", "signingSecret"), "mattermost": ("secret", "secret")}.get(chat, (None, None))
    signing = cfg[chat].get(secret_key) if secret_key else None
    assert bool(review) == review_on(r)
    assert (signing is not None) == (review_on(r) and chat != "discord" and bool(
        chat_values.get(secret_value) or chat_values.get(f"{secret_value}FromSecret")))
    for path, from_secret, key_path, made_key in (
        (review.get("app_token"), r.values.get("review", {}).get("appTokenFromSecret"),
         r.values.get("review", {}).get("appTokenSecretPath"), "slackAppToken"),
        (signing, chat_values.get(f"{secret_value}FromSecret"), chat_values.get(f"{secret_value}SecretPath"),
         f"{chat}{(secret_value or '')[:1].upper()}{(secret_value or '')[1:]}"),
    ):
        if path is None:
            continue
        assert path.startswith(f"/var/lib/teleport/plugins/{chat}/")
        m = mounts[path]
        name = volumes[m["name"]]["secret"]["secretName"]
        if from_secret:
            assert (name, m["subPath"]) == (from_secret, key_path or made_key)
        else:
            assert m["subPath"] == made_key and made_key in r.one("Secret", name)["data"]
    http = cfg["http"]
    if "https_cert_file" in http:
        tls_dir = http["https_cert_file"].rsplit("/", 1)[0]
        assert http["https_key_file"] == f"{tls_dir}/tls.key"
        assert volumes[mounts[tls_dir]["name"]]["secret"]["secretName"] == r.values["interactivity"]["tlsSecretName"]

    # The chart's own mounts are read-only.
    own = {v["name"] for v in pod["volumes"] if "configMap" in v or "secret" in v}
    assert all(m.get("readOnly") is True for m in mounts.values() if m["name"] in own)

    # POD_NAMESPACE from the downward API; no instance id: the pod name is the default.
    env = {e["name"]: e for e in r.container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert "instance_id" not in cfg.get("plugin", {})


def expected_identity_secret(r) -> str:
    t = r.values.get("teleport", {})
    if t.get("identitySecretName"):
        return t["identitySecretName"]
    return f"{r.deployment['metadata']['labels']['app.kubernetes.io/instance']}-tbot-out"


@pytest.mark.parametrize("chat,scenario", CASES)
def test_probes_use_the_plugin_endpoint(chat, scenario, rendered):
    r = rendered(chat, scenario)
    c = r.container
    port = next(p for p in c["ports"] if p["name"] == "http")
    assert r.config["http"]["listen"] == f"0.0.0.0:{port['containerPort']}"
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        assert c[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    # The startup probe leaves time to reach Teleport before liveness applies.
    s = c["startupProbe"]
    assert s["periodSeconds"] * s["failureThreshold"] >= 120


@pytest.mark.parametrize("chat,scenario", CASES)
def test_pods_meet_restricted_pod_security(chat, scenario, rendered):
    r = rendered(chat, scenario)
    deployments = r.all("Deployment")
    assert len(deployments) == (2 if r.values.get("tbot", {}).get("enabled") else 1)
    for d in deployments:
        spec = d["spec"]["template"]["spec"]
        psc = spec.get("securityContext", {})
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        assert not any(k in spec for k in ("hostNetwork", "hostPID", "hostIPC"))
        assert not any("hostPath" in v for v in spec.get("volumes", []))
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True
            assert sc.get("runAsUser", psc.get("runAsUser", 1)) != 0


@pytest.mark.parametrize("chat,scenario", CASES)
def test_rbac_grants_only_what_the_plugin_uses(chat, scenario, rendered):
    r = rendered(chat, scenario)
    sa = r.deployment["spec"]["template"]["spec"]["serviceAccountName"]
    tp = r.config["teleport"]
    routing = r.config.get("routing", {})
    plugin_roles = [d for d in r.all("Role") if d["metadata"]["labels"].get("app.kubernetes.io/component") != "tbot"]

    granted: dict[tuple[str, str], set] = {}
    for role in plugin_roles:
        binding = r.one("RoleBinding", role["metadata"]["name"])
        assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
            for res in rule["resources"]:
                key = (role["metadata"]["namespace"], res)
                granted.setdefault(key, set()).update(rule["verbs"])
                if res == "secrets":
                    assert rule["resourceNames"] == [tp["identity_secret"]["name"]]
                    assert set(rule["verbs"]) == {"get", "list", "watch"}

    expected: dict[tuple[str, str], set] = {}
    if "identity_secret" in tp:
        expected[(tp["identity_secret"]["namespace"], "secrets")] = {"get", "list", "watch"}
    if routing.get("crd"):
        expected[(routing["namespace"], "accessrequestroutes")] = {"get", "list", "watch"}
        expected[(routing["namespace"], "accessrequestroutes/status")] = {"patch"}
    assert granted == expected
    # The pod carries an API token only when it talks to the API.
    automount = r.deployment["spec"]["template"]["spec"]["automountServiceAccountToken"]
    assert automount is bool(expected)


@pytest.mark.parametrize("chat,scenario", CASES)
def test_notes_tell_how_to_check_the_install(chat, scenario, rendered):
    r = rendered(chat, scenario)
    assert f"kubectl -n {NAMESPACE} logs deploy/{r.fullname}" in r.notes
    assert "/proxy/readyz" in r.notes and "kubectl get --raw" in r.notes
    assert f"port-forward deploy/{r.fullname}" in r.notes
    assert f"teleport-plugin check --config /etc/teleport-{chat}.toml" in r.notes


# ---------------------------------------------------------------- behaviours


@pytest.mark.parametrize("chat", CHATS)
def test_checksums_roll_the_pods_on_a_value_change(chat):
    base = values_for(chat, "minimal")
    before = render(chat, base).pod_annotations

    new_token = json.loads(json.dumps(base))
    new_token[chat]["token"] = "another-token"
    after = render(chat, new_token).pod_annotations
    assert after["checksum/token"] != before["checksum/token"]
    assert after["checksum/config"] == before["checksum/config"]

    new_config = json.loads(json.dumps(base))
    new_config["log"] = {"severity": "DEBUG"}
    after = render(chat, new_config).pod_annotations
    assert after["checksum/config"] != before["checksum/config"]
    assert after["checksum/token"] == before["checksum/token"]

    unrelated = json.loads(json.dumps(base))
    unrelated["resources"] = {"requests": {"memory": "64Mi"}}
    after = render(chat, unrelated).pod_annotations
    assert (after["checksum/config"], after["checksum/token"]) == (before["checksum/config"], before["checksum/token"])


@pytest.mark.parametrize("chat", CHATS)
def test_tbot_writes_the_secret_the_plugin_reads(chat, rendered):
    r = rendered(chat, "tbot")
    tbot_cm = next(d for d in r.all("ConfigMap") if "tbot.yaml" in d.get("data", {}))
    tbot = yaml.safe_load(tbot_cm["data"]["tbot.yaml"])
    out = tbot["outputs"][0]
    assert out["type"] == "identity" and out["destination"]["type"] == "kubernetes_secret"
    ident = r.config["teleport"]["identity_secret"]
    assert out["destination"]["name"] == ident["name"] and ident["key"] == "identity"
    # The plugin's address falls back to tbot's, as in the official chart.
    assert r.config["teleport"]["addr"] == tbot["proxy_server"] == "example.teleport.sh:443"

    deploy = next(d for d in r.all("Deployment") if d["metadata"]["labels"].get("app.kubernetes.io/component") == "tbot")
    spec = deploy["spec"]["template"]["spec"]
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"]["type"] == "Recreate"
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    token_vol = next(v for v in spec["volumes"] if v["name"] == "join-sa-token")
    assert token_vol["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "example.teleport.sh"

    # tbot may touch only its Secrets by name (create cannot be limited by name).
    role = next(d for d in r.all("Role") if d["metadata"]["labels"].get("app.kubernetes.io/component") == "tbot")
    named = [rule for rule in role["rules"] if "resourceNames" in rule]
    assert named and all(rule["resources"] == ["secrets"] for rule in role["rules"])
    assert ident["name"] in named[0]["resourceNames"]
    unnamed = [rule for rule in role["rules"] if "resourceNames" not in rule]
    assert [rule["verbs"] for rule in unnamed] == [["create"]]
    binding = r.one("RoleBinding", role["metadata"]["name"])
    assert binding["subjects"][0]["name"] == spec["serviceAccountName"]


@pytest.mark.parametrize("chat", CHATS)
def test_operator_resources_match_tbot(chat, rendered):
    r = rendered(chat, "official")
    token = r.one("TeleportProvisionToken")
    tbot = yaml.safe_load(next(d for d in r.all("ConfigMap") if "tbot.yaml" in d.get("data", {}))["data"]["tbot.yaml"])
    assert tbot["onboarding"]["token"] == token["metadata"]["name"]
    tbot_sa = next(d for d in r.all("Deployment") if d["metadata"]["labels"].get("app.kubernetes.io/component") == "tbot")[
        "spec"
    ]["template"]["spec"]["serviceAccountName"]
    assert token["spec"]["kubernetes"]["allow"] == [{"service_account": f"{NAMESPACE}:{tbot_sa}"}]
    assert r.one("TeleportBotV1")["spec"]["roles"] == ["access-plugin"]


@pytest.mark.parametrize("chat", CHATS)
def test_operator_resources_need_tbot(chat):
    values = load_values(f"{chat}/minimal.yaml")
    values["crd"] = {"create": True}
    with pytest.raises(helm.HelmError, match="crd.create needs tbot.enabled"):
        render(chat, values)


@pytest.mark.parametrize("chat", CHATS)
def test_replicas_and_routing(chat, rendered):
    r = rendered(chat, "routing-crd")
    assert r.deployment["spec"]["replicas"] == 3
    assert r.config["routing"] == {"crd": True, "namespace": "access-routes"}
    assert r.config["plugin"] == {"concurrency": 16, "claim_lease": "45s", "shutdown_grace": "20s"}
    env = {e["name"]: e.get("value") for e in r.container["env"]}
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"
    assert "routing.crd" not in r.notes and "get accessrequestroutes" in r.notes


@pytest.mark.parametrize("chat", CHATS)
def test_metrics_service_and_servicemonitor(chat, rendered):
    r = rendered(chat, "metrics")
    svc = r.one("Service", r.fullname)
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8081, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == r.deployment["spec"]["selector"]["matchLabels"]
    sm = r.one("ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert r.config["log"]["format"] == "json"
    assert f"/services/{r.fullname}:http/proxy/readyz" in r.notes
    assert not render(chat, values_for(chat, "minimal")).all("Service")


@pytest.mark.parametrize("chat", CHATS)
def test_official_keys_keep_their_meaning(chat, rendered):
    r = rendered(chat, "official")
    v = r.values
    pod = r.deployment["spec"]["template"]
    assert r.container["image"] == "registry.example.com/teleport-plugin:0.1.0"
    assert r.container["imagePullPolicy"] == "Always"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["metadata"]["annotations"]["example.com/pod"] == "1"
    assert pod["metadata"]["annotations"]["example.com/legacy-pod-annotation"] == "1"
    assert r.deployment["metadata"]["annotations"] == {"example.com/deployment": "1"}
    assert r.one("ConfigMap", r.fullname)["metadata"]["annotations"] == {"example.com/config": "1"}
    for key in ("nodeSelector", "tolerations", "affinity"):
        assert pod["spec"][key] == v[key]
    assert r.container["resources"] == v["resources"]
    # User security values merge over the restricted defaults.
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert r.container["securityContext"]["allowPrivilegeEscalation"] is False
    assert any(vol["name"] == "password-file" for vol in pod["spec"]["volumes"])
    cfg = r.config
    assert cfg["teleport"]["addr"] == "teleport.example.com:443"
    assert cfg["log"] == {"output": "stdout", "severity": "DEBUG", "format": "text"}
    if chat == "mattermost":
        assert cfg["mattermost"]["url"] == "https://mattermost.example.com"
        assert cfg["mattermost"]["recipients"] == v["mattermost"]["recipients"]
        assert "role_to_recipients" not in cfg
    else:
        # A string or a list per role, as written.
        assert cfg["role_to_recipients"] == v["roleToRecipients"]
    if chat == "slack":
        assert cfg["review"] == {
            "enabled": True,
            "app_token": "/var/lib/teleport/plugins/slack/slack-app-token",
            "slack_user_id_trait": "slack_uid",
            "allow_email_username_match": False,
        }
        assert "Review from Slack is on" in r.notes


@pytest.mark.parametrize("chat", CHATS)
def test_upstream_lint_values_render(chat):
    """The official charts' own .lint examples work as they are."""
    base = load_values(f"{chat}/minimal.yaml")
    tbot_enabled = {"tbot": {"enabled": True, "clusterName": "test.teleport.sh", "teleportProxyAddress": "test.teleport.sh:443"}}
    r = render(chat, merge(base, tbot_enabled))
    assert r.config["teleport"]["identity_secret"]["key"] == "identity"
    if chat == "slack":
        # The official review example's placeholder token is refused at
        # install: an app-level token starts with xapp- (the plugin would
        # refuse it at start). With a real-looking token it renders as the
        # official chart renders it: its Secret, key and mount path.
        review = {"review": {"enabled": True, "appToken": "test-app-token", "slackUserIdTrait": "slack_uid", "allowEmailUsernameMatch": False}}
        with pytest.raises(helm.HelmValuesError, match="xapp-"):
            render(chat, merge(base, review))
        review["review"]["appToken"] = "xapp-1-test-app-token"
        r = render(chat, merge(base, review))
        assert r.config["review"]["enabled"] is True
        secret = r.one("Secret", f"{r.fullname}-app-token-secret")
        assert base64.b64decode(secret["data"]["slackAppToken"]).decode() == "xapp-1-test-app-token"
        mount = next(m for m in r.container["volumeMounts"] if m["name"] == "password-file-app-token")
        assert (mount["mountPath"], mount["subPath"]) == ("/var/lib/teleport/plugins/slack/slack-app-token", "slackAppToken")


@pytest.mark.parametrize("chat", CHATS)
def test_values_are_written_safely_into_toml(chat, tmp_path):
    """Quotes, backslashes and newlines in values cannot break the file."""
    values = load_values(f"{chat}/minimal.yaml")
    tricky = 'team/"quoted" \\ back\nslash'
    if chat == "mattermost":
        values["mattermost"]["recipients"] = [tricky]
    else:
        values["roleToRecipients"] = {"*": tricky, 'we"ird': [tricky, "x"]}
    r = render(chat, values)
    cfg = r.config
    if chat == "mattermost":
        assert cfg["mattermost"]["recipients"] == [tricky]
    else:
        assert cfg["role_to_recipients"] == {"*": tricky, 'we"ird': [tricky, "x"]}
    assert plugin_check(r.config_text, tmp_path).returncode == 0


# ---------------------------------------------------------------- review from Slack


def callbacks_objects(r) -> list[dict]:
    return [d for d in r.docs if d["metadata"]["name"].endswith("-callbacks")]


def test_review_over_socket_mode(rendered):
    r = rendered("slack", "review-socket")
    cfg = r.config
    assert cfg["review"] == {
        "enabled": True,
        "app_token": "/var/lib/teleport/plugins/slack/slack-app-token",
        "allow_email_username_match": True,
    }
    # Socket Mode connects out: no listener, no signing secret, nothing exposed.
    assert "signing_secret" not in cfg["slack"]
    assert set(cfg["http"]) == {"listen"}
    assert [p["name"] for p in r.container["ports"]] == ["http"]
    assert not callbacks_objects(r)
    secret = r.one("Secret", f"{r.fullname}-app-token-secret")
    assert base64.b64decode(secret["data"]["slackAppToken"]).decode() == r.values["review"]["appToken"]
    # The token is in no other object.
    for d in r.docs:
        if d is not secret:
            assert r.values["review"]["appToken"] not in json.dumps(d)
    assert "checksum/review" in r.pod_annotations
    notes = r.notes
    assert "Socket Mode on" in notes and "connections:write" in notes and "Request URL" not in notes
    assert "users:read.email" in notes and "trait slack_user_id holding" in notes
    assert "deploy/teleport/plugin-role-review.yaml" in notes and "MFA" in notes


def test_review_over_http(rendered):
    r = rendered("slack", "review-http")
    cfg = r.config
    assert cfg["review"] == {"enabled": True, "slack_user_id_trait": "slack_uid", "allow_email_username_match": False}
    assert cfg["slack"]["signing_secret"] == "/var/lib/teleport/plugins/slack/slack-signing-secret"
    assert cfg["http"] == {
        "listen": "0.0.0.0:8081",
        "listen_addr": "0.0.0.0:9443",
        # Taken from the ingress host.
        "public_addr": "https://teleport-slack.example.com",
        "https_key_file": "/var/lib/teleport/plugins/slack/callback-tls/tls.key",
        "https_cert_file": "/var/lib/teleport/plugins/slack/callback-tls/tls.crt",
    }
    ports = {p["name"]: p["containerPort"] for p in r.container["ports"]}
    assert ports == {"http": 8081, "callbacks": 9443}
    # The signing secret is an existing Secret: the chart makes none.
    assert [s["metadata"]["name"] for s in r.all("Secret")] == [f"{r.fullname}-secret"]

    name = f"{r.fullname}-callbacks"
    svc = r.one("Service", name)
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["ports"] == [{"name": "callbacks", "port": 443, "targetPort": "callbacks", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == r.deployment["spec"]["selector"]["matchLabels"]
    assert svc["metadata"]["annotations"] == r.values["interactivity"]["service"]["annotations"]
    # The metrics port stays off the exposed Service (no metrics Service here).
    assert not [s for s in r.all("Service") if s["metadata"]["name"] == r.fullname]

    ing = r.one("Ingress", name)
    spec = ing["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "teleport-slack-tls", "hosts": ["teleport-slack.example.com"]}]
    assert ing["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"}
    [rule] = spec["rules"]
    assert rule["host"] == "teleport-slack.example.com"
    assert rule["http"]["paths"] == [
        {"path": "/slack/interactions", "pathType": "Exact", "backend": {"service": {"name": name, "port": {"name": "callbacks"}}}}
    ]
    assert "Request URL to https://teleport-slack.example.com/slack/interactions" in r.notes
    assert "Socket Mode on" not in r.notes and "WARNING" not in r.notes


def test_review_http_without_ingress_or_public_address():
    values = load_values("slack/minimal.yaml")
    values["slack"]["signingSecret"] = "8f742231b10e8888abcd99yyyzzz85a5"
    values["review"] = {"enabled": True}
    values["interactivity"] = {"enabled": True}
    r = render("slack", values)
    assert r.config["http"] == {"listen": "0.0.0.0:8081", "listen_addr": "0.0.0.0:8443"}
    secret = r.one("Secret", f"{r.fullname}-signing-secret")
    assert base64.b64decode(secret["data"]["slackSigningSecret"]).decode() == "8f742231b10e8888abcd99yyyzzz85a5"
    svc = r.one("Service", f"{r.fullname}-callbacks")
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["ports"][0]["port"] == 8443
    assert not r.all("Ingress")
    assert f"the address Slack reaches Service {r.fullname}-callbacks>/slack/interactions" in r.notes
    values["interactivity"]["publicAddr"] = "https://slack-hooks.example.com:8443"
    r = render("slack", values)
    assert r.config["http"]["public_addr"] == "https://slack-hooks.example.com:8443"
    assert "Request URL to https://slack-hooks.example.com:8443/slack/interactions" in r.notes


def test_callbacks_service_name_stays_distinct_for_long_names():
    values = load_values("slack/minimal.yaml")
    values.update(fullnameOverride="x" * 63, service={"enabled": True})
    values["slack"]["signingSecret"] = "s"
    values["review"] = {"enabled": True}
    values["interactivity"] = {"enabled": True}
    r = render("slack", values)
    names = sorted(s["metadata"]["name"] for s in r.all("Service"))
    assert names == sorted(["x" * 63, "x" * 53 + "-callbacks"])
    assert all(len(n) <= 63 for n in names)


def test_review_with_both_transports_warns_in_the_notes(tmp_path):
    values = merge(load_values("slack/minimal.yaml", "slack/review-http.yaml"), {
        "review": {"appTokenFromSecret": "slack-app-token", "appTokenSecretPath": "token"},
    })
    r = render("slack", values)
    assert r.config["review"]["app_token"] == "/var/lib/teleport/plugins/slack/slack-app-token"
    assert "signing_secret" in r.config["slack"]
    assert "WARNING: both review.appToken and slack.signingSecret are set" in r.notes
    # Both Secrets are existing ones: the chart makes neither.
    assert [s["metadata"]["name"] for s in r.all("Secret")] == [f"{r.fullname}-secret"]
    result = plugin_check(r.config_text, tmp_path)
    assert result.returncode == 0, result.stdout
    assert "not both" in result.stdout, result.stdout


def test_review_off_renders_nothing_of_review():
    """review.enabled is the switch: the other review values may stay set."""
    values = merge(load_values("slack/minimal.yaml", "slack/review-http.yaml"), {
        "review": {"enabled": False, "appToken": "xapp-1-unused"},
        "slack": {"signingSecret": "unused", "signingSecretFromSecret": ""},
    })
    r = render("slack", values)
    assert "review" not in r.config and "signing_secret" not in r.config["slack"]
    assert set(r.config["http"]) == {"listen"}
    assert not callbacks_objects(r) and [p["name"] for p in r.container["ports"]] == ["http"]
    assert [s["metadata"]["name"] for s in r.all("Secret")] == [f"{r.fullname}-secret"]
    assert "checksum/review" not in r.pod_annotations and "Review from Slack" not in r.notes
    assert r.pod_annotations == render("slack", load_values("slack/minimal.yaml")).pod_annotations


def test_review_secrets_roll_the_pods():
    base = load_values("slack/minimal.yaml", "slack/review-socket-mode.yaml")
    before = render("slack", base).pod_annotations
    after = render("slack", merge(base, {"review": {"appToken": "xapp-1-rotated"}})).pod_annotations
    assert after["checksum/review"] != before["checksum/review"]
    assert (after["checksum/config"], after["checksum/token"]) == (before["checksum/config"], before["checksum/token"])

    http = merge(
        load_values("slack/minimal.yaml"),
        {"slack": {"signingSecret": "one"}, "review": {"enabled": True}, "interactivity": {"enabled": True}},
    )
    before = render("slack", http).pod_annotations
    after = render("slack", merge(http, {"slack": {"signingSecret": "two"}})).pod_annotations
    assert after["checksum/review"] != before["checksum/review"] and after["checksum/config"] == before["checksum/config"]
    after = render("slack", merge(http, {"interactivity": {"port": 9000}})).pod_annotations
    assert after["checksum/config"] != before["checksum/config"]


REVIEW_FAILURES = [
    pytest.param({"review": {"enabled": True}}, "review.enabled needs a way for Slack to deliver the clicks", id="no-transport"),
    pytest.param(
        {"review": {"enabled": True}, "slack": {"signingSecret": "s"}},
        "slack.signingSecret needs interactivity.enabled=true",
        id="signing-secret-without-listener",
    ),
    pytest.param(
        {"review": {"enabled": True}, "slack": {"signingSecretFromSecret": "s"}},
        "slack.signingSecret needs interactivity.enabled=true",
        id="signing-secret-from-secret-without-listener",
    ),
    pytest.param(
        {"review": {"enabled": True, "appToken": "xapp-1-x"}, "interactivity": {"enabled": True}},
        "interactivity.enabled needs slack.signingSecret or slack.signingSecretFromSecret",
        id="listener-without-signing-secret",
    ),
    pytest.param(
        {"review": {"enabled": True}, "slack": {"signingSecret": "s"}, "interactivity": {"enabled": True, "port": 8081}},
        r"interactivity.port \(8081\) must differ from http.port",
        id="port-clash",
    ),
    pytest.param(
        {"review": {"enabled": True, "appToken": "xapp-1-x"}, "interactivity": {"ingress": {"enabled": True, "host": "a.example.com"}}},
        "interactivity.ingress.enabled needs interactivity.enabled=true",
        id="ingress-without-listener",
    ),
    pytest.param(
        {"review": {"enabled": True}, "slack": {"signingSecret": "s"}, "interactivity": {"enabled": True, "ingress": {"enabled": True}}},
        "interactivity.ingress.host is required",
        id="ingress-without-host",
    ),
]


@pytest.mark.parametrize("over,message", REVIEW_FAILURES)
def test_impossible_review_settings_fail_with_the_fix(over, message):
    with pytest.raises(helm.HelmRenderError, match=message):
        render("slack", merge(load_values("slack/minimal.yaml"), over))


def test_review_schema():
    base = load_values("slack/minimal.yaml")
    for bad in (
        {"review": {"appToken": "xoxb-a-bot-token"}},
        {"review": {"appToken": "xapp-with space"}},
        {"review": {"appTokenSecretPath": ""}},
        {"review": {"enabled": "yes"}},
        {"slack": {"signingSecret": "abc\n"}},
        {"interactivity": {"port": "8443"}},
        {"interactivity": {"publicAddr": "http://teleport-slack.example.com"}},
        {"interactivity": {"publicAddr": "https://teleport-slack.example.com/slack/interactions"}},
        {"interactivity": {"service": {"type": "ExternalName"}}},
        {"interactivity": {"ingress": {"host": "https://teleport-slack.example.com"}}},
        {"interactivity": {"ingress": {"tls": [{"secret": "x"}]}}},
        {"interactivity": {"listen": "0.0.0.0:8443"}},
    ):
        with pytest.raises(helm.HelmValuesError):
            render("slack", merge(base, bad))


# ---------------------------------------------------------------- review from Mattermost


MM_KEY = "3f1b9c0e5d7a4b2c8e6f0a1d3c5b7e9f2a4c6e8b0d1f3a5c7e9b2d4f6a8c0e1b"


def test_review_from_mattermost_in_the_cluster(rendered):
    r = rendered("mattermost", "review")
    cfg = r.config
    assert cfg["mattermost"]["review"] == {"enabled": True, "allow_email_username_match": False}
    assert cfg["mattermost"]["secret"] == "/var/lib/teleport/plugins/mattermost/mattermost-signing-secret"
    assert "review" not in cfg
    name = f"{r.fullname}-callbacks"
    # No publicAddr, no ingress: the Mattermost server calls the Service.
    assert cfg["http"] == {
        "listen": "0.0.0.0:8081",
        "listen_addr": "0.0.0.0:8443",
        "public_addr": f"http://{name}.{NAMESPACE}.svc:8443",
    }
    secret = r.one("Secret", f"{r.fullname}-signing-secret")
    assert base64.b64decode(secret["data"]["mattermostSecret"]).decode() == MM_KEY
    for d in r.docs:
        if d is not secret:
            assert MM_KEY not in json.dumps(d)
    svc = r.one("Service", name)
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "callbacks", "port": 8443, "targetPort": "callbacks", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == r.deployment["spec"]["selector"]["matchLabels"]
    assert not r.all("Ingress")
    assert {p["name"]: p["containerPort"] for p in r.container["ports"]} == {"http": 8081, "callbacks": 8443}
    assert "checksum/review" in r.pod_annotations
    notes = r.notes
    assert "Review from Mattermost is on" in notes
    assert f"POSTs each click to http://{name}.{NAMESPACE}.svc:8443/mattermost/actions" in notes
    assert "AllowedUntrustedInternalConnections" in notes and f"    {name}.{NAMESPACE}.svc\n" in notes
    assert "trait mattermost_user_id holding" in notes and "email" not in notes
    assert "deploy/teleport/plugin-role-review.yaml" in notes and "MFA" in notes


def test_review_from_mattermost_behind_an_ingress(rendered):
    r = rendered("mattermost", "review-ingress")
    cfg = r.config
    assert cfg["mattermost"]["review"] == {"enabled": True, "user_id_trait": "mm_uid", "allow_email_username_match": True}
    # The older default recipient, and no recipients list or role map.
    assert (cfg["mattermost"]["team"], cfg["mattermost"]["channel"]) == ("my-team", "access-requests")
    assert "recipients" not in cfg["mattermost"] and "role_to_recipients" not in cfg
    assert cfg["http"]["public_addr"] == "https://teleport-mattermost.example.com"
    assert cfg["http"]["listen_addr"] == "0.0.0.0:9443"
    # The secret is an existing Secret: the chart makes none.
    assert [s["metadata"]["name"] for s in r.all("Secret")] == [f"{r.fullname}-secret"]
    name = f"{r.fullname}-callbacks"
    assert r.one("Service", name)["spec"]["ports"][0]["port"] == 443
    ing = r.one("Ingress", name)
    [rule] = ing["spec"]["rules"]
    assert rule["host"] == "teleport-mattermost.example.com"
    assert rule["http"]["paths"] == [
        {"path": "/mattermost/actions", "pathType": "Exact", "backend": {"service": {"name": name, "port": {"name": "callbacks"}}}}
    ]
    assert "POSTs each click to https://teleport-mattermost.example.com/mattermost/actions" in r.notes
    assert "trait mm_uid holding" in r.notes and "Mattermost email" in r.notes


def test_mattermost_public_address_given_or_from_a_tls_listener():
    base = load_values("mattermost/minimal.yaml", "mattermost/review.yaml")
    r = render("mattermost", merge(base, {"interactivity": {"publicAddr": "http://10.0.0.5:8443"}}))
    assert r.config["http"]["public_addr"] == "http://10.0.0.5:8443"
    assert "AllowedUntrustedInternalConnections" in r.notes and ".svc\n" not in r.notes
    r = render("mattermost", merge(base, {"interactivity": {"tlsSecretName": "callbacks-tls", "service": {"port": 443}}}))
    assert r.config["http"]["public_addr"] == f"https://{r.fullname}-callbacks.{NAMESPACE}.svc:443"


def test_mattermost_team_and_channel_without_review(tmp_path):
    values = merge(load_values("mattermost/minimal.yaml"), {"mattermost": {"recipients": None, "team": "t", "channel": "c"}})
    r = render("mattermost", values)
    assert (r.config["mattermost"]["team"], r.config["mattermost"]["channel"]) == ("t", "c")
    result = plugin_check(r.config_text, tmp_path)
    assert result.returncode == 0 and "  ! " not in result.stdout, result.stdout


# ---------------------------------------------------------------- review from Discord


DISCORD_KEY = "5c2f0a9e8d7b6a5948372615f4e3d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b"


def test_review_from_discord_over_the_gateway(rendered):
    r = rendered("discord", "review-gateway")
    cfg = r.config
    assert cfg["discord"]["review"] == {"enabled": True, "user_id_trait": "discord_uid", "allow_email_username_match": False}
    # The Gateway connects out: no key, no listener, nothing exposed.
    assert "public_key" not in cfg["discord"] and set(cfg["http"]) == {"listen"}
    assert [p["name"] for p in r.container["ports"]] == ["http"]
    assert not callbacks_objects(r)
    assert [s["metadata"]["name"] for s in r.all("Secret")] == [f"{r.fullname}-secret"]
    # The TOML tables stay where the plugin reads them.
    assert list(cfg["discord"]) == ["token", "review"] and cfg["role_to_recipients"] == {"*": "1234567890123456789"}
    notes = r.notes
    assert "Review from Discord is on" in notes and "over the Gateway" in notes and "Interactions Endpoint URL empty" in notes
    assert "trait discord_uid holding" in notes and "deploy/teleport/plugin-role-review.yaml" in notes


def test_review_from_discord_over_http(rendered):
    r = rendered("discord", "review-http")
    cfg = r.config
    assert cfg["discord"]["public_key"] == DISCORD_KEY
    assert cfg["discord"]["review"] == {"enabled": True, "allow_email_username_match": False}
    assert cfg["http"] == {"listen": "0.0.0.0:8081", "listen_addr": "0.0.0.0:8443", "public_addr": "https://discord-hooks.example.com"}
    name = f"{r.fullname}-callbacks"
    svc = r.one("Service", name)
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["ports"][0]["port"] == 443
    [rule] = r.one("Ingress", name)["spec"]["rules"]
    assert rule["http"]["paths"][0]["path"] == "/discord/interactions"
    assert "Interactions Endpoint URL to\n  https://discord-hooks.example.com/discord/interactions" in r.notes
    assert "over the Gateway (the bot" not in r.notes


def test_review_from_discord_over_http_without_public_address():
    values = merge(load_values("discord/minimal.yaml"), {"discord": {"publicKey": DISCORD_KEY}, "review": {"enabled": True}, "interactivity": {"enabled": True}})
    r = render("discord", values)
    assert r.config["http"] == {"listen": "0.0.0.0:8081", "listen_addr": "0.0.0.0:8443"}
    assert f"the address Discord reaches Service {r.fullname}-callbacks>/discord/interactions" in r.notes
    values["review"]["allowEmailUsernameMatch"] = True
    assert "maps no one" in render("discord", values).notes


# ---------------------------------------------------------------- review in every chat


REVIEW_OFF = {
    "slack": {"slack": {"signingSecret": "unused"}, "interactivity": {"enabled": True}},
    "mattermost": {"mattermost": {"secret": "unused"}, "review": {"userIdTrait": "x"}},
    "discord": {"discord": {"publicKey": DISCORD_KEY}, "interactivity": {"enabled": True}},
}


@pytest.mark.parametrize("chat", CHATS)
def test_review_values_do_nothing_with_review_off(chat):
    base = load_values(f"{chat}/minimal.yaml")
    r = render(chat, merge(base, REVIEW_OFF[chat]))
    plain = render(chat, base)
    assert r.config == plain.config and r.pod_annotations == plain.pod_annotations
    assert not callbacks_objects(r) and [p["name"] for p in r.container["ports"]] == ["http"]
    assert [s["metadata"]["name"] for s in r.all("Secret")] == [f"{r.fullname}-secret"]
    assert "Review from" not in r.notes


def test_mattermost_secret_rolls_the_pods():
    base = load_values("mattermost/minimal.yaml", "mattermost/review.yaml")
    before = render("mattermost", base).pod_annotations
    after = render("mattermost", merge(base, {"mattermost": {"secret": "rotated"}})).pod_annotations
    assert after["checksum/review"] != before["checksum/review"]
    assert (after["checksum/config"], after["checksum/token"]) == (before["checksum/config"], before["checksum/token"])


def test_discord_public_key_rolls_the_pods():
    base = load_values("discord/minimal.yaml", "discord/review-http.yaml")
    before = render("discord", base).pod_annotations
    after = render("discord", merge(base, {"discord": {"publicKey": "ab" * 32}})).pod_annotations
    assert after["checksum/config"] != before["checksum/config"]


OTHER_REVIEW_FAILURES = [
    pytest.param("mattermost", {"review": {"enabled": True}}, "review.enabled needs mattermost.secret or mattermost.secretFromSecret", id="mattermost-no-secret"),
    pytest.param(
        "mattermost",
        {"review": {"enabled": True}, "mattermost": {"secret": "s"}, "interactivity": {"enabled": False}},
        "review.enabled needs interactivity.enabled=true: Mattermost POSTs the clicks",
        id="mattermost-no-listener",
    ),
    pytest.param(
        "mattermost",
        {"review": {"enabled": True}, "mattermost": {"secretFromSecret": "s"}, "interactivity": {"port": 8081}},
        r"interactivity.port \(8081\) must differ from http.port",
        id="mattermost-port-clash",
    ),
    pytest.param(
        "mattermost",
        {"review": {"enabled": True}, "mattermost": {"secret": "s"}, "interactivity": {"ingress": {"enabled": True}}},
        "interactivity.ingress.host is required",
        id="mattermost-ingress-without-host",
    ),
    pytest.param("mattermost", {"mattermost": {"team": "t"}}, "mattermost.team and mattermost.channel name the default recipient together", id="mattermost-team-alone"),
    pytest.param("mattermost", {"mattermost": {"channel": "c"}}, "mattermost.team and mattermost.channel name the default recipient together", id="mattermost-channel-alone"),
    pytest.param(
        "discord",
        {"review": {"enabled": True}, "discord": {"publicKey": DISCORD_KEY}},
        "discord.publicKey needs interactivity.enabled=true",
        id="discord-key-without-listener",
    ),
    pytest.param(
        "discord", {"review": {"enabled": True}, "interactivity": {"enabled": True}}, "interactivity.enabled needs discord.publicKey", id="discord-listener-without-key"
    ),
    pytest.param(
        "discord",
        {"review": {"enabled": True}, "discord": {"publicKey": DISCORD_KEY}, "interactivity": {"enabled": True, "port": 8081}},
        r"interactivity.port \(8081\) must differ from http.port",
        id="discord-port-clash",
    ),
    pytest.param(
        "discord",
        {"review": {"enabled": True}, "interactivity": {"ingress": {"enabled": True, "host": "a.example.com"}}},
        "interactivity.ingress.enabled needs interactivity.enabled=true",
        id="discord-ingress-without-listener",
    ),
    pytest.param(
        "discord",
        {"review": {"enabled": True}, "discord": {"publicKey": DISCORD_KEY}, "interactivity": {"enabled": True, "ingress": {"enabled": True}}},
        "interactivity.ingress.host is required",
        id="discord-ingress-without-host",
    ),
]


@pytest.mark.parametrize("chat,over,message", OTHER_REVIEW_FAILURES)
def test_impossible_mattermost_and_discord_review_settings_fail_with_the_fix(chat, over, message):
    with pytest.raises(helm.HelmRenderError, match=message):
        render(chat, merge(load_values(f"{chat}/minimal.yaml"), over))


def test_mattermost_and_discord_review_schema():
    bad_values = {
        "mattermost": (
            {"review": {"enabled": "yes"}},
            {"review": {"appToken": "xapp-1-x"}},
            {"review": {"slackUserIdTrait": "slack_user_id"}},
            {"mattermost": {"secret": "with space"}},
            {"mattermost": {"secretSecretPath": ""}},
            {"mattermost": {"signingSecret": "s"}},
            {"mattermost": {"team": "my team"}},
            {"interactivity": {"publicAddr": "ftp://mattermost-hooks.example.com"}},
            {"interactivity": {"publicAddr": "http://x.example.com/mattermost/actions"}},
            {"interactivity": {"port": 0}},
        ),
        "discord": (
            {"review": {"enabled": 1}},
            {"review": {"appToken": "xapp-1-x"}},
            {"discord": {"publicKey": "ab" * 31}},
            {"discord": {"publicKey": "zz" * 32}},
            {"discord": {"publicKey": DISCORD_KEY + "00"}},
            {"discord": {"signingSecret": "s"}},
            {"interactivity": {"publicAddr": "http://teleport-discord.example.com"}},
            {"interactivity": {"ingress": {"host": "https://teleport-discord.example.com"}}},
        ),
    }
    for chat, cases in bad_values.items():
        base = load_values(f"{chat}/minimal.yaml")
        for bad in cases:
            with pytest.raises(helm.HelmValuesError):
                render(chat, merge(base, bad))
    # What the schema lets through is what the templates take.
    ok = render("discord", merge(load_values("discord/minimal.yaml", "discord/review-http.yaml"), {"discord": {"publicKey": DISCORD_KEY.upper()}}))
    assert ok.config["discord"]["public_key"] == DISCORD_KEY.upper()


# ---------------------------------------------------------------- failures


MISSING = {
    "slack": [
        (("teleport", "address"), "teleport.address is required"),
        (("teleport", "identitySecretName"), "teleport.identitySecretName is required"),
        (("slack", "token"), "slack.token or slack.tokenFromSecret is required"),
        (("roleToRecipients",), 'roleToRecipients must map \\"\\*\\"'),
    ],
    "discord": [
        (("discord", "token"), "discord.token or discord.tokenFromSecret is required"),
        (("roleToRecipients",), 'roleToRecipients must map \\"\\*\\"'),
    ],
    "mattermost": [
        (("mattermost", "url"), "mattermost.url is required"),
        (("mattermost", "recipients"), "mattermost.recipients is required"),
        (("mattermost", "token"), "mattermost.token or mattermost.tokenFromSecret is required"),
    ],
}


@pytest.mark.parametrize(
    "chat,path,message", [pytest.param(c, p, m, id=f"{c}-{'.'.join(p)}") for c, cases in MISSING.items() for p, m in cases]
)
def test_missing_required_value_names_it(chat, path, message):
    values = load_values(f"{chat}/minimal.yaml")
    node = values
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    # (helm lint runs templates in lint mode, where `fail` only logs: the
    # install-time render is what stops a user.)
    with pytest.raises(helm.HelmRenderError, match=message):
        render(chat, values)


@pytest.mark.parametrize("chat", ["slack", "discord"])
def test_default_recipient_is_optional_with_crd_routing(chat, tmp_path):
    values = load_values(f"{chat}/minimal.yaml")
    values["roleToRecipients"] = {}
    values["routing"] = {"crd": True}
    r = render(chat, values)
    result = plugin_check(r.config_text, tmp_path)
    assert result.returncode == 0, result.stdout
    assert 'role_to_recipients["*"] is not set' in result.stdout


@pytest.mark.parametrize("chat", CHATS)
def test_schema_rejects_unknown_keys(chat):
    base = load_values(f"{chat}/minimal.yaml")
    for typo in ({"teleprot": {}}, {chat: {"tokn": "x"}}, {"teleport": {"adress": "x"}}, {"routing": {"crds": True}}, {"tbot": {"outputs": []}}):
        with pytest.raises(helm.HelmValuesError):
            render(chat, merge(base, typo))


@pytest.mark.parametrize("chat", CHATS)
def test_schema_rejects_wrong_types(chat):
    base = load_values(f"{chat}/minimal.yaml")
    for bad in ({"replicaCount": "3"}, {"routing": {"crd": "yes"}}, {"log": {"format": "xml"}}, {"teleport": {"identityAccess": "env"}}):
        with pytest.raises(helm.HelmValuesError):
            render(chat, merge(base, bad))


@pytest.mark.parametrize("chat", ["slack", "discord"])
def test_schema_accepts_a_string_or_a_list_per_role(chat):
    base = load_values(f"{chat}/minimal.yaml")
    r = render(chat, merge(base, {"roleToRecipients": {"*": "a", "dev": ["b", "c"]}}))
    assert r.config["role_to_recipients"] == {"*": "a", "dev": ["b", "c"]}
    for bad in ({"*": []}, {"*": 3}, {"*": ""}):
        with pytest.raises(helm.HelmValuesError):
            render(chat, merge(base, {"roleToRecipients": bad}))


def test_a_broken_config_is_refused_by_the_plugin(tmp_path):
    """The plugin check is not a rubber stamp: it refuses a config without a token."""
    r = render("slack", load_values("slack/minimal.yaml"))
    broken = re.sub(r'(?m)^token = .*$', "", r.config_text)
    result = plugin_check(broken, tmp_path)
    assert result.returncode != 0 and "slack.token is required" in result.stdout


# ---------------------------------------------------------------- layout


def test_templates_are_shared_between_the_charts():
    """Only _chat.tpl differs between the charts; the rest is one code."""
    slack = chart_dir("slack") / "templates"
    names = sorted(p.name for p in slack.iterdir())
    for chat in CHATS[1:]:
        other = chart_dir(chat) / "templates"
        assert sorted(p.name for p in other.iterdir()) == names
        for name in names:
            if name != "_chat.tpl":
                assert (other / name).read_text() == (slack / name).read_text(), f"{chat}/templates/{name} differs from slack's"


CHAT_KEYS = {chat: {chat, "roleToRecipients", "review", "interactivity"} for chat in CHATS}


def test_values_and_schemas_agree_between_the_charts():
    def common(d: dict, chat: str) -> dict:
        return {k: v for k, v in d.items() if k not in CHAT_KEYS[chat]}

    ref_values = common(yaml.safe_load((chart_dir("slack") / "values.yaml").read_text()), "slack")
    ref_schema = json.loads((chart_dir("slack") / "values.schema.json").read_text())
    for chat in CHATS:
        values = yaml.safe_load((chart_dir(chat) / "values.yaml").read_text())
        schema = json.loads((chart_dir(chat) / "values.schema.json").read_text())
        assert set(values) == set(schema["properties"]) - {"global"}, chat
        assert common(values, chat) == ref_values, chat
        assert common(schema["properties"], chat) == common(ref_schema["properties"], "slack"), chat


def test_default_values_satisfy_the_schema():
    for chat in CHATS:
        chart = helm.Chart.load(chart_dir(chat))
        chart.validate_schema({})


def test_crds_are_copies_of_the_generated_crd():
    shipped = (chart_dir("slack").parents[1] / "crds" / "accessrequestroutes.yaml").read_text()
    for chat in CHATS:
        crds = helm.Chart.load(chart_dir(chat)).crds
        assert [c["filename"] for c in crds] == [f"teleport-plugin-{chat}/crds/accessrequestroutes.yaml"]
        assert (chart_dir(chat) / "crds" / "accessrequestroutes.yaml").read_text() == shipped
        validate_kube(yaml.safe_load(shipped))
