"""Reading and writing point clouds and meshes."""

__all__: list = []
