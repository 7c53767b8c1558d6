"""Named outputs with the field names transformers users know; indexable like tuples, as there."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


class ModelOutput:
    """Attribute, key (`out["pooler_output"]`) and position (`out[0]`) access; None fields are skipped
    in positions and `to_tuple()`, as transformers does."""

    def to_tuple(self) -> tuple:
        return tuple(v for v in (getattr(self, f.name) for f in dataclasses.fields(self)) if v is not None)

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key):
        if isinstance(key, str):
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self):
        return iter(self.to_tuple())

    def __len__(self):
        return len(self.to_tuple())


@dataclass
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def wants_tuple(config, return_dict: bool | None) -> bool:
    """transformers' rule: the argument, else `config.return_dict`; a trace always records the tuple form."""
    if return_dict is None:
        return torch.jit.is_tracing() or not config.return_dict
    return not return_dict
