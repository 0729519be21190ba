"""Helpers shared by geo3d's tests and its users (equivariance checks, fixtures)."""

from geo3d.testing.equivariance import assert_equivariant, random_orthogonal, wigner_d_from_matrix

__all__ = ["assert_equivariant", "random_orthogonal", "wigner_d_from_matrix"]
