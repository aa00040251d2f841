"""Loaders that read published dataset layouts into :class:`EpisodeData`.

``load_clevrer`` lives in ``cjepa.data.clevrer``, ``load_dinowm_pusht`` in ``cjepa.data.dinowm``,
their shared helpers in ``cjepa.data.layout``; this module re-exports their public names. Each
module's docstring documents its layout (file names, fields, what was checked and against what).
"""

from cjepa.data.clevrer import (
    CLEVRER_STATE_COLUMNS,
    clevrer_states,
    count_clevrer,
    load_clevrer,
    normalize_clevrer_question,
)
from cjepa.data.dinowm import DINOWM_STATE_COLUMNS, count_dinowm_pusht, load_dinowm_pusht
from cjepa.data.layout import LayoutError, read_video

__all__ = [
    "CLEVRER_STATE_COLUMNS",
    "DINOWM_STATE_COLUMNS",
    "LayoutError",
    "clevrer_states",
    "count_clevrer",
    "count_dinowm_pusht",
    "load_clevrer",
    "load_dinowm_pusht",
    "normalize_clevrer_question",
    "read_video",
]
