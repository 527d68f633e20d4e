// JSON forms of the model, for --json output of the tools.
#pragma once

#include <nlohmann/json.hpp>

#include "cloudmgr/cloud.h"
#include "cloudmgr/model.h"

namespace cloudmgr::tools {

inline nlohmann::json to_json(const HostInfo& h) {
  return {{"id", h.id},
          {"hostname", h.hostname},
          {"hypervisor", h.hypervisor},
          {"hypervisor_version", h.hypervisor_version},
          {"uri", h.uri},
          {"cpu",
           {{"model", h.cpu.model},
            {"logical_cpus", h.cpu.logical_cpus},
            {"mhz", h.cpu.mhz},
            {"numa_nodes", h.cpu.numa_nodes},
            {"sockets_per_node", h.cpu.sockets_per_node},
            {"cores_per_socket", h.cpu.cores_per_socket},
            {"threads_per_core", h.cpu.threads_per_core}}},
          {"memory_bytes", h.memory_bytes},
          {"free_memory_bytes", h.free_memory_bytes},
          {"vcpus_allocated", h.vcpus_allocated},
          {"vcpus_free", h.vcpus_free()},
          {"memory_allocated_bytes", h.memory_allocated_bytes},
          {"vms_defined", h.vms_defined},
          {"vms_active", h.vms_active}};
}

inline nlohmann::json to_json(const VmInfo& v) {
  nlohmann::json disks = nlohmann::json::array();
  for (const auto& d : v.disks) {
    disks.push_back({{"target", d.target},
                     {"source", d.source},
                     {"device", d.device},
                     {"bus", d.bus},
                     {"format", d.format},
                     {"read_only", d.read_only}});
  }
  nlohmann::json nics = nlohmann::json::array();
  for (const auto& n : v.nics) {
    nics.push_back({{"mac", n.mac}, {"type", n.type}, {"source", n.source}, {"model", n.model}});
  }
  return {{"uuid", v.uuid},
          {"name", v.name},
          {"state", to_string(v.state)},
          {"state_reason", v.state_reason},
          {"vcpus", v.vcpus},
          {"max_vcpus", v.max_vcpus},
          {"memory_bytes", v.memory_bytes},
          {"max_memory_bytes", v.max_memory_bytes},
          {"cpu_time_ns", v.cpu_time_ns},
          {"persistent", v.persistent},
          {"autostart", v.autostart},
          {"description", v.description},
          {"disks", disks},
          {"nics", nics}};
}

inline nlohmann::json to_json(const ProcessInfo& p) {
  return {{"pid", p.pid},
          {"ppid", p.ppid},
          {"name", p.name},
          {"state", std::string(1, p.state)},
          {"uid", p.uid},
          {"user", p.user},
          {"threads", p.threads},
          {"rss_bytes", p.rss_bytes},
          {"vsize_bytes", p.vsize_bytes},
          {"cpu_time_ns", p.cpu_time_ns},
          {"start_time_ns", p.start_time_ns},
          {"cmdline", p.cmdline}};
}

inline nlohmann::json to_json(const SnapshotInfo& s) {
  return {{"name", s.name},
          {"description", s.description},
          {"parent", s.parent},
          {"creation_time_ns", s.creation_time_ns},
          {"vm_state", to_string(s.vm_state)},
          {"current", s.current}};
}

// One audit log entry, as `cloudctl audit --json` prints it.
inline nlohmann::json to_json(const AuditEntry& e) {
  nlohmann::json args = nlohmann::json::array();
  for (const auto& [k, v] : e.arguments) {
    args.push_back({{"name", k}, {"value", v}});
  }
  return {{"received_ns", e.received_ns},
          {"command_id", e.command_id},
          {"issuer", e.issuer},
          {"claimed_issuer", e.claimed_issuer},
          {"target", e.target.partition()},
          {"verb", e.verb},
          {"arguments", args},
          {"completed_ns", e.completed_ns},
          {"code", status_code_name(e.result.code())},
          {"message", e.result.message()}};
}

}  // namespace cloudmgr::tools
