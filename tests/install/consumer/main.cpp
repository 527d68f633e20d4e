// Built against an installed libcloudmgr: drives libvirt's built-in test hypervisor
// through the public API and prints what it saw, for the install test to check.
#include <cstdio>
#include <string>

#include <cloudmgr/cloudmgr.h>

int main() {
  auto hv = cloudmgr::Hypervisor::open({.uri = "test:///default", .host_id = "consumer"});
  if (!hv.ok()) {
    std::fprintf(stderr, "open: %s\n", hv.status().to_string().c_str());
    return 1;
  }
  auto host = (*hv)->host_info();
  auto vms = (*hv)->list_vms();
  if (!host.ok() || !vms.ok()) {
    return 1;
  }
  std::printf("version %s (headers %s)\n", std::string(cloudmgr::version()).c_str(), CLOUDMGR_VERSION_STRING);
  std::printf("host %s cpus %u\n", host->id.c_str(), host->cpu.logical_cpus);
  for (const auto& vm : *vms) {
    std::printf("vm %s %s\n", vm.name.c_str(), std::string(cloudmgr::to_string(vm.state)).c_str());
  }
  const auto bad = (*hv)->start_vm(cloudmgr::VmRef::by_name("no such vm"));
  std::printf("bad %s\n", std::string(cloudmgr::status_code_name(bad.code())).c_str());
  return 0;
}
