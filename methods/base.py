"""The one base class every method subclasses: named hooks of the harness's single training loop.

The loop (``harness/training.py``) calls, in order (the one drawing of the hooks; the docs link here)::

    prepare(ctx)                                  once, on the starting (aligned) model; may replace ctx.model
    block = before_sequence(ctx)                  a training block on an adapter of its own, merged
                                                  before the first domain (Vaccine's alignment), or None
    for each domain:                              (a fresh LoRA adapter, B = 0, is attached first)
        before_domain(ctx)
        examples = data_mixture(ctx, examples)    what this domain trains on
        every optimizer step, for each micro-batch:
            with forward_context(ctx, batch):                  wraps the task loss's forward and backward
                task loss, backward
            extra_loss(ctx, batch)                              (None: nothing added; its own backward)
        then:
            grads = transform_gradients(ctx, grads)            task gradients only, before AdamW
            AdamW step
            update = transform_update(ctx, update)             the applied change (new - old)
        edits = edit_weights(ctx)                 new values for adapter tensors, or None
        follow_up = after_domain(ctx)             an extra training block (e.g. a repair), or None
        (the adapter is merged, the model evaluated)
        domain_report(ctx)                        JSON numbers stored with the evaluation

Hooks return values; the loop applies them. A method that needs one adapter for the whole sequence
(its memory or its reference lives in one adapter's coordinates) sets ``adapter_policy``. A method may keep
its own state (a Fisher matrix, a subspace) and must then implement ``state_dict``/``load_state_dict`` so a
killed run resumes.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from harness.core.errors import ConfigError

if TYPE_CHECKING:
    from harness.core.context import TrainContext
    from harness.core.data import Example
    from harness.core.settings import TrainSettings


class MethodConfig(BaseModel):
    """Typed knobs of a method; subclasses add fields. Unknown keys, NaN and infinities are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass
class TrainingBlock:
    """Extra training the loop runs through the same loop and hooks: after a domain (a repair) or
    once before the sequence (an alignment stage). ``settings`` are the block's own optimizer and
    LoRA settings (None: the suite's training settings). ``continue_optimizer``: a block after a
    domain steps on with the domain's AdamW (its moment estimates and step count) instead of a new
    one, whose first steps move every parameter by about the learning rate (Adam's bias-corrected
    m / sqrt(v) starts at +-1)."""

    name: str
    examples: list[Example]
    steps: int
    note: dict[str, Any] = field(default_factory=dict)
    settings: TrainSettings | None = None
    continue_optimizer: bool = False


class Method:
    """Standard behaviour everywhere: a method overrides only the hooks it needs."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    # A run's rough cost in Standard LoRA runs (the default micro suite, measured before issue 18:
    # SafeAnchor 3.4 with one 200-step CSM repair, SafeGrad 1.15, EWC 1.1; Vaccine and SafeAnchor
    # are estimates since their micro budgets changed, see their classes). The scheduler starts the
    # costliest runs first, so that parallel slots finish together, and ``erosion plan`` scales its
    # estimate by it.
    relative_cost: ClassVar[float] = 1.0
    # None: the suite's ``training.adapter_policy``. "persistent": this method keeps one adapter for
    # the whole sequence whatever the suite says (e.g. a memory kept in that adapter's coordinates).
    adapter_policy: ClassVar[str | None] = None
    # True where a hook reads ``ctx.calibration``: the runs' config hash then names what the
    # calibration set answers benign requests with (the model preset's ``calibration``), so a run
    # made with other answers is never taken for done.
    reads_calibration: ClassVar[bool] = False

    def __init__(self, config: MethodConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def make_config(cls, fields: dict[str, Any] | None, where: str = "") -> MethodConfig:
        try:
            return cls.Config.model_validate(fields or {})
        except ValidationError as err:
            problems = "; ".join(
                f"'{'.'.join(map(str, e['loc']))}' = {e.get('input')!r}: {e['msg']}" for e in err.errors()
            )
            valid = ", ".join(sorted(cls.Config.model_fields)) or "(none)"
            raise ConfigError(f"{where}: {problems}. Fix: valid fields of {cls.name} are {valid}.") from None

    # ---- hooks -----------------------------------------------------------------------------------
    def prepare(self, ctx: TrainContext) -> None:
        """Before the sequence, on the starting (aligned) model."""

    def before_sequence(self, ctx: TrainContext) -> TrainingBlock | None:
        """After ``prepare``, on the starting model: a block the loop trains on a fresh adapter of
        its own (``block.settings.lora``) and merges into the weights before the first domain."""
        return None

    def before_domain(self, ctx: TrainContext) -> None:
        """After the fresh adapter is attached, before the first step of a domain."""

    def data_mixture(self, ctx: TrainContext, examples: list[Example]) -> list[Example]:
        """The examples this domain trains on."""
        return examples

    def extra_loss(self, ctx: TrainContext, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """A term added to the task loss of this micro-batch (its gradient is not transformed)."""
        return None

    def forward_context(self, ctx: TrainContext, batch: dict[str, torch.Tensor]) -> AbstractContextManager:
        """Wraps the forward and backward pass of the task loss on this micro-batch.

        A method may enter forward hooks here (Vaccine's hidden-state perturbation, an activation
        capture) and remove them on exit; the loop's own loss and backward run inside.
        """
        return nullcontext()

    def transform_gradients(self, ctx: TrainContext, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Task gradients of the trainable parameters, before the optimizer sees them."""
        return grads

    def transform_update(self, ctx: TrainContext, update: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The parameter change the optimizer made this step (new - old)."""
        return update

    def edit_weights(self, ctx: TrainContext) -> dict[str, torch.Tensor] | None:
        """New values for trainable tensors after the domain's training (e.g. Safe LoRA's B <- C B)."""
        return None

    def after_domain(self, ctx: TrainContext) -> TrainingBlock | None:
        """After training and weight edits, before the adapter is merged."""
        return None

    def domain_report(self, ctx: TrainContext) -> dict[str, Any]:
        """Numbers to store with this domain's results (e.g. a Fisher spectrum); JSON-serialisable."""
        return {}

    # ---- resumability --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state but was given {sorted(state)}")

    # ---- introspection -------------------------------------------------------------------------
    @classmethod
    def overrides(cls, hook: str) -> bool:
        """Whether this class changes ``hook`` (the loop skips costly bookkeeping otherwise)."""
        return getattr(cls, hook) is not getattr(Method, hook)

    @classmethod
    def describe(cls) -> str:
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(doc.split())
