"""Static checks of docker-compose.yml: Compose schema, stack semantics, docker-compose 1.29.

No Docker engine and no network: the file is parsed, never started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = REPO_ROOT.parent / "shared" / "schemas" / "compose-spec.json"

COMMON_ANCHOR = "x-airflow-common"
INIT_SERVICES = ("airflow-init", "minio-init")
LONG_RUNNING_AIRFLOW = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
AIRFLOW_SERVICES = ("airflow-init", *LONG_RUNNING_AIRFLOW)
EXPECTED_IMAGES = {"postgres": "postgres:16", "minio": "minio/minio", "minio-init": "minio/mc"}

EXPECTED_ENV = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://airflow-apiserver:8080/execution/",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
    "EVIDENCE_STORE": "s3://soc2-evidence/evidence",
    "EVIDENCE_CONFIG": "/opt/airflow/include/config/evidence.yaml",
    "EVIDENCE_STAGING": "/opt/airflow/staging",
    "AWS_ENDPOINT_URL_S3": "http://minio:9000",
}
REQUIRED_ENV_KEYS = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
SOURCE_MOUNTS = {f"/opt/airflow/{name}": f"./{name}" for name in ("dags", "plugins", "include")}

SECRET_KEY_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN|FERNET", re.IGNORECASE)
PLACEHOLDER = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?-[^}]*)?\}")
URL_USERINFO = re.compile(r"://([^/]*)@")
SECRET_LOOKING_TEXT = re.compile(r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----")


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict:
    """The file as Compose sees it: anchors, aliases and `<<` merge keys resolved."""
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def _environment(service: dict) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or a KEY=VALUE list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _depends_on(service: dict) -> dict[str, str]:
    """Dependency name -> condition; the short list form means `service_started`."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> source for short-syntax volumes (`source:target[:mode]`)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = source
    return mounts


def _script(service: dict) -> str:
    """Entrypoint plus command as one text, for grepping what a one-shot service runs."""
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        parts.extend([value] if isinstance(value, str) else value)
    return "\n".join(parts)


def _url_password_is_literal(value: str) -> bool:
    """True for `scheme://user:password@host` whose password is not a placeholder.

    Placeholders are removed before splitting, since `${VAR:-default}` holds a colon itself.
    """
    userinfo = URL_USERINFO.search(value)
    if userinfo is None:
        return False
    _, _, password = PLACEHOLDER.sub("", userinfo.group(1)).partition(":")
    return bool(password)


def _validator_class(schema: dict) -> type:
    """The validator for the schema's declared `$schema`, tolerating http/https and a missing `#`.

    The Compose schema declares ``https://json-schema.org/draft-07/schema``, which
    ``validator_for`` does not recognise as Draft 7's ``http://…/schema#``.
    """
    found = jsonschema.validators.validator_for(schema, default=None)
    if found is not None:
        return found

    def normalise(uri: str) -> str:
        return re.sub(r"^https?://", "", uri).rstrip("#/")

    declared = normalise(schema.get("$schema", ""))
    for cls in (
        jsonschema.Draft4Validator,
        jsonschema.Draft6Validator,
        jsonschema.Draft7Validator,
        jsonschema.Draft201909Validator,
        jsonschema.Draft202012Validator,
    ):
        meta_id = cls.META_SCHEMA.get("$id") or cls.META_SCHEMA.get("id", "")
        if normalise(meta_id) == declared:
            return cls
    return jsonschema.Draft7Validator


def test_compose_file_matches_compose_spec_schema(compose):
    if not COMPOSE_SCHEMA.is_file():
        pytest.skip(f"{COMPOSE_SCHEMA} is missing: the Compose schema check runs in CI, which has ../shared")
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator = _validator_class(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda error: list(map(str, error.absolute_path)))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}" for error in errors
    )


def test_stack_has_the_expected_services_and_images(services):
    expected = {"postgres", "redis", "minio", *INIT_SERVICES, *AIRFLOW_SERVICES}
    assert expected <= services.keys(), f"missing services: {sorted(expected - services.keys())}"
    for name, image in EXPECTED_IMAGES.items():
        assert services[name]["image"].split(":")[0] == image.split(":")[0], f"{name}: image {services[name]['image']}"
    assert services["postgres"]["image"] == EXPECTED_IMAGES["postgres"]


def test_every_long_running_service_has_a_healthcheck(services):
    missing = [
        name
        for name, service in services.items()
        if name not in INIT_SERVICES
        and (not service.get("healthcheck", {}).get("test") or service["healthcheck"].get("disable"))
    ]
    assert not missing, f"long-running services without a healthcheck: {missing}"


def test_init_services_are_one_shot(services):
    for name in INIT_SERVICES:
        assert str(services[name].get("restart", "no")) == "no", f"{name} must not restart: it runs once"
        assert "healthcheck" not in services[name], f"{name} is one-shot: depend on it completing instead"


def test_every_airflow_service_merges_the_shared_anchors(compose_text):
    """Checked on the YAML node graph: an alias is the very node its anchor names."""
    root = yaml.compose(compose_text)
    top = {key.value: value for key, value in root.value}
    common = top[COMMON_ANCHOR]
    common_env = {key.value: value for key, value in common.value}["environment"]
    service_nodes = {key.value: value for key, value in top["services"].value}

    def merges(node: yaml.MappingNode, anchor: yaml.Node) -> bool:
        return any(
            key.value == "<<" and (value is anchor or (isinstance(value, yaml.SequenceNode) and anchor in value.value))
            for key, value in node.value
        )

    not_merged = [name for name in AIRFLOW_SERVICES if not merges(service_nodes[name], common)]
    assert not not_merged, f"services not built from `<<: *airflow-common`: {not_merged}"
    env_not_merged = [
        name
        for name in AIRFLOW_SERVICES
        for key, value in service_nodes[name].value
        if key.value == "environment" and not merges(value, common_env)
    ]
    assert not env_not_merged, f"services overriding environment without `<<: *airflow-common-env`: {env_not_merged}"


def test_airflow_services_share_build_and_environment(compose, services):
    common = compose[COMMON_ANCHOR]
    common_env = _environment(common)
    assert {key: common_env.get(key) for key in EXPECTED_ENV} == EXPECTED_ENV
    assert [key for key in REQUIRED_ENV_KEYS if not common_env.get(key)] == []
    assert "@postgres:" in common_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert common_env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379")
    minio_env = _environment(services["minio"])
    assert common_env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert common_env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]

    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert (service["build"], service["image"]) == (common["build"], common["image"]), name
        env = _environment(service)
        drifted = {key: env.get(key) for key, value in common_env.items() if env.get(key) != value}
        assert not drifted, f"{name} drifts from the shared environment: {drifted}"


def test_airflow_services_wait_for_init_and_backing_services(services):
    assert _depends_on(services["airflow-init"]) == {"postgres": "service_healthy", "redis": "service_healthy"}
    wanted = {
        "airflow-init": "service_completed_successfully",
        "postgres": "service_healthy",
        "redis": "service_healthy",
    }
    for name in LONG_RUNNING_AIRFLOW:
        deps = _depends_on(services[name])
        assert {key: deps.get(key) for key in wanted} == wanted, name


def test_worker_waits_for_the_object_lock_bucket(services):
    assert _depends_on(services["airflow-worker"]).get("minio-init") == "service_completed_successfully"
    assert _depends_on(services["minio-init"]).get("minio") == "service_healthy"


def test_minio_init_creates_bucket_with_object_lock_and_versioning(compose, services):
    bucket = urlsplit(_environment(compose[COMMON_ANCHOR])["EVIDENCE_STORE"]).netloc
    script = _script(services["minio-init"])
    assert re.search(rf"^\s*mc mb\b.*--with-lock\b.*/{re.escape(bucket)}\s*$", script, re.MULTILINE), script
    assert re.search(rf"^\s*mc version enable\b.*/{re.escape(bucket)}\s*$", script, re.MULTILINE), script


def test_airflow_init_migrates_the_metadata_db(services):
    assert "airflow db migrate" in _script(services["airflow-init"])


def test_airflow_init_creates_the_restore_pool_the_backup_dag_uses(services):
    """Without the pool, the backup DAG's restore tasks would wait forever for slots."""
    pool = re.search(r'RESTORE_POOL = "([^"]+)"', (REPO_ROOT / "dags" / "backup_test.py").read_text())[1]
    script = _script(services["airflow-init"])
    assert f'airflow pools set {pool} "$${{EVIDENCE_RESTORE_SLOTS}}"' in script
    assert _environment(services["airflow-init"])["EVIDENCE_RESTORE_SLOTS"] == "${EVIDENCE_RESTORE_SLOTS:-1}"


def test_source_directories_and_staging_are_mounted(compose, services):
    staging = _environment(compose[COMMON_ANCHOR])["EVIDENCE_STAGING"]
    for name in AIRFLOW_SERVICES:
        mounts = _mounts(services[name])
        assert {target: mounts.get(target) for target in SOURCE_MOUNTS} == SOURCE_MOUNTS, name
    staging_sources = {_mounts(services[name]).get(staging) for name in ("airflow-scheduler", "airflow-worker")}
    assert len(staging_sources) == 1, f"scheduler and worker mount different staging volumes: {staging_sources}"
    (source,) = staging_sources
    assert source in (compose.get("volumes") or {}), f"{staging} must be a declared named volume, got {source!r}"


def test_no_literal_secrets(compose, compose_text):
    environments = {name: _environment(service) for name, service in compose["services"].items()}
    environments |= {key: _environment(value) for key, value in compose.items() if key.startswith("x-")}
    literal = []
    for owner, env in environments.items():
        for key, value in env.items():
            if SECRET_KEY_NAME.search(key) and value and not PLACEHOLDER.fullmatch(value):
                literal.append(f"{owner}.{key}")
            if _url_password_is_literal(value):
                literal.append(f"{owner}.{key} (password in URL)")
    assert not literal, f"credentials must be ${{VAR:-default}} placeholders: {literal}"
    assert not SECRET_LOOKING_TEXT.search(compose_text)


def test_every_dependency_exists_and_can_be_satisfied(services):
    problems = []
    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            if target not in services:
                problems.append(f"{name} -> {target}: no such service")
            elif condition == "service_healthy" and "healthcheck" not in services[target]:
                problems.append(f"{name} -> {target}: waits for health but {target} has no healthcheck")
            elif condition == "service_completed_successfully" and target not in INIT_SERVICES:
                problems.append(f"{name} -> {target}: waits for completion of a long-running service")
    assert not problems, "\n".join(problems)


def test_docker_compose_v1_accepts_the_file(tmp_path):
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not on PATH (Debian package docker-compose 1.29): the v1 parser check needs it")
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.touch()
    result = subprocess.run(
        [binary, "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        # Defaults only: a developer's shell or .env must not decide whether the file parses.
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert result.returncode == 0, result.stderr
