"""tpu_scripts/run_tpu_vm.sh: the exact gcloud commands (--dry-run), argument errors, a fake-gcloud
run, and shellcheck on every script."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tpu_scripts"
SCRIPT = SCRIPTS / "run_tpu_vm.sh"
BASH = shutil.which("bash") or "/bin/bash"
PREFIX = "DRY-RUN: "
TPU = ["gcloud", "compute", "tpus", "tpu-vm"]
WHERE = ["--zone=us-central2-b", "--project=my-proj"]
REQUIRED = {
    "--name": "t1",
    "--zone": "us-central2-b",
    "--accelerator-type": "v4-8",
    "--version": "tpu-ubuntu2204-base",
}
TRAIN = ["lrdist-jax", "train", "--preset", "full", "--out", "my dir"]


def _args(step=None, drop=(), extra=(), command=TRAIN):
    args = [] if step is None else [step]
    for flag, value in REQUIRED.items():
        if flag not in drop:
            args += [flag, value]
    args += ["--project", "my-proj", *extra]
    return args + (["--", *command] if command else [])


@pytest.fixture
def fake_gcloud(tmp_path):
    """A `gcloud` first on PATH that logs its argv (one shell-quoted line per call)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "gcloud.log"
    fake = bindir / "gcloud"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%q " "$@" >> {shlex.quote(str(log))}\n'
        f'printf "\\n" >> {shlex.quote(str(log))}\n'
        'fail="${FAKE_GCLOUD_FAIL_ON:-}"\n'
        'if [[ -n $fail && "$*" == *"$fail"* ]]; then exit 3; fi\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    env["TMPDIR"] = str(tmp_path)
    return env, log


def _run(args, env=None, cwd=None):
    return subprocess.run(
        [BASH, str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def _commands(stdout: str) -> list[list[str]]:
    lines = [line for line in stdout.splitlines() if line.startswith(PREFIX)]
    return [shlex.split(line[len(PREFIX) :]) for line in lines]


def _remote(cmd: list[str]) -> str:
    (opt,) = [a for a in cmd if a.startswith("--command=")]
    return opt[len("--command=") :]


def _gcloud(cmds, verb):
    return [c for c in cmds if c[:5] == [*TPU, verb]]


def test_dry_run_prints_every_step_and_runs_nothing(fake_gcloud, tmp_path):
    env, log = fake_gcloud
    proc = _run(_args("all", extra=["--dry-run"]), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not log.exists(), "--dry-run must not call gcloud"
    assert not (tmp_path / "tpu-results").exists(), "--dry-run must not create directories"
    cmds = _commands(proc.stdout)
    assert len(cmds) == len(proc.stdout.splitlines())  # every line is a command

    (create,) = _gcloud(cmds, "create")
    assert create == [
        *TPU,
        "create",
        "t1",
        *WHERE,
        "--accelerator-type=v4-8",
        "--version=tpu-ubuntu2204-base",
    ]
    (upload, fetch) = _gcloud(cmds, "scp")
    tarball = upload[5]
    assert upload == [*TPU, "scp", tarball, "t1:lrdist-jax-src.tar.gz", "--worker=all", *WHERE]
    assert ["tar", "-czf", tarball] == cmds[cmds.index(upload) - 1][:3]
    assert cmds[cmds.index(upload) - 1][-3:] == ["-C", str(ROOT), "."]

    install, launch = _gcloud(cmds, "ssh")
    assert install[:7] == [*TPU, "ssh", "t1", "--worker=all"]
    assert install[7:9] == WHERE
    remote = shlex.split(_remote(install))
    pip = ["pip", "install", "--python", "lrdist-venv/bin/python", "-e", "./lrdist-jax-src[tpu]"]
    assert remote[-6:] == pip
    assert "tar -xzf lrdist-jax-src.tar.gz -C lrdist-jax-src" in _remote(install)
    assert "uv venv --allow-existing --python 3.11 lrdist-venv" in _remote(install)

    assert launch[:7] == [*TPU, "ssh", "t1", "--worker=all"]
    remote = shlex.split(_remote(launch))
    assert remote[-len(TRAIN) - 1 :] == ["&&", *TRAIN]  # the user's arguments survive quoting
    assert "cd lrdist-run" in _remote(launch)
    assert "LRDIST_DISTRIBUTED=1" in _remote(launch)
    assert 'PATH="$HOME/lrdist-venv/bin:$PATH"' in _remote(launch)

    assert fetch == [
        *TPU,
        "scp",
        "--recurse",
        "t1:lrdist-run",
        "tpu-results/t1",
        "--worker=0",
        *WHERE,
    ]
    assert cmds[cmds.index(fetch) - 1] == ["mkdir", "-p", "tpu-results/t1"]
    (delete,) = _gcloud(cmds, "delete")
    assert delete == [*TPU, "delete", "t1", *WHERE, "--quiet"]
    order = [cmds.index(c) for c in (create, upload, install, launch, fetch, delete)]
    assert order == sorted(order)


def test_dry_run_search_git_install_keep_and_equals_form():
    args = [
        "--name=t2",
        "--zone=us-west4-a",
        "--accelerator-type=v5litepod-8",
        "--version=v2-alpha-tpuv5-lite",
        "--results=out/r",
        "--remote-dir=runs/a",
        "--install-from=git+https://example.org/lrdist-jax@v0.1.0",
        "--python=3.12",
        "--spot",
        "--keep",
        "--dry-run",
        "--",
        "lrdist-jax",
        "search",
        "--preset",
        "smoke",
    ]
    proc = _run(args)
    assert proc.returncode == 0, proc.stderr
    cmds = _commands(proc.stdout)
    (create,) = _gcloud(cmds, "create")
    assert create == [
        *TPU,
        "create",
        "t2",
        "--zone=us-west4-a",
        "--accelerator-type=v5litepod-8",
        "--version=v2-alpha-tpuv5-lite",
        "--spot",
    ]
    assert not [c for c in cmds if c[0] == "tar"]  # nothing uploaded
    install, launch = _gcloud(cmds, "ssh")
    assert "'lrdist-jax[tpu] @ git+https://example.org/lrdist-jax@v0.1.0'" in _remote(install)
    assert "--python 3.12 lrdist-venv" in _remote(install)
    assert shlex.split(_remote(launch))[-4:] == ["lrdist-jax", "search", "--preset", "smoke"]
    assert "cd runs/a" in _remote(launch)
    (fetch,) = _gcloud(cmds, "scp")
    assert fetch[5:8] == ["--recurse", "t2:runs/a", "out/r"]
    assert not _gcloud(cmds, "delete")  # --keep


@pytest.mark.parametrize(
    "step, verbs",
    [("create", ["create"]), ("launch", ["ssh"]), ("fetch", ["scp"]), ("delete", ["delete"])],
)
def test_single_steps(step, verbs):
    proc = _run(_args(step, extra=["--dry-run"]))
    assert proc.returncode == 0, proc.stderr
    assert [c[4] for c in _commands(proc.stdout) if c[:4] == TPU] == verbs


@pytest.mark.parametrize("flag", list(REQUIRED))
def test_missing_required_flag_fails_with_message(flag):
    proc = _run(_args("all", drop=(flag,), extra=["--dry-run"]))
    assert proc.returncode == 2
    assert f"{flag} is required" in proc.stderr
    assert PREFIX not in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (_args("all", extra=["--dry-run"], command=()), "no command to run"),
        (_args("launch", extra=["--dry-run"], command=()), "no command to run"),
        (_args("all", extra=["--dry-run", "--bogus"]), "unknown option '--bogus'"),
        (_args("deploy", extra=["--dry-run"]), "unknown step 'deploy'"),
        (_args("all", extra=["--dry-run", "--remote-dir", "/abs"]), "--remote-dir must be"),
        (["--name", "--zone", "z", "--dry-run"], "--name needs a value"),
    ],
)
def test_bad_arguments(args, message):
    proc = _run(args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert PREFIX not in proc.stdout


def test_delete_needs_no_accelerator_type():
    proc = _run(["delete", "--name", "t1", "--zone", "z", "--dry-run"])
    assert proc.returncode == 0, proc.stderr
    assert _commands(proc.stdout) == [[*TPU, "delete", "t1", "--zone=z", "--quiet"]]


def test_help():
    proc = _run(["--help"])
    assert proc.returncode == 0 and "Usage:" in proc.stdout and "--dry-run" in proc.stdout


def test_real_run_executes_what_dry_run_prints(fake_gcloud, tmp_path):
    env, log = fake_gcloud
    dry = _run(_args("all", extra=["--dry-run"]), env=env, cwd=tmp_path)
    real = _run(_args("all"), env=env, cwd=tmp_path)
    assert real.returncode == 0, real.stderr
    called = [shlex.split(line) for line in log.read_text().splitlines()]
    assert called == [c[1:] for c in _commands(dry.stdout) if c[0] == "gcloud"]
    assert (tmp_path / "tpu-results" / "t1").is_dir()
    assert not list(tmp_path.glob("lrdist-jax-src-*.tar.gz"))  # the upload tarball is removed


def test_failed_run_still_fetches_and_deletes(fake_gcloud, tmp_path):
    env, log = fake_gcloud
    env = {**env, "FAKE_GCLOUD_FAIL_ON": "lrdist-jax train"}
    proc = _run(_args("all"), env=env, cwd=tmp_path)
    assert proc.returncode == 3
    assert "the run on t1 failed (exit 3)" in proc.stderr
    verbs = [shlex.split(line)[3] for line in log.read_text().splitlines()]
    assert verbs == ["create", "scp", "ssh", "ssh", "scp", "delete"]


def test_without_gcloud_nothing_runs(tmp_path):
    proc = subprocess.run(
        [BASH, str(SCRIPT), *_args("all")],
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path)},
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2 and "gcloud not found" in proc.stderr


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck)")
    scripts = sorted(SCRIPTS.glob("*.sh"))
    assert scripts
    proc = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
