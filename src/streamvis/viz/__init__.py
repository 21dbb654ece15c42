"""Visual output: mask overlays of tracks and results files, dataset previews, metric plots.

Images are (H, W, 3) uint8 BGR numpy arrays (the library's frame format). matplotlib is
imported only inside the plotting function, so importing this package stays cheap. The
commands (``predict --viz``, ``render``, ``demo``, ``synth --preview``) only call what is here:

- `overlay_instances`, `OverlayWriter`: one frame / one video of drawn instances (draw.py, video.py);
- `TrackDrawer`: live tracks during prediction (a `streamvis.engine.predict.predict_video` callback);
- `render_results_video`: the tracks of a saved results json over a video's frames (video.py);
- `select_tracks_to_draw`, `one_entry_per_object`: one drawn entry per object (select.py);
- `write_dataset_preview`: a dataset's ground truth (contact sheet PNG + MP4) (preview.py);
- `plot_per_class_ap`: the per-category AP bar chart (draw.py).
"""

from __future__ import annotations

from streamvis.viz.draw import (
    _free_spot,
    color_for_id,
    contact_sheet,
    instance_id_map,
    label_text,
    mask_contour,
    overlay_instances,
    plot_per_class_ap,
    save_id_png,
)
from streamvis.viz.preview import write_dataset_preview
from streamvis.viz.select import (
    DRAW_MAX_OVERLAP,
    DRAW_SCORE_THRESHOLD,
    RESULTS_SCORE_THRESHOLD,
    TRACK_SCORE_THRESHOLD,
    one_entry_per_object,
    select_tracks_to_draw,
    suppress_overlapping,
)
from streamvis.viz.video import DEFAULT_FPS, OverlayWriter, TrackDrawer, render_results_video

__all__ = [
    "DEFAULT_FPS",
    "DRAW_MAX_OVERLAP",
    "DRAW_SCORE_THRESHOLD",
    "OverlayWriter",
    "RESULTS_SCORE_THRESHOLD",
    "TRACK_SCORE_THRESHOLD",
    "TrackDrawer",
    "_free_spot",
    "color_for_id",
    "contact_sheet",
    "instance_id_map",
    "label_text",
    "mask_contour",
    "one_entry_per_object",
    "overlay_instances",
    "plot_per_class_ap",
    "render_results_video",
    "save_id_png",
    "select_tracks_to_draw",
    "suppress_overlapping",
    "write_dataset_preview",
]
