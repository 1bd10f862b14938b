"""``pb-build pull``: download a pinned release into a folder that works offline and in the official package."""

from __future__ import annotations

import shutil
from pathlib import Path

from pb_build.errors import PbBuildError
from pb_build.hub.client import check_repo_and_version, hub_errors, hub_progress_bars, make_api
from pb_build.manifests import manifest as manifests
from pb_build.manifests import provenance
from pb_build.release_folder import new_folder


def pull(repo_id: str, version: str, out: Path, *, token: str | None = None, overwrite: bool = False,
         progress: bool = True) -> Path:
    """Download ``vX.Y.Z`` of ``repo_id`` to ``out`` (atomically) and check it against its SHA256SUMS."""
    tag = check_repo_and_version(repo_id, version)
    api = make_api(token, need_token=False)
    with new_folder(out, overwrite) as tmp:
        with hub_errors(repo_id), hub_progress_bars(progress):
            tags = {t.name for t in api.list_repo_refs(repo_id, repo_type="dataset").tags}
            if tag not in tags:
                known = ", ".join(sorted(tags)) or "none"
                raise PbBuildError(f"{repo_id}: no version {tag} (published versions: {known})")
            api.snapshot_download(repo_id, repo_type="dataset", revision=tag, local_dir=tmp)
        # Download bookkeeping and the Hub's own .gitattributes are not part of the release.
        shutil.rmtree(tmp / ".cache", ignore_errors=True)
        (tmp / ".gitattributes").unlink(missing_ok=True)
        if not (tmp / provenance.SUMS).is_file():
            raise PbBuildError(f"{repo_id}@{tag}: not a pb-build release (no {provenance.SUMS})")
        for rel, digest in provenance.read_sums(tmp).items():
            path = tmp / rel
            if not path.is_file() or provenance.sha256_file(path) != digest:
                raise PbBuildError(f"{repo_id}@{tag}: downloaded {rel} does not match SHA256SUMS")
        manifests.read(tmp)  # a manifest this pb-build cannot read is an error now, not at first use
    return out.resolve()
