"""Loaders that read published dataset layouts into :class:`EpisodeData`.

``load_clevrer`` lives in ``cjepa.data.clevrer``, ``load_dinowm_pusht`` in ``cjepa.data.dinowm``,
their shared helpers in ``cjepa.data.layout``; this module re-exports their public names.

Shape legend: T frames, H = W = ``size`` pixels, K objects (or state entities), F features.

**CLEVRER** (Yi et al. 2020). Field names below were checked against public code that parses
the released files (object_property / motion_trajectory / collision readers and question
loaders on GitHub), not against the release itself:

- ``video_XXXXX.mp4`` (480 x 320, 128 frames), usually under ``video_{split}/video_AAAAA-BBBBB/``.
- ``annotation_XXXXX.json``: ``scene_index``, ``video_filename``, ``object_property``
  [{object_id, color, material, shape}], ``motion_trajectory`` [{frame_id, objects: [{object_id,
  location [x, y, z], orientation [3], velocity [3], angular_velocity [3],
  inside_camera_view}]}], ``collision`` [{object_ids [2], frame_id, location}].
- ``{split}.json`` question files: [{scene_index, video_filename, questions: [{question_id,
  question, question_type, program, answer (descriptive) | choices: [{choice_id, choice,
  program, answer: "correct" | "wrong"}]}]}]; the test split has no answers.
- Not confirmed: what the three ``orientation`` numbers are. We read ``orientation[-1]`` as the
  rotation about the vertical axis; treat the ``angle`` column as a best guess.

**DINO-WM Push-T** (``gaoyuezhou/dino_wm``; checked against ``datasets/pusht_dset.py`` in several
public forks): a split folder (``pusht_noise/train``, ``.../val``) with ``states.pth``
(N, T_max, 5: agent x, y, block x, y, angle), ``velocities.pth`` (N, T_max, 2: agent vx, vy),
``rel_actions.pth`` / ``abs_actions.pth`` (N, T_max, 2, pixels; DINO-WM divides them by 100
when loading), ``seq_lengths.pkl`` (N valid lengths) and ``obses/episode_{i:03d}``. For Push-T
the forks read ``obses/episode_{i:03d}.mp4``; its point-maze / wall datasets use ``.pth``
tensors (T, H, W, 3) uint8. Both are accepted here (``.pth`` first).
"""

from cjepa.data.clevrer import (
    CLEVRER_STATE_COLUMNS,
    clevrer_states,
    load_clevrer,
    normalize_clevrer_question,
)
from cjepa.data.dinowm import DINOWM_STATE_COLUMNS, load_dinowm_pusht
from cjepa.data.layout import LayoutError, read_video

__all__ = [
    "CLEVRER_STATE_COLUMNS",
    "DINOWM_STATE_COLUMNS",
    "LayoutError",
    "clevrer_states",
    "load_clevrer",
    "load_dinowm_pusht",
    "normalize_clevrer_question",
    "read_video",
]
