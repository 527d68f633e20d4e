// cloudmgr-agent: the per-host hypervisor manager.
//
// This version opens its hypervisor, reports the host it manages and logs every VM
// lifecycle event until SIGINT/SIGTERM. Publishing state and executing commands over DDS
// arrive with the transport.
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>

#include <fmt/format.h>

#include "cloudmgr/cloudmgr.h"

namespace {

std::mutex g_out_mutex;

void log_line(const std::string& line) {
  const std::lock_guard lock(g_out_mutex);
  std::time_t now = std::time(nullptr);
  char stamp[32];
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::fprintf(stdout, "%s %s\n", stamp, line.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cloudmgr-agent: manages one hypervisor host for libcloudmgr"};
  cloudmgr::HypervisorOptions options;
  options.uri.clear();
  app.add_option("--uri", options.uri, "libvirt URI of this host's hypervisor, e.g. qemu:///system")->required();
  app.add_option("--host-id", options.host_id, "this host's cloud-wide id (default: its hostname)");
  app.add_flag("--allow-host-reboot", options.reboot.enabled, "allow managers to reboot this host");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  // Block the stop signals in every thread (the event loop thread inherits the mask), then
  // wait for them here.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto hv = cloudmgr::Hypervisor::open(options);
  if (!hv.ok()) {
    std::fprintf(stderr, "cloudmgr-agent: %s\n", hv.status().to_string().c_str());
    return 1;
  }
  auto host = (*hv)->host_info();
  if (!host.ok()) {
    std::fprintf(stderr, "cloudmgr-agent: %s\n", host.status().to_string().c_str());
    return 1;
  }
  log_line(fmt::format("agent {} started: host {} ({} {}), {} CPUs, {} memory, {} VM(s) ({} active)",
                       cloudmgr::version(), host->id, host->hypervisor, host->hypervisor_version,
                       host->cpu.logical_cpus, cloudmgr::format_bytes(host->memory_bytes), host->vms_defined,
                       host->vms_active));
  auto sub = (*hv)->subscribe_lifecycle([](const cloudmgr::VmEvent& e) {
    log_line(fmt::format("event vm={} uuid={} kind={} detail={}", e.vm_name, e.vm_uuid, cloudmgr::to_string(e.kind),
                         e.detail));
  });
  if (!sub.ok()) {
    std::fprintf(stderr, "cloudmgr-agent: %s\n", sub.status().to_string().c_str());
    return 1;
  }
  int sig = 0;
  sigwait(&stop_signals, &sig);
  log_line(fmt::format("agent stopping on signal {}", sig));
  sub->reset();
  hv->reset();
  return 0;
}
