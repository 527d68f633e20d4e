// libvirt driver overhead: each library call next to the bare libvirt calls that fetch the
// same information, on the same simulated host (libvirt's test driver, in process), so the
// ratio is the library's own cost: validation, XML parsing, conversion to the model.
#include <benchmark/benchmark.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "cloudmgr/cloudmgr.h"

namespace {

// A fresh simulated host with `n` shut-off VMs and n/2 of them running.
std::string host_uri() { return std::string("test://") + CLOUDMGR_BENCH_HOST_XML; }

std::unique_ptr<cloudmgr::Hypervisor> open_with_vms(int n) {
  auto hv = cloudmgr::Hypervisor::open({.uri = host_uri(), .host_id = "bench"});
  if (!hv.ok()) {
    std::abort();
  }
  for (int i = 0; i < n; ++i) {
    cloudmgr::VmSpec spec{.name = "vm" + std::to_string(i), .vcpus = 1, .memory_bytes = 64 * cloudmgr::kMiB};
    spec.disks.push_back({.source_path = "/img/vm" + std::to_string(i) + ".qcow2"});
    spec.nics.push_back({});
    if (!(*hv)->define_vm(spec).ok()) {
      std::abort();
    }
    if (i % 2 == 0 && !(*hv)->start_vm(cloudmgr::VmRef::by_name(spec.name)).ok()) {
      std::abort();
    }
  }
  return std::move(*hv);
}

void silent(void* /*unused*/, virErrorPtr /*unused*/) {}

// The same VMs on a bare libvirt connection.
virConnectPtr bare_with_vms(int n) {
  virSetErrorFunc(nullptr, silent);
  virConnectPtr c = virConnectOpen(host_uri().c_str());
  for (int i = 0; i < n; ++i) {
    const std::string name = "vm" + std::to_string(i);
    const std::string xml = "<domain type='test'><name>" + name +
                            "</name><memory unit='KiB'>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
                            "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                            "<source file='/img/" +
                            name +
                            ".qcow2'/><target dev='vda' bus='virtio'/></disk>"
                            "<interface type='network'><source network='default'/><model type='virtio'/></interface>"
                            "</devices></domain>";
    virDomainPtr d = virDomainDefineXML(c, xml.c_str());
    if (d == nullptr) {
      std::abort();
    }
    if (i % 2 == 0) {
      virDomainCreate(d);
    }
    virDomainFree(d);
  }
  return c;
}

void BM_ListVms_Library(benchmark::State& state) {
  auto hv = open_with_vms(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto vms = hv->list_vms();
    benchmark::DoNotOptimize(vms);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

// What list_vms reads, done by hand: list, then state, info, persistence, autostart and
// the XML (for disks and NICs) of each domain.
// parse_xml: also parse each domain's XML with libxml2 (and free it), as any program that
// reports disks and NICs must.
void list_bare(benchmark::State& state, bool parse_xml) {
  virConnectPtr c = bare_with_vms(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    virDomainPtr* list = nullptr;
    const int n = virConnectListAllDomains(c, &list, 0);
    for (int i = 0; i < n; ++i) {
      int st = 0;
      int reason = 0;
      virDomainInfo info{};
      int autostart = 0;
      char uuid[VIR_UUID_STRING_BUFLEN];
      benchmark::DoNotOptimize(virDomainGetName(list[i]));
      virDomainGetUUIDString(list[i], uuid);
      virDomainGetState(list[i], &st, &reason, 0);
      virDomainGetInfo(list[i], &info);
      virDomainIsPersistent(list[i]);
      virDomainGetAutostart(list[i], &autostart);
      char* xml = virDomainGetXMLDesc(list[i], 0);
      benchmark::DoNotOptimize(xml);
      if (parse_xml) {
        xmlDocPtr doc = xmlReadMemory(xml, static_cast<int>(std::strlen(xml)), "d.xml", nullptr, XML_PARSE_NONET);
        benchmark::DoNotOptimize(doc);
        xmlFreeDoc(doc);
      }
      free(xml);  // NOLINT(cppcoreguidelines-no-malloc)
      virDomainFree(list[i]);
    }
    free(list);  // NOLINT(cppcoreguidelines-no-malloc)
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  virConnectClose(c);
}

void BM_ListVms_BareLibvirt(benchmark::State& state) { list_bare(state, false); }
void BM_ListVms_BareLibvirtAndLibxml2(benchmark::State& state) { list_bare(state, true); }

void BM_HostInfo_Library(benchmark::State& state) {
  auto hv = open_with_vms(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto info = hv->host_info();
    benchmark::DoNotOptimize(info);
  }
}

// What host_info reads: node info, hostname, type, version, and each domain's info for
// the allocation sums.
void BM_HostInfo_BareLibvirt(benchmark::State& state) {
  virConnectPtr c = bare_with_vms(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    virNodeInfo node{};
    virNodeGetInfo(c, &node);
    char* host = virConnectGetHostname(c);
    free(host);                 // NOLINT(cppcoreguidelines-no-malloc)
    unsigned long version = 0;  // NOLINT(google-runtime-int)
    virConnectGetVersion(c, &version);
    benchmark::DoNotOptimize(virConnectGetType(c));
    virDomainPtr* list = nullptr;
    const int n = virConnectListAllDomains(c, &list, 0);
    std::uint64_t mem = 0;
    for (int i = 0; i < n; ++i) {
      virDomainInfo info{};
      virDomainGetInfo(list[i], &info);
      mem += info.memory;
      virDomainFree(list[i]);
    }
    free(list);  // NOLINT(cppcoreguidelines-no-malloc)
    benchmark::DoNotOptimize(mem);
  }
  virConnectClose(c);
}

void BM_SuspendResume_Library(benchmark::State& state) {
  auto hv = open_with_vms(2);
  const auto ref = cloudmgr::VmRef::by_name("vm0");
  for (auto _ : state) {
    if (!hv->suspend_vm(ref).ok() || !hv->resume_vm(ref).ok()) {
      state.SkipWithError("suspend/resume failed");
      break;
    }
  }
}

void BM_SuspendResume_BareLibvirt(benchmark::State& state) {
  virConnectPtr c = bare_with_vms(2);
  for (auto _ : state) {
    virDomainPtr d = virDomainLookupByName(c, "vm0");
    virDomainSuspend(d);
    virDomainResume(d);
    virDomainFree(d);
  }
  virConnectClose(c);
}

BENCHMARK(BM_ListVms_Library)->Arg(10)->Arg(100);
BENCHMARK(BM_ListVms_BareLibvirt)->Arg(10)->Arg(100);
BENCHMARK(BM_ListVms_BareLibvirtAndLibxml2)->Arg(10)->Arg(100);
BENCHMARK(BM_HostInfo_Library)->Arg(100);
BENCHMARK(BM_HostInfo_BareLibvirt)->Arg(100);
BENCHMARK(BM_SuspendResume_Library);
BENCHMARK(BM_SuspendResume_BareLibvirt);

}  // namespace

BENCHMARK_MAIN();
