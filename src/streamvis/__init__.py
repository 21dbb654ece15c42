"""streamvis: online video instance segmentation in plain PyTorch.

Importing the package is cheap: it does not import torch. Import the sub-packages you need
(``streamvis.evaluation`` never imports torch; ``streamvis.models`` does).
"""

__version__ = "0.1.0"
