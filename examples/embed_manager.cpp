// Embedding the Manager in a C++ program: wait for the cloud, print every host and its VMs,
// then run one verb on a group and print each host's result.
//
//   embed_manager DOMAIN HOSTS GROUP VERB
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cloudmgr/cloudmgr.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s DOMAIN HOSTS GROUP VERB\n", argv[0]);
    return 2;
  }
  cloudmgr::ManagerOptions options;
  options.transport.domain_id = static_cast<std::uint32_t>(std::strtoul(argv[1], nullptr, 10));
  options.name = "embed-manager";
  auto m = cloudmgr::Manager::open(std::move(options));
  if (!m.ok()) {
    std::fprintf(stderr, "embed_manager: %s\n", m.status().to_string().c_str());
    return 1;
  }
  cloudmgr::Manager& manager = **m;
  if (auto s = manager.wait_for_hosts(std::strtoul(argv[2], nullptr, 10), std::chrono::seconds(20)); !s.ok()) {
    std::fprintf(stderr, "embed_manager: %s\n", s.to_string().c_str());
    return 1;
  }
  // A host's VMs arrive just after the host itself: wait until every host has all of its own.
  (void)manager.wait_until(
      [](const cloudmgr::Manager& view) {
        for (const auto& h : view.hosts()) {
          if (view.vms(h.view.info.id).size() != h.view.info.vms_defined) {
            return false;
          }
        }
        return true;
      },
      std::chrono::seconds(10));
  for (const auto& h : manager.hosts()) {
    std::printf("host %s %s vms %zu\n", h.view.info.id.c_str(), std::string(cloudmgr::to_string(h.state)).c_str(),
                manager.vms(h.view.info.id).size());
  }
  auto r = manager.execute(cloudmgr::Target::group(argv[3]), argv[4], {});
  if (!r.ok()) {
    std::fprintf(stderr, "embed_manager: %s\n", r.status().to_string().c_str());
    return 1;
  }
  for (const auto& h : r->hosts) {
    std::printf("%s %s %s\n", h.host_id.c_str(), std::string(cloudmgr::to_string(h.outcome)).c_str(),
                h.status.to_string().c_str());
  }
  return r->all_ok() ? 0 : 1;
}
