// cloudmgr::Manager: a view of the cloud built from what agents publish, and command
// fan-out with per-host results.
#include "cloudmgr/manager.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cloudmgr/verbs.h"
#include "core/journal.h"
#include "core/provisioning.h"
#include "core/status_macros.h"
#include "image/image_io.h"

namespace cloudmgr {

std::string_view to_string(HostResult::Outcome outcome) noexcept {
  switch (outcome) {
    case HostResult::Outcome::kOk:
      return "ok";
    case HostResult::Outcome::kError:
      return "error";
    case HostResult::Outcome::kNoReply:
      break;
  }
  return "no-reply";
}

std::string_view to_string(HostEntry::State state) noexcept {
  return state == HostEntry::State::kOnline ? "online" : "offline";
}

std::string_view to_string(CloudEvent::Kind kind) noexcept {
  switch (kind) {
    case CloudEvent::Kind::kHostOnline:
      return "host-online";
    case CloudEvent::Kind::kHostOffline:
      return "host-offline";
    case CloudEvent::Kind::kHostLeft:
      return "host-left";
    case CloudEvent::Kind::kHostGroupsChanged:
      return "host-groups-changed";
    case CloudEvent::Kind::kVmAdded:
      return "vm-added";
    case CloudEvent::Kind::kVmStateChanged:
      return "vm-state-changed";
    case CloudEvent::Kind::kVmRemoved:
      return "vm-removed";
    case CloudEvent::Kind::kEventsLost:
      return "events-lost";
  }
  return "unknown";
}

Subscription::~Subscription() = default;

std::size_t CommandResult::count(HostResult::Outcome outcome) const noexcept {
  return static_cast<std::size_t>(
      std::count_if(hosts.begin(), hosts.end(), [&](const HostResult& h) { return h.outcome == outcome; }));
}

namespace {

struct Pending {
  CommandResult result;
  std::map<std::string, std::size_t> index;  // host id -> position in result.hosts
  std::set<std::string> answered;
  std::int64_t sent_ns = 0;
  std::int64_t deadline_ns = 0;
  std::function<void(const HostResult&, std::size_t, std::size_t)> on_progress;
  std::function<void(Result<CommandResult>)> done;
  // `done` only hands the result to a waiting caller (execute(), a future) and there is no
  // on_progress: it is called where the result completes, even on the transport's receive
  // thread. Otherwise progress and `done` are user code, run in order on the Manager's own
  // callback thread.
  bool prompt = false;
};

// One subscriber (samples or events). `mutex` is held while its callback runs, so the handle's
// destructor waits for a running call (unless it runs inside that call, on the same thread).
template <typename T>
struct Sink {
  std::mutex mutex;
  bool alive = true;                       // GUARDED_BY(mutex)
  std::atomic<std::thread::id> calling{};  // the thread running the callback, if any
  std::function<void(const T&)> callback;

  // Calls the callback unless the subscription ended.
  void call(const T& value) {
    const std::lock_guard lock(mutex);
    if (alive) {
      calling = std::this_thread::get_id();
      callback(value);
      calling = std::thread::id();
    }
  }
};
using SampleSink = Sink<HostSample>;

// An event subscriber: its sink and the events waiting for the event thread.
struct EventSink {
  Sink<CloudEvent> sink;
  std::size_t max_queued = 0;
  std::deque<CloudEvent> queue;  // GUARDED_BY(Impl::mutex)
  std::uint64_t lost = 0;        // GUARDED_BY(Impl::mutex): dropped since the last kEventsLost
};

template <typename T>
class SinkSubscription final : public Subscription {
 public:
  SinkSubscription(std::function<void()> remove, std::shared_ptr<Sink<T>> sink)
      : remove_(std::move(remove)), sink_(std::move(sink)) {}
  ~SinkSubscription() override {
    remove_();
    if (sink_->calling.load() == std::this_thread::get_id()) {
      sink_->alive = false;  // inside the callback: its own lock is held by this thread
      return;
    }
    const std::lock_guard lock(sink_->mutex);
    sink_->alive = false;
  }
  SinkSubscription(const SinkSubscription&) = delete;
  SinkSubscription& operator=(const SinkSubscription&) = delete;

 private:
  std::function<void()> remove_;
  std::shared_ptr<Sink<T>> sink_;
};

}  // namespace

struct Manager::Impl {
  ManagerOptions options;
  std::unique_ptr<spi::Transport> transport;
  std::unique_ptr<spi::ManagerLink> link;

  mutable std::mutex mutex;
  std::condition_variable changed;  // any change of the view or of pending
  // The timer's own: a new deadline or closing. Kept apart from `changed`, which every
  // monitoring tick notifies, so that ticks do not wake the timer.
  std::condition_variable timer_cv;
  // When the waiting timer wakes by itself (INT64_MAX: never; INT64_MIN: it is not waiting and
  // rescans before it waits again). A command whose deadline is later needs no wake-up.
  std::int64_t timer_wake_ns = INT64_MIN;                           // GUARDED_BY(mutex)
  std::map<std::string, HostEntry> hosts;                           // GUARDED_BY(mutex)
  std::map<std::pair<std::string, std::string>, VmView> vms;        // GUARDED_BY(mutex)
  std::map<std::string, HostSample> samples;                        // GUARDED_BY(mutex): latest per online host
  std::map<std::string, HostImages> images;                         // GUARDED_BY(mutex): per online host
  std::map<std::uint64_t, std::shared_ptr<SampleSink>> sinks;       // GUARDED_BY(mutex)
  std::uint64_t next_sink = 0;                                      // GUARDED_BY(mutex)
  std::map<std::uint64_t, std::shared_ptr<EventSink>> event_sinks;  // GUARDED_BY(mutex)
  bool events_ready = false;                                        // GUARDED_BY(mutex): a queue holds events
  bool events_stop = false;                                         // GUARDED_BY(mutex)
  std::condition_variable events_cv;
  std::thread event_thread;                                 // started by the first subscribe_events
  std::map<std::string, std::shared_ptr<Pending>> pending;  // GUARDED_BY(mutex)
  bool closing = false;                                     // GUARDED_BY(mutex)
  std::uint64_t version = 0;                                // GUARDED_BY(mutex): bumped on every change of the view

  std::mutex store_mutex;
  std::unique_ptr<spi::TemplateStore> store;  // GUARDED_BY(store_mutex): opened on first use

  // The template store, opened on first use (a manager that never touches templates never
  // creates its directory).
  Result<spi::TemplateStore*> template_store() {
    const std::lock_guard lock(store_mutex);
    if (!store) {
      if (options.template_dir.empty()) {
        return failed_precondition_error("this manager has no template store (ManagerOptions::template_dir)");
      }
      CLOUDMGR_ASSIGN_OR_RETURN(store, spi::open_template_store(options.template_dir));
    }
    return store.get();
  }

  // Kept even before the host's record arrives (topics are not ordered with each other);
  // host_images() shows online hosts' only.
  // Images on their way from hosts ("vm.capture"), by transfer id.
  struct CaptureSink {
    int fd = -1;
    std::string path;
    std::uint64_t received_bytes = 0;
    bool failed = false;
    bool ended = false;
    std::uint64_t size_bytes = 0;
    std::string sha256;
  };
  std::mutex capture_mutex;
  std::condition_variable capture_cv;
  std::map<std::string, CaptureSink> captures;  // GUARDED_BY(capture_mutex)

  void on_chunk(const ImageChunk& chunk) {
    {
      const std::lock_guard lock(capture_mutex);
      auto it = captures.find(chunk.transfer_id);
      if (it == captures.end() || it->second.ended) {
        return;
      }
      CaptureSink& sink = it->second;
      if (chunk.data.empty()) {
        sink.ended = true;
        sink.size_bytes = chunk.offset_bytes;
        sink.sha256 = chunk.sha256;
      } else if (image::pwrite_all(sink.fd, chunk.data.data(), chunk.data.size(), chunk.offset_bytes, sink.path).ok()) {
        sink.received_bytes += chunk.data.size();
      } else {
        sink.failed = true;
      }
    }
    capture_cv.notify_all();
  }

  void on_images(const HostImages& i) {
    {
      const std::lock_guard lock(mutex);
      images[i.host_id] = i;
      ++version;
    }
    changed.notify_all();
  }

  std::deque<std::pair<Command, std::vector<std::string>>> outbox;  // GUARDED_BY(mutex)
  std::condition_variable outbox_cv;
  // Sends made on the caller's thread (send_if_ready) still running; close() waits for them
  // before the link goes.
  int direct_sends = 0;  // GUARDED_BY(mutex)
  std::condition_variable direct_cv;
  // Sends may block until their deadline waiting for a host to become reachable: several
  // senders keep one slow command from holding up the others.
  std::vector<std::thread> senders;
  std::thread timer;

  // Results that became complete are delivered outside the lock.
  struct Completion {
    std::shared_ptr<Pending> p;
    std::optional<Status> failure;
  };

  // User callbacks (on_progress, execute_async's `done`) run here, one at a time and in the
  // order they were posted, never on a transport thread: replies may arrive on the thread that
  // receives from the network, which must not wait for user code.
  std::mutex calls_mutex;
  std::condition_variable calls_cv;
  std::deque<std::function<void()>> calls;  // GUARDED_BY(calls_mutex)
  bool calls_stop = false;                  // GUARDED_BY(calls_mutex)
  std::thread caller;

  void post_call(std::function<void()> f) {
    {
      const std::lock_guard lock(calls_mutex);
      calls.push_back(std::move(f));
    }
    calls_cv.notify_one();
  }

  void calls_loop() {
    std::unique_lock lock(calls_mutex);
    for (;;) {
      calls_cv.wait(lock, [&] { return calls_stop || !calls.empty(); });
      if (calls.empty()) {
        return;  // stopping, and everything posted has run
      }
      std::function<void()> f = std::move(calls.front());
      calls.pop_front();
      lock.unlock();
      f();
      lock.lock();
    }
  }

  static void conclude(Completion& c) {
    if (c.failure) {
      c.p->done(*c.failure);
    } else {
      c.p->done(std::move(c.p->result));
    }
  }

  void deliver(std::vector<Completion>& done) {
    for (auto& c : done) {
      if (c.p->prompt) {
        conclude(c);
      } else {
        post_call([c = std::move(c)]() mutable { conclude(c); });
      }
    }
    done.clear();
  }

  // Records one host's result; REQUIRES(mutex). Returns the progress call to make.
  std::function<void()> record(const std::shared_ptr<Pending>& p, const std::string& host, HostResult r,
                               std::vector<Completion>& done) {
    auto it = p->index.find(host);
    if (it == p->index.end() || p->answered.contains(host)) {
      return {};
    }
    p->answered.insert(host);
    p->result.hosts[it->second] = std::move(r);
    const std::size_t n = p->answered.size();
    const std::size_t total = p->index.size();
    std::function<void()> progress;
    if (p->on_progress) {
      // A copy: once the lock is released the result may be handed to `done` and moved.
      progress = [cb = p->on_progress, host_result = p->result.hosts[it->second], n, total] {
        cb(host_result, n, total);
      };
    }
    if (n == total) {
      pending.erase(p->result.command_id);
      done.push_back({p, std::nullopt});
    }
    return progress;
  }

  // Queues `e` for every event subscriber (or only `to`); REQUIRES(mutex). The caller
  // notifies events_cv after releasing the lock.
  void emit(CloudEvent e, EventSink* to = nullptr) {
    if (event_sinks.empty()) {
      return;
    }
    e.time_ns = now_ns();
    for (auto& [id, s] : event_sinks) {
      if (to != nullptr && s.get() != to) {
        continue;
      }
      if (to == nullptr && s->queue.size() >= s->max_queued) {
        ++s->lost;  // the replay (`to`) is never dropped
        continue;
      }
      s->queue.push_back(e);
      events_ready = true;
    }
  }

  static CloudEvent host_event(CloudEvent::Kind kind, const HostEntry& h, std::string reason = {}) {
    CloudEvent e;
    e.kind = kind;
    e.host_id = h.view.info.id;
    e.groups = h.view.groups;
    e.reason = std::move(reason);
    return e;
  }

  static CloudEvent vm_event(CloudEvent::Kind kind, const VmView& v) {
    CloudEvent e;
    e.kind = kind;
    e.host_id = v.host_id;
    e.vm_uuid = v.vm.uuid;
    e.vm_name = v.vm.name;
    e.state = v.vm.state;
    e.reason = v.vm.state_reason;
    return e;
  }

  // Removes the VMs of host `id` from the view, with an event each; REQUIRES(mutex).
  void drop_vms_of(const std::string& id, const std::string& reason) {
    for (auto it = vms.begin(); it != vms.end();) {
      if (it->first.first != id) {
        ++it;
        continue;
      }
      CloudEvent e = vm_event(CloudEvent::Kind::kVmRemoved, it->second);
      e.old_state = e.state;
      e.state = VmState::kUnknown;
      e.reason = reason;
      emit(std::move(e));
      it = vms.erase(it);
    }
  }

  // The event thread: hands each subscriber its queued events, in order, outside the lock.
  void event_loop() {
    std::unique_lock lock(mutex);
    while (true) {
      events_cv.wait(lock, [&] { return events_stop || events_ready; });
      if (events_stop) {
        return;
      }
      events_ready = false;
      std::vector<std::pair<std::shared_ptr<EventSink>, std::deque<CloudEvent>>> batch;
      for (auto& [id, s] : event_sinks) {
        if (s->queue.empty() && s->lost == 0) {
          continue;
        }
        std::deque<CloudEvent> events;
        events.swap(s->queue);
        if (s->lost > 0) {
          CloudEvent e;
          e.kind = CloudEvent::Kind::kEventsLost;
          e.time_ns = now_ns();
          e.lost = s->lost;
          events.push_back(std::move(e));
          s->lost = 0;
        }
        batch.emplace_back(s, std::move(events));
      }
      lock.unlock();
      for (auto& [s, events] : batch) {
        for (const auto& e : events) {
          s->sink.call(e);
        }
      }
      batch.clear();  // the last references to removed sinks go outside the lock
      lock.lock();
    }
  }

  void on_host(const HostView& h) {
    {
      const std::lock_guard lock(mutex);
      auto& entry = hosts[h.info.id];
      const bool was_online = !entry.view.info.id.empty() && entry.online();
      const bool groups_changed = entry.view.groups != h.groups;
      entry = HostEntry{.view = h, .state = HostEntry::State::kOnline, .last_seen_ns = now_ns()};
      if (!was_online) {
        emit(host_event(CloudEvent::Kind::kHostOnline, entry));
      } else if (groups_changed) {
        emit(host_event(CloudEvent::Kind::kHostGroupsChanged, entry));
      }
      ++version;
    }
    changed.notify_all();
    events_cv.notify_all();
  }

  void on_host_gone(const std::string& id, bool clean) {
    std::vector<Completion> done;
    std::vector<std::function<void()>> progress;
    {
      const std::lock_guard lock(mutex);
      if (auto it = hosts.find(id); it != hosts.end()) {
        if (clean) {
          emit(host_event(CloudEvent::Kind::kHostLeft, it->second, "stopped"));
          hosts.erase(it);  // stopped on purpose: it leaves the view
        } else if (it->second.online()) {
          it->second.state = HostEntry::State::kOffline;
          it->second.offline_since_ns = now_ns();
          emit(host_event(CloudEvent::Kind::kHostOffline, it->second));
        }
      }
      samples.erase(id);
      images.erase(id);
      drop_vms_of(id, clean ? "host left" : "host offline");
      ++version;
      // Commands still waiting for this host will not hear from it.
      auto snapshot = pending;
      for (auto& [cid, p] : snapshot) {
        HostResult r;
        r.host_id = id;
        r.outcome = HostResult::Outcome::kNoReply;
        r.status = unavailable_error(fmt::format("host '{}' {} before replying", id, clean ? "left" : "went offline"));
        if (auto f = record(p, id, std::move(r), done)) {
          progress.push_back(std::move(f));
        }
      }
    }
    changed.notify_all();
    events_cv.notify_all();
    for (auto& f : progress) {
      f();
    }
    deliver(done);
  }

  void on_vm(const VmView& v) {
    {
      const std::lock_guard lock(mutex);
      auto [it, added] = vms.try_emplace({v.host_id, v.vm.uuid}, v);
      if (added) {
        emit(vm_event(CloudEvent::Kind::kVmAdded, v));
      } else {
        if (it->second.vm.state != v.vm.state) {
          CloudEvent e = vm_event(CloudEvent::Kind::kVmStateChanged, v);
          e.old_state = it->second.vm.state;
          emit(std::move(e));
        }
        it->second = v;
      }
      ++version;
    }
    changed.notify_all();
    events_cv.notify_all();
  }

  void on_vm_gone(const std::string& host, const std::string& uuid, bool undefined) {
    {
      const std::lock_guard lock(mutex);
      if (auto it = vms.find({host, uuid}); it != vms.end()) {
        CloudEvent e = vm_event(CloudEvent::Kind::kVmRemoved, it->second);
        e.old_state = e.state;
        e.state = VmState::kUnknown;
        // Not undefined: its host stopped publishing it. A host that leaves cleanly is reported
        // gone first (its VMs leave with it, as "host left", in on_host_gone), so here the VM's
        // writer was lost: a crash whose host-lost signal has not arrived yet, or has.
        e.reason = undefined ? "undefined" : "host offline";
        emit(std::move(e));
        vms.erase(it);
      }
      ++version;
    }
    changed.notify_all();
    events_cv.notify_all();
  }

  void on_sample(const HostSample& s) {
    std::vector<std::shared_ptr<SampleSink>> to_call;
    {
      const std::lock_guard lock(mutex);
      auto h = hosts.find(s.host_id);
      // Only an online host's ticks count: a tick still in flight when its host was marked
      // offline must not look like a live agent (HostStatus alone brings a host back).
      if (h == hosts.end() || !h->second.online()) {
        return;
      }
      auto& latest = samples[s.host_id];
      if (s.taken_ns <= latest.taken_ns && !latest.host_id.empty()) {
        return;  // older than what we have
      }
      latest = s;
      h->second.last_seen_ns = now_ns();
      ++version;
      for (const auto& [id, sink] : sinks) {
        to_call.push_back(sink);
      }
    }
    changed.notify_all();
    for (const auto& sink : to_call) {
      sink->call(s);
    }
  }

  void on_reply(const CommandReply& reply) {
    std::vector<Completion> done;
    std::function<void()> progress;
    {
      const std::lock_guard lock(mutex);
      auto it = pending.find(reply.command_id);
      if (it == pending.end()) {
        return;  // another manager's command, or one already concluded
      }
      auto p = it->second;
      HostResult r;
      r.host_id = reply.host_id;
      r.outcome = reply.status.ok() ? HostResult::Outcome::kOk : HostResult::Outcome::kError;
      r.status = reply.status;
      r.reply = reply;
      r.latency_ns = now_ns() - p->sent_ns;
      progress = record(p, reply.host_id, std::move(r), done);
    }
    changed.notify_all();
    if (progress) {
      post_call(std::move(progress));  // before `done`, which is posted too when there is progress
    }
    deliver(done);
  }

  void timer_loop() {
    std::unique_lock lock(mutex);
    while (!closing) {
      std::int64_t earliest = INT64_MAX;
      for (const auto& [id, p] : pending) {
        earliest = std::min(earliest, p->deadline_ns);
      }
      if (earliest == INT64_MAX) {
        timer_wake_ns = INT64_MAX;
        timer_cv.wait(lock);
        timer_wake_ns = INT64_MIN;
        continue;
      }
      const std::int64_t now0 = now_ns();
      const std::int64_t wait = earliest - now0;
      if (wait > 0) {
        // Capped: a far deadline must not overflow the clock arithmetic inside wait_for. A
        // command that concludes meanwhile leaves the timer asleep: it wakes once for nothing.
        const std::int64_t capped = std::min<std::int64_t>(wait, 3'600'000'000'000LL);
        timer_wake_ns = now0 + capped;
        timer_cv.wait_for(lock, std::chrono::nanoseconds(capped));
        timer_wake_ns = INT64_MIN;
        continue;
      }
      // Conclude every command past its deadline: silent hosts are "no reply".
      std::vector<Completion> done;
      const std::int64_t now = now_ns();
      for (auto it = pending.begin(); it != pending.end();) {
        auto p = it->second;
        if (p->deadline_ns > now) {
          ++it;
          continue;
        }
        for (auto& h : p->result.hosts) {
          if (!p->answered.contains(h.host_id)) {
            h.outcome = HostResult::Outcome::kNoReply;
            h.status = deadline_exceeded_error(fmt::format("no reply from host '{}' within {} ms", h.host_id,
                                                           (p->deadline_ns - p->sent_ns) / 1'000'000));
          }
        }
        it = pending.erase(it);
        done.push_back({p, std::nullopt});
      }
      lock.unlock();
      deliver(done);
      lock.lock();
    }
  }

  void sender_loop() {
    std::unique_lock lock(mutex);
    for (;;) {
      outbox_cv.wait(lock, [&] { return closing || !outbox.empty(); });
      if (closing) {
        return;
      }
      auto [command, expected] = std::move(outbox.front());
      outbox.pop_front();
      lock.unlock();
      Status s = link->send(command, expected);
      lock.lock();
      if (!s.ok()) {
        std::vector<Completion> failed = take_failed_send_locked(command.id, s);
        lock.unlock();
        deliver(failed);
        lock.lock();
      }
    }
  }

  // A command the link could not send concludes at once with the link's error, for every
  // host it expected (none of them can have it). Empty if it has concluded already.
  std::vector<Completion> take_failed_send_locked(const std::string& command_id,
                                                  const Status& s) {  // REQUIRES(mutex)
    std::vector<Completion> failed;
    if (auto it = pending.find(command_id); it != pending.end()) {
      failed.push_back({it->second, s.with_context("sending the command")});
      pending.erase(it);
    }
    return failed;
  }

  Result<std::vector<std::string>> expected_locked(const Target& t) const {  // REQUIRES(mutex)
    std::vector<std::string> out;
    switch (t.kind) {
      case Target::Kind::kHost:
        CLOUDMGR_RETURN_IF_ERROR(validate_host_id(t.name));
        if (auto it = hosts.find(t.name); it == hosts.end()) {
          return not_found_error(fmt::format("unknown host '{}' (not online)", t.name));
        } else if (!it->second.online()) {
          return unavailable_error(fmt::format("host '{}' is offline (its agent stopped answering {} s ago)", t.name,
                                               (now_ns() - it->second.offline_since_ns) / 1'000'000'000));
        }
        out.push_back(t.name);
        break;
      case Target::Kind::kGroup:
        CLOUDMGR_RETURN_IF_ERROR(validate_group_name(t.name));
        for (const auto& [id, h] : hosts) {
          if (h.online() && std::find(h.view.groups.begin(), h.view.groups.end(), t.name) != h.view.groups.end()) {
            out.push_back(id);
          }
        }
        if (out.empty()) {
          return not_found_error(fmt::format("no online host is in group '{}'", t.name));
        }
        break;
      case Target::Kind::kAll:
        for (const auto& [id, h] : hosts) {
          if (h.online()) {
            out.push_back(id);
          }
        }
        if (out.empty()) {
          return not_found_error("no host is online");
        }
        break;
    }
    return out;
  }

  // `prompt`: `done` only hands the result over (see Pending::prompt).
  void execute_async(const Target& target, const std::string& verb, const Arguments& arguments,
                     const ExecuteOptions& exec, std::function<void(Result<CommandResult>)> done, bool prompt = false) {
    if (Status s = validate_command(verb, arguments); !s.ok()) {
      done(s);
      return;
    }
    if (exec.timeout.count() <= 0 || exec.timeout > std::chrono::hours(24)) {
      done(invalid_argument_error("the command timeout must be positive and at most 24 hours"));
      return;
    }
    auto p = std::make_shared<Pending>();
    Command c;
    c.id = random_uuid();
    c.issuer = options.name;
    c.target = target;
    c.verb = verb;
    c.arguments = arguments;
    c.issued_ns = now_ns();
    c.deadline_ns = c.issued_ns + std::chrono::duration_cast<std::chrono::nanoseconds>(exec.timeout).count();
    p->done = std::move(done);  // p is not shared until it enters `pending`
    Status refused;
    std::vector<std::string> expected;
    bool direct = false;
    bool wake_timer = false;
    {
      std::unique_lock lock(mutex);
      auto e = expected_locked(target);
      if (!e.ok()) {
        refused = e.status();
      } else {
        expected = std::move(*e);
        p->result.command_id = c.id;
        p->result.target = target;
        p->result.verb = verb;
        for (const auto& h : expected) {
          p->index[h] = p->result.hosts.size();
          HostResult r;
          r.host_id = h;
          p->result.hosts.push_back(std::move(r));
        }
        p->sent_ns = c.issued_ns;
        p->deadline_ns = c.deadline_ns;
        p->on_progress = exec.on_progress;
        p->prompt = prompt && !exec.on_progress;
        pending[c.id] = p;
        wake_timer = c.deadline_ns < timer_wake_ns;
        // Behind queued commands it queues too; otherwise it is sent from here when it can be
        // at once (no thread hop), else by a sender, which may wait.
        direct = outbox.empty() && !closing;
        if (direct) {
          ++direct_sends;
        } else {
          outbox.emplace_back(c, expected);  // a copy: the slow path; `c` is still read below
        }
      }
    }
    if (!refused.ok()) {
      p->done(refused);  // outside the lock: `done` may call back into the Manager
      return;
    }
    changed.notify_all();
    if (wake_timer) {
      timer_cv.notify_all();  // the timer learns the earlier deadline
    }
    if (!direct) {
      outbox_cv.notify_all();
      return;
    }
    std::optional<Status> sent = link->send_if_ready(c, expected);
    std::vector<Completion> failed;
    {
      const std::lock_guard lock(mutex);
      --direct_sends;
      if (!sent) {
        outbox.emplace_back(std::move(c), std::move(expected));  // close() concludes it if closing
      } else if (!sent->ok()) {
        failed = take_failed_send_locked(c.id, *sent);
      }
    }
    direct_cv.notify_all();
    if (!sent) {
      outbox_cv.notify_all();
    }
    deliver(failed);
  }

  // The inventory: hosts seen before, loaded as offline until they show up.
  void load_inventory() {
    std::ifstream in(options.inventory_path);
    if (!in) {
      return;  // none yet
    }
    std::stringstream text;
    text << in.rdbuf();
    const auto j = nlohmann::json::parse(text.str(), nullptr, false);
    if (!j.is_object() || !j.contains("hosts") || !j["hosts"].is_array()) {
      return;  // unreadable: it is a cache, rebuilt on close
    }
    const std::lock_guard lock(mutex);
    for (const auto& h : j["hosts"]) {
      if (!h.is_object() || !h.contains("id") || !h["id"].is_string() ||
          !validate_host_id(h["id"].get<std::string>()).ok() || hosts.contains(h["id"].get<std::string>())) {
        continue;
      }
      HostEntry e;
      e.view.info.id = h["id"].get<std::string>();
      e.view.info.hostname = h.value("hostname", "");
      if (h.contains("groups") && h["groups"].is_array()) {
        for (const auto& g : h["groups"]) {
          if (g.is_string() && validate_group_name(g.get<std::string>()).ok()) {
            e.view.groups.push_back(g.get<std::string>());
          }
        }
      }
      e.state = HostEntry::State::kOffline;
      e.last_seen_ns = h.value("last_seen_ns", std::int64_t{0});
      e.offline_since_ns = e.last_seen_ns;
      hosts.emplace(e.view.info.id, std::move(e));
    }
    ++version;
  }

  void save_inventory() {
    nlohmann::json list = nlohmann::json::array();
    {
      const std::lock_guard lock(mutex);
      const std::int64_t now = now_ns();
      for (const auto& [id, h] : hosts) {
        list.push_back({{"id", id},
                        {"hostname", h.view.info.hostname},
                        {"groups", h.view.groups},
                        {"last_seen_ns", h.online() ? now : h.last_seen_ns}});
      }
    }
    // A cache: failing to write it costs the next manager its offline hosts, nothing else.
    (void)write_file_atomically(options.inventory_path, nlohmann::json{{"hosts", list}}.dump(1) + "\n");
  }

  void close() {
    {
      const std::lock_guard lock(mutex);
      if (closing) {
        return;
      }
      closing = true;
    }
    if (!options.inventory_path.empty() && link) {
      save_inventory();
    }
    changed.notify_all();
    timer_cv.notify_all();
    outbox_cv.notify_all();
    for (auto& t : senders) {
      t.join();
    }
    {
      std::unique_lock lock(mutex);
      direct_cv.wait(lock, [&] { return direct_sends == 0; });
    }
    if (timer.joinable()) {
      timer.join();
    }
    link.reset();  // no more callbacks after this
    {
      const std::lock_guard lock(mutex);
      events_stop = true;
    }
    events_cv.notify_all();
    if (event_thread.joinable()) {
      event_thread.join();  // events still queued are dropped
    }
    std::vector<Completion> done;
    {
      const std::lock_guard lock(mutex);
      for (auto& [id, p] : pending) {
        done.push_back({p, aborted_error("the manager closed before the command concluded")});
      }
      pending.clear();
    }
    deliver(done);
    {
      const std::lock_guard lock(calls_mutex);
      calls_stop = true;
    }
    calls_cv.notify_one();
    if (caller.joinable()) {
      caller.join();  // after every callback posted has run: each `done` runs exactly once
    }
    transport.reset();
  }
};

Manager::Manager(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Manager::~Manager() { impl_->close(); }

Result<std::unique_ptr<Manager>> Manager::open(ManagerOptions options) {
  if (options.name.empty()) {
    options.name = fmt::format("manager-{}", getpid());
  }
  if (options.transport.identity.empty()) {
    options.transport.identity = "manager." + options.name;
  }
  auto impl = std::make_shared<Impl>();
  impl->options = std::move(options);
  if (!impl->options.inventory_path.empty()) {
    impl->load_inventory();
  }
  CLOUDMGR_ASSIGN_OR_RETURN(impl->transport, spi::open_transport(impl->options.transport));
  Impl* self = impl.get();
  spi::ManagerCallbacks cb;
  cb.on_host = [self](const HostView& h) { self->on_host(h); };
  cb.on_host_gone = [self](const std::string& id, bool clean) { self->on_host_gone(id, clean); };
  cb.on_vm = [self](const VmView& v) { self->on_vm(v); };
  cb.on_vm_gone = [self](const std::string& h, const std::string& u, bool undefined) {
    self->on_vm_gone(h, u, undefined);
  };
  cb.on_reply = [self](const CommandReply& r) { self->on_reply(r); };
  if (impl->options.samples) {
    cb.on_sample = [self](const HostSample& s) { self->on_sample(s); };
  }
  cb.on_images = [self](const HostImages& i) { self->on_images(i); };
  cb.on_chunk = [self](const ImageChunk& c) { self->on_chunk(c); };
  CLOUDMGR_ASSIGN_OR_RETURN(impl->link, impl->transport->open_manager(impl->options.name, std::move(cb)));
  try {
    for (int i = 0; i < 4; ++i) {
      impl->senders.emplace_back([self] { self->sender_loop(); });
    }
    impl->timer = std::thread([self] { self->timer_loop(); });
    impl->caller = std::thread([self] { self->calls_loop(); });
  } catch (const std::system_error& e) {
    impl->close();
    return resource_exhausted_error(fmt::format("starting the manager's threads: {}", e.what()));
  }
  return std::unique_ptr<Manager>(new Manager(std::move(impl)));
}

const std::string& Manager::name() const noexcept { return impl_->options.name; }

std::vector<HostEntry> Manager::hosts() const {
  const std::lock_guard lock(impl_->mutex);
  std::vector<HostEntry> out;
  for (const auto& [id, h] : impl_->hosts) {
    out.push_back(h);
  }
  return out;
}

std::optional<HostEntry> Manager::host(const std::string& id) const {
  const std::lock_guard lock(impl_->mutex);
  auto it = impl_->hosts.find(id);
  if (it == impl_->hosts.end()) {
    return std::nullopt;
  }
  return it->second;
}

std::vector<VmView> Manager::vms(const std::optional<std::string>& host_id,
                                 const std::optional<std::string>& group) const {
  const std::lock_guard lock(impl_->mutex);
  std::vector<VmView> out;
  for (const auto& [key, v] : impl_->vms) {
    if (host_id && v.host_id != *host_id) {
      continue;
    }
    if (group) {
      auto h = impl_->hosts.find(v.host_id);
      if (h == impl_->hosts.end() || std::find(h->second.view.groups.begin(), h->second.view.groups.end(), *group) ==
                                         h->second.view.groups.end()) {
        continue;
      }
    }
    out.push_back(v);
    // VmStatus (a fixed wire type) has no origin: the host's HostImages tells it.
    VmOrigin& origin = out.back().vm.origin;
    if (auto i = impl_->images.find(v.host_id); origin.empty() && i != impl_->images.end()) {
      for (const CachedImage& c : i->second.images) {
        for (const ImageUser& u : c.users) {
          if (u.vm_uuid == v.vm.uuid) {
            origin = {u.template_name, u.template_version, c.info.sha256};
          }
        }
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const VmView& a, const VmView& b) {
    return std::tie(a.host_id, a.vm.name) < std::tie(b.host_id, b.vm.name);
  });
  return out;
}

Status Manager::prepare(const Target& target) {
  switch (target.kind) {
    case Target::Kind::kHost:
      CLOUDMGR_RETURN_IF_ERROR(validate_host_id(target.name));
      break;
    case Target::Kind::kGroup:
      CLOUDMGR_RETURN_IF_ERROR(validate_group_name(target.name));
      break;
    case Target::Kind::kAll:
      break;
  }
  impl_->link->prepare(target.partition());
  return {};
}

std::vector<std::string> Manager::unreached_agents(std::chrono::milliseconds min_age) const {
  return impl_->link->unreached_agents(min_age);
}

std::map<std::string, std::vector<std::string>> Manager::groups() const {
  const std::lock_guard lock(impl_->mutex);
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [id, h] : impl_->hosts) {
    for (const auto& g : h.view.groups) {
      out[g].push_back(id);
    }
  }
  return out;
}

Result<std::vector<std::string>> Manager::expected_hosts(const Target& target) const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->expected_locked(target);
}

Status Manager::wait_until(const std::function<bool(const Manager&)>& predicate, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::uint64_t seen = 0;
    {
      const std::lock_guard lock(impl_->mutex);
      seen = impl_->version;
    }
    // The predicate reads the view through the public (locking) accessors, so it runs
    // unlocked; a change it missed moved `version`, and the wait below returns at once.
    if (predicate(*this)) {
      return {};
    }
    std::unique_lock lock(impl_->mutex);
    if (!impl_->changed.wait_until(lock, deadline, [&] { return impl_->version != seen; })) {
      lock.unlock();
      return predicate(*this) ? Status() : deadline_exceeded_error("condition not met in time");
    }
  }
}

namespace {
std::size_t online_count(const Manager& m) {
  const auto hosts = m.hosts();
  return static_cast<std::size_t>(std::count_if(hosts.begin(), hosts.end(), [](const auto& h) { return h.online(); }));
}
}  // namespace

Status Manager::wait_for_hosts(std::size_t count, std::chrono::milliseconds timeout) {
  Status s = wait_until([count](const Manager& m) { return online_count(m) >= count; }, timeout);
  if (!s.ok()) {
    return deadline_exceeded_error(
        fmt::format("{} of {} hosts online after {} ms", online_count(*this), count, timeout.count()));
  }
  return s;
}

Status Manager::forget_host(const std::string& id) {
  {
    const std::lock_guard lock(impl_->mutex);
    auto it = impl_->hosts.find(id);
    if (it == impl_->hosts.end()) {
      return not_found_error(fmt::format("unknown host '{}'", id));
    }
    if (it->second.online()) {
      return failed_precondition_error(fmt::format("host '{}' is online; only offline hosts can be forgotten", id));
    }
    impl_->emit(Impl::host_event(CloudEvent::Kind::kHostLeft, it->second, "forgotten"));
    impl_->hosts.erase(it);
    ++impl_->version;
  }
  impl_->changed.notify_all();
  impl_->events_cv.notify_all();
  return {};
}

std::vector<HostSample> Manager::samples() const {
  const std::lock_guard lock(impl_->mutex);
  std::vector<HostSample> out;
  out.reserve(impl_->samples.size());
  for (const auto& [id, s] : impl_->samples) {
    out.push_back(s);
  }
  return out;
}

std::optional<HostSample> Manager::sample(const std::string& host_id) const {
  const std::lock_guard lock(impl_->mutex);
  auto it = impl_->samples.find(host_id);
  if (it == impl_->samples.end()) {
    return std::nullopt;
  }
  return it->second;
}

std::optional<VmSample> Manager::vm_sample(const std::string& vm) const {
  const std::lock_guard lock(impl_->mutex);
  for (const auto& [id, s] : impl_->samples) {
    for (const auto& v : s.vms) {
      if (v.name == vm || v.uuid == vm) {
        return v;
      }
    }
  }
  return std::nullopt;
}

Result<std::unique_ptr<Subscription>> Manager::subscribe_samples(std::function<void(const HostSample&)> callback) {
  if (!callback) {
    return invalid_argument_error("subscribe_samples needs a callback");
  }
  if (!impl_->options.samples) {
    return failed_precondition_error("this manager was opened with samples off (ManagerOptions::samples)");
  }
  auto sink = std::make_shared<SampleSink>();
  sink->callback = std::move(callback);
  std::uint64_t id = 0;
  {
    const std::lock_guard lock(impl_->mutex);
    id = impl_->next_sink++;
    impl_->sinks.emplace(id, sink);
  }
  std::weak_ptr<Impl> weak = impl_;
  auto remove = [weak, id] {
    if (auto impl = weak.lock()) {
      const std::lock_guard lock(impl->mutex);
      impl->sinks.erase(id);
    }
  };
  return std::unique_ptr<Subscription>(new SinkSubscription<HostSample>(std::move(remove), std::move(sink)));
}

Result<std::unique_ptr<Subscription>> Manager::subscribe_events(std::function<void(const CloudEvent&)> callback,
                                                                const EventOptions& options) {
  if (!callback) {
    return invalid_argument_error("subscribe_events needs a callback");
  }
  if (options.max_queued == 0) {
    return invalid_argument_error("subscribe_events: max_queued must be at least 1");
  }
  auto es = std::make_shared<EventSink>();
  es->sink.callback = std::move(callback);
  es->max_queued = options.max_queued;
  std::uint64_t id = 0;
  {
    const std::lock_guard lock(impl_->mutex);
    if (impl_->closing) {
      return failed_precondition_error("the manager is closing");
    }
    if (!impl_->event_thread.joinable()) {
      try {
        impl_->event_thread = std::thread([self = impl_.get()] { self->event_loop(); });
      } catch (const std::system_error& e) {
        return resource_exhausted_error(fmt::format("starting the manager's event thread: {}", e.what()));
      }
    }
    id = impl_->next_sink++;
    impl_->event_sinks.emplace(id, es);
    if (options.replay) {
      for (const auto& [host_id, h] : impl_->hosts) {
        impl_->emit(Impl::host_event(h.online() ? CloudEvent::Kind::kHostOnline : CloudEvent::Kind::kHostOffline, h),
                    es.get());
        // The host's VMs in name order (the map orders them by UUID).
        std::vector<const VmView*> vms;
        for (auto it = impl_->vms.lower_bound({host_id, std::string()});
             it != impl_->vms.end() && it->first.first == host_id; ++it) {
          vms.push_back(&it->second);
        }
        std::ranges::sort(vms, {}, [](const VmView* v) { return v->vm.name; });
        for (const VmView* v : vms) {
          impl_->emit(Impl::vm_event(CloudEvent::Kind::kVmAdded, *v), es.get());
        }
      }
    }
  }
  impl_->events_cv.notify_all();
  std::weak_ptr<Impl> weak = impl_;
  auto remove = [weak, id] {
    if (auto impl = weak.lock()) {
      std::shared_ptr<EventSink> gone;  // released outside the lock
      const std::lock_guard lock(impl->mutex);
      if (auto it = impl->event_sinks.find(id); it != impl->event_sinks.end()) {
        gone = std::move(it->second);
        impl->event_sinks.erase(it);
      }
    }
  };
  // The subscription holds the sink inside the EventSink (an aliasing pointer keeps it alive).
  std::shared_ptr<Sink<CloudEvent>> sink(es, &es->sink);
  return std::unique_ptr<Subscription>(new SinkSubscription<CloudEvent>(std::move(remove), std::move(sink)));
}

Result<CommandResult> Manager::history(const Target& target, const HistoryQuery& query, const ExecuteOptions& options) {
  const std::int64_t now = now_ns();
  const std::int64_t since = query.since_ns > 0 ? query.since_ns : now - 3600LL * 1'000'000'000;
  if (query.until_ns != 0 && query.until_ns <= since) {
    return invalid_argument_error("history: the window's end must come after its start");
  }
  if (query.step_ns < 0) {
    return invalid_argument_error("history: the step must not be negative");
  }
  Arguments args{{"since_ns", std::to_string(since)}};
  if (!query.vm.empty()) {
    args.emplace_back("vm", query.vm);
  }
  if (query.until_ns > 0) {
    args.emplace_back("until_ns", std::to_string(query.until_ns));
  }
  if (query.step_ns > 0) {
    args.emplace_back("step_ns", std::to_string(query.step_ns));
  }
  args.emplace_back("max_points", std::to_string(query.max_points));
  return execute(target, "monitor.history", args, options);
}

// ---- templates --------------------------------------------------------------------------

Result<TemplateInfo> Manager::import_template(const spi::ImportRequest& request) {
  CLOUDMGR_ASSIGN_OR_RETURN(spi::TemplateStore * store, impl_->template_store());
  return store->import(request);
}

Result<std::vector<TemplateInfo>> Manager::templates() {
  CLOUDMGR_ASSIGN_OR_RETURN(spi::TemplateStore * store, impl_->template_store());
  return store->list();
}

Result<std::vector<TemplateInfo>> Manager::template_versions(const std::string& name) {
  CLOUDMGR_ASSIGN_OR_RETURN(spi::TemplateStore * store, impl_->template_store());
  return store->versions(name);
}

Result<TemplateInfo> Manager::get_template(const TemplateRef& ref) {
  CLOUDMGR_ASSIGN_OR_RETURN(spi::TemplateStore * store, impl_->template_store());
  return store->get(ref);
}

Status Manager::verify_template(const TemplateRef& ref) {
  CLOUDMGR_ASSIGN_OR_RETURN(spi::TemplateStore * store, impl_->template_store());
  return store->verify(ref);
}

Result<std::vector<std::string>> Manager::export_template(const TemplateRef& ref, const std::string& dir) {
  CLOUDMGR_ASSIGN_OR_RETURN(spi::TemplateStore * store, impl_->template_store());
  return store->export_to(ref, dir);
}

Result<TemplateInfo> Manager::import_exported_template(const std::string& json_path, const std::string& name) {
  CLOUDMGR_ASSIGN_OR_RETURN(spi::TemplateStore * store, impl_->template_store());
  return store->import_export(json_path, name);
}

std::vector<HostImages> Manager::host_images() const {
  const std::lock_guard lock(impl_->mutex);
  std::vector<HostImages> out;
  for (const auto& [id, i] : impl_->images) {
    if (auto h = impl_->hosts.find(id); h != impl_->hosts.end() && h->second.online()) {
      out.push_back(i);
    }
  }
  return out;
}

Status Manager::delete_template(const TemplateRef& ref, bool force) {
  CLOUDMGR_ASSIGN_OR_RETURN(spi::TemplateStore * store, impl_->template_store());
  CLOUDMGR_RETURN_IF_ERROR(store->get(ref).status());  // kNotFound naming it
  if (!force) {
    std::vector<std::string> users;
    for (const HostImages& h : host_images()) {
      for (const CachedImage& c : h.images) {
        for (const ImageUser& u : c.users) {
          if (u.template_name == ref.name && (ref.version == 0 || u.template_version == ref.version)) {
            users.push_back(fmt::format("{}/{} ({}:{})", h.host_id, u.vm_name, u.template_name, u.template_version));
          }
        }
      }
    }
    if (!users.empty()) {
      std::string list;
      for (std::size_t i = 0; i < users.size() && i < 5; ++i) {
        list += (i > 0 ? ", " : "") + users[i];
      }
      if (users.size() > 5) {
        list += fmt::format(" and {} more", users.size() - 5);
      }
      return failed_precondition_error(fmt::format("template {} is used by {} VM(s): {}; delete them first, or force",
                                                   ref.to_string(), users.size(), list));
    }
  }
  return store->remove(ref);
}

Result<CreateVmsResult> Manager::create_vms(const CreateVmsRequest& request) {
  CLOUDMGR_ASSIGN_OR_RETURN(spi::TemplateStore * store, impl_->template_store());
  Impl* self = impl_.get();
  const ChunkSender send = [self](const ImageChunk& chunk, const std::vector<std::string>& to, std::int64_t deadline) {
    return self->link->send_chunk(chunk, to, deadline);
  };
  return provision_vms(*this, *store, send, request);
}

namespace {

// The template spec of a VM, as its host publishes it.
TemplateSpec spec_of(const VmInfo& vm, const DiskInfo& disk) {
  TemplateSpec spec{.vcpus = std::max(vm.vcpus, 1U),
                    .memory_bytes = std::max(vm.memory_bytes, vm.max_memory_bytes),
                    .description = vm.description};
  for (const DiskBus b : {DiskBus::kVirtio, DiskBus::kSata, DiskBus::kScsi, DiskBus::kIde}) {
    if (to_string(b) == disk.bus) {
      spec.base_disk_bus = b;
    }
  }
  for (const NicInfo& n : vm.nics) {
    NicSpec nic{.source = n.source, .model = n.model.empty() ? "virtio" : n.model};
    if (n.type == "bridge") {
      nic.type = NicType::kBridge;
    } else if (n.type == "ethernet") {
      nic.type = NicType::kEthernet;
    } else if (n.type != "network") {
      continue;  // a kind a template cannot name (user, direct, ...): left out
    }
    spec.nics.push_back(std::move(nic));
  }
  return spec;
}

}  // namespace

Result<TemplateInfo> Manager::capture_template(const std::string& host_id, const std::string& vm,
                                               const std::string& name, const ExecuteOptions& options) {
  CLOUDMGR_ASSIGN_OR_RETURN(spi::TemplateStore * store, impl_->template_store());
  CLOUDMGR_RETURN_IF_ERROR(validate_template_name(name));
  std::optional<VmInfo> info;
  for (const VmView& v : vms(host_id)) {
    if (v.vm.name == vm || v.vm.uuid == vm) {
      info = v.vm;
    }
  }
  if (!info) {
    return not_found_error(fmt::format("host '{}' has no VM '{}'", host_id, vm));
  }
  const auto disk = std::find_if(info->disks.begin(), info->disks.end(),
                                 [](const DiskInfo& d) { return d.device == "disk" && !d.source.empty(); });
  if (disk == info->disks.end()) {
    return failed_precondition_error(fmt::format("VM '{}' on host '{}' has no disk to capture", vm, host_id));
  }
  const TemplateSpec spec = spec_of(*info, *disk);
  CLOUDMGR_RETURN_IF_ERROR(validate_template_spec(spec).with_context(fmt::format("the spec of VM '{}'", vm)));

  CLOUDMGR_ASSIGN_OR_RETURN(const std::string path, store->incoming_path());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    ::unlink(path.c_str());
    return internal_error(fmt::format("cannot open '{}' for the captured image", path));
  }
  const std::string transfer = random_uuid();
  {
    const std::lock_guard lock(impl_->capture_mutex);
    impl_->captures[transfer] = {.fd = fd, .path = path};
  }
  const auto finish = [&](Status s) -> Status {
    {
      const std::lock_guard lock(impl_->capture_mutex);
      impl_->captures.erase(transfer);
    }
    ::close(fd);
    if (!s.ok()) {
      ::unlink(path.c_str());
    }
    return s;
  };
  const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(options.timeout.count()) * 1'000'000;
  auto r = execute(Target::host(host_id), "vm.capture", {{"vm", vm}, {"transfer", transfer}}, options);
  if (!r.ok()) {
    return finish(r.status());
  }
  if (!r->hosts.at(0).status.ok()) {
    return finish(r->hosts[0].status);
  }
  Impl::CaptureSink sink;
  {
    std::unique_lock lock(impl_->capture_mutex);
    const bool ended =
        impl_->capture_cv.wait_for(lock, std::chrono::nanoseconds(std::max<std::int64_t>(0, deadline - now_ns())),
                                   [&] { return impl_->captures.at(transfer).ended; });
    sink = impl_->captures.at(transfer);
    if (!ended) {
      lock.unlock();
      return finish(deadline_exceeded_error(
          fmt::format("the image of VM '{}' did not arrive in time ({} bytes)", vm, sink.received_bytes)));
    }
  }
  if (sink.failed) {
    return finish(internal_error(fmt::format("writing the image of VM '{}' to '{}' failed", vm, path)));
  }
  if (::ftruncate(fd, static_cast<off_t>(sink.size_bytes)) != 0 || !image::sync_file_and_dir(fd, path).ok()) {
    return finish(internal_error(fmt::format("cannot size and sync '{}'", path)));
  }
  CLOUDMGR_RETURN_IF_ERROR(finish({}));  // the store takes the file; a failed import leaves it to us
  auto t = store->import({.name = name,
                          .spec = spec,
                          .image_path = path,
                          .format = ImageFormat::kQcow2,
                          .origin = fmt::format("capture {}/{}", host_id, info->name),
                          .take_file = true});
  if (!t.ok()) {
    ::unlink(path.c_str());
    return t.status();
  }
  if (t->image.sha256 != sink.sha256) {
    (void)store->remove(t->ref());
    return data_loss_error(fmt::format("the image of VM '{}' arrived with SHA-256 {}, but host '{}' sent {}; discarded",
                                       vm, t->image.sha256, host_id, sink.sha256));
  }
  return t;
}

Result<CommandResult> Manager::delete_vm(const std::string& host_id, const std::string& vm, bool force,
                                         const ExecuteOptions& options) {
  Arguments args{{"vm", vm}};
  if (force) {
    args.emplace_back("force", "true");
  }
  return execute(Target::host(host_id), "vm.delete", args, options);
}

void Manager::execute_async(const Target& target, const std::string& verb, const Arguments& arguments,
                            const ExecuteOptions& options, std::function<void(Result<CommandResult>)> done) {
  impl_->execute_async(target, verb, arguments, options, std::move(done));
}

std::future<Result<CommandResult>> Manager::execute_async(const Target& target, const std::string& verb,
                                                          const Arguments& arguments, const ExecuteOptions& options) {
  auto promise = std::make_shared<std::promise<Result<CommandResult>>>();
  auto future = promise->get_future();
  impl_->execute_async(
      target, verb, arguments, options, [promise](Result<CommandResult> r) { promise->set_value(std::move(r)); },
      /*prompt=*/true);
  return future;
}

Result<CommandResult> Manager::execute(const Target& target, const std::string& verb, const Arguments& arguments,
                                       const ExecuteOptions& options) {
  return execute_async(target, verb, arguments, options).get();
}

}  // namespace cloudmgr
