// cloudmgr::Agent: publishes its host, executes commands, keeps its groups and journal.
#include "cloudmgr/agent.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <shared_mutex>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cloudmgr/spi/metrics_store.h"
#include "cloudmgr/templates.h"
#include "cloudmgr/verbs.h"
#include "cloudmgr/version.h"
#include "core/arguments.h"
#include "core/audit.h"
#include "core/image_cache.h"
#include "core/journal.h"
#include "core/provisioner.h"
#include "core/rates.h"
#include "core/status_macros.h"

namespace cloudmgr {

namespace {

// Verbs that change nothing on the host (host.info only republishes its state): executing one
// twice is harmless, so they are not journaled (at most once is for the others).
bool is_read_only(std::string_view verb) {
  static constexpr std::array<std::string_view, 7> kReadOnly = {
      "host.ping", "host.info", "host.ps", "host.audit", "vm.show", "snapshot.list", "monitor.history"};
  return std::find(kReadOnly.begin(), kReadOnly.end(), verb) != kReadOnly.end();
}

// "host.audit" answers with the newest entries: this many unless asked, at most the maximum
// (a reply of ~300 bytes per entry).
constexpr std::uint64_t kAuditReplyEntries = 1000;
constexpr std::uint64_t kAuditReplyEntriesMax = 10000;

std::vector<std::string> normalized(std::vector<std::string> groups) {
  std::sort(groups.begin(), groups.end());
  groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
  return groups;
}

Result<std::vector<std::string>> load_groups(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return not_found_error("no groups file");
  }
  std::stringstream text;
  text << in.rdbuf();
  const auto j = nlohmann::json::parse(text.str(), nullptr, false);
  if (!j.is_object() || !j.contains("groups") || !j["groups"].is_array()) {
    return invalid_argument_error(fmt::format("groups file '{}' is not of the form {{\"groups\": [...]}}", path));
  }
  std::vector<std::string> groups;
  for (const auto& g : j["groups"]) {
    if (!g.is_string() || !validate_group_name(g.get<std::string>()).ok()) {
      return invalid_argument_error(fmt::format("groups file '{}' holds an invalid group name", path));
    }
    groups.push_back(g.get<std::string>());
  }
  return normalized(std::move(groups));
}

// VmInfo without the always-moving CPU time: what decides whether to republish.
bool same_definition(VmInfo a, VmInfo b) {
  a.cpu_time_ns = 0;
  b.cpu_time_ns = 0;
  return a == b;
}

}  // namespace

// Members stay next to the mutex that guards them; there is one Impl per agent, so its
// padding does not matter.
struct Agent::Impl {  // NOLINT(clang-analyzer-optin.performance.Padding)
  AgentOptions options;
  std::int64_t started_ns = now_ns();
  std::unique_ptr<Hypervisor> hv;
  // The participant and the host's link. A renewal (heal_loop) replaces both under the
  // exclusive lock; everything else uses the link under the shared lock (with_link).
  mutable std::shared_mutex link_mutex;
  std::unique_ptr<spi::Transport> transport;  // GUARDED_BY(link_mutex)
  std::unique_ptr<spi::AgentLink> link;       // GUARDED_BY(link_mutex)
  spi::AgentCallbacks link_callbacks;
  std::unique_ptr<spi::Subscription> events;
  std::unique_ptr<CommandJournal> journal;
  std::unique_ptr<AuditLog> audit;
  std::string audit_path;
  std::string groups_path;

  mutable std::mutex groups_mutex;
  std::vector<std::string> groups;  // GUARDED_BY(groups_mutex)

  std::mutex publish_mutex;                 // serializes publishing
  std::map<std::string, VmInfo> published;  // GUARDED_BY(publish_mutex): uuid -> last published

  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  std::deque<Command> queue;  // GUARDED_BY(queue_mutex)
  bool stopping = false;      // GUARDED_BY(queue_mutex)
  std::vector<std::thread> workers;

  std::mutex refresh_mutex;
  std::condition_variable refresh_cv;
  std::set<std::string> dirty_vms;  // GUARDED_BY(refresh_mutex): uuids touched by events
  bool refresh_stop = false;        // GUARDED_BY(refresh_mutex)
  std::thread refresher;

  std::mutex group_change_mutex;  // serializes group.join / group.leave

  std::mutex in_flight_mutex;
  std::set<std::string> in_flight;  // GUARDED_BY(in_flight_mutex): ids executing in this process

  std::unique_ptr<spi::MetricsStore> history;  // null when history is off
  std::mutex sampler_mutex;
  std::condition_variable sampler_cv;
  bool sampler_stop = false;  // GUARDED_BY(sampler_mutex)
  std::thread sampler;
  std::atomic<std::uint64_t> samples{0};

  std::unique_ptr<ImageCache> images;
  std::unique_ptr<Provisioner> provisioner;  // null when the hypervisor has no storage API
  std::mutex images_mutex;
  HostImages published_images;  // GUARDED_BY(images_mutex)

  std::mutex heal_mutex;
  std::condition_variable heal_cv;
  bool heal_stop = false;  // GUARDED_BY(heal_mutex)
  std::thread healer;
  std::atomic<std::uint64_t> renewals{0};

  std::atomic<std::uint64_t> executed{0};
  std::atomic<bool> abandoned{false};
  bool images_published = false;  // GUARDED_BY(images_mutex); next to the other one-byte member

  const std::string& host_id() const { return options.hypervisor.host_id; }

  std::vector<std::string> current_groups() const {
    const std::lock_guard lock(groups_mutex);
    return groups;
  }

  // ---- the link ------------------------------------------------------------------------

  // f(link) under the shared lock; kUnavailable while a failed renewal left no link.
  template <typename F>
  Status with_link(F&& f) const {
    const std::shared_lock lock(link_mutex);
    if (!link) {
      return unavailable_error("the agent has no DDS participant (its renewal failed; retried)");
    }
    return std::forward<F>(f)(*link);
  }

  // A new participant and link in place of the old ones, and the host's state published
  // again through them. The old link goes without leaving: managers that reached it see its
  // writers go and the same records come back from the new one.
  Status renew_transport() {
    {
      const std::lock_guard publish_lock(publish_mutex);
      const std::unique_lock lock(link_mutex);
      link.reset();
      transport.reset();
      published.clear();
      CLOUDMGR_ASSIGN_OR_RETURN(transport, spi::open_transport(options.transport));
      CLOUDMGR_ASSIGN_OR_RETURN(link, transport->open_agent(host_id(), current_groups(), link_callbacks));
    }
    {
      const std::lock_guard lock(images_mutex);
      images_published = false;
    }
    ++renewals;
    CLOUDMGR_RETURN_IF_ERROR(sync_all());
    return publish_host();
  }

  // Secured: a manager discovered but not matched with this host's state after the wait
  // (heal_after_ms plus up to half as much jitter) is a secure handshake Fast DDS 2.9.1 lost
  // for good, on our side or the manager's; a new participant starts every handshake of this
  // agent again. The wait doubles after each renewal, up to 8 times heal_after_ms, and starts
  // over once that long has passed without one.
  void heal_loop() {
    constexpr auto kPoll = std::chrono::milliseconds(500);
    constexpr int kMaxDoublings = 3;
    std::mt19937_64 rng(std::random_device{}() ^ static_cast<std::uint64_t>(now_ns()));
    const std::chrono::milliseconds base(options.heal_after_ms);
    const std::chrono::milliseconds longest = base * (1 << kMaxDoublings);
    std::chrono::milliseconds wait = base;
    const auto draw = [&] {
      std::uniform_int_distribution<std::int64_t> jitter(0, wait.count() / 2);
      return wait + std::chrono::milliseconds(jitter(rng));
    };
    std::chrono::milliseconds threshold = draw();
    auto last_renewal = std::chrono::steady_clock::now();
    for (;;) {
      {
        std::unique_lock lock(heal_mutex);
        if (heal_cv.wait_for(lock, kPoll, [&] { return heal_stop; })) {
          return;
        }
      }
      std::vector<std::string> unreached;
      bool have_link = false;
      {
        const std::shared_lock lock(link_mutex);
        if (link) {
          have_link = true;
          unreached = link->unreached_managers(threshold);
        }
      }
      if (have_link && unreached.empty()) {
        if (wait != base && std::chrono::steady_clock::now() - last_renewal > longest) {
          wait = base;
          threshold = draw();
        }
        continue;
      }
      if (have_link) {
        fmt::print(stderr,
                   "agent {}: {} not reached {:.1f} s after discovery (a secure handshake Fast DDS 2.9.1 lost); "
                   "renewing this agent's DDS participant\n",
                   host_id(), fmt::join(unreached, ", "), static_cast<double>(threshold.count()) / 1000.0);
      }
      if (Status s = renew_transport(); !s.ok()) {
        fmt::print(stderr, "agent {}: renewing the DDS participant failed (retried): {}\n", host_id(), s.message());
      }
      last_renewal = std::chrono::steady_clock::now();
      wait = std::min(wait * 2, longest);
      threshold = draw();
    }
  }

  // ---- publishing ------------------------------------------------------------------------

  Status publish_host() {
    CLOUDMGR_ASSIGN_OR_RETURN(HostInfo info, hv->host_info());
    const std::lock_guard lock(publish_mutex);
    // Groups are read under publish_mutex: a publication never carries groups older than
    // one already published (the transport re-subscribes from them).
    HostView view{std::move(info), current_groups(), std::string(version()), started_ns, now_ns()};
    return with_link([&](spi::AgentLink& l) { return l.publish_host(view); });
  }

  Status publish_vm_locked(const VmInfo& vm) {  // REQUIRES(publish_mutex)
    auto it = published.find(vm.uuid);
    if (it != published.end() && same_definition(it->second, vm)) {
      return {};
    }
    CLOUDMGR_RETURN_IF_ERROR(with_link([&](spi::AgentLink& l) {
      return l.publish_vm(VmView{host_id(), vm, now_ns()});
    }));
    published[vm.uuid] = vm;
    return {};
  }

  // Re-reads every VM: publishes the changed ones, removes the vanished ones.
  Status sync_all() {
    CLOUDMGR_ASSIGN_OR_RETURN(auto vms, hv->list_vms());
    {
      const std::lock_guard lock(publish_mutex);
      std::set<std::string> seen;
      for (const auto& vm : vms) {
        seen.insert(vm.uuid);
        CLOUDMGR_RETURN_IF_ERROR(publish_vm_locked(vm));
      }
      for (auto it = published.begin(); it != published.end();) {
        if (!seen.contains(it->first)) {
          CLOUDMGR_RETURN_IF_ERROR(with_link([&](spi::AgentLink& l) { return l.remove_vm(it->first); }));
          it = published.erase(it);
        } else {
          ++it;
        }
      }
    }
    return publish_images(vms);
  }

  // Publishes the cached images and their users when they changed.
  Status publish_images(const std::vector<VmInfo>& vms) {
    if (!provisioner) {
      return {};
    }
    HostImages now = provisioner->images(vms, now_ns());
    const std::lock_guard lock(images_mutex);
    HostImages before = published_images;
    before.updated_ns = now.updated_ns;
    if (images_published && before == now) {
      return {};
    }
    Status s = with_link([&](spi::AgentLink& l) { return l.publish_images(now); });
    if (s.code() == StatusCode::kUnimplemented) {
      return {};  // a transport without image lists: templates work, managers see no cache
    }
    CLOUDMGR_RETURN_IF_ERROR(s);
    published_images = std::move(now);
    images_published = true;
    return {};
  }

  Status publish_images() {
    CLOUDMGR_ASSIGN_OR_RETURN(auto vms, hv->list_vms());
    return publish_images(vms);
  }

  Status sync_vm(const std::string& uuid) {
    auto vm = hv->get_vm(VmRef::by_uuid(uuid));
    const std::lock_guard lock(publish_mutex);
    if (!vm.ok()) {
      if (vm.status().code() != StatusCode::kNotFound) {
        return vm.status();
      }
      if (published.erase(uuid) > 0) {
        return with_link([&](spi::AgentLink& l) { return l.remove_vm(uuid); });
      }
      return {};
    }
    return publish_vm_locked(*vm);
  }

  void refresh_loop() {
    auto next_full = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.refresh_ms);
    for (;;) {
      std::set<std::string> dirty;
      bool full = false;
      {
        std::unique_lock lock(refresh_mutex);
        refresh_cv.wait_until(lock, next_full, [&] { return refresh_stop || !dirty_vms.empty(); });
        if (refresh_stop) {
          return;
        }
        dirty.swap(dirty_vms);
        full = std::chrono::steady_clock::now() >= next_full || dirty.contains("");
      }
      // Errors here are transient (the hypervisor restarting...): the next pass retries.
      if (full) {
        (void)sync_all();
        next_full = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.refresh_ms);
      } else {
        for (const auto& uuid : dirty) {
          (void)sync_vm(uuid);
        }
      }
      (void)publish_host();
    }
  }

  // ---- monitoring ------------------------------------------------------------------------

  // One tick: counters -> rates -> publish + record. Ticks keep to their schedule; a read
  // slower than the period skips the ticks it overran (never a burst of catch-up reads).
  void sample_loop() {
    RateTracker rates(host_id());
    const auto period = std::chrono::milliseconds(options.sample_ms);
    auto next = std::chrono::steady_clock::now();
    bool warned = false;
    for (;;) {
      {
        std::unique_lock lock(sampler_mutex);
        if (sampler_cv.wait_until(lock, next, [&] { return sampler_stop; })) {
          return;
        }
      }
      next += period;
      auto counters = hv->read_counters();
      if (!counters.ok()) {
        if (counters.status().code() == StatusCode::kUnimplemented) {
          fmt::print(stderr, "agent {}: monitoring off: {}\n", host_id(), counters.status().message());
          return;
        }
        if (!warned) {  // transient (the hypervisor restarting): said once, retried every tick
          fmt::print(stderr, "agent {}: reading usage counters failed: {}\n", host_id(), counters.status().message());
          warned = true;
        }
        continue;
      }
      warned = false;
      const HostSample sample = rates.update(*counters);
      if (with_link([&](spi::AgentLink& l) { return l.publish_sample(sample); }).ok()) {
        ++samples;
      }
      if (history) {
        (void)history->record(sample);  // a full disk loses history, never the live view
      }
      const auto now = std::chrono::steady_clock::now();
      if (next < now) {
        next = now + period - (now - next) % period;
      }
    }
  }

  Result<HistorySeries> query_history(const ArgumentReader& a) const {
    if (!history) {
      return failed_precondition_error(fmt::format("host '{}' keeps no monitoring history", host_id()));
    }
    const auto i64 = [&](std::string_view name, std::uint64_t fallback) {
      return static_cast<std::int64_t>(std::min<std::uint64_t>(a.u64_or(name, fallback), INT64_MAX));
    };
    HistoryQuery q;
    q.vm = a.text_or("vm", "");
    q.since_ns = i64("since_ns", 0);
    q.until_ns = i64("until_ns", 0);
    q.step_ns = i64("step_ns", 0);
    q.max_points = static_cast<std::uint32_t>(std::min<std::uint64_t>(a.u64_or("max_points", 20'000), 1'000'000));
    CLOUDMGR_ASSIGN_OR_RETURN(HistorySeries series, history->query(q));
    series.host_id = host_id();
    return series;
  }

  void on_event(const VmEvent& e) {
    {
      const std::lock_guard lock(refresh_mutex);
      dirty_vms.insert(e.vm_uuid);
    }
    refresh_cv.notify_all();
  }

  // ---- commands --------------------------------------------------------------------------

  void enqueue(const Command& c) {
    {
      const std::lock_guard lock(queue_mutex);
      if (stopping) {
        return;
      }
      queue.push_back(c);
    }
    queue_cv.notify_one();
  }

  void worker_loop() {
    for (;;) {
      Command c;
      {
        std::unique_lock lock(queue_mutex);
        queue_cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (stopping) {
          return;  // queued commands are dropped: their managers see no reply
        }
        c = std::move(queue.front());
        queue.pop_front();
      }
      // Every command received is in the audit log before anything else happens to it; one
      // that may change the host is on the disk before it runs (a read-only one within a second).
      if (Status s = audit->received(c, now_ns(), !is_read_only(c.verb)); !s.ok()) {
        fmt::print(stderr, "agent {}: the audit log failed: {}\n", host_id(), s.message());
      }
      try {
        handle(c);
      } catch (const std::exception& e) {  // a bug must not take the agent down
        CommandReply reply;
        reply.command_id = c.id;
        reply.status = internal_error(fmt::format("the agent failed executing '{}': {}", c.verb, e.what()));
        send_reply(std::move(reply));
      }
    }
  }

  void send_reply(CommandReply reply) const {
    reply.host_id = host_id();
    reply.completed_ns = now_ns();
    if (Status s = audit->result(reply.command_id, reply.status, reply.completed_ns); !s.ok()) {
      fmt::print(stderr, "agent {}: the audit log failed: {}\n", host_id(), s.message());
    }
    // A lost reply shows as "no reply" at the manager.
    (void)with_link([&](spi::AgentLink& l) { return l.reply(reply); });
  }

  // Executes `c` unless it has no deadline, arrived past it or does not validate; the reply.
  CommandReply run_checked(const Command& c) {
    CommandReply reply;
    const std::int64_t now = now_ns();
    if (c.deadline_ns <= 0) {
      reply.status = invalid_argument_error("command has no deadline; not executed");
    } else if (now > c.deadline_ns) {
      reply.status = deadline_exceeded_error(
          fmt::format("command arrived {} ms after its deadline; not executed", (now - c.deadline_ns) / 1'000'000));
    } else if (Status s = validate_command(c.verb, c.arguments); !s.ok()) {
      reply.status = s;
    } else {
      reply = execute(c);
      ++executed;
    }
    reply.command_id = c.id;
    return reply;
  }

  void handle(const Command& c) {
    CommandReply reply;
    reply.command_id = c.id;
    if (is_read_only(c.verb)) {
      // Nothing to run at most once: a repeat reads again. No journal entry, so no two syncs.
      reply = run_checked(c);
      send_reply(std::move(reply));
      return;
    }
    auto earlier = journal->begin(c.id, c.verb, c.issuer, c.deadline_ns);
    if (!earlier.ok()) {
      reply.status = earlier.status().with_context("recording the command in the journal");
      send_reply(std::move(reply));
      return;
    }
    if (earlier->has_value()) {
      // Seen before: never execute twice. Answer with what happened the first time. A
      // duplicate of a command still executing here is dropped: its reply is coming.
      {
        const std::lock_guard lock(in_flight_mutex);
        if (in_flight.contains(c.id)) {
          return;
        }
      }
      const auto& e = **earlier;
      reply.status =
          e.done ? e.status : aborted_error("this command began before the agent restarted and is not executed again");
      send_reply(std::move(reply));
      return;
    }
    {
      const std::lock_guard lock(in_flight_mutex);
      in_flight.insert(c.id);
    }
    reply = run_checked(c);
    if (Status s = journal->finish(c.id, reply.status); !s.ok() && reply.status.ok()) {
      reply.status = s.with_context("the command ran but its outcome could not be journaled");
    }
    {
      // Before the reply: a duplicate that arrives once the reply is out must be answered
      // from the journal, not dropped as still in flight.
      const std::lock_guard lock(in_flight_mutex);
      in_flight.erase(c.id);
    }
    send_reply(std::move(reply));
  }

  // REQUIRES(group_change_mutex): read-modify-write of the groups, persisted, then the
  // subscription and the publication, in that order, one change at a time.
  Status set_groups(std::vector<std::string> next) {
    next = normalized(std::move(next));
    {
      const std::lock_guard lock(groups_mutex);
      if (next == groups) {
        return {};
      }
      const nlohmann::json j{{"groups", next}};
      CLOUDMGR_RETURN_IF_ERROR(write_file_atomically(groups_path, j.dump(2) + "\n"));
      groups = next;
    }
    CLOUDMGR_RETURN_IF_ERROR(with_link([&](spi::AgentLink& l) { return l.set_groups(next); }));
    return publish_host();
  }

  CommandReply execute(const Command& c) {
    CommandReply out;
    const ArgumentReader a(c.verb, c.arguments);
    const auto vm = [&] { return VmRef::parse(a.text_or("vm", "")); };
    const std::string& v = c.verb;
    Status s;
    if (v == "host.ping") {
      // Nothing to do: the reply itself is the answer (received, audited, validated, executed).
    } else if (v == "host.info") {
      s = publish_host();
    } else if (v == "host.ps") {
      auto procs = hv->processes();
      s = procs.status();
      if (procs.ok()) {
        out.processes = std::move(*procs);
      }
    } else if (v == "host.reboot") {
      s = hv->reboot_host();
    } else if (v == "host.audit") {
      const std::uint64_t since = a.u64_or("since_ns", 0);
      const std::uint64_t max =
          std::clamp<std::uint64_t>(a.u64_or("max_entries", kAuditReplyEntries), 1, kAuditReplyEntriesMax);
      auto entries = read_audit_log(audit_path, static_cast<std::int64_t>(std::min<std::uint64_t>(since, INT64_MAX)),
                                    static_cast<std::size_t>(max));
      s = entries.status();
      if (entries.ok()) {
        out.audit = std::move(*entries);
      }
    } else if (v == "group.join" || v == "group.leave") {
      const std::string g = a.text_or("group", "");
      const std::lock_guard change(group_change_mutex);
      auto next = current_groups();
      if (v == "group.join") {
        next.push_back(g);
      } else {
        std::erase(next, g);
      }
      s = set_groups(std::move(next));
    } else if (v == "vm.show") {
      auto info = hv->get_vm(vm());
      s = info.status();
      if (info.ok()) {
        out.vms.push_back(std::move(*info));
      }
    } else if (v == "vm.define") {
      VmSpec spec{.name = a.text_or("name", ""),
                  .uuid = a.text_or("uuid", ""),
                  .vcpus = static_cast<std::uint32_t>(a.u64_or("vcpus", 1)),
                  .memory_bytes = a.u64_or("memory_bytes", 0)};
      if (a.u64_or("vcpus", 1) > 4096) {
        spec.vcpus = 0;  // rejected below with the field named
      }
      spec.description = a.text_or("description", "");
      spec.autostart = a.boolean_or("autostart", false);
      for (const auto& d : a.all("disk")) {
        spec.disks.push_back({.source_path = d});
      }
      for (const auto& n : a.all("network")) {
        spec.nics.push_back({.source = n});
      }
      auto info = hv->define_vm(spec);
      s = info.status();
      if (info.ok()) {
        out.vms.push_back(std::move(*info));
      }
    } else if (v == "vm.start") {
      s = hv->start_vm(vm());
    } else if (v == "vm.shutdown") {
      // The guest's wait never outlives the command: past the deadline nobody hears the reply.
      const auto left_ms =
          static_cast<std::uint64_t>(std::max<std::int64_t>(0, (c.deadline_ns - now_ns()) / 1'000'000));
      auto r = hv->shutdown_vm(vm(), {.timeout_ms = std::min(a.u64_or("timeout_ms", 60'000), left_ms),
                                      .force_off_after_timeout = a.boolean_or("force", false)});
      s = r.status();
    } else if (v == "vm.destroy") {
      s = hv->destroy_vm(vm());
    } else if (v == "vm.reboot") {
      s = hv->reboot_vm(vm());
    } else if (v == "vm.reset") {
      s = hv->reset_vm(vm());
    } else if (v == "vm.suspend") {
      s = hv->suspend_vm(vm());
    } else if (v == "vm.resume") {
      s = hv->resume_vm(vm());
    } else if (v == "vm.undefine") {
      s = hv->undefine_vm(vm(), {.force = a.boolean_or("force", false)});
    } else if (v == "vm.autostart") {
      s = hv->set_autostart(vm(), a.boolean_or("enabled", false));
    } else if (v == "snapshot.create") {
      auto r = hv->create_snapshot(vm(), {.name = a.text_or("name", ""), .description = a.text_or("description", "")});
      s = r.status();
      if (r.ok()) {
        out.snapshots.push_back(std::move(*r));
      }
    } else if (v == "snapshot.list") {
      auto r = hv->list_snapshots(vm());
      s = r.status();
      if (r.ok()) {
        out.snapshots = std::move(*r);
      }
    } else if (v == "snapshot.revert") {
      s = hv->revert_to_snapshot(vm(), a.text_or("name", ""));
    } else if (v == "snapshot.delete") {
      s = hv->delete_snapshot(vm(), a.text_or("name", ""));
    } else if (v.starts_with("image.") || v == "vm.instantiate" || v == "vm.delete" || v == "vm.capture") {
      s = execute_template_verb(c, a, out);
    } else if (v == "monitor.history") {
      auto r = query_history(a);
      s = r.status();
      if (r.ok()) {
        out.history.push_back(std::move(*r));
      }
    } else {
      s = unimplemented_error(fmt::format("verb '{}' is known but this agent cannot execute it", v));
    }
    out.status = s;
    // Lifecycle events refresh the VM, but not every driver sends one for every change
    // (autostart, snapshots): re-read what a VM verb touched.
    if (v.starts_with("vm.") || v.starts_with("snapshot.")) {
      // Read before locking: libvirt's event thread takes refresh_mutex in on_event.
      auto info = hv->get_vm(vm());
      const std::lock_guard lock(refresh_mutex);
      dirty_vms.insert(info.ok() ? info->uuid : std::string());  // "": a full pass notices removals
    }
    refresh_cv.notify_all();
    return out;
  }

  // image.* (base images arriving), vm.instantiate and vm.delete.
  Status execute_template_verb(const Command& c, const ArgumentReader& a, CommandReply& out) {
    const std::string& v = c.verb;
    if (!provisioner) {
      return unimplemented_error(fmt::format(
          "host '{}' cannot provision from templates: its hypervisor driver has no storage API", host_id()));
    }
    Status s;
    if (v == "image.receive") {
      CLOUDMGR_ASSIGN_OR_RETURN(const ImageFormat format, parse_image_format(a.text_or("format", "")));
      s = images->begin(a.text_or("transfer", ""),
                        {.sha256 = a.text_or("sha256", ""),
                         .format = format,
                         .size_bytes = a.u64_or("size_bytes", 0),
                         .virtual_size_bytes = a.u64_or("virtual_size_bytes", 0)},
                        a.u64_or("data_bytes", 0));
    } else if (v == "image.commit") {
      auto info = images->commit(a.text_or("transfer", ""), c.deadline_ns);
      s = info.status();
      if (s.ok()) {
        s = provisioner->prepare();  // the pool sees the new file
      }
    } else if (v == "image.abort") {
      images->abort(a.text_or("transfer", ""));
    } else if (v == "image.remove") {
      const std::string sha = a.text_or("sha256", "");
      CLOUDMGR_ASSIGN_OR_RETURN(auto vms, hv->list_vms());
      const auto users =
          std::count_if(vms.begin(), vms.end(), [&](const VmInfo& vm) { return vm.origin.image_sha256 == sha; });
      s = users > 0 ? failed_precondition_error(
                          fmt::format("image {} is used by {} VM(s) on host '{}'", sha, users, host_id()))
                    : images->remove(sha);
    } else if (v == "vm.instantiate") {
      CLOUDMGR_ASSIGN_OR_RETURN(TemplateSpec spec, template_spec_from_json(a.text_or("spec", "")));
      InstantiateRequest r{
          .template_name = a.text_or("template", ""),
          .template_version = static_cast<std::uint32_t>(std::min<std::uint64_t>(a.u64_or("version", 0), UINT32_MAX)),
          .image_sha256 = a.text_or("sha256", ""),
          .spec = std::move(spec),
          .names = a.all("name"),
          .start = a.boolean_or("start", false)};
      auto vms = provisioner->instantiate(r);
      s = vms.status();
      if (vms.ok()) {
        out.vms = std::move(*vms);
      }
    } else if (v == "vm.delete") {
      s = provisioner->remove_vm(VmRef::parse(a.text_or("vm", "")), a.boolean_or("force", false));
    } else if (v == "vm.capture") {
      const std::int64_t deadline = c.deadline_ns;
      auto sent = provisioner->capture(
          VmRef::parse(a.text_or("vm", "")), a.text_or("transfer", ""), [&](const ImageChunk& chunk) {
            return with_link([&](spi::AgentLink& l) { return l.send_chunk(chunk, deadline); });
          });
      s = sent.status();
    }
    (void)publish_images();
    return s;
  }

  void stop() {
    {
      const std::lock_guard lock(heal_mutex);
      heal_stop = true;
    }
    heal_cv.notify_all();
    if (healer.joinable()) {
      healer.join();
    }
    {
      const std::lock_guard lock(queue_mutex);
      if (stopping) {
        return;
      }
      stopping = true;
    }
    queue_cv.notify_all();
    events.reset();
    {
      const std::lock_guard lock(refresh_mutex);
      refresh_stop = true;
    }
    refresh_cv.notify_all();
    {
      const std::lock_guard lock(sampler_mutex);
      sampler_stop = true;
    }
    sampler_cv.notify_all();
    for (auto& w : workers) {
      w.join();
    }
    if (refresher.joinable()) {
      refresher.join();
    }
    if (sampler.joinable()) {
      sampler.join();
    }
    const std::unique_lock lock(link_mutex);
    if (link && !abandoned) {
      (void)link->leave();
    }
    link.reset();
    transport.reset();
  }
};

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Agent::~Agent() {
  if (impl_) {
    impl_->stop();
  }
}

Result<std::unique_ptr<Agent>> Agent::start(AgentOptions options) {
  if (options.hypervisor.host_id.empty()) {
    return invalid_argument_error("an agent needs a host id");
  }
  CLOUDMGR_RETURN_IF_ERROR(validate_host_id(options.hypervisor.host_id));
  if (options.transport.identity.empty()) {
    options.transport.identity = "agent." + options.hypervisor.host_id;
  }
  for (const auto& g : options.groups) {
    CLOUDMGR_RETURN_IF_ERROR(validate_group_name(g));
  }
  if (options.state_dir.empty()) {
    return invalid_argument_error("an agent needs a state directory");
  }
  if (options.refresh_ms < 100 || options.workers == 0 || options.workers > 64) {
    return invalid_argument_error("refresh_ms must be at least 100 and workers between 1 and 64");
  }
  if (options.sample_ms != 0 && options.sample_ms < 100) {
    return invalid_argument_error(
        fmt::format("sample_ms is {}: the monitoring tick must be 0 (off) or at least 100 ms", options.sample_ms));
  }
  if (options.history) {
    CLOUDMGR_RETURN_IF_ERROR(options.retention.validate());
  }
  std::error_code ec;
  std::filesystem::create_directories(options.state_dir, ec);
  if (ec) {
    return invalid_argument_error(
        fmt::format("cannot create the state directory '{}': {}", options.state_dir, ec.message()));
  }

  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  Impl& a = *impl;
  a.groups_path = a.options.state_dir + "/groups.json";
  auto persisted = load_groups(a.groups_path);
  if (persisted.ok()) {
    a.groups = std::move(*persisted);
  } else if (persisted.status().code() == StatusCode::kNotFound) {
    a.groups = normalized(a.options.groups);
    CLOUDMGR_RETURN_IF_ERROR(write_file_atomically(a.groups_path, nlohmann::json{{"groups", a.groups}}.dump(2) + "\n"));
  } else {
    return persisted.status();
  }
  CLOUDMGR_ASSIGN_OR_RETURN(a.journal, CommandJournal::open(a.options.state_dir + "/commands.jsonl"));
  a.audit_path = a.options.state_dir + "/audit.jsonl";
  CLOUDMGR_ASSIGN_OR_RETURN(a.audit, AuditLog::open(a.audit_path));
  CLOUDMGR_ASSIGN_OR_RETURN(a.hv, Hypervisor::open(a.options.hypervisor));
  if (a.options.history && a.options.sample_ms > 0) {
    CLOUDMGR_ASSIGN_OR_RETURN(a.history, spi::open_metrics_store({.path = a.options.state_dir + "/metrics.db",
                                                                  .host_id = a.host_id(),
                                                                  .retention = a.options.retention}));
  }
  if (a.options.image_dir.empty()) {
    a.options.image_dir = a.options.state_dir + "/images";
  }
  if (a.options.storage_pool.empty()) {
    a.options.storage_pool = "cloudmgr-" + a.host_id();
  }
  CLOUDMGR_ASSIGN_OR_RETURN(a.images, ImageCache::open(a.options.image_dir, a.host_id()));
  a.provisioner = std::make_unique<Provisioner>(*a.hv, *a.images, a.options.storage_pool, a.host_id());
  if (Status s = a.provisioner->prepare(); !s.ok()) {
    if (s.code() != StatusCode::kUnimplemented) {
      return s.with_context(fmt::format("storage pool '{}' at '{}'", a.options.storage_pool, a.options.image_dir));
    }
    a.provisioner.reset();  // a driver without storage: everything but templates works
  }
  CLOUDMGR_ASSIGN_OR_RETURN(a.transport, spi::open_transport(a.options.transport));
  Impl* self = impl.get();
  a.link_callbacks = {.on_command = [self](const Command& c) { self->enqueue(c); },
                      .on_chunk = [self](const ImageChunk& chunk) { self->images->on_chunk(chunk); }};
  CLOUDMGR_ASSIGN_OR_RETURN(a.link, a.transport->open_agent(a.host_id(), a.groups, a.link_callbacks));
  // From here on, a failure stops what started (callbacks may already be running).
  Status started = [&]() -> Status {
    auto sub = a.hv->subscribe_lifecycle([self](const VmEvent& e) { self->on_event(e); });
    if (sub.ok()) {
      a.events = std::move(*sub);
    } else if (sub.status().code() != StatusCode::kUnimplemented) {
      return sub.status();
    }
    CLOUDMGR_RETURN_IF_ERROR(a.sync_all());
    CLOUDMGR_RETURN_IF_ERROR(a.publish_host());
    try {
      for (std::uint32_t i = 0; i < a.options.workers; ++i) {
        a.workers.emplace_back([self] { self->worker_loop(); });
      }
      a.refresher = std::thread([self] { self->refresh_loop(); });
      if (a.options.sample_ms > 0) {
        a.sampler = std::thread([self] { self->sample_loop(); });
      }
      if (!a.options.transport.pki_dir.empty() && a.options.heal_after_ms > 0) {
        a.healer = std::thread([self] { self->heal_loop(); });
      }
    } catch (const std::system_error& e) {
      return resource_exhausted_error(fmt::format("starting the agent's threads: {}", e.what()));
    }
    return {};
  }();
  if (!started.ok()) {
    a.stop();  // leaves cleanly if the host was already published
    return started;
  }
  return std::unique_ptr<Agent>(new Agent(std::move(impl)));
}

const std::string& Agent::host_id() const noexcept { return impl_->host_id(); }
std::vector<std::string> Agent::groups() const { return impl_->current_groups(); }
std::uint64_t Agent::commands_executed() const noexcept { return impl_->executed.load(); }
std::uint64_t Agent::samples_published() const noexcept { return impl_->samples.load(); }
std::uint64_t Agent::participant_renewals() const noexcept { return impl_->renewals.load(); }

void Agent::abandon() {
  impl_->abandoned = true;
  impl_->stop();
}

}  // namespace cloudmgr
