#!/usr/bin/env bash
# Device call 2 of 2 (carry [".fa4b"], right after scripts/fa4/park.sh): joins the parked part a
# and .fa4b/part-b into the cu13 wheel, checks its sha256, installs every wheel into /tmp/site
# (pip --no-index --no-deps --target) and sets PYTHONPATH to /tmp/site and the CuTe DSL's
# dsl_packages (its .pth file is not read from a --target folder). Sourced, it exports PYTHONPATH
# into the caller; run, it prints the export line. Once installed (marker /tmp/site/.fa4-installed),
# it only sets PYTHONPATH again. FA4_PARK and FA4_SITE move /tmp/fa4 and /tmp/site.
fa4_install() {
  local root park=${FA4_PARK:-/tmp/fa4} site=${FA4_SITE:-/tmp/site} name
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || return 1
  if [ ! -f "$site/.fa4-installed" ]; then
    # Part a as parked, or still in the checkout where the device kept call 1's carried folder.
    local part_a=$park/part-a missing
    [ -f "$part_a" ] || part_a=$root/.fa4a/part-a
    for missing in "$part_a" "$root/.fa4b/part-b" "$root/.fa4b/cu13.sha256"; do
      if [ ! -f "$missing" ]; then
        echo "fa4 install: $missing is missing (park.sh carrying .fa4a, then this call carrying .fa4b)" >&2
        return 1
      fi
    done
    name=$(awk '{print $2}' "$root/.fa4b/cu13.sha256")
    mkdir -p "$park" && cat "$part_a" "$root/.fa4b/part-b" >"$park/$name" || return 1
    if ! (cd "$park" && sha256sum --quiet -c "$root/.fa4b/cu13.sha256"); then
      echo "fa4 install: $park/$name ($(stat -c %s "$park/$name") bytes) does not match .fa4b/cu13.sha256" >&2
      return 1
    fi
    local wheels=("$park/$name" "$root"/.fa4b/*.whl)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      "${wheels[@]}" || return 1
    touch "$site/.fa4-installed"
    echo "fa4 install: ${#wheels[@]} wheels in $site"
  fi
  case ":${PYTHONPATH:-}:" in
    *":$site:"*) ;;
    *) PYTHONPATH="$site:$site/nvidia_cutlass_dsl/dsl_packages${PYTHONPATH:+:$PYTHONPATH}" ;;
  esac
  export PYTHONPATH
  echo "export PYTHONPATH=$PYTHONPATH"
}

# Sourced, the caller gets the status back and keeps its shell; run, it is the exit status.
if (return 0 2>/dev/null); then
  fa4_install
  return
fi
fa4_install
