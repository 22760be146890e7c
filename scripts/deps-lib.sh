# shellcheck shell=bash
# Shared by scripts/deps/*.sh (sourced, not run): install only what is missing, so every deps
# script is cheap to run again. Debian packages through apt-get, Python modules through pip.

# apt_install TAG PACKAGE...: installs the given Debian packages (none given: nothing to do).
apt_install() {
  local tag=$1
  shift
  [ $# -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "deps/$tag: installing $*"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# pip_install_missing TAG MODULE...: pip-installs the modules that do not import (module name =
# PyPI name for every module fattn needs).
pip_install_missing() {
  local tag=$1
  shift
  local python=${PYTHON:-python3} missing=() module
  for module in "$@"; do
    "$python" -c "import $module" 2>/dev/null || missing+=("$module")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "deps/$tag: $* already installed"
    return 0
  fi
  echo "deps/$tag: installing ${missing[*]}"
  "$python" -m pip install --disable-pip-version-check -q "${missing[@]}"
}
