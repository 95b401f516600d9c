"""The media pipeline (storage.media.render_image, libvips) against Pillow making the same
renditions: widths 1080/640/320/150 never upscaled, EXIF orientation applied, WebP q80 and JPEG
q85 without metadata, plus the average colour.

Each (library, image) run is its own subprocess, so its peak RSS is its own; the time is measured
inside the worker around the rendering only, and memory is the peak RSS above the worker's RSS
after its imports. Prints a table with Pillow/libvips ratios (above 1 means libvips wins).

    python bench/media_vs_pillow.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTHS = [1080, 640, 320, 150]


def rss_kb() -> int:
    """This process's peak RSS so far, in KiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kb() -> int:
    """This process's RSS now, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return rss_kb()


def make_images(folder: Path) -> list[tuple[str, Path, str]]:
    """Photo-like test images (gradients with grain, which compress like photos)."""
    import pyvips

    def photo(width: int, height: int) -> pyvips.Image:
        xy = pyvips.Image.xyz(width, height)
        r = xy[0] * (255.0 / width)
        g = xy[1] * (255.0 / height)
        b = (xy[0] + xy[1]) * (255.0 / (width + height))
        grain = pyvips.Image.gaussnoise(width, height, sigma=12, mean=0)
        return (r.bandjoin([g, b]) + grain).cast("uchar").copy(interpretation="srgb")

    photo(200, 150).jpegsave(str(folder / "warmup.jpg"), Q=90)
    images = []
    for name, (w, h), fmt in [("12mp.jpg", (4000, 3000), "jpeg"), ("phone-rotated.jpg", (3024, 4032), "jpeg"),
                              ("2mp.png", (1920, 1080), "png"), ("800px.webp", (800, 600), "webp")]:
        path = folder / name
        image = photo(w, h)
        if name.startswith("phone"):
            image = photo(h, w).copy()
            image.set_type(pyvips.GValue.gint_type, "orientation", 6)
        if fmt == "jpeg":
            image.jpegsave(str(path), Q=90)
        elif fmt == "png":
            image.pngsave(str(path))
        else:
            image.webpsave(str(path), Q=90)
        images.append((name, path, fmt))
    return images


def run_vips(path: str, fmt: str) -> int:
    from storage.media import render_image

    rendered = render_image(path, fmt, WIDTHS, 50_000_000)
    return sum(len(r.data) for r in rendered.renditions)


def run_pillow(path: str, fmt: str) -> int:
    import io

    from PIL import Image, ImageOps, ImageStat

    with Image.open(path) as source:
        if source.format == "JPEG":
            # Pillow's shrink-on-load: DCT scaling to at least the largest wanted size
            source.draft("RGB", (max(WIDTHS), max(WIDTHS)))
        image = ImageOps.exif_transpose(source).convert("RGB")
    total = 0
    base = image
    made: set[int] = set()
    for wanted in sorted(WIDTHS, reverse=True):
        width = min(wanted, image.width)
        if width in made:
            continue
        made.add(width)
        height = max(round(image.height * width / image.width), 1)
        rendition = base.resize((width, height), Image.LANCZOS) if width != base.width else base
        for fmt_out, options in (("WEBP", {"quality": 80}), ("JPEG", {"quality": 85, "optimize": True})):
            buffer = io.BytesIO()
            rendition.save(buffer, fmt_out, **options)
            total += buffer.tell()
        ImageStat.Stat(rendition).mean
        base = rendition
    return total


def worker(library: str, path: str, fmt: str, warmup: str, warmup_fmt: str = "jpeg") -> None:
    """One measured run (after a warm-up render of `warmup`), printed as JSON."""
    if library == "vips":
        import pyvips  # noqa: F401  (imports before the baseline)

        import storage.media  # noqa: F401
        fn = run_vips
    else:
        import PIL.Image  # noqa: F401
        fn = run_pillow
    # a server renders many uploads: warm the library up (plugins, thread pool, codecs) on a tiny
    # image first, so the measurement is the steady cost and not the first call's set-up
    fn(warmup, warmup_fmt)
    baseline = current_rss_kb()
    started = time.perf_counter()
    size = fn(path, fmt)
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "peak_kb": rss_kb() - baseline, "bytes": size}))


def measure(library: str, path: Path, fmt: str, repeat: int) -> tuple[float, float, int]:
    """Median seconds, median peak MiB above baseline, output bytes over `repeat` subprocess runs."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, __file__, "--worker", library, str(path), fmt,
                              str(path.parent / "warmup.jpg")],
                             check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return (statistics.median(r["seconds"] for r in runs), statistics.median(r["peak_kb"] for r in runs) / 1024,
            runs[0]["bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", nargs=4, metavar=("LIBRARY", "PATH", "FORMAT", "WARMUP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    with tempfile.TemporaryDirectory(prefix="glint-bench-media-") as folder:
        images = make_images(Path(folder))
        print(f"renditions {WIDTHS} in WebP q80 + JPEG q85, median of {args.repeat} runs, one subprocess each")
        print(f"{'image':<20}{'vips s':>9}{'pillow s':>10}{'time x':>8}{'vips MiB':>10}{'pillow MiB':>12}{'mem x':>8}")
        for name, path, fmt in images:
            vt, vm, _ = measure("vips", path, fmt, args.repeat)
            pt, pm, _ = measure("pillow", path, fmt, args.repeat)
            print(f"{name:<20}{vt:>9.3f}{pt:>10.3f}{pt / vt:>8.2f}{vm:>10.1f}{pm:>12.1f}{pm / max(vm, 0.1):>8.2f}")
        print("time x and mem x are Pillow / libvips: above 1 means the libvips pipeline is faster / smaller")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
