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
#include <pthread.h>
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
  /* A run that aborts (ASan's abort_on_error) cannot stop its agents: the next run's clean
     step (tests/c/c-abi-clean) stops them by this pid. */
  char pid_file[600];
  snprintf(pid_file, sizeof pid_file, "%s/agent.pid", state);
  FILE* pf = fopen(pid_file, "w");
  if (pf != NULL) {
    fprintf(pf, "%d\n", (int)pid);
    fclose(pf);
  }
  return pid;
}

/* Whether process `pid` is stopped: kill(SIGSTOP) returns before the stop takes effect. */
static int is_stopped(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE* f = fopen(path, "r");
  if (f == NULL) {
    return 0;
  }
  char buf[512];
  const size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char* paren = strrchr(buf, ')'); /* "pid (comm) S ..." */
  return paren != NULL && paren[1] == ' ' && (paren[2] == 'T' || paren[2] == 't');
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
  CHECK(cm_abi_version() == 3);
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

static const char* g_work = NULL;

static cm_manager* open_manager(void) {
  cm_config* c = NULL;
  char store[600];
  snprintf(store, sizeof store, "%s/templates", g_work);
  char domain[16];
  snprintf(domain, sizeof domain, "%d", kDomain);
  CHECK(cm_config_new(&c) == CM_OK);
  CHECK(cm_config_set(c, "domain", domain) == CM_OK);
  CHECK(cm_config_set(c, "name", "c-abi-test") == CM_OK);
  CHECK(cm_config_set(c, "lease_ms", "2000") == CM_OK);
  CHECK(cm_config_set(c, "samples", "true") == CM_OK);
  CHECK(cm_config_set(c, "templates", store) == CM_OK);
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
  CHECK(cm_manager_prepare(m, CM_TARGET_ALL, NULL) == CM_OK);
  CHECK(cm_manager_prepare(m, CM_TARGET_GROUP, "web") == CM_OK);
  CHECK(cm_manager_prepare(m, CM_TARGET_GROUP, "not-yet") == CM_OK); /* may appear later */
  CHECK_FAILS(cm_manager_prepare(m, CM_TARGET_GROUP, "bad group!"), CM_INVALID_ARGUMENT, "bad group!");
  CHECK_FAILS(cm_manager_prepare(m, (cm_target_kind)7, "web"), CM_INVALID_ARGUMENT, "kind");
  CHECK_FAILS(cm_manager_prepare(NULL, CM_TARGET_ALL, NULL), CM_INVALID_ARGUMENT, "manager");

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
  for (int i = 0; i < 200 && !is_stopped(node2); ++i) {
    sleep_ms(5);
  }
  CHECK(is_stopped(node2));
  CHECK(cm_manager_execute(m, CM_TARGET_GROUP, "web", "host.info", NULL, 0, 1000, &r) == CM_OK);
  kill(node2, SIGCONT);
  CHECK(cm_result_size(r) == 2 && cm_result_count(r, CM_OUTCOME_OK) == 1 &&
        cm_result_count(r, CM_OUTCOME_NO_REPLY) == 1);
  for (size_t i = 0; i < cm_result_size(r); ++i) {
    if (cm_result_count(r, CM_OUTCOME_NO_REPLY) != 1) {
      fprintf(stderr, "  host %s: outcome %d code %d '%s'\n", cm_result_at(r, i)->host_id,
              (int)cm_result_at(r, i)->outcome, (int)cm_result_at(r, i)->code, cm_result_at(r, i)->message);
    }
  }
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

  /* History from both hosts: the raw ticks since 5 minutes ago, one series per host. (Well
   * inside the raw window: at its edge, an hour ago, which since 0 asks for, the store falls
   * back to the 1-minute rollups when the raw ticks of that hour are not all there.) */
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  const int64_t since = ((int64_t)wall.tv_sec - 300) * 1000000000LL;
  cm_history* hist = NULL;
  CHECK(cm_manager_history(m, CM_TARGET_ALL, NULL, NULL, since, 0, 0, kTimeoutMs, &hist) == CM_OK);
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

/* ---- events ---- */

enum { kMaxEvents = 256 };
typedef struct {
  cm_event_kind kind;
  char host[64];
  char vm[64];
  cm_vm_state old_state;
  cm_vm_state state;
  char reason[64];
  size_t groups;
} seen_event;

static pthread_mutex_t g_events_mu = PTHREAD_MUTEX_INITIALIZER;
static seen_event g_events[kMaxEvents];
static int g_event_count = 0;
static atomic_int g_event_calls_ok;
static atomic_int g_event_bad;
static cm_manager* g_event_manager = NULL;

static void on_event(const cm_event* e, void* user_data) {
  if (user_data != (void*)&g_events || e == NULL) {
    atomic_fetch_add(&g_event_bad, 1);
    return;
  }
  /* A callback may call the manager. */
  cm_host_list* hosts = NULL;
  if (g_event_manager != NULL && cm_manager_hosts(g_event_manager, &hosts) == CM_OK) {
    atomic_fetch_add(&g_event_calls_ok, 1);
  }
  cm_host_list_free(hosts);
  pthread_mutex_lock(&g_events_mu);
  if (g_event_count < kMaxEvents) {
    seen_event* s = &g_events[g_event_count++];
    s->kind = e->kind;
    snprintf(s->host, sizeof s->host, "%s", e->host_id);
    snprintf(s->vm, sizeof s->vm, "%s", e->vm_name);
    s->old_state = e->old_state;
    s->state = e->state;
    snprintf(s->reason, sizeof s->reason, "%s", e->reason);
    s->groups = e->group_count;
    if (e->group_count > 0 && (e->groups == NULL || e->groups[0] == NULL)) {
      atomic_fetch_add(&g_event_bad, 1);
    }
  }
  pthread_mutex_unlock(&g_events_mu);
}

/* The position of the first event at or after `from` with this kind, host and VM ("" = any),
 * waiting up to 10 s; -1 if none came. */
static int find_event(int from, cm_event_kind kind, const char* host, const char* vm) {
  double until = now_s() + 10;
  for (;;) {
    pthread_mutex_lock(&g_events_mu);
    int found = -1;
    for (int i = from; i < g_event_count && found < 0; ++i) {
      if (g_events[i].kind == kind && strcmp(g_events[i].host, host) == 0 &&
          (vm[0] == '\0' || strcmp(g_events[i].vm, vm) == 0)) {
        found = i;
      }
    }
    pthread_mutex_unlock(&g_events_mu);
    if (found >= 0 || now_s() > until) {
      return found;
    }
    sleep_ms(20);
  }
}

static int event_count(void) {
  pthread_mutex_lock(&g_events_mu);
  int n = g_event_count;
  pthread_mutex_unlock(&g_events_mu);
  return n;
}

static void events(cm_manager* m) {
  CHECK(strcmp(cm_event_kind_name(CM_EVENT_VM_STATE_CHANGED), "vm-state-changed") == 0);
  CHECK(strcmp(cm_event_kind_name((cm_event_kind)8), "invalid") == 0);
  g_event_manager = m;
  cm_subscription* sub = NULL;
  CHECK(cm_manager_subscribe_events(m, CM_EVENTS_REPLAY, 0, on_event, (void*)&g_events, &sub) == CM_OK && sub != NULL);
  /* The replay: both hosts, each followed by its two VMs. */
  int n1 = find_event(0, CM_EVENT_HOST_ONLINE, "node1", "");
  int n2 = find_event(0, CM_EVENT_HOST_ONLINE, "node2", "");
  CHECK(n1 == 0 && n2 == 3);
  CHECK(find_event(0, CM_EVENT_VM_ADDED, "node1", "db1") == 2);
  CHECK(find_event(0, CM_EVENT_VM_ADDED, "node2", "batch1") == 4);
  if (n1 == 0) {
    CHECK(g_events[0].groups == 2); /* node1-only, web */
  }
  /* A change: db1 on node2 is paused. */
  const int before = event_count();
  cm_result* r = NULL;
  cm_arg db1[] = {{"vm", "db1"}};
  CHECK(cm_manager_execute(m, CM_TARGET_HOST, "node2", "vm.suspend", db1, 1, kTimeoutMs, &r) == CM_OK);
  cm_result_free(r);
  int c = find_event(before, CM_EVENT_VM_STATE_CHANGED, "node2", "db1");
  CHECK(c >= before);
  if (c >= 0) {
    CHECK(g_events[c].old_state == CM_VM_RUNNING && g_events[c].state == CM_VM_PAUSED);
  }
  CHECK(cm_manager_execute(m, CM_TARGET_HOST, "node2", "vm.resume", db1, 1, kTimeoutMs, &r) == CM_OK);
  cm_result_free(r);
  CHECK(find_event(c + 1, CM_EVENT_VM_STATE_CHANGED, "node2", "db1") > c);
  CHECK(atomic_load(&g_event_calls_ok) == event_count());
  CHECK(atomic_load(&g_event_bad) == 0);
  /* Freed: no more events. */
  cm_subscription_free(sub);
  const int after = event_count();
  CHECK(cm_manager_execute(m, CM_TARGET_HOST, "node2", "vm.suspend", db1, 1, kTimeoutMs, &r) == CM_OK);
  cm_result_free(r);
  CHECK(cm_manager_execute(m, CM_TARGET_HOST, "node2", "vm.resume", db1, 1, kTimeoutMs, &r) == CM_OK);
  cm_result_free(r);
  sleep_ms(500);
  CHECK(event_count() == after);
  g_event_manager = NULL;
  /* Errors. */
  sub = NULL;
  CHECK_FAILS(cm_manager_subscribe_events(m, 0, 0, NULL, NULL, &sub), CM_INVALID_ARGUMENT, "callback is NULL");
  CHECK_FAILS(cm_manager_subscribe_events(m, 6, 0, on_event, NULL, &sub), CM_INVALID_ARGUMENT, "unknown flags 6");
  CHECK_FAILS(cm_manager_subscribe_events(m, 0, 0, on_event, NULL, NULL), CM_INVALID_ARGUMENT, "out is NULL");
  CHECK(sub == NULL);
}

/* ---- templates and provisioning ---- */

static atomic_int g_steps;
static void on_step(const char* step, void* user_data) {
  if (user_data == (void*)&g_steps && step != NULL && step[0] != '\0') {
    atomic_fetch_add(&g_steps, 1);
  }
}

static void templates(cm_manager* m) {
  /* A 4 MiB raw base image. */
  char image[600];
  snprintf(image, sizeof image, "%s/tiny.img", g_work);
  FILE* f = fopen(image, "w");
  CHECK(f != NULL);
  if (f != NULL) {
    static char block[4096];
    memset(block, 0x5a, sizeof block);
    for (int i = 0; i < 1024; ++i) {
      fwrite(block, 1, sizeof block, f);
    }
    fclose(f);
  }
  cm_template_list* t = NULL;
  const char* spec = "{\"vcpus\": 1, \"memory_bytes\": 67108864, \"description\": \"tiny\"}";
  CHECK(cm_manager_import_template(m, "tiny", image, spec, "raw", &t) == CM_OK && cm_template_list_size(t) == 1);
  const cm_template* tt = cm_template_list_at(t, 0);
  CHECK(tt != NULL);
  if (tt != NULL) {
    CHECK(strcmp(tt->name, "tiny") == 0 && tt->version == 1 && strcmp(tt->ref, "tiny:1") == 0);
    CHECK(tt->vcpus == 1 && tt->memory_bytes == 64ULL << 20 && strcmp(tt->description, "tiny") == 0);
    CHECK(strlen(tt->image_sha256) == 64 && strcmp(tt->image_format, "raw") == 0);
    CHECK(tt->image_size_bytes == 4ULL << 20 && tt->image_virtual_size_bytes == 4ULL << 20 && tt->created_ns > 0);
    CHECK(strstr(tt->origin, "tiny.img") != NULL && strstr(tt->spec_json, "\"vcpus\":1") != NULL);
    CHECK(strstr(tt->json, "\"name\":\"tiny\"") != NULL);
  }
  cm_template_list_free(t);
  /* A second version; lists. */
  const char* spec2 = "{\"vcpus\": 2, \"memory_bytes\": 134217728}";
  CHECK(cm_manager_import_template(m, "tiny", image, spec2, NULL, &t) == CM_OK);
  CHECK(t != NULL && cm_template_list_at(t, 0)->version == 2 &&
        cm_template_list_at(t, 0)->memory_bytes == 128ULL << 20);
  cm_template_list_free(t);
  CHECK(cm_manager_templates(m, &t) == CM_OK && cm_template_list_size(t) == 1);
  CHECK(t != NULL && cm_template_list_at(t, 0)->version == 2);
  cm_template_list_free(t);
  CHECK(cm_manager_template_versions(m, "tiny", &t) == CM_OK && cm_template_list_size(t) == 2);
  cm_template_list_free(t);
  CHECK(cm_manager_template(m, "tiny:1", &t) == CM_OK && cm_template_list_size(t) == 1);
  CHECK(t != NULL && cm_template_list_at(t, 0)->version == 1);
  cm_clear_error();
  CHECK(cm_template_list_at(t, 1) == NULL);
  CHECK_ERROR(CM_OUT_OF_RANGE, "index 1");
  cm_template_list_free(t);
  CHECK(cm_manager_verify_template(m, "tiny:1") == CM_OK);
  CHECK(cm_manager_delete_template(m, "tiny:2", 0) == CM_OK);
  t = NULL;
  CHECK_FAILS(cm_manager_template(m, "tiny:2", &t), CM_NOT_FOUND, "tiny:2");
  CHECK_FAILS(cm_manager_template(m, "tiny:x", &t), CM_INVALID_ARGUMENT, "tiny:x");
  CHECK_FAILS(cm_manager_template_versions(m, "nosuch", &t), CM_NOT_FOUND, "nosuch");
  CHECK_FAILS(cm_manager_import_template(m, "bad", image, "{\"vcpus\": 0}", NULL, &t), CM_INVALID_ARGUMENT,
              "spec_json: vcpus");
  CHECK_FAILS(cm_manager_import_template(m, "bad", image, "{\"cpus\": 1}", NULL, &t), CM_INVALID_ARGUMENT, "cpus");
  CHECK_FAILS(cm_manager_import_template(m, "bad", image, spec, "vmdk", &t), CM_INVALID_ARGUMENT, "format: ");
  CHECK_FAILS(cm_manager_import_template(m, "bad", "/nonexistent/x.img", spec, NULL, &t), CM_NOT_FOUND,
              "/nonexistent/x.img");
  CHECK_FAILS(cm_manager_import_template(m, "bad name", image, spec, NULL, &t), CM_INVALID_ARGUMENT, "bad name");
  CHECK_FAILS(cm_manager_import_template(m, "bad", NULL, spec, NULL, &t), CM_INVALID_ARGUMENT, "image_path is NULL");
  CHECK_FAILS(cm_manager_import_template(m, "bad", image, NULL, NULL, &t), CM_INVALID_ARGUMENT, "spec_json is NULL");
  CHECK_FAILS(cm_manager_import_template(m, "bad", image, "{\"vcpus\": 1}", NULL, &t), CM_INVALID_ARGUMENT,
              "memory_bytes");
  CHECK_FAILS(cm_manager_delete_template(m, "nosuch", 0), CM_NOT_FOUND, "nosuch");
  CHECK_FAILS(cm_manager_verify_template(m, NULL), CM_INVALID_ARGUMENT, "ref is NULL");
  CHECK_FAILS(cm_manager_capture_template(m, "node1", "batch1", "cap", kTimeoutMs, &t), CM_FAILED_PRECONDITION,
              "no disk to capture");
  CHECK(t == NULL);

  /* Two VMs on node1, started. */
  cm_create_result* cr = NULL;
  cm_arg opts[] = {{"name", "cvm"}, {"template", "tiny"}, {"host", "node1"}, {"count", "2"}, {"start", "true"}};
  atomic_store(&g_steps, 0);
  CHECK(cm_manager_create_vms(m, opts, 5, on_step, (void*)&g_steps, &cr) == CM_OK && cr != NULL);
  CHECK(atomic_load(&g_steps) >= 2);
  const cm_create_info* ci = cm_create_result_info(cr);
  CHECK(ci != NULL);
  if (ci != NULL) {
    CHECK(strcmp(ci->template_info->ref, "tiny:1") == 0);
    CHECK(cm_vm_list_size(ci->vms) == 2);
    const cm_vm* v0 = cm_vm_list_at(ci->vms, 0);
    CHECK(v0 != NULL && strcmp(v0->name, "cvm-1") == 0 && strcmp(v0->host_id, "node1") == 0);
    CHECK(v0 != NULL && v0->state == CM_VM_RUNNING && strcmp(v0->template_name, "tiny") == 0 &&
          v0->template_version == 1);
    CHECK(ci->image_sent_count == 1 && strcmp(ci->image_sent_to[0], "node1") == 0);
    CHECK(ci->image_bytes_sent == 4ULL << 20 && ci->transfer_ns > 0 && ci->provision_ns > 0);
    cm_clear_error();
    cm_vm_list_free((cm_vm_list*)ci->vms); /* borrowed: refused */
    CHECK_ERROR(CM_INVALID_ARGUMENT, "belongs to another object");
  }
  cm_create_result_free(cr);
  /* The manager's view gets them. */
  double until = now_s() + 10;
  while (!vm_state_is(m, "node1", "cvm-2", CM_VM_RUNNING) && now_s() < until) {
    sleep_ms(50);
  }
  CHECK(vm_state_is(m, "node1", "cvm-2", CM_VM_RUNNING));
  /* In use: not deleted without force. */
  CHECK_FAILS(cm_manager_delete_template(m, "tiny", 0), CM_FAILED_PRECONDITION, "cvm-1");
  /* Refused requests. */
  cr = NULL;
  CHECK_FAILS(cm_manager_create_vms(m, opts, 5, NULL, NULL, &cr), CM_ALREADY_EXISTS, "cvm-1");
  cm_arg big[] = {{"name", "big"}, {"template", "tiny:1"}, {"count", "1000"}};
  CHECK_FAILS(cm_manager_create_vms(m, big, 3, NULL, NULL, &cr), CM_RESOURCE_EXHAUSTED, "node2");
  cm_arg noname[] = {{"template", "tiny"}};
  CHECK_FAILS(cm_manager_create_vms(m, noname, 1, NULL, NULL, &cr), CM_INVALID_ARGUMENT, "'name' is required");
  cm_arg unknown[] = {{"name", "x"}, {"template", "tiny"}, {"colour", "red"}};
  CHECK_FAILS(cm_manager_create_vms(m, unknown, 3, NULL, NULL, &cr), CM_INVALID_ARGUMENT, "unknown option 'colour'");
  cm_arg twice[] = {{"name", "x"}, {"name", "y"}, {"template", "tiny"}};
  CHECK_FAILS(cm_manager_create_vms(m, twice, 3, NULL, NULL, &cr), CM_INVALID_ARGUMENT, "'name' is given twice");
  cm_arg both[] = {{"name", "x"}, {"template", "tiny"}, {"host", "node1"}, {"group", "web"}};
  CHECK_FAILS(cm_manager_create_vms(m, both, 4, NULL, NULL, &cr), CM_INVALID_ARGUMENT, "exclude each other");
  cm_arg count0[] = {{"name", "x"}, {"template", "tiny"}, {"count", "0"}};
  CHECK_FAILS(cm_manager_create_vms(m, count0, 3, NULL, NULL, &cr), CM_INVALID_ARGUMENT, "count: '0'");
  cm_arg over[] = {{"name", "x"}, {"template", "tiny"}, {"cpu_overcommit", "100"}};
  CHECK_FAILS(cm_manager_create_vms(m, over, 3, NULL, NULL, &cr), CM_INVALID_ARGUMENT, "cpu");
  cm_arg policy[] = {{"name", "x"}, {"template", "tiny"}, {"policy", "random"}};
  CHECK_FAILS(cm_manager_create_vms(m, policy, 3, NULL, NULL, &cr), CM_INVALID_ARGUMENT, "random");
  cm_arg missing[] = {{"name", "x"}, {"template", "nosuch"}};
  CHECK_FAILS(cm_manager_create_vms(m, missing, 2, NULL, NULL, &cr), CM_NOT_FOUND, "nosuch");
  CHECK_FAILS(cm_manager_create_vms(m, NULL, 1, NULL, NULL, &cr), CM_INVALID_ARGUMENT, "options is NULL");
  CHECK(cr == NULL);
  cm_clear_error();
  CHECK(cm_create_result_info(NULL) == NULL);
  CHECK_ERROR(CM_INVALID_ARGUMENT, "result is NULL");

  /* Delete them: one running (force), one unknown (the host's error). */
  cm_result* r = NULL;
  CHECK(cm_manager_delete_vm(m, "node1", "cvm-1", 0, kTimeoutMs, &r) == CM_OK);
  CHECK(cm_result_count(r, CM_OUTCOME_ERROR) == 1 && cm_result_at(r, 0)->code == CM_FAILED_PRECONDITION);
  cm_result_free(r);
  for (int i = 1; i <= 2; ++i) {
    char name[16];
    snprintf(name, sizeof name, "cvm-%d", i);
    CHECK(cm_manager_delete_vm(m, "node1", name, 1, kTimeoutMs, &r) == CM_OK);
    CHECK(cm_result_count(r, CM_OUTCOME_OK) == 1);
    cm_result_free(r);
  }
  CHECK(cm_manager_delete_vm(m, "node1", "nosuch", 1, kTimeoutMs, &r) == CM_OK);
  CHECK(cm_result_count(r, CM_OUTCOME_ERROR) == 1 && cm_result_at(r, 0)->code == CM_NOT_FOUND);
  cm_result_free(r);
  r = NULL;
  CHECK_FAILS(cm_manager_delete_vm(m, "node9", "x", 0, 1000, &r), CM_NOT_FOUND, "node9");
  CHECK_FAILS(cm_manager_delete_vm(m, "node1", NULL, 0, 1000, &r), CM_INVALID_ARGUMENT, "vm is NULL");
  until = now_s() + 10;
  while (cm_manager_delete_template(m, "tiny", 0) != CM_OK && now_s() < until) {
    sleep_ms(100); /* until the view no longer lists the clones */
  }
  CHECK(cm_manager_templates(m, &t) == CM_OK && cm_template_list_size(t) == 0);
  cm_template_list_free(t);

  /* The audit log through the bus: node1 recorded the commands above, vm.delete included. */
  CHECK(cm_manager_execute(m, CM_TARGET_HOST, "node1", "host.audit", NULL, 0, kTimeoutMs, &r) == CM_OK);
  const cm_host_result* h = cm_result_at(r, 0);
  CHECK(h != NULL && h->outcome == CM_OUTCOME_OK && strstr(h->reply_json, "\"audit\":[") != NULL);
  CHECK(h != NULL && strstr(h->reply_json, "\"verb\":\"vm.delete\"") != NULL);
  cm_result_free(r);
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
  cm_subscription* sub = NULL;
  CHECK_FAILS(cm_manager_subscribe_events(m, 0, 0, on_event, NULL, &sub), CM_FAILED_PRECONDITION, "manager is closed");
  cm_template_list* t = NULL;
  CHECK_FAILS(cm_manager_templates(m, &t), CM_FAILED_PRECONDITION, "manager is closed");
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
  g_work = work;

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
  events(m);
  templates(m);
  close_and_free(m);

  stop_agent(node1);
  stop_agent(node2);
  printf("c_abi_test: %d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
