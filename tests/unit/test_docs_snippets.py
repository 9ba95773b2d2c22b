"""Every fenced block in docs/ and README.md stays true: what can be checked here is checked.

No OpenTelemetry Collector, Alloy or Kubernetes runs on the test machines, so their snippets are checked
statically, each against the rules its tool applies at startup:

- YAML parses. A Collector configuration (top-level `service.pipelines`) declares every component its
  pipelines name (`type` or `type/name`; connectors count as receivers and exporters), names only signals the
  Collector knows, and uses the component names current since v0.144 / v0.154 (`otlp_grpc`, `otlp_http`,
  `prometheus_remote_write`), not the deprecated aliases. A Prometheus configuration gives every scrape job
  a target source and promotes the resource attributes the alert rules select by. An otel-leakproc
  configuration (top-level keys of config/leakproc.yaml) loads with the service's own loader.
- Alloy: every `component.label.export` a block references is a component defined in the same snippet, and
  exports that field; braces balance.
- Python compiles, and every module it uses as `name.attr` is imported or assigned in the snippet.
- Go parses (`gofmt -e`, fragments wrapped in a function), and a file snippet imports every package it uses.
- Shell passes `bash -n`; JSON parses.

The Python snippets of docs/integrations.md marked `# doc-test:` also run against a real service in
tests/integration/test_integrations_docs.py; the chart values snippets render with the chart in
tests/deploy/test_chart.py. A block whose language this file does not know fails: give it a checker (or the
`text` language for output and illustrations).
"""

from __future__ import annotations

import ast
import builtins
import json
import re
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import toolchain
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[A-Za-z0-9_+-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)
FENCE_LINE = re.compile(r"^[ ]*```", re.M)
CHECKED = {"yaml", "alloy", "python", "go", "sh", "json"}
UNCHECKED = {"", "text"}  # command output, diagrams, illustrations of shapes


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_blocks(files: list[Path] = DOC_FILES) -> list[Block]:
    """Every fenced block of the given Markdown files, dedented (blocks may sit inside list items)."""
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(path, line, match.group("lang"), textwrap.dedent(match.group("body"))))
    return found


BLOCKS = doc_blocks()


def blocks(lang: str) -> list[Block]:
    return [b for b in BLOCKS if b.lang == lang]


def yaml_docs() -> Iterator[tuple[Block, Any]]:
    for block in blocks("yaml"):
        for doc in yaml.safe_load_all(block.text):
            yield block, doc


def ids(items: list[Block]) -> list[str]:
    return [b.where for b in items]


# ---- every block -------------------------------------------------------------------------------------


def test_fences_pair_up_and_every_language_has_a_checker() -> None:
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        opened = len(FENCE_LINE.findall(text))
        assert opened == 2 * len(FENCE.findall(text)), f"{path.relative_to(ROOT)}: a code fence is not closed"
    unknown = {(b.where, b.lang) for b in BLOCKS if b.lang not in CHECKED | UNCHECKED}
    assert not unknown, f"blocks in a language without a checker: {sorted(unknown)}"
    # The extraction finds what the documents hold (a broken regex must not pass by finding nothing).
    counts = {lang: len(blocks(lang)) for lang in CHECKED}
    assert counts["yaml"] >= 12
    assert counts["alloy"] >= 2
    assert counts["python"] >= 5
    assert counts["go"] >= 2
    assert counts["sh"] >= 10


@pytest.mark.parametrize("block", blocks("yaml"), ids=ids(blocks("yaml")))
def test_yaml_parses(block: Block) -> None:
    docs = list(yaml.safe_load_all(block.text))
    assert docs
    assert all(doc is not None for doc in docs), f"{block.where}: an empty YAML document"


def test_json_parses() -> None:
    for block in blocks("json"):  # none at the moment: shapes with placeholders are `text`
        json.loads(block.text)


@pytest.mark.parametrize("block", blocks("sh"), ids=ids(blocks("sh")))
def test_shell_syntax(block: Block) -> None:
    done = subprocess.run(["/bin/bash", "-n"], input=block.text, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{block.where}: {done.stderr}"


LINK = re.compile(r"\]\((?!https?://|mailto:)(?P<target>[^)#\s]*)(?:#(?P<anchor>[^)\s]+))?\)")


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens (code blocks hold no headings)."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    titles = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") for title in titles}


def test_relative_links_and_anchors_resolve() -> None:
    checked = 0
    for path in DOC_FILES:
        text = FENCE.sub("", path.read_text(encoding="utf-8"))
        for match in LINK.finditer(text):
            target = (path.parent / match.group("target")).resolve() if match.group("target") else path
            assert target.exists(), f"{path.relative_to(ROOT)}: broken link {match.group(0)}"
            if match.group("anchor"):
                assert match.group("anchor") in heading_anchors(target), f"{path.relative_to(ROOT)}: {match.group(0)}"
            checked += 1
    assert checked >= 20


def test_heading_anchors_follow_github(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("# Runbook: otel-leakproc\n\n```\n# not a heading\n```\n## OpenTelemetry Collector: OTLP (v1.10+)\n")
    assert heading_anchors(doc) == {"runbook-otel-leakproc", "opentelemetry-collector-otlp-v110"}


# ---- OpenTelemetry Collector -------------------------------------------------------------------------

COMPONENT_KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")
SIGNALS = {"traces", "metrics", "logs", "profiles"}
COMPONENT_ID = re.compile(r"^(?P<type>[a-z][a-z0-9_]*)(?:/(?P<name>[^/\s]+))?$")
# Deprecated type names -> current ones: the otlp/otlphttp exporters were renamed in Collector v0.144.0,
# prometheusremotewrite in contrib v0.154.0; logging was replaced by debug long before.
DEPRECATED = {
    "exporters": {
        "otlp": "otlp_grpc",
        "otlphttp": "otlp_http",
        "prometheusremotewrite": "prometheus_remote_write",
        "logging": "debug",
    },
}


def collector_configs() -> list[tuple[Block, dict[str, Any]]]:
    return [
        (block, doc)
        for block, doc in yaml_docs()
        if isinstance(doc, dict) and isinstance(doc.get("service"), dict) and "pipelines" in doc["service"]
    ]


def collector_problems(config: dict[str, Any]) -> list[str]:
    """What makes the Collector refuse (or warn about) this configuration, checked without a Collector."""
    problems = []
    declared: dict[str, set[str]] = {}
    for kind in COMPONENT_KINDS:
        section = config.get(kind) or {}
        if not isinstance(section, dict):
            problems.append(f"{kind} must be a mapping")
            continue
        declared[kind] = set(section)
        for component in section:
            match = COMPONENT_ID.match(str(component))
            if match is None:
                problems.append(f"{kind}: {component!r} is not a type[/name] id")
                continue
            current = DEPRECATED.get(kind, {}).get(match.group("type"))
            if current is not None:
                problems.append(f"{kind}: {component!r} uses a deprecated name, use {current!r}")
    pipelines = config["service"]["pipelines"]
    if not isinstance(pipelines, dict) or not pipelines:
        return [*problems, "service.pipelines is empty"]
    for pipeline_id, pipeline in pipelines.items():
        signal = str(pipeline_id).split("/", 1)[0]
        if signal not in SIGNALS:
            problems.append(f"pipeline {pipeline_id!r}: unknown signal {signal!r}")
        if not isinstance(pipeline, dict):
            problems.append(f"pipeline {pipeline_id!r} must be a mapping")
            continue
        if not pipeline.get("receivers") or not pipeline.get("exporters"):
            problems.append(f"pipeline {pipeline_id!r} needs receivers and exporters")
        allowed = {
            "receivers": declared["receivers"] | declared["connectors"],
            "processors": declared["processors"],
            "exporters": declared["exporters"] | declared["connectors"],
        }
        for key, names in allowed.items():
            for used in pipeline.get(key) or []:
                if used not in names:
                    problems.append(f"pipeline {pipeline_id!r} uses {key[:-1]} {used!r}, which is not declared")
        unknown = set(pipeline) - set(allowed)
        if unknown:
            problems.append(f"pipeline {pipeline_id!r}: unknown keys {sorted(unknown)}")
    for extension in config["service"].get("extensions") or []:
        if extension not in declared["extensions"]:
            problems.append(f"service.extensions uses {extension!r}, which is not declared")
    return problems


def test_collector_configs_are_found() -> None:
    # metrics.md, alerting.md, deploy.md and integrations.md each hold one.
    assert {b.path.name for b, _ in collector_configs()} >= {
        "metrics.md",
        "alerting.md",
        "deploy.md",
        "integrations.md",
    }


@pytest.mark.parametrize(("block", "config"), collector_configs(), ids=[b.where for b, _ in collector_configs()])
def test_collector_config_declares_every_component_under_its_current_name(block: Block, config: dict[str, Any]) -> None:
    assert collector_problems(config) == [], block.where


def test_the_collector_check_catches_what_the_collector_refuses() -> None:
    """The bugs the docs once had: an undeclared `debug` exporter, deprecated names."""
    config = yaml.safe_load(
        """
        receivers: {otlp: {protocols: {grpc: {}}}}
        exporters:
          prometheusremotewrite: {endpoint: http://prometheus:9090/api/v1/write}
          otlp/leakproc: {endpoint: otel-leakproc:4317}
          otlphttp: {endpoint: http://otel-leakproc:4040}
        connectors: {forward: {}}
        service:
          pipelines:
            metrics: {receivers: [otlp], exporters: [prometheusremotewrite]}
            logs: {receivers: [otlp], exporters: [debug]}
            profiles: {receivers: [otlp, forward], exporters: [otlp/leakproc]}
            logs/2: {receivers: [otlp], processors: [batch], exporters: [forward]}
            spans: {receivers: [otlp], exporters: [forward]}
        """
    )
    problems = collector_problems(config)
    assert "pipeline 'logs' uses exporter 'debug', which is not declared" in problems
    assert "pipeline 'logs/2' uses processor 'batch', which is not declared" in problems
    assert "pipeline 'spans': unknown signal 'spans'" in problems
    assert "exporters: 'prometheusremotewrite' uses a deprecated name, use 'prometheus_remote_write'" in problems
    assert "exporters: 'otlp/leakproc' uses a deprecated name, use 'otlp_grpc'" in problems
    assert "exporters: 'otlphttp' uses a deprecated name, use 'otlp_http'" in problems
    assert len(problems) == 6, problems  # the connector `forward` is a valid receiver and exporter


# ---- Prometheus --------------------------------------------------------------------------------------

SD_KEYS = {"static_configs", "kubernetes_sd_configs", "dns_sd_configs", "file_sd_configs", "http_sd_configs"}
# The labels the shipped alert rules select by come from these resource attributes.
RULE_ATTRIBUTES = {"service.name", "service.instance.id"}


def prometheus_configs() -> list[tuple[Block, dict[str, Any]]]:
    return [
        (block, doc)
        for block, doc in yaml_docs()
        if isinstance(doc, dict) and {"scrape_configs", "rule_files", "otlp"} & set(doc)
    ]


@pytest.mark.parametrize(("block", "config"), prometheus_configs(), ids=[b.where for b, _ in prometheus_configs()])
def test_prometheus_config(block: Block, config: dict[str, Any]) -> None:
    jobs = config.get("scrape_configs") or []
    names = [job["job_name"] for job in jobs]
    assert len(names) == len(set(names)), f"{block.where}: duplicate job_name"
    for job in jobs:
        assert SD_KEYS & set(job), f"{block.where}: job {job['job_name']} has no targets"
    for rule_file in config.get("rule_files") or []:
        assert rule_file.endswith("leakproc-rules.yml")
    otlp = config.get("otlp")
    if otlp is not None:
        promoted = set(otlp.get("promote_resource_attributes") or [])
        assert otlp.get("promote_all_resource_attributes") or promoted >= RULE_ATTRIBUTES, block.where
        assert not (otlp.get("promote_all_resource_attributes") and promoted), "Prometheus refuses both"


def test_prometheus_configs_are_found() -> None:
    found = prometheus_configs()
    assert any("scrape_configs" in c for _, c in found)
    assert any("otlp" in c for _, c in found)


# ---- otel-leakproc configuration ---------------------------------------------------------------------

SECTIONS = set(yaml.safe_load((ROOT / "config" / "leakproc.yaml").read_text(encoding="utf-8")))


def leakproc_configs() -> list[tuple[Block, dict[str, Any]]]:
    """Snippets of the service's own config, and the `config` value of chart values snippets."""
    found = []
    for block, doc in yaml_docs():
        if not isinstance(doc, dict):
            continue
        if set(doc) <= SECTIONS:
            found.append((block, doc))
        elif isinstance(doc.get("config"), dict):
            found.append((block, doc["config"]))
    return found


@pytest.mark.parametrize(("block", "config"), leakproc_configs(), ids=[b.where for b, _ in leakproc_configs()])
def test_leakproc_config_loads(block: Block, config: dict[str, Any]) -> None:
    from otel_leakproc.config import settings_from_mapping, substitute_env

    text = yaml.safe_dump(config)
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
    settings_from_mapping(yaml.safe_load(substitute_env(text, dict.fromkeys(names, "x"))))


def test_leakproc_configs_are_found() -> None:
    assert len(leakproc_configs()) >= 3


# ---- Alloy ---------------------------------------------------------------------------------------------

# What the components used in the docs export (Alloy reference, v1.20), and the arguments they require.
ALLOY_EXPORTS = {
    "discovery.kubernetes": {"targets"},
    "discovery.relabel": {"output", "rules"},
    "pyroscope.scrape": set(),
    "pyroscope.write": {"receiver"},
}
ALLOY_REQUIRED = {
    "discovery.kubernetes": {"role"},
    "discovery.relabel": {"targets"},
    "pyroscope.scrape": {"targets", "forward_to"},
    "pyroscope.write": set(),
}
ALLOY_BLOCK = re.compile(r'^(?P<type>[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)\s+"(?P<label>[^"]+)"\s*\{', re.M)
ALLOY_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
ALLOY_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
ALLOY_DOTTED = re.compile(r"(?<![\w.])([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*){2,})(?![\w.])(?!\s*[({])")


def alloy_code(text: str) -> str:
    """The snippet without comments and string contents (labels in strings are not references)."""
    return ALLOY_COMMENT.sub("", ALLOY_STRING.sub('""', text))


def top_level_blocks(text: str) -> list[tuple[str, str, str]]:
    """(type, label, body) of every top-level component block."""
    code = ALLOY_COMMENT.sub("", text)
    found = []
    for match in ALLOY_BLOCK.finditer(code):
        depth, i = 1, match.end()
        while depth and i < len(code):
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        found.append((match.group("type"), match.group("label"), code[match.end() : i - 1]))
    return found


def alloy_problems(text: str) -> list[str]:
    problems = []
    code = alloy_code(text)
    if code.count("{") != code.count("}"):
        problems.append("unbalanced braces")
    components = {}
    for kind, label, body in top_level_blocks(text):
        name = f"{kind}.{label}"
        if name in components:
            problems.append(f"{name} is defined twice")
        components[name] = kind
        if kind not in ALLOY_REQUIRED:
            problems.append(f"{kind}: not in ALLOY_EXPORTS/ALLOY_REQUIRED (check its reference and add it)")
            continue
        arguments = set(re.findall(r"^\s*([a-z_][a-z0-9_]*)\s*=", alloy_code(body), re.M))
        missing = ALLOY_REQUIRED[kind] - arguments
        if missing:
            problems.append(f"{name} lacks {sorted(missing)}")
    for reference in ALLOY_DOTTED.findall(code):
        target = next((c for c in components if reference.startswith(c + ".")), None)
        if target is None:
            problems.append(f"{reference} refers to a component not defined in this snippet")
            continue
        field = reference[len(target) + 1 :]
        if field not in ALLOY_EXPORTS.get(components[target], set()):
            problems.append(f"{reference}: {components[target]} exports no {field!r}")
    return problems


@pytest.mark.parametrize("block", blocks("alloy"), ids=ids(blocks("alloy")))
def test_alloy_references_are_defined_in_the_snippet(block: Block) -> None:
    assert alloy_problems(block.text) == [], block.where


def test_the_alloy_check_catches_an_undefined_component() -> None:
    """The bug deploy.md once had: `discovery.relabel.go_pods` used, never defined."""
    snippet = textwrap.dedent(
        """
    pyroscope.scrape "go" {
      targets    = discovery.relabel.go_pods.output   // "discovery.kubernetes.x.targets" in a comment is no reference
      forward_to = [pyroscope.write.leakproc.receiver]
      profiling_config {
        profile.memory { enabled = true }
      }
    }
    pyroscope.write "leakproc" {
      endpoint { url = "http://otel-leakproc:4040" }
    }
    discovery.relabel "typo" {
      targets = discovery.kubernetes.pods.output
    }
    """
    )
    assert alloy_problems(snippet) == [
        "discovery.relabel.go_pods.output refers to a component not defined in this snippet",
        "discovery.kubernetes.pods.output refers to a component not defined in this snippet",
    ]
    defined = snippet + 'discovery.kubernetes "pods" {\n  role = "pod"\n}\n'
    assert alloy_problems(defined.replace("go_pods", "typo")) == [
        "discovery.kubernetes.pods.output: discovery.kubernetes exports no 'output'",
    ]


# ---- Python --------------------------------------------------------------------------------------------


def unbound_modules(tree: ast.Module) -> set[str]:
    """Names used as `name.attr` that the snippet never imports or assigns (e.g. `os.environ` without
    `import os`), builtins aside."""
    bound = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    used = {
        node.value.id for node in ast.walk(tree) if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }
    return used - bound


@pytest.mark.parametrize("block", blocks("python"), ids=ids(blocks("python")))
def test_python_compiles_and_imports_what_it_uses(block: Block) -> None:
    compile(block.text, block.where, "exec")
    assert unbound_modules(ast.parse(block.text)) == set(), f"{block.where}: missing import"


def test_the_python_check_catches_a_missing_import() -> None:
    snippet = 'import pyroscope\n\npyroscope.configure(tags={"instance": os.environ["POD_NAME"]})\n'
    assert unbound_modules(ast.parse(snippet)) == {"os"}


# ---- Go ------------------------------------------------------------------------------------------------

GO_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|//[^\n]*|/\*.*?\*/', re.S)
GO_IMPORT = re.compile(r'^\s*(?:(?P<alias>[A-Za-z_]\w*)\s+)?"(?P<path>[^"]+)"\s*$', re.M)


def gofmt() -> str:
    root = subprocess.run(
        [toolchain.tool("go"), "env", "GOROOT"], capture_output=True, text=True, check=True
    ).stdout.strip()
    path = Path(root) / "bin" / "gofmt"
    assert path.exists(), path
    return str(path)


def go_source(snippet: str) -> str:
    """A compilable-shape Go file: snippets without a package clause get one; statements get a function."""
    if re.search(r"^package\s", snippet, re.M):
        return snippet
    if re.search(r"^(import|func|type|var|const)\b", snippet, re.M):
        return "package snippet\n\n" + snippet
    return "package snippet\n\nfunc snippet() {\n" + snippet + "\n}\n"


def go_import_problems(snippet: str) -> list[str]:
    """A file snippet (one with imports) must import every package it selects from; `pyroscope-go` is
    package `pyroscope`."""
    imports = re.search(r"^import\s*\((.*?)^\)", snippet, re.M | re.S)
    if imports is None:
        return []
    names = set()
    for match in GO_IMPORT.finditer(imports.group(1)):
        last = match.group("path").rsplit("/", 1)[-1]
        names.add(match.group("alias") or last.removesuffix("-go").removeprefix("go-"))
    code = GO_STRING_OR_COMMENT.sub('""', snippet[imports.end() :])
    locals_ = set(re.findall(r"\b([a-z]\w*)\s*:?=", code)) | set(re.findall(r"func\s*\(\s*(\w+)", code))
    used = set(re.findall(r"(?<![\w.])([a-z]\w*)\.[A-Z]", code)) - locals_
    return [f"uses package {name} without importing it" for name in sorted(used - names)]


@pytest.mark.parametrize("block", blocks("go"), ids=ids(blocks("go")))
def test_go_parses_and_imports_what_it_uses(block: Block) -> None:
    done = subprocess.run([gofmt(), "-e"], input=go_source(block.text), capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{block.where}: {done.stderr}"
    assert go_import_problems(block.text) == [], block.where


def test_the_go_check_catches_a_syntax_error_and_a_missing_import() -> None:
    broken = 'pyroscope.Start(pyroscope.Config{\n    ApplicationName: "checkout"\n})\n'  # no trailing comma
    done = subprocess.run([gofmt(), "-e"], input=go_source(broken), capture_output=True, text=True, check=False)
    assert done.returncode != 0
    snippet = (
        'import (\n\t"github.com/grafana/pyroscope-go"\n)\n\nfunc f() {\n\t_ = os.Getenv("X")\n\tpyroscope.Start()\n}\n'
    )
    assert go_import_problems(snippet) == ["uses package os without importing it"]
