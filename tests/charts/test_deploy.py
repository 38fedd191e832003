"""The worked examples in deploy/ fit together: the Teleport role, bot and join
token; tbot writing the identity Secret; a values file per chat; an
AccessRequestRoute."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from chartkit import CHATS, NAMESPACE, ROOT, lint, load_values, plugin_check, render, validate_kube

DEPLOY = ROOT / "deploy"


def docs(path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def by_kind(items: list[dict], kind: str) -> list[dict]:
    return [d for d in items if d["kind"] == kind]


def teleport_resources() -> dict[str, dict]:
    """The documents of plugin-role.yaml by kind; the roles by name under
    "roles"."""
    items = docs(DEPLOY / "teleport" / "plugin-role.yaml")
    out = {d["kind"]: d for d in items if d["kind"] != "role"}
    out["roles"] = {d["metadata"]["name"]: d for d in items if d["kind"] == "role"}
    return out


def plugin_role(t: dict) -> dict:
    return t["roles"][t["bot"]["spec"]["roles"][0]]


def tbot_manifests() -> list[dict]:
    return docs(DEPLOY / "tbot" / "rbac.yaml") + docs(DEPLOY / "tbot" / "tbot.yaml")


def tbot_config() -> dict:
    cm = by_kind(tbot_manifests(), "ConfigMap")[0]
    return yaml.safe_load(cm["data"]["tbot.yaml"])


def granted(role: dict) -> dict[str, set[str]]:
    return {res: set(rule["verbs"]) for rule in role["spec"]["allow"]["rules"] for res in rule["resources"]}


def test_role_grants_what_the_plugin_needs_and_no_more():
    t = teleport_resources()
    role = plugin_role(t)
    assert granted(role) == {
        "access_request": {"list", "read"},
        "access_plugin_data": {"update"},
        "role": {"read"},
        "access_monitoring_rule": {"list", "read"},
        # Requester traits for Access Monitoring Rules over `user.traits`.
        "user": {"read"},
    }
    # Resource labels for rules over `resource_labels_union` / `_intersection`:
    # listed through preview_as_roles (ListResources with UsePreviewAsRoles),
    # never by labels of the plugin's own role.
    assert set(role["spec"]["allow"]) == {"rules", "review_requests"}
    assert role["spec"]["allow"]["review_requests"] == {"preview_as_roles": ["access-request-notifier-resources"]}
    assert set(t) == {"roles", "bot", "token", "user"}
    name = role["metadata"]["name"]
    assert t["bot"]["spec"]["roles"] == [name] and t["user"]["spec"]["roles"] == [name]
    assert set(t["roles"]) == {name, "access-request-notifier-resources"}


def test_previewed_role_lists_requested_resources_and_grants_no_access():
    t = teleport_resources()
    previewed = t["roles"]["access-request-notifier-resources"]
    # ListResources checks the listed type: node, app_server, db_server.
    assert granted(previewed) == {k: {"list", "read"} for k in ["node", "app", "app_server", "db", "db_server"]}
    allow = previewed["spec"]["allow"]
    # Labels only: no logins, database users or names, nothing to request or review.
    assert set(allow) == {"rules", "node_labels", "app_labels", "db_labels"}
    assert all(allow[k] == {"*": "*"} for k in ["node_labels", "app_labels", "db_labels"])
    assert "deny" not in previewed["spec"] and "options" not in previewed["spec"]
    # Held by no one: only previewed.
    assert previewed["metadata"]["name"] not in t["bot"]["spec"]["roles"] + t["user"]["spec"]["roles"]


def test_join_token_admits_the_tbot_service_account():
    t = teleport_resources()
    token = t["token"]
    assert token["spec"]["roles"] == ["Bot"] and token["spec"]["bot_name"] == t["bot"]["metadata"]["name"]
    sa = by_kind(tbot_manifests(), "ServiceAccount")[0]["metadata"]
    assert token["spec"]["kubernetes"]["allow"] == [{"service_account": f"{sa['namespace']}:{sa['name']}"}]
    cfg = tbot_config()
    assert cfg["onboarding"] == {"join_method": token["spec"]["join_method"], "token": token["metadata"]["name"]}


def test_tbot_manifests_are_valid_and_scoped():
    items = tbot_manifests()
    for d in items:
        validate_kube(d)
        assert d["metadata"]["namespace"] == NAMESPACE
    out = tbot_config()["outputs"]
    assert out == [{"type": "identity", "destination": {"type": "kubernetes_secret", "name": "teleport-plugin-identity"}}]
    role = by_kind(items, "Role")[0]
    assert all(r["resources"] == ["secrets"] for r in role["rules"])
    named = [r for r in role["rules"] if "resourceNames" in r]
    assert named[0]["resourceNames"] == ["teleport-plugin-identity"]
    assert [r["verbs"] for r in role["rules"] if "resourceNames" not in r] == [["create"]]
    deploy = by_kind(items, "Deployment")[0]
    sa = by_kind(items, "ServiceAccount")[0]["metadata"]["name"]
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == sa
    assert by_kind(items, "RoleBinding")[0]["subjects"][0]["name"] == sa


@pytest.mark.parametrize("chat", CHATS)
def test_values_file_installs_and_reads_tbots_secret(chat, tmp_path):
    values = load_values(DEPLOY / "values" / f"{chat}.yaml")
    report = lint(chat, values)
    assert not [m for m in report["messages"] if m["severity"] >= 2] and not report["errors"], report
    r = render(chat, values)
    for d in r.docs:
        if d["kind"] not in {"ServiceMonitor"}:
            validate_kube(d)
    ident = r.config["teleport"]["identity_secret"]
    assert (ident["name"], ident["key"]) == ("teleport-plugin-identity", "identity")
    assert ident["name"] == tbot_config()["outputs"][0]["destination"]["name"]
    result = plugin_check(r.config_text, tmp_path)
    assert result.returncode == 0, result.stdout
    assert r.config["routing"]["namespace"] == route()["metadata"]["namespace"]


def route() -> dict:
    return docs(DEPLOY / "routes" / "accessrequestroute.yaml")[0]


def crd_schema() -> dict:
    """The CRD's schema, strict as `kubectl apply` (field validation) is:
    unknown fields are errors."""
    crd = yaml.safe_load((ROOT / "crds" / "accessrequestroutes.yaml").read_text())
    schema = copy.deepcopy(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])

    def strict(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for v in node.values():
                strict(v)
        elif isinstance(node, list):
            for v in node:
                strict(v)

    strict(schema)
    # apiVersion, kind and metadata are the API server's, not the CRD's.
    schema["properties"].update({"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}})
    return schema


def test_route_example_matches_the_crd():
    r = route()
    assert r["apiVersion"] == "notify.accessrequests.dev/v1alpha1" and r["kind"] == "AccessRequestRoute"
    jsonschema.validate(r, crd_schema())
    chats_used = {chat for rule in r["spec"]["rules"] for chat in rule.get("recipients", {})}
    assert chats_used == set(CHATS)


def test_crd_schema_check_refuses_a_wrong_route():
    bad = copy.deepcopy(route())
    bad["spec"]["rules"][0]["match"]["role"] = ["typo"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, crd_schema())
    bad = copy.deepcopy(route())
    bad["spec"]["rules"][0]["recipients"]["slack"] = "#not-a-list"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, crd_schema())


def test_readme_commands_name_the_real_paths():
    text = (DEPLOY / "README.md").read_text()
    for path in ["deploy/teleport/plugin-role.yaml", "deploy/tbot/rbac.yaml", "deploy/tbot/tbot.yaml", "deploy/routes/accessrequestroute.yaml"]:
        assert path in text and (ROOT / path).is_file(), path
    for chat in CHATS:
        assert f"helm upgrade --install teleport-plugin-{chat} charts/teleport-plugin-{chat}" in text
        assert f"deploy/values/{chat}.yaml" in text
    assert "docker build -t" in text
