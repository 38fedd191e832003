"""The worked examples in deploy/ fit together: the Teleport role, bot and join
token; tbot writing the identity Secret; a values file per chat; an
AccessRequestRoute."""

from __future__ import annotations

import copy
import re

import jsonschema
import pytest
import yaml

from chartkit import CHATS, NAMESPACE, ROOT, lint, load_values, merge, plugin_check, render, validate_kube

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


def review_resources() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs(DEPLOY / "teleport" / "plugin-role-review.yaml")}


def grants(role: dict) -> dict[str, set]:
    return {res: set(rule["verbs"]) for rule in role["spec"]["allow"]["rules"] for res in rule["resources"]}


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


def test_review_role_is_the_notifier_plus_reviews_on_behalf_of_users():
    notifier = plugin_role(teleport_resources())
    review = review_resources()
    assert set(review) == {"access-request-notifier-with-review", "access-request-reviewer"}
    role = review["access-request-notifier-with-review"]
    # v8, as the preset access-plugin-with-review.
    assert (role["kind"], role["version"]) == ("role", "v8")
    # The notifier's rules, plus `list` on users: ListUsers (mapping a
    # clicker by trait) needs list and read.
    assert grants(role) == {**grants(notifier), "user": {"list", "read"}}
    allow = role["spec"]["allow"]
    assert set(allow) == {"rules", "review_requests"} and set(role["spec"]) == {"allow"}
    # Submit for any user; preview the resources as the notifier role does.
    assert allow["review_requests"] == {"submit_for_users": ["*"], "preview_as_roles": ["access-request-notifier-resources"]}
    # The reviewers' own role grants reviewing and nothing else.
    reviewer = review["access-request-reviewer"]
    assert set(reviewer["spec"]["allow"]) == {"review_requests"}
    assert reviewer["spec"]["allow"]["review_requests"]["roles"]
    assert "submit_for_users" not in reviewer["spec"]["allow"]["review_requests"]


def test_review_role_file_says_how_to_use_it_and_what_it_risks():
    text = (DEPLOY / "teleport" / "plugin-role-review.yaml").read_text()
    bot = teleport_resources()["bot"]["metadata"]["name"]
    assert f"tctl bots update {bot} --set-roles access-request-notifier-with-review" in text
    for phrase in ("submit_for_users", "MFA", "device trust", "tbot", "tctl get users/", "tctl create -f", "Slack,\n# Mattermost and Discord"):
        assert phrase in text, phrase
    # The trait of each chat, as the charts name it by default.
    for trait, chart_key in (("slack_user_id", "review.slackUserIdTrait"), ("mattermost_user_id", "review.userIdTrait"), ("discord_user_id", "review.userIdTrait")):
        assert f"`{trait}`" in text and f"{trait}: [" in text, trait
        chat = trait.split("_")[0]
        values = (ROOT / "charts" / f"teleport-plugin-{chat}" / "values.yaml").read_text()
        assert f"Empty means `{trait}`" in values and chart_key.split(".")[1] + ":" in values


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


def commented_example(chat: str) -> dict:
    """The commented values block at the end of deploy/values/<chat>.yaml:
    from its first top-level key (`# key:`) to the last indented line."""
    lines = (DEPLOY / "values" / f"{chat}.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"# [a-z][A-Za-z]*:", line) and lines[i + 1].startswith("#   "))
    block = []
    for line in lines[start:]:
        if not (line.startswith("#   ") or re.fullmatch(r"# [a-z][A-Za-z]*:", line)):
            break
        block.append(line[2:])
    assert start + len(block) == len(lines), f"deploy/values/{chat}.yaml: text after the commented example"
    example = yaml.safe_load("\n".join(block))
    assert example["review"]["enabled"] is True
    return example


def test_slack_values_review_example_installs_when_uncommented(tmp_path):
    """The commented Socket Mode example in deploy/values/slack.yaml is valid."""
    example = commented_example("slack")
    values = merge(load_values(DEPLOY / "values" / "slack.yaml"), example)
    r = render("slack", values)
    assert r.config["review"]["app_token"] == "/var/lib/teleport/plugins/slack/slack-app-token"
    mount = next(m for m in r.container["volumeMounts"] if m["mountPath"] == r.config["review"]["app_token"])
    volume = next(v for v in r.deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert (volume["secret"]["secretName"], mount["subPath"]) == ("slack-app-token", "token")
    assert not [d for d in r.docs if d["metadata"]["name"].endswith("-callbacks")]
    result = plugin_check(r.config_text, tmp_path)
    assert result.returncode == 0, result.stdout


def test_mattermost_values_review_example_installs_when_uncommented(tmp_path):
    """The commented example in deploy/values/mattermost.yaml: the secret from
    the Secret its comment creates, the listener at the in-cluster address its
    comment tells Mattermost to allow."""
    text = (DEPLOY / "values" / "mattermost.yaml").read_text()
    values = merge(load_values(DEPLOY / "values" / "mattermost.yaml"), commented_example("mattermost"))
    r = render("mattermost", values)
    cfg = r.config
    assert cfg["mattermost"]["review"] == {"enabled": True, "user_id_trait": "mattermost_user_id", "allow_email_username_match": False}
    mount = next(m for m in r.container["volumeMounts"] if m["mountPath"] == cfg["mattermost"]["secret"])
    volume = next(v for v in r.deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert (volume["secret"]["secretName"], mount["subPath"]) == ("mattermost-review-secret", "secret")
    assert "kubectl -n teleport create secret generic mattermost-review-secret --from-literal=secret=" in text
    host = f"{r.fullname}-callbacks.{NAMESPACE}.svc"
    assert cfg["http"]["public_addr"] == f"http://{host}:8443" and f"{cfg['http']['public_addr']}\n# + /mattermost/actions" in text
    assert f"add {host}\n#     to ServiceSettings.AllowedUntrustedInternalConnections" in text
    for d in r.docs:
        if d["kind"] not in {"ServiceMonitor"}:
            validate_kube(d)
    result = plugin_check(r.config_text, tmp_path)
    assert result.returncode == 0, result.stdout
    assert "mattermost review: on through" in result.stdout and "  ! " not in result.stdout, result.stdout


def test_discord_values_review_example_installs_when_uncommented(tmp_path):
    """The commented Gateway example in deploy/values/discord.yaml is valid."""
    values = merge(load_values(DEPLOY / "values" / "discord.yaml"), commented_example("discord"))
    r = render("discord", values)
    assert r.config["discord"]["review"] == {"enabled": True, "user_id_trait": "discord_user_id", "allow_email_username_match": False}
    assert "public_key" not in r.config["discord"] and "listen_addr" not in r.config["http"]
    assert not [d for d in r.docs if d["metadata"]["name"].endswith("-callbacks")]
    result = plugin_check(r.config_text, tmp_path)
    assert result.returncode == 0, result.stdout
    assert "discord review: on through the Gateway" in result.stdout, result.stdout
    assert "  ! " not in result.stdout, result.stdout


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
    for path in [
        "deploy/teleport/plugin-role.yaml",
        "deploy/teleport/plugin-role-review.yaml",
        "deploy/tbot/rbac.yaml",
        "deploy/tbot/tbot.yaml",
        "deploy/routes/accessrequestroute.yaml",
    ]:
        assert path in text and (ROOT / path).is_file(), path
    for chat in CHATS:
        assert f"helm upgrade --install teleport-plugin-{chat} charts/teleport-plugin-{chat}" in text
        assert f"deploy/values/{chat}.yaml" in text
    assert "docker build -t" in text


def test_top_readme_review_section_matches_the_repository():
    """The README's review instructions name the real role, bot and labels."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Approve and deny from Slack") :]
    section = section[: section.index("\n## ", 1)]
    role = review_resources()["access-request-notifier-with-review"]
    bot = teleport_resources()["bot"]["metadata"]["name"]
    assert "deploy/teleport/plugin-role-review.yaml" in section
    assert f"tctl bots update {bot} --set-roles {role['metadata']['name']}" in section
    # The refusal reasons listed are the outcome labels of the code, all of them.
    click = (ROOT / "src" / "chat" / "click.rs").read_text()
    label_fn = click[click.index("pub fn label(") : click.index("pub fn text(")]
    labels = set(re.findall(r'=>\s*"([a-z_]+)",', label_fn))
    assert "submitted" in labels and "not_mapped" in labels
    listed = section[section.index("teleport_plugin_reviews_refused") : section.index("teleport_plugin_callback_rejections")]
    assert set(re.findall(r"`([a-z_]+)`", listed)) == labels - {"submitted"}
