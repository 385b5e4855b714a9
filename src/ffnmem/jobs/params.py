"""Parameters shared by the jobs: pydantic models that refuse unknown names and serialise as dicts.

A job's parameters are defined once, here or in its module; the CLI builds them from options and
the batch registry from a TOML table, so both run the job with the same values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from ffnmem.core.workbench import Workbench
from ffnmem.data.facts import EncodedFact, Fact, check_first_token, encode_facts


class Params(BaseModel):
    """Base of job parameters: unknown names are errors; instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FirstTokenParams(Params):
    # "strict": refuse answers whose first token is a bare space (facts.check_first_token);
    # "any": use the first token whatever it is (byte-level tiny models: machinery tests only)
    first_token: Literal["strict", "any"] = "strict"


def encoded_facts(wb: Workbench, facts: list[Fact], p: FirstTokenParams) -> list[EncodedFact]:
    """``facts`` tokenised for ``wb``, each answer's first token checked unless ``first_token='any'``."""
    enc = encode_facts(wb, facts)
    if p.first_token == "strict":
        for e in enc:
            check_first_token(wb, e)
    return enc
