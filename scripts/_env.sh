# Sourced by scripts/demo and scripts/test: make .venv (Python 3.11 or 3.12) and install WSM
# into it when it is missing or when the project's packaging changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WSM_VENV:-$ROOT/.venv}"

find_python() {
    for cand in "${WSM_PYTHON:-}" python3 python3.12 python3.11; do
        [ -n "$cand" ] || continue
        command -v "$cand" >/dev/null 2>&1 || continue
        if "$cand" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)' \
            2>/dev/null; then
            echo "$cand"
            return 0
        fi
    done
    for v in 3.12 3.11; do   # pyenv keeps other versions off PATH
        for p in "$HOME"/.pyenv/versions/$v*/bin/python3; do
            [ -x "$p" ] && { echo "$p"; return 0; }
        done
    done
    echo "WSM needs Python 3.11 or 3.12 (set WSM_PYTHON to its path)" >&2
    return 1
}

ensure_venv() {
    local extras="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        local py
        py="$(find_python)"
        echo "creating $VENV with $py" >&2
        "$py" -m venv "$VENV" || {
            echo "could not create a virtual environment (on Debian/Ubuntu: apt install python3-venv)" >&2
            return 1
        }
    fi
    local stamp="$VENV/.wsm-installed-$extras"
    local digest
    digest="$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT"/engine/*.c | "$VENV/bin/python" -c \
        'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
        echo "installing WSM[$extras] into $VENV" >&2
        "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
        "$VENV/bin/python" -m pip install --quiet -e "$ROOT[$extras]" >&2
        echo "$digest" > "$stamp"
    fi
}
