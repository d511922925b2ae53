#!/usr/bin/env bash
# Make Debian's bubblewrap (bwrap) available for the grader's sandbox (sa_course.grade.sandbox).
# With it, a graded notebook sees the project read-only, writes only its scratch directory,
# has no network and cannot leave processes behind. Without it the grader still works, with
# weaker protection (docs/instructors.md says which). Never fails the build.
set -u
if ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's bubblewrap for the grader's sandbox (apt-get)..."
    (apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
      || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null)) \
      || echo "warning: could not install bubblewrap; the grader will run kernels without it"
  else
    echo "note: bubblewrap (bwrap) is missing; the grader runs kernels with weaker protection."
    echo "      Install it with: sudo apt-get install -y bubblewrap"
  fi
fi
exit 0
