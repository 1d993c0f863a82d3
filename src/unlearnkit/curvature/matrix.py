"""The curvature rows container: R (m x d) with the bookkeeping exact deletion needs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.errors import ConfigError, MemoryBudgetError, UnknownIdsError

#: Padding value in :attr:`GradientMatrix.group_members` past a group's size.
PAD_ID = -1


@dataclass(frozen=True)
class GradientMatrix:
    """Curvature rows R (m x d) with the bookkeeping needed to delete samples exactly.

    The curvature they define is ``(1/N) R^T R`` with ``N = normalizer = n_groups`` (the number
    of samples when ``group_size == 1``; SSSE eq. 2 uses N = n). Rows are stored group-major:
    group ``b`` owns rows ``b*r .. b*r + r - 1`` where ``r = rows_per_group`` (1 for gradients,
    C for a softmax Gauss-Newton, S for a true Fisher with S label draws, ...).

    Attributes:
        G: (m, d) rows, ``m = n_groups * rows_per_group``.
        row_group: (m,) int64, the group each row belongs to (index into ``group_members``).
        row_output: (m,) int64, which of its group's ``r`` rows it is (output unit, class,
            or label draw; 0 for gradients).
        group_members: (n_groups, group_size) int64 sample ids; entries past
            ``group_sizes[b]`` are ``PAD_ID`` (only the last group can be smaller).
        group_sizes: (n_groups,) int64 number of members of each group.
        sample_ids: (n,) int64 ids of the input samples, in input order.
        layout: the flat parameter layout the columns follow.
        kind: the row program ("empirical", "true", "ggn", ...).
        group_size: the requested group size g.
        seed: the seed of the group permutation (and of label draws for the true Fisher).
    """

    G: Tensor
    row_group: Tensor
    row_output: Tensor
    group_members: Tensor
    group_sizes: Tensor
    sample_ids: Tensor
    layout: ParamLayout
    kind: str
    group_size: int
    seed: int

    @classmethod
    def from_groups(
        cls,
        G: Tensor,
        r: int,
        members_pos: Tensor,
        sample_ids: Tensor,
        group_sizes: Tensor,
        layout: ParamLayout,
        kind: str,
        group_size: int,
        seed: int,
    ) -> GradientMatrix:
        """Rows of ``n_groups`` groups × ``r`` outputs, group-major; ``members_pos``
        (n_groups, g) are positions into ``sample_ids`` (−1 = padding, stored as ``PAD_ID``)."""
        n_groups = members_pos.shape[0]
        real = members_pos >= 0
        fill = torch.where(real, members_pos, torch.zeros_like(members_pos))
        return cls(
            G=G,
            row_group=torch.arange(n_groups).repeat_interleave(r),
            row_output=torch.arange(r).repeat(n_groups),
            group_members=torch.where(real, sample_ids[fill], torch.full_like(fill, PAD_ID)),
            group_sizes=group_sizes,
            sample_ids=sample_ids,
            layout=layout,
            kind=kind,
            group_size=group_size,
            seed=seed,
        )

    @property
    def m(self) -> int:
        return int(self.G.shape[0])

    @property
    def d(self) -> int:
        return int(self.G.shape[1])

    @property
    def n_samples(self) -> int:
        return int(self.sample_ids.numel())

    @property
    def n_groups(self) -> int:
        return int(self.group_sizes.numel())

    @property
    def rows_per_group(self) -> int:
        return self.m // max(self.n_groups, 1)

    @property
    def normalizer(self) -> int:
        """N in ``(1/N) R^T R``: the number of groups (= samples when ``group_size == 1``)."""
        return self.n_groups

    @property
    def member_mask(self) -> Tensor:
        """(n_groups, group_size) bool, True where ``group_members`` holds a real sample."""
        cols = torch.arange(self.group_members.shape[1], device=self.group_sizes.device)
        return cols[None, :] < self.group_sizes[:, None]

    @property
    def row_members(self) -> Tensor:
        """(m, group_size) sample ids of the members of each row's group (``PAD_ID`` padded)."""
        return self.group_members[self.row_group]

    @property
    def row_ids(self) -> Tensor:
        """(m,) the sample id of each row; only defined when ``group_size == 1``."""
        if self.group_members.shape[1] != 1:
            raise ConfigError(
                "row_ids needs group_size == 1; with groups use row_members / group_members"
            )
        return self.group_members[self.row_group, 0]

    def groups_of(self, ids: Tensor | list[int]) -> Tensor:
        """The group index of each id in ``ids`` (in order); unknown ids raise."""
        want = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        members = self.group_members.cpu()
        mask = self.member_mask.cpu()
        flat_ids = members[mask]
        flat_group = torch.arange(self.n_groups).unsqueeze(1).expand_as(members)[mask]
        order = torch.argsort(flat_ids)
        sorted_ids = flat_ids[order]
        idx = torch.searchsorted(sorted_ids, want).clamp(max=max(sorted_ids.numel() - 1, 0))
        found = sorted_ids[idx] == want if sorted_ids.numel() else torch.zeros_like(want).bool()
        if not bool(found.all()):
            missing = want[~found][:10].tolist()
            raise UnknownIdsError(f"{int((~found).sum())} id(s) not in these rows: {missing}")
        return flat_group[order[idx]]

    def rows_of(self, ids: Tensor | list[int]) -> Tensor:
        """Sorted indices of the rows whose group contains any of ``ids``."""
        groups = torch.unique(self.groups_of(ids))
        hit = torch.isin(self.row_group.cpu(), groups)
        return torch.nonzero(hit).reshape(-1)

    def dense_curvature(self, damping: float = 0.0, normalizer: float | None = None) -> Tensor:
        """``damping * I + (1/N) G^T G`` as a dense fp64 (d, d) matrix: for small-d checks only."""
        if self.d > 20_000:
            raise MemoryBudgetError(f"dense curvature of d={self.d} needs {8 * self.d**2} bytes")
        n = float(self.normalizer if normalizer is None else normalizer)
        g = self.G.double()
        return damping * torch.eye(self.d, dtype=torch.float64, device=g.device) + g.T @ g / n
