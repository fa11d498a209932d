"""Crash-safe, resumable campaign store for shared filesystems without reliable locks.

Layout of a store directory::

    OUT/campaign.json                 header, written once, atomically
    OUT/records/<host>-<pid>-<rand>.jsonl   one append-only file per writer process

``campaign.json`` holds the :class:`~numharden.campaign.spec.CampaignConfig`, the
trial spec's description, the model checksum and the *campaign key* (first 16 hex
digits of the SHA-256 of the *identity*: the spec, the model checksum and the parts of
the configuration that decide what a trial computes -- seed and groups -- but not the
plan, :data:`PLAN_KEYS`: which BERs, how many trials, when to stop). It is written to a
unique temporary file, fsync'd and then hard-linked into place, so it either exists
whole or not at all, and two processes creating the same store at once cannot
overwrite each other (``link`` fails on an existing name, also over NFS).

**Extension.** A trial's seed depends only on (campaign seed, BER, trial index, group),
so the records of a store answer any plan of the same identity. Opening a store with
more trials, more BERs or another stopping rule is therefore an *extension*: the
finished trials are reused, only the missing ones run, and the header's config is
replaced (atomically, by rename) by the union of both plans (all BERs, the larger
trial counts), which is what :func:`~numharden.campaign.result.summarize` reports
when it is given no plan of its own.

Every finished trial becomes one line ``<json>\\t<crc32 hex>\\n`` appended to the
writer's own file with a single ``write`` and fsync'd before the next trial is recorded,
so a trial that was reported done survives a crash. No file is ever written by two
processes (the name contains host, pid and 64 random bits and is created with
``O_EXCL``), so no lock is needed; a new process never appends to an old file.

Readers merge all files. A crash can only damage the end of a file, so a torn or
corrupt *last* line is skipped (the trial re-runs on resume); a bad line anywhere else
is corruption and raises :class:`~numharden.errors.FormatError`. Records are
de-duplicated by ``(group, ber, trial)``; duplicates (a trial re-run after a crash, or a
merge of overlapping shards) must agree in seed and results, else the store is reported
as corrupt.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import secrets
import socket
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import ConfigError, FormatError
from .spec import RESULT_FIELDS, CampaignConfig, canonical_json

__all__ = ["CampaignStore", "RecordWriter", "LoadedRecords", "HEADER_NAME", "RECORDS_DIR",
           "INFO_KEYS", "PLAN_KEYS", "identity_spec", "identity_config", "campaign_key", "record_key", "same_result", "worker_id"]

HEADER_NAME = "campaign.json"
RECORDS_DIR = "records"
_LOCK_NAME = "campaign.json.lock"   # only on filesystems without hard links
_FORMAT = "numharden-campaign"
_VERSION = 1
_META_FIELDS = ("key", "group", "ber", "trial", "seed", "duration", "worker", "time")


# Members of a trial spec's description that are for humans only (paths as typed): the
# model and data are identified by content (model checksum, the spec's data digest), so
# a store resumes and merges from any working directory or mount point.
INFO_KEYS = ("paths",)
# Config members that plan a campaign (which trials to run, how to report them) without
# changing what any one trial computes: a store extends across them.
PLAN_KEYS = ("bers", "trials", "ci_width", "max_trials", "round_size", "confidence")
# Before content identity, specs carried the paths as typed under these keys.
_LEGACY_PATH_KEYS = ("model", "data")


def identity_spec(spec: dict) -> dict:
    """The part of a spec description that identifies a campaign (without INFO_KEYS;
    for a header written before content identity, also without its typed paths)."""
    drop = INFO_KEYS if "paths" in spec or "data_sha256" not in spec else \
        INFO_KEYS + _LEGACY_PATH_KEYS
    return {k: v for k, v in spec.items() if k not in drop}


def identity_config(config: dict) -> dict:
    """The part of a config dict that decides what a trial computes (without
    :data:`PLAN_KEYS`)."""
    return {k: v for k, v in config.items() if k not in PLAN_KEYS}


def campaign_key(config: dict, spec: dict, model_checksum: str) -> str:
    """16-hex-digit identity of a campaign: SHA-256 of its identity configuration (see
    :func:`identity_config`), its spec without informational members (:data:`INFO_KEYS`)
    and the model checksum. The same for every plan (BERs, trial counts) of a campaign."""
    return _key(identity_config(config), spec, model_checksum)


def _key(config: dict, spec: dict, model_checksum: str) -> str:
    spec = {k: v for k, v in spec.items() if k not in INFO_KEYS}
    blob = canonical_json({"config": config, "spec": spec, "model_checksum": model_checksum})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def union_plan(stored: dict, requested: dict) -> dict:
    """Config dict covering both plans: the stored BERs then the new ones, the larger
    trial counts, the requested stopping rule and confidence."""
    out = dict(requested)
    out["bers"] = list(stored["bers"]) + [b for b in requested["bers"]
                                          if b not in stored["bers"]]
    out["trials"] = max(stored["trials"], requested["trials"])
    if stored.get("max_trials") is not None and requested.get("max_trials") is not None:
        out["max_trials"] = max(stored["max_trials"], requested["max_trials"])
    if out.get("ci_width") is None:  # a fixed plan: no adaptive leftovers
        out["max_trials"] = out["round_size"] = None
    return out


def record_key(rec: dict) -> tuple:
    """``(group, ber, trial)`` identity of a record."""
    return (rec["group"], rec["ber"], rec["trial"])


def worker_id() -> str:
    """``<host>-<pid>`` of the calling process, as stored in records."""
    return f"{_host()}-{os.getpid()}"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories; the data is synced
        pass
    finally:
        os.close(fd)


def _encode_line(rec: dict) -> bytes:
    body = canonical_json(rec).encode()
    return body + b"\t" + f"{zlib.crc32(body):08x}".encode() + b"\n"


def _decode_line(line: bytes) -> dict | None:
    """Record of one line, or None when the line is damaged."""
    body, sep, crc = line.rpartition(b"\t")
    if not sep or len(crc) != 8:
        return None
    try:
        if int(crc, 16) != zlib.crc32(body):
            return None
        rec = json.loads(body)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def _result_part(rec: dict) -> tuple:
    """Fields that a re-run of the same trial must reproduce exactly."""
    return (rec.get("seed"),) + tuple(rec.get(k) for k in RESULT_FIELDS) \
        + (canonical_json(rec.get("extra")),)


def same_result(a: dict, b: dict) -> bool:
    """True when two records agree in seed, result counts and extra result fields."""
    return _result_part(a) == _result_part(b)


@dataclass
class LoadedRecords:
    """Merged content of a store's record files.

    Attributes
    ----------
    records : dict
        ``(group, ber, trial) -> record dict`` (first copy of each trial).
    files : int
        Record files read.
    torn : list of str
        Files whose damaged last line was skipped (crash mid-write).
    duplicates : int
        Identical extra copies of trials (re-runs, overlapping merges).
    """

    records: dict = field(default_factory=dict)
    files: int = 0
    torn: list = field(default_factory=list)
    duplicates: int = 0


class CampaignStore:
    """A campaign directory: header plus per-writer record files.

    Use :meth:`create_or_open` to start or resume a campaign and :meth:`open` to read
    one. Attributes: ``path`` (Path), ``header`` (dict of campaign.json), ``key`` (str),
    ``config`` (CampaignConfig).
    """

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.header = header
        self.key = header["campaign_key"]
        self.config = CampaignConfig.from_dict(header["config"])

    # ----------------------------------------------------------------- open / create
    @classmethod
    def open(cls, path) -> CampaignStore:
        """Open an existing store (read its header)."""
        path = Path(path)
        head = path / HEADER_NAME
        if not head.is_file():
            raise ConfigError(f"{path} is not a numharden campaign store (no {HEADER_NAME}); "
                              f"check the directory name")
        return cls(path, cls._read_header(head))

    @classmethod
    def create_or_open(cls, path, config: CampaignConfig, spec: dict,
                       model_checksum: str) -> CampaignStore:
        """Create the store at ``path``, or open it when it already holds this campaign.

        Raises
        ------
        ConfigError
            The directory holds a different campaign (the message lists every
            difference), or is a non-empty directory that is not a store.
        FormatError
            The store is damaged (unreadable header, records without header).
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"campaign output {path} is a file; give a directory path")
        wanted = {"config": config.to_dict(), "spec": spec, "model_checksum": model_checksum}
        wanted = json.loads(canonical_json(wanted))
        head = path / HEADER_NAME
        if not head.exists() and cls._check_empty(path):
            path.mkdir(parents=True, exist_ok=True)
            header = dict(format=_FORMAT, version=_VERSION,
                          campaign_key=campaign_key(**wanted), **wanted,
                          created=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                          numharden_version=__version__)
            cls._write_header(path, header)
        store = cls(path, cls._read_header(head))
        store._check_matches(wanted)
        store._extend(wanted["config"])
        (path / RECORDS_DIR).mkdir(exist_ok=True)
        return store

    def _extend(self, requested: dict) -> None:
        """Record a larger plan in the header (see the module docstring). Stores written
        before plan-independent keys keep their header; they still run any plan."""
        stored = self.header["config"]
        plan = json.loads(canonical_json(union_plan(stored, requested)))
        if plan == stored or self.key != campaign_key(stored, self.header["spec"],
                                                      self.header["model_checksum"]):
            return
        try:
            CampaignConfig.from_dict(plan)
        except ConfigError:
            return  # plans that cannot be combined: each run reports its own
        header = dict(self.header, config=plan)
        tmp = self.path / f"{HEADER_NAME}.tmp-{_host()}-{os.getpid()}-{secrets.token_hex(8)}"
        data = (json.dumps(header, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path / HEADER_NAME)
        _fsync_dir(self.path)
        self.header, self.config = header, CampaignConfig.from_dict(plan)

    @staticmethod
    def _check_empty(path: Path) -> bool:
        """True when a store may be created at ``path`` (missing or empty directory); False
        when another process created the header meanwhile (open it and compare)."""
        if not path.is_dir():
            return True
        names = [p.name for p in path.iterdir()
                 if not p.name.startswith((HEADER_NAME + ".tmp-", _LOCK_NAME))]
        if HEADER_NAME in names or (path / HEADER_NAME).exists():
            return False   # created by a concurrent process since we looked
        if RECORDS_DIR in names:
            raise FormatError(f"campaign store {path} has a {RECORDS_DIR}/ folder but no "
                              f"{HEADER_NAME}: the store is damaged; restore {HEADER_NAME} "
                              f"or start a new campaign in a new --out directory")
        if names:
            raise ConfigError(f"campaign output {path} is a non-empty directory that is not "
                              f"a campaign store (found {sorted(names)[:5]}); choose a new "
                              f"or empty --out directory")
        return True

    @staticmethod
    def _write_header(path: Path, header: dict) -> None:
        tmp = path / f"{HEADER_NAME}.tmp-{_host()}-{os.getpid()}-{secrets.token_hex(8)}"
        data = (json.dumps(header, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            try:
                os.link(tmp, path / HEADER_NAME)  # fails if another process got there first
            except FileExistsError:
                pass  # the winner's header is compared with ours by the caller
            except OSError:  # filesystem without hard links
                CampaignStore._publish_without_links(path, tmp)
        finally:
            if tmp.exists():
                tmp.unlink()
        _fsync_dir(path)

    @staticmethod
    def _publish_without_links(path: Path, tmp: Path, wait: float = 30.0) -> None:
        """Move ``tmp`` to the header name unless a header exists, with ``mkdir`` of a lock
        directory (atomic everywhere, NFS included) deciding between concurrent creators:
        an exists-check followed by a rename would let two different campaigns overwrite
        each other's header. Losers wait for the winner's header (compared by the caller)."""
        head, lock = path / HEADER_NAME, path / _LOCK_NAME
        deadline = time.monotonic() + wait
        while True:
            try:
                os.mkdir(lock)
            except FileExistsError:
                if head.exists():
                    return
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"campaign store {path}: another process holds {lock} but wrote no "
                        f"{HEADER_NAME} within {wait:.0f} s; if no other run is creating this "
                        f"store, remove {lock} and retry") from None
                time.sleep(0.01)
                continue
            try:
                if not head.exists():
                    os.replace(tmp, head)
            finally:
                os.rmdir(lock)
            return

    @staticmethod
    def _read_header(head: Path) -> dict:
        fix = (f"the store is damaged; restore {head.name} from a backup, or start a new "
               f"campaign with a different --out directory")
        try:
            header = json.loads(head.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            raise FormatError(f"campaign header {head} is not valid JSON ({exc}); {fix}") \
                from None
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise FormatError(f"campaign header {head} is not a numharden campaign header "
                              f"(expected format {_FORMAT!r}); {fix}")
        if header.get("version") != _VERSION:
            raise FormatError(f"campaign header {head} has version {header.get('version')!r}"
                              f"; this numharden reads version {_VERSION}; use a matching "
                              f"numharden version or start a new campaign")
        missing = {"campaign_key", "config", "spec", "model_checksum"} - set(header)
        try:
            if missing:
                raise ValueError(f"missing fields {sorted(missing)}")
            CampaignConfig.from_dict(header["config"])
            legacy = hashlib.sha256(canonical_json(
                {k: header[k] for k in ("config", "spec", "model_checksum")}).encode()
            ).hexdigest()[:16]   # headers written before INFO_KEYS existed
            if header["campaign_key"] not in (legacy, campaign_key(
                    header["config"], header["spec"], header["model_checksum"]), _key(
                    header["config"], header["spec"], header["model_checksum"])):
                raise ValueError("campaign_key does not match the stored configuration")
        except (ValueError, TypeError) as exc:
            raise FormatError(f"campaign header {head} is inconsistent ({exc}); {fix}") \
                from None
        return header

    def differences(self, wanted: dict, stored: str = "stored",
                    requested: str = "requested") -> list:
        """Human-readable differences between this header and ``wanted`` (a dict with
        ``config``, ``spec`` and ``model_checksum``); empty when they are the same."""
        diffs = _dict_diff("", identity_config(self.header["config"]),
                           identity_config(wanted["config"]), stored, requested)
        diffs += _dict_diff("spec", identity_spec(self.header["spec"]),
                            identity_spec(wanted["spec"]), stored, requested)
        if self.header["model_checksum"] != wanted["model_checksum"]:
            diffs.append(f"model checksum: {stored} {self.header['model_checksum']!r}, "
                         f"{requested} {wanted['model_checksum']!r} (the model changed)")
        return diffs

    def _check_matches(self, wanted: dict) -> None:
        diffs = self.differences(wanted, "stored", "requested")
        if diffs:
            raise ConfigError(
                f"campaign store {self.path} holds a different campaign: "
                + "; ".join(diffs) + ". To resume it, rerun with the stored options and "
                "model; to start a new campaign, choose a new --out directory")

    # ----------------------------------------------------------------- records
    def record_files(self) -> list:
        """Record files, sorted by name."""
        d = self.path / RECORDS_DIR
        return sorted(d.glob("*.jsonl")) if d.is_dir() else []

    def load(self) -> LoadedRecords:
        """Read and merge all record files (see module docstring for the rules)."""
        out = LoadedRecords()
        origin = {}
        for f in self.record_files():
            out.files += 1
            lines = f.read_bytes().split(b"\n")
            # lines[-1] is b"" after a complete final line, else a torn tail
            complete, tail = lines[:-1], lines[-1]
            if tail:
                out.torn.append(f.name)
            for i, line in enumerate(complete):
                rec = _decode_line(line)
                if rec is None:
                    if i == len(complete) - 1 and not tail:
                        out.torn.append(f.name)  # damaged last line: crash mid-write
                        continue
                    raise FormatError(
                        f"record file {f} line {i + 1} is corrupt (checksum or JSON error) "
                        f"before the end of the file; move the file out of "
                        f"{self.path / RECORDS_DIR} (its trials will re-run on resume)")
                self._check_record(rec, f, i + 1)
                k = record_key(rec)
                prev = out.records.get(k)
                if prev is None:
                    out.records[k] = rec
                    origin[k] = f.name
                elif _result_part(prev) == _result_part(rec):
                    out.duplicates += 1
                else:
                    raise FormatError(
                        f"trial (group={k[0]!r}, ber={k[1]!r}, trial={k[2]}) is recorded "
                        f"with different results in {origin[k]} and {f.name} of "
                        f"{self.path / RECORDS_DIR}: {_result_part(prev)} vs "
                        f"{_result_part(rec)}; the trial runner is not deterministic for a "
                        f"fixed seed, or the model changed without changing its checksum. "
                        f"Fix the runner, then remove the wrong file and resume")
        return out

    def _check_record(self, rec: dict, f: Path, line: int) -> None:
        where = f"record file {f} line {line}"
        if rec.get("key") != self.key:
            raise FormatError(f"{where} belongs to campaign {rec.get('key')!r}, not to this "
                              f"store's campaign {self.key!r}; move that file out of "
                              f"{self.path / RECORDS_DIR}")
        bad = [k for k in _META_FIELDS + RESULT_FIELDS if k not in rec]
        if bad or not isinstance(rec["ber"], float) or not isinstance(rec["trial"], int):
            raise FormatError(f"{where} lacks fields {bad} or has a non-float ber / non-int "
                              f"trial; it was not written by this numharden version")

    def writer(self) -> RecordWriter:
        """A new :class:`RecordWriter` with its own record file (created on first write)."""
        return RecordWriter(self)


class RecordWriter:
    """Appends records to this process's own file, one fsync'd line per trial.

    Use as a context manager; :meth:`write` returns the stored record dict.
    """

    def __init__(self, store: CampaignStore):
        self.store = store
        self.path = store.path / RECORDS_DIR / (
            f"{_host()}-{os.getpid()}-{secrets.token_hex(8)}.jsonl")
        self._fd = None
        self.written = 0

    def write(self, task, result: dict, duration: float, worker: str) -> dict:
        """Record one finished trial; ``task`` is ``(group, ber, trial, seed)``."""
        group, ber, trial, seed = task
        rec = {"key": self.store.key, "group": group, "ber": float(ber), "trial": int(trial),
               "seed": int(seed), "duration": round(float(duration), 6),
               "worker": str(worker), "time": round(time.time(), 3)}
        extra = {k: v for k, v in result.items() if k not in RESULT_FIELDS}
        rec.update({k: int(result[k]) for k in RESULT_FIELDS})
        if extra:
            rec["extra"] = extra
        self.write_record(rec)
        return rec

    def write_record(self, rec: dict) -> None:
        """Append an already-complete record (used by merge) and fsync it."""
        line = _encode_line(rec)
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND,
                               0o644)
            _fsync_dir(self.path.parent)
        n = os.write(self._fd, line)
        if n != len(line):  # a short write leaves a torn line readers skip; stop here
            raise OSError(f"short write to {self.path} ({n} of {len(line)} bytes); is the "
                          f"disk full?")
        os.fsync(self._fd)
        self.written += 1

    def close(self) -> None:
        """Close the file (records are already durable)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _dict_diff(prefix: str, old, new, stored: str, requested: str) -> list:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{k}" if prefix else str(k)
            out += _dict_diff(name, old.get(k), new.get(k), stored, requested)
        return out
    return [] if old == new else [f"{prefix}: {stored} {old!r}, {requested} {new!r}"]
