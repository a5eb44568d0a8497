"""What a wire adapter produces from one request: the project's token, commands and rejects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from idstitch.commands import Command
from idstitch.outcomes import Rejection


@dataclass(slots=True)
class RejectedEvent:
    """An event the adapter could not turn into a command; it is kept in the dead-letter store."""

    index: int
    rejection: Rejection
    payload: Any


@dataclass(slots=True)
class DecodedRequest:
    token: str | None
    commands: list[Command] = field(default_factory=list)
    # Position of each command's event in the request, for per-event answers.
    indexes: list[int] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)

    def add(self, index: int, command: Command | Rejection, payload: Any) -> None:
        if isinstance(command, Rejection):
            self.rejected.append(RejectedEvent(index, command, payload))
        else:
            self.commands.append(command)
            self.indexes.append(index)
