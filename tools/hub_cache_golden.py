#!/usr/bin/env python3
"""The Hugging Face cache tree huggingface_hub writes, as a golden for cotune's downloader, and the two-way check.

Starts the tests' loopback fake Hub (build/tests/fake_hub) serving tests/fixtures/hub-golden as model
`org/golden`, points huggingface_hub at it with HF_ENDPOINT, downloads the whole repo with snapshot_download into
an empty HF_HOME, and writes a listing of the cache tree (every path, its kind, symlink target or SHA-256 of its
bytes) to tests/golden/hub/cache_tree.txt. tests/hub/golden_test.cpp downloads the same repo from the same fake with
cotune and compares its own listing line for line.

With --check COTUNE it also checks both directions with the real tools:
  1. cotune reads huggingface_hub's cache: `cotune download org/golden --all` into that cache downloads nothing;
  2. huggingface_hub reads cotune's cache: snapshot_download(local_files_only=True) over a cache cotune wrote finds
     every file with the same bytes.

  python3 tools/hub_cache_golden.py --fake-hub build/tests/fake_hub [--check build/bin/cotune]
Needs: pip install huggingface_hub (made with huggingface_hub 2.4.0).
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "hub-golden"
GOLDEN = ROOT / "tests" / "golden" / "hub" / "cache_tree.txt"
REPO = "org/golden"


def listing(cache: Path) -> str:
    """One line per entry under the cache: path<TAB>kind<TAB>detail (link target, or sha256 and size)."""
    lines = []
    for dirpath, dirnames, filenames in os.walk(cache, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(cache).as_posix()
            if p.is_symlink():
                lines.append(f"{rel}\tlink\t{os.readlink(p)}")
            elif p.is_dir():
                lines.append(f"{rel}\tdir\t")
            elif rel.startswith(".locks/"):
                lines.append(f"{rel}\tfile\t(lock)")  # lock files: presence only
            else:
                data = p.read_bytes()
                lines.append(f"{rel}\tfile\t{hashlib.sha256(data).hexdigest()} {len(data)}")
    return "\n".join(sorted(set(lines))) + "\n"


def start_fake(fake_hub: str, work: Path):
    port_file = work / "endpoint"
    proc = subprocess.Popen([fake_hub, "--port-file", str(port_file), "--model", f"{REPO}={FIXTURE}"])
    for _ in range(200):
        if port_file.exists() and port_file.read_text().strip():
            return proc, port_file.read_text().strip()
        time.sleep(0.05)
    proc.kill()
    sys.exit("fake_hub did not start")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fake-hub", required=True)
    ap.add_argument("--check", metavar="COTUNE", help="also run the two-way check with this cotune binary")
    ap.add_argument("--out", default=str(GOLDEN))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        proc, endpoint = start_fake(args.fake_hub, work)
        try:
            env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HOME=str(work / "hf"), HF_HUB_DISABLE_TELEMETRY="1",
                       HF_HUB_DISABLE_XET="1")
            env.pop("HF_HUB_CACHE", None)
            env.pop("HF_TOKEN", None)
            script = ("from huggingface_hub import snapshot_download, __version__\n"
                      f"p = snapshot_download({REPO!r})\nprint(__version__, p)\n")
            out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True)
            print("huggingface_hub", out.stdout.strip())
            text = listing(work / "hf" / "hub")
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text)
            print(f"wrote {args.out} ({text.count(chr(10))} entries)")
            if not args.check:
                return 0

            # 1. cotune over huggingface_hub's cache: nothing to download.
            r = subprocess.run([args.check, "download", REPO, "--all"], env=env, capture_output=True, text=True)
            if r.returncode != 0 or "0 file(s) downloaded" not in r.stderr:
                print("FAIL: cotune over huggingface_hub's cache:", r.stderr, r.stdout)
                return 1
            # 2. huggingface_hub over cotune's cache, offline.
            env2 = dict(env, HF_HOME=str(work / "hf2"))
            r = subprocess.run([args.check, "download", REPO, "--all"], env=env2, capture_output=True, text=True)
            if r.returncode != 0:
                print("FAIL: cotune download:", r.stderr)
                return 1
            check = ("import hashlib, pathlib, sys\nfrom huggingface_hub import snapshot_download\n"
                     f"p = pathlib.Path(snapshot_download({REPO!r}, local_files_only=True))\n"
                     f"src = pathlib.Path({str(FIXTURE)!r})\n"
                     "bad = [f for f in src.rglob('*') if f.is_file() and (p / f.relative_to(src)).read_bytes() != f.read_bytes()]\n"
                     "sys.exit(f'differs: {bad}' if bad else 0)\n")
            r = subprocess.run([sys.executable, "-c", check], env=dict(env2, HF_HUB_OFFLINE="1"), capture_output=True, text=True)
            if r.returncode != 0:
                print("FAIL: huggingface_hub over cotune's cache:", r.stderr)
                return 1
            mine = listing(work / "hf2" / "hub")
            if mine != text:
                print("FAIL: cotune's cache tree differs from huggingface_hub's")
                import difflib
                sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), mine.splitlines(True), "huggingface_hub", "cotune"))
                return 1
            print("both directions OK; the trees are identical")
            return 0
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
