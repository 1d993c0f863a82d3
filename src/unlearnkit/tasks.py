"""Task objects: everything that depends on the kind of prediction a model makes.

One :class:`Task` per task type owns its target validation, per-sample loss, prediction,
correctness, label sampling from the model's predictive distribution (true Fisher) and the
factor of its logit Hessian (Gauss-Newton rows). Data stores the task *name*; code that needs
its behaviour calls :func:`get_task`. Adding a task type means writing one :class:`Task`
subclass and registering it in :data:`TASKS` (here or in its own module).

``multiclass`` (targets: int64 class indices ``y_i ∈ {0..K-1}``, logits ``z_i ∈ R^K``)::

    ℓ(z_i, y_i) = -log softmax(z_i)[y_i] = logsumexp(z_i) - z_{i, y_i}        (cross-entropy)
    predict(z_i) = argmax_k z_{i,k}
    H(z) = d²ℓ/dz² = diag(p) - p pᵀ = L Lᵀ,  L = diag(√p) - p √pᵀ,  p = softmax(z)

``multilabel`` (targets: float matrix ``y_i ∈ {0,1}^A``, logits ``z_i ∈ R^A``; one
independent logistic model per attribute, as in the SSSE paper's CelebA experiment)::

    ℓ(z_i, y_i) = Σ_a [ softplus(z_{i,a}) - y_{i,a} z_{i,a} ]
                = -Σ_a [ y_{i,a} log σ(z_{i,a}) + (1 - y_{i,a}) log(1 - σ(z_{i,a})) ]
    predict(z_i) = 1[z_{i,a} > 0]   (i.e. σ(z) > 1/2), as a float matrix
    H(z) = diag(σ(z)(1 - σ(z))) = L Lᵀ,  L = diag(√(σ(z)(1 - σ(z))))

The binary cross-entropy is **summed** over attributes per sample (not averaged), so that the
objective of the 40-attribute linear model is the sum of 40 independent logistic losses and its
Fisher is block diagonal with one block per attribute (SSSE §5.1). :func:`mean_loss` averages
the per-sample losses over the batch: ``L = (1/n) Σ_i ℓ(z_i, y_i)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.registry import Registry


class Task(ABC):
    """The behaviour of one task type (see the module docstring for the formulas).

    Batched methods take logits ``(n, C)`` and targets ``(n, ...)``; the ``sample_*`` and
    ``ggn_values`` methods act on one sample and are vmappable (no ``.item()``, no
    data-dependent Python control flow).
    """

    #: registry name, stored by datasets and configs
    name: str = ""
    description: str = ""
    #: True when the outputs are independent given the logits (the logit Hessian is diagonal),
    #: so per-output-head curvature blocks of a linear model need one row per sample
    independent_outputs: bool = False

    #: dtype of the stored targets, and what the labels look like (for messages)
    label_dtype: torch.dtype = torch.int64
    labels_doc: str = ""

    # ------------------------------------------------------------------ targets
    def matches(self, y: Tensor) -> bool:
        """Whether labels of this shape and dtype can only mean this task (task inference for
        a user's data that does not name its task)."""
        return False

    @abstractmethod
    def coerce_targets(
        self, y: Tensor, classes: tuple[str, ...] | None
    ) -> tuple[Tensor, tuple[str, ...]]:
        """A user's labels in this task's stored form (``label_dtype``) with the class or
        attribute names (given, or ``"0".."K-1"``); :class:`DataError` when they are not
        valid for this task (shape, dtype, range)."""

    @abstractmethod
    def check_targets(self, y: Tensor, num_outputs: int | None = None) -> None:
        """Raise :class:`DataError` unless ``y`` are valid targets (dtype, shape, range)."""

    def check(self, logits: Tensor, y: Tensor) -> None:
        """Logits must be ``(n, C)`` and ``y`` valid targets for them."""
        if logits.dim() != 2:
            raise DataError(
                f"{self.name} logits must be (n, outputs), got shape {tuple(logits.shape)}"
            )
        self.check_targets(y, int(logits.shape[1]))
        if y.shape[0] != logits.shape[0]:
            raise DataError(f"{logits.shape[0]} logits but {y.shape[0]} targets")

    # ------------------------------------------------------------------ loss and prediction
    @abstractmethod
    def _per_sample(self, logits: Tensor, y: Tensor) -> Tensor: ...

    def per_sample_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """ℓ(z_i, y_i) for each sample, shape ``(n,)``; targets are validated first."""
        self.check(logits, y)
        return self._per_sample(logits, y)

    def mean_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """``(1/n) Σ_i ℓ(z_i, y_i)``."""
        return self.per_sample_loss(logits, y).mean()

    @abstractmethod
    def sample_loss(self, z: Tensor, y: Tensor) -> Tensor:
        """ℓ(z, y) of ONE sample (logits ``(C,)``), a scalar; vmappable, for curvature rows."""

    @abstractmethod
    def logit_gradient(self, logits: Tensor, y: Tensor) -> Tensor:
        """``dℓ/dz`` for a batch, ``(n, C)`` (closed-form rows of linear models)."""

    @abstractmethod
    def predict(self, logits: Tensor) -> Tensor:
        """Predicted targets, in the dtype and shape of valid targets."""

    def correct(self, logits: Tensor, y: Tensor) -> Tensor:
        """Per-sample fraction of correct predictions, ``(n,)`` float64 in [0, 1]."""
        pred = self.predict(logits)
        hit = (pred == y.to(pred.dtype)).double()
        return hit.reshape(hit.shape[0], -1).mean(dim=1)

    def accuracy(self, logits: Tensor, y: Tensor) -> float:
        """Mean of :meth:`correct`: top-1 accuracy (multiclass), mean per-attribute accuracy
        (multilabel: ``(1/(n·A)) Σ_i Σ_a 1[1(z_ia > 0) = y_ia]``)."""
        return float(self.correct(logits, y).mean())

    # ------------------------------------------------------------------ true Fisher
    @abstractmethod
    def uniform_shape(self, num_outputs: int) -> tuple[int, ...]:
        """Shape of the uniforms one label draw consumes (inverse-CDF sampling)."""

    @abstractmethod
    def sample_labels(self, logits: Tensor, u: Tensor) -> Tensor:
        """Labels drawn from the predictive distribution: ``logits (b, C)``, ``u (b, S,
        *uniform_shape)`` -> ``(b, S, ...)`` in the dtype :meth:`sample_loss` expects."""

    # ------------------------------------------------------------------ Gauss-Newton
    @abstractmethod
    def ggn_aux(self, logits: Tensor, y: Tensor) -> Tensor:
        """Constants (no gradient) that define L with ``L Lᵀ = d²ℓ/dz²`` at ``logits (b, C)``."""

    @abstractmethod
    def ggn_values(self, z: Tensor, aux: Tensor) -> Tensor:
        """``Lᵀ z`` for ONE sample; its gradient rows are ``J_iᵀ L[:, k]`` (vmappable)."""

    # ------------------------------------------------------------------ data selection
    @abstractmethod
    def same_kind(self, reference_y: Tensor, y: Tensor, attribute: int | None = None) -> Tensor:
        """``(n,)`` bool: which targets ``y`` are "of the same kind" as ``reference_y``
        (same classes; or having ``attribute``), used to match held-out data to a forget set."""

    def __repr__(self) -> str:
        return f"Task({self.name!r})"


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    """Register a task instance under ``task.name``."""
    return TASKS.register(task.name)(task)


def get_task(task: str | Task) -> Task:
    """The :class:`Task` for a registered name, or ``task`` itself."""
    if isinstance(task, Task):
        return task
    if not isinstance(task, str):
        raise ConfigError(f"a task is a name or a Task, got {type(task).__name__}")
    return TASKS.get(task)


class MulticlassTask(Task):
    """Softmax cross-entropy over K classes; prediction = argmax."""

    name = "multiclass"
    description = "softmax cross-entropy; prediction = argmax"
    label_dtype = torch.int64
    labels_doc = "integer class indices of shape (n,)"

    def matches(self, y: Tensor) -> bool:
        return y.ndim == 1 and not y.is_floating_point() and y.dtype != torch.bool

    def coerce_targets(
        self, y: Tensor, classes: tuple[str, ...] | None
    ) -> tuple[Tensor, tuple[str, ...]]:
        if not self.matches(y):
            raise DataError(
                f"multiclass labels must be integer class indices of shape (n,), got "
                f"{tuple(y.shape)} {y.dtype}"
            )
        y = y.to(torch.int64)
        k = len(classes) if classes is not None else int(y.max()) + 1 if y.numel() else 0
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
            raise DataError(
                f"multiclass labels must lie in [0, {k}); found {int(y.min())}..{int(y.max())}"
            )
        return y, classes if classes is not None else tuple(map(str, range(k)))

    def check_targets(self, y: Tensor, num_outputs: int | None = None) -> None:
        if y.dtype != torch.int64 or y.dim() != 1:
            raise DataError(
                f"multiclass targets must be int64 class indices of shape (n,), "
                f"got {y.dtype} of shape {tuple(y.shape)}"
            )
        if num_outputs is not None and y.numel():
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= num_outputs:
                raise DataError(
                    f"multiclass labels must lie in 0..{num_outputs - 1}, got range {lo}..{hi}"
                )

    def _per_sample(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, reduction="none")

    def sample_loss(self, z: Tensor, y: Tensor) -> Tensor:
        logp = torch.log_softmax(z, dim=-1)
        return -logp.gather(-1, y.long().reshape(1)).squeeze(-1)

    def logit_gradient(self, logits: Tensor, y: Tensor) -> Tensor:
        """``softmax(z) - onehot(y)``."""
        return torch.softmax(logits, dim=-1) - F.one_hot(y, logits.shape[-1]).to(logits.dtype)

    def predict(self, logits: Tensor) -> Tensor:
        return logits.argmax(dim=1)

    def uniform_shape(self, num_outputs: int) -> tuple[int, ...]:
        return ()

    def sample_labels(self, logits: Tensor, u: Tensor) -> Tensor:
        """``y = min{k : cumsum(softmax(z))_k > u}``: a draw from Categorical(softmax(z))."""
        cdf = torch.softmax(logits.double(), dim=-1).cumsum(-1)  # (b, C)
        idx = torch.searchsorted(cdf.contiguous(), u.double().contiguous(), right=True)
        return idx.clamp(max=logits.shape[-1] - 1)

    def ggn_aux(self, logits: Tensor, y: Tensor) -> Tensor:
        return torch.softmax(logits, dim=-1)

    def ggn_values(self, z: Tensor, aux: Tensor) -> Tensor:
        """``Lᵀ z`` with ``L = diag(√p) - p √pᵀ``: ``√p_k (z_k - p·z)``."""
        return aux.sqrt() * (z - (aux * z).sum())

    def same_kind(self, reference_y: Tensor, y: Tensor, attribute: int | None = None) -> Tensor:
        return torch.isin(y, torch.unique(reference_y))


class MultilabelTask(Task):
    """Independent sigmoid/BCE heads, BCE summed over attributes; prediction = ``z > 0``."""

    name = "multilabel"
    description = "binary cross-entropy with logits, summed over attributes; prediction = z > 0"
    independent_outputs = True
    label_dtype = torch.float32
    labels_doc = "a 0/1 matrix of shape (n, attributes)"

    def matches(self, y: Tensor) -> bool:
        return y.ndim == 2 and (not y.numel() or bool(((y == 0) | (y == 1)).all()))

    def coerce_targets(
        self, y: Tensor, classes: tuple[str, ...] | None
    ) -> tuple[Tensor, tuple[str, ...]]:
        if not self.matches(y):
            raise DataError(
                f"multilabel labels must be an (n, attributes) matrix of 0/1, got shape "
                f"{tuple(y.shape)}" + ("" if y.ndim != 2 else " with values other than 0 and 1")
            )
        k = y.shape[1]
        if classes is not None and len(classes) != k:
            raise DataError(f"{len(classes)} attribute names for {k} label columns")
        return y.to(torch.float32), classes if classes is not None else tuple(map(str, range(k)))

    def check_targets(self, y: Tensor, num_outputs: int | None = None) -> None:
        if not y.is_floating_point() or y.dim() != 2:
            raise DataError(
                f"multilabel targets must be a float matrix of {{0,1}} values (n, attributes), "
                f"got {y.dtype} of shape {tuple(y.shape)}"
            )
        if num_outputs is not None and y.shape[1] != num_outputs:
            raise DataError(
                f"multilabel targets must be a float matrix with {num_outputs} attributes, "
                f"got shape {tuple(y.shape)}"
            )
        if y.numel() and not bool(((y == 0) | (y == 1)).all()):
            raise DataError("multilabel targets must be 0 or 1")

    def _per_sample(self, logits: Tensor, y: Tensor) -> Tensor:
        y = y.to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(dim=1)

    def sample_loss(self, z: Tensor, y: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(z, y.to(z.dtype), reduction="sum")

    def logit_gradient(self, logits: Tensor, y: Tensor) -> Tensor:
        """``σ(z) - y``."""
        return torch.sigmoid(logits) - y.to(logits.dtype)

    def predict(self, logits: Tensor) -> Tensor:
        return (logits > 0).to(logits.dtype)

    def uniform_shape(self, num_outputs: int) -> tuple[int, ...]:
        return (num_outputs,)

    def sample_labels(self, logits: Tensor, u: Tensor) -> Tensor:
        """``y_a = [u_a < σ(z_a)]``: independent Bernoulli draws per attribute."""
        return (u < torch.sigmoid(logits).unsqueeze(1)).to(logits.dtype)

    def ggn_aux(self, logits: Tensor, y: Tensor) -> Tensor:
        p = torch.sigmoid(logits)
        return (p * (1 - p)).sqrt()

    def ggn_values(self, z: Tensor, aux: Tensor) -> Tensor:
        """``Lᵀ z`` with ``L = diag(√(p(1-p)))``."""
        return aux * z

    def same_kind(self, reference_y: Tensor, y: Tensor, attribute: int | None = None) -> Tensor:
        if attribute is None:
            return torch.ones(y.shape[0], dtype=torch.bool)
        return y[:, attribute] > 0.5


register_task(MulticlassTask())
register_task(MultilabelTask())


def per_sample_loss(task: str | Task, logits: Tensor, y: Tensor) -> Tensor:
    """Loss of each sample, shape ``(n,)`` (formulas in the module docstring)."""
    return get_task(task).per_sample_loss(logits, y)


def mean_loss(task: str | Task, logits: Tensor, y: Tensor) -> Tensor:
    """``(1/n) Σ_i ℓ(z_i, y_i)``: the batch mean of :func:`per_sample_loss`."""
    return get_task(task).mean_loss(logits, y)


def predict(task: str | Task, logits: Tensor) -> Tensor:
    """Predicted labels: class indices (multiclass) or a {0,1} float matrix (multilabel)."""
    return get_task(task).predict(logits)


def infer_task(y: Tensor) -> Task:
    """The one registered task whose :meth:`Task.matches` accepts labels ``y``."""
    found = [t for t in (TASKS.get(n) for n in TASKS.names()) if t.matches(y)]
    if len(found) != 1:
        kinds = "; ".join(f"{n}: {TASKS.get(n).labels_doc}" for n in TASKS.names())
        raise DataError(
            f"cannot tell the task from labels of shape {tuple(y.shape)} and dtype {y.dtype} "
            f"({kinds}); convert the labels or pass task="
        )
    return found[0]
