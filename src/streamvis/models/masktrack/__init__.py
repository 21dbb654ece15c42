"""MaskTrack R-CNN (Yang et al., ICCV 2019; official code youtubevos/MaskTrackRCNN @ 10e5d7d).

A Mask R-CNN (the two-stage core in `streamvis.models.two_stage`) with a tracking head:

- `model.MaskTrackRCNN` / `model.build_masktrack`: the assembled model (method ``"masktrack"`` in
  `streamvis.models.build.METHODS`), mmdet v0.5 conventions by default;
- `track_head.TrackHead`: two fc layers on 7x7 RoI features, raw dot-product match logits with a
  constant "new object" column;
- `targets`: reference-frame pids, per-RoI match targets and the `loss_match` loss (`track_loss`);
- `convert`: official checkpoints read, checked and renamed (``streamvis convert --official``);
- `config.MaskTrackConfig`: the official configuration (41 classes, background first);
- `rule_weights`: golden.md's deterministic test weights.

The association rule used at test time is `streamvis.tracking.masktrack`.
"""
