"""`datagen report OUT`: one static HTML page to judge a run at a glance.

Counts per task, rejects by reason, every score's histogram against its thresholds, throughput, the shard table,
the resolved configuration, and a paged gallery of input | output | mask with instruction, captions and scores —
kept, rejected and error candidates alike, filterable by task, status and reason and sortable by any score.

The page opens from disk (file://, no server, nothing from the network): its data are `<script src>` files that
push into a global, its JS and CSS (assets/) are inlined, and every string from the data reaches the page as
text (Python escapes the static tables; the gallery is built with `textContent`). It stays small for a run of any
size: manifests are streamed shard by shard reading only the columns needed, histograms accumulate into fixed bins,
and the gallery is a deterministic sample — per task x status the candidates whose hash of (seed, key, candidate)
is lowest, the `gallery` budget split evenly — so only sampled rows are read back and only sampled kept pairs are
decoded into thumbnails. OUT may be a local folder or any fsspec URL (s3://bucket/run); the report is written
through the same filesystem.

    datagen report out/remove                     # -> out/remove/report/index.html
    datagen report s3://bucket/run --dest /tmp/run-report

The run is read through datagen/shards (RunFolder: run.json, committed shards, manifests, tar members). The
modules, in the order a report is built:

- tally: the manifests streamed into counts, score histograms and the gallery's sample and thumbnails;
- plots: the figures (matplotlib, imported only when drawing);
- page: index.html, its tables, and the inlined CSS and JS of assets/;
- command: `build_report` ties them together and writes the files; the `datagen report` parser and entry.
"""

from datagen.report.command import add_parser, build_report, run, write_files

__all__ = ["add_parser", "build_report", "run", "write_files"]
