"""The Hub client: token lookup (never printed) and one-line errors for every Hub failure."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError

from pb_build.errors import PbBuildError

REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
VERSION_RE = re.compile(r"^v?(\d+\.\d+\.\d+)$")


def check_repo_and_version(repo_id: str, version: str | None) -> str | None:
    """Validate NAMESPACE/NAME and X.Y.Z (``vX.Y.Z`` accepted, like the tag); return the tag ``vX.Y.Z``."""
    if not REPO_RE.match(repo_id):
        raise PbBuildError(f"--repo {repo_id!r}: expected NAMESPACE/NAME")
    if version is None:
        return None
    match = VERSION_RE.match(version)
    if not match:
        raise PbBuildError(f"--version {version!r}: expected MAJOR.MINOR.PATCH, e.g. 1.0.0")
    return f"v{match.group(1)}"


@contextmanager
def hub_progress_bars(enabled: bool) -> Iterator[None]:
    """huggingface_hub's own progress bars on or off for the duration (restored afterwards)."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    switch_off = not enabled and not are_progress_bars_disabled()
    if switch_off:
        disable_progress_bars()
    try:
        yield
    finally:
        if switch_off:
            enable_progress_bars()


def make_api(token: str | None, need_token: bool) -> HfApi:
    """An HfApi for the configured endpoint; the token comes from --token, HF_TOKEN or the stored login."""
    token = token or get_token()
    if need_token and not token:
        raise PbBuildError("no Hugging Face token: pass --token, set HF_TOKEN, or run `hf auth login`")
    return HfApi(endpoint=constants.ENDPOINT, token=token or False)


def status_of(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


@contextmanager
def hub_errors(repo_id: str) -> Iterator[None]:
    """Turn Hub and network failures into one-line PbBuildErrors (without tokens or tracebacks)."""
    try:
        yield
    except OfflineModeIsEnabled:
        raise PbBuildError("the Hub cannot be reached: HF_HUB_OFFLINE is set") from None
    except RepositoryNotFoundError:
        raise PbBuildError(f"{repo_id}: repository not found, or the token has no access to it") from None
    except RevisionNotFoundError as err:
        raise PbBuildError(f"{repo_id}: revision not found ({_first_line(err)})") from None
    except HfHubHTTPError as err:
        if status_of(err) == 401:
            raise PbBuildError(f"{repo_id}: authentication failed, the Hub rejected the token") from None
        raise PbBuildError(f"{repo_id}: the Hub answered HTTP {status_of(err)}: {_first_line(err)}") from None
    except (httpx2.TransportError, ConnectionError) as err:
        raise PbBuildError(f"cannot reach the Hub at {constants.ENDPOINT}: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
