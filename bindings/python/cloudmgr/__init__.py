"""cloudmgr: the whole cloud from Python, over libcloudmgr's C ABI (libcloudmgr-c).

    import cloudmgr

    with cloudmgr.Manager(domain=7) as m:
        m.wait_for_hosts(3, timeout=10)
        for host in m.hosts():
            print(host.id, host.state, host.cpus)
        result = m.execute(cloudmgr.group("web"), "vm.start", vm="web1")
        for r in result:
            print(r.host_id, r.outcome, r.message)
        result.raise_for_errors()          # CommandFailed if any host failed
        with m.watch_events(replay=True, timeout=60) as events:
            for e in events:               # the view, then each change of it
                print(e.kind.value, e.host_id, e.vm_name)

Templates and provisioning (a Manager opened with templates="/path/to/store"):
import_template(), templates(), create_vms() (placement by policy), delete_vm(); a host's
audit log: audit().

Every failure of the library raises a subclass of :class:`CloudmgrError` named after its status
code (:class:`NotFound`, :class:`InvalidArgument`, ...) carrying the library's message. A
Manager is thread-safe; the objects it returns are frozen dataclasses (those of hosts() and
vms() read each field from the library's list when it is first read).
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TypeVar, Union

from . import _native as _n

_T = TypeVar("_T")

__all__ = [
    "ABI_VERSION",
    "AbiError",
    "AlreadyExists",
    "AuditEntry",
    "Cancelled",
    "CloudmgrError",
    "CommandFailed",
    "CommandResult",
    "DataLoss",
    "DeadlineExceeded",
    "Event",
    "EventKind",
    "EventStream",
    "FailedPrecondition",
    "History",
    "HistoryPoint",
    "HistorySeries",
    "Host",
    "HostResult",
    "HostSample",
    "HostState",
    "Internal",
    "InvalidArgument",
    "Manager",
    "Metric",
    "NotFound",
    "Outcome",
    "OutOfRange",
    "PermissionDenied",
    "Provisioned",
    "ResourceExhausted",
    "SampleStream",
    "Target",
    "Template",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "Vm",
    "VmSample",
    "VmState",
    "Aborted",
    "all_hosts",
    "group",
    "host",
    "version",
]

ABI_VERSION: int = _n.lib.cm_abi_version()


def version() -> str:
    """The C library's version, "MAJOR.MINOR.PATCH"."""
    return _n.lib.cm_version().decode()


# ---- errors ---------------------------------------------------------------------------------


class CloudmgrError(Exception):
    """A failure the library reported: `code` is its status name, `message` its text."""

    code: str = "UNKNOWN"

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class Cancelled(CloudmgrError):
    code = "CANCELLED"


class Unknown(CloudmgrError):
    code = "UNKNOWN"


class InvalidArgument(CloudmgrError, ValueError):
    code = "INVALID_ARGUMENT"


class DeadlineExceeded(CloudmgrError, TimeoutError):
    code = "DEADLINE_EXCEEDED"


class NotFound(CloudmgrError, LookupError):
    code = "NOT_FOUND"


class AlreadyExists(CloudmgrError):
    code = "ALREADY_EXISTS"


class PermissionDenied(CloudmgrError):
    code = "PERMISSION_DENIED"


class ResourceExhausted(CloudmgrError):
    code = "RESOURCE_EXHAUSTED"


class FailedPrecondition(CloudmgrError):
    code = "FAILED_PRECONDITION"


class Aborted(CloudmgrError):
    code = "ABORTED"


class OutOfRange(CloudmgrError, IndexError):
    code = "OUT_OF_RANGE"


class Unimplemented(CloudmgrError, NotImplementedError):
    code = "UNIMPLEMENTED"


class Internal(CloudmgrError):
    code = "INTERNAL"


class Unavailable(CloudmgrError):
    code = "UNAVAILABLE"


class DataLoss(CloudmgrError):
    code = "DATA_LOSS"


class Unauthenticated(CloudmgrError):
    code = "UNAUTHENTICATED"


class AbiError(CloudmgrError):
    """The C library broke one of its own rules (a NULL where the header promises an object)."""

    code = "INTERNAL"


_BY_CODE: dict[int, type[CloudmgrError]] = {
    1: Cancelled,
    2: Unknown,
    3: InvalidArgument,
    4: DeadlineExceeded,
    5: NotFound,
    6: AlreadyExists,
    7: PermissionDenied,
    8: ResourceExhausted,
    9: FailedPrecondition,
    10: Aborted,
    11: OutOfRange,
    12: Unimplemented,
    13: Internal,
    14: Unavailable,
    15: DataLoss,
    16: Unauthenticated,
}


def _error(code: int, message: str) -> CloudmgrError:
    cls = _BY_CODE.get(code, Unknown)
    return cls(message, _n.lib.cm_status_name(code).decode())


def _check(status: int) -> None:
    if status != 0:
        raise _error(status, _n.lib.cm_last_error().decode())


def _text(value: Optional[str], name: str) -> Optional[bytes]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a str, not {type(value).__name__}")
    try:
        return value.encode()
    except UnicodeEncodeError as e:
        raise InvalidArgument(f"{name} is not valid text (character {e.start}): {value!r}") from None


def _s(p: Optional[bytes]) -> str:
    return p.decode() if p is not None else ""


def _ns_to_datetime(ns: int) -> Optional[datetime]:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc) if ns > 0 else None


def _ms(timeout: Union[float, timedelta]) -> int:
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if seconds < 0:
        raise InvalidArgument(f"timeout must not be negative ({seconds} s)")
    return min(int(seconds * 1000), 0xFFFFFFFF)


def _ns(value: Union[None, int, datetime, timedelta], name: str) -> int:
    """A time argument: None (0), nanoseconds since the epoch, a datetime, or a timedelta meaning
    that long ago."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be a time, not a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, timedelta):
        return int((datetime.now(timezone.utc) - value).timestamp() * 1e9)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidArgument(f"{name} must be a timezone-aware datetime")
        return int(value.timestamp() * 1e9)
    raise InvalidArgument(f"{name} must be an int (ns), a datetime or a timedelta, not {type(value).__name__}")


def _make(cls: type[_T], **values: Any) -> _T:
    """A frozen dataclass built without its generated __init__, which sets each field through
    object.__setattr__ (about 1 us a field, most of the cost of hosts()): one dict update
    instead. Every field must be given; no class here has a __post_init__."""
    obj = object.__new__(cls)
    _set(obj, "__dict__", values)
    return obj


_set = object.__setattr__


class _CList:
    """Owns a C list (cm_host_list, cm_vm_list) while objects decoded lazily from it may still
    read it: freed when the last of them has decoded every field or is gone."""

    __slots__ = ("_handle", "_free")

    def __init__(self, handle: ctypes.c_void_p, free: Callable[[ctypes.c_void_p], None]) -> None:
        self._handle = handle
        self._free = free

    def __del__(self) -> None:
        handle, self._handle = self._handle, None
        if handle:
            try:
                self._free(handle)
            except Exception:  # interpreter shutdown: the library may be gone already
                pass


class _Lazy:
    """A frozen dataclass decoded from its C struct when one of its fields is first read, so
    that a list call costs an object per element rather than a field-by-field copy (hosts():
    ~1 us a host instead of ~4). The first read of any field decodes them all at once (~3 us a
    host; one by one each read cost ~0.6 us). Each field is a class-level non-data descriptor
    (`_Decoding`, installed by `_lazy_fields` after @dataclass) that runs only while the
    instance's __dict__ lacks the field. Reading, comparing, hashing, printing, copying and
    pickling behave as for any frozen dataclass; an instance keeps its C list alive until it
    is decoded."""

    @staticmethod
    def _decode(c: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _decoded(self) -> dict[str, Any]:
        d = self.__dict__
        owner = d.get("_owner")  # held: another thread may finish decoding and drop it meanwhile
        c = d.get("_c")
        if c is not None:
            d.update(type(self)._decode(c))
            d.pop("_c", None)
            d.pop("_owner", None)
        del owner
        return d

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self._decoded().items()}

    @classmethod
    def _lazy(cls: type[_T], c: Any, owner: _CList) -> _T:
        obj = object.__new__(cls)
        _set(obj, "__dict__", {"_c": c, "_owner": owner})
        return obj

    @classmethod
    def _from(cls: type[_T], c: Any) -> _T:
        """Decoded now (for a single object whose C struct is freed at once)."""
        obj = object.__new__(cls)
        _set(obj, "__dict__", cls._decode(c))  # type: ignore[attr-defined]
        return obj


class _Decoding:
    """A field of a _Lazy dataclass not decoded yet: reading it decodes the whole object."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __get__(self, obj: Optional[_Lazy], owner: Optional[type] = None) -> Any:
        if obj is None:
            return self
        try:
            return obj._decoded()[self._name]
        except KeyError:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self._name!r}") from None


def _lazy_fields(cls: type, decode: Callable[[Any], dict[str, Any]]) -> None:
    """Makes a _Lazy dataclass's fields decode on first read (after @dataclass has read them)."""
    cls._decode = staticmethod(decode)  # type: ignore[attr-defined]
    for f in fields(cls):
        setattr(cls, f.name, _Decoding(f.name))


def _strings(array: Any, count: int) -> tuple[str, ...]:
    """A C array of `count` strings as a tuple of str (slicing reads it in one ctypes call)."""
    return tuple(b.decode() for b in array[:count]) if count else ()


# ---- targets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a command goes: one host, one group, or every host (see host(), group(), all_hosts())."""

    kind: str  # "host", "group" or "all"
    name: str = ""

    def _c(self) -> tuple[int, Optional[bytes]]:
        kinds = {"host": 0, "group": 1, "all": 2}
        if self.kind not in kinds:
            raise InvalidArgument(f"target kind {self.kind!r} is not host, group or all")
        return kinds[self.kind], (None if self.kind == "all" else _text(self.name, "target name"))


def host(host_id: str) -> Target:
    """A command to one host."""
    return Target("host", host_id)


def group(name: str) -> Target:
    """A command to every member of a group."""
    return Target("group", name)


def all_hosts() -> Target:
    """A command to every host."""
    return Target("all")


# ---- model ----------------------------------------------------------------------------------


class HostState(str, Enum):
    ONLINE = "online"
    OFFLINE = "offline"


class VmState(str, Enum):
    UNKNOWN = "unknown"
    RUNNING = "running"
    PAUSED = "paused"
    SHUTTING_DOWN = "shutting-down"
    SHUT_OFF = "shut-off"
    CRASHED = "crashed"
    PM_SUSPENDED = "pm-suspended"


_VM_STATES = list(VmState)


class Outcome(str, Enum):
    OK = "ok"
    ERROR = "error"
    NO_REPLY = "no-reply"


_OUTCOMES = list(Outcome)


class Metric(int, Enum):
    """The metrics of history points, in the order of their arrays."""

    CPU_PCT = 0
    MEMORY_USED_BYTES = 1
    DISK_READ_BYTES_PER_S = 2
    DISK_WRITE_BYTES_PER_S = 3
    DISK_READ_OPS_PER_S = 4
    DISK_WRITE_OPS_PER_S = 5
    NET_RX_BYTES_PER_S = 6
    NET_TX_BYTES_PER_S = 7


@dataclass(frozen=True)
class Host(_Lazy):
    """A host in the manager's view."""

    id: str
    hostname: str
    hypervisor: str
    hypervisor_version: str
    uri: str
    agent_version: str
    state: HostState
    last_seen: Optional[datetime]
    offline_since: Optional[datetime]
    agent_started: Optional[datetime]
    cpus: int
    cpu_mhz: int
    memory_bytes: int
    free_memory_bytes: int
    vcpus_allocated: int
    memory_allocated_bytes: int
    vms_defined: int
    vms_active: int
    groups: tuple[str, ...]

    @property
    def online(self) -> bool:
        return self.state is HostState.ONLINE


def _decode_host(c: Any) -> dict[str, Any]:
    return {
        "id": _s(c.id),
        "hostname": _s(c.hostname),
        "hypervisor": _s(c.hypervisor),
        "hypervisor_version": _s(c.hypervisor_version),
        "uri": _s(c.uri),
        "agent_version": _s(c.agent_version),
        "state": HostState.ONLINE if c.state == 0 else HostState.OFFLINE,
        "last_seen": _ns_to_datetime(c.last_seen_ns),
        "offline_since": _ns_to_datetime(c.offline_since_ns),
        "agent_started": _ns_to_datetime(c.agent_started_ns),
        "cpus": c.cpus,
        "cpu_mhz": c.cpu_mhz,
        "memory_bytes": c.memory_bytes,
        "free_memory_bytes": c.free_memory_bytes,
        "vcpus_allocated": c.vcpus_allocated,
        "memory_allocated_bytes": c.memory_allocated_bytes,
        "vms_defined": c.vms_defined,
        "vms_active": c.vms_active,
        "groups": _strings(c.groups, c.group_count),
    }


_lazy_fields(Host, _decode_host)


@dataclass(frozen=True)
class Vm(_Lazy):
    """A VM on a host, as its agent publishes it. `details` has its disks and NICs."""

    host_id: str
    uuid: str
    name: str
    state: VmState
    state_reason: str
    vcpus: int
    max_vcpus: int
    memory_bytes: int
    max_memory_bytes: int
    cpu_time_ns: int
    persistent: bool
    autostart: bool
    description: str
    template_name: str
    template_version: int
    image_sha256: str
    updated: Optional[datetime]
    details: Mapping[str, Any] = field(repr=False, compare=False)



def _decode_vm(c: Any) -> dict[str, Any]:
    return {
        "host_id": _s(c.host_id),
        "uuid": _s(c.uuid),
        "name": _s(c.name),
        "state": _VM_STATES[c.state] if 0 <= c.state < len(_VM_STATES) else VmState.UNKNOWN,
        "state_reason": _s(c.state_reason),
        "vcpus": c.vcpus,
        "max_vcpus": c.max_vcpus,
        "memory_bytes": c.memory_bytes,
        "max_memory_bytes": c.max_memory_bytes,
        "cpu_time_ns": c.cpu_time_ns,
        "persistent": bool(c.persistent),
        "autostart": bool(c.autostart),
        "description": _s(c.description),
        "template_name": _s(c.template_name),
        "template_version": c.template_version,
        "image_sha256": _s(c.image_sha256),
        "updated": _ns_to_datetime(c.updated_ns),
        "details": json.loads(_s(c.json)),
    }


_lazy_fields(Vm, _decode_vm)


@dataclass(frozen=True)
class HostResult:
    """One host's part of a command's result."""

    host_id: str
    outcome: Outcome
    code: str  # "OK", the host's error code, or "DEADLINE_EXCEEDED" for no reply
    message: str
    latency_ns: int
    reply: Mapping[str, Any] = field(repr=False)  # "processes", "snapshots", "vms" when returned

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def error(self) -> Optional[CloudmgrError]:
        """The host's failure as the matching exception (not raised), or None when OK."""
        if self.ok:
            return None
        code = next((k for k, v in _BY_CODE.items() if v.code == self.code), 2)
        return _error(code, f"{self.host_id}: {self.message}")


class CommandFailed(CloudmgrError):
    """Some hosts did not execute a command (CommandResult.raise_for_errors)."""

    code = "ABORTED"

    def __init__(self, result: "CommandResult") -> None:
        failed = [r for r in result if not r.ok]
        text = "; ".join(f"{r.host_id}: {r.outcome.value} {r.code} {r.message}".rstrip() for r in failed)
        super().__init__(f"{result.verb}: {len(failed)} of {len(result)} hosts failed: {text}")
        self.result = result
        self.failed = failed


@dataclass(frozen=True)
class CommandResult(Sequence[HostResult]):
    """The result of one command: one HostResult per expected host, sorted by host id."""

    command_id: str
    verb: str
    hosts: tuple[HostResult, ...]

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, index):  # type: ignore[override]
        return self.hosts[index]

    def __iter__(self) -> Iterator[HostResult]:
        return iter(self.hosts)

    def count(self, outcome: Outcome) -> int:  # type: ignore[override]
        return sum(1 for r in self.hosts if r.outcome is outcome)

    @property
    def all_ok(self) -> bool:
        return all(r.ok for r in self.hosts)

    def by_host(self) -> dict[str, HostResult]:
        return {r.host_id: r for r in self.hosts}

    def raise_for_errors(self) -> "CommandResult":
        """Raises CommandFailed unless every host executed the command; returns self."""
        if not self.all_ok:
            raise CommandFailed(self)
        return self


def _result(handle: int, verb: str) -> CommandResult:
    hosts = []
    for i in range(_n.lib.cm_result_size(handle)):
        c = _n.lib.cm_result_at(handle, i).contents
        hosts.append(
            _make(HostResult,
                host_id=_s(c.host_id),
                outcome=_OUTCOMES[c.outcome],
                code=_n.lib.cm_status_name(c.code).decode(),
                message=_s(c.message),
                latency_ns=c.latency_ns,
                reply=json.loads(_s(c.reply_json)),
            )
        )
    return CommandResult(_s(_n.lib.cm_result_command_id(handle)), verb, tuple(hosts))


_RATE_FIELDS = (
    "disk_read_bytes_per_s",
    "disk_write_bytes_per_s",
    "disk_read_ops_per_s",
    "disk_write_ops_per_s",
    "net_rx_bytes_per_s",
    "net_tx_bytes_per_s",
)


@dataclass(frozen=True)
class VmSample:
    """One VM's rates over one tick."""

    uuid: str
    name: str
    state: VmState
    vcpus: int
    rates_valid: bool
    cpu_pct: float
    cpu_host_pct: float
    memory_bytes: int
    memory_used_bytes: int
    disk_read_bytes_per_s: float
    disk_write_bytes_per_s: float
    disk_read_ops_per_s: float
    disk_write_ops_per_s: float
    net_rx_bytes_per_s: float
    net_tx_bytes_per_s: float


@dataclass(frozen=True)
class HostSample:
    """One monitoring tick of one host, with its active VMs."""

    host_id: str
    taken: datetime
    taken_ns: int
    interval_ns: int
    simulated: bool
    rates_valid: bool
    cpus: int
    cpu_pct: float
    memory_bytes: int
    memory_used_bytes: int
    disk_read_bytes_per_s: float
    disk_write_bytes_per_s: float
    disk_read_ops_per_s: float
    disk_write_ops_per_s: float
    net_rx_bytes_per_s: float
    net_tx_bytes_per_s: float
    vms: tuple[VmSample, ...]

    def vm(self, name: str) -> Optional[VmSample]:
        return next((v for v in self.vms if v.name == name or v.uuid == name), None)


def _sample(p: "ctypes._Pointer[_n.HostSample]") -> HostSample:
    c = p.contents
    vms = []
    for i in range(c.vm_count):
        v = _n.lib.cm_host_sample_vm(p, i)
        if not v:
            raise AbiError(_n.lib.cm_last_error().decode())
        v = v.contents
        vms.append(
            _make(VmSample,
                uuid=_s(v.uuid),
                name=_s(v.name),
                state=_VM_STATES[v.state] if 0 <= v.state < len(_VM_STATES) else VmState.UNKNOWN,
                vcpus=v.vcpus,
                rates_valid=bool(v.rates_valid),
                cpu_pct=v.cpu_pct,
                cpu_host_pct=v.cpu_host_pct,
                memory_bytes=v.memory_bytes,
                memory_used_bytes=v.memory_used_bytes,
                **{f: getattr(v, f) for f in _RATE_FIELDS},
            )
        )
    return _make(HostSample,
        host_id=_s(c.host_id),
        taken=datetime.fromtimestamp(c.taken_ns / 1e9, tz=timezone.utc),
        taken_ns=c.taken_ns,
        interval_ns=c.interval_ns,
        simulated=bool(c.simulated),
        rates_valid=bool(c.rates_valid),
        cpus=c.cpus,
        cpu_pct=c.cpu_pct,
        memory_bytes=c.memory_bytes,
        memory_used_bytes=c.memory_used_bytes,
        **{f: getattr(c, f) for f in _RATE_FIELDS},
        vms=tuple(vms),
    )


@dataclass(frozen=True)
class HistoryPoint:
    """One bucket: statistics of the samples in [start_ns, start_ns + step_ns). Index the
    min/avg/max tuples with Metric."""

    start_ns: int
    samples: int
    min: tuple[float, ...]
    avg: tuple[float, ...]
    max: tuple[float, ...]

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_ns / 1e9, tz=timezone.utc)


@dataclass(frozen=True)
class HistorySeries:
    host_id: str
    vm_uuid: str  # "" for the host itself
    vm_name: str
    step_ns: int
    simulated: bool
    points: tuple[HistoryPoint, ...]


@dataclass(frozen=True)
class History:
    """The series the target's hosts returned, and each host's outcome."""

    series: tuple[HistorySeries, ...]
    result: CommandResult


# ---- subscriptions --------------------------------------------------------------------------


class SampleStream(Iterator[HostSample]):
    """Monitoring ticks as they arrive, from Manager.watch_samples(). Iterating blocks until the
    next tick (or `timeout`, then raises DeadlineExceeded); close() (or leaving a `with` block)
    unsubscribes. Ticks are queued on a library thread: up to `maxsize` wait, older ones are
    dropped first and counted in `dropped`."""

    def __init__(self, manager: "Manager", maxsize: int, timeout: Optional[float]) -> None:
        self._queue: "queue.Queue[HostSample]" = queue.Queue(maxsize)
        self._timeout = timeout
        self._lock = threading.Lock()
        self.dropped = 0
        self._callback = _n.SampleCallback(self._on_sample)  # kept alive with the stream
        handle = ctypes.c_void_p()
        _check(_n.lib.cm_manager_subscribe_samples(manager._handle(), self._callback, None, ctypes.byref(handle)))
        self._sub: Optional[int] = handle.value

    def _on_sample(self, sample, _user_data) -> None:  # a library thread
        try:
            s = _sample(sample)
        except Exception:  # an exception must not cross into C
            return
        with self._lock:
            while True:
                try:
                    self._queue.put_nowait(s)
                    return
                except queue.Full:
                    try:
                        self._queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass

    def __next__(self) -> HostSample:
        if self._sub is None and self._queue.empty():
            raise StopIteration
        try:
            return self._queue.get(timeout=self._timeout)
        except queue.Empty:
            raise DeadlineExceeded(f"no monitoring sample within {self._timeout} s") from None

    def close(self) -> None:
        """Unsubscribes; when it returns no tick arrives any more (queued ones can still be read)."""
        if self._sub is not None:
            _n.lib.cm_subscription_free(self._sub)
            self._sub = None

    def __enter__(self) -> "SampleStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


# ---- events ---------------------------------------------------------------------------------


class EventKind(str, Enum):
    """What changed in the manager's view (cm_event_kind)."""

    HOST_ONLINE = "host-online"  # a host entered the view, or came back
    HOST_OFFLINE = "host-offline"  # its agent stopped answering; it stays in the view
    HOST_LEFT = "host-left"  # it left the view: stopped cleanly or forgotten (reason says which)
    HOST_GROUPS_CHANGED = "host-groups-changed"  # groups: the new ones
    VM_ADDED = "vm-added"  # defined, or its host came online
    VM_STATE_CHANGED = "vm-state-changed"  # old_state -> state
    VM_REMOVED = "vm-removed"  # reason: "undefined", "host offline" or "host left"
    EVENTS_LOST = "events-lost"  # the reader fell behind: `lost` events were dropped


_EVENT_KINDS = list(EventKind)


@dataclass(frozen=True)
class Event:
    """One change of the manager's view. Host events carry the host's groups; VM events the VM's
    uuid, name and states; `reason` is the VM's state reason or why it or its host left."""

    kind: EventKind
    time_ns: int
    host_id: str
    groups: tuple[str, ...] = ()
    vm_uuid: str = ""
    vm_name: str = ""
    old_state: Optional[VmState] = None
    state: Optional[VmState] = None
    reason: str = ""
    lost: int = 0

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.time_ns / 1e9, tz=timezone.utc)


def _vm_state(value: int) -> VmState:
    return _VM_STATES[value] if 0 <= value < len(_VM_STATES) else VmState.UNKNOWN


def _event(c: _n.Event) -> Event:
    kind = _EVENT_KINDS[c.kind] if 0 <= c.kind < len(_EVENT_KINDS) else None
    if kind is None:
        raise AbiError(f"event kind {c.kind} is not one this package knows (ABI {ABI_VERSION})")
    return _make(Event,
        kind=kind,
        time_ns=c.time_ns,
        host_id=_s(c.host_id),
        groups=_strings(c.groups, c.group_count),
        vm_uuid=_s(c.vm_uuid),
        vm_name=_s(c.vm_name),
        old_state=_vm_state(c.old_state) if kind in (EventKind.VM_STATE_CHANGED, EventKind.VM_REMOVED) else None,
        state=_vm_state(c.state) if kind in (EventKind.VM_ADDED, EventKind.VM_STATE_CHANGED) else None,
        reason=_s(c.reason),
        lost=c.lost,
    )


class EventStream(Iterator[Event]):
    """The view's changes as they happen, from Manager.watch_events(). Iterating blocks until the
    next event (or `timeout`, then raises DeadlineExceeded); close() (or leaving a `with` block)
    unsubscribes. The library queues events for this stream on its event thread and never
    blocks on it: past `max_queued` it drops them and the stream yields one EVENTS_LOST event
    saying how many (then re-read the view: hosts(), vms())."""

    def __init__(self, manager: "Manager", replay: bool, max_queued: int, timeout: Optional[float]) -> None:
        # The library bounds the queue (max_queued) and reports losses; this queue only hands the
        # events from its thread to the reader, so it is unbounded.
        self._queue: "queue.SimpleQueue[Event]" = queue.SimpleQueue()
        self._timeout = timeout
        self._callback = _n.EventCallback(self._on_event)  # kept alive with the stream
        handle = ctypes.c_void_p()
        flags = _n.EVENTS_REPLAY if replay else 0
        _check(
            _n.lib.cm_manager_subscribe_events(
                manager._handle(), flags, max_queued, self._callback, None, ctypes.byref(handle)
            )
        )
        self._sub: Optional[int] = handle.value

    def _on_event(self, event, _user_data) -> None:  # the library's event thread
        try:
            self._queue.put(_event(event.contents))
        except Exception:  # an exception must not cross into C
            pass

    def __next__(self) -> Event:
        if self._sub is None and self._queue.empty():
            raise StopIteration
        try:
            return self._queue.get(timeout=self._timeout)
        except queue.Empty:
            raise DeadlineExceeded(f"no event within {self._timeout} s") from None

    def until(self, predicate: Callable[[Event], bool], timeout: float) -> Event:
        """Reads events until one matches `predicate` and returns it; DeadlineExceeded after
        `timeout` seconds without one (the events read on the way are consumed)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(f"no matching event within {timeout} s")
            try:
                e = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if predicate(e):
                return e

    def close(self) -> None:
        """Unsubscribes; when it returns no event arrives any more (queued ones can still be read)."""
        if self._sub is not None:
            _n.lib.cm_subscription_free(self._sub)
            self._sub = None

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


# ---- templates and provisioning -------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A template version in the manager's template store (docs/templates.md). `spec` is the
    whole definition (disks, NICs, metadata); `details` the whole version as
    `cloudctl template export` writes it."""

    name: str
    version: int
    ref: str  # "name:version"
    vcpus: int
    memory_bytes: int
    description: str
    image_sha256: str
    image_format: str  # "qcow2" or "raw"
    image_size_bytes: int
    image_virtual_size_bytes: int
    created: Optional[datetime]
    origin: str  # "import /path", "capture host/vm"
    spec: Mapping[str, Any] = field(repr=False, compare=False)
    details: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def _from(cls, c: _n.Template) -> "Template":
        return _make(cls,
            name=_s(c.name),
            version=c.version,
            ref=_s(c.ref),
            vcpus=c.vcpus,
            memory_bytes=c.memory_bytes,
            description=_s(c.description),
            image_sha256=_s(c.image_sha256),
            image_format=_s(c.image_format),
            image_size_bytes=c.image_size_bytes,
            image_virtual_size_bytes=c.image_virtual_size_bytes,
            created=_ns_to_datetime(c.created_ns),
            origin=_s(c.origin),
            spec=json.loads(_s(c.spec_json)),
            details=json.loads(_s(c.json)),
        )


def _templates(h: ctypes.c_void_p) -> list[Template]:
    try:
        out = []
        for i in range(_n.lib.cm_template_list_size(h)):
            p = _n.lib.cm_template_list_at(h, i)
            if not p:
                raise AbiError(_n.lib.cm_last_error().decode())
            out.append(Template._from(p.contents))
        return out
    finally:
        _n.lib.cm_template_list_free(h)


def _one_template(h: ctypes.c_void_p) -> Template:
    found = _templates(h)
    if len(found) != 1:
        raise AbiError(f"expected one template version, the library returned {len(found)}")
    return found[0]


@dataclass(frozen=True)
class Provisioned:
    """What Manager.create_vms() made: the VMs (in name order), the template version they came
    from, and what it cost."""

    template: Template
    vms: tuple[Vm, ...]
    image_sent_to: tuple[str, ...]  # hosts the base image was sent to (they lacked it)
    image_bytes_sent: int  # data bytes sent to each of them
    transfer_ns: int  # time spent sending the base image
    provision_ns: int  # time spent cloning, defining (and starting) the VMs


@dataclass(frozen=True)
class AuditEntry:
    """One command a host's agent received (docs/security.md). `issuer` is the identity the
    transport authenticated; `claimed_issuer` what the command said."""

    received: datetime
    command_id: str
    issuer: str
    claimed_issuer: str
    target: str
    verb: str
    arguments: tuple[tuple[str, str], ...]
    completed: Optional[datetime]
    code: str
    message: str

    @classmethod
    def _from(cls, j: Mapping[str, Any]) -> "AuditEntry":
        return _make(cls,
            received=datetime.fromtimestamp(j["received_ns"] / 1e9, tz=timezone.utc),
            command_id=j["command_id"],
            issuer=j["issuer"],
            claimed_issuer=j["claimed_issuer"],
            target=j["target"],
            verb=j["verb"],
            arguments=tuple((a["name"], a["value"]) for a in j["arguments"]),
            completed=_ns_to_datetime(j["completed_ns"]),
            code=j["code"],
            message=j["message"],
        )




# ---- the manager ----------------------------------------------------------------------------


class Manager:
    """The whole cloud as one system, through the DDS data space.

    Keyword arguments are the C ABI's configuration keys (cm_config_set): domain, transport,
    pki, identity, name, star (a str or a list of addresses), interfaces, shared_memory,
    samples, lease_ms, inventory, templates. Use it as a context manager, or call close().
    """

    def __init__(self, **config: Any) -> None:
        self._h: Optional[int] = None
        cfg = ctypes.c_void_p()
        _check(_n.lib.cm_config_new(ctypes.byref(cfg)))
        try:
            for key, value in config.items():
                if isinstance(value, bool):
                    text = "true" if value else "false"
                elif isinstance(value, (list, tuple)):
                    text = ",".join(str(v) for v in value)
                elif value is None:
                    text = ""
                else:
                    text = str(value)
                _check(_n.lib.cm_config_set(cfg, _text(key, "key"), _text(text, key)))
            handle = ctypes.c_void_p()
            _check(_n.lib.cm_manager_open(cfg, ctypes.byref(handle)))
            self._h = handle.value
        finally:
            _n.lib.cm_config_free(cfg)

    def _handle(self) -> int:
        if self._h is None:
            raise FailedPrecondition("Manager is closed")
        return self._h

    def close(self) -> None:
        """Leaves the data space (waits for commands in flight). Idempotent."""
        if self._h is not None:
            handle, self._h = self._h, None
            _n.lib.cm_manager_free(handle)

    def __enter__(self) -> "Manager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # -- view --

    def wait_for_hosts(self, count: int, timeout: Union[float, timedelta] = 30.0) -> None:
        """Waits until `count` hosts are online; DeadlineExceeded saying how many are."""
        if count < 0:
            raise InvalidArgument(f"count must not be negative ({count})")
        _check(_n.lib.cm_manager_wait_for_hosts(self._handle(), count, _ms(timeout)))

    def hosts(self) -> list[Host]:
        """Every host this manager knows, sorted by id (online and offline)."""
        h = ctypes.c_void_p()
        _check(_n.lib.cm_manager_hosts(self._handle(), ctypes.byref(h)))
        owner = _CList(h, _n.lib.cm_host_list_free)  # each Host decodes its fields when read
        at = _n.lib.cm_host_list_at
        lazy = Host._lazy
        return [lazy(at(h, i).contents, owner) for i in range(_n.lib.cm_host_list_size(h))]

    def host(self, host_id: str) -> Host:
        """One host; NotFound for an unknown id."""
        h = ctypes.c_void_p()
        _check(_n.lib.cm_manager_host(self._handle(), _text(host_id, "host_id"), ctypes.byref(h)))
        try:
            return Host._from(_n.lib.cm_host_list_at(h, 0).contents)
        finally:
            _n.lib.cm_host_list_free(h)

    def forget_host(self, host_id: str) -> None:
        """Drops an offline host from the view (NotFound; FailedPrecondition when online)."""
        _check(_n.lib.cm_manager_forget_host(self._handle(), _text(host_id, "host_id")))

    def prepare(self, target: Target) -> None:
        """Gets sending to `target` ready ahead of its first command (its DDS writer is created
        now and matched with the target's hosts in the background; secured, ~3 s for 32 hosts
        that the first command would otherwise wait). For long-lived managers. InvalidArgument
        for a malformed name; an unknown host or group is fine (it may appear later)."""
        kind, name = target._c()
        _check(_n.lib.cm_manager_prepare(self._handle(), kind, name))

    def groups(self) -> dict[str, list[str]]:
        """Group name -> member host ids, as the hosts publish them."""
        h = ctypes.c_void_p()
        _check(_n.lib.cm_manager_groups(self._handle(), ctypes.byref(h)))
        try:
            out: dict[str, list[str]] = {}
            for i in range(_n.lib.cm_group_list_size(h)):
                g = _n.lib.cm_group_list_at(h, i).contents
                out[_s(g.name)] = [_s(g.members[j]) for j in range(g.member_count)]
            return out
        finally:
            _n.lib.cm_group_list_free(h)

    def vms(self, host: Optional[str] = None, group: Optional[str] = None) -> list[Vm]:
        """VMs sorted by host then name; only those of `host` and/or hosts of `group`."""
        h = ctypes.c_void_p()
        _check(_n.lib.cm_manager_vms(self._handle(), _text(host, "host"), _text(group, "group"), ctypes.byref(h)))
        owner = _CList(h, _n.lib.cm_vm_list_free)  # each Vm decodes its fields when read
        at = _n.lib.cm_vm_list_at
        lazy = Vm._lazy
        return [lazy(at(h, i).contents, owner) for i in range(_n.lib.cm_vm_list_size(h))]

    # -- commands --

    def execute(
        self,
        target: Target,
        verb: str,
        arguments: Optional[Mapping[str, Any]] = None,
        *,
        timeout: Union[float, timedelta] = 30.0,
        **kwargs: Any,
    ) -> CommandResult:
        """Sends `verb` (docs/commands.md) to a target and gathers every expected host's result.

        Arguments come as a mapping and/or keyword arguments (values are turned into str; a bool
        into "true"/"false"). A bad verb or argument raises InvalidArgument and an unknown host
        or empty group NotFound, before anything is sent. Hosts that fail do not raise: look at
        the result, or call its raise_for_errors()."""
        if not isinstance(target, Target):
            raise InvalidArgument(f"target must be a cloudmgr.Target (host(), group(), all_hosts()), not {target!r}")
        kind, name = target._c()
        args = dict(arguments or {})
        args.update(kwargs)
        c_args = (_n.Arg * max(len(args), 1))()
        for i, (k, v) in enumerate(args.items()):
            if isinstance(v, bool):
                v = "true" if v else "false"
            c_args[i].key = _text(str(k), "argument name")
            c_args[i].value = _text(str(v), f"argument {k}")
        h = ctypes.c_void_p()
        _check(
            _n.lib.cm_manager_execute(
                self._handle(), kind, name, _text(verb, "verb"), c_args, len(args), _ms(timeout), ctypes.byref(h)
            )
        )
        try:
            return _result(h.value, verb)
        finally:
            _n.lib.cm_result_free(h)

    # -- monitoring --

    def samples(self) -> list[HostSample]:
        """The latest tick of every online host, sorted by host id."""
        h = ctypes.c_void_p()
        _check(_n.lib.cm_manager_samples(self._handle(), ctypes.byref(h)))
        try:
            return [_sample(_n.lib.cm_sample_list_at(h, i)) for i in range(_n.lib.cm_sample_list_size(h))]
        finally:
            _n.lib.cm_sample_list_free(h)

    def watch_samples(self, *, maxsize: int = 1024, timeout: Optional[float] = None) -> SampleStream:
        """Ticks from now on, as an iterator (close it, or use it in a `with` block)."""
        if maxsize < 1:
            raise InvalidArgument(f"maxsize must be at least 1 ({maxsize})")
        return SampleStream(self, maxsize, timeout)

    def history(
        self,
        target: Target,
        *,
        vm: Optional[str] = None,
        since: Union[None, int, datetime, timedelta] = None,
        until: Union[None, int, datetime, timedelta] = None,
        step: Union[None, int, timedelta] = None,
        timeout: Union[float, timedelta] = 30.0,
    ) -> History:
        """History kept by the target's hosts. since/until: ns since the epoch, a datetime, or a
        timedelta meaning that long ago (default: the last hour, until now); step: a timedelta
        or ns (default: the finest kept)."""
        if not isinstance(target, Target):
            raise InvalidArgument(f"target must be a cloudmgr.Target, not {target!r}")
        kind, name = target._c()
        if isinstance(step, timedelta):
            step_ns = int(step.total_seconds() * 1e9)
        elif step is None:
            step_ns = 0
        elif isinstance(step, int) and not isinstance(step, bool):
            step_ns = step
        else:
            raise InvalidArgument(f"step must be a timedelta or an int (ns), not {type(step).__name__}")
        h = ctypes.c_void_p()
        _check(
            _n.lib.cm_manager_history(
                self._handle(),
                kind,
                name,
                _text(vm, "vm"),
                _ns(since, "since"),
                _ns(until, "until"),
                step_ns,
                _ms(timeout),
                ctypes.byref(h),
            )
        )
        try:
            series = []
            for i in range(_n.lib.cm_history_size(h)):
                sp = _n.lib.cm_history_at(h, i)
                s = sp.contents
                points = []
                for j in range(s.point_count):
                    p = _n.lib.cm_history_series_point(sp, j).contents
                    points.append(HistoryPoint(p.start_ns, p.samples, tuple(p.min), tuple(p.avg), tuple(p.max)))
                series.append(
                    HistorySeries(_s(s.host_id), _s(s.vm_uuid), _s(s.vm_name), s.step_ns, bool(s.simulated), tuple(points))
                )
            return History(tuple(series), _result(_n.lib.cm_history_result(h), "monitor.history"))
        finally:
            _n.lib.cm_history_free(h)

    # -- events --

    def watch_events(
        self, *, replay: bool = False, max_queued: int = 65536, timeout: Optional[float] = None
    ) -> EventStream:
        """The view's changes from now on, as an iterator of Event (close it, or use it in a
        `with` block). `replay`: first the current view, each host then its VMs, as
        HOST_ONLINE / HOST_OFFLINE and VM_ADDED events."""
        if max_queued < 1:
            raise InvalidArgument(f"max_queued must be at least 1 ({max_queued})")
        return EventStream(self, replay, max_queued, timeout)

    # -- templates --

    def templates(self) -> list[Template]:
        """The latest version of every template, sorted by name (FailedPrecondition without a
        template store: the `templates` configuration key)."""
        h = ctypes.c_void_p()
        _check(_n.lib.cm_manager_templates(self._handle(), ctypes.byref(h)))
        return _templates(h)

    def template_versions(self, name: str) -> list[Template]:
        """Every version of template `name`, oldest first; NotFound for an unknown name."""
        h = ctypes.c_void_p()
        _check(_n.lib.cm_manager_template_versions(self._handle(), _text(name, "name"), ctypes.byref(h)))
        return _templates(h)

    def template(self, ref: str) -> Template:
        """One version: `ref` is "name" (the latest) or "name:version"."""
        h = ctypes.c_void_p()
        _check(_n.lib.cm_manager_template(self._handle(), _text(ref, "ref"), ctypes.byref(h)))
        return _one_template(h)

    def import_template(
        self,
        name: str,
        image: Union[str, "os.PathLike[str]"],
        spec: Mapping[str, Any],
        *,
        format: Optional[str] = None,
    ) -> Template:
        """Adds template `name` (or its next version) from a qcow2 or raw image file, copied into
        the store. `spec` is the definition (docs/templates.md): memory_bytes is required, the
        rest defaults to 1 vCPU, no data disk, no NIC. `format`: "qcow2", "raw" or None (read
        from the file). A bad field raises InvalidArgument naming it."""
        if not isinstance(spec, Mapping):
            raise InvalidArgument(f"spec must be a mapping (the template's definition), not {type(spec).__name__}")
        try:
            spec_json = json.dumps(dict(spec))
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"spec cannot be written as JSON: {e}") from None
        h = ctypes.c_void_p()
        _check(
            _n.lib.cm_manager_import_template(
                self._handle(),
                _text(name, "name"),
                _text(os.fspath(image), "image"),
                _text(spec_json, "spec"),
                _text(format, "format"),
                ctypes.byref(h),
            )
        )
        return _one_template(h)

    def verify_template(self, ref: str) -> None:
        """Re-reads the base image and checks its SHA-256: DataLoss when it does not match."""
        _check(_n.lib.cm_manager_verify_template(self._handle(), _text(ref, "ref")))

    def delete_template(self, ref: str, *, force: bool = False) -> None:
        """Removes a version ("name:version") or every version ("name"). FailedPrecondition,
        naming them, while VMs on online hosts are clones of it, unless `force`."""
        _check(_n.lib.cm_manager_delete_template(self._handle(), _text(ref, "ref"), 1 if force else 0))

    def capture_template(
        self, host_id: str, vm: str, name: str, *, timeout: Union[float, timedelta] = 600.0
    ) -> Template:
        """Makes the next version of template `name` from a shut-off VM (its first disk,
        flattened, and its definition). FailedPrecondition for a VM that is not shut off or has
        no disk; Unimplemented where the host's driver cannot capture."""
        h = ctypes.c_void_p()
        _check(
            _n.lib.cm_manager_capture_template(
                self._handle(), _text(host_id, "host_id"), _text(vm, "vm"), _text(name, "name"), _ms(timeout),
                ctypes.byref(h),
            )
        )  # fmt: skip
        return _one_template(h)

    # -- provisioning --

    def create_vms(
        self,
        name: str,
        template: str,
        *,
        progress: Optional[Callable[[str], None]] = None,
        **options: Any,
    ) -> Provisioned:
        """Provisions VMs from a template (all of them or none), placed by a policy.

        Options (cm_manager_create_vms): host or group (where; neither: every online host),
        policy ("pack" or "spread"), count (the VMs are then <name>-1 ... <name>-<count>),
        start, cpu_overcommit, memory_overcommit, memory_reserved_bytes, timeout_ms.
        `progress` is called with one line per step, on this thread or a library thread.
        ResourceExhausted says why the batch does not fit; NotFound for a missing template;
        AlreadyExists for a name taken on any host; InvalidArgument names a bad option."""
        pairs: list[tuple[str, Any]] = [("name", name), ("template", template)]
        pairs += [(k, v) for k, v in options.items() if v is not None]
        c_args = (_n.Arg * len(pairs))()
        for i, (k, v) in enumerate(pairs):
            if isinstance(v, bool):
                v = "true" if v else "false"
            c_args[i].key = _text(str(k), "option name")
            c_args[i].value = _text(v if isinstance(v, str) else str(v), f"option {k}")
        failure: list[BaseException] = []

        def step(text: Optional[bytes], _user_data: Any) -> None:
            if progress is None or failure:
                return
            try:
                progress(_s(text))
            except BaseException as e:  # an exception must not cross into C: raised after the call
                failure.append(e)

        callback = _n.ProgressCallback(step)
        h = ctypes.c_void_p()
        try:
            _check(_n.lib.cm_manager_create_vms(self._handle(), c_args, len(pairs), callback, None, ctypes.byref(h)))
            info = _n.lib.cm_create_result_info(h)
            if not info:
                raise AbiError(_n.lib.cm_last_error().decode())
            c = info.contents
            vms = tuple(
                Vm._from(_n.lib.cm_vm_list_at(c.vms, i).contents) for i in range(_n.lib.cm_vm_list_size(c.vms))
            )
            made = Provisioned(
                template=Template._from(c.template_info.contents),
                vms=vms,
                image_sent_to=_strings(c.image_sent_to, c.image_sent_count),
                image_bytes_sent=c.image_bytes_sent,
                transfer_ns=c.transfer_ns,
                provision_ns=c.provision_ns,
            )
        finally:
            _n.lib.cm_create_result_free(h)
        if failure:
            raise failure[0]
        return made

    def delete_vm(
        self, host_id: str, vm: str, *, force: bool = False, timeout: Union[float, timedelta] = 60.0
    ) -> HostResult:
        """Removes a VM and the disks provisioned for it (a base image stays); `force` destroys
        a running VM first. The host's result; NotFound before sending for an unknown host."""
        h = ctypes.c_void_p()
        _check(
            _n.lib.cm_manager_delete_vm(
                self._handle(), _text(host_id, "host_id"), _text(vm, "vm"), 1 if force else 0, _ms(timeout),
                ctypes.byref(h),
            )
        )  # fmt: skip
        try:
            return _result(h.value, "vm.delete")[0]
        finally:
            _n.lib.cm_result_free(h)

    # -- audit --

    def audit(
        self,
        host_id: str,
        *,
        since: Union[None, int, datetime, timedelta] = None,
        max_entries: Optional[int] = None,
        timeout: Union[float, timedelta] = 30.0,
    ) -> list[AuditEntry]:
        """The commands `host_id`'s agent received, oldest first, from its audit log
        (docs/security.md). since: ns, a datetime or a timedelta meaning that long ago;
        max_entries: at most this many (the agent's default 1000, at most 10000). The host's
        failure raises its error."""
        args: dict[str, Any] = {}
        if since is not None:
            args["since_ns"] = _ns(since, "since")
        if max_entries is not None:
            if isinstance(max_entries, bool) or not isinstance(max_entries, int) or not 1 <= max_entries <= 10000:
                raise InvalidArgument(f"max_entries must be an int from 1 to 10000 ({max_entries!r})")
            args["max_entries"] = max_entries
        r = self.execute(host(host_id), "host.audit", args, timeout=timeout)[0]
        err = r.error()
        if err is not None:
            raise err
        return [AuditEntry._from(j) for j in r.reply.get("audit", [])]
