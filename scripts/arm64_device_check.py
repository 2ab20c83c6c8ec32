#!/usr/bin/env python3
"""Prove the device side on arm64: an emulated Raspberry Pi OS (Debian 12 bookworm arm64, Python 3.11).

Builds (once, cached under ~/.cache/edgetl/arm64-bookworm) an arm64 Debian root with debootstrap,
runs it under qemu-user-static through binfmt_misc, and inside it, as a Pi user would:

  1. installs the workstation's edgetl wheel into a venv with `[litert]`, as device/README.md says
     (system NumPy 1.24 kept with "numpy==1.*"), checks no TensorFlow-side package came with it,
     then adds `[onnx]`;
  2. classifies the same images as this x86 machine with every runnable format of each bundle
     (fused with --unknown off; split = base-<format> + head.npz with the open-world detector on)
     and compares every label and score;
  3. runs `run --self-test`, `bench`, `update-head` and `rollback-head` on a copy of the bundle;
  4. with --validate, runs `edgetl validate` there, so the bundle's validation.json gets an aarch64
     section next to x86_64's (copied back into the bundle);
  5. runs device/install.sh in the root (systemd is not started) and `systemd-analyze verify` on
     the unit it fills in.

One JSON summary goes to stdout (progress to stderr). Exit 0: every check passed, or the check was
skipped (no root user, no qemu/binfmt_misc, no Debian mirror), with the reason in the JSON;
exit 1: a check failed. Emulated timings are meaningless: correctness only.

  sudo python3 scripts/arm64_device_check.py                    # quick: a tiny bundle, a few images
  sudo python3 scripts/arm64_device_check.py --bundle bundles/cats_dogs \
      --data ../shared/datasets/cats_and_dogs_filtered/validation --per-class 0 --validate
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgetl" / "arm64-bookworm"
MIRROR = "http://deb.debian.org/debian"
# python3-numpy: Raspberry Pi OS has NumPy 1.24 from apt (Picamera2 is built for it);
# systemd: for systemd-analyze verify of the unit install.sh fills in.
PACKAGES = "python3,python3-venv,python3-pip,python3-numpy,ca-certificates,systemd"
WORK = "/opt/edgetl-check"  # inside the root
VENV = f"{WORK}/venv"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
# The CPU qemu emulates, and the /proc/cpuinfo shown to the root (qemu-user would show the host's
# x86 one: onnxruntime's CPU detection then crashes on import, SIGSEGV, measured with onnxruntime
# 1.32.0 and qemu 7.2). The two must agree: XNNPACK picks its int8 kernels from them. qemu's default
# "max" CPU has ARMv9 features no Pi has, under which LiteRT int8 gave outputs up to 206 of 255
# levels away from the same CPU's reference kernels (docs/arm64.md).
CPUS = {
    "cortex-a76": (
        "Raspberry Pi 5",
        "0x4",
        "0xd0b",
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
    ),
    "cortex-a72": ("Raspberry Pi 4", "0x0", "0xd08", "fp asimd evtstrm crc32 cpuid"),
}
CPUINFO = """processor\t: {i}
BogoMIPS\t: 108.00
Features\t: {features}
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: {variant}
CPU part\t: {part}
CPU revision\t: 1

"""
TRAINING_SIDE = ("tensorflow", "tensorflow-cpu", "tf-keras", "keras", "tensorflow-model-optimization", "tf2onnx")
TOLERANCE = 1e-3  # the largest score difference x86 vs arm64 that passes (measured: 0.0 for float formats)
# A fused int8 model's probabilities are int8 levels of 1/256: with the default taps on real weights, one
# image of 40 (flowers, 2026-12-03) came out one level apart on arm64, labels and accuracy identical.
INT8_TOLERANCE = 1 / 256 + 1e-6
IMAGE_TYPES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def log(message: str) -> None:
    print(f"[arm64-check] {message}", file=sys.stderr, flush=True)


class Skip(Exception):
    """The machine cannot run the check (reported, exit 0)."""


class Root:
    """An arm64 Debian root entered with chroot; commands run through qemu-aarch64 via binfmt_misc."""

    def __init__(self, path: Path, cpu: str):
        self.path = path
        self.cpu = cpu
        self.mounted: list[Path] = []

    def __enter__(self) -> Root:
        try:
            cpuinfo = self.path.parent / "cpuinfo"
            _, variant, part, features = CPUS[self.cpu]
            fields = {"variant": variant, "part": part, "features": features}
            cpuinfo.write_text("".join(CPUINFO.format(i=i, **fields) for i in range(os.cpu_count() or 1)))
            mounts = (("proc", "proc", "proc"), ("--bind", "/dev", "dev"), ("sysfs", "sysfs", "sys"))
            for kind, source, target in (*mounts, ("--bind", str(cpuinfo), "proc/cpuinfo")):
                where = self.path / target
                flag = [kind] if kind == "--bind" else ["-t", kind]
                subprocess.run(["mount", *flag, source, str(where)], check=True)
                self.mounted.append(where)
        except subprocess.CalledProcessError:
            self.__exit__()
            raise
        shutil.copy("/etc/resolv.conf", self.path / "etc/resolv.conf")
        if Path(HOST_CA).exists():  # a TLS-inspecting proxy's CA, for pip inside the root
            shutil.copy(HOST_CA, self.path / "etc/ssl/certs/edgetl-host-ca.crt")
        return self

    def __exit__(self, *exc) -> None:
        for where in reversed(self.mounted):
            subprocess.run(["umount", "-l", where], check=False)

    def host_path(self, inner: str) -> Path:
        return self.path / inner.lstrip("/")

    def sh(self, script: str, timeout: int = 3600, stdin: str | None = None) -> subprocess.CompletedProcess:
        env = {
            "HOME": "/root",
            "PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
            "QEMU_CPU": self.cpu,
            "PIP_CERT": "/etc/ssl/certs/edgetl-host-ca.crt",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_DEFAULT_TIMEOUT": "180",
        }
        args = [f"{k}={v}" for k, v in env.items()]
        cmd = ["chroot", str(self.path), "/usr/bin/env", "-i", *args, "/bin/bash", "-c", script]
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)


def ensure_emulation() -> None:
    """qemu-aarch64 registered in binfmt_misc (installing qemu-user-static/debootstrap if needed), or Skip."""
    if os.geteuid() != 0:
        raise Skip("needs root (chroot, mount): run with sudo")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], capture_output=True)
    if not (binfmt / "register").exists():
        raise Skip("binfmt_misc cannot be mounted here (mount -t binfmt_misc failed)")
    if not (shutil.which("debootstrap") and (binfmt / "qemu-aarch64").exists()):
        log("installing qemu-user-static, binfmt-support and debootstrap with apt-get")
        for cmd in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "qemu-user-static", "binfmt-support", "debootstrap"],
        ):
            done = subprocess.run(
                cmd, capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            )
            if done.returncode != 0 and cmd[1] == "install":
                raise Skip(f"apt-get install qemu-user-static debootstrap failed: {done.stderr.strip()[-300:]}")
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not (binfmt / "qemu-aarch64").exists():
        raise Skip("qemu-aarch64 is not registered in binfmt_misc (update-binfmts --enable qemu-aarch64 failed)")


def ensure_root(cache: Path) -> Path:
    """The cached arm64 bookworm root (debootstrap on first use, ~5 min), or Skip when the mirror is unreachable."""
    root = cache / "root"
    if (root / ".edgetl-ready").exists():
        return root
    tmp = cache / "root.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    log(f"debootstrap --arch=arm64 bookworm into {root} (first run only)")
    cmd = ["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(tmp), MIRROR]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise Skip(f"debootstrap failed (Debian mirror {MIRROR}): {done.stdout.strip()[-300:]}")
    (tmp / ".edgetl-ready").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def build_wheel(dest: Path) -> Path:
    """The workstation's wheel of this checkout, as device/README.md tells a Pi user to build it."""
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dest), str(REPO)]
    subprocess.run(cmd, check=True, capture_output=True)
    return next(dest.glob("edgetl-*.whl"))


def check(results: dict, name: str, ok: bool, **details) -> bool:
    results["checks"][name] = {"passed": bool(ok), **details}
    log(f"{'ok  ' if ok else 'FAIL'} {name} {json.dumps(details)[:300]}")
    return ok


def pip_packages(root: Root, python: str) -> dict[str, str]:
    done = root.sh(f"{python} -m pip list --format json")
    return {p["name"].lower(): p["version"] for p in json.loads(done.stdout or "[]")}


def install(root: Root, wheel: str, results: dict) -> None:
    """device/README.md's commands: a --system-site-packages venv, the wheel with [litert], then [onnx]."""
    root.sh(f"rm -rf {VENV} && python3 -m venv --system-site-packages {VENV}")
    for extra in ("litert", "onnx"):
        done = root.sh(f'{VENV}/bin/pip install --quiet "{wheel}[{extra}]" "numpy==1.*"')
        packages = pip_packages(root, f"{VENV}/bin/python")
        bad = sorted(p for p in packages if p in TRAINING_SIDE)
        version = root.sh(f"{VENV}/bin/edgetl --version")
        ok = done.returncode == 0 and not bad and version.returncode == 0
        check(
            results,
            f"install[{extra}]",
            ok,
            training_side_packages=bad,
            versions={k: packages.get(k) for k in ("edgetl", "numpy", "pillow", "ai-edge-litert", "onnxruntime")},
            error=done.stderr.strip()[-500:] if done.returncode else None,
        )
    system = root.sh("python3 -c 'import platform,sys; print(platform.machine(), sys.version.split()[0])'")
    results["machine"] = {
        "arch_python": system.stdout.strip(),
        "os": root.sh(". /etc/os-release; echo $PRETTY_NAME").stdout.strip(),
    }


def image_list(data: Path, per_class: int) -> list[Path]:
    """Sorted images per class folder, at most per_class each (0: all)."""
    paths = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_TYPES)
        paths += files[:per_class] if per_class else files
    return paths


def runnable_formats(bundle: Path) -> list[tuple[str, str, list[str]]]:
    """(name, --format, extra flags) for the fused and split forms that `edgetl run` can be asked for."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    models = manifest["models"]
    wanted = ("tflite-int8", "tflite-float32", "onnx", "onnx-int8")
    cases = []
    for fmt in (f for f in wanted if f in models):
        cases.append((fmt, fmt, ["--unknown", "off"]))
        if f"base-{fmt}" in models and "openworld" in manifest:
            cases.append((f"base-{fmt}", fmt, ["--unknown", "on"]))
    return cases


def parse_run(stdout: str) -> dict[str, tuple[str, float]]:
    """`edgetl run --json` lines -> {<class>/<file>: (top label, its score)}; the top label even when `unknown`."""
    rows = {}
    for line in stdout.splitlines():
        record = json.loads(line)
        top = record["top_k"][0]
        rows["/".join(Path(record["path"]).parts[-2:])] = (top["label"], float(top["score"]))
    return rows


def host_edgetl() -> list[str]:
    return [sys.executable, "-c", "from edgetl.cli import main; main()"]


def compare(x86: dict, arm: dict, keys: list[str]) -> dict:
    """Label agreement, score differences and accuracy (the label is the class folder) on both sides."""
    n = len(keys)
    pairs = [(x86[k], arm[k], k.split("/")[0]) for k in keys]
    diffs = [abs(a[1] - b[1]) for a, b, _ in pairs]
    return {
        "images": n,
        "label_agreement": round(sum(a[0] == b[0] for a, b, _ in pairs) / n, 4),
        "max_score_diff": round(max(diffs), 5),
        "mean_score_diff": round(sum(diffs) / n, 5),
        "x86_accuracy": round(sum(a[0] == t for a, _, t in pairs) / n, 4),
        "arm64_accuracy": round(sum(b[0] == t for _, b, t in pairs) / n, 4),
    }


def classify_both(
    root: Root, bundle: Path, inner_bundle: str, data: Path, inner_data: str, per_class: int, results: dict
) -> dict:
    """Every runnable format on the same images (per_class of each class, 0: all), here and in the root:
    agreement and score differences."""
    paths = image_list(data, per_class)
    keys = ["/".join(p.parts[-2:]) for p in paths]
    inner_paths = "\n".join(f"{inner_data}/{key}" for key in keys) + "\n"
    table = {}
    for name, fmt, flags in runnable_formats(bundle):
        here = subprocess.run(
            [*host_edgetl(), "run", str(bundle), "-", "--json", "--format", fmt, *flags],
            input="\n".join(map(str, paths)) + "\n",
            capture_output=True,
            text=True,
        )
        log(f"{bundle.name} {name}: {len(paths)} images on arm64 (emulated)")
        there = root.sh(f"edgetl run {inner_bundle} - --json --format {fmt} {' '.join(flags)}", stdin=inner_paths)
        if here.returncode or there.returncode:
            check(results, f"run[{bundle.name}:{name}]", False, x86=here.stderr[-300:], arm64=there.stderr[-300:])
            continue
        row = compare(parse_run(here.stdout), parse_run(there.stdout), keys)
        table[name] = row
        log(f"{bundle.name} {name}: {json.dumps(row)}")
        # int8 kernels may round one level apart across architectures (measured: docs/arm64.md); labels must agree
        tolerance = INT8_TOLERANCE if "int8" in name else TOLERANCE
        ok = row["max_score_diff"] <= tolerance and row["label_agreement"] == 1.0
        check(results, f"agreement[{bundle.name}:{name}]", ok, tolerance=round(tolerance, 6), **row)
    return table


def device_commands(root: Root, inner_bundle: str, inner_data: str, results: dict, tag: str) -> None:
    """self-test, bench, update-head (forced, so that there is a head to roll back) and rollback-head."""
    done = root.sh(f"edgetl run {inner_bundle} --self-test --json")
    check(results, f"self-test[{tag}]", done.returncode == 0, output=(done.stdout or done.stderr).strip()[-400:])
    done = root.sh(f"edgetl bench {inner_bundle} --runs 2 --format tflite-int8 --json")
    check(results, f"bench[{tag}]", done.returncode == 0, error=done.stderr.strip()[-300:] if done.returncode else None)
    done = root.sh(f"edgetl update-head {inner_bundle} --data {inner_data} --epochs 20 --force --json")
    record = json.loads(done.stdout or "{}") if done.returncode == 0 else {}
    check(
        results,
        f"update-head[{tag}]",
        done.returncode == 0,
        exit_code=done.returncode,
        holdout=record.get("new_accuracy", record.get("accuracy")),
        error=done.stderr.strip()[-300:] or None,
    )
    done = root.sh(f"edgetl rollback-head {inner_bundle} --json")
    head = json.loads(done.stdout).get("head", "missing") if done.returncode == 0 else "missing"
    check(
        results,
        f"rollback-head[{tag}]",
        done.returncode == 0 and head is None,
        exit_code=done.returncode,
        head_after=head,
        error=done.stderr.strip()[-300:] or None,
    )


def validate_on_arm64(root: Root, bundle: Path, inner_bundle: str, inner_data: str, results: dict) -> None:
    """`edgetl validate` of the int8 formats in the root (the float reference comes with them); its
    validation.json, now holding an aarch64 section next to the workstation's, goes back into the bundle.
    Target: every int8 format within 0.3 pp of the workstation's accuracy on the same images."""
    models = json.loads((bundle / "manifest.json").read_text())["models"]
    int8 = ",".join(f for f in models if "int8" in f)
    done = root.sh(
        f"edgetl validate {inner_bundle} --data {inner_data} --formats {int8} --max-drop 100 --no-report --json"
    )
    ok = check(results, f"validate[{bundle.name}]", done.returncode == 0, error=done.stderr.strip()[-400:] or None)
    if not ok:
        return
    tmp = bundle / ".validation.json.arm64-check"
    shutil.copy(root.host_path(inner_bundle) / "validation.json", tmp)
    os.replace(tmp, bundle / "validation.json")
    sections = json.loads((bundle / "validation.json").read_text()).get("architectures", {})
    x86, arm = sections.get(platform.machine(), {}), sections.get("aarch64", {})
    rows = {}
    for fmt, entry in arm.get("formats", {}).items():
        here = x86.get("formats", {}).get(fmt, {}).get("accuracy")
        if here is not None:
            rows[fmt] = {"x86": here, "arm64": entry["accuracy"], "diff_pp": round((entry["accuracy"] - here) * 100, 3)}
    results["validation"][bundle.name] = rows
    same = x86.get("images_id") == arm.get("images_id")
    worst = max((abs(r["diff_pp"]) for f, r in rows.items() if "int8" in f), default=None)
    check(
        results,
        f"int8-accuracy-vs-x86[{bundle.name}]",
        same and worst is not None and worst <= 0.3,
        same_images=same,
        worst_diff_pp=worst,
    )
    subprocess.run([*host_edgetl(), "report", str(bundle)], capture_output=True)


def service_check(root: Root, wheel: str, inner_bundle: str, results: dict) -> None:
    """device/install.sh in the root (no systemd started), then systemd-analyze verify on its unit."""
    shutil.copytree(REPO / "device", root.host_path(f"{WORK}/device"), dirs_exist_ok=True)
    venv = f"{WORK}/install-sh-venv"
    done = root.sh(f'rm -rf {venv}; bash {WORK}/device/install.sh --venv {venv} --from "{wheel}[litert]"')
    check(
        results,
        "device/install.sh",
        done.returncode == 0,
        stderr=done.stderr.strip()[-400:],
        version=done.stdout.strip().splitlines()[-2:] if done.stdout else None,
    )
    unit = "/etc/systemd/system/edgetl-classifier.service"
    done = root.sh(
        f"bash {WORK}/device/install.sh --print-unit {inner_bundle} --venv {venv} > {unit} "
        f"&& systemd-analyze verify {unit}"
    )
    check(
        results,
        "systemd-analyze verify",
        done.returncode == 0 and not (done.stdout + done.stderr).strip(),
        output=(done.stdout + done.stderr).strip()[-400:],
    )


def quick_bundle(tmp: Path) -> tuple[Path, Path]:
    """A tiny bundle for CI: 3 colour classes, a random 32 px MobileNetV2 with the default config's
    multi-level features (taps: the stride-16 stage pooled and joined to the last layer), trained and
    exported here with the real CLI (tflite int8/float32 fused and split, ONNX float and int8)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = {"red": (200, 50, 40), "green": (40, 190, 60), "blue": (40, 60, 200)}
    for split, count in (("train", 40), ("val", 4)):
        for name, rgb in colours.items():
            folder = tmp / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(rgb) + rng.normal(0, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.{'jpg' if i % 2 else 'png'}")
    run, bundle = tmp / "run", tmp / "bundle"
    train = [
        "train",
        "--data",
        str(tmp / "data"),
        "--weights",
        "none",
        "--input-size",
        "32",
        "--epochs",
        "2",
        "--l2-c",
        "0",  # no weight decay: 120 images are too few for the recipe's default strength
        "--holdout",
        "0.2",  # 24 held-out vectors: enough for the unknown detector, so the split form is exercised
        "--out",
        str(run),
        "--cache-dir",
        str(tmp / "cache"),
    ]
    export = ["export", str(run), "--int8", "--float32", "--onnx", "--onnx-int8", "--out", str(bundle)]
    for args in (train, export):
        subprocess.run([*host_edgetl(), *args], check=True, capture_output=True)
    return bundle, tmp / "data" / "val"


def image_subset(data: Path, per_class: int, dest: Path) -> Path:
    """The first per_class images of each class folder (sorted), copied to dest; all of data when 0."""
    if not per_class:
        return data
    for path in image_list(data, per_class):
        (dest / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest / path.parent.name / path.name)
    return dest


def check_case(root: Root, bundle: Path, data: Path, args, results: dict) -> None:
    """One bundle on one set of images: here vs arm64 per format, validate on both, the device commands."""
    inner_bundle, inner_data = f"{WORK}/bundles/{bundle.name}", f"{WORK}/data/{bundle.name}"
    shutil.rmtree(root.host_path(inner_data), ignore_errors=True)
    data = image_subset(data, args.per_class, root.host_path(inner_data))
    if data != root.host_path(inner_data):
        shutil.copytree(data, root.host_path(inner_data))
    if args.validate:  # the workstation's section of validation.json, on exactly these images
        log(f"{bundle.name}: edgetl validate here (x86)")
        cmd = [*host_edgetl(), "validate", str(bundle), "--data", str(data), "--no-report"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        check(results, f"validate-x86[{bundle.name}]", done.returncode in (0, 3), exit_code=done.returncode)
    shutil.rmtree(root.host_path(inner_bundle), ignore_errors=True)
    shutil.copytree(bundle, root.host_path(inner_bundle))
    compare_per_class = args.per_class if args.compare_per_class is None else args.compare_per_class
    results["cases"][bundle.name] = classify_both(
        root, bundle, inner_bundle, data, inner_data, compare_per_class, results
    )
    if args.validate:
        validate_on_arm64(root, bundle, inner_bundle, inner_data, results)
    device_commands(root, inner_bundle, inner_data, results, bundle.name)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, action="append", default=[], help="bundle to check (repeatable)")
    parser.add_argument(
        "--data", type=Path, action="append", default=[], help="class-per-folder images, one per --bundle"
    )
    parser.add_argument("--per-class", type=int, default=5, help="images per class to compare and validate on (0: all)")
    parser.add_argument(
        "--compare-per-class",
        type=int,
        default=None,
        help="images per class that every format classifies on both sides (default: --per-class; "
        "e.g. --per-class 0 --compare-per-class 4 --validate validates on every image, compares on a few)",
    )
    parser.add_argument(
        "--validate", action="store_true", help="also run edgetl validate, here and on arm64, on those images"
    )
    parser.add_argument("--cpu", choices=list(CPUS), default="cortex-a76", help="emulated CPU (Pi 5: cortex-a76)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the arm64 root is kept")
    args = parser.parse_args()
    if len(args.bundle) != len(args.data):
        parser.error("give one --data per --bundle")
    return args


def main() -> int:
    args = parse_args()
    start = time.time()
    results: dict = {
        "host": platform.machine(),
        "emulated_cpu": f"{args.cpu} ({CPUS[args.cpu][0]})",
        "checks": {},
        "cases": {},
        "validation": {},
    }
    try:
        ensure_emulation()
        root_path = ensure_root(args.cache)
    except Skip as why:
        print(json.dumps({**results, "skipped": str(why)}, indent=1))
        log(f"skipped: {why}")
        return 0
    with tempfile.TemporaryDirectory() as tmp, Root(root_path, args.cpu) as root:
        tmp = Path(tmp)
        wheel = build_wheel(tmp / "dist")
        inner_wheel = f"{WORK}/{wheel.name}"
        root.host_path(WORK).mkdir(parents=True, exist_ok=True)
        shutil.copy(wheel, root.host_path(inner_wheel))
        install(root, inner_wheel, results)
        cases = list(zip(args.bundle, args.data)) or [quick_bundle(tmp)]
        for bundle, data in cases:
            check_case(root, bundle.resolve(), data.resolve(), args, results)
        service_check(root, inner_wheel, f"{WORK}/bundles/{cases[0][0].resolve().name}", results)
    results["passed"] = all(c["passed"] for c in results["checks"].values())
    results["seconds"] = round(time.time() - start)
    print(json.dumps(results, indent=1))
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
