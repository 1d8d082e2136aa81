"""DAG parse cost: loading every file in dags/ as Airflow's DAG processor does vs bare ``import airflow.sdk``.

Each side runs in a fresh interpreter (AIRFLOW_HOME in a temp dir, example DAGs off), alternating,
21 runs each (``--quick``: 3), after one untimed run of each. The DAG side imports each file under
a unique module name with DagContext auto-registration, as Airflow's Python importer does, checks
that the DAGs were built and are valid, and times itself from just after ``import airflow.sdk`` to
the end: the in-process figure, exactly what the DAG files add, judged against the target. The
difference of the two sides' median wall times is printed beside it; it measures the same thing
plus start-up noise, which on a shared 2-core machine moved it by 30 ms between invocations of
identical code. On a miss, the modules imported beyond ``airflow.sdk`` are listed on stderr by
cumulative ``-X importtime``.
Target: the DAG files add <= 50 ms over ``import airflow.sdk``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench import Result, bench_tempdir, median, run_command, time_command, verdict

NAME = "dag_parse"
TARGET_MS = 50.0
RUNS, QUICK_RUNS = 21, 3
DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"
TOP_IMPORTS = 15

BASELINE = "import airflow.sdk"
# Both sides end as Airflow's forked parse processes do (supervisor.py): os._exit after flushing,
# with no interpreter teardown, whose cost grows with the heap and is no part of parsing.
EXIT = "import os, sys; sys.stdout.flush(); os._exit(0)"
# What airflow.dag_processing.importers.python_importer does per file, minus the core-only
# parts (timeouts, policies, serialisation) that cost the same for any DAG file.
LOAD_DAGS = """
import time
import airflow.sdk
start = time.perf_counter()
import hashlib, importlib.machinery, importlib.util, pathlib, re, sys
from airflow.sdk import DAG
from airflow.sdk.definitions._internal.contextmanager import DagContext

dags = []
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.py")):
    name = "unusual_prefix_%s_%s" % (
        hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest(), re.sub(r"[.-]", "_", path.stem)
    )
    DagContext.current_autoregister_module_name = name
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    sys.modules[name] = module
    loader.exec_module(module)
    found = {id(o): o for o in vars(module).values() if isinstance(o, DAG)}
    found.update({id(d): d for d, _ in DagContext.autoregistered_dags})
    DagContext.current_autoregister_module_name = None
    DagContext.autoregistered_dags.clear()
    if not found:
        raise SystemExit("%s: no DAG" % path)
    for dag in found.values():
        dag.validate()
        dag.check_cycle()
        dags.append(dag)
print(len(dags), time.perf_counter() - start)
"""
LOAD_DAGS += EXIT


def run(quick: bool = False) -> Result:
    runs = QUICK_RUNS if quick else RUNS
    files = sorted(DAGS_FOLDER.glob("*.py"))
    with bench_tempdir(NAME) as tmp:
        env = airflow_env(tmp)
        baseline_argv = [sys.executable, "-c", f"{BASELINE}\n{EXIT}"]
        dags_argv = [sys.executable, "-c", LOAD_DAGS, str(DAGS_FOLDER)]
        # One untimed run of each: compiles .pyc files and warms the page cache.
        time_command(baseline_argv, env=env, cwd=tmp)
        time_command(dags_argv, env=env, cwd=tmp)
        baseline, dags, in_process = [], [], []
        for _ in range(runs):
            baseline.append(time_command(baseline_argv, env=env, cwd=tmp))
            elapsed, output = run_command(dags_argv, env=env, cwd=tmp)
            count, seconds = output.split()
            if int(count) < len(files):
                raise RuntimeError(f"{len(files)} DAG files in {DAGS_FOLDER} but only {count} DAGs loaded")
            dags.append(elapsed)
            in_process.append(float(seconds))
        base_ms, dags_ms = median(baseline) * 1000, median(dags) * 1000
        added_ms = median(in_process) * 1000
        passed = added_ms <= TARGET_MS
        if not passed:
            print_top_imports(dags_argv, baseline_argv, env, tmp)
    line = (
        f"{NAME}: dags/ ({len(files)} file{'s' if len(files) != 1 else ''}) add {added_ms:.0f} ms to {BASELINE} "
        f"in process (target <= +{TARGET_MS:.0f} ms) {verdict(passed)} [median of {runs}; fresh processes "
        f"{dags_ms:.0f} ms vs {base_ms:.0f} ms, {dags_ms - base_ms:+.0f} ms]"
    )
    return Result(NAME, line, passed)


def airflow_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS_FOLDER),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the warm-up run caches bytecode, as a DAG processor would
    return env


def import_times(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, tuple[int, int]]:
    """``-X importtime`` of one run: module -> (self us, cumulative us)."""
    completed = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], env=env, cwd=cwd, capture_output=True, text=True, check=True
    )
    times = {}
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, module = line.split(":", 1)[1].split("|")
        times[module.strip()] = (int(own), int(cumulative))
    return times


def print_top_imports(dags_argv: list[str], baseline_argv: list[str], env: dict[str, str], cwd: Path) -> None:
    baseline = import_times(baseline_argv, env, cwd)
    extra = {module: times for module, times in import_times(dags_argv, env, cwd).items() if module not in baseline}
    total = sum(own for own, _ in extra.values()) / 1000
    print(
        f"{NAME}: {len(extra)} modules imported beyond {BASELINE} ({total:.1f} ms self time); "
        f"top {TOP_IMPORTS} by cumulative time:",
        file=sys.stderr,
    )
    for module, (own, cumulative) in sorted(extra.items(), key=lambda item: -item[1][1])[:TOP_IMPORTS]:
        print(f"  {cumulative / 1000:6.1f} ms cumulative {own / 1000:6.1f} ms self  {module}", file=sys.stderr)
