#!/usr/bin/env bash
# Installs the Debian packages listed in deps/debian-packages.txt.
#
#   scripts/deps.sh            every package in the list
#   scripts/deps.sh TAG...     only lines carrying one of the tags
#   scripts/deps.sh --list [TAG...]   print the names, install nothing
#
# Idempotent and quick when everything is there: one dpkg-query call decides;
# apt-get update and install run only for what is missing. Runs apt as root,
# through sudo when not root and sudo exists.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
list="$root/deps/debian-packages.txt"

is_list_only=false
if [[ ${1:-} == --list ]]; then
	is_list_only=true
	shift
fi
tags=("$@")

# Package names from the list, filtered by tag when tags were given.
pkgs=()
while read -r name rest; do
	[[ -z $name || $name == \#* ]] && continue
	if ((${#tags[@]})); then
		keep=false
		for t in "${tags[@]}"; do
			for have in $rest; do
				[[ $have == "$t" ]] && keep=true
			done
		done
		$keep || continue
	fi
	pkgs+=("$name")
done <"$list"

if ((${#pkgs[@]} == 0)); then
	echo "deps: no package in $list matches: ${tags[*]}" >&2
	exit 1
fi
if $is_list_only; then
	printf '%s\n' "${pkgs[@]}"
	exit 0
fi

# One dpkg-query for all of them; names it does not know print nothing.
declare -A installed=()
while read -r name status; do
	[[ $status == "install ok installed" ]] && installed[$name]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${pkgs[@]}" 2>/dev/null || true)

missing=()
for p in "${pkgs[@]}"; do
	[[ -n ${installed[$p]:-} ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
	echo "deps: all ${#pkgs[@]} Debian packages are installed"
	exit 0
fi

as_root=()
if ((EUID != 0)); then
	if command -v sudo >/dev/null 2>&1; then
		as_root=(sudo)
	else
		echo "deps: missing ${missing[*]}; run 'make deps' as root (no sudo here)" >&2
		exit 1
	fi
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Another apt run (a second `make` in parallel) holds the lock: wait for it.
wait_lock=(-o DPkg::Lock::Timeout=600)
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${wait_lock[@]}" update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get "${wait_lock[@]}" install -y -qq --no-install-recommends "${missing[@]}"
