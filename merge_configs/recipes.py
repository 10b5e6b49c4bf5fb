"""The seed recipes (IN -> RL pairs on Qwen2.5-VL-7B, METHOD.md section 0) that get checked-in merge YAMLs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from surgery.errors import FrankensteinError


class Recipe(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str
    in_model: str  # hub id of the SFT cold-start checkpoint
    rl_model: str  # hub id of the same run after RL
    num_layers: int = 28  # Qwen2.5-VL-7B decoder layers; the checked-in YAMLs use thirds 9/9/10


# Folder name under merge_configs/ -> recipe.
RECIPES: dict[str, Recipe] = {
    "openmmreasoner": Recipe(
        title="OpenMMReasoner",
        in_model="OpenMMReasoner/OpenMMReasoner-ColdStart",
        rl_model="OpenMMReasoner/OpenMMReasoner-RL",
    ),
    "revisual-r1": Recipe(
        title="Revisual-R1",
        in_model="csfufu/Revisual-R1-Coldstart",
        rl_model="csfufu/Revisual-R1-final",
    ),
    "mmr1": Recipe(title="MMR1", in_model="MMR1/MMR1-7B-SFT", rl_model="MMR1/MMR1-7B-RL"),
}

# Its YAMLs are also at the top level: merge_configs/<variant>.yaml.
DEFAULT_RECIPE = "openmmreasoner"


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise FrankensteinError(f"unknown recipe {name!r}; recipes are {', '.join(RECIPES)}")
    return RECIPES[name]
