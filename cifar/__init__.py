"""cifar-explain core: data, models, one training loop, evaluation, checkpoints, explanations.

Nothing here imports Streamlit, and importing a module never loads data or weights.
"""

import os

# On an Apple-silicon Mac, an op that MPS lacks then runs on the CPU, with torch's warning naming it,
# instead of stopping the run. torch reads this once, at its import, which follows this package's.
# Elsewhere it does nothing. (cifar.runtime.mps_hint advises the same where torch came first.)
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The report's slides use these short names; the app shows them.
SHORT_CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Normalize((0.5,)*3, (0.5,)*3) as in the report: maps [0, 1] pixels to [-1, 1].
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
