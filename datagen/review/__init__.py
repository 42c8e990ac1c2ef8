"""`datagen review OUT`: label a run's pairs in the browser, for `datagen calibrate`.

A stratified sample (sample.py: per task, kept pairs and rejected candidates spread over each gated score's range)
is served on 127.0.0.1 (server.py) to a page (assets/) that shows input, output, mask, instruction and task, takes a
label from the keyboard, and only then shows the scores and the gates' verdict. Each label is appended to
OUT/labels/ (datagen/labels.py) before the page moves on.
"""

from datagen.review.command import flags, run

__all__ = ["flags", "run"]
