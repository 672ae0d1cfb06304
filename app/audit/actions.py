"""The audit vocabulary: every action the trail may record, in one dotted namespace."""

from enum import StrEnum


class Action(StrEnum):
    FIRM_UPDATED = "firm.updated"
