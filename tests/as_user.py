"""Run optexp as an unprivileged user, for the tests of read-only and unreadable paths:
file permissions mean nothing to root, whom the suite often runs as.

`user_prefix()` is the command prefix (empty when the suite already runs as a user). As
root it is this file run as a script, which drops to the user `nobody` (no groups, no
capabilities) and runs the command:

    python tests/as_user.py UID GID [HIDDEN KEEP ...] -- COMMAND ...

The Python the tests run may live where `nobody` cannot enter, e.g. under root's 0700
home (/root/.pyenv). Each HIDDEN KEEP pair then shows `nobody` the folder HIDDEN as an
empty 0755 one holding only KEEP (the interpreter's tree), in a mount namespace of the
command's own (`unshare -m --propagation private`): the same paths, nothing outside the
command sees a change, and the command itself runs with no privilege at all.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import site
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
USER = "nobody"


def hidden_folders(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(HIDDEN, KEEP) for each path below a folder that others cannot enter: HIDDEN is
    the first such folder, KEEP its entry on the way to the path."""
    pairs = []
    for path in paths:
        for folder in path.parents[::-1][1:]:  # from the top, / excluded
            if not folder.stat().st_mode & stat.S_IXOTH:
                keep = folder / path.relative_to(folder).parts[0]
                pairs.append((folder, keep))
                break
    return sorted(set(pairs))


@functools.cache
def user_prefix() -> tuple[str, ...] | str:
    """The prefix that runs a command as an unprivileged user, or why there is none."""
    if os.geteuid() != 0:
        return ()
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        return f"root, and no user {USER!r} to run as"
    needed = [Path(p).resolve() for p in (sys.prefix, sys.base_prefix, *site.getsitepackages())]
    pairs = hidden_folders([*needed, REPO])
    prefix: tuple[str, ...] = (sys.executable, __file__, str(user.pw_uid), str(user.pw_gid))
    if pairs:
        if not shutil.which("unshare"):
            return f"root, and {pairs[0][0]} hides Python from {USER} (no unshare to show it)"
        views = [str(p) for pair in pairs for p in pair]
        prefix = ("unshare", "-m", "--propagation", "private", *prefix, *views)
    prefix = (*prefix, "--")
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", "import os, torch, optexp; print(os.geteuid())"],
            capture_output=True, text=True, cwd=folder, check=False,
            env=os.environ | {"PYTHONPATH": str(REPO), "HOME": folder},
        )  # fmt: skip
    if probe.returncode != 0 or probe.stdout.strip() != str(user.pw_uid):
        lines = (probe.stderr or probe.stdout).strip().splitlines() or ["no output"]
        return f"root, and {USER} cannot run optexp here: {lines[-1]}"
    return prefix


def show(hidden: str, keeps: list[str]) -> None:
    """Cover `hidden` with an empty 0755 folder holding only `keeps` (this namespace's)."""
    stages = []
    for keep in keeps:
        stages.append(tempfile.mkdtemp())
        subprocess.run(["mount", "--bind", keep, stages[-1]], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "optexp-view", hidden], check=True)
    for keep, stage in zip(keeps, stages, strict=True):
        os.makedirs(keep, exist_ok=True)
        subprocess.run(["mount", "--move", stage, keep], check=True)
        os.rmdir(stage)


def main(argv: list[str]) -> None:
    end = argv.index("--")
    uid, gid, *views = argv[:end]
    folders: dict[str, list[str]] = {}
    for hidden, keep in zip(views[::2], views[1::2], strict=True):
        folders.setdefault(hidden, []).append(keep)
    for hidden, keeps in folders.items():
        show(hidden, keeps)
    os.setgroups([])
    os.setgid(int(gid))
    os.setuid(int(uid))
    os.execvp(argv[end + 1], argv[end + 1 :])


if __name__ == "__main__":
    main(sys.argv[1:])
