"""The error hierarchy: what users catch."""

import pytest

from geo3d import errors


def test_hierarchy():
    assert issubclass(errors.InvalidInputError, errors.Geo3dError)
    assert issubclass(errors.InvalidInputError, ValueError)
    assert issubclass(errors.FileFormatError, errors.Geo3dError)
    assert not issubclass(errors.Geo3dError, ValueError)


def test_message_survives():
    with pytest.raises(ValueError, match="pos must"):
        raise errors.InvalidInputError("pos must be finite")
