// The cloud as managers see it, and the commands they send: value types shared by the
// Manager, the Agent and the transports. Plain structs, copyable, not synchronized.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cloudmgr/export.h"
#include "cloudmgr/metrics.h"
#include "cloudmgr/model.h"
#include "cloudmgr/status.h"
#include "cloudmgr/templates.h"

namespace cloudmgr {

// A host as its agent publishes it.
struct HostView {
  HostInfo info;                    // info.id is the host id
  std::vector<std::string> groups;  // sorted, unique
  std::string agent_version;
  std::int64_t agent_started_ns = 0;
  std::int64_t updated_ns = 0;  // when the agent took this sample (its clock)

  friend bool operator==(const HostView&, const HostView&) = default;
};

// A VM on a host, as its agent publishes it.
struct VmView {
  std::string host_id;
  VmInfo vm;
  std::int64_t updated_ns = 0;

  friend bool operator==(const VmView&, const VmView&) = default;
};

// A VM that uses a cached base image (its first disk is a copy-on-write clone of it).
struct ImageUser {
  std::string vm_uuid;
  std::string vm_name;
  std::string template_name;
  std::uint32_t template_version = 0;

  friend bool operator==(const ImageUser&, const ImageUser&) = default;
};

// A base image a host has cached, verified by its SHA-256 when it arrived.
struct CachedImage {
  ImageInfo info;
  std::vector<ImageUser> users;  // sorted by VM name

  friend bool operator==(const CachedImage&, const CachedImage&) = default;
};

// The base images one host has cached, as its agent publishes them.
struct HostImages {
  std::string host_id;
  std::vector<CachedImage> images;  // sorted by SHA-256
  std::int64_t updated_ns = 0;

  friend bool operator==(const HostImages&, const HostImages&) = default;
};

// A piece of a base image in transit (see the "image.receive" verb).
struct ImageChunk {
  std::string transfer_id;
  std::string sha256;
  std::uint64_t offset_bytes = 0;
  std::vector<std::uint8_t> data;  // at most kImageChunkBytes

  friend bool operator==(const ImageChunk&, const ImageChunk&) = default;
};
inline constexpr std::size_t kImageChunkBytes = 60000;  // one UDP datagram with its headers

// Where a command goes: one host, one group, or every host.
struct Target {
  enum class Kind : std::uint8_t { kHost = 0, kGroup, kAll };
  Kind kind = Kind::kAll;
  std::string name;  // host id or group name; empty for kAll

  static Target host(std::string id) { return {Kind::kHost, std::move(id)}; }
  static Target group(std::string name) { return {Kind::kGroup, std::move(name)}; }
  static Target all() { return {Kind::kAll, {}}; }

  // "host.<id>", "group.<name>" or "all": the DDS partition and the wire form.
  CLOUDMGR_API std::string partition() const;
  // Inverse of partition(); kInvalidArgument naming the text for anything else.
  CLOUDMGR_API static Result<Target> parse(std::string_view text);

  friend bool operator==(const Target&, const Target&) = default;
};

// Group names follow the VM-name alphabet: 1-64 letters, digits, '.', '_', '-'.
CLOUDMGR_API Status validate_group_name(std::string_view name);
// Host ids likewise.
CLOUDMGR_API Status validate_host_id(std::string_view id);

using Arguments = std::vector<std::pair<std::string, std::string>>;

// A command as it travels from a manager to agents.
struct Command {
  std::string id;      // unique (a random uuid); agents execute each id at most once
  std::string issuer;  // the sending manager's name
  Target target;
  std::string verb;  // see docs/commands.md
  Arguments arguments;
  std::int64_t issued_ns = 0;
  std::int64_t deadline_ns = 0;  // agents reject the command if it arrives later
  // Set by the receiving transport, never sent: the certificate subject DDS-Security
  // authenticated for the participant that wrote the command ("CN=admin, OU=manager,
  // O=cloudmgr"), whatever `issuer` claims. Empty when security is off.
  std::string authenticated_issuer;

  friend bool operator==(const Command&, const Command&) = default;
};

// One command as an agent's audit log recorded it (the "host.audit" verb, docs/security.md).
struct AuditEntry {
  std::int64_t received_ns = 0;  // when the agent received it (the agent's clock)
  std::string command_id;
  // The certificate subject DDS-Security authenticated for the sending participant
  // ("CN=admin, OU=manager, O=cloudmgr"); empty when the agent ran without security.
  std::string issuer;
  std::string claimed_issuer;  // the issuer the command named (never verified)
  Target target;
  std::string verb;
  Arguments arguments;
  std::int64_t completed_ns = 0;  // 0: no outcome recorded (still running, or the agent stopped meanwhile)
  Status result;

  friend bool operator==(const AuditEntry&, const AuditEntry&) = default;
};

// One host's answer to one command.
struct CommandReply {
  std::string command_id;
  std::string host_id;
  Status status;  // OK, or the error the host met
  std::int64_t completed_ns = 0;
  std::vector<ProcessInfo> processes;   // "host.ps"
  std::vector<SnapshotInfo> snapshots;  // "snapshot.list", "snapshot.create"
  std::vector<VmInfo> vms;              // "vm.define", "vm.show"
  std::vector<HistorySeries> history;   // "monitor.history"
  std::vector<AuditEntry> audit;        // "host.audit", oldest first (on DDS: an AuditReply)
};

// Nanoseconds since the Unix epoch, now.
CLOUDMGR_API std::int64_t now_ns() noexcept;
// A random (version 4) uuid.
CLOUDMGR_API std::string random_uuid();

}  // namespace cloudmgr
