"""Import every method module so that each registers itself in :data:`METHODS`.

``import unlearnkit.methods.catalog`` before looking methods up by name.
"""

from __future__ import annotations

# Part A of the zoo (spec/methods.md §2.2-§2.10).
# Part B of the zoo (spec/methods.md §2.11-§2.19) is appended below.
from unlearnkit.methods import cfk, cfw, ct, euk, fcs, kde, msg, prmq, rni  # noqa: F401,E402
