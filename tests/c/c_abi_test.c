/* The C ABI (cloudmgr.h), compiled as C11, against real cloudmgr-agent processes on simulated
 * hosts (libvirt's test driver, tests/data/hosts/node-small.xml: db1 running, batch1 shut off).
 * Every function is called, and every error path the header documents is taken: NULL and freed
 * handles, NULL and non-UTF-8 strings, bad enum values, out-of-range indexes, use after close.
 *
 * usage: c_abi_test AGENT_BIN HOST_XML WORK_DIR   (DDS domain 193, loopback + shared memory)
 */
#define _POSIX_C_SOURCE 200809L
#include <cloudmgr.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                                               \
  do {                                                                                            \
    ++checks;                                                                                     \
    if (!(cond)) {                                                                                \
      ++failures;                                                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s %s)\n", __FILE__, __LINE__, #cond, \
              cm_status_name(cm_last_status()), cm_last_error());                                 \
    }                                                                                             \
  } while (0)

/* `call` returns `status` and the thread's last error names `text`. */
#define CHECK_FAILS(call, status, text)                                                                \
  do {                                                                                                 \
    cm_clear_error();                                                                                  \
    cm_status got_ = (call);                                                                           \
    ++checks;                                                                                          \
    if (got_ != (status) || cm_last_status() != (status) || strstr(cm_last_error(), (text)) == NULL) { \
      ++failures;                                                                                      \
      fprintf(stderr, "%s:%d: %s: got %s '%s', want %s naming '%s'\n", __FILE__, __LINE__, #call,      \
              cm_status_name(got_), cm_last_error(), cm_status_name(status), (text));                  \
    }                                                                                                  \
  } while (0)

/* The last error is `status` naming `text` (for calls that return a pointer or a size). */
#define CHECK_ERROR(status, text)                                                                 \
  do {                                                                                            \
    ++checks;                                                                                     \
    if (cm_last_status() != (status) || strstr(cm_last_error(), (text)) == NULL) {                \
      ++failures;                                                                                 \
      fprintf(stderr, "%s:%d: last error %s '%s', want %s naming '%s'\n", __FILE__, __LINE__,     \
              cm_status_name(cm_last_status()), cm_last_error(), cm_status_name(status), (text)); \
    }                                                                                             \
  } while (0)

enum { kDomain = 193, kTimeoutMs = 20000 };

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- agent processes ---- */

static pid_t start_agent(const char* bin, const char* xml, const char* work, const char* id, const char* group) {
  char state[512];
  char config[600];
  char log[600];
  char uri[600];
  char domain[16];
  snprintf(state, sizeof state, "%s/%s", work, id);
  mkdir(state, 0700);
  snprintf(config, sizeof config, "%s/agent.json", state);
  FILE* f = fopen(config, "w");
  if (f == NULL) {
    perror(config);
    exit(2);
  }
  fputs("{\"lease_ms\": 2000, \"announce_ms\": 500, \"refresh_ms\": 1000}\n", f);
  fclose(f);
  snprintf(log, sizeof log, "%s/agent.log", state);
  snprintf(uri, sizeof uri, "test://%s", xml);
  snprintf(domain, sizeof domain, "%d", kDomain);
  char* argv[] = {(char*)bin, "--config", config, "--host-id", (char*)id,    "--uri",       uri,   "--state-dir",
                  state,      "--domain", domain, "--group",   (char*)group, "--sample-ms", "200", NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, bin, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    fprintf(stderr, "cannot start %s: %s\n", bin, strerror(rc));
    exit(2);
  }
  return pid;
}

static void stop_agent(pid_t pid) {
  if (pid <= 0) {
    return;
  }
  kill(pid, SIGCONT);
  kill(pid, SIGTERM);
  for (int i = 0; i < 200; ++i) {
    if (waitpid(pid, NULL, WNOHANG) == pid) {
      return;
    }
    sleep_ms(50);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

/* ---- sample subscription ---- */

static atomic_int ticks;
static atomic_int bad_ticks;

static void on_sample(const cm_host_sample* sample, void* user_data) {
  if (user_data != (void*)&ticks || sample == NULL || sample->host_id[0] == '\0' ||
      (sample->vm_count > 0 && cm_host_sample_vm(sample, 0) == NULL)) {
    atomic_fetch_add(&bad_ticks, 1);
  }
  atomic_fetch_add(&ticks, 1);
}

/* ---- the parts ---- */

static void names_and_versions(void) {
  CHECK(strncmp(cm_version(), "0.", 2) == 0);
  CHECK(cm_abi_version() >= 1);
  CHECK(strcmp(cm_status_name(CM_OK), "OK") == 0);
  CHECK(strcmp(cm_status_name(CM_NOT_FOUND), "NOT_FOUND") == 0);
  CHECK(strcmp(cm_status_name(CM_UNAUTHENTICATED), "UNAUTHENTICATED") == 0);
  CHECK(strcmp(cm_status_name((cm_status)99), "INVALID_STATUS") == 0);
  CHECK(strcmp(cm_status_name((cm_status)-1), "INVALID_STATUS") == 0);
  CHECK(strcmp(cm_vm_state_name(CM_VM_SHUT_OFF), "shut-off") == 0);
  CHECK(strcmp(cm_vm_state_name((cm_vm_state)42), "invalid") == 0);
  CHECK(strcmp(cm_outcome_name(CM_OUTCOME_NO_REPLY), "no-reply") == 0);
  CHECK(strcmp(cm_outcome_name((cm_outcome)3), "invalid") == 0);
  CHECK(strcmp(cm_metric_name(CM_METRIC_NET_TX_BYTES_PER_S), "net_tx_bytes_per_s") == 0);
  CHECK(strcmp(cm_metric_name(CM_METRIC_COUNT), "invalid") == 0);
  cm_clear_error();
  CHECK(cm_last_status() == CM_OK && strcmp(cm_last_error(), "") == 0);
}

static void config_errors(void) {
  CHECK_FAILS(cm_config_new(NULL), CM_INVALID_ARGUMENT, "out is NULL");
  cm_config* c = NULL;
  CHECK(cm_config_new(&c) == CM_OK && c != NULL);
  CHECK_FAILS(cm_config_set(c, "colour", "blue"), CM_INVALID_ARGUMENT, "unknown key 'colour'");
  CHECK_FAILS(cm_config_set(c, "domain", "233"), CM_INVALID_ARGUMENT, "domain: '233'");
  CHECK_FAILS(cm_config_set(c, "domain", "7x"), CM_INVALID_ARGUMENT, "domain: '7x'");
  CHECK_FAILS(cm_config_set(c, "samples", "maybe"), CM_INVALID_ARGUMENT, "samples: 'maybe' is not true or false");
  CHECK_FAILS(cm_config_set(c, "transport", "carrier-pigeon"), CM_INVALID_ARGUMENT, "transport");
  CHECK_FAILS(cm_config_set(c, "star", "127.0.0.1,,"), CM_INVALID_ARGUMENT, "star");
  CHECK_FAILS(cm_config_set(c, "lease_ms", "0"), CM_INVALID_ARGUMENT, "lease_ms");
  CHECK_FAILS(cm_config_set(c, NULL, "1"), CM_INVALID_ARGUMENT, "key is NULL");
  CHECK_FAILS(cm_config_set(c, "domain", NULL), CM_INVALID_ARGUMENT, "value is NULL");
  CHECK_FAILS(cm_config_set(c, "name", "bad\xff"), CM_INVALID_ARGUMENT, "value is not UTF-8");
  CHECK_FAILS(cm_config_set(NULL, "domain", "1"), CM_INVALID_ARGUMENT, "config is NULL");
  /* A PKI directory that does not exist: refused before any participant, naming it. */
  CHECK(cm_config_set(c, "pki", "/nonexistent/pki") == CM_OK);
  cm_manager* m = NULL;
  cm_clear_error();
  CHECK(cm_manager_open(c, &m) != CM_OK && m == NULL);
  CHECK(strstr(cm_last_error(), "/nonexistent/pki") != NULL);
  CHECK_FAILS(cm_manager_open(NULL, &m), CM_INVALID_ARGUMENT, "config is NULL");
  CHECK_FAILS(cm_manager_open(c, NULL), CM_INVALID_ARGUMENT, "out is NULL");
  cm_config_free(c);
  /* Use after free: an error, never a crash (the handle is not dereferenced). */
  CHECK_FAILS(cm_config_set(c, "domain", "1"), CM_INVALID_ARGUMENT, "not a live cm_config");
  CHECK_FAILS(cm_manager_open(c, &m), CM_INVALID_ARGUMENT, "not a live cm_config");
  cm_clear_error();
  cm_config_free(c); /* a second free is reported, not a crash */
  CHECK_ERROR(CM_INVALID_ARGUMENT, "not a live cm_config");
  cm_config_free(NULL);
  /* A foreign pointer. */
  int not_a_handle = 0;
  CHECK_FAILS(cm_manager_wait_for_hosts((cm_manager*)&not_a_handle, 1, 10), CM_INVALID_ARGUMENT,
              "not a live cm_manager");
}

static cm_manager* open_manager(void) {
  cm_config* c = NULL;
  char domain[16];
  snprintf(domain, sizeof domain, "%d", kDomain);
  CHECK(cm_config_new(&c) == CM_OK);
  CHECK(cm_config_set(c, "domain", domain) == CM_OK);
  CHECK(cm_config_set(c, "name", "c-abi-test") == CM_OK);
  CHECK(cm_config_set(c, "lease_ms", "2000") == CM_OK);
  CHECK(cm_config_set(c, "samples", "true") == CM_OK);
  cm_manager* m = NULL;
  CHECK(cm_manager_open(c, &m) == CM_OK && m != NULL);
  cm_config_free(c); /* the manager does not need it any more */
  return m;
}

static void hosts_and_groups(cm_manager* m) {
  cm_host_list* hosts = NULL;
  CHECK(cm_manager_hosts(m, &hosts) == CM_OK);
  CHECK(cm_host_list_size(hosts) == 2);
  const cm_host* h0 = cm_host_list_at(hosts, 0);
  const cm_host* h1 = cm_host_list_at(hosts, 1);
  CHECK(h0 != NULL && h1 != NULL);
  if (h0 != NULL && h1 != NULL) {
    CHECK(strcmp(h0->id, "node1") == 0 && strcmp(h1->id, "node2") == 0);
    CHECK(h0->state == CM_HOST_ONLINE && h0->offline_since_ns == 0 && h0->last_seen_ns > 0);
    CHECK(h0->cpus == 8 && h0->cpu_mhz == 2400 && h0->memory_bytes == 16ULL << 30);
    CHECK(strcmp(h0->hypervisor, "TEST") == 0 && h0->agent_version[0] != '\0');
    CHECK(h0->vms_defined == 2 && h0->vms_active == 1 && h0->vcpus_allocated == 2);
    CHECK(h0->group_count == 2 && strcmp(h0->groups[0], "node1-only") == 0 && strcmp(h0->groups[1], "web") == 0);
  }
  cm_clear_error();
  CHECK(cm_host_list_at(hosts, 2) == NULL);
  CHECK_ERROR(CM_OUT_OF_RANGE, "index 2 is past the end (size 2)");
  cm_host_list_free(hosts);
  cm_clear_error();
  CHECK(cm_host_list_size(hosts) == 0);
  CHECK_ERROR(CM_INVALID_ARGUMENT, "not a live cm_host_list");
  CHECK(cm_host_list_at(NULL, 0) == NULL);
  CHECK_ERROR(CM_INVALID_ARGUMENT, "list is NULL");

  cm_host_list* one = NULL;
  CHECK(cm_manager_host(m, "node2", &one) == CM_OK && cm_host_list_size(one) == 1);
  CHECK(one != NULL && strcmp(cm_host_list_at(one, 0)->id, "node2") == 0);
  cm_host_list_free(one);
  one = NULL;
  CHECK_FAILS(cm_manager_host(m, "node9", &one), CM_NOT_FOUND, "node9");
  CHECK(one == NULL);
  CHECK_FAILS(cm_manager_host(m, NULL, &one), CM_INVALID_ARGUMENT, "id is NULL");
  CHECK_FAILS(cm_manager_hosts(m, NULL), CM_INVALID_ARGUMENT, "out is NULL");
  CHECK_FAILS(cm_manager_hosts(NULL, &hosts), CM_INVALID_ARGUMENT, "manager is NULL");

  CHECK_FAILS(cm_manager_forget_host(m, "node1"), CM_FAILED_PRECONDITION, "node1");
  CHECK_FAILS(cm_manager_forget_host(m, "node9"), CM_NOT_FOUND, "node9");
  CHECK_FAILS(cm_manager_forget_host(m, NULL), CM_INVALID_ARGUMENT, "id is NULL");

  cm_group_list* groups = NULL;
  CHECK(cm_manager_groups(m, &groups) == CM_OK);
  CHECK(cm_group_list_size(groups) == 3); /* node1-only, node2-only, web */
  const cm_group* web = cm_group_list_at(groups, 2);
  CHECK(web != NULL && strcmp(web->name, "web") == 0 && web->member_count == 2);
  if (web != NULL && web->member_count == 2) {
    CHECK(strcmp(web->members[0], "node1") == 0 && strcmp(web->members[1], "node2") == 0);
  }
  cm_clear_error();
  CHECK(cm_group_list_at(groups, 3) == NULL);
  CHECK_ERROR(CM_OUT_OF_RANGE, "index 3");
  cm_group_list_free(groups);
  CHECK_FAILS(cm_manager_groups(m, NULL), CM_INVALID_ARGUMENT, "out is NULL");
  cm_clear_error();
  CHECK(cm_group_list_size(NULL) == 0);
  CHECK_ERROR(CM_INVALID_ARGUMENT, "list is NULL");
}

static void vms(cm_manager* m) {
  cm_vm_list* all = NULL;
  CHECK(cm_manager_vms(m, NULL, NULL, &all) == CM_OK);
  CHECK(cm_vm_list_size(all) == 4);
  const cm_vm* v = cm_vm_list_at(all, 1); /* node1's db1 (sorted by host, then name) */
  CHECK(v != NULL);
  if (v != NULL) {
    CHECK(strcmp(v->host_id, "node1") == 0 && strcmp(v->name, "db1") == 0);
    CHECK(strcmp(v->uuid, "6b1f3c0e-2a4d-4c57-9a61-0d7a5e2b9c01") == 0);
    CHECK(v->state == CM_VM_RUNNING && v->vcpus == 2 && v->memory_bytes == 2ULL << 30);
    CHECK(strcmp(v->template_name, "") == 0 && v->template_version == 0);
    CHECK(strstr(v->json, "\"name\":\"db1\"") != NULL && strstr(v->json, "\"disks\"") != NULL);
    CHECK(strstr(v->json, "\"host\":\"node1\"") != NULL);
  }
  const cm_vm* b = cm_vm_list_at(all, 0);
  CHECK(b != NULL && strcmp(b->name, "batch1") == 0 && b->state == CM_VM_SHUT_OFF);
  cm_clear_error();
  CHECK(cm_vm_list_at(all, 4) == NULL);
  CHECK_ERROR(CM_OUT_OF_RANGE, "index 4");
  cm_vm_list_free(all);

  cm_vm_list* some = NULL;
  CHECK(cm_manager_vms(m, "node2", NULL, &some) == CM_OK && cm_vm_list_size(some) == 2);
  cm_vm_list_free(some);
  CHECK(cm_manager_vms(m, NULL, "node1-only", &some) == CM_OK && cm_vm_list_size(some) == 2);
  CHECK(some != NULL && strcmp(cm_vm_list_at(some, 0)->host_id, "node1") == 0);
  cm_vm_list_free(some);
  CHECK(cm_manager_vms(m, "node2", "node1-only", &some) == CM_OK && cm_vm_list_size(some) == 0);
  cm_vm_list_free(some);
  CHECK_FAILS(cm_manager_vms(m, "node\x80", NULL, &some), CM_INVALID_ARGUMENT, "host_id is not UTF-8");
  CHECK_FAILS(cm_manager_vms(m, NULL, NULL, NULL), CM_INVALID_ARGUMENT, "out is NULL");
}

static int vm_state_is(cm_manager* m, const char* host, const char* name, cm_vm_state state) {
  cm_vm_list* l = NULL;
  int found = 0;
  if (cm_manager_vms(m, host, NULL, &l) == CM_OK) {
    for (size_t i = 0; i < cm_vm_list_size(l); ++i) {
      const cm_vm* v = cm_vm_list_at(l, i);
      found |= strcmp(v->name, name) == 0 && v->state == state;
    }
  }
  cm_vm_list_free(l);
  return found;
}

static void commands(cm_manager* m, pid_t node2) {
  cm_result* r = NULL;
  /* host.info to the group: one OK result per member, sorted. */
  CHECK(cm_manager_execute(m, CM_TARGET_GROUP, "web", "host.info", NULL, 0, kTimeoutMs, &r) == CM_OK);
  CHECK(cm_result_size(r) == 2 && cm_result_count(r, CM_OUTCOME_OK) == 2);
  CHECK(strlen(cm_result_command_id(r)) == 36);
  const cm_host_result* h = cm_result_at(r, 0);
  CHECK(h != NULL && strcmp(h->host_id, "node1") == 0 && h->outcome == CM_OUTCOME_OK && h->code == CM_OK);
  CHECK(h != NULL && strcmp(h->message, "") == 0 && h->latency_ns > 0 && strcmp(h->reply_json, "{}") == 0);
  cm_clear_error();
  CHECK(cm_result_at(r, 2) == NULL);
  CHECK_ERROR(CM_OUT_OF_RANGE, "index 2");
  cm_clear_error();
  CHECK(cm_result_count(r, (cm_outcome)9) == 0);
  CHECK_ERROR(CM_INVALID_ARGUMENT, "outcome 9");
  cm_result_free(r);

  /* A verb with arguments that changes state: vm.suspend on node1's db1 only. */
  cm_arg suspend[] = {{"vm", "db1"}};
  CHECK(cm_manager_execute(m, CM_TARGET_HOST, "node1", "vm.suspend", suspend, 1, kTimeoutMs, &r) == CM_OK);
  CHECK(cm_result_size(r) == 1 && cm_result_count(r, CM_OUTCOME_OK) == 1);
  cm_result_free(r);
  double until = now_s() + 10;
  while (!vm_state_is(m, "node1", "db1", CM_VM_PAUSED) && now_s() < until) {
    sleep_ms(50);
  }
  CHECK(vm_state_is(m, "node1", "db1", CM_VM_PAUSED));
  CHECK(vm_state_is(m, "node2", "db1", CM_VM_RUNNING));
  CHECK(cm_manager_execute(m, CM_TARGET_HOST, "node1", "vm.resume", suspend, 1, kTimeoutMs, &r) == CM_OK);
  CHECK(cm_result_count(r, CM_OUTCOME_OK) == 1);
  cm_result_free(r);

  /* A host's error: outcome ERROR with the host's code and message. */
  cm_arg nosuch[] = {{"vm", "nosuch"}};
  CHECK(cm_manager_execute(m, CM_TARGET_ALL, NULL, "vm.start", nosuch, 1, kTimeoutMs, &r) == CM_OK);
  CHECK(cm_result_size(r) == 2 && cm_result_count(r, CM_OUTCOME_ERROR) == 2);
  h = cm_result_at(r, 1);
  CHECK(h != NULL && h->outcome == CM_OUTCOME_ERROR && h->code == CM_NOT_FOUND && strstr(h->message, "nosuch"));
  cm_result_free(r);

  /* A payload: host.ps returns processes as JSON. */
  CHECK(cm_manager_execute(m, CM_TARGET_HOST, "node2", "host.ps", NULL, 0, kTimeoutMs, &r) == CM_OK);
  h = cm_result_at(r, 0);
  CHECK(h != NULL && h->outcome == CM_OUTCOME_OK && strstr(h->reply_json, "\"processes\":[") != NULL);
  cm_result_free(r);

  /* No reply: node2's agent is stopped (SIGSTOP) for a command with a 1 s deadline, shorter than
   * its 2 s lease, so it is still online and expected. */
  kill(node2, SIGSTOP);
  CHECK(cm_manager_execute(m, CM_TARGET_GROUP, "web", "host.info", NULL, 0, 1000, &r) == CM_OK);
  kill(node2, SIGCONT);
  CHECK(cm_result_size(r) == 2 && cm_result_count(r, CM_OUTCOME_OK) == 1 &&
        cm_result_count(r, CM_OUTCOME_NO_REPLY) == 1);
  h = cm_result_at(r, 1);
  CHECK(h != NULL && strcmp(h->host_id, "node2") == 0 && h->outcome == CM_OUTCOME_NO_REPLY &&
        h->code == CM_DEADLINE_EXCEEDED && h->latency_ns == 0);
  cm_result_free(r);

  /* Refused before sending: nothing is sent, no result. */
  r = NULL;
  CHECK_FAILS(cm_manager_execute(m, CM_TARGET_HOST, "node9", "host.info", NULL, 0, 1000, &r), CM_NOT_FOUND, "node9");
  CHECK(r == NULL);
  CHECK_FAILS(cm_manager_execute(m, CM_TARGET_GROUP, "web", "vm.fly", NULL, 0, 1000, &r), CM_INVALID_ARGUMENT,
              "vm.fly");
  CHECK_FAILS(cm_manager_execute(m, CM_TARGET_HOST, "node1", "vm.start", NULL, 0, 1000, &r), CM_INVALID_ARGUMENT, "vm");
  CHECK_FAILS(cm_manager_execute(m, (cm_target_kind)7, "web", "host.info", NULL, 0, 1000, &r), CM_INVALID_ARGUMENT,
              "kind 7 is not a cm_target_kind");
  CHECK_FAILS(cm_manager_execute(m, CM_TARGET_ALL, "web", "host.info", NULL, 0, 1000, &r), CM_INVALID_ARGUMENT,
              "CM_TARGET_ALL");
  CHECK_FAILS(cm_manager_execute(m, CM_TARGET_GROUP, NULL, "host.info", NULL, 0, 1000, &r), CM_INVALID_ARGUMENT,
              "name is NULL");
  CHECK_FAILS(cm_manager_execute(m, CM_TARGET_GROUP, "", "host.info", NULL, 0, 1000, &r), CM_INVALID_ARGUMENT,
              "name is empty");
  CHECK_FAILS(cm_manager_execute(m, CM_TARGET_GROUP, "web", NULL, NULL, 0, 1000, &r), CM_INVALID_ARGUMENT,
              "verb is NULL");
  CHECK_FAILS(cm_manager_execute(m, CM_TARGET_GROUP, "web", "host.info", NULL, 1, 1000, &r), CM_INVALID_ARGUMENT,
              "arguments is NULL");
  cm_arg bad[] = {{"vm", NULL}};
  CHECK_FAILS(cm_manager_execute(m, CM_TARGET_GROUP, "web", "vm.start", bad, 1, 1000, &r), CM_INVALID_ARGUMENT,
              "arguments[0].value is NULL");
  CHECK_FAILS(cm_manager_execute(m, CM_TARGET_GROUP, "web", "host.info", NULL, 0, 1000, NULL), CM_INVALID_ARGUMENT,
              "out is NULL");
  cm_clear_error();
  CHECK(cm_result_command_id(NULL) == NULL);
  CHECK_ERROR(CM_INVALID_ARGUMENT, "result is NULL");
}

static void monitoring(cm_manager* m) {
  /* The latest tick of both hosts (agents sample every 200 ms). */
  cm_sample_list* s = NULL;
  double until = now_s() + 10;
  size_t n = 0;
  while (now_s() < until) {
    s = NULL;
    CHECK(cm_manager_samples(m, &s) == CM_OK);
    n = cm_sample_list_size(s);
    if (n == 2 && cm_sample_list_at(s, 0)->rates_valid && cm_sample_list_at(s, 1)->rates_valid) {
      break;
    }
    cm_sample_list_free(s);
    s = NULL;
    sleep_ms(100);
  }
  CHECK(s != NULL && n == 2);
  if (s != NULL) {
    const cm_host_sample* h = cm_sample_list_at(s, 0);
    CHECK(strcmp(h->host_id, "node1") == 0 && h->simulated == 1 && h->cpus == 8 && h->taken_ns > 0);
    CHECK(h->interval_ns > 0 && h->cpu_pct >= 0 && h->cpu_pct <= 100 && h->memory_bytes == 16ULL << 30);
    CHECK(h->vm_count == 1); /* only active VMs have counters: db1 */
    const cm_vm_sample* v = cm_host_sample_vm(h, 0);
    CHECK(v != NULL && strcmp(v->name, "db1") == 0 && v->vcpus == 2 && v->cpu_pct >= 0);
    cm_clear_error();
    CHECK(cm_host_sample_vm(h, 1) == NULL);
    CHECK_ERROR(CM_OUT_OF_RANGE, "index 1 is past vm_count 1");
    cm_sample_list_free(s);
    cm_clear_error();
    CHECK(cm_host_sample_vm(h, 0) == NULL); /* its list is gone */
    CHECK_ERROR(CM_INVALID_ARGUMENT, "not a live cm_host_sample");
  }
  cm_host_sample fake;
  memset(&fake, 0, sizeof fake);
  cm_clear_error();
  CHECK(cm_host_sample_vm(&fake, 0) == NULL);
  CHECK_ERROR(CM_INVALID_ARGUMENT, "not a live cm_host_sample");

  /* A subscription gets ticks until it is freed, then none. */
  cm_subscription* sub = NULL;
  atomic_store(&ticks, 0);
  CHECK(cm_manager_subscribe_samples(m, on_sample, &ticks, &sub) == CM_OK && sub != NULL);
  until = now_s() + 10;
  while (atomic_load(&ticks) < 4 && now_s() < until) {
    sleep_ms(50);
  }
  CHECK(atomic_load(&ticks) >= 4);
  cm_subscription_free(sub);
  int after = atomic_load(&ticks);
  sleep_ms(600);
  CHECK(atomic_load(&ticks) == after);
  CHECK(atomic_load(&bad_ticks) == 0);
  cm_subscription_free(NULL);
  CHECK_FAILS(cm_manager_subscribe_samples(m, NULL, NULL, &sub), CM_INVALID_ARGUMENT, "callback is NULL");
  CHECK_FAILS(cm_manager_subscribe_samples(m, on_sample, NULL, NULL), CM_INVALID_ARGUMENT, "out is NULL");

  /* History from both hosts: the raw ticks of the last minute, one series per host. */
  cm_history* hist = NULL;
  CHECK(cm_manager_history(m, CM_TARGET_ALL, NULL, NULL, 0, 0, 0, kTimeoutMs, &hist) == CM_OK);
  CHECK(cm_history_size(hist) == 2);
  const cm_result* hr = cm_history_result(hist);
  CHECK(hr != NULL && cm_result_size(hr) == 2 && cm_result_count(hr, CM_OUTCOME_OK) == 2);
  const cm_history_series* series = cm_history_at(hist, 1);
  CHECK(series != NULL && strcmp(series->host_id, "node2") == 0 && strcmp(series->vm_uuid, "") == 0);
  CHECK(series != NULL && series->point_count >= 2 && series->simulated == 1 && series->step_ns == 0);
  if (series != NULL && series->point_count >= 2) {
    const cm_history_point* p0 = cm_history_series_point(series, 0);
    const cm_history_point* p1 = cm_history_series_point(series, 1);
    CHECK(p0 != NULL && p1 != NULL && p0->start_ns < p1->start_ns && p0->samples >= 1);
    CHECK(p0 != NULL && p0->min[CM_METRIC_CPU_PCT] <= p0->avg[CM_METRIC_CPU_PCT] &&
          p0->avg[CM_METRIC_CPU_PCT] <= p0->max[CM_METRIC_CPU_PCT]);
    cm_clear_error();
    CHECK(cm_history_series_point(series, series->point_count) == NULL);
    CHECK_ERROR(CM_OUT_OF_RANGE, "past point_count");
  }
  cm_clear_error();
  cm_result_free((cm_result*)hr); /* borrowed: refused, not freed */
  CHECK_ERROR(CM_INVALID_ARGUMENT, "belongs to another object");
  CHECK(cm_result_size(hr) == 2);
  cm_history_free(hist);
  cm_clear_error();
  CHECK(cm_result_size(hr) == 0);
  CHECK_ERROR(CM_INVALID_ARGUMENT, "not a live cm_result");

  /* One VM's history on one host, in 1 s buckets. */
  /* Since 5 minutes ago: well inside the raw window (at its edge, an hour ago, the store falls
   * back to the 1-minute rollups). */
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  const int64_t since = ((int64_t)wall.tv_sec - 300) * 1000000000LL;
  CHECK(cm_manager_history(m, CM_TARGET_HOST, "node1", "db1", since, 0, 1000000000LL, kTimeoutMs, &hist) == CM_OK);
  CHECK(cm_history_size(hist) == 1);
  series = cm_history_at(hist, 0);
  CHECK(series != NULL && strcmp(series->vm_name, "db1") == 0 && series->point_count >= 1);
  CHECK(series != NULL && series->step_ns == 1000000000LL);
  if (series != NULL && series->point_count >= 1) {
    const cm_history_point* p = cm_history_series_point(series, 0);
    CHECK(p != NULL && p->start_ns % 1000000000LL == 0 && p->samples >= 1 && p->samples <= 5);
  }
  cm_history_free(hist);
  hist = NULL;
  CHECK_FAILS(cm_manager_history(m, CM_TARGET_HOST, "node9", NULL, 0, 0, 0, 1000, &hist), CM_NOT_FOUND, "node9");
  CHECK_FAILS(cm_manager_history(m, CM_TARGET_ALL, NULL, NULL, 0, 0, -5, 1000, &hist), CM_INVALID_ARGUMENT, "step");
  CHECK(hist == NULL);
  cm_clear_error();
  CHECK(cm_history_size(NULL) == 0);
  CHECK_ERROR(CM_INVALID_ARGUMENT, "history is NULL");
}

static void close_and_free(cm_manager* m) {
  CHECK(cm_manager_close(m) == CM_OK);
  CHECK(cm_manager_close(m) == CM_OK);
  cm_host_list* hosts = NULL;
  CHECK_FAILS(cm_manager_hosts(m, &hosts), CM_FAILED_PRECONDITION, "manager is closed");
  CHECK_FAILS(cm_manager_wait_for_hosts(m, 1, 10), CM_FAILED_PRECONDITION, "manager is closed");
  cm_result* r = NULL;
  CHECK_FAILS(cm_manager_execute(m, CM_TARGET_ALL, NULL, "host.info", NULL, 0, 1000, &r), CM_FAILED_PRECONDITION,
              "manager is closed");
  cm_manager_free(m);
  CHECK_FAILS(cm_manager_hosts(m, &hosts), CM_INVALID_ARGUMENT, "not a live cm_manager");
  CHECK_FAILS(cm_manager_close(m), CM_INVALID_ARGUMENT, "not a live cm_manager");
  cm_manager_free(NULL);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s AGENT_BIN HOST_XML WORK_DIR\n", argv[0]);
    return 2;
  }
  const char* bin = argv[1];
  const char* xml = argv[2];
  const char* work = argv[3];
  mkdir(work, 0700);

  names_and_versions();
  config_errors();

  pid_t node1 = start_agent(bin, xml, work, "node1", "web");
  pid_t node2 = start_agent(bin, xml, work, "node2", "web");
  /* A second group each, named after the host, to test groups and filters: group.join. */
  cm_manager* m = open_manager();
  CHECK(cm_manager_wait_for_hosts(m, 2, kTimeoutMs) == CM_OK);
  cm_result* r = NULL;
  cm_arg g1[] = {{"group", "node1-only"}};
  cm_arg g2[] = {{"group", "node2-only"}};
  CHECK(cm_manager_execute(m, CM_TARGET_HOST, "node1", "group.join", g1, 1, kTimeoutMs, &r) == CM_OK);
  CHECK(cm_result_count(r, CM_OUTCOME_OK) == 1);
  cm_result_free(r);
  CHECK(cm_manager_execute(m, CM_TARGET_HOST, "node2", "group.join", g2, 1, kTimeoutMs, &r) == CM_OK);
  CHECK(cm_result_count(r, CM_OUTCOME_OK) == 1);
  cm_result_free(r);
  double until = now_s() + 10;
  for (;;) {
    cm_group_list* g = NULL;
    size_t n = cm_manager_groups(m, &g) == CM_OK ? cm_group_list_size(g) : 0;
    cm_group_list_free(g);
    if (n == 3 || now_s() > until) {
      break;
    }
    sleep_ms(50);
  }

  hosts_and_groups(m);
  vms(m);
  commands(m, node2);
  monitoring(m);
  close_and_free(m);

  stop_agent(node1);
  stop_agent(node2);
  printf("c_abi_test: %d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
