"""Suite-wide settings: one torch thread per test process.

The tests use tiny models, where thread start-up and contention on the 2-core CI machine
cost far more than they give (measured ~20x slower per step under load with 2 threads).
"""

import torch

torch.set_num_threads(1)
