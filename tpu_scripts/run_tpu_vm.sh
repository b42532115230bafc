#!/usr/bin/env bash
# Run an lrdist-jax command on a Cloud TPU VM (one host or a multi-host pod slice).
#
# Steps: create the TPU VM -> install lrdist-jax with the `tpu` extra on every worker ->
# launch the command on every worker -> copy the results back from worker 0 -> delete the VM.
# Run `tpu_scripts/run_tpu_vm.sh --help` for the options; see tpu_scripts/README.md.
set -euo pipefail

readonly PREFIX="DRY-RUN:"
readonly REMOTE_SRC="lrdist-jax-src"
readonly REMOTE_VENV="lrdist-venv"

usage() {
  cat <<'EOF'
Usage: tpu_scripts/run_tpu_vm.sh [STEP] --name NAME --zone ZONE --accelerator-type TYPE
                                 --version RUNTIME [options] [-- COMMAND [ARGS...]]

Runs COMMAND (e.g. `lrdist-jax train ...` or `lrdist-jax search ...`) on every worker of a
Cloud TPU VM. STEP is one of:
  all      create, install, launch, fetch, delete (default; needs COMMAND)
  create   create the TPU VM
  install  install lrdist-jax[tpu] on every worker
  launch   run COMMAND on every worker (needs COMMAND)
  fetch    copy the remote run directory from worker 0 to --results
  delete   delete the TPU VM

Required:
  --name NAME               TPU VM name
  --zone ZONE               e.g. us-central2-b (v4), us-west4-a (v5e)
  --accelerator-type TYPE   e.g. v4-8, v4-16, v5litepod-8 (needed by create / all)
  --version RUNTIME         TPU software version, e.g. tpu-ubuntu2204-base (v4),
                            v2-alpha-tpuv5-lite (v5e) (needed by create / all)
Options:
  --project PROJECT         Google Cloud project (default: gcloud's configured project)
  --results DIR             local directory for the results (default: tpu-results/NAME)
  --remote-dir DIR          run directory on every worker, relative to the home directory;
                            COMMAND runs there and worker 0's copy is fetched (default: lrdist-run)
  --install-from SOURCE     `copy` (default): upload this source tree and `pip install -e '.[tpu]'`;
                            or a pip URL such as git+https://github.com/OWNER/lrdist-jax@v0.1.0
  --python VERSION          Python for the remote virtual environment, made with uv (default 3.11;
                            TPU VM images ship Python 3.10, lrdist-jax needs >= 3.11)
  --spot                    create a Spot VM
  --keep                    do not delete the VM at the end (or after a failure)
  --dry-run                 print every command, one per line prefixed with "DRY-RUN:", run none
  -h, --help                this help

Example:
  tpu_scripts/run_tpu_vm.sh --name lrdist --zone us-central2-b --accelerator-type v4-8 \
      --version tpu-ubuntu2204-base -- lrdist-jax train --preset full
EOF
}

die() {
  printf 'error: %s\n' "$1" >&2
  printf 'Run "%s --help" for usage.\n' "$0" >&2
  exit 2
}

step="all"
name=""
zone=""
accelerator_type=""
version=""
project=""
results=""
remote_dir="lrdist-run"
install_from="copy"
python_version="3.11"
spot=0
keep=0
dry_run=0
command_args=()

if [[ $# -gt 0 && $1 != -* ]]; then
  step="$1"
  shift
fi
case "$step" in
  all | create | install | launch | fetch | delete) ;;
  *) die "unknown step '$step'; use one of: all, create, install, launch, fetch, delete." ;;
esac

# Options taking a value accept both `--opt VALUE` and `--opt=VALUE`.
need_value() {
  if [[ $# -lt 2 || -z $2 || $2 == --* ]]; then
    die "$1 needs a value."
  fi
}

while [[ $# -gt 0 ]]; do
  opt="$1"
  if [[ $opt == --*=* ]]; then
    set -- "${opt%%=*}" "${opt#*=}" "${@:2}"
    opt="$1"
  fi
  case "$opt" in
    --name | --zone | --accelerator-type | --version | --project | --results | --remote-dir | \
      --install-from | --python)
      need_value "$@"
      case "$opt" in
        --name) name="$2" ;;
        --zone) zone="$2" ;;
        --accelerator-type) accelerator_type="$2" ;;
        --version) version="$2" ;;
        --project) project="$2" ;;
        --results) results="$2" ;;
        --remote-dir) remote_dir="$2" ;;
        --install-from) install_from="$2" ;;
        --python) python_version="$2" ;;
      esac
      shift 2
      ;;
    --spot) spot=1 && shift ;;
    --keep) keep=1 && shift ;;
    --dry-run) dry_run=1 && shift ;;
    -h | --help) usage && exit 0 ;;
    --)
      shift
      command_args=("$@")
      break
      ;;
    *) die "unknown option '$opt' (put the command to run after '--')." ;;
  esac
done

[[ -n $name ]] || die "--name is required (the TPU VM name, e.g. --name lrdist-v4)."
[[ -n $zone ]] || die "--zone is required (e.g. --zone us-central2-b)."
if [[ $step == all || $step == create ]]; then
  [[ -n $accelerator_type ]] || die "--accelerator-type is required (e.g. v4-8 or v5litepod-8)."
  [[ -n $version ]] || die "--version is required (the TPU runtime, e.g. tpu-ubuntu2204-base)."
fi
if [[ ($step == all || $step == launch) && ${#command_args[@]} -eq 0 ]]; then
  die "no command to run: add it after '--', e.g. -- lrdist-jax train --preset full"
fi
if [[ $remote_dir == /* || $remote_dir == *..* || -z $remote_dir ]]; then
  die "--remote-dir must be a path below the home directory, e.g. lrdist-run."
fi
results="${results:-tpu-results/$name}"

# Every command goes through `run`: printed (shell-quoted) with --dry-run, else echoed and run.
run() {
  if [[ $dry_run -eq 1 ]]; then
    printf '%s' "$PREFIX"
    printf ' %q' "$@"
    printf '\n'
  else
    printf '+' >&2
    printf ' %q' "$@" >&2
    printf '\n' >&2
    "$@"
  fi
}

gcloud_tpu=(gcloud compute tpus tpu-vm)
where=("--zone=$zone")
if [[ -n $project ]]; then
  where+=("--project=$project")
fi

if [[ $dry_run -eq 0 ]] && ! command -v gcloud >/dev/null 2>&1; then
  die "gcloud not found: install the Google Cloud CLI (https://cloud.google.com/sdk) or use --dry-run."
fi

do_create() {
  local extra=()
  if [[ $spot -eq 1 ]]; then
    extra+=(--spot)
  fi
  run "${gcloud_tpu[@]}" create "$name" "${where[@]}" "--accelerator-type=$accelerator_type" \
    "--version=$version" "${extra[@]}"
}

do_install() {
  local prepare="" pip_target remote
  if [[ $install_from == copy ]]; then
    local repo tarball
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    tarball="${TMPDIR:-/tmp}/$REMOTE_SRC-$name.tar.gz"
    run tar -czf "$tarball" --exclude=.git --exclude=.venv --exclude=venv --exclude=__pycache__ \
      --exclude=.pytest_cache --exclude=.ruff_cache --exclude=tpu-results --exclude='*.egg-info' \
      -C "$repo" .
    run "${gcloud_tpu[@]}" scp "$tarball" "$name:$REMOTE_SRC.tar.gz" --worker=all "${where[@]}"
    run rm -f "$tarball"
    prepare="rm -rf $REMOTE_SRC && mkdir -p $REMOTE_SRC && tar -xzf $REMOTE_SRC.tar.gz -C $REMOTE_SRC && "
    pip_target="-e './${REMOTE_SRC}[tpu]'"
  else
    pip_target="'lrdist-jax[tpu] @ $install_from'"
  fi
  # uv provides a Python >= 3.11 when the image's python3 is older (TPU VM images ship 3.10).
  remote="set -euo pipefail; ${prepare}python3 -m pip install --user --quiet --upgrade uv"
  remote+=" && python3 -m uv venv --allow-existing --python $python_version $REMOTE_VENV"
  remote+=" && python3 -m uv pip install --python $REMOTE_VENV/bin/python $pip_target"
  run "${gcloud_tpu[@]}" ssh "$name" --worker=all "${where[@]}" "--command=$remote"
}

do_launch() {
  local quoted
  quoted="$(printf ' %q' "${command_args[@]}")"
  # LRDIST_DISTRIBUTED=1: lrdist_jax.sharding.initialize_distributed() calls
  # jax.distributed.initialize(), which reads the slice's hosts from the TPU VM metadata.
  # \$HOME and \$PATH are escaped: they expand on the worker, not here.
  run "${gcloud_tpu[@]}" ssh "$name" --worker=all "${where[@]}" \
    "--command=set -euo pipefail; mkdir -p $remote_dir && cd $remote_dir && export LRDIST_DISTRIBUTED=1 PATH=\"\$HOME/$REMOTE_VENV/bin:\$PATH\" &&$quoted"
}

do_fetch() {
  run mkdir -p "$results"
  run "${gcloud_tpu[@]}" scp --recurse "$name:$remote_dir" "$results" --worker=0 "${where[@]}"
}

do_delete() {
  run "${gcloud_tpu[@]}" delete "$name" "${where[@]}" --quiet
}

# Deletes the VM when `all` exits, also after a failure or Ctrl-C (unless --keep).
created=0
# shellcheck disable=SC2317  # invoked through `trap ... EXIT`
cleanup() {
  if [[ $created -eq 1 && $keep -eq 0 ]]; then
    do_delete || printf 'warning: could not delete TPU VM %s; delete it by hand.\n' "$name" >&2
  fi
}

case "$step" in
  create) do_create ;;
  install) do_install ;;
  launch) do_launch ;;
  fetch) do_fetch ;;
  delete) do_delete ;;
  all)
    trap cleanup EXIT
    do_create
    created=1
    do_install
    status=0
    do_launch || status=$?
    # Fetch whatever the run wrote, even after a failure, before the VM is deleted.
    do_fetch || status=$((status == 0 ? 1 : status))
    if [[ $status -ne 0 ]]; then
      printf 'error: the run on %s failed (exit %d).\n' "$name" "$status" >&2
    fi
    exit "$status"
    ;;
esac
