"""ctypes declarations of the C ABI (bindings/c/include/cloudmgr.h). Private to the package.

Every struct here mirrors the header field by field; the library lays them out and Python only
reads them through pointers, as the header's rules ask.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_double,
    c_int,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

ABI_SONAME = "libcloudmgr-c.so.0"


def _candidates() -> list[str]:
    """Where to look for the C library, first match wins."""
    found: list[str] = []
    explicit = os.environ.get("CLOUDMGR_C_LIBRARY")
    if explicit:
        found.append(explicit)
    try:  # written by `cmake --install`: the installed library, relative to this package
        from . import _install  # type: ignore[attr-defined]

        found.append(str((Path(__file__).parent / _install.LIBRARY).resolve()))
    except ImportError:
        pass
    found.append(ABI_SONAME)  # the dynamic loader's own search (ldconfig, LD_LIBRARY_PATH)
    return found


def _load() -> ctypes.CDLL:
    errors = []
    for name in _candidates():
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(f"{name}: {e}")
    raise ImportError(
        "cloudmgr: cannot load the C library (set CLOUDMGR_C_LIBRARY to libcloudmgr-c.so): " + "; ".join(errors)
    )


lib = _load()


class Host(Structure):
    _fields_ = [
        ("id", c_char_p),
        ("hostname", c_char_p),
        ("hypervisor", c_char_p),
        ("hypervisor_version", c_char_p),
        ("uri", c_char_p),
        ("agent_version", c_char_p),
        ("state", c_int),
        ("last_seen_ns", c_int64),
        ("offline_since_ns", c_int64),
        ("agent_started_ns", c_int64),
        ("cpus", c_uint32),
        ("cpu_mhz", c_uint32),
        ("memory_bytes", c_uint64),
        ("free_memory_bytes", c_uint64),
        ("vcpus_allocated", c_uint32),
        ("memory_allocated_bytes", c_uint64),
        ("vms_defined", c_uint32),
        ("vms_active", c_uint32),
        ("group_count", c_size_t),
        ("groups", POINTER(c_char_p)),
    ]


class Group(Structure):
    _fields_ = [("name", c_char_p), ("member_count", c_size_t), ("members", POINTER(c_char_p))]


class Vm(Structure):
    _fields_ = [
        ("host_id", c_char_p),
        ("uuid", c_char_p),
        ("name", c_char_p),
        ("state", c_int),
        ("state_reason", c_char_p),
        ("vcpus", c_uint32),
        ("max_vcpus", c_uint32),
        ("memory_bytes", c_uint64),
        ("max_memory_bytes", c_uint64),
        ("cpu_time_ns", c_uint64),
        ("persistent", c_int),
        ("autostart", c_int),
        ("description", c_char_p),
        ("template_name", c_char_p),
        ("template_version", c_uint32),
        ("image_sha256", c_char_p),
        ("json", c_char_p),
        ("updated_ns", c_int64),
    ]


class Arg(Structure):
    _fields_ = [("key", c_char_p), ("value", c_char_p)]


class HostResult(Structure):
    _fields_ = [
        ("host_id", c_char_p),
        ("outcome", c_int),
        ("code", c_int),
        ("message", c_char_p),
        ("latency_ns", c_int64),
        ("reply_json", c_char_p),
    ]


_RATES = [
    ("disk_read_bytes_per_s", c_double),
    ("disk_write_bytes_per_s", c_double),
    ("disk_read_ops_per_s", c_double),
    ("disk_write_ops_per_s", c_double),
    ("net_rx_bytes_per_s", c_double),
    ("net_tx_bytes_per_s", c_double),
]


class VmSample(Structure):
    _fields_ = [
        ("uuid", c_char_p),
        ("name", c_char_p),
        ("state", c_int),
        ("vcpus", c_uint32),
        ("rates_valid", c_int),
        ("cpu_pct", c_double),
        ("cpu_host_pct", c_double),
        ("memory_bytes", c_uint64),
        ("memory_used_bytes", c_uint64),
        *_RATES,
    ]


class HostSample(Structure):
    _fields_ = [
        ("host_id", c_char_p),
        ("taken_ns", c_int64),
        ("interval_ns", c_int64),
        ("simulated", c_int),
        ("rates_valid", c_int),
        ("cpus", c_uint32),
        ("cpu_pct", c_double),
        ("memory_bytes", c_uint64),
        ("memory_used_bytes", c_uint64),
        *_RATES,
        ("vm_count", c_size_t),
    ]


METRIC_COUNT = 8


class HistoryPoint(Structure):
    _fields_ = [
        ("start_ns", c_int64),
        ("samples", c_uint32),
        ("min", c_double * METRIC_COUNT),
        ("avg", c_double * METRIC_COUNT),
        ("max", c_double * METRIC_COUNT),
    ]


class HistorySeries(Structure):
    _fields_ = [
        ("host_id", c_char_p),
        ("vm_uuid", c_char_p),
        ("vm_name", c_char_p),
        ("step_ns", c_int64),
        ("simulated", c_int),
        ("point_count", c_size_t),
    ]


SampleCallback = CFUNCTYPE(None, POINTER(HostSample), c_void_p)


def _fn(name: str, restype, *argtypes) -> None:
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


H = c_void_p  # every opaque handle
OUT = POINTER(c_void_p)

_fn("cm_status_name", c_char_p, c_int)
_fn("cm_last_status", c_int)
_fn("cm_last_error", c_char_p)
_fn("cm_clear_error", None)
_fn("cm_version", c_char_p)
_fn("cm_abi_version", c_uint32)
_fn("cm_config_new", c_int, OUT)
_fn("cm_config_free", None, H)
_fn("cm_config_set", c_int, H, c_char_p, c_char_p)
_fn("cm_manager_open", c_int, H, OUT)
_fn("cm_manager_close", c_int, H)
_fn("cm_manager_free", None, H)
_fn("cm_manager_wait_for_hosts", c_int, H, c_size_t, c_uint32)
_fn("cm_manager_hosts", c_int, H, OUT)
_fn("cm_manager_host", c_int, H, c_char_p, OUT)
_fn("cm_host_list_size", c_size_t, H)
_fn("cm_host_list_at", POINTER(Host), H, c_size_t)
_fn("cm_host_list_free", None, H)
_fn("cm_manager_forget_host", c_int, H, c_char_p)
_fn("cm_manager_prepare", c_int, H, c_int, c_char_p)
_fn("cm_manager_groups", c_int, H, OUT)
_fn("cm_group_list_size", c_size_t, H)
_fn("cm_group_list_at", POINTER(Group), H, c_size_t)
_fn("cm_group_list_free", None, H)
_fn("cm_vm_state_name", c_char_p, c_int)
_fn("cm_manager_vms", c_int, H, c_char_p, c_char_p, OUT)
_fn("cm_vm_list_size", c_size_t, H)
_fn("cm_vm_list_at", POINTER(Vm), H, c_size_t)
_fn("cm_vm_list_free", None, H)
_fn("cm_outcome_name", c_char_p, c_int)
_fn("cm_manager_execute", c_int, H, c_int, c_char_p, c_char_p, POINTER(Arg), c_size_t, c_uint32, OUT)
_fn("cm_result_command_id", c_char_p, H)
_fn("cm_result_size", c_size_t, H)
_fn("cm_result_at", POINTER(HostResult), H, c_size_t)
_fn("cm_result_count", c_size_t, H, c_int)
_fn("cm_result_free", None, H)
_fn("cm_host_sample_vm", POINTER(VmSample), POINTER(HostSample), c_size_t)
_fn("cm_manager_samples", c_int, H, OUT)
_fn("cm_sample_list_size", c_size_t, H)
_fn("cm_sample_list_at", POINTER(HostSample), H, c_size_t)
_fn("cm_sample_list_free", None, H)
_fn("cm_manager_subscribe_samples", c_int, H, SampleCallback, c_void_p, OUT)
_fn("cm_subscription_free", None, H)
_fn("cm_metric_name", c_char_p, c_int)
_fn("cm_history_series_point", POINTER(HistoryPoint), POINTER(HistorySeries), c_size_t)
_fn("cm_manager_history", c_int, H, c_int, c_char_p, c_char_p, c_int64, c_int64, c_int64, c_uint32, OUT)
_fn("cm_history_size", c_size_t, H)
_fn("cm_history_at", POINTER(HistorySeries), H, c_size_t)
_fn("cm_history_result", c_void_p, H)
_fn("cm_history_free", None, H)


class Event(Structure):
    _fields_ = [
        ("kind", c_int),
        ("time_ns", c_int64),
        ("host_id", c_char_p),
        ("group_count", c_size_t),
        ("groups", POINTER(c_char_p)),
        ("vm_uuid", c_char_p),
        ("vm_name", c_char_p),
        ("old_state", c_int),
        ("state", c_int),
        ("reason", c_char_p),
        ("lost", c_uint64),
    ]


EVENTS_REPLAY = 1

EventCallback = CFUNCTYPE(None, POINTER(Event), c_void_p)


class Template(Structure):
    _fields_ = [
        ("name", c_char_p),
        ("version", c_uint32),
        ("ref", c_char_p),
        ("vcpus", c_uint32),
        ("memory_bytes", c_uint64),
        ("description", c_char_p),
        ("image_sha256", c_char_p),
        ("image_format", c_char_p),
        ("image_size_bytes", c_uint64),
        ("image_virtual_size_bytes", c_uint64),
        ("created_ns", c_int64),
        ("origin", c_char_p),
        ("spec_json", c_char_p),
        ("json", c_char_p),
    ]


class CreateInfo(Structure):
    _fields_ = [
        ("template_info", POINTER(Template)),
        ("vms", c_void_p),
        ("image_sent_count", c_size_t),
        ("image_sent_to", POINTER(c_char_p)),
        ("image_bytes_sent", c_uint64),
        ("transfer_ns", c_int64),
        ("provision_ns", c_int64),
    ]


ProgressCallback = CFUNCTYPE(None, c_char_p, c_void_p)

_fn("cm_event_kind_name", c_char_p, c_int)
_fn("cm_manager_subscribe_events", c_int, H, c_uint32, c_size_t, EventCallback, c_void_p, OUT)
_fn("cm_manager_templates", c_int, H, OUT)
_fn("cm_manager_template_versions", c_int, H, c_char_p, OUT)
_fn("cm_manager_template", c_int, H, c_char_p, OUT)
_fn("cm_template_list_size", c_size_t, H)
_fn("cm_template_list_at", POINTER(Template), H, c_size_t)
_fn("cm_template_list_free", None, H)
_fn("cm_manager_import_template", c_int, H, c_char_p, c_char_p, c_char_p, c_char_p, OUT)
_fn("cm_manager_verify_template", c_int, H, c_char_p)
_fn("cm_manager_delete_template", c_int, H, c_char_p, c_int)
_fn("cm_manager_capture_template", c_int, H, c_char_p, c_char_p, c_char_p, c_uint32, OUT)
_fn("cm_manager_create_vms", c_int, H, POINTER(Arg), c_size_t, ProgressCallback, c_void_p, OUT)
_fn("cm_create_result_info", POINTER(CreateInfo), H)
_fn("cm_create_result_free", None, H)
_fn("cm_manager_delete_vm", c_int, H, c_char_p, c_char_p, c_int, c_uint32, OUT)
