"""What the neuroflash emulator stores: tokens, quotas, images and rate windows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response


# ------------------------------------------------------------------------------ records
@dataclass
class Token:
    """An issued access token: whose, and until when (simulated seconds)."""

    client_id: str
    expires_at: float


@dataclass
class Quota:
    """One usage type's quota of the workspace (fields named as on the wire)."""

    usageTypeKey: str
    limitAmount: int = 1000
    limitAmountDaily: int = 100
    usedAmount: int = 0
    usedAmountDaily: int = 0
    bonusAmount: int = 0
    spilloverAmount: int = 0
    dailyRefreshed: bool = False

    @property
    def available(self) -> int:
        monthly = self.limitAmount + self.bonusAmount + self.spilloverAmount - self.usedAmount
        return max(0, min(monthly, self.limitAmountDaily - self.usedAmountDaily))

    def use(self, amount: int) -> None:
        self.usedAmount += amount
        self.usedAmountDaily += amount

    def to_wire(self) -> dict[str, Any]:
        data = asdict(self)
        data["availableAmount"] = self.available
        data["fairUseLimitReached"] = self.available == 0
        return data


@dataclass
class NfImage:
    """One image of the workspace, as the sandbox keeps it.

    ``recipe`` says how its pixels are drawn (they are not kept, only re-drawn when evicted
    from the cache), except for uploads, whose bytes are ``data``.
    """

    id: str
    generation_id: str
    workspace_id: str
    created_by: str
    prompt: str
    model: str | None
    parameters: dict[str, Any]
    input_image_ids: list[str]
    width: int
    height: int
    fmt: str
    created: float
    recipe: tuple[Any, ...]
    size: int = 0
    data: bytes | None = field(default=None, repr=False)
    deleted: bool = False


@dataclass
class Window:
    start: float
    count: int = 0


# ------------------------------------------------------------------------------ the emulator
Handler = Callable[[Request, str, dict[str, Any]], Awaitable[Response]]
