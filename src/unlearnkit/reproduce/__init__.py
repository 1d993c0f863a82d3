"""Reproductions of the SSSE paper's experiments (Peste, Alistarh & Lampert 2021) at CPU
scale, kept out of the engine: :mod:`.convex` (§5.1, linear multi-attribute model, Figure 1)
and :mod:`.deep` (§4, CNNs, Figure 2), with their ε search (:mod:`.search`) and Markdown
summaries (:mod:`.report`). Run them with ``unlearnkit reproduce ssse-convex|ssse-deep``.
"""
