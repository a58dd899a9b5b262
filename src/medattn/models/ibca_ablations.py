"""The IBCA-style ablation grid (``medattn ablate --grid ibca``): cell name -> {"model", "options"}.

Each cell removes one part of the reconstruction (docs/ibca.md, "Ablation switches"). The cell's
options replace the base config's ``model.options``; everything else (backbone, data, training) comes
from the base config. ``no_gm`` drops the whole Gaussian-mixture branch, and with it the bottleneck
and the contrastive alignment that need it; what is left is ``class_query`` plus the intervention.
"""
from __future__ import annotations

from ._registry import register_grid

GRID: dict[str, dict] = {
    "baseline": {"model": "baseline", "options": {}},
    "class_query": {"model": "class_query", "options": {}},
    "ibca": {"model": "ibca", "options": {}},
    "ibca_no_vib": {"model": "ibca", "options": {"use_vib": False}},
    "ibca_no_gm": {"model": "ibca", "options": {"use_gm": False, "use_vib": False, "use_contrastive": False,
                                                 "fusion": "mha"}},
    "ibca_no_contrastive": {"model": "ibca", "options": {"use_contrastive": False}},
    "ibca_no_intervention": {"model": "ibca", "options": {"use_intervention": False}},
    "ibca_no_causal": {"model": "ibca", "options": {"use_contrastive": False, "use_intervention": False}},
}


@register_grid("ibca")
def ibca_grid() -> dict[str, dict]:
    """``medattn ablate --grid ibca``: one cell per removed part of the reconstruction."""
    return GRID
