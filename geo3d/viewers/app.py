"""The interactive viewer behind ``geo3d view``, built on ``open3d.visualization.gui``.

A 3D view (``gui.SceneWidget``, mouse to orbit / pan / zoom) and a side panel with: a
frame slider (sequences), layer toggles (points, ground truth, predictions, tracks, mesh),
the legend, and, for models with ``set_budget(b)``, a compute-budget slider that re-runs
the model and shows its latency and MACs. The scenes come from a :class:`ViewSession`, so
the window shows exactly what ``geo3d view --out`` renders. Needs a display (an X server:
``Xvfb`` works headless).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Optional, Union

import numpy as np
import open3d as o3d
from open3d.visualization import gui, rendering

from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.io import atomic_write
from geo3d.viewers.camera import Camera, resolve_camera
from geo3d.viewers.offscreen import BACKGROUND
from geo3d.viewers.scene import GROUPS, Scene, add_to_open3d
from geo3d.viewers.session import ViewSession

__all__ = ["ViewerApp", "has_display"]

_PANEL_WIDTH = 260
_LEGEND_ROWS = 24
_GROUP_TITLES = {"points": "points", "gt": "ground truth", "predictions": "predictions",
                 "tracks": "tracks", "mesh": "mesh"}


def has_display() -> bool:
    """Whether a window can open: an X11 / Wayland display on Linux, always elsewhere."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _fmt_macs(macs: Optional[int]) -> str:
    if macs is None:
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if macs >= scale:
            return f"{macs / scale:.2f} {unit}"
    return str(macs)


class ViewerApp:
    """A window showing a :class:`ViewSession`.

    Args:
        session: frames, model and budget to show.
        camera: initial camera (preset name, :class:`Camera` or ``None``: ``"chase"``
            for LiDAR scenes, ``"iso"`` for objects). Orthographic presets are shown in
            perspective from the same side.
        title: window title.
        width, height: window size in pixels (default 1280 x 800).
        frame: the frame shown first (default 0).
    """

    def __init__(self, session: ViewSession, camera: Union[str, Camera, None] = None,
                 title: str = "geo3d view", width: int = 1280, height: int = 800,
                 frame: int = 0) -> None:
        if not has_display():
            raise InvalidInputError("no display to open a window on (DISPLAY is not set): "
                                    "pass --out picture.png to render without a window, or "
                                    "run under Xvfb")
        self.session = session
        self.camera = camera
        self.title, self.width, self.height = title, width, height
        self.frame = session._index(frame)
        self.visible = {g: True for g in GROUPS}
        self._scene: Optional[Scene] = None

    # -- building the window ------------------------------------------------------------
    def _build(self) -> None:
        app = gui.Application.instance
        self.window = app.create_window(self.title, self.width, self.height)
        em = self.window.theme.font_size
        self.widget = gui.SceneWidget()
        self.widget.scene = rendering.Open3DScene(self.window.renderer)
        self.widget.scene.set_background([*BACKGROUND, 1.0])
        self.widget.scene.view.set_post_processing(False)  # colours as in the palettes
        self.panel = gui.Vert(0.4 * em, gui.Margins(0.6 * em, 0.6 * em, 0.6 * em, 0.6 * em))

        self.info = gui.Label("")
        self.panel.add_child(self.info)

        self.panel.add_child(gui.Label("Frame"))
        self.frame_slider = gui.Slider(gui.Slider.INT)
        self.frame_slider.set_limits(0, max(len(self.session) - 1, 1))
        self.frame_slider.int_value = self.frame
        self.frame_slider.enabled = len(self.session) > 1
        self.frame_slider.set_on_value_changed(self._on_frame)
        self.panel.add_child(self.frame_slider)

        self.panel.add_child(gui.Label("Layers"))
        self.toggles = {}
        for group in GROUPS:
            box = gui.Checkbox(_GROUP_TITLES[group])
            box.checked = True
            box.set_on_checked(lambda on, g=group: self._on_toggle(g, on))
            self.toggles[group] = box
            self.panel.add_child(box)

        self.budget_label = gui.Label("Compute budget")
        self.budget_slider = gui.Slider(gui.Slider.DOUBLE)
        self.budget_slider.set_limits(0.05, 1.0)
        self.budget_slider.double_value = self.session.budget if self.session.budget else 1.0
        self.budget_slider.set_on_value_changed(self._on_budget)
        self.cost = gui.Label("")
        for w in (self.budget_label, self.budget_slider):
            w.visible = self.session.has_budget
            self.panel.add_child(w)
        self.cost.visible = self.session.model is not None
        self.panel.add_child(self.cost)

        self.panel.add_child(gui.Label("Legend"))
        self.legend_rows = []
        for _ in range(_LEGEND_ROWS):
            row = gui.Horiz(0.4 * em)
            swatch, name = gui.Label("\u2588\u2588"), gui.Label("")
            row.add_child(swatch)
            row.add_child(name)
            row.visible = False
            self.legend_rows.append((row, swatch, name))
            self.panel.add_child(row)

        self.window.add_child(self.widget)
        self.window.add_child(self.panel)
        self.window.set_on_layout(self._on_layout)

    def _on_layout(self, _context) -> None:
        r = self.window.content_rect
        self.widget.frame = gui.Rect(r.x, r.y, r.width - _PANEL_WIDTH, r.height)
        self.panel.frame = gui.Rect(r.get_right() - _PANEL_WIDTH, r.y, _PANEL_WIDTH, r.height)

    # -- showing a frame -----------------------------------------------------------------
    def _show(self, reset_camera: bool = False) -> None:
        scene = self.session.scene(self.frame)
        self._scene = scene
        target = self.widget.scene
        target.clear_geometry()
        add_to_open3d(target, scene)
        for layer in scene.layers:
            if target.has_geometry(layer.name):
                target.show_geometry(layer.name, self.visible[layer.group])
        for group, box in self.toggles.items():
            box.enabled = group in scene.groups
        self._update_legend(scene)
        self._update_info()
        if reset_camera:
            self._set_camera(scene)

    def _set_camera(self, scene: Scene) -> None:
        bounds = scene.bounds()
        preset = self.camera or ("chase" if scene.kind == "lidar" else "iso")
        cam = resolve_camera(preset, bounds, scene.kind, self.width - _PANEL_WIDTH, self.height)
        eye = np.asarray(cam.eye)
        if cam.ortho_half_height is not None:  # orthographic: same side, perspective distance
            direction = (eye - cam.center) / np.linalg.norm(eye - np.asarray(cam.center))
            eye = np.asarray(cam.center) + direction * cam.ortho_half_height / np.tan(np.radians(30))
        lo, hi = bounds if bounds is not None else (np.full(3, -5.0), np.full(3, 5.0))
        box = o3d.geometry.AxisAlignedBoundingBox(lo, np.maximum(hi, lo + 1e-3))
        self.widget.setup_camera(cam.fov, box, np.asarray(cam.center, float))
        self.widget.look_at(np.asarray(cam.center, float), eye, np.asarray(cam.up, float))

    def _update_legend(self, scene: Scene) -> None:
        entries = scene.legend[:_LEGEND_ROWS]
        for k, (row, swatch, name) in enumerate(self.legend_rows):
            row.visible = k < len(entries)
            if k < len(entries):
                swatch.text_color = gui.Color(*[float(c) for c in entries[k][1]])
                name.text = entries[k][0]
        self.window.set_needs_layout()

    def _update_info(self) -> None:
        frame = self.session.frames[self.frame]
        text = f"frame {self.frame + 1}/{len(self.session)}: {frame.pos.shape[0]:,} points"
        self.info.text = text
        pred = self.session.prediction(self.frame)
        if pred is not None:
            budget = "" if self.session.budget is None else f"budget {self.session.budget:.2f}  "
            self.cost.text = f"{budget}latency {pred.latency_ms:.1f} ms  MACs {_fmt_macs(pred.macs)}"

    # -- callbacks -----------------------------------------------------------------------
    def _on_frame(self, value: float) -> None:
        self.frame = int(value)
        self._show()

    def _on_toggle(self, group: str, on: bool) -> None:
        self.visible[group] = on
        if self._scene is None:
            return
        for layer in self._scene.layers:
            if layer.group == group and self.widget.scene.has_geometry(layer.name):
                self.widget.scene.show_geometry(layer.name, on)

    def _on_budget(self, value: float) -> None:
        self.session.budget = float(value)
        self._show()

    # -- running -------------------------------------------------------------------------
    def _screenshot(self, path: Path) -> None:
        def save(image) -> None:
            try:
                with atomic_write(path, suffix=".png") as tmp:
                    if not o3d.io.write_image(str(tmp), image):
                        raise FileFormatError(f"could not write the screenshot {str(path)!r}")
            finally:
                self.window.close()
        self.widget.scene.scene.render_to_image(save)

    def run(self, screenshot: Union[str, Path, None] = None, delay: float = 1.0) -> int:
        """Open the window and run until it is closed; returns 0.

        Args:
            screenshot: if given, save the 3D view to this PNG ``delay`` seconds after
                the window opens, then close it (for scripts and tests).
            delay: seconds to wait before the screenshot (default 1).
        """
        shot = None if screenshot is None else Path(screenshot)
        if shot is not None and shot.suffix.lower() != ".png":
            raise InvalidInputError(f"--screenshot must be a .png file, got {str(shot)!r}")
        if shot is not None and not shot.parent.is_dir():
            raise FileFormatError(f"cannot write {str(shot)!r}: folder {str(shot.parent)!r} "
                                  f"does not exist")
        app = gui.Application.instance
        app.initialize()
        self._build()
        self._show(reset_camera=True)
        if shot is not None:
            def later() -> None:
                threading.Event().wait(delay)
                app.post_to_main_thread(self.window, lambda: self._screenshot(shot))
            threading.Thread(target=later, daemon=True).start()
        app.run()
        return 0
