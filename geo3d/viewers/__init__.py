"""Pictures of geo3d data and predictions: Open3D scene builders, offscreen rendering
(PNG, GIF, MP4), camera presets, and the interactive app behind ``geo3d view``.

Build a scene from ``Data`` (:func:`scene_from_data`, or the builders :func:`points`,
:func:`boxes`, :func:`tracks`, :func:`hand`, :func:`hands`, :func:`mesh`, added with
``+``), then :func:`render` it to a PNG or :func:`render_sequence` to a GIF. The numpy
bird's-eye rasteriser :func:`bev_image` / :func:`save_bev` needs no renderer.

Names are loaded on first use (PEP 562), so ``import geo3d.viewers.camera`` does not pull
in Open3D's renderer.
"""

from importlib import import_module

_EXPORTS = {
    "bev": ("bev_image", "save_bev"),
    "scene": ("Scene", "SceneLayer", "Material", "GROUPS"),
    "builders": ("points", "boxes", "tracks", "hand", "hands", "mesh", "scene_from_data",
                 "default_bones", "COLOR_BY"),
    "camera": ("Camera", "PRESETS", "camera_preset", "project"),
    "offscreen": ("render", "render_image", "render_sequence", "draw_legend"),
    "session": ("ViewSession",),
    "inference": ("Prediction", "load_model", "predict"),
    "sources": ("load_frames", "DATASETS"),
    "app": ("ViewerApp",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_WHERE))
