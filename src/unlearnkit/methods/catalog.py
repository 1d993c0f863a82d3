"""Import every method module so that each registers itself in :data:`METHODS`.

``import unlearnkit.methods.catalog`` before looking methods up by name.
"""

from __future__ import annotations

# Part A of the zoo (spec/methods.md §2.2-§2.10).
from unlearnkit.methods import bt, ff, ft, ga, iu, ngplus, salun, scrub, srl  # noqa: F401

# isort: split
# Part B of the zoo (spec/methods.md §2.11-§2.19).
from unlearnkit.methods import cfk, cfw, ct, euk, fcs, kde, msg, prmq, rni  # noqa: F401

# isort: split
# SSSE and the two reference rows.
from unlearnkit.methods import reference, ssse  # noqa: F401
