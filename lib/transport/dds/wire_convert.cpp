#include "transport/dds/wire_convert.h"

#include <algorithm>
#include <string>
#include <utility>

namespace cloudmgr::dds {

wire::VmState to_wire(VmState state) noexcept {
  switch (state) {
    case VmState::kUnknown:
      return wire::VM_STATE_UNKNOWN;
    case VmState::kRunning:
      return wire::VM_STATE_RUNNING;
    case VmState::kPaused:
      return wire::VM_STATE_PAUSED;
    case VmState::kShuttingDown:
      return wire::VM_STATE_SHUTTING_DOWN;
    case VmState::kShutOff:
      return wire::VM_STATE_SHUT_OFF;
    case VmState::kCrashed:
      return wire::VM_STATE_CRASHED;
    case VmState::kPmSuspended:
      return wire::VM_STATE_PM_SUSPENDED;
  }
  return wire::VM_STATE_UNKNOWN;
}

VmState from_wire(wire::VmState state) noexcept {
  switch (state) {
    case wire::VM_STATE_UNKNOWN:
      return VmState::kUnknown;
    case wire::VM_STATE_RUNNING:
      return VmState::kRunning;
    case wire::VM_STATE_PAUSED:
      return VmState::kPaused;
    case wire::VM_STATE_SHUTTING_DOWN:
      return VmState::kShuttingDown;
    case wire::VM_STATE_SHUT_OFF:
      return VmState::kShutOff;
    case wire::VM_STATE_CRASHED:
      return VmState::kCrashed;
    case wire::VM_STATE_PM_SUSPENDED:
      return VmState::kPmSuspended;
  }
  return VmState::kUnknown;  // a newer writer's state this reader does not know
}

wire::HostStatus to_wire(const HostView& host) {
  const HostInfo& i = host.info;
  wire::HostStatus w;
  w.host_id(i.id);
  w.hostname(i.hostname);
  w.hypervisor(i.hypervisor);
  w.hypervisor_version(i.hypervisor_version);
  w.hypervisor_uri(i.uri);
  w.agent_version(host.agent_version);
  w.cpu_model(i.cpu.model);
  w.cpu_logical_count(i.cpu.logical_cpus);
  w.cpu_mhz(i.cpu.mhz);
  w.cpu_numa_nodes(i.cpu.numa_nodes);
  w.cpu_sockets_per_node(i.cpu.sockets_per_node);
  w.cpu_cores_per_socket(i.cpu.cores_per_socket);
  w.cpu_threads_per_core(i.cpu.threads_per_core);
  w.memory_bytes(i.memory_bytes);
  w.free_memory_bytes(i.free_memory_bytes);
  w.vcpus_allocated(i.vcpus_allocated);
  w.memory_allocated_bytes(i.memory_allocated_bytes);
  w.vms_defined(i.vms_defined);
  w.vms_active(i.vms_active);
  w.groups(host.groups);
  w.agent_started_ns(host.agent_started_ns);
  w.updated_ns(host.updated_ns);
  return w;
}

HostView from_wire(const wire::HostStatus& w) {
  HostView host;
  HostInfo& i = host.info;
  i.id = w.host_id();
  i.hostname = w.hostname();
  i.hypervisor = w.hypervisor();
  i.hypervisor_version = w.hypervisor_version();
  i.uri = w.hypervisor_uri();
  host.agent_version = w.agent_version();
  i.cpu.model = w.cpu_model();
  i.cpu.logical_cpus = w.cpu_logical_count();
  i.cpu.mhz = w.cpu_mhz();
  i.cpu.numa_nodes = w.cpu_numa_nodes();
  i.cpu.sockets_per_node = w.cpu_sockets_per_node();
  i.cpu.cores_per_socket = w.cpu_cores_per_socket();
  i.cpu.threads_per_core = w.cpu_threads_per_core();
  i.memory_bytes = w.memory_bytes();
  i.free_memory_bytes = w.free_memory_bytes();
  i.vcpus_allocated = w.vcpus_allocated();
  i.memory_allocated_bytes = w.memory_allocated_bytes();
  i.vms_defined = w.vms_defined();
  i.vms_active = w.vms_active();
  host.groups = w.groups();
  host.agent_started_ns = w.agent_started_ns();
  host.updated_ns = w.updated_ns();
  return host;
}

namespace {

wire::Disk to_wire(const DiskInfo& d) {
  wire::Disk w;
  w.target(d.target);
  w.source(d.source);
  w.device(d.device);
  w.bus(d.bus);
  w.format(d.format);
  w.read_only(d.read_only);
  return w;
}

DiskInfo from_wire(const wire::Disk& w) {
  return DiskInfo{.target = w.target(),
                  .source = w.source(),
                  .device = w.device(),
                  .bus = w.bus(),
                  .format = w.format(),
                  .read_only = w.read_only()};
}

wire::Nic to_wire(const NicInfo& n) {
  wire::Nic w;
  w.mac(n.mac);
  w.type(n.type);
  w.source(n.source);
  w.model(n.model);
  return w;
}

NicInfo from_wire(const wire::Nic& w) {
  return NicInfo{.mac = w.mac(), .type = w.type(), .source = w.source(), .model = w.model()};
}

VmInfo vm_info_from_wire(const wire::VmStatus& w) {
  VmInfo vm;
  vm.uuid = w.uuid();
  vm.name = w.name();
  vm.state = dds::from_wire(w.state());
  vm.state_reason = w.state_reason();
  vm.vcpus = w.vcpus();
  vm.max_vcpus = w.max_vcpus();
  vm.memory_bytes = w.memory_bytes();
  vm.max_memory_bytes = w.max_memory_bytes();
  vm.cpu_time_ns = w.cpu_time_ns();
  vm.persistent = w.persistent();
  vm.autostart = w.autostart();
  vm.description = w.description();
  vm.disks.reserve(w.disks().size());
  for (const auto& d : w.disks()) {
    vm.disks.push_back(from_wire(d));
  }
  vm.nics.reserve(w.nics().size());
  for (const auto& n : w.nics()) {
    vm.nics.push_back(from_wire(n));
  }
  return vm;
}

}  // namespace

wire::VmStatus to_wire(const std::string& host_id, const VmInfo& vm, std::int64_t updated_ns) {
  wire::VmStatus w;
  w.host_id(host_id);
  w.uuid(vm.uuid);
  w.name(vm.name);
  w.state(to_wire(vm.state));
  w.state_reason(vm.state_reason);
  w.vcpus(vm.vcpus);
  w.max_vcpus(vm.max_vcpus);
  w.memory_bytes(vm.memory_bytes);
  w.max_memory_bytes(vm.max_memory_bytes);
  w.cpu_time_ns(vm.cpu_time_ns);
  w.persistent(vm.persistent);
  w.autostart(vm.autostart);
  w.description(vm.description);
  w.disks().reserve(vm.disks.size());
  for (const auto& d : vm.disks) {
    w.disks().push_back(to_wire(d));
  }
  w.nics().reserve(vm.nics.size());
  for (const auto& n : vm.nics) {
    w.nics().push_back(to_wire(n));
  }
  w.updated_ns(updated_ns);
  return w;
}

wire::VmStatus to_wire(const VmView& vm) { return to_wire(vm.host_id, vm.vm, vm.updated_ns); }

VmView from_wire(const wire::VmStatus& w) {
  return VmView{.host_id = w.host_id(), .vm = vm_info_from_wire(w), .updated_ns = w.updated_ns()};
}

wire::Process to_wire(const ProcessInfo& p) {
  wire::Process w;
  w.pid(p.pid);
  w.ppid(p.ppid);
  w.name(p.name);
  w.state(std::string(1, p.state));
  w.uid(p.uid);
  w.user(p.user);
  w.threads(p.threads);
  w.rss_bytes(p.rss_bytes);
  w.vsize_bytes(p.vsize_bytes);
  w.cpu_time_ns(p.cpu_time_ns);
  w.start_time_ns(p.start_time_ns);
  w.cmdline(p.cmdline);
  return w;
}

ProcessInfo from_wire(const wire::Process& w) {
  ProcessInfo p;
  p.pid = w.pid();
  p.ppid = w.ppid();
  p.name = w.name();
  p.state = w.state().empty() ? '?' : w.state().front();
  p.uid = w.uid();
  p.user = w.user();
  p.threads = w.threads();
  p.rss_bytes = w.rss_bytes();
  p.vsize_bytes = w.vsize_bytes();
  p.cpu_time_ns = w.cpu_time_ns();
  p.start_time_ns = w.start_time_ns();
  p.cmdline = w.cmdline();
  return p;
}

wire::Snapshot to_wire(const SnapshotInfo& s) {
  wire::Snapshot w;
  w.name(s.name);
  w.description(s.description);
  w.parent(s.parent);
  w.creation_time_ns(s.creation_time_ns);
  w.vm_state(to_wire(s.vm_state));
  w.current(s.current);
  return w;
}

SnapshotInfo from_wire(const wire::Snapshot& w) {
  return SnapshotInfo{.name = w.name(),
                      .description = w.description(),
                      .parent = w.parent(),
                      .creation_time_ns = w.creation_time_ns(),
                      .vm_state = from_wire(w.vm_state()),
                      .current = w.current()};
}

wire::Command to_wire(const Command& c) {
  wire::Command w;
  w.command_id(c.id);
  w.issuer(c.issuer);
  w.target(c.target.partition());
  w.verb(c.verb);
  w.arguments().reserve(c.arguments.size());
  for (const auto& [name, value] : c.arguments) {
    wire::Argument a;
    a.name(name);
    a.value(value);
    w.arguments().push_back(std::move(a));
  }
  w.issued_ns(c.issued_ns);
  w.deadline_ns(c.deadline_ns);
  return w;
}

Result<Command> from_wire(const wire::Command& w) {
  Result<Target> target = Target::parse(w.target());
  if (!target.ok()) {
    return target.status();
  }
  Command c;
  c.id = w.command_id();
  c.issuer = w.issuer();
  c.target = std::move(target).value();
  c.verb = w.verb();
  c.arguments.reserve(w.arguments().size());
  for (const auto& a : w.arguments()) {
    c.arguments.emplace_back(a.name(), a.value());
  }
  c.issued_ns = w.issued_ns();
  c.deadline_ns = w.deadline_ns();
  return c;
}

wire::CommandReply to_wire(const CommandReply& r) {
  wire::CommandReply w;
  w.command_id(r.command_id);
  w.host_id(r.host_id);
  w.code(static_cast<std::uint32_t>(r.status.code()));
  w.message(r.status.message());
  w.completed_ns(r.completed_ns);
  w.processes().reserve(r.processes.size());
  for (const auto& p : r.processes) {
    w.processes().push_back(to_wire(p));
  }
  w.snapshots().reserve(r.snapshots.size());
  for (const auto& s : r.snapshots) {
    w.snapshots().push_back(to_wire(s));
  }
  w.vms().reserve(r.vms.size());
  for (const auto& vm : r.vms) {
    w.vms().push_back(to_wire(r.host_id, vm, r.completed_ns));
  }
  return w;
}

namespace {

Status status_from_wire(std::uint32_t code, const std::string& message) {
  constexpr auto kLastCode = static_cast<std::uint32_t>(StatusCode::kUnauthenticated);
  if (code == 0) {
    return {};
  }
  if (code <= kLastCode) {
    return {static_cast<StatusCode>(code), message};
  }
  return {StatusCode::kUnknown, "status code " + std::to_string(code) + ": " + message};
}

wire::VmMetrics to_wire(const VmSample& v) {
  wire::VmMetrics w;
  w.uuid(v.uuid);
  w.name(v.name);
  w.state(dds::to_wire(v.state));
  w.vcpus(v.vcpus);
  w.rates_valid(v.rates_valid);
  w.cpu_pct(v.cpu_pct);
  w.cpu_host_pct(v.cpu_host_pct);
  w.memory_bytes(v.memory_bytes);
  w.memory_used_bytes(v.memory_used_bytes);
  w.disk_read_bytes_per_s(v.disk_read_bytes_per_s);
  w.disk_write_bytes_per_s(v.disk_write_bytes_per_s);
  w.disk_read_ops_per_s(v.disk_read_ops_per_s);
  w.disk_write_ops_per_s(v.disk_write_ops_per_s);
  w.net_rx_bytes_per_s(v.net_rx_bytes_per_s);
  w.net_tx_bytes_per_s(v.net_tx_bytes_per_s);
  return w;
}

VmSample from_wire(const wire::VmMetrics& w) {
  VmSample v;
  v.uuid = w.uuid();
  v.name = w.name();
  v.state = dds::from_wire(w.state());
  v.vcpus = w.vcpus();
  v.rates_valid = w.rates_valid();
  v.cpu_pct = w.cpu_pct();
  v.cpu_host_pct = w.cpu_host_pct();
  v.memory_bytes = w.memory_bytes();
  v.memory_used_bytes = w.memory_used_bytes();
  v.disk_read_bytes_per_s = w.disk_read_bytes_per_s();
  v.disk_write_bytes_per_s = w.disk_write_bytes_per_s();
  v.disk_read_ops_per_s = w.disk_read_ops_per_s();
  v.disk_write_ops_per_s = w.disk_write_ops_per_s();
  v.net_rx_bytes_per_s = w.net_rx_bytes_per_s();
  v.net_tx_bytes_per_s = w.net_tx_bytes_per_s();
  return v;
}

}  // namespace

wire::HostMetrics to_wire(const HostSample& s) {
  wire::HostMetrics w;
  w.host_id(s.host_id);
  w.taken_ns(s.taken_ns);
  w.interval_ns(s.interval_ns);
  w.simulated(s.simulated);
  w.rates_valid(s.rates_valid);
  w.cpu_count(s.cpus);
  w.cpu_pct(s.cpu_pct);
  w.memory_bytes(s.memory_bytes);
  w.memory_used_bytes(s.memory_used_bytes);
  w.disk_read_bytes_per_s(s.disk_read_bytes_per_s);
  w.disk_write_bytes_per_s(s.disk_write_bytes_per_s);
  w.disk_read_ops_per_s(s.disk_read_ops_per_s);
  w.disk_write_ops_per_s(s.disk_write_ops_per_s);
  w.net_rx_bytes_per_s(s.net_rx_bytes_per_s);
  w.net_tx_bytes_per_s(s.net_tx_bytes_per_s);
  w.vms().reserve(s.vms.size());
  for (const auto& v : s.vms) {
    w.vms().push_back(to_wire(v));
  }
  return w;
}

HostSample from_wire(const wire::HostMetrics& w) {
  HostSample s;
  s.host_id = w.host_id();
  s.taken_ns = w.taken_ns();
  s.interval_ns = w.interval_ns();
  s.simulated = w.simulated();
  s.rates_valid = w.rates_valid();
  s.cpus = w.cpu_count();
  s.cpu_pct = w.cpu_pct();
  s.memory_bytes = w.memory_bytes();
  s.memory_used_bytes = w.memory_used_bytes();
  s.disk_read_bytes_per_s = w.disk_read_bytes_per_s();
  s.disk_write_bytes_per_s = w.disk_write_bytes_per_s();
  s.disk_read_ops_per_s = w.disk_read_ops_per_s();
  s.disk_write_ops_per_s = w.disk_write_ops_per_s();
  s.net_rx_bytes_per_s = w.net_rx_bytes_per_s();
  s.net_tx_bytes_per_s = w.net_tx_bytes_per_s();
  s.vms.reserve(w.vms().size());
  for (const auto& v : w.vms()) {
    s.vms.push_back(from_wire(v));
  }
  return s;
}

wire::AuditReply to_audit_wire(const CommandReply& r) {
  wire::AuditReply w;
  w.command_id(r.command_id);
  w.host_id(r.host_id);
  w.code(static_cast<std::uint32_t>(r.status.code()));
  w.message(r.status.message());
  w.completed_ns(r.completed_ns);
  w.entries().reserve(r.audit.size());
  for (const auto& e : r.audit) {
    wire::AuditRecord a;
    a.received_ns(e.received_ns);
    a.command_id(e.command_id);
    a.issuer(e.issuer);
    a.claimed_issuer(e.claimed_issuer);
    a.target(e.target.partition());
    a.verb(e.verb);
    for (const auto& [name, value] : e.arguments) {
      wire::Argument arg;
      arg.name(name);
      arg.value(value);
      a.arguments().push_back(std::move(arg));
    }
    a.completed_ns(e.completed_ns);
    a.code(static_cast<std::uint32_t>(e.result.code()));
    a.message(e.result.message());
    w.entries().push_back(std::move(a));
  }
  return w;
}

wire::HistoryReply to_history_wire(const CommandReply& r) {
  wire::HistoryReply w;
  w.command_id(r.command_id);
  w.host_id(r.host_id);
  w.code(static_cast<std::uint32_t>(r.status.code()));
  w.message(r.status.message());
  w.completed_ns(r.completed_ns);
  w.series().reserve(r.history.size());
  for (const auto& h : r.history) {
    wire::HistorySeries ws;
    ws.host_id(h.host_id);
    ws.vm_uuid(h.vm_uuid);
    ws.vm_name(h.vm_name);
    ws.step_ns(h.step_ns);
    ws.simulated(h.simulated);
    ws.points().reserve(h.points.size());
    for (const auto& p : h.points) {
      wire::HistoryPoint wp;
      wp.start_ns(p.start_ns);
      wp.samples(p.samples);
      std::copy(p.min.begin(), p.min.end(), wp.min_values().begin());
      std::copy(p.avg.begin(), p.avg.end(), wp.avg_values().begin());
      std::copy(p.max.begin(), p.max.end(), wp.max_values().begin());
      ws.points().push_back(wp);
    }
    w.series().push_back(std::move(ws));
  }
  return w;
}

CommandReply from_wire(const wire::HistoryReply& w) {
  CommandReply r;
  r.command_id = w.command_id();
  r.host_id = w.host_id();
  r.status = status_from_wire(w.code(), w.message());
  r.completed_ns = w.completed_ns();
  r.history.reserve(w.series().size());
  for (const auto& ws : w.series()) {
    HistorySeries h;
    h.host_id = ws.host_id();
    h.vm_uuid = ws.vm_uuid();
    h.vm_name = ws.vm_name();
    h.step_ns = ws.step_ns();
    h.simulated = ws.simulated();
    h.points.reserve(ws.points().size());
    for (const auto& wp : ws.points()) {
      HistoryPoint p;
      p.start_ns = wp.start_ns();
      p.samples = wp.samples();
      std::copy(wp.min_values().begin(), wp.min_values().end(), p.min.begin());
      std::copy(wp.avg_values().begin(), wp.avg_values().end(), p.avg.begin());
      std::copy(wp.max_values().begin(), wp.max_values().end(), p.max.begin());
      h.points.push_back(p);
    }
    r.history.push_back(std::move(h));
  }
  return r;
}

CommandReply from_wire(const wire::AuditReply& w) {
  CommandReply r;
  r.command_id = w.command_id();
  r.host_id = w.host_id();
  r.status = status_from_wire(w.code(), w.message());
  r.completed_ns = w.completed_ns();
  r.audit.reserve(w.entries().size());
  for (const auto& a : w.entries()) {
    AuditEntry e;
    e.received_ns = a.received_ns();
    e.command_id = a.command_id();
    e.issuer = a.issuer();
    e.claimed_issuer = a.claimed_issuer();
    Result<Target> target = Target::parse(a.target());
    e.target = target.ok() ? *target : Target::all();
    e.verb = a.verb();
    for (const auto& arg : a.arguments()) {
      e.arguments.emplace_back(arg.name(), arg.value());
    }
    e.completed_ns = a.completed_ns();
    e.result = status_from_wire(a.code(), a.message());
    r.audit.push_back(std::move(e));
  }
  return r;
}

CommandReply from_wire(const wire::CommandReply& w) {
  CommandReply r;
  r.command_id = w.command_id();
  r.host_id = w.host_id();
  r.status = status_from_wire(w.code(), w.message());
  r.completed_ns = w.completed_ns();
  r.processes.reserve(w.processes().size());
  for (const auto& p : w.processes()) {
    r.processes.push_back(from_wire(p));
  }
  r.snapshots.reserve(w.snapshots().size());
  for (const auto& s : w.snapshots()) {
    r.snapshots.push_back(from_wire(s));
  }
  r.vms.reserve(w.vms().size());
  for (const auto& vm : w.vms()) {
    r.vms.push_back(vm_info_from_wire(vm));
  }
  return r;
}

wire::HostImages to_wire(const HostImages& images) {
  wire::HostImages w;
  w.host_id(images.host_id);
  w.updated_ns(images.updated_ns);
  for (const CachedImage& c : images.images) {
    wire::CachedImage wc;
    wc.sha256(c.info.sha256);
    wc.format(std::string(to_string(c.info.format)));
    wc.size_bytes(c.info.size_bytes);
    wc.virtual_size_bytes(c.info.virtual_size_bytes);
    for (const ImageUser& u : c.users) {
      wire::ImageUser wu;
      wu.vm_uuid(u.vm_uuid);
      wu.vm_name(u.vm_name);
      wu.template_name(u.template_name);
      wu.template_version(u.template_version);
      wc.users().push_back(std::move(wu));
    }
    w.images().push_back(std::move(wc));
  }
  return w;
}

HostImages from_wire(const wire::HostImages& w) {
  HostImages images{.host_id = w.host_id(), .updated_ns = w.updated_ns()};
  for (const wire::CachedImage& wc : w.images()) {
    CachedImage c;
    c.info.sha256 = wc.sha256();
    auto format = parse_image_format(wc.format());
    c.info.format = format.ok() ? *format : ImageFormat::kRaw;
    c.info.size_bytes = wc.size_bytes();
    c.info.virtual_size_bytes = wc.virtual_size_bytes();
    for (const wire::ImageUser& wu : wc.users()) {
      c.users.push_back({wu.vm_uuid(), wu.vm_name(), wu.template_name(), wu.template_version()});
    }
    images.images.push_back(std::move(c));
  }
  return images;
}

wire::ImageChunk to_wire(const ImageChunk& chunk) {
  wire::ImageChunk w;
  w.transfer_id(chunk.transfer_id);
  w.sha256(chunk.sha256);
  w.offset_bytes(chunk.offset_bytes);
  w.data(chunk.data);
  return w;
}

ImageChunk from_wire(const wire::ImageChunk& w) {
  return {.transfer_id = w.transfer_id(), .sha256 = w.sha256(), .offset_bytes = w.offset_bytes(), .data = w.data()};
}

}  // namespace cloudmgr::dds
