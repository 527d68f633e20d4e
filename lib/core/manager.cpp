// cloudmgr::Manager: a view of the cloud built from what agents publish, and command
// fan-out with per-host results.
#include "cloudmgr/manager.h"

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "cloudmgr/verbs.h"
#include "core/status_macros.h"

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
};

}  // namespace

struct Manager::Impl {
  ManagerOptions options;
  std::unique_ptr<spi::Transport> transport;
  std::unique_ptr<spi::ManagerLink> link;

  mutable std::mutex mutex;
  std::condition_variable changed;                            // any change of the view or of pending
  std::map<std::string, HostEntry> hosts;                     // GUARDED_BY(mutex)
  std::map<std::pair<std::string, std::string>, VmView> vms;  // GUARDED_BY(mutex)
  std::map<std::string, std::shared_ptr<Pending>> pending;    // GUARDED_BY(mutex)
  bool closing = false;                                       // GUARDED_BY(mutex)
  std::uint64_t version = 0;                                  // GUARDED_BY(mutex): bumped on every change of the view

  std::deque<std::pair<Command, std::vector<std::string>>> outbox;  // GUARDED_BY(mutex)
  std::condition_variable outbox_cv;
  // Sends may block until their deadline waiting for a host to become reachable: several
  // senders keep one slow command from holding up the others.
  std::vector<std::thread> senders;
  std::thread timer;

  // Results that became complete are delivered outside the lock.
  struct Completion {
    std::shared_ptr<Pending> p;
    std::optional<Status> failure;
  };

  void deliver(std::vector<Completion>& done) {
    for (auto& c : done) {
      if (c.failure) {
        c.p->done(*c.failure);
      } else {
        c.p->done(std::move(c.p->result));
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

  void on_host(const HostView& h) {
    {
      const std::lock_guard lock(mutex);
      hosts[h.info.id] = HostEntry{h, now_ns()};
      ++version;
      ++version;
    }
    changed.notify_all();
  }

  void on_host_gone(const std::string& id, bool clean) {
    std::vector<Completion> done;
    std::vector<std::function<void()>> progress;
    {
      const std::lock_guard lock(mutex);
      hosts.erase(id);
      std::erase_if(vms, [&](const auto& kv) { return kv.first.first == id; });
      ++version;
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
    for (auto& f : progress) {
      f();
    }
    deliver(done);
  }

  void on_vm(const VmView& v) {
    {
      const std::lock_guard lock(mutex);
      vms[{v.host_id, v.vm.uuid}] = v;
      ++version;
      ++version;
    }
    changed.notify_all();
  }

  void on_vm_gone(const std::string& host, const std::string& uuid) {
    {
      const std::lock_guard lock(mutex);
      vms.erase({host, uuid});
      ++version;
      ++version;
    }
    changed.notify_all();
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
      progress();
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
        changed.wait(lock);
        continue;
      }
      const std::int64_t wait = earliest - now_ns();
      if (wait > 0) {
        // Capped: a far deadline must not overflow the clock arithmetic inside wait_for.
        changed.wait_for(lock, std::chrono::nanoseconds(std::min<std::int64_t>(wait, 3'600'000'000'000LL)));
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
        auto it = pending.find(command.id);
        if (it != pending.end()) {
          std::vector<Completion> done{{it->second, s.with_context("sending the command")}};
          pending.erase(it);
          lock.unlock();
          deliver(done);
          lock.lock();
        }
      }
    }
  }

  Result<std::vector<std::string>> expected_locked(const Target& t) const {  // REQUIRES(mutex)
    std::vector<std::string> out;
    switch (t.kind) {
      case Target::Kind::kHost:
        CLOUDMGR_RETURN_IF_ERROR(validate_host_id(t.name));
        if (!hosts.contains(t.name)) {
          return not_found_error(fmt::format("unknown host '{}' (not online)", t.name));
        }
        out.push_back(t.name);
        break;
      case Target::Kind::kGroup:
        CLOUDMGR_RETURN_IF_ERROR(validate_group_name(t.name));
        for (const auto& [id, h] : hosts) {
          if (std::find(h.view.groups.begin(), h.view.groups.end(), t.name) != h.view.groups.end()) {
            out.push_back(id);
          }
        }
        if (out.empty()) {
          return not_found_error(fmt::format("no online host is in group '{}'", t.name));
        }
        break;
      case Target::Kind::kAll:
        for (const auto& [id, h] : hosts) {
          out.push_back(id);
        }
        if (out.empty()) {
          return not_found_error("no host is online");
        }
        break;
    }
    return out;
  }

  void execute_async(const Target& target, const std::string& verb, const Arguments& arguments,
                     const ExecuteOptions& exec, std::function<void(Result<CommandResult>)> done) {
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
    {
      std::unique_lock lock(mutex);
      auto e = expected_locked(target);
      if (!e.ok()) {
        refused = e.status();
      } else {
        std::vector<std::string> expected = std::move(*e);
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
        pending[c.id] = p;
        outbox.emplace_back(std::move(c), std::move(expected));
      }
    }
    if (!refused.ok()) {
      p->done(refused);  // outside the lock: `done` may call back into the Manager
      return;
    }
    changed.notify_all();  // the timer learns the new deadline
    outbox_cv.notify_all();
  }

  void close() {
    {
      const std::lock_guard lock(mutex);
      if (closing) {
        return;
      }
      closing = true;
    }
    changed.notify_all();
    outbox_cv.notify_all();
    for (auto& t : senders) {
      t.join();
    }
    if (timer.joinable()) {
      timer.join();
    }
    link.reset();  // no more callbacks after this
    std::vector<Completion> done;
    {
      const std::lock_guard lock(mutex);
      for (auto& [id, p] : pending) {
        done.push_back({p, aborted_error("the manager closed before the command concluded")});
      }
      pending.clear();
    }
    deliver(done);
    transport.reset();
  }
};

Manager::Manager(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Manager::~Manager() { impl_->close(); }

Result<std::unique_ptr<Manager>> Manager::open(ManagerOptions options) {
  if (options.name.empty()) {
    options.name = fmt::format("manager-{}", getpid());
  }
  auto impl = std::make_shared<Impl>();
  impl->options = std::move(options);
  CLOUDMGR_ASSIGN_OR_RETURN(impl->transport, spi::open_transport(impl->options.transport));
  Impl* self = impl.get();
  spi::ManagerCallbacks cb;
  cb.on_host = [self](const HostView& h) { self->on_host(h); };
  cb.on_host_gone = [self](const std::string& id, bool clean) { self->on_host_gone(id, clean); };
  cb.on_vm = [self](const VmView& v) { self->on_vm(v); };
  cb.on_vm_gone = [self](const std::string& h, const std::string& u) { self->on_vm_gone(h, u); };
  cb.on_reply = [self](const CommandReply& r) { self->on_reply(r); };
  CLOUDMGR_ASSIGN_OR_RETURN(impl->link, impl->transport->open_manager(impl->options.name, std::move(cb)));
  try {
    for (int i = 0; i < 4; ++i) {
      impl->senders.emplace_back([self] { self->sender_loop(); });
    }
    impl->timer = std::thread([self] { self->timer_loop(); });
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
  }
  std::sort(out.begin(), out.end(), [](const VmView& a, const VmView& b) {
    return std::tie(a.host_id, a.vm.name) < std::tie(b.host_id, b.vm.name);
  });
  return out;
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

Status Manager::wait_for_hosts(std::size_t count, std::chrono::milliseconds timeout) {
  Status s = wait_until([count](const Manager& m) { return m.hosts().size() >= count; }, timeout);
  if (!s.ok()) {
    return deadline_exceeded_error(
        fmt::format("{} of {} hosts online after {} ms", hosts().size(), count, timeout.count()));
  }
  return s;
}

void Manager::execute_async(const Target& target, const std::string& verb, const Arguments& arguments,
                            const ExecuteOptions& options, std::function<void(Result<CommandResult>)> done) {
  impl_->execute_async(target, verb, arguments, options, std::move(done));
}

std::future<Result<CommandResult>> Manager::execute_async(const Target& target, const std::string& verb,
                                                          const Arguments& arguments, const ExecuteOptions& options) {
  auto promise = std::make_shared<std::promise<Result<CommandResult>>>();
  auto future = promise->get_future();
  impl_->execute_async(target, verb, arguments, options,
                       [promise](Result<CommandResult> r) { promise->set_value(std::move(r)); });
  return future;
}

Result<CommandResult> Manager::execute(const Target& target, const std::string& verb, const Arguments& arguments,
                                       const ExecuteOptions& options) {
  return execute_async(target, verb, arguments, options).get();
}

}  // namespace cloudmgr
