# Sourced by the scripts: make .venv (Python 3.11+) and install the given requirements file
# when it changed since the last install.
_req="${1:-requirements.txt}"
_py="${PYTHON:-python3}"
if ! "$_py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Python 3.11 or newer is needed (found: $("$_py" --version 2>&1))." >&2
    exit 1
fi
if [[ ! -x .venv/bin/python ]]; then
    "$_py" -m venv .venv
fi
_stamp=".venv/.installed-$(basename "$_req")"
_want="$(cat requirements*.txt | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$_stamp" || "$(cat "$_stamp")" != "$_want" ]]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$_req"
    echo "$_want" > "$_stamp"
fi
