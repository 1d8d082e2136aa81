"""Redaction engine throughput, and detect-secrets 1.5.0 measured on the same corpus.

A synthetic configuration tree (Kubernetes manifests, package.json, INI, .env, properties,
Terraform, Markdown; about 20 KB each; 1 file in 50 from the secret corpus) of 64 MiB (``--quick``: 16 MiB) is
redacted file by file with ``Redactor.redact_document``, and the same tree is extracted with
``git archive | tar -x``. Ratio = git time / redaction time; the snapshot's budget is 2x the
extraction for everything, so redaction alone must take at most as long: target >= 1.0x. Times
are CPU seconds (ours: this process; git and tar: the children), best of the runs: the machine
is shared, and wall time there measures the neighbours.

The note adds detect-secrets 1.5.0 (default plugins and filters, as its scanner runs them): its
throughput on a sample of the same tree, and on tests/secret_corpus.py the secrets it leaves in
the text (redacting every value it reports) and the look-alikes it reports.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

from bench import Result, bench_tempdir, ratio_result, run_command

ROOT = Path(__file__).resolve().parents[1]

NAME = "redaction_engine"
TARGET = 1.0
SIZE, QUICK_SIZE = 64 * 2**20, 16 * 2**20
DETECT_SECRETS_SAMPLE = 2 * 2**20
RUNS, QUICK_RUNS = 3, 1

_DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}, team: {team}}}
spec:
  replicas: {n}
  template:
    spec:
      containers:
        - name: {name}
          image: registry.acme.example/{name}:{version}
          env:
            - name: DATABASE_PASSWORD
              valueFrom:
                secretKeyRef: {{name: {name}-db, key: password}}
            - name: LOG_LEVEL
              value: info
          resources: {{limits: {{cpu: 500m, memory: 512Mi}}}}
          ports: [{{containerPort: 8080}}]
"""
_PACKAGE = """{{
  "name": "@acme/{name}",
  "version": "{version}",
  "scripts": {{"build": "tsc -p .", "test": "jest --runInBand"}},
  "dependencies": {{"express": "^4.19.2", "pino": "^9.0.0", "zod": "^3.23.0"}},
  "publishConfig": {{"registry": "https://npm.acme.example/"}}
}}
"""
_INI = """[server]
host = {name}.internal
port = {n}080
workers = {n}
keepalive_timeout = 75

[auth]
provider = oidc
token_ttl_seconds = 3600
password_min_length = 14
"""
_ENV = "APP_NAME={name}\nAPP_ENV=production\nLOG_LEVEL=info\nMAX_TOKENS=4096\nDB_PASSWORD=${{DB_PASSWORD}}\n"
_PROPERTIES = "server.port=8080\nspring.application.name={name}\nspring.datasource.url=jdbc:postgresql://db/{name}\n"
_TERRAFORM = 'resource "aws_s3_bucket" "{name}" {{\n  bucket = "acme-{name}"\n  tags = {{ team = "{team}" }}\n}}\n'
_MARKDOWN = (
    "# {name}\n\nOwned by {team}. Rotate the keys every 90 days; see the runbook.\n\n"
    + "Lorem ipsum dolor sit amet. " * 20
    + "\n"
)
_TEMPLATES = [
    ("k8s/{name}.yaml", _DEPLOYMENT),
    ("js/{name}/package.json", _PACKAGE),
    ("etc/{name}.ini", _INI),
    ("env/{name}.env", _ENV),
    ("java/{name}.properties", _PROPERTIES),
    ("tf/{name}.tf", _TERRAFORM),
    ("docs/{name}.md", _MARKDOWN),
]


def synthetic_tree(size: int) -> dict[str, str]:
    """Realistic configuration files, about ``size`` bytes; 1 in 50 is a file of the secret corpus."""
    sys.path.insert(0, str(ROOT / "tests"))
    from secret_corpus import SECRETS

    rng = random.Random(7)
    files: dict[str, str] = {}
    total, index = 0, 0
    while total < size:
        index += 1
        name = f"svc{index:05d}"
        if index % 50 == 0:
            case = SECRETS[index // 50 % len(SECRETS)]
            path, text = f"corpus/{index}/{case.path}", case.content
        else:
            pattern, template = _TEMPLATES[index % len(_TEMPLATES)]
            fill = {"name": name, "team": rng.choice(["core", "data", "web"]), "n": rng.randint(1, 9)}
            one = template.format(version=f"1.{index % 40}.0", **fill)
            path = pattern.format(**fill)
            # Files of about 20 KB, as in the 10,000-file 200 MB repository the snapshot budget is set for.
            text = (
                "[" + ",".join([one] * 20) + "]"
                if path.endswith(".json")
                else ("---\n" if path.endswith(".yaml") else "").join([one] * 20)
            )
        files[path] = text
        total += len(text.encode())
    return files


def run(quick: bool = False) -> Result:
    from soc2_evidence.core.redaction import Redactor

    size = QUICK_SIZE if quick else SIZE
    runs = QUICK_RUNS if quick else RUNS
    files = synthetic_tree(size)
    megabytes = sum(len(text.encode()) for text in files.values()) / 2**20

    def redact_all() -> None:
        redactor = Redactor(b"bench")
        for path, text in files.items():
            redactor.redact_document(path, text)

    ours_s = min(_cpu_seconds(redact_all) for _ in range(runs))
    with bench_tempdir(NAME) as tmp:
        git_s = _git_archive_extract_seconds(tmp, files, runs)
        detect_secrets = _detect_secrets_note(tmp, files)
    note = f"{len(files)} files, {megabytes:.0f} MiB: ours {megabytes / ours_s:.1f} MiB/s; {detect_secrets}"
    return ratio_result(NAME, "redact_document", ours_s, "git archive | tar -x", git_s, TARGET, note=note)


def _git_archive_extract_seconds(tmp: Path, files: dict[str, str], runs: int) -> float:
    repo = tmp / "repo"
    for path, text in files.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    run_command([*git, "init", "-q"])
    run_command([*git, "add", "-A"])
    run_command([*git, "commit", "-q", "-m", "tree"])
    best = float("inf")
    for attempt in range(runs):
        out = tmp / f"extract-{attempt}"
        out.mkdir()
        before = os.times()
        subprocess.run(f"git -C {repo} archive HEAD | tar -x -C {out}", shell=True, check=True)  # noqa: S602
        after = os.times()
        best = min(best, after.children_user - before.children_user + after.children_system - before.children_system)
    return best


def _cpu_seconds(function) -> float:
    start = time.process_time()
    function()
    return time.process_time() - start


def _detect_secrets_note(tmp: Path, files: dict[str, str]) -> str:
    """detect-secrets as its own scanner runs it (``SecretsCollection.scan_file``, default plugins and
    filters): speed on a sample of the tree, and, as a redactor (every value it reports replaced),
    the corpus secrets it leaves and the look-alikes it reports."""
    try:
        from detect_secrets import SecretsCollection
        from detect_secrets.settings import default_settings
    except ImportError:
        return "detect-secrets not installed (requirements-dev.txt)"
    from secret_corpus import LOOKALIKES, SECRETS

    def found(path: str, text: str) -> set[str]:
        target = tmp / "detect-secrets" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        collection = SecretsCollection()
        collection.scan_file(str(target))
        return {secret.secret_value for name in collection.files for secret in collection[name] if secret.secret_value}

    with default_settings():
        sample, sample_bytes = {}, 0
        for path, text in files.items():
            sample[path] = text
            sample_bytes += len(text.encode())
            if sample_bytes >= DETECT_SECRETS_SAMPLE:
                break
        start = time.process_time()
        for path, text in sample.items():
            found(f"sample/{path}", text)
        speed = sample_bytes / 2**20 / (time.process_time() - start)
        leaked = 0
        for case in SECRETS:
            text = case.content
            for value in sorted(found(f"corpus/{case.path}", text), key=len, reverse=True):
                text = text.replace(value, "[REDACTED]")
            leaked += any(
                line.strip() in text for secret in case.secrets for line in secret.splitlines() if line.strip()
            )
        reported = sum(bool(found(f"lookalikes/{case.path}", case.content)) for case in LOOKALIKES)
    return (
        f"detect-secrets {speed:.1f} MiB/s, leaves {leaked}/{len(SECRETS)} corpus secrets,"
        f" reports {reported}/{len(LOOKALIKES)} look-alikes"
    )
