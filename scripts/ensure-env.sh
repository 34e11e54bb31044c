#!/usr/bin/env bash
# Make sure this machine can build, test and demo vportd. Idempotent and fast
# when nothing is missing; every Makefile target calls it.
#
#  1. System tools (Debian 12): Open vSwitch, etcd, iproute2, ethtool, ping,
#     openssl (`lab up --tls` and the TLS tests make their CA and certificates with it),
#     chromium (the dashboard's browser test drives it headless).
#     Installed with apt-get as root. The services those packages ship are
#     kept stopped: tests and the lab start private OVS/etcd instances, and a
#     system ovs-vswitchd (netdev datapath) or etcd on :2379 would clash.
#  2. The project venv in .venv with vportd installed editable plus the lab
#     and dev extras (the tests drive the lab package, and the lab tier's
#     benchmark draws its plot), re-installed whenever pyproject.toml is newer
#     than .venv/.stamp.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# ip and ethtool live in sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

APT_PACKAGES=(openvswitch-switch etcd-server iproute2 ethtool iputils-ping openssl chromium)
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
STAMP="$VENV/.stamp"

say() { printf 'ensure-env: %s\n' "$*"; }
die() { printf 'ensure-env: error: %s\n' "$*" >&2; exit 1; }

# ----------------------------------------------------------- system packages
need_apt=()
for cmd in ovs-vsctl etcd ip ethtool ping openssl chromium; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        need_apt=("${APT_PACKAGES[@]}")
        break
    fi
done
# A fresh Debian 12 may lack python3 or its venv module (ensurepip).
if ! command -v "$PYTHON" >/dev/null 2>&1 \
    || ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [[ "$PYTHON" == python3 ]]; then
        need_apt+=(python3 python3-venv)
    else
        die "$PYTHON is missing or has no venv/ensurepip module"
    fi
fi

if ((${#need_apt[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        die "missing system packages; as root run:
    apt-get update && apt-get install -y --no-install-recommends ${need_apt[*]}"
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found (Debian 12 expected); install: ${need_apt[*]}"

    # Keep package scripts from starting openvswitch-switch / etcd during the
    # install (Debian's policy-rc.d protocol: exit 101 = "action forbidden").
    # An existing policy-rc.d (e.g. Docker's) is left untouched.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        own_policy=1
        trap '[[ $own_policy -eq 1 ]] && rm -f /usr/sbin/policy-rc.d' EXIT
    fi

    say "installing ${need_apt[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need_apt[@]}" >/dev/null

    if ((own_policy)); then
        rm -f "$policy"
        own_policy=0
    fi

    # Stop and disable the system services where systemd runs them; without
    # systemd there is nothing to do (policy-rc.d kept them from starting).
    # Never fail because of this.
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        for unit in openvswitch-switch ovs-vswitchd ovsdb-server etcd; do
            systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
        say "system openvswitch/etcd services stopped and disabled (tests use private instances)"
    fi
fi

# ----------------------------------------------------------------- the venv
if [[ ! -x $VENV/bin/python ]]; then
    say "creating .venv with $("$PYTHON" --version 2>&1)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

"$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die ".venv uses Python < 3.11; run 'make clean' and set PYTHON=python3.11"

if [[ ! -e $STAMP || pyproject.toml -nt $STAMP ]]; then
    say "installing vportd with its lab and dev extras into .venv (about a minute)"
    log="$VENV/pip-install.log"
    if ! "$VENV/bin/python" -m pip install -e '.[dev,lab]' >"$log" 2>&1; then
        grep -v "^WARNING: Location '.*' is ignored" "$log" | tail -n 40 >&2
        die "pip install failed; full log in ${log#"$ROOT"/}"
    fi
    touch "$STAMP"
    say "venv ready"
fi
