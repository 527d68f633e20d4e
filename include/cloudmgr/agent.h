// cloudmgr::Agent: the per-host hypervisor manager, embeddable (cloudmgr-agent is a thin
// main around it).
//
// It publishes its host and VM state (at start, on every libvirt lifecycle event, and on a
// refresh period), executes the commands addressed to its host, its groups or all hosts,
// replies to each, and keeps its groups and a command journal in its state directory:
//   groups.json      the host's groups (written atomically)
//   commands.jsonl   one line per command received: executed at most once, even across
//                    restarts; entries past their deadline are dropped at start
//   audit.jsonl      every command received: when, its id, who sent it (the identity
//                    DDS-Security authenticated), verb, arguments and outcome; append-only
//                    (read it with read_audit_log, or through the bus with "host.audit")
//   metrics.db       monitoring history (SQLite): raw ticks and rollups, bounded by the
//                    retention (HistoryRetention), kept across restarts
//   images/          the host's storage pool for templates (AgentOptions::image_dir):
//                    base images, verified by SHA-256 when they arrive, and the VMs'
//                    copy-on-write clones of them
//
// Monitoring: every sample_ms the agent reads its hypervisor's counters in one bulk call,
// turns them into rates (docs/monitoring.md), publishes one HostSample (its VMs included)
// and records it in its history, which managers query with the "monitor.history" verb.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cloudmgr/export.h"
#include "cloudmgr/hypervisor.h"
#include "cloudmgr/metrics.h"
#include "cloudmgr/spi/transport.h"
#include "cloudmgr/status.h"

namespace cloudmgr {

struct AgentOptions {
  HypervisorOptions hypervisor;     // hypervisor.host_id is required
  std::vector<std::string> groups;  // initial groups, used when the state directory has none
  std::string state_dir;            // created if missing; required
  spi::TransportConfig transport;
  std::uint32_t refresh_ms = 5000;  // full re-read of host and VM state
  std::uint32_t workers = 4;        // commands executed at once
  std::uint32_t sample_ms = 1000;   // monitoring tick; 0 turns monitoring off; else >= 100
  bool history = true;              // keep history in <state_dir>/metrics.db
  HistoryRetention retention;
  // Templates: where base images and the VMs' clones live (a directory the hypervisor can
  // read; QEMU runs as its own user), and the hypervisor storage pool over it. Empty =
  // <state_dir>/images and "cloudmgr-<host id>".
  std::string image_dir;
  std::string storage_pool;
  // Secured (transport.pki_dir set): a manager this agent discovered that has not matched the
  // host's state after this long (plus up to half as much jitter) is a secure handshake Fast
  // DDS 2.9.1 lost for good; the agent then renews its DDS participant and publishes its state
  // again. The wait doubles after each renewal, up to 8 times this. 0 = never.
  // 15 s: a handshake that is only slow (32 agents meeting a new manager on a loaded machine
  // took over 8 s) must not be taken as lost, since a renewal restarts this agent's handshakes
  // with every manager; and a short-lived manager (cloudctl) reconnects on its own within ~10 s.
  std::uint32_t heal_after_ms = 15000;
};

// Owns its hypervisor connection, its transport link and its threads. Thread-safe.
class CLOUDMGR_API Agent {
 public:
  // Opens the hypervisor and the transport, publishes the host's state, and starts
  // taking commands. kInvalidArgument for bad options (host id, groups, state directory),
  // kUnavailable when the hypervisor or transport cannot be opened.
  static Result<std::unique_ptr<Agent>> start(AgentOptions options);
  // Stops taking commands, waits for running ones, and leaves cleanly (managers see the
  // host leave at once). Destroying a running Agent does the same.
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  const std::string& host_id() const noexcept;
  std::vector<std::string> groups() const;
  // Commands executed since start (duplicates and rejected ones excluded).
  std::uint64_t commands_executed() const noexcept;
  // Monitoring ticks published since start.
  std::uint64_t samples_published() const noexcept;
  // DDS participants renewed since start to heal lost secure handshakes (heal_after_ms).
  std::uint64_t participant_renewals() const noexcept;

  // Stops without leaving, as a crash would look to managers (tests).
  void abandon();

 private:
  struct Impl;
  explicit Agent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The entries of an agent's audit log (<state_dir>/audit.jsonl) received at or after
// `since_ns`, oldest first, at most the newest `max_entries` (0: all). A line that does not
// parse (a write a crash cut short) is skipped. kNotFound when there is no log, kUnavailable
// when it cannot be read.
CLOUDMGR_API Result<std::vector<AuditEntry>> read_audit_log(const std::string& path, std::int64_t since_ns,
                                                            std::size_t max_entries);

}  // namespace cloudmgr
