"""deploy/: the Dockerfile, docker-compose.yml and the Kubernetes manifests, checked by parsing
them (no Docker, no Kubernetes, no Kafka) against the settings the worker actually reads.

The set of variables the worker reads is taken from the source of orchestrator/config.py, so a variable renamed or dropped there fails here until the
deployment files follow.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from orchestrator import config as config_module
from orchestrator.config import Settings
from orchestrator.core.journeyfiles import load_journey_dir
from orchestrator.core.policies import load_policies
from orchestrator.localkafka.install import kafka_version
from orchestrator.testing.net import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
README = ROOT / "README.md"
DOCS = ROOT / "docs" / "deployment.md"

# Used by the deployment files before orchestrator/config.py reads them (name -> what for).
PENDING_VARIABLES: dict[str, str] = {}
WORKER_IMAGE_DOCKERFILE = "deploy/Dockerfile"
SASL_SECRET_FILE = "secret-sasl.example.yaml"
ORCH_NAME = re.compile(r"\bORCH_[A-Z0-9_]*[A-Z0-9]\b")


# --------------------------------------------------------------------------- helpers


def worker_variables() -> set[str]:
    """Every ``"ORCH_..."`` string literal in orchestrator/config.py: what the worker reads."""
    return set(re.findall(r'"(ORCH_[A-Z0-9_]+)"', inspect.getsource(config_module)))


def adapter_variables() -> set[str]:
    """The ``"ORCH_ADAPTER_..."`` literals of the webhook adapter's options (its store's folder)."""
    from orchestrator.adapters import options
    return set(re.findall(r'"(ORCH_[A-Z0-9_]+)"', inspect.getsource(options)))


def known_variables() -> set[str]:
    return worker_variables() | adapter_variables() | set(PENDING_VARIABLES)


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("*.yml"))


def k8s_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in k8s_files() for doc in load_yaml_docs(path)
            if doc.get("kind") != "Kustomization"]


def one(kind: str, api_version: str | None = None) -> dict[str, Any]:
    found = [doc for _, doc in k8s_objects() if doc.get("kind") == kind]
    assert len(found) == 1, f"expected exactly one {kind} in {K8S}, found {len(found)}"
    if api_version is not None:
        assert found[0]["apiVersion"] == api_version, f"{kind} must be {api_version}"
    return found[0]


def statefulset() -> dict[str, Any]:
    return one("StatefulSet", "apps/v1")


def worker_container() -> dict[str, Any]:
    containers = statefulset()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one worker container per pod"
    return containers[0]


def pod_labels() -> dict[str, str]:
    return statefulset()["spec"]["template"]["metadata"]["labels"]


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> the env entry (``value`` or ``valueFrom``)."""
    entries = container.get("env", [])
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), f"duplicate env entries: {names}"
    return {e["name"]: e for e in entries}


def k8s_settings_env() -> dict[str, str]:
    """The container's env as the worker sees it (Secret references become placeholders)."""
    env = {}
    for name, entry in container_env(worker_container()).items():
        env[name] = entry["value"] if "value" in entry else f"<{name} from {entry['valueFrom']}>"
    return env


def mounts_by_path(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {PurePosixPath(m["mountPath"]).as_posix(): m for m in container.get("volumeMounts", [])}


def pod_volumes() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in statefulset()["spec"]["template"]["spec"].get("volumes", [])}


def resolve_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"probe port {port!r} is not a named container port ({sorted(named)})"
    return named[port]


def compose() -> dict[str, Any]:
    docs = load_yaml_docs(COMPOSE_FILE)
    assert len(docs) == 1
    return docs[0]


def compose_image_services() -> dict[str, dict[str, Any]]:
    """Services built from the image's Dockerfile."""
    out = {}
    for name, service in compose()["services"].items():
        build = service.get("build")
        if isinstance(build, dict) and build.get("dockerfile") == WORKER_IMAGE_DOCKERFILE:
            out[name] = service
    return out


def image_command(service: dict[str, Any]) -> list[str]:
    """The `orchestrator` arguments a service of the image runs (the image's CMD if it sets none)."""
    command = service.get("command")
    if command is None:
        (cmd,) = [json.loads(a) for ins, a in runtime_stage() if ins == "CMD"]
        return cmd
    return shlex.split(command) if isinstance(command, str) else list(command)


def compose_workers() -> dict[str, dict[str, Any]]:
    """Services of the image that run `orchestrator worker`."""
    return {name: s for name, s in compose_image_services().items() if image_command(s)[:1] == ["worker"]}


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def compose_volumes(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each short-syntax volume of a service."""
    out = []
    for item in service.get("volumes", []):
        assert isinstance(item, str), f"use the short volume syntax: {item!r}"
        source, target = item.split(":")[:2]
        out.append((source, PurePosixPath(target).as_posix()))
    return out


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    out = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "ENV":
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage (the image that runs)."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM")
    return instructions[last_from:]


def prometheus_config() -> dict[str, Any]:
    source = next(src for src, target in compose_volumes(compose()["services"]["prometheus"])
                  if target == "/etc/prometheus/prometheus.yml")
    return load_yaml_docs((DEPLOY / source).resolve())[0]


# --------------------------------------------------------------------------- every file


def test_worker_variables_are_found_in_config_source() -> None:
    found = worker_variables()
    assert {"ORCH_BOOTSTRAP", "ORCH_DATA_DIR", "ORCH_WEB_HOST", "ORCH_WEB_PORT",
            "ORCH_KAFKA_SASL_USERNAME", "ORCH_KAFKA_SASL_PASSWORD"} <= found


def test_every_deploy_yaml_parses() -> None:
    files = [COMPOSE_FILE, *k8s_files(), *sorted((DEPLOY / "grafana" / "provisioning").rglob("*.yml"))]
    assert len(k8s_files()) >= 6
    for path in files:
        assert load_yaml_docs(path), f"{path} holds no YAML document"


def test_k8s_objects_are_namespace_agnostic_and_well_formed() -> None:
    for path, doc in k8s_objects():
        where = f"{path.name}: {doc.get('kind')}"
        assert doc.get("apiVersion") and doc.get("kind"), where
        assert doc["metadata"].get("name"), where
        assert "namespace" not in doc["metadata"], f"{where} sets a namespace; apply with -n instead"


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    (kustomization,) = load_yaml_docs(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert "namespace" not in kustomization
    expected = {p.name for p in k8s_files()} - {"kustomization.yaml", SASL_SECRET_FILE}
    assert set(kustomization["resources"]) == expected
    image_names = {i["name"] for i in kustomization.get("images", [])}
    assert worker_container()["image"].split(":")[0] in image_names


@pytest.mark.parametrize("path", [COMPOSE_FILE, DOCKERFILE, DOCS, *k8s_files()], ids=lambda p: p.name)
def test_every_orch_variable_mentioned_is_read_by_the_worker(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    unknown = set(ORCH_NAME.findall(text)) - known_variables()
    assert not unknown, (f"{path.relative_to(ROOT)} uses {sorted(unknown)}, which "
                         "neither orchestrator/config.py nor the adapter's options read")


def test_every_orch_variable_set_is_read_by_the_worker() -> None:
    known = known_variables()
    sources = {"Dockerfile": set(dockerfile_env())}
    sources["statefulset"] = set(container_env(worker_container()))
    for name, service in compose()["services"].items():
        sources[f"compose {name}"] = set(compose_env(service))
    for where, names in sources.items():
        unknown = {n for n in names if n.startswith("ORCH_")} - known
        assert not unknown, f"{where} sets {sorted(unknown)}, which neither the worker nor the adapter reads"


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_a_non_root_worker_image() -> None:
    instructions = dockerfile_instructions()
    froms = [args for ins, args in instructions if ins == "FROM"]
    args = dict(a.split("=", 1) for ins, a in instructions if ins == "ARG" and "=" in a)
    images = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), f.split()[0]) for f in froms]
    assert images and all(image == "python:3.11-slim" for image in images), images

    stage = runtime_stage()
    users = [a for ins, a in stage if ins == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    # Entrypoint `orchestrator`, default command the worker: `docker run IMAGE adapter webhook ...`
    # runs any other command of the same image.
    entrypoint = [json.loads(a) for ins, a in stage if ins == "ENTRYPOINT"]
    assert entrypoint and entrypoint[-1] == ["orchestrator"]
    cmd = [json.loads(a) for ins, a in stage if ins == "CMD"]
    assert cmd and cmd[-1][:1] == ["worker"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "orchestrator" in scripts

    env = dockerfile_env()
    assert env["ORCH_WEB_HOST"] == "0.0.0.0"      # reachable from outside the container
    Settings.from_env({k: v for k, v in env.items() if k.startswith("ORCH_")})
    exposed = [a for ins, a in stage if ins == "EXPOSE"]
    assert exposed == [env["ORCH_WEB_PORT"]]
    # The data folder exists in the image and belongs to the worker's user (so a fresh named
    # volume mounted there is writable).
    owned = " ".join(a for ins, a in stage if ins == "RUN")
    assert env["ORCH_DATA_DIR"].startswith("/var/lib/orchestrator/")
    assert re.search(rf"chown -R {user}:\S+ /var/lib/orchestrator\b", owned)


def test_dockerfile_copies_only_existing_sources() -> None:
    for ins, args in dockerfile_instructions():
        if ins == "COPY" and "--from=" not in args:
            *sources, _ = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def dockerignore_excludes(path: str) -> bool:
    """Whether deploy/Dockerfile.dockerignore keeps ``path`` out of the build context.

    Docker's rules as far as this file uses them: patterns in order, the last match wins, ``!``
    re-includes, a pattern matches a path or any folder above it, ``**/`` matches any depth.
    """
    excluded = False
    parts = PurePosixPath(path).parts
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(p, pattern[3:]) for p in parts)
        else:
            hit = any(fnmatch.fnmatchcase(p, pattern) for p in prefixes)
        if hit:
            excluded = not negate
    return excluded


def copied_sources() -> list[str]:
    """The build-context paths the Dockerfile's COPY lines take (not those from another stage)."""
    out = []
    for ins, args in dockerfile_instructions():
        if ins == "COPY" and "--from=" not in args:
            *sources, _ = shlex.split(args)
            out.extend(source.rstrip("/") for source in sources)
    return out


def test_dockerignore_sends_exactly_what_the_dockerfile_copies() -> None:
    for source in copied_sources():
        assert not dockerignore_excludes(source), f"COPY {source}: excluded by {DOCKERIGNORE.name}"
        assert not dockerignore_excludes(f"{source}/core/engine.py" if source == "orchestrator" else source)
    for left_out in (".venv", ".orch", ".git", "benchmarks", "tests", "deploy", "orchestrator/__pycache__",
                     "orchestrator/core/__pycache__/engine.cpython-311.pyc"):
        assert dockerignore_excludes(left_out), f"{left_out} would be sent to the builder"


def test_web_host_default_stays_loopback_outside_containers() -> None:
    assert Settings.from_env({}).web_host == "127.0.0.1"


# --------------------------------------------------------------------------- docker-compose


def test_compose_kafka_is_kraft_on_the_pinned_version() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{kafka_version()}"   # same as orchestrator/localkafka/pom.xml
    env = compose_env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "zookeeper" not in json.dumps(compose()).lower()
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "PLAINTEXT://kafka:9092" in advertised
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= 2 * 1024 * 1024   # the worker's producer limit


def test_compose_runs_two_workers_with_their_own_state() -> None:
    workers = compose_workers()
    assert len(workers) >= 2
    declared = set(compose().get("volumes") or {})
    hostnames, data_volumes = [], []
    image_env = dockerfile_env()
    for name, service in workers.items():
        env = {**image_env, **compose_env(service)}
        settings = Settings.from_env(env)
        assert settings.bootstrap == "kafka:9092", name
        assert settings.web_host == "0.0.0.0", name
        hostnames.append(service.get("hostname"))
        volumes = dict((target, source) for source, target in compose_volumes(service))
        source = volumes.get(settings.data_dir)
        assert source is not None, f"{name}: nothing mounted at ORCH_DATA_DIR={settings.data_dir}"
        assert not is_bind(source) and source in declared, f"{name}: {source} is not a named volume"
        data_volumes.append(source)
        assert service.get("stop_grace_period"), f"{name}: give the worker time to stop cleanly"
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert None not in hostnames and len(set(hostnames)) == len(hostnames), hostnames
    assert len(set(data_volumes)) == len(data_volumes), f"workers share a RocksDB volume: {data_volumes}"


def test_compose_workers_mount_the_repository_journeys_and_policies() -> None:
    for name, service in compose_workers().items():
        settings = Settings.from_env({**dockerfile_env(), **compose_env(service)})
        binds = {target: (DEPLOY / source).resolve() for source, target in compose_volumes(service)
                 if is_bind(source)}
        assert binds.get(PurePosixPath(settings.journeys).as_posix()) == ROOT / "journeys", name
        assert binds.get(PurePosixPath(settings.policies).as_posix()) == ROOT / "policies.yaml", name


def test_compose_build_and_bind_mounts_exist() -> None:
    """Everything compose mounts from the repository is there (Prometheus and Grafana included)."""
    for name, service in compose()["services"].items():
        build = service.get("build")
        if isinstance(build, dict):
            context = (DEPLOY / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
        for source, _ in compose_volumes(service):
            if is_bind(source):
                assert (DEPLOY / source).resolve().exists(), f"{name}: {source} does not exist"
    mounted = {target for s in compose()["services"].values() for _, target in compose_volumes(s)}
    for needed in ("/etc/prometheus/prometheus.yml", "/etc/prometheus/alerts.yml"):
        assert needed in mounted


def test_compose_runs_the_webhook_adapter_against_the_demo_receiver() -> None:
    services = compose()["services"]
    adapters = {n: s for n, s in compose_image_services().items() if image_command(s)[:2] == ["adapter", "webhook"]}
    assert adapters, "compose runs no `orchestrator adapter webhook`"
    declared = set(compose().get("volumes") or {})
    worker_volumes = {src for w in compose_workers().values() for src, _ in compose_volumes(w)}
    for name, service in adapters.items():
        argv = image_command(service)
        opts = dict(zip(argv[2::2], argv[3::2]))
        assert set(opts) == {"--channel", "--url"} and len(argv) == 6, argv
        assert opts["--channel"] in load_policies(ROOT / "policies.yaml").channels
        url = urlsplit(opts["--url"])
        receiver = services[url.hostname]
        assert url.scheme == "http" and url.hostname in service["depends_on"], name
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
        environ = {**dockerfile_env(), **compose_env(service)}
        env = Settings.from_env(environ)
        assert env.bootstrap == "kafka:9092"
        # The adapter's store is where the adapter itself puts it (--data-dir, ORCH_ADAPTER_DATA_DIR,
        # else .orch/adapter/<group> under the image's working directory), not ORCH_DATA_DIR.
        from orchestrator.adapters.options import webhook_options
        from orchestrator.cli import build_parser
        data_dir = webhook_options(build_parser().parse_args(argv), topic_prefix=env.topic_prefix,
                                   env=environ).data_dir
        volumes = {target: source for source, target in compose_volumes(service)}
        store = volumes.get(str(data_dir))
        assert store in declared and store not in worker_volumes, \
            f"{name}: its store ({data_dir}) is not its own named volume"
        # The receiver: the script compose mounts, listening on the port the adapter posts to.
        (script,) = [(DEPLOY / src).resolve() for src, target in compose_volumes(receiver)
                     if target == receiver["command"][1]]
        assert script.is_file() and receiver["command"][0] == "python"
        assert receiver["command"][2:] == ["--port", str(url.port)]


def published_ports(service: dict[str, Any]) -> list[int]:
    """Host ports of a service; each must be bound to 127.0.0.1 only."""
    out = []
    for item in service.get("ports", []):
        host_ip, host_port, _ = str(item).split(":")
        assert host_ip == "127.0.0.1", f"{item}: publish on 127.0.0.1 only"
        out.append(int(host_port))
    return out


def documented_compose_services() -> dict[str, list[int]]:
    """docs/deployment.md's table of the compose stack: service names -> `localhost:PORT`s."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## Run the compose stack"):]
    section = section[:section.index("\n## ", 4)]
    out: dict[str, list[int]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        ports = [int(p) for p in re.findall(r"`localhost:(\d+)`", cells[2])]
        for name in re.findall(r"`([a-z0-9-]+)`", cells[0]):
            out[name] = ports if len(re.findall(r"`([a-z0-9-]+)`", cells[0])) == 1 else []
    return out


def test_compose_services_and_ports_are_the_documented_ones() -> None:
    services = compose()["services"]
    documented = documented_compose_services()
    assert set(documented) == set(services), "docs/deployment.md's compose table and the compose file differ"
    published = {port: name for name, s in services.items() for port in published_ports(s)}
    table = DOCS.read_text(encoding="utf-8")
    for name, service in services.items():
        for port in published_ports(service):
            assert f"`localhost:{port}`" in table, f"{name} publishes {port}; docs/deployment.md does not say"
    for name, ports in documented.items():
        for port in ports:
            assert published.get(port) == name, f"docs/deployment.md: {name} at localhost:{port}"
    # The README's compose lines name the same stack.
    # The README's compose item names the same services and ports.
    lines = README.read_text(encoding="utf-8").splitlines()
    first = next(i for i, l in enumerate(lines) if "docker compose -f deploy/docker-compose.yml up" in l)
    item = [lines[first]]
    for line in lines[first + 1:]:
        if not line.strip() or line.lstrip().startswith("- "):
            break
        item.append(line)
    text = " ".join(item)
    assert set(re.findall(r"`([a-z0-9-]+)`", text)) == set(services), text
    assert sorted(map(int, re.findall(r"`localhost:(\d+)`", text))) == sorted(published), text


def test_prometheus_scrapes_every_compose_worker() -> None:
    config = prometheus_config()
    jobs = {job["job_name"]: job for job in config.get("scrape_configs", [])}
    assert "orchestrator" in jobs, "deploy/prometheus/prometheus.yml needs the `orchestrator` job"
    targets = {t for group in jobs["orchestrator"].get("static_configs", []) for t in group.get("targets", [])}
    for name, service in compose_workers().items():
        settings = Settings.from_env({**dockerfile_env(), **compose_env(service)})
        target = f"{service['hostname']}:{settings.web_port}"
        assert target in targets, f"prometheus.yml does not scrape {name} at {target} (has {sorted(targets)})"
    assert any(target.endswith("alerts.yml") for target in config.get("rule_files", []))


def test_grafana_provisioning_matches_compose() -> None:
    services = compose()["services"]
    (datasources,) = load_yaml_docs(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
    (prom,) = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert prom["url"] == "http://prometheus:9090" and "prometheus" in services
    (providers,) = load_yaml_docs(DEPLOY / "grafana/provisioning/dashboards/orchestrator.yml")
    (provider,) = providers["providers"]
    dashboards = [(s, t) for s, t in compose_volumes(services["grafana"]) if s.endswith(".json")]
    assert dashboards, "compose mounts no dashboard into Grafana"
    for source, target in dashboards:
        assert str(PurePosixPath(target).parent) == provider["options"]["path"]
        json.loads((DEPLOY / source).read_text(encoding="utf-8"))   # exists and is JSON


# --------------------------------------------------------------------------- Kubernetes


def test_statefulset_shape() -> None:
    spec = statefulset()["spec"]
    assert statefulset()["metadata"]["name"] == "orchestrator-worker"
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    assert spec["selector"]["matchLabels"].items() <= pod_labels().items()
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    security = spec["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    assert worker_container()["args"][:1] == ["worker"], "the image's entrypoint is `orchestrator`"
    resources = worker_container()["resources"]
    assert str(resources["requests"]["cpu"]) == "2" and str(resources["limits"]["cpu"]) == "2"
    assert resources["limits"]["memory"]


def test_statefulset_env_is_valid_for_the_worker() -> None:
    settings = Settings.from_env(k8s_settings_env())   # raises ConfigError on a bad value
    assert settings.web_host == "0.0.0.0"
    assert settings.partitions >= statefulset()["spec"]["replicas"]
    standby = int(k8s_settings_env()["ORCH_STANDBY_REPLICAS"])
    assert 1 <= standby < statefulset()["spec"]["replicas"]


def test_statefulset_mounts_a_claim_at_exactly_the_data_dir() -> None:
    container = worker_container()
    data_dir = PurePosixPath(Settings.from_env(k8s_settings_env()).data_dir).as_posix()
    mount = mounts_by_path(container).get(data_dir)
    assert mount is not None, f"no volume mounted at ORCH_DATA_DIR={data_dir}"
    assert not mount.get("subPath") and not mount.get("readOnly")
    claims = {t["metadata"]["name"]: t for t in statefulset()["spec"]["volumeClaimTemplates"]}
    assert mount["name"] in claims, "ORCH_DATA_DIR must be a volumeClaimTemplate (one volume per worker)"
    assert mount["name"] not in pod_volumes()
    assert claims[mount["name"]]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_statefulset_mounts_journeys_and_policies_from_the_configmaps() -> None:
    container, volumes = worker_container(), pod_volumes()
    settings = Settings.from_env(k8s_settings_env())
    mounts = mounts_by_path(container)
    journeys = mounts[PurePosixPath(settings.journeys).as_posix()]
    assert volumes[journeys["name"]]["configMap"]["name"] == "orchestrator-journeys"
    policies_path = PurePosixPath(settings.policies)
    policies = mounts[policies_path.parent.as_posix()]
    configmaps = {doc["metadata"]["name"]: doc for _, doc in k8s_objects() if doc["kind"] == "ConfigMap"}
    name = volumes[policies["name"]]["configMap"]["name"]
    assert policies_path.name in configmaps[name]["data"], "ORCH_POLICIES names a missing key"


def test_configmap_journeys_and_policies_are_valid(tmp_path: Path) -> None:
    configmaps = {doc["metadata"]["name"]: doc for _, doc in k8s_objects() if doc["kind"] == "ConfigMap"}
    policies_file = tmp_path / "policies.yaml"
    policies_file.write_text(configmaps["orchestrator-policies"]["data"]["policies.yaml"])
    policies = load_policies(policies_file)
    journeys_dir = tmp_path / "journeys"
    journeys_dir.mkdir()
    for key, text in configmaps["orchestrator-journeys"]["data"].items():
        assert key.endswith((".yaml", ".yml")), f"{key}: the worker only reads *.yaml / *.yml"
        (journeys_dir / key).write_text(text)
    journeys, problems = load_journey_dir(journeys_dir, channels=policies.channels)
    assert not problems
    assert len(journeys) == len(configmaps["orchestrator-journeys"]["data"]) > 0


def test_configmaps_are_copies_of_the_repository_examples() -> None:
    # docs/deployment.md and the file's header say so: a cluster starts on the journeys the README
    # describes, not on an older version of them.
    configmaps = {doc["metadata"]["name"]: doc for _, doc in k8s_objects() if doc["kind"] == "ConfigMap"}
    journeys = configmaps["orchestrator-journeys"]["data"]
    assert set(journeys) == {p.name for p in (ROOT / "journeys").glob("*.yaml")}
    stale = sorted(key for key, text in journeys.items() if text != (ROOT / "journeys" / key).read_text())
    assert not stale, f"deploy/k8s/configmap.yaml: {stale} differ from journeys/"
    assert configmaps["orchestrator-policies"]["data"]["policies.yaml"] == (ROOT / "policies.yaml").read_text()


def test_metrics_port_and_probes_use_the_web_port() -> None:
    container = worker_container()
    settings = Settings.from_env(k8s_settings_env())
    ports = {p["name"]: p for p in container["ports"]}
    assert ports["metrics"]["containerPort"] == settings.web_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe == "startupProbe" and probe not in container:
            continue
        get = container[probe]["httpGet"]
        assert get["path"] == "/health", probe
        assert resolve_port(container, get["port"]) == settings.web_port, probe


def test_headless_service_selects_the_workers() -> None:
    service = one("Service", "v1")
    assert service["spec"]["clusterIP"] == "None"
    assert statefulset()["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= pod_labels().items()
    (port,) = service["spec"]["ports"]
    assert resolve_port(worker_container(), port["targetPort"]) == port["port"]


def test_podmonitor_scrapes_the_metrics_port_of_the_workers() -> None:
    monitor = one("PodMonitor", "monitoring.coreos.com/v1")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels().items()
    port_names = {p["name"] for p in worker_container()["ports"]}
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    assert endpoints and all(e["port"] == "metrics" and e["port"] in port_names for e in endpoints)
    assert all(e.get("path", "/metrics") == "/metrics" for e in endpoints)
    # job="orchestrator", what the alert rules and the dashboard select
    assert pod_labels()[monitor["spec"]["jobLabel"]] == "orchestrator"


def test_pod_disruption_budget_allows_one_worker_down() -> None:
    pdb = one("PodDisruptionBudget", "policy/v1")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels().items()


def test_sasl_credentials_come_from_the_secret_template() -> None:
    env = container_env(worker_container())
    (secret,) = load_yaml_docs(K8S / SASL_SECRET_FILE)
    assert secret["kind"] == "Secret"
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for name in ("ORCH_KAFKA_SASL_USERNAME", "ORCH_KAFKA_SASL_PASSWORD"):
        assert "value" not in env[name], f"{name} must not be a literal"
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in keys, name
    assert env["ORCH_KAFKA_SECURITY_PROTOCOL"]["value"].startswith("SASL")


# --------------------------------------------------------------------------- the demo receiver


def test_demo_receiver_counts_deliveries_and_duplicates(tmp_path: Path) -> None:
    """deploy/webhook-receiver/receiver.py, run as compose runs it (on 127.0.0.1 here)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(DEPLOY / "webhook-receiver" / "receiver.py"), "--host",
                             "127.0.0.1", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def call(method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(base + path, data=body, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                call("GET", "/")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.1)
        action = {"action_id": "a-1", "customer_id": "c-secret", "channel": "email", "template": "welcome-1"}
        assert call("POST", "/email", json.dumps(action).encode()) == (200, {"ok": True})
        assert call("POST", "/email", json.dumps(action).encode())[0] == 200
        assert call("POST", "/email", json.dumps({**action, "action_id": "a-2"}).encode())[0] == 200
        assert call("POST", "/email", b"not json")[0] == 400
        assert call("GET", "/") == (200, {"deliveries": 3, "distinct_action_ids": 2, "duplicates": 1})
    finally:
        proc.send_signal(signal.SIGTERM)          # compose stops it with SIGTERM: it must exit
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert b"delivered email welcome-1 a-1 to /email" in out and b"c-secret" not in out
