"""The efficiency layer: profile, prune, quantize and export any geo3d model.

Every transform returns a new model (a deep copy) and leaves its input untouched.
"""

from geo3d.efficiency.export import export_onnx, export_onnx_blocks, export_program
from geo3d.efficiency.profile import Profile, count_macs, mac_breakdown, profile
from geo3d.efficiency.prune import PruneConfig, compression_ratio, prune, sparsity
from geo3d.efficiency.quantize import QuantConfig, QuantReport, quantize

__all__ = ["Profile", "profile", "count_macs", "mac_breakdown", "PruneConfig", "prune",
           "sparsity", "compression_ratio", "QuantConfig", "QuantReport", "quantize",
           "export_program", "export_onnx", "export_onnx_blocks"]

from geo3d.efficiency.conditional import BudgetController, ConditionalConfig, conditional  # noqa: E402
from geo3d.efficiency.distill import DistillConfig, distill, kd_loss  # noqa: E402
from geo3d.efficiency.early_exit import EarlyExitModel  # noqa: E402
from geo3d.efficiency.routing import Router  # noqa: E402
from geo3d.efficiency.slimmable import SlimmableModel  # noqa: E402

__all__ += ["ConditionalConfig", "conditional", "BudgetController", "SlimmableModel",
            "EarlyExitModel", "Router", "DistillConfig", "distill", "kd_loss"]

from geo3d.efficiency.equivariant_quant import IrrepsQuantizer  # noqa: E402
from geo3d.efficiency.mixed_precision import choose_bits, sensitivity  # noqa: E402

__all__ += ["IrrepsQuantizer", "sensitivity", "choose_bits"]
