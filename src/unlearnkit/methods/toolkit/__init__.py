"""Building blocks of the method zoo, one module per job.

- :mod:`.batches`: seeded loaders and batch helpers;
- :mod:`.optim`: SGD settings (:class:`~.optim.SGDLoopConfig`) and learning-rate schedules;
- :mod:`.losses`: cross-entropy and KL distillation;
- :mod:`.loops`: the generic epoch loop, teacher copies, snapshots;
- :mod:`.search_space`: Optuna distributions;
- :mod:`.layout`: stem/blocks/classifier of a network, convolution layers;
- :mod:`.reinit`: seeded re-initialisation;
- :mod:`.grad_control`: frozen parameters, gradient multipliers, saved buffers.
"""
