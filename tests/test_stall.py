"""A hung shard is noticed: a Ray worker stuck in a read that never returns (a named pipe whose writer never writes,
as a wedged network filesystem behaves) finishes no shard within actor.stall_seconds; it is killed and replaced, the
shard retried and counted as `worker_stalled`, and once the input answers again the run ends with the bytes of a
clean run."""

from __future__ import annotations

import errno
import os
import threading
import time

from conftest import FAST, committed_checksums, run_inline

from datagen import images
from datagen.text_photos import photo

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins")
ARGS = ["--task", "color", "--source", "images", "--n", "6", "--shard-size", "2", "--no-progress", *FAST]


def _folder(root, hung: str | None = None):
    root.mkdir(parents=True)
    for name in PHOTOS:
        data = images.encode(photo(name), "png")
        if name == hung:
            os.mkfifo(root / f"{name}.png")
            (root.parent / f"{name}.real").write_bytes(data)
        else:
            (root / f"{name}.png").write_bytes(data)
        (root / f"{name}.txt").write_text(f"a photo of the {name}")
    return root


def _hang_the_first_reader(fifo, real, held: list, deadline: float) -> None:
    """Once a reader has opened the pipe, hold its write end open without writing (so the reader's read never
    returns), and put the real file in the pipe's place for the readers after it."""
    while time.monotonic() < deadline:
        try:
            held.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as e:
            if e.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            time.sleep(0.02)
            continue
        os.replace(real, fifo)
        return


def test_a_stalled_worker_is_replaced_and_the_run_makes_the_bytes_of_a_clean_run(tmp_path, ray_cluster):
    clean = tmp_path / "clean-run"
    run_inline("generate", "--input", str(_folder(tmp_path / "clean")), "--out", str(clean), "--workers", "0", *ARGS)
    photos = _folder(tmp_path / "hung" / "photos", hung="rocket")
    held: list[int] = []
    swapper = threading.Thread(
        target=_hang_the_first_reader,
        args=(photos / "rocket.png", photos.parent / "rocket.real", held, time.monotonic() + 120),
        daemon=True,
    )
    swapper.start()
    out = tmp_path / "hung-run"
    try:
        proc = run_inline(
            "generate",
            "--input",
            str(photos),
            "--out",
            str(out),
            "--workers",
            "2",
            "--set",
            "pipeline.actor.stall_seconds=6",
            *ARGS,
        )
    finally:
        for fd in held:
            os.close(fd)
    assert held, "the run never read the photo behind the pipe"
    assert "worker_stalled: 1" in proc.stdout, proc.stdout
    assert committed_checksums(out, texts=True) == committed_checksums(clean, texts=True)
    assert len(committed_checksums(clean)) == 3
