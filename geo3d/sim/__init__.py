"""The simulator: procedural scenes ray-cast by LiDAR and depth-camera models."""

__all__: list = []
