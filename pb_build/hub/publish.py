"""``pb-build push``: publish a release folder as ONE commit with a pinned parent, then tag exactly that commit.

The repo can grow source by source: files of sources that are not in this release are kept, and the card,
manifest, CHANGELOG.md and SHA256SUMS on the Hub are merged from the remote ones and the local release. Tags are
never moved: a version that exists is refused before anything is uploaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError
from tqdm.auto import tqdm

from pb_build import __version__
from pb_build.errors import PbBuildError
from pb_build.hub.client import check_repo_and_version, hub_errors, hub_progress_bars, make_api, status_of
from pb_build.manifests import manifest as manifests
from pb_build.manifests import provenance
from pb_build.verify import verify_release
from pb_build.writers.card import read_preview, release_card

META = ("README.md", manifests.MANIFEST, provenance.SUMS, "CHANGELOG.md")
ATTEMPTS = 3
UPLOAD_CHUNK = 64  # files per pre-upload call: the overall progress bar advances once per chunk
Echo = Callable[[str], None]


@dataclass
class RemoteState:
    """The repo at one commit: file oids (sha256 for LFS, git blob sha1 otherwise) and pb-build's metadata."""

    head: str | None = None
    oids: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> ("lfs"|"git", oid)
    sizes: dict[str, int] = field(default_factory=dict)
    manifest: manifests.Manifest | None = None
    sums: dict[str, str] = field(default_factory=dict)
    changelog: str = ""
    tags: set[str] = field(default_factory=set)


@dataclass
class PushPlan:
    """What one push would do."""

    tag: str
    files: dict[str, Path]
    sums: dict[str, str]
    additions: list[str]
    unchanged: list[str]
    deletions: list[str]
    changelog_entry: str
    configs: list[str] = field(default_factory=list)  # the dataset configs of the repo after the push
    sizes: dict[str, int] = field(default_factory=dict)  # bytes of each file in ``files``
    create_repo: bool = False
    commit: str | None = None  # set once the commit exists

    def upload_bytes(self) -> int:
        return sum(self.sizes[p] for p in self.additions)

    def summary(self, repo_id: str, dry_run: bool) -> dict[str, Any]:
        """The push as data (``pb-build push --json``): counts and bytes per folder, not every path."""
        uploads: dict[str, dict[str, int]] = defaultdict(lambda: {"files": 0, "bytes": 0})
        for rel in self.additions:
            uploads[folder_of(rel)]["files"] += 1
            uploads[folder_of(rel)]["bytes"] += self.sizes[rel]
        deletions: dict[str, dict[str, int]] = defaultdict(lambda: {"files": 0})
        for rel in self.deletions:
            deletions[folder_of(rel)]["files"] += 1
        return {
            "repo": repo_id, "tag": self.tag, "version": self.tag[1:], "dry_run": dry_run,
            "create_repo": self.create_repo, "commit": self.commit,
            "upload": {"files": len(self.additions), "bytes": self.upload_bytes(),
                       "folders": dict(sorted(uploads.items()))},
            "unchanged": len(self.unchanged),
            "delete": {"files": len(self.deletions), "folders": dict(sorted(deletions.items()))},
            "verified": 0 if dry_run else len(self.sums),
            "load": [f'load_dataset("{repo_id}", "{c}", revision="{self.tag}")' for c in self.configs],
        }


def folder_of(rel: str) -> str:
    """The folder a release file is summarised under: ``quickdraw/``, ``test/``, ``test/QuickDraw/`` or ``./``."""
    parts = rel.split("/")
    return "./" if len(parts) == 1 else "/".join(parts[:min(2, len(parts) - 1)]) + "/"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _read_remote(api: HfApi, repo_id: str, revision: str, scratch: Path) -> RemoteState:
    state = RemoteState(head=revision)
    for item in api.list_repo_tree(repo_id, recursive=True, revision=revision, repo_type="dataset"):
        if getattr(item, "lfs", None) is not None:
            state.oids[item.path] = ("lfs", item.lfs.sha256)
            state.sizes[item.path] = item.size
        elif hasattr(item, "blob_id"):
            state.oids[item.path] = ("git", item.blob_id)
            state.sizes[item.path] = item.size
    for name in (manifests.MANIFEST, provenance.SUMS, "CHANGELOG.md"):
        if name not in state.oids:
            continue
        local = api.hf_hub_download(repo_id, name, repo_type="dataset", revision=revision, local_dir=scratch)
        text = Path(local).read_text(encoding="utf-8")
        if name == manifests.MANIFEST:
            try:
                state.manifest = manifests.parse(json.loads(text), f"{repo_id}@{revision}:{name}")
            except ValueError as exc:
                raise manifests.ManifestError(f"{repo_id}@{revision}:{name}: not JSON ({exc})") from None
        elif name == provenance.SUMS:
            state.sums = provenance.read_sums(Path(local).parent)
        else:
            state.changelog = text
    return state


def _owner(path: str, entries: list[manifests.SourceEntry]) -> str | None:
    """The source whose files include ``path`` (its native config folder or its official files)."""
    for e in entries:
        config_dirs = {p.split("/")[0] for p in e.files.native}
        official = e.files.official
        official_dir = f"test/{e.official_name}/"
        if path == official or path.startswith(official_dir) or path.split("/")[0] in config_dirs:
            return e.source
    return None


def _changelog_entry(tag: str, manifest: manifests.Manifest, remote: RemoteState, changed: list[str],
                     removed: list[str]) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [f"## {tag} ({date})", "", f"- pb-build {__version__}"]
    for e in manifest.sources:
        lines.append(f"- `{e.source}` ({e.official_name}): {e.counts.samples} rows, builder "
                     f"{e.builder_version}, seed {e.seed}, raw {e.raw.kind} ({len(e.raw.files)} files)")
    data_changed = [p for p in changed if p not in META]
    lines.append(f"- changed or added files: {len(data_changed)}; removed: {len(removed)}")
    previous = sorted(remote.tags)
    if previous:
        comparable = "yes (no benchmark data changed)" if not data_changed and not removed else \
            "no: benchmark data changed; do not compare scores across these versions"
        lines.append(f"- comparable with {previous[-1]}: {comparable}")
    return "\n".join(lines) + "\n"


def plan_push(release: Path, repo_id: str, tag: str, remote: RemoteState, staging: Path) -> PushPlan:
    """Merge the local release with the remote repo into ``staging`` and list the operations."""
    local_manifest = manifests.read(release)
    local_sums = provenance.read_sums(release)
    local_sources = {e.source for e in local_manifest.sources}
    remote_sources = remote.manifest.sources if remote.manifest else []
    kept = [e for e in remote_sources if e.source not in local_sources]
    replaced = [e for e in remote_sources if e.source in local_sources]
    files = {rel: release / rel for rel in local_sums if rel not in META}
    deletions = sorted(p for p in remote.oids if p not in files and p not in META
                       and _owner(p, replaced + local_manifest.sources) in local_sources)
    sums = {p: h for p, h in remote.sums.items() if p not in META and p not in deletions and p not in files}
    sums.update({p: local_sums[p] for p in files})

    manifest = dataclasses.replace(local_manifest, sources=kept + local_manifest.sources, release={
        **(local_manifest.release or {"name": repo_id.split("/")[1]}), "version": tag[1:], "repo": repo_id})
    changed = [p for p in files if _differs(files[p], remote.oids.get(p))]
    entry = _changelog_entry(tag, manifest, remote, changed, deletions)
    old_log = remote.changelog.split("\n", 1)[1].lstrip("\n") if remote.changelog.startswith("# ") else remote.changelog
    changelog = f"# Changelog\n\n{entry}\n{old_log}".rstrip("\n") + "\n"

    def size(rel: str) -> int:
        return files[rel].stat().st_size if rel in files else remote.sizes.get(rel, 0)

    versions = [tag, *sorted(remote.tags, reverse=True)]
    card = release_card(manifest, size, repo_id=repo_id, versions=versions, preview=read_preview(release))
    manifest_text = manifests.dumps(manifest.to_dict())
    for name, text in (("README.md", card), ("CHANGELOG.md", changelog), (manifests.MANIFEST, manifest_text)):
        (staging / name).write_text(text, encoding="utf-8", newline="\n")
        files[name] = staging / name
        sums[name] = provenance.sha256_file(staging / name)
    (staging / provenance.SUMS).write_text("".join(f"{sums[p]}  {p}\n" for p in sorted(sums)), encoding="utf-8")
    files[provenance.SUMS] = staging / provenance.SUMS
    additions = sorted(p for p in files if _differs(files[p], remote.oids.get(p)))
    unchanged = sorted(p for p in files if p not in additions)
    configs = [e.source for e in manifest.sources]
    sizes = {p: f.stat().st_size for p, f in files.items()}
    return PushPlan(tag, files, sums, additions, unchanged, deletions, entry, configs, sizes)


def _differs(local: Path, remote: tuple[str, str] | None) -> bool:
    if remote is None:
        return True
    kind, oid = remote
    return (provenance.sha256_file(local) if kind == "lfs" else git_blob_sha1(local.read_bytes())) != oid


def _remote_state(api: HfApi, repo_id: str, scratch: Path) -> RemoteState | None:
    try:
        head = api.repo_info(repo_id, repo_type="dataset").sha
    except RepositoryNotFoundError:
        return None
    state = _read_remote(api, repo_id, head, scratch)
    state.tags = {t.name for t in api.list_repo_refs(repo_id, repo_type="dataset").tags}
    return state


def push(release: Path, repo_id: str, version: str, *, private: bool = False, dry_run: bool = False,
         token: str | None = None, echo: Echo = print, progress: bool = False, verbose: bool = False) -> PushPlan:
    """Publish ``release`` to ``repo_id`` as version ``version`` (tag ``vX.Y.Z``); see the module docstring.

    ``progress`` shows one overall upload bar (huggingface_hub's per-file bars stay off); ``verbose`` makes a dry
    run list every path instead of counts and bytes per folder.
    """
    tag = check_repo_and_version(repo_id, version)
    assert tag is not None
    result = verify_release(release)
    if result.problems:
        raise PbBuildError(f"{release}: the release does not verify ({result.problems[0]}); run pb-build verify")
    api = make_api(token, need_token=not dry_run)
    with hub_errors(repo_id), hub_progress_bars(False), \
            tempfile.TemporaryDirectory(prefix="pb-build-push-") as tmp:
        scratch = Path(tmp)
        for attempt in range(ATTEMPTS):
            remote = _remote_state(api, repo_id, scratch / f"remote{attempt}")
            if remote is not None and tag in remote.tags:
                raise PbBuildError(f"{repo_id}: version {tag} already exists; tags are never moved, "
                                   "publish a new version")
            staging = scratch / f"staging{attempt}"
            staging.mkdir()
            plan = plan_push(release, repo_id, tag, remote or RemoteState(), staging)
            plan.create_repo = remote is None
            if dry_run:
                _print_plan(plan, repo_id, echo, verbose)
                return plan
            if remote is None:
                api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
                continue  # read the new repo's head (it has an initial commit) and plan again
            additions = [CommitOperationAdd(p, str(plan.files[p])) for p in sorted(plan.files)]
            try:
                _upload(api, repo_id, additions, plan, progress)
                commit = api.create_commit(repo_id, [*additions, *(CommitOperationDelete(p) for p in plan.deletions)],
                                           repo_type="dataset", parent_commit=remote.head,
                                           commit_message=f"Release {tag}", commit_description=plan.changelog_entry)
            except HfHubHTTPError as err:
                if status_of(err) == 412 and attempt + 1 < ATTEMPTS:
                    echo(f"{repo_id} moved while publishing; planning again from the new head")
                    continue
                raise
            except RuntimeError as err:  # huggingface_hub wraps failed blob uploads in RuntimeError
                cause = err.__cause__ or err.__context__
                raise PbBuildError(f"{repo_id}: upload failed, nothing was committed or tagged ({err}"
                                   f"{': ' + str(cause).splitlines()[0] if cause else ''})") from None
            plan.commit = commit.oid
            api.create_tag(repo_id, tag=tag, revision=commit.oid, tag_message=plan.changelog_entry,
                           repo_type="dataset")
            verify_remote(api, repo_id, tag, plan.sums, scratch / "verify")
            echo(f"published {repo_id} {tag} (commit {commit.oid[:12]}): {len(plan.additions)} file(s) added or "
                 f"changed, {len(plan.deletions)} deleted, {len(plan.sums)} verified against SHA256SUMS")
            for line in plan.summary(repo_id, dry_run=False)["load"]:
                echo(f"load it with: {line}")
            return plan
        raise PbBuildError(f"{repo_id}: the repo kept moving; gave up after {ATTEMPTS} attempts")


def _upload(api: HfApi, repo_id: str, additions: list[CommitOperationAdd], plan: PushPlan, progress: bool) -> None:
    """Upload the changed files' content before the commit, under one overall progress bar (bytes)."""
    wanted = set(plan.additions)
    changed = [op for op in additions if op.path_in_repo in wanted]
    with tqdm(total=plan.upload_bytes(), unit="B", unit_scale=True, desc=f"push {repo_id}",
              disable=not progress) as bar:
        for start in range(0, len(changed), UPLOAD_CHUNK):
            chunk = changed[start:start + UPLOAD_CHUNK]
            api.preupload_lfs_files(repo_id, chunk, repo_type="dataset", free_memory=False)
            bar.update(sum(plan.sizes[op.path_in_repo] for op in chunk))


def _print_plan(plan: PushPlan, repo_id: str, echo: Echo, verbose: bool) -> None:
    summary = plan.summary(repo_id, dry_run=True)
    if plan.create_repo:
        echo(f"would create dataset repo {repo_id}")
    echo(f"would upload {len(plan.additions)} file(s), {_size(summary['upload']['bytes'])} "
         f"({len(plan.unchanged)} unchanged):")
    _print_files("+", plan.additions, summary["upload"]["folders"], echo, verbose)
    echo(f"would delete {len(plan.deletions)} file(s)" + (":" if plan.deletions else ""))
    _print_files("-", plan.deletions, summary["delete"]["folders"], echo, verbose)
    echo(f"would tag the commit {plan.tag}" + ("" if verbose else " (--verbose lists every path)"))


def _print_files(sign: str, paths: list[str], folders: dict[str, dict[str, int]], echo: Echo, verbose: bool) -> None:
    """Every path (``verbose``), or one line per folder with its file count (and bytes, when known)."""
    if verbose:
        for rel in paths:
            echo(f"  {sign} {rel}")
        return
    for folder, n in folders.items():
        size = f" {_size(n['bytes']):>10s}" if "bytes" in n else ""
        echo(f"  {sign} {folder:32s} {n['files']:6d} file(s){size}")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def verify_remote(api: HfApi, repo_id: str, revision: str, sums: dict[str, str], scratch: Path) -> None:
    """Every file of SHA256SUMS exists at ``revision`` with the same content."""
    remote = _read_remote(api, repo_id, revision, scratch)
    for path, digest in sorted(sums.items()):
        kind_oid = remote.oids.get(path)
        if kind_oid is None:
            raise PbBuildError(f"{repo_id}@{revision}: {path} is missing on the Hub")
        kind, oid = kind_oid
        if kind == "git":
            try:
                local = api.hf_hub_download(repo_id, path, repo_type="dataset", revision=revision, local_dir=scratch)
            except EntryNotFoundError:
                raise PbBuildError(f"{repo_id}@{revision}: {path} is missing on the Hub") from None
            oid = provenance.sha256_file(Path(local))
        if oid != digest:
            raise PbBuildError(f"{repo_id}@{revision}: {path} does not match SHA256SUMS")
    shutil.rmtree(scratch, ignore_errors=True)
