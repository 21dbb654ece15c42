"""PCAN (Prototypical Cross-Attention Networks, NeurIPS 2021), the parts specific to the method.

Faithful to the official code (SysCV/pcan @ 281e3a7; reference/pcan/facts.md), with official
state-dict names:

- `FrameAttention` (``frame_attention.py``): frame-level prototypical cross-attention on P2/P3,
  test-time only, state reset at frame 0 of each video.
- `QuasiDenseEmbedHead` (``embed_head.py``): the QDTrack embedding head.
- ``losses.py``: the QDTrack association losses (``loss_track``, ``loss_track_aux``), the refine
  head's training pairing and ``loss_refine``.
- `EMMatchHeadPlus` (``refine_head.py``): the instance-level refine head.
- ``association.py``: the per-frame test flow after detection (tracker match -> refine head with
  the tracklets' references -> memory update).
- ``official.py``: official checkpoint keys of these parts; ``rule_weights.py``: the deterministic
  weights of the goldens.

The two-stage core (RPN, RoIAlign, box and mask heads) lives in ``models/two_stage``; the
quasi-dense tracker in ``streamvis.tracking.quasi_dense``.
"""

from streamvis.models.pcan.embed_head import QuasiDenseEmbedHead
from streamvis.models.pcan.frame_attention import FrameAttention
from streamvis.models.pcan.refine_head import EMMatchHeadPlus

__all__ = ["EMMatchHeadPlus", "FrameAttention", "QuasiDenseEmbedHead"]
