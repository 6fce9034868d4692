# Sourced by scripts/*: make sure uv exists (a fresh machine has only Python and pip).
source "$(dirname "${BASH_SOURCE[0]}")/_limits.sh"
if ! command -v uv >/dev/null 2>&1; then
  for candidate in "$HOME/.local/bin/uv" "$HOME/.cargo/bin/uv"; do
    if [[ -x "$candidate" ]]; then export PATH="$(dirname "$candidate"):$PATH"; break; fi
  done
fi
if ! command -v uv >/dev/null 2>&1; then
  echo "uv not found: installing it from PyPI (python3 -m pip install --user uv)" >&2
  limit "$ROUTERS_NET_TIMEOUT" "pip install uv" python3 -m pip install --timeout 60 --quiet --user uv >&2 ||
    limit "$ROUTERS_NET_TIMEOUT" "pip install uv" python3 -m pip install --timeout 60 --quiet uv >&2
  export PATH="$HOME/.local/bin:$PATH"
fi
command -v uv >/dev/null 2>&1 || { echo "error: could not install uv" >&2; exit 1; }
