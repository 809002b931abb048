"""Which model has rate budget now: the chosen model first, then ``extraction.overflow_models`` in order.

Each MiMo model has its own requests-per-minute budget, so a second model doubles what a backlog
can use. The limiter (``acquire(model, tokens) -> seconds to wait``, 0: go, see
:mod:`triage.ratelimit`) is asked for each candidate in turn; a refusal takes nothing, so asking
several costs no budget. The first one that grants is the model of the call; when none does, the
call waits for the soonest one (the caller defers: no retry is spent). Overflow is about budget:
which model to *start* from is the failure chain's question (:class:`~triage.extraction.model_chain.ModelChain`,
404s and open circuits), and an overflow model whose circuit is open is skipped here too.

>>> waits = {"mimo-v2-flash": 12.0, "mimo-v2.5": 0.0}
>>> budgets = ModelBudgets(lambda model, tokens: waits[model], ["mimo-v2.5"], available=lambda model: True)
>>> budgets.take("mimo-v2-flash", 1500)
Grant(model='mimo-v2.5', wait=0.0)
>>> waits["mimo-v2.5"] = 30.0
>>> budgets.take("mimo-v2-flash", 1500)
Grant(model=None, wait=12.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from triage.ratelimit.base import Headroom

#: A rate limiter's ``acquire(model, tokens) -> seconds to wait`` (0: go), e.g. triage.ratelimit's.
Acquire = Callable[[str, int], float]


@dataclass(frozen=True)
class Grant:
    """The model a call may go to now, its budget taken; or ``model=None`` and the seconds until one may."""

    model: str | None
    wait: float = 0.0


class ModelBudgets:
    """The budget order for one call: ``first``, then every available overflow model, each asked once.

    ``acquire`` None means no limiter: ``first`` always goes. ``available(model)`` says whether a
    model's circuit is closed (an overflow model that is retired or failing is not asked).
    """

    def __init__(self, acquire: Acquire | None, overflow_models: Sequence[str],
                 available: Callable[[str], bool]) -> None:
        self.acquire = acquire
        self.overflow_models = list(dict.fromkeys(overflow_models))
        self.available = available

    def order(self, first: str) -> list[str]:
        """The models asked for budget, in order (``first`` once, even when it is also an overflow model).

        >>> ModelBudgets(None, ["b", "a", "c"], available=lambda model: model != "c").order("a")
        ['a', 'b']
        """
        return list(dict.fromkeys([first, *filter(self.available, self.overflow_models)]))

    def headroom(self, first: str, peek: Callable[[str], Headroom]) -> Headroom:
        """The budget the models of :meth:`order` have now, together (``peek(model)``: a limiter's reading,
        see :meth:`triage.ratelimit.RateLimiter.peek`): their requests left, or the soonest wait.

        >>> budgets = ModelBudgets(None, ["b"], available=lambda model: True)
        >>> budgets.headroom("a", {"a": Headroom(3), "b": Headroom(40)}.get)
        Headroom(left=43, wait=0.0)
        >>> budgets.headroom("a", {"a": Headroom(0, 12.0), "b": Headroom(0, 5.0)}.get)
        Headroom(left=0, wait=5.0)
        """
        rooms = [peek(model) for model in self.order(first)]
        left = sum(room.left for room in rooms)
        return Headroom(left) if left else Headroom(0, min(room.wait for room in rooms))

    def take(self, first: str, tokens: int) -> Grant:
        """Take one request and ``tokens`` from the first model in :meth:`order` that has them."""
        if self.acquire is None:
            return Grant(first)
        waits = []
        for model in self.order(first):
            wait = self.acquire(model, tokens)
            if wait <= 0:
                return Grant(model)
            waits.append(wait)
        return Grant(None, min(waits))
