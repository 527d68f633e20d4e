/* A C program on the C ABI: list the cloud's hosts, then run one verb on a group and print
 * each host's outcome.
 *
 *   group_command DOMAIN HOSTS GROUP VERB [KEY=VALUE ...]
 */
#include <cloudmgr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s DOMAIN HOSTS GROUP VERB [KEY=VALUE ...]\n", argv[0]);
    return 2;
  }
  cm_config* config = NULL;
  cm_manager* m = NULL;
  if (cm_config_new(&config) != CM_OK || cm_config_set(config, "domain", argv[1]) != CM_OK ||
      cm_config_set(config, "name", "group-command") != CM_OK || cm_manager_open(config, &m) != CM_OK) {
    fprintf(stderr, "group_command: %s\n", cm_last_error());
    cm_config_free(config);
    return 1;
  }
  cm_config_free(config);
  int rc = 1;
  cm_host_list* hosts = NULL;
  cm_result* result = NULL;
  cm_arg args[16];
  size_t nargs = 0;
  for (int i = 5; i < argc && nargs < 16; ++i, ++nargs) {
    char* eq = strchr(argv[i], '=');
    if (eq == NULL) {
      fprintf(stderr, "group_command: argument '%s' is not KEY=VALUE\n", argv[i]);
      goto out;
    }
    *eq = '\0';
    args[nargs].key = argv[i];
    args[nargs].value = eq + 1;
  }
  if (cm_manager_wait_for_hosts(m, (size_t)strtoul(argv[2], NULL, 10), 20000) != CM_OK ||
      cm_manager_hosts(m, &hosts) != CM_OK) {
    fprintf(stderr, "group_command: %s\n", cm_last_error());
    goto out;
  }
  for (size_t i = 0; i < cm_host_list_size(hosts); ++i) {
    const cm_host* h = cm_host_list_at(hosts, i);
    printf("host %s %s cpus %u\n", h->id, h->state == CM_HOST_ONLINE ? "online" : "offline", h->cpus);
  }
  if (cm_manager_execute(m, CM_TARGET_GROUP, argv[3], argv[4], args, nargs, 30000, &result) != CM_OK) {
    fprintf(stderr, "group_command: %s\n", cm_last_error());
    goto out;
  }
  for (size_t i = 0; i < cm_result_size(result); ++i) {
    const cm_host_result* r = cm_result_at(result, i);
    printf("%s %s %s %s\n", r->host_id, cm_outcome_name(r->outcome), cm_status_name(r->code), r->message);
  }
  rc = cm_result_count(result, CM_OUTCOME_OK) == cm_result_size(result) ? 0 : 1;
out:
  cm_result_free(result);
  cm_host_list_free(hosts);
  cm_manager_free(m);
  return rc;
}
