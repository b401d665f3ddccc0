#!/bin/sh
# The version of a build, in Debian's form, from `git describe`:
#   v1.2.3                    1.2.3
#   v1.2.3-12-gabc1234        1.2.3+git12.gabc1234  (12 commits after v1.2.3)
#   v1.3.0-rc1                1.3.0~rc1             (sorts before 1.3.0)
#   no v* tag                 0.0.0~git<commits>.<hash>
# and +dirty when the work tree has uncommitted changes. make stamps the
# binary with it (hacron --version) and the packages, so both agree.
set -eu
d=$(git describe --tags --match 'v[0-9]*' --always --dirty --abbrev=7 2>/dev/null) || {
	echo 0.0.0 # not a git checkout
	exit 0
}
dirty=
case $d in
*-dirty)
	dirty=+dirty
	d=${d%-dirty}
	;;
esac
case $d in
v[0-9]*)
	after=$(printf '%s\n' "$d" | sed -n 's/^\(.*\)-\([0-9][0-9]*\)-g\([0-9a-f][0-9a-f]*\)$/\1 \2 \3/p')
	if [ -n "$after" ]; then
		set -- $after
		v="$(printf '%s' "${1#v}" | tr - '~')+git$2.g$3"
	else
		v=$(printf '%s' "${d#v}" | tr - '~')
	fi
	;;
*)
	v="0.0.0~git$(git rev-list --count HEAD).$d"
	;;
esac
echo "$v$dirty"
