# Sourced by docs/demo/run-demo.sh and tests/run.sh: make a virtual environment at $1 and install
# clarad into it with the extras in $2. Checks what a fresh Debian/Ubuntu machine may lack first.
set -eu
venv="$1"; extras="$2"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"

if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "clarad needs Python 3.10 or newer as '$py' (set PYTHON=... to choose another)" >&2; exit 1
fi
pyver="$("$py" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')"
# Triton's Python-backend stub links against libpython; venv needs ensurepip. Debian splits both out.
missing=()
"$py" -c 'import ensurepip' 2>/dev/null || missing+=("python${pyver}-venv")
ldconfig -p 2>/dev/null | grep -q "libpython${pyver}\.so\.1" \
  || [ -e "$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')/libpython${pyver}.so.1.0" ] \
  || missing+=("libpython${pyver}")
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (Debian packages clarad's Triton needs)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]}; install with: sudo apt-get install ${missing[*]}" >&2; exit 1
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
if ! { "$venv/bin/python" -m pip install --upgrade pip && "$venv/bin/python" -m pip install -e "$root[$extras]"; } \
    >"$venv/install.log" 2>&1; then
  tail -n 30 "$venv/install.log" >&2; echo "installing clarad into $venv failed (full log: $venv/install.log)" >&2; exit 1
fi
