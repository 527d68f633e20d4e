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
#include "cloudmgr/metrics.h"
#include "cloudmgr/placement.h"
#include "cloudmgr/spi/template_store.h"
#include "cloudmgr/spi/transport.h"
#include "cloudmgr/status.h"
#include "cloudmgr/templates.h"

namespace cloudmgr {

struct ManagerOptions {
  spi::TransportConfig transport;
  std::string name;  // shown to agents as the issuer; empty = "manager-<pid>"
  // Receive the hosts' monitoring ticks (HostMetrics). Off for a manager that never looks at
  // samples (saves their traffic); samples() is then always empty.
  bool samples = true;
  // A file where the manager remembers the hosts it has seen (JSON, written atomically when
  // it closes). Hosts listed there and not online yet start in the view as offline, with
  // their last-seen time, so that a short-lived manager (each cloudctl call) can show a host
  // whose agent died while no manager was watching. Hosts that left cleanly are dropped from
  // it. Empty: no inventory.
  std::string inventory_path;
  // The template store's directory (created if missing; docs/templates.md). Empty: no
  // store, and the template calls fail with kFailedPrecondition.
  std::string template_dir;
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
  // Called as each expected host's result becomes known (on the Manager's callback thread,
  // every call before the command's result is delivered): its result, how many are known,
  // how many are expected.
  std::function<void(const HostResult&, std::size_t done, std::size_t expected)> on_progress;
};

// A host in the manager's view.
struct HostEntry {
  enum class State : std::uint8_t {
    kOnline = 0,
    kOffline,  // its agent stopped answering (liveliness lost); it may come back
  };
  HostView view;  // for a host known only from the inventory: its id, hostname and groups
  State state = State::kOnline;
  std::int64_t last_seen_ns = 0;      // when this manager last heard from it (its clock)
  std::int64_t offline_since_ns = 0;  // when it was marked offline (0 while online)

  bool online() const noexcept { return state == State::kOnline; }
};

CLOUDMGR_API std::string_view to_string(HostEntry::State state) noexcept;

// Keeps a subscription (samples, events) alive; destroying it unsubscribes. After the
// destructor returns the callback is not running and is never called again (unless it runs on
// the callback's own thread, from inside the callback: then only the second holds).
class CLOUDMGR_API Subscription {
 public:
  virtual ~Subscription();
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

 protected:
  Subscription() = default;
};

// A change of the manager's view of the cloud (subscribe_events). Hosts and VMs enter and leave
// the view as their agents publish them, so a subscriber that applies every event to a copy of
// the view (starting from the replayed one) holds what hosts() and vms() return.
struct CloudEvent {
  enum class Kind : std::uint8_t {
    kHostOnline = 0,     // a host entered the view, or came back after going offline
    kHostOffline,        // its agent stopped answering (liveliness lost); it stays in the view
    kHostLeft,           // it left the view: its agent stopped cleanly, or forget_host dropped it
    kHostGroupsChanged,  // its published groups changed (`groups` has the new ones)
    kVmAdded,            // a VM entered the view: defined on a host, or its host came (back) online
    kVmStateChanged,     // a VM's state changed: old_state -> state
    kVmRemoved,          // a VM left the view: undefined, or its host went offline or left (`reason`)
    kEventsLost,         // the subscriber fell `lost` events behind and they were dropped: re-read the view
  };
  Kind kind = Kind::kHostOnline;
  std::int64_t time_ns = 0;  // when this manager saw the change (its clock)
  std::string host_id;       // every kind but kEventsLost
  // Host events: the host's groups. VM events: empty.
  std::vector<std::string> groups;
  // VM events: the VM.
  std::string vm_uuid;
  std::string vm_name;
  VmState old_state = VmState::kUnknown;  // kVmStateChanged: before; kVmRemoved: its last state
  VmState state = VmState::kUnknown;      // kVmAdded, kVmStateChanged: now
  // kVmAdded, kVmStateChanged: the VM's state reason ("booted", "destroyed", ...).
  // kVmRemoved: "undefined", "host offline" or "host left". kHostLeft: "stopped" or "forgotten".
  std::string reason;
  std::uint64_t lost = 0;  // kEventsLost: how many
};

CLOUDMGR_API std::string_view to_string(CloudEvent::Kind kind) noexcept;

struct EventOptions {
  // Deliver the current view first, as kHostOnline / kHostOffline for each host followed by
  // kVmAdded for each of its VMs, taken at the moment of subscribing (so nothing falls between
  // the replay and the live events).
  bool replay = false;
  // Events queued for the subscriber at most; past it, events are dropped and counted, and a
  // kEventsLost event says how many once the subscriber catches up.
  std::size_t max_queued = 65536;
};

// What to provision: `count` VMs of one template, placed together by a policy.
struct CreateVmsRequest {
  std::string name;  // the VM's name; with count > 1 the VMs are <name>-1 ... <name>-<count>
  TemplateRef template_ref;
  std::optional<Target> where;  // one host or one group; nullopt = every online host
  PlacementPolicy policy = PlacementPolicy::kPack;
  std::uint32_t count = 1;
  bool start = false;
  Overcommit overcommit;
  // The whole request, base image transfers included.
  std::chrono::milliseconds timeout{600'000};
  // Called with one line for each step (placement, transfers, provisioning), on the calling
  // thread or a transport thread.
  std::function<void(const std::string& step)> on_progress;
};

struct CreatedVm {
  std::string host_id;
  VmInfo vm;
};

struct CreateVmsResult {
  TemplateInfo template_info;
  std::vector<CreatedVm> vms;              // in the order of their names
  std::vector<std::string> image_sent_to;  // hosts that did not have the base image cached
  std::uint64_t image_bytes_sent = 0;      // data bytes sent to each of them (holes are not sent)
  std::int64_t transfer_ns = 0;            // time spent sending the base image
  std::int64_t provision_ns = 0;           // time spent cloning, defining (and starting) the VMs
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

  // Hosts known to this manager, sorted by id: online ones, and those whose agent died
  // (offline; their VMs are no longer listed). A host whose agent stopped cleanly leaves
  // the view at once.
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

  // Secured: identities ("agent.node1") of agents this manager's participant discovered at
  // least `min_age` ago whose host record has not arrived (and that were not refused): a secure
  // handshake Fast DDS 2.9.1 lost for good. A short-lived manager that sees one may reopen (a
  // new participant); agents heal their side themselves (AgentOptions::heal_after_ms).
  // Empty when unsecured.
  std::vector<std::string> unreached_agents(std::chrono::milliseconds min_age) const;

  // Gets sending to `target` ready ahead of its first command (on DDS its writer is created now
  // and matched with the target's hosts in the background; secured, that takes ~3 s for 32
  // hosts, which the first command would otherwise wait). A long-lived manager calls it for the
  // targets it will use. kInvalidArgument for a malformed host or group name.
  Status prepare(const Target& target);

  // Drops an offline host from the view (and from the inventory when the manager closes).
  // kNotFound for an unknown host, kFailedPrecondition for an online one.
  Status forget_host(const std::string& id);

  // ---- monitoring ----
  // The latest monitoring tick of every online host, sorted by host id (each carries its
  // VMs' samples). Ticks older than the one held are dropped (reordered delivery).
  std::vector<HostSample> samples() const;
  std::optional<HostSample> sample(const std::string& host_id) const;
  // The latest sample of one VM (by name or uuid) on any online host.
  std::optional<VmSample> vm_sample(const std::string& vm) const;
  // Calls `callback` with every tick that arrives from now on, on a transport thread, never
  // under the manager's lock, one at a time. It must return promptly. kInvalidArgument for an
  // empty callback; kFailedPrecondition when the manager was opened with samples off.
  Result<std::unique_ptr<Subscription>> subscribe_samples(std::function<void(const HostSample&)> callback);
  // Calls `callback` with every change of the view from now on (CloudEvent), in the order the
  // view changed, one at a time, on the manager's event thread (never a transport thread, never
  // under the manager's lock), so the callback may call the manager, execute() included, but
  // must not destroy it. kInvalidArgument for an empty callback or max_queued 0.
  Result<std::unique_ptr<Subscription>> subscribe_events(std::function<void(const CloudEvent&)> callback,
                                                         const EventOptions& options = {});
  // History kept by the target's hosts: one "monitor.history" command, one series per host in
  // each host's result (reply.history). query.since_ns 0 means an hour ago.
  Result<CommandResult> history(const Target& target, const HistoryQuery& query, const ExecuteOptions& options = {});

  // ---- templates (docs/templates.md) ----
  // The store's calls, as spi::TemplateStore documents them; kFailedPrecondition without a
  // template_dir.
  Result<TemplateInfo> import_template(const spi::ImportRequest& request);
  Result<std::vector<TemplateInfo>> templates();
  Result<std::vector<TemplateInfo>> template_versions(const std::string& name);
  Result<TemplateInfo> get_template(const TemplateRef& ref);
  Status verify_template(const TemplateRef& ref);
  Result<std::vector<std::string>> export_template(const TemplateRef& ref, const std::string& dir);
  Result<TemplateInfo> import_exported_template(const std::string& json_path, const std::string& name);
  // Removes a template version (ref.version 0: every version). Refused with
  // kFailedPrecondition, naming them, while VMs on online hosts are clones of it, unless
  // `force` (the VMs keep running: their hosts keep the base image they use).
  Status delete_template(const TemplateRef& ref, bool force);
  // The base images each online host has cached, and the VMs that use them; sorted by host.
  std::vector<HostImages> host_images() const;
  // Provisions VMs from a template: places the batch (kResourceExhausted saying why nothing
  // fits), sends the base image to the chosen hosts that lack it (verified by SHA-256 on
  // both ends: kDataLoss when it does not match), and has each host clone it and define
  // (and start) its VMs. All or nothing: when a host fails, the VMs already made are
  // removed again. kNotFound for a missing template; kAlreadyExists for a name taken on any
  // host. Nothing is sent before the request is checked.
  Result<CreateVmsResult> create_vms(const CreateVmsRequest& request);
  // Makes the next version of template `name` from a shut-off VM ("vm.capture"): its host
  // flattens the VM's first disk into one standalone qcow2 and sends it on the bus, and the
  // store takes it, checked against the SHA-256 the host computed (kDataLoss otherwise: nothing
  // is kept). The spec is the VM's: vCPUs, memory, the disk's bus, its NICs (without MACs), its
  // description. options.timeout bounds the whole capture. kNotFound for an unknown VM,
  // kFailedPrecondition for one that is not shut off, kUnimplemented for a simulated host
  // (its disks are not files).
  Result<TemplateInfo> capture_template(const std::string& host_id, const std::string& vm, const std::string& name,
                                        const ExecuteOptions& options = {});
  // Removes a VM and the disks provisioned for it ("vm.delete"; a base image stays).
  Result<CommandResult> delete_vm(const std::string& host_id, const std::string& vm, bool force,
                                  const ExecuteOptions& options = {});

  // Waits until at least `count` hosts are online. kDeadlineExceeded saying how many are.
  Status wait_for_hosts(std::size_t count, std::chrono::milliseconds timeout);
  // Waits until `predicate` holds for the current view (re-evaluated on every change).
  Status wait_until(const std::function<bool(const Manager&)>& predicate, std::chrono::milliseconds timeout);

  // Sends `verb` to `target` and gathers every expected host's result until all answered
  // or the deadline passed. The verb and arguments are checked first (kInvalidArgument),
  // and the target must name known hosts (kNotFound): then nothing is sent.
  Result<CommandResult> execute(const Target& target, const std::string& verb, const Arguments& arguments,
                                const ExecuteOptions& options = {});
  // The same without blocking: `done` runs once, on the Manager's callback thread (one
  // callback at a time, in order, never on a transport thread) or, for a command refused
  // before sending, on the calling thread. `done` should return promptly: the callbacks of
  // other commands wait behind it. It may call execute() or a future's get(), but must not
  // wait for a command that has an on_progress or a `done` of its own: that command's
  // callbacks would queue behind the one waiting for them.
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
