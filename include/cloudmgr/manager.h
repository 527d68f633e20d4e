// cloudmgr::Manager: the whole cloud as one system. Sees every host and VM that agents
// publish, and executes verbs on one host, a group of hosts, or all of them.
//
//   auto m = cloudmgr::Manager::open({});
//   (*m)->wait_for_hosts(3, std::chrono::seconds(10));
//   auto r = (*m)->execute(cloudmgr::Target::group("web"), "vm.start", {{"vm", "web1"}});
//   for (const auto& h : r->hosts) std::cout << h.host_id << " " << h.status << "\n";
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cloudmgr/cloud.h"
#include "cloudmgr/export.h"
#include "cloudmgr/spi/transport.h"
#include "cloudmgr/status.h"

namespace cloudmgr {

struct ManagerOptions {
  spi::TransportConfig transport;
  std::string name;  // shown to agents as the issuer; empty = "manager-<pid>"
};

// One host's part of a command's result.
struct HostResult {
  enum class Outcome : std::uint8_t {
    kOk = 0,   // the host executed the command
    kError,    // the host answered with an error (status says which)
    kNoReply,  // the host did not answer before the deadline
  };
  std::string host_id;
  Outcome outcome = Outcome::kNoReply;
  Status status;                // OK, the host's error, or DEADLINE_EXCEEDED for no reply
  CommandReply reply;           // the reply's payload (processes, snapshots, vms) when one came
  std::int64_t latency_ns = 0;  // from send to reply, when one came
};

CLOUDMGR_API std::string_view to_string(HostResult::Outcome outcome) noexcept;

// The result of one command: one entry per expected host, sorted by host id.
struct CommandResult {
  std::string command_id;
  Target target;
  std::string verb;
  std::vector<HostResult> hosts;

  CLOUDMGR_API std::size_t count(HostResult::Outcome outcome) const noexcept;
  bool all_ok() const noexcept { return count(HostResult::Outcome::kOk) == hosts.size(); }
};

struct ExecuteOptions {
  std::chrono::milliseconds timeout{30'000};  // the command's deadline, from now
  // Called as each expected host's result becomes known (on a transport thread): its
  // result, how many are known, how many are expected.
  std::function<void(const HostResult&, std::size_t done, std::size_t expected)> on_progress;
};

// A host in the manager's view.
struct HostEntry {
  HostView view;
  std::int64_t last_seen_ns = 0;  // when this manager last heard of it (its clock)
};

// Thread-safe. Owns its transport participant.
class CLOUDMGR_API Manager {
 public:
  // Joins the data space; already published hosts and VMs arrive at once (in the
  // background: use wait_for_hosts to wait for them).
  static Result<std::unique_ptr<Manager>> open(ManagerOptions options);
  // Waits for commands in flight to finish (each ends by its deadline).
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  const std::string& name() const noexcept;

  // Hosts now online, sorted by id.
  std::vector<HostEntry> hosts() const;
  std::optional<HostEntry> host(const std::string& id) const;
  // VMs, sorted by host then name; only those of `host_id` / of hosts in `group` when given.
  std::vector<VmView> vms(const std::optional<std::string>& host_id = std::nullopt,
                          const std::optional<std::string>& group = std::nullopt) const;
  // Group name -> member host ids, from the hosts' published groups.
  std::map<std::string, std::vector<std::string>> groups() const;
  // The hosts a command to `target` expects to hear from now. kNotFound for an unknown
  // host or a group with no member; kInvalidArgument for a malformed name.
  Result<std::vector<std::string>> expected_hosts(const Target& target) const;

  // Waits until at least `count` hosts are online. kDeadlineExceeded saying how many are.
  Status wait_for_hosts(std::size_t count, std::chrono::milliseconds timeout);
  // Waits until `predicate` holds for the current view (re-evaluated on every change).
  Status wait_until(const std::function<bool(const Manager&)>& predicate, std::chrono::milliseconds timeout);

  // Sends `verb` to `target` and gathers every expected host's result until all answered
  // or the deadline passed. The verb and arguments are checked first (kInvalidArgument),
  // and the target must name known hosts (kNotFound): then nothing is sent.
  Result<CommandResult> execute(const Target& target, const std::string& verb, const Arguments& arguments,
                                const ExecuteOptions& options = {});
  // The same without blocking: `done` runs once, on a transport or timer thread or, for a
  // command refused before sending, on the calling thread. `done` must return promptly
  // and must not wait for another command (execute(), a future's get()): it would wait
  // on the thread that concludes commands.
  void execute_async(const Target& target, const std::string& verb, const Arguments& arguments,
                     const ExecuteOptions& options, std::function<void(Result<CommandResult>)> done);
  std::future<Result<CommandResult>> execute_async(const Target& target, const std::string& verb,
                                                   const Arguments& arguments, const ExecuteOptions& options = {});

 private:
  struct Impl;
  explicit Manager(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace cloudmgr
