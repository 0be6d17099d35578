"""A throwaway PostgreSQL server for the tests: the session fixture ``postgres_url``.

It runs Debian's server binaries (``initdb`` on ``PATH`` or under
``/usr/lib/postgresql/<version>/bin``; ``apt-get install postgresql``) from a temporary
directory: a fresh cluster with trust authentication, listening only on 127.0.0.1 on a free
port, its unix sockets in that directory, fsync off. PostgreSQL refuses to run as root, so
as root the server runs as the unprivileged user ``nobody`` (through ``runuser`` or
``setpriv``) in a directory that user owns. The server is stopped and the directory removed
at the end of the session, also when a test fails.

Without the binaries the tests that use the fixture skip, naming the reason; with the
environment variable ``CI`` set they fail instead (CI installs the server, so a missing one
is a broken image, not a reason to pass green).

Use it by importing the fixture into the test module::

    from tests._postgres import postgres_url  # noqa: F401  (a pytest fixture)
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

USER = "bergab"  # the cluster's superuser, who connects without a password (trust)
DATABASE = "bergab_test"
UNPRIVILEGED = "nobody"  # who runs the server when the tests run as root
TIMEOUT = 60  # seconds for each of initdb, pg_ctl and createdb


class UnavailableError(Exception):
    """No server can be started here; the message says why."""


def server_bin_dir() -> Path:
    """The directory of ``initdb``, ``pg_ctl``, ``postgres`` and ``createdb``."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []

    def version(d: str) -> tuple[int, ...]:
        v = Path(d).parent.name
        return tuple(int(p) for p in v.split(".") if p.isdigit())

    candidates += [
        Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)[::-1]
    ]
    for d in candidates:
        if all((d / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres", "createdb")):
            return d
    raise UnavailableError(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres, createdb) on PATH or under "
        "/usr/lib/postgresql/*/bin; install Debian's package: apt-get install postgresql"
    )


def _as_user_prefix() -> tuple[list[str], int, int]:
    """The command prefix that drops root to ``nobody``, and that user's uid and gid."""
    if os.geteuid() != 0:
        return [], os.geteuid(), os.getegid()
    try:
        pw = pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        raise UnavailableError(
            f"running as root and there is no user {UNPRIVILEGED!r} to run PostgreSQL as"
        ) from None
    if shutil.which("runuser"):
        return ["runuser", "-u", UNPRIVILEGED, "--"], pw.pw_uid, pw.pw_gid
    if shutil.which("setpriv"):
        ids = ["--reuid", str(pw.pw_uid), "--regid", str(pw.pw_gid), "--clear-groups"]
        return ["setpriv", *ids], pw.pw_uid, pw.pw_gid
    raise UnavailableError(
        "running as root and neither runuser nor setpriv can drop to another user"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One PostgreSQL cluster in a temporary directory."""

    def __init__(self) -> None:
        self.bin = server_bin_dir()
        self.prefix, uid, gid = _as_user_prefix()
        self.root = Path(tempfile.mkdtemp(prefix="bergab-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.started = False
        if self.prefix:
            try:
                os.chown(self.root, uid, gid)
            except OSError as exc:
                shutil.rmtree(self.root, ignore_errors=True)
                raise UnavailableError(
                    f"cannot give {self.root} to {UNPRIVILEGED}: {exc}"
                ) from None

    def _run(self, *args: str) -> None:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        env.pop("PGDATA", None)
        try:
            proc = subprocess.run(
                [*self.prefix, str(self.bin / args[0]), *args[1:]],
                cwd=self.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UnavailableError(f"{args[0]} did not run: {exc}") from None
        if proc.returncode != 0:
            out = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            log = self.log.read_text().strip().splitlines()[-5:] if self.log.exists() else []
            raise UnavailableError(f"{args[0]} failed ({proc.returncode}): {' | '.join(out + log)}")

    def start(self) -> str:
        """Create the cluster and the database, start the server; return the URL."""
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")  # fmt: skip
        for attempt in range(3):  # another process may take the free port in between
            self.port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=100"
            )
            try:
                self._run("pg_ctl", "start", "-w", "-t", str(TIMEOUT), "-D", str(self.data),
                          "-l", str(self.log), "-o", options)  # fmt: skip
                break
            except UnavailableError:
                if attempt == 2:
                    raise
        self.started = True
        self._watch()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _watch(self) -> None:
        """A detached watchdog that stops the server and removes its folder once this
        process is gone: a test run killed from outside (SIGKILL, a CI timeout) runs no
        teardown, and would otherwise leave the server running."""
        pg_ctl = shlex.join([*self.prefix, str(self.bin / "pg_ctl"), "stop", "-m", "immediate",
                             "-D", str(self.data)])  # fmt: skip
        script = (
            f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
            f"if [ -e {shlex.quote(str(self.data / 'postmaster.pid'))} ]; then "
            f"{pg_ctl} >/dev/null 2>&1; fi; rm -rf {shlex.quote(str(self.root))}"
        )
        # started through a shell that returns at once: no child is left to this process
        detached = f"setsid sh -c {shlex.quote(script)} >/dev/null 2>&1 </dev/null &"
        subprocess.run(["sh", "-c", detached], check=False, timeout=TIMEOUT)

    def stop(self) -> None:
        """Stop the server (fast: disconnect the clients) and remove the directory."""
        try:
            if self.started or (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data))
        except UnavailableError:
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL server needed in CI: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL server: {reason}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a fresh database on a throwaway local PostgreSQL server (no password)."""
    server = None
    try:
        server = Server()
        url = server.start()
    except UnavailableError as exc:
        if server is not None:
            server.stop()
        reason = str(exc)
    else:
        reason = ""
    if reason:
        _unavailable(reason)
    try:
        yield url
    finally:
        server.stop()
