"""unlearnkit: machine unlearning for PyTorch.

Erase training samples from a trained model (SSSE closed-form erasure, the Deep Unlearn
method zoo) and show that the erasure worked (accuracy, membership inference, U-LiRA).
"""

__version__ = "0.1.0"
