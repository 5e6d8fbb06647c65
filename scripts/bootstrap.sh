#!/usr/bin/env bash
# Installs what tablewatch needs here, and nothing that is already in place:
#   - as root, the Debian packages its tests and demo run against (PostgreSQL 15 + pgaudit,
#     Prometheus, Alertmanager, tmux);
#     `bootstrap.sh bench` adds pgbadger and GNU time for the benchmarks;
#   - a virtual environment in .venv with the locked Python packages (requirements.lock).
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(postgresql-15 postgresql-15-pgaudit postgresql-contrib prometheus prometheus-alertmanager tmux)
if [ "${1:-}" = bench ]; then
  debs+=(pgbadger time)
fi

missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing Debian packages (install them as root): ${missing[*]}" >&2
  fi
fi

python=${PYTHON:-python3}
stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
  echo "bootstrap: installing Python packages into .venv" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
  touch "$stamp"
fi
if [ "${1:-}" = bench ] && ! .venv/bin/python -c 'import atheris' 2>/dev/null; then
  echo "bootstrap: installing the benchmarks' Python packages into .venv" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev,bench]'
fi
