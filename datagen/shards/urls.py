"""The tars named on a command line (`--shards` of train, eval and classify): files, folders of tars, run folders
(their committed shards only) and URLs, `pipe:` and the schemes WebDataset opens itself as they are, any other
through fsspec. `tar_urls` makes them the URLs WebDataset reads; `committed_tars` is the rule for which tars of a
folder count, which RunFolder.tar_urls follows too.
"""

from __future__ import annotations

from pathlib import Path

from datagen.errors import ConfigError
from datagen.shards.layout import STATS
from datagen.storage import Folder


def tar_urls(entries: list[str], flag: str = "--shards") -> list[str]:
    """Tar paths from paths, folders (a run's committed shards, or a folder of tars) and URLs: `pipe:` and the
    schemes WebDataset opens itself, anything else through fsspec (s3://, gs://, memory:// ...; a URL not ending in
    .tar is a folder). In a run folder only committed shards count."""
    urls = []
    for entry in entries:
        if entry.startswith("pipe:"):
            urls.append(entry)
        elif "://" in entry:
            urls += _remote_tars(entry)
        elif Path(entry).is_dir():
            urls += _folder_tars(Folder(entry))
        elif Path(entry).is_file():
            urls.append(entry)
        else:
            raise ConfigError(f"{flag} {entry!r}: no such file, folder or URL")
    if not urls:
        raise ConfigError(f"{flag} {' '.join(entries)}: no .tar shards found")
    return urls


def _folder_tars(folder: Folder) -> list[str]:
    """The tars of a run (its shards/) or of a folder of them; where markers exist, the committed ones only."""
    shards = folder.sub("shards")
    names = shards.names()
    if not any(n.endswith(".tar") for n in names):
        shards, names = folder, folder.names()
    return committed_tars(shards, names)


def committed_tars(folder: Folder, names: list[str]) -> list[str]:
    """The URLs of the tars among a folder's file names; in a folder of datagen's (it has markers) only those
    of committed shards: uncommitted ones are invisible."""
    tars = [n for n in names if n.endswith(".tar") and not n.startswith(".")]
    if any(n.endswith(STATS) for n in names):
        tars = [n for n in tars if f"{n[: -len('.tar')]}{STATS}" in names]
    return [folder.url(n) for n in tars]


def _remote_tars(url: str) -> list[str]:
    from webdataset.gopen import gopen_schemes

    scheme = url.split("://", 1)[0]
    if gopen_schemes.get(scheme, _fsspec_open) is not _fsspec_open and scheme != "file":  # WebDataset's own
        return [url]
    gopen_schemes.setdefault(scheme, _fsspec_open)
    if url.endswith(".tar"):
        return [url]
    return _folder_tars(Folder(url))


def _fsspec_open(url: str, mode: str = "rb", bufsize: int = 8192, **_):
    """WebDataset's opener for schemes it does not know itself."""
    import fsspec

    return fsspec.open(url, mode).open()
