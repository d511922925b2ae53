"""The last step before a learner's kernel starts: a cgroup, limits, a lower-privileged user, then exec.

Run by path with ``python -I -S launch.py SPEC`` (no site, no imports from the project), as
the command inside bubblewrap or straight from the grader (and around bubblewrap, to put it in
the kernel's cgroup). SPEC is JSON: ``cgroup`` (a ``cgroup.procs`` file to join first),
``rlimits`` (resource name -> limit, set as both soft and hard limit so the kernel cannot raise
them), ``uid``/``gid`` (drop to them when given: the grader runs as root), ``pdeathsig`` (die
with the grader) and ``argv`` (what to exec). Anything that fails here exits with status 121
and a line on stderr, which the grader reads as a failed kernel start.
"""
import ctypes
import json
import os
import resource
import signal
import sys


def main(spec: dict) -> None:
    if spec.get("cgroup"):                     # join the kernel's cgroup: everything started from here is in it
        with open(spec["cgroup"], "w") as f:
            f.write("0")
    for name, limit in spec.get("rlimits", {}).items():
        resource.setrlimit(getattr(resource, "RLIMIT_" + name), (limit, limit))
    if spec.get("uid") is not None:
        os.setgroups([])
        os.setgid(spec["gid"])
        os.setuid(spec["uid"])
        if os.getuid() != spec["uid"] or os.geteuid() != spec["uid"]:
            raise OSError("could not drop privileges")
    if spec.get("pdeathsig"):       # after setuid, which clears it
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))   # PR_SET_PDEATHSIG
        if os.getppid() != spec["parent"]:
            os._exit(121)           # the grader is already gone
    os.execv(spec["argv"][0], spec["argv"])


if __name__ == "__main__":
    try:
        main(json.loads(sys.argv[1]))
    except Exception as exc:
        print(f"sa-grader launch failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        os._exit(121)
