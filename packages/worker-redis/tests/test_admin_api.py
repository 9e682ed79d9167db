"""worker_redis.admin's public surface: a tuple __all__, every name importable and documented."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys

import worker_redis.admin as admin
from worker_redis.testing import redis_server


def test_all_is_a_complete_tuple() -> None:
    assert isinstance(admin.__all__, tuple)
    for name in admin.__all__:
        obj = getattr(admin, name)
        if callable(obj):
            assert obj.__doc__, name
    public = {n for n in vars(admin) if not n.startswith("_") and n not in ("annotations",)}
    assert public - set(admin.__all__) == set()


def test_every_admin_script_documents_its_keys_and_args() -> None:
    folder = importlib.resources.files("worker_redis") / "lua"
    scripts = [p for p in folder.iterdir() if p.name.startswith("admin_") and p.name.endswith(".lua")]
    assert len(scripts) == 9
    for script in scripts:
        text = script.read_text()
        assert text.startswith(f"-- {script.name}:"), script.name
        assert "KEYS[1]" in text or "ARGV[1]" in text, script.name
        assert "call('KEYS'" not in text.upper().replace("CALL('KEYS'", "call('KEYS'"), script.name  # never KEYS


def test_the_module_docstring_example_runs() -> None:
    assert admin.__doc__ is not None
    code = "\n".join(line[4:] for line in admin.__doc__.split("::\n", 1)[1].splitlines())
    with redis_server() as srv:
        code = code.replace("redis://localhost:6379/0", srv.url)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "0 0\n", "")
