"""Rendering the charts with the real Helm engine (helm-python-sdk), and the
small amount of glue the chart tests share."""

from __future__ import annotations

import copy
import os
import subprocess
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
VALUES = Path(__file__).resolve().parent / "values"
CHATS = ("slack", "discord", "mattermost")
NAMESPACE = "teleport"
KUBE_VERSION = "1.33"

# Kinds from CRDs that are not in the Kubernetes schemas; the tests check
# them field by field instead.
CUSTOM_KINDS = {"ServiceMonitor", "TeleportBotV1", "TeleportProvisionToken", "AccessRequestRoute"}


def chart_dir(chat: str) -> Path:
    return CHARTS / f"teleport-plugin-{chat}"


def release_name(chat: str) -> str:
    return f"teleport-plugin-{chat}"


def merge(base: dict, over: dict) -> dict:
    """Merges values as Helm merges several -f files: maps recursively, the
    later file wins, and null deletes a key."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_values(*files: str | Path) -> dict:
    values: dict = {}
    for f in files:
        path = Path(f)
        if not path.is_absolute():
            path = VALUES / path
        values = merge(values, yaml.safe_load(path.read_text()) or {})
    return values


@cache
def _chart(chat: str) -> helm.Chart:
    return helm.Chart.load(chart_dir(chat))


@dataclass
class Rendered:
    chat: str
    values: dict
    docs: list[dict]
    notes: str

    def all(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
        return found[0]

    @property
    def fullname(self) -> str:
        return self.deployment["metadata"]["name"]

    @property
    def deployment(self) -> dict:
        plugin = [d for d in self.all("Deployment") if d["metadata"]["labels"].get("app.kubernetes.io/component") != "tbot"]
        assert len(plugin) == 1
        return plugin[0]

    @property
    def container(self) -> dict:
        return self.deployment["spec"]["template"]["spec"]["containers"][0]

    @property
    def config_text(self) -> str:
        cm = self.one("ConfigMap", self.fullname)
        return cm["data"][f"teleport-{self.chat}.toml"]

    @property
    def config(self) -> dict:
        return tomllib.loads(self.config_text)

    @property
    def pod_annotations(self) -> dict:
        return self.deployment["spec"]["template"]["metadata"].get("annotations", {})


def render_files(chat: str, values: dict, name: str | None = None) -> dict[str, str]:
    """The rendered text of every template, by path, as `helm install` renders it."""
    return _chart(chat).render(values=values, name=name or release_name(chat), namespace=NAMESPACE, is_install=True)


def render(chat: str, values: dict, name: str | None = None) -> Rendered:
    """Renders the chart as `helm install` would (schema validation included)."""
    out = render_files(chat, values, name)
    docs: list[dict] = []
    notes = ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return Rendered(chat, values, docs, notes)


def lint(chat: str, values: dict) -> dict:
    return helm.lint(str(chart_dir(chat)), values, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}.0")


def validate_kube(doc: dict) -> None:
    """Validates a built-in kind against the Kubernetes schemas bundled in
    kubernetes-validate (offline); strict: unknown fields fail."""
    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


@cache
def plugin_binary() -> Path:
    """The teleport-plugin binary: CARGO_BIN, else a debug build."""
    given = os.environ.get("CARGO_BIN")
    if given:
        path = Path(given)
        assert path.is_file(), f"CARGO_BIN={given} is not a file"
        return path
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    subprocess.run(["cargo", "build", "--quiet", "--bin", "teleport-plugin"], cwd=ROOT, check=True)
    return target / "debug" / "teleport-plugin"


def plugin_check(config_text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`teleport-plugin check --offline` on a configuration text."""
    path = tmp_path / "rendered.toml"
    path.write_text(config_text)
    return subprocess.run(
        [str(plugin_binary()), "check", "--offline", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        # The check must not depend on the host (HOSTNAME, KUBECONFIG, ...).
        env={"PATH": os.environ.get("PATH", "")},
    )
