"""A small in-process Hugging Face Hub emulator for tests (stdlib HTTP server on 127.0.0.1).

It implements the endpoints huggingface_hub and datasets use to publish and load a dataset repo: repo
create/info, validate-yaml, preupload, LFS batch/upload/verify, commit (with ``parentCommit`` -> 412), tags (409
on duplicates), refs, tree, paths-info, and resolve (HEAD/GET with ``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``
and Range). Repos live in memory; tokens are checked (401).
Switches inject faults: a concurrent commit before the next commit, or a failing LFS upload.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_THRESHOLD = 10 * 1024 * 1024


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass
class Entry:
    """A file in a commit: regular bytes, or an LFS object id."""

    size: int
    data: bytes | None = None
    lfs: str | None = None


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    files: dict[str, Entry]


@dataclass
class Repo:
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, rev: str) -> str | None:
        rev = unquote(rev).removeprefix("refs/heads/").removeprefix("refs/tags/")
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        matches = [oid for oid in self.commits if len(rev) >= 7 and oid.startswith(rev)]
        return matches[0] if len(matches) == 1 else None


class HubState:
    """Everything the emulator stores, plus fault switches and a request log."""

    def __init__(self, tokens: set[str]) -> None:
        self.tokens = tokens
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.concurrent_commits = 0  # commits to sneak in before the next client commit (-> 412)
        self.fail_lfs_uploads = False

    def new_commit(self, repo: Repo, parent: str | None, title: str, message: str, files: dict[str, Entry]) -> str:
        oid = secrets.token_hex(20)
        repo.commits[oid] = Commit(oid, parent, title, message, files)
        return oid


class HubHandler(BaseHTTPRequestHandler):
    server: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    # -- plumbing ---------------------------------------------------------------------------------
    @property
    def state(self) -> HubState:
        return self.server.state

    def _body(self) -> bytes:
        return self.body

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None, extra: dict[str, str] | None = None) -> None:
        headers = {"X-Error-Message": message, **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers)

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in self.state.tokens:
            return True
        self._error(401, "Invalid credentials in Authorization header")
        return False

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, rev: str) -> Commit | None:
        oid = repo.resolve(rev)
        if oid is None:
            self._error(404, f"Revision {unquote(rev)} not found", "RevisionNotFound")
            return None
        return repo.commits[oid]

    # -- routing ----------------------------------------------------------------------------------
    ROUTES = [
        ("GET", r"/api/whoami-v2", "whoami"),
        ("POST", r"/api/repos/create", "create_repo"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", r"/api/datasets/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)", "info"),
        ("GET", r"/api/datasets/(?P<repo>[^/]+/[^/]+)/refs", "refs"),
        ("GET", r"/api/datasets/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
        ("POST", r"/api/datasets/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>[^/]+)", "paths_info"),
        ("POST", r"/api/datasets/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)", "preupload"),
        ("POST", r"/api/datasets/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)", "commit"),
        ("POST", r"/api/datasets/(?P<repo>[^/]+/[^/]+)/tag/(?P<rev>[^/]+)", "tag"),
        ("GET", r"/api/datasets/(?P<repo>[^/]+/[^/]+)", "info"),
        ("POST", r"/datasets/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", "lfs_batch"),
        ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", "lfs_upload"),
        ("POST", r"/lfs-verify/(?P<oid>[0-9a-f]{64})", "lfs_verify"),
        ("GET", r"/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
        ("HEAD", r"/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ]

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        # Always consume the body: a keep-alive connection would read leftovers as the next request line.
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        self.state.requests.append((self.command, url.path))
        for method, pattern, handler in self.ROUTES:
            match = re.fullmatch(pattern, url.path)
            if method == self.command and match:
                if handler not in ("lfs_upload",) and not self._authorised():
                    return
                with self.state.lock:
                    getattr(self, "h_" + handler)(**{k: v for k, v in match.groupdict().items() if v is not None})
                return
        self._error(404, f"no route for {self.command} {url.path}")

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _dispatch

    # -- handlers ---------------------------------------------------------------------------------
    def h_whoami(self) -> None:
        self._json(200, {"name": "tester", "type": "user", "orgs": [], "auth": {}})

    def h_create_repo(self) -> None:
        body = json.loads(self._body() or b"{}")
        repo_id = f"{body.get('organization') or 'tester'}/{body['name']}"
        if repo_id in self.state.repos:
            self._error(409, "You already created this dataset repo")
            return
        repo = Repo(private=body.get("visibility") == "private" or bool(body.get("private")))
        attrs = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"
        repo.branches["main"] = self.state.new_commit(repo, None, "initial commit", "",
                                                      {".gitattributes": Entry(len(attrs), data=attrs)})
        self.state.repos[repo_id] = repo
        self._json(200, {"url": f"{self.server.url}/datasets/{repo_id}"})

    def h_validate_yaml(self) -> None:
        self._json(200, {"errors": [], "warnings": []})

    def h_info(self, repo: str, rev: str = "main") -> None:
        r = self._repo(repo)
        commit = r and self._commit(r, rev)
        if commit:
            self._json(200, {"id": repo, "sha": commit.oid, "private": r.private,
                             "lastModified": "2026-01-01T00:00:00.000Z",
                             "siblings": [{"rfilename": p} for p in sorted(commit.files)], "tags": []})

    def h_refs(self, repo: str) -> None:
        r = self._repo(repo)
        if r:
            self._json(200, {
                "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in r.branches.items()],
                "converts": [],
                "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in r.tags.items()],
            })

    def _entry_json(self, path: str, e: Entry) -> dict:
        if e.lfs:
            pointer = lfs_pointer(e.lfs, e.size)
            return {"type": "file", "oid": git_blob_sha1(pointer), "size": e.size, "path": path,
                    "lfs": {"oid": e.lfs, "size": e.size, "pointerSize": len(pointer)}}
        return {"type": "file", "oid": git_blob_sha1(e.data or b""), "size": e.size, "path": path}

    def h_tree(self, repo: str, rev: str, path: str = "") -> None:
        r = self._repo(repo)
        commit = r and self._commit(r, rev)
        if not commit:
            return
        prefix = unquote(path).strip("/")
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries, dirs = [], set()
        for p, e in sorted(commit.files.items()):
            if prefix and not p.startswith(prefix + "/"):
                continue
            rest = p[len(prefix) + 1:] if prefix else p
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                d = "/".join(([prefix] if prefix else []) + parts[:depth])
                if (recursive or depth == 1) and d not in dirs:
                    dirs.add(d)
                    entries.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0,
                                    "path": d})
            if recursive or len(parts) == 1:
                entries.append(self._entry_json(p, e))
        if prefix and not entries:
            self._error(404, f"{prefix} does not exist", "EntryNotFound")
            return
        self._json(200, entries)

    def h_paths_info(self, repo: str, rev: str) -> None:
        r = self._repo(repo)
        commit = r and self._commit(r, rev)
        if not commit:
            return
        raw = self._body().decode()
        form = parse_qs(raw) if not raw.startswith("{") else {"paths": json.loads(raw).get("paths", [])}
        out = []
        for p in form.get("paths", []):
            if p in commit.files:
                out.append(self._entry_json(p, commit.files[p]))
            elif any(f.startswith(p.rstrip("/") + "/") for f in commit.files):
                out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p})
        self._json(200, out)

    def h_preupload(self, repo: str, rev: str) -> None:
        r = self._repo(repo)
        commit = r and self._commit(r, rev)
        if not commit:
            return
        files = json.loads(self._body())["files"]
        out = []
        for f in files:
            sample = base64.b64decode(f["sample"])
            lfs = f["size"] > 0 and (f["size"] >= LFS_THRESHOLD or b"\0" in sample
                                     or f["path"].endswith((".parquet", ".png", ".jpg", ".JPEG", ".mp4")))
            existing = commit.files.get(f["path"])
            oid = None
            if existing is not None:
                oid = existing.lfs if existing.lfs else git_blob_sha1(existing.data or b"")
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": oid})
        self._json(200, {"files": out})

    def h_lfs_batch(self, repo: str) -> None:
        if not self._repo(repo):
            return
        body = json.loads(self._body())
        objects = []
        for obj in body["objects"]:
            if obj["oid"] in self.state.lfs:
                objects.append({"oid": obj["oid"], "size": obj["size"]})
                continue
            objects.append({"oid": obj["oid"], "size": obj["size"], "actions": {
                "upload": {"href": f"{self.server.url}/lfs-upload/{obj['oid']}", "header": {}},
                "verify": {"href": f"{self.server.url}/lfs-verify/{obj['oid']}", "header": {}},
            }})
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   content_type="application/vnd.git-lfs+json")

    def h_lfs_upload(self, oid: str) -> None:
        data = self._body()
        if self.state.fail_lfs_uploads:
            self._error(403, "storage refused the upload")
            return
        if hashlib.sha256(data).hexdigest() != oid:
            self._error(400, "sha256 mismatch")
            return
        self.state.lfs[oid] = data
        self._send(200)

    def h_lfs_verify(self, oid: str) -> None:
        if oid in self.state.lfs:
            self._json(200, {})
        else:
            self._error(404, "object not uploaded")

    def h_commit(self, repo: str, rev: str) -> None:
        r = self._repo(repo)
        if not r:
            return
        branch = unquote(rev)
        if branch not in r.branches:
            self._error(404, f"branch {branch} not found", "RevisionNotFound")
            return
        if self.state.concurrent_commits:
            self.state.concurrent_commits -= 1
            head = r.branches[branch]
            files = dict(r.commits[head].files)
            files["other.txt"] = Entry(5, data=b"other")
            r.branches[branch] = self.state.new_commit(r, head, "someone else", "", files)
        lines = [json.loads(line) for line in self._body().decode().splitlines() if line.strip()]
        header = next(x["value"] for x in lines if x["key"] == "header")
        head = r.branches[branch]
        parent = header.get("parentCommit")
        if parent and parent != head:
            self._error(412, "A commit has happened since. Please refresh and try again.")
            return
        files = dict(r.commits[head].files)
        for item in lines:
            key, value = item["key"], item["value"]
            if key == "file":
                data = base64.b64decode(value["content"])
                files[value["path"]] = Entry(len(data), data=data)
            elif key == "lfsFile":
                if value["oid"] not in self.state.lfs:
                    self._error(422, f"LFS object {value['oid']} was not uploaded")
                    return
                files[value["path"]] = Entry(len(self.state.lfs[value["oid"]]), lfs=value["oid"])
            elif key in ("deletedFile", "deletedFolder"):
                path = value["path"].rstrip("/")
                doomed = [p for p in files if p == path or p.startswith(path + "/")]
                if not doomed:
                    self._error(404, f"{path} does not exist", "EntryNotFound")
                    return
                for p in doomed:
                    del files[p]
        oid = self.state.new_commit(r, head, header.get("summary", ""), header.get("description", ""), files)
        r.branches[branch] = oid
        self._json(200, {"commitUrl": f"{self.server.url}/datasets/{repo}/commit/{oid}", "commitOid": oid,
                         "pullRequestUrl": None})

    def h_tag(self, repo: str, rev: str) -> None:
        r = self._repo(repo)
        commit = r and self._commit(r, rev)
        if not commit:
            return
        body = json.loads(self._body() or b"{}")
        if body["tag"] in r.tags:
            self._error(409, f"Tag {body['tag']} already exists")
            return
        r.tags[body["tag"]] = commit.oid
        self._json(200, {})

    def h_resolve(self, repo: str, rev: str, path: str) -> None:
        r = self._repo(repo)
        commit = r and self._commit(r, rev)
        if not commit:
            return
        path = unquote(path)
        entry = commit.files.get(path)
        if entry is None:
            self._error(404, f"{path} not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
            return
        data = self.state.lfs[entry.lfs] if entry.lfs else (entry.data or b"")
        headers = {"X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.lfs}"', "X-Linked-Size": str(entry.size),
                            "ETag": f'"{entry.lfs}"'})
        else:
            headers["ETag"] = f'"{git_blob_sha1(data)}"'
        rng = self.headers.get("Range")
        if rng and self.command == "GET":
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
            if m:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else len(data) - 1
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                self._send(206, data[start:end + 1], headers, "application/octet-stream")
                return
        self._send(200, data, headers, "application/octet-stream")


class HubServer(ThreadingHTTPServer):
    """The emulator; ``url`` is its base endpoint, ``state`` what it holds."""

    daemon_threads = True

    def __init__(self, tokens: set[str]) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.state = HubState(tokens)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def file(self, repo_id: str, rev: str, path: str) -> bytes | None:
        """A file's bytes at a revision (test helper)."""
        repo = self.state.repos[repo_id]
        entry = repo.commits[repo.resolve(quote(rev, safe=""))].files.get(path)
        if entry is None:
            return None
        return self.state.lfs[entry.lfs] if entry.lfs else entry.data
