# Sourced by the scripts: create .venv beside the project if missing and install the project.
# PIPELINE_EXTRAS picks extras (e.g. "test,ptv"); scripts/nodeps-<extra>.txt, if present, is installed
# with --no-deps. The install re-runs only when setup.cfg or a nodeps file changes.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extras="${PIPELINE_EXTRAS:-}"
# One stamp per installed set of extras: switching between scripts (test, demo, bench) reinstalls
# nothing, as installing fewer extras never removes packages; a changed setup.cfg drops all stamps.
sum="$(cat "$root/setup.cfg" "$root"/scripts/nodeps-*.txt 2>/dev/null | cksum | cut -d' ' -f1)"
stamp="$venv/.installed-$sum-${extras:-none}"
ls "$venv"/.installed-"$sum"-* >/dev/null 2>&1 && [ -z "$extras" ] && stamp="$(ls "$venv"/.installed-"$sum"-* | head -1)"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { echo "error: could not create $venv (is python3-venv installed?)" >&2; exit 1; }
fi
if [ ! -f "$stamp" ]; then
  spec="$root"; [ -n "$extras" ] && spec="$root[$extras]"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2 || exit 1
  "$venv/bin/python" -m pip install --quiet -e "$spec" >&2 || { echo "error: installing the project failed" >&2; exit 1; }
  for extra in ${extras//,/ }; do [ ! -f "$root/scripts/nodeps-$extra.txt" ] || "$venv/bin/python" -m pip install \
    --quiet --no-deps -r "$root/scripts/nodeps-$extra.txt" >&2 || { echo "error: installing nodeps-$extra.txt failed" >&2; exit 1; }; done
  find "$venv" -maxdepth 1 -name '.installed-*' ! -name ".installed-$sum-*" -delete && touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
export LUIGI_CONFIG_PATH="$root/luigi.cfg"
