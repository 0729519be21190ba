"""``python -m geo3d.cli`` runs the ``geo3d`` command (used under ``torchrun``)."""

import sys

from geo3d.cli import main

sys.exit(main())
