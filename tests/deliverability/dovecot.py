"""A real Dovecot IMAP server for tests: its own config in a temp dir, plaintext login on
127.0.0.1 and a free port, one passwd-file user, maildir storage."""

from __future__ import annotations

import getpass
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require
from tests.smtp_server import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "imap-test-password"


@dataclass
class Dovecot:
    port: int
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"imap://{USER}:{PASSWORD}@127.0.0.1:{self.port}/INBOX"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _users() -> tuple[str, str, pwd.struct_passwd]:
    """(login user, internal user, mail owner): the current user, or when that is root
    (which Dovecot's login processes refuse) Debian's dovenull and dovecot users."""
    me = getpass.getuser()
    if os.geteuid() != 0:
        return me, me, pwd.getpwnam(me)
    return "dovenull", "dovecot", pwd.getpwnam("dovecot")


def _config(root: Path, port: int) -> str:
    login, internal, user = _users()
    group = grp.getgrgid(user.pw_gid).gr_name
    chroots = (
        ""
        if os.geteuid() == 0
        else "service anvil {\n  chroot =\n}\nservice imap-login {\n  chroot =\n}\n"
    )
    return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
mail_location = maildir:{root}/mail/%u
first_valid_uid = 0
mail_uid = {user.pw_uid}
mail_gid = {user.pw_gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={user.pw_uid} gid={user.pw_gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    user = {internal}
  }}
  unix_listener stats-writer {{
    user = {internal}
  }}
}}
{chroots}"""


def start_dovecot(root: Path) -> Dovecot:
    require(os.path.exists(DOVECOT), "dovecot (Debian dovecot-imapd) is not installed")
    root.chmod(0o755)  # Dovecot's unprivileged processes must reach their files
    owner = _users()[2]
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        if sub in ("mail", "home") and os.geteuid() == 0:
            os.chown(root / sub, owner.pw_uid, owner.pw_gid)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    (root / "passwd").chmod(0o644)  # a throwaway test password
    port = free_port()
    conf = root / "dovecot.conf"
    conf.write_text(_config(root, port))
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read().decode() if process.stdout else ""
            log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
            raise RuntimeError(f"dovecot exited: {out}\n{log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(100).startswith(b"* OK"):
                    return Dovecot(port, root, process)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("dovecot did not start listening")


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    # Not under pytest's own (0700) temp dir: Dovecot's unprivileged users must reach it.
    root = Path(tempfile.mkdtemp(prefix="bsd-dovecot-"))
    server = start_dovecot(root)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)
