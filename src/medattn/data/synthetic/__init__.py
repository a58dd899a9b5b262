"""The synthetic dermoscopy sets: the embedded default data (no download), with the truth known.

- ``single_lesion``: one lesion per image, its class carried by shape, colour and texture, a lesion
  mask, and background artifacts whose link to the class is a knob (reader ``synthetic``);
- ``multilabel``: several lesion types per image, one mask per class (reader ``synthetic_multilabel``);
- ``lesions`` (skin and lesion renderers), ``artifacts`` (rulers, ink, hair, bubbles, ...) and
  ``draw`` (the drawing primitives they share).
See docs/synthetic.md.
"""
from .single_lesion import (ARTIFACTS, CLASS_PROPORTIONS, LESION_RENDERERS, RANDOM_ARTIFACT_RATES, SHORTCUTS, SPLITS,
                            generate_synthetic, paint_artifact, plan_synthetic, read_synthetic, render_background,
                            render_lesion)

__all__ = ["ARTIFACTS", "CLASS_PROPORTIONS", "LESION_RENDERERS", "RANDOM_ARTIFACT_RATES", "SHORTCUTS", "SPLITS",
           "generate_synthetic", "paint_artifact", "plan_synthetic", "read_synthetic", "render_background",
           "render_lesion"]
