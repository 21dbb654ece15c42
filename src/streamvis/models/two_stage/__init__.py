"""The two-stage (Mask R-CNN) core shared by PCAN and MaskTrack R-CNN: RPN, RoI heads, assigners,
samplers, mask targets / pasting, and a backbone + FPN + RPN + RoI heads composition."""
