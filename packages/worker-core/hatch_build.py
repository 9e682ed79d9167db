"""Build hook: carry a one-line fix to mypyc's runtime into worker-core's compiled build.

mypyc's compiled coroutines forward an exception thrown into them (asyncio's cancellation of a running task, a
timeout) to what they await with the three-argument ``throw(type, value, traceback)``, which Python 3.12
deprecated (mypyc/mypyc#1214, open). Every cancelled attempt of the compiled worker would emit a
``DeprecationWarning``, and under ``-W error`` that warning replaces the ``CancelledError``, so the task is never
interrupted. The single-argument ``throw(value)`` (valid on every supported Python) does the same without it.

The fix: ``CPy_YieldFromErrorHandle`` lives in mypyc's ``lib-rt/misc_ops.c``, which the generated C includes as
``<misc_ops.c>``. This hook writes a patched copy of the build environment's own file to a temporary directory
and puts that directory first on the C include path (``CPPFLAGS``, read by setuptools when the mypyc hook
compiles in its subprocess). It acts only when the mypyc hook is enabled (``HATCH_BUILD_HOOKS_ENABLE`` or
``HATCH_BUILD_HOOK_ENABLE_MYPYC``) and must be listed before it. When mypyc's code no longer holds the line
patched here, the build stops: check whether mypyc#1214 is fixed and drop or adjust this hook.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_OLD = "res = PyObject_CallFunctionObjArgs(_m, type, value, traceback, NULL);"
_NEW = "res = PyObject_CallOneArg(_m, value);  /* worker-core: single-argument throw() (mypyc#1214) */"
_TRUE = {"1", "true"}


def _mypyc_enabled() -> bool:
    return any(
        os.environ.get(name, "").lower() in _TRUE
        for name in ("HATCH_BUILD_HOOKS_ENABLE", "HATCH_BUILD_HOOK_ENABLE_MYPYC")
    )


class MypycThrowPatchHook(BuildHookInterface):  # type: ignore[type-arg]
    """Patch mypyc's ``CPy_YieldFromErrorHandle`` for the compiled build (see the module docstring)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Write the patched ``misc_ops.c`` and put it first on the include path, when compiling."""
        if self.target_name != "wheel" or not _mypyc_enabled():
            return
        import mypyc  # installed in the build environment by the mypyc hook's dependencies

        original = Path(mypyc.__file__).parent / "lib-rt" / "misc_ops.c"
        source = original.read_text(encoding="utf-8")
        if source.count(_OLD) != 1:
            raise RuntimeError(
                f"{original} no longer holds the three-argument throw() this build patches: see whether "
                "mypyc/mypyc#1214 is fixed, then drop or adjust packages/worker-core/hatch_build.py"
            )
        patched_dir = Path(tempfile.mkdtemp(prefix="worker-core-mypyc-"))
        (patched_dir / "misc_ops.c").write_text(source.replace(_OLD, _NEW), encoding="utf-8")
        os.environ["CPPFLAGS"] = f"-I{patched_dir} {os.environ.get('CPPFLAGS', '')}".strip()
