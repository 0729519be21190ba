"""Pictures of the benchmarks' predictions: ground truth beside prediction, with legends.

Scenes are built and rendered by :mod:`geo3d.viewers` (Open3D's offscreen Filament
renderer; on a headless machine it runs on the CPU through Vulkan's llvmpipe). Panels are
put side by side with numpy, titles drawn with Pillow, GIFs written by imageio; every file
is written atomically (:func:`geo3d.io.atomic_write`).

A picture never fails or stalls a benchmark: :func:`picture` first checks, once per process
and in a child process, that the renderer starts (a missing Vulkan driver can abort a
process, which no ``except`` catches), then builds and writes the picture in a forked child
with a time limit (llvmpipe has spun for over 10 minutes on one hand picture); on any
failure or timeout it prints one warning line and returns None. Scripts call it after
their measurements (the renderer's threads must not disturb the timings) and list the
written paths, relative to ``--out``, under ``"pictures"`` in their JSON.
"""

from __future__ import annotations

import functools
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["PANEL", "add_picture_arg", "renderer_ok", "panel", "titled", "side_by_side",
           "save_picture", "picture", "pictures_list", "bev_camera", "as_object", "GOOD", "BAD"]

#: Default size (width, height) of one panel: two side by side make ~1000 x 420.
PANEL = (500, 400)
#: Title colours: a right answer, a wrong one.
GOOD, BAD = (120, 230, 120), (255, 110, 110)
_TITLE_H = 20
_BACKGROUND = (18, 18, 23)  # geo3d.viewers.offscreen.BACKGROUND in 8 bits
_PROBE = ("from open3d.visualization import rendering\n"
          "r = rendering.OffscreenRenderer(32, 32)\n"
          "r.render_to_image()\n")

Picture = Union[np.ndarray, Sequence[np.ndarray], "object"]


def add_picture_arg(ap) -> None:
    """Add ``--no-pictures`` (skip the picture of the predictions) to the parser ``ap``."""
    ap.add_argument("--no-pictures", action="store_true",
                    help="do not render the picture of the predictions")


@functools.lru_cache(maxsize=1)
def renderer_ok() -> Optional[str]:
    """None if Open3D's offscreen renderer starts here (checked in a child process, once);
    else why not, in one line."""
    try:
        res = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                             timeout=180, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"renderer check failed: {type(exc).__name__}"
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
        return f"the offscreen renderer does not start (exit {res.returncode}): {tail[:160]}"
    return None


def as_object(scene):
    """The scene with kind ``"object"`` (default camera: an oblique view, not from above)."""
    from geo3d.viewers import Scene

    return Scene(scene.layers, scene.legend, "object", scene.title)


def bev_camera(half_extent: float, width: int = PANEL[0], height: int = PANEL[1],
               center: Tuple[float, float] = (0.0, 0.0)):
    """A bird's-eye camera framing ``center +- half_extent`` metres (x up the picture)."""
    from geo3d.viewers import camera_preset

    cx, cy = center
    return camera_preset("bev", (cx - half_extent, cy - half_extent, -3.0),
                         (cx + half_extent, cy + half_extent, 3.0), aspect=width / height)


def titled(image: np.ndarray, title: str, color=(230, 230, 230)) -> np.ndarray:
    """``image`` with a title strip of ``_TITLE_H`` pixels above it."""
    from PIL import Image, ImageDraw, ImageFont

    strip = Image.new("RGB", (image.shape[1], _TITLE_H), _BACKGROUND)
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    text = str(title)
    while len(text) > 4 and draw.textlength(text, font=font) > image.shape[1] - 8:
        text = text[:-2]
    draw.text((6, 4), text, font=font, fill=tuple(int(c) for c in color))
    return np.concatenate([np.asarray(strip), np.asarray(image, np.uint8)], axis=0)


def panel(scene, title: Optional[str] = None, width: int = PANEL[0], height: int = PANEL[1],
          camera=None, legend: bool = True, title_color=(230, 230, 230)) -> np.ndarray:
    """One rendered panel (:func:`geo3d.viewers.render_image`), titled if ``title``."""
    from geo3d.viewers import render_image

    image = render_image(scene, width, height, camera=camera, legend=legend)
    return image if title is None else titled(image, title, title_color)


def side_by_side(images: Sequence[np.ndarray], titles: Optional[Sequence[str]] = None,
                 gap: int = 4) -> np.ndarray:
    """Images next to each other (``gap`` pixels apart), bottoms padded to one height.

    Args:
        images: ``uint8`` RGB pictures ``[H_i, W_i, 3]`` (at least one).
        titles: one title per image (drawn above it), or None.
        gap: pixels between the images (default 4).

    Returns:
        ``uint8`` ``[max H (+ title), sum W + gap * (n - 1), 3]``.
    """
    images = [np.asarray(im, np.uint8) for im in images]
    if not images:
        raise ValueError("side_by_side needs at least one image")
    if titles is not None:
        if len(titles) != len(images):
            raise ValueError(f"{len(titles)} titles for {len(images)} images")
        images = [titled(im, t) for im, t in zip(images, titles)]
    h = max(im.shape[0] for im in images)
    parts = []
    for i, im in enumerate(images):
        pad = np.empty((h, im.shape[1], 3), np.uint8)
        pad[:] = _BACKGROUND
        pad[: im.shape[0]] = im[..., :3]
        parts.append(pad)
        if i + 1 < len(images):
            sep = np.empty((h, gap, 3), np.uint8)
            sep[:] = 60
            parts.append(sep)
    return np.concatenate(parts, axis=1)


def save_picture(pic, path: Union[str, Path], fps: float = 4.0) -> Path:
    """Write a picture atomically: a ``uint8`` image to PNG, a list of images to GIF (one
    frame each, ``fps`` frames per second), a :class:`geo3d.viewers.Scene` rendered to PNG
    at :data:`PANEL` size. Returns the path."""
    import imageio.v3 as iio

    from geo3d.io import atomic_write

    path = Path(path)
    if not isinstance(pic, (np.ndarray, list, tuple)):  # a Scene
        pic = panel(pic)
    if isinstance(pic, (list, tuple)):
        frames = np.stack([np.asarray(f, np.uint8)[..., :3] for f in pic])
        with atomic_write(path, suffix=".gif") as tmp:
            iio.imwrite(tmp, frames, extension=".gif", duration=1000.0 / fps, loop=0)
        return path
    with atomic_write(path, suffix=".png") as tmp:
        iio.imwrite(tmp, np.ascontiguousarray(np.asarray(pic, np.uint8)[..., :3]),
                    extension=".png")
    return path


def _why(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def _build_and_save(build: Callable[[], object], path: Path, fps: float, conn) -> None:
    """Child process body of :func:`picture`: sends None when written, else why not."""
    try:
        import torch

        torch.set_num_threads(1)  # the parent's OpenMP pool does not survive a fork
        save_picture(build(), path, fps=fps)
        conn.send(None)
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        conn.send(_why(exc))


def _run_with_limit(build: Callable[[], object], path: Path, fps: float,
                    timeout: float) -> Optional[str]:
    """Build and save in a forked child, killed after ``timeout`` s: None when written,
    else why not. Without ``fork`` (Windows) it runs here, without a limit."""
    if "fork" not in multiprocessing.get_all_start_methods():
        save_picture(build(), path, fps=fps)
        return None
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_build_and_save, args=(build, path, fps, send), daemon=True)
    child.start()
    send.close()
    try:
        if not recv.poll(timeout):
            return f"timed out after {timeout:g} s"
        return recv.recv()
    except EOFError:
        child.join(5)
        return f"the picture process died (exit {child.exitcode})"
    finally:
        if child.is_alive():
            child.kill()
            for tmp in path.parent.glob(f".{path.name}.*.tmp*"):  # atomic_write's leftovers
                tmp.unlink(missing_ok=True)
        child.join(5)
        recv.close()


def picture(out_dir: Union[str, Path], filename: str, build: Callable[[], object],
            enabled: bool = True, fps: float = 4.0, timeout: float = 300.0) -> Optional[str]:
    """Build a picture with ``build()`` and save it as ``out_dir/filename``, safely.

    Args:
        out_dir: the benchmark's ``--out`` folder (created).
        filename: e.g. ``"segmentation_prediction.png"`` (``.gif`` for an animation).
        build: returns what :func:`save_picture` takes (image, list of images, scene).
        enabled: False (``--no-pictures``): do nothing, return None.
        fps: GIF frame rate (default 4).
        timeout: seconds the building and writing may take (default 300), in a forked
            child that is killed past it.

    Returns:
        ``filename`` (the path relative to ``out_dir``) once written; None if disabled or
        if anything failed (one warning line is printed: the renderer is missing, the
        model's output is unusable, the time ran out...). Never raises.
    """
    if not enabled:
        return None
    start = time.perf_counter()
    why = renderer_ok()
    if why is None:
        try:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            why = _run_with_limit(build, out / filename, fps, timeout)
        except Exception as exc:  # noqa: BLE001 - a picture must never fail a benchmark
            why = _why(exc)
        if why is None:
            print(f"wrote {out / filename} in {time.perf_counter() - start:.1f} s", flush=True)
            return filename
    print(f"warning: no picture {filename}: {why}", file=sys.stderr, flush=True)
    return None


def pictures_list(*names: Optional[str]) -> List[str]:
    """The names that were written (None dropped), for the JSON's ``"pictures"``."""
    return [n for n in names if n]
