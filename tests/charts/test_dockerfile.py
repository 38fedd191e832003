"""The Dockerfile's contract with the charts, checked without Docker: stages,
cached dependency layer, non-root distroless final image, binary path and
default command."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field

import yaml

from chartkit import CHATS, ROOT, chart_dir, load_values, plugin_binary, render

BINARY = "/usr/local/bin/teleport-plugin"
OFFICIAL_NAMES = ("teleport-slack", "teleport-discord", "teleport-mattermost")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, cmd: str) -> list[str]:
        return [args for c, args in self.instructions if c == cmd]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and stages; continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        cmd, _, rest = line.partition(" ")
        cmd = cmd.upper()
        rest = rest.strip()
        if cmd == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, f"cannot read FROM {rest}"
            stages.append(Stage(m.group(1), m.group(2)))
        elif not stages:
            assert cmd == "ARG", f"{cmd} before the first FROM"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((cmd, rest))
    return args, stages


def expand(s: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], s)


def dockerfile():
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


def test_stages_build_then_copy_into_distroless():
    args, stages = dockerfile()
    names = [s.name for s in stages]
    assert len(stages) >= 3 and all(names[:-1]), names
    final = stages[-1]
    assert final.base == "gcr.io/distroless/cc-debian12:nonroot"
    # The glibc the binary links against matches the final image's (Debian 12).
    for s in stages[:-1]:
        base = expand(s.base, args)
        if base.startswith("rust:"):
            assert base.endswith("-bookworm"), base


def test_rust_image_is_recent_enough_for_the_crate():
    args, _ = dockerfile()
    cargo = (ROOT / "Cargo.toml").read_text()
    needed = re.search(r'^rust-version\s*=\s*"([\d.]+)"', cargo, re.M).group(1)
    have = args["RUST_VERSION"]
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(have) >= as_tuple(needed)[: len(as_tuple(have))], (have, needed)


def test_dependencies_are_cached_in_their_own_layer():
    _, stages = dockerfile()
    by_name = {s.name: s for s in stages if s.name}
    chef = by_name["chef"]
    assert any("cargo install cargo-chef --version" in r and "--locked" in r for r in chef.all("RUN"))
    assert any("cargo chef prepare" in r for r in by_name["planner"].all("RUN"))
    builder = by_name["builder"]
    steps = builder.instructions
    cook = next(i for i, (c, a) in enumerate(steps) if c == "RUN" and "cargo chef cook" in a)
    copy_all = next(i for i, (c, a) in enumerate(steps) if c == "COPY" and a == ". .")
    build = next(i for i, (c, a) in enumerate(steps) if c == "RUN" and "cargo build" in a)
    # Only the recipe is in the context of the dependency build.
    assert all(c != "COPY" or "--from=planner" in a for c, a in steps[:cook])
    assert cook < copy_all < build
    assert "--release" in steps[build][1] and "--locked" in steps[build][1]
    assert "--release" in steps[cook][1]


def test_the_image_carries_no_simulator():
    """The `demo` feature pulls the simulator crate; the image is built without it."""
    _, stages = dockerfile()
    builder = {s.name: s for s in stages if s.name}["builder"]
    runs = [a for c, a in builder.instructions if c == "RUN" and ("cargo build" in a or "cargo chef cook" in a)]
    assert runs and all("--no-default-features" in a for a in runs), runs
    cargo = (ROOT / "Cargo.toml").read_text()
    assert re.search(r'^default = \["demo"\]$', cargo, re.M)
    assert re.search(r'^demo = \["dep:teleport-plugin-sim"\]$', cargo, re.M)


def test_no_protoc_is_installed():
    _, stages = dockerfile()
    for s in stages:
        for cmd, args in s.instructions:
            assert not re.search(r"protoc|protobuf", args), f"{cmd} {args}: the build uses protox, protoc is not needed"


def final_image_files() -> tuple[dict[str, str], set[str]]:
    """What the final stage's COPY puts under /usr/local/bin: the builder's
    directory it copies, read from the builder's RUN steps (files `cp`'d
    there, symlinks `ln -s`'d there, with `for x in ...` loops expanded)."""
    _, stages = dockerfile()
    final = stages[-1]
    copies = final.all("COPY")
    # One COPY: the binary and its names arrive together, from one stage.
    assert len(copies) == 1, copies
    src_stage, src, dest = re.fullmatch(r"--from=(\S+)\s+(\S+)\s+(\S+)", copies[0]).groups()
    assert src_stage in {s.name for s in stages}
    assert src.endswith("/") and dest == "/usr/local/bin/", (src, dest)
    builder = {s.name: s for s in stages if s.name}[src_stage]
    files: set[str] = set()
    links: dict[str, str] = {}
    for run in builder.all("RUN"):
        for step in run.split("&&"):
            step = step.strip()
            loop = re.fullmatch(r"for (\w+) in ([\w ]+); do (.+); done", step)
            bodies = [loop.group(3).replace(f"${loop.group(1)}", v) for v in loop.group(2).split()] if loop else [step]
            for body in bodies:
                words = shlex.split(body)
                if words[:2] == ["ln", "-s"] and words[3].startswith(src):
                    links[words[3][len(src):]] = words[2]
                elif words[:1] == ["cp"] and words[-1].startswith(src):
                    files.add(words[-1][len(src):])
    return links, files


def test_final_image_ships_the_official_command_names():
    links, files = final_image_files()
    assert files == {"teleport-plugin"}
    # Relative links into the same directory, so they resolve in the image.
    assert links == {name: "teleport-plugin" for name in OFFICIAL_NAMES}


def test_final_image_runs_the_plugin_as_nonroot():
    _, stages = dockerfile()
    final = stages[-1]
    links, files = final_image_files()
    assert BINARY.rsplit("/", 1)[1] in files
    users = final.all("USER")
    assert users and users[-1].split(":")[0] in {"nonroot", "65532"}
    assert json.loads(final.all("ENTRYPOINT")[-1]) == [BINARY]
    assert json.loads(final.all("CMD")[-1]) == ["start"]
    assert not final.all("RUN"), "distroless has no shell"


def test_charts_run_the_image_binary_and_port():
    _, stages = dockerfile()
    final = stages[-1]
    exposed = {int(p.split("/")[0]) for e in final.all("EXPOSE") for p in shlex.split(e)}
    for chat in CHATS:
        r = render(chat, load_values(f"{chat}/minimal.yaml"))
        assert r.container["command"][0] == BINARY
        port = next(p["containerPort"] for p in r.container["ports"] if p["name"] == "http")
        assert port in exposed
        assert yaml.safe_load((chart_dir(chat) / "values.yaml").read_text())["podSecurityContext"]["runAsUser"] == 65532


def test_default_command_is_a_plugin_subcommand():
    """CMD ["start"] is the plugin's `start` (it takes the official --config)."""
    out = subprocess.run([str(plugin_binary()), "start", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "--config" in out.stdout


def test_build_context_leaves_out_build_output():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert "target/" in ignored and ".git/" in ignored
    # Everything the build reads stays in the context.
    for needed in ("src/", "proto/", "build.rs", "Cargo.toml", "Cargo.lock"):
        assert not any(i and needed.startswith(i) for i in ignored if not i.startswith("#")), needed


def test_parser_reads_continuations_and_rejects_garbage():
    args, stages = parse_dockerfile("ARG A=1\nFROM x:${A} AS one\nRUN a \\\n  # note\n  b\nFROM y\nCMD [\"z\"]\n")
    assert args == {"A": "1"} and [s.name for s in stages] == ["one", None]
    assert stages[0].all("RUN") == ["a b"]
    try:
        parse_dockerfile("RUN x\n")
    except AssertionError:
        pass
    else:
        raise AssertionError("an instruction before FROM was accepted")
