"""The run folder, owned in one place: its layout and the one definition of a committed shard (layout), the shard
writer (writer), the one reader every tool goes through (reader: RunFolder), the tars named on a command line (urls),
run.json, resume planning and failure records (run), and `datagen verify` (verify).
"""

from datagen.shards.layout import (
    MANIFEST_SCHEMA,
    MEMBERS,
    TAR_MTIME,
    InstructionRecord,
    ShardStats,
    WriteStats,
    clear_uncommitted,
    is_committed,
    now,
    read_stats,
    shard_name,
    shard_paths,
    write_stats,
)
from datagen.shards.reader import Candidate, RunFolder, Sample, Shard
from datagen.shards.urls import tar_urls
from datagen.shards.verify import Verdict, verify
from datagen.shards.writer import RejectedTarWriter, TarShardWriter, manifest_bytes

__all__ = [
    "Candidate",
    "MANIFEST_SCHEMA",
    "MEMBERS",
    "TAR_MTIME",
    "InstructionRecord",
    "RejectedTarWriter",
    "RunFolder",
    "Sample",
    "Shard",
    "ShardStats",
    "TarShardWriter",
    "Verdict",
    "WriteStats",
    "clear_uncommitted",
    "is_committed",
    "manifest_bytes",
    "now",
    "read_stats",
    "shard_name",
    "shard_paths",
    "tar_urls",
    "verify",
    "write_stats",
]
