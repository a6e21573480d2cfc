"""Public name of :mod:`core.evaluation.metrics` (``from core.metrics import foir_metrics``): the same module object."""

import sys

from core.evaluation import metrics as _metrics

sys.modules[__name__] = _metrics
