"""Offscreen rendering of a :class:`Scene` to pictures, and of sequences to GIF / MP4.

Rendering is Open3D's Filament ``OffscreenRenderer``: headless it runs on the CPU through
Vulkan (``mesa-vulkan-drivers``: llvmpipe), no display or GPU needed. Post-processing
(tone mapping, anti-aliasing) is off, so an unlit colour comes out exactly as given.
The legend is drawn over the picture with Pillow; animations are written by imageio
(GIF always; MP4 needs an FFmpeg backend such as ``imageio-ffmpeg`` or ``av``).

One renderer per picture size is kept for the process (creating one costs about a
second); its geometry is cleared after every picture.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.io import atomic_write
from geo3d.viewers.camera import Camera, resolve_camera
from geo3d.viewers.palettes import Legend
from geo3d.viewers.scene import Scene, add_to_open3d

__all__ = ["render_image", "render", "render_sequence", "draw_legend", "BACKGROUND"]

#: Default background (near-black, so that every palette colour stands out).
BACKGROUND = (0.07, 0.07, 0.09)
_MAX_SIDE = 8192
_LOCK = threading.Lock()
_RENDERER: dict = {}


def _check_size(width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 16 <= v <= _MAX_SIDE:
            raise InvalidInputError(f"{name} must be an integer in 16..{_MAX_SIDE}, got {v!r}")


def _renderer(width: int, height: int):
    """The process's offscreen renderer of this size (the previous size's is released)."""
    from open3d.visualization import rendering

    key = (width, height)
    if key not in _RENDERER:
        _RENDERER.clear()
        renderer = rendering.OffscreenRenderer(width, height)
        renderer.scene.view.set_post_processing(False)
        renderer.scene.view.set_sample_count(1)
        renderer.scene.view.set_antialiasing(False)
        renderer.scene.scene.enable_sun_light(True)
        renderer.scene.scene.set_sun_light([-0.3, 0.4, -1.0], [1.0, 1.0, 1.0], 60000)
        _RENDERER[key] = renderer
    return _RENDERER[key]


def _check_background(background) -> list:
    """The value to give Filament for an sRGB background colour: it decodes the clear
    colour from sRGB to linear, so we encode it first (the sRGB transfer function)."""
    arr = np.asarray(background, float)
    if arr.shape != (3,) or not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise InvalidInputError(f"background must be 3 numbers in [0, 1], got {background!r}")
    encoded = np.where(arr <= 0.0031308, 12.92 * arr, 1.055 * arr ** (1 / 2.4) - 0.055)
    return [*encoded.tolist(), 1.0]


def draw_legend(image: np.ndarray, legend: Legend, background=BACKGROUND) -> np.ndarray:
    """A copy of ``image`` with the legend (a colour swatch and a name per row) drawn in
    its top-left corner, in a dark or light box to suit ``background``."""
    from PIL import Image, ImageDraw, ImageFont

    out = Image.fromarray(np.ascontiguousarray(image))
    if not legend:
        return np.asarray(out)
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    row, pad, sw = 16, 6, 12
    width = max(int(draw.textlength(str(name), font=font)) for name, _ in legend) + sw + 3 * pad
    dark = float(np.mean(background)) < 0.5
    box = (32, 32, 32) if dark else (235, 235, 235)
    draw.rectangle((4, 4, 4 + width, 4 + 2 * pad + row * len(legend) - 4), fill=box)
    for i, (name, rgb) in enumerate(legend):
        y = 4 + pad + i * row
        fill = tuple(int(round(255 * c)) for c in rgb)
        draw.rectangle((4 + pad, y, 4 + pad + sw - 1, y + sw - 1), fill=fill)
        draw.text((4 + 2 * pad + sw, y), str(name), font=font,
                  fill=(230, 230, 230) if dark else (20, 20, 20))
    return np.asarray(out)


def render_image(scene: Scene, width: int = 1024, height: int = 768,
                 camera: Union[str, Camera, None] = None, background=BACKGROUND,
                 legend: bool = True) -> np.ndarray:
    """Render ``scene`` offscreen.

    Args:
        scene: what to draw.
        width, height: picture size in pixels (defaults 1024 x 768; 16 .. 8192).
        camera: a preset name (``"bev"``, ``"chase"``, ``"front"``, ``"side"``, ``"iso"``),
            a :class:`Camera`, or ``None`` (default: bird's-eye view for LiDAR scenes, iso
            for objects), framed to the scene's (robust) bounds.
        background: RGB in [0, 1] (default :data:`BACKGROUND`).
        legend: draw the legend in the top-left corner (default True).

    Returns:
        ``uint8`` RGB picture ``[height, width, 3]``.
    """
    if not isinstance(scene, Scene):
        raise InvalidInputError(f"scene must be a geo3d.viewers.Scene, got {type(scene).__name__}")
    _check_size(width, height)
    bg = _check_background(background)
    cam = resolve_camera(camera, scene.bounds(), scene.kind, width, height)
    with _LOCK:
        renderer = _renderer(int(width), int(height))
        try:
            renderer.scene.set_background(bg)
            add_to_open3d(renderer.scene, scene, thin_lines=cam.ortho_half_height is not None)
            cam.apply(renderer.scene.camera, width, height)
            image = np.asarray(renderer.render_to_image())[..., :3].copy()
        finally:
            renderer.scene.clear_geometry()
    return draw_legend(image, scene.legend, background) if legend else image


def _write_png(image: np.ndarray, path: Path) -> None:
    import open3d as o3d

    with atomic_write(path, suffix=".png") as tmp:
        if not o3d.io.write_image(str(tmp), o3d.geometry.Image(np.ascontiguousarray(image))):
            raise FileFormatError(f"could not write the picture {str(path)!r}")


def render(scene: Scene, path: Union[str, Path], width: int = 1024, height: int = 768,
           camera: Union[str, Camera, None] = None, background=BACKGROUND,
           legend: bool = True) -> Path:
    """Render ``scene`` offscreen to a PNG file, written atomically; returns the path.

    Arguments as in :func:`render_image`; ``path`` must end in ``.png``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InvalidInputError(f"render writes PNG files: {str(path)!r} must end in .png")
    _write_png(render_image(scene, width, height, camera, background, legend), path)
    return path


def render_sequence(scenes: Sequence[Scene], path: Union[str, Path], width: int = 640,
                    height: int = 480, camera: Union[str, Camera, None] = None,
                    background=BACKGROUND, legend: bool = True, fps: float = 10.0) -> Path:
    """Render a sequence of scenes to an animated GIF (or MP4), written atomically.

    The camera is resolved once, from the bounds of all the scenes together, so the view
    does not jump between frames. (Pillow's GIF writer merges identical consecutive
    frames into one longer frame.)

    Args:
        scenes: one scene per frame (at least one).
        path: ``.gif`` (always available) or ``.mp4`` (needs an FFmpeg backend for
            imageio: ``imageio-ffmpeg`` or ``av``; a clear error otherwise).
        fps: frames per second (default 10, the LiDAR rate).
        width, height, camera, background, legend: as in :func:`render_image`
            (defaults 640 x 480).
    """
    import imageio.v3 as iio

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".gif", ".mp4"):
        raise InvalidInputError(f"render_sequence writes .gif or .mp4 files, got {str(path)!r}")
    scenes = list(scenes)
    if not scenes:
        raise InvalidInputError("scenes must hold at least one scene")
    if not np.isfinite(fps) or fps <= 0:
        raise InvalidInputError(f"fps must be > 0, got {fps!r}")
    _check_size(width, height)
    found = [b for b in (s.bounds() for s in scenes) if b is not None]
    bounds = (np.min([b[0] for b in found], 0), np.max([b[1] for b in found], 0)) if found else None
    cam = resolve_camera(camera, bounds, scenes[0].kind, width, height)
    frames = np.stack([render_image(s, width, height, cam, background, legend) for s in scenes])
    with atomic_write(path, suffix=ext) as tmp:
        try:
            if ext == ".gif":
                iio.imwrite(tmp, frames, extension=".gif", duration=1000.0 / fps, loop=0)
            else:
                iio.imwrite(tmp, frames, extension=".mp4", fps=fps)
        except (ImportError, ValueError, OSError, RuntimeError) as exc:
            if ext == ".mp4":
                raise FileFormatError(
                    f"cannot write MP4 {str(path)!r}: imageio has no FFmpeg backend "
                    f"(pip install imageio-ffmpeg, or write a .gif) [{type(exc).__name__}]"
                ) from exc
            raise FileFormatError(f"could not write {str(path)!r}: {exc}") from exc
    return path
