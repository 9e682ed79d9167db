"""Every code block of the documentation: Python blocks run to completion, shell commands exist.

Python blocks run one by one, each in its own interpreter (``sys.executable -c``: a block is a whole program,
``asyncio.run`` and all) in a scratch directory, with a private server when its marker asks for one (see
``blocks.py``). A block that exits non-zero, or runs past its time limit, fails with its output.

Shell blocks (``bash``, and the ``$`` lines of ``console``) are not run (they talk to deployments), but each
command must exist: a ``workerctl`` line must name real subcommands and options (checked against the click
tree), ``uv run``/``python`` lines a file of the repository, ``nox -s`` lines a session of the noxfile, and any
other program must be on ``PATH``.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click
import pytest
from blocks import CODE_LANGUAGES, NEEDS, OUTPUT_LANGUAGES, ROOT, Block, all_blocks

BLOCKS = all_blocks()
PYTHON = [b for b in BLOCKS if b.lang == "python"]
SHELL = [b for b in BLOCKS if b.lang in ("bash", "console")]
INI = [b for b in BLOCKS if b.lang == "ini"]
#: Seconds one Python block may take (a block is a small program; a private server is already up).
BLOCK_TIMEOUT_S = 60
#: Shell builtins and programs any POSIX machine has, which PATH lookup would not find (or need not).
BUILTINS = frozenset({"export", "cd", "echo", "kill", "source", "set"})
#: Programs the pages name that are installed where the page says (a deployment), not here.
ELSEWHERE = frozenset({"systemctl", "journalctl", "docker", "kubectl", "grpcurl"})


def test_every_block_has_a_known_language_and_marker() -> None:
    assert BLOCKS, "no code block found: the pages moved?"
    for block in BLOCKS:
        assert block.lang in CODE_LANGUAGES | OUTPUT_LANGUAGES, f"{block.id}: fence language {block.lang!r}"
        assert block.needs is None or block.needs in NEEDS, f"{block.id}: unknown need {block.needs!r}"
        if block.skip is not None:
            assert block.skip.strip(), f"{block.id}: a skip marker needs its reason"


# -- python ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    from worker_redis.testing import redis_server

    with redis_server() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    from worker_redis.testing import redis_cluster

    with redis_cluster(3) as cluster:
        yield cluster.url


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import trustme

    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.private_key_pem.write_to_path(str(folder / "server-key.pem"))
    server.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
    client = ca.issue_cert("client.example")
    client.private_key_pem.write_to_path(str(folder / "client-key.pem"))
    client.cert_chain_pems[0].write_to_path(str(folder / "client.pem"))
    return folder


class _OTLPReceiver(ThreadingHTTPServer):
    """Accepts OTLP/HTTP posts on loopback and remembers their paths (the bodies are not decoded here)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OTLPHandler)
        self.paths: list[str] = []


class _OTLPHandler(BaseHTTPRequestHandler):
    server: _OTLPReceiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[_OTLPReceiver]:
    server = _OTLPReceiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_block_runs(block: Block, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if block.skip is not None:
        pytest.skip(f"marked in the page: {block.skip}")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "examples"), "WORKER_PLUGINS_AUTOLOAD": "1"}
    env.pop("REDIS_URL", None)
    if block.needs == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    elif block.needs == "redis-cluster":
        env["REDIS_URL"] = request.getfixturevalue("redis_cluster_url")
    elif block.needs == "tls-files":
        env["TLS_DIR"] = str(request.getfixturevalue("tls_dir"))
    receiver: _OTLPReceiver | None = None
    if block.needs == "otlp-receiver":
        receiver = request.getfixturevalue("otlp_receiver")
        host, port = receiver.server_address[:2]
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://{host!s}:{port}"
        posted = len(receiver.paths)
    try:
        done = subprocess.run(
            [sys.executable, "-c", block.code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.id}: still running after {BLOCK_TIMEOUT_S} s\n{exc.stdout!r}\n{exc.stderr!r}")
    output = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, f"{block.id} exited {done.returncode}\n{output}"
    if receiver is not None:
        assert len(receiver.paths) > posted, f"{block.id} exported nothing to the OTLP receiver\n{output}"


# -- shell -------------------------------------------------------------------------------------------------


def commands(block: Block) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments and prompts removed."""
    lines = block.code.splitlines()
    if block.lang == "console":  # only what is typed after the prompt (and its continuations)
        typed: list[str] = []
        continuing = False
        for line in lines:
            if line.startswith("$ "):
                typed.append(line[2:])
            elif continuing:
                typed.append(line)
            else:
                continue
            continuing = line.rstrip().endswith("\\")
        lines = typed
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out: list[list[str]] = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        for part in _split_pipes(words):
            while part and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", part[0]):  # VAR=value before a command
                part = part[1:]
            if part:
                out.append(part)
    return out


def _split_pipes(words: list[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in words:
        if word in ("|", "&&", "||", ";"):
            parts.append([])
        else:
            parts[-1].append(word)
    return parts


def _nox_sessions() -> set[str]:
    text = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    return set(re.findall(r"@nox\.session\([^)]*\)\n(?:@nox\.parametrize\([^\n]*\)\n)?def (\w+)\(", text))


def check_workerctl(argv: list[str]) -> None:
    """Each word names a subcommand until a command; each ``--option`` must be one of that command's."""
    from workerctl._app import cli

    command: click.Command = cli
    path = ["workerctl"]
    words = iter(argv)
    for word in words:
        if isinstance(command, click.Group) and not word.startswith("-"):
            sub = command.commands.get(word)
            assert sub is not None, f"{' '.join(path)} has no subcommand {word!r}"
            command, path = sub, [*path, word]
            continue
        if word.startswith("--") or (word.startswith("-") and len(word) == 2):
            name = word.split("=", 1)[0]
            known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
            known |= {"--help", "-h"}
            assert name in known, f"{' '.join(path)} has no option {name!r}"


def check_command(words: list[str]) -> None:
    program = words[0]
    if program in BUILTINS or program in ELSEWHERE:
        return
    if program == "workerctl":
        check_workerctl(words[1:])
        return
    rest = words[1:]
    if program in ("uvx", "nox") or (program == "uv" and rest[:1] == ["run"] and "nox" in rest):
        if "-s" in words:
            session = words[words.index("-s") + 1]
            base = re.split(r"[-(]", session, maxsplit=1)[0]
            assert base in _nox_sessions(), f"nox has no session {session!r}"
        return
    if program in ("uv", "python", "python3"):
        scripts = [w for w in rest if w.endswith(".py")]
        for script in scripts:
            assert (ROOT / script).is_file(), f"{script} does not exist in the repository"
        return
    assert shutil.which(program) is not None, f"{program!r} is not on PATH"


@pytest.mark.parametrize("block", SHELL, ids=[b.id for b in SHELL])
def test_shell_block_commands_exist(block: Block) -> None:
    if block.skip is not None:
        pytest.skip(f"marked in the page: {block.skip}")
    found = commands(block)
    assert found, f"{block.id}: a shell block with no command"
    for words in found:
        try:
            check_command(words)
        except AssertionError as exc:
            raise AssertionError(f"{block.id}: {shlex.join(words)}: {exc}") from None


@pytest.mark.parametrize("block", INI, ids=[b.id for b in INI])
def test_ini_block_parses(block: Block) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(block.code)
    assert parser.sections()
