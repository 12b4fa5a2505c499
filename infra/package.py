"""`make package`: build the deployment package as the remote build does, and report its size.

The files azd (or `func azure functionapp publish`) uploads are the app folder less what .funcignore names; the
remote build then runs `pip install -r requirements.txt` into `.python_packages/lib/site-packages`. This does
both into OUT (default build/package), zips the result, and prints the sizes: the package's site-packages (pip
and setuptools are not installed by `--target`), the app files, and the biggest distributions.
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SITE_PACKAGES = Path(".python_packages/lib/site-packages")


def ignore_patterns(app_dir: Path = REPO) -> list[str]:
    lines = (app_dir / ".funcignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str], is_dir: bool = False) -> bool:
    """gitignore-style, as .funcignore is read: a pattern without a slash matches a name at any depth, one with
    a leading or inner slash matches from the app folder; a trailing slash matches folders only."""
    parts = relative.split("/")
    for raw in patterns:
        pattern = raw.rstrip("/")
        if pattern.startswith("/") or "/" in pattern.strip("/"):
            anchored = pattern.lstrip("/")
            if any(fnmatch.fnmatchcase("/".join(parts[:i]), anchored) for i in range(1, len(parts) + 1)):
                return True
        else:
            names = parts[:-1] if raw.endswith("/") and not is_dir else parts
            if any(fnmatch.fnmatchcase(name, pattern.lstrip("/")) for name in names):
                return True
    return False


def app_files(app_dir: Path = REPO) -> list[str]:
    """The files the deployment uploads, relative to the app folder."""
    patterns = ignore_patterns(app_dir)
    kept = []
    for folder, dirs, files in os.walk(app_dir):
        base = Path(folder).relative_to(app_dir).as_posix()
        prefix = "" if base == "." else f"{base}/"
        dirs[:] = sorted(d for d in dirs if not ignored(prefix + d, patterns, is_dir=True))
        kept.extend(prefix + name for name in sorted(files) if not ignored(prefix + name, patterns))
    return kept


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "package")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    app = out / "app"
    if app.exists():
        shutil.rmtree(app)
    files = app_files()
    for relative in files:
        target = app / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, target)
    app_bytes = tree_bytes(app)
    # pip compiles .pyc as it installs, as the remote build's pip does: they are part of the deployed size.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--target", str(app / SITE_PACKAGES), "-r", str(app / "requirements.txt")],
                   check=True)
    site = app / SITE_PACKAGES
    archive = shutil.make_archive(str(out / "package"), "zip", app)
    mb = 1 << 20
    print(f"app files        {len(files):6d} files {app_bytes / mb:8.1f} MB")
    print(f"site-packages                 {tree_bytes(site) / mb:8.1f} MB  (pip install -r requirements.txt)")
    print(f"package, unzipped             {tree_bytes(app) / mb:8.1f} MB")
    print(f"package, zipped               {Path(archive).stat().st_size / mb:8.1f} MB  {archive}")
    sizes = sorted(((tree_bytes(p), p.name) for p in site.iterdir() if p.is_dir() and not p.name.endswith("-info")),
                   reverse=True)
    print("largest:", ", ".join(f"{name} {size / mb:.0f} MB" for size, name in sizes[:8]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
