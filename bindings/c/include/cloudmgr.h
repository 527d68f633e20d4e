/* cloudmgr.h: the C ABI of libcloudmgr (library cloudmgr-c, pkg-config cloudmgr-c).
 *
 * One C API every binding builds on (Python's cloudmgr package uses nothing else). It wraps
 * cloudmgr::Manager: the whole cloud seen through the DDS data space, commands to one host, a
 * group or every host with a result per host, and the hosts' monitoring samples.
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
  /* The reply's payload as JSON: {"processes": [...], "snapshots": [...], "vms": [...]}, each
   * key present only when the verb returns it (docs/commands.md); "{}" for none. */
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

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* CLOUDMGR_C_CLOUDMGR_H */
