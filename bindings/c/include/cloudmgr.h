/* cloudmgr.h: the C ABI of libcloudmgr (library cloudmgr-c, pkg-config cloudmgr-c).
 *
 * One C API every binding builds on (Python's cloudmgr package uses nothing else). It wraps
 * cloudmgr::Manager: the whole cloud seen through the DDS data space, commands to one host, a
 * group or every host with a result per host, the hosts' monitoring samples and history, the
 * changes of the view as events, and the template store with provisioning by placement.
 *
 *   cm_config* cfg = NULL;
 *   cm_manager* m = NULL;
 *   if (cm_config_new(&cfg) != CM_OK || cm_config_set(cfg, "domain", "7") != CM_OK ||
 *       cm_manager_open(cfg, &m) != CM_OK) {
 *     fprintf(stderr, "%s\n", cm_last_error());
 *   }
 *   cm_config_free(cfg);
 *   cm_result* r = NULL;
 *   cm_arg args[] = {{"vm", "web1"}};
 *   if (cm_manager_execute(m, CM_TARGET_GROUP, "web", "vm.start", args, 1, 30000, &r) == CM_OK) {
 *     for (size_t i = 0; i < cm_result_size(r); ++i) {
 *       const cm_host_result* h = cm_result_at(r, i);
 *       printf("%s %s %s\n", h->host_id, cm_outcome_name(h->outcome), h->message);
 *     }
 *   }
 *   cm_result_free(r);
 *   cm_manager_free(m);
 *
 * Rules that hold for every function:
 * - Errors. A function that can fail returns a cm_status. On failure it also records, for the
 *   calling thread, that status and one line of text naming what was wrong (cm_last_status,
 *   cm_last_error); on success it leaves them alone. Functions that return a pointer or a size
 *   instead return NULL / 0 on bad input and record the error the same way. No C++ exception
 *   ever leaves the library: an unexpected one becomes CM_INTERNAL.
 * - Ownership. Every object a cm_*_new / cm_manager_* call hands out through an `out`
 *   parameter belongs to the caller, who releases it with the matching cm_*_free (NULL is
 *   accepted and ignored). Pointers read out of an object (strings, structs, arrays) belong to
 *   that object and stay valid, unchanged, until it is freed. Strings passed in are copied
 *   before the call returns. Strings are UTF-8, NUL-terminated; an absent value is "" (never
 *   NULL) in what the library returns.
 * - Handles. The library keeps a registry of the handles it handed out: a NULL, freed or foreign
 *   handle gives CM_INVALID_ARGUMENT naming the parameter, never a crash. (Only a handle freed
 *   and whose address was since reused by a new object of the same kind goes undetected.)
 * - Threads. A cm_manager may be used from any number of threads at once. A list or result
 *   object is immutable: any number of threads may read it, but none may free it meanwhile.
 *   A cm_config is not synchronized. Callbacks run on a library thread; see each one.
 * - Structs (cm_host, cm_vm, ...) are read-only views the library lays out; reach them through
 *   the *_at() functions, never by indexing an array of them: later versions may append fields.
 * - Times are nanoseconds since the Unix epoch (_ns); sizes are bytes (_bytes); rates are per
 *   second (_per_s); percentages are 0-100 of the named share (_pct).
 */
#ifndef CLOUDMGR_C_CLOUDMGR_H
#define CLOUDMGR_C_CLOUDMGR_H

#include <stddef.h>
#include <stdint.h>

#if defined(CM_BUILDING_LIBRARY)
#define CM_API __attribute__((visibility("default")))
#else
#define CM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status and errors -------------------------------------------------------------------- */

/* The same codes, with the same numbers, as cloudmgr::StatusCode (gRPC's canonical codes). */
typedef enum cm_status {
  CM_OK = 0,
  CM_CANCELLED = 1,
  CM_UNKNOWN = 2,
  CM_INVALID_ARGUMENT = 3,
  CM_DEADLINE_EXCEEDED = 4,
  CM_NOT_FOUND = 5,
  CM_ALREADY_EXISTS = 6,
  CM_PERMISSION_DENIED = 7,
  CM_RESOURCE_EXHAUSTED = 8,
  CM_FAILED_PRECONDITION = 9,
  CM_ABORTED = 10,
  CM_OUT_OF_RANGE = 11,
  CM_UNIMPLEMENTED = 12,
  CM_INTERNAL = 13,
  CM_UNAVAILABLE = 14,
  CM_DATA_LOSS = 15,
  CM_UNAUTHENTICATED = 16
} cm_status;

/* "OK", "NOT_FOUND", ...; "INVALID_STATUS" for a value outside the enum. Static storage;
 * never fails, records nothing. Thread-safe. */
CM_API const char* cm_status_name(cm_status status);

/* The status of the calling thread's last failed call (CM_OK before any failure). */
CM_API cm_status cm_last_status(void);
/* The text of the calling thread's last failed call ("" before any failure), e.g.
 * "cm_config_set: domain: '300' is not a DDS domain id (0-232)". Owned by the library; valid
 * until the next failing call on this thread. */
CM_API const char* cm_last_error(void);
/* Forgets the calling thread's last error (cm_last_status() is CM_OK again). */
CM_API void cm_clear_error(void);

/* The library's version, "MAJOR.MINOR.PATCH" (static storage). */
CM_API const char* cm_version(void);
/* The C ABI's version: incremented whenever a function or struct field is added. */
CM_API uint32_t cm_abi_version(void);

/* ---- configuration ------------------------------------------------------------------------ */

typedef struct cm_config cm_config;

/* A configuration with the defaults: DDS domain 0, multicast discovery on 127.0.0.1 plus shared
 * memory, unsecured, samples on, no inventory, no template store. */
CM_API cm_status cm_config_new(cm_config** out);
CM_API void cm_config_free(cm_config* config);
/* Sets one key (an unknown key, or a value that does not parse, is CM_INVALID_ARGUMENT naming
 * both, and changes nothing):
 *   domain          DDS domain id, 0-232
 *   transport       "dds" (default) or "inproc" (in-process, for tests)
 *   pki             the cloud's PKI directory (cloudctl pki init): DDS-Security on; "" = off
 *   identity        the identity in that PKI, "manager.<name>" (default manager.<name>)
 *   name            this manager's name, shown to agents as the issuer
 *   star            star discovery: comma-separated manager addresses ("127.0.0.1"); "" = multicast
 *   interfaces      comma-separated IPv4 addresses UDP may use (default "127.0.0.1")
 *   shared_memory   "true" / "false"
 *   samples         "true" / "false": receive the hosts' monitoring ticks
 *   lease_ms        an agent silent this long is offline (default 2000)
 *   inventory       a file where the manager remembers the hosts it saw ("" = none)
 *   templates       the template store's directory ("" = none)
 * Every value is checked again, as a whole, by cm_manager_open. */
CM_API cm_status cm_config_set(cm_config* config, const char* key, const char* value);

/* ---- the manager -------------------------------------------------------------------------- */

typedef struct cm_manager cm_manager;

/* Joins the data space. Hosts already published arrive in the background (cm_manager_wait_*).
 * The configuration may be freed or changed afterwards. */
CM_API cm_status cm_manager_open(const cm_config* config, cm_manager** out);
/* Leaves the data space (waits for commands in flight, each ends by its deadline) and stops
 * every subscription. The handle stays valid: every later call on it is CM_FAILED_PRECONDITION
 * "manager is closed". Closing twice is CM_OK. Must not be called from a callback. */
CM_API cm_status cm_manager_close(cm_manager* manager);
/* Closes (if still open) and releases the handle. Must not be called from a callback. */
CM_API void cm_manager_free(cm_manager* manager);

/* Waits until at least `count` hosts are online: CM_DEADLINE_EXCEEDED saying how many are. */
CM_API cm_status cm_manager_wait_for_hosts(cm_manager* manager, size_t count, uint32_t timeout_ms);

/* ---- hosts -------------------------------------------------------------------------------- */

typedef enum cm_host_state {
  CM_HOST_ONLINE = 0,
  CM_HOST_OFFLINE = 1 /* its agent stopped answering; it may come back */
} cm_host_state;

typedef struct cm_host {
  const char* id;                 /* cloud-wide host id */
  const char* hostname;           /* as the hypervisor reports it */
  const char* hypervisor;         /* "QEMU", "Test", ... */
  const char* hypervisor_version; /* "7.2.0" */
  const char* uri;                /* the driver URI its agent uses */
  const char* agent_version;
  cm_host_state state;
  int64_t last_seen_ns;     /* when this manager last heard from it */
  int64_t offline_since_ns; /* 0 while online */
  int64_t agent_started_ns;
  uint32_t cpus; /* logical CPUs */
  uint32_t cpu_mhz;
  uint64_t memory_bytes;
  uint64_t free_memory_bytes;
  uint32_t vcpus_allocated; /* to active VMs */
  uint64_t memory_allocated_bytes;
  uint32_t vms_defined;
  uint32_t vms_active;
  size_t group_count;
  const char* const* groups; /* group_count names, sorted */
} cm_host;

typedef struct cm_host_list cm_host_list;

/* Every host this manager knows, sorted by id (online ones and offline ones). */
CM_API cm_status cm_manager_hosts(cm_manager* manager, cm_host_list** out);
/* One host (a list of one): CM_NOT_FOUND for an unknown id. */
CM_API cm_status cm_manager_host(cm_manager* manager, const char* id, cm_host_list** out);
CM_API size_t cm_host_list_size(const cm_host_list* list);
/* NULL (CM_OUT_OF_RANGE) past the end. */
CM_API const cm_host* cm_host_list_at(const cm_host_list* list, size_t index);
CM_API void cm_host_list_free(cm_host_list* list);

/* Drops an offline host from the view: CM_NOT_FOUND, or CM_FAILED_PRECONDITION when online. */
CM_API cm_status cm_manager_forget_host(cm_manager* manager, const char* id);

/* ---- groups ------------------------------------------------------------------------------- */

typedef struct cm_group {
  const char* name;
  size_t member_count;
  const char* const* members; /* host ids, sorted */
} cm_group;

typedef struct cm_group_list cm_group_list;

/* Every group the hosts publish, sorted by name. */
CM_API cm_status cm_manager_groups(cm_manager* manager, cm_group_list** out);
CM_API size_t cm_group_list_size(const cm_group_list* list);
CM_API const cm_group* cm_group_list_at(const cm_group_list* list, size_t index);
CM_API void cm_group_list_free(cm_group_list* list);

/* ---- VMs ---------------------------------------------------------------------------------- */

/* The same numbers as cloudmgr::VmState. */
typedef enum cm_vm_state {
  CM_VM_UNKNOWN = 0,
  CM_VM_RUNNING = 1,
  CM_VM_PAUSED = 2,
  CM_VM_SHUTTING_DOWN = 3,
  CM_VM_SHUT_OFF = 4,
  CM_VM_CRASHED = 5,
  CM_VM_PM_SUSPENDED = 6
} cm_vm_state;

/* "running", "paused", "shutting-down", "shut-off", "crashed", "pm-suspended", "unknown";
 * "invalid" outside the enum. Static storage. */
CM_API const char* cm_vm_state_name(cm_vm_state state);

typedef struct cm_vm {
  const char* host_id;
  const char* uuid; /* lower-case 8-4-4-4-12 */
  const char* name;
  cm_vm_state state;
  const char* state_reason; /* "booted", "user", "destroyed", ... */
  uint32_t vcpus;
  uint32_t max_vcpus;
  uint64_t memory_bytes;
  uint64_t max_memory_bytes;
  uint64_t cpu_time_ns;
  int persistent; /* 1: defined (survives shutdown), 0: transient */
  int autostart;  /* 1: started when its host boots */
  const char* description;
  const char* template_name; /* "" unless provisioned from a template */
  uint32_t template_version;
  const char* image_sha256; /* the base image its first disk clones */
  /* The whole VM as JSON (the fields above plus "disks" and "nics"), as `cloudctl vm show
   * --json` prints it. */
  const char* json;
  int64_t updated_ns; /* when its agent took this view */
} cm_vm;

typedef struct cm_vm_list cm_vm_list;

/* VMs sorted by host then name; only those of host `host_id` and/or of hosts in `group`, when
 * not NULL. */
CM_API cm_status cm_manager_vms(cm_manager* manager, const char* host_id, const char* group, cm_vm_list** out);
CM_API size_t cm_vm_list_size(const cm_vm_list* list);
CM_API const cm_vm* cm_vm_list_at(const cm_vm_list* list, size_t index);
CM_API void cm_vm_list_free(cm_vm_list* list);

/* ---- commands ----------------------------------------------------------------------------- */

typedef enum cm_target_kind {
  CM_TARGET_HOST = 0,  /* name: a host id */
  CM_TARGET_GROUP = 1, /* name: a group */
  CM_TARGET_ALL = 2    /* name: NULL or "" */
} cm_target_kind;

typedef struct cm_arg {
  const char* key;
  const char* value;
} cm_arg;

typedef enum cm_outcome {
  CM_OUTCOME_OK = 0,      /* the host executed the command */
  CM_OUTCOME_ERROR = 1,   /* it answered with an error: code, message */
  CM_OUTCOME_NO_REPLY = 2 /* no answer before the deadline (code CM_DEADLINE_EXCEEDED) */
} cm_outcome;

/* "ok", "error", "no-reply"; "invalid" outside the enum. Static storage. */
CM_API const char* cm_outcome_name(cm_outcome outcome);

typedef struct cm_host_result {
  const char* host_id;
  cm_outcome outcome;
  cm_status code;      /* CM_OK, the host's error, or CM_DEADLINE_EXCEEDED */
  const char* message; /* "" when OK */
  int64_t latency_ns;  /* send to reply; 0 without a reply */
  /* The reply's payload as JSON: {"processes": [...], "snapshots": [...], "vms": [...],
   * "audit": [...]}, each key present only when the verb returns it (docs/commands.md); "{}"
   * for none. The objects are those `cloudctl ... --json` prints (host ps, snapshot list,
   * vm show, audit). */
  const char* reply_json;
} cm_host_result;

typedef struct cm_result cm_result;

/* Sends `verb` (docs/commands.md) with `arguments` to a target and gathers every expected host's
 * result until all answered or `timeout_ms` passed. A bad verb or argument is
 * CM_INVALID_ARGUMENT and an unknown host or empty group CM_NOT_FOUND: then nothing is sent. A
 * command that was sent returns CM_OK with a result per host, whatever each host answered.
 * `arguments` may be NULL when `argument_count` is 0. */
CM_API cm_status cm_manager_execute(cm_manager* manager, cm_target_kind kind, const char* name, const char* verb,
                                    const cm_arg* arguments, size_t argument_count, uint32_t timeout_ms,
                                    cm_result** out);

/* Gets sending to a target ready ahead of its first command (ABI 3): on DDS the target's writer
 * is created now and matched with its hosts in the background (secured, ~3 s for 32 hosts, which
 * the first command would otherwise wait). For long-lived managers. CM_INVALID_ARGUMENT for a
 * bad kind or name (an unknown host or group is fine: it may appear later). Thread-safe. */
CM_API cm_status cm_manager_prepare(cm_manager* manager, cm_target_kind kind, const char* name);

CM_API const char* cm_result_command_id(const cm_result* result);
CM_API size_t cm_result_size(const cm_result* result);
/* Sorted by host id. */
CM_API const cm_host_result* cm_result_at(const cm_result* result, size_t index);
/* How many hosts had `outcome`. */
CM_API size_t cm_result_count(const cm_result* result, cm_outcome outcome);
CM_API void cm_result_free(cm_result* result);

/* ---- monitoring --------------------------------------------------------------------------- */

typedef struct cm_vm_sample {
  const char* uuid;
  const char* name;
  cm_vm_state state;
  uint32_t vcpus;
  int rates_valid; /* 0 on a VM's first tick and after a counter reset: rates are 0 then */
  double cpu_pct;  /* of its own vCPUs */
  double cpu_host_pct;
  uint64_t memory_bytes;
  uint64_t memory_used_bytes;
  double disk_read_bytes_per_s;
  double disk_write_bytes_per_s;
  double disk_read_ops_per_s;
  double disk_write_ops_per_s;
  double net_rx_bytes_per_s;
  double net_tx_bytes_per_s;
} cm_vm_sample;

typedef struct cm_host_sample {
  const char* host_id;
  int64_t taken_ns;    /* the agent's clock */
  int64_t interval_ns; /* since its previous tick */
  int simulated;       /* 1: from a load model (libvirt's test driver), not real counters */
  int rates_valid;
  uint32_t cpus;
  double cpu_pct; /* busy share of all logical CPUs */
  uint64_t memory_bytes;
  uint64_t memory_used_bytes;
  double disk_read_bytes_per_s;
  double disk_write_bytes_per_s;
  double disk_read_ops_per_s;
  double disk_write_ops_per_s;
  double net_rx_bytes_per_s;
  double net_tx_bytes_per_s;
  size_t vm_count;
} cm_host_sample;

/* One VM of a host sample (sorted by name); NULL (CM_OUT_OF_RANGE) past vm_count. */
CM_API const cm_vm_sample* cm_host_sample_vm(const cm_host_sample* sample, size_t index);

typedef struct cm_sample_list cm_sample_list;

/* The latest tick of every online host, sorted by host id (empty with samples off). */
CM_API cm_status cm_manager_samples(cm_manager* manager, cm_sample_list** out);
CM_API size_t cm_sample_list_size(const cm_sample_list* list);
CM_API const cm_host_sample* cm_sample_list_at(const cm_sample_list* list, size_t index);
CM_API void cm_sample_list_free(cm_sample_list* list);

/* Called with each tick as it arrives, on a library thread, one call at a time per
 * subscription, never under the manager's lock. `sample` is valid only during the call. The
 * callback must return promptly and must not close or free the manager, nor free its own
 * subscription (it may call other manager functions). */
typedef void (*cm_sample_callback)(const cm_host_sample* sample, void* user_data);

typedef struct cm_subscription cm_subscription;

/* CM_FAILED_PRECONDITION when the manager was opened with samples off. */
CM_API cm_status cm_manager_subscribe_samples(cm_manager* manager, cm_sample_callback callback, void* user_data,
                                              cm_subscription** out);
/* Unsubscribes: when it returns the callback is not running and is never called again. Must
 * not be called from the subscription's own callback. */
CM_API void cm_subscription_free(cm_subscription* subscription);

/* History kept by the target's hosts ("monitor.history"). One series per host (or per VM with
 * `vm`), each a list of buckets. */
typedef enum cm_metric {
  CM_METRIC_CPU_PCT = 0,
  CM_METRIC_MEMORY_USED_BYTES = 1,
  CM_METRIC_DISK_READ_BYTES_PER_S = 2,
  CM_METRIC_DISK_WRITE_BYTES_PER_S = 3,
  CM_METRIC_DISK_READ_OPS_PER_S = 4,
  CM_METRIC_DISK_WRITE_OPS_PER_S = 5,
  CM_METRIC_NET_RX_BYTES_PER_S = 6,
  CM_METRIC_NET_TX_BYTES_PER_S = 7,
  CM_METRIC_COUNT = 8
} cm_metric;

/* "cpu_pct", "memory_used_bytes", ...; "invalid" outside the enum. Static storage. */
CM_API const char* cm_metric_name(cm_metric metric);

typedef struct cm_history_point {
  int64_t start_ns; /* the bucket is [start_ns, start_ns + step_ns) */
  uint32_t samples; /* raw samples behind it */
  double min[CM_METRIC_COUNT];
  double avg[CM_METRIC_COUNT];
  double max[CM_METRIC_COUNT];
} cm_history_point;

typedef struct cm_history_series {
  const char* host_id;
  const char* vm_uuid; /* "" for the host itself */
  const char* vm_name;
  int64_t step_ns; /* the bucket width used; 0: raw samples, one point per tick */
  int simulated;
  size_t point_count;
} cm_history_series;

CM_API const cm_history_point* cm_history_series_point(const cm_history_series* series, size_t index);

typedef struct cm_history cm_history;

/* `vm`: a VM name or uuid, or NULL / "" for the hosts themselves. `since_ns` 0: an hour ago;
 * `until_ns` 0: now; `step_ns` 0: the finest resolution kept. Hosts that fail or do not reply
 * are in cm_history_result (the per-host outcome); their series are absent. */
CM_API cm_status cm_manager_history(cm_manager* manager, cm_target_kind kind, const char* name, const char* vm,
                                    int64_t since_ns, int64_t until_ns, int64_t step_ns, uint32_t timeout_ms,
                                    cm_history** out);
CM_API size_t cm_history_size(const cm_history* history);
CM_API const cm_history_series* cm_history_at(const cm_history* history, size_t index);
/* The per-host outcome of the history command (borrowed from `history`). */
CM_API const cm_result* cm_history_result(const cm_history* history);
CM_API void cm_history_free(cm_history* history);

/* ---- events ------------------------------------------------------------------------------- */

/* The same numbers as cloudmgr::CloudEvent::Kind. */
typedef enum cm_event_kind {
  CM_EVENT_HOST_ONLINE = 0,         /* a host entered the view, or came back after going offline */
  CM_EVENT_HOST_OFFLINE = 1,        /* its agent stopped answering; it stays in the view */
  CM_EVENT_HOST_LEFT = 2,           /* it left the view: stopped cleanly ("stopped") or forgotten ("forgotten") */
  CM_EVENT_HOST_GROUPS_CHANGED = 3, /* its groups changed (groups: the new ones) */
  CM_EVENT_VM_ADDED = 4,            /* a VM entered the view (defined, or its host came online) */
  CM_EVENT_VM_STATE_CHANGED = 5,    /* old_state -> state */
  CM_EVENT_VM_REMOVED = 6,          /* reason: "undefined", "host offline" or "host left" */
  CM_EVENT_EVENTS_LOST = 7          /* the subscriber fell behind: `lost` events were dropped; re-read the view */
} cm_event_kind;

/* "host-online", "host-offline", "host-left", "host-groups-changed", "vm-added",
 * "vm-state-changed", "vm-removed", "events-lost"; "invalid" outside the enum. Static storage. */
CM_API const char* cm_event_kind_name(cm_event_kind kind);

typedef struct cm_event {
  cm_event_kind kind;
  int64_t time_ns;     /* when the manager saw the change (its clock) */
  const char* host_id; /* "" for CM_EVENT_EVENTS_LOST */
  size_t group_count;  /* host events: the host's groups, sorted; 0 for VM events */
  const char* const* groups;
  const char* vm_uuid; /* VM events; "" otherwise */
  const char* vm_name;
  cm_vm_state old_state; /* VM_STATE_CHANGED: before; VM_REMOVED: its last state */
  cm_vm_state state;     /* VM_ADDED, VM_STATE_CHANGED: now */
  const char* reason;    /* the VM's state reason ("booted", ...), or why it or its host left */
  uint64_t lost;         /* CM_EVENT_EVENTS_LOST: how many */
} cm_event;

/* Called with each change of the manager's view, in the order the view changed, one call at a
 * time per subscription, on the manager's event thread (never a transport thread, never under
 * the manager's lock). `event` is valid only during the call. The callback may call any
 * manager function, cm_manager_execute included (it then holds up only later events), but must
 * not close or free the manager, nor free its own subscription. */
typedef void (*cm_event_callback)(const cm_event* event, void* user_data);

/* cm_manager_subscribe_events flags. */
#define CM_EVENTS_REPLAY 1u /* first deliver the current view: each host (online / offline) then its VMs (added) */

/* Subscribes to the view's changes. `max_queued`: events held for a slow callback at most (0:
 * 65536); past it they are dropped and a CM_EVENT_EVENTS_LOST says how many (the replay is
 * never dropped). An unknown flag is CM_INVALID_ARGUMENT. Free with cm_subscription_free. */
CM_API cm_status cm_manager_subscribe_events(cm_manager* manager, uint32_t flags, size_t max_queued,
                                             cm_event_callback callback, void* user_data, cm_subscription** out);

/* ---- templates ---------------------------------------------------------------------------- */

/* A template version in the manager's template store (config key "templates"; without one
 * every call here is CM_FAILED_PRECONDITION). docs/templates.md. */
typedef struct cm_template {
  const char* name;
  uint32_t version; /* 1, 2, ... */
  const char* ref;  /* "name:version" */
  uint32_t vcpus;
  uint64_t memory_bytes;
  const char* description;
  const char* image_sha256; /* the base image, by its SHA-256 */
  const char* image_format; /* "qcow2" or "raw" */
  uint64_t image_size_bytes;
  uint64_t image_virtual_size_bytes;
  int64_t created_ns;
  const char* origin;    /* "import /path", "capture host/vm" */
  const char* spec_json; /* the whole definition (disks, NICs, metadata) as JSON: docs/templates.md */
  const char* json;      /* the whole template version as JSON (as `cloudctl template export` writes it) */
} cm_template;

typedef struct cm_template_list cm_template_list;

/* The latest version of every template, sorted by name. */
CM_API cm_status cm_manager_templates(cm_manager* manager, cm_template_list** out);
/* Every version of template `name`, oldest first: CM_NOT_FOUND for an unknown name. */
CM_API cm_status cm_manager_template_versions(cm_manager* manager, const char* name, cm_template_list** out);
/* One version (a list of one): `ref` is "name" (the latest) or "name:version". */
CM_API cm_status cm_manager_template(cm_manager* manager, const char* ref, cm_template_list** out);
CM_API size_t cm_template_list_size(const cm_template_list* list);
CM_API const cm_template* cm_template_list_at(const cm_template_list* list, size_t index);
CM_API void cm_template_list_free(cm_template_list* list);

/* Adds template `name` (or its next version) from a qcow2 or raw image file, which is copied
 * into the store. `spec_json`: the definition as JSON (docs/templates.md; memory_bytes is
 * required, the rest defaults to 1 vCPU, no data disk, no NIC); `format`: "qcow2", "raw" or
 * NULL (from the file's header). A bad field is CM_INVALID_ARGUMENT naming it. Returns the new
 * version (a list of one). */
CM_API cm_status cm_manager_import_template(cm_manager* manager, const char* name, const char* image_path,
                                            const char* spec_json, const char* format, cm_template_list** out);
/* Re-reads the base image and checks its SHA-256: CM_DATA_LOSS when it does not match. */
CM_API cm_status cm_manager_verify_template(cm_manager* manager, const char* ref);
/* Removes a version ("name:version") or every version ("name"). CM_FAILED_PRECONDITION, naming
 * them, while VMs on online hosts are clones of it, unless `force` is not 0. */
CM_API cm_status cm_manager_delete_template(cm_manager* manager, const char* ref, int force);
/* Makes the next version of template `name` from a shut-off VM (its first disk, flattened, and
 * its definition). CM_NOT_FOUND, CM_FAILED_PRECONDITION for a VM that is not shut off or has
 * no disk, CM_UNIMPLEMENTED where the host's driver cannot capture. Returns the new version (a list of one). */
CM_API cm_status cm_manager_capture_template(cm_manager* manager, const char* host_id, const char* vm, const char* name,
                                             uint32_t timeout_ms, cm_template_list** out);

/* ---- provisioning ------------------------------------------------------------------------- */

/* Called with one line per step of cm_manager_create_vms (placement, transfers, provisioning),
 * on the calling thread or a library thread; `step` is valid only during the call. */
typedef void (*cm_progress_callback)(const char* step, void* user_data);

typedef struct cm_create_result cm_create_result;

typedef struct cm_create_info {
  const cm_template* template_info; /* the version the VMs were made from */
  const cm_vm_list* vms;            /* the VMs made, in name order (read with cm_vm_list_*; do not free) */
  size_t image_sent_count;          /* hosts the base image was sent to (they lacked it) */
  const char* const* image_sent_to;
  uint64_t image_bytes_sent; /* data bytes sent to each of them */
  int64_t transfer_ns;       /* time spent sending the base image */
  int64_t provision_ns;      /* time spent cloning, defining (and starting) the VMs */
} cm_create_info;

/* Provisions VMs from a template, placed on hosts by a policy: all of them or none (a host
 * that fails has the VMs already made removed again). `options` are key-value pairs:
 *   name                   required: the VM's name; with count > 1 the VMs are <name>-1 ... <name>-<count>
 *   template               required: "name" (the latest) or "name:version"
 *   host | group           where to place them (at most one); neither: every online host
 *   policy                 "pack" (default: fill busy hosts first) or "spread"
 *   count                  1-1000 (default 1)
 *   start                  "true" / "false" (default): start them once defined
 *   cpu_overcommit         vCPUs per logical CPU, 0.1-64 (default 4)
 *   memory_overcommit      0.1-8 (default 1)
 *   memory_reserved_bytes  kept for each host itself (default 0)
 *   timeout_ms             the whole request, image transfers included (default 600000)
 * An unknown or repeated key, or a value that does not parse, is CM_INVALID_ARGUMENT naming it.
 * CM_RESOURCE_EXHAUSTED says why the batch does not fit; CM_NOT_FOUND for a missing template;
 * CM_ALREADY_EXISTS for a name taken on any host. `progress` may be NULL. */
CM_API cm_status cm_manager_create_vms(cm_manager* manager, const cm_arg* options, size_t option_count,
                                       cm_progress_callback progress, void* user_data, cm_create_result** out);
CM_API const cm_create_info* cm_create_result_info(const cm_create_result* result);
CM_API void cm_create_result_free(cm_create_result* result);

/* Removes a VM and the disks provisioned for it ("vm.delete"; a base image stays). `force` not
 * 0: destroys a running VM first. A result of one host. */
CM_API cm_status cm_manager_delete_vm(cm_manager* manager, const char* host_id, const char* vm, int force,
                                      uint32_t timeout_ms, cm_result** out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* CLOUDMGR_C_CLOUDMGR_H */
