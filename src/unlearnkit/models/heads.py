"""Finding a model's classifier head without any attribute-name requirement.

Methods that reset, fine-tune or treat "the classifier" specially (FF, CF-k, EU-k, KDE, RNI)
need its ``nn.Linear``. :func:`find_classifier_head` takes the module path the user names
(``head="classifier"``, ``head="heads.head"``), or else finds it: the **last** ``nn.Linear`` in
registration order (``model.named_modules()``), which must have ``out_features`` equal to the
number of outputs when that number is given. unlearnkit's own models call it ``fc``; Hugging
Face's ``*ForSequenceClassification``/``*ForImageClassification`` models call it ``classifier``;
torchvision's ViT ``heads.head``: all are found without being named.
"""

from __future__ import annotations

from torch import nn

from unlearnkit.errors import UnsupportedError


def _named_head(model: nn.Module, head: str) -> tuple[str, nn.Linear]:
    try:
        module = model.get_submodule(head)
    except AttributeError:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise UnsupportedError(
            f"{type(model).__name__} has no submodule {head!r}; its Linear layers are "
            f"{linears or '(none)'}"
        ) from None
    if not isinstance(module, nn.Linear):
        raise UnsupportedError(
            f"the classifier head {head!r} of {type(model).__name__} is a "
            f"{type(module).__name__}, not a torch.nn.Linear"
        )
    return head, module


def find_classifier_head(
    model: nn.Module, head: str | None = None, num_outputs: int | None = None
) -> tuple[str, nn.Linear]:
    """``(module path, Linear)`` of the classifier head of ``model``.

    With ``head``: that submodule, which must be an ``nn.Linear``. Without: the last
    ``nn.Linear`` of ``model.named_modules()``; with ``num_outputs``, it must produce that many
    outputs. Raises :class:`UnsupportedError` when there is no Linear layer, when the last one
    has the wrong width, or when it is ambiguous (a Linear of the right width followed by
    others): then name the head with ``head=<module path>``.
    """
    if head is not None:
        name, linear = _named_head(model, head)
        if num_outputs is not None and linear.out_features != num_outputs:
            raise UnsupportedError(
                f"the classifier head {head!r} has {linear.out_features} outputs, but the data "
                f"has {num_outputs}"
            )
        return name, linear
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UnsupportedError(
            f"{type(model).__name__} has no torch.nn.Linear layer to serve as the classifier "
            "head; methods that reset or fine-tune the classifier cannot handle it"
        )
    name, last = linears[-1]
    if num_outputs is None or last.out_features == num_outputs:
        return name, last
    fits = [n for n, m in linears if m.out_features == num_outputs]
    if fits:
        raise UnsupportedError(
            f"cannot tell the classifier head of {type(model).__name__}: the last Linear "
            f"{name!r} has {last.out_features} outputs, and {fits} have {num_outputs}; "
            "name it with head=<module path>"
        )
    raise UnsupportedError(
        f"{type(model).__name__} has no Linear layer with {num_outputs} outputs (the number of "
        f"outputs of the data); its last Linear {name!r} has {last.out_features}"
    )
